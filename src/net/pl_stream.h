/* pl_stream: the byte-level connection layer under every protocol.
 *
 * One accepted socket, its life cycle (reading into the loop's shared
 * buffer, a graceful close that lets the last answer out before the FIN, a
 * hard close) and its one output engine: a queue of refcounted pl_buf
 * (a frame encoded once for many receivers is queued by reference), written
 * at the end of the loop pass with one writev per 256 buffers, the rest
 * handed to libuv when the socket would block. The native protocol
 * (pl_tcp), HTTP, WebSocket and long-poll (pl_http) sit on it and keep only
 * their codecs and their own state.
 *
 * Between the socket and the codec sits a connection type (redis's
 * ConnectionType): plain TCP passes bytes through; TLS (pl_tls) decrypts
 * what is read and encrypts what is queued, in memory BIOs, so the engine
 * and the codecs above never know which one they run on. */
#ifndef PL_STREAM_H
#define PL_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "../common/pl_buf.h"
#include "pl_loop.h"

typedef struct pl_stream pl_stream;

/* What the owner (the protocol on top) hears; all on the stream's loop. */
typedef struct pl_stream_cbs {
  /* Bytes from the peer (already decrypted). The owner keeps what it does
   * not consume now; p is the loop's buffer, gone after the call. */
  void (*on_data)(pl_stream *s, const uint8_t *p, size_t n);
  /* The peer will send nothing more (EOF, or a TLS close_notify). */
  void (*on_eof)(pl_stream *s);
  /* Optional: called before queued output is written, to add more (the
   * next piece of a file, WebSocket frames made since). */
  void (*on_fill)(pl_stream *s);
  /* Output moved (written, or found nothing to write): drain checks, and a
   * closing owner calls pl_stream_fin once all is out. */
  void (*on_written)(pl_stream *s);
  /* Optional: closing has begun (pl_stream_closing or pl_stream_abort,
   * once): the owner's peer may see the socket closed before on_closed. */
  void (*on_closing)(pl_stream *s);
  /* The socket is closed and the stream's own memory released: the owner
   * frees itself (the stream is embedded in it). */
  void (*on_closed)(pl_stream *s);
  /* With the PROXY protocol: the header has come, before any data. sa is
   * the client's address, or NULL when the socket's stands (a LOCAL
   * header: the proxy's own health check). The owner admits the
   * connection now, by the client's address. */
  void (*on_peer)(pl_stream *s, const struct sockaddr *sa);
} pl_stream_cbs;

/* A connection type: how bytes get between the socket and the owner. NULL
 * hooks mean "plain": bytes pass through. */
typedef struct pl_stream_type {
  const char *name; /* "tcp", "tls" (logs) */
  /* A new connection: set up the type's state (s->tls). 0, or -1 to refuse. */
  int (*accept)(pl_stream *s, void *arg);
  /* Raw bytes from the socket: decode, give the plaintext to on_data. 0, or
   * -1 when the peer's bytes are not the protocol (the stream is closed). */
  int (*read)(pl_stream *s, const uint8_t *p, size_t n);
  /* Turn the plaintext entries of the queue (from s->enc on) into wire
   * bytes (pl_stream_encoded). 0, or -1 on failure (closed). */
  int (*encode)(pl_stream *s);
  /* Bytes decoded but not yet given to the owner (reading was stopped). */
  int (*pending)(const pl_stream *s);
  /* Before the FIN: the type's last words (a TLS close_notify). */
  void (*shutdown)(pl_stream *s);
  /* Release the type's state (the socket is closed). */
  void (*free)(pl_stream *s);
  /* Monotonic ms after which a connection still not ready is cut (0 none). */
  uint64_t (*deadline)(const pl_stream *s);
  /* The connection is idle (nothing queued): give back what it can. */
  void (*trim)(pl_stream *s);
} pl_stream_type;

extern const pl_stream_type pl_stream_plain;

struct pl_stream {
  uv_tcp_t tcp;
  const pl_stream_type *type;
  const pl_stream_cbs *cb;
  void *tls;     /* the type's state (NULL for plain) */
  pl_bytes *pre; /* a PROXY v2 header still arriving (NULL: none awaited) */
  pl_flusher flusher;
  pl_buf **q; /* output: entries before enc are wire bytes, the rest plaintext */
  uint32_t qlen, qcap, qoff, enc;
  size_t out_bytes;       /* queued + handed to libuv, not yet written */
  uint64_t closing_since; /* (while pre is set: when the connection was accepted) */
  uint64_t progress_ms;   /* output last moved */
  uint8_t writing;        /* a uv_write is in flight */
  uint8_t reading;        /* the owner wants input */
  uint8_t closing;        /* no more input; the output goes, then the FIN */
  uint8_t dead;           /* the handle is closing */
  uint8_t lingering;      /* the FIN is sent: input dropped until the peer's */
  uint8_t fin_wanted;     /* a FIN once the type's last words are out */
  uint8_t drop_fin;       /* at the FIN, drop unread input instead of waiting for it */
  uint8_t redrive;        /* decoded input waits for the next pass */
};

/* The loop the stream runs on. */
static inline pl_loop *pl_stream_loop(const pl_stream *s) { return (pl_loop *)s->tcp.loop->data; }

/* Accepts a connection from server into s (zeroed, embedded in its
 * owner). With proxy, the first bytes must be a PROXY v2 header (pl_proxy),
 * which on_peer reports before any data. 0, or a libuv error (s is then
 * closing: on_closed follows). */
int pl_stream_accept(pl_stream *s, uv_stream_t *server, pl_loop *loop, const pl_stream_type *type,
                     void *type_arg, int proxy, const pl_stream_cbs *cb);
void pl_stream_read_start(pl_stream *s);
void pl_stream_read_stop(pl_stream *s);
/* Queues b (a reference is taken); it goes out at the end of the pass. */
void pl_stream_write(pl_stream *s, pl_buf *b);
/* The same for bytes that are not a shared frame (copied). */
void pl_stream_write_bytes(pl_stream *s, const void *p, size_t n);
/* Asks for a flush at the end of this loop pass. */
void pl_stream_mark(pl_stream *s);
/* Flushes now (a refusal at accept must not hold its descriptor). */
void pl_stream_flush_now(pl_stream *s);
/* 1 when nothing waits to be written, in the queue or in libuv. */
static inline int pl_stream_idle(const pl_stream *s) { return !s->qlen && !s->writing; }
/* Stops reading; the output still goes. The owner calls pl_stream_fin once
 * it has nothing more to say (from on_written). */
void pl_stream_closing(pl_stream *s);
/* All output is written: the type's last words, a FIN, then what the peer
 * still sends is dropped until it closes (or the grace ends). drop: read
 * what waits once and close at once (a refused connection holds no slot). */
void pl_stream_fin(pl_stream *s, int drop);
/* Closes the socket now; queued output is dropped. on_closed follows. */
void pl_stream_abort(pl_stream *s);
/* The periodic check: a closing stream past its grace, or a connection
 * past its type's deadline (a stalled TLS handshake), is cut; an empty
 * queue gives its array back. Returns 1 if it was cut. */
int pl_stream_sweep(pl_stream *s, uint64_t now_mono_ms);

/* For connection types. */
/* The loop's read buffer (the type decodes into it). */
uint8_t *pl_stream_rbuf(pl_stream *s);
/* Replaces the plaintext entries [enc, qlen) with wire (NULL: none), and
 * makes every entry wire bytes. */
void pl_stream_encoded(pl_stream *s, pl_buf *wire);
/* Queues wire bytes ahead of any plaintext still waiting (handshake
 * records). */
void pl_stream_put_wire(pl_stream *s, pl_buf *wire);

#endif
