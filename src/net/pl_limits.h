/* pl_limits: what the connections of one server share across its loops:
 * the caps on how many there may be (in total and per source address), the
 * budget of unsent output each may hold, the memory all of them may hold
 * together, and the counters /metrics shows.
 *
 * The rules live here, apart from the sockets, so a unit test can drive them;
 * the transports (pl_tcp, pl_http, pl_lp) ask before they accept, buffer or
 * queue, and act on the answer. Any thread: counts are atomics, the table of
 * addresses is behind a mutex (taken once per accept and per close). */
#ifndef PL_LIMITS_H
#define PL_LIMITS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../common/pl_err.h"

typedef struct pl_limits_config {
  uint32_t max_conns;  /* connections in total, every transport (0: no cap) */
  uint32_t max_per_ip; /* per source address, an IPv6 /64 counting as one (0: no cap) */
  uint32_t reserve;    /* HTTP connections let in past the caps, for /healthz and /metrics */
  size_t max_output;   /* unsent output a connection may hold before it is cut */
  uint32_t stuck_ms;   /* output over the mark, nothing written for this long: cut */
  uint64_t max_memory; /* input and output buffers of all connections together */
} pl_limits_config;

typedef struct pl_limits pl_limits;

pl_limits *pl_limits_new(const pl_limits_config *cfg);
void pl_limits_free(pl_limits *l);
const pl_limits_config *pl_limits_cfg(const pl_limits *l);

/* The key a peer address is counted under: an IPv4 address (also one mapped
 * into IPv6) or an IPv6 /64. Never 0. */
uint64_t pl_limits_key(const struct sockaddr *sa);

/* A new connection from key: PL_OK (counted; pl_limits_leave when it
 * ends), or PL_ERR_TOO_MANY_CONNECTIONS (not counted; the refusal is). */
pl_err pl_limits_admit(pl_limits *l, uint64_t key);
void pl_limits_leave(pl_limits *l, uint64_t key);
/* A connection past the caps that may still ask for /healthz or /metrics:
 * 1 (counted; pl_limits_spare_done when it ends) while the reserve lasts. */
int pl_limits_spare(pl_limits *l);
void pl_limits_spare_done(pl_limits *l);

/* Brings what a connection is counted for (*counted) to bytes, now held in
 * its buffers. */
void pl_limits_account(pl_limits *l, size_t *counted, size_t bytes);
/* 1 while all connections together hold more than max_memory. */
int pl_limits_memory_over(const pl_limits *l);
/* A connection was cut for not reading (SLOW_CONSUMER) or for memory. */
void pl_limits_count_cut(pl_limits *l, pl_err why);

typedef struct pl_limits_stats {
  uint64_t conns;          /* counted connections now */
  uint64_t refused;        /* connections refused by a cap */
  uint64_t slow_consumers; /* cut for not reading */
  uint64_t memory_cuts;    /* cut because all connections held max_memory */
  uint64_t memory;         /* bytes held in connections' buffers now */
} pl_limits_stats;
void pl_limits_get_stats(const pl_limits *l, pl_limits_stats *st);

#endif
