/* pl_http: the HTTP/1.1 listener, on the same loops as the native one.
 *
 * A connection starts as HTTP/1.1 (keep-alive, pipelined requests answered in
 * order, limits on the head and the body, a deadline for a slow request and
 * for an idle keep-alive connection). GET /ws with a valid upgrade becomes a
 * WebSocket (RFC 6455, pl_ws) that carries the native protocol: from then on
 * it is a pl_conn like a TCP one, served by the same session handler. Every
 * other request goes to the route function the server gives. Nothing here
 * assumes plain TCP beyond the socket calls, which a TLS layer would wrap. */
#ifndef PL_HTTP_H
#define PL_HTTP_H

#include "pl_conn.h"
#include "pl_loop.h"
#include "pl_tcp.h"
#include "web/pl_httpreq.h"

typedef struct pl_http_listener pl_http_listener;

/* The answer to a plain request, filled by the route function. */
typedef struct pl_http_res {
  int status;        /* 200, 404, ... */
  const char *type;  /* Content-Type; NULL: text/plain; charset=utf-8 */
  const char *extra; /* more header lines, each ending in \r\n (or NULL) */
  pl_bytes body;
  const void *static_body; /* instead of body: bytes that outlive the answer (not copied) */
  size_t static_len;
  /* instead of a body: file_len bytes of an open file from file_off; the
   * listener reads it in pieces as the socket drains and closes file_fd */
  int file_fd; /* used when file_len > 0 or has_file */
  int has_file;
  uint64_t file_off, file_len;
} pl_http_res;

/* One request being answered. A route that cannot answer at once (it waits
 * for the store, or holds a long-poll) takes a reference with
 * pl_http_ex_hold, leaves res->status 0, and later calls pl_http_ex_reply
 * exactly once, from any thread. The connection reads nothing more
 * meanwhile (pipelined requests wait their turn); if it goes away first,
 * the reply is dropped. */
typedef struct pl_http_ex pl_http_ex;
void pl_http_ex_hold(pl_http_ex *x);
/* Takes res->body (and a file body); extra is copied; type must be a static string. */
void pl_http_ex_reply(pl_http_ex *x, pl_http_res *res);
/* The loop the request arrived on. */
pl_loop *pl_http_ex_loop(const pl_http_ex *x);
/* The key the limits count the request's peer under (pl_limits_key). */
uint64_t pl_http_ex_peer_key(const pl_http_ex *x);
/* The client's address (unknown once the connection is gone); on the
 * request's loop only. */
pl_addr pl_http_ex_peer(const pl_http_ex *x);
/* Drops a reference taken with pl_http_ex_hold without replying (a sink
 * that held x to resume it later). Any thread. */
void pl_http_ex_release(pl_http_ex *x);

/* Streamed request bodies (uploads). When a request's head is complete the
 * listener asks cfg.open whether the route wants its body as a stream; if
 * so, the body's bytes go to the sink piece by piece as they arrive instead
 * of being gathered (up to the limit open gives), and the sink answers at
 * the end like a route. */
typedef struct pl_http_sink pl_http_sink;
typedef struct pl_http_sink_ops {
  /* The next piece of the body (the bytes are gone after the call). Returns
   * 0 to go on, 1 to stop reading until pl_http_ex_resume, or an HTTP
   * status (>= 400) to refuse the request (the connection closes after). */
  int (*data)(pl_http_sink *s, const uint8_t *p, size_t n);
  /* The whole body is in: answer as a route does (fill res, or hold x and
   * reply later). The sink is the route's own from here. */
  void (*end)(pl_http_sink *s, const pl_http_req *req, pl_http_res *res, pl_http_ex *x);
  /* The request ends before end (the client left, bad input, timeout). */
  void (*abort)(pl_http_sink *s);
} pl_http_sink_ops;
struct pl_http_sink {
  const pl_http_sink_ops *ops;
};
/* Returns a sink for req's body and its size limit, or NULL to let the
 * request be routed as usual; *status != 0 refuses the request at once.
 * x is the request's (hold it to resume it after async work). */
typedef pl_http_sink *(*pl_http_open_fn)(void *ud, const pl_http_req *req, pl_http_ex *x, uint64_t *limit,
                                         int *status);
/* Reading resumes after a sink's data returned 1 (x's loop only). */
void pl_http_ex_resume(pl_http_ex *x);

typedef void (*pl_http_route_fn)(void *ud, const pl_http_req *req, pl_http_res *res, pl_http_ex *x);

/* The WebSocket subprotocols: native frames in binary messages, or their
 * JSON form in text messages (protocol.md 1.1, 1.2). */
#define PL_WS_PROTO_BINARY "parley.proto.v1"
#define PL_WS_PROTO_JSON "parley.json.v1"
/* MQTT over WebSocket, at /mqtt (protocol.md, "MQTT"). */
#define PL_WS_PROTO_MQTT "mqtt"

typedef struct pl_http_config {
  pl_tcp_config tcp;           /* host, port, backlog, max_frame (of the frames inside WebSocket) */
  size_t max_head;             /* request line + headers (default 16 KiB) */
  size_t max_body;             /* (default 1 MiB) */
  uint32_t request_timeout_ms; /* a request must arrive whole within this (default 10 s) */
  uint32_t keepalive_ms;       /* an idle keep-alive connection is closed after this (default 60 s) */
  pl_http_route_fn route;
  pl_http_open_fn open; /* optional: streamed bodies */
  void *route_ud;
} pl_http_config;

pl_err pl_http_listen(pl_loop *l, const pl_http_config *cfg, const pl_conn_handler *h,
                      pl_http_listener **out);
void pl_http_listener_close(pl_http_listener *l);
void pl_http_listener_free(pl_http_listener *l);
void pl_http_abort_all(pl_http_listener *l);
/* Graceful: WebSocket sessions are told (on_shutdown), HTTP ones closed. */
void pl_http_close_all(pl_http_listener *l);
/* The same for WebSocket sessions only: plain requests (an admin call
 * asking for it among them) are answered as usual. */
void pl_http_close_sessions(pl_http_listener *l);
int pl_http_port(const pl_http_listener *l);
/* Open connections, and how many of them are WebSockets. */
size_t pl_http_count(const pl_http_listener *l, size_t *websockets);
/* Deadlines: slow requests, idle keep-alive, idle sessions, slow closes. */
void pl_http_sweep(pl_http_listener *l, uint64_t now_mono_ms);

/* Reason phrase of a status code. */
const char *pl_http_reason(int status);

#endif
