/* pb_server: the parleyd under test — starting our own, and reading its CPU
 * time and RSS from /proc. */
#ifndef PB_SERVER_H
#define PB_SERVER_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct pb_server {
  struct sockaddr_in addr; /* where it listens */
  pid_t pid;               /* for /proc figures; 0: unknown */
  int own;                 /* we started it (and stop it) */
  int tmp;                 /* data dir is a temp dir we remove */
  char dir[512];           /* our server's data dir */
  char bin[1024];          /* parleyd path */
  char args[1024];         /* extra arguments */
  int tls;                 /* addr is a --listen-tls listener; the plain one is on plain_port */
  int plain_port;
} pb_server;

/* One reading of the server process. */
typedef struct pb_sample {
  int ok;
  uint64_t cpu_us;    /* utime + stime */
  uint64_t rss_bytes; /* VmRSS */
  uint64_t t_us;      /* pb_now_us() when read */
} pb_sample;

/* Parses HOST:PORT (IPv4 address or "localhost"). Returns 0 or -1. */
int pb_server_parse(const char *hostport, struct sockaddr_in *out);
/* A port of 127.0.0.1 nobody listens on now, or -1. */
int pb_server_free_port(void);
/* Finds parleyd: $PARLEYD, else next to this executable. Returns 0 or -1. */
int pb_server_find_bin(char *out, size_t n);
/* Starts parleyd on a free port with data dir `dir` (NULL: a new temp dir)
 * and waits until it accepts connections. Returns 0 or -1 (reason printed). */
int pb_server_start(pb_server *s, const char *dir, const char *args);
/* Restarts our server on the same data dir and port; in between, with
 * save_template set, copies the data dir there (see pb_server_fresh_data). */
int pb_server_restart(pb_server *s, const char *save_template);
/* Stops our server (SIGTERM, then SIGKILL after 15 s) and removes a temp dir. */
void pb_server_stop(pb_server *s);
/* A kept state dir holds a template data dir: the store as it was right after
 * the bench's users were created. Every run starts our parleyd on a fresh
 * copy of it (measurements do not drift as a kept database grows, and no
 * run sees another's queued messages), and the token cache stays valid.
 * Recreates `data` from `tmpl`; returns 1 if there was a template, 0 if
 * `data` starts empty, -1 on an error. */
int pb_server_fresh_data(const char *tmpl, const char *data);
/* Reads /proc/PID/stat and /proc/PID/status. */
pb_sample pb_server_sample(pid_t pid);

#endif
