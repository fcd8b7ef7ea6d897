/* test_store_data: what a data dir holds, seen through the store.
 *
 * PL_STORE_STATS counts it (the /metrics gauges); a data dir written by an
 * older parleyd (schema 6, schema 9's group positions) keeps working; rows
 * stored before strings were checked still make frames a strict protobuf
 * library decodes. The last three plant their rows with SQLite, which only
 * the store's unit tests may do (integration tests talk to the server). */
#include <stdlib.h>
#include <string.h>

#include "common/pl_log.h"
#include "common/pl_time.h"
#include "parley.pb-c.h"
#include "proto/pl_frame.h"
#include "proto/pl_strings.h"
#include "store/pl_store.h"
#include "store_db.h"
#include "testlib.h"

static pl_store *open_store(const char *dir, uint64_t token_idle_ms, uint64_t token_max_ms) {
  pl_store_config c = {.dir = dir,
                       .ttl_ms = 3600u * 1000u,
                       .max_devices = 4,
                       .max_queue = 1000,
                       .token_idle_ms = token_idle_ms,
                       .token_max_ms = token_max_ms};
  pl_store *s = NULL;
  CHECK_EQ_I(pl_store_open(&s, &pl_store_sqlite, &c, &store_db_hooks), PL_OK);
  return s;
}

static account login(pl_store *s, account a, const char *device, unsigned tok) {
  pl_store_req r = {.op = PL_STORE_LOGIN_DEVICE};
  r.user_id = a.uid;
  r.u.login.in.device = device;
  token(r.u.login.in.token_hash, tok);
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  a.did = r.u.login.out.device_id;
  a.device = device;
  pl_store_req_clear(&r);
  return a;
}

/* A 1:1 message from a (device name as the session has it) to peer. */
static uint64_t send_to(pl_store *s, const account *a, const char *device_name, const char *peer,
                        const char *cid) {
  pl_store_req r = {.op = PL_STORE_SEND};
  r.user_id = a->uid;
  r.device_id = a->did;
  r.u.send.in.device_name = device_name;
  r.u.send.in.peer = peer;
  r.u.send.in.client_id = cid;
  r.u.send.in.body = (const uint8_t *)"hi";
  r.u.send.in.body_len = 2;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  uint64_t qid = r.u.send.out.msg.qid;
  pl_store_req_clear(&r);
  return qid;
}

static void ack(pl_store *s, const account *a, uint64_t upto) {
  pl_store_req r = {.op = PL_STORE_ACK};
  r.device_id = a->did;
  r.user_id = a->uid;
  r.u.ack.in.upto = upto;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  pl_store_req_clear(&r);
}

static pl_store_counts counts(pl_store *s) {
  pl_store_req r = {.op = PL_STORE_STATS};
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  pl_store_counts c = r.u.stats.out.counts;
  pl_store_req_clear(&r);
  return c;
}

/* ---- STATS ------------------------------------------------------------------ */

/* Each figure follows what is stored: a message and its queue entries until
 * every device acked, the receipts kept for an offline sender, dedup
 * records, a group's history once for all members, signed-out devices. */
static void test_stats_count_what_is_stored(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir, 0, 0);
  pl_store_counts c = counts(s);
  CHECK_EQ_U(c.users + c.devices + c.messages + c.queue + c.groups + c.dedup + c.media, 0);
  account alice = reg(s, "alice", "phone", 1);
  account phone = reg(s, "bob", "phone", 2);
  account laptop = login(s, phone, "laptop", 3);
  c = counts(s);
  CHECK_EQ_U(c.users, 2);
  CHECK_EQ_U(c.devices, 3);

  uint64_t qid = send_to(s, &alice, "phone", "bob", "m1");
  c = counts(s);
  CHECK_EQ_U(c.messages, 1);
  CHECK_EQ_U(c.message_queue, 2); /* bob's two devices */
  CHECK_EQ_U(c.queue, 2);
  CHECK_EQ_U(c.events, 0);
  CHECK_EQ_U(c.dedup, 1);
  ack(s, &phone, qid);
  c = counts(s);
  CHECK_EQ_U(c.messages, 1); /* the laptop has not acked */
  CHECK_EQ_U(c.message_queue, 1);
  CHECK_EQ_U(c.events, 1); /* delivered, for alice (nobody is online here) */
  ack(s, &laptop, qid);
  c = counts(s);
  CHECK_EQ_U(c.messages, 0);
  CHECK_EQ_U(c.message_queue, 0);
  CHECK_EQ_U(c.events, 1); /* one receipt: the newer replaced the older */
  CHECK_EQ_U(c.queue, 1);  /* ... queued for alice's phone */
  CHECK_EQ_U(c.dedup, 1);  /* outlives the message */

  const char *members[] = {"bob"};
  pl_store_req r = {.op = PL_STORE_GROUP_CREATE};
  r.user_id = alice.uid;
  r.device_id = alice.did;
  r.u.group_create.in.name = "team";
  r.u.group_create.in.users = members;
  r.u.group_create.in.nusers = 1;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  pl_store_req_clear(&r);
  c = counts(s);
  CHECK_EQ_U(c.groups, 1);
  CHECK_EQ_U(c.members, 2);
  CHECK_EQ_U(c.group_history, 1); /* its "created" event, kept once */
  CHECK_EQ_U(c.queue, 1);         /* no per-member queue entries */

  r = (pl_store_req){.op = PL_STORE_LOGOUT};
  r.device_id = laptop.did;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  pl_store_req_clear(&r);
  c = counts(s);
  CHECK_EQ_U(c.devices, 2);
  CHECK_EQ_U(c.users, 2);
  CHECK_EQ_U(c.media, 0);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* ---- data dirs from older servers -------------------------------------------- */

/* A data dir of schema 6 (before token lifetimes) keeps working: its tokens
 * resume after the upgrade, and count their lifetime from it (with
 * lifetimes on, a token issued "at 0" would have expired long ago). */
static void test_schema6_upgrade_keeps_tokens(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir, 0, 0);
  reg(s, "alice", "old", 1);
  pl_store_close(s);
  CHECK_EQ_I(db_exec(dir, "ALTER TABLE devices DROP COLUMN token_at; ALTER TABLE devices DROP COLUMN used_at;"
                          "PRAGMA user_version = 6;"),
             SQLITE_OK);
  s = open_store(dir, 60u * 1000u, 3600u * 1000u); /* idle 1 min, at most 1 h */
  pl_store_req r = {.op = PL_STORE_RESUME};
  token(r.u.resume.in.token_hash, 1);
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  CHECK_STR(r.u.resume.out.device, "old");
  pl_store_req_clear(&r);
  CHECK_EQ_I(db_count(dir, "devices WHERE token_at > 0 AND used_at > 0"), 1);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* An expired token opens nothing: not a session (RESUME), not an upload
 * (MEDIA_AUTH), not a download by token (MEDIA_GET) — the last one used to
 * pass, its request being given no lifetimes. */
static void test_expired_token_refused_everywhere(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir, 60u * 1000u, 3600u * 1000u); /* idle 1 min, at most 1 h */
  reg(s, "alice", "phone", 1);
  pl_store_close(s);
  CHECK_EQ_I(db_exec(dir, "UPDATE devices SET used_at = 1"), SQLITE_OK); /* idle since 1970 */
  s = open_store(dir, 60u * 1000u, 3600u * 1000u);
  pl_store_req r = {.op = PL_STORE_RESUME};
  token(r.u.resume.in.token_hash, 1);
  CHECK_EQ_I(pl_store_call(s, &r), PL_ERR_BAD_TOKEN);
  pl_store_req_clear(&r);
  r = (pl_store_req){.op = PL_STORE_MEDIA_AUTH};
  token(r.u.media_auth.in.token_hash, 1);
  CHECK_EQ_I(pl_store_call(s, &r), PL_ERR_BAD_TOKEN);
  pl_store_req_clear(&r);
  r = (pl_store_req){.op = PL_STORE_MEDIA_GET};
  token(r.u.media_get.in.token_hash, 1);
  r.u.media_get.in.media_id = "0123456789abcdef0123456789abcdef";
  CHECK_EQ_I(pl_store_call(s, &r), PL_ERR_BAD_TOKEN);
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* A frame of this type holding msg, as the session sends it (repaired),
 * unpacked again as a client would. */
static void *as_sent(uint8_t type, const ProtobufCMessage *msg) {
  pl_buf *b = pl_frame_encode(type, msg);
  pl_strings_repair(type, b->data + PL_FRAME_HDR, b->len - PL_FRAME_HDR);
  pl_frame f = {.type = type, .payload = b->data + PL_FRAME_HDR, .payload_len = b->len - PL_FRAME_HDR};
  void *out = pl_frame_unpack(&f);
  pl_buf_unref(b);
  CHECK(out != NULL);
  return out;
}

/* The group entries of device's stream after a protocol 2 fetch from
 * scratch: their seqs, in order, in *seqs (at most 16); how many. */
static size_t group_seqs(pl_store *s, const account *a, uint64_t *seqs) {
  pl_store_req r = {.op = PL_STORE_FETCH};
  size_t n = 0;
  r.device_id = a->did;
  r.user_id = a->uid;
  r.u.fetch.in.streams = 1;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  for (size_t i = 0; i < r.u.fetch.out.nmsgs && n < 16; i++)
    if (r.u.fetch.out.msgs[i].gid)
      seqs[n++] = r.u.fetch.out.msgs[i].seq;
  pl_store_req_clear(&r);
  return n;
}

static void seqs_are(pl_store *s, const account *a, uint64_t from, uint64_t to) {
  uint64_t got[16];
  size_t n = group_seqs(s, a, got);
  CHECK_EQ_U(n, from ? to - from + 1 : 0);
  for (size_t i = 0; i < n; i++)
    CHECK_EQ_U(got[i], from + i);
}

/* A data dir of schema 9 kept group positions in the global qid (members
 * since_qid/left_qid, devices.acked); the upgrade turns them into each
 * group's seqs, so every device goes on with exactly the group entries it
 * had not acked, a member who left up to its removal, a member added later
 * from its GE_ADDED event, even where the oldest entries were trimmed. */
static void test_schema9_group_positions_upgrade(void) {
  char *dir = tl_tempdir(), sql[2048], where[200];
  pl_store *s = open_store(dir, 0, 0);
  account a = reg(s, "alice", "phone", 1), bp = reg(s, "bob", "phone", 2);
  account bl = login(s, bp, "laptop", 3), c = reg(s, "carol", "phone", 4), d = reg(s, "dave", "phone", 5);
  const char *members[] = {"bob", "carol"};
  entry_pos made;
  uint64_t g = group_make(s, &a, members, 2, &made);           /* seq 1 */
  entry_pos m1 = msg_send(s, &a, g, NULL, "m1");               /* 2 */
  entry_pos dm = msg_send(s, &a, 0, "bob", "dm");              /* bob's queue */
  msg_send(s, &a, g, NULL, "m2");                              /* 3 */
  entry_pos rm = group_op(s, &a, g, PL_GROUP_REMOVE, "carol"); /* 4 */
  msg_send(s, &a, g, NULL, "m3");                              /* 5 */
  entry_pos ad = group_op(s, &a, g, PL_GROUP_ADD, "dave");     /* 6 */
  entry_pos m4 = msg_send(s, &a, g, NULL, "m4");               /* 7 */
  CHECK_EQ_U(m4.seq, 7);
  pl_store_close(s);
  /* as parleyd of schema 9 kept it; the created event was trimmed (every device had it) */
  snprintf(sql, sizeof sql,
           "ALTER TABLE members ADD COLUMN since_qid INTEGER NOT NULL DEFAULT 0;"
           "ALTER TABLE members ADD COLUMN left_qid INTEGER NOT NULL DEFAULT 0;"
           "UPDATE members SET since_qid = %llu, joined = %llu WHERE uid != %llu;"
           "UPDATE members SET since_qid = %llu, joined = %llu WHERE uid = %llu;"
           "UPDATE members SET left_qid = %llu WHERE uid = %llu;"
           "ALTER TABLE members DROP COLUMN since_seq; ALTER TABLE members DROP COLUMN left_seq;"
           "DROP TABLE gcursor; ALTER TABLE devices ADD COLUMN acked INTEGER NOT NULL DEFAULT 0;"
           "UPDATE devices SET acked = %llu WHERE id = %llu; UPDATE devices SET acked = %llu WHERE id = %llu;"
           "UPDATE devices SET acked = %llu WHERE id = %llu; UPDATE devices SET acked = %llu WHERE id = %llu;"
           "DELETE FROM messages WHERE qid = %llu;"
           "DROP INDEX messages_group; CREATE INDEX messages_group ON messages(gid, qid) WHERE gid != 0;"
           "PRAGMA user_version = 9;",
           (unsigned long long)made.qid - 1, (unsigned long long)made.qid - 1, (unsigned long long)d.uid,
           (unsigned long long)ad.qid - 1, (unsigned long long)ad.qid - 1, (unsigned long long)d.uid,
           (unsigned long long)rm.qid, (unsigned long long)c.uid, (unsigned long long)m4.qid,
           (unsigned long long)a.did, (unsigned long long)m1.qid, (unsigned long long)bp.did,
           (unsigned long long)made.qid, (unsigned long long)bl.did, (unsigned long long)m1.qid,
           (unsigned long long)c.did, (unsigned long long)made.qid);
  CHECK_EQ_I(db_exec(dir, sql), SQLITE_OK);
  s = open_store(dir, 0, 0);
  seqs_are(s, &a, 0, 0);                   /* acked everything */
  seqs_are(s, &bp, 3, 7);                  /* acked up to m1 */
  seqs_are(s, &bl, 2, 7);                  /* had the created event only */
  seqs_are(s, &c, 3, 4);                   /* acked up to m1, removed at 4 */
  seqs_are(s, &d, 6, 7);                   /* added at 6, acked nothing */
  pl_store_req r = {.op = PL_STORE_FETCH}; /* protocol 1: the same, merged with the queue by qid */
  r.device_id = bp.did;
  r.user_id = bp.uid;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_U(r.u.fetch.out.nmsgs, 6);
  CHECK_EQ_U(r.u.fetch.out.msgs[0].qid, dm.qid);
  CHECK_EQ_U(r.u.fetch.out.msgs[1].seq, 3);
  pl_store_req_clear(&r);
  pl_store_close(s);
  snprintf(where, sizeof where, "members WHERE uid = %llu AND since_seq = 1 AND left_seq = 4 AND joined = 1",
           (unsigned long long)c.uid);
  CHECK_EQ_I(db_count(dir, where), 1); /* its join point: before the first entry left */
  snprintf(where, sizeof where, "members WHERE uid = %llu AND since_seq = 5 AND left_seq = 0 AND joined = 5",
           (unsigned long long)d.uid);
  CHECK_EQ_I(db_count(dir, where), 1);
  snprintf(where, sizeof where, "gcursor WHERE device_id = %llu AND gid = %llu AND seq = 7",
           (unsigned long long)a.did, (unsigned long long)g);
  CHECK_EQ_I(db_count(dir, where), 1); /* past the last entry: the group's last seq */
  CHECK_EQ_I(db_count(dir, "pragma_table_info('devices') WHERE name = 'acked'"), 0);
  CHECK_EQ_I(db_count(dir, "pragma_table_info('members') WHERE name LIKE '%qid'"), 0);
  CHECK_EQ_I(db_count(dir, "pragma_index_info('messages_group') WHERE name = 'seq'"), 1);
  CHECK_EQ_I(db_count(dir, "pragma_user_version WHERE user_version >= 10"), 1);     /* and any later step */
  CHECK_EQ_I(db_count(dir, "pragma_table_info('messages') WHERE name = 'act'"), 1); /* 11 */
  tl_rmrf(dir);
  free(dir);
}

/* A device name stored before the check (planted: "ph\xffne") made every
 * Message of that device undecodable by a strict protobuf library; the
 * store still returns its bytes, and what the server sends has them as '?'
 * (AuthOk, Message). */
static void test_stored_bad_strings_repaired(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir, 0, 0);
  account alice = reg(s, "alice", "phone", 1);
  account bob = reg(s, "bob", "phone", 2);
  pl_store_close(s);
  CHECK_EQ_I(db_exec(dir, "UPDATE devices SET name = CAST(X'7068ff6e65' AS TEXT) WHERE name = 'phone' AND "
                          "user_id = (SELECT id FROM users WHERE name = 'alice')"),
             SQLITE_OK);
  s = open_store(dir, 0, 0);
  /* Login with that name is refused now: the device comes back by its token */
  pl_store_req r = {.op = PL_STORE_RESUME};
  token(r.u.resume.in.token_hash, 1);
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  CHECK_STR(r.u.resume.out.device, "ph\xffne");
  Parley__AuthOk ok = PARLEY__AUTH_OK__INIT;
  ok.user = r.u.resume.out.user;
  ok.device = r.u.resume.out.device;
  Parley__AuthOk *got = as_sent(PARLEY__FRAME_TYPE__FRAME_AUTH_OK, &ok.base);
  CHECK_STR(got->device, "ph?ne");
  protobuf_c_message_free_unpacked(&got->base, NULL);

  send_to(s, &alice, r.u.resume.out.device, "bob", "m1");
  pl_store_req_clear(&r);
  r = (pl_store_req){.op = PL_STORE_FETCH};
  r.device_id = bob.did;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_U(r.u.fetch.out.nmsgs, 1);
  if (r.u.fetch.out.nmsgs == 1) {
    CHECK_STR(r.u.fetch.out.msgs[0].from_device, "ph\xffne");
    Parley__Message m = PARLEY__MESSAGE__INIT;
    m.from = r.u.fetch.out.msgs[0].from;
    m.from_device = r.u.fetch.out.msgs[0].from_device;
    m.id = r.u.fetch.out.msgs[0].id;
    m.conv = r.u.fetch.out.msgs[0].conv;
    Parley__Message *mg = as_sent(PARLEY__FRAME_TYPE__FRAME_MESSAGE, &m.base);
    CHECK_STR(mg->from_device, "ph?ne");
    CHECK_STR(mg->from, "alice");
    protobuf_c_message_free_unpacked(&mg->base, NULL);
  }
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

int main(void) {
  pl_log_set_level(PL_LOG_WARN);
  RUN(test_stats_count_what_is_stored);
  RUN(test_schema6_upgrade_keeps_tokens);
  RUN(test_schema9_group_positions_upgrade);
  RUN(test_expired_token_refused_everywhere);
  RUN(test_stored_bad_strings_repaired);
  return tl_summary();
}
