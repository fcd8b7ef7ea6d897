#include "rawcl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Protocol 1 unless PARLEY_TEST_PROTO says otherwise: the PostgreSQL copies
 * of the tests that use groups speak 2, which a server with several
 * writers needs for them (docs/architecture.md 5). */
unsigned rc_proto(void) {
  const char *v = getenv("PARLEY_TEST_PROTO");
  return v && *v ? (unsigned)atoi(v) : 1;
}

int rc_open(int port, int kind) { return rc_open_v(port, kind, rc_proto()); }

int rc_open_v(int port, int kind, unsigned version) {
  int fd = tl_connect(port);
  CHECK(fd >= 0);
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = version;
  h.kind = (Parley__ClientKind)kind;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_HELLO, &h) == 0);
  void *m = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_WELCOME, 5000);
  CHECK(m != NULL);
  protobuf_c_message_free_unpacked(m, NULL);
  return fd;
}

void *rc_expect(int fd, int type, int timeout_ms) {
  for (;;) {
    void *m = NULL;
    int t = tl_recv_frame(fd, timeout_ms, &m);
    if (t <= 0)
      return NULL;
    if (t == type)
      return m;
    if (t == PARLEY__FRAME_TYPE__FRAME_ERROR && type != t) {
      /* Callers that expect something else get the Error in its place. */
      return m;
    }
    protobuf_c_message_free_unpacked(m, NULL);
  }
}

static int rc__code(void *m) {
  ProtobufCMessage *pm = m;
  if (pm && pm->descriptor == &parley__error__descriptor)
    return (int)((Parley__Error *)m)->code;
  return 0;
}

int rc_auth(int fd, int type, const char *user, const char *pw, const char *device, char token[128]) {
  Parley__Login l = PARLEY__LOGIN__INIT; /* Register has the same fields */
  Parley__Register r = PARLEY__REGISTER__INIT;
  ProtobufCMessage *msg;
  if (type == PARLEY__FRAME_TYPE__FRAME_REGISTER) {
    r.user = (char *)user;
    r.password = (char *)pw;
    r.device = (char *)device;
    msg = &r.base;
  } else {
    l.user = (char *)user;
    l.password = (char *)pw;
    l.device = (char *)device;
    msg = &l.base;
  }
  CHECK(tl_send_frame(fd, (uint8_t)type, msg) == 0);
  void *m = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_AUTH_OK, 10000);
  CHECK(m != NULL);
  int code = rc__code(m);
  if (!code && token)
    snprintf(token, 128, "%s", ((Parley__AuthOk *)m)->token);
  protobuf_c_message_free_unpacked(m, NULL);
  return code;
}

int rc_resume(int fd, const char *token) {
  Parley__Resume r = PARLEY__RESUME__INIT;
  r.token = (char *)token;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_RESUME, &r) == 0);
  void *m = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_AUTH_OK, 10000);
  CHECK(m != NULL);
  int code = rc__code(m);
  protobuf_c_message_free_unpacked(m, NULL);
  return code;
}

void rc_send(int fd, const char *id, const char *to, const char *body) {
  Parley__Send s = PARLEY__SEND__INIT;
  s.id = (char *)id;
  s.to = (char *)to;
  s.body.data = (uint8_t *)body;
  s.body.len = strlen(body);
  s.client_ts = 1;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_SEND, &s) == 0);
}

uint64_t rc_send_wait(int fd, const char *id, const char *to, const char *body, int *err) {
  rc_send(fd, id, to, body);
  void *m = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_SEND_ACK, 10000);
  CHECK(m != NULL);
  int code = rc__code(m);
  uint64_t seq = code ? 0 : ((Parley__SendAck *)m)->seq;
  if (err)
    *err = code;
  protobuf_c_message_free_unpacked(m, NULL);
  return seq;
}

size_t rc_collect(int fd, Parley__Message **out, size_t max, int timeout_ms) {
  size_t n = 0;
  while (n < max) {
    void *m = NULL;
    int t = tl_recv_frame(fd, timeout_ms, &m);
    if (t <= 0)
      break;
    if (t == PARLEY__FRAME_TYPE__FRAME_MESSAGE)
      out[n++] = m;
    else
      protobuf_c_message_free_unpacked(m, NULL);
  }
  return n;
}

void rc_free_msgs(Parley__Message **m, size_t n) {
  for (size_t i = 0; i < n; i++)
    protobuf_c_message_free_unpacked(&m[i]->base, NULL);
}

void rc_ack(int fd, uint64_t upto) {
  Parley__Ack a = PARLEY__ACK__INIT;
  a.upto = upto;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_ACK, &a) == 0);
}

void rc_ack_entry(int fd, uint64_t qid, const char *group, uint64_t seq) {
  if (rc_proto() < 2) {
    rc_ack(fd, qid);
    return;
  }
  Parley__Ack a = PARLEY__ACK__INIT;
  Parley__GroupAck ga = PARLEY__GROUP_ACK__INIT, *gap = &ga;
  ga.group = (char *)group;
  ga.upto_seq = seq;
  a.groups = &gap;
  a.n_groups = 1;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_ACK, &a) == 0);
}

void rc_ack_sync(int fd, uint64_t upto) {
  rc_ack(fd, upto);
  Parley__Ping p = PARLEY__PING__INIT;
  p.client_ts = 1;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_PING, &p) == 0);
  void *pong = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_PONG, 10000);
  CHECK(pong && ((ProtobufCMessage *)pong)->descriptor == &parley__pong__descriptor);
  protobuf_c_message_free_unpacked(pong, NULL);
}

void rc_block(int fd, const char *user, int on) {
  Parley__Block b = PARLEY__BLOCK__INIT;
  b.ref = "block";
  b.user = (char *)user;
  b.blocked = on;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_BLOCK, &b) == 0);
  Parley__Done *d = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_DONE, 10000);
  CHECK_STR(d->ref, "block");
  protobuf_c_message_free_unpacked(&d->base, NULL);
}

int rc_register(int port, const char *user, char token[128]) {
  int fd = rc_open(port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_auth(fd, PARLEY__FRAME_TYPE__FRAME_REGISTER, user, "secret-pass", "phone", token), 0);
  return fd;
}

int rc_back(int port, const char *token) {
  int fd = rc_open(port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_resume(fd, token), 0);
  return fd;
}

void rc_store_barrier(int fd) {
  Parley__UnreadGet g = PARLEY__UNREAD_GET__INIT;
  g.ref = "barrier";
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_UNREAD_GET, &g) == 0);
  Parley__Unread *u = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_UNREAD, 10000);
  CHECK(u != NULL && u->base.descriptor == &parley__unread__descriptor);
  if (u)
    protobuf_c_message_free_unpacked(&u->base, NULL);
}
