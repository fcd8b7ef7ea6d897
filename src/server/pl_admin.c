/* pl_admin: the admin API's routes, its token check and audit log, and the
 * life of a call: parse -> (hash a password on libuv's pool) -> the store's
 * ADMIN op -> sign out what it revoked -> answer (docs/admin.md). */
#include "pl_admin_int.h"

#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/pl_log.h"
#include "common/pl_mem.h"
#include "common/pl_time.h"
#include "rules/pl_signup.h"

pl_admin *pl_admin_new(const pl_admin_config *cfg) {
  pl_admin *a = pl_calloc(1, sizeof *a);
  a->cfg = *cfg;
  return a;
}

void pl_admin_free(pl_admin *a) { pl_free(a); }

/* ---- small parsers ----------------------------------------------------------------- */

/* The value of query parameter k, percent-decoded, at most cap-1 bytes; 0 if absent. */
static int pl__query(const char *url, const char *k, char *out, size_t cap) {
  const char *q = strchr(url, '?');
  size_t kl = strlen(k);
  while (q && *q) {
    q++;
    if (!strncmp(q, k, kl) && q[kl] == '=') {
      size_t n = 0;
      for (const char *p = q + kl + 1; *p && *p != '&' && n + 1 < cap; p++) {
        if (*p == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
          char hex[3] = {p[1], p[2], 0};
          out[n++] = (char)strtol(hex, NULL, 16);
          p += 2;
        } else {
          out[n++] = *p == '+' ? ' ' : *p;
        }
      }
      out[n] = '\0';
      return 1;
    }
    q = strchr(q, '&');
  }
  return 0;
}

/* A path segment (up to '/' or the end) into out; the rest after it. */
static const char *pl__seg(const char *p, char *out, size_t cap) {
  size_t n = strcspn(p, "/");
  snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
  return p[n] == '/' ? p + n + 1 : p + n;
}

static const char *pl__jstr(json_t *body, const char *k) {
  json_t *v = json_object_get(body, k);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ---- the call's life ----------------------------------------------------------------- */

static void pl__call_free(pl_admin_call *c) {
  pl_store_req_clear(&c->req);
  if (c->password) {
    sodium_memzero(c->password, strlen(c->password));
    pl_free(c->password);
  }
  sodium_memzero(c->pwhash, sizeof c->pwhash);
  pl_free(c);
}

static void pl__audit(const pl_admin_call *c, int status, const char *note) {
  pl_info("admin: %s by=%s addr=%s status=%d%s%s", c->what, c->who, c->peer, status, note ? " " : "",
          note ? note : "");
}

/* On the store thread: the devices it signed out lose their connections,
 * then the answer goes (pl_http_ex_reply takes any thread). */
static void pl__done(pl_store_req *req) {
  pl_admin_call *c = (pl_admin_call *)req;
  const pl_store_admin_req *a = &req->u.admin;
  for (size_t i = 0; req->status == PL_OK && i < a->out.nkicked; i++)
    pl_core_kick(c->a->cfg.core, a->out.kicked[i]);
  pl_http_res res = {0};
  int status;
  pl_admin_json_res(&res, 0, pl_admin_json_answer(c, &status));
  res.status = status;
  char note[64] = "";
  if (a->out.nkicked)
    snprintf(note, sizeof note, "signed_out=%zu", a->out.nkicked);
  pl__audit(c, status, note[0] ? note : NULL);
  pl_http_ex_reply(c->x, &res);
  pl__call_free(c);
}

static void pl__hash_work(uv_work_t *w) {
  pl_admin_call *c = w->data;
  if (pl_auth_hash(c->password, strlen(c->password), c->pwhash, c->a->cfg.argon2_ops,
                   c->a->cfg.argon2_mem_kib) != PL_OK)
    c->pwhash[0] = '\0';
}

static void pl__hash_done(uv_work_t *w, int status) {
  pl_admin_call *c = w->data;
  if (status != 0 || !c->pwhash[0]) {
    c->req.status = PL_ERR_INTERNAL;
    pl__done(&c->req);
    return;
  }
  c->req.u.admin.in.pwhash = c->pwhash;
  pl_store_submit(c->a->cfg.store, &c->req);
}

/* A backup runs on libuv's pool, never on the store thread: a copy of a
 * large database there would hold every send for its whole length. */
static void pl__backup_work(uv_work_t *w) {
  pl_admin_call *c = w->data;
  c->req.status = pl_store_backup(c->a->cfg.store, c->path, &c->req.u.admin.out.db_bytes);
  if (c->req.status != PL_OK && c->req.status != PL_ERR_USER_EXISTS)
    c->req.status = PL_ERR_INTERNAL;
}

static void pl__backup_done(uv_work_t *w, int status) {
  pl_admin_call *c = w->data;
  if (status != 0)
    c->req.status = PL_ERR_INTERNAL;
  pl__done(&c->req);
}

/* Holds x and sends the call on: through the hashing pool if it sets a
 * password, to a pool thread for a backup. */
static void pl__submit(pl_admin_call *c, pl_http_res *res) {
  c->req.op = PL_STORE_ADMIN;
  c->req.done = pl__done; /* origin NULL: on the store thread */
  pl_http_ex_hold(c->x);
  res->status = 0;
  if (c->req.u.admin.in.action == PL_ADMIN_BACKUP) {
    c->work.data = c;
    if (uv_queue_work(pl_loop_uv(pl_http_ex_loop(c->x)), &c->work, pl__backup_work, pl__backup_done) != 0) {
      c->req.status = PL_ERR_INTERNAL;
      pl__done(&c->req);
    }
    return;
  }
  if (!c->password) {
    pl_store_submit(c->a->cfg.store, &c->req);
    return;
  }
  c->work.data = c;
  if (uv_queue_work(pl_loop_uv(pl_http_ex_loop(c->x)), &c->work, pl__hash_work, pl__hash_done) != 0) {
    c->req.status = PL_ERR_INTERNAL;
    pl__done(&c->req);
  }
}

/* ---- routes ----------------------------------------------------------------------------- */

static int pl__method(const pl_http_req *req, const char *m) {
  return !strcmp(req->method, m) || (!strcmp(m, "GET") && !strcmp(req->method, "HEAD"));
}

/* A refusal answered at once (and logged). */
static int pl__refuse(pl_admin_call *c, pl_http_res *res, int status, const char *code, const char *why) {
  pl_admin_error_res(res, status, code, why);
  pl__audit(c, status, NULL);
  pl__call_free(c);
  return 1;
}

static int pl__password(pl_admin_call *c, pl_http_res *res, json_t *body) {
  const char *pw = pl__jstr(body, "password");
  if (!pw || !pl_auth_valid_password(strlen(pw)))
    return pl__refuse(c, res, 400, "INVALID_ARGUMENT", "\"password\": 8 to 1024 bytes");
  c->password = pl_strdup(pw);
  return 0;
}

/* /admin/users[/NAME[/ACTION]] */
static int pl__users(pl_admin_call *c, const pl_http_req *req, const char *rest, json_t *body,
                     pl_http_res *res) {
  pl_store_admin_req *a = &c->req.u.admin;
  char action[32];
  rest = pl__seg(rest, c->user, sizeof c->user);
  pl__seg(rest, action, sizeof action);
  a->in.user = c->user;
  a->in.limit = 100;
  if (!c->user[0] && pl__method(req, "GET")) {
    char lim[16];
    pl__query(req->url, "q", c->query, sizeof c->query);
    pl__query(req->url, "after", c->after, sizeof c->after);
    if (pl__query(req->url, "limit", lim, sizeof lim))
      a->in.limit = (uint32_t)strtoul(lim, NULL, 10);
    a->in.action = PL_ADMIN_USERS;
    a->in.query = c->query;
    a->in.after = c->after;
    return 0;
  }
  if (!c->user[0] && pl__method(req, "POST")) {
    const char *u = pl__jstr(body, "user");
    if (!u || !pl_auth_valid_user(u, strlen(u)))
      return pl__refuse(c, res, 400, "INVALID_ARGUMENT", "\"user\": 1 to 32 of a-z 0-9 _ . -");
    snprintf(c->user, sizeof c->user, "%s", u);
    a->in.action = PL_ADMIN_CREATE;
    return pl__password(c, res, body);
  }
  if (!pl_auth_valid_user(c->user, strlen(c->user)))
    return pl__refuse(c, res, 404, "NOT_FOUND", "no such user");
  if (!action[0] && pl__method(req, "GET"))
    a->in.action = PL_ADMIN_USER;
  else if (!action[0] && pl__method(req, "DELETE"))
    a->in.action = PL_ADMIN_DELETE;
  else if (!strcmp(action, "disable") && pl__method(req, "POST"))
    a->in.action = PL_ADMIN_DISABLE;
  else if (!strcmp(action, "enable") && pl__method(req, "POST"))
    a->in.action = PL_ADMIN_ENABLE;
  else if (!strcmp(action, "password") && pl__method(req, "POST")) {
    a->in.action = PL_ADMIN_PASSWORD;
    return pl__password(c, res, body);
  } else if (!strcmp(action, "revoke") && pl__method(req, "POST")) {
    const char *d = pl__jstr(body, "device");
    a->in.action = PL_ADMIN_REVOKE;
    if (d) {
      snprintf(c->device, sizeof c->device, "%s", d);
      a->in.device = c->device;
    }
  } else
    return pl__refuse(c, res, 404, "NOT_FOUND", "no such admin call (docs/admin.md)");
  return 0;
}

/* /admin/groups[/GID[/members/NAME]] */
static int pl__groups(pl_admin_call *c, const pl_http_req *req, const char *rest, pl_http_res *res) {
  pl_store_admin_req *a = &c->req.u.admin;
  char gid[24], sub[16], lim[16], after[24];
  rest = pl__seg(rest, gid, sizeof gid);
  rest = pl__seg(rest, sub, sizeof sub);
  pl__seg(rest, c->user, sizeof c->user);
  a->in.group = strtoull(gid, NULL, 10);
  if (!gid[0] && pl__method(req, "GET")) {
    a->in.action = PL_ADMIN_GROUPS;
    if (pl__query(req->url, "limit", lim, sizeof lim))
      a->in.limit = (uint32_t)strtoul(lim, NULL, 10);
    if (pl__query(req->url, "after", after, sizeof after))
      a->in.after_id = strtoull(after, NULL, 10);
  } else if (a->in.group && !sub[0] && pl__method(req, "GET")) {
    a->in.action = PL_ADMIN_GROUP;
  } else if (a->in.group && !strcmp(sub, "members") && c->user[0] && pl__method(req, "DELETE")) {
    a->in.action = PL_ADMIN_REMOVE;
    a->in.user = c->user;
    a->in.by = c->who;
  } else {
    return pl__refuse(c, res, 404, "NOT_FOUND", "no such admin call (docs/admin.md)");
  }
  return 0;
}

/* /admin/invites[/CODE] */
static int pl__invites(pl_admin_call *c, const pl_http_req *req, const char *rest, json_t *body,
                       pl_http_res *res) {
  pl_store_admin_req *a = &c->req.u.admin;
  pl__seg(rest, c->code, sizeof c->code);
  a->in.code = c->code;
  if (!c->code[0] && pl__method(req, "GET")) {
    a->in.action = PL_ADMIN_INVITES;
  } else if (!c->code[0] && pl__method(req, "POST")) {
    const char *code = pl__jstr(body, "code");
    json_t *uses = json_object_get(body, "uses"), *ttl = json_object_get(body, "expires_in");
    if (code)
      snprintf(c->code, sizeof c->code, "%s", code);
    else { /* 16 random bytes, base64url: 22 characters */
      uint8_t raw[16];
      randombytes_buf(raw, sizeof raw);
      sodium_bin2base64(c->code, sizeof c->code, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    }
    if (!pl_signup_code_valid(c->code) ||
        (uses && (!json_is_integer(uses) || json_integer_value(uses) < 1)) ||
        (ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 1)))
      return pl__refuse(
          c, res, 400, "INVALID_ARGUMENT",
          "\"code\": 8 to 64 of A-Z a-z 0-9 _ -; \"uses\", \"expires_in\" (seconds): at least 1");
    a->in.action = PL_ADMIN_INVITE;
    a->in.uses = uses ? (uint64_t)json_integer_value(uses) : 1;
    a->in.expires = ttl ? pl_now_ms() + (uint64_t)json_integer_value(ttl) * 1000u : 0;
  } else if (c->code[0] && pl__method(req, "DELETE")) {
    a->in.action = PL_ADMIN_INVITE_DEL;
  } else {
    return pl__refuse(c, res, 404, "NOT_FOUND", "no such admin call (docs/admin.md)");
  }
  return 0;
}

/* POST /admin/backup: DATA/backups/parley-<ms>.db, made by the store's
 * backend on a pool thread (pl__submit). */
static int pl__backup(pl_admin_call *c, pl_http_res *res) {
  char dir[560];
  const char *instead = pl_store_backup_instead(c->a->cfg.store);
  if (instead) /* not a failure of the server's: a call this store does not take */
    return pl__refuse(c, res, 501, "NOT_SUPPORTED", instead);
  snprintf(dir, sizeof dir, "%s/backups", c->a->cfg.data);
  if (mkdir(dir, 0700) != 0 && errno != EEXIST)
    return pl__refuse(c, res, 500, "INTERNAL", "cannot make the backups directory");
  snprintf(c->path, sizeof c->path, "%s/parley-%llu.db", dir, (unsigned long long)pl_now_ms());
  c->req.u.admin.in.action = PL_ADMIN_BACKUP;
  c->req.u.admin.in.path = c->path;
  return 0;
}

/* Calls answered on the loop: maintenance and the word list. */
static int pl__local(pl_admin_call *c, const char *what, json_t *body, pl_http_res *res) {
  if (!strcmp(what, "drain")) {
    json_t *on = json_object_get(body, "on");
    int drain = !on || json_is_true(on), close = drain && json_is_true(json_object_get(body, "close"));
    pl_core_set_draining(c->a->cfg.core, drain);
    pl_warn("admin: node %s by %s: new sign-ins %s%s", drain ? "draining" : "back in service", c->who,
            drain ? "get MAINTENANCE, /healthz answers 503" : "are taken again",
            close ? "; closing every client session" : "");
    if (close && c->a->cfg.close_sessions) /* they reconnect through the balancer, to another node */
      c->a->cfg.close_sessions(c->a->cfg.ud);
    pl_admin_json_res(res, 200, json_pack("{s:b,s:b}", "draining", drain, "closed", close));
  } else {
    char why[300] = "";
    long n = c->a->cfg.reload_filter ? c->a->cfg.reload_filter(c->a->cfg.ud, why, sizeof why) : -1;
    if (n < 0)
      pl_admin_error_res(res, 409, "FILTER", why[0] ? why : "no --filter-words list is configured");
    else
      pl_admin_json_res(res, 200, json_pack("{s:I}", "entries", (json_int_t)n));
  }
  pl__audit(c, res->status, NULL);
  pl__call_free(c);
  return 1;
}

/* Which call path is; 1 if answered (a refusal or a local call), 0 to submit. */
static int pl__dispatch(pl_admin_call *c, const pl_http_req *req, const char *path, json_t *body,
                        pl_http_res *res) {
  char top[32];
  const char *rest = pl__seg(path + strlen("/admin/"), top, sizeof top);
  if (!strcmp(top, "users"))
    return pl__users(c, req, rest, body, res);
  if (!strcmp(top, "groups"))
    return pl__groups(c, req, rest, res);
  if (!strcmp(top, "invites"))
    return pl__invites(c, req, rest, body, res);
  if (!strcmp(top, "stats") && !*rest && pl__method(req, "GET")) {
    c->req.u.admin.in.action = PL_ADMIN_STATS;
    c->req.u.admin.in.limit = 10;
    return 0;
  }
  if (!strcmp(top, "queues") && !*rest && pl__method(req, "GET")) {
    char lim[16];
    c->req.u.admin.in.action = PL_ADMIN_TOP_QUEUES;
    c->req.u.admin.in.limit =
        pl__query(req->url, "limit", lim, sizeof lim) ? (uint32_t)strtoul(lim, NULL, 10) : 10;
    return 0;
  }
  if (!strcmp(top, "backup") && !*rest && pl__method(req, "POST"))
    return pl__backup(c, res);
  if ((!strcmp(top, "drain") || (!strcmp(top, "filter") && !strcmp(rest, "reload"))) &&
      pl__method(req, "POST"))
    return pl__local(c, top, body, res);
  return pl__refuse(c, res, 404, "NOT_FOUND", "no such admin call (docs/admin.md)");
}

/* The token's name in c->who; else answers 401 (a wrong token) or 404 (no
 * admin token exists: the API is off) and returns 0. */
static int pl__authorized(pl_admin_call *c, const pl_http_req *req, pl_http_res *res) {
  const char *tok = pl_http_bearer(req);
  int ok = pl_admin_tok_check(c->a->cfg.data, tok, c->who);
  if (ok > 0)
    return 1;
  snprintf(c->who, sizeof c->who, "%s", tok ? "(bad token)" : "(no token)");
  if (ok < 0)
    pl__refuse(c, res, 404, "ADMIN_OFF",
               "the admin API is off: make a token with parleyd admin-token create");
  else {
    res->extra = "WWW-Authenticate: Bearer realm=\"admin\"\r\n";
    pl__refuse(c, res, 401, "UNAUTHORIZED", "an admin token is needed (Authorization: Bearer padm_...)");
  }
  return 0;
}

int pl_admin_route(pl_admin *a, const pl_http_req *req, const char *path, pl_http_res *res, pl_http_ex *x) {
  if (strncmp(path, "/admin", 6) || (path[6] != '\0' && path[6] != '/'))
    return 0;
  pl_admin_call *c = pl_calloc(1, sizeof *c);
  c->a = a;
  c->x = x;
  pl_addr peer = pl_http_ex_peer(x);
  char ps[PL_ADDR_STR];
  snprintf(c->peer, sizeof c->peer, "%s", pl_addr_str(&peer, ps));
  snprintf(c->what, sizeof c->what, "%s %.180s", req->method, path);
  if (!pl__authorized(c, req, res))
    return 1;
  json_t *body = NULL;
  if (req->body.len) {
    body = json_loadb((const char *)req->body.p, req->body.len, 0, NULL);
    if (!json_is_object(body)) {
      json_decref(body);
      return pl__refuse(c, res, 400, "INVALID_ARGUMENT", "the body must be a JSON object");
    }
  }
  int answered = path[6] == '\0' ? pl__refuse(c, res, 404, "NOT_FOUND", "see docs/admin.md for the calls")
                                 : pl__dispatch(c, req, path, body, res);
  json_decref(body);
  if (!answered)
    pl__submit(c, res);
  return 1;
}
