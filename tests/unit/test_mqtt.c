/* pl_mqtt: the MQTT 3.1.1 / 5.0 codec, byte for byte against the spec. */
#include <string.h>

#include "common/pl_mem.h"
#include "mqtt/pl_mqtt.h"
#include "testlib.h"

#define B(s) (const uint8_t *)(s), sizeof(s) - 1

static pl_err dec(const uint8_t *p, size_t n, uint8_t v, pl_mqtt_pkt *pk, uint8_t *why) {
  return pl_mqtt_decode(p, n, v, pk, why);
}

/* What a paho 3.1.1 client sends: clean session, keep alive 60, id "dev1",
 * user "alice", password "pw". */
static void test_connect_311(void) {
  static const uint8_t c[] = "\x10\x1b\x00\x04MQTT\x04\xc2\x00\x3c\x00\x04"
                             "dev1\x00\x05"
                             "alice\x00\x02pw";
  pl_mqtt_pkt pk;
  uint8_t why;
  CHECK_EQ_I(dec(B(c), 0, &pk, &why), PL_OK);
  CHECK_EQ_U(pk.type, PL_MQTT_CONNECT);
  CHECK_EQ_U(pk.version, PL_MQTT_V311);
  CHECK_EQ_U(pk.keepalive, 60);
  CHECK(pk.client_id.n == 4 && !memcmp(pk.client_id.p, "dev1", 4));
  CHECK(pk.username.n == 5 && !memcmp(pk.username.p, "alice", 5));
  CHECK(pk.password.n == 2 && !memcmp(pk.password.p, "pw", 2));
  /* and back, byte for byte */
  pl_bytes out = {0};
  CHECK_EQ_I(pl_mqtt_encode(&pk, PL_MQTT_V311, NULL, 0, &out), PL_OK);
  CHECK(out.len == sizeof c - 1 && !memcmp(out.p, c, out.len));
  pl_bytes_free(&out);
}

/* An MQTT 5 CONNECT with a session expiry, a receive maximum and a will. */
static void test_connect_v5_props_and_will(void) {
  pl_mqtt_pkt pk = {
      .type = PL_MQTT_CONNECT, .cflags = PL_MQTT_CF_WILL | (1 << 3) | PL_MQTT_CF_USERNAME, .keepalive = 30};
  pk.client_id = (pl_mqtt_str){(const uint8_t *)"phone", 5};
  pk.username = (pl_mqtt_str){(const uint8_t *)"bob", 3};
  pk.will_topic = (pl_mqtt_str){(const uint8_t *)"parley/bob/will", 15};
  pk.will_payload = (pl_mqtt_str){(const uint8_t *)"bye", 3};
  pl_mqtt_prop_u32(&pk.props, PL_MQTT_P_SESSION_EXPIRY, 3600);
  pl_mqtt_prop_u32(&pk.props, PL_MQTT_P_RECEIVE_MAX, 10);
  pl_mqtt_prop_u32(&pk.will_props, PL_MQTT_P_WILL_DELAY, 5);
  pl_bytes out = {0};
  CHECK_EQ_I(pl_mqtt_encode(&pk, PL_MQTT_V5, NULL, 0, &out), PL_OK);
  pl_mqtt_pkt d;
  uint8_t why;
  CHECK_EQ_I(dec(out.p, out.len, 0, &d, &why), PL_OK);
  CHECK_EQ_U(d.version, PL_MQTT_V5);
  CHECK_EQ_U(d.props.u32[PL_MQTT_P_SESSION_EXPIRY], 3600);
  CHECK_EQ_U(d.props.u32[PL_MQTT_P_RECEIVE_MAX], 10);
  CHECK(PL_MQTT_HAS(&d.will_props, PL_MQTT_P_WILL_DELAY));
  CHECK(d.will_topic.n == 15 && d.will_payload.n == 3 && d.username.n == 3 && !d.password.p);
  pl_bytes_free(&out);
}

static void test_bad_versions(void) {
  pl_mqtt_pkt pk;
  uint8_t why;
  /* MQTT 3.1 ("MQIsdp", level 3): the caller answers CONNACK 0x01 */
  CHECK_EQ_I(dec(B("\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00"), 0, &pk, &why),
             PL_ERR_UNSUPPORTED_VERSION);
  CHECK_EQ_U(pk.version, 3);
  CHECK_EQ_U(why, PL_MQTT_RC_UNSUPPORTED_VERSION);
  CHECK_EQ_I(dec(B("\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00"), 0, &pk, &why),
             PL_ERR_UNSUPPORTED_VERSION);
}

static void test_connect_flag_rules(void) {
  pl_mqtt_pkt pk;
  uint8_t why;
  /* the reserved flag */
  CHECK_EQ_I(dec(B("\x10\x0c\x00\x04MQTT\x04\x03\x00\x3c\x00\x00"), 0, &pk, &why), PL_ERR_BAD_FRAME);
  CHECK_EQ_U(why, PL_MQTT_RC_MALFORMED);
  /* will QoS without a will */
  CHECK_EQ_I(dec(B("\x10\x0c\x00\x04MQTT\x04\x0a\x00\x3c\x00\x00"), 0, &pk, &why), PL_ERR_BAD_FRAME);
  /* 3.1.1: a password without a user name */
  CHECK_EQ_I(dec(B("\x10\x0e\x00\x04MQTT\x04\x42\x00\x3c\x00\x00\x00\x00"), 0, &pk, &why), PL_ERR_BAD_FRAME);
  /* ... which MQTT 5 allows (empty property block after keep alive) */
  CHECK_EQ_I(dec(B("\x10\x0f\x00\x04MQTT\x05\x42\x00\x3c\x00\x00\x00\x00\x00"), 0, &pk, &why), PL_OK);
  /* bytes after the last field */
  CHECK_EQ_I(dec(B("\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\x00"), 0, &pk, &why), PL_ERR_BAD_FRAME);
}

static void test_bad_utf8(void) {
  pl_mqtt_pkt pk;
  uint8_t why;
  /* client id "a\xff", then "a\0" */
  CHECK_EQ_I(dec(B("\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02\x61\xff"), 0, &pk, &why), PL_ERR_BAD_FRAME);
  CHECK_EQ_U(why, PL_MQTT_RC_MALFORMED);
  CHECK_EQ_I(dec(B("\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02\x61\x00"), 0, &pk, &why), PL_ERR_BAD_FRAME);
  /* an overlong '/' in a topic */
  CHECK_EQ_I(dec(B("\x30\x05\x00\x03\x61\xc0\xaf"), 4, &pk, &why), PL_ERR_BAD_FRAME);
}

static void test_header_lengths(void) {
  uint8_t t, f, why;
  size_t hl, rl;
  /* every prefix of a header asks for more */
  CHECK_EQ_I(pl_mqtt_header(B(""), 0, &t, &f, &hl, &rl, &why), PL_ERR_AGAIN);
  CHECK_EQ_I(pl_mqtt_header(B("\x30\xff\xff"), 0, &t, &f, &hl, &rl, &why), PL_ERR_AGAIN);
  /* the largest four-byte length, and a fifth byte */
  CHECK_EQ_I(pl_mqtt_header(B("\x30\xff\xff\xff\x7f"), 0, &t, &f, &hl, &rl, &why), PL_OK);
  CHECK_EQ_U(rl, PL_MQTT_MAX_REMAINING);
  CHECK_EQ_U(hl, 5);
  CHECK_EQ_I(pl_mqtt_header(B("\x30\xff\xff\xff\xff\x01"), 0, &t, &f, &hl, &rl, &why), PL_ERR_BAD_FRAME);
  CHECK_EQ_U(why, PL_MQTT_RC_MALFORMED);
  /* a non-minimal length is taken (the spec does not forbid reading it) */
  CHECK_EQ_I(pl_mqtt_header(B("\xc0\x80\x00"), 0, &t, &f, &hl, &rl, &why), PL_OK);
  CHECK(rl == 0 && hl == 3 && t == PL_MQTT_PINGREQ);
  /* over the receiver's maximum packet size, known from the header alone */
  CHECK_EQ_I(pl_mqtt_header(B("\x30\x80\x01"), 100, &t, &f, &hl, &rl, &why), PL_ERR_FRAME_TOO_LARGE);
  CHECK_EQ_U(why, PL_MQTT_RC_PACKET_TOO_LARGE);
  CHECK_EQ_I(pl_mqtt_header(B("\x30\x62"), 100, &t, &f, &hl, &rl, &why), PL_OK); /* 2 + 98 = 100 */
  CHECK_EQ_I(pl_mqtt_header(B("\x00\x00"), 0, &t, &f, &hl, &rl, &why), PL_ERR_BAD_FRAME);
}

static void test_fixed_header_flags(void) {
  pl_mqtt_pkt pk;
  uint8_t why;
  CHECK_EQ_I(dec(B("\xc1\x00"), 4, &pk, &why), PL_ERR_BAD_FRAME); /* PINGREQ with a flag */
  CHECK_EQ_I(dec(B("\x80\x06\x00\x01\x00\x01\x61\x01"), 4, &pk, &why),
             PL_ERR_BAD_FRAME);                                /* SUBSCRIBE flags 0 */
  CHECK_EQ_I(dec(B("\x62\x02\x00\x01"), 4, &pk, &why), PL_OK); /* PUBREL 0x2 */
  CHECK_EQ_I(dec(B("\x60\x02\x00\x01"), 4, &pk, &why), PL_ERR_BAD_FRAME);
  CHECK_EQ_I(dec(B("\x36\x05\x00\x01\x61\x00\x01"), 4, &pk, &why), PL_ERR_BAD_FRAME); /* QoS 3 */
  CHECK_EQ_I(dec(B("\x38\x03\x00\x01\x61"), 4, &pk, &why), PL_ERR_BAD_FRAME);         /* DUP on QoS 0 */
  CHECK_EQ_I(dec(B("\xc0\x01\x00"), 4, &pk, &why), PL_ERR_BAD_FRAME);                 /* PINGREQ body */
  CHECK_EQ_I(dec(B("\xf0\x00"), 4, &pk, &why), PL_ERR_BAD_FRAME);                     /* AUTH in 3.1.1 */
  CHECK_EQ_I(dec(B("\xf0\x00"), 5, &pk, &why), PL_OK);
}

static void test_publish(void) {
  pl_mqtt_pkt pk;
  uint8_t why;
  /* QoS 1, id 7, topic "a/b", payload "hi" */
  CHECK_EQ_I(dec(B("\x32\x09\x00\x03"
                   "a/b\x00\x07hi"),
                 4, &pk, &why),
             PL_OK);
  CHECK(pk.qos == 1 && pk.id == 7 && pk.topic.n == 3 && pk.payload.n == 2 && !memcmp(pk.payload.p, "hi", 2));
  /* packet id 0 */
  CHECK_EQ_I(dec(B("\x32\x07\x00\x03"
                   "a/b\x00\x00"),
                 4, &pk, &why),
             PL_ERR_BAD_FRAME);
  CHECK_EQ_U(why, PL_MQTT_RC_PROTOCOL_ERROR);
  /* a wildcard in a topic name */
  CHECK_EQ_I(dec(B("\x30\x06\x00\x03"
                   "a/+\x00"),
                 5, &pk, &why),
             PL_ERR_BAD_FRAME);
  CHECK_EQ_U(why, PL_MQTT_RC_TOPIC_NAME_INVALID);
  /* MQTT 5: an empty name is an alias's only */
  CHECK_EQ_I(dec(B("\x30\x03\x00\x00\x00"), 5, &pk, &why), PL_ERR_BAD_FRAME);
  CHECK_EQ_I(dec(B("\x30\x06\x00\x00\x03\x23\x00\x01"), 5, &pk, &why), PL_OK);
  /* topic alias 0 is a protocol error; a property of CONNECT's is too */
  CHECK_EQ_I(dec(B("\x30\x06\x00\x00\x03\x23\x00\x00"), 5, &pk, &why), PL_ERR_BAD_FRAME);
  CHECK_EQ_U(why, PL_MQTT_RC_PROTOCOL_ERROR);
  CHECK_EQ_I(dec(B("\x30\x06\x00\x01\x61\x02\x17\x01"), 5, &pk, &why), PL_ERR_BAD_FRAME);
  CHECK_EQ_U(why, PL_MQTT_RC_PROTOCOL_ERROR);
  /* a property twice */
  CHECK_EQ_I(dec(B("\x30\x08\x00\x01\x61\x04\x01\x01\x01\x00"), 5, &pk, &why), PL_ERR_BAD_FRAME);
  /* an unknown property */
  CHECK_EQ_I(dec(B("\x30\x06\x00\x01\x61\x02\x7f\x00"), 5, &pk, &why), PL_ERR_BAD_FRAME);
  CHECK_EQ_U(why, PL_MQTT_RC_MALFORMED);
  /* a property block longer than the packet */
  CHECK_EQ_I(dec(B("\x30\x05\x00\x01\x61\x09\x01"), 5, &pk, &why), PL_ERR_BAD_FRAME);
}

/* User properties repeat and are walked in order; the encoder keeps them. */
static void test_user_properties(void) {
  static const uint8_t p[] = "\x32\x17\x00\x01t\x00\x01\x0e"
                             "\x26\x00\x01k\x00\x01v"
                             "\x26\x00\x01x\x00\x01y"
                             "hey";
  pl_mqtt_pkt pk;
  uint8_t why;
  CHECK_EQ_I(dec(B(p), 5, &pk, &why), PL_OK);
  CHECK_EQ_U(pk.props.nuser, 2);
  size_t it = 0;
  pl_mqtt_str k, v;
  CHECK(pl_mqtt_user_next(&pk.props, &it, &k, &v) && k.n == 1 && k.p[0] == 'k' && v.p[0] == 'v');
  CHECK(pl_mqtt_user_next(&pk.props, &it, &k, &v) && k.p[0] == 'x' && v.p[0] == 'y');
  CHECK(!pl_mqtt_user_next(&pk.props, &it, &k, &v));
  pl_bytes out = {0};
  CHECK_EQ_I(pl_mqtt_encode(&pk, 5, NULL, 0, &out), PL_OK);
  CHECK(out.len == sizeof p - 1 && !memcmp(out.p, p, out.len));
  pl_bytes_free(&out);
}

static void test_subscribe(void) {
  pl_mqtt_pkt pk;
  uint8_t why;
  static const uint8_t s[] = "\x82\x0f\x00\x02\x00\x04"
                             "a/#\x01\x00\x03+/b\x02";
  CHECK_EQ_I(dec(s, sizeof s - 2 - 1 + 1 - 1, 4, &pk, &why), PL_ERR_BAD_FRAME); /* cut short */
  static const uint8_t s4[] = "\x82\x0e\x00\x02\x00\x03"
                              "a/#\x01\x00\x03+/b\x02";
  CHECK_EQ_I(dec(B(s4), 4, &pk, &why), PL_OK);
  CHECK_EQ_U(pk.count, 2);
  size_t it = 0;
  pl_mqtt_sub e;
  CHECK(pl_mqtt_sub_next(&pk, &it, &e) && e.filter.n == 3 && e.opts == 1);
  CHECK(pl_mqtt_sub_next(&pk, &it, &e) && e.filter.n == 3 && e.opts == 2);
  CHECK(!pl_mqtt_sub_next(&pk, &it, &e));
  /* bad filters */
  CHECK_EQ_I(dec(B("\x82\x08\x00\x02\x00\x03"
                   "a#b\x01"),
                 4, &pk, &why),
             PL_ERR_BAD_FRAME);
  CHECK_EQ_I(dec(B("\x82\x09\x00\x02\x00\x00\x03"
                   "#/a\x01"),
                 5, &pk, &why),
             PL_ERR_BAD_FRAME);
  CHECK_EQ_U(why, PL_MQTT_RC_TOPIC_FILTER_INVALID);
  /* reserved option bits (3.1.1 has six of them), QoS 3, none at all */
  CHECK_EQ_I(dec(B("\x82\x06\x00\x02\x00\x01"
                   "a\x04"),
                 4, &pk, &why),
             PL_ERR_BAD_FRAME);
  CHECK_EQ_I(dec(B("\x82\x07\x00\x02\x00\x00\x01"
                   "a\x04"),
                 5, &pk, &why),
             PL_OK); /* No Local in 5 */
  CHECK_EQ_I(dec(B("\x82\x06\x00\x02\x00\x01"
                   "a\x03"),
                 4, &pk, &why),
             PL_ERR_BAD_FRAME);
  CHECK_EQ_I(dec(B("\x82\x02\x00\x02"), 4, &pk, &why), PL_ERR_BAD_FRAME);
  CHECK_EQ_U(why, PL_MQTT_RC_PROTOCOL_ERROR);
}

static void test_acks_v5_short_forms(void) {
  pl_mqtt_pkt pk;
  uint8_t why;
  CHECK_EQ_I(dec(B("\x40\x02\x00\x05"), 5, &pk, &why), PL_OK);
  CHECK(pk.id == 5 && pk.reason == 0);
  CHECK_EQ_I(dec(B("\x40\x03\x00\x05\x10"), 5, &pk, &why), PL_OK);
  CHECK_EQ_U(pk.reason, 0x10);
  CHECK_EQ_I(dec(B("\x40\x03\x00\x05\x10"), 4, &pk, &why), PL_ERR_BAD_FRAME); /* 3.1.1: two bytes */
  /* an encoded success ack is the short form */
  pl_mqtt_pkt a = {.type = PL_MQTT_PUBACK, .id = 9};
  pl_bytes out = {0};
  CHECK_EQ_I(pl_mqtt_encode(&a, 5, NULL, 0, &out), PL_OK);
  CHECK(out.len == 4 && !memcmp(out.p, "\x40\x02\x00\x09", 4));
  out.len = 0;
  a.reason = PL_MQTT_RC_NOT_AUTHORIZED;
  pl_mqtt_prop_str(&a.props, PL_MQTT_P_REASON_STRING, "no", 2);
  CHECK_EQ_I(pl_mqtt_encode(&a, 5, NULL, 0, &out), PL_OK);
  CHECK(out.len == 11 && !memcmp(out.p, "\x40\x09\x00\x09\x87\x05\x1f\x00\x02no", 11));
  pl_bytes_free(&out);
}

static void test_suback_disconnect(void) {
  pl_mqtt_pkt pk = {.type = PL_MQTT_SUBACK, .id = 3, .list = {(const uint8_t *)"\x01\x87", 2}, .count = 2};
  pl_bytes out = {0};
  CHECK_EQ_I(pl_mqtt_encode(&pk, 5, NULL, 0, &out), PL_OK);
  CHECK(out.len == 7 && !memcmp(out.p, "\x90\x05\x00\x03\x00\x01\x87", 7));
  pl_mqtt_pkt d;
  uint8_t why;
  CHECK_EQ_I(dec(out.p, out.len, 5, &d, &why), PL_OK);
  CHECK_EQ_U(d.count, 2);
  /* 3.1.1 SUBACK codes are 0, 1, 2 or 0x80 */
  CHECK_EQ_I(dec(B("\x90\x03\x00\x03\x87"), 4, &d, &why), PL_ERR_BAD_FRAME);
  out.len = 0;
  pl_mqtt_pkt dis = {.type = PL_MQTT_DISCONNECT, .reason = PL_MQTT_RC_SESSION_TAKEN_OVER};
  CHECK_EQ_I(pl_mqtt_encode(&dis, 5, NULL, 0, &out), PL_OK);
  CHECK(out.len == 3 && !memcmp(out.p, "\xe0\x01\x8e", 3));
  out.len = 0;
  CHECK_EQ_I(pl_mqtt_encode(&dis, 4, NULL, 0, &out), PL_OK);
  CHECK(out.len == 2 && !memcmp(out.p, "\xe0\x00", 2));
  CHECK_EQ_I(dec(B("\xe0\x01\x8e"), 4, &d, &why), PL_ERR_BAD_FRAME);
  pl_bytes_free(&out);
}

static void test_topics(void) {
  CHECK(pl_mqtt_topic_filter_ok(B("#")));
  CHECK(pl_mqtt_topic_filter_ok(B("+")));
  CHECK(pl_mqtt_topic_filter_ok(B("a/+/c/#")));
  CHECK(pl_mqtt_topic_filter_ok(B("/")));
  CHECK(!pl_mqtt_topic_filter_ok(B("a/#/c")));
  CHECK(!pl_mqtt_topic_filter_ok(B("a+")));
  CHECK(!pl_mqtt_topic_filter_ok(B("")));
  CHECK(pl_mqtt_topic_name_ok(B("a/b")));
  CHECK(!pl_mqtt_topic_name_ok(B("a/#")));
}

/* A string over 65535 bytes cannot be encoded. */
static void test_encode_limits(void) {
  static uint8_t big[70000];
  pl_mqtt_pkt pk = {.type = PL_MQTT_PUBLISH, .topic = {big, sizeof big}};
  pl_bytes out = {0};
  CHECK_EQ_I(pl_mqtt_encode(&pk, 4, NULL, 0, &out), PL_ERR_INVALID_ARGUMENT);
  CHECK_EQ_U(out.len, 0);
  pk.topic.n = 1;
  pk.payload = (pl_mqtt_str){big, sizeof big};
  CHECK_EQ_I(pl_mqtt_encode(&pk, 4, NULL, 0, &out), PL_OK);
  CHECK_EQ_U(out.len, 4 + 3 + sizeof big);
  pl_bytes_free(&out);
}

/* Every buffer the tests encoded was given back. */
static void test_no_leaks(void) { CHECK_EQ_U(pl_mem_used(), 0); }

int main(void) {
  RUN(test_connect_311);
  RUN(test_connect_v5_props_and_will);
  RUN(test_bad_versions);
  RUN(test_connect_flag_rules);
  RUN(test_bad_utf8);
  RUN(test_header_lengths);
  RUN(test_fixed_header_flags);
  RUN(test_publish);
  RUN(test_user_properties);
  RUN(test_subscribe);
  RUN(test_acks_v5_short_forms);
  RUN(test_suback_disconnect);
  RUN(test_topics);
  RUN(test_encode_limits);
  RUN(test_no_leaks);
  return tl_summary();
}
