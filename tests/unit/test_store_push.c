/* test_store_push: the PL_STORE_PUSH_* ops on the SQLite backend through
 * the public interface: tokens, the collapse of a burst into one row, the
 * claim rules of pl_store.h (a leased row goes to one claimer; an ended
 * lease is claimable again; a stale claimer's outcome changes nothing),
 * each outcome, and the import of a push.db left by an older server. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/pl_log.h"
#include "common/pl_mem.h"
#include "store/pl_store.h"
#include "testlib.h"

#define WINDOW 1000u
#define LEASE 5000u
#define T0 1000000u /* "now" for the tests: time is an input of every op */

static pl_store *open_store(const char *dir) {
  pl_store_config c = {.dir = dir, .ttl_ms = 3600u * 1000u, .max_devices = 4, .max_queue = 1000};
  pl_store *s = NULL;
  CHECK_EQ_I(pl_store_open(&s, &pl_store_sqlite, &c, NULL), PL_OK);
  return s;
}

typedef struct account {
  uint64_t uid, did;
} account;

static account reg(pl_store *s, const char *user, unsigned tok) {
  pl_store_req r = {.op = PL_STORE_REGISTER};
  r.u.reg.in.user = user;
  r.u.reg.in.device = "phone";
  r.u.reg.in.pwhash = "$argon2id$fake";
  memset(r.u.reg.in.token_hash, (int)tok, PL_TOKEN_HASH_LEN);
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  account a = {r.u.reg.out.user_id, r.u.reg.out.device_id};
  pl_store_req_clear(&r);
  return a;
}

static void set_token(pl_store *s, account a, const char *user, const char *token) {
  pl_store_req r = {.op = PL_STORE_PUSH_TOKEN};
  r.u.push_token.in.device = a.did;
  r.u.push_token.in.user_id = a.uid;
  r.u.push_token.in.user = user;
  r.u.push_token.in.provider = "webhook";
  r.u.push_token.in.token = token;
  r.u.push_token.in.now = T0;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  pl_store_req_clear(&r);
}

/* The tokens, as "device:token,..." in device order. */
static void tokens(pl_store *s, char *out, size_t cap) {
  pl_store_req r = {.op = PL_STORE_PUSH_TOKENS};
  size_t n = 0;
  out[0] = '\0';
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  for (size_t i = 0; i < r.u.push_tokens.out.ntokens && n < cap; i++)
    n += (size_t)snprintf(out + n, cap - n, "%s%llu:%s", i ? "," : "",
                          (unsigned long long)r.u.push_tokens.out.tokens[i].device,
                          r.u.push_tokens.out.tokens[i].token);
  pl_store_req_clear(&r);
}

/* One message from sender for these devices; returns how many got it. */
static uint64_t enqueue(pl_store *s, const uint64_t *devs, size_t n, const char *sender, const char *text,
                        uint64_t now) {
  pl_store_req r = {.op = PL_STORE_PUSH_ENQUEUE};
  r.u.push_enqueue.in.devices = devs;
  r.u.push_enqueue.in.ndevices = n;
  r.u.push_enqueue.in.sender = sender;
  r.u.push_enqueue.in.from = sender;
  r.u.push_enqueue.in.conv = "dm:x:y";
  r.u.push_enqueue.in.text = text;
  r.u.push_enqueue.in.text_len = text ? strlen(text) : 0;
  r.u.push_enqueue.in.now = now;
  r.u.push_enqueue.in.window_ms = WINDOW;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  uint64_t got = r.u.push_enqueue.out.enqueued;
  pl_store_req_clear(&r);
  return got;
}

/* Claims up to limit rows at now; the caller clears r. */
static void claim(pl_store *s, const char *owner, uint64_t now, uint32_t limit, pl_store_req *r) {
  memset(r, 0, sizeof *r);
  r->op = PL_STORE_PUSH_CLAIM;
  r->u.push_claim.in.owner = owner;
  r->u.push_claim.in.now = now;
  r->u.push_claim.in.lease_ms = LEASE;
  r->u.push_claim.in.limit = limit;
  CHECK_EQ_I(pl_store_call(s, r), PL_OK);
}

static size_t claim_n(pl_store *s, uint64_t now) {
  pl_store_req r;
  claim(s, "peek", now, 100, &r);
  size_t n = r.u.push_claim.out.nrows;
  pl_store_req_clear(&r);
  return n;
}

static void done(pl_store *s, const pl_store_push_result *x, uint64_t now) {
  pl_store_req r = {.op = PL_STORE_PUSH_DONE};
  r.u.push_done.in.results = x;
  r.u.push_done.in.nresults = 1;
  r.u.push_done.in.now = now;
  r.u.push_done.in.window_ms = WINDOW;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  pl_store_req_clear(&r);
}

static uint64_t pending(pl_store *s) {
  pl_store_req r;
  claim(s, "count", 0, 0, &r);
  uint64_t n = r.u.push_claim.out.pending;
  pl_store_req_clear(&r);
  return n;
}

/* ---- tokens ------------------------------------------------------------------ */

static void test_tokens_set_replace_remove(void) {
  char *dir = tl_tempdir(), got[256], want[256];
  pl_store *s = open_store(dir);
  account a = reg(s, "alice", 1), b = reg(s, "bob", 2);
  set_token(s, a, "alice", "t-a");
  set_token(s, b, "bob", "t-b1");
  set_token(s, b, "bob", "t-b2"); /* a new token replaces the old */
  tokens(s, got, sizeof got);
  snprintf(want, sizeof want, "%llu:t-a,%llu:t-b2", (unsigned long long)a.did, (unsigned long long)b.did);
  CHECK_STR(got, want);
  /* removing a token drops the device's pending notification with it */
  CHECK_EQ_U(enqueue(s, &b.did, 1, "alice", "hi", T0), 1);
  set_token(s, b, "bob", NULL);
  tokens(s, got, sizeof got);
  snprintf(want, sizeof want, "%llu:t-a", (unsigned long long)a.did);
  CHECK_STR(got, want);
  CHECK_EQ_U(pending(s), 0);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* Rows of dir's push tables for device (its token, its pending row). */
static long long push_rows(const char *dir, uint64_t device) {
  char path[512], sql[160];
  snprintf(path, sizeof path, "%s/parley.db", dir);
  snprintf(sql, sizeof sql,
           "SELECT (SELECT count(*) FROM push_tokens WHERE device_id = %llu) +"
           " (SELECT count(*) FROM push_pending WHERE device_id = %llu)",
           (unsigned long long)device, (unsigned long long)device);
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  long long n = -1;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

/* Logging out removes the device's token and pending row in the logout's
 * own transaction: a crash right after it leaves no token of a signed-out
 * device (it used to take a second request). */
static void test_logout_drops_token_with_it(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir);
  account a = reg(s, "alice", 1), b = reg(s, "bob", 2);
  set_token(s, a, "alice", "t-a");
  set_token(s, b, "bob", "t-b");
  CHECK_EQ_U(enqueue(s, &b.did, 1, "alice", "hi", T0), 1);
  CHECK_EQ_I(push_rows(dir, b.did), 2);
  pl_store_req r = {.op = PL_STORE_LOGOUT};
  r.device_id = b.did;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  pl_store_req_clear(&r);
  CHECK_EQ_I(push_rows(dir, b.did), 0); /* no other request ran */
  CHECK_EQ_I(push_rows(dir, a.did), 1);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* A device signed out while push was off (nobody removed its token) is
 * not pushed to: the listing forgets its token and pending row. */
static void test_tokens_of_signed_out_devices_go(void) {
  char *dir = tl_tempdir(), got[256], want[256];
  pl_store *s = open_store(dir);
  account a = reg(s, "alice", 1), b = reg(s, "bob", 2);
  set_token(s, a, "alice", "t-a");
  set_token(s, b, "bob", "t-b");
  CHECK_EQ_U(enqueue(s, &b.did, 1, "alice", "hi", T0), 1);
  pl_store_req r = {.op = PL_STORE_LOGOUT};
  r.device_id = b.did;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  pl_store_req_clear(&r);
  tokens(s, got, sizeof got);
  snprintf(want, sizeof want, "%llu:t-a", (unsigned long long)a.did);
  CHECK_STR(got, want);
  CHECK_EQ_U(pending(s), 0);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* ---- enqueue and claim ---------------------------------------------------------- */

/* A burst is one row: due after the window, the newest message's text, a
 * count of them all; no row for a device without a token or for the
 * sender's own device. */
static void test_burst_collapses_into_one_row(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir);
  account a = reg(s, "alice", 1), b = reg(s, "bob", 2), c = reg(s, "carol", 3);
  set_token(s, a, "alice", "t-a");
  set_token(s, b, "bob", "t-b");
  uint64_t devs[] = {a.did, b.did, c.did};
  CHECK_EQ_U(enqueue(s, devs, 3, "alice", "one", T0), 1);
  CHECK_EQ_U(enqueue(s, devs, 3, "alice", "two", T0 + 10), 1);
  CHECK_EQ_U(enqueue(s, devs, 3, "alice", "three", T0 + 20), 1);
  CHECK_EQ_U(claim_n(s, T0 + WINDOW - 1), 0); /* the window is still open */
  pl_store_req r;
  claim(s, "node-a", T0 + WINDOW, 10, &r);
  CHECK_EQ_U(r.u.push_claim.out.nrows, 1);
  pl_store_push_row *w = &r.u.push_claim.out.rows[0];
  CHECK_EQ_U(w->device, b.did);
  CHECK_EQ_U(w->user_id, b.uid);
  CHECK_EQ_U(w->count, 3);
  CHECK_EQ_U(w->first_ms, T0);
  CHECK_EQ_U(w->attempts, 0);
  CHECK_STR(w->token, "t-b");
  CHECK_STR(w->user, "bob");
  CHECK_STR(w->provider, "webhook");
  CHECK_STR(w->from, "alice");
  CHECK_STR(w->text, "three");
  CHECK_EQ_U(w->text_len, 5);
  CHECK_EQ_U(r.u.push_claim.out.pending, 1);
  CHECK_EQ_U(r.u.push_claim.out.next_due, T0 + WINDOW + LEASE); /* its lease's end */
  pl_store_req_clear(&r);
  /* privacy mode: no sender, conversation or text is kept */
  CHECK_EQ_U(enqueue(s, &c.did, 1, "bob", NULL, T0), 0);
  set_token(s, c, "carol", "t-c");
  pl_store_req q = {.op = PL_STORE_PUSH_ENQUEUE};
  q.u.push_enqueue.in.devices = &c.did;
  q.u.push_enqueue.in.ndevices = 1;
  q.u.push_enqueue.in.sender = "bob";
  q.u.push_enqueue.in.now = T0;
  q.u.push_enqueue.in.window_ms = WINDOW;
  CHECK_EQ_I(pl_store_call(s, &q), PL_OK);
  pl_store_req_clear(&q);
  claim(s, "node-a", T0 + WINDOW, 10, &r);
  CHECK_EQ_U(r.u.push_claim.out.nrows, 1);
  CHECK(r.u.push_claim.out.rows[0].from == NULL && r.u.push_claim.out.rows[0].conv == NULL &&
        r.u.push_claim.out.rows[0].text == NULL);
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* A leased row goes to nobody else until the lease ends; then the next
 * claimer gets it with a new fence, and the first claimer's late outcome
 * changes nothing. */
static void test_claim_lease_and_fence(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir);
  account a = reg(s, "alice", 1), b = reg(s, "bob", 2);
  set_token(s, b, "bob", "t-b");
  (void)a;
  enqueue(s, &b.did, 1, "alice", "hi", T0);
  uint64_t t = T0 + WINDOW;
  pl_store_req ra, rb;
  claim(s, "node-a", t, 10, &ra);
  CHECK_EQ_U(ra.u.push_claim.out.nrows, 1);
  claim(s, "node-b", t, 10, &rb);
  CHECK_EQ_U(rb.u.push_claim.out.nrows, 0); /* leased to node-a */
  pl_store_req_clear(&rb);
  claim(s, "node-b", t + LEASE - 1, 10, &rb);
  CHECK_EQ_U(rb.u.push_claim.out.nrows, 0);
  pl_store_req_clear(&rb);
  /* node-a died: the lease ends and node-b sends it again (at least once) */
  claim(s, "node-b", t + LEASE, 10, &rb);
  CHECK_EQ_U(rb.u.push_claim.out.nrows, 1);
  CHECK(rb.u.push_claim.out.rows[0].claim != ra.u.push_claim.out.rows[0].claim);
  CHECK_EQ_U(rb.u.push_claim.out.rows[0].count, 1);
  /* node-a's outcome comes late: its fence is stale, nothing changes */
  pl_store_push_result x = {
      .device = b.did, .claim = ra.u.push_claim.out.rows[0].claim, .count = 1, .outcome = PL_PUSH_DONE_SENT};
  done(s, &x, t + LEASE + 1);
  CHECK_EQ_U(pending(s), 1);
  x.outcome = PL_PUSH_DONE_RELEASE;
  done(s, &x, t + LEASE + 1);
  CHECK_EQ_U(claim_n(s, t + LEASE + 1), 0); /* still node-b's */
  x.claim = rb.u.push_claim.out.rows[0].claim;
  x.outcome = PL_PUSH_DONE_SENT;
  done(s, &x, t + LEASE + 2);
  CHECK_EQ_U(pending(s), 0);
  pl_store_req_clear(&ra);
  pl_store_req_clear(&rb);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* Claimers on several threads at once never get the same row. */
#define NDEV 4
#define NCLAIMERS 4
static struct {
  pl_store *s;
  uint64_t got[NCLAIMERS][64];
  size_t ngot[NCLAIMERS];
} race;

static void *claimer(void *arg) {
  size_t k = (size_t)(uintptr_t)arg;
  char owner[16];
  snprintf(owner, sizeof owner, "node-%zu", k);
  for (int round = 0; round < 16; round++) {
    pl_store_req r;
    claim(race.s, owner, T0 + WINDOW, 1, &r);
    for (size_t i = 0; i < r.u.push_claim.out.nrows && race.ngot[k] < 64; i++)
      race.got[k][race.ngot[k]++] = r.u.push_claim.out.rows[i].device;
    pl_store_req_clear(&r);
  }
  return NULL;
}

static void test_claimers_never_share_a_row(void) {
  char *dir = tl_tempdir();
  race.s = open_store(dir);
  uint64_t devs[NDEV];
  for (unsigned i = 0; i < NDEV; i++) {
    char name[16];
    snprintf(name, sizeof name, "user%u", i);
    account a = reg(race.s, name, 10 + i);
    set_token(race.s, a, name, "tok");
    devs[i] = a.did;
  }
  CHECK_EQ_U(enqueue(race.s, devs, NDEV, "someone", "hi", T0), NDEV);
  memset(race.ngot, 0, sizeof race.ngot);
  pthread_t th[NCLAIMERS];
  for (size_t k = 0; k < NCLAIMERS; k++)
    CHECK(pthread_create(&th[k], NULL, claimer, (void *)(uintptr_t)k) == 0);
  for (size_t k = 0; k < NCLAIMERS; k++)
    pthread_join(th[k], NULL);
  size_t total = 0;
  for (size_t k = 0; k < NCLAIMERS; k++)
    for (size_t i = 0; i < race.ngot[k]; i++) {
      total++;
      for (size_t k2 = 0; k2 < NCLAIMERS; k2++)
        for (size_t i2 = 0; i2 < race.ngot[k2]; i2++)
          CHECK(race.got[k][i] != race.got[k2][i2] || (k == k2 && i == i2));
    }
  CHECK_EQ_U(total, NDEV); /* each row once, to one claimer */
  pl_store_close(race.s);
  tl_rmrf(dir);
  free(dir);
}

/* ---- outcomes ------------------------------------------------------------------------ */

/* Claims bob's one row at now; its result template. */
static pl_store_push_result claim_one(pl_store *s, uint64_t now) {
  pl_store_req r;
  claim(s, "node-a", now, 10, &r);
  CHECK_EQ_U(r.u.push_claim.out.nrows, 1);
  pl_store_push_result x = {.device = r.u.push_claim.out.rows[0].device,
                            .claim = r.u.push_claim.out.rows[0].claim,
                            .count = r.u.push_claim.out.rows[0].count};
  pl_store_req_clear(&r);
  return x;
}

static void test_outcomes(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir);
  account b = reg(s, "bob", 2);
  set_token(s, b, "bob", "t-b");
  uint64_t t = T0 + WINDOW;

  /* SENT while two more messages came: they get a window of their own */
  enqueue(s, &b.did, 1, "alice", "one", T0);
  pl_store_push_result x = claim_one(s, t);
  enqueue(s, &b.did, 1, "alice", "two", t + 1);
  enqueue(s, &b.did, 1, "alice", "three", t + 2);
  x.outcome = PL_PUSH_DONE_SENT;
  done(s, &x, t + 10);
  CHECK_EQ_U(claim_n(s, t + 10 + WINDOW - 1), 0);
  pl_store_req r;
  claim(s, "node-a", t + 10 + WINDOW, 10, &r);
  CHECK_EQ_U(r.u.push_claim.out.nrows, 1);
  CHECK_EQ_U(r.u.push_claim.out.rows[0].count, 2);
  CHECK_STR(r.u.push_claim.out.rows[0].text, "three");
  x = (pl_store_push_result){.device = b.did, .claim = r.u.push_claim.out.rows[0].claim, .count = 2};
  pl_store_req_clear(&r);

  /* LATER: due again at its time, attempts kept */
  t += 10 + WINDOW;
  x.outcome = PL_PUSH_DONE_LATER;
  x.attempts = 3;
  x.due_ms = t + 500;
  done(s, &x, t);
  CHECK_EQ_U(claim_n(s, t + 499), 0);
  claim(s, "node-a", t + 500, 10, &r);
  CHECK_EQ_U(r.u.push_claim.out.nrows, 1);
  CHECK_EQ_U(r.u.push_claim.out.rows[0].attempts, 3);
  x.claim = r.u.push_claim.out.rows[0].claim;
  pl_store_req_clear(&r);

  /* RELEASE: due at once for the next claimer */
  x.outcome = PL_PUSH_DONE_RELEASE;
  done(s, &x, t + 501);
  x = claim_one(s, t + 501);

  /* DROP: gone */
  x.outcome = PL_PUSH_DONE_DROP;
  done(s, &x, t + 502);
  CHECK_EQ_U(pending(s), 0);

  /* BAD_TOKEN after a new token was registered: the token stays, the row
   * is released to be sent to the new one */
  enqueue(s, &b.did, 1, "alice", "four", t);
  x = claim_one(s, t + WINDOW);
  set_token(s, b, "bob", "t-b2");
  x.outcome = PL_PUSH_DONE_BAD_TOKEN;
  x.token = "t-b";
  done(s, &x, t + WINDOW + 1);
  claim(s, "node-a", t + WINDOW + 1, 10, &r);
  CHECK_EQ_U(r.u.push_claim.out.nrows, 1);
  CHECK_STR(r.u.push_claim.out.rows[0].token, "t-b2");
  x.claim = r.u.push_claim.out.rows[0].claim;
  pl_store_req_clear(&r);

  /* BAD_TOKEN for the device's token: token and row go */
  x.token = "t-b2";
  done(s, &x, t + WINDOW + 2);
  CHECK_EQ_U(pending(s), 0);
  char got[64];
  tokens(s, got, sizeof got);
  CHECK_STR(got, "");
  CHECK_EQ_U(enqueue(s, &b.did, 1, "alice", "five", t), 0); /* no token: no row */

  /* an unknown outcome is refused */
  pl_store_req bad = {.op = PL_STORE_PUSH_DONE};
  pl_store_push_result y = {.device = b.did, .outcome = 99};
  bad.u.push_done.in.results = &y;
  bad.u.push_done.in.nresults = 1;
  CHECK_EQ_I(pl_store_call(s, &bad), PL_ERR_INVALID_ARGUMENT);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* Pending rows and tokens are in parley.db: a restart keeps them. */
static void test_pending_survives_reopen(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir);
  account b = reg(s, "bob", 2);
  set_token(s, b, "bob", "t-b");
  enqueue(s, &b.did, 1, "alice", "kept", T0);
  pl_store_close(s);
  s = open_store(dir);
  pl_store_req r;
  claim(s, "node-a", T0 + WINDOW, 10, &r);
  CHECK_EQ_U(r.u.push_claim.out.nrows, 1);
  CHECK_STR(r.u.push_claim.out.rows[0].text, "kept");
  CHECK_STR(r.u.push_claim.out.rows[0].token, "t-b");
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* ---- the upgrade from push.db ------------------------------------------------------- */

/* push.db as the push service wrote it before schema 8. */
static void old_push_db(const char *dir, uint64_t dev_b, uint64_t uid_b, uint64_t dev_gone) {
  char path[512], sql[2048];
  sqlite3 *db;
  snprintf(path, sizeof path, "%s/push.db", dir);
  CHECK_EQ_I(sqlite3_open(path, &db), SQLITE_OK);
  snprintf(sql, sizeof sql,
           "PRAGMA journal_mode=WAL;"
           "CREATE TABLE tokens(device_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
           " user TEXT NOT NULL, provider TEXT NOT NULL, token TEXT NOT NULL, updated INTEGER NOT NULL);"
           "CREATE TABLE pending(device_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
           " count INTEGER NOT NULL, first_ms INTEGER NOT NULL, next_ms INTEGER NOT NULL,"
           " attempts INTEGER NOT NULL, sender TEXT, conv TEXT, preview BLOB);"
           "INSERT INTO tokens VALUES(%llu, %llu, 'bob', 'apns', 'old-tok', 1);"
           "INSERT INTO tokens VALUES(%llu, 99, 'ghost', 'fcm', 'ghost-tok', 1);"
           "INSERT INTO pending VALUES(%llu, %llu, 4, 500, 1500, 2, 'alice', 'dm:alice:bob', X'6869');",
           (unsigned long long)dev_b, (unsigned long long)uid_b, (unsigned long long)dev_gone,
           (unsigned long long)dev_b, (unsigned long long)uid_b);
  CHECK_EQ_I(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
}

static void test_import_push_db(void) {
  char *dir = tl_tempdir(), path[512], got[256], want[256];
  pl_store *s = open_store(dir);
  account b = reg(s, "bob", 2);
  pl_store_close(s);
  old_push_db(dir, b.did, b.uid, b.did + 100);
  s = open_store(dir);
  snprintf(path, sizeof path, "%s/push.db", dir);
  CHECK(access(path, F_OK) != 0);
  snprintf(path, sizeof path, "%s/push.db.imported", dir);
  CHECK(access(path, F_OK) == 0);
  tokens(s, got, sizeof got); /* the unknown device's token is not kept */
  snprintf(want, sizeof want, "%llu:old-tok", (unsigned long long)b.did);
  CHECK_STR(got, want);
  pl_store_req r;
  claim(s, "node-a", 1500, 10, &r);
  CHECK_EQ_U(r.u.push_claim.out.nrows, 1);
  CHECK_EQ_U(r.u.push_claim.out.rows[0].count, 4);
  CHECK_EQ_U(r.u.push_claim.out.rows[0].first_ms, 500);
  CHECK_EQ_U(r.u.push_claim.out.rows[0].attempts, 2);
  CHECK_STR(r.u.push_claim.out.rows[0].provider, "apns");
  CHECK_STR(r.u.push_claim.out.rows[0].text, "hi");
  pl_store_req_clear(&r);
  /* a token set since wins over a second import of the same file */
  set_token(s, b, "bob", "new-tok");
  pl_store_close(s);
  char from[600];
  snprintf(from, sizeof from, "%s/push.db", dir);
  CHECK_EQ_I(rename(path, from), 0);
  s = open_store(dir);
  tokens(s, got, sizeof got);
  snprintf(want, sizeof want, "%llu:new-tok", (unsigned long long)b.did);
  CHECK_STR(got, want);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* A push.db that is not one is left where it is; the store opens. */
static void test_unreadable_push_db_is_left(void) {
  char *dir = tl_tempdir(), path[512];
  snprintf(path, sizeof path, "%s/push.db", dir);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  fputs("this is not a database, but it is long enough to look at its header: ..........", f);
  fclose(f);
  pl_store *s = open_store(dir);
  CHECK(access(path, F_OK) == 0);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

int main(void) {
  pl_log_set_level(PL_LOG_WARN);
  RUN(test_tokens_set_replace_remove);
  RUN(test_tokens_of_signed_out_devices_go);
  RUN(test_logout_drops_token_with_it);
  RUN(test_burst_collapses_into_one_row);
  RUN(test_claim_lease_and_fence);
  RUN(test_claimers_never_share_a_row);
  RUN(test_outcomes);
  RUN(test_pending_survives_reopen);
  RUN(test_import_push_db);
  RUN(test_unreadable_push_db_is_left);
  return tl_summary();
}
