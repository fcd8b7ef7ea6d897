/* pl_mqttgw: the input side, packets from an MQTT client into the
 * session's messages (see pl_mqttgw.h). */
#include "pl_mqttgw.h"

#include <sodium.h>
#include <string.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "../mqtt/pl_mqtt_map.h"
#include "../web/pl_json.h"
#include "pl_mqttgw_int.h"

/* A CONNECT whose user name is this logs in with the session token in its
 * password (Resume) instead of a password (Login). */
#define PL_MQTTGW_TOKEN_USER "$token"

static void pl_mqttgw__on_resume(pl_flusher *f) {
  pl_mqttgw *g = (pl_mqttgw *)((char *)f - offsetof(pl_mqttgw, resume));
  if (g->state == PL_MQTTGW_READY)
    g->c->ops->resume(g->c);
}

pl_mqttgw *pl_mqttgw_new(pl_conn *c, const pl_mqttgw_io *io, void *ud, uint32_t max_packet) {
  pl_mqttgw *g = pl_calloc(1, sizeof *g);
  g->c = c;
  g->io = io;
  g->ud = ud;
  /* JSON carries a body in base64 (4/3) and names every field */
  g->max_packet = max_packet ? max_packet : c->max_frame * 2 + 4096;
  g->version = PL_MQTT_V311; /* until CONNECT says */
  g->resume.fn = pl_mqttgw__on_resume;
  return g;
}

void pl_mqttgw_free(pl_mqttgw *g) {
  if (!g)
    return;
  for (size_t i = 0; i < g->nsends; i++)
    pl_free(g->sends[i].ref);
  pl_free(g->sends);
  pl_free(g->outs);
  pl_bytes_free(&g->in);
  pl_free(g);
}

void pl_mqttgw_push(pl_mqttgw *g, const uint8_t *p, size_t n) {
  if (g->state != PL_MQTTGW_DONE && n)
    pl_bytes_append(&g->in, p, n);
}

size_t pl_mqttgw_buffered(const pl_mqttgw *g) { return g->in.cap; }

/* ---- answers --------------------------------------------------------- */

void pl_mqttgw__write(pl_mqttgw *g, const pl_mqtt_pkt *pk) {
  pl_bytes out = {0};
  if (pl_mqtt_encode(pk, g->version, NULL, 0, &out) == PL_OK)
    g->io->write(g->ud, out.p, out.len);
  pl_bytes_free(&out);
}

void pl_mqttgw__bye(pl_mqttgw *g, uint8_t reason) {
  if (g->version == PL_MQTT_V5 && !g->said_bye && g->state == PL_MQTTGW_READY)
    pl_mqttgw__write(g, &(pl_mqtt_pkt){.type = PL_MQTT_DISCONNECT, .reason = reason});
  g->said_bye = 1;
  g->state = PL_MQTTGW_DONE;
  pl_bytes_free(&g->in);
  pl_conn_close(g->c);
}

void pl_mqttgw__refuse(pl_mqttgw *g, uint8_t rc5, uint8_t rc3) {
  pl_mqttgw__write(g,
                   &(pl_mqtt_pkt){.type = PL_MQTT_CONNACK, .reason = g->version == PL_MQTT_V5 ? rc5 : rc3});
  g->said_bye = 1;
  g->state = PL_MQTTGW_DONE;
  pl_bytes_free(&g->in);
  pl_conn_close(g->c);
}

/* A packet the rules refuse once connected: MQTT 5 is told why, 3.1.1 is
 * closed (it has no way to say it). */
static int pl_mqttgw__violation(pl_mqttgw *g, uint8_t reason, const char *what) {
  pl_debug("conn %llu: MQTT: %s (reason 0x%02x)", (unsigned long long)g->c->id, what, reason);
  pl_mqttgw__bye(g, reason);
  return PL_MQTTGW_PAUSE;
}

/* ---- requests into the session -------------------------------------- */

static void pl_mqttgw__json_release(ProtobufCMessage *msg, void *ud) {
  (void)msg;
  pl_json_msg_free(ud);
}

static void pl_mqttgw__json_take(uint8_t type, ProtobufCMessage *msg, pl_json_msg *owner, void *ud) {
  *(pl_conn_msg *)ud =
      (pl_conn_msg){.type = type, .msg = msg, .release = pl_mqttgw__json_release, .ud = owner};
}

/* The decoded request m to the session, if its native frame would fit. */
static int pl_mqttgw__give(pl_mqttgw *g, pl_conn_msg *m) {
  pl_conn *c = g->c;
  if (1 + protobuf_c_message_get_packed_size(m->msg) > c->max_frame) { /* as its native frame would be */
    m->release(m->msg, m->ud);
    return -1;
  }
  return c->h->on_message(c, m, c->h->ud);
}

/* The hot path (sends, acks, requests): obj's strings came through
 * pl_json_load (the payload) or the codec's UTF-8 check (topics,
 * properties), so it is decoded as it is, without a text round trip. */
int pl_mqttgw__request(pl_mqttgw *g, json_t *obj) {
  char why[160] = "";
  pl_conn_msg m = {0};
  pl_err e = obj ? pl_json_obj_to_msg(obj, pl_mqttgw__json_take, &m, why, sizeof why) : PL_ERR_BAD_FRAME;
  json_decref(obj);
  if (e != PL_OK) {
    pl_debug("conn %llu: MQTT request refused: %s", (unsigned long long)g->c->id, why);
    return -1;
  }
  return pl_mqttgw__give(g, &m);
}

/* CONNECT's fields are MQTT strings and binary data no JSON parser saw (a
 * password may be any bytes): they go through the JSON text, parsed as a
 * client's text would be, so what a JSON client could not send is refused. */
static int pl_mqttgw__request_text(pl_mqttgw *g, json_t *obj) {
  char *text = json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(obj);
  if (!text)
    return -1;
  char why[160] = "";
  pl_conn_msg m = {0};
  pl_err e = pl_json_to_msgs(text, strlen(text), 0, pl_mqttgw__json_take, &m, why, sizeof why);
  free(text); /* jansson's allocation */
  if (e != PL_OK) {
    pl_debug("conn %llu: MQTT request refused: %s", (unsigned long long)g->c->id, why);
    return -1;
  }
  return pl_mqttgw__give(g, &m);
}

/* ---- CONNECT ---------------------------------------------------------- */

static json_t *pl_mqttgw__jstr(pl_mqtt_str s) { return json_stringn_nocheck((const char *)s.p, s.n); }

/* Hello, then Login (or Resume): the CONNACK waits for AuthOk. */
static int pl_mqttgw__login(pl_mqttgw *g, const pl_mqtt_pkt *pk) {
  json_t *hello = json_pack("{s:s, s:i, s:s, s:s}", "type", "hello", "version", 1, "kind", "KIND_IOT",
                            "client_name", "mqtt");
  if (pl_mqttgw__request_text(g, hello) < 0 || g->state == PL_MQTTGW_DONE)
    return PL_MQTTGW_PAUSE;
  json_t *auth;
  if (pk->username.n == strlen(PL_MQTTGW_TOKEN_USER) &&
      !memcmp(pk->username.p, PL_MQTTGW_TOKEN_USER, pk->username.n))
    auth = json_pack("{s:s, s:o}", "type", "resume", "token", pl_mqttgw__jstr(pk->password));
  else
    auth = json_pack("{s:s, s:o, s:o, s:o}", "type", "login", "user", pl_mqttgw__jstr(pk->username),
                     "password", pl_mqttgw__jstr(pk->password), "device", pl_mqttgw__jstr(pk->client_id));
  g->state = PL_MQTTGW_AUTHING;
  if (pl_mqttgw__request_text(g, auth) < 0)
    pl_mqttgw__refuse(g, PL_MQTT_RC_BAD_CREDENTIALS, PL_MQTT3_BAD_CREDENTIALS);
  return PL_MQTTGW_PAUSE; /* until AuthOk or its Error */
}

static int pl_mqttgw__connect(pl_mqttgw *g, const uint8_t *p, size_t n) {
  pl_mqtt_pkt pk;
  uint8_t why;
  pl_err e = pl_mqtt_decode(p, n, PL_MQTT_V311, &pk, &why);
  if (pk.type != PL_MQTT_CONNECT) { /* [MQTT-3.1.0-1]: the first packet is a CONNECT */
    g->state = PL_MQTTGW_DONE;
    pl_conn_close(g->c);
    return PL_MQTTGW_PAUSE;
  }
  g->version = pk.version == PL_MQTT_V5 ? PL_MQTT_V5 : PL_MQTT_V311;
  if (e == PL_ERR_UNSUPPORTED_VERSION) {
    /* a level we do not speak: answered as 3.1.1 says [MQTT-3.1.2-2], the common ground */
    g->version = PL_MQTT_V311;
    pl_mqttgw__refuse(g, PL_MQTT_RC_UNSUPPORTED_VERSION, PL_MQTT3_BAD_VERSION);
    return PL_MQTTGW_PAUSE;
  }
  if (e != PL_OK) {
    if (g->version == PL_MQTT_V5)
      pl_mqttgw__refuse(g, why, 0);
    else {
      g->state = PL_MQTTGW_DONE;
      pl_conn_close(g->c);
    }
    return PL_MQTTGW_PAUSE;
  }
  g->clean = (pk.cflags & PL_MQTT_CF_CLEAN) != 0;
  g->client_max = PL_MQTT_HAS(&pk.props, PL_MQTT_P_MAX_PACKET) ? pk.props.u32[PL_MQTT_P_MAX_PACKET] : 0;
  /* [MQTT-3.1.2-24]: one and a half keep alive periods of silence (set at CONNACK) */
  g->keepalive_ms = (uint32_t)pk.keepalive * 1500u;
  if (PL_MQTT_HAS(&pk.props, PL_MQTT_P_AUTH_METHOD)) {
    pl_mqttgw__refuse(g, PL_MQTT_RC_BAD_AUTH_METHOD, PL_MQTT3_NOT_AUTHORIZED);
    return PL_MQTTGW_PAUSE;
  }
  if (!pk.client_id.n) { /* the client id names the device: one is needed */
    pl_mqttgw__refuse(g, PL_MQTT_RC_CLIENT_ID_INVALID, PL_MQTT3_ID_REJECTED);
    return PL_MQTTGW_PAUSE;
  }
  if (!(pk.cflags & PL_MQTT_CF_USERNAME) || !(pk.cflags & PL_MQTT_CF_PASSWORD)) {
    pl_mqttgw__refuse(g, PL_MQTT_RC_BAD_CREDENTIALS, PL_MQTT3_BAD_CREDENTIALS);
    return PL_MQTTGW_PAUSE;
  }
  return pl_mqttgw__login(g, &pk);
}

/* ---- PUBLISH ---------------------------------------------------------- */

/* The answer to a QoS 1 or 2 PUBLISH: PUBACK or PUBREC. */
static void pl_mqttgw__ack_publish(pl_mqttgw *g, uint8_t qos, uint16_t pid, uint8_t reason) {
  if (qos)
    pl_mqttgw__write(
        g, &(pl_mqtt_pkt){.type = qos == 2 ? PL_MQTT_PUBREC : PL_MQTT_PUBACK, .id = pid, .reason = reason});
}

/* The client's message id: the payload's "id", or an MQTT 5 user property "id". */
static json_t *pl_mqttgw__payload(const pl_mqtt_pkt *pk, int need_id) {
  json_error_t err;
  json_t *o = pk->payload.n ? pl_json_load((const char *)pk->payload.p, pk->payload.n, 0, &err) : NULL;
  if (o && !json_is_object(o)) {
    json_decref(o);
    o = NULL;
  }
  size_t it = 0;
  pl_mqtt_str k, v;
  while (need_id && pl_mqtt_user_next(&pk->props, &it, &k, &v)) {
    if (k.n != 2 || memcmp(k.p, "id", 2))
      continue;
    if (!o) { /* then the payload is the text itself */
      o = json_object();
      json_object_set_new(o, "text", json_stringn((const char *)pk->payload.p, pk->payload.n));
    }
    json_object_set_new(o, "id", pl_mqttgw__jstr(v));
  }
  return o;
}

/* "text" (what a person reads) becomes the frame's "body" (base64). */
static void pl_mqttgw__text_to_body(json_t *o) {
  json_t *t = json_object_get(o, "text");
  if (!json_is_string(t))
    return;
  size_t n = json_string_length(t);
  char *b64 = pl_malloc(sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL));
  sodium_bin2base64(b64, sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL),
                    (const unsigned char *)json_string_value(t), n, sodium_base64_VARIANT_ORIGINAL);
  json_object_set_new(o, "body", json_string(b64));
  json_object_del(o, "text");
  pl_free(b64);
}

/* The JSON frame a PUBLISH to route r stands for (NULL: the payload is not one). */
static json_t *pl_mqttgw__frame_of(const pl_mqtt_pkt *pk, const pl_mqtt_route *r) {
  static const char *const types[] = {[PL_MQTT_ROUTE_SEND] = "send",
                                      [PL_MQTT_ROUTE_READ] = "mark_read",
                                      [PL_MQTT_ROUTE_TYPING] = "typing",
                                      [PL_MQTT_ROUTE_PRESENCE] = "presence_subscribe"};
  json_t *o = pl_mqttgw__payload(pk, r->kind == PL_MQTT_ROUTE_SEND);
  if (!o || r->kind == PL_MQTT_ROUTE_REQUEST)
    return o;
  json_object_set_new(o, "type", json_string(types[r->kind]));
  if (r->kind == PL_MQTT_ROUTE_SEND || r->kind == PL_MQTT_ROUTE_READ || r->kind == PL_MQTT_ROUTE_TYPING) {
    const char *key = r->group ? "group" : r->kind == PL_MQTT_ROUTE_READ ? "peer" : "to";
    json_object_set_new(o, key, pl_mqttgw__jstr((pl_mqtt_str){r->target, r->target_n}));
  }
  if (r->kind == PL_MQTT_ROUTE_SEND) {
    pl_mqttgw__text_to_body(o);
    if (!json_is_string(json_object_get(o, "id"))) {
      json_decref(o);
      return NULL;
    }
  }
  return o;
}

/* Remembers a QoS 1 or 2 Send until its SendAck (or Error) names its id. */
static void pl_mqttgw__await(pl_mqttgw *g, const pl_mqtt_pkt *pk, const char *ref) {
  if (g->nsends == g->csends) {
    g->csends = g->csends ? g->csends * 2 : 8;
    g->sends = pl_realloc(g->sends, g->csends * sizeof *g->sends);
  }
  g->sends[g->nsends++] = (pl_mqttgw_send){.pid = pk->id, .qos = pk->qos, .ref = pl_strdup(ref)};
}

/* Is a QoS 2 PUBLISH of this packet id already with the session (a DUP)? */
static int pl_mqttgw__in_flight(const pl_mqttgw *g, uint16_t pid) {
  for (size_t i = 0; i < g->nsends; i++)
    if (g->sends[i].pid == pid && g->sends[i].qos == 2)
      return 1;
  return 0;
}

static int pl_mqttgw__publish(pl_mqttgw *g, const pl_mqtt_pkt *pk) {
  if (pk->retain) /* CONNACK said Retain Available 0 [MQTT-3.3.1-13] */
    return pl_mqttgw__violation(g, PL_MQTT_RC_RETAIN_NOT_SUPPORTED, "retained PUBLISH");
  if (PL_MQTT_HAS(&pk->props, PL_MQTT_P_TOPIC_ALIAS)) /* Topic Alias Maximum is 0 */
    return pl_mqttgw__violation(g, 0x94, "topic alias");
  pl_mqtt_route r;
  uint8_t rc = pl_mqtt_route_parse(pk->topic.p, pk->topic.n, &r);
  if (rc && g->version != PL_MQTT_V5)
    return pl_mqttgw__violation(g, rc, "PUBLISH outside the topic scheme");
  if (pk->qos == 2 && pl_mqttgw__in_flight(g, pk->id))
    return PL_MQTTGW_MORE; /* the PUBREC follows the first one's commit */
  json_t *o = rc ? NULL : pl_mqttgw__frame_of(pk, &r);
  if (!rc && !o)
    rc = PL_MQTT_RC_PAYLOAD_FORMAT_INVALID;
  if (rc && g->version != PL_MQTT_V5)
    return pl_mqttgw__violation(g, rc, "PUBLISH payload is not the topic's JSON");
  if (rc) {
    pl_mqttgw__ack_publish(g, pk->qos, pk->id, rc);
    return PL_MQTTGW_MORE;
  }
  int awaited = r.kind == PL_MQTT_ROUTE_SEND && pk->qos;
  if (awaited)
    pl_mqttgw__await(g, pk, json_string_value(json_object_get(o, "id")));
  int pause = pl_mqttgw__request(g, o);
  if (pause < 0) {
    if (awaited)
      pl_free(g->sends[--g->nsends].ref);
    if (g->version != PL_MQTT_V5)
      return pl_mqttgw__violation(g, PL_MQTT_RC_PAYLOAD_FORMAT_INVALID, "PUBLISH payload is no request");
    pl_mqttgw__ack_publish(g, pk->qos, pk->id, PL_MQTT_RC_PAYLOAD_FORMAT_INVALID);
    return PL_MQTTGW_MORE;
  }
  if (!awaited) /* read state, typing, presence: taken at once */
    pl_mqttgw__ack_publish(g, pk->qos, pk->id, 0);
  return pause ? PL_MQTTGW_PAUSE : PL_MQTTGW_MORE;
}

/* ---- the rest --------------------------------------------------------- */

/* A delivery's PUBACK: the Ack covers every delivery before the first one
 * still unacknowledged (the queue's qids increase in the order sent). */
static void pl_mqttgw__puback(pl_mqttgw *g, uint16_t pid) {
  size_t i = 0, done = 0;
  while (i < g->nouts && g->outs[i].pid != pid)
    i++;
  if (i == g->nouts)
    return; /* not ours, or acknowledged before */
  g->outs[i].acked = 1;
  uint64_t upto = 0;
  while (done < g->nouts && g->outs[done].acked)
    upto = g->outs[done++].qid;
  if (!done)
    return;
  memmove(g->outs, g->outs + done, (g->nouts - done) * sizeof *g->outs);
  g->nouts -= done;
  if (upto)
    pl_mqttgw__request(g, json_pack("{s:s, s:I}", "type", "ack", "upto", (json_int_t)upto));
}

static void pl_mqttgw__subscribe(pl_mqttgw *g, const pl_mqtt_pkt *pk) {
  uint8_t *rcs = pl_malloc(pk->count ? pk->count : 1);
  size_t it = 0, i = 0;
  pl_mqtt_sub s;
  while (pl_mqtt_sub_next(pk, &it, &s)) {
    uint8_t rc = pl_mqtt_filter_check(s.filter.p, s.filter.n);
    if (pk->type == PL_MQTT_UNSUBSCRIBE)
      rc = rc ? PL_MQTT_RC_NO_SUBSCRIPTION_EXISTED : 0;
    else if (rc)
      rc = g->version == PL_MQTT_V5 ? rc : 0x80;
    else /* deliveries are QoS 1 (what a QoS 0 subscriber is sent too: protocol.md) */
      rc = (s.opts & 3) ? 1 : 0;
    rcs[i++] = rc;
  }
  pl_mqtt_pkt a = {.type = pk->type == PL_MQTT_SUBSCRIBE ? PL_MQTT_SUBACK : PL_MQTT_UNSUBACK, .id = pk->id};
  a.list = (pl_mqtt_str){rcs, i};
  pl_mqttgw__write(g, &a);
  pl_free(rcs);
}

static int pl_mqttgw__packet(pl_mqttgw *g, const pl_mqtt_pkt *pk) {
  switch (pk->type) {
  case PL_MQTT_PUBLISH: return pl_mqttgw__publish(g, pk);
  case PL_MQTT_PUBACK: pl_mqttgw__puback(g, pk->id); break;
  case PL_MQTT_PUBREL: pl_mqttgw__write(g, &(pl_mqtt_pkt){.type = PL_MQTT_PUBCOMP, .id = pk->id}); break;
  case PL_MQTT_PUBREC: /* deliveries are never QoS 2 */
  case PL_MQTT_PUBCOMP: break;
  case PL_MQTT_SUBSCRIBE:
  case PL_MQTT_UNSUBSCRIBE: pl_mqttgw__subscribe(g, pk); break;
  case PL_MQTT_PINGREQ: pl_mqttgw__write(g, &(pl_mqtt_pkt){.type = PL_MQTT_PINGRESP}); break;
  case PL_MQTT_DISCONNECT: /* the device stays signed in: only this connection ends */
    g->said_bye = 1;
    g->state = PL_MQTTGW_DONE;
    pl_conn_close(g->c);
    return PL_MQTTGW_PAUSE;
  case PL_MQTT_CONNECT: return pl_mqttgw__violation(g, PL_MQTT_RC_PROTOCOL_ERROR, "a second CONNECT");
  default: return pl_mqttgw__violation(g, PL_MQTT_RC_PROTOCOL_ERROR, "a packet only a server sends");
  }
  return PL_MQTTGW_MORE;
}

/* One whole packet p[0..n). */
static int pl_mqttgw__one(pl_mqttgw *g, const uint8_t *p, size_t n) {
  if (g->state == PL_MQTTGW_WAIT_CONNECT)
    return pl_mqttgw__connect(g, p, n);
  pl_mqtt_pkt pk;
  uint8_t why;
  if (pl_mqtt_decode(p, n, g->version, &pk, &why) != PL_OK)
    return pl_mqttgw__violation(g, why, "malformed packet");
  return pl_mqttgw__packet(g, &pk);
}

int pl_mqttgw_run(pl_mqttgw *g) {
  size_t off = 0;
  int r = PL_MQTTGW_MORE;
  while (r == PL_MQTTGW_MORE && g->state != PL_MQTTGW_DONE) {
    if (g->state == PL_MQTTGW_AUTHING) {
      r = PL_MQTTGW_PAUSE;
      break;
    }
    if (off == g->in.len)
      break;                      /* all handled (the buffer may be none at all) */
    if (pl_conn_out_full(g->c)) { /* more answers would only pile up */
      r = PL_MQTTGW_HOLD;
      break;
    }
    uint8_t type, flags, why;
    size_t hl, rl;
    pl_err e = pl_mqtt_header(g->in.p + off, g->in.len - off, g->max_packet, &type, &flags, &hl, &rl, &why);
    if (e == PL_ERR_AGAIN || (e == PL_OK && hl + rl > g->in.len - off))
      break;
    if (e != PL_OK) { /* a bad length or type, or over the maximum packet size */
      pl_mqttgw__violation(g, why, e == PL_ERR_FRAME_TOO_LARGE ? "packet too large" : "bad fixed header");
      return PL_MQTTGW_PAUSE;
    }
    r = pl_mqttgw__one(g, g->in.p + off, hl + rl);
    off += hl + rl;
  }
  if (g->state == PL_MQTTGW_DONE || off >= g->in.len)
    pl_bytes_free(&g->in); /* idle connections own no input buffer */
  else
    pl_bytes_consume(&g->in, off);
  return g->state == PL_MQTTGW_DONE ? PL_MQTTGW_PAUSE : r;
}
