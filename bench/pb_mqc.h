/* pb_mqc: one MQTT 3.1.1 client connection of the load generator.
 *
 * Packets are encoded and decoded by the server's pure codec (src/mqtt/
 * pl_mqtt), so the bench speaks exactly the protocol the gateway checks.
 * Starting a connection opens a non-blocking socket (from a source address
 * chosen by its index, like pb_conn) and pipelines CONNECT and, if a topic
 * filter is given, SUBSCRIBE at QoS 1; the owner is told once CONNACK (and
 * SUBACK) accepted it. A QoS 1 PUBLISH that arrives is PUBACKed at once, as
 * every client library does, then handed to the owner. What is queued is
 * written once per loop iteration. No reconnects: a lost connection is an
 * error of the run (on_close). */
#ifndef PB_MQC_H
#define PB_MQC_H

#include <netinet/in.h>
#include <stdint.h>

#include "common/pl_buf.h"
#include "mqtt/pl_mqtt.h"
#include "pb_loop.h"

typedef struct pb_mqc pb_mqc;

typedef struct pb_mqc_cbs {
  void (*on_ready)(pb_mqc *m);
  void (*on_publish)(pb_mqc *m, const pl_mqtt_pkt *pk);
  void (*on_puback)(pb_mqc *m, uint16_t id, uint8_t reason);
  void (*on_close)(pb_mqc *m, const char *why);
} pb_mqc_cbs;

/* What the connection says in CONNECT. user/pass may be NULL (none). */
typedef struct pb_mqc_login {
  const char *client_id, *user, *pass;
  const char *sub; /* topic filter to subscribe to at QoS 1, or NULL */
  int persist;     /* clean session 0: the broker keeps the session */
} pb_mqc_login;

enum { PB_MQ_IDLE, PB_MQ_CONNECTING, PB_MQ_LOGIN, PB_MQ_READY };

struct pb_mqc {
  pb_io io; /* first */
  pb_defer flush;
  pb_loop *loop;
  const struct sockaddr_in *server;
  uint32_t src; /* source address, host order; 0: the kernel's choice */
  const pb_mqc_cbs *cbs;
  void *ud;
  uint8_t state, want_suback;
  pl_bytes in, out;
  size_t out_off;
};

void pb_mqc_init(pb_mqc *m, pb_loop *l, const struct sockaddr_in *server, uint32_t src, const pb_mqc_cbs *cbs,
                 void *ud);
/* Connects and queues CONNECT (and SUBSCRIBE). Returns 0 or -1 (errno). */
int pb_mqc_start(pb_mqc *m, const pb_mqc_login *login);
/* Queues a PUBLISH (QoS 1 when id != 0, else QoS 0). */
void pb_mqc_publish(pb_mqc *m, const char *topic, const void *payload, size_t n, uint16_t id);
/* Closes the connection (DISCONNECT first when ready) without calling on_close. */
void pb_mqc_close(pb_mqc *m);

#endif
