/* test_store: the store thread (pl_store.c) and the SQLite backend, through
 * the public interface. A fake backend pins the batch-failure and hand-back
 * rules; everything else runs on a real parley.db in a temp dir. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/pl_log.h"
#include "common/pl_mem.h"
#include "common/pl_time.h"
#include "store/pl_store.h"
#include "store_db.h"
#include "testlib.h"

/* ---- deliveries and completions ----------------------------------------- */

#define MAX_REC 4096

static struct {
  pthread_mutex_t mu;
  size_t n;               /* deliver calls */
  uint64_t qids[MAX_REC]; /* qid of each, in call order */
  uint64_t last_devs[16]; /* devices of the last call */
  size_t last_ndevs;
  char events[64]; /* 'D' deliver, 'P' post, in order (fake backend tests) */
  size_t nevents;
  pl_store_req *posted[16];
  size_t nposted;
} rec = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void rec_reset(void) {
  pthread_mutex_lock(&rec.mu);
  rec.n = rec.last_ndevs = rec.nevents = rec.nposted = 0;
  pthread_mutex_unlock(&rec.mu);
}

static size_t rec_count(void) {
  pthread_mutex_lock(&rec.mu);
  size_t n = rec.n;
  pthread_mutex_unlock(&rec.mu);
  return n;
}

static void on_deliver(void *ud, const pl_msg *m, const uint64_t *devs, size_t n) {
  (void)ud;
  pthread_mutex_lock(&rec.mu);
  if (rec.n < MAX_REC)
    rec.qids[rec.n] = m->qid;
  rec.n++;
  rec.last_ndevs = n < 16 ? n : 16;
  memcpy(rec.last_devs, devs, rec.last_ndevs * sizeof *devs);
  if (rec.nevents < sizeof rec.events)
    rec.events[rec.nevents++] = 'D';
  pthread_mutex_unlock(&rec.mu);
}

static void on_post(void *ud, void *origin, pl_store_req *req) {
  (void)ud;
  (void)origin;
  pthread_mutex_lock(&rec.mu);
  if (rec.nevents < sizeof rec.events)
    rec.events[rec.nevents++] = 'P';
  if (rec.nposted < 16)
    rec.posted[rec.nposted++] = req;
  pthread_mutex_unlock(&rec.mu);
}

static const pl_store_hooks hooks = {.post = on_post, .deliver = on_deliver, .ud = NULL};

/* Counts completions of asynchronous requests (req->data points here). */
typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t n;
} waiter;

static void waiter_init(waiter *w) {
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->n = 0;
}

static void waiter_destroy(waiter *w) {
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
}

static void count_done(pl_store_req *req) {
  waiter *w = req->data;
  pthread_mutex_lock(&w->mu);
  w->n++;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static void waiter_wait(waiter *w, size_t n) {
  pthread_mutex_lock(&w->mu);
  while (w->n < n)
    pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
}

/* ---- store helpers ------------------------------------------------------- */

static pl_store_config base_cfg(const char *dir) {
  pl_store_config c = {.dir = dir,
                       .durable = 0,
                       .ttl_ms = 3600u * 1000u,
                       .max_devices = 4,
                       .max_queue = 100000,
                       .max_batch = 0,
                       .sweep_ms = 0};
  return c;
}

static pl_store *open_store(const pl_store_config *c) {
  pl_store *s = NULL;
  CHECK_EQ_I(pl_store_open(&s, &pl_store_sqlite, c, &hooks), PL_OK);
  CHECK(s != NULL);
  return s;
}

static pl_err login(pl_store *s, account *a, const char *device, unsigned tok, int *created) {
  pl_store_req r = {.op = PL_STORE_LOGIN_DEVICE};
  r.user_id = a->uid;
  r.u.login.in.device = device;
  token(r.u.login.in.token_hash, tok);
  pl_err e = pl_store_call(s, &r);
  if (created)
    *created = r.u.login.out.created;
  a->did = r.u.login.out.device_id;
  a->device = device;
  pl_store_req_clear(&r);
  return e;
}

static account dev(pl_store *s, account a, const char *device, unsigned tok) {
  int created = 0;
  CHECK_EQ_I(login(s, &a, device, tok, &created), PL_OK);
  CHECK_EQ_I(created, 1);
  return a;
}

static pl_err resume(pl_store *s, unsigned tok, pl_store_req *r) {
  memset(r, 0, sizeof *r);
  r->op = PL_STORE_RESUME;
  token(r->u.resume.in.token_hash, tok);
  return pl_store_call(s, r);
}

static void send_init(pl_store_req *r, const account *from, const char *peer, const char *cid,
                      const char *body) {
  memset(r, 0, sizeof *r);
  r->op = PL_STORE_SEND;
  r->user_id = from->uid;
  r->device_id = from->did;
  r->u.send.in.device_name = from->device;
  r->u.send.in.peer = peer;
  r->u.send.in.client_id = cid;
  r->u.send.in.body = (const uint8_t *)body;
  r->u.send.in.body_len = strlen(body);
  r->u.send.in.client_ts = 1234;
}

/* Sends and keeps the result in *r (the caller clears it). */
static pl_err send_msg(pl_store *s, const account *from, const char *peer, const char *cid, pl_store_req *r) {
  send_init(r, from, peer, cid, cid);
  return pl_store_call(s, r);
}

static pl_err fetch(pl_store *s, uint64_t did, uint64_t after, uint32_t limit, pl_store_req *r) {
  memset(r, 0, sizeof *r);
  r->op = PL_STORE_FETCH;
  r->device_id = did;
  r->u.fetch.in.after = after;
  r->u.fetch.in.limit = limit;
  return pl_store_call(s, r);
}

static size_t fetch_count(pl_store *s, uint64_t did) {
  pl_store_req r;
  CHECK_EQ_I(fetch(s, did, 0, 100000, &r), PL_OK);
  size_t n = r.u.fetch.out.nmsgs;
  pl_store_req_clear(&r);
  return n;
}

static uint64_t ack(pl_store *s, uint64_t did, uint64_t upto) {
  pl_store_req r = {.op = PL_STORE_ACK};
  r.device_id = did;
  r.u.ack.in.upto = upto;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  return r.u.ack.out.removed;
}

/* ---- accounts ------------------------------------------------------------ */

static void test_register_and_get_user(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  pl_store_req r = {.op = PL_STORE_REGISTER};
  r.u.reg.in.user = "alice";
  r.u.reg.in.device = "other";
  r.u.reg.in.pwhash = "x";
  token(r.u.reg.in.token_hash, 2);
  CHECK_EQ_I(pl_store_call(s, &r), PL_ERR_USER_EXISTS);

  pl_store_req g = {.op = PL_STORE_GET_USER};
  g.u.get_user.in.user = "alice";
  CHECK_EQ_I(pl_store_call(s, &g), PL_OK);
  CHECK_EQ_U(g.u.get_user.out.user_id, a.uid);
  CHECK_STR(g.u.get_user.out.pwhash, "$argon2id$fake");
  pl_store_req_clear(&g);
  g.u.get_user.in.user = "nobody";
  CHECK_EQ_I(pl_store_call(s, &g), PL_ERR_BAD_CREDENTIALS);
  CHECK(g.u.get_user.out.pwhash == NULL);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* GET_USER read the account before the operator's ban; the sign-in that
 * follows (its own batch) is still refused, and no token is stored. */
static void test_ban_between_password_and_sign_in(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  pl_store_req g = {.op = PL_STORE_GET_USER};
  g.u.get_user.in.user = "alice";
  CHECK_EQ_I(pl_store_call(s, &g), PL_OK);
  CHECK_EQ_I(g.u.get_user.out.disabled, 0);
  pl_store_req_clear(&g);
  pl_store_req b = {.op = PL_STORE_ADMIN};
  b.u.admin.in.action = PL_ADMIN_DISABLE;
  b.u.admin.in.user = "alice";
  CHECK_EQ_I(pl_store_call(s, &b), PL_OK);
  pl_store_req_clear(&b);
  account l = a;
  CHECK_EQ_I(login(s, &l, "laptop", 2, NULL), PL_ERR_ACCOUNT_DISABLED);
  pl_store_req r;
  CHECK_EQ_I(resume(s, 2, &r), PL_ERR_BAD_TOKEN);
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

static void test_login_device_and_token_rotation(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  uint64_t phone = a.did;
  pl_store_req r;
  CHECK_EQ_I(resume(s, 1, &r), PL_OK);
  CHECK_EQ_U(r.u.resume.out.user_id, a.uid);
  CHECK_EQ_U(r.u.resume.out.device_id, phone);
  CHECK_STR(r.u.resume.out.user, "alice");
  CHECK_STR(r.u.resume.out.device, "phone");
  pl_store_req_clear(&r);

  int created = -1;
  account l = a;
  CHECK_EQ_I(login(s, &l, "laptop", 2, &created), PL_OK);
  CHECK_EQ_I(created, 1);
  CHECK(l.did != phone);
  CHECK_EQ_I(login(s, &l, "phone", 3, &created), PL_OK); /* same name: same device */
  CHECK_EQ_I(created, 0);
  CHECK_EQ_U(l.did, phone);
  CHECK_EQ_I(resume(s, 1, &r), PL_ERR_BAD_TOKEN); /* rotated away */
  CHECK(r.u.resume.out.user == NULL);
  CHECK_EQ_I(resume(s, 3, &r), PL_OK);
  CHECK_EQ_U(r.u.resume.out.device_id, phone);
  pl_store_req_clear(&r);
  CHECK_EQ_I(resume(s, 2, &r), PL_OK);
  CHECK_STR(r.u.resume.out.device, "laptop");
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

static void test_max_devices(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  c.max_devices = 3;
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "d1", 1);
  dev(s, a, "d2", 2);
  dev(s, a, "d3", 3);
  CHECK_EQ_I(login(s, &a, "d4", 4, NULL), PL_ERR_TOO_MANY_DEVICES);
  CHECK_EQ_I(login(s, &a, "d2", 5, NULL), PL_OK); /* an existing one still logs in */
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

static void test_logout_revokes(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  pl_store_req r = {.op = PL_STORE_LOGOUT};
  r.device_id = a.did;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(resume(s, 1, &r), PL_ERR_BAD_TOKEN);
  int created = -1;
  CHECK_EQ_I(login(s, &a, "phone", 7, &created), PL_OK);
  CHECK_EQ_I(created, 0);
  CHECK_EQ_I(resume(s, 7, &r), PL_OK);
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* Regression: a logged-out device kept receiving queue entries, so a
 * forgotten device filled up and its QUEUE_FULL blocked every sender. */
static void test_logout_drops_queue_and_stops_targeting(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  c.max_queue = 2;
  pl_store *s = open_store(&c);
  account alice = reg(s, "alice", "phone", 1);
  account bob = reg(s, "bob", "phone", 2);
  account bob_pc = dev(s, bob, "pc", 3);
  pl_store_req r;
  CHECK_EQ_I(send_msg(s, &alice, "bob", "m1", &r), PL_OK);
  CHECK_EQ_U(r.u.send.out.ntargets, 2);
  pl_store_req_clear(&r);
  CHECK_EQ_U(fetch_count(s, bob_pc.did), 1);
  pl_store_req lo = {.op = PL_STORE_LOGOUT};
  lo.device_id = bob_pc.did;
  CHECK_EQ_I(pl_store_call(s, &lo), PL_OK);
  CHECK_EQ_U(fetch_count(s, bob_pc.did), 0); /* its queue is gone */
  /* bob's phone acks; the pc no longer holds the message: it is deleted. */
  CHECK_EQ_U(ack(s, bob.did, 1000), 1);
  CHECK_EQ_I(db_count(dir, "messages"), 0);
  /* The pc is not a target: bob's phone alone fills to max_queue. */
  CHECK_EQ_I(send_msg(s, &alice, "bob", "m2", &r), PL_OK);
  CHECK_EQ_U(r.u.send.out.ntargets, 1);
  CHECK_EQ_U(r.u.send.out.targets[0], bob.did);
  pl_store_req_clear(&r);
  /* Logging in again makes it a target for what is sent from then on. */
  int created = -1;
  CHECK_EQ_I(login(s, &bob_pc, "pc", 4, &created), PL_OK);
  CHECK_EQ_I(created, 0);
  CHECK_EQ_I(send_msg(s, &alice, "bob", "m3", &r), PL_OK);
  CHECK_EQ_U(r.u.send.out.ntargets, 2);
  pl_store_req_clear(&r);
  CHECK_EQ_U(fetch_count(s, bob_pc.did), 1);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* ---- send ---------------------------------------------------------------- */

static void test_send_unknown_peer(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  rec_reset();
  pl_store_req r;
  CHECK_EQ_I(send_msg(s, &a, "ghost", "m1", &r), PL_ERR_UNKNOWN_PEER);
  CHECK(r.u.send.out.conv == NULL && r.u.send.out.targets == NULL);
  CHECK_EQ_U(rec_count(), 0);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

#define NSEQ 1000

static void test_seq_gap_free(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account a = reg(s, "bob", "phone", 1); /* "bob" > "alice": conv order is by name, not by sender */
  reg(s, "alice", "phone", 2);
  reg(s, "carol", "phone", 3);
  pl_store_req *rs = pl_calloc(NSEQ, sizeof *rs);
  char(*ids)[16] = pl_calloc(NSEQ, sizeof *ids);
  waiter w;
  waiter_init(&w);
  for (size_t i = 0; i < NSEQ; i++) {
    snprintf(ids[i], sizeof ids[i], "b%zu", i);
    send_init(&rs[i], &a, i % 2 ? "carol" : "alice", ids[i], "x");
    rs[i].done = count_done;
    rs[i].data = &w;
    pl_store_submit(s, &rs[i]);
  }
  waiter_wait(&w, NSEQ);
  uint64_t last_ts[2] = {0, 0};
  for (size_t i = 0; i < NSEQ; i++) {
    CHECK_EQ_I(rs[i].status, PL_OK);
    CHECK_STR(rs[i].u.send.out.conv, i % 2 ? "dm:bob:carol" : "dm:alice:bob");
    CHECK_EQ_U(rs[i].u.send.out.seq, i / 2 + 1); /* each conv counts 1..N on its own */
    CHECK(rs[i].u.send.out.server_ts >= last_ts[i % 2]);
    last_ts[i % 2] = rs[i].u.send.out.server_ts;
    if (i)
      CHECK(rs[i].u.send.out.msg.qid > rs[i - 1].u.send.out.msg.qid);
    pl_store_req_clear(&rs[i]);
  }
  waiter_destroy(&w);
  pl_free(rs);
  pl_free(ids);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

static void test_dedup_survives_restart(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  reg(s, "bob", "phone", 2);
  rec_reset();
  pl_store_req r;
  CHECK_EQ_I(send_msg(s, &a, "bob", "m1", &r), PL_OK);
  CHECK_EQ_I(r.u.send.out.duplicate, 0);
  uint64_t seq = r.u.send.out.seq, ts = r.u.send.out.server_ts;
  pl_store_req_clear(&r);
  CHECK_EQ_U(rec_count(), 1);

  CHECK_EQ_I(send_msg(s, &a, "bob", "m1", &r), PL_OK);
  CHECK_EQ_I(r.u.send.out.duplicate, 1);
  CHECK_EQ_U(r.u.send.out.seq, seq);
  CHECK_EQ_U(r.u.send.out.server_ts, ts);
  CHECK_STR(r.u.send.out.conv, "dm:alice:bob");
  CHECK_EQ_U(r.u.send.out.ntargets, 0);
  pl_store_req_clear(&r);
  CHECK_EQ_U(rec_count(), 1); /* no second delivery */

  pl_store_close(s);
  s = open_store(&c);
  CHECK_EQ_I(send_msg(s, &a, "bob", "m1", &r), PL_OK);
  CHECK_EQ_I(r.u.send.out.duplicate, 1);
  CHECK_EQ_U(r.u.send.out.seq, seq);
  CHECK_EQ_U(r.u.send.out.server_ts, ts);
  pl_store_req_clear(&r);
  CHECK_EQ_U(rec_count(), 1);
  CHECK_EQ_I(send_msg(s, &a, "bob", "m2", &r), PL_OK);
  CHECK_EQ_U(r.u.send.out.seq, seq + 1); /* the conv counter survived too */
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* The dedup rings are saved by the sweep and replayed from the table after
 * a crash: a retry is recognised whether its record was saved or not. */
static void test_dedup_rings_saved_and_replayed(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    pl_store *s = NULL;
    if (pl_store_open(&s, &pl_store_sqlite, &c, NULL) != PL_OK)
      _exit(2);
    account a = reg(s, "alice", "phone", 1);
    reg(s, "bob", "phone", 2);
    pl_store_req r;
    uint64_t deleted;
    if (send_msg(s, &a, "bob", "saved", &r) != PL_OK || r.u.send.out.seq != 1)
      _exit(3);
    pl_store_req_clear(&r);
    if (pl_store_expire_now(s, pl_now_ms(), &deleted) != PL_OK) /* saves the rings */
      _exit(4);
    if (send_msg(s, &a, "bob", "unsaved", &r) != PL_OK || r.u.send.out.seq != 2)
      _exit(5);
    _exit(0); /* a crash: the second record is in no saved ring */
  }
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK_EQ_I(db_count(dir, "dedup_rings"), 1);
  pl_store *s = open_store(&c);
  account a = {1, 1, "alice", "phone"};
  pl_store_req rq;
  CHECK_EQ_I(resume(s, 1, &rq), PL_OK);
  a.uid = rq.u.resume.out.user_id;
  a.did = rq.u.resume.out.device_id;
  pl_store_req_clear(&rq);
  const char *ids[] = {"saved", "unsaved"};
  for (int i = 0; i < 2; i++) {
    pl_store_req r;
    CHECK_EQ_I(send_msg(s, &a, "bob", ids[i], &r), PL_OK);
    CHECK_EQ_I(r.u.send.out.duplicate, 1);
    CHECK_EQ_U(r.u.send.out.seq, (uint64_t)i + 1);
    pl_store_req_clear(&r);
  }
  pl_store_req r;
  CHECK_EQ_I(send_msg(s, &a, "bob", "new", &r), PL_OK);
  CHECK_EQ_I(r.u.send.out.duplicate, 0);
  CHECK_EQ_U(r.u.send.out.seq, 3);
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* Ids are per device; a device's last 1,024 ids are recognised. */
static void test_dedup_per_device_window(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  reg(s, "bob", "phone", 2);
  account a2 = dev(s, a, "laptop", 3);
  pl_store_req r;
  CHECK_EQ_I(send_msg(s, &a, "bob", "same", &r), PL_OK);
  CHECK_EQ_U(r.u.send.out.seq, 1);
  pl_store_req_clear(&r);
  CHECK_EQ_I(send_msg(s, &a2, "bob", "same", &r), PL_OK); /* another device's id */
  CHECK_EQ_I(r.u.send.out.duplicate, 0);
  CHECK_EQ_U(r.u.send.out.seq, 2);
  pl_store_req_clear(&r);
  for (int i = 0; i < 1024; i++) {
    char id[16];
    snprintf(id, sizeof id, "w%d", i);
    CHECK_EQ_I(send_msg(s, &a2, "bob", id, &r), PL_OK);
    pl_store_req_clear(&r);
  }
  CHECK_EQ_I(send_msg(s, &a2, "bob", "w1", &r), PL_OK); /* still in the window */
  CHECK_EQ_I(r.u.send.out.duplicate, 1);
  CHECK_EQ_U(r.u.send.out.seq, 4);
  pl_store_req_clear(&r);
  CHECK_EQ_I(send_msg(s, &a, "bob", "same", &r), PL_OK); /* the phone sent nothing since */
  CHECK_EQ_I(r.u.send.out.duplicate, 1);
  CHECK_EQ_U(r.u.send.out.seq, 1);
  pl_store_req_clear(&r);
  CHECK_EQ_I(send_msg(s, &a2, "bob", "same", &r), PL_OK); /* 1,024 newer ids pushed it out */
  CHECK_EQ_I(r.u.send.out.duplicate, 0);
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* Client ids are stored packed when they are hex or a UUID (schema 9), and
 * still match exactly: a retry after a restart gets its ack, an id that
 * differs only in case or in its dashes is another message. */
static void test_dedup_packed_ids(void) {
  static const char *ids[] = {"0123456789abcdef0123456789abcdef", "6f1c2f9e-0b7a-4c1e-9a57-3c2d1e0f4a5b",
                              "m-1", "abc"};
  static const char *others[] = {"0123456789ABCDEF0123456789ABCDEF", "6f1c2f9e0b7a4c1e9a573c2d1e0f4a5b",
                                 "6F1C2F9E-0B7A-4C1E-9A57-3C2D1E0F4A5B", "0123456789abcdef0123456789abcde"};
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  reg(s, "bob", "phone", 2);
  uint64_t seq[4], ts[4];
  pl_store_req r;
  for (int i = 0; i < 4; i++) {
    CHECK_EQ_I(send_msg(s, &a, "bob", ids[i], &r), PL_OK);
    CHECK_EQ_I(r.u.send.out.duplicate, 0);
    seq[i] = r.u.send.out.seq;
    ts[i] = r.u.send.out.server_ts;
    pl_store_req_clear(&r);
  }
  pl_store_close(s);
  s = open_store(&c);
  for (int i = 0; i < 4; i++) {
    CHECK_EQ_I(send_msg(s, &a, "bob", ids[i], &r), PL_OK);
    CHECK_EQ_I(r.u.send.out.duplicate, 1);
    CHECK_STR(r.u.send.out.conv, "dm:alice:bob");
    CHECK_EQ_U(r.u.send.out.seq, seq[i]);
    CHECK_EQ_U(r.u.send.out.server_ts, ts[i]);
    pl_store_req_clear(&r);
  }
  for (int i = 0; i < 4; i++) {
    CHECK_EQ_I(send_msg(s, &a, "bob", others[i], &r), PL_OK);
    CHECK_EQ_I(r.u.send.out.duplicate, 0);
    CHECK_EQ_U(r.u.send.out.seq, seq[3] + 1 + (uint64_t)i);
    pl_store_req_clear(&r);
  }
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* A data dir of schema 7 (dedup records with the conv name and the raw id)
 * upgrades in place: every record is converted, so retries of 1:1 and
 * group messages after the upgrade still get their original acks. */
static void test_upgrade_dedup_records(void) {
  char *dir = tl_tempdir(), path[600], sql[2048];
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  reg(s, "bob", "phone", 2);
  pl_store_close(s);
  snprintf(path, sizeof path, "%s/parley.db", dir);
  sqlite3 *db = NULL;
  CHECK_EQ_I(sqlite3_open(path, &db), SQLITE_OK);
  snprintf(sql, sizeof sql,
           "DROP TABLE dedup; CREATE TABLE dedup(id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL,"
           " fp INTEGER NOT NULL, client_id TEXT NOT NULL, conv TEXT NOT NULL, seq INTEGER NOT NULL,"
           " server_ts INTEGER NOT NULL);"
           "INSERT INTO dedup VALUES(1, %llu, 0, 'm-old', 'dm:alice:bob', 7, 9000000000000);"
           "INSERT INTO dedup VALUES(2, %llu, 0, '6f1c2f9e-0b7a-4c1e-9a57-3c2d1e0f4a5b', 'dm:alice:bob', 8,"
           " 9000000000001);"
           "INSERT INTO dedup VALUES(3, %llu, 0, 'ab12', 'g:7', 3, 9000000000002);"
           "INSERT INTO dedup VALUES(4, %llu, 0, 'self', 'dm:alice:alice', 1, 9000000000003);"
           "INSERT INTO dedup VALUES(5, %llu, 0, 'lost', 'dm:alice:nobody', 1, 9000000000004);"
           "PRAGMA user_version = 7;",
           (unsigned long long)a.did, (unsigned long long)a.did, (unsigned long long)a.did,
           (unsigned long long)a.did, (unsigned long long)a.did);
  CHECK_EQ_I(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  s = open_store(&c);
  static const struct {
    const char *id, *peer, *conv;
    uint64_t group, seq, ts;
  } want[] = {{"m-old", "bob", "dm:alice:bob", 0, 7, 9000000000000ull},
              {"6f1c2f9e-0b7a-4c1e-9a57-3c2d1e0f4a5b", "bob", "dm:alice:bob", 0, 8, 9000000000001ull},
              {"ab12", NULL, "g:7", 7, 3, 9000000000002ull},
              {"self", "alice", "dm:alice:alice", 0, 1, 9000000000003ull}};
  pl_store_req r;
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    send_init(&r, &a, want[i].peer, want[i].id, "x");
    r.u.send.in.group = want[i].group;
    CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
    CHECK_EQ_I(r.status, PL_OK);
    CHECK_EQ_I(r.u.send.out.duplicate, 1);
    CHECK_STR(r.u.send.out.conv, want[i].conv);
    CHECK_EQ_U(r.u.send.out.seq, want[i].seq);
    CHECK_EQ_U(r.u.send.out.server_ts, want[i].ts);
    pl_store_req_clear(&r);
  }
  pl_store_close(s);
  CHECK_EQ_I(db_count(dir, "dedup"), 4); /* the one naming no user went */
  tl_rmrf(dir);
  free(dir);
}

/* A database of schema 1 opens: its dedup records are dropped, the rest kept
 * and given the columns of schema 4. */
static void test_upgrade_from_schema_1(void) {
  char *dir = tl_tempdir(), path[600];
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  reg(s, "bob", "phone", 2);
  pl_store_close(s);
  snprintf(path, sizeof path, "%s/parley.db", dir);
  sqlite3 *db = NULL;
  CHECK_EQ_I(sqlite3_open(path, &db), SQLITE_OK);
  CHECK_EQ_I(
      sqlite3_exec(db,
                   "DROP TABLE dedup; DROP TABLE dedup_rings; DROP TABLE meta; DROP TABLE reads;"
                   "DROP INDEX messages_events; ALTER TABLE messages DROP COLUMN kind;"
                   "ALTER TABLE messages DROP COLUMN aux; ALTER TABLE users DROP COLUMN read_receipts;"
                   "ALTER TABLE users DROP COLUMN last_seen; ALTER TABLE users DROP COLUMN last_seen_vis;"
                   "DROP TABLE contacts; DROP TABLE blocks;"
                   "DROP INDEX messages_group; ALTER TABLE messages DROP COLUMN gid;"
                   "ALTER TABLE devices DROP COLUMN token_at; ALTER TABLE devices DROP COLUMN used_at;"
                   "DROP TABLE gcursor; DROP TABLE groups; DROP TABLE members; DROP TABLE greads;"
                   "DROP INDEX messages_media; ALTER TABLE messages DROP COLUMN media_id;"
                   "ALTER TABLE messages DROP COLUMN media; DROP TABLE media; DROP TABLE media_grants;"
                   "CREATE TABLE dedup(sender_uid INTEGER NOT NULL, client_id TEXT NOT NULL,"
                   " conv TEXT NOT NULL, seq INTEGER NOT NULL, server_ts INTEGER NOT NULL,"
                   " expires INTEGER NOT NULL, PRIMARY KEY(sender_uid, client_id)) WITHOUT ROWID;"
                   "CREATE INDEX dedup_expires ON dedup(expires);"
                   "INSERT INTO dedup VALUES(1, 'old', 'dm:alice:bob', 1, 1, 9e15);"
                   "PRAGMA user_version = 1;",
                   NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);
  s = open_store(&c);
  pl_store_req r;
  CHECK_EQ_I(send_msg(s, &a, "bob", "old", &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  CHECK_EQ_I(r.u.send.out.duplicate, 0);
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

static int has(const uint64_t *v, size_t n, uint64_t x) {
  for (size_t i = 0; i < n; i++)
    if (v[i] == x)
      return 1;
  return 0;
}

static void test_targets(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account ap = reg(s, "alice", "phone", 1);
  account al = dev(s, ap, "laptop", 2);
  account bp = reg(s, "bob", "phone", 3);
  account bt = dev(s, bp, "tablet", 4);
  account carol = reg(s, "carol", "only", 5);
  rec_reset();
  pl_store_req r;
  CHECK_EQ_I(send_msg(s, &ap, "bob", "t1", &r), PL_OK);
  CHECK_EQ_U(r.u.send.out.ntargets, 3);
  CHECK(has(r.u.send.out.targets, 3, bp.did) && has(r.u.send.out.targets, 3, bt.did) &&
        has(r.u.send.out.targets, 3, al.did));
  CHECK(!has(r.u.send.out.targets, 3, ap.did));
  CHECK_EQ_U(rec.last_ndevs, 3);
  CHECK(has(rec.last_devs, 3, bp.did) && has(rec.last_devs, 3, bt.did) && has(rec.last_devs, 3, al.did));
  CHECK_STR(r.u.send.out.msg.from, "alice");
  CHECK_STR(r.u.send.out.msg.from_device, "phone");
  CHECK_STR(r.u.send.out.msg.id, "t1");
  CHECK_STR(r.u.send.out.msg.conv, "dm:alice:bob");
  CHECK(r.u.send.out.msg.qid > 0);
  pl_store_req_clear(&r);

  /* A note to self reaches the sender's other devices only, once each. */
  CHECK_EQ_I(send_msg(s, &ap, "alice", "t2", &r), PL_OK);
  CHECK_STR(r.u.send.out.conv, "dm:alice:alice");
  CHECK_EQ_U(r.u.send.out.ntargets, 1);
  CHECK_EQ_U(r.u.send.out.targets[0], al.did);
  pl_store_req_clear(&r);

  /* ...and with no other device it is committed and acked, but goes nowhere. */
  size_t before = rec_count();
  CHECK_EQ_I(send_msg(s, &carol, "carol", "t3", &r), PL_OK);
  CHECK_EQ_U(r.u.send.out.seq, 1);
  CHECK_EQ_U(r.u.send.out.ntargets, 0);
  pl_store_req_clear(&r);
  CHECK_EQ_U(rec_count(), before);
  CHECK_EQ_I(send_msg(s, &carol, "carol", "t3", &r), PL_OK);
  CHECK_EQ_I(r.u.send.out.duplicate, 1);
  pl_store_req_clear(&r);
  CHECK_EQ_U(fetch_count(s, carol.did), 0);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* ---- fetch and ack ------------------------------------------------------- */

static void test_fetch_order_limit_more(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  account b = reg(s, "bob", "phone", 2);
  static const char *ids[] = {"f1", "f2", "f3", "f4", "f5"};
  pl_store_req r;
  for (size_t i = 0; i < 5; i++) {
    CHECK_EQ_I(send_msg(s, &a, "bob", ids[i], &r), PL_OK);
    pl_store_req_clear(&r);
  }
  uint64_t after = 0;
  size_t got = 0;
  static const size_t pages[] = {2, 2, 1};
  for (size_t p = 0; p < 3; p++) {
    CHECK_EQ_I(fetch(s, b.did, after, 2, &r), PL_OK);
    CHECK_EQ_U(r.u.fetch.out.nmsgs, pages[p]);
    CHECK_EQ_I(r.u.fetch.out.more, p < 2);
    for (size_t i = 0; i < r.u.fetch.out.nmsgs; i++, got++) {
      pl_msg *m = &r.u.fetch.out.msgs[i];
      CHECK(m->qid > after);
      after = m->qid;
      CHECK_STR(m->id, ids[got]);
      CHECK_EQ_U(m->seq, got + 1);
      CHECK_STR(m->conv, "dm:alice:bob");
      CHECK_STR(m->from, "alice");
      CHECK_STR(m->from_device, "phone");
      CHECK_EQ_U(m->body_len, strlen(ids[got]));
      CHECK(memcmp(m->body, ids[got], m->body_len) == 0);
      CHECK_EQ_U(m->client_ts, 1234);
      CHECK(m->server_ts > 0);
    }
    pl_store_req_clear(&r);
  }
  CHECK_EQ_I(fetch(s, b.did, 0, 0, &r), PL_OK); /* limit 0 = default */
  CHECK_EQ_U(r.u.fetch.out.nmsgs, 5);
  CHECK_EQ_I(r.u.fetch.out.more, 0);
  pl_store_req_clear(&r);
  CHECK_EQ_U(fetch_count(s, a.did), 0); /* the sender's own device is not a target */
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

static void test_ack_two_devices(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  account bp = reg(s, "bob", "phone", 2);
  account bt = dev(s, bp, "tablet", 3);
  uint64_t q[3];
  pl_store_req r;
  for (size_t i = 0; i < 3; i++) {
    char id[16];
    snprintf(id, sizeof id, "a%zu", i);
    CHECK_EQ_I(send_msg(s, &a, "bob", id, &r), PL_OK);
    q[i] = r.u.send.out.msg.qid;
    pl_store_req_clear(&r);
  }
  CHECK_EQ_U(ack(s, bp.did, q[1]), 2);
  CHECK_EQ_U(fetch_count(s, bp.did), 1);
  CHECK_EQ_U(fetch_count(s, bt.did), 3);
  CHECK_EQ_I(db_count(dir, "messages"), 3); /* the tablet still holds all three */

  CHECK_EQ_U(ack(s, bt.did, q[2]), 3);
  CHECK_EQ_U(fetch_count(s, bt.did), 0);
  CHECK_EQ_I(db_count(dir, "messages"), 1); /* q[2]: the phone has not acked it */
  CHECK_EQ_U(fetch_count(s, bp.did), 1);

  CHECK_EQ_U(ack(s, bp.did, q[2]), 1);
  CHECK_EQ_I(db_count(dir, "messages"), 0);
  CHECK_EQ_I(db_count(dir, "queue"), 0);
  CHECK_EQ_U(ack(s, bp.did, q[2]), 0);
  uint64_t deleted = 99;
  CHECK_EQ_I(pl_store_expire_now(s, pl_now_ms() + 2 * c.ttl_ms, &deleted), PL_OK);
  CHECK_EQ_U(deleted, 0); /* nothing was left behind for the sweep */
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* An Ack of group history writes the device's cursor in the group with it;
 * the members' watermarks are cached, and the sweep writes them a chunk per
 * transaction (here 1, so it takes several) before it trims. */
static void test_group_cursors_written_by_ack(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  c.sweep_ms = 100;
  c.flush_chunk = 1;
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  account m[4] = {reg(s, "bob", "phone", 2), reg(s, "carol", "phone", 3), reg(s, "dave", "phone", 4), a};
  const char *members[] = {"bob", "carol", "dave"};
  pl_store_req r = {.op = PL_STORE_GROUP_CREATE};
  r.user_id = a.uid;
  r.device_id = a.did;
  r.u.group_create.in.name = "team";
  r.u.group_create.in.users = members;
  r.u.group_create.in.nusers = 3;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  uint64_t gid = r.u.group_create.out.info.gid;
  pl_store_req_clear(&r);
  send_init(&r, &a, NULL, "g1", "hello team");
  r.u.send.in.group = gid;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  uint64_t qid = r.u.send.out.msg.qid;
  pl_store_req_clear(&r);
  CHECK(qid > 0);
  for (size_t i = 0; i < 4; i++) { /* the sender's device gets the message too */
    r = (pl_store_req){.op = PL_STORE_ACK};
    r.device_id = m[i].did;
    r.user_id = m[i].uid; /* group cursors are by member */
    r.u.ack.in.upto = qid;
    CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
    pl_store_req_clear(&r);
  }
  char where[160];
  /* seq 1 is the created event, 2 the message; alice sent it */
  snprintf(where, sizeof where, "gcursor WHERE gid = %llu AND seq >= 2", (unsigned long long)gid);
  CHECK_EQ_I(db_count(dir, where), 4); /* every member's device, written with its Ack */
  snprintf(where, sizeof where, "greads WHERE gid = %llu AND delivered_seq >= 2", (unsigned long long)gid);
  long long n = 0;
  for (int i = 0; i < 200 && (n = db_count(dir, where)) != 4; i++)
    usleep(10000);
  CHECK_EQ_I(n, 4); /* the watermarks, written by the sweep */
  for (int i = 0; i < 200 && (n = db_count(dir, DB_MESSAGES)) != 0; i++)
    usleep(10000);
  CHECK_EQ_I(n, 0); /* every member passed both: the history is gone */
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

static void test_queue_full(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  c.max_queue = 3;
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  account b = reg(s, "bob", "phone", 2);
  pl_store_req r;
  uint64_t first = 0;
  for (int i = 0; i < 3; i++) {
    char id[16];
    snprintf(id, sizeof id, "q%d", i);
    CHECK_EQ_I(send_msg(s, &a, "bob", id, &r), PL_OK);
    if (!first)
      first = r.u.send.out.msg.qid;
    pl_store_req_clear(&r);
  }
  rec_reset();
  CHECK_EQ_I(send_msg(s, &a, "bob", "q3", &r), PL_ERR_QUEUE_FULL);
  CHECK(r.u.send.out.targets == NULL && r.u.send.out.conv == NULL);
  CHECK_EQ_U(rec_count(), 0);
  CHECK_EQ_U(fetch_count(s, b.did), 3);
  CHECK_EQ_U(ack(s, b.did, first), 1);
  CHECK_EQ_I(send_msg(s, &a, "bob", "q3", &r), PL_OK); /* not a duplicate: nothing was written */
  CHECK_EQ_I(r.u.send.out.duplicate, 0);
  CHECK_EQ_U(r.u.send.out.seq, 4); /* the refused send took no seq */
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* ---- TTL ------------------------------------------------------------------ */

static void test_ttl_short(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  c.ttl_ms = 50;
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  account b = reg(s, "bob", "phone", 2);
  pl_store_req r;
  CHECK_EQ_I(send_msg(s, &a, "bob", "e1", &r), PL_OK);
  pl_store_req_clear(&r);
  CHECK_EQ_I(send_msg(s, &a, "bob", "e2", &r), PL_OK);
  pl_store_req_clear(&r);
  usleep(120 * 1000);
  CHECK_EQ_U(fetch_count(s, b.did), 0); /* expired, even before the sweep */
  CHECK_EQ_I(send_msg(s, &a, "bob", "e1", &r), PL_OK);
  CHECK_EQ_I(r.u.send.out.duplicate, 0); /* the dedup entry expired with it */
  CHECK_EQ_U(r.u.send.out.seq, 3);
  pl_store_req_clear(&r);
  usleep(120 * 1000);
  uint64_t deleted = 0;
  CHECK_EQ_I(pl_store_expire_now(s, pl_now_ms(), &deleted), PL_OK);
  CHECK_EQ_U(deleted, 3);
  CHECK_EQ_I(db_count(dir, "messages"), 0);
  CHECK_EQ_I(db_count(dir, "queue"), 0);
  CHECK_EQ_I(db_count(dir, "dedup"), 0);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

static void test_ttl_expire_now(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  c.max_queue = 2;
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  account b = reg(s, "bob", "phone", 2);
  pl_store_req r;
  CHECK_EQ_I(send_msg(s, &a, "bob", "x1", &r), PL_OK);
  uint64_t ts = r.u.send.out.server_ts;
  pl_store_req_clear(&r);
  CHECK_EQ_I(send_msg(s, &a, "bob", "x2", &r), PL_OK);
  pl_store_req_clear(&r);
  CHECK_EQ_I(send_msg(s, &a, "bob", "x3", &r), PL_ERR_QUEUE_FULL);
  uint64_t deleted = 99;
  CHECK_EQ_I(pl_store_expire_now(s, ts + c.ttl_ms - 1, &deleted), PL_OK);
  CHECK_EQ_U(deleted, 0);
  CHECK_EQ_I(pl_store_expire_now(s, pl_now_ms() + c.ttl_ms, &deleted), PL_OK);
  CHECK_EQ_U(deleted, 2);
  CHECK_EQ_U(fetch_count(s, b.did), 0);
  /* The sweep emptied bob's queue, so the cached length must not refuse this. */
  CHECK_EQ_I(send_msg(s, &a, "bob", "x1", &r), PL_OK);
  CHECK_EQ_I(r.u.send.out.duplicate, 0);
  CHECK_EQ_U(r.u.send.out.seq, 3);
  pl_store_req_clear(&r);
  CHECK_EQ_U(fetch_count(s, b.did), 1);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* ---- the store thread ---------------------------------------------------- */

#define NGROUP 2000

typedef struct group_arg {
  pl_store *s;
  account a;
  pl_store_req *rs;
  char (*ids)[16];
  waiter *w;
} group_arg;

static void *group_submitter(void *p) {
  group_arg *g = p;
  for (size_t i = 0; i < NGROUP; i++) {
    snprintf(g->ids[i], sizeof g->ids[i], "g%zu", i);
    send_init(&g->rs[i], &g->a, "bob", g->ids[i], "group");
    g->rs[i].done = count_done;
    g->rs[i].data = g->w;
    pl_store_submit(g->s, &g->rs[i]);
  }
  return NULL;
}

static void test_group_commit(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  c.durable = 1;
  pl_store *s = open_store(&c);
  reg(s, "bob", "phone", 2);
  waiter w;
  waiter_init(&w);
  group_arg g = {s, reg(s, "alice", "phone", 1), pl_calloc(NGROUP, sizeof(pl_store_req)),
                 pl_calloc(NGROUP, sizeof(char[16])), &w};
  pl_store_stats st0, st;
  pl_store_get_stats(s, &st0);
  pthread_t t;
  CHECK_EQ_I(pthread_create(&t, NULL, group_submitter, &g), 0);
  waiter_wait(&w, NGROUP);
  pthread_join(t, NULL);
  pl_store_get_stats(s, &st);
  CHECK_EQ_U(st.requests - st0.requests, NGROUP);
  CHECK_EQ_U(st.messages - st0.messages, NGROUP);
  CHECK(st.commits - st0.commits < NGROUP);
  CHECK_EQ_U(st.fails, 0);
  fprintf(stderr, "  group commit: %d sends in %llu commits\n", NGROUP,
          (unsigned long long)(st.commits - st0.commits));
  for (size_t i = 0; i < NGROUP; i++) {
    CHECK_EQ_I(g.rs[i].status, PL_OK);
    CHECK_EQ_U(g.rs[i].u.send.out.seq, i + 1);
    pl_store_req_clear(&g.rs[i]);
  }
  waiter_destroy(&w);
  pl_free(g.rs);
  pl_free(g.ids);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* With commit pacing, requests that arrive while commits run back to back
 * wait for the next start and share it: 40 sends submitted 1 ms apart take
 * one commit each without pacing, two with a 200 ms delay (the first finds
 * the store idle and commits at once). */
static size_t paced_commits(uint32_t delay_us) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  c.commit_delay_us = delay_us;
  pl_store *s = open_store(&c);
  reg(s, "bob", "phone", 2);
  account a = reg(s, "alice", "phone", 1);
  enum { N = 40 };
  pl_store_req *rs = pl_calloc(N, sizeof *rs);
  char ids[N][16];
  waiter w;
  waiter_init(&w);
  pl_store_stats st0, st;
  pl_store_get_stats(s, &st0);
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "p%d", i);
    send_init(&rs[i], &a, "bob", ids[i], "x");
    rs[i].done = count_done;
    rs[i].data = &w;
    pl_store_submit(s, &rs[i]);
    usleep(1000);
  }
  waiter_wait(&w, N);
  pl_store_get_stats(s, &st);
  for (int i = 0; i < N; i++) {
    CHECK_EQ_I(rs[i].status, PL_OK);
    CHECK_EQ_U(rs[i].u.send.out.seq, (uint64_t)i + 1);
    pl_store_req_clear(&rs[i]);
  }
  waiter_destroy(&w);
  pl_free(rs);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
  return (size_t)(st.commits - st0.commits);
}

static void test_commit_pacing(void) {
  size_t unpaced = paced_commits(0), paced = paced_commits(200000);
  fprintf(stderr, "  40 sends 1 ms apart: %zu commits unpaced, %zu with a 200 ms delay\n", unpaced, paced);
  CHECK(unpaced >= 20);
  CHECK(paced <= 3);
}

static int user_done_calls;
static void user_done(pl_store_req *req) {
  (void)req;
  user_done_calls++;
}

static void test_call_leaves_done_alone(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pl_store *s = open_store(&c);
  int mine = 0;
  pl_store_req r = {.op = PL_STORE_GET_USER, .done = user_done, .origin = &mine, .data = &mine};
  r.u.get_user.in.user = "nobody";
  user_done_calls = 0;
  rec_reset();
  CHECK_EQ_I(pl_store_call(s, &r), PL_ERR_BAD_CREDENTIALS);
  CHECK_EQ_I(user_done_calls, 0);
  CHECK_EQ_U(rec.nposted, 0);
  CHECK(r.done == user_done && r.origin == &mine && r.data == &mine);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* Close drains what was queued; a submission after close began fails,
 * unless the store thread itself makes it (a hook or a done callback with
 * no origin, as the push service's are): that one runs in the drain. */
static struct {
  pl_store *s;
  atomic_int started, stopping;
  pl_store_req late, later; /* submitted by the store thread; by another thread */
  waiter w;
} cl;

static void slow_done(pl_store_req *req) {
  (void)req;
  atomic_store(&cl.started, 1);
  usleep(200 * 1000); /* meanwhile the main thread calls pl_store_close */
  pl_store_submit(cl.s, &cl.late);
}

static void *late_thread(void *arg) {
  (void)arg;
  while (!atomic_load(&cl.stopping))
    usleep(1000);
  usleep(20 * 1000); /* close has begun */
  pl_store_submit(cl.s, &cl.later);
  return NULL;
}

static void test_close_drains_then_refuses(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  cl.s = open_store(&c);
  account a = reg(cl.s, "alice", "phone", 1);
  reg(cl.s, "bob", "phone", 2);
  waiter_init(&cl.w);
  atomic_store(&cl.started, 0);
  atomic_store(&cl.stopping, 0);
  pl_store_req first = {.op = PL_STORE_GET_USER, .done = slow_done};
  first.u.get_user.in.user = "alice";
  memset(&cl.late, 0, sizeof cl.late);
  cl.late.op = PL_STORE_GET_USER;
  cl.late.u.get_user.in.user = "alice";
  cl.late.done = count_done;
  cl.late.data = &cl.w;
  cl.later = cl.late;
  pthread_t th;
  CHECK(pthread_create(&th, NULL, late_thread, NULL) == 0);
  pl_store_submit(cl.s, &first);
  while (!atomic_load(&cl.started))
    usleep(1000);
  pl_store_req rs[50];
  char ids[50][16];
  for (int i = 0; i < 50; i++) {
    snprintf(ids[i], sizeof ids[i], "c%d", i);
    send_init(&rs[i], &a, "bob", ids[i], "bye");
    rs[i].done = count_done;
    rs[i].data = &cl.w;
    pl_store_submit(cl.s, &rs[i]);
  }
  atomic_store(&cl.stopping, 1);
  pl_store_stop(cl.s);
  pthread_join(th, NULL);
  pl_store_close(cl.s);
  CHECK_EQ_U(cl.w.n, 52);
  CHECK_EQ_I(first.status, PL_OK);
  pl_store_req_clear(&first);
  CHECK_EQ_I(cl.late.status, PL_OK);
  pl_store_req_clear(&cl.late);
  CHECK_EQ_I(cl.later.status, PL_ERR_SHUTTING_DOWN);
  for (int i = 0; i < 50; i++) {
    CHECK_EQ_I(rs[i].status, PL_OK);
    CHECK_EQ_U(rs[i].u.send.out.seq, (unsigned)i + 1);
    pl_store_req_clear(&rs[i]);
  }
  waiter_destroy(&cl.w);
  pl_store *s = open_store(&c);
  account b = {0, 0, "bob", "phone"};
  pl_store_req r;
  CHECK_EQ_I(resume(s, 2, &r), PL_OK);
  b.did = r.u.resume.out.device_id;
  pl_store_req_clear(&r);
  CHECK_EQ_U(fetch_count(s, b.did), 50);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

static void test_durable_reopen(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  c.durable = 1;
  pl_store *s = open_store(&c);
  account a = reg(s, "alice", "phone", 1);
  account b = reg(s, "bob", "phone", 2);
  pl_store_req r;
  uint64_t last_qid = 0;
  for (int i = 0; i < 4; i++) {
    char id[16];
    snprintf(id, sizeof id, "d%d", i);
    CHECK_EQ_I(send_msg(s, &a, "bob", id, &r), PL_OK);
    last_qid = r.u.send.out.msg.qid;
    pl_store_req_clear(&r);
  }
  CHECK_EQ_I(fetch(s, b.did, 0, 1, &r), PL_OK);
  uint64_t first = r.u.fetch.out.msgs[0].qid;
  pl_store_req_clear(&r);
  CHECK_EQ_U(ack(s, b.did, first), 1);
  pl_store_close(s);

  s = open_store(&c);
  CHECK_EQ_I(resume(s, 1, &r), PL_OK);
  CHECK_EQ_U(r.u.resume.out.device_id, a.did);
  CHECK_STR(r.u.resume.out.user, "alice");
  pl_store_req_clear(&r);
  pl_store_req g = {.op = PL_STORE_GET_USER};
  g.u.get_user.in.user = "bob";
  CHECK_EQ_I(pl_store_call(s, &g), PL_OK);
  CHECK_EQ_U(g.u.get_user.out.user_id, b.uid);
  pl_store_req_clear(&g);
  CHECK_EQ_U(fetch_count(s, b.did), 3);
  CHECK_EQ_U(ack(s, b.did, last_qid), 3); /* now every message row is gone... */
  CHECK_EQ_I(db_count(dir, "messages"), 0);
  pl_store_close(s);

  s = open_store(&c);
  CHECK_EQ_I(send_msg(s, &a, "bob", "d9", &r), PL_OK);
  CHECK_EQ_U(r.u.send.out.seq, 5);
  CHECK(r.u.send.out.msg.qid > last_qid); /* ...yet a qid is never handed out twice */
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* What pl_store_call returned OK for was committed: a process that dies
 * without closing the store (durable=0: synchronous=NORMAL) loses none of it. */
static void test_process_crash_keeps_commits(void) {
  char *dir = tl_tempdir();
  pl_store_config c = base_cfg(dir);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    pl_store *s = NULL;
    if (pl_store_open(&s, &pl_store_sqlite, &c, NULL) != PL_OK)
      _exit(2);
    pl_store_req r = {.op = PL_STORE_REGISTER};
    r.u.reg.in.user = "bob";
    r.u.reg.in.device = "phone";
    r.u.reg.in.pwhash = "h";
    token(r.u.reg.in.token_hash, 2);
    if (pl_store_call(s, &r) != PL_OK)
      _exit(3);
    account a = {0, 0, "alice", "phone"};
    memset(&r, 0, sizeof r);
    r.op = PL_STORE_REGISTER;
    r.u.reg.in.user = "alice";
    r.u.reg.in.device = "phone";
    r.u.reg.in.pwhash = "h";
    token(r.u.reg.in.token_hash, 1);
    if (pl_store_call(s, &r) != PL_OK)
      _exit(4);
    a.uid = r.u.reg.out.user_id;
    a.did = r.u.reg.out.device_id;
    for (int i = 0; i < 10; i++) {
      char id[16];
      snprintf(id, sizeof id, "k%d", i);
      if (send_msg(s, &a, "bob", id, &r) != PL_OK)
        _exit(5);
    }
    _exit(0); /* no pl_store_close: the process just ends */
  }
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  pl_store *s = open_store(&c);
  pl_store_req r;
  CHECK_EQ_I(resume(s, 2, &r), PL_OK);
  uint64_t bob = r.u.resume.out.device_id;
  pl_store_req_clear(&r);
  CHECK_EQ_U(fetch_count(s, bob), 10);
  CHECK_EQ_I(resume(s, 1, &r), PL_OK);
  account a = {r.u.resume.out.user_id, r.u.resume.out.device_id, "alice", "phone"};
  pl_store_req_clear(&r);
  CHECK_EQ_I(send_msg(s, &a, "bob", "k3", &r), PL_OK);
  CHECK_EQ_I(r.u.send.out.duplicate, 1);
  pl_store_req_clear(&r);
  CHECK_EQ_I(send_msg(s, &a, "bob", "k10", &r), PL_OK);
  CHECK_EQ_U(r.u.send.out.seq, 11);
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* ---- pl_store.c against a fake backend ------------------------------------ */

static struct {
  int begins, commits, rollbacks;
  int again;       /* commits of a batch with a FETCH still to fail as a conflict would */
  int fetching;    /* this transaction ran a FETCH */
  int sending;     /* ... a SEND */
  int pair;        /* a transaction with a FETCH and a SEND conflicts, always */
  uint64_t poison; /* a SEND of this qid (client_ts) conflicts, always, even alone */
  int poisoned;    /* this transaction ran it */
  int ran[8];      /* SENDs run, by qid (< 8), committed or not */
  pthread_mutex_t gate_mu;
  pthread_cond_t gate_cv;
  int gate_open, gate_entered;
} fk = {.gate_mu = PTHREAD_MUTEX_INITIALIZER, .gate_cv = PTHREAD_COND_INITIALIZER};

static pl_err fk_open(void **be, const pl_store_config *cfg) {
  (void)cfg;
  *be = &fk;
  return PL_OK;
}
static void fk_close(void *be) { (void)be; }
static pl_err fk_begin(void *be) {
  (void)be;
  fk.begins++;
  fk.fetching = fk.sending = fk.poisoned = 0;
  return PL_OK;
}
static pl_err fk_commit(void *be) {
  (void)be;
  if (fk.poisoned || (fk.pair && fk.fetching && fk.sending))
    return PL_ERR_AGAIN;
  if (fk.again > 0 && fk.fetching) {
    fk.again--;
    return PL_ERR_AGAIN;
  }
  fk.commits++;
  return PL_OK;
}
static void fk_rollback(void *be) {
  (void)be;
  fk.rollbacks++;
}
static pl_err fk_expire(void *be, uint64_t now, uint64_t *deleted) {
  (void)be;
  (void)now;
  *deleted = 0;
  return PL_OK;
}

/* GET_USER "gate" blocks until released; SEND fills out as a real one would;
 * ACK "breaks the transaction". */
static pl_err fk_exec(void *be, pl_store_req *r) {
  (void)be;
  if (r->op == PL_STORE_GET_USER) {
    pthread_mutex_lock(&fk.gate_mu);
    fk.gate_entered = 1;
    pthread_cond_broadcast(&fk.gate_cv);
    while (!fk.gate_open)
      pthread_cond_wait(&fk.gate_cv, &fk.gate_mu);
    pthread_mutex_unlock(&fk.gate_mu);
    return PL_OK;
  }
  if (r->op == PL_STORE_SEND) {
    fk.sending = 1;
    fk.poisoned |= fk.poison && r->u.send.in.client_ts == fk.poison;
    if (r->u.send.in.client_ts < 8)
      fk.ran[r->u.send.in.client_ts]++;
    r->u.send.out.conv = pl_strdup("dm:a:b");
    r->u.send.out.msg.conv = pl_strdup("dm:a:b");
    r->u.send.out.msg.qid = r->u.send.in.client_ts;
    r->u.send.out.targets = pl_malloc(sizeof *r->u.send.out.targets);
    r->u.send.out.targets[0] = 7;
    r->u.send.out.ntargets = 1;
    return PL_OK;
  }
  if (r->op == PL_STORE_FETCH) { /* one entry, as pl_pg_queue_fetch fills them */
    fk.fetching = 1;
    r->u.fetch.out.msgs = pl_calloc(2, sizeof *r->u.fetch.out.msgs);
    r->u.fetch.out.msgs[r->u.fetch.out.nmsgs++].qid = 5;
    return PL_OK;
  }
  return r->op == PL_STORE_ACK ? PL_ERR_STORE : PL_OK;
}

static const pl_store_backend fake = {.name = "fake",
                                      .open = fk_open,
                                      .close = fk_close,
                                      .begin = fk_begin,
                                      .exec = fk_exec,
                                      .commit = fk_commit,
                                      .rollback = fk_rollback,
                                      .expire = fk_expire};

static void gate_wait_entered(void) {
  pthread_mutex_lock(&fk.gate_mu);
  while (!fk.gate_entered)
    pthread_cond_wait(&fk.gate_cv, &fk.gate_mu);
  pthread_mutex_unlock(&fk.gate_mu);
}

static void gate_open(void) {
  pthread_mutex_lock(&fk.gate_mu);
  fk.gate_open = 1;
  pthread_cond_broadcast(&fk.gate_cv);
  pthread_mutex_unlock(&fk.gate_mu);
}

static pl_store *fake_open(pl_store_req *gate, waiter *w) {
  pl_store_config c = {.dir = "(fake)"};
  pl_store *s = NULL;
  fk.begins = fk.commits = fk.rollbacks = fk.again = 0;
  fk.pair = 0;
  fk.poison = 0;
  memset(fk.ran, 0, sizeof fk.ran);
  fk.gate_open = fk.gate_entered = 0;
  rec_reset();
  CHECK_EQ_I(pl_store_open(&s, &fake, &c, &hooks), PL_OK);
  memset(gate, 0, sizeof *gate);
  gate->op = PL_STORE_GET_USER;
  gate->done = count_done;
  gate->data = w;
  pl_store_submit(s, gate);
  gate_wait_entered(); /* the thread is busy: what comes next forms one batch */
  return s;
}

static void fake_send(pl_store *s, pl_store_req *r, uint64_t qid, void *origin, waiter *w) {
  memset(r, 0, sizeof *r);
  r->op = PL_STORE_SEND;
  r->u.send.in.client_ts = qid;
  r->origin = origin;
  r->done = count_done;
  r->data = w;
  pl_store_submit(s, r);
}

static void test_batch_failure_fails_every_request(void) {
  waiter w;
  waiter_init(&w);
  pl_store_req gate, x, y;
  pl_store *s = fake_open(&gate, &w);
  fake_send(s, &x, 1, NULL, &w);
  memset(&y, 0, sizeof y);
  y.op = PL_STORE_ACK;
  y.done = count_done;
  y.data = &w;
  pl_store_submit(s, &y);
  gate_open();
  waiter_wait(&w, 3);
  CHECK_EQ_I(gate.status, PL_OK);
  CHECK_EQ_I(x.status, PL_ERR_INTERNAL);
  CHECK(x.u.send.out.conv == NULL && x.u.send.out.targets == NULL &&
        x.u.send.out.ntargets == 0); /* cleared, not leaked */
  CHECK_EQ_I(y.status, PL_ERR_INTERNAL);
  CHECK_EQ_U(rec_count(), 0); /* nothing delivered from a rolled-back batch */
  CHECK_EQ_I(fk.rollbacks, 1);
  pl_store_stats st;
  pl_store_get_stats(s, &st);
  CHECK_EQ_U(st.fails, 2);
  CHECK_EQ_U(st.commits, 1);
  pl_store_close(s);
  waiter_destroy(&w);
}

/* A batch that conflicts twice, then commits: each run starts from empty
 * outputs (a second failed run once kept the first's count over the next
 * run's array: a heap overflow in a fetch on PostgreSQL under deadlocks). */
static void test_batch_conflicts_twice_then_commits(void) {
  waiter w;
  waiter_init(&w);
  pl_store_req gate, f;
  pl_store *s = fake_open(&gate, &w);
  memset(&f, 0, sizeof f);
  f.op = PL_STORE_FETCH;
  f.done = count_done;
  f.data = &w;
  pl_store_submit(s, &f);
  fk.again = 2;
  gate_open();
  waiter_wait(&w, 2);
  CHECK_EQ_I(f.status, PL_OK);
  CHECK_EQ_U(f.u.fetch.out.nmsgs, 1);
  CHECK_EQ_U(f.u.fetch.out.msgs[0].qid, 5);
  CHECK_EQ_I(fk.again, 0);
  CHECK_EQ_I(fk.rollbacks, 2);
  pl_store_req_clear(&f);
  pl_store_close(s);
  waiter_destroy(&w);
}

/* A batch whose FETCH and SENDs keep conflicting (as a fetch behind a device
 * row other nodes' sends hold): after its retries it runs in halves, then
 * halves of those, and every request commits on its own instead of all
 * failing (a session's fetch failing so ended it). */
static void test_batch_split_after_retries(void) {
  waiter w;
  waiter_init(&w);
  pl_store_req gate, x, f, y;
  pl_store *s = fake_open(&gate, &w);
  fk.pair = 1;
  fake_send(s, &x, 1, NULL, &w);
  memset(&f, 0, sizeof f);
  f.op = PL_STORE_FETCH;
  f.done = count_done;
  f.data = &w;
  pl_store_submit(s, &f);
  fake_send(s, &y, 2, NULL, &w);
  gate_open();
  waiter_wait(&w, 4);
  CHECK_EQ_I(x.status, PL_OK);
  CHECK_EQ_I(f.status, PL_OK);
  CHECK_EQ_I(y.status, PL_OK);
  CHECK_EQ_U(f.u.fetch.out.nmsgs, 1);
  CHECK_EQ_U(rec_count(), 2); /* both sends delivered, in order */
  CHECK_EQ_U(rec.qids[0], 1);
  CHECK_EQ_U(rec.qids[1], 2);
  pl_store_stats st;
  pl_store_get_stats(s, &st);
  CHECK_EQ_U(st.splits, 1);
  CHECK_EQ_U(st.fails, 0);
  CHECK_EQ_I(fk.commits, 4); /* the gate's, then x alone, f alone, y alone */
  pl_store_req_clear(&x);
  pl_store_req_clear(&f);
  pl_store_req_clear(&y);
  pl_store_close(s);
  waiter_destroy(&w);
}

/* A send that conflicts even alone fails (retryable), and so does every
 * request after it in the batch, without running: a client's later send
 * stored after its earlier one failed would reorder the conversation. */
static void test_batch_split_keeps_order(void) {
  waiter w;
  waiter_init(&w);
  pl_store_req gate, x, y, z;
  pl_store *s = fake_open(&gate, &w);
  fk.poison = 2;
  fake_send(s, &x, 1, NULL, &w);
  fake_send(s, &y, 2, NULL, &w);
  fake_send(s, &z, 3, NULL, &w);
  gate_open();
  waiter_wait(&w, 4);
  CHECK_EQ_I(x.status, PL_OK); /* before it: committed in the first half */
  CHECK_EQ_I(y.status, PL_ERR_INTERNAL);
  CHECK_EQ_I(z.status, PL_ERR_INTERNAL);
  CHECK_EQ_U(rec_count(), 1);
  CHECK_EQ_U(rec.qids[0], 1);
  CHECK_EQ_I(fk.ran[3], 9 + 4); /* in the batch's runs and its second half's, never after y failed */
  pl_store_stats st;
  pl_store_get_stats(s, &st);
  CHECK_EQ_U(st.fails, 2);
  CHECK_EQ_U(st.splits, 1);
  pl_store_req_clear(&x);
  pl_store_close(s);
  waiter_destroy(&w);
}

static void test_deliver_before_post_in_order(void) {
  waiter w;
  waiter_init(&w);
  pl_store_req gate, r[3];
  int origin;
  pl_store *s = fake_open(&gate, &w);
  for (int i = 0; i < 3; i++)
    fake_send(s, &r[i], 10 + (uint64_t)i, &origin, &w);
  gate_open();
  waiter_wait(&w, 1); /* the gate itself had no origin */
  pl_store_close(s);  /* drains: every post has happened */
  CHECK_EQ_U(rec.nevents, 6);
  CHECK(memcmp(rec.events, "DDDPPP", 6) == 0);
  for (int i = 0; i < 3; i++) {
    CHECK_EQ_U(rec.qids[i], 10 + (uint64_t)i);
    CHECK(rec.posted[i] == &r[i]);
    CHECK_EQ_I(r[i].status, PL_OK);
    pl_store_req_clear(&r[i]);
  }
  CHECK_EQ_I(fk.commits, 2); /* the gate's batch, then all three in one */
  waiter_destroy(&w);
}

int main(void) {
  pl_log_set_level(PL_LOG_WARN);
  RUN(test_register_and_get_user);
  RUN(test_login_device_and_token_rotation);
  RUN(test_ban_between_password_and_sign_in);
  RUN(test_max_devices);
  RUN(test_logout_revokes);
  RUN(test_logout_drops_queue_and_stops_targeting);
  RUN(test_send_unknown_peer);
  RUN(test_seq_gap_free);
  RUN(test_dedup_survives_restart);
  RUN(test_targets);
  RUN(test_fetch_order_limit_more);
  RUN(test_ack_two_devices);
  RUN(test_group_cursors_written_by_ack);
  RUN(test_queue_full);
  RUN(test_ttl_short);
  RUN(test_ttl_expire_now);
  RUN(test_group_commit);
  RUN(test_call_leaves_done_alone);
  RUN(test_close_drains_then_refuses);
  RUN(test_durable_reopen);
  RUN(test_process_crash_keeps_commits);
  RUN(test_batch_failure_fails_every_request);
  RUN(test_batch_conflicts_twice_then_commits);
  RUN(test_batch_split_after_retries);
  RUN(test_batch_split_keeps_order);
  RUN(test_deliver_before_post_in_order);
  RUN(test_commit_pacing);
  RUN(test_dedup_rings_saved_and_replayed);
  RUN(test_dedup_per_device_window);
  RUN(test_dedup_packed_ids);
  RUN(test_upgrade_dedup_records);
  RUN(test_upgrade_from_schema_1);
  return tl_summary();
}
