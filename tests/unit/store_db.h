/* store_db: for the store's unit tests only (test_store*.c), which may look
 * inside the SQLite backend's file; nothing else opens it (integration tests
 * read /metrics: tl_metric). */
#ifndef STORE_DB_H
#define STORE_DB_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "store/pl_store.h"
#include "testlib.h"

/* Rows in a table of DIR/parley.db, read as a second connection (WAL allows
 * it while the store runs); -1 if it cannot be read. */
/* Hooks for a store opened alone: answers and deliveries go nowhere
 * (pl_store_call waits for its own answer). */
static inline void store_db_post(void *ud, void *origin, pl_store_req *req) {
  (void)ud;
  (void)origin;
  (void)req;
}

static inline void store_db_deliver(void *ud, const pl_msg *m, const uint64_t *devs, size_t n) {
  (void)ud;
  (void)m;
  (void)devs;
  (void)n;
}

static const pl_store_hooks store_db_hooks = {.post = store_db_post, .deliver = store_db_deliver};

static inline long long db_count(const char *dir, const char *table) {
  char path[600], sql[256];
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  long long n = -1;
  snprintf(path, sizeof path, "%s/parley.db", dir);
  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table);
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

/* Runs sql on DIR/parley.db (the store closed); SQLITE_OK or its error. */
static inline int db_exec(const char *dir, const char *sql) {
  char path[600];
  sqlite3 *db = NULL;
  snprintf(path, sizeof path, "%s/parley.db", dir);
  int rc = sqlite3_open(path, &db);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  sqlite3_close(db);
  return rc;
}

/* Messages only, not queued receipts and read syncs. */
#define DB_MESSAGES "messages WHERE kind = 0"

/* A token hash that names n (the tests' tokens). */
static inline void token(uint8_t t[PL_TOKEN_HASH_LEN], unsigned n) {
  memset(t, 0xab, PL_TOKEN_HASH_LEN);
  memcpy(t, &n, sizeof n);
}

typedef struct account {
  uint64_t uid, did;
  const char *user, *device;
} account;

/* Registers user with its first device (token tok); checks it worked. */
static inline account reg(pl_store *s, const char *user, const char *device, unsigned tok) {
  pl_store_req r = {.op = PL_STORE_REGISTER};
  r.u.reg.in.user = user;
  r.u.reg.in.device = device;
  r.u.reg.in.pwhash = "$argon2id$fake";
  token(r.u.reg.in.token_hash, tok);
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  account a = {r.u.reg.out.user_id, r.u.reg.out.device_id, user, device};
  CHECK(a.uid > 0 && a.did > 0);
  pl_store_req_clear(&r);
  return a;
}

/* Where an entry of a stream sits: its qid, and its seq in its conversation. */
typedef struct entry_pos {
  uint64_t qid, seq;
} entry_pos;

/* Makes a group owned by a with users as its members; *created: where its
 * GE_CREATED event sits (NULL: not wanted). Returns its gid. */
static inline uint64_t group_make(pl_store *s, const account *a, const char *const *users, size_t n,
                                  entry_pos *created) {
  pl_store_req r = {.op = PL_STORE_GROUP_CREATE};
  r.user_id = a->uid;
  r.device_id = a->did;
  r.u.group_create.in.name = "team";
  r.u.group_create.in.users = users;
  r.u.group_create.in.nusers = n;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  CHECK_EQ_U(r.nevents, 1);
  uint64_t gid = r.u.group_create.out.info.gid;
  if (created)
    *created = (entry_pos){r.events[0].msg.qid, r.events[0].msg.seq};
  pl_store_req_clear(&r);
  return gid;
}

/* a does op (PL_GROUP_ADD, _REMOVE, ...) to peer in gid; where its (first) event sits. */
static inline entry_pos group_op(pl_store *s, const account *a, uint64_t gid, int op, const char *peer) {
  pl_store_req r = {.op = PL_STORE_GROUP_UPDATE};
  r.user_id = a->uid;
  r.device_id = a->did;
  r.u.group_update.in.group = gid;
  r.u.group_update.in.group_op = op;
  r.u.group_update.in.peer = peer;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  CHECK(r.nevents >= 1);
  entry_pos p = {r.events[0].msg.qid, r.events[0].msg.seq};
  pl_store_req_clear(&r);
  return p;
}

/* A message (body of len bytes) from a's device: to the group gid, or
 * (gid 0) to the user peer. */
static inline entry_pos msg_send_body(pl_store *s, const account *a, uint64_t gid, const char *peer,
                                      const char *cid, const void *body, size_t len) {
  pl_store_req r = {.op = PL_STORE_SEND};
  r.user_id = a->uid;
  r.device_id = a->did;
  r.u.send.in.device_name = a->device;
  r.u.send.in.group = gid;
  r.u.send.in.peer = gid ? NULL : peer;
  r.u.send.in.client_id = cid;
  r.u.send.in.body = body;
  r.u.send.in.body_len = len;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  entry_pos p = {r.u.send.out.msg.qid, r.u.send.out.msg.seq};
  pl_store_req_clear(&r);
  return p;
}

/* The same with the client id as its body. */
static inline entry_pos msg_send(pl_store *s, const account *a, uint64_t gid, const char *peer,
                                 const char *cid) {
  return msg_send_body(s, a, gid, peer, cid, cid, strlen(cid));
}

#endif
