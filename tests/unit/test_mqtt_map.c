/* pl_mqtt_map: the MQTT topic scheme (protocol.md, "MQTT"). */
#include <string.h>

#include "mqtt/pl_mqtt.h"
#include "mqtt/pl_mqtt_map.h"
#include "proto/pl_frame.h"
#include "testlib.h"

#define S(s) (const uint8_t *)(s), strlen(s)

static void test_routes(void) {
  pl_mqtt_route r;
  CHECK_EQ_U(pl_mqtt_route_parse(S("parley/send/user/bob"), &r), 0);
  CHECK(r.kind == PL_MQTT_ROUTE_SEND && !r.group && r.target_n == 3 && !memcmp(r.target, "bob", 3));
  CHECK_EQ_U(pl_mqtt_route_parse(S("parley/send/group/00ab"), &r), 0);
  CHECK(r.kind == PL_MQTT_ROUTE_SEND && r.group && r.target_n == 4);
  CHECK_EQ_U(pl_mqtt_route_parse(S("parley/read/user/bob"), &r), 0);
  CHECK_EQ_U(r.kind, PL_MQTT_ROUTE_READ);
  CHECK_EQ_U(pl_mqtt_route_parse(S("parley/typing/group/g1"), &r), 0);
  CHECK(r.kind == PL_MQTT_ROUTE_TYPING && r.group);
  CHECK_EQ_U(pl_mqtt_route_parse(S("parley/presence/subscribe"), &r), 0);
  CHECK_EQ_U(r.kind, PL_MQTT_ROUTE_PRESENCE);
  CHECK_EQ_U(pl_mqtt_route_parse(S("parley/request"), &r), 0);
  CHECK_EQ_U(r.kind, PL_MQTT_ROUTE_REQUEST);
}

/* Anything else is not a topic of the scheme. */
static void test_routes_refused(void) {
  pl_mqtt_route r;
  const char *bad[] = {"parley/send/user/",     "parley/send/user/bob/x", "parley/send/bob",
                       "parley/send/users/bob", "sensors/temp",           "parley/in/msg/user/bob",
                       "parley/request/x",      "parley/presence",        "parley/send/group/a/b",
                       "Parley/send/user/bob"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_EQ_U(pl_mqtt_route_parse(S(bad[i]), &r), PL_MQTT_RC_TOPIC_NAME_INVALID);
}

static void test_filters(void) {
  CHECK_EQ_U(pl_mqtt_filter_check(S("parley/in/#")), 0);
  CHECK_EQ_U(pl_mqtt_filter_check(S("parley/in/msg/+/+")), 0);
  CHECK_EQ_U(pl_mqtt_filter_check(S("parley/in/receipt")), 0);
  /* wildcards that would reach other users' topics on a broker */
  CHECK_EQ_U(pl_mqtt_filter_check(S("#")), PL_MQTT_RC_NOT_AUTHORIZED);
  CHECK_EQ_U(pl_mqtt_filter_check(S("+/in/#")), PL_MQTT_RC_NOT_AUTHORIZED);
  CHECK_EQ_U(pl_mqtt_filter_check(S("parley/#")), PL_MQTT_RC_NOT_AUTHORIZED);
  CHECK_EQ_U(pl_mqtt_filter_check(S("parley/+/msg/#")), PL_MQTT_RC_NOT_AUTHORIZED);
  /* outside the scheme, shared, or not a filter */
  CHECK_EQ_U(pl_mqtt_filter_check(S("sensors/temp")), PL_MQTT_RC_TOPIC_FILTER_INVALID);
  CHECK_EQ_U(pl_mqtt_filter_check(S("parley/send/user/bob")), PL_MQTT_RC_TOPIC_FILTER_INVALID);
  CHECK_EQ_U(pl_mqtt_filter_check(S("parley/in/")), PL_MQTT_RC_TOPIC_FILTER_INVALID);
  CHECK_EQ_U(pl_mqtt_filter_check(S("$share/g/parley/in/#")), PL_MQTT_RC_SHARED_NOT_SUPPORTED);
  CHECK_EQ_U(pl_mqtt_filter_check(S("parley/in/a#")), PL_MQTT_RC_TOPIC_FILTER_INVALID);
}

static void test_delivery_topics(void) {
  char t[64];
  uint8_t qos;
  CHECK_EQ_U(pl_mqtt_delivery_topic(PARLEY__FRAME_TYPE__FRAME_MESSAGE, 0, "alice", t, sizeof t, &qos), 24);
  CHECK_STR(t, "parley/in/msg/user/alice");
  CHECK_EQ_U(qos, 1);
  CHECK(pl_mqtt_delivery_topic(PARLEY__FRAME_TYPE__FRAME_MESSAGE, 1, "0a1b", t, sizeof t, &qos));
  CHECK_STR(t, "parley/in/msg/group/0a1b");
  CHECK(pl_mqtt_delivery_topic(PARLEY__FRAME_TYPE__FRAME_RECEIPT, 0, "", t, sizeof t, &qos) && qos == 1);
  CHECK_STR(t, "parley/in/receipt");
  CHECK(pl_mqtt_delivery_topic(PARLEY__FRAME_TYPE__FRAME_PRESENCE, 0, "bob", t, sizeof t, &qos) && qos == 0);
  CHECK_STR(t, "parley/in/presence/bob");
  CHECK(pl_mqtt_delivery_topic(PARLEY__FRAME_TYPE__FRAME_DONE, 0, "done", t, sizeof t, &qos) && qos == 0);
  CHECK_STR(t, "parley/in/reply/done");
  /* a name that is no topic level, or too long */
  CHECK_EQ_U(pl_mqtt_delivery_topic(PARLEY__FRAME_TYPE__FRAME_PRESENCE, 0, "a+b", t, sizeof t, &qos), 0);
  CHECK_EQ_U(pl_mqtt_delivery_topic(PARLEY__FRAME_TYPE__FRAME_PRESENCE, 0,
                                    "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop", t, sizeof t,
                                    &qos),
             0);
}

int main(void) {
  RUN(test_routes);
  RUN(test_routes_refused);
  RUN(test_filters);
  RUN(test_delivery_topics);
  return tl_summary();
}
