/* Receipts, read state and unread counts against the real parleyd over raw
 * sockets (docs/protocol.md 11.4): delivered and read receipts reach an
 * offline sender after it reconnects, exactly once each and coalesced; a
 * second device's ack makes no second receipt; read on one device moves the
 * watermark on the others (online and offline) and unread counts agree on
 * every device; sending reads; read receipts off works both ways. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rawcl.h"
#include "testlib.h"

#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1"
#define T_MS 10000
#define QUIET_MS 300 /* "nothing more comes" */
/* What the store keeps (/metrics): queue entries of 1:1 messages, and
 * receipts and read syncs stored for offline devices. */
#define QUEUED "parley_store_message_queue_entries"
#define EVENTS "parley_store_events"

enum {
  REG = PARLEY__FRAME_TYPE__FRAME_REGISTER,
  LOGIN = PARLEY__FRAME_TYPE__FRAME_LOGIN,
  MESSAGE = PARLEY__FRAME_TYPE__FRAME_MESSAGE,
  RECEIPT = PARLEY__FRAME_TYPE__FRAME_RECEIPT,
  READ_SYNC = PARLEY__FRAME_TYPE__FRAME_READ_SYNC,
  DONE = PARLEY__FRAME_TYPE__FRAME_DONE,
  DELIVERED = PARLEY__RECEIPT_STATUS__RECEIPT_DELIVERED,
  READ = PARLEY__RECEIPT_STATUS__RECEIPT_READ,
};

static tl_server srv;

static void run(const char *name, void (*fn)(void)) { tl_run_server(&srv, name, fn); }

static int dev_open(int type, const char *user, const char *device, char tok[128]) {
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_auth(fd, type, user, "secret-pass", device, tok), 0);
  return fd;
}

static int dev_resume(const char *tok) {
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_resume(fd, tok), 0);
  return fd;
}

/* The next frame must be a Message; returns its qid. */
static uint64_t next_message(int fd, uint64_t want_seq) {
  Parley__Message *m = tl_expect(fd, MESSAGE, T_MS);
  CHECK_EQ_U(m->seq, want_seq);
  uint64_t qid = m->qid;
  protobuf_c_message_free_unpacked(&m->base, NULL);
  return qid;
}

/* The next frame must be this Receipt; returns its qid. */
/* queued: the device was offline when it was made (qid > 0, to be acked);
 * else it was pushed live with qid 0. */
static uint64_t next_receipt(int fd, int queued, int status, const char *conv, const char *by, uint64_t seq) {
  Parley__Receipt *r = tl_expect(fd, RECEIPT, T_MS);
  CHECK_EQ_I(r->status, status);
  CHECK_STR(r->conv, conv);
  CHECK_STR(r->by, by);
  CHECK_EQ_U(r->seq, seq);
  CHECK(queued ? r->qid > 0 : r->qid == 0);
  CHECK(r->server_ts > 0);
  uint64_t qid = r->qid;
  protobuf_c_message_free_unpacked(&r->base, NULL);
  return qid;
}

static uint64_t next_read_sync(int fd, int queued, const char *conv, uint64_t seq, uint64_t unread) {
  Parley__ReadSync *r = tl_expect(fd, READ_SYNC, T_MS);
  CHECK_STR(r->conv, conv);
  CHECK_EQ_U(r->seq, seq);
  CHECK_EQ_U(r->unread, unread);
  CHECK(queued ? r->qid > 0 : r->qid == 0);
  uint64_t qid = r->qid;
  protobuf_c_message_free_unpacked(&r->base, NULL);
  return qid;
}

static void mark_read(int fd, const char *peer, uint64_t seq) {
  Parley__MarkRead m = PARLEY__MARK_READ__INIT;
  m.ref = "r1";
  m.peer = (char *)peer;
  m.seq = seq;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_MARK_READ, &m) == 0);
  Parley__Done *d = tl_expect(fd, DONE, T_MS);
  CHECK_STR(d->ref, "r1");
  protobuf_c_message_free_unpacked(&d->base, NULL);
}

static void settings_receipts(int fd, int toggle, int want) {
  Parley__Settings m = PARLEY__SETTINGS__INIT;
  m.ref = "s1";
  m.read_receipts = (Parley__Toggle)toggle;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_SETTINGS, &m) == 0);
  Parley__SettingsState *st = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_SETTINGS_STATE, T_MS);
  CHECK_STR(st->ref, "s1");
  CHECK_EQ_I(st->read_receipts, want);
  protobuf_c_message_free_unpacked(&st->base, NULL);
}

/* Unread of one conversation as UnreadGet reports it (-1 if absent). */
static uint64_t peer_delivered, peer_read; /* of the last unread_of */

static long long unread_of(int fd, const char *conv, uint64_t *read_seq) {
  Parley__UnreadGet g = PARLEY__UNREAD_GET__INIT;
  g.ref = "u1";
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_UNREAD_GET, &g) == 0);
  Parley__Unread *u = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_UNREAD, T_MS);
  long long n = -1;
  CHECK_STR(u->ref, "u1");
  for (size_t i = 0; i < u->n_convs; i++)
    if (!strcmp(u->convs[i]->conv, conv)) {
      n = (long long)u->convs[i]->unread;
      CHECK_EQ_U(u->convs[i]->unread, u->convs[i]->last_seq - u->convs[i]->read_seq);
      if (read_seq)
        *read_seq = u->convs[i]->read_seq;
      peer_delivered = u->convs[i]->peer_delivered;
      peer_read = u->convs[i]->peer_read;
    }
  protobuf_c_message_free_unpacked(&u->base, NULL);
  return n;
}

static void send_n(int fd, const char *to, int n, const char *prefix) {
  for (int i = 0; i < n; i++) {
    char id[32];
    int err = 0;
    snprintf(id, sizeof id, "%s%d", prefix, i);
    CHECK(rc_send_wait(fd, id, to, "hi", &err) > 0);
    CHECK_EQ_I(err, 0);
  }
}

/* Alice sends 3 and goes away; Bob gets them, acks in two steps, reads.
 * Alice, back, gets one delivered (seq 3, the first replaced) and one read
 * receipt, in that order; acked, they never come again. */
static void test_receipts_reach_offline_sender_once(void) {
  char ta[128], tb[128];
  tl_server_start(&srv, FAST);
  int a = dev_open(REG, "alice", "phone", ta);
  close(dev_open(REG, "bob", "phone", tb));
  send_n(a, "bob", 3, "m");
  /* Offline for sure: the server's close seen before Bob acks (a plain close
   * raced the ack, and the receipt went live to the dying connection). */
  shutdown(a, SHUT_WR);
  CHECK(tl_wait_closed(a, T_MS));
  close(a);
  int b = dev_resume(tb);
  uint64_t q1 = next_message(b, 1);
  next_message(b, 2);
  uint64_t q3 = next_message(b, 3);
  rc_ack(b, q1);
  /* a first commit: delivered up to 1, stored for offline alice */
  tl_wait_metric(&srv, QUEUED, 2, T_MS);
  CHECK_EQ_I(tl_metric(&srv, EVENTS), 1);
  rc_ack(b, q3);
  tl_wait_metric(&srv, QUEUED, 0, T_MS);
  CHECK_EQ_I(tl_metric(&srv, EVENTS), 1); /* delivered up to 3 replaced it */
  mark_read(b, "alice", 3);
  a = dev_resume(ta);
  next_receipt(a, 1, DELIVERED, "dm:alice:bob", "bob", 3);
  uint64_t last = next_receipt(a, 1, READ, "dm:alice:bob", "bob", 3);
  tl_expect_nothing(a, QUIET_MS);
  rc_ack(a, last);
  tl_wait_metric(&srv, EVENTS, 0, T_MS); /* acked receipts are gone */
  close(a);
  a = dev_resume(ta);
  tl_expect_nothing(a, QUIET_MS); /* and never come again */
  close(a);
  close(b);
  CHECK_EQ_I(tl_metric(&srv, "parley_store_messages"), 0);
}

/* Online: receipts arrive live; a second device of the reader acking the
 * same messages makes no second delivered receipt. */
static void test_second_device_no_second_receipt(void) {
  char ta[128], tb[128], tb2[128];
  tl_server_start(&srv, FAST);
  int a = dev_open(REG, "alice", "phone", ta);
  int b = dev_open(REG, "bob", "phone", tb);
  int b2 = dev_open(LOGIN, "bob", "laptop", tb2);
  send_n(a, "bob", 2, "x");
  uint64_t q = next_message(b, 1);
  q = next_message(b, 2);
  rc_ack(b, q);
  next_receipt(a, 0, DELIVERED, "dm:alice:bob", "bob", 2);
  q = next_message(b2, 1);
  q = next_message(b2, 2);
  rc_ack(b2, q);
  tl_expect_nothing(a, QUIET_MS);
  close(a);
  close(b);
  close(b2);
}

/* Read on one device moves the watermark on the others, live and after a
 * reconnect, with the unread count; every device reports the same unread. */
static void test_read_sync_across_devices(void) {
  char ta[128], tb[128], tb2[128];
  tl_server_start(&srv, FAST);
  int a = dev_open(REG, "alice", "phone", ta);
  int b = dev_open(REG, "bob", "phone", tb);
  int b2 = dev_open(LOGIN, "bob", "laptop", tb2);
  send_n(a, "bob", 4, "y");
  for (uint64_t i = 1; i <= 4; i++) {
    next_message(b, i);
    next_message(b2, i);
  }
  CHECK_EQ_I(unread_of(b, "dm:alice:bob", NULL), 4);
  mark_read(b, "alice", 2);
  next_read_sync(b2, 0, "dm:alice:bob", 2, 2); /* live on the other device */
  tl_expect_nothing(b, QUIET_MS);              /* not on the one that read */
  CHECK_EQ_I(unread_of(b, "dm:alice:bob", NULL), 2);
  CHECK_EQ_I(unread_of(b2, "dm:alice:bob", NULL), 2);
  /* Offline now: a half-close, and the server's close seen, so the server has
   * detached the device before the read below (a plain close raced it: the
   * live ReadSync went to the dying connection). */
  shutdown(b, SHUT_WR);
  CHECK(tl_wait_closed(b, T_MS));
  close(b);
  mark_read(b2, "alice", 100); /* clamped to the last seq */
  b = dev_resume(tb);
  next_message(b, 1); /* never acked: redelivered first, in qid order */
  next_message(b, 2);
  next_message(b, 3);
  next_message(b, 4);
  next_read_sync(b, 1, "dm:alice:bob", 4, 0);
  uint64_t rs = 0;
  CHECK_EQ_I(unread_of(b, "dm:alice:bob", &rs), 0);
  CHECK_EQ_U(rs, 4);
  CHECK_EQ_I(unread_of(b2, "dm:alice:bob", NULL), 0);
  /* Alice was online all along: read receipts came live, the later one last. */
  next_receipt(a, 0, READ, "dm:alice:bob", "bob", 2);
  next_receipt(a, 0, READ, "dm:alice:bob", "bob", 4);
  /* Sending reads: Bob answers, so his unread is 0 on every device, Alice's 1. */
  send_n(b, "alice", 1, "z");
  next_message(a, 5);
  next_message(b2, 5); /* the copy on Bob's other device */
  CHECK_EQ_I(unread_of(b, "dm:alice:bob", NULL), 0);
  CHECK_EQ_I(unread_of(b2, "dm:alice:bob", NULL), 0);
  CHECK_EQ_I(unread_of(a, "dm:alice:bob", NULL), 1);
  /* Alice's ticks as UnreadGet reports them (what a client that missed a
   * live receipt recovers): Bob read up to 5 (his own send), and none of his
   * devices acked anything in this test. */
  CHECK_EQ_U(peer_read, 5);
  CHECK_EQ_U(peer_delivered, 0);
  close(a);
  close(b);
  close(b2);
}

/* Read receipts off: Bob's reads are not reported, and Bob gets no read
 * receipts from Alice either; delivered receipts still flow. */
static void test_read_receipts_off(void) {
  char ta[128], tb[128];
  tl_server_start(&srv, FAST);
  int a = dev_open(REG, "alice", "phone", ta);
  int b = dev_open(REG, "bob", "phone", tb);
  settings_receipts(b, PARLEY__TOGGLE__TOGGLE_UNCHANGED, 1);
  settings_receipts(b, PARLEY__TOGGLE__TOGGLE_OFF, 0);
  send_n(a, "bob", 1, "p");
  uint64_t q = next_message(b, 1);
  rc_ack(b, q);
  next_receipt(a, 0, DELIVERED, "dm:alice:bob", "bob", 1);
  mark_read(b, "alice", 1);
  tl_expect_nothing(a, QUIET_MS);
  send_n(b, "alice", 1, "q");
  q = next_message(a, 2);
  rc_ack(a, q);
  next_receipt(b, 0, DELIVERED, "dm:alice:bob", "alice", 2);
  mark_read(a, "bob", 2);
  tl_expect_nothing(b, QUIET_MS); /* off: Bob sees no read receipts from others either */
  settings_receipts(b, PARLEY__TOGGLE__TOGGLE_ON, 1);
  close(a);
  close(b);
}

/* Bad requests: unknown peer, malformed peer, over-long ref. */
static void test_mark_read_errors(void) {
  char ta[128];
  tl_server_start(&srv, FAST);
  int a = dev_open(REG, "alice", "phone", ta);
  Parley__MarkRead m = PARLEY__MARK_READ__INIT;
  m.ref = "e1";
  m.peer = "nobody";
  m.seq = 1;
  CHECK(tl_send_frame(a, PARLEY__FRAME_TYPE__FRAME_MARK_READ, &m) == 0);
  tl_expect_error(a, PARLEY__ERROR_CODE__ERR_UNKNOWN_PEER, "e1", T_MS);
  m.peer = "Not A Name";
  CHECK(tl_send_frame(a, PARLEY__FRAME_TYPE__FRAME_MARK_READ, &m) == 0);
  tl_expect_error(a, PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT, "e1", T_MS);
  close(a);
}

/* Regression (audit finding 10): a blocked user kept getting the blocker's
 * delivered and read receipts. Bob blocks Alice after her messages reached
 * him; his ack and his MarkRead tell her nothing, live or queued, and
 * UnreadGet shows her none of his watermarks. */
static void test_no_receipts_to_blocked_user(void) {
  char ta[128], tb[128];
  tl_server_start(&srv, FAST);
  int a = dev_open(REG, "alice", "phone", ta);
  int b = dev_open(REG, "bob", "phone", tb);
  send_n(a, "bob", 2, "m");
  next_message(b, 1);
  uint64_t q2 = next_message(b, 2);
  rc_block(b, "alice", 1);
  rc_ack(b, q2);
  mark_read(b, "alice", 2);
  tl_expect_nothing(a, QUIET_MS); /* no live receipt */
  close(a);
  a = dev_resume(ta);
  tl_expect_nothing(a, QUIET_MS); /* none queued either */
  CHECK_EQ_I(unread_of(a, "dm:alice:bob", NULL), 0);
  CHECK_EQ_U(peer_delivered, 0);
  CHECK_EQ_U(peer_read, 0);
  close(a);
  close(b);
}

int main(void) {
  tl_skip_events = 0; /* receipts are what this file checks */
  run("receipts_reach_offline_sender_once", test_receipts_reach_offline_sender_once);
  run("second_device_no_second_receipt", test_second_device_no_second_receipt);
  run("read_sync_across_devices", test_read_sync_across_devices);
  run("read_receipts_off", test_read_receipts_off);
  run("mark_read_errors", test_mark_read_errors);
  run("no_receipts_to_blocked_user", test_no_receipts_to_blocked_user);
  return tl_summary();
}
