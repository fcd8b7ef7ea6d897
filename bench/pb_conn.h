/* pb_conn: one native-protocol client connection of the load generator.
 *
 * A connection belongs to a user of the pool (pb_users, by index). Starting
 * it opens a non-blocking socket from a source address chosen by the index
 * (127.0.0.2 + index / per_addr, so no address runs out of ports), and
 * pipelines Hello with Resume (cached token), or Register for a user without
 * one. When the server refuses, it falls back: Resume -> Login (bad token)
 * -> Register (unknown user) -> Login (user exists), and caches the new
 * token. After AuthOk the owner gets every frame except Pong; the connection
 * itself keeps the heartbeat (a Ping when nothing was sent for half the
 * interval from Welcome) and acknowledges Messages cumulatively, batched:
 * after ack_batch messages, else within ack_delay_us.
 *
 * The shared state of a worker's connections is a pb_net: the loop, the
 * server address, the connect queue (at most max_handshakes connections in
 * Hello/auth at once; 0 = no limit), and counters. */
#ifndef PB_CONN_H
#define PB_CONN_H

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdint.h>

#include "common/pl_buf.h"
#include "pb_loop.h"
#include "pb_users.h"
#include "proto/pl_frame.h"

typedef struct pb_conn pb_conn;

typedef struct pb_conn_cbs {
  /* Authenticated (AuthOk received). */
  void (*on_ready)(pb_conn *c);
  /* A frame after AuthOk (m is freed after the call). */
  void (*on_frame)(pb_conn *c, uint8_t type, const ProtobufCMessage *m);
  /* Closed by the server or an error (never by pb_conn_drop). Before
   * AuthOk this is called only once the retries are used up. */
  void (*on_close)(pb_conn *c, const char *why);
} pb_conn_cbs;

enum { PB_C_IDLE, PB_C_QUEUED, PB_C_CONNECTING, PB_C_AUTH, PB_C_READY };

typedef struct pb_net {
  pb_loop *loop;
  struct sockaddr_in server;
  uint32_t src_base;       /* first source address (host order); 0: let the kernel choose */
  uint32_t per_addr;       /* connections per source address */
  uint32_t ack_batch;      /* Ack after this many unacknowledged Messages */
  uint32_t ack_delay_us;   /* ... or this long after the first of them */
  uint32_t max_handshakes; /* 0: start every queued connection at once */
  uint32_t max_attempts;   /* connection attempts before on_close is called */
  pb_users *users;
  /* counters */
  uint64_t ready, failed, retries, relogins, registered, lost_after_ready;
  /* private */
  uint32_t handshaking;
  int kicking;
  pb_conn *queue, *queue_tail, *open, *acks;
  pb_timer hb_timer, ack_timer;
  uint8_t *scratch;
  SSL_CTX *tls; /* connect over TLS (pb_net_tls); NULL: plain TCP */
} pb_net;

struct pb_conn {
  pb_io io; /* first */
  pb_defer flush;
  pb_net *net;
  const pb_conn_cbs *cbs;
  void *ud;      /* the owner's */
  uint32_t uidx; /* user index */
  uint8_t state, step, auth_tries, attempts, ack_queued;
  uint32_t gen; /* bumped by every drop: stale input is not parsed */
  uint32_t hb_ms, unacked;
  uint64_t receipts; /* Receipt and ReadSync frames received (acked like messages) */
  uint64_t last_tx_us, t_start_us, t_ready_us; /* t_start: the (last) connect began */
  uint64_t max_qid, acked_qid;
  pl_bytes in, out;
  size_t out_off;
  pb_conn *prev, *next; /* net->open */
  pb_conn *qnext;       /* net->queue */
  pb_conn *ack_next;    /* net->acks */
  SSL *ssl;             /* with TLS: its state (the handshake runs while CONNECTING) */
};

void pb_net_init(pb_net *n, pb_loop *l, const struct sockaddr_in *server, pb_users *users);
/* Connections made from now on use TLS (the server's certificate is not
 * checked: the bench measures, it does not trust). */
void pb_net_tls(pb_net *n);
/* Stops the timers; connections must have been dropped. */
void pb_net_free(pb_net *n);

void pb_conn_init(pb_conn *c, pb_net *n, uint32_t uidx, const pb_conn_cbs *cbs, void *ud);
/* Queues c for connecting and authenticating (c must be idle). */
void pb_conn_start(pb_conn *c);
/* Queues a frame; it is written at the end of the loop iteration. Returns -1
 * if c is not connected. */
int pb_conn_send(pb_conn *c, uint8_t type, const ProtobufCMessage *m);
/* Sends Ack{upto = highest qid received} now, if anything is unacknowledged. */
void pb_conn_ack(pb_conn *c);
/* Closes c without calling on_close (rst: abortive close, no TIME_WAIT) and
 * frees its buffers; c may be started again. */
void pb_conn_drop(pb_conn *c, int rst);
/* Bytes queued and not yet written. */
size_t pb_conn_pending(const pb_conn *c);

#endif
