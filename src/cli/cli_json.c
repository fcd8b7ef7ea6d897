#include "cli_json.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char cli__replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

size_t cli_utf8_next(const uint8_t *p, size_t n, uint32_t *cp) {
  if (n == 0)
    return 0;
  uint8_t b = p[0];
  if (b < 0x80) {
    *cp = b;
    return 1;
  }
  size_t len;
  uint32_t v, min;
  if (b >= 0xC2 && b <= 0xDF) {
    len = 2, v = b & 0x1Fu, min = 0x80;
  } else if (b >= 0xE0 && b <= 0xEF) {
    len = 3, v = b & 0x0Fu, min = 0x800;
  } else if (b >= 0xF0 && b <= 0xF4) {
    len = 4, v = b & 0x07u, min = 0x10000;
  } else {
    return 0; /* a continuation byte, an overlong lead (C0, C1) or F5..FF */
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 0;
    v = v << 6 | (p[i] & 0x3Fu);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
    return 0;
  *cp = v;
  return len;
}

void cli_json_str(pl_bytes *out, const void *data, size_t n) {
  const uint8_t *p = data;
  pl_bytes_append(out, "\"", 1);
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    size_t len = cli_utf8_next(p + i, n - i, &cp);
    if (len == 0) {
      pl_bytes_append(out, "\\ufffd", 6);
      i++;
      continue;
    }
    if (cp == '"' || cp == '\\') {
      char esc[2] = {'\\', (char)cp};
      pl_bytes_append(out, esc, 2);
    } else if (cp < 0x20) {
      const char *short_esc = NULL;
      switch (cp) {
      case '\b': short_esc = "\\b"; break;
      case '\f': short_esc = "\\f"; break;
      case '\n': short_esc = "\\n"; break;
      case '\r': short_esc = "\\r"; break;
      case '\t': short_esc = "\\t"; break;
      default: break;
      }
      char esc[8];
      if (!short_esc)
        snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
      pl_bytes_append(out, short_esc ? short_esc : esc, strlen(short_esc ? short_esc : esc));
    } else {
      pl_bytes_append(out, p + i, len);
    }
    i += len;
  }
  pl_bytes_append(out, "\"", 1);
}

void cli_json_cstr(pl_bytes *out, const char *s) { cli_json_str(out, s ? s : "", s ? strlen(s) : 0); }

void cli_text_safe(pl_bytes *out, const void *data, size_t n) {
  const uint8_t *p = data;
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    size_t len = cli_utf8_next(p + i, n - i, &cp);
    if (len == 0) {
      pl_bytes_append(out, cli__replacement, 3);
      i++;
      continue;
    }
    if (cp == '\n')
      pl_bytes_append(out, "\n  ", 3);
    else if (cp == '\t')
      pl_bytes_append(out, "\t", 1);
    else if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
      pl_bytes_append(out, cli__replacement, 3);
    else
      pl_bytes_append(out, p + i, len);
    i += len;
  }
}

static void cli__key(pl_bytes *out, const char *key, int first) {
  if (!first)
    pl_bytes_append(out, ",", 1);
  cli_json_cstr(out, key);
  pl_bytes_append(out, ":", 1);
}

static void cli__u64(pl_bytes *out, uint64_t v) {
  char num[24];
  int n = snprintf(num, sizeof num, "%" PRIu64, v);
  pl_bytes_append(out, num, (size_t)n);
}

const char *cli_role_name(int role) {
  static const char *const names[] = {"none", "member", "admin", "owner"};
  return role >= 0 && role <= 3 ? names[role] : "none";
}

static const char *cli__event_name(int type) {
  static const char *const names[] = {"unknown", "created", "added", "removed", "left", "renamed", "role"};
  return type >= 0 && type <= 6 ? names[type] : "unknown";
}

/* {"type":"group_event","group":..,"conv":..,"seq":N,"event":..,"actor":..,
 *  "user":..,"name":..,"role":..,"server_ts":MS} */
static void cli__group_event(pl_bytes *out, const parley_message *m) {
  const parley_group_event *e = m->event;
  pl_bytes_append(out, "{", 1);
  cli__key(out, "type", 1);
  cli_json_cstr(out, "group_event");
  cli__key(out, "group", 0);
  cli_json_cstr(out, m->group);
  cli__key(out, "conv", 0);
  cli_json_cstr(out, m->conv);
  cli__key(out, "seq", 0);
  cli__u64(out, m->seq);
  cli__key(out, "event", 0);
  cli_json_cstr(out, cli__event_name(e->type));
  cli__key(out, "actor", 0);
  cli_json_cstr(out, e->actor);
  cli__key(out, "user", 0);
  cli_json_cstr(out, e->user);
  cli__key(out, "name", 0);
  cli_json_cstr(out, e->name);
  cli__key(out, "role", 0);
  cli_json_cstr(out, cli_role_name(e->role));
  cli__key(out, "server_ts", 0);
  cli__u64(out, m->server_ts);
  pl_bytes_append(out, "}\n", 2);
}

const char *cli_act_name(int kind) {
  static const char *const names[] = {"", "reaction", "edit", "delete", "timer", "delete_for_me"};
  return kind > 0 && kind < (int)(sizeof names / sizeof names[0]) ? names[kind] : "";
}

/* "act":{...} with the fields that are set (protocol.md 11.9). */
static void cli__act(pl_bytes *out, const parley_act *a) {
  int first = 1;
  cli__key(out, "act", 0);
  pl_bytes_append(out, "{", 1);
  if (a->kind) {
    cli__key(out, "kind", first), first = 0;
    cli_json_cstr(out, cli_act_name(a->kind));
  }
  const struct {
    const char *key;
    uint64_t v;
  } nums[] = {{"target", a->target},
              {"reply_to", a->reply_to},
              {"timer_s", a->kind == PARLEY_ACT_TIMER ? a->timer_s : 0},
              {"vanish_at", a->vanish_at}};
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
    if (nums[i].v) {
      cli__key(out, nums[i].key, first), first = 0;
      cli__u64(out, nums[i].v);
    }
  if (a->kind == PARLEY_ACT_TIMER && !a->timer_s) {
    cli__key(out, "timer_s", first), first = 0;
    cli__u64(out, 0);
  }
  if (a->forwarded) {
    cli__key(out, "forwarded", first), first = 0;
    pl_bytes_append(out, "true", 4);
  }
  if (a->target_conv && *a->target_conv) {
    cli__key(out, "target_conv", first);
    cli_json_cstr(out, a->target_conv);
  }
  pl_bytes_append(out, "}", 1);
}

void cli_json_message(pl_bytes *out, const parley_message *m) {
  if (m->event) {
    cli__group_event(out, m);
    return;
  }
  pl_bytes_append(out, "{", 1);
  cli__key(out, "type", 1);
  cli_json_cstr(out, "message");
  if (m->group && *m->group) {
    cli__key(out, "group", 0);
    cli_json_cstr(out, m->group);
  }
  cli__key(out, "from", 0);
  cli_json_cstr(out, m->from);
  cli__key(out, "conv", 0);
  cli_json_cstr(out, m->conv);
  cli__key(out, "seq", 0);
  cli__u64(out, m->seq);
  cli__key(out, "id", 0);
  cli_json_cstr(out, m->id);
  cli__key(out, "text", 0);
  cli_json_str(out, m->body, m->body ? m->body_len : 0);
  if (m->media) {
    const parley_media *md = m->media;
    cli__key(out, "media", 0);
    pl_bytes_append(out, "{", 1);
    cli__key(out, "id", 1);
    cli_json_cstr(out, md->id);
    cli__key(out, "type", 0);
    cli_json_cstr(out, md->type);
    cli__key(out, "size", 0);
    cli__u64(out, md->size);
    cli__key(out, "width", 0);
    cli__u64(out, md->width);
    cli__key(out, "height", 0);
    cli__u64(out, md->height);
    cli__key(out, "thumb_width", 0);
    cli__u64(out, md->thumb_width);
    cli__key(out, "thumb_height", 0);
    cli__u64(out, md->thumb_height);
    cli__key(out, "name", 0);
    cli_json_cstr(out, md->name);
    pl_bytes_append(out, "}", 1);
  }
  if (m->act)
    cli__act(out, m->act);
  cli__key(out, "client_ts", 0);
  cli__u64(out, m->client_ts);
  cli__key(out, "server_ts", 0);
  cli__u64(out, m->server_ts);
  pl_bytes_append(out, "}\n", 2);
}

void cli_json_send_ack(pl_bytes *out, const parley_send_ack *a) {
  pl_bytes_append(out, "{", 1);
  cli__key(out, "id", 1);
  cli_json_cstr(out, a->id);
  cli__key(out, "conv", 0);
  cli_json_cstr(out, a->conv);
  cli__key(out, "seq", 0);
  cli__u64(out, a->seq);
  cli__key(out, "server_ts", 0);
  cli__u64(out, a->server_ts);
  pl_bytes_append(out, "}\n", 2);
}

static void cli__bool(pl_bytes *out, int v) { pl_bytes_append(out, v ? "true" : "false", v ? 4 : 5); }

void cli_json_presence(pl_bytes *out, const char *user, int online, uint64_t last_seen) {
  pl_bytes_append(out, "{", 1);
  cli__key(out, "user", 1);
  cli_json_cstr(out, user);
  cli__key(out, "online", 0);
  cli__bool(out, online);
  cli__key(out, "last_seen", 0);
  if (last_seen)
    cli__u64(out, last_seen);
  else
    pl_bytes_append(out, "null", 4);
  pl_bytes_append(out, "}\n", 2);
}

void cli_json_event(pl_bytes *out, const parley_event *e) {
  if (e->type == PARLEY_EV_PRESENCE) {
    /* the presence object with "type" first */
    static const char head[] = "{\"type\":\"presence\",";
    pl_bytes_append(out, head, sizeof head - 1);
    pl_bytes line = {0};
    cli_json_presence(&line, e->user, e->online, e->last_seen);
    pl_bytes_append(out, line.p + 1, line.len - 1);
    pl_bytes_free(&line);
    return;
  }
  pl_bytes_append(out, "{", 1);
  cli__key(out, "type", 1);
  if (e->type == PARLEY_EV_RECEIPT) {
    cli_json_cstr(out, "receipt");
    cli__key(out, "status", 0);
    cli_json_cstr(out, e->status == PARLEY_RECEIPT_READ ? "read" : "delivered");
    cli__key(out, "conv", 0);
    cli_json_cstr(out, e->conv);
    cli__key(out, "by", 0);
    cli_json_cstr(out, e->user);
    cli__key(out, "seq", 0);
    cli__u64(out, e->seq);
  } else if (e->type == PARLEY_EV_READ_SYNC) {
    cli_json_cstr(out, "read_sync");
    cli__key(out, "conv", 0);
    cli_json_cstr(out, e->conv);
    cli__key(out, "seq", 0);
    cli__u64(out, e->seq);
    cli__key(out, "unread", 0);
    cli__u64(out, e->unread);
  } else {
    cli_json_cstr(out, "typing");
    cli__key(out, "user", 0);
    cli_json_cstr(out, e->user);
    cli__key(out, "conv", 0);
    cli_json_cstr(out, e->conv);
    cli__key(out, "typing", 0);
    cli__bool(out, e->typing);
  }
  pl_bytes_append(out, "}\n", 2);
}

void cli_json_group(pl_bytes *out, const parley_group *g, int with_members) {
  pl_bytes_append(out, "{", 1);
  cli__key(out, "group", 1);
  cli_json_cstr(out, g->id);
  cli__key(out, "name", 0);
  cli_json_cstr(out, g->name);
  cli__key(out, "description", 0);
  cli_json_cstr(out, g->description);
  cli__key(out, "role", 0);
  cli_json_cstr(out, cli_role_name(g->my_role));
  cli__key(out, "member_count", 0);
  cli__u64(out, g->member_count);
  cli__key(out, "last_seq", 0);
  cli__u64(out, g->last_seq);
  if (with_members) {
    cli__key(out, "members", 0);
    pl_bytes_append(out, "[", 1);
    for (size_t i = 0; i < g->nmembers; i++) {
      pl_bytes_append(out, i ? ",{" : "{", i ? 2 : 1);
      cli__key(out, "user", 1);
      cli_json_cstr(out, g->members[i].user);
      cli__key(out, "role", 0);
      cli_json_cstr(out, cli_role_name(g->members[i].role));
      pl_bytes_append(out, "}", 1);
    }
    pl_bytes_append(out, "]", 1);
  }
  pl_bytes_append(out, "}", 1);
}
