/* foclient: a client that fails over, for the cluster's fault tests.
 *
 * It behaves as a careful app does when its server dies: a connection that
 * closes, or says nothing for silence_ms (the client's heartbeat rule,
 * protocol.md §8.1), is given up and the client resumes its token on the
 * next node of its list; a Send without an answer, or answered with a
 * retryable error, is sent again with the same id until it is acked. Every
 * try, ack and shown Message goes to a ledger (ledger.h), which then says
 * whether anything was lost, shown twice or misordered.
 *
 * One thread drives every client (testlib's CHECK is not thread-safe): each
 * call reads and records whatever the server sent meanwhile, and acks it. */
#ifndef FOCLIENT_H
#define FOCLIENT_H

#include <stdint.h>

#include "ledger.h"

#define FC_NODES 4

typedef struct fc_client {
  char user[32];
  char device[48]; /* the ledger's name of this device: "user/phone" */
  char token[128];
  int fd;   /* -1 while it has no node */
  int node; /* index in ports of the node it is (or was last) on */
  int ports[FC_NODES];
  int nports;
  int silence_ms; /* no answer for this long: the node is taken for dead */
  int keep_stale; /* a node given up for silence: keep its socket in stale_fd */
  int stale_fd;   /* (the test checks that node closes it by itself) */
  lg_ledger *lg;
  uint64_t upto; /* highest qid shown and acked */
  unsigned reconnects;
  uint64_t lost_at;   /* when it last found its node dead (ms) */
  uint64_t worst_gap; /* the longest time from that to a resumed session (ms) */
} fc_client;

/* Registers user (device "phone") on node and stays connected; fails the
 * test if it cannot. ports: the nodes' native ports, in failover order. */
void fc_register(fc_client *c, lg_ledger *lg, const char *user, const int *ports, int nports, int node,
                 int silence_ms);
/* Sends (id, to, body) until acked, failing over as needed; records the
 * tries and the ack. Fails the test if not acked by deadline (ms). Returns
 * the seq; *conv (if not NULL) gets the conversation (static storage). */
uint64_t fc_send(fc_client *c, const char *id, const char *to, const char *body, uint64_t deadline);
/* Reads what comes for up to ms, then proves the node alive with a Ping
 * (failing over if it is not). */
void fc_pump(fc_client *c, int ms);
/* Pumps every client until the ledger misses nothing, or fails the test at
 * deadline naming what is missing. */
void fc_settle(fc_client *const *cs, int n, uint64_t deadline);
/* The conversation id of a 1:1 between two users ("dm:a:b", in order). */
void fc_dm(char *out, size_t cap, const char *a, const char *b);
/* Closes its sockets. */
void fc_close(fc_client *c);

#endif
