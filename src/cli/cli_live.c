/* cli_live.c: the commands that stay connected, recv (with --wait) and
 * chat. Received messages are written out before they are acknowledged, so
 * a crash or a closed pipe means redelivery, never loss. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_internal.h"
#include "cli_json.h"
#include "cli_recent.h"
#include "common/pl_time.h"

/* ---- recv --------------------------------------------------------------- */

typedef struct cli_recv {
  pl_bytes out;        /* lines not yet written out */
  int got;             /* something to acknowledge was delivered since the last ack */
  uint64_t last_event; /* mono ms of the latest message */
  size_t unflushed;    /* messages in out */
} cli_recv;

static void recv_on_message(parley *c, const parley_message *m, void *ud) {
  (void)c;
  cli_recv *r = ud;
  cli_json_message(&r->out, m);
  r->got = 1;
  r->last_event = pl_mono_ms();
  r->unflushed++;
}

/* Prints what is buffered, then (unless --no-ack) acks it: in that order.
 * recv commits after every pass that brought messages (a pass reads at most
 * about a megabyte), so a long drain is acked as it goes and an interrupted
 * one is redelivered from about where it stopped. */
/* Receipts, read syncs, presence and typing: printed like messages; a
 * queued one (qid > 0) is acked with them. */
static void recv_on_event(parley *c, const parley_event *e, void *ud) {
  (void)c;
  cli_recv *r = ud;
  cli_json_event(&r->out, e);
  if (e->qid)
    r->got = 1;
  r->last_event = pl_mono_ms();
  r->unflushed++;
}

static int recv_commit(const cli *o, parley *c, cli_recv *r) {
  if (cli_print(&r->out) != 0)
    return cli_fail(CLI_EXIT_ERR, "cannot write to standard output (messages not acknowledged)");
  if (!o->no_ack && r->got) /* all printed: every stream up to what was delivered */
    parley_ack_delivered(c);
  r->got = 0;
  r->unflushed = 0;
  return 0;
}

int cmd_recv(const cli *o) {
  double wait_s = 1.0;
  if (o->wait) {
    char *end;
    wait_s = strtod(o->wait, &end);
    if (end == o->wait || *end || !isfinite(wait_s) || wait_s < 0 || wait_s > 86400.0 * 365)
      return cli_fail(CLI_EXIT_USAGE, "--wait wants a number of seconds, not '%s'", o->wait);
  }
  uint64_t quiet_ms = (uint64_t)(wait_s * 1000.0 + 0.5);
  cli_recv r = {0};
  parley_callbacks cb = {.on_message = recv_on_message, .on_event = recv_on_event};
  parley *c;
  int status = cli_open(o, &c, &cb, &r, 0);
  if (status)
    return status;
  r.last_event = pl_mono_ms();
  for (;;) {
    uint64_t now = pl_mono_ms();
    if (now >= r.last_event + quiet_ms)
      break;
    uint64_t left = r.last_event + quiet_ms - now;
    int rc = parley_run(c, left > 1000 ? 1000 : (int)left);
    if (rc != PARLEY_OK) {
      /* Down for good: show what arrived, but it cannot be acked any more. */
      cli_print(&r.out);
      status = cli_error(o, rc, NULL);
      goto out;
    }
    /* Show what this pass brought (someone may be watching a long --wait), and ack it. */
    if (r.unflushed && (status = recv_commit(o, c, &r)) != 0)
      goto out;
  }
  if ((status = recv_commit(o, c, &r)) != 0)
    goto out;
  parley_run(c, 0); /* writes the Ack; parley_free then closes gracefully */
out:
  parley_free(c);
  pl_bytes_free(&r.out);
  return status;
}

/* ---- chat --------------------------------------------------------------- */

#define CLI_CHAT_CMDS 16 /* commands whose refusal is told as theirs */

typedef struct cli_chat {
  const cli *o;
  const char *peer;
  pl_bytes line; /* stdin not yet split into lines */
  pl_bytes out;
  int status;                    /* set by a failure that ends the chat */
  int refused;                   /* some message was refused */
  int lost;                      /* the connection dropped (and is being re-established) */
  int quit;                      /* /quit was typed: stop reading input */
  char conv[80];                 /* dm:<a>:<b>, the conversation of this chat */
  uint64_t last_peer, last_mine; /* seqs the action commands default to */
  char plain_id[65];             /* the last plain message typed: its ack gives last_mine */
  cli_recent recent;             /* texts of this conversation's last messages, for /forward */
  struct {
    char id[65], to[80], word[12];
  } cmds[CLI_CHAT_CMDS]; /* the last actions and forwards sent: what a refusal is about */
  size_t cmd_next;
} cli_chat;

static void chat_put(cli_chat *ch, const char *s) { pl_bytes_append(&ch->out, s, strlen(s)); }

static void chat_put_seq(cli_chat *ch, uint64_t seq) {
  char b[32];
  snprintf(b, sizeof b, "#%llu", (unsigned long long)seq);
  chat_put(ch, b);
}

static const char *chat_timer_name(uint32_t s) {
  return s == 86400 ? "24 hours" : s == 604800 ? "7 days" : s == 7776000 ? "90 days" : "a custom time";
}

/* An action (protocol.md 11.9) as a line starting with "* ". */
static void chat_show_act(cli_chat *ch, const parley_message *m, const parley_act *a) {
  chat_put(ch, "* ");
  cli_text_safe(&ch->out, m->from, strlen(m->from));
  if (a->kind == PARLEY_ACT_REACTION) {
    chat_put(ch, m->body_len ? " reacted " : " took back the reaction");
    cli_text_safe(&ch->out, m->body, m->body_len);
    chat_put(ch, " to ");
    chat_put_seq(ch, a->target);
  } else if (a->kind == PARLEY_ACT_EDIT) {
    chat_put(ch, " edited ");
    chat_put_seq(ch, a->target);
    chat_put(ch, ": ");
    cli_text_safe(&ch->out, m->body, m->body_len);
  } else if (a->kind == PARLEY_ACT_DELETE) {
    chat_put(ch, " deleted ");
    chat_put_seq(ch, a->target);
    chat_put(ch, ": this message was deleted");
  } else if (a->kind == PARLEY_ACT_TIMER) {
    chat_put(ch, a->timer_s ? " set disappearing messages to " : " turned disappearing messages off");
    chat_put(ch, a->timer_s ? chat_timer_name(a->timer_s) : "");
  } else {
    chat_put(ch, " deleted ");
    chat_put_seq(ch, a->target);
    chat_put(ch, " for themselves");
  }
  chat_put(ch, "\n");
}

/* "sender: text", a reply or forward marked after the name. */
static void chat_show(cli_chat *ch, const parley_message *m) {
  const parley_act *a = m->act;
  if (a && a->kind != PARLEY_ACT_NONE) {
    chat_show_act(ch, m, a);
    return;
  }
  cli_text_safe(&ch->out, m->from, strlen(m->from));
  if (a && a->reply_to) {
    chat_put(ch, " (reply to ");
    chat_put_seq(ch, a->reply_to);
    chat_put(ch, ")");
  }
  if (a && a->forwarded)
    chat_put(ch, " (forwarded)");
  pl_bytes_append(&ch->out, ": ", 2);
  cli_text_safe(&ch->out, m->body, m->body ? m->body_len : 0);
  pl_bytes_append(&ch->out, "\n", 1);
}

/* Keeps what /forward needs of a message of this chat: its text, as edited,
 * until it is deleted. */
static void chat_remember(cli_chat *ch, const parley_message *m) {
  int kind = m->act ? m->act->kind : PARLEY_ACT_NONE;
  if (strcmp(m->conv, ch->conv) != 0 || m->event)
    return;
  if (kind == PARLEY_ACT_NONE)
    cli_recent_put(&ch->recent, m->seq, NULL, m->body, m->body ? m->body_len : 0, m->media ? m->media->id : NULL);
  else if (kind == PARLEY_ACT_EDIT)
    cli_recent_edit(&ch->recent, m->act->target, m->body, m->body ? m->body_len : 0);
  else if (kind == PARLEY_ACT_DELETE)
    cli_recent_drop(&ch->recent, m->act->target);
}

static void chat_on_message(parley *c, const parley_message *m, void *ud) {
  cli_chat *ch = ud;
  chat_show(ch, m);
  chat_remember(ch, m);
  if (!strcmp(m->conv, ch->conv) && strcmp(m->from, ch->o->user) && (!m->act || !m->act->kind))
    ch->last_peer = m->seq;
  if (cli_print(&ch->out) != 0) {
    ch->status = cli_fail(CLI_EXIT_ERR, "cannot write to standard output");
    return;
  }
  parley_ack_message(c, m); /* shown, so received */
}

/* Receipts, read syncs, presence and typing, as recv prints them. Everything
 * delivered so far has been printed by now, so a queued one (qid > 0) acks
 * the whole stream. */
static void chat_on_event(parley *c, const parley_event *e, void *ud) {
  cli_chat *ch = ud;
  cli_json_event(&ch->out, e);
  if (cli_print(&ch->out) != 0) {
    ch->status = cli_fail(CLI_EXIT_ERR, "cannot write to standard output");
    return;
  }
  if (e->qid)
    parley_ack_delivered(c);
}

static void chat_on_ack(parley *c, const parley_send_ack *a, void *ud) {
  (void)c;
  cli_chat *ch = ud;
  if (!strcmp(a->id, ch->plain_id))
    ch->last_mine = a->seq;
  if (!strcmp(a->conv, ch->conv))
    cli_recent_acked(&ch->recent, a->id, a->seq);
}

static void chat_on_send_error(parley *c, const char *id, int code, const char *message, void *ud) {
  (void)c, (void)message;
  cli_chat *ch = ud;
  ch->refused = 1;
  /* A refused action or forward is about that command (a forward's about
   * its recipient), not about this chat's peer: the chat goes on. */
  for (size_t i = 0; i < CLI_CHAT_CMDS; i++) {
    if (ch->cmds[i].id[0] && !strcmp(ch->cmds[i].id, id)) {
      if (code == PARLEY_E_INVALID_ARGUMENT) /* not the name: what the command carried */
        fprintf(stderr, "parley: %s refused by the server: %s\n", ch->cmds[i].word, parley_strerror(code));
      else
        cli_error(ch->o, code, ch->cmds[i].to);
      return;
    }
  }
  int status = cli_error(ch->o, code, ch->peer);
  if (code == PARLEY_E_UNKNOWN_PEER || code == PARLEY_E_INVALID_ARGUMENT)
    ch->status = status; /* every further line would fail the same way */
}

static void chat_on_state(parley *c, parley_state st, int err, void *ud) {
  (void)c;
  cli_chat *ch = ud;
  if (!isatty(STDERR_FILENO))
    return;
  if (st == PARLEY_STATE_DISCONNECTED && err) {
    fprintf(stderr, "parley: connection lost (%s), reconnecting...\n", parley_strerror(err));
    ch->lost = 1;
  } else if (st == PARLEY_STATE_AUTHENTICATED && ch->lost) {
    fprintf(stderr, "parley: reconnected to %s\n", ch->o->server);
    ch->lost = 0;
  }
}

static const char chat_help[] =
    "Type a line and press Enter to send it to %s.\n"
    "  /help   this text\n"
    "  /quit   leave (as Ctrl-D does: after the server has taken what was sent)\n"
    "  /reply [#N] TEXT   reply to message N (default: their last one)\n"
    "  /react [#N] EMOJI  react to message N (default: their last one); no EMOJI:\n"
    "                     take your reaction back\n"
    "  /edit [#N] TEXT    edit your message N (default: your last one)\n"
    "  /delete [#N]       delete your message N for everyone (default: your last one)\n"
    "  /forward [#N] USER send message N (default: their last one) on to USER, marked\n"
    "                     forwarded, with its photo or file; /forward [#N] --group GROUP:\n"
    "                     to a group (the chat remembers its last 256 messages)\n"
    "  //text  sends \"/text\" (a line starting with one / is a command)\n";

/* A line starting with '/' is a command (not sent); "//" escapes a leading
 * slash. Returns 1 when the line was a command. */
/* Does line p[0..n) start with command word w (then a space or its end)?
 * Then *rest is what follows the spaces after it. */
static int chat_word(const char *p, size_t n, const char *w, const char **rest, size_t *rn) {
  size_t wl = strlen(w);
  if (n < wl || memcmp(p, w, wl) || (n > wl && p[wl] != ' '))
    return 0;
  *rest = p + wl;
  *rn = n - wl;
  while (*rn && **rest == ' ')
    (*rest)++, (*rn)--;
  return 1;
}

/* Remembers a command's message id: its refusal, if one comes, is told as
 * the command's (chat_on_send_error). */
static void chat_sent_cmd(cli_chat *ch, const char *id, const char *to, const char *word) {
  snprintf(ch->cmds[ch->cmd_next].id, sizeof ch->cmds[0].id, "%s", id);
  snprintf(ch->cmds[ch->cmd_next].to, sizeof ch->cmds[0].to, "%s", to);
  snprintf(ch->cmds[ch->cmd_next].word, sizeof ch->cmds[0].word, "%s", word);
  ch->cmd_next = (ch->cmd_next + 1) % CLI_CHAT_CMDS;
}

/* An optional "#N" at the start of the rest: N, or dflt. */
static uint64_t chat_target(const char **p, size_t *n, uint64_t dflt) {
  if (!*n || **p != '#')
    return dflt;
  uint64_t v = 0;
  size_t i = 1;
  for (; i < *n && (*p)[i] >= '0' && (*p)[i] <= '9' && v < UINT64_MAX / 10; i++)
    v = v * 10 + (uint64_t)((*p)[i] - '0');
  *p += i, *n -= i;
  while (*n && **p == ' ')
    (*p)++, (*n)--;
  return v;
}

/* /reply, /react, /edit, /delete (protocol.md 11.9). Returns 1 if it was one. */
static int chat_act_command(parley *c, cli_chat *ch, const char *p, size_t n) {
  static const struct {
    const char *word;
    int kind, mine, needs_text;
  } cmds[] = {{"/reply", PARLEY_ACT_NONE, 0, 1},
              {"/react", PARLEY_ACT_REACTION, 0, 0},
              {"/edit", PARLEY_ACT_EDIT, 1, 1},
              {"/delete", PARLEY_ACT_DELETE, 1, 0}};
  const char *rest;
  size_t rn;
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    if (!chat_word(p, n, cmds[i].word, &rest, &rn))
      continue;
    uint64_t seq = chat_target(&rest, &rn, cmds[i].mine ? ch->last_mine : ch->last_peer);
    if (!seq || (cmds[i].needs_text && !rn)) {
      fprintf(stderr, "parley: %s needs %s (not sent); /help says how\n", cmds[i].word,
              !seq ? "a message (#N): none to default to yet" : "a text");
      return 1;
    }
    parley_act a = {.kind = cmds[i].kind};
    if (cmds[i].kind == PARLEY_ACT_NONE)
      a.reply_to = seq;
    else
      a.target = seq;
    if (cmds[i].kind == PARLEY_ACT_DELETE)
      rn = 0;
    char id[65];
    int rc = parley_send_act(c, NULL, ch->peer, NULL, &a, rest, rn, id);
    if (rc == PARLEY_OK)
      chat_sent_cmd(ch, id, ch->peer, cmds[i].word);
    if (rc != PARLEY_OK) {
      cli_error(ch->o, rc, ch->peer);
      ch->refused = 1;
    } else if (cmds[i].kind == PARLEY_ACT_NONE) {
      cli_recent_put(&ch->recent, 0, id, rest, rn, NULL);
    } else if (cmds[i].kind == PARLEY_ACT_EDIT || cmds[i].kind == PARLEY_ACT_DELETE) {
      cli_recent_put_act(&ch->recent, id, cmds[i].kind, seq, rest, rn);
    }
    return 1;
  }
  return 0;
}

/* /forward [#N] USER or /forward [#N] --group GROUP: message N of this chat
 * (default: the peer's last one), its text as this chat last saw it and its
 * attachment, sent on marked forwarded (protocol.md 11.9). Returns 1 if it
 * was one. */
static int chat_forward_command(parley *c, cli_chat *ch, const char *p, size_t n) {
  const char *rest, *g;
  size_t rn, gn;
  if (!chat_word(p, n, "/forward", &rest, &rn))
    return 0;
  uint64_t seq = chat_target(&rest, &rn, ch->last_peer);
  int group = chat_word(rest, rn, "--group", &g, &gn);
  if (group)
    rest = g, rn = gn;
  char to[80];
  if (!rn || rn >= sizeof to || memchr(rest, ' ', rn)) {
    fprintf(stderr, "parley: /forward needs whom to send it to: /forward [#N] USER, or --group GROUP "
                    "(not sent)\n");
    return 1;
  }
  snprintf(to, sizeof to, "%.*s", (int)rn, rest);
  if (!seq) {
    fprintf(stderr, "parley: /forward needs a message (#N): none to default to yet (not sent)\n");
    return 1;
  }
  const cli_recent_entry *e = cli_recent_find(&ch->recent, seq);
  if (!e) {
    fprintf(stderr, "parley: /forward: message #%llu is not one of the last %d messages of this chat (not sent)\n",
            (unsigned long long)seq, CLI_RECENT_N);
    return 1;
  }
  char id[65];
  int rc = parley_forward(c, NULL, group ? NULL : to, group ? to : NULL, e->media, e->text, e->len, id);
  if (rc != PARLEY_OK) {
    cli_error(ch->o, rc, to);
    ch->refused = 1;
    return 1;
  }
  chat_sent_cmd(ch, id, to, "/forward");
  if (!group && !strcmp(to, ch->peer))
    cli_recent_put(&ch->recent, 0, id, e->text, e->len, e->media);
  return 1;
}

static int chat_command(parley *c, cli_chat *ch, const char **p, size_t *n) {
  if (*n == 0 || (*p)[0] != '/')
    return 0;
  if (*n > 1 && (*p)[1] == '/') {
    (*p)++, (*n)--;
    return 0;
  }
  if (*n == 5 && !memcmp(*p, "/help", 5))
    fprintf(stderr, chat_help, ch->peer);
  else if (*n == 5 && !memcmp(*p, "/quit", 5))
    ch->quit = 1;
  else if (chat_act_command(c, ch, *p, *n) || chat_forward_command(c, ch, *p, *n))
    ;
  else
    fprintf(stderr, "parley: unknown command %.*s (not sent); /help lists the commands\n", (int)*n, *p);
  return 1;
}

static void chat_send_line(parley *c, cli_chat *ch, const char *p, size_t n) {
  if (n && p[n - 1] == '\r')
    n--;
  if (n == 0 || ch->quit || chat_command(c, ch, &p, &n))
    return;
  int rc = parley_send(c, NULL, ch->peer, p, n, ch->plain_id);
  if (rc != PARLEY_OK) {
    cli_error(ch->o, rc, ch->peer);
    ch->refused = 1;
    return;
  }
  cli_recent_put(&ch->recent, 0, ch->plain_id, p, n, NULL);
}

/* Reads what stdin has; sends each complete line (and the rest at EOF).
 * Returns 1 at end of input. */
static int chat_read_stdin(parley *c, cli_chat *ch) {
  pl_bytes_reserve(&ch->line, 4096);
  ssize_t n = read(STDIN_FILENO, ch->line.p + ch->line.len, ch->line.cap - ch->line.len);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return 0;
  int eof = n <= 0;
  if (n > 0)
    ch->line.len += (size_t)n;
  size_t start = 0;
  for (size_t i = 0; i < ch->line.len; i++) {
    if (ch->line.p[i] == '\n') {
      chat_send_line(c, ch, (const char *)ch->line.p + start, i - start);
      start = i + 1;
    }
  }
  if (eof && start < ch->line.len) {
    chat_send_line(c, ch, (const char *)ch->line.p + start, ch->line.len - start);
    start = ch->line.len;
  }
  pl_bytes_consume(&ch->line, start);
  return eof;
}

int cmd_chat(const cli *o) {
  cli_chat ch = {.o = o, .peer = o->pos[0]};
  int lower = strcmp(o->user, ch.peer) < 0;
  snprintf(ch.conv, sizeof ch.conv, "dm:%s:%s", lower ? o->user : ch.peer, lower ? ch.peer : o->user);
  parley_callbacks cb = {.on_message = chat_on_message,
                         .on_event = chat_on_event,
                         .on_send_error = chat_on_send_error,
                         .on_ack = chat_on_ack,
                         .on_state = chat_on_state};
  parley *c;
  int status = cli_open(o, &c, &cb, &ch, 0);
  if (status)
    return status;
  /* The peer's presence as events (shown if the peer has us in their contacts, §11.6). */
  const char *follow[] = {ch.peer};
  int rc = parley_subscribe_wait(c, follow, 1, CLI_TIMEOUT_MS);
  if (rc != PARLEY_OK) {
    status = cli_error(o, rc, ch.peer);
    goto out;
  }
  if (isatty(STDIN_FILENO))
    fprintf(stderr, "Chatting with %s as %s. Type a line and press Enter to send; /help, /quit.\n", ch.peer,
            o->user);
  int eof = 0;
  uint64_t eof_at = 0;
  while (!ch.status) {
    struct pollfd fds[2];
    nfds_t n = 0;
    if (!eof)
      fds[n++] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
    int fd = parley_fd(c);
    if (fd >= 0)
      fds[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
    /* The library's timers (heartbeat, reconnect) need a pass now and then. */
    poll(fds, n, eof ? 50 : 200);
    if (!eof && fds[0].revents && (chat_read_stdin(c, &ch) || ch.quit)) {
      eof = 1;
      eof_at = pl_mono_ms();
    }
    rc = parley_run(c, 0);
    if (rc != PARLEY_OK) {
      status = cli_error(o, rc, ch.peer);
      goto out;
    }
    if (eof && parley_outbox_len(c) == 0)
      break;
    if (eof && pl_mono_ms() >= eof_at + CLI_DRAIN_MS) {
      status = cli_fail(CLI_EXIT_CONN, "%zu message(s) not confirmed by server %s", parley_outbox_len(c),
                        o->server);
      goto out;
    }
  }
  status = ch.status ? ch.status : ch.refused ? CLI_EXIT_REFUSED : CLI_EXIT_OK;
  parley_run(c, 0); /* writes the last Ack */
out:
  parley_free(c);
  pl_bytes_free(&ch.line);
  pl_bytes_free(&ch.out);
  cli_recent_free(&ch.recent);
  return status;
}
