/* pl_conn: one client connection, whatever transport carries it.
 *
 * The transport (TCP now; TLS, WebSocket, long-poll later) turns bytes into
 * whole frames and frames into bytes. The session layer above sees only this
 * struct, the transport's vtable, and the handler it registered: the net
 * layer never includes the core, which keeps it readable, testable and
 * fuzzable alone (libuv's and curl's way of breaking the transport <-> logic
 * circle). */
#ifndef PL_CONN_H
#define PL_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "../common/pl_buf.h"
#include "../common/pl_err.h"
#include "../proto/pl_frame.h"
#include "pl_addr.h"
#include "pl_limits.h"
#include "pl_loop.h"

typedef struct pl_conn pl_conn;

/* What carries a connection, for whoever counts or treats them apart (the
 * session's per-transport gauges); names are for logs only, never compared. */
typedef enum pl_conn_kind { PL_CONN_TCP, PL_CONN_WS, PL_CONN_LP, PL_CONN_KINDS } pl_conn_kind;

typedef struct pl_transport_ops {
  const char *name;  /* "tcp", "ws", ... (logs) */
  pl_conn_kind kind; /* the same, for code */
  /* Queues a whole frame; the transport takes its own reference to b. The
   * bytes go out with the rest of this loop pass's output in one write. */
  void (*write)(pl_conn *c, pl_buf *b);
  /* Writes what is queued, then closes. on_close follows. */
  void (*close)(pl_conn *c);
  /* Stops / restarts delivering frames (back-pressure on a busy client). */
  void (*pause)(pl_conn *c);
  void (*resume)(pl_conn *c);
} pl_transport_ops;

/* A request a gateway decoded itself (pl_conn_handler.on_message): a
 * transport whose wire is not protobuf (JSON over WebSocket and long-poll
 * now, MQTT later) hands over the message it built, and nothing is encoded
 * to protobuf only to be decoded again. */
typedef struct pl_conn_msg {
  uint8_t type;          /* parley.FrameType */
  ProtobufCMessage *msg; /* of pl_frame_descriptor(type)'s kind */
  /* Gives msg back to its maker; called once, on the connection's loop,
   * when the session is done with it (maybe after a store request). */
  void (*release)(ProtobufCMessage *msg, void *ud);
  void *ud;
} pl_conn_msg;

/* What the session layer registers; called on the connection's loop. */
typedef struct pl_conn_handler {
  /* A new connection; set c->session here. */
  void (*on_open)(pl_conn *c, void *ud);
  /* One whole frame. Return 0 to go on, 1 to pause reading (the transport
   * keeps the unread bytes until resume). */
  int (*on_frame)(pl_conn *c, const pl_frame *f, void *ud);
  /* The same for a request already decoded (pl_conn_msg): the handler owns
   * m->msg from the call on and releases it, on every path. The transport
   * has checked what a frame's parse would (its encoded size against
   * max_frame); the handler does the rest as for a frame: the type, the
   * strings (pl_strings_check_msg), the session's state. */
  int (*on_message)(pl_conn *c, const pl_conn_msg *m, void *ud);
  /* Unparseable input (PL_ERR_FRAME_TOO_LARGE, PL_ERR_BAD_FRAME), or a
   * connection the transport cuts (PL_ERR_SLOW_CONSUMER: it does not read;
   * PL_ERR_TOO_MANY_CONNECTIONS: over a cap, or out of memory for its
   * input). The handler answers and closes; the transport takes that one
   * answer even past the output budget. */
  void (*on_bad_input)(pl_conn *c, pl_err why, void *ud);
  /* Nothing was received for longer than c->idle_timeout_ms. */
  void (*on_idle)(pl_conn *c, void *ud);
  /* Everything queued has been written (after having been above
   * c->drain_mark bytes). */
  void (*on_drain)(pl_conn *c, void *ud);
  /* The server is stopping: say so and close. */
  void (*on_shutdown)(pl_conn *c, void *ud);
  /* Optional: the connection has begun to close (the peer ended, an error,
   * pl_conn_close). Queued output may still go out, but nothing more is
   * read, and what is pushed now may never arrive: a handler stops counting
   * it as a live destination here, not at on_close, which comes after the
   * socket is closed (the peer may act on that close meanwhile). */
  void (*on_closing)(pl_conn *c, void *ud);
  /* The connection is gone; the handler must not touch c afterwards. */
  void (*on_close)(pl_conn *c, void *ud);
  void *ud;
} pl_conn_handler;

struct pl_conn {
  const pl_transport_ops *ops;
  const pl_conn_handler *h;
  pl_loop *loop;
  void *session;             /* the handler's */
  uint64_t last_rx_ms;       /* monotonic time of the last bytes received */
  uint64_t deadline_ms;      /* monotonic; on_idle once passed (0 = none) */
  uint64_t auth_deadline_ms; /* the same, until the handler clears it (authenticated) */
  size_t out_bytes;          /* queued, not yet written */
  size_t drain_mark;         /* with want_drain: on_drain fires once out_bytes <= drain_mark / 2 */
  size_t mem_counted;        /* bytes of its buffers counted in limits */
  pl_limits *limits;         /* the server's shared caps and counts (NULL: none) */
  uint64_t ip_key;           /* its address as the limits count it (pl_limits_key) */
  uint64_t progress_ms;      /* monotonic: output last moved, or reading stopped for it */
  uint64_t id;               /* unique per process, for logs */
  /* the 4-byte fields together: an idle connection pays no padding */
  uint32_t idle_timeout_ms; /* 0 = none */
  uint32_t max_frame;       /* largest length prefix accepted */
  uint8_t want_drain;       /* set by the handler; cleared when on_drain fires */
  uint8_t out_held;         /* reading stopped while out_bytes > drain_mark */
  pl_addr peer;             /* the client (logs, throttle): pl_addr_str makes its text */
};

static inline void pl_conn_write(pl_conn *c, pl_buf *b) { c->ops->write(c, b); }
static inline void pl_conn_close(pl_conn *c) { c->ops->close(c); }
/* 1 when the handler's on_idle is due: silent too long (not counted while
 * the server itself stopped reading), or past the deadline. */
static inline int pl_conn_idle_due(const pl_conn *c, uint64_t now_mono_ms) {
  return (c->idle_timeout_ms && !c->out_held && now_mono_ms - c->last_rx_ms > c->idle_timeout_ms) ||
         (c->deadline_ms && now_mono_ms > c->deadline_ms) ||
         (c->auth_deadline_ms && now_mono_ms > c->auth_deadline_ms);
}
/* Back-pressure: more output waits than the lag mark; read no more requests
 * until it drains (each answer would only add to it). */
static inline int pl_conn_out_full(const pl_conn *c) { return c->drain_mark && c->out_bytes > c->drain_mark; }
/* Reading may restart: the output drained to half the mark. */
static inline int pl_conn_out_drained(const pl_conn *c) { return c->out_bytes <= c->drain_mark / 2; }
/* A write must not be queued: the output is past the connection's budget,
 * or all connections hold too much and this one is over its lag mark. */
static inline int pl_conn_over_budget(const pl_conn *c) {
  if (!c->limits)
    return 0;
  size_t max = pl_limits_cfg(c->limits)->max_output;
  return (max && c->out_bytes > max) || (pl_conn_out_full(c) && pl_limits_memory_over(c->limits));
}
/* Reading has been stopped for the output, and nothing moved for too long. */
static inline int pl_conn_stuck(const pl_conn *c, uint64_t now_mono_ms) {
  uint32_t t = c->limits ? pl_limits_cfg(c->limits)->stuck_ms : 0;
  return c->out_held && t && now_mono_ms - c->progress_ms > t;
}

#endif
