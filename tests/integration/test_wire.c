/* The wire protocol against the real parleyd over raw sockets: Welcome,
 * authentication errors, and a catalogue of malformed input, each answered by
 * an Error with its stable code and a close while another client's
 * conversation goes on undisturbed. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/pl_frame.h"
#include "rawcl.h"

#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1"
enum { REG = PARLEY__FRAME_TYPE__FRAME_REGISTER, LOGIN = PARLEY__FRAME_TYPE__FRAME_LOGIN };

static tl_server srv;
static int alice, bob, round_no;

/* alice -> bob still works: the bystanders' conversation after each bad case. */
static void bystanders_ok(void) {
  char id[32];
  snprintf(id, sizeof id, "by-%d", ++round_no);
  int err = 0;
  uint64_t seq = rc_send_wait(alice, id, "bob", "still here", &err);
  CHECK_EQ_I(err, 0);
  CHECK_EQ_U(seq, (uint64_t)round_no);
  Parley__Message *m[2];
  size_t n = rc_collect(bob, m, 1, 5000);
  CHECK_EQ_U(n, 1);
  CHECK_STR(m[0]->id, id);
  rc_ack(bob, m[0]->qid);
  rc_free_msgs(m, n);
}

/* Expects an Error with code, then the server closing the connection. */
static void expect_error_close(int fd, int code) {
  void *m = NULL;
  int t = tl_recv_frame(fd, 5000, &m);
  CHECK_EQ_I(t, PARLEY__FRAME_TYPE__FRAME_ERROR);
  CHECK_EQ_I(((Parley__Error *)m)->code, code);
  protobuf_c_message_free_unpacked(m, NULL);
  CHECK(tl_wait_closed(fd, 5000));
  close(fd);
  bystanders_ok();
}

static void raw_case(const void *bytes, size_t n, int code) {
  int fd = tl_connect(srv.port);
  CHECK(fd >= 0);
  CHECK(tl_write_all(fd, bytes, n) == 0);
  expect_error_close(fd, code);
}

static void setup(void) {
  tl_server_start(&srv, FAST " --max-message 100");
  alice = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  bob = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_auth(alice, REG, "alice", "alice-secret", "phone", NULL), 0);
  CHECK_EQ_I(rc_auth(bob, REG, "bob", "bob-secret", "phone", NULL), 0);
}

static void test_welcome(void) {
  int fd = tl_connect(srv.port);
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = 1;
  h.kind = PARLEY__CLIENT_KIND__KIND_WEB;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_HELLO, &h) == 0);
  Parley__Welcome *w = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_WELCOME, 5000);
  CHECK(w && w->base.descriptor == &parley__welcome__descriptor);
  CHECK_EQ_U(w->version, 1);
  CHECK_EQ_U(w->heartbeat_ms, 15000); /* web */
  CHECK(w->max_frame >= 1024 && w->max_message == 100);
  CHECK(w->server_ts > 1700000000000ull);
  protobuf_c_message_free_unpacked(&w->base, NULL);
  close(fd);
  fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE); /* mobile: 30 s, checked in rc_open's Welcome */
  close(fd);
}

static void test_malformed_catalogue(void) {
  /* HTTP on the native port: "GET " is a 1.2 GB length prefix. */
  const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  raw_case(http, sizeof http - 1, PARLEY__ERROR_CODE__ERR_FRAME_TOO_LARGE);
  const uint8_t huge[] = {0x00, 0x20, 0x00, 0x01, 0x01}; /* 2 MiB > max_frame */
  raw_case(huge, sizeof huge, PARLEY__ERROR_CODE__ERR_FRAME_TOO_LARGE);
  const uint8_t zero[] = {0, 0, 0, 0};
  raw_case(zero, sizeof zero, PARLEY__ERROR_CODE__ERR_BAD_FRAME);
  const uint8_t unknown[] = {0, 0, 0, 1, 200};
  raw_case(unknown, sizeof unknown, PARLEY__ERROR_CODE__ERR_UNKNOWN_TYPE);
  const uint8_t server_type[] = {0, 0, 0, 1, PARLEY__FRAME_TYPE__FRAME_WELCOME};
  raw_case(server_type, sizeof server_type, PARLEY__ERROR_CODE__ERR_UNKNOWN_TYPE);
  const uint8_t bad_pb[] = {0, 0, 0, 3, PARLEY__FRAME_TYPE__FRAME_HELLO, 0x0a, 0x05}; /* truncated field */
  raw_case(bad_pb, sizeof bad_pb, PARLEY__ERROR_CODE__ERR_BAD_FRAME);
  const uint8_t v9[] = {0, 0, 0, 3, PARLEY__FRAME_TYPE__FRAME_HELLO, 0x08, 0x09};
  raw_case(v9, sizeof v9, PARLEY__ERROR_CODE__ERR_UNSUPPORTED_VERSION);
  const uint8_t ping_first[] = {0, 0, 0, 1, PARLEY__FRAME_TYPE__FRAME_PING};
  raw_case(ping_first, sizeof ping_first, PARLEY__ERROR_CODE__ERR_HELLO_REQUIRED);
  /* Send after Hello but before authentication. */
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  rc_send(fd, "x1", "bob", "hi");
  expect_error_close(fd, PARLEY__ERROR_CODE__ERR_AUTH_REQUIRED);
}

static void test_slow_and_pipelined_client(void) {
  /* A Hello written one byte at a time still works. */
  int fd = tl_connect(srv.port);
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = 1;
  pl_buf *b = pl_frame_encode(PARLEY__FRAME_TYPE__FRAME_HELLO, &h.base);
  for (size_t i = 0; i < b->len; i++) {
    CHECK(tl_write_all(fd, b->data + i, 1) == 0);
    usleep(2000);
  }
  pl_buf_unref(b);
  void *w = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_WELCOME, 5000);
  CHECK(w && ((ProtobufCMessage *)w)->descriptor == &parley__welcome__descriptor);
  protobuf_c_message_free_unpacked(w, NULL);
  /* 100 Pings in one write: 100 Pongs, in order. */
  pl_bytes all = {0};
  for (int i = 1; i <= 100; i++) {
    Parley__Ping p = PARLEY__PING__INIT;
    p.client_ts = (uint64_t)i;
    pl_frame_append(&all, PARLEY__FRAME_TYPE__FRAME_PING, &p.base);
  }
  CHECK(tl_write_all(fd, all.p, all.len) == 0);
  pl_bytes_free(&all);
  for (int i = 1; i <= 100; i++) {
    Parley__Pong *p = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_PONG, 5000);
    CHECK(p && p->base.descriptor == &parley__pong__descriptor);
    CHECK_EQ_U(p->client_ts, (uint64_t)i);
    CHECK(p->server_ts > 1700000000000ull);
    protobuf_c_message_free_unpacked(&p->base, NULL);
  }
  close(fd);
}

static void test_auth_errors(void) {
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  char tok[128], tok2[128];
  CHECK_EQ_I(rc_auth(fd, REG, "alice", "whatever-pw", "x", NULL), PARLEY__ERROR_CODE__ERR_USER_EXISTS);
  /* The connection stays open for another try. */
  CHECK_EQ_I(rc_auth(fd, LOGIN, "alice", "wrong-password", "pc", NULL),
             PARLEY__ERROR_CODE__ERR_BAD_CREDENTIALS);
  CHECK_EQ_I(rc_auth(fd, LOGIN, "nobody", "wrong-password", "pc", NULL),
             PARLEY__ERROR_CODE__ERR_BAD_CREDENTIALS);
  CHECK_EQ_I(rc_auth(fd, REG, "Bad Name", "long-enough", "pc", NULL),
             PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT);
  CHECK_EQ_I(rc_auth(fd, LOGIN, "alice", "alice-secret", "pc", tok), 0);
  close(fd);
  /* Resume by token needs no password and lands on the same device. */
  fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_resume(fd, tok), 0);
  /* Logout revokes the token. */
  Parley__Logout lo = PARLEY__LOGOUT__INIT;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_LOGOUT, &lo) == 0);
  void *m = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_LOGOUT_OK, 5000);
  CHECK(m && ((ProtobufCMessage *)m)->descriptor == &parley__logout_ok__descriptor);
  protobuf_c_message_free_unpacked(m, NULL);
  CHECK(tl_wait_closed(fd, 5000));
  close(fd);
  fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_resume(fd, tok), PARLEY__ERROR_CODE__ERR_BAD_TOKEN);
  /* A new login of a device rotates its token: the old one stops working. */
  CHECK_EQ_I(rc_auth(fd, LOGIN, "alice", "alice-secret", "pc", tok), 0);
  close(fd);
  fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(fd, LOGIN, "alice", "alice-secret", "pc", tok2), 0);
  close(fd);
  fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_resume(fd, tok), PARLEY__ERROR_CODE__ERR_BAD_TOKEN);
  CHECK_EQ_I(rc_resume(fd, tok2), 0);
  close(fd);
  bystanders_ok();
}

static void test_send_errors_keep_connection(void) {
  int err = 0;
  CHECK_EQ_U(rc_send_wait(alice, "e1", "carol", "hi", &err), 0);
  CHECK_EQ_I(err, PARLEY__ERROR_CODE__ERR_UNKNOWN_PEER);
  char big[200];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  CHECK_EQ_U(rc_send_wait(alice, "e2", "bob", big, &err), 0);
  CHECK_EQ_I(err, PARLEY__ERROR_CODE__ERR_MESSAGE_TOO_LARGE);
  CHECK_EQ_U(rc_send_wait(alice, "", "bob", "no id", &err), 0);
  CHECK_EQ_I(err, PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT);
  bystanders_ok();
}

static void test_heartbeat(void) {
  tl_server hb;
  tl_server_start(&hb, FAST " --heartbeat-bot 1");
  int silent = rc_open(hb.port, PARLEY__CLIENT_KIND__KIND_BOT);
  int chatty = rc_open(hb.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(silent, REG, "quiet", "quiet-secret", "d", NULL), 0);
  /* The chatty one pings every 400 ms for 4 s and must stay. */
  for (int i = 0; i < 10; i++) {
    Parley__Ping p = PARLEY__PING__INIT;
    CHECK(tl_send_frame(chatty, PARLEY__FRAME_TYPE__FRAME_PING, &p) == 0);
    usleep(400000);
  }
  void *m = NULL;
  int t = tl_recv_frame(silent, 3000, &m);
  CHECK_EQ_I(t, PARLEY__FRAME_TYPE__FRAME_ERROR);
  CHECK_EQ_I(((Parley__Error *)m)->code, PARLEY__ERROR_CODE__ERR_HEARTBEAT_TIMEOUT);
  protobuf_c_message_free_unpacked(m, NULL);
  CHECK(tl_wait_closed(silent, 3000));
  Parley__Ping p = PARLEY__PING__INIT;
  p.client_ts = 77;
  CHECK(tl_send_frame(chatty, PARLEY__FRAME_TYPE__FRAME_PING, &p) == 0);
  int got77 = 0; /* skip the Pongs of the earlier pings */
  for (int i = 0; i < 20 && !got77; i++) {
    Parley__Pong *pong = rc_expect(chatty, PARLEY__FRAME_TYPE__FRAME_PONG, 3000);
    CHECK(pong && pong->base.descriptor == &parley__pong__descriptor);
    got77 = pong->client_ts == 77;
    protobuf_c_message_free_unpacked(&pong->base, NULL);
  }
  CHECK(got77);
  close(silent);
  close(chatty);
  tl_server_stop(&hb);
}

int main(void) {
  RUN(setup);
  RUN(test_welcome);
  RUN(test_malformed_catalogue);
  RUN(test_slow_and_pipelined_client);
  RUN(test_auth_errors);
  RUN(test_send_errors_keep_connection);
  RUN(test_heartbeat);
  tl_server_stop(&srv);
  return tl_summary();
}
