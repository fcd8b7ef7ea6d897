/* plc_sock: libparley's non-blocking TCP socket, nothing protocol specific,
 * optionally under TLS (OpenSSL).
 *
 * A connect walks the resolved addresses in order: each attempt is a
 * non-blocking connect whose outcome the caller learns by polling for
 * plc_sock_events() and calling plc_sock_finish(); on failure it moves to
 * the next. With TLS the handshake is part of connecting: the server's
 * certificate is verified against the CAs given (or the system's) and
 * must name the host; a failure says why in s->tls_err. */
#ifndef PLC_SOCK_H
#define PLC_SOCK_H

#include <netdb.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct plc_sock {
  int fd;                  /* -1 when closed */
  int connecting;          /* a connect is in progress on fd */
  struct addrinfo *ai;     /* resolved addresses (freed once connected) */
  struct addrinfo *ai_cur; /* the address being tried */
  SSL_CTX *ctx;            /* TLS: the client context (not owned); NULL: plain TCP */
  const char *tls_name;    /* the name the certificate must carry (not owned) */
  SSL *ssl;                /* the TLS connection, once the TCP one is up */
  int tls_want;            /* POLLIN or POLLOUT: what the handshake waits for */
  int tls_failed;          /* the handshake failed (not worth another address) */
  char tls_err[200];       /* why the handshake failed */
} plc_sock;

/* A TLS client context: TLS 1.2 or later, the peer verified against
 * ca_file (PEM) or, when NULL, the system's CAs. NULL (and why in err) on
 * failure. */
SSL_CTX *plc_sock_tls_ctx(const char *ca_file, char *err, size_t errlen);
/* Makes the next opens TLS to a server whose certificate names name. */
void plc_sock_use_tls(plc_sock *s, SSL_CTX *ctx, const char *name);
/* What to poll for now: POLLOUT while connecting, the handshake's wish,
 * else POLLIN. */
short plc_sock_events(const plc_sock *s);
/* Decrypted bytes waiting inside TLS (poll would not show them). */
int plc_sock_pending(const plc_sock *s);
/* Our end's close: a TLS close_notify, then a FIN. */
void plc_sock_shutdown(plc_sock *s);

void plc_sock_init(plc_sock *s);

/* Resolves host:port (blocking: getaddrinfo) and starts connecting to the
 * first address that accepts a connect attempt. Returns 0 (connecting or
 * connected: see s->connecting) or -1 if no address could be tried. */
int plc_sock_open(plc_sock *s, const char *host, int port);

/* After plc_sock_events() (or POLLERR/POLLHUP) on a connecting socket:
 * returns 1 once connected (and the TLS handshake done), 0 if still in
 * progress (an attempt failed and the next address is being tried), -1 if
 * every address failed or the TLS handshake did (tls_failed). */
int plc_sock_finish(plc_sock *s);

/* Reads up to n bytes: > 0 bytes read, 0 nothing available now, -1 end of
 * stream or error. */
ssize_t plc_sock_read(plc_sock *s, void *p, size_t n);

/* Writes up to n bytes: >= 0 bytes written (0 if the socket is full), -1 on
 * error. Never raises SIGPIPE. */
ssize_t plc_sock_write(plc_sock *s, const void *p, size_t n);

/* Closes the socket and forgets the addresses. */
void plc_sock_close(plc_sock *s);

#endif
