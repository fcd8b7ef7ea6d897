/* Strings at the edge (protocol.md 4, "Strings"), against the real parleyd
 * with frames built byte by byte: the audit's reproductions of invalid
 * UTF-8 and embedded NULs. protobuf-c hides a NUL once it has unpacked a
 * string, so before the check "alice\0x" registered alice, a password was
 * cut at its NUL, ids "same\0one" and "same\0two" collided, and a device name
 * that is not UTF-8 made Messages a standard protobuf library cannot decode.
 * Each bad string must get INVALID_ARGUMENT naming the field, keep the
 * connection, and change nothing. (Rows stored before the check, sent
 * repaired: tests/unit/test_store_data.c.) */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/pl_frame.h"
#include "rawcl.h"
#include "testlib.h"

#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1"
#define T_MS 10000

enum {
  HELLO = PARLEY__FRAME_TYPE__FRAME_HELLO,
  REGISTER = PARLEY__FRAME_TYPE__FRAME_REGISTER,
  LOGIN = PARLEY__FRAME_TYPE__FRAME_LOGIN,
  SEND = PARLEY__FRAME_TYPE__FRAME_SEND,
  MESSAGE = PARLEY__FRAME_TYPE__FRAME_MESSAGE,
  ERROR = PARLEY__FRAME_TYPE__FRAME_ERROR,
  GCREATE = PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE,
  GUPDATE = PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE,
  GINFO = PARLEY__FRAME_TYPE__FRAME_GROUP_INFO,
  INVALID = PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT,
};

static tl_server srv;

/* ---- a protobuf payload written by hand, so any byte can go in a string ---- */

typedef struct pb {
  uint8_t b[1024];
  size_t n;
} pb;

#define LIT(s) s, sizeof s - 1 /* a literal with its embedded NULs */

static void pb_varint(pb *p, uint64_t v) {
  do {
    p->b[p->n++] = (uint8_t)(v & 0x7F) | (v > 0x7F ? 0x80 : 0);
    v >>= 7;
  } while (v);
}

static void pb_str(pb *p, unsigned field, const char *s, size_t len) {
  pb_varint(p, field << 3 | 2);
  pb_varint(p, len);
  memcpy(p->b + p->n, s, len);
  p->n += len;
}

static void pb_send(int fd, int type, const pb *p) {
  uint8_t h[PL_FRAME_HDR];
  pl_frame_put_header(h, (uint8_t)type, p->n);
  CHECK(tl_write_all(fd, h, sizeof h) == 0 && tl_write_all(fd, p->b, p->n) == 0);
}

/* Register / Login / Send frames with exact bytes. */
static void raw_auth(int fd, int type, const char *user, size_t ul, const char *pw, size_t pl,
                     const char *dev, size_t dl) {
  pb p = {0};
  pb_str(&p, 1, user, ul);
  pb_str(&p, 2, pw, pl);
  pb_str(&p, 3, dev, dl);
  pb_send(fd, type, &p);
}

static void raw_send(int fd, const char *id, size_t il, const char *to, const char *body, size_t bl) {
  pb p = {0};
  pb_str(&p, 1, id, il);
  pb_str(&p, 2, to, strlen(to));
  pb_str(&p, 3, body, bl);
  pb_send(fd, SEND, &p);
}

/* The next frame is INVALID_ARGUMENT with this ref and message. */
static void expect_invalid(int fd, const char *ref, const char *message) {
  Parley__Error *e = tl_expect(fd, ERROR, T_MS);
  CHECK_EQ_U(e->code, INVALID);
  CHECK_STR(e->ref, ref);
  CHECK_STR(e->message, message);
  protobuf_c_message_free_unpacked(&e->base, NULL);
}

static int user_open(const char *user, const char *dev) {
  int fd = rc_open(srv.port, 1);
  CHECK_EQ_I(rc_auth(fd, LOGIN, user, "pass-word-1", dev, NULL), 0);
  return fd;
}

static void make_user(const char *user) {
  int fd = rc_open(srv.port, 1);
  CHECK_EQ_I(rc_auth(fd, REGISTER, user, "pass-word-1", "phone", NULL), 0);
  close(fd);
}

/* What the store holds, as /metrics reports it (docs/operations.md). */
static long long stored(const char *what) {
  char name[64];
  snprintf(name, sizeof name, "parley_store_%s", what);
  return tl_metric(&srv, name);
}

/* A server with users alice and bob, each signed in on a connection. */
static void start_alice_bob(int *a, int *b) {
  tl_server_start(&srv, FAST);
  make_user("alice");
  make_user("bob");
  *a = user_open("alice", "phone");
  *b = user_open("bob", "phone");
}

/* ---- the tests ------------------------------------------------------------ */

/* "alice\0x" registered alice; now nothing is made, and the connection
 * still takes a good Register. */
static void test_register_name_with_nul(void) {
  tl_server_start(&srv, FAST);
  int fd = rc_open(srv.port, 1);
  raw_auth(fd, REGISTER, LIT("alice\0x"), LIT("alice-secret"), LIT("phone"));
  expect_invalid(fd, "", "user: contains NUL");
  CHECK_EQ_I(stored("users"), 0);
  CHECK_EQ_I(rc_auth(fd, REGISTER, "alice", "alice-secret", "phone", NULL), 0); /* same connection, so */
  CHECK_EQ_I(stored("users"), 1);                                               /* no alice existed */
  close(fd);
}

/* A password was cut at its NUL: Register stored the part before it, and a
 * Login with anything after the right password got in. */
static void test_password_with_nul(void) {
  tl_server_start(&srv, FAST);
  int fd = rc_open(srv.port, 1);
  raw_auth(fd, REGISTER, LIT("bob"), LIT("bob-secret\0more"), LIT("phone"));
  expect_invalid(fd, "", "password: contains NUL");
  CHECK_EQ_I(stored("users"), 0);
  make_user("carol");
  raw_auth(fd, LOGIN, LIT("carol"), LIT("pass-word-1\0anything"), LIT("phone"));
  expect_invalid(fd, "", "password: contains NUL");
  tl_expect_nothing(fd, 300); /* no AuthOk after it */
  CHECK_EQ_I(rc_auth(fd, LOGIN, "carol", "pass-word-1", "phone", NULL), 0);
  close(fd);
}

/* "same\0one" and "same\0two" were one id: the second was a duplicate of the
 * first. Both are refused, nothing is stored, the next good Send is seq 1. */
static void test_send_ids_with_nul(void) {
  int a, b;
  start_alice_bob(&a, &b);
  raw_send(a, LIT("same\0one"), "bob", LIT("first"));
  expect_invalid(a, "", "id: contains NUL"); /* the id itself is bad: no ref */
  raw_send(a, LIT("same\0two"), "bob", LIT("second"));
  expect_invalid(a, "", "id: contains NUL");
  CHECK_EQ_I(stored("messages"), 0);
  int err = 0;
  CHECK_EQ_U(rc_send_wait(a, "same", "bob", "third", &err), 1);
  Parley__Message *m = tl_expect(b, MESSAGE, T_MS); /* the first thing bob gets */
  CHECK(m->seq == 1 && m->body.len == 5 && !memcmp(m->body.data, "third", 5));
  protobuf_c_message_free_unpacked(&m->base, NULL);
  close(a);
  close(b);
}

/* A device name that is not UTF-8 (a bad continuation, a surrogate, an
 * overlong '/', above U+10FFFF) or holds a C1 control or a bidi override is
 * refused at Login and at Register; no device is made. */
static void test_device_names(void) {
  static const struct {
    const char *dev;
    size_t len;
    const char *msg;
  } bad[] = {
      {LIT("ph\xc3\x28ne"), "device: not valid UTF-8"},
      {LIT("\xed\xa0\x80"), "device: not valid UTF-8"},
      {LIT("\xc0\xaf"), "device: not valid UTF-8"},
      {LIT("\xf4\x90\x80\x80"), "device: not valid UTF-8"},
      {LIT("pho\0ne"), "device: contains NUL"},
      {LIT("ph\xc2\x9bone"), "device: control character U+009B"},
      {LIT("ph\tone"), "device: control character U+0009"},
      {LIT("evil\xe2\x80\xaegnp.exe"), "device: bidirectional control character U+202E"},
  };
  tl_server_start(&srv, FAST);
  make_user("alice");
  int fd = rc_open(srv.port, 1);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    raw_auth(fd, LOGIN, LIT("alice"), LIT("pass-word-1"), bad[i].dev, bad[i].len);
    expect_invalid(fd, "", bad[i].msg);
    raw_auth(fd, REGISTER, LIT("zed"), LIT("pass-word-1"), bad[i].dev, bad[i].len);
    expect_invalid(fd, "", bad[i].msg);
  }
  CHECK_EQ_I(stored("devices"), 1);
  CHECK_EQ_I(stored("users"), 1); /* no zed */
  CHECK_EQ_I(rc_auth(fd, LOGIN, "alice", "pass-word-1", "t\xc3\xa9l\xc3\xa9phone", NULL),
             0); /* UTF-8 is fine */
  CHECK_EQ_I(stored("devices"), 2);
  close(fd);
}

static void group_create(int fd, const char *ref, const char *name, size_t nl, const char *desc, size_t dl) {
  pb p = {0};
  pb_str(&p, 1, ref, strlen(ref));
  pb_str(&p, 2, name, nl);
  pb_str(&p, 3, desc, dl);
  pb_send(fd, GCREATE, &p);
}

static void group_rename(int fd, const char *ref, const char *gid, const char *name, size_t nl) {
  pb p = {0};
  pb_str(&p, 1, ref, strlen(ref));
  pb_str(&p, 2, gid, strlen(gid));
  pb_varint(&p, 3 << 3);
  pb_varint(&p, PARLEY__GROUP_OP__GROUP_RENAME);
  pb_str(&p, 5, name, nl);
  pb_send(fd, GUPDATE, &p);
}

/* Group names took newline and ESC; now a name is one line without controls
 * (nor bidi overrides), on create and on rename; descriptions may have lines. */
static void test_group_names(void) {
  tl_server_start(&srv, FAST);
  make_user("alice");
  int fd = user_open("alice", "phone");
  group_create(fd, "g1", LIT("two\nlines"), LIT(""));
  expect_invalid(fd, "g1", "group name: control character U+000A");
  group_create(fd, "g2", LIT("\x1b[31mred"), LIT(""));
  expect_invalid(fd, "g2", "group name: control character U+001B");
  group_create(fd, "g3", LIT("ok"), LIT("bell\x07"));
  expect_invalid(fd, "g3", "group description: control character U+0007");
  CHECK_EQ_I(stored("groups"), 0);
  group_create(fd, "g4", LIT("Caf\xc3\xa9 team"), LIT("line one\nline two\twith a tab"));
  Parley__GroupInfo *gi = rc_expect(fd, GINFO, T_MS); /* after its GE_CREATED Message */
  CHECK(gi && gi->base.descriptor == &parley__group_info__descriptor);
  CHECK_STR(gi->name, "Caf\xc3\xa9 team");
  char gid[24];
  snprintf(gid, sizeof gid, "%s", gi->group);
  protobuf_c_message_free_unpacked(&gi->base, NULL);
  group_rename(fd, "r1", gid, LIT("new\x1bname"));
  expect_invalid(fd, "r1", "group name: control character U+001B");
  group_rename(fd, "r2", gid,
               LIT("a\xe2\x80\xa8"
                   "b"));
  expect_invalid(fd, "r2", "group name: line separator U+2028");
  group_rename(fd, "r3", gid, LIT("bad\xff"));
  expect_invalid(fd, "r3", "group name: not valid UTF-8");
  pb p = {0};
  pb_str(&p, 2, gid, strlen(gid)); /* GROUP_INFO: the name is the first one */
  pb_send(fd, GUPDATE, &p);
  gi = tl_expect(fd, GINFO, T_MS);
  CHECK_STR(gi->name, "Caf\xc3\xa9 team");
  protobuf_c_message_free_unpacked(&gi->base, NULL);
  close(fd);
}

/* Message text must be UTF-8 without controls but TAB and LF: the Error has
 * ref = the id, nothing is stored, and the recipient gets only the good one. */
static void test_message_text(void) {
  int a, b;
  start_alice_bob(&a, &b);
  raw_send(a, LIT("m1"), "bob", LIT("caf\xc3"));
  expect_invalid(a, "m1", "body: not valid UTF-8");
  raw_send(a, LIT("m2"), "bob", LIT("nul\0inside"));
  expect_invalid(a, "m2", "body: contains NUL");
  raw_send(a, LIT("m3"), "bob", LIT("\x1b]0;owned\x07"));
  expect_invalid(a, "m3", "body: control character U+001B");
  raw_send(a, LIT("m4"), "bob", LIT("crlf\r\n"));
  expect_invalid(a, "m4", "body: control character U+000D");
  CHECK_EQ_I(stored("messages"), 0);
  int err = 0;
  CHECK_EQ_U(rc_send_wait(a, "m5", "bob", "two\nlines\tand caf\xc3\xa9 \xf0\x9f\x91\x8b", &err), 1);
  Parley__Message *m = tl_expect(b, MESSAGE, T_MS);
  CHECK_STR(m->id, "m5");
  CHECK_EQ_U(m->seq, 1);
  protobuf_c_message_free_unpacked(&m->base, NULL);
  close(a);
  close(b);
}

/* A string deep in a sub-message (Send.media.id) is named by its path; the
 * Send's good id is the ref. */
static void test_nested_string(void) {
  tl_server_start(&srv, FAST);
  make_user("alice");
  int a = user_open("alice", "phone");
  pb media = {0}, p = {0};
  pb_str(&media, 1,
         LIT("0123456789abcdef\0"
             "0123456789abcde"));
  pb_str(&p, 1, LIT("m1"));
  pb_str(&p, 2, LIT("alice"));
  pb_str(&p, 6, (const char *)media.b, media.n);
  pb_send(a, SEND, &p);
  expect_invalid(a, "m1", "media.id: contains NUL");
  close(a);
}

/* State errors come first: a bad string in a frame the state does not take
 * is answered as that frame always was (AUTH_REQUIRED, and a close), and a
 * Hello with a bad client_name leaves the session waiting for a good Hello. */
static void test_state_errors_first(void) {
  tl_server_start(&srv, FAST);
  int fd = rc_open(srv.port, 1);
  raw_send(fd, LIT("x\0y"), "bob", LIT("hi"));
  tl_expect_error(fd, PARLEY__ERROR_CODE__ERR_AUTH_REQUIRED, NULL, T_MS);
  CHECK(tl_wait_closed(fd, T_MS));
  close(fd);
  fd = tl_connect(srv.port);
  CHECK(fd >= 0);
  pb p = {0};
  pb_varint(&p, 1 << 3);
  pb_varint(&p, 1);
  pb_str(&p, 3, LIT("app\xff"));
  pb_send(fd, HELLO, &p);
  expect_invalid(fd, "", "client_name: not valid UTF-8");
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = 1;
  CHECK(tl_send_frame(fd, HELLO, &h) == 0);
  void *w = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_WELCOME, T_MS);
  protobuf_c_message_free_unpacked(w, NULL);
  close(fd);
}

int main(void) {
  tl_run_server(&srv, "test_register_name_with_nul", test_register_name_with_nul);
  tl_run_server(&srv, "test_password_with_nul", test_password_with_nul);
  tl_run_server(&srv, "test_send_ids_with_nul", test_send_ids_with_nul);
  tl_run_server(&srv, "test_device_names", test_device_names);
  tl_run_server(&srv, "test_group_names", test_group_names);
  tl_run_server(&srv, "test_message_text", test_message_text);
  tl_run_server(&srv, "test_nested_string", test_nested_string);
  tl_run_server(&srv, "test_state_errors_first", test_state_errors_first);
  return tl_summary();
}
