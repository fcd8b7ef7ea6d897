/* Delivery against the real parleyd over raw sockets: what a user relies on
 * when a SendAck arrives. Online delivery with every field; offline delivery
 * across kill -9, exactly once; acked means durable; retried ids make no
 * second copy (also across a restart); 1,000 pipelined messages in order,
 * offline and online; one copy per device and deletion after every device
 * acked; devices linked later get nothing older; TTL expiry; a slow reader
 * gets all 20,000 in order, also from a sender that writes them all before
 * reading an ack; a graceful shutdown loses nothing. (test_reliability's
 * scenarios, merged here.)
 *
 * "Nothing else is queued" is checked with a marker: a fresh message sent
 * after the device connected must be the next one it receives, since the
 * server sends a device's queue in qid order. */
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/pl_frame.h"
#include "testlib.h"

/* thousands of pipelined sends from one user: no per-user send rate (10.7) */
#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1 --send-rate 0"
#define T_MS 10000 /* generous wait for an answer */

enum {
  SEND_ACK = PARLEY__FRAME_TYPE__FRAME_SEND_ACK,
  MESSAGE = PARLEY__FRAME_TYPE__FRAME_MESSAGE,
  PONG = PARLEY__FRAME_TYPE__FRAME_PONG,
};

/* The servers a test starts; run() stops them, or keeps their logs if it failed. */
static tl_server srv;

static void run(const char *name, void (*fn)(void)) {
  int failed = tl_failures();
  tl__run(name, fn);
  if (tl_failures() > failed)
    tl_server_abandon(&srv);
  tl_server_stop(&srv);
}

/* ---- sessions ----------------------------------------------------------- */

static int hello(void) {
  int fd = tl_connect(srv.port);
  CHECK(fd >= 0);
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = 1;
  h.kind = PARLEY__CLIENT_KIND__KIND_MOBILE;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_HELLO, &h) == 0);
  protobuf_c_message_free_unpacked(tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_WELCOME, T_MS), NULL);
  return fd;
}

static int auth_done(int fd, char tok[128]) {
  Parley__AuthOk *ok = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_AUTH_OK, T_MS);
  if (tok)
    snprintf(tok, 128, "%s", ok->token);
  protobuf_c_message_free_unpacked(&ok->base, NULL);
  return fd;
}

/* Registers (or, with login, signs in) user on device; the token goes to tok. */
static int sign_in(int login, const char *user, const char *device, char tok[128]) {
  int fd = hello();
  if (login) {
    Parley__Login l = PARLEY__LOGIN__INIT;
    l.user = (char *)user, l.password = "secret-pass", l.device = (char *)device;
    CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_LOGIN, &l) == 0);
  } else {
    Parley__Register r = PARLEY__REGISTER__INIT;
    r.user = (char *)user, r.password = "secret-pass", r.device = (char *)device;
    CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_REGISTER, &r) == 0);
  }
  return auth_done(fd, tok);
}

static int resume(const char *tok) {
  int fd = hello();
  Parley__Resume r = PARLEY__RESUME__INIT;
  r.token = (char *)tok;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_RESUME, &r) == 0);
  return auth_done(fd, NULL);
}

/* ---- sending and receiving ---------------------------------------------- */

/* Message i of a series: id "<prefix>-<i>", body the id padded with '.' to len bytes. */
static size_t body_of(char *out, size_t cap, const char *prefix, int i, size_t len) {
  int n = snprintf(out, cap, "%s-%d", prefix, i);
  size_t blen = len > (size_t)n ? len : (size_t)n;
  CHECK(blen < cap);
  memset(out + n, '.', blen - (size_t)n);
  return blen;
}

static void put_send(pl_bytes *b, const char *id, const char *to, const void *body, size_t len, uint64_t ts) {
  Parley__Send s = PARLEY__SEND__INIT;
  s.id = (char *)id, s.to = (char *)to;
  s.body.data = (uint8_t *)body, s.body.len = len;
  s.client_ts = ts;
  pl_frame_append(b, PARLEY__FRAME_TYPE__FRAME_SEND, &s.base);
}

static Parley__SendAck *send1(int fd, const char *id, const char *to, const char *body) {
  pl_bytes b = {0};
  put_send(&b, id, to, body, strlen(body), tl_now_ms());
  CHECK(tl_write_all(fd, b.p, b.len) == 0);
  pl_bytes_free(&b);
  Parley__SendAck *a = tl_expect(fd, SEND_ACK, T_MS);
  CHECK_STR(a->id, id);
  return a;
}

/* Sends one message and checks its seq and that it is new. */
static void send_new(int fd, const char *id, const char *to, uint64_t seq) {
  Parley__SendAck *a = send1(fd, id, to, id);
  CHECK(!a->duplicate);
  CHECK_EQ_U(a->seq, seq);
  protobuf_c_message_free_unpacked(&a->base, NULL);
}

/* Sends messages 0..n-1 of a series to bob, keeping up to `window` unanswered
 * (a pipelining client), and checks every SendAck, in order: same id, seq
 * first_seq + i, conv dm:alice:bob. */
static void send_series(int fd, const char *prefix, int n, uint64_t first_seq, size_t len, int window) {
  char body[4096];
  int sent = 0;
  pl_bytes b = {0};
  for (int acked = 0; acked < n; acked++) {
    if (sent - acked <= window / 2) {
      for (b.len = 0; sent < n && sent - acked < window; sent++) {
        size_t blen = body_of(body, sizeof body, prefix, sent, len);
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, sent);
        put_send(&b, id, "bob", body, blen, 1000 + (uint64_t)sent);
      }
      CHECK(tl_write_all(fd, b.p, b.len) == 0);
    }
    Parley__SendAck *a = tl_expect(fd, SEND_ACK, T_MS);
    char id[64];
    snprintf(id, sizeof id, "%s-%d", prefix, acked);
    if (strcmp(a->id, id) != 0 || a->seq != first_seq + (uint64_t)acked)
      fprintf(stderr, "     SendAck %d: id %s seq %llu\n", acked, a->id, (unsigned long long)a->seq);
    CHECK_STR(a->id, id);
    CHECK_EQ_U(a->seq, first_seq + (uint64_t)acked);
    CHECK_STR(a->conv, "dm:alice:bob");
    CHECK(!a->duplicate);
    protobuf_c_message_free_unpacked(&a->base, NULL);
  }
  pl_bytes_free(&b);
}

static void ack(int fd, uint64_t upto) {
  Parley__Ack a = PARLEY__ACK__INIT;
  a.upto = upto;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_ACK, &a) == 0);
}

/* Acks, then waits for a Pong: the server has read the Ack and handed it to
 * the store before anything a later connection asks (the store is FIFO). */
static void ack_sync(int fd, uint64_t upto) {
  ack(fd, upto);
  Parley__Ping p = PARLEY__PING__INIT;
  p.client_ts = 99;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_PING, &p) == 0);
  protobuf_c_message_free_unpacked(tl_expect(fd, PONG, T_MS), NULL);
}

/* Receives exactly messages 0..n-1 of a series from alice: in order, no gap,
 * no duplicate, qid increasing, bodies intact. Acks every 1,000 and at the
 * end (a client acks per read burst; acks also count as heartbeats). */
static void recv_series(int fd, const char *prefix, int n, uint64_t first_seq, size_t len) {
  char body[4096], id[64];
  uint64_t last_qid = 0;
  for (int i = 0; i < n; i++) {
    Parley__Message *m = tl_expect(fd, MESSAGE, 20000);
    snprintf(id, sizeof id, "%s-%d", prefix, i);
    size_t blen = body_of(body, sizeof body, prefix, i, len);
    if (strcmp(m->id, id) != 0 || m->seq != first_seq + (uint64_t)i)
      fprintf(stderr, "     message %d of %d: id %s seq %llu\n", i, n, m->id, (unsigned long long)m->seq);
    CHECK_STR(m->id, id);
    CHECK_EQ_U(m->seq, first_seq + (uint64_t)i);
    CHECK(m->qid > last_qid);
    CHECK(m->body.len == blen && memcmp(m->body.data, body, blen) == 0);
    CHECK_STR(m->from, "alice");
    CHECK_STR(m->conv, "dm:alice:bob");
    CHECK_EQ_U(m->client_ts, 1000 + (uint64_t)i);
    last_qid = m->qid;
    protobuf_c_message_free_unpacked(&m->base, NULL);
    if ((i + 1) % 1000 == 0 || i + 1 == n)
      ack(fd, last_qid);
  }
}

/* The next Message on fd must be (id, seq); returns its qid. */
static uint64_t expect_msg(int fd, const char *id, uint64_t seq) {
  Parley__Message *m = tl_expect(fd, MESSAGE, T_MS);
  if (strcmp(m->id, id) != 0)
    fprintf(stderr, "     expected message %s (seq %llu), got %s (seq %llu)\n", id, (unsigned long long)seq,
            m->id, (unsigned long long)m->seq);
  CHECK_STR(m->id, id);
  CHECK_EQ_U(m->seq, seq);
  CHECK(m->body.len == strlen(id) && memcmp(m->body.data, id, m->body.len) == 0);
  uint64_t qid = m->qid;
  protobuf_c_message_free_unpacked(&m->base, NULL);
  return qid;
}

/* sender sends a fresh marker to bob; the next Message on rx must be the
 * marker: nothing older was still queued for rx's device. Returns its qid. */
static uint64_t expect_only_marker(int sender, int rx, const char *id, uint64_t seq) {
  send_new(sender, id, "bob", seq);
  return expect_msg(rx, id, seq);
}

/* What the store holds, as /metrics reports it (docs/operations.md): the
 * 1:1 messages kept, and their queue entries (one per device that has not
 * acked). Waited for: an Ack is committed a little after the server read it. */
#define STORED "parley_store_messages"
#define QUEUED "parley_store_message_queue_entries"
static void wait_stored(const char *metric, long long want) { tl_wait_metric(&srv, metric, want, T_MS); }

/* ---- tests -------------------------------------------------------------- */

static void test_online_delivery(void) {
  tl_server_start(&srv, FAST);
  int alice = sign_in(0, "alice", "phone", NULL);
  int bob = sign_in(0, "bob", "phone", NULL);
  /* Text goes by its length: multibyte UTF-8, a TAB and a LF come back byte for byte
   * (a NUL or invalid UTF-8 is refused: test_strings). */
  const uint8_t body[] = "hi bob\tcaf\xc3\xa9 \xe2\x9c\x93\n";
  pl_bytes b = {0};
  put_send(&b, "hello-1", "bob", body, sizeof body - 1, 1700000000123ull);
  CHECK(tl_write_all(alice, b.p, b.len) == 0);
  pl_bytes_free(&b);
  Parley__SendAck *a = tl_expect(alice, SEND_ACK, T_MS);
  CHECK_STR(a->id, "hello-1");
  CHECK_STR(a->conv, "dm:alice:bob");
  CHECK_EQ_U(a->seq, 1);
  CHECK(!a->duplicate);
  uint64_t now = tl_now_ms();
  CHECK(a->server_ts + 5000 > now && a->server_ts < now + 5000);
  Parley__Message *m = tl_expect(bob, MESSAGE, T_MS);
  CHECK(m->qid > 0);
  CHECK_STR(m->from, "alice");
  CHECK_STR(m->from_device, "phone");
  CHECK_STR(m->conv, a->conv);
  CHECK_EQ_U(m->seq, a->seq);
  CHECK_STR(m->id, "hello-1");
  CHECK(m->body.len == sizeof body - 1 && memcmp(m->body.data, body, sizeof body - 1) == 0);
  CHECK_EQ_U(m->client_ts, 1700000000123ull);
  CHECK_EQ_U(m->server_ts, a->server_ts);
  protobuf_c_message_free_unpacked(&m->base, NULL);
  protobuf_c_message_free_unpacked(&a->base, NULL);
  /* The reply is the same conversation, next seq; alice gets it. */
  send_new(bob, "re-1", "alice", 2);
  Parley__Message *r = tl_expect(alice, MESSAGE, T_MS);
  CHECK_STR(r->from, "bob");
  CHECK_STR(r->conv, "dm:alice:bob");
  CHECK_EQ_U(r->seq, 2);
  CHECK_STR(r->id, "re-1");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  close(alice);
  close(bob);
}

static void test_offline_delivery_across_kill9(void) {
  tl_server_start(&srv, FAST);
  char atok[128], btok[128];
  int alice = sign_in(0, "alice", "phone", atok);
  close(sign_in(0, "bob", "phone", btok));
  send_new(alice, "off-1", "bob", 1);
  tl_server_kill(&srv, SIGKILL);
  close(alice);
  tl_server_restart(&srv);
  int bob = resume(btok);
  uint64_t q = expect_msg(bob, "off-1", 1);
  alice = resume(atok);
  q = expect_only_marker(alice, bob, "off-2", 2); /* off-1 came exactly once */
  ack_sync(bob, q);
  close(bob);
  bob = resume(btok);
  expect_only_marker(alice, bob, "off-3", 3); /* acked: not delivered again */
  close(alice);
  close(bob);
}

static void test_acked_just_before_kill9_survives(void) {
  tl_server_start(&srv, FAST);
  char btok[128];
  int alice = sign_in(0, "alice", "phone", NULL);
  close(sign_in(0, "bob", "phone", btok));
  send_series(alice, "k", 200, 1, 0, 200);
  tl_server_kill(&srv, SIGKILL); /* at once after the last SendAck */
  close(alice);
  tl_server_restart(&srv);
  int bob = resume(btok);
  recv_series(bob, "k", 200, 1, 0);
  close(bob);
}

/* One id twice in one write: both Sends usually land in one store batch
 * (on PostgreSQL, one run of the batch pipeline). The second is the first's
 * duplicate (its seq, its server time), the sends around them take the
 * next seqs in order, and the receiver gets one copy. */
static void test_same_id_twice_in_one_write(void) {
  tl_server_start(&srv, FAST);
  int alice = sign_in(0, "alice", "phone", NULL);
  int bob = sign_in(0, "bob", "phone", NULL);
  const char *ids[] = {"w-0", "w-dup", "w-1", "w-dup", "w-2"};
  const uint64_t seqs[] = {1, 2, 3, 2, 4};
  pl_bytes b = {0};
  for (int i = 0; i < 5; i++)
    put_send(&b, ids[i], "bob", ids[i], strlen(ids[i]), 1000 + (uint64_t)i);
  CHECK(tl_write_all(alice, b.p, b.len) == 0);
  pl_bytes_free(&b);
  uint64_t dup_ts = 0;
  for (int i = 0; i < 5; i++) {
    Parley__SendAck *a = tl_expect(alice, SEND_ACK, T_MS);
    CHECK_STR(a->id, ids[i]);
    CHECK_EQ_U(a->seq, seqs[i]);
    CHECK_EQ_I(a->duplicate, i == 3);
    if (i == 1)
      dup_ts = a->server_ts;
    if (i == 3)
      CHECK_EQ_U(a->server_ts, dup_ts);
    protobuf_c_message_free_unpacked(&a->base, NULL);
  }
  expect_msg(bob, "w-0", 1);
  expect_msg(bob, "w-dup", 2);
  expect_msg(bob, "w-1", 3);
  expect_msg(bob, "w-2", 4);
  tl_expect_nothing(bob, 500); /* one copy only */
  close(alice);
  close(bob);
}

static void test_retried_id_same_seq(void) {
  tl_server_start(&srv, FAST);
  char atok[128], btok[128];
  int alice = sign_in(0, "alice", "phone", atok);
  int bob = sign_in(0, "bob", "phone", btok);
  Parley__SendAck *a1 = send1(alice, "same-id", "bob", "same-id");
  CHECK(!a1->duplicate);
  CHECK_EQ_U(a1->seq, 1);
  uint64_t ts = a1->server_ts;
  protobuf_c_message_free_unpacked(&a1->base, NULL);
  Parley__SendAck *a2 = send1(alice, "same-id", "bob", "same-id");
  CHECK(a2->duplicate);
  CHECK_EQ_U(a2->seq, 1);
  CHECK_STR(a2->conv, "dm:alice:bob");
  CHECK_EQ_U(a2->server_ts, ts);
  protobuf_c_message_free_unpacked(&a2->base, NULL);
  expect_msg(bob, "same-id", 1);
  uint64_t q = expect_only_marker(alice, bob, "next", 2); /* one copy only */
  ack_sync(bob, q);
  close(bob);
  /* An Ack is durable only once committed (protocol.md 10.4): wait for it. */
  wait_stored(QUEUED, 0);
  /* After kill -9: the retry still gets the original answer, and no copy. */
  tl_server_kill(&srv, SIGKILL);
  close(alice);
  tl_server_restart(&srv);
  alice = resume(atok);
  Parley__SendAck *a3 = send1(alice, "same-id", "bob", "same-id");
  CHECK(a3->duplicate);
  CHECK_EQ_U(a3->seq, 1);
  CHECK_EQ_U(a3->server_ts, ts);
  protobuf_c_message_free_unpacked(&a3->base, NULL);
  bob = resume(btok);
  expect_only_marker(alice, bob, "after-restart", 3);
  close(alice);
  close(bob);
}

static void test_1000_pipelined_in_order(void) {
  tl_server_start(&srv, FAST);
  char btok[128];
  int alice = sign_in(0, "alice", "phone", NULL);
  close(sign_in(0, "bob", "phone", btok));
  /* bob offline during the sends, then connects */
  send_series(alice, "off", 1000, 1, 0, 1000);
  int bob = resume(btok);
  recv_series(bob, "off", 1000, 1, 0);
  /* bob online during the sends */
  send_series(alice, "on", 1000, 1001, 0, 1000);
  recv_series(bob, "on", 1000, 1001, 0);
  wait_stored(STORED, 0); /* all acked: nothing kept */
  close(alice);
  close(bob);
}

static void test_devices_and_delete_after_all_acked(void) {
  tl_server_start(&srv, FAST);
  char ptok[128], ltok[128];
  int alice = sign_in(0, "alice", "phone", NULL);
  int alice_pc = sign_in(1, "alice", "pc", NULL);
  close(sign_in(0, "bob", "phone", ptok));
  close(sign_in(1, "bob", "laptop", ltok));
  /* alice's phone to bob: targets bob's phone and laptop and alice's pc. */
  send_new(alice, "d-1", "bob", 1);
  Parley__Message *m = tl_expect(alice_pc, MESSAGE, T_MS); /* the sender's other device: a copy */
  CHECK_STR(m->id, "d-1");
  CHECK_STR(m->from, "alice");
  CHECK_STR(m->from_device, "phone");
  CHECK_EQ_U(m->seq, 1);
  ack_sync(alice_pc, m->qid);
  protobuf_c_message_free_unpacked(&m->base, NULL);
  wait_stored(QUEUED, 2);
  int phone = resume(ptok);
  ack_sync(phone, expect_msg(phone, "d-1", 1));
  wait_stored(QUEUED, 1);
  CHECK_EQ_I(tl_metric(&srv, STORED), 1); /* the laptop has not acked */
  int laptop = resume(ltok);
  ack_sync(laptop, expect_msg(laptop, "d-1", 1));
  wait_stored(STORED, 0); /* every target acked: gone */
  CHECK_EQ_I(tl_metric(&srv, QUEUED), 0);
  close(laptop);
  laptop = resume(ltok);
  expect_only_marker(alice, laptop, "d-2", 2);
  /* The sending device never gets its own message back. */
  Parley__Ping p = PARLEY__PING__INIT;
  CHECK(tl_send_frame(alice, PARLEY__FRAME_TYPE__FRAME_PING, &p) == 0);
  protobuf_c_message_free_unpacked(tl_expect(alice, PONG, T_MS), NULL);
  close(alice);
  close(alice_pc);
  close(phone);
  close(laptop);
}

static void test_device_linked_later_gets_nothing_older(void) {
  tl_server_start(&srv, FAST);
  char ptok[128];
  int alice = sign_in(0, "alice", "phone", NULL);
  close(sign_in(0, "bob", "phone", ptok));
  send_new(alice, "old", "bob", 1);
  int tablet = sign_in(1, "bob", "tablet", NULL); /* linked after "old" was sent */
  expect_only_marker(alice, tablet, "new", 2);
  int phone = resume(ptok); /* while "old" is still queued for the phone */
  expect_msg(phone, "old", 1);
  expect_msg(phone, "new", 2);
  close(alice);
  close(tablet);
  close(phone);
}

static void test_ttl_expiry(void) {
  tl_server_start(&srv, FAST " --ttl 1 --sweep-interval 1");
  char btok[128];
  int alice = sign_in(0, "alice", "phone", NULL);
  close(sign_in(0, "bob", "phone", btok));
  send_new(alice, "ttl-1", "bob", 1);
  CHECK_EQ_I(tl_metric(&srv, STORED), 1); /* stored */
  /* The TTL is 1 s: the sweep deletes it once it has passed. */
  wait_stored(STORED, 0);
  int bob = resume(btok);
  expect_only_marker(alice, bob, "ttl-2", 2); /* the expired one is not delivered */
  close(alice);
  close(bob);
}

static void test_slow_consumer_20000(void) {
  /* A long heartbeat: bob sends nothing while alice sends. */
  tl_server_start(&srv, FAST " --heartbeat-mobile 600");
  char btok[128];
  int alice = sign_in(0, "alice", "phone", NULL);
  close(sign_in(0, "bob", "phone", btok));
  int bob = resume(btok);
  /* A small receive buffer, and 20,000 x 600 bytes (~12 MB): far more than
   * the kernel buffers and the server's 256 KiB output limit hold, so the
   * server must stop pushing and refetch from the store. */
  int small = 32 * 1024;
  CHECK(setsockopt(bob, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
  uint64_t t0 = tl_now_ms();
  send_series(alice, "s", 20000, 1, 600, 1000);
  uint64_t t1 = tl_now_ms();
  recv_series(bob, "s", 20000, 1, 600);
  fprintf(stderr, "     sent in %llu ms, read in %llu ms\n", (unsigned long long)(t1 - t0),
          (unsigned long long)(tl_now_ms() - t1));
  expect_only_marker(alice, bob, "s-end", 20001); /* and nothing after */
  close(alice);
  close(bob);
}

/* A sender that writes 20,000 Sends before reading any SendAck (it does not
 * window) to a connected reader that reads nothing meanwhile: the server
 * stops reading it while its acks back up, and nothing is lost or reordered. */
static void test_unwindowed_sender_20000(void) {
  tl_server_start(&srv, FAST);
  char btok[128];
  int alice = sign_in(0, "alice", "phone", NULL);
  close(sign_in(0, "bob", "phone", btok));
  int bob = resume(btok);
  send_series(alice, "u", 20000, 1, 0, 20000);
  recv_series(bob, "u", 20000, 1, 0);
  wait_stored(STORED, 0); /* all acked: nothing kept */
  close(alice);
  close(bob);
}

static void test_graceful_shutdown(void) {
  tl_server_start(&srv, FAST);
  char btok[128];
  int alice = sign_in(0, "alice", "phone", NULL);
  close(sign_in(0, "bob", "phone", btok));
  send_new(alice, "bye-1", "bob", 1);
  uint64_t t0 = tl_now_ms();
  int st = 0;
  CHECK(tl_server_kill_wait(&srv, SIGTERM, 10000, &st)); /* alice is still connected */
  fprintf(stderr, "     SIGTERM to exit: %llu ms\n", (unsigned long long)(tl_now_ms() - t0));
  CHECK(WIFEXITED(st));
  CHECK_EQ_I(WEXITSTATUS(st), 0);
  /* alice's connection was closed; anything sent before the close is at most
   * an Error SHUTTING_DOWN. */
  void *m = NULL;
  int t, frames = 0;
  while ((t = tl_recv_frame(alice, 2000, &m)) > 0) {
    CHECK_EQ_I(t, PARLEY__FRAME_TYPE__FRAME_ERROR);
    CHECK_EQ_I(((Parley__Error *)m)->code, PARLEY__ERROR_CODE__ERR_SHUTTING_DOWN);
    protobuf_c_message_free_unpacked(m, NULL);
    frames++;
  }
  CHECK(tl_wait_closed(alice, 2000));
  fprintf(stderr, "     frames before the close: %d\n", frames);
  close(alice);
  tl_server_restart(&srv);
  int bob = resume(btok);
  expect_msg(bob, "bye-1", 1);
  close(bob);
}

int main(void) {
  run("test_online_delivery", test_online_delivery);
  run("test_offline_delivery_across_kill9", test_offline_delivery_across_kill9);
  run("test_acked_just_before_kill9_survives", test_acked_just_before_kill9_survives);
  run("test_retried_id_same_seq", test_retried_id_same_seq);
  run("test_same_id_twice_in_one_write", test_same_id_twice_in_one_write);
  run("test_1000_pipelined_in_order", test_1000_pipelined_in_order);
  run("test_devices_and_delete_after_all_acked", test_devices_and_delete_after_all_acked);
  run("test_device_linked_later_gets_nothing_older", test_device_linked_later_gets_nothing_older);
  run("test_ttl_expiry", test_ttl_expiry);
  run("test_slow_consumer_20000", test_slow_consumer_20000);
  run("test_unwindowed_sender_20000", test_unwindowed_sender_20000);
  run("test_graceful_shutdown", test_graceful_shutdown);
  return tl_summary();
}
