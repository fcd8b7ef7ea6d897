#include "pl_session.h"

#include <stdatomic.h>
#include <string.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"
#include "../proto/pl_strings.h"
#include "pl_auth.h"
#include "pl_filter.h"
#include "pl_presence.h"
#include "pl_rules.h"
#include "pl_workers.h"

#define PL__MAX_PEND 4096 /* pushes held while a fetch is in flight */
#define PL__MAX_ID 64     /* client message id bytes */

struct pl_core {
  pl_core_config cfg;
  pl_store *store;
  pl_router *router;
  pl_push *push; /* NULL: push notifications are off */
  pl_presence *presence;
  pthread_mutex_t filter_mu; /* guards filter (the pointer, not its use) */
  pl_filter *filter;
  pl_conn_handler handler;
  atomic_uint_fast64_t conns_open, conns_ws, conns_lp, conns_total, frames_in, messages_out, sends, errors;
  atomic_uint_fast64_t errors_by_code[PL_CORE_ERROR_CODES];
  pl_hist *delivery; /* per loop: commit -> the push on the connection's loop, us */
  int nloops;
  pl_router_sink sink;
  pl_rules_limiter *send_limit; /* Sends per user (protocol.md 10.7) */
  pl_rules_queue queue_rule;    /* a sender's share of a device queue */
  pl_throttle *throttle;        /* login throttling and hashing holds, all loops */
  pl_workers *hashers;          /* Argon2id runs here, not on libuv's shared pool */
  atomic_uint_fast32_t hash_ms; /* how long the last Argon2id run took */
};

enum { S_HELLO, S_AUTH, S_READY };
enum { SYNC_OFF, SYNC_FETCHING, SYNC_LIVE, SYNC_LAGGING };

typedef struct pl__pend {
  struct pl__pend *next;
  uint64_t qid;
  pl_buf *frame;
} pl__pend;

typedef struct pl_session {
  pl_core *core;
  pl_conn *conn; /* NULL once the connection is gone */
  pl_loop *loop;
  uint8_t state, sync, kind, paused, ack_busy, pend_overflow;
  uint32_t refs;     /* 1 for the connection + 1 per request in flight */
  uint32_t inflight; /* sends awaiting commit */
  uint64_t user_id, device_id;
  char *user, *device;
  uint64_t typing_at;          /* when the last typing-on event went (rate limit) */
  uint64_t last_sent;          /* highest qid written to the client */
  uint64_t ack_want, ack_done; /* cumulative acks: asked for / committed */
  pl__pend *pend, *pend_tail;
  uint32_t npend;
} pl_session;

/* A store request of a session; it also keeps the frame whose strings the
 * request borrows, so nothing is copied on the send path. */
typedef struct pl__sreq {
  pl_task task;
  pl_store_req req;
  pl_session *s;
  ProtobufCMessage *msg;
  char *pwhash;
  uint64_t uid; /* login: the user found by GET_USER */
  char token[PL_AUTH_TOKEN_MAX];
  uint8_t *masked;   /* Send: the body with filtered words masked */
  uint32_t retry_ms; /* an auth step refused with RATE_LIMITED: its retry_after_ms */
} pl__sreq;

typedef struct pl__work {
  pl_job job;
  pl__sreq *sr;
  int verify; /* 0: hash the password (register); 1: check it (login) */
  int ok;
  char hold[64]; /* the throttle key of this address's hashing slot */
  char hash[PL_AUTH_HASH_MAX];
} pl__work;

#define PL__SREQ(r) ((pl__sreq *)((char *)(r)-offsetof(pl__sreq, req)))

static void pl__start_sync(pl_session *s);

/* ---- session lifetime, output, errors ---------------------------------- */

static void pl__pend_clear(pl_session *s) {
  while (s->pend) {
    pl__pend *p = s->pend;
    s->pend = p->next;
    pl_buf_unref(p->frame);
    pl_free(p);
  }
  s->pend_tail = NULL;
  s->npend = 0;
  s->pend_overflow = 0;
}

static void pl__unref(pl_session *s) {
  if (--s->refs)
    return;
  pl__pend_clear(s);
  pl_free(s->user);
  pl_free(s->device);
  pl_free(s);
}

static void pl__write(pl_session *s, uint8_t type, const ProtobufCMessage *m) {
  if (!s->conn)
    return;
  pl_buf *b = pl_frame_encode(type, m);
  pl_strings_repair(type, b->data + PL_FRAME_HDR, b->len - PL_FRAME_HDR); /* rows from before the check */
  pl_conn_write(s->conn, b);
  pl_buf_unref(b);
}

/* An Error frame; why, if not NULL, replaces the code's generic message
 * (say, which field is wrong and how); retry_ms goes with RATE_LIMITED. */
static void pl__error_full(pl_session *s, pl_err e, const char *ref, const char *why, uint32_t retry_ms) {
  Parley__Error m = PARLEY__ERROR__INIT;
  m.code = (Parley__ErrorCode)pl_err_to_wire(e);
  m.message = (char *)(why ? why : pl_err_msg(e));
  m.ref = (char *)(ref ? ref : "");
  m.retry_after_ms = retry_ms;
  atomic_fetch_add_explicit(&s->core->errors, 1, memory_order_relaxed);
  if (m.code >= 0 && m.code < PL_CORE_ERROR_CODES)
    atomic_fetch_add_explicit(&s->core->errors_by_code[m.code], 1, memory_order_relaxed);
  pl__write(s, PARLEY__FRAME_TYPE__FRAME_ERROR, &m.base);
}

static void pl__error(pl_session *s, pl_err e, const char *ref) { pl__error_full(s, e, ref, NULL, 0); }
static void pl__error_retry(pl_session *s, pl_err e, const char *ref, uint32_t retry_ms) {
  pl__error_full(s, e, ref, NULL, retry_ms);
}
static void pl__error_why(pl_session *s, pl_err e, const char *ref, const char *why) {
  pl__error_full(s, e, ref, why, 0);
}

/* A protocol violation: answer with the code, then close. */
static void pl__fatal(pl_session *s, pl_err e) {
  if (!s->conn)
    return;
  pl_info("conn %llu %s: closing: %s", (unsigned long long)s->conn->id, s->conn->peer, pl_err_name(e));
  pl__error(s, e, NULL);
  pl_conn_close(s->conn);
}

static void pl__resume_reading(pl_session *s) {
  if (s->paused && s->conn) {
    s->paused = 0;
    s->conn->ops->resume(s->conn);
  }
}

/* ---- store requests ----------------------------------------------------- */

static pl__sreq *pl__sreq_new(pl_session *s, pl_store_op op, ProtobufCMessage *msg, pl_store_done_cb done) {
  pl__sreq *sr = pl_calloc(1, sizeof *sr);
  sr->s = s;
  sr->msg = msg;
  sr->req.op = op;
  sr->req.done = done;
  sr->req.origin = s->loop;
  s->refs++;
  return sr;
}

static void pl__sreq_free(pl__sreq *sr) {
  pl_session *s = sr->s;
  pl_store_req_clear(&sr->req);
  if (sr->msg)
    protobuf_c_message_free_unpacked(sr->msg, NULL);
  pl_free(sr->pwhash);
  pl_free(sr->masked);
  pl_free(sr);
  pl__unref(s);
}

static void pl__submit(pl__sreq *sr) { pl_store_submit(sr->s->core->store, &sr->req); }

static void pl__sreq_task(pl_task *t) {
  pl__sreq *sr = (pl__sreq *)t;
  sr->req.done(&sr->req);
}

static void pl__store_post(void *ud, void *origin, pl_store_req *req) {
  (void)ud;
  pl__sreq *sr = PL__SREQ(req);
  sr->task.fn = pl__sreq_task;
  /* A loop closes its mailbox only after the store thread has stopped, so a
   * refused post is a synchronous SHUTTING_DOWN answer to a submit made on
   * that very loop (say, the last-seen write of a connection closed by the
   * shutdown): complete it here, or its session is never released. */
  if (pl_loop_post(origin, &sr->task) != PL_OK)
    sr->task.fn(&sr->task);
}

static void pl__store_deliver(void *ud, const pl_msg *m, const uint64_t *devices, size_t n) {
  pl_core *core = ud;
  core->router->ops->deliver(core->router, m, devices, n);
  pl_push_queued(core->push, m, devices, n); /* the offline ones with a token */
}

static void pl__store_deliver_group(void *ud, const pl_msg *m, uint64_t gid, uint64_t skip) {
  pl_core *core = ud;
  core->router->ops->deliver_group(core->router, m, gid, skip);
  pl_push_group(core->push, m, gid, skip);
}

static void pl__store_group_change(void *ud, const pl_group_change *c) {
  pl_core *core = ud;
  core->router->ops->group_change(core->router, c);
}

static void pl__store_device_groups(void *ud, uint64_t device, const uint64_t *gids, size_t n) {
  pl_core *core = ud;
  core->router->ops->device_groups(core->router, device, gids, n);
}

static void pl__store_deliver_end(void *ud) {
  pl_core *core = ud;
  core->router->ops->deliver_end(core->router);
}

/* ---- delivery cursor ---------------------------------------------------- */

static void pl__send_msg(pl_session *s, uint64_t qid, pl_buf *frame) {
  pl_conn_write(s->conn, frame);
  s->last_sent = qid;
  atomic_fetch_add_explicit(&s->core->messages_out, 1, memory_order_relaxed);
}

/* The client reads too slowly: stop taking pushes, refetch once drained. */
static void pl__lag(pl_session *s) {
  s->sync = SYNC_LAGGING;
  pl__pend_clear(s);
  s->conn->want_drain = 1;
}

static void pl__fetch_done(pl_store_req *req) {
  pl__sreq *sr = PL__SREQ(req);
  pl_session *s = sr->s;
  if (!s->conn || s->state != S_READY)
    goto out;
  if (req->status != PL_OK) {
    pl__fatal(s, PL_ERR_INTERNAL);
    goto out;
  }
  for (size_t i = 0; i < req->out.nmsgs; i++) {
    if (req->out.msgs[i].qid <= s->last_sent)
      continue;
    if (s->conn->out_bytes > s->core->cfg.out_high) {
      /* A page of big messages would pile up: the rest stays in the queue
       * for the fetch after the drain, so a slow reader costs one mark. */
      pl__lag(s);
      goto out;
    }
    pl_buf *b = pl_router_encode(&req->out.msgs[i]);
    pl__send_msg(s, req->out.msgs[i].qid, b);
    pl_buf_unref(b);
  }
  if (req->out.more || s->pend_overflow) {
    /* Pushes held meanwhile are in the queue too: the next page has them. */
    pl__pend_clear(s);
    if (s->conn->out_bytes < s->core->cfg.out_high)
      pl__start_sync(s);
    else
      pl__lag(s);
    goto out;
  }
  for (pl__pend *p = s->pend; p; p = p->next)
    if (p->qid > s->last_sent)
      pl__send_msg(s, p->qid, p->frame);
  pl__pend_clear(s);
  s->sync = SYNC_LIVE;
out:
  pl__sreq_free(sr);
}

static void pl__start_sync(pl_session *s) {
  s->sync = SYNC_FETCHING;
  pl__pend_clear(s);
  pl__sreq *sr = pl__sreq_new(s, PL_STORE_FETCH, NULL, pl__fetch_done);
  sr->req.in.device_id = s->device_id;
  sr->req.in.user_id = s->user_id; /* its groups' histories */
  sr->req.in.after = s->last_sent;
  sr->req.in.limit = s->core->cfg.fetch_batch;
  pl__submit(sr);
}

/* Router sink: a committed message for this session's device. */
static void pl__push(void *ep, uint64_t qid, pl_buf *frame) {
  pl_session *s = ep;
  if (!s->conn || s->state != S_READY)
    return;
  if (qid == 0) { /* ephemeral (presence, typing): dropped for a slow reader */
    if (s->conn->out_bytes <= s->core->cfg.out_high)
      pl_conn_write(s->conn, frame);
    return;
  }
  switch (s->sync) {
  case SYNC_FETCHING:
    if (s->npend >= PL__MAX_PEND) {
      s->pend_overflow = 1;
      return;
    }
    pl__pend *p = pl_malloc(sizeof *p);
    p->next = NULL;
    p->qid = qid;
    p->frame = pl_buf_ref(frame);
    if (s->pend_tail)
      s->pend_tail->next = p;
    else
      s->pend = p;
    s->pend_tail = p;
    s->npend++;
    return;
  case SYNC_LIVE:
    if (qid <= s->last_sent)
      return;
    if (s->conn->out_bytes > s->core->cfg.out_high) {
      pl__lag(s);
      return;
    }
    pl__send_msg(s, qid, frame);
    return;
  default: return; /* lagging: the next fetch reads it from the queue */
  }
}

static void pl__gone(pl_session *s);

/* The device's presence goes with this connection (pl__gone) here, not at
 * its close: the close sees state AUTH and skips it, and the newer
 * connection counted itself online already (audit finding 9: without this
 * the user stayed online for good). */
static void pl__kick(void *ep) {
  pl_session *s = ep;
  if (!s->conn)
    return;
  pl_info("conn %llu %s: %s@%s closed: a newer connection took the device, or it was revoked",
          (unsigned long long)s->conn->id, s->conn->peer, s->user, s->device);
  s->core->router->ops->detach(s->core->router, s->device_id, s->loop, s);
  pl__gone(s);
  s->state = S_AUTH;
  s->sync = SYNC_OFF;
  pl_conn_close(s->conn);
}

/* ---- authentication ----------------------------------------------------- */

/* The attempt an auth request is (pl_throttle's rules). */
static pl_auth_attempt pl__attempt(const pl__sreq *sr) {
  if (sr->req.op == PL_STORE_RESUME)
    return PL_ATTEMPT_RESUME;
  return sr->req.op == PL_STORE_REGISTER ? PL_ATTEMPT_REGISTER : PL_ATTEMPT_LOGIN;
}

static void pl__peer_addr(const pl_session *s, char out[48]) { pl_throttle_addr(s->conn->peer, out, 48); }

/* Answers a throttled attempt at once, without hashing. */
static void pl__refuse(pl_session *s, const char *what, const char *user, uint64_t wait_ms) {
  uint32_t ms = wait_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)wait_ms;
  pl_info("conn %llu %s: %s refused: rate limited (user=%s retry_after_ms=%u)",
          (unsigned long long)s->conn->id, s->conn->peer, what, user ? user : "-", ms);
  pl__error_retry(s, PL_ERR_RATE_LIMITED, NULL, ms);
}

/* 1 (after answering) if the throttle refuses this attempt now. */
static int pl__throttled(pl_session *s, pl_auth_attempt a, const char *user) {
  static const char *const what[] = {"register", "login", "resume"};
  char addr[48];
  pl__peer_addr(s, addr);
  const pl_core *core = s->core;
  uint64_t wait = pl_throttle_auth_admit(core->throttle, &core->cfg.auth, a, user, addr, pl_mono_ms());
  if (wait)
    pl__refuse(s, what[a], user, wait);
  return wait != 0;
}

/* A failed login or resume: counted, and logged with the user name and
 * address (one line an operator can feed to fail2ban; operations.md). */
static void pl__auth_failed(pl_session *s, pl__sreq *sr) {
  pl_auth_attempt a = pl__attempt(sr);
  const char *user = a == PL_ATTEMPT_LOGIN ? ((Parley__Login *)sr->msg)->user : NULL;
  char addr[48];
  pl__peer_addr(s, addr);
  pl_throttle_auth_failed(s->core->throttle, &s->core->cfg.auth, a, user, addr, pl_mono_ms());
  if (a == PL_ATTEMPT_LOGIN)
    pl_warn("auth: failed login: user=%s addr=%s conn=%llu", user, addr, (unsigned long long)s->conn->id);
  else
    pl_warn("auth: failed resume: unknown, revoked or expired token addr=%s conn=%llu", addr,
            (unsigned long long)s->conn->id);
}

static void pl__authenticated(pl_session *s, pl__sreq *sr, const char *user, const char *device,
                              int created) {
  char addr[48];
  pl__peer_addr(s, addr);
  pl_throttle_auth_succeeded(s->core->throttle, pl__attempt(sr), user, addr);
  s->state = S_READY;
  s->conn->auth_deadline_ms = 0;
  s->user_id = sr->req.op == PL_STORE_LOGIN_DEVICE ? sr->uid : sr->req.out.user_id;
  s->device_id = sr->req.out.device_id;
  s->user = pl_strdup(user);
  s->device = pl_strdup(device);
  s->core->router->ops->attach(s->core->router, s->device_id, s->loop, s);
  pl_presence_online(s->core->presence, s->user_id, s->user);
  Parley__AuthOk m = PARLEY__AUTH_OK__INIT;
  m.user = s->user;
  m.device = s->device;
  m.device_id = s->device_id;
  m.token = sr->token;
  m.created = created;
  pl__write(s, PARLEY__FRAME_TYPE__FRAME_AUTH_OK, &m.base);
  pl_info("conn %llu %s: %s@%s authenticated (%s)", (unsigned long long)s->conn->id, s->conn->peer, s->user,
          s->device, sr->req.op == PL_STORE_RESUME ? "token" : "password");
  pl__start_sync(s);
}

/* Ends an auth step: a request error keeps the connection for a retry. */
static void pl__auth_end(pl__sreq *sr, pl_err e) {
  pl_session *s = sr->s;
  if (e != PL_OK && s->conn) {
    pl_info("conn %llu %s: auth failed: %s", (unsigned long long)s->conn->id, s->conn->peer, pl_err_name(e));
    if (e == PL_ERR_BAD_CREDENTIALS || e == PL_ERR_BAD_TOKEN)
      pl__auth_failed(s, sr);
    pl__error_retry(s, e, NULL, e == PL_ERR_RATE_LIMITED ? sr->retry_ms : 0);
  }
  pl__resume_reading(s);
  pl__sreq_free(sr);
}

static void pl__auth_done(pl_store_req *req) {
  pl__sreq *sr = PL__SREQ(req);
  pl_session *s = sr->s;
  if (!s->conn || req->status != PL_OK) {
    pl__auth_end(sr, req->status);
    return;
  }
  if (req->op == PL_STORE_RESUME) {
    Parley__Resume *r = (Parley__Resume *)sr->msg;
    snprintf(sr->token, sizeof sr->token, "%s", r->token);
    pl__authenticated(s, sr, req->out.user, req->out.device, 0);
  } else if (req->op == PL_STORE_REGISTER) {
    Parley__Register *r = (Parley__Register *)sr->msg;
    pl__authenticated(s, sr, r->user, r->device && *r->device ? r->device : "default", 1);
  } else {
    Parley__Login *r = (Parley__Login *)sr->msg;
    pl__authenticated(s, sr, r->user, r->device && *r->device ? r->device : "default", req->out.created);
  }
  pl__auth_end(sr, PL_OK);
}

static void pl__argon_work(pl_job *j) {
  pl__work *wk = (pl__work *)j;
  pl__sreq *sr = wk->sr;
  uint64_t t0 = pl_mono_ms();
  if (wk->verify) {
    Parley__Login *l = (Parley__Login *)sr->msg;
    if (!sr->pwhash) /* unknown user: spend the same time, then fail */
      pl_auth_dummy_verify(l->password, strlen(l->password));
    wk->ok = sr->pwhash && pl_auth_verify(sr->pwhash, l->password, strlen(l->password));
  } else {
    Parley__Register *r = (Parley__Register *)sr->msg;
    const pl_core_config *cfg = &sr->s->core->cfg;
    wk->ok = pl_auth_hash(r->password, strlen(r->password), wk->hash, cfg->argon2_ops, cfg->argon2_mem_kib) ==
             PL_OK;
  }
  atomic_store_explicit(&sr->s->core->hash_ms, (uint32_t)(pl_mono_ms() - t0), memory_order_relaxed);
}

static void pl__argon_done(pl_job *j) {
  pl__work *wk = (pl__work *)j;
  pl__sreq *sr = wk->sr;
  int ok = wk->ok, verify = wk->verify;
  pl_throttle_release(sr->s->core->throttle, wk->hold);
  if (!verify && ok)
    sr->pwhash = pl_strdup(wk->hash);
  if (!sr->s->conn)
    return pl__auth_end(sr, PL_OK);
  if (!ok)
    return pl__auth_end(sr, verify ? PL_ERR_BAD_CREDENTIALS : PL_ERR_INTERNAL);
  pl_store_req_clear(&sr->req);
  pl_auth_new_token(sr->token, sr->req.in.token_hash);
  if (verify) {
    sr->req.op = PL_STORE_LOGIN_DEVICE;
    sr->req.in.user_id = sr->uid;
  } else {
    sr->req.in.pwhash = sr->pwhash;
  }
  pl__submit(sr);
}

static void pl__argon_free(pl_job *j) { pl_free(j); }

/* When a refused hashing job might find room: the jobs ahead of it over the
 * threads, at the last run's pace. */
static uint32_t pl__hash_retry(const pl_core *core) {
  uint64_t per = atomic_load_explicit(&core->hash_ms, memory_order_relaxed);
  uint64_t ms = (per ? per : 100) * (1 + core->cfg.argon2_queue / (core->cfg.argon2_threads + 1));
  return ms < 100 ? 100 : ms > 10000 ? 10000 : (uint32_t)ms;
}

/* Queues the Argon2id run of sr (verify: a login's check, else a
 * registration's hash): at most argon2_per_address at once per source
 * address and argon2_queue waiting in all, so one address's flood cannot
 * hold back another's login. PL_OK, or RATE_LIMITED with sr->retry_ms. */
static pl_err pl__argon(pl__sreq *sr, int verify) {
  pl_core *core = sr->s->core;
  pl__work *wk = pl_calloc(1, sizeof *wk);
  char addr[48];
  pl__peer_addr(sr->s, addr);
  snprintf(wk->hold, sizeof wk->hold, "h:%s", addr);
  wk->sr = sr;
  wk->verify = verify;
  wk->job.work = pl__argon_work;
  wk->job.done = pl__argon_done;
  wk->job.release = pl__argon_free;
  pl_err e = PL_ERR_RATE_LIMITED;
  if (pl_throttle_hold(core->throttle, wk->hold, core->cfg.argon2_per_address, pl_mono_ms())) {
    e = pl_workers_submit(core->hashers, pl_loop_uv(sr->s->loop), &wk->job);
    if (e != PL_OK)
      pl_throttle_release(core->throttle, wk->hold);
  }
  if (e != PL_OK) {
    pl_free(wk);
    sr->retry_ms = pl__hash_retry(core);
  }
  return e;
}

static void pl__get_user_done(pl_store_req *req) {
  pl__sreq *sr = PL__SREQ(req);
  if (!sr->s->conn)
    return pl__auth_end(sr, PL_OK);
  if (req->status == PL_ERR_BAD_CREDENTIALS) {
    /* Unknown user: answer only after an Argon2 run, so timing does not
     * tell which user names exist. */
    req->done = pl__auth_done;
    pl_err e = pl__argon(sr, 1);
    if (e != PL_OK)
      pl__auth_end(sr, e);
    return;
  }
  if (req->status != PL_OK)
    return pl__auth_end(sr, req->status);
  /* Keep the hash and user id across the clear that precedes the next step. */
  sr->pwhash = req->out.pwhash;
  req->out.pwhash = NULL;
  sr->uid = req->out.user_id;
  req->done = pl__auth_done;
  pl_err e = pl__argon(sr, 1);
  if (e != PL_OK)
    pl__auth_end(sr, e);
}

static int pl__on_register(pl_session *s, ProtobufCMessage *msg) {
  Parley__Register *r = (Parley__Register *)msg;
  const char *dev = r->device && *r->device ? r->device : "default";
  if (!pl_auth_valid_user(r->user, strlen(r->user)) || !pl_auth_valid_password(strlen(r->password)) ||
      !pl_auth_valid_device(dev, strlen(dev))) {
    pl__error(s, PL_ERR_INVALID_ARGUMENT, NULL);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
  }
  if (pl__throttled(s, PL_ATTEMPT_REGISTER, NULL)) {
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
  }
  pl__sreq *sr = pl__sreq_new(s, PL_STORE_REGISTER, msg, pl__auth_done);
  sr->req.in.user = r->user;
  sr->req.in.device = dev;
  if (pl__argon(sr, 0) != PL_OK) {
    pl__error_retry(s, PL_ERR_RATE_LIMITED, NULL, sr->retry_ms);
    pl__sreq_free(sr);
    return 0;
  }
  s->paused = 1;
  return 1;
}

static int pl__on_login(pl_session *s, ProtobufCMessage *msg) {
  Parley__Login *r = (Parley__Login *)msg;
  const char *dev = r->device && *r->device ? r->device : "default";
  if (!pl_auth_valid_user(r->user, strlen(r->user)) || !pl_auth_valid_device(dev, strlen(dev))) {
    pl__error(s, PL_ERR_BAD_CREDENTIALS, NULL);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
  }
  if (pl__throttled(s, PL_ATTEMPT_LOGIN, r->user)) {
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
  }
  pl__sreq *sr = pl__sreq_new(s, PL_STORE_GET_USER, msg, pl__get_user_done);
  sr->req.in.user = r->user;
  sr->req.in.device = dev;
  pl__submit(sr);
  s->paused = 1;
  return 1;
}

static int pl__on_resume(pl_session *s, ProtobufCMessage *msg) {
  Parley__Resume *r = (Parley__Resume *)msg;
  size_t len = strlen(r->token);
  if (len == 0 || len >= PL_AUTH_TOKEN_MAX) {
    pl__error(s, PL_ERR_BAD_TOKEN, NULL);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
  }
  if (pl__throttled(s, PL_ATTEMPT_RESUME, NULL)) {
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
  }
  pl__sreq *sr = pl__sreq_new(s, PL_STORE_RESUME, msg, pl__auth_done);
  pl_auth_token_hash(r->token, len, sr->req.in.token_hash);
  pl__submit(sr);
  s->paused = 1;
  return 1;
}

/* ---- messaging ---------------------------------------------------------- */

static void pl__send_done(pl_store_req *req) {
  pl__sreq *sr = PL__SREQ(req);
  pl_session *s = sr->s;
  Parley__Send *m = (Parley__Send *)sr->msg;
  if (req->status == PL_OK) {
    Parley__SendAck a = PARLEY__SEND_ACK__INIT;
    a.id = m->id;
    a.conv = req->out.conv;
    a.seq = req->out.seq;
    a.server_ts = req->out.server_ts;
    a.duplicate = req->out.duplicate;
    pl__write(s, PARLEY__FRAME_TYPE__FRAME_SEND_ACK, &a.base);
  } else if (s->conn) {
    pl__error(s, req->status, m->id);
  }
  s->inflight--;
  if (s->inflight <= s->core->cfg.max_inflight / 2)
    pl__resume_reading(s);
  pl__sreq_free(sr);
}

/* The word filter, on the loop thread (in parallel, not on the store's). */
static pl_filter_result pl__filter(pl_session *s, const Parley__Send *m, uint8_t **masked, size_t *len) {
  pthread_mutex_lock(&s->core->filter_mu);
  pl_filter *f = pl_filter_ref(s->core->filter);
  pthread_mutex_unlock(&s->core->filter_mu);
  if (!f)
    return PL_FILTER_PASS;
  pl_filter_result r = pl_filter_check(f, m->body.data, m->body.len, masked, len);
  pl_filter_unref(f);
  return r;
}

/* A group id on the wire: its decimal number, 1 .. 2^63-1; 0 if malformed. */
static uint64_t pl__gid(const char *g) {
  uint64_t v = 0;
  size_t n = strlen(g);
  if (n == 0 || n > 18 || g[0] == '0')
    return 0;
  for (size_t i = 0; i < n; i++) {
    if (g[i] < '0' || g[i] > '9')
      return 0;
    v = v * 10 + (uint64_t)(g[i] - '0');
  }
  return v;
}

static int pl__on_send(pl_session *s, ProtobufCMessage *msg) {
  Parley__Send *m = (Parley__Send *)msg;
  size_t idlen = strlen(m->id);
  pl_err e = PL_OK;
  uint64_t gid = *m->group ? pl__gid(m->group) : 0;
  int to_ok = *m->group ? gid && !*m->to : pl_auth_valid_user(m->to, strlen(m->to));
  if (m->media && (!*m->media->id || strlen(m->media->id) > 64))
    to_ok = 0;
  if (idlen == 0 || idlen > PL__MAX_ID || !to_ok)
    e = PL_ERR_INVALID_ARGUMENT;
  else if (m->body.len > s->core->cfg.max_message)
    e = PL_ERR_MESSAGE_TOO_LARGE;
  if (e != PL_OK) {
    pl__error(s, e, idlen <= PL__MAX_ID ? m->id : NULL);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
  }
  uint32_t wait = pl_rules_limiter_take(s->core->send_limit, s->user_id, pl_mono_ms());
  if (wait) {
    /* over the user's rate (protocol.md 10.7): nothing stored; the client
     * sends it again, same id, after retry_after_ms */
    pl__error_retry(s, PL_ERR_RATE_LIMITED, m->id, wait);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
  }
  uint8_t *masked = NULL;
  size_t masked_len = 0;
  if (pl__filter(s, m, &masked, &masked_len) == PL_FILTER_REJECT) {
    pl__error(s, PL_ERR_FILTERED, m->id);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
  }
  pl__sreq *sr = pl__sreq_new(s, PL_STORE_SEND, msg, pl__send_done);
  sr->masked = masked;
  sr->req.in.user_id = s->user_id;
  sr->req.in.user = s->user;
  sr->req.in.device_id = s->device_id;
  sr->req.in.device_name = s->device;
  sr->req.in.peer = gid ? NULL : m->to;
  sr->req.in.group = gid;
  sr->req.in.client_id = m->id;
  sr->req.in.body = masked ? masked : m->body.data;
  sr->req.in.body_len = masked ? masked_len : m->body.len;
  sr->req.in.client_ts = m->client_ts;
  sr->req.in.media_id = m->media ? m->media->id : NULL;
  atomic_fetch_add_explicit(&s->core->sends, 1, memory_order_relaxed);
  pl__submit(sr);
  if (++s->inflight >= s->core->cfg.max_inflight) {
    s->paused = 1; /* back-pressure: read no more until commits catch up */
    return 1;
  }
  return 0;
}

static void pl__submit_ack(pl_session *s);

static void pl__ack_done(pl_store_req *req) {
  pl__sreq *sr = PL__SREQ(req);
  pl_session *s = sr->s;
  s->ack_busy = 0;
  if (req->status == PL_OK && req->in.upto > s->ack_done)
    s->ack_done = req->in.upto;
  if (req->status == PL_OK)
    pl__submit_ack(s); /* after a failure, the client's next Ack retries */
  pl__sreq_free(sr);
}

/* One ack request in flight per session: acks that arrive meanwhile
 * coalesce into the next (they are cumulative). */
static void pl__submit_ack(pl_session *s) {
  if (s->ack_busy || s->ack_want <= s->ack_done || s->state != S_READY)
    return;
  pl__sreq *sr = pl__sreq_new(s, PL_STORE_ACK, NULL, pl__ack_done);
  sr->req.in.device_id = s->device_id;
  sr->req.in.user_id = s->user_id; /* delivered receipts */
  sr->req.in.upto = s->ack_want;
  s->ack_busy = 1;
  pl__submit(sr);
}

static void pl__on_ack(pl_session *s, const Parley__Ack *m) {
  /* A client cannot ack what it was not sent. */
  uint64_t upto = m->upto < s->last_sent ? m->upto : s->last_sent;
  if (upto > s->ack_want)
    s->ack_want = upto;
  pl__submit_ack(s);
}

/* ---- conversation state: MarkRead, Settings, UnreadGet (protocol.md 11.4) -- */

/* The ref of a request frame (each has it as field 1; a Send its id). */
static const char *pl__ref(uint8_t type, const ProtobufCMessage *msg) {
  switch (type) {
  case PARLEY__FRAME_TYPE__FRAME_MARK_READ: return ((const Parley__MarkRead *)msg)->ref;
  case PARLEY__FRAME_TYPE__FRAME_SETTINGS: return ((const Parley__Settings *)msg)->ref;
  case PARLEY__FRAME_TYPE__FRAME_UNREAD_GET: return ((const Parley__UnreadGet *)msg)->ref;
  case PARLEY__FRAME_TYPE__FRAME_CONTACTS: return ((const Parley__Contacts *)msg)->ref;
  case PARLEY__FRAME_TYPE__FRAME_BLOCK: return ((const Parley__Block *)msg)->ref;
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE: return ((const Parley__PresenceSubscribe *)msg)->ref;
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE_GET: return ((const Parley__PresenceGet *)msg)->ref;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE: return ((const Parley__GroupCreate *)msg)->ref;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE: return ((const Parley__GroupUpdate *)msg)->ref;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_LIST_GET: return ((const Parley__GroupListGet *)msg)->ref;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS_GET: return ((const Parley__GroupReceiptsGet *)msg)->ref;
  case PARLEY__FRAME_TYPE__FRAME_PUSH_REGISTER: return ((const Parley__PushRegister *)msg)->ref;
  case PARLEY__FRAME_TYPE__FRAME_SEND: return ((const Parley__Send *)msg)->id;
  case PARLEY__FRAME_TYPE__FRAME_TYPING: return ((const Parley__Typing *)msg)->to; /* 11.7 */
  default: return "";
  }
}

static void pl__unread_reply(pl_session *s, const char *ref, const pl_store_req *req) {
  Parley__Unread u = PARLEY__UNREAD__INIT;
  Parley__ConvState *cs = pl_calloc(req->out.nconvs ? req->out.nconvs : 1, sizeof *cs);
  Parley__ConvState **ptrs = pl_calloc(req->out.nconvs ? req->out.nconvs : 1, sizeof *ptrs);
  for (size_t i = 0; i < req->out.nconvs; i++) {
    const pl_conv_state *c = &req->out.convs[i];
    parley__conv_state__init(&cs[i]);
    cs[i].conv = c->conv;
    cs[i].last_seq = c->last_seq;
    cs[i].read_seq = c->read_seq;
    cs[i].unread = c->last_seq > c->read_seq ? c->last_seq - c->read_seq : 0;
    cs[i].peer_delivered = c->peer_delivered;
    cs[i].peer_read = c->peer_read;
    ptrs[i] = &cs[i];
  }
  u.ref = (char *)ref;
  u.n_convs = req->out.nconvs;
  u.convs = ptrs;
  pl__write(s, PARLEY__FRAME_TYPE__FRAME_UNREAD, &u.base);
  pl_free(ptrs);
  pl_free(cs);
}

/* Presence answers: after a PresenceSubscribe, Done and then the current
 * state of every user asked for; for PresenceGet the one Presence. */
static void pl__presence_reply(pl_session *s, uint8_t type, const char *ref, const pl_store_req *req) {
  if (type == PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE) {
    if (!s->conn || s->state != S_READY) /* gone meanwhile: nobody to tell */
      return;
    pl_presence_subscribe(s->core->presence, s->device_id, s->conn->id, s->user_id, req->out.views,
                          req->out.nviews);
    Parley__Done d = PARLEY__DONE__INIT;
    d.ref = (char *)ref;
    pl__write(s, PARLEY__FRAME_TYPE__FRAME_DONE, &d.base);
  }
  for (size_t i = 0; i < req->out.nviews; i++) {
    const pl_presence_view *v = &req->out.views[i];
    if (!v->uid && type == PARLEY__FRAME_TYPE__FRAME_PRESENCE_GET) {
      pl__error(s, PL_ERR_UNKNOWN_PEER, ref);
      continue;
    }
    Parley__Presence m = PARLEY__PRESENCE__INIT;
    m.ref = (char *)ref;
    m.user = v->user;
    m.visible = v->visible;
    m.online = v->visible && pl_presence_is_online(s->core->presence, v->uid);
    m.last_seen = v->seen_visible && !m.online ? v->last_seen : 0;
    pl__write(s, PARLEY__FRAME_TYPE__FRAME_PRESENCE, &m.base);
  }
}

/* GroupInfo from the store's view of a group (strings borrowed). */
static void pl__ginfo(Parley__GroupInfo *gi, const pl_group_info *g, char *id, size_t idlen) {
  parley__group_info__init(gi);
  snprintf(id, idlen, "%llu", (unsigned long long)g->gid);
  gi->group = id;
  gi->name = g->name ? g->name : "";
  gi->description = g->description ? g->description : "";
  gi->my_role = (Parley__GroupRole)g->my_role;
  gi->member_count = g->member_count;
  gi->last_seq = g->last_seq;
}

static void pl__group_reply(pl_session *s, const char *ref, const pl_store_req *req) {
  Parley__GroupInfo gi;
  char id[24];
  const pl_group_info *g = &req->out.info;
  size_t n = g->nmembers;
  Parley__GroupMember *ms = pl_calloc(n ? n : 1, sizeof *ms);
  Parley__GroupMember **ptrs = pl_calloc(n ? n : 1, sizeof *ptrs);
  pl__ginfo(&gi, g, id, sizeof id);
  gi.ref = (char *)ref;
  for (size_t i = 0; i < n; i++) {
    parley__group_member__init(&ms[i]);
    ms[i].user = g->members[i].user;
    ms[i].role = (Parley__GroupRole)g->members[i].role;
    ptrs[i] = &ms[i];
  }
  gi.n_members = n;
  gi.members = ptrs;
  pl__write(s, PARLEY__FRAME_TYPE__FRAME_GROUP_INFO, &gi.base);
  pl_free(ptrs);
  pl_free(ms);
}

static void pl__group_list_reply(pl_session *s, const char *ref, const pl_store_req *req) {
  Parley__GroupList gl = PARLEY__GROUP_LIST__INIT;
  size_t n = req->out.ngroups;
  Parley__GroupInfo *gs = pl_calloc(n ? n : 1, sizeof *gs);
  Parley__GroupInfo **ptrs = pl_calloc(n ? n : 1, sizeof *ptrs);
  char(*ids)[24] = pl_calloc(n ? n : 1, sizeof *ids);
  for (size_t i = 0; i < n; i++) {
    pl__ginfo(&gs[i], &req->out.groups[i], ids[i], sizeof ids[i]);
    ptrs[i] = &gs[i];
  }
  gl.ref = (char *)ref;
  gl.n_groups = n;
  gl.groups = ptrs;
  pl__write(s, PARLEY__FRAME_TYPE__FRAME_GROUP_LIST, &gl.base);
  pl_free(ids);
  pl_free(ptrs);
  pl_free(gs);
}

static void pl__state_done(pl_store_req *req) {
  pl__sreq *sr = PL__SREQ(req);
  pl_session *s = sr->s;
  uint8_t type = (uint8_t)(uintptr_t)sr->req.data;
  const char *ref = pl__ref(type, sr->msg);
  if (req->status != PL_OK) {
    pl__error(s, req->status, ref);
  } else if (type == PARLEY__FRAME_TYPE__FRAME_SETTINGS) {
    Parley__SettingsState st = PARLEY__SETTINGS_STATE__INIT;
    st.ref = (char *)ref;
    st.read_receipts = req->out.read_receipts != 0;
    st.last_seen = (Parley__LastSeen)req->out.last_seen;
    st.group_add = (Parley__GroupAdd)req->out.group_add;
    pl_presence_set_seen_visible(s->core->presence, s->user_id, req->out.last_seen != PL_LAST_SEEN_NOBODY);
    pl__write(s, PARLEY__FRAME_TYPE__FRAME_SETTINGS_STATE, &st.base);
  } else if (type == PARLEY__FRAME_TYPE__FRAME_UNREAD_GET) {
    pl__unread_reply(s, ref, req);
  } else if (type == PARLEY__FRAME_TYPE__FRAME_CONTACTS) {
    Parley__ContactList cl = PARLEY__CONTACT_LIST__INIT;
    cl.ref = (char *)ref;
    cl.n_users = req->out.nnames;
    cl.users = req->out.names;
    if (req->in.contact_op == PARLEY__CONTACT_OP__CONTACT_REMOVE) /* they may not see me any more */
      pl_presence_forget(s->core->presence, s->user_id, req->out.peer_id);
    pl__write(s, PARLEY__FRAME_TYPE__FRAME_CONTACT_LIST, &cl.base);
  } else if (type == PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE ||
             type == PARLEY__FRAME_TYPE__FRAME_PRESENCE_GET) {
    pl__presence_reply(s, type, ref, req);
  } else if (type == PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE ||
             type == PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE) {
    pl__group_reply(s, ref, req);
  } else if (type == PARLEY__FRAME_TYPE__FRAME_GROUP_LIST_GET) {
    pl__group_list_reply(s, ref, req);
  } else if (type == PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS_GET) {
    Parley__GroupReceipts gr = PARLEY__GROUP_RECEIPTS__INIT;
    gr.ref = (char *)ref;
    gr.group = ((Parley__GroupReceiptsGet *)sr->msg)->group;
    gr.seq = req->in.upto;
    gr.members = req->out.members;
    gr.delivered = req->out.delivered;
    gr.read = req->out.read;
    gr.detailed = req->out.detailed != 0;
    gr.n_delivered_by = req->out.nnames;
    gr.delivered_by = req->out.names;
    gr.n_read_by = req->out.nread_by;
    gr.read_by = req->out.read_by;
    pl__write(s, PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS, &gr.base);
  } else {
    if (type == PARLEY__FRAME_TYPE__FRAME_BLOCK && req->in.blocked)
      pl_presence_forget(s->core->presence, s->user_id, req->out.peer_id);
    Parley__Done d = PARLEY__DONE__INIT;
    d.ref = (char *)ref;
    pl__write(s, PARLEY__FRAME_TYPE__FRAME_DONE, &d.base);
  }
  pl__sreq_free(sr);
}

static pl_store_op pl__state_op(uint8_t type) {
  switch (type) {
  case PARLEY__FRAME_TYPE__FRAME_MARK_READ: return PL_STORE_MARK_READ;
  case PARLEY__FRAME_TYPE__FRAME_SETTINGS: return PL_STORE_SETTINGS;
  case PARLEY__FRAME_TYPE__FRAME_CONTACTS: return PL_STORE_CONTACTS;
  case PARLEY__FRAME_TYPE__FRAME_BLOCK: return PL_STORE_BLOCK;
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE:
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE_GET: return PL_STORE_PRESENCE;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE: return PL_STORE_GROUP_CREATE;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE: return PL_STORE_GROUP_UPDATE;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_LIST_GET: return PL_STORE_GROUP_LIST;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS_GET: return PL_STORE_GROUP_RECEIPTS;
  default: return PL_STORE_UNREAD;
  }
}

static int pl__bad_name(const char *u) { return !pl_auth_valid_user(u, strlen(u)); }

#define PL__MAX_FOLLOW 1000u

/* A malformed request (answered INVALID_ARGUMENT). */
static int pl__state_bad(uint8_t type, const ProtobufCMessage *msg) {
  switch (type) {
  case PARLEY__FRAME_TYPE__FRAME_MARK_READ: {
    const Parley__MarkRead *m = (const Parley__MarkRead *)msg;
    return *m->group ? !pl__gid(m->group) || *m->peer : pl__bad_name(m->peer);
  }
  case PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS_GET:
    return !pl__gid(((const Parley__GroupReceiptsGet *)msg)->group);
  case PARLEY__FRAME_TYPE__FRAME_SETTINGS: {
    const Parley__Settings *m = (const Parley__Settings *)msg;
    return m->read_receipts > PARLEY__TOGGLE__TOGGLE_OFF ||
           m->last_seen > PARLEY__LAST_SEEN__LAST_SEEN_NOBODY || m->read_receipts < 0 || m->last_seen < 0;
  }
  case PARLEY__FRAME_TYPE__FRAME_CONTACTS: {
    const Parley__Contacts *m = (const Parley__Contacts *)msg;
    return m->op < 0 || m->op > PARLEY__CONTACT_OP__CONTACT_REMOVE || (m->op && pl__bad_name(m->user));
  }
  case PARLEY__FRAME_TYPE__FRAME_BLOCK: return pl__bad_name(((const Parley__Block *)msg)->user);
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE_GET: return pl__bad_name(((const Parley__PresenceGet *)msg)->user);
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE: {
    const Parley__PresenceSubscribe *m = (const Parley__PresenceSubscribe *)msg;
    int bad = m->n_users > PL__MAX_FOLLOW;
    for (size_t i = 0; i < m->n_users && !bad; i++)
      bad = pl__bad_name(m->users[i]);
    return bad;
  }
  case PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE: {
    /* the name and size limits are the store's (it answers those) */
    const Parley__GroupCreate *m = (const Parley__GroupCreate *)msg;
    int bad = 0;
    for (size_t i = 0; i < m->n_members && !bad; i++)
      bad = pl__bad_name(m->members[i]);
    return bad;
  }
  case PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE: {
    const Parley__GroupUpdate *m = (const Parley__GroupUpdate *)msg;
    int needs_user = m->op == PARLEY__GROUP_OP__GROUP_ADD || m->op == PARLEY__GROUP_OP__GROUP_REMOVE ||
                     m->op == PARLEY__GROUP_OP__GROUP_SET_ROLE;
    return !pl__gid(m->group) || m->op < 0 || m->op > PARLEY__GROUP_OP__GROUP_SET_ROLE ||
           (needs_user && pl__bad_name(m->user));
  }
  default: return 0;
  }
}

/* The store request's inputs from the frame (whose strings it borrows). */
static void pl__state_in(pl_store_req *r, uint8_t type, ProtobufCMessage *msg) {
  switch (type) {
  case PARLEY__FRAME_TYPE__FRAME_MARK_READ: {
    Parley__MarkRead *m = (Parley__MarkRead *)msg;
    r->in.group = *m->group ? pl__gid(m->group) : 0;
    r->in.peer = r->in.group ? NULL : m->peer;
    r->in.upto = m->seq;
    break;
  }
  case PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS_GET:
    r->in.group = pl__gid(((Parley__GroupReceiptsGet *)msg)->group);
    r->in.upto = ((Parley__GroupReceiptsGet *)msg)->seq;
    break;
  case PARLEY__FRAME_TYPE__FRAME_SETTINGS:
    r->in.read_receipts = (int)((Parley__Settings *)msg)->read_receipts;
    r->in.last_seen = (int)((Parley__Settings *)msg)->last_seen;
    r->in.group_add = (int)((Parley__Settings *)msg)->group_add; /* the store checks its range */
    break;
  case PARLEY__FRAME_TYPE__FRAME_CONTACTS:
    r->in.contact_op = (int)((Parley__Contacts *)msg)->op;
    r->in.peer = ((Parley__Contacts *)msg)->user;
    break;
  case PARLEY__FRAME_TYPE__FRAME_BLOCK:
    r->in.peer = ((Parley__Block *)msg)->user;
    r->in.blocked = ((Parley__Block *)msg)->blocked;
    break;
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE:
    r->in.users = (const char *const *)((Parley__PresenceSubscribe *)msg)->users;
    r->in.nusers = ((Parley__PresenceSubscribe *)msg)->n_users;
    break;
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE_GET:
    r->in.users = (const char *const *)&((Parley__PresenceGet *)msg)->user;
    r->in.nusers = 1;
    break;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE: {
    Parley__GroupCreate *m = (Parley__GroupCreate *)msg;
    r->in.name = m->name;
    r->in.description = m->description;
    r->in.users = (const char *const *)m->members;
    r->in.nusers = m->n_members;
    break;
  }
  case PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE: {
    Parley__GroupUpdate *m = (Parley__GroupUpdate *)msg;
    r->in.group = pl__gid(m->group);
    r->in.group_op = (int)m->op;
    r->in.peer = *m->user ? m->user : NULL;
    r->in.name = m->name;
    r->in.description = m->description;
    r->in.role = (int)m->role;
    break;
  }
  default: break;
  }
}

static pl_buf *pl__typing_event(pl_session *s, const char *conv, int typing) {
  Parley__TypingEvent ev = PARLEY__TYPING_EVENT__INIT;
  ev.from = s->user;
  ev.conv = (char *)conv;
  ev.typing = typing;
  ev.expires_ms = s->core->cfg.typing_interval_ms * 6; /* several missed renewals */
  return pl_frame_encode(PARLEY__FRAME_TYPE__FRAME_TYPING_EVENT, &ev.base);
}

static void pl__typing_group(pl_session *s, const pl_store_req *req, int typing) {
  size_t n = req->out.ntargets;
  uint64_t *skip = pl_malloc((n + 1) * sizeof *skip);
  if (n)
    memcpy(skip, req->out.targets, n * sizeof *skip);
  skip[n] = s->device_id;
  pl_buf *b = pl__typing_event(s, req->out.conv, typing);
  s->core->router->ops->push_group_frame(s->core->router, req->out.group, skip, n + 1, b);
  pl_buf_unref(b);
  pl_free(skip);
}

/* Typing: rate-limited here, routed to the peer's online devices unless
 * the peer blocked this user (in a group: to the members' connected
 * devices but this one and those of members who blocked this user, which
 * the store lists in targets); never stored. */
static void pl__typing_done(pl_store_req *req) {
  pl__sreq *sr = PL__SREQ(req);
  pl_session *s = sr->s;
  Parley__Typing *m = (Parley__Typing *)sr->msg;
  if (req->status != PL_OK) {
    pl__error(s, req->status, m->to);
  } else if (req->out.group) {
    pl__typing_group(s, req, m->typing);
  } else if (req->out.ntargets) {
    pl_buf *b = pl__typing_event(s, req->out.conv, m->typing);
    s->core->router->ops->push_frame(s->core->router, req->out.targets, req->out.ntargets, b);
    pl_buf_unref(b);
  }
  pl__sreq_free(sr);
}

static int pl__on_typing(pl_session *s, ProtobufCMessage *msg) {
  Parley__Typing *m = (Parley__Typing *)msg;
  uint64_t now = pl_mono_ms();
  uint64_t gid = *m->group ? pl__gid(m->group) : 0;
  if (*m->group ? !gid || *m->to : pl__bad_name(m->to)) {
    pl__error(s, PL_ERR_INVALID_ARGUMENT, NULL);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
  }
  if (m->typing && s->typing_at && now - s->typing_at < s->core->cfg.typing_interval_ms) {
    protobuf_c_message_free_unpacked(msg, NULL); /* too soon: the last one still holds */
    return 0;
  }
  s->typing_at = m->typing ? now : 0;
  pl__sreq *sr = pl__sreq_new(s, PL_STORE_TYPING, msg, pl__typing_done);
  sr->req.in.user_id = s->user_id;
  sr->req.in.peer = gid ? NULL : m->to;
  sr->req.in.group = gid;
  pl__submit(sr);
  return 0;
}

/* MarkRead, Settings, UnreadGet, Contacts, Block, PresenceSubscribe and
 * PresenceGet: validated here, answered after commit. */
static int pl__on_state(pl_session *s, uint8_t type, ProtobufCMessage *msg) {
  const char *ref = pl__ref(type, msg);
  pl_store_op op = pl__state_op(type);
  int bad = strlen(ref) > PL__MAX_ID || pl__state_bad(type, msg);
  if (bad) {
    pl__error(s, PL_ERR_INVALID_ARGUMENT, strlen(ref) <= PL__MAX_ID ? ref : NULL);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
  }
  pl__sreq *sr = pl__sreq_new(s, op, msg, pl__state_done);
  sr->req.data = (void *)(uintptr_t)type;
  sr->req.in.user_id = s->user_id;
  sr->req.in.device_id = s->device_id;
  pl__state_in(&sr->req, type, msg);
  pl__submit(sr);
  return 0;
}

static void pl__logout_done(pl_store_req *req) {
  pl__sreq *sr = PL__SREQ(req);
  pl_session *s = sr->s;
  if (req->status == PL_OK) /* a logged-out device gets no notifications */
    pl_push_register(s->core->push, s->device_id, 0, NULL, NULL, "");
  if (s->conn && req->status == PL_OK) {
    Parley__LogoutOk m = PARLEY__LOGOUT_OK__INIT;
    pl__write(s, PARLEY__FRAME_TYPE__FRAME_LOGOUT_OK, &m.base);
    pl_info("conn %llu %s: %s@%s logged out", (unsigned long long)s->conn->id, s->conn->peer, s->user,
            s->device);
    pl_conn_close(s->conn);
  } else if (s->conn) {
    /* Still logged in: serve the device again. */
    pl__error(s, req->status, NULL);
    s->core->router->ops->attach(s->core->router, s->device_id, s->loop, s);
    pl__start_sync(s);
    pl__resume_reading(s);
  }
  pl__sreq_free(sr);
}

static int pl__on_logout(pl_session *s) {
  s->core->router->ops->detach(s->core->router, s->device_id, s->loop, s);
  s->sync = SYNC_OFF;
  pl__sreq *sr = pl__sreq_new(s, PL_STORE_LOGOUT, NULL, pl__logout_done);
  sr->req.in.device_id = s->device_id;
  pl__submit(sr);
  s->paused = 1;
  return 1;
}

/* ---- devices ------------------------------------------------------------ */

/* A revoked device is logged out (the store dropped its token and queue):
 * its connection closes and it gets no more notifications. */
static void pl__revoked(pl_session *s, const pl_store_req *req) {
  for (size_t i = 0; i < req->out.ntargets; i++) {
    s->core->router->ops->kick(s->core->router, req->out.targets[i]);
    pl_push_register(s->core->push, req->out.targets[i], 0, NULL, NULL, "");
    pl_info("conn %llu %s: %s revoked device %s", (unsigned long long)s->conn->id, s->conn->peer, s->user,
            req->out.names[i]);
  }
}

static void pl__devices_done(pl_store_req *req) {
  pl__sreq *sr = PL__SREQ(req);
  pl_session *s = sr->s;
  Parley__Devices *m = (Parley__Devices *)sr->msg;
  if (req->status == PL_OK && s->conn)
    pl__revoked(s, req);
  if (req->status != PL_OK) {
    pl__error(s, req->status, m->ref);
    return pl__sreq_free(sr);
  }
  size_t n = req->out.ndevices;
  Parley__DeviceInfo *info = pl_calloc(n ? n : 1, sizeof *info);
  Parley__DeviceInfo **ptrs = pl_calloc(n ? n : 1, sizeof *ptrs);
  for (size_t i = 0; i < n; i++) {
    const pl_device_row *d = &req->out.devices[i];
    parley__device_info__init(&info[i]);
    info[i].name = d->name;
    info[i].device_id = d->id;
    info[i].created = d->created;
    info[i].last_used = d->used_at;
    info[i].current = d->id == s->device_id;
    info[i].online = s->core->router->ops->is_online(s->core->router, d->id);
    ptrs[i] = &info[i];
  }
  Parley__DeviceList dl = PARLEY__DEVICE_LIST__INIT;
  dl.ref = m->ref;
  dl.n_devices = n;
  dl.devices = ptrs;
  dl.n_revoked = req->out.nnames;
  dl.revoked = req->out.names;
  pl__write(s, PARLEY__FRAME_TYPE__FRAME_DEVICE_LIST, &dl.base);
  pl_free(ptrs);
  pl_free(info);
  pl__sreq_free(sr);
}

/* Devices: list mine; revoke one by name, or all but this one. */
static int pl__on_devices(pl_session *s, ProtobufCMessage *msg) {
  Parley__Devices *m = (Parley__Devices *)msg;
  int ref_ok = strlen(m->ref) <= PL__MAX_ID;
  int bad =
      !ref_ok || m->op < PARLEY__DEVICES_OP__DEVICES_LIST ||
      m->op > PARLEY__DEVICES_OP__DEVICES_REVOKE_OTHERS ||
      (m->op == PARLEY__DEVICES_OP__DEVICES_REVOKE && !pl_auth_valid_device(m->device, strlen(m->device)));
  if (bad) {
    pl__error(s, PL_ERR_INVALID_ARGUMENT, ref_ok ? m->ref : NULL);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
  }
  pl__sreq *sr = pl__sreq_new(s, PL_STORE_DEVICES, msg, pl__devices_done);
  sr->req.in.user_id = s->user_id;
  sr->req.in.device_id = s->device_id;
  sr->req.in.device_op = (int)m->op;
  sr->req.in.name = m->device;
  pl__submit(sr);
  return 0;
}

/* PushRegister: the push service keeps the token (no store request). */
static void pl__on_push_register(pl_session *s, const Parley__PushRegister *m) {
  int ok = strlen(m->ref) <= PL__MAX_ID &&
           pl_push_register(s->core->push, s->device_id, s->user_id, s->user, m->provider, m->token) == PL_OK;
  if (!ok) {
    pl__error(s, PL_ERR_INVALID_ARGUMENT, strlen(m->ref) <= PL__MAX_ID ? m->ref : NULL);
    return;
  }
  Parley__Done d = PARLEY__DONE__INIT;
  d.ref = m->ref;
  pl__write(s, PARLEY__FRAME_TYPE__FRAME_DONE, &d.base);
}

static void pl__on_ping(pl_session *s, const Parley__Ping *p) {
  Parley__Pong m = PARLEY__PONG__INIT;
  m.client_ts = p->client_ts;
  m.server_ts = pl_now_ms();
  pl__write(s, PARLEY__FRAME_TYPE__FRAME_PONG, &m.base);
}

static void pl__on_hello(pl_session *s, const Parley__Hello *h) {
  if (h->version != PL_PROTOCOL_VERSION) {
    pl__fatal(s, PL_ERR_UNSUPPORTED_VERSION);
    return;
  }
  const pl_core_config *cfg = &s->core->cfg;
  s->kind = h->kind <= 4 ? (uint8_t)h->kind : 0;
  s->state = S_AUTH;
  uint32_t hb = cfg->heartbeat_ms[s->kind];
  s->conn->deadline_ms = 0;
  s->conn->idle_timeout_ms = hb + hb / 2; /* grace: half an interval */
  Parley__Welcome w = PARLEY__WELCOME__INIT;
  w.version = PL_PROTOCOL_VERSION;
  w.server_ts = pl_now_ms();
  w.heartbeat_ms = hb;
  w.max_frame = cfg->max_frame;
  w.max_message = cfg->max_message;
  w.server_name = "parleyd/0.1";
  pl__write(s, PARLEY__FRAME_TYPE__FRAME_WELCOME, &w.base);
}

/* ---- the handler the transports call ------------------------------------ */

/* Returns 1 if msg was taken over (and reading paused), 0 otherwise. */
static int pl__dispatch(pl_session *s, uint8_t type, ProtobufCMessage *msg) {
  switch (s->state) {
  case S_HELLO:
    if (type != PARLEY__FRAME_TYPE__FRAME_HELLO)
      pl__fatal(s, PL_ERR_HELLO_REQUIRED);
    else
      pl__on_hello(s, (Parley__Hello *)msg);
    break;
  case S_AUTH:
    switch (type) {
    case PARLEY__FRAME_TYPE__FRAME_REGISTER: return pl__on_register(s, msg);
    case PARLEY__FRAME_TYPE__FRAME_LOGIN: return pl__on_login(s, msg);
    case PARLEY__FRAME_TYPE__FRAME_RESUME: return pl__on_resume(s, msg);
    case PARLEY__FRAME_TYPE__FRAME_PING: pl__on_ping(s, (Parley__Ping *)msg); break;
    case PARLEY__FRAME_TYPE__FRAME_HELLO: pl__error(s, PL_ERR_INVALID_ARGUMENT, NULL); break;
    default: pl__fatal(s, PL_ERR_AUTH_REQUIRED); break;
    }
    break;
  default:
    switch (type) {
    case PARLEY__FRAME_TYPE__FRAME_SEND: return pl__on_send(s, msg);
    case PARLEY__FRAME_TYPE__FRAME_ACK: pl__on_ack(s, (Parley__Ack *)msg); break;
    case PARLEY__FRAME_TYPE__FRAME_PING: pl__on_ping(s, (Parley__Ping *)msg); break;
    case PARLEY__FRAME_TYPE__FRAME_MARK_READ:
    case PARLEY__FRAME_TYPE__FRAME_SETTINGS:
    case PARLEY__FRAME_TYPE__FRAME_UNREAD_GET:
    case PARLEY__FRAME_TYPE__FRAME_CONTACTS:
    case PARLEY__FRAME_TYPE__FRAME_BLOCK:
    case PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE:
    case PARLEY__FRAME_TYPE__FRAME_PRESENCE_GET:
    case PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE:
    case PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE:
    case PARLEY__FRAME_TYPE__FRAME_GROUP_LIST_GET:
    case PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS_GET: return pl__on_state(s, type, msg);
    case PARLEY__FRAME_TYPE__FRAME_TYPING: return pl__on_typing(s, msg);
    case PARLEY__FRAME_TYPE__FRAME_PUSH_REGISTER: pl__on_push_register(s, (Parley__PushRegister *)msg); break;
    case PARLEY__FRAME_TYPE__FRAME_DEVICES: return pl__on_devices(s, msg);
    case PARLEY__FRAME_TYPE__FRAME_LOGOUT:
      protobuf_c_message_free_unpacked(msg, NULL);
      return pl__on_logout(s) ? 2 : 0;
    case PARLEY__FRAME_TYPE__FRAME_HELLO: pl__error(s, PL_ERR_INVALID_ARGUMENT, NULL); break;
    default: pl__error(s, PL_ERR_ALREADY_AUTHENTICATED, NULL); break;
    }
  }
  protobuf_c_message_free_unpacked(msg, NULL);
  return 0;
}

/* 1 if the state machine takes this frame as a request in the session's
 * state (otherwise it answers with a state error, which comes first). */
static int pl__takes(const pl_session *s, uint8_t type) {
  int auth = type == PARLEY__FRAME_TYPE__FRAME_REGISTER || type == PARLEY__FRAME_TYPE__FRAME_LOGIN ||
             type == PARLEY__FRAME_TYPE__FRAME_RESUME;
  switch (s->state) {
  case S_HELLO: return type == PARLEY__FRAME_TYPE__FRAME_HELLO;
  case S_AUTH:
    return auth || type == PARLEY__FRAME_TYPE__FRAME_PING || type == PARLEY__FRAME_TYPE__FRAME_HELLO;
  default: return !auth;
  }
}

/* Every string of the frame, on its wire bytes (protobuf-c hides an embedded
 * NUL once unpacked): a bad one is INVALID_ARGUMENT naming the field, with
 * the request's id or ref when that field itself is good; nothing is done. */
static int pl__bad_strings(pl_session *s, const pl_frame *f, const ProtobufCMessage *msg) {
  pl_strings_fault bad;
  pl_err e = pl__takes(s, f->type) ? pl_strings_check(f->type, f->payload, f->payload_len, &bad) : PL_OK;
  if (e == PL_OK)
    return 0;
  if (e == PL_ERR_BAD_FRAME) { /* what protobuf-c took must walk too (fuzz_strings) */
    pl__fatal(s, e);
    return 1;
  }
  char why[128];
  pl_strings_describe(&bad, why, sizeof why);
  const char *ref = pl__ref(f->type, msg);
  if (bad.bad_fields & 2u || strlen(ref) > PL__MAX_ID)
    ref = NULL;
  pl__error_why(s, PL_ERR_INVALID_ARGUMENT, ref, why);
  return 1;
}

static int pl__on_frame(pl_conn *c, const pl_frame *f, void *ud) {
  pl_core *core = ud;
  pl_session *s = c->session;
  atomic_fetch_add_explicit(&core->frames_in, 1, memory_order_relaxed);
  if (!pl_frame_client_may_send(f->type)) {
    pl__fatal(s, PL_ERR_UNKNOWN_TYPE);
    return 0;
  }
  ProtobufCMessage *msg = pl_frame_unpack(f);
  if (!msg) {
    pl__fatal(s, PL_ERR_BAD_FRAME);
    return 0;
  }
  if (pl__bad_strings(s, f, msg)) {
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
  }
  return pl__dispatch(s, f->type, msg) ? 1 : 0;
}

/* The open-connections gauge of c's transport (NULL: tcp, the rest). */
static atomic_uint_fast64_t *pl__transport_count(pl_core *core, const pl_conn *c) {
  switch (c->ops->kind) {
  case PL_CONN_WS: return &core->conns_ws;
  case PL_CONN_LP: return &core->conns_lp;
  default: return NULL;
  }
}

static void pl__on_open(pl_conn *c, void *ud) {
  pl_core *core = ud;
  pl_session *s = pl_calloc(1, sizeof *s);
  s->core = core;
  s->conn = c;
  s->loop = c->loop;
  s->refs = 1;
  c->session = s;
  /* A fixed deadline, not an idle timeout: trickling bytes does not extend it. */
  c->deadline_ms = pl_mono_ms() + core->cfg.hello_timeout_ms;
  if (core->cfg.auth_timeout_ms)
    c->auth_deadline_ms = pl_mono_ms() + core->cfg.auth_timeout_ms;
  c->drain_mark = core->cfg.out_high;
  atomic_fetch_add_explicit(&core->conns_open, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&core->conns_total, 1, memory_order_relaxed);
  atomic_uint_fast64_t *by_transport = pl__transport_count(core, c);
  if (by_transport)
    atomic_fetch_add_explicit(by_transport, 1, memory_order_relaxed);
  pl_debug("conn %llu %s: open (%s)", (unsigned long long)c->id, c->peer, c->ops->name);
}

static void pl__on_bad_input(pl_conn *c, pl_err why, void *ud) {
  (void)ud;
  if (why == PL_ERR_TOO_MANY_CONNECTIONS) { /* refusals come in floods: counted, not logged */
    pl__error(c->session, why, NULL);
    pl_conn_close(c);
    return;
  }
  pl__fatal(c->session, why);
}

static void pl__on_idle(pl_conn *c, void *ud) {
  (void)ud;
  pl_session *s = c->session;
  pl_err why = PL_ERR_HEARTBEAT_TIMEOUT;
  if (s->state == S_HELLO)
    why = PL_ERR_HELLO_REQUIRED;
  else if (s->state == S_AUTH && c->auth_deadline_ms && pl_mono_ms() > c->auth_deadline_ms)
    why = PL_ERR_AUTH_REQUIRED; /* not authenticated within --auth-timeout */
  pl__fatal(s, why);
}

static void pl__on_shutdown(pl_conn *c, void *ud) {
  (void)ud;
  pl__error(c->session, PL_ERR_SHUTTING_DOWN, NULL);
  pl_conn_close(c);
}

static void pl__on_drain(pl_conn *c, void *ud) {
  (void)ud;
  pl_session *s = c->session;
  if (s->state == S_READY && s->sync == SYNC_LAGGING)
    pl__start_sync(s);
}

static void pl__seen_done(pl_store_req *req) { pl__sreq_free(PL__SREQ(req)); }

/* The device left: it follows no one, its user may go offline, and the
 * time is its user's last seen (stored; a failure only loses that time).
 * Once per authenticated connection, while s->conn is set. */
static void pl__gone(pl_session *s) {
  uint64_t now = pl_now_ms();
  pl_presence_unsubscribe(s->core->presence, s->device_id, s->conn->id);
  pl_presence_offline(s->core->presence, s->user_id, s->loop, now);
  pl__sreq *sr = pl__sreq_new(s, PL_STORE_SEEN, NULL, pl__seen_done);
  sr->req.in.user_id = s->user_id;
  sr->req.in.upto = now;
  pl__submit(sr);
}

static void pl__on_close(pl_conn *c, void *ud) {
  pl_core *core = ud;
  pl_session *s = c->session;
  if (s->state == S_READY) {
    core->router->ops->detach(core->router, s->device_id, s->loop, s);
    pl__gone(s);
    pl_info("conn %llu %s: %s@%s disconnected", (unsigned long long)c->id, c->peer, s->user, s->device);
  }
  s->conn = NULL;
  s->sync = SYNC_OFF;
  pl__pend_clear(s);
  atomic_fetch_sub_explicit(&core->conns_open, 1, memory_order_relaxed);
  atomic_uint_fast64_t *by_transport = pl__transport_count(core, c);
  if (by_transport)
    atomic_fetch_sub_explicit(by_transport, 1, memory_order_relaxed);
  pl__unref(s);
}

/* ---- the core ----------------------------------------------------------- */

void pl_core_config_defaults(pl_core_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->heartbeat_ms[0] = 30000; /* unknown */
  cfg->heartbeat_ms[1] = 30000; /* mobile */
  cfg->heartbeat_ms[2] = 15000; /* web */
  cfg->heartbeat_ms[3] = 60000; /* iot */
  cfg->heartbeat_ms[4] = 30000; /* bot */
  cfg->hello_timeout_ms = 10000;
  cfg->auth_timeout_ms = 30000;
  cfg->max_frame = 1u << 20;
  cfg->max_message = 64u * 1024u;
  cfg->fetch_batch = 512;
  cfg->max_inflight = 1024;
  cfg->out_high = 256u * 1024u;
  cfg->presence_grace_ms = 5000;
  cfg->typing_interval_ms = 1000;
  cfg->send_rate = 50;
  cfg->send_burst = 500;
  cfg->max_queue = 100000;
  cfg->max_queue_share = 50;
  cfg->auth = (pl_auth_limits){.rate = 10,
                               .burst = 20,
                               .register_per_hour = 20,
                               .account_address = {5, 1000, 900000},
                               .account = {50, 1000, 60000},
                               .address = {30, 1000, 900000}};
  cfg->argon2_threads = 2;
  cfg->argon2_per_address = 2;
  cfg->argon2_queue = 64;
}

pl_core *pl_core_new(const pl_core_config *cfg, int nloops) {
  if (!cfg->router)
    return NULL;
  pl_core *core = pl_calloc(1, sizeof *core);
  core->cfg = *cfg;
  core->nloops = nloops;
  core->delivery = pl_calloc((size_t)nloops, sizeof *core->delivery);
  for (int i = 0; i < nloops; i++)
    pl_hist_init(&core->delivery[i], pl_hist_us_bounds, pl_hist_us_n);
  core->sink = (pl_router_sink){.push = pl__push, .kick = pl__kick, .delivery = core->delivery};
  core->router = cfg->router;
  core->router->sink = core->sink;
  core->presence = pl_presence_new(core->router, cfg->presence_grace_ms);
  core->send_limit = pl_rules_limiter_new(&(pl_rules_rate){.rate = cfg->send_rate, .burst = cfg->send_burst});
  core->queue_rule = (pl_rules_queue){.max_queue = cfg->max_queue, .share_pct = cfg->max_queue_share};
  core->throttle = pl_throttle_new(65536);
  core->hashers = pl_workers_new(cfg->argon2_threads, cfg->argon2_queue);
  pthread_mutex_init(&core->filter_mu, NULL);
  core->handler = (pl_conn_handler){
      .on_open = pl__on_open,
      .on_frame = pl__on_frame,
      .on_bad_input = pl__on_bad_input,
      .on_idle = pl__on_idle,
      .on_drain = pl__on_drain,
      .on_shutdown = pl__on_shutdown,
      .on_close = pl__on_close,
      .ud = core,
  };
  return core;
}

/* The store asks the rules (pl_rules) through these. */
static pl_err pl__queue_admit(void *ud, uint64_t queued, int own, pl_err (*count)(void *, uint64_t *),
                              void *arg) {
  return pl_rules_queue_admit(&((pl_core *)ud)->queue_rule, queued, own, count, arg);
}

static pl_err pl__may_add(void *ud, int setting, int contact) {
  (void)ud;
  return pl_rules_may_add(setting, contact);
}

void pl_core_store_hooks(pl_core *core, pl_store_hooks *hooks) {
  hooks->post = pl__store_post;
  hooks->deliver = pl__store_deliver;
  hooks->deliver_end = pl__store_deliver_end;
  hooks->online = pl_core_online;
  hooks->deliver_group = pl__store_deliver_group;
  hooks->group_change = pl__store_group_change;
  hooks->device_groups = pl__store_device_groups;
  hooks->ud = core;
  hooks->rules = (pl_store_rules){.queue_admit = pl__queue_admit,
                                  .may_add = pl__may_add,
                                  .group_history = pl_rules_sender_cap(&core->queue_rule),
                                  .ud = core};
}

void pl_core_set_store(pl_core *core, pl_store *store) { core->store = store; }
void pl_core_set_push(pl_core *core, pl_push *push) { core->push = push; }

int pl_core_online(void *core, uint64_t device) {
  pl_router *r = ((pl_core *)core)->router;
  return r->ops->is_online(r, device);
}
const pl_conn_handler *pl_core_handler(pl_core *core) { return &core->handler; }
pl_router *pl_core_router(pl_core *core) { return core->router; }

void pl_core_set_filter(pl_core *core, pl_filter *f) {
  pthread_mutex_lock(&core->filter_mu);
  pl_filter *old = core->filter;
  core->filter = f;
  pthread_mutex_unlock(&core->filter_mu);
  pl_filter_unref(old);
}

void pl_core_free(pl_core *core) {
  pl_filter_unref(core->filter);
  pthread_mutex_destroy(&core->filter_mu);
  pl_workers_free(core->hashers);
  pl_throttle_free(core->throttle);
  pl_presence_free(core->presence);
  pl_rules_limiter_free(core->send_limit);
  pl_free(core->delivery);
  pl_free(core);
}

void pl_core_get_stats(pl_core *core, pl_core_stats *st) {
  st->conns_open = atomic_load_explicit(&core->conns_open, memory_order_relaxed);
  st->conns_ws = atomic_load_explicit(&core->conns_ws, memory_order_relaxed);
  st->conns_lp = atomic_load_explicit(&core->conns_lp, memory_order_relaxed);
  for (int i = 0; i < PL_CORE_ERROR_CODES; i++)
    st->errors_by_code[i] = atomic_load_explicit(&core->errors_by_code[i], memory_order_relaxed);
  st->delivery = core->delivery;
  st->ndelivery = (size_t)core->nloops;
  st->conns_total = atomic_load_explicit(&core->conns_total, memory_order_relaxed);
  st->frames_in = atomic_load_explicit(&core->frames_in, memory_order_relaxed);
  st->messages_out = atomic_load_explicit(&core->messages_out, memory_order_relaxed);
  st->sends = atomic_load_explicit(&core->sends, memory_order_relaxed);
  st->errors = atomic_load_explicit(&core->errors, memory_order_relaxed);
}
