/* cli_internal.h: what the files of the command-line client (src/cli/) share:
 * the parsed command line, the exit statuses, and the helpers that turn a
 * library error into words and open a session. Nothing outside src/cli/
 * includes it.
 *
 *   main.c      the command line, usage, the one-shot commands, dispatch
 *   cli_live.c  the commands that stay connected: recv (--wait) and chat
 *   cli_recent.c  chat's memory of its last messages' texts, for /forward */
#ifndef CLI_INTERNAL_H
#define CLI_INTERNAL_H

#include "common/pl_buf.h"
#include "parley/parley.h"

#define CLI_VERSION "0.1"
#define CLI_TIMEOUT_MS 15000 /* blocking calls (Argon2 on the server takes a moment) */
#define CLI_DRAIN_MS 10000   /* chat: how long to wait for acks after end of input */
#define CLI_MAX_POS 34       /* group create NAME and up to 32 members */
#define CLI_SETTINGS_ARGS \
  " [--read-receipts on|off] [--last-seen everyone|contacts|nobody] [--group-add everyone|contacts|nobody]"

enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_ERR = 1,     /* anything else */
  CLI_EXIT_USAGE = 2,   /* bad command line */
  CLI_EXIT_CONN = 3,    /* server unreachable, silent, or connection lost */
  CLI_EXIT_AUTH = 4,    /* register/login refused, session taken over */
  CLI_EXIT_REFUSED = 5, /* a message was refused (unknown peer, too large, queue full) */
};

typedef struct cli {
  const char *server, *user, *password, *device;
  char host[256];
  int port;
  int tls;        /* --server tls://HOST:PORT */
  const char *ca; /* --ca FILE: the CAs a tls:// server's certificate must chain to */
  const char *cmd;
  const char *pos[CLI_MAX_POS];
  int npos;
  const char *id;                                    /* send --id */
  const char *group;                                 /* send --group */
  const char *wait;                                  /* recv --wait */
  int no_ack;                                        /* recv --no-ack */
  const char *image;                                 /* send --image FILE */
  const char *invite;                                /* register --invite CODE */
  int force;                                         /* fetch --force: overwrite OUT */
  int thumb;                                         /* fetch --thumb */
  const char *http;                                  /* --http HOST:PORT: uploads and downloads */
  const char *read_receipts, *last_seen, *group_add; /* settings --read-receipts .. */
  char http_base[300];
} cli;

/* "parley: <why>" on stderr; returns status. */
#if defined(__GNUC__)
int cli_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#else
int cli_fail(int status, const char *fmt, ...);
#endif
/* The one place that turns a library error into words and an exit status. */
int cli_error(const cli *o, int err, const char *peer);
/* Connects and logs in (or registers). Returns 0, or the exit status after
 * printing why (and freeing *pc). */
int cli_open(const cli *o, parley **pc, const parley_callbacks *cb, void *ud, int do_register);
/* Writes out[0..len) to stdout and flushes; 0 or -1. */
int cli_print(pl_bytes *out);

/* cli_live.c */
int cmd_recv(const cli *o);
int cmd_chat(const cli *o);

#endif
