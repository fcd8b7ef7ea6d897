/* natsrv: real nats-servers for the cluster tests, on free loopback ports.
 *
 * One server, or several joined by cluster routes (each lists the others),
 * as a cluster's bus runs in production. Started through tl_spawn, so a
 * failed test never leaves one running. */
#ifndef NATSRV_H
#define NATSRV_H

#include <sys/types.h>

#include "testlib.h"

#define TL_NATS_MAX 3

typedef struct tl_nats {
  int n;
  pid_t pid[TL_NATS_MAX];
  int port[TL_NATS_MAX];  /* clients */
  int route[TL_NATS_MAX]; /* cluster routes */
  char *dir;              /* logs */
  char url[TL_NATS_MAX][64];
} tl_nats;

/* The nats-server program, or NULL if it is not installed. */
const char *tl_nats_bin(void);
/* Starts n (1..TL_NATS_MAX) servers and waits until each accepts clients. */
void tl_nats_start(tl_nats *ns, int n);
/* "nats://127.0.0.1:P0,nats://127.0.0.1:P1..." starting with server first. */
void tl_nats_urls(const tl_nats *ns, int first, char *out, size_t cap);
/* Kills server i (SIGKILL) at once. */
void tl_nats_kill(tl_nats *ns, int i);
/* Stops every server still running and removes the logs. */
void tl_nats_stop(tl_nats *ns);

/* A parleyd node named name on the bus at url (tl_nats_urls), started with
 * extra (its store, speed options); does not wait for the bus. */
void tl_nats_node_start(tl_server *srv, const char *name, const char *url, const char *extra);
/* Two parleyd nodes on three NATS servers: node A ("A") on the first, B on
 * the second (each learns the rest from NATS), started with extra (their
 * store, speed options) and waited for until each is connected and hears
 * the other. */
void tl_nats_nodes_up(tl_nats *ns, tl_server *a, tl_server *b, const char *extra);
/* Stops both nodes (also after a kill: their data dirs go) and the servers. */
void tl_nats_nodes_down(tl_nats *ns, tl_server *a, tl_server *b);

#endif
