/* pl_mqttgw's internals, shared by its input side (pl_mqttgw.c: packets
 * from the client into session messages) and its output side
 * (pl_mqttgw_out.c: the session's frames into packets). */
#ifndef PL_MQTTGW_INT_H
#define PL_MQTTGW_INT_H

#include <jansson.h>

#include "../mqtt/pl_mqtt.h"
#include "pl_mqttgw.h"

typedef enum pl_mqttgw_state {
  PL_MQTTGW_WAIT_CONNECT, /* nothing but a CONNECT may come */
  PL_MQTTGW_AUTHING,      /* Hello and Login given to the session; no CONNACK yet */
  PL_MQTTGW_READY,        /* CONNACK sent: the device's session */
  PL_MQTTGW_DONE,         /* refused or said goodbye: nothing more is read */
} pl_mqttgw_state;

/* A PUBLISH from the client that awaits its SendAck (QoS 1 and 2). */
typedef struct pl_mqttgw_send {
  uint16_t pid;
  uint8_t qos;
  char *ref; /* the Send.id */
} pl_mqttgw_send;

/* A QoS 1 delivery that awaits its PUBACK. */
typedef struct pl_mqttgw_out {
  uint16_t pid;
  uint8_t acked;
  uint64_t qid;
} pl_mqttgw_out;

struct pl_mqttgw {
  pl_conn *c;
  const pl_mqttgw_io *io;
  void *ud;
  pl_flusher resume;               /* input goes on after CONNACK, once the session's call is over */
  pl_bytes in;                     /* bytes from the client not handled yet */
  uint32_t max_packet, client_max; /* ours, and the client's (0: none) */
  uint32_t keepalive_ms;           /* the idle timeout once connected (0: none) */
  uint8_t state, version, clean, said_bye;
  pl_err last_error; /* the last Error frame's code, for the DISCONNECT's reason */
  uint16_t next_pid;
  pl_mqttgw_send *sends;
  size_t nsends, csends;
  pl_mqttgw_out *outs; /* in the order sent (qids increase) */
  size_t nouts, couts;
  /* Receive Maximum [MQTT-3.3.4-9]: at most recv_max QoS 1 deliveries await
   * their PUBACK (unacked); queue frames past it wait in held, in order, as
   * references, until PUBACKs make room. 3.1.1 has no such property: there
   * the bound is the packet id space, 65,535. */
  uint32_t recv_max, unacked;
  pl_buf **held;
  size_t hhead, nheld, cheld; /* a ring: held[(hhead + i) % cheld], i < nheld */
  size_t held_bytes;
};

/* Encodes pk at the connection's version and writes it. */
void pl_mqttgw__write(pl_mqttgw *g, const pl_mqtt_pkt *pk);
/* An MQTT 5 DISCONNECT with reason (nothing for 3.1.1), then the close. */
void pl_mqttgw__bye(pl_mqttgw *g, uint8_t reason);
/* A CONNACK refusing the connection (rc5 for MQTT 5, rc3 for 3.1.1), then the close. */
void pl_mqttgw__refuse(pl_mqttgw *g, uint8_t rc5, uint8_t rc3);
/* Gives the session the request obj stands for (a JSON frame; consumed).
 * Returns the session's pause, or -1 when obj is no request (nothing given). */
int pl_mqttgw__request(pl_mqttgw *g, json_t *obj);
/* Delivers held queue frames while the client's Receive Maximum has room. */
void pl_mqttgw__release(pl_mqttgw *g);
/* The MQTT 5 reason code for a wire error (a refused Send, a closed session). */
uint8_t pl_mqttgw__reason_of(pl_err err);

#endif
