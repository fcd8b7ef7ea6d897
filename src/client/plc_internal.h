/* plc_internal: the parley handle and the engine that drives it.
 *
 * parley.c holds the public API (options, blocking calls, sending); plc_engine.c
 * the protocol engine: connection phases, frame dispatch, timers, one poll
 * pass. The blocking calls are loops of engine passes that stop when the
 * engine marks the pending operation done.
 *
 * Connection phases (the public state is derived from them):
 *
 *   IDLE --connect--> CONNECTING --tcp up, Hello sent--> HELLO --Welcome--> OPEN
 *   OPEN --Register/Login/Resume--> AUTHING --AuthOk--> READY --Logout--> LOGOUT
 *
 * Any failure goes back to IDLE through plc_drop(), which either schedules a
 * reconnect (the handle has a token and auto_reconnect is on) or marks the
 * handle dead with the reason, which parley_run() then returns. */
#ifndef PLC_INTERNAL_H
#define PLC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/pl_buf.h"
#include "parley.pb-c.h"
#include "parley/parley.h"
#include "plc_outbox.h"
#include "plc_sock.h"

#define PLC_VERSION "0.1"
#define PLC_MAX_IN_FRAME (16u << 20) /* largest frame accepted from the server */
/* Sends written but not yet answered, at most. The server stops reading a
 * connection with 1024 Sends awaiting their commit; staying under that keeps
 * Acks and Pings flowing and the output buffer small, and is still a deep
 * enough pipeline for the server's group commits. */
#define PLC_WINDOW 512

typedef enum plc_phase {
  PLC_IDLE = 0,
  PLC_CONNECTING, /* TCP connect in progress */
  PLC_HELLO,      /* Hello sent, waiting for Welcome */
  PLC_OPEN,       /* Welcome received, not authenticated */
  PLC_AUTHING,    /* Register/Login/Resume sent */
  PLC_READY,      /* authenticated */
  PLC_LOGOUT,     /* Logout sent */
} plc_phase;

/* The blocking operation waiting for the engine, if any. */
typedef enum plc_op { PLC_OP_NONE = 0, PLC_OP_CONNECT, PLC_OP_AUTH, PLC_OP_LOGOUT } plc_op;

/* A group's stream (protocol 2): the same marks as the queue's, by seq. */
typedef struct plc_gmark {
  uint64_t gid;
  uint64_t last;     /* highest seq handed to the application */
  uint64_t ack_upto; /* highest seq the application acknowledged */
  uint64_t conn_max; /* highest seq received on this connection */
  uint64_t ack_sent; /* highest seq acknowledged on this connection */
} plc_gmark;

/* Group gid's marks (create: made if missing, else NULL). */
plc_gmark *plc_gmark_get(parley *c, uint64_t gid, int create);

struct parley {
  /* Options (strings owned). */
  char *host;
  int port;
  parley_kind kind;
  char *client_name;
  int auto_ack, auto_reconnect;
  int reconnect_min_ms, reconnect_max_ms, request_timeout_ms;
  SSL_CTX *tls_ctx;        /* with TLS: the client context (NULL if it could not be made) */
  char *tls_name;          /* with TLS: the name the certificate must carry; NULL: plain TCP */
  char tls_setup_err[160]; /* why tls_ctx is NULL */
  parley_callbacks cb;
  void *ud;

  /* Connection. */
  plc_sock sock;
  plc_phase phase;
  uint32_t gen;            /* bumped by every drop: stale work stops */
  uint64_t phase_deadline; /* mono ms: CONNECTING..AUTHING, LOGOUT must end by then */
  pl_bytes rbuf;           /* unparsed input */
  pl_bytes wbuf;           /* output not yet written, from wpos */
  size_t wpos;
  uint64_t last_read, last_write, last_ping; /* mono ms */
  int close_hint;                            /* an Error without ref that may precede a close */
  uint64_t hello_wall;                       /* wall ms when Hello was queued */
  uint32_t heartbeat_ms, max_frame, max_message;
  int64_t clock_offset;

  /* Session. */
  char *token, *user, *device;
  uint64_t device_id;
  int resuming;          /* the auth in flight is the engine's own Resume */
  uint32_t attempts;     /* reconnect attempts since the last success */
  uint64_t reconnect_at; /* mono ms; 0 = none scheduled */
  int dead;              /* < 0: down for good, with this reason */
  /* The last Error's retry_after_ms (RATE_LIMITED): the next reconnect waits that long. */
  uint32_t retry_after_ms;

  /* The blocking operation in progress. */
  plc_op op;
  int op_err;
  int depth; /* callbacks running: blocking calls are refused inside them */

  /* Outbox, and the message parley_send_wait is waiting for. */
  plc_outbox ob;
  uint32_t inflight;      /* entries in state SENT: Sends awaiting their answer */
  uint64_t retry_scan_at; /* mono ms: earliest PLC_MSG_RETRY entry due; 0 = none */
  plc_msg *wait_msg;
  int wait_done, wait_err;
  char wait_id[PLC_ID_MAX + 1];
  char *wait_conv;
  parley_send_ack wait_ack;

  /* The request parley_*_wait is waiting for (by ref), and its answer. */
  uint32_t req_seq;
  char req_ref[24];
  int req_done, req_err;
  ProtobufCMessage *req_answer; /* ContactList or Presence (owned) */

  /* Reception. The queue's marks here; in protocol 2, each group's in gm. */
  uint32_t proto; /* the Hello's version */
  plc_gmark *gm;  /* by gid */
  size_t ngm, gmcap;
  uint64_t last_qid;     /* highest qid handed to the application */
  uint64_t ack_upto;     /* highest qid the application acknowledged */
  uint64_t conn_max_qid; /* highest qid received on this connection */
  uint64_t ack_sent;     /* highest Ack written on this connection */
};

/* Public state of a phase. */
parley_state plc_state(const parley *c);

/* Starts a connection (IDLE only). Returns PARLEY_OK, or PARLEY_E_CONNECT if
 * no address could even be tried (the handle is then dropped). */
int plc_start(parley *c);

/* Closes the connection with reason err (0 for a requested close) and
 * either schedules a reconnect or marks the handle dead. */
void plc_drop(parley *c, int err, int reconnect);

/* Appends a frame to the output. */
void plc_write(parley *c, uint8_t type, const ProtobufCMessage *msg);

/* Writes an outbox entry's frame now (the session must be READY). */
void plc_write_msg(parley *c, plc_msg *m);

/* Writes unsent outbox entries, in order, while fewer than PLC_WINDOW are
 * unanswered (READY only). */
void plc_pump(parley *c);

/* One pass of the engine: timers, poll up to timeout_ms, read and dispatch,
 * flush. Returns PARLEY_OK or, if the handle is down for good, the reason. */
int plc_pass(parley *c, int timeout_ms);

/* Before closing for good: writes pending output and closes gracefully,
 * waiting at most a quarter second. */
void plc_linger(parley *c);

/* The code parley_run() returns for a handle that is down for good. */
int plc_down_code(const parley *c);

/* Removes m from the outbox and reports its outcome: to parley_send_wait if it
 * waits for m, else through on_ack (a != NULL) or on_send_error. */
void plc_msg_done(parley *c, plc_msg *m, const parley_send_ack *a, int err, const char *message);

#endif
