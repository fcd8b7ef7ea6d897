/* pb_opts: parley-bench's command line. */
#ifndef PB_OPTS_H
#define PB_OPTS_H

#include <stdint.h>
#include <stdio.h>

typedef struct pb_opts {
  const char *scenario;
  char server[128];        /* HOST:PORT of a running server; empty: start our own */
  long server_pid;         /* its pid, for CPU and RSS; 0: unknown */
  char parleyd_args[1024]; /* extra arguments for our own parleyd */
  char state[512];         /* state dir (our server's data dir, token cache); empty: temp */
  uint32_t conns;          /* scenario's N (0: scenario default) */
  double rate;             /* total offered messages/s; 0: as fast as possible; <0: default */
  uint64_t messages;       /* M (0: scenario default / unlimited) */
  double duration;         /* seconds (<0: scenario default) */
  int json;
  uint32_t workers;      /* at least this many worker processes (0: as needed) */
  uint32_t window;       /* max-speed sends in flight per sender */
  uint32_t size;         /* message body bytes */
  uint32_t bystanders;   /* storm: bystander pairs */
  uint32_t members;      /* group: members (0: --conns) */
  uint32_t per_addr;     /* connections per source address */
  uint32_t src_base;     /* first source address, host order; 0: no bind */
  uint32_t handshakes;   /* connections authenticating at once during set-up */
  uint32_t ack_batch;    /* receivers Ack after this many messages */
  uint32_t ack_delay_ms; /* ... or this long after the first unacknowledged one */
  double timeout;        /* seconds any phase may take before the run fails */
  int quiet;
  int tls;          /* clients connect over TLS (--listen-tls) */
  int names_mixed;  /* --names mixed: user names that spread over shards (pb_users_name) */
  char mqtt[128];   /* mqtt-pairs: the broker's MQTT HOST:PORT (our parleyd: a free port) */
  int broker_plain; /* mqtt-pairs: --broker plain (any MQTT broker, topics bench/<i>) */
  int mqtt_persist; /* mqtt-pairs: clean session 0 */
  const char *argv0;
} pb_opts;

/* Parses argv into o. Returns 0, 1 (help printed: exit 0) or -1 (error printed). */
int pb_opts_parse(pb_opts *o, int argc, char **argv);
void pb_opts_usage(FILE *out);

#endif
