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
} pl_http_res;

/* One request being answered. A route that cannot answer at once (it waits
 * for the store, or holds a long-poll) takes a reference with
 * pl_http_ex_hold, leaves res->status 0, and later calls pl_http_ex_reply
 * exactly once, from any thread. The connection reads nothing more
 * meanwhile (pipelined requests wait their turn); if it goes away first,
 * the reply is dropped. */
typedef struct pl_http_ex pl_http_ex;
void pl_http_ex_hold(pl_http_ex *x);
/* Takes res->body; extra and type must be static strings. */
void pl_http_ex_reply(pl_http_ex *x, pl_http_res *res);
/* The loop the request arrived on. */
pl_loop *pl_http_ex_loop(const pl_http_ex *x);

typedef void (*pl_http_route_fn)(void *ud, const pl_http_req *req, pl_http_res *res, pl_http_ex *x);

/* The WebSocket subprotocols: native frames in binary messages, or their
 * JSON form in text messages (protocol.md 1.1, 1.2). */
#define PL_WS_PROTO_BINARY "parley.proto.v1"
#define PL_WS_PROTO_JSON "parley.json.v1"

typedef struct pl_http_config {
  pl_tcp_config tcp;           /* host, port, backlog, max_frame (of the frames inside WebSocket) */
  size_t max_head;             /* request line + headers (default 16 KiB) */
  size_t max_body;             /* (default 1 MiB) */
  uint32_t request_timeout_ms; /* a request must arrive whole within this (default 10 s) */
  uint32_t keepalive_ms;       /* an idle keep-alive connection is closed after this (default 60 s) */
  pl_http_route_fn route;
  void *route_ud;
} pl_http_config;

pl_err pl_http_listen(pl_loop *l, const pl_http_config *cfg, const pl_conn_handler *h,
                      pl_http_listener **out);
void pl_http_listener_close(pl_http_listener *l);
void pl_http_listener_free(pl_http_listener *l);
void pl_http_abort_all(pl_http_listener *l);
/* Graceful: WebSocket sessions are told (on_shutdown), HTTP ones closed. */
void pl_http_close_all(pl_http_listener *l);
int pl_http_port(const pl_http_listener *l);
/* Open connections, and how many of them are WebSockets. */
size_t pl_http_count(const pl_http_listener *l, size_t *websockets);
/* Deadlines: slow requests, idle keep-alive, idle sessions, slow closes. */
void pl_http_sweep(pl_http_listener *l, uint64_t now_mono_ms);

/* Reason phrase of a status code. */
const char *pl_http_reason(int status);

#endif
