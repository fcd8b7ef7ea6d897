/* pl_sess_auth: Register, Login and Resume (protocol.md 5). Each is
 * throttled per user and address (pl_throttle) before any work; passwords
 * are hashed and checked with Argon2id on the hashing pool, never on a
 * loop; reading pauses until the answer. */
#include <string.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"
#include "../rules/pl_bucket.h"
#include "../rules/pl_signup.h"
#include "pl_sess_int.h"

typedef struct pl__work {
  pl_job job;
  pl_sess__req *sr;
  int verify; /* 0: hash the password (register); 1: check it (login) */
  int ok;
  char hold[64]; /* the throttle key of this address's hashing slot */
  char hash[PL_AUTH_HASH_MAX];
} pl__work;
/* The attempt an auth request is (pl_throttle's rules). */
static pl_auth_attempt pl__attempt(const pl_sess__req *sr) {
  if (sr->req.op == PL_STORE_RESUME)
    return PL_ATTEMPT_RESUME;
  return sr->req.op == PL_STORE_REGISTER ? PL_ATTEMPT_REGISTER : PL_ATTEMPT_LOGIN;
}

static void pl__peer_addr(const pl_session *s, char out[48]) {
  char peer[PL_ADDR_STR];
  pl_throttle_addr(pl_addr_str(&s->conn->peer, peer), out, 48);
}

/* Answers a throttled attempt at once, without hashing. */
static void pl__refuse(pl_session *s, const char *what, const char *user, uint64_t wait_ms) {
  uint32_t ms = wait_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)wait_ms;
  char peer[PL_ADDR_STR];
  pl_info("conn %llu %s: %s refused: rate limited (user=%s retry_after_ms=%u)",
          (unsigned long long)s->conn->id, pl_addr_str(&s->conn->peer, peer), what, user ? user : "-", ms);
  pl_sess__error_retry(s, PL_ERR_RATE_LIMITED, NULL, ms);
}

/* 1 (after answering) if the node is draining for maintenance. */
static int pl__draining(pl_session *s) {
  if (!atomic_load_explicit(&s->core->draining, memory_order_relaxed))
    return 0;
  pl_sess__error(s, PL_ERR_MAINTENANCE, NULL);
  return 1;
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
static void pl__auth_failed(pl_session *s, pl_sess__req *sr) {
  pl_auth_attempt a = pl__attempt(sr);
  const char *user = a == PL_ATTEMPT_LOGIN ? ((Parley__Login *)sr->msg)->user : NULL;
  char addr[48];
  pl__peer_addr(s, addr);
  pl_throttle_auth_failed(s->core->throttle, &s->core->cfg.auth, a, user, addr, pl_mono_ms());
  atomic_fetch_add_explicit(&s->core->login_failures, 1, memory_order_relaxed);
  if (a == PL_ATTEMPT_LOGIN)
    pl_warn("auth: failed login: user=%s addr=%s conn=%llu", user, addr, (unsigned long long)s->conn->id);
  else
    pl_warn("auth: failed resume: unknown, revoked or expired token addr=%s conn=%llu", addr,
            (unsigned long long)s->conn->id);
}

/* The user and device names in one block: one allocation per session, not
 * two (each costs a header and malloc's rounding beside its few bytes). */
static void pl__set_names(pl_session *s, const char *user, const char *device) {
  size_t nu = strlen(user) + 1, nd = strlen(device) + 1;
  pl_free(s->user);
  s->user = pl_malloc(nu + nd);
  memcpy(s->user, user, nu);
  s->device = s->user + nu;
  memcpy(s->device, device, nd);
}

static void pl__authenticated(pl_session *s, pl_sess__req *sr, const char *user, const char *device,
                              int created) {
  char addr[48];
  pl__peer_addr(s, addr);
  pl_throttle_auth_succeeded(s->core->throttle, pl__attempt(sr), user, addr);
  s->state = PL_SESS_READY;
  s->conn->auth_deadline_ms = 0;
  const pl_store_req *r = &sr->req;
  s->user_id = r->op == PL_STORE_LOGIN_DEVICE ? sr->uid
               : r->op == PL_STORE_RESUME     ? r->u.resume.out.user_id
                                              : r->u.reg.out.user_id;
  s->device_id = r->op == PL_STORE_LOGIN_DEVICE ? r->u.login.out.device_id
                 : r->op == PL_STORE_RESUME     ? r->u.resume.out.device_id
                                                : r->u.reg.out.device_id;
  pl__set_names(s, user, device);
  pl_sess__attach(s);
  pl_presence_online(s->core->presence, s->user_id, s->user);
  Parley__AuthOk m = PARLEY__AUTH_OK__INIT;
  m.user = s->user;
  m.device = s->device;
  m.device_id = s->device_id;
  m.token = sr->token;
  m.created = created;
  pl_sess__write(s, PARLEY__FRAME_TYPE__FRAME_AUTH_OK, &m.base);
  char peer[PL_ADDR_STR];
  pl_info("conn %llu %s: %s@%s authenticated (%s)", (unsigned long long)s->conn->id,
          pl_addr_str(&s->conn->peer, peer), s->user, s->device,
          sr->req.op == PL_STORE_RESUME ? "token" : "password");
  pl_sess__start_sync(s);
}

/* Ends an auth step: a request error keeps the connection for a retry. */
static void pl__auth_end(pl_sess__req *sr, pl_err e) {
  pl_session *s = sr->s;
  if (e != PL_OK && s->conn) {
    char peer[PL_ADDR_STR];
    pl_info("conn %llu %s: auth failed: %s", (unsigned long long)s->conn->id,
            pl_addr_str(&s->conn->peer, peer), pl_err_name(e));
    if (e == PL_ERR_BAD_CREDENTIALS || e == PL_ERR_BAD_TOKEN)
      pl__auth_failed(s, sr);
    pl_sess__error_retry(s, e, NULL, e == PL_ERR_RATE_LIMITED ? sr->retry_ms : 0);
  }
  pl_sess__resume_reading(s);
  pl_sess__req_free(sr);
}

static void pl__auth_done(pl_store_req *req) {
  pl_sess__req *sr = PL_SESS__REQ(req);
  pl_session *s = sr->s;
  if (!s->conn || req->status != PL_OK) {
    pl__auth_end(sr, req->status);
    return;
  }
  if (req->op == PL_STORE_RESUME) {
    Parley__Resume *r = (Parley__Resume *)sr->msg;
    snprintf(sr->token, sizeof sr->token, "%s", r->token);
    pl__authenticated(s, sr, req->u.resume.out.user, req->u.resume.out.device, 0);
  } else if (req->op == PL_STORE_REGISTER) {
    Parley__Register *r = (Parley__Register *)sr->msg;
    pl__authenticated(s, sr, r->user, r->device && *r->device ? r->device : "default", 1);
  } else {
    Parley__Login *r = (Parley__Login *)sr->msg;
    pl__authenticated(s, sr, r->user, r->device && *r->device ? r->device : "default",
                      req->u.login.out.created);
  }
  pl__auth_end(sr, PL_OK);
}

static void pl__argon_work(pl_job *j) {
  pl__work *wk = (pl__work *)j;
  pl_sess__req *sr = wk->sr;
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
  pl_sess__req *sr = wk->sr;
  int ok = wk->ok, verify = wk->verify;
  pl_throttle_release(sr->s->core->throttle, wk->hold);
  if (!verify && ok)
    sr->pwhash = pl_strdup(wk->hash);
  if (!sr->s->conn)
    return pl__auth_end(sr, PL_OK);
  if (!ok)
    return pl__auth_end(sr, verify ? PL_ERR_BAD_CREDENTIALS : PL_ERR_INTERNAL);
  if (verify && sr->disabled) /* only now: a wrong password must not learn of the ban */
    return pl__auth_end(sr, PL_ERR_ACCOUNT_DISABLED);
  pl_store_req_clear(&sr->req);
  if (verify) { /* GET_USER's request goes on as the LOGIN_DEVICE */
    Parley__Login *l = (Parley__Login *)sr->msg;
    sr->req.op = PL_STORE_LOGIN_DEVICE;
    sr->req.user_id = sr->uid;
    sr->req.u.login.in.device = l->device && *l->device ? l->device : "default";
    pl_auth_new_token(sr->token, sr->req.u.login.in.token_hash, pl_bucket_of_name(l->user, strlen(l->user)));
  } else {
    const char *name = ((Parley__Register *)sr->msg)->user;
    pl_auth_new_token(sr->token, sr->req.u.reg.in.token_hash, pl_bucket_of_name(name, strlen(name)));
    sr->req.u.reg.in.pwhash = sr->pwhash;
  }
  pl_sess__submit(sr);
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
static pl_err pl__argon(pl_sess__req *sr, int verify) {
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
  pl_sess__req *sr = PL_SESS__REQ(req);
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
  sr->pwhash = req->u.get_user.out.pwhash;
  req->u.get_user.out.pwhash = NULL;
  sr->uid = req->u.get_user.out.user_id;
  sr->disabled = req->u.get_user.out.disabled;
  req->done = pl__auth_done;
  pl_err e = pl__argon(sr, 1);
  if (e != PL_OK)
    pl__auth_end(sr, e);
}

int pl_sess__on_register(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  (void)cmd;
  Parley__Register *r = (Parley__Register *)in->msg;
  const char *dev = r->device && *r->device ? r->device : "default";
  if (!pl_auth_valid_user(r->user, strlen(r->user)) || !pl_auth_valid_password(strlen(r->password)) ||
      !pl_auth_valid_device(dev, strlen(dev))) {
    pl_sess__error(s, PL_ERR_INVALID_ARGUMENT, NULL);
    return 0;
  }
  int invite = r->invite && *r->invite;
  pl_err admit = pl_signup_admit(s->core->cfg.signup, invite);
  if (admit != PL_OK) {
    char peer[PL_ADDR_STR];
    pl_info("conn %llu %s: register refused: %s (user=%s)", (unsigned long long)s->conn->id,
            pl_addr_str(&s->conn->peer, peer), pl_err_name(admit), r->user);
    pl_sess__error(s, admit, NULL);
    return 0;
  }
  if (pl__draining(s) || pl__throttled(s, PL_ATTEMPT_REGISTER, NULL))
    return 0; /* answered */
  pl_sess__req *sr = pl_sess__req_new(s, PL_STORE_REGISTER, in, pl__auth_done);
  sr->req.u.reg.in.user = r->user;
  sr->req.u.reg.in.device = dev;
  /* an open server ignores a code; an invite server uses it up with the account */
  sr->req.u.reg.in.invite = s->core->cfg.signup == PL_SIGNUP_INVITE ? r->invite : NULL;
  if (pl__argon(sr, 0) != PL_OK) {
    pl_sess__error_retry(s, PL_ERR_RATE_LIMITED, NULL, sr->retry_ms);
    pl_sess__req_free(sr);
    return 0;
  }
  s->paused = 1;
  return 1;
}

int pl_sess__on_login(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  (void)cmd;
  Parley__Login *r = (Parley__Login *)in->msg;
  const char *dev = r->device && *r->device ? r->device : "default";
  if (!pl_auth_valid_user(r->user, strlen(r->user)) || !pl_auth_valid_device(dev, strlen(dev))) {
    pl_sess__error(s, PL_ERR_BAD_CREDENTIALS, NULL);
    return 0;
  }
  if (pl__draining(s) || pl__throttled(s, PL_ATTEMPT_LOGIN, r->user))
    return 0; /* answered */
  pl_sess__req *sr = pl_sess__req_new(s, PL_STORE_GET_USER, in, pl__get_user_done);
  sr->req.u.get_user.in.user = r->user;
  pl_sess__submit(sr);
  s->paused = 1;
  return 1;
}

int pl_sess__on_resume(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  (void)cmd;
  Parley__Resume *r = (Parley__Resume *)in->msg;
  size_t len = strlen(r->token);
  if (len == 0 || len >= PL_AUTH_TOKEN_MAX) {
    pl_sess__error(s, PL_ERR_BAD_TOKEN, NULL);
    return 0;
  }
  if (pl__draining(s) || pl__throttled(s, PL_ATTEMPT_RESUME, NULL))
    return 0; /* answered */
  pl_sess__req *sr = pl_sess__req_new(s, PL_STORE_RESUME, in, pl__auth_done);
  pl_auth_token_hash(r->token, len, sr->req.u.resume.in.token_hash);
  uint32_t bucket;
  if (pl_bucket_token_get(r->token, len, &bucket) == 0)
    sr->req.route = 1 + bucket; /* the user's shard */
  pl_sess__submit(sr);
  s->paused = 1;
  return 1;
}
