/* pl_mqttgw: MQTT 3.1.1 and 5.0 clients as devices (protocol.md, "MQTT").
 *
 * One gateway per connection sits between a byte transport (TCP, TLS, or
 * WebSocket binary messages: pl_tcp and pl_http own the socket) and the
 * session, which sees an ordinary pl_conn: what the client sends becomes
 * the decoded messages of the session's entry point (on_message: Hello and
 * Login for a CONNECT, Send for a PUBLISH, Ack for a PUBACK, ...), and
 * every native frame the session writes is turned into MQTT (AuthOk into
 * CONNACK, SendAck into PUBACK, Message into a QoS 1 PUBLISH, ...). The
 * codec (pl_mqtt) and the topic scheme (pl_mqtt_map) are pure; this file
 * keeps the connection's MQTT state: what is in flight each way, and the
 * version spoken. */
#ifndef PL_MQTTGW_H
#define PL_MQTTGW_H

#include <stddef.h>
#include <stdint.h>

#include "pl_conn.h"

typedef struct pl_mqttgw pl_mqttgw;

/* The transport under a gateway. */
typedef struct pl_mqttgw_io {
  /* MQTT bytes to the peer (copied), out with the pass's other output. */
  void (*write)(void *ud, const uint8_t *p, size_t n);
} pl_mqttgw_io;

/* A gateway for c (its ops are the transport's, its handler the
 * session's). max_packet: the largest packet taken from the client, and
 * announced to MQTT 5 clients (0: derived from c->max_frame). */
pl_mqttgw *pl_mqttgw_new(pl_conn *c, const pl_mqttgw_io *io, void *ud, uint32_t max_packet);
void pl_mqttgw_free(pl_mqttgw *g);

/* What pl_mqttgw_run asks of the transport. */
enum {
  PL_MQTTGW_MORE = 0,  /* everything whole was handled: read on */
  PL_MQTTGW_PAUSE = 1, /* stop reading until c->ops->resume (the session's pause, or a login) */
  PL_MQTTGW_HOLD = 2,  /* the output is over its mark: stop reading until it drains */
};

/* Bytes from the client, kept until run handles them. */
void pl_mqttgw_push(pl_mqttgw *g, const uint8_t *p, size_t n);
/* Handles the whole packets waiting; see the enum above. A packet the
 * rules refuse is answered (CONNACK, DISCONNECT with its reason code for
 * MQTT 5) and the connection closed. */
int pl_mqttgw_run(pl_mqttgw *g);
/* Bytes waiting (for the memory bound). */
size_t pl_mqttgw_buffered(const pl_mqttgw *g);
/* Bytes of queue frames held back by the client's Receive Maximum. */
size_t pl_mqttgw_held_bytes(const pl_mqttgw *g);

/* A native frame the session wrote to c: translated and written. */
void pl_mqttgw_output(pl_mqttgw *g, const pl_buf *frame);
/* The connection is closing (called by the transport's close): an MQTT 5
 * client is told why with a DISCONNECT when nothing has said so yet (a
 * newer connection of its client id took the device: 0x8E). */
void pl_mqttgw_closing(pl_mqttgw *g);

#endif
