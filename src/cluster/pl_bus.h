/* pl_bus: this node's connection to the cluster bus (NATS), and who else is
 * on it.
 *
 * The bus carries only hints and ephemeral state (pl_busmsg.h): the store is
 * the truth, so a message lost on the bus costs a delay, never data.
 *
 * Threads. The bus has a thread and a libuv loop of its own ("pl-bus"):
 * it makes the first connection, and its timers send ALIVE every alive_ms
 * and sweep the node table; libnats's own threads read and flush the NATS
 * socket and reconnect. Not on a client loop: those are one per core and
 * equal (SO_REUSEPORT), so a bus on one of them would make it special and
 * put bus bursts in its clients' latency; not on the main thread, which only
 * waits for signals. Publishing is thread-safe (libnats queues the bytes and
 * wakes its flusher). Received messages come
 * to on_msg on libnats's delivery thread, one at a time in arrival order
 * (NATS keeps each publisher's order); the handlers must be thread-safe.
 *
 * Liveness. Every node publishes ALIVE every alive_ms; a node heard nothing
 * from for dead_ms is declared dead (on_node_dead, on the bus thread), as is
 * an older incarnation of a node that started again. A SIGSTOPped node still
 * holds its TCP connection to NATS, so silence, not a closed socket, is what
 * tells. A dead node heard again is told to announce its state (STATE). */
#ifndef PL_BUS_H
#define PL_BUS_H

#include <stdint.h>

#include "../common/pl_err.h"
#include "pl_busmsg.h"

typedef struct pl_bus pl_bus;

typedef struct pl_bus_handlers {
  void *ud;
  /* A message of another node (libnats's delivery thread). */
  void (*on_msg)(void *ud, const pl_busmsg *m);
  /* node (of that incarnation) went silent or restarted: forget what it
   * served (bus thread). */
  void (*on_node_dead)(void *ud, const char *node, uint64_t incarnation);
  /* Connected to NATS, first or again: whatever was published meanwhile is
   * lost, so re-announce and re-read (libnats's thread). */
  void (*on_connected)(void *ud, int again);
} pl_bus_handlers;

typedef struct pl_bus_config {
  const char *urls;  /* "nats://h:p[,h:p...]" */
  const char *node;  /* this node's name (at most PL_BUSMSG_MAX_NODE bytes) */
  uint32_t alive_ms; /* 0: 2000 */
  uint32_t dead_ms;  /* 0: 3 x alive_ms */
} pl_bus_config;

typedef struct pl_bus_stats {
  int connected;
  uint32_t nodes_alive; /* other nodes heard within dead_ms */
  uint64_t sent, received, hints_sent, hints_received, reconnects, dead_nodes, send_errors, bad;
} pl_bus_stats;

/* Starts the bus thread and connects in the background (a NATS that is not
 * up yet is retried for ever). PL_ERR_CONFIG for bad urls or node. */
pl_err pl_bus_open(pl_bus **out, const pl_bus_config *cfg, const pl_bus_handlers *h);
/* Publishes m (any thread); its node and incarnation are this node's. */
pl_err pl_bus_publish(pl_bus *b, pl_busmsg *m);
/* Is this node connected now? */
int pl_bus_connected(pl_bus *b);
/* This node's name. */
const char *pl_bus_node(const pl_bus *b);
void pl_bus_get_stats(pl_bus *b, pl_bus_stats *st);
/* Disconnects, joins the thread and waits for a handler that is running:
 * after it no handler runs and publishing fails (PL_ERR_SHUTTING_DOWN), but
 * b stays valid for other threads still calling. */
void pl_bus_stop(pl_bus *b);
/* Stops (if not yet) and frees. */
void pl_bus_close(pl_bus *b);

#endif
