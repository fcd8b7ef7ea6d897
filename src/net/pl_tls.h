/* pl_tls: TLS as a connection type of pl_stream (OpenSSL).
 *
 * The socket stays libuv's; OpenSSL sees only two memory BIOs: the bytes a
 * read brought go into one, the records it makes come out of the other and
 * join the stream's output queue. So a TLS connection reads into the loop's
 * shared buffer, writes with the same writev at the end of the pass and
 * obeys the same output budget as a plain one, and the codecs above
 * (native frames, HTTP, WebSocket) do not know it is there.
 *
 * One pl_tls is the server's certificate, key and settings, shared by
 * every listener and loop: SIGHUP reloads the files (a connection keeps the
 * context it started with; a bad file leaves the old pair in use), and the
 * session-ticket keys it owns rotate on their own, so a resumed session
 * survives both a reload and a rotation (the previous key still opens
 * tickets). No 0-RTT early data is offered. */
#ifndef PL_TLS_H
#define PL_TLS_H

#include <stdint.h>

#include "../common/pl_err.h"
#include "pl_stream.h"

typedef struct pl_tls pl_tls;

typedef struct pl_tls_config {
  const char *cert;      /* PEM: the certificate, then its chain */
  const char *key;       /* PEM private key */
  int min_version;       /* 12 (TLS 1.2) or 13 (default) */
  uint32_t handshake_ms; /* a handshake not done within this is cut (default 10 s) */
  uint32_t ticket_s;     /* ticket keys rotate this often (default 12 h); a ticket lives twice that */
} pl_tls_config;

/* Before anything uses OpenSSL (libcurl too): its allocations go through
 * pl_mem, so they are counted with the server's own (a TLS connection's
 * memory shows in parley_memory_heap_bytes). */
void pl_tls_global_init(void);
/* Loads the certificate and key; logs why and fails if they do not load or
 * do not match. */
pl_err pl_tls_new(const pl_tls_config *cfg, pl_tls **out);
/* Loads the files again (any thread); on failure the pair in use stays,
 * and the reason is logged. */
pl_err pl_tls_reload(pl_tls *t);
/* After every listener using t has closed. */
void pl_tls_free(pl_tls *t);

/* The connection type; its accept argument is the pl_tls. */
extern const pl_stream_type pl_tls_type;

#endif
