/* pl_mqttgw: the output side, the session's native frames into MQTT
 * packets (see pl_mqttgw.h). */
#include <string.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "../common/pl_utf8.h"
#include "../mqtt/pl_mqtt_map.h"
#include "../web/pl_json.h"
#include "pl_mqttgw_int.h"

uint8_t pl_mqttgw__reason_of(pl_err err) {
  switch (err) {
  case PL_ERR_BAD_CREDENTIALS:
  case PL_ERR_BAD_TOKEN: return PL_MQTT_RC_BAD_CREDENTIALS;
  case PL_ERR_BLOCKED:
  case PL_ERR_NOT_ALLOWED:
  case PL_ERR_NOT_MEMBER:
  case PL_ERR_FORBIDDEN: return PL_MQTT_RC_NOT_AUTHORIZED;
  case PL_ERR_UNKNOWN_PEER: return PL_MQTT_RC_TOPIC_NAME_INVALID;
  case PL_ERR_RATE_LIMITED:
  case PL_ERR_QUEUE_FULL:
  case PL_ERR_STORAGE_FULL:
  case PL_ERR_TOO_MANY_DEVICES:
  case PL_ERR_SLOW_CONSUMER: return PL_MQTT_RC_QUOTA_EXCEEDED;
  case PL_ERR_INVALID_ARGUMENT:
  case PL_ERR_MESSAGE_TOO_LARGE:
  case PL_ERR_FILTERED: return PL_MQTT_RC_PAYLOAD_FORMAT_INVALID;
  case PL_ERR_HEARTBEAT_TIMEOUT: return PL_MQTT_RC_KEEPALIVE_TIMEOUT;
  case PL_ERR_SHUTTING_DOWN: return PL_MQTT_RC_SHUTTING_DOWN;
  case PL_ERR_TOO_MANY_CONNECTIONS: return PL_MQTT_RC_SERVER_BUSY;
  case PL_ERR_FRAME_TOO_LARGE: return PL_MQTT_RC_PACKET_TOO_LARGE;
  case PL_ERR_BAD_FRAME: return PL_MQTT_RC_MALFORMED;
  default: return PL_MQTT_RC_UNSPECIFIED;
  }
}

/* The 3.1.1 CONNACK code for a refused login. */
static uint8_t pl_mqttgw__rc3_of(pl_err err) {
  switch (err) {
  case PL_ERR_BAD_CREDENTIALS:
  case PL_ERR_BAD_TOKEN: return PL_MQTT3_BAD_CREDENTIALS;
  case PL_ERR_INVALID_ARGUMENT: return PL_MQTT3_ID_REJECTED;
  default: return PL_MQTT3_UNAVAILABLE;
  }
}

/* ---- CONNACK ---------------------------------------------------------- */

static void pl_mqttgw__connack(pl_mqttgw *g, const json_t *auth_ok) {
  pl_mqtt_pkt a = {.type = PL_MQTT_CONNACK};
  /* The device's queue is its session: present unless just made, or the
   * client asked for a clean one (it still gets what is queued). */
  a.cflags = !g->clean && !json_is_true(json_object_get(auth_ok, "created"));
  if (g->version == PL_MQTT_V5) {
    pl_mqtt_prop_u32(&a.props, PL_MQTT_P_MAX_PACKET, g->max_packet);
    pl_mqtt_prop_u32(&a.props, PL_MQTT_P_RETAIN_AVAILABLE, 0);
    pl_mqtt_prop_u32(&a.props, PL_MQTT_P_SHARED_AVAILABLE, 0);
    pl_mqtt_prop_u32(&a.props, PL_MQTT_P_SUB_ID_AVAILABLE, 0);
  }
  pl_mqttgw__write(g, &a);
  g->state = PL_MQTTGW_READY;
  g->c->deadline_ms = 0;
  g->c->idle_timeout_ms = g->keepalive_ms;
  /* what the client sent after CONNECT is read once the session's call is over */
  pl_loop_mark(g->c->loop, &g->resume);
}

/* ---- publishing to the client ---------------------------------------- */

/* Remembers a QoS 1 delivery until its PUBACK. */
static uint16_t pl_mqttgw__track(pl_mqttgw *g, uint64_t qid) {
  if (g->nouts == g->couts) {
    g->couts = g->couts ? g->couts * 2 : 16;
    g->outs = pl_realloc(g->outs, g->couts * sizeof *g->outs);
  }
  if (++g->next_pid == 0)
    g->next_pid = 1;
  g->outs[g->nouts++] = (pl_mqttgw_out){.pid = g->next_pid, .qid = qid};
  return g->next_pid;
}

/* The name a delivery's topic carries (see pl_mqtt_delivery_topic). */
static const char *pl_mqttgw__topic_name(uint8_t type, const json_t *o, int *group) {
  const char *g = json_string_value(json_object_get(o, "group"));
  *group = 0;
  switch (type) {
  case PARLEY__FRAME_TYPE__FRAME_MESSAGE:
    *group = g && *g;
    return *group ? g : json_string_value(json_object_get(o, "from"));
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE: return json_string_value(json_object_get(o, "user"));
  case PARLEY__FRAME_TYPE__FRAME_TYPING_EVENT: return json_string_value(json_object_get(o, "from"));
  default: return json_string_value(json_object_get(o, "type"));
  }
}

/* A native frame's JSON form (pl_json), as an object; NULL if it has none. */
static json_t *pl_mqttgw__json_of(const pl_buf *frame) {
  pl_bytes text = {0};
  json_error_t err;
  json_t *o = NULL;
  if (pl_json_from_frame(frame->data, frame->len, &text) == PL_OK)
    o = json_loadb((const char *)text.p, text.len, 0, &err);
  pl_bytes_free(&text);
  return o;
}

/* One PUBLISH of payload on topic; a QoS 1 one is tracked until its PUBACK. */
static void pl_mqttgw__publish_out(pl_mqttgw *g, const char *topic, size_t tn, uint8_t qos, uint64_t qid,
                                   const void *payload, size_t n) {
  pl_mqtt_pkt pk = {.type = PL_MQTT_PUBLISH,
                    .qos = qos && qid ? 1 : 0,
                    .topic = {(const uint8_t *)topic, tn},
                    .payload = {(const uint8_t *)payload, n}};
  if (g->version == PL_MQTT_V5)
    pl_mqtt_prop_u32(&pk.props, PL_MQTT_P_PAYLOAD_FORMAT, 1); /* UTF-8 text */
  /* [MQTT-3.1.2-25]: a packet over the client's maximum is dropped as if sent */
  int too_big = g->client_max && n + tn + 32 > g->client_max;
  if (pk.qos)
    pk.id = pl_mqttgw__track(g, qid);
  if (!too_big)
    pl_mqttgw__write(g, &pk);
}

/* A frame for the client as a PUBLISH of its JSON form on its topic. */
static void pl_mqttgw__deliver(pl_mqttgw *g, uint8_t type, const pl_buf *frame) {
  json_t *o = pl_mqttgw__json_of(frame);
  if (!o)
    return;
  int group;
  const char *name = pl_mqttgw__topic_name(type, o, &group);
  char topic[160];
  uint8_t qos;
  size_t tn = pl_mqtt_delivery_topic(type, group, name ? name : "", topic, sizeof topic, &qos);
  if (tn) {
    uint64_t qid = (uint64_t)json_integer_value(json_object_get(o, "qid"));
    char *payload = json_dumps(o, JSON_COMPACT);
    pl_mqttgw__publish_out(g, topic, tn, qos, qid, payload, payload ? strlen(payload) : 0);
    free(payload); /* jansson's */
  }
  json_decref(o);
}

/* Appends p[0..n), valid UTF-8, as a JSON string (RFC 8259 escapes). */
static void pl_mqttgw__json_string(pl_bytes *out, const uint8_t *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  pl_bytes_reserve(out, n + 2);
  pl_bytes_append(out, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    uint8_t ch = p[i];
    if (ch == '"' || ch == '\\') {
      uint8_t esc[2] = {'\\', ch};
      pl_bytes_append(out, esc, 2);
    } else if (ch < 0x20 && strchr("\b\f\n\r\t", ch) && ch) { /* the short forms, as jansson writes them */
      uint8_t esc[2] = {'\\', (uint8_t)"btnvfr"[ch - '\b']};
      pl_bytes_append(out, esc, 2);
    } else if (ch < 0x20) {
      uint8_t esc[6] = {'\\', 'u', '0', '0', (uint8_t)hex[ch >> 4], (uint8_t)hex[ch & 15]};
      pl_bytes_append(out, esc, 6);
    } else {
      pl_bytes_append(out, &ch, 1);
    }
  }
  pl_bytes_append(out, "\"", 1);
}

/* A Message, the hot path: its JSON form (pl_json) is published as it
 * comes, with "text" spliced in before the closing brace when the body is
 * UTF-8, so the payload is the same as pl_mqttgw__deliver's without
 * parsing the object and dumping it again (that round trip was ~15 % of
 * parleyd's CPU under MQTT load, docs/benchmarks.md). */
static void pl_mqttgw__deliver_msg(pl_mqttgw *g, const pl_frame *f, const pl_buf *frame) {
  Parley__Message *m = parley__message__unpack(NULL, f->payload_len, f->payload);
  pl_bytes text = {0};
  if (!m || pl_json_from_frame(frame->data, frame->len, &text) != PL_OK || !text.len ||
      text.p[text.len - 1] != '}')
    goto out;
  int group = m->group && *m->group;
  char topic[160];
  uint8_t qos;
  size_t tn = pl_mqtt_delivery_topic(PARLEY__FRAME_TYPE__FRAME_MESSAGE, group, group ? m->group : m->from, topic,
                                     sizeof topic, &qos);
  if (!tn)
    goto out;
  if (m->body.len && pl_utf8_check(m->body.data, m->body.len, PL_UTF8_ANY, NULL, NULL) == PL_UTF8_OK) {
    text.len--; /* the closing brace */
    pl_bytes_append(&text, ",\"text\":", 8);
    pl_mqttgw__json_string(&text, m->body.data, m->body.len);
    pl_bytes_append(&text, "}", 1);
  }
  pl_mqttgw__publish_out(g, topic, tn, qos, m->qid, text.p, text.len);
out:
  pl_bytes_free(&text);
  if (m)
    parley__message__free_unpacked(m, NULL);
}

/* ---- answers to the client's PUBLISHes ------------------------------- */

/* The awaited Send whose id is ref: its ack goes out with reason; 1 if found. */
static int pl_mqttgw__settle(pl_mqttgw *g, const char *ref, uint8_t reason) {
  for (size_t i = 0; ref && i < g->nsends; i++) {
    pl_mqttgw_send *s = &g->sends[i];
    if (strcmp(s->ref, ref))
      continue;
    pl_mqtt_pkt a = {.type = s->qos == 2 ? PL_MQTT_PUBREC : PL_MQTT_PUBACK, .id = s->pid, .reason = reason};
    pl_mqttgw__write(g, &a);
    pl_free(s->ref);
    memmove(s, s + 1, (g->nsends - i - 1) * sizeof *s);
    g->nsends--;
    return 1;
  }
  return 0;
}

/* An Error frame: a refused login's CONNACK, a refused Send's ack, or
 * (3.1.1 has no reason codes in acks) a PUBLISH on parley/in/error too. */
static void pl_mqttgw__error(pl_mqttgw *g, const pl_buf *frame, const json_t *o) {
  /* JSON names the code: its number from the enum's table */
  const char *name = json_string_value(json_object_get(o, "code"));
  const ProtobufCEnumValue *ev =
      name ? protobuf_c_enum_descriptor_get_value_by_name(&parley__error_code__descriptor, name) : NULL;
  pl_err e = ev ? pl_err_from_wire((unsigned)ev->value) : PL_ERR_INTERNAL;
  g->last_error = e;
  if (g->state == PL_MQTTGW_AUTHING) {
    pl_mqttgw__refuse(g, pl_mqttgw__reason_of(e), pl_mqttgw__rc3_of(e));
    return;
  }
  if (g->state != PL_MQTTGW_READY)
    return;
  const char *ref = json_string_value(json_object_get(o, "ref"));
  int settled = pl_mqttgw__settle(g, ref, pl_mqttgw__reason_of(e));
  if (!settled || g->version != PL_MQTT_V5)
    pl_mqttgw__deliver(g, PARLEY__FRAME_TYPE__FRAME_ERROR, frame);
}

void pl_mqttgw_output(pl_mqttgw *g, const pl_buf *frame) {
  pl_frame f;
  size_t used;
  if (g->state == PL_MQTTGW_DONE || pl_frame_parse(frame->data, frame->len, UINT32_MAX, &f, &used) != PL_OK)
    return;
  switch (f.type) {
  case PARLEY__FRAME_TYPE__FRAME_WELCOME:
  case PARLEY__FRAME_TYPE__FRAME_PONG:
  case PARLEY__FRAME_TYPE__FRAME_LOGOUT_OK: return;
  case PARLEY__FRAME_TYPE__FRAME_MESSAGE:
    if (g->state == PL_MQTTGW_READY)
      pl_mqttgw__deliver_msg(g, &f, frame);
    return;
  case PARLEY__FRAME_TYPE__FRAME_RECEIPT:
  case PARLEY__FRAME_TYPE__FRAME_READ_SYNC:
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE:
  case PARLEY__FRAME_TYPE__FRAME_TYPING_EVENT:
    if (g->state == PL_MQTTGW_READY)
      pl_mqttgw__deliver(g, f.type, frame);
    return;
  default: break;
  }
  /* the rest is read in its JSON form: AuthOk, SendAck, Error, replies */
  json_t *o = pl_mqttgw__json_of(frame);
  if (!o)
    return;
  if (f.type == PARLEY__FRAME_TYPE__FRAME_AUTH_OK && g->state == PL_MQTTGW_AUTHING)
    pl_mqttgw__connack(g, o);
  else if (f.type == PARLEY__FRAME_TYPE__FRAME_ERROR)
    pl_mqttgw__error(g, frame, o);
  else if (f.type == PARLEY__FRAME_TYPE__FRAME_SEND_ACK) {
    if (!pl_mqttgw__settle(g, json_string_value(json_object_get(o, "id")), 0) && g->state == PL_MQTTGW_READY)
      pl_mqttgw__deliver(g, f.type, frame); /* a QoS 0 send's, or one sent through parley/request */
  } else if (g->state == PL_MQTTGW_READY)
    pl_mqttgw__deliver(g, f.type, frame);
  json_decref(o);
}

void pl_mqttgw_closing(pl_mqttgw *g) {
  if (g->said_bye || g->state != PL_MQTTGW_READY)
    return;
  /* The session closes without a word when a newer connection took the
   * device (or it was revoked); after an Error it closes for that. */
  if (g->version == PL_MQTT_V5) {
    uint8_t why = g->last_error ? pl_mqttgw__reason_of(g->last_error) : PL_MQTT_RC_SESSION_TAKEN_OVER;
    pl_mqttgw__write(g, &(pl_mqtt_pkt){.type = PL_MQTT_DISCONNECT, .reason = why});
  }
  g->said_bye = 1;
  g->state = PL_MQTTGW_DONE;
}
