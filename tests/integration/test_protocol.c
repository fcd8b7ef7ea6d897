/* The native wire protocol against the real parleyd over raw sockets, frame
 * by frame, as docs/protocol.md states it: Welcome by client kind, the
 * malformed-frame catalogue (each answered by an Error with its stable code
 * and a close, while another client's conversation goes on undisturbed),
 * slow and pipelined clients, register/login/resume/logout and tokens,
 * Ping/Pong, Send errors that keep the connection, and the heartbeat cut.
 * (test_wire's cases, merged here.) */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/pl_frame.h"
#include "testlib.h"

#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1"
#define T_MS 5000 /* generous wait for an answer */

enum {
  HELLO = PARLEY__FRAME_TYPE__FRAME_HELLO,
  WELCOME = PARLEY__FRAME_TYPE__FRAME_WELCOME,
  REGISTER = PARLEY__FRAME_TYPE__FRAME_REGISTER,
  LOGIN = PARLEY__FRAME_TYPE__FRAME_LOGIN,
  RESUME = PARLEY__FRAME_TYPE__FRAME_RESUME,
  AUTH_OK = PARLEY__FRAME_TYPE__FRAME_AUTH_OK,
  SEND = PARLEY__FRAME_TYPE__FRAME_SEND,
  SEND_ACK = PARLEY__FRAME_TYPE__FRAME_SEND_ACK,
  MESSAGE = PARLEY__FRAME_TYPE__FRAME_MESSAGE,
  ACK = PARLEY__FRAME_TYPE__FRAME_ACK,
  PING = PARLEY__FRAME_TYPE__FRAME_PING,
  PONG = PARLEY__FRAME_TYPE__FRAME_PONG,
};
enum { MOBILE = 1, WEB = 2, BOT = 4 };

/* The servers a test starts; run() stops them, or keeps their logs if it failed. */
static tl_server srv, srv2;

static void run(const char *name, void (*fn)(void)) {
  int failed = tl_failures();
  tl__run(name, fn);
  tl_server *all[] = {&srv, &srv2};
  for (size_t i = 0; i < 2; i++) {
    if (tl_failures() > failed)
      tl_server_abandon(all[i]);
    tl_server_stop(all[i]);
  }
}

/* ---- helpers ------------------------------------------------------------ */

static int near_now(uint64_t ts) {
  uint64_t now = tl_now_ms();
  return ts + 5000 > now && ts < now + 5000;
}

static void put_frame(pl_bytes *out, int type, const void *msg) {
  pl_frame_append(out, (uint8_t)type, (const ProtobufCMessage *)msg);
}

static void send_frame(int fd, int type, const void *msg) {
  CHECK(tl_send_frame(fd, (uint8_t)type, msg) == 0);
}

static void send_hello(int fd, int kind) {
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = 1;
  h.kind = (Parley__ClientKind)kind;
  h.client_name = "test_protocol";
  send_frame(fd, HELLO, &h);
}

/* Connects and says Hello; returns the fd, and the Welcome if w is not NULL. */
static int hello(const tl_server *s, int kind, Parley__Welcome **w) {
  int fd = tl_connect(s->port);
  CHECK(fd >= 0);
  send_hello(fd, kind);
  Parley__Welcome *m = tl_expect(fd, WELCOME, T_MS);
  if (w)
    *w = m;
  else
    protobuf_c_message_free_unpacked(&m->base, NULL);
  return fd;
}

/* Writes a Register or Login (same fields). */
static void send_cred(int fd, int type, const char *user, const char *pw, const char *device) {
  if (type == REGISTER) {
    Parley__Register r = PARLEY__REGISTER__INIT;
    r.user = (char *)user, r.password = (char *)pw, r.device = (char *)device;
    send_frame(fd, type, &r);
  } else {
    Parley__Login l = PARLEY__LOGIN__INIT;
    l.user = (char *)user, l.password = (char *)pw, l.device = (char *)device;
    send_frame(fd, type, &l);
  }
}

static Parley__AuthOk *cred_ok(int fd, int type, const char *user, const char *pw, const char *device) {
  send_cred(fd, type, user, pw, device);
  return tl_expect(fd, AUTH_OK, 10000);
}

static void send_resume(int fd, const char *token) {
  Parley__Resume r = PARLEY__RESUME__INIT;
  r.token = (char *)token;
  send_frame(fd, RESUME, &r);
}

static void send_msg(int fd, const char *id, const char *to, const void *body, size_t len) {
  Parley__Send m = PARLEY__SEND__INIT;
  m.id = (char *)id, m.to = (char *)to;
  m.body.data = (uint8_t *)body, m.body.len = len;
  m.client_ts = tl_now_ms();
  send_frame(fd, SEND, &m);
}

static Parley__SendAck *send_ok(int fd, const char *id, const char *to, const char *body) {
  send_msg(fd, id, to, body, strlen(body));
  Parley__SendAck *a = tl_expect(fd, SEND_ACK, T_MS);
  CHECK_STR(a->id, id);
  CHECK(!a->duplicate);
  return a;
}

static void ping(int fd, uint64_t client_ts) {
  Parley__Ping p = PARLEY__PING__INIT;
  p.client_ts = client_ts;
  send_frame(fd, PING, &p);
}

static void expect_pong(int fd, uint64_t client_ts) {
  Parley__Pong *p = tl_expect(fd, PONG, T_MS);
  CHECK_EQ_U(p->client_ts, client_ts);
  CHECK(near_now(p->server_ts));
  protobuf_c_message_free_unpacked(&p->base, NULL);
}

/* ---- the bystanders: alice and bob keep talking through every bad case --- */

static int alice = -1, bob = -1;
static uint64_t conv_seq; /* last seq of dm:alice:bob */

static void bystanders_start(const tl_server *s) {
  alice = hello(s, MOBILE, NULL);
  bob = hello(s, MOBILE, NULL);
  protobuf_c_message_free_unpacked(&cred_ok(alice, REGISTER, "alice", "alice-secret", "phone")->base, NULL);
  protobuf_c_message_free_unpacked(&cred_ok(bob, REGISTER, "bob", "bob-secret", "phone")->base, NULL);
  conv_seq = 0;
}

static void bystanders_stop(void) {
  close(alice);
  close(bob);
  alice = bob = -1;
}

/* alice -> bob -> alice still works, with the next seqs, and nothing else arrived meanwhile. */
static void bystanders_talk(const char *why) {
  char id[64];
  snprintf(id, sizeof id, "after %s", why);
  Parley__SendAck *a = send_ok(alice, id, "bob", id);
  CHECK_EQ_U(a->seq, ++conv_seq);
  protobuf_c_message_free_unpacked(&a->base, NULL);
  Parley__Message *m = tl_expect(bob, MESSAGE, T_MS);
  CHECK_STR(m->id, id);
  CHECK_EQ_U(m->seq, conv_seq);
  Parley__Ack ack = PARLEY__ACK__INIT;
  ack.upto = m->qid;
  send_frame(bob, ACK, &ack);
  protobuf_c_message_free_unpacked(&m->base, NULL);
  snprintf(id, sizeof id, "reply to %s", why);
  a = send_ok(bob, id, "alice", id);
  CHECK_EQ_U(a->seq, ++conv_seq);
  protobuf_c_message_free_unpacked(&a->base, NULL);
  m = tl_expect(alice, MESSAGE, T_MS);
  CHECK_STR(m->id, id);
  ack.upto = m->qid;
  send_frame(alice, ACK, &ack);
  protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* On a fresh connection, writes bytes; expects Error(code) and then the close. */
static void bad_case(const char *what, const void *bytes, size_t n, int code) {
  fprintf(stderr, "     case: %s\n", what);
  int fd = tl_connect(srv.port);
  CHECK(fd >= 0);
  CHECK(tl_write_all(fd, bytes, n) == 0);
  tl_expect_error(fd, code, "", T_MS);
  CHECK(tl_wait_closed(fd, T_MS));
  close(fd);
  bystanders_talk(what);
}

/* ---- tests -------------------------------------------------------------- */

static void test_welcome_by_client_kind(void) {
  tl_server_start(&srv, FAST);
  Parley__Welcome *w;
  int kinds[] = {MOBILE, WEB};
  uint32_t hb[] = {30000, 15000};
  for (int i = 0; i < 2; i++) {
    int fd = hello(&srv, kinds[i], &w);
    CHECK_EQ_U(w->version, 1);
    CHECK_EQ_U(w->heartbeat_ms, hb[i]);
    CHECK(w->max_frame > 0);
    CHECK(w->max_message > 0);
    CHECK(w->max_message < w->max_frame); /* a maximal Send fits in a frame */
    CHECK(near_now(w->server_ts));
    protobuf_c_message_free_unpacked(&w->base, NULL);
    close(fd);
  }
}

static void test_malformed_frames_close_only_their_connection(void) {
  tl_server_start(&srv, FAST);
  Parley__Welcome *w;
  close(hello(&srv, BOT, &w));
  uint32_t max_frame = w->max_frame;
  protobuf_c_message_free_unpacked(&w->base, NULL);
  bystanders_start(&srv);
  bystanders_talk("start");

  const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"; /* "GET " = a 1.2 GB length */
  bad_case("HTTP request", http, sizeof http - 1, PARLEY__ERROR_CODE__ERR_FRAME_TOO_LARGE);
  uint32_t big = max_frame + 1; /* one byte past the announced limit */
  uint8_t over[] = {(uint8_t)(big >> 24), (uint8_t)(big >> 16), (uint8_t)(big >> 8), (uint8_t)big, HELLO};
  bad_case("length max_frame + 1", over, sizeof over, PARLEY__ERROR_CODE__ERR_FRAME_TOO_LARGE);
  const uint8_t zero[] = {0, 0, 0, 0};
  bad_case("zero length", zero, sizeof zero, PARLEY__ERROR_CODE__ERR_BAD_FRAME);
  const uint8_t t200[] = {0, 0, 0, 1, 200};
  bad_case("type 200", t200, sizeof t200, PARLEY__ERROR_CODE__ERR_UNKNOWN_TYPE);
  const uint8_t t0[] = {0, 0, 0, 1, 0};
  bad_case("type 0", t0, sizeof t0, PARLEY__ERROR_CODE__ERR_UNKNOWN_TYPE);
  const uint8_t welcome[] = {0, 0, 0, 1, WELCOME};
  bad_case("a Welcome from a client", welcome, sizeof welcome, PARLEY__ERROR_CODE__ERR_UNKNOWN_TYPE);
  const uint8_t bad_pb[] = {0, 0, 0, 3, HELLO, 0x0a, 0x05}; /* field 1, 5 bytes announced, none there */
  bad_case("truncated protobuf in Hello", bad_pb, sizeof bad_pb, PARLEY__ERROR_CODE__ERR_BAD_FRAME);

  pl_bytes b = {0};
  Parley__Hello h2 = PARLEY__HELLO__INIT;
  h2.version = 3; /* the server speaks 1 and 2 */
  put_frame(&b, HELLO, &h2);
  bad_case("Hello version 3", b.p, b.len, PARLEY__ERROR_CODE__ERR_UNSUPPORTED_VERSION);
  b.len = 0;
  h2.version = 0;
  put_frame(&b, HELLO, &h2);
  bad_case("Hello version 0", b.p, b.len, PARLEY__ERROR_CODE__ERR_UNSUPPORTED_VERSION);
  b.len = 0;
  Parley__Send s = PARLEY__SEND__INIT;
  s.id = "early", s.to = "bob";
  put_frame(&b, SEND, &s);
  bad_case("Send before Hello", b.p, b.len, PARLEY__ERROR_CODE__ERR_HELLO_REQUIRED);
  b.len = 0;
  Parley__Ping p0 = PARLEY__PING__INIT; /* allowed before authentication, not before Hello */
  put_frame(&b, PING, &p0);
  bad_case("Ping before Hello", b.p, b.len, PARLEY__ERROR_CODE__ERR_HELLO_REQUIRED);
  b.len = 0;
  Parley__Hello h1 = PARLEY__HELLO__INIT;
  h1.version = 1;
  put_frame(&b, HELLO, &h1);
  put_frame(&b, SEND, &s);
  /* Welcome first, then the Error for the Send. */
  fprintf(stderr, "     case: Send after Hello, before auth\n");
  int fd = tl_connect(srv.port);
  CHECK(tl_write_all(fd, b.p, b.len) == 0);
  protobuf_c_message_free_unpacked(tl_expect(fd, WELCOME, T_MS), NULL);
  tl_expect_error(fd, PARLEY__ERROR_CODE__ERR_AUTH_REQUIRED, "", T_MS);
  CHECK(tl_wait_closed(fd, T_MS));
  close(fd);
  bystanders_talk("Send before auth");
  pl_bytes_free(&b);
  bystanders_stop();
}

static void test_slow_client_byte_by_byte(void) {
  tl_server_start(&srv, FAST);
  int fd = tl_connect(srv.port);
  CHECK(fd >= 0);
  pl_bytes b = {0};
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = 1;
  h.kind = PARLEY__CLIENT_KIND__KIND_BOT;
  put_frame(&b, HELLO, &h);
  Parley__Register r = PARLEY__REGISTER__INIT;
  r.user = "slow", r.password = "slow-secret", r.device = "modem";
  put_frame(&b, REGISTER, &r);
  Parley__Ping p = PARLEY__PING__INIT;
  p.client_ts = 4242;
  put_frame(&b, PING, &p);
  for (size_t i = 0; i < b.len; i++) { /* TCP_NODELAY: one segment per byte */
    CHECK(tl_write_all(fd, b.p + i, 1) == 0);
    usleep(1000);
  }
  pl_bytes_free(&b);
  protobuf_c_message_free_unpacked(tl_expect(fd, WELCOME, T_MS), NULL);
  Parley__AuthOk *ok = tl_expect(fd, AUTH_OK, 10000);
  CHECK_STR(ok->user, "slow");
  protobuf_c_message_free_unpacked(&ok->base, NULL);
  expect_pong(fd, 4242);
  close(fd);
}

static void test_pipelined_frames_all_answered(void) {
  tl_server_start(&srv, FAST);
  bystanders_start(&srv); /* alice and bob exist */
  /* 100 Pings in one write: 100 Pongs, in order. */
  int fd = hello(&srv, BOT, NULL);
  pl_bytes b = {0};
  for (int i = 1; i <= 100; i++) {
    Parley__Ping p = PARLEY__PING__INIT;
    p.client_ts = (uint64_t)i;
    put_frame(&b, PING, &p);
  }
  CHECK(tl_write_all(fd, b.p, b.len) == 0);
  for (int i = 1; i <= 100; i++)
    expect_pong(fd, (uint64_t)i);
  close(fd);
  /* Hello + Login + 3 Sends in one write (protocol.md section 6): handled in order. */
  b.len = 0;
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = 1;
  put_frame(&b, HELLO, &h);
  Parley__Login l = PARLEY__LOGIN__INIT;
  l.user = "alice", l.password = "alice-secret", l.device = "laptop";
  put_frame(&b, LOGIN, &l);
  char id[3][8] = {"p-1", "p-2", "p-3"};
  for (int i = 0; i < 3; i++) {
    Parley__Send s = PARLEY__SEND__INIT;
    s.id = id[i], s.to = "bob";
    s.body.data = (uint8_t *)id[i], s.body.len = 3;
    put_frame(&b, SEND, &s);
  }
  fd = tl_connect(srv.port);
  CHECK(tl_write_all(fd, b.p, b.len) == 0);
  pl_bytes_free(&b);
  protobuf_c_message_free_unpacked(tl_expect(fd, WELCOME, T_MS), NULL);
  Parley__AuthOk *ok = tl_expect(fd, AUTH_OK, 10000);
  CHECK_STR(ok->device, "laptop");
  protobuf_c_message_free_unpacked(&ok->base, NULL);
  for (int i = 0; i < 3; i++) {
    Parley__SendAck *a = tl_expect(fd, SEND_ACK, T_MS);
    CHECK_STR(a->id, id[i]);
    CHECK_EQ_U(a->seq, (uint64_t)i + 1);
    protobuf_c_message_free_unpacked(&a->base, NULL);
  }
  for (int i = 0; i < 3; i++) { /* and bob got them, in order */
    Parley__Message *m = tl_expect(bob, MESSAGE, T_MS);
    CHECK_STR(m->id, id[i]);
    CHECK_STR(m->from_device, "laptop");
    protobuf_c_message_free_unpacked(&m->base, NULL);
  }
  close(fd);
  bystanders_stop();
}

static void test_register_login_resume_logout(void) {
  tl_server_start(&srv, FAST);
  /* Register: AuthOk with a token. */
  int fd = hello(&srv, BOT, NULL);
  Parley__AuthOk *ok = cred_ok(fd, REGISTER, "carol", "carol-secret", "phone");
  CHECK_STR(ok->user, "carol");
  CHECK_STR(ok->device, "phone");
  CHECK(ok->device_id > 0);
  CHECK(ok->created);
  CHECK_EQ_U(strlen(ok->token), 43); /* 32 random bytes, unpadded base64url */
  CHECK(strspn(ok->token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == 43);
  uint64_t dev = ok->device_id;
  char tok_reg[128];
  snprintf(tok_reg, sizeof tok_reg, "%s", ok->token);
  protobuf_c_message_free_unpacked(&ok->base, NULL);
  close(fd);

  /* Request errors leave the connection open: four of them, then a login works on it. */
  fd = hello(&srv, BOT, NULL);
  send_cred(fd, REGISTER, "carol", "another-secret", "tablet");
  tl_expect_error(fd, PARLEY__ERROR_CODE__ERR_USER_EXISTS, "", 10000);
  send_cred(fd, LOGIN, "carol", "wrong-password", "phone");
  tl_expect_error(fd, PARLEY__ERROR_CODE__ERR_BAD_CREDENTIALS, "", 10000);
  send_cred(fd, LOGIN, "nobody", "carol-secret", "phone");
  tl_expect_error(fd, PARLEY__ERROR_CODE__ERR_BAD_CREDENTIALS, "", 10000);
  send_cred(fd, REGISTER, "Bad Name", "long-enough", "pc"); /* names: lower case, no spaces */
  tl_expect_error(fd, PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT, "", 10000);
  ok = cred_ok(fd, LOGIN, "carol", "carol-secret", "phone");
  CHECK_EQ_U(ok->device_id, dev);
  CHECK(!ok->created);
  CHECK(strcmp(ok->token, tok_reg) != 0); /* a login rotates the device's token */
  char tok[128];
  snprintf(tok, sizeof tok, "%s", ok->token);
  protobuf_c_message_free_unpacked(&ok->base, NULL);
  close(fd);

  /* The rotated-out token is dead; the new one resumes without a password. */
  fd = hello(&srv, BOT, NULL);
  send_resume(fd, tok_reg);
  tl_expect_error(fd, PARLEY__ERROR_CODE__ERR_BAD_TOKEN, "", T_MS);
  send_resume(fd, tok);
  ok = tl_expect(fd, AUTH_OK, T_MS);
  CHECK_STR(ok->user, "carol");
  CHECK_STR(ok->device, "phone");
  CHECK_EQ_U(ok->device_id, dev);
  CHECK_STR(ok->token, tok); /* resume does not rotate */
  protobuf_c_message_free_unpacked(&ok->base, NULL);

  /* Logout: LogoutOk, the close, and the token is revoked. */
  Parley__Logout lo = PARLEY__LOGOUT__INIT;
  send_frame(fd, PARLEY__FRAME_TYPE__FRAME_LOGOUT, &lo);
  protobuf_c_message_free_unpacked(tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_LOGOUT_OK, T_MS), NULL);
  CHECK(tl_wait_closed(fd, T_MS));
  close(fd);
  fd = hello(&srv, BOT, NULL);
  send_resume(fd, tok);
  tl_expect_error(fd, PARLEY__ERROR_CODE__ERR_BAD_TOKEN, "", T_MS);

  /* Login again: the same device, a new token; the old one stays dead. */
  ok = cred_ok(fd, LOGIN, "carol", "carol-secret", "phone");
  CHECK_EQ_U(ok->device_id, dev);
  CHECK(strcmp(ok->token, tok) != 0);
  char tok2[128];
  snprintf(tok2, sizeof tok2, "%s", ok->token);
  protobuf_c_message_free_unpacked(&ok->base, NULL);
  close(fd);
  fd = hello(&srv, BOT, NULL);
  send_resume(fd, tok);
  tl_expect_error(fd, PARLEY__ERROR_CODE__ERR_BAD_TOKEN, "", T_MS);
  send_resume(fd, tok2);
  ok = tl_expect(fd, AUTH_OK, T_MS);
  CHECK_EQ_U(ok->device_id, dev);
  protobuf_c_message_free_unpacked(&ok->base, NULL);
  close(fd);
}

static void test_ping_pong(void) {
  tl_server_start(&srv, FAST);
  int fd = hello(&srv, BOT, NULL);
  ping(fd, 1234567890123ull); /* allowed before authentication */
  expect_pong(fd, 1234567890123ull);
  protobuf_c_message_free_unpacked(&cred_ok(fd, REGISTER, "dave", "dave-secret", "d")->base, NULL);
  ping(fd, 0);
  expect_pong(fd, 0);
  ping(fd, UINT64_MAX);
  expect_pong(fd, UINT64_MAX);
  close(fd);
}

static void test_send_errors_keep_connection(void) {
  tl_server_start(&srv, FAST " --max-message 100");
  bystanders_start(&srv);
  Parley__Welcome *w;
  close(hello(&srv, BOT, &w));
  CHECK_EQ_U(w->max_message, 100);
  protobuf_c_message_free_unpacked(&w->base, NULL);
  send_msg(alice, "to-nobody", "nobody", "hi", 2);
  tl_expect_error(alice, PARLEY__ERROR_CODE__ERR_UNKNOWN_PEER, "to-nobody", T_MS);
  char body[101];
  memset(body, 'x', sizeof body);
  send_msg(alice, "too-big", "bob", body, 101);
  tl_expect_error(alice, PARLEY__ERROR_CODE__ERR_MESSAGE_TOO_LARGE, "too-big", T_MS);
  /* Exactly max_message is fine, and refused Sends took no seq. */
  send_msg(alice, "just-fits", "bob", body, 100);
  Parley__SendAck *a = tl_expect(alice, SEND_ACK, T_MS);
  CHECK_STR(a->id, "just-fits");
  CHECK_EQ_U(a->seq, ++conv_seq);
  protobuf_c_message_free_unpacked(&a->base, NULL);
  Parley__Message *m = tl_expect(bob, MESSAGE, T_MS);
  CHECK_STR(m->id, "just-fits");
  CHECK_EQ_U(m->body.len, 100);
  protobuf_c_message_free_unpacked(&m->base, NULL);
  send_msg(alice, "", "bob", "no id", 5); /* a Send needs an id (its dedup key) */
  tl_expect_error(alice, PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT, NULL, T_MS);
  /* The refused ids are not remembered: they may be used again. */
  Parley__SendAck *again = send_ok(alice, "too-big", "bob", "small now");
  CHECK_EQ_U(again->seq, ++conv_seq);
  protobuf_c_message_free_unpacked(&again->base, NULL);
  protobuf_c_message_free_unpacked(tl_expect(bob, MESSAGE, T_MS), NULL);
  bystanders_talk("send errors");
  bystanders_stop();
}

/* The errors protocol.md names for requests that are easy to get wrong: a
 * Send with both `to` and `group` (or neither), blocking yourself, blocking a
 * user who does not exist (§4 Send, §4 Block), and a request frame of type 16
 * and up before authentication (§6: AUTH_REQUIRED, then the close). */
static void test_documented_request_errors(void) {
  tl_server_start(&srv, FAST);
  bystanders_start(&srv);
  Parley__Send m = PARLEY__SEND__INIT;
  m.id = "both", m.to = "bob", m.group = "1";
  send_frame(alice, SEND, &m);
  tl_expect_error(alice, PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT, "both", T_MS);
  m.id = "neither", m.to = "", m.group = "";
  send_frame(alice, SEND, &m);
  tl_expect_error(alice, PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT, "neither", T_MS);
  Parley__Block b = PARLEY__BLOCK__INIT;
  b.ref = "self", b.user = "alice", b.blocked = 1;
  send_frame(alice, PARLEY__FRAME_TYPE__FRAME_BLOCK, &b);
  tl_expect_error(alice, PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT, "self", T_MS);
  b.ref = "ghost", b.user = "nobody-here";
  send_frame(alice, PARLEY__FRAME_TYPE__FRAME_BLOCK, &b);
  tl_expect_error(alice, PARLEY__ERROR_CODE__ERR_UNKNOWN_PEER, "ghost", T_MS);
  bystanders_talk("documented errors"); /* nothing was stored, no seq used */
  int fd = hello(&srv, BOT, NULL);
  b.ref = "early", b.user = "bob";
  send_frame(fd, PARLEY__FRAME_TYPE__FRAME_BLOCK, &b);
  tl_expect_error(fd, PARLEY__ERROR_CODE__ERR_AUTH_REQUIRED, "", T_MS);
  CHECK(tl_wait_closed(fd, T_MS));
  close(fd);
  bystanders_stop();
}

static void test_heartbeat_timeout(void) {
  tl_server_start(&srv, FAST " --heartbeat-bot 1");
  Parley__Welcome *w;
  int silent = hello(&srv, BOT, &w);
  CHECK_EQ_U(w->heartbeat_ms, 1000);
  protobuf_c_message_free_unpacked(&w->base, NULL);
  int chatty = hello(&srv, BOT, NULL);
  protobuf_c_message_free_unpacked(&cred_ok(chatty, REGISTER, "chatty", "chatty-secret", "d")->base, NULL);
  uint64_t t0 = tl_now_ms();
  protobuf_c_message_free_unpacked(&cred_ok(silent, REGISTER, "silent", "silent-secret", "d")->base, NULL);
  /* The chatty client pings every 500 ms for 4 s; the silent one is cut meanwhile
   * (after 1.5 s of silence, checked once a second: within 2.5 s). */
  uint64_t cut_ms = 0;
  for (uint64_t i = 1; tl_now_ms() < t0 + 4000; i++) {
    ping(chatty, i);
    expect_pong(chatty, i);
    struct pollfd pfd = {.fd = silent, .events = POLLIN};
    if (!cut_ms && poll(&pfd, 1, 500) == 1) {
      tl_expect_error(silent, PARLEY__ERROR_CODE__ERR_HEARTBEAT_TIMEOUT, "", T_MS);
      cut_ms = tl_now_ms() - t0;
      CHECK(tl_wait_closed(silent, T_MS));
    } else if (cut_ms) {
      usleep(500000);
    }
  }
  fprintf(stderr, "     silent client cut after %llu ms\n", (unsigned long long)cut_ms);
  CHECK(cut_ms >= 1000 && cut_ms <= 4000);
  /* The chatty one is still there, well past the silent one's cut. */
  ping(chatty, 777);
  expect_pong(chatty, 777);
  close(chatty);
  close(silent);
}

int main(void) {
  run("test_welcome_by_client_kind", test_welcome_by_client_kind);
  run("test_malformed_frames_close_only_their_connection", test_malformed_frames_close_only_their_connection);
  run("test_slow_client_byte_by_byte", test_slow_client_byte_by_byte);
  run("test_pipelined_frames_all_answered", test_pipelined_frames_all_answered);
  run("test_register_login_resume_logout", test_register_login_resume_logout);
  run("test_ping_pong", test_ping_pong);
  run("test_send_errors_keep_connection", test_send_errors_keep_connection);
  run("test_documented_request_errors", test_documented_request_errors);
  run("test_heartbeat_timeout", test_heartbeat_timeout);
  return tl_summary();
}
