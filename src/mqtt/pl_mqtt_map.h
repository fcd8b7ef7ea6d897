/* pl_mqtt_map: Parley's MQTT topic scheme (protocol.md, "MQTT"), pure.
 *
 * What a client publishes to says what it asks for:
 *
 *   parley/send/user/<user>      a 1:1 message        (Send.to)
 *   parley/send/group/<group>    a group message      (Send.group)
 *   parley/read/user/<user>      read up to a seq     (MarkRead.peer)
 *   parley/read/group/<group>                         (MarkRead.group)
 *   parley/typing/user/<user>    typing on or off     (Typing.to)
 *   parley/typing/group/<group>                       (Typing.group)
 *   parley/presence/subscribe    whose presence to follow (PresenceSubscribe)
 *   parley/request               any other request, as its JSON frame
 *
 * and what the server publishes says what it is, always under parley/in/
 * (every topic a device is sent is its own user's: nothing there is anyone
 * else's traffic):
 *
 *   parley/in/msg/user/<from>    a 1:1 message (QoS 1: its PUBACK is the Ack)
 *   parley/in/msg/group/<group>  a group message (QoS 1)
 *   parley/in/receipt            delivered / read watermarks of peers (QoS 1)
 *   parley/in/readsync           this user's read state moved elsewhere (QoS 1)
 *   parley/in/presence/<user>    a followed user came or went (QoS 0)
 *   parley/in/typing/<from>      a peer is typing (QoS 0)
 *   parley/in/error              a refusal not told by an ack (QoS 0)
 *   parley/in/reply/<type>       answers to parley/request (QoS 0)
 *
 * A subscription is taken only for filters under parley/in/ ("parley/in/#"
 * and narrower); a filter that could match other users' topics on a broker
 * ("#", "+/...", "parley/#") is not authorized. */
#ifndef PL_MQTT_MAP_H
#define PL_MQTT_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef enum pl_mqtt_route_kind {
  PL_MQTT_ROUTE_SEND = 1,
  PL_MQTT_ROUTE_READ,
  PL_MQTT_ROUTE_TYPING,
  PL_MQTT_ROUTE_PRESENCE,
  PL_MQTT_ROUTE_REQUEST,
} pl_mqtt_route_kind;

typedef struct pl_mqtt_route {
  pl_mqtt_route_kind kind;
  int group;             /* the target is a group id, not a user name */
  const uint8_t *target; /* the last level (a view into the topic) */
  size_t target_n;
} pl_mqtt_route;

/* What a PUBLISH to topic[0..n) asks for: 0, or the MQTT 5 reason code to
 * refuse it with (0x90 Topic Name Invalid: not in the scheme). */
uint8_t pl_mqtt_route_parse(const uint8_t *topic, size_t n, pl_mqtt_route *out);

/* May a client subscribe to filter[0..n)? 0, or the reason code: 0x87 Not
 * Authorized (it reaches outside parley/in/ through a wildcard), 0x9E
 * (a shared subscription), 0x8F (any other filter outside the scheme). */
uint8_t pl_mqtt_filter_check(const uint8_t *filter, size_t n);

/* The topic a delivery of native frame type type is published on, into
 * out[0..cap): name is the sender, group, followed user, or the frame's
 * type name, as the topic wants (see above). Its length, or 0 when it does
 * not fit or the type has no topic of its own (then it is a reply). *qos
 * is 1 for what comes from the device's durable queue, else 0. */
size_t pl_mqtt_delivery_topic(uint8_t type, int group, const char *name, char *out, size_t cap, uint8_t *qos);

#endif
