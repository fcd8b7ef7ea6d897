#include "pl_lp.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/pl_log.h"
#include "../common/pl_map.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"
#include "pl_tcp.h"
#include "web/pl_json.h"

#define PL__WAIT_DEFAULT_S 25
#define PL__WAIT_MAX_S 55
/* An ended session keeps its last frames (the Error saying why) this long. */
#define PL__GONE_KEEP_MS 30000
/* Frames waiting for a GET; past this the client has stopped polling
 * (without limits; with them, at their output budget). */
#define PL__MAX_OUT (4u << 20)

typedef struct pl_lp_sess pl_lp_sess;

struct pl_lp {
  pl_loop *loop;
  int index;
  const pl_conn_handler *h;
  uint32_t max_frame;
  pl_limits *limits;
  pl_lp_sess *list;
  size_t count;
  pl_map by_key; /* the sid's random part -> session */
};

/* A request received while the session paused, decoded (pl_json). */
typedef struct pl__held {
  struct pl__held *next;
  pl_conn_msg m;
  size_t size; /* its encoded size: for max_frame, and counted in the limits */
} pl__held;

struct pl_lp_sess {
  pl_conn c; /* first: the session layer sees a pl_conn */
  pl_lp *lp;
  uint64_t key;
  char sid[48];
  pl_bytes out;                /* the JSON frames to give, joined by ',' */
  pl__held *held, **held_tail; /* requests waiting while the session paused */
  size_t held_bytes;           /* their sizes, summed */
  pl_http_ex *wait;
  uint64_t wait_until, closed_at;
  pl_flusher flusher;
  int paused, closing, told, doomed;
  int counted; /* in the limits under c.ip_key: leaves them when destroyed */
  int oneshot; /* a REST register/login: answer with its AuthOk or Error, then end */
  pl_lp_sess *prev, *next;
};

enum { OP_OPEN, OP_POST, OP_GET, OP_DELETE, OP_AUTH };

/* ---- answers --------------------------------------------------------- */

static void pl__account(pl_lp_sess *s);

static void pl__reply(pl_http_ex *x, int status, const void *body, size_t n) {
  pl_http_res res = {.status = status, .type = "application/json"};
  pl_bytes_append(&res.body, body, n);
  pl_http_ex_reply(x, &res);
}

/* 429 Too Many Requests, with Retry-After in whole seconds (rounded up). */
static void pl__reply_retry(pl_http_ex *x, const char *body, const json_t *retry_ms) {
  json_int_t ms = json_is_integer(retry_ms) ? json_integer_value(retry_ms) : 1000;
  char extra[48];
  snprintf(extra, sizeof extra, "Retry-After: %lld\r\n", (long long)((ms + 999) / 1000));
  pl_http_res res = {.status = 429, .type = "application/json", .extra = extra};
  pl_bytes_append(&res.body, body, strlen(body));
  pl_http_ex_reply(x, &res);
}

static void pl__reply_error(pl_http_ex *x, int status, const char *why) {
  json_t *o = json_pack("{s:s, s:i}", "error", why, "status", status);
  char *b = o ? json_dumps(o, JSON_COMPACT) : NULL;
  pl__reply(x, status, b ? b : "{}", b ? strlen(b) : 2);
  free(b);
  json_decref(o);
}

/* Gives the held GET everything queued, as one JSON array. */
static void pl__give(pl_lp_sess *s) {
  if (!s->wait)
    return;
  pl_http_res res = {.status = 200, .type = "application/json"};
  pl_bytes_append(&res.body, "[", 1);
  pl_bytes_append(&res.body, s->out.p, s->out.len);
  pl_bytes_append(&res.body, "]\n", 2);
  pl_bytes_free(&s->out);
  s->c.out_bytes = 0;
  pl__account(s);
  pl_http_ex_reply(s->wait, &res);
  s->wait = NULL;
}

/* HTTP status for a protocol error answering a REST call. */
static int pl__status_of(const char *code) {
  if (!strcmp(code, "ERR_BAD_CREDENTIALS") || !strcmp(code, "ERR_BAD_TOKEN"))
    return 401;
  if (!strcmp(code, "ERR_USER_EXISTS"))
    return 409;
  if (!strcmp(code, "ERR_TOO_MANY_DEVICES"))
    return 403;
  if (!strcmp(code, "ERR_RATE_LIMITED"))
    return 429;
  if (!strcmp(code, "ERR_INTERNAL") || !strcmp(code, "ERR_SHUTTING_DOWN") ||
      !strcmp(code, "ERR_STORAGE_FULL"))
    return 503;
  return 400;
}

static void pl__close(pl_conn *c);

/* A REST call's session: once its AuthOk or Error is there, that is the
 * answer (the AuthOk's fields, or {"error":CODE,...}) and the session ends. */
static void pl__give_oneshot(pl_lp_sess *s) {
  pl_bytes arr = {0};
  pl_bytes_append(&arr, "[", 1);
  pl_bytes_append(&arr, s->out.p, s->out.len);
  pl_bytes_append(&arr, "]", 1);
  json_t *frames = json_loadb((const char *)arr.p, arr.len, 0, NULL);
  pl_bytes_free(&arr);
  json_t *answer = NULL;
  int status = 0;
  for (size_t i = 0; frames && i < json_array_size(frames) && !status; i++) {
    json_t *f = json_array_get(frames, i);
    const char *type = json_string_value(json_object_get(f, "type"));
    if (type && !strcmp(type, "auth_ok")) {
      status = 200;
      answer = json_deep_copy(f);
      json_object_del(answer, "type");
    } else if (type && !strcmp(type, "error")) {
      const char *code = json_string_value(json_object_get(f, "code"));
      status = pl__status_of(code ? code : "");
      const char *msg = json_string_value(json_object_get(f, "message"));
      answer = json_pack("{s:s, s:s, s:i}", "error", code ? code : "", "message", msg ? msg : "", "status",
                         status);
      json_t *ra = json_object_get(f, "retry_after_ms");
      if (ra)
        json_object_set(answer, "retry_after_ms", ra);
    }
  }
  json_decref(frames);
  if (!status && !s->closing)
    return; /* a Welcome so far: the answer is still to come */
  char *body = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
  if (body && status == 429)
    pl__reply_retry(s->wait, body, json_object_get(answer, "retry_after_ms"));
  else if (body)
    pl__reply(s->wait, status, body, strlen(body));
  else
    pl__reply_error(s->wait, 503, "the session ended without an answer");
  free(body);
  json_decref(answer);
  s->wait = NULL;
  pl_bytes_free(&s->out);
  pl__close(&s->c);
}

/* ---- the session's life ------------------------------------------------ */

/* What the session's buffers hold, for the server-wide bound. */
static void pl__account(pl_lp_sess *s) {
  if (s->c.limits)
    pl_limits_account(s->c.limits, &s->c.mem_counted, s->out.cap + s->held_bytes);
}

static void pl__unlink(pl_lp_sess *s) {
  pl_lp *lp = s->lp;
  if (s->prev)
    s->prev->next = s->next;
  else
    lp->list = s->next;
  if (s->next)
    s->next->prev = s->prev;
  pl_map_del(&lp->by_key, s->key);
  lp->count--;
}

static pl__held *pl__pop_held(pl_lp_sess *s) {
  pl__held *h = s->held;
  if (!h)
    return NULL;
  if (!(s->held = h->next))
    s->held_tail = &s->held;
  s->held_bytes -= h->size;
  return h;
}

static void pl__drop_held(pl_lp_sess *s) {
  for (pl__held *h; (h = pl__pop_held(s));) {
    h->m.release(h->m.msg, h->m.ud);
    pl_free(h);
  }
}

static void pl__destroy(pl_lp_sess *s) {
  if (s->wait)
    pl__give(s);
  if (s->flusher.queued) { /* the loop still holds it for this pass: it goes then */
    s->doomed = 1;
    return;
  }
  pl__unlink(s);
  pl_bytes_free(&s->out);
  pl__drop_held(s);
  pl__account(s);
  if (s->counted)
    pl_limits_leave(s->c.limits, s->c.ip_key);
  pl_free(s);
}

/* After the session layer let go: nothing more reaches it. */
static void pl__tell_closed(pl_lp_sess *s) {
  if (s->told)
    return;
  s->told = 1;
  s->c.h->on_close(&s->c, s->c.h->ud);
}

/* End of a loop pass: answer a held GET, finish a close. */
static void pl__flush(pl_flusher *f) {
  pl_lp_sess *s = (pl_lp_sess *)((char *)f - offsetof(pl_lp_sess, flusher));
  if (s->doomed) {
    pl__destroy(s);
    return;
  }
  if (s->closing)
    pl__tell_closed(s);
  if (s->wait && s->oneshot)
    pl__give_oneshot(s);
  else if (s->wait && (s->out.len || s->closing))
    pl__give(s);
  if (s->oneshot && s->closing)
    pl__tell_closed(s);
  pl_conn *c = &s->c;
  if (!s->told && c->want_drain && c->out_bytes <= c->drain_mark / 2) {
    c->want_drain = 0;
    c->h->on_drain(c, c->h->ud);
  }
  if (s->told && !s->out.len && !s->wait)
    pl__destroy(s); /* everything was given: a later GET learns it is gone */
}

static void pl__mark(pl_lp_sess *s) { pl_loop_mark(s->lp->loop, &s->flusher); }

static void pl__close(pl_conn *c) {
  pl_lp_sess *s = (pl_lp_sess *)c;
  if (s->closing)
    return;
  s->closing = 1;
  s->closed_at = pl_mono_ms();
  if (!s->told && s->c.h->on_closing)
    s->c.h->on_closing(&s->c, s->c.h->ud);
  pl__mark(s);
}

static void pl__write(pl_conn *c, pl_buf *b) {
  pl_lp_sess *s = (pl_lp_sess *)c;
  if (s->closing)
    return;
  size_t before = s->out.len;
  if (before)
    pl_bytes_append(&s->out, ",", 1);
  if (pl_json_from_frame(b->data, b->len, &s->out) != PL_OK)
    s->out.len = before;
  c->out_bytes = s->out.len;
  pl__account(s);
  if (s->out.len > (c->limits ? pl_limits_cfg(c->limits)->max_output : PL__MAX_OUT)) {
    if (c->limits)
      pl_limits_count_cut(c->limits, PL_ERR_SLOW_CONSUMER);
    pl_warn("long-poll %s: %zu bytes nobody collects; ending it", s->sid, s->out.len);
    pl_bytes_free(&s->out);
    pl__close(c);
  }
  pl__mark(s);
}

/* The requests held go to the session, in order, until it pauses. */
static void pl__dispatch(pl_lp_sess *s) {
  while (s->held && !s->paused && !s->closing) {
    pl__held *h = pl__pop_held(s);
    if (1 + h->size > s->c.max_frame) { /* as its native frame would be: the rest goes too */
      h->m.release(h->m.msg, h->m.ud);
      pl_free(h);
      s->c.h->on_bad_input(&s->c, PL_ERR_FRAME_TOO_LARGE, s->c.h->ud);
      pl__drop_held(s);
      break;
    }
    if (s->c.h->on_message(&s->c, &h->m, s->c.h->ud))
      s->paused = 1;
    pl_free(h);
  }
  if (s->closing)
    pl__drop_held(s);
}

static void pl__pause(pl_conn *c) { ((pl_lp_sess *)c)->paused = 1; }

static void pl__resume(pl_conn *c) {
  pl_lp_sess *s = (pl_lp_sess *)c;
  s->paused = 0;
  pl__dispatch(s);
}

static const pl_transport_ops pl__lp_ops = {.name = "lp",
                                            .kind = PL_CONN_LP,
                                            .write = pl__write,
                                            .close = pl__close,
                                            .pause = pl__pause,
                                            .resume = pl__resume};

/* ---- requests, on the session's loop ------------------------------------ */

/* A new session; peer: the address of the HTTP client that opened it (what
 * the session layer's per-address limits count). */
static pl_lp_sess *pl__open(pl_lp *lp, pl_addr peer) {
  pl_lp_sess *s = pl_calloc(1, sizeof *s);
  unsigned char r[16];
  do {
    randombytes_buf(r, sizeof r);
    memcpy(&s->key, r, sizeof s->key);
  } while (!s->key || pl_map_get(&lp->by_key, s->key));
  char hex[33];
  sodium_bin2hex(hex, sizeof hex, r, sizeof r);
  snprintf(s->sid, sizeof s->sid, "%d-%s", lp->index, hex);
  s->lp = lp;
  s->c.ops = &pl__lp_ops;
  s->c.h = lp->h;
  s->c.loop = lp->loop;
  s->c.max_frame = lp->max_frame;
  s->c.limits = lp->limits;
  s->c.last_rx_ms = pl_mono_ms();
  s->c.id = pl_conn_new_id();
  s->c.peer = peer;
  s->flusher.fn = pl__flush;
  s->held_tail = &s->held;
  s->next = lp->list;
  if (lp->list)
    lp->list->prev = s;
  lp->list = s;
  lp->count++;
  pl_map_put(&lp->by_key, s->key, s);
  lp->h->on_open(&s->c, lp->h->ud);
  return s;
}

/* The random part of "N-<32 hex>" as a map key; 0 if malformed. */
static uint64_t pl__key(const char *sid, int *index) {
  char *dash;
  long i = strtol(sid, &dash, 10);
  unsigned char r[16];
  size_t n = 0;
  if (dash == sid || *dash != '-' || i < 0 || i > 1024 || strlen(dash + 1) != 32 ||
      sodium_hex2bin(r, sizeof r, dash + 1, 32, NULL, &n, NULL) != 0 || n != 16)
    return 0;
  *index = (int)i;
  uint64_t k;
  memcpy(&k, r, sizeof k);
  return k;
}

static pl_lp_sess *pl__find(pl_lp *lp, const char *sid) {
  int index;
  uint64_t k = pl__key(sid, &index);
  pl_lp_sess *s = k ? pl_map_get(&lp->by_key, k) : NULL;
  return s && strlen(s->sid) == strlen(sid) && sodium_memcmp(s->sid, sid, strlen(sid)) == 0 ? s : NULL;
}

static void pl__json_release(ProtobufCMessage *msg, void *ud) {
  (void)msg;
  pl_json_msg_free(ud);
}

/* pl_json_to_msgs' callback: one request more, after those held. */
static void pl__hold(uint8_t type, ProtobufCMessage *msg, pl_json_msg *owner, void *ud) {
  pl_lp_sess *s = ud;
  pl__held *h = pl_malloc(sizeof *h);
  h->next = NULL;
  h->m = (pl_conn_msg){.type = type, .msg = msg, .release = pl__json_release, .ud = owner};
  h->size = protobuf_c_message_get_packed_size(msg);
  *s->held_tail = h;
  s->held_tail = &h->next;
  s->held_bytes += h->size;
}

/* Requests from a POST body (a JSON array of frames, or one), decoded for
 * the session's decoded entry (on_message). */
static int pl__feed(pl_lp_sess *s, const pl_bytes *body, pl_http_ex *x) {
  char why[200] = "";
  pl_err e =
      body->len ? pl_json_to_msgs((const char *)body->p, body->len, 1, pl__hold, s, why, sizeof why) : PL_OK;
  s->c.last_rx_ms = pl_mono_ms();
  pl__dispatch(s);
  pl__account(s);
  if (e != PL_OK) { /* as a malformed frame: an Error (given by the next GET), then the end */
    if (!s->closing)
      s->c.h->on_bad_input(&s->c, e, s->c.h->ud);
    if (x)
      pl__reply_error(x, 400, why);
    return -1;
  }
  return 0;
}

typedef struct pl__lp_req {
  pl_task task;
  pl_lp *lp;
  int op;
  char sid[48];
  pl_addr peer; /* OP_OPEN, OP_AUTH: the HTTP client's address */
  uint32_t wait_s;
  uint64_t ip_key; /* OP_OPEN: admitted by the limits under this key (0: not counted) */
  pl_bytes body;
  pl_http_ex *x;
} pl__lp_req;

static void pl__handle(pl_task *t) {
  pl__lp_req *r = (pl__lp_req *)t;
  pl_lp *lp = r->lp;
  pl_lp_sess *s = r->op == OP_OPEN || r->op == OP_AUTH ? pl__open(lp, r->peer) : pl__find(lp, r->sid);
  if (!s || (s->told && r->op != OP_GET)) {
    pl__reply_error(r->x, 404, "no such long-poll session");
  } else if (r->op == OP_OPEN) {
    s->c.ip_key = r->ip_key;
    s->counted = r->ip_key != 0;
    r->ip_key = 0;
    if (pl__feed(s, &r->body, r->x) == 0) {
      char b[96];
      int n = snprintf(b, sizeof b, "{\"sid\":\"%s\"}\n", s->sid);
      pl__reply(r->x, 200, b, (size_t)n);
    }
  } else if (r->op == OP_AUTH) {
    s->oneshot = 1;
    s->wait = r->x; /* answered by pl__give_oneshot */
    s->wait_until = pl_mono_ms() + 30000u;
    r->x = NULL;
    if (pl__feed(s, &r->body, NULL) != 0)
      pl__close(&s->c);
    pl__mark(s);
  } else if (r->op == OP_POST) {
    if (pl__feed(s, &r->body, r->x) == 0)
      pl__reply(r->x, 204, "", 0);
  } else if (r->op == OP_DELETE) {
    pl__close(&s->c);
    pl__reply(r->x, 204, "", 0);
  } else {       /* GET: hold it until there is something to say */
    if (s->wait) /* one GET at a time: the older one returns empty */
      pl__give(s);
    s->wait = r->x;
    s->wait_until = pl_mono_ms() + (uint64_t)r->wait_s * 1000u;
    s->c.last_rx_ms = pl_mono_ms();
    r->x = NULL;
    if (s->out.len || s->closing)
      pl__mark(s);
  }
  if (r->ip_key) /* admitted, but no session took the slot */
    pl_limits_leave(lp->limits, r->ip_key);
  pl_bytes_free(&r->body);
  pl_free(r);
}

/* ---- the route (any loop) ------------------------------------------------ */

static uint32_t pl__wait_param(const char *url) {
  const char *q = strstr(url, "?wait=");
  if (!q)
    q = strstr(url, "&wait=");
  long w = q ? strtol(q + 6, NULL, 10) : PL__WAIT_DEFAULT_S;
  return w < 0 ? 0 : w > PL__WAIT_MAX_S ? PL__WAIT_MAX_S : (uint32_t)w;
}

void pl_lp_route(const pl_lp_set *set, const pl_http_req *req, const char *path, pl_http_res *res,
                 pl_http_ex *x) {
  int op, index = -1;
  const char *sid = path[3] == '/' ? path + 4 : "";
  if (!strcmp(path, "/lp") && !strcmp(req->method, "POST"))
    op = OP_OPEN;
  else if (*sid && !strcmp(req->method, "POST"))
    op = OP_POST;
  else if (*sid && !strcmp(req->method, "GET"))
    op = OP_GET;
  else if (*sid && !strcmp(req->method, "DELETE"))
    op = OP_DELETE;
  else {
    res->status = 405;
    res->type = "application/json";
    res->extra = "Allow: POST, GET, DELETE\r\n";
    pl_bytes_append(&res->body, "{\"error\":\"Method Not Allowed\",\"status\":405}\n", 44);
    return;
  }
  pl_lp *lp = NULL;
  if (op == OP_OPEN) { /* a new session lives where its first request landed */
    for (int i = 0; i < set->n && !lp; i++)
      if (set->lps[i]->loop == pl_http_ex_loop(x))
        lp = set->lps[i];
  } else if (pl__key(sid, &index) && index < set->n) {
    lp = set->lps[index];
  }
  if (!lp) {
    res->status = 404;
    res->type = "application/json";
    pl_bytes_append(&res->body, "{\"error\":\"no such long-poll session\",\"status\":404}\n", 51);
    return;
  }
  uint64_t peer = op == OP_OPEN && lp->limits ? pl_http_ex_peer_key(x) : 0;
  if (peer && pl_limits_admit(lp->limits, peer) != PL_OK) { /* a session counts as a connection */
    res->status = 503;
    res->type = "application/json";
    res->extra = "Retry-After: 5\r\n";
    static const char busy[] = "{\"error\":\"too many connections\",\"status\":503}\n";
    pl_bytes_append(&res->body, busy, sizeof busy - 1);
    return;
  }
  pl__lp_req *r = pl_calloc(1, sizeof *r);
  r->ip_key = peer;
  r->task.fn = pl__handle;
  r->lp = lp;
  r->op = op;
  snprintf(r->sid, sizeof r->sid, "%s", sid);
  r->peer = pl_http_ex_peer(x);
  r->wait_s = pl__wait_param(req->url);
  pl_bytes_append(&r->body, req->body.p, req->body.len);
  pl_http_ex_hold(x);
  r->x = x;
  res->status = 0; /* answered from the session's loop */
  if (pl_loop_post(lp->loop, &r->task) != PL_OK) {
    pl__reply_error(x, 503, "shutting down");
    if (peer)
      pl_limits_leave(lp->limits, peer);
    pl_bytes_free(&r->body);
    pl_free(r);
  }
}

/* POST /api/register and /api/login: {"user","password","device"} (and
 * "invite" to register) in, the
 * AuthOk's fields out. Served by a one-shot session, so the rules, limits
 * and errors are exactly those of Register and Login (protocol.md 1.4). */
void pl_lp_auth(const pl_lp_set *set, const pl_http_req *req, int reg, pl_http_res *res, pl_http_ex *x) {
  /* The strings go on as JSON values, never C strings: one with a NUL or a
   * lone surrogate reaches the session whole, to be refused there. */
  json_t *in = pl_json_load((const char *)req->body.p, req->body.len, 0, NULL);
  json_t *user = json_object_get(in, "user"), *pw = json_object_get(in, "password");
  json_t *dev = json_object_get(in, "device"), *inv = json_object_get(in, "invite");
  pl_lp *lp = NULL;
  for (int i = 0; i < set->n && !lp; i++)
    if (set->lps[i]->loop == pl_http_ex_loop(x))
      lp = set->lps[i];
  if (!json_is_object(in) || !json_is_string(user) || !json_is_string(pw) || (dev && !json_is_string(dev)) ||
      (inv && !json_is_string(inv)) || !lp) {
    json_decref(in);
    res->status = 400;
    res->type = "application/json";
    static const char e[] = "{\"error\":\"ERR_INVALID_ARGUMENT\",\"message\":\"expected "
                            "{\\\"user\\\":..,\\\"password\\\":..,\\\"device\\\":..}\",\"status\":400}\n";
    pl_bytes_append(&res->body, e, sizeof e - 1);
    return;
  }
  json_t *frames =
      json_pack("[{s:s, s:i, s:s, s:s}, {s:s, s:O, s:O, s:o}]", "type", "hello", "version", 1, "kind",
                "KIND_WEB", "client_name", "rest", "type", reg ? "register" : "login", "user", user,
                "password", pw, "device", dev ? json_incref(dev) : json_string(""));
  if (reg && inv) /* the sign-up's invite code (docs/admin.md) */
    json_object_set(json_array_get(frames, 1), "invite", inv);
  pl__lp_req *r = pl_calloc(1, sizeof *r);
  r->task.fn = pl__handle;
  r->lp = lp;
  r->op = OP_AUTH;
  r->peer = pl_http_ex_peer(x);
  char *text = json_dumps(frames, JSON_COMPACT);
  pl_bytes_append(&r->body, text, strlen(text));
  free(text);
  json_decref(frames);
  json_decref(in);
  pl_http_ex_hold(x);
  r->x = x;
  res->status = 0;
  if (pl_loop_post(lp->loop, &r->task) != PL_OK) {
    pl__reply_error(x, 503, "shutting down");
    pl_bytes_free(&r->body);
    pl_free(r);
  }
}

/* ---- the registry ------------------------------------------------------------ */

pl_lp *pl_lp_new(pl_loop *loop, int index, const pl_conn_handler *h, uint32_t max_frame, pl_limits *limits) {
  pl_lp *lp = pl_calloc(1, sizeof *lp);
  lp->limits = limits;
  lp->loop = loop;
  lp->index = index;
  lp->h = h;
  lp->max_frame = max_frame;
  return lp;
}

void pl_lp_free(pl_lp *lp) {
  if (!lp)
    return;
  while (lp->list) {
    pl_lp_sess *s = lp->list;
    s->wait = NULL; /* its connection's loop is gone too */
    pl__destroy(s);
  }
  pl_map_free(&lp->by_key);
  pl_free(lp);
}

size_t pl_lp_count(const pl_lp *lp) { return lp->count; }

void pl_lp_sweep(pl_lp *lp, uint64_t now) {
  pl_lp_sess *next;
  for (pl_lp_sess *s = lp->list; s; s = next) {
    next = s->next;
    pl_conn *c = &s->c;
    if (s->wait) {
      c->last_rx_ms = now; /* a held GET is a client that is there */
      if (now >= s->wait_until && s->oneshot) {
        pl__reply_error(s->wait, 504, "no answer in time");
        s->wait = NULL;
        pl__close(c);
      } else if (now >= s->wait_until) {
        pl__give(s);
      }
    }
    if (s->closing) {
      if (s->told && now - s->closed_at > PL__GONE_KEEP_MS)
        pl__destroy(s);
    } else if (pl_conn_idle_due(c, now)) {
      c->h->on_idle(c, c->h->ud);
    }
  }
}

void pl_lp_close_all(pl_lp *lp) {
  pl_lp_sess *next;
  for (pl_lp_sess *s = lp->list; s; s = next) {
    next = s->next;
    if (!s->closing && s->c.h->on_shutdown)
      s->c.h->on_shutdown(&s->c, s->c.h->ud);
    pl__close(&s->c);
    pl__tell_closed(s);
    pl__give(s);
  }
}
