/* pl_mqtt_map: the topic scheme (see pl_mqtt_map.h). */
#include "pl_mqtt_map.h"

#include <stdio.h>
#include <string.h>

#include "../proto/pl_frame.h"
#include "pl_mqtt.h"

/* Does topic[0..n) start with the levels of prefix (ending in '/')? */
static int has_prefix(const uint8_t *t, size_t n, const char *prefix) {
  size_t k = strlen(prefix);
  return n >= k && !memcmp(t, prefix, k);
}

/* "<prefix>user/<x>" or "<prefix>group/<x>", x one non-empty level. */
static int target_of(const uint8_t *t, size_t n, size_t k, pl_mqtt_route *out) {
  const uint8_t *r = t + k;
  size_t rn = n - k, skip;
  if (rn > 5 && !memcmp(r, "user/", 5))
    skip = 5, out->group = 0;
  else if (rn > 6 && !memcmp(r, "group/", 6))
    skip = 6, out->group = 1;
  else
    return 0;
  out->target = r + skip;
  out->target_n = rn - skip;
  return !memchr(out->target, '/', out->target_n);
}

uint8_t pl_mqtt_route_parse(const uint8_t *topic, size_t n, pl_mqtt_route *out) {
  static const struct {
    const char *prefix;
    pl_mqtt_route_kind kind;
  } targeted[] = {{"parley/send/", PL_MQTT_ROUTE_SEND},
                  {"parley/read/", PL_MQTT_ROUTE_READ},
                  {"parley/typing/", PL_MQTT_ROUTE_TYPING}};
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < sizeof targeted / sizeof targeted[0]; i++) {
    if (!has_prefix(topic, n, targeted[i].prefix))
      continue;
    out->kind = targeted[i].kind;
    return target_of(topic, n, strlen(targeted[i].prefix), out) ? 0 : PL_MQTT_RC_TOPIC_NAME_INVALID;
  }
  if (n == strlen("parley/presence/subscribe") && has_prefix(topic, n, "parley/presence/subscribe"))
    out->kind = PL_MQTT_ROUTE_PRESENCE;
  else if (n == strlen("parley/request") && has_prefix(topic, n, "parley/request"))
    out->kind = PL_MQTT_ROUTE_REQUEST;
  return out->kind ? 0 : PL_MQTT_RC_TOPIC_NAME_INVALID;
}

uint8_t pl_mqtt_filter_check(const uint8_t *f, size_t n) {
  if (!pl_mqtt_topic_filter_ok(f, n))
    return PL_MQTT_RC_TOPIC_FILTER_INVALID;
  if (has_prefix(f, n, "$share/"))
    return PL_MQTT_RC_SHARED_NOT_SUPPORTED;
  if (has_prefix(f, n, "parley/in/") && n > 10)
    return 0;
  /* A wildcard before parley/in/ would reach other topics on a broker. */
  for (size_t i = 0; i < n && i < 10; i++)
    if (f[i] == '+' || f[i] == '#')
      return PL_MQTT_RC_NOT_AUTHORIZED;
  return PL_MQTT_RC_TOPIC_FILTER_INVALID;
}

size_t pl_mqtt_delivery_topic(uint8_t type, int group, const char *name, char *out, size_t cap,
                              uint8_t *qos) {
  int len;
  *qos = 0;
  switch (type) {
  case PARLEY__FRAME_TYPE__FRAME_MESSAGE:
    *qos = 1;
    len = snprintf(out, cap, "parley/in/msg/%s/%s", group ? "group" : "user", name);
    break;
  case PARLEY__FRAME_TYPE__FRAME_RECEIPT: *qos = 1, len = snprintf(out, cap, "parley/in/receipt"); break;
  case PARLEY__FRAME_TYPE__FRAME_READ_SYNC: *qos = 1, len = snprintf(out, cap, "parley/in/readsync"); break;
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE: len = snprintf(out, cap, "parley/in/presence/%s", name); break;
  case PARLEY__FRAME_TYPE__FRAME_TYPING_EVENT: len = snprintf(out, cap, "parley/in/typing/%s", name); break;
  case PARLEY__FRAME_TYPE__FRAME_ERROR: len = snprintf(out, cap, "parley/in/error"); break;
  default: len = snprintf(out, cap, "parley/in/reply/%s", name); break;
  }
  if (len <= 0 || (size_t)len >= cap || !pl_mqtt_topic_name_ok((const uint8_t *)out, (size_t)len))
    return 0;
  return (size_t)len;
}
