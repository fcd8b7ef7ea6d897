/* pl_frame: the native framing codec (src/proto/pl_frame.c). */
#include <stdlib.h>

#include "common/pl_mem.h"
#include "proto/pl_frame.h"
#include "testlib.h"

#define MAX_FRAME (1u << 20)

static void put_be32(uint8_t *p, uint32_t n) {
  p[0] = (uint8_t)(n >> 24);
  p[1] = (uint8_t)(n >> 16);
  p[2] = (uint8_t)(n >> 8);
  p[3] = (uint8_t)n;
}

static pl_buf *ping_frame(uint64_t ts) {
  Parley__Ping ping = PARLEY__PING__INIT;
  ping.client_ts = ts;
  return pl_frame_encode(PARLEY__FRAME_TYPE__FRAME_PING, &ping.base);
}

static void test_header_layout(void) {
  uint8_t h[PL_FRAME_HDR];
  pl_frame_put_header(h, 14, 0x010203);
  CHECK(h[0] == 0x00 && h[1] == 0x01 && h[2] == 0x02 && h[3] == 0x04); /* length counts the type byte */
  CHECK_EQ_U(h[4], 14);
}

static void test_short_input_is_again_and_consumes_nothing(void) {
  pl_buf *b = ping_frame(77);
  for (size_t n = 0; n < b->len; n++) {
    pl_frame f = {0};
    size_t consumed = 12345;
    CHECK_EQ_I(pl_frame_parse(b->data, n, MAX_FRAME, &f, &consumed), PL_ERR_AGAIN);
    CHECK_EQ_U(consumed, 12345);
    CHECK(f.payload == NULL);
  }
  pl_buf_unref(b);
}

static void test_exact_frame(void) {
  pl_buf *b = ping_frame(77);
  pl_frame f;
  size_t consumed = 0;
  CHECK_EQ_I(pl_frame_parse(b->data, b->len, MAX_FRAME, &f, &consumed), PL_OK);
  CHECK_EQ_U(consumed, b->len);
  CHECK_EQ_U(f.type, PARLEY__FRAME_TYPE__FRAME_PING);
  CHECK(f.payload == b->data + PL_FRAME_HDR);
  CHECK_EQ_U(f.payload_len, b->len - PL_FRAME_HDR);
  pl_buf_unref(b);
}

static void test_empty_payload_frame(void) {
  const uint8_t p[] = {0, 0, 0, 1, PARLEY__FRAME_TYPE__FRAME_LOGOUT};
  pl_frame f;
  size_t consumed;
  CHECK_EQ_I(pl_frame_parse(p, sizeof p, MAX_FRAME, &f, &consumed), PL_OK);
  CHECK_EQ_U(consumed, 5);
  CHECK_EQ_U(f.payload_len, 0);
  ProtobufCMessage *m = pl_frame_unpack(&f);
  CHECK(m != NULL);
  CHECK(m->descriptor == &parley__logout__descriptor);
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_two_frames_back_to_back(void) {
  pl_bytes s = {0};
  Parley__Ping ping = PARLEY__PING__INIT;
  ping.client_ts = 1;
  Parley__Ack ack = PARLEY__ACK__INIT;
  ack.upto = 99;
  pl_frame_append(&s, PARLEY__FRAME_TYPE__FRAME_PING, &ping.base);
  size_t first = s.len;
  pl_frame_append(&s, PARLEY__FRAME_TYPE__FRAME_ACK, &ack.base);

  pl_frame f;
  size_t used;
  CHECK_EQ_I(pl_frame_parse(s.p, s.len, MAX_FRAME, &f, &used), PL_OK);
  CHECK_EQ_U(used, first);
  CHECK_EQ_U(f.type, PARLEY__FRAME_TYPE__FRAME_PING);
  CHECK_EQ_I(pl_frame_parse(s.p + used, s.len - used, MAX_FRAME, &f, &used), PL_OK);
  CHECK_EQ_U(used, s.len - first);
  CHECK_EQ_U(f.type, PARLEY__FRAME_TYPE__FRAME_ACK);
  Parley__Ack *a = (Parley__Ack *)pl_frame_unpack(&f);
  CHECK(a != NULL);
  CHECK_EQ_U(a->upto, 99);
  protobuf_c_message_free_unpacked(&a->base, NULL);
  CHECK_EQ_I(pl_frame_parse(s.p + s.len, 0, MAX_FRAME, &f, &used), PL_ERR_AGAIN);
  pl_bytes_free(&s);
}

static void test_zero_length_is_bad_frame(void) {
  const uint8_t p[] = {0, 0, 0, 0, 1, 2, 3};
  pl_frame f;
  size_t consumed = 7;
  CHECK_EQ_I(pl_frame_parse(p, 4, MAX_FRAME, &f, &consumed), PL_ERR_BAD_FRAME); /* needs only the prefix */
  CHECK_EQ_I(pl_frame_parse(p, sizeof p, MAX_FRAME, &f, &consumed), PL_ERR_BAD_FRAME);
  CHECK_EQ_U(consumed, 7);
}

static void test_length_over_max_is_too_large(void) {
  uint8_t p[8] = {0};
  pl_frame f;
  size_t consumed = 0;
  put_be32(p, MAX_FRAME + 1);
  CHECK_EQ_I(pl_frame_parse(p, 4, MAX_FRAME, &f, &consumed), PL_ERR_FRAME_TOO_LARGE); /* before the body */
  put_be32(p, UINT32_MAX);
  CHECK_EQ_I(pl_frame_parse(p, sizeof p, MAX_FRAME, &f, &consumed), PL_ERR_FRAME_TOO_LARGE);
  put_be32(p, 10);
  CHECK_EQ_I(pl_frame_parse(p, sizeof p, 9, &f, &consumed), PL_ERR_FRAME_TOO_LARGE);
  /* Exactly the limit is allowed: it just is not all here yet. */
  put_be32(p, MAX_FRAME);
  CHECK_EQ_I(pl_frame_parse(p, sizeof p, MAX_FRAME, &f, &consumed), PL_ERR_AGAIN);
  CHECK_EQ_U(consumed, 0);
}

static void test_frame_at_limit_parses(void) {
  size_t n = 4 + 64;
  uint8_t *p = calloc(1, n);
  put_be32(p, 64);
  p[4] = PARLEY__FRAME_TYPE__FRAME_SEND;
  pl_frame f;
  size_t consumed;
  CHECK_EQ_I(pl_frame_parse(p, n, 64, &f, &consumed), PL_OK);
  CHECK_EQ_U(consumed, n);
  CHECK_EQ_U(f.payload_len, 63);
  free(p);
}

/* Encodes msg as a frame, parses it back and decodes the payload. */
static ProtobufCMessage *round_trip(uint8_t type, const ProtobufCMessage *msg) {
  pl_buf *b = pl_frame_encode(type, msg);
  pl_bytes s = {0};
  pl_frame_append(&s, type, msg);
  CHECK_EQ_U(s.len, b->len);
  CHECK(memcmp(s.p, b->data, b->len) == 0); /* both encoders agree */
  pl_bytes_free(&s);

  pl_frame f;
  size_t used;
  CHECK_EQ_I(pl_frame_parse(b->data, b->len, MAX_FRAME, &f, &used), PL_OK);
  CHECK_EQ_U(used, b->len);
  CHECK_EQ_U(f.type, type);
  ProtobufCMessage *m = pl_frame_unpack(&f);
  pl_buf_unref(b);
  CHECK(m != NULL);
  CHECK(m->descriptor == msg->descriptor);
  return m;
}

static void test_round_trip_hello(void) {
  Parley__Hello in = PARLEY__HELLO__INIT;
  in.version = PL_PROTOCOL_VERSION;
  in.kind = PARLEY__CLIENT_KIND__KIND_IOT;
  in.client_name = "test/1.0";
  Parley__Hello *out = (Parley__Hello *)round_trip(PARLEY__FRAME_TYPE__FRAME_HELLO, &in.base);
  CHECK_EQ_U(out->version, PL_PROTOCOL_VERSION);
  CHECK_EQ_I(out->kind, PARLEY__CLIENT_KIND__KIND_IOT);
  CHECK_STR(out->client_name, "test/1.0");
  protobuf_c_message_free_unpacked(&out->base, NULL);
}

static void test_round_trip_send_binary_body(void) {
  static const uint8_t body[] = {0, 'a', 0, 0xff, 0x80, 0};
  Parley__Send in = PARLEY__SEND__INIT;
  in.id = "m-1";
  in.to = "bob";
  in.body.data = (uint8_t *)body;
  in.body.len = sizeof body;
  in.client_ts = UINT64_MAX;
  Parley__Send *out = (Parley__Send *)round_trip(PARLEY__FRAME_TYPE__FRAME_SEND, &in.base);
  CHECK_STR(out->id, "m-1");
  CHECK_STR(out->to, "bob");
  CHECK_EQ_U(out->body.len, sizeof body);
  CHECK(memcmp(out->body.data, body, sizeof body) == 0);
  CHECK_EQ_U(out->client_ts, UINT64_MAX);
  protobuf_c_message_free_unpacked(&out->base, NULL);
}

static void test_round_trip_message(void) {
  Parley__Message in = PARLEY__MESSAGE__INIT;
  in.qid = 9;
  in.conv = "dm:alice:bob";
  in.seq = 3;
  in.from = "alice";
  in.from_device = "phone";
  in.id = "m-9";
  in.body.data = (uint8_t *)"hello";
  in.body.len = 5;
  in.client_ts = 1;
  in.server_ts = 2;
  Parley__Message *out = (Parley__Message *)round_trip(PARLEY__FRAME_TYPE__FRAME_MESSAGE, &in.base);
  CHECK_EQ_U(out->qid, 9);
  CHECK_STR(out->conv, "dm:alice:bob");
  CHECK_EQ_U(out->seq, 3);
  CHECK_STR(out->from, "alice");
  CHECK_STR(out->from_device, "phone");
  CHECK_STR(out->id, "m-9");
  CHECK(out->body.len == 5 && memcmp(out->body.data, "hello", 5) == 0);
  CHECK_EQ_U(out->client_ts, 1);
  CHECK_EQ_U(out->server_ts, 2);
  protobuf_c_message_free_unpacked(&out->base, NULL);
}

static void test_round_trip_error_and_auth_ok(void) {
  Parley__Error err = PARLEY__ERROR__INIT;
  err.code = PARLEY__ERROR_CODE__ERR_QUEUE_FULL;
  err.message = "recipient queue full";
  err.ref = "m-1";
  Parley__Error *e = (Parley__Error *)round_trip(PARLEY__FRAME_TYPE__FRAME_ERROR, &err.base);
  CHECK_EQ_I(e->code, PARLEY__ERROR_CODE__ERR_QUEUE_FULL);
  CHECK_STR(e->message, "recipient queue full");
  CHECK_STR(e->ref, "m-1");
  protobuf_c_message_free_unpacked(&e->base, NULL);

  Parley__AuthOk ok = PARLEY__AUTH_OK__INIT;
  ok.user = "alice";
  ok.device = "phone";
  ok.device_id = 1ull << 40;
  ok.token = "tok";
  ok.created = 1;
  Parley__AuthOk *a = (Parley__AuthOk *)round_trip(PARLEY__FRAME_TYPE__FRAME_AUTH_OK, &ok.base);
  CHECK_STR(a->user, "alice");
  CHECK_STR(a->device, "phone");
  CHECK_EQ_U(a->device_id, 1ull << 40);
  CHECK_STR(a->token, "tok");
  CHECK(a->created);
  protobuf_c_message_free_unpacked(&a->base, NULL);
}

static void test_round_trip_empty_messages(void) {
  Parley__Logout lo = PARLEY__LOGOUT__INIT;
  ProtobufCMessage *m = round_trip(PARLEY__FRAME_TYPE__FRAME_LOGOUT, &lo.base);
  protobuf_c_message_free_unpacked(m, NULL);
  Parley__Pong pong = PARLEY__PONG__INIT; /* all fields default: a 5-byte frame */
  pl_buf *b = pl_frame_encode(PARLEY__FRAME_TYPE__FRAME_PONG, &pong.base);
  CHECK_EQ_U(b->len, PL_FRAME_HDR);
  pl_buf_unref(b);
}

static void test_bad_payload_does_not_decode(void) {
  const uint8_t p[] = {0, 0, 0, 3, PARLEY__FRAME_TYPE__FRAME_SEND, 0x0a, 0x05}; /* string past the end */
  pl_frame f;
  size_t used;
  CHECK_EQ_I(pl_frame_parse(p, sizeof p, MAX_FRAME, &f, &used), PL_OK);
  CHECK(pl_frame_unpack(&f) == NULL);
}

static void test_unknown_type_has_no_descriptor(void) {
  CHECK(pl_frame_descriptor(PARLEY__FRAME_TYPE__FRAME_NONE) == NULL);
  unsigned ntypes = parley__frame_type__descriptor.n_values; /* FRAME_NONE .. the last */
  CHECK(ntypes >= 24);
  for (unsigned t = ntypes; t < 256; t++)
    CHECK(pl_frame_descriptor((uint8_t)t) == NULL);
  for (unsigned t = 1; t < ntypes; t++)
    CHECK(pl_frame_descriptor((uint8_t)t) != NULL);
  CHECK(pl_frame_descriptor(PARLEY__FRAME_TYPE__FRAME_SEND_ACK) == &parley__send_ack__descriptor);

  const uint8_t p[] = {0, 0, 0, 2, 99, 0x08};
  pl_frame f;
  size_t used;
  CHECK_EQ_I(pl_frame_parse(p, sizeof p, MAX_FRAME, &f, &used),
             PL_OK); /* the type is not the parser's business */
  CHECK_EQ_U(f.type, 99);
  CHECK(pl_frame_unpack(&f) == NULL);
}

/* The descriptor of each type is the message the schema names for it. */
static void test_descriptor_names_match_frame_types(void) {
  for (unsigned t = 1; t < parley__frame_type__descriptor.n_values; t++) {
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&parley__frame_type__descriptor, (int)t);
    CHECK(v != NULL);
    const char *msg = pl_frame_descriptor((uint8_t)t)->short_name; /* "SendAck" for FRAME_SEND_ACK */
    char want[64] = {0};
    size_t j = 0;
    for (const char *c = v->name + strlen("FRAME_"); *c && j + 1 < sizeof want; c++)
      if (*c != '_')
        want[j++] = *c;
    char got[64] = {0};
    for (size_t i = 0; msg[i] && i + 1 < sizeof got; i++)
      got[i] = (char)(msg[i] >= 'a' && msg[i] <= 'z' ? msg[i] - 32 : msg[i]);
    CHECK_STR(got, want);
  }
}

static void test_client_may_send_table(void) {
  const unsigned allowed[] = {
      PARLEY__FRAME_TYPE__FRAME_HELLO,
      PARLEY__FRAME_TYPE__FRAME_REGISTER,
      PARLEY__FRAME_TYPE__FRAME_LOGIN,
      PARLEY__FRAME_TYPE__FRAME_RESUME,
      PARLEY__FRAME_TYPE__FRAME_LOGOUT,
      PARLEY__FRAME_TYPE__FRAME_SEND,
      PARLEY__FRAME_TYPE__FRAME_ACK,
      PARLEY__FRAME_TYPE__FRAME_PING,
      PARLEY__FRAME_TYPE__FRAME_MARK_READ,
      PARLEY__FRAME_TYPE__FRAME_SETTINGS,
      PARLEY__FRAME_TYPE__FRAME_UNREAD_GET,
      PARLEY__FRAME_TYPE__FRAME_CONTACTS,
      PARLEY__FRAME_TYPE__FRAME_BLOCK,
      PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE,
      PARLEY__FRAME_TYPE__FRAME_PRESENCE_GET,
      PARLEY__FRAME_TYPE__FRAME_TYPING,
      PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE,
      PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE,
      PARLEY__FRAME_TYPE__FRAME_GROUP_LIST_GET,
      PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS_GET,
      PARLEY__FRAME_TYPE__FRAME_PUSH_REGISTER,
      PARLEY__FRAME_TYPE__FRAME_DEVICES,
  };
  for (unsigned t = 0; t < 256; t++) {
    int want = 0;
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
      want |= allowed[i] == t;
    CHECK_EQ_I(pl_frame_client_may_send((uint8_t)t), want);
  }
}

static void test_encode_frees_everything(void) {
  size_t base = pl_mem_used();
  pl_buf *b = ping_frame(5);
  CHECK(pl_mem_used() > base);
  pl_buf_ref(b);
  pl_buf_unref(b);
  CHECK(pl_mem_used() > base);
  pl_buf_unref(b);
  CHECK_EQ_U(pl_mem_used(), base);
}

/* Group ids as frames carry them: what server and client both accept. */
static void test_group_ids(void) {
  CHECK_EQ_U(pl_frame_gid("1"), 1);
  CHECK_EQ_U(pl_frame_gid("42"), 42);
  CHECK_EQ_U(pl_frame_gid("999999999999999999"), 999999999999999999ull); /* 18 digits */
  CHECK_EQ_U(pl_frame_gid("4611404543450677249"), 4611404543450677249ull); /* bucket 16383 << 48 | 1 */
  CHECK_EQ_U(pl_frame_gid("9223372036854775807"), 9223372036854775807ull); /* 2^63 - 1 */
  CHECK_EQ_U(pl_frame_gid("9223372036854775808"), 0);                      /* past a bigint */
  CHECK_EQ_U(pl_frame_gid("10000000000000000000"), 0);                     /* 20 digits */
  CHECK_EQ_U(pl_frame_gid(""), 0);
  CHECK_EQ_U(pl_frame_gid(NULL), 0);
  CHECK_EQ_U(pl_frame_gid("0"), 0);
  CHECK_EQ_U(pl_frame_gid("012"), 0);
  CHECK_EQ_U(pl_frame_gid("12a"), 0);
  CHECK_EQ_U(pl_frame_gid("-1"), 0);
  CHECK_EQ_U(pl_frame_gid(" 1"), 0);
}

int main(void) {
  RUN(test_group_ids);
  RUN(test_header_layout);
  RUN(test_short_input_is_again_and_consumes_nothing);
  RUN(test_exact_frame);
  RUN(test_empty_payload_frame);
  RUN(test_two_frames_back_to_back);
  RUN(test_zero_length_is_bad_frame);
  RUN(test_length_over_max_is_too_large);
  RUN(test_frame_at_limit_parses);
  RUN(test_round_trip_hello);
  RUN(test_round_trip_send_binary_body);
  RUN(test_round_trip_message);
  RUN(test_round_trip_error_and_auth_ok);
  RUN(test_round_trip_empty_messages);
  RUN(test_bad_payload_does_not_decode);
  RUN(test_unknown_type_has_no_descriptor);
  RUN(test_descriptor_names_match_frame_types);
  RUN(test_client_may_send_table);
  RUN(test_encode_frees_everything);
  return tl_summary();
}
