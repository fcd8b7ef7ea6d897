/* pl_utf8 (src/common/pl_utf8.c), the rules for strings from clients, and
 * pl_strings (src/proto/pl_strings.c), which applies them to every string
 * of a client frame on its wire bytes. */
#include <string.h>

#include "common/pl_mem.h"
#include "common/pl_utf8.h"
#include "core/pl_auth.h"
#include "proto/pl_frame.h"
#include "proto/pl_strings.h"
#include "testlib.h"

#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

static pl_utf8_fault check(const uint8_t *p, size_t n, pl_utf8_rule r) {
  return pl_utf8_check(p, n, r, NULL, NULL);
}

static void test_well_formed_utf8_passes(void) {
  CHECK_EQ_I(check(LIT(""), PL_UTF8_NAME), PL_UTF8_OK);
  CHECK_EQ_I(check(LIT("plain ascii ~"), PL_UTF8_NAME), PL_UTF8_OK);
  /* the edges of every length: U+0080, U+07FF, U+0800, U+D7FF, U+E000, U+FFFF, U+10000, U+10FFFF */
  CHECK_EQ_I(
      check(LIT("\xc2\xa0 \xdf\xbf \xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 \xef\xbf\xbf"), PL_UTF8_NAME),
      PL_UTF8_OK);
  CHECK_EQ_I(check(LIT("\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf"), PL_UTF8_NAME), PL_UTF8_OK);
  CHECK_EQ_I(check(LIT("caf\xc3\xa9 \xe6\x95\x8f \xf0\x9f\x91\x8b"), PL_UTF8_NAME), PL_UTF8_OK);
  uint32_t cp = 0;
  CHECK_EQ_U(pl_utf8_seq(LIT("\xf4\x8f\xbf\xbf"), &cp), 4);
  CHECK_EQ_U(cp, 0x10FFFF);
  CHECK_EQ_U(pl_utf8_seq(LIT("\xe2\x82\xac"), &cp), 3);
  CHECK_EQ_U(cp, 0x20AC);
}

static void test_every_kind_of_invalid_sequence(void) {
  static const struct {
    const char *s;
    size_t n;
    size_t at;
  } bad[] = {
      {"\x80", 1, 0},                 /* a lone continuation byte */
      {"ab\xbf", 3, 2},               /* another */
      {"\xc3\x28", 2, 0},             /* a lead byte without its continuation */
      {"\xc3", 1, 0},                 /* truncated at the end */
      {"\xe2\x82", 2, 0},             /* truncated 3-byte sequence */
      {"\xf0\x9f\x91", 3, 0},         /* truncated 4-byte sequence */
      {"\xc0\xaf", 2, 0},             /* overlong '/' */
      {"\xc1\xbf", 2, 0},             /* overlong, C1 lead */
      {"\xc0\x80", 2, 0},             /* overlong NUL (modified UTF-8) */
      {"\xe0\x80\xaf", 3, 0},         /* overlong in 3 bytes */
      {"\xf0\x80\x80\xaf", 4, 0},     /* overlong in 4 bytes */
      {"\xed\xa0\x80", 3, 0},         /* high surrogate U+D800 (CESU-8) */
      {"\xed\xbf\xbf", 3, 0},         /* low surrogate U+DFFF */
      {"\xf4\x90\x80\x80", 4, 0},     /* U+110000 */
      {"\xf5\x80\x80\x80", 4, 0},     /* lead byte F5 */
      {"\xff", 1, 0},                 /* never in UTF-8 */
      {"\xfe", 1, 0},                 /* nor this */
      {"ok\xe2\x28\xa1", 5, 2},       /* a bad second byte */
      {"ok\xf0\x9f\x28\x8b", 6, 2},   /* a bad third byte */
      {"x\xe2\x82\xac\xe2\x82", 6, 4} /* good, then truncated */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t at = 99;
    for (int r = PL_UTF8_ANY; r <= PL_UTF8_NAME; r++)
      CHECK_EQ_I(pl_utf8_check((const uint8_t *)bad[i].s, bad[i].n, (pl_utf8_rule)r, &at, NULL),
                 PL_UTF8_INVALID);
    CHECK_EQ_U(at, bad[i].at);
  }
}

static void test_nul_is_refused_everywhere(void) {
  size_t at = 0;
  uint32_t cp = 1;
  for (int r = PL_UTF8_ANY; r <= PL_UTF8_NAME; r++)
    CHECK_EQ_I(pl_utf8_check(LIT("alice\0x"), (pl_utf8_rule)r, &at, &cp), PL_UTF8_NUL);
  CHECK_EQ_U(at, 5);
  CHECK_EQ_U(cp, 0);
}

/* ANY: ids, tokens, passwords: only UTF-8 and no NUL. */
static void test_any_takes_controls(void) {
  CHECK_EQ_I(check(LIT("a\x1b\t\n\r\x7f\xc2\x85\xe2\x80\xae"), PL_UTF8_ANY), PL_UTF8_OK);
}

/* TEXT: lines and tabs, no other control (C0, DEL, C1); bidi is fine. */
static void test_text_rule(void) {
  CHECK_EQ_I(check(LIT("line one\nline two\tand a tab"), PL_UTF8_TEXT), PL_UTF8_OK);
  CHECK_EQ_I(check(LIT("\xe2\x80\xae\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d \xe2\x80\xa8"), PL_UTF8_TEXT),
             PL_UTF8_OK);
  static const char *ctl[] = {"\x01", "\x1b[31m", "\r\n", "\x07", "\x7f", "\xc2\x80", "\xc2\x9b", "\xc2\x9f"};
  for (size_t i = 0; i < sizeof ctl / sizeof ctl[0]; i++)
    CHECK_EQ_I(check((const uint8_t *)ctl[i], strlen(ctl[i]), PL_UTF8_TEXT), PL_UTF8_CONTROL);
  uint32_t cp = 0;
  size_t at = 0;
  CHECK_EQ_I(pl_utf8_check(LIT("ok\xc2\x9b"), PL_UTF8_TEXT, &at, &cp), PL_UTF8_CONTROL);
  CHECK_EQ_U(cp, 0x9B);
  CHECK_EQ_U(at, 2);
  CHECK_EQ_I(check(LIT("\xc2\xa0"), PL_UTF8_TEXT), PL_UTF8_OK); /* U+00A0, just past C1 */
}

/* NAME: one line, no controls at all, no bidi embedding/override/isolate. */
static void test_name_rule(void) {
  CHECK_EQ_I(check(LIT("t\xc3\xa9l\xc3\xa9phone de L\xc3\xa9o"), PL_UTF8_NAME), PL_UTF8_OK);
  CHECK_EQ_I(check(LIT("a\tb"), PL_UTF8_NAME), PL_UTF8_CONTROL);
  CHECK_EQ_I(check(LIT("a\nb"), PL_UTF8_NAME), PL_UTF8_CONTROL);
  CHECK_EQ_I(check(LIT("a\xe2\x80\xa8"), PL_UTF8_NAME), PL_UTF8_SEPARATOR);
  CHECK_EQ_I(check(LIT("a\xe2\x80\xa9"), PL_UTF8_NAME), PL_UTF8_SEPARATOR);
  for (uint32_t cp = 0x202A; cp <= 0x202E; cp++) {
    uint8_t b[3] = {0xE2, 0x80, (uint8_t)(0x80 | (cp & 0x3F))};
    CHECK_EQ_I(check(b, 3, PL_UTF8_NAME), PL_UTF8_BIDI);
  }
  for (uint32_t cp = 0x2066; cp <= 0x2069; cp++) {
    uint8_t b[3] = {0xE2, 0x81, (uint8_t)(0x80 | (cp & 0x3F))};
    CHECK_EQ_I(check(b, 3, PL_UTF8_NAME), PL_UTF8_BIDI);
  }
  CHECK_EQ_I(check(LIT("\xe2\x80\x8f"), PL_UTF8_NAME), PL_UTF8_OK); /* RLM, a mark, stays */
  CHECK_EQ_I(check(LIT("\xe2\x80\x8d"), PL_UTF8_NAME), PL_UTF8_OK); /* ZWJ (emoji sequences) */
}

/* pl_auth's device names follow the name rule, whatever path they came by. */
static void test_device_names_in_pl_auth(void) {
  CHECK(pl_auth_valid_device("t\xc3\xa9l\xc3\xa9phone", 11));
  CHECK(!pl_auth_valid_device("ph\xc3\x28ne", 6));
  CHECK(!pl_auth_valid_device("a\xc2\x85", 3));     /* C1 (NEL) */
  CHECK(!pl_auth_valid_device("a\xe2\x80\xae", 4)); /* RLO */
  CHECK(!pl_auth_valid_device("a\tb", 3));
  CHECK(!pl_auth_valid_device("", 0));
}

/* ---- pl_strings: the frames -------------------------------------------- */

static pl_buf *encode(uint8_t type, const ProtobufCMessage *m) { return pl_frame_encode(type, m); }

static pl_err check_frame(pl_buf *b, pl_strings_fault *f) {
  pl_err e = pl_strings_check(b->data[4], b->data + PL_FRAME_HDR, b->len - PL_FRAME_HDR, f);
  pl_buf_unref(b);
  return e;
}

static void test_frames_with_good_strings_pass(void) {
  Parley__Send s = PARLEY__SEND__INIT;
  Parley__Media md = PARLEY__MEDIA__INIT;
  s.id = "m1";
  s.to = "bob";
  s.body.data = (uint8_t *)"two\nlines\tcaf\xc3\xa9";
  s.body.len = strlen((char *)s.body.data);
  md.id = "0123456789abcdef0123456789abcdef";
  s.media = &md;
  pl_strings_fault f;
  CHECK_EQ_I(check_frame(encode(PARLEY__FRAME_TYPE__FRAME_SEND, &s.base), &f), PL_OK);
  Parley__Register r = PARLEY__REGISTER__INIT;
  r.user = "alice";
  r.password = "any \x1b bytes \r\n that are UTF-8";
  r.device = "t\xc3\xa9l\xc3\xa9phone";
  CHECK_EQ_I(check_frame(encode(PARLEY__FRAME_TYPE__FRAME_REGISTER, &r.base), &f), PL_OK);
}

/* A string field's bytes are patched after encoding, the way a hostile client
 * would write them: the first byte of value `mark` becomes `with`. */
static pl_buf *patched(uint8_t type, const ProtobufCMessage *m, const char *mark, char with) {
  pl_buf *b = encode(type, m);
  uint8_t *at = memmem(b->data, b->len, mark, strlen(mark));
  CHECK(at != NULL);
  *at = (uint8_t)with;
  return b;
}

/* The frame patched so, refused with this message; returns the fault. */
static pl_strings_fault refused(uint8_t type, const ProtobufCMessage *m, const char *mark, char with,
                                const char *want) {
  pl_strings_fault f;
  char msg[128];
  CHECK_EQ_I(check_frame(patched(type, m, mark, with), &f), PL_ERR_INVALID_ARGUMENT);
  pl_strings_describe(&f, msg, sizeof msg);
  CHECK_STR(msg, want);
  return f;
}

static void test_bad_strings_are_named(void) {
  Parley__Register r = PARLEY__REGISTER__INIT;
  r.user = "aliceXx";
  r.password = "long enough";
  r.device = "phone";
  pl_strings_fault f = refused(PARLEY__FRAME_TYPE__FRAME_REGISTER, &r.base, "Xx", '\0', "user: contains NUL");
  CHECK_STR(f.field, "user");
  CHECK_EQ_I(f.why, PL_UTF8_NUL);
  CHECK_EQ_U(f.bad_fields, 1u << 1);
  r.user = "alice";
  r.device = "phoZe";
  f = refused(PARLEY__FRAME_TYPE__FRAME_REGISTER, &r.base, "Z", '\x1b', "device: control character U+001B");
  CHECK_EQ_U(f.bad_fields, 1u << 3);
  Parley__GroupUpdate g = PARLEY__GROUP_UPDATE__INIT;
  g.ref = "r1";
  g.group = "7";
  g.op = PARLEY__GROUP_OP__GROUP_RENAME;
  g.name = "newZname";
  g.description = "okYdesc";
  refused(PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE, &g.base, "Z", '\n', "group name: control character U+000A");
  g.name = "fine";
  CHECK_EQ_I(check_frame(patched(PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE, &g.base, "Y", '\n'), &f), PL_OK);
}

/* Send: the body is text; a bad one leaves field 1 (the id) good, so the
 * session may echo it; a bad id marks field 1. Nested: media.id. */
static void test_send_fields(void) {
  pl_strings_fault f;
  Parley__Send s = PARLEY__SEND__INIT;
  Parley__Media md = PARLEY__MEDIA__INIT;
  s.id = "m1";
  s.to = "bob";
  s.body.data = (uint8_t *)"cafZ";
  s.body.len = 4;
  CHECK_EQ_I(check_frame(patched(PARLEY__FRAME_TYPE__FRAME_SEND, &s.base, "Z", '\xc3'), &f),
             PL_ERR_INVALID_ARGUMENT);
  CHECK_STR(f.field, "body");
  CHECK_EQ_I(f.why, PL_UTF8_INVALID);
  CHECK_EQ_U(f.bad_fields, 1u << 3);
  s.id = "sameZone";
  s.body.data = (uint8_t *)"caf\xff";
  CHECK_EQ_I(check_frame(patched(PARLEY__FRAME_TYPE__FRAME_SEND, &s.base, "Zone", '\0'), &f),
             PL_ERR_INVALID_ARGUMENT);
  CHECK_STR(f.field, "id");
  CHECK_EQ_U(f.bad_fields, 1u << 1 | 1u << 3); /* every bad field is marked, the first is named */
  s.id = "m1";
  s.body.len = 0;
  md.id = "abcQ";
  s.media = &md;
  CHECK_EQ_I(check_frame(patched(PARLEY__FRAME_TYPE__FRAME_SEND, &s.base, "Q", '\0'), &f),
             PL_ERR_INVALID_ARGUMENT);
  CHECK_STR(f.field, "media.id");
  CHECK_EQ_U(f.bad_fields, 1u << 6);
}

/* A repeated string (GroupCreate.members) and opaque bytes elsewhere. */
static void test_repeated_and_bytes(void) {
  pl_strings_fault f;
  Parley__GroupCreate g = PARLEY__GROUP_CREATE__INIT;
  char *members[] = {"bob", "carQl"};
  g.name = "team";
  g.n_members = 2;
  g.members = members;
  CHECK_EQ_I(check_frame(patched(PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE, &g.base, "Q", '\xff'), &f),
             PL_ERR_INVALID_ARGUMENT);
  CHECK_STR(f.field, "members");
  /* server frames are checked with their own descriptors, bytes fields are opaque */
  Parley__Message m = PARLEY__MESSAGE__INIT;
  m.body.data = (uint8_t *)"\xff\x00\x1b";
  m.body.len = 3;
  CHECK_EQ_I(check_frame(encode(PARLEY__FRAME_TYPE__FRAME_MESSAGE, &m.base), &f), PL_OK);
}

static void test_not_protobuf_and_unknown_types(void) {
  pl_strings_fault f;
  static const uint8_t truncated[] = {0x0a, 0x05, 'a', 'b'};
  static const uint8_t group[] = {0x0b, 0x0c};
  static const uint8_t zero_field[] = {0x80, 0x00, 0x06}; /* field 0 (overlong key): protobuf-c skips it */
  static const uint8_t long_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                        0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  CHECK_EQ_I(pl_strings_check(PARLEY__FRAME_TYPE__FRAME_SEND, truncated, sizeof truncated, &f),
             PL_ERR_BAD_FRAME);
  CHECK_EQ_I(pl_strings_check(PARLEY__FRAME_TYPE__FRAME_SEND, group, sizeof group, &f), PL_ERR_BAD_FRAME);
  CHECK_EQ_I(pl_strings_check(PARLEY__FRAME_TYPE__FRAME_LOGIN, zero_field, sizeof zero_field, &f), PL_OK);
  pl_frame zf = {
      .type = PARLEY__FRAME_TYPE__FRAME_LOGIN, .payload = zero_field, .payload_len = sizeof zero_field};
  ProtobufCMessage *m = pl_frame_unpack(&zf);
  CHECK(m != NULL); /* what protobuf-c takes, the walker takes (fuzz_strings found this one) */
  protobuf_c_message_free_unpacked(m, NULL);
  CHECK_EQ_I(pl_strings_check(PARLEY__FRAME_TYPE__FRAME_PING, long_varint, sizeof long_varint, &f),
             PL_ERR_BAD_FRAME);
  CHECK_EQ_I(pl_strings_check(200, truncated, sizeof truncated, &f), PL_OK); /* no descriptor: not ours */
  /* an unknown field's bytes are not looked at */
  static const uint8_t unknown[] = {0xfa, 0x01, 0x02, 0x00, 0xff};
  CHECK_EQ_I(pl_strings_check(PARLEY__FRAME_TYPE__FRAME_SEND, unknown, sizeof unknown, &f), PL_OK);
}

/* What the server sends: bad UTF-8 in a string becomes '?', byte for byte;
 * good strings, controls and bytes fields stay. */
static void test_repair_of_server_frames(void) {
  Parley__Message m = PARLEY__MESSAGE__INIT;
  Parley__GroupEvent ev = PARLEY__GROUP_EVENT__INIT;
  m.from = "alice";
  m.from_device = "phXYne";
  m.id = "tab\there";
  m.body = (ProtobufCBinaryData){.data = (uint8_t *)"\xff\xfe", .len = 2};
  ev.name = "cafQ";
  m.event = &ev;
  pl_buf *b = encode(PARLEY__FRAME_TYPE__FRAME_MESSAGE, &m.base);
  memcpy(memmem(b->data, b->len, "XY", 2), "\xed\xa0", 2); /* half a surrogate */
  *(uint8_t *)memmem(b->data, b->len, "Q", 1) = 0xc3;      /* a cut sequence */
  pl_strings_repair(PARLEY__FRAME_TYPE__FRAME_MESSAGE, b->data + PL_FRAME_HDR, b->len - PL_FRAME_HDR);
  pl_frame f = {.type = b->data[4], .payload = b->data + PL_FRAME_HDR, .payload_len = b->len - PL_FRAME_HDR};
  Parley__Message *out = (Parley__Message *)pl_frame_unpack(&f);
  CHECK(out != NULL);
  CHECK_STR(out->from_device, "ph??ne");
  CHECK_STR(out->event->name, "caf?");
  CHECK_STR(out->id, "tab\there");
  CHECK(out->body.len == 2 && out->body.data[0] == 0xff); /* bytes are not strings */
  protobuf_c_message_free_unpacked(&out->base, NULL);
  pl_buf_unref(b);
}

int main(void) {
  RUN(test_well_formed_utf8_passes);
  RUN(test_every_kind_of_invalid_sequence);
  RUN(test_nul_is_refused_everywhere);
  RUN(test_any_takes_controls);
  RUN(test_text_rule);
  RUN(test_name_rule);
  RUN(test_device_names_in_pl_auth);
  RUN(test_frames_with_good_strings_pass);
  RUN(test_bad_strings_are_named);
  RUN(test_send_fields);
  RUN(test_repeated_and_bytes);
  RUN(test_not_protobuf_and_unknown_types);
  RUN(test_repair_of_server_frames);
  CHECK_EQ_U(pl_mem_used(), 0);
  return tl_summary();
}
