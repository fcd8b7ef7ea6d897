/* pl_tcp: the native protocol over TCP. One listener per loop, all bound to
 * the same address with SO_REUSEPORT so the kernel spreads connections over
 * the loops without a lock. */
#ifndef PL_TCP_H
#define PL_TCP_H

#include "pl_conn.h"
#include "pl_loop.h"
#include "pl_stream.h"

typedef struct pl_tcp_listener pl_tcp_listener;

typedef struct pl_tcp_config {
  const char *host; /* numeric IPv4 or IPv6 address */
  int port;
  int backlog;
  uint32_t max_frame;
  pl_limits *limits;          /* caps, budgets and counts shared by all listeners (NULL: none) */
  const pl_stream_type *type; /* the connection type (NULL: plain TCP; pl_tls_type: TLS) */
  void *type_arg;             /* its argument at accept (TLS: the pl_tls context) */
  int proxy;                  /* connections open with a PROXY v2 header (pl_proxy) */
  int mqtt;                   /* MQTT 3.1.1 / 5.0 instead of native frames (pl_mqttgw) */
} pl_tcp_config;

/* Creates a listener on loop l (call on l's thread or before it starts). */
pl_err pl_tcp_listen(pl_loop *l, const pl_tcp_config *cfg, const pl_conn_handler *h, pl_tcp_listener **out);
/* Stops accepting and closes the listener (on its loop's thread). */
void pl_tcp_listener_close(pl_tcp_listener *t);
/* Fails (and logs why) if the address cannot be bound by a new socket
 * without SO_REUSEPORT: another server holds it, or it is not ours. */
pl_err pl_tcp_probe(const pl_tcp_config *cfg);
/* The port the listener is bound to (useful with port 0). */
int pl_tcp_port(const pl_tcp_listener *t);
/* Frees the listener after its loop has ended. */
void pl_tcp_listener_free(pl_tcp_listener *t);
/* Cuts every connection at once (queued output is dropped). */
void pl_tcp_abort_all(pl_tcp_listener *t);
/* Closes every connection of this listener (graceful: queued output first). */
void pl_tcp_close_all(pl_tcp_listener *t);
/* Connections currently open on this listener. */
size_t pl_tcp_count(const pl_tcp_listener *t);
/* Calls on_idle for connections silent past their idle timeout. */
void pl_tcp_sweep(pl_tcp_listener *t, uint64_t now_mono_ms);

/* Shared with the other listeners (pl_http). */
/* A non-blocking socket bound to cfg's address with SO_REUSEPORT: 0 or a libuv error. */
int pl_tcp_bind_reuseport(const pl_tcp_config *cfg, int *fd_out);
/* The key the limits count the peer under (pl_limits_key). */
uint64_t pl_tcp_peer_key(const uv_tcp_t *tcp);
/* A failed accept (out of descriptors, say): a warning, at most once a minute. */
void pl_tcp_accept_failed(uint64_t *warned_ms, int status);
/* A connection id unique in this process. */
uint64_t pl_conn_new_id(void);
/* Binds (SO_REUSEPORT) and listens on tcp, the first member of a struct
 * allocated with pl_malloc (freed here on failure; tcp->data set by the caller). */
pl_err pl_tcp_open_listener(pl_loop *loop, uv_tcp_t *tcp, const pl_tcp_config *cfg, uv_connection_cb cb);
/* The local port of a bound handle. */
int pl_tcp_handle_port(const uv_tcp_t *tcp);

#endif
