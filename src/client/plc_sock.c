#include "plc_sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void plc_sock_init(plc_sock *s) {
  memset(s, 0, sizeof *s);
  s->fd = -1;
}

static void plc__close_fd(plc_sock *s) {
  if (s->ssl)
    SSL_free(s->ssl);
  s->ssl = NULL;
  if (s->fd >= 0)
    close(s->fd);
  s->fd = -1;
  s->connecting = 0;
}

/* Tries addresses from ai onwards until one connects or is connecting. */
static int plc__try_from(plc_sock *s, struct addrinfo *ai) {
  for (; ai; ai = ai->ai_next) {
    s->ai_cur = ai;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
      continue;
    int one = 1;
    /* Frames are written whole, once per pass: Nagle would only add delay. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->fd = fd;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      s->connecting = s->ctx != NULL; /* the TLS handshake is still to come */
      return 0;
    }
    if (errno == EINPROGRESS) {
      s->connecting = 1;
      return 0;
    }
    plc__close_fd(s);
  }
  s->ai_cur = NULL;
  return -1;
}

int plc_sock_open(plc_sock *s, const char *host, int port) {
  plc_sock_close(s);
  s->tls_failed = 0;
  s->tls_err[0] = '\0';
  char service[16];
  snprintf(service, sizeof service, "%d", port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  if (getaddrinfo(host, service, &hints, &s->ai) != 0) {
    s->ai = NULL;
    return -1;
  }
  return plc__try_from(s, s->ai);
}

/* ---- TLS ------------------------------------------------------------- */

/* OpenSSL writes with write(), which raises SIGPIPE on a closed peer, and
 * libparley promises never to: SIGPIPE is blocked around its calls, and
 * one they raised is taken before it is unblocked (curl's way). */
typedef struct plc__nopipe {
  sigset_t old;
} plc__nopipe;

static void plc__nopipe_begin(plc__nopipe *np) {
  sigset_t b;
  sigemptyset(&b);
  sigaddset(&b, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &b, &np->old);
}

static void plc__nopipe_end(plc__nopipe *np) {
  sigset_t pend, b;
  sigemptyset(&b);
  sigaddset(&b, SIGPIPE);
  if (!sigismember(&np->old, SIGPIPE) && sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE)) {
    struct timespec zero = {0, 0};
    sigtimedwait(&b, NULL, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &np->old, NULL);
}

SSL_CTX *plc_sock_tls_ctx(const char *ca_file, char *err, size_t errlen) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) {
    snprintf(err, errlen, "cannot create a TLS context");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  /* Frames are written from a buffer that moves as it grows. */
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  int ok =
      ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) : SSL_CTX_set_default_verify_paths(ctx);
  if (ok != 1) {
    snprintf(err, errlen, "cannot load the CA certificates %s", ca_file ? ca_file : "of the system");
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

void plc_sock_use_tls(plc_sock *s, SSL_CTX *ctx, const char *name) {
  s->ctx = ctx;
  s->tls_name = name;
}

/* Why a handshake failed, in words a user can act on. */
static void plc__tls_why(plc_sock *s, int r) {
  long v = SSL_get_verify_result(s->ssl);
  unsigned long e = ERR_peek_last_error();
  if (v != X509_V_OK)
    snprintf(s->tls_err, sizeof s->tls_err, "the server's certificate is not trusted: %s%s",
             X509_verify_cert_error_string(v),
             v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH
                 ? " (it does not name this host)"
                 : "");
  else if (e)
    snprintf(s->tls_err, sizeof s->tls_err, "TLS handshake failed: %s", ERR_reason_error_string(e));
  else
    snprintf(s->tls_err, sizeof s->tls_err, "TLS handshake failed (%s)",
             SSL_get_error(s->ssl, r) == SSL_ERROR_SYSCALL ? "the connection closed" : "protocol error");
  ERR_clear_error();
}

/* One step of the handshake: 1 done, 0 in progress, -1 failed. */
static int plc__tls_step(plc_sock *s) {
  if (!s->ssl) {
    s->ssl = SSL_new(s->ctx);
    if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1 || SSL_set1_host(s->ssl, s->tls_name) != 1) {
      snprintf(s->tls_err, sizeof s->tls_err, "cannot start TLS");
      return -1;
    }
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, s->tls_name, &a4) != 1 && inet_pton(AF_INET6, s->tls_name, &a6) != 1)
      SSL_set_tlsext_host_name(s->ssl, s->tls_name); /* SNI carries names, not addresses */
  }
  plc__nopipe np;
  plc__nopipe_begin(&np);
  int r = SSL_connect(s->ssl);
  plc__nopipe_end(&np);
  if (r == 1)
    return 1;
  int e = SSL_get_error(s->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    s->tls_want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
    return 0;
  }
  plc__tls_why(s, r);
  return -1;
}

short plc_sock_events(const plc_sock *s) {
  if (!s->connecting)
    return POLLIN;
  return s->ssl ? (short)s->tls_want : POLLOUT;
}

int plc_sock_pending(const plc_sock *s) { return s->ssl && !s->connecting ? SSL_pending(s->ssl) : 0; }

void plc_sock_shutdown(plc_sock *s) {
  if (s->ssl && !s->connecting) {
    plc__nopipe np;
    plc__nopipe_begin(&np);
    SSL_shutdown(s->ssl);
    plc__nopipe_end(&np);
  }
  if (s->fd >= 0)
    shutdown(s->fd, SHUT_WR);
}

/* The TCP connection is up: the handshake (if any) is next. */
static int plc__connected(plc_sock *s) {
  int r = s->ctx ? plc__tls_step(s) : 1;
  if (r == 0)
    return 0;
  if (r < 0) {
    s->tls_failed = 1;
    plc__close_fd(s);
    return -1;
  }
  s->connecting = 0;
  freeaddrinfo(s->ai);
  s->ai = s->ai_cur = NULL;
  return 1;
}

int plc_sock_finish(plc_sock *s) {
  if (!s->connecting)
    return s->fd >= 0 ? 1 : -1;
  if (s->ssl)
    return plc__connected(s);
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
    err = errno;
  if (err == 0)
    return plc__connected(s);
  if (err == EINPROGRESS || err == EALREADY)
    return 0;
  plc__close_fd(s);
  return plc__try_from(s, s->ai_cur ? s->ai_cur->ai_next : NULL) == 0 ? 0 : -1;
}

/* SSL_read/SSL_write's outcome as plc_sock_read/write's. */
static ssize_t plc__tls_io(plc_sock *s, int r) {
  if (r > 0)
    return r;
  int e = SSL_get_error(s->ssl, r);
  ERR_clear_error();
  return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

ssize_t plc_sock_read(plc_sock *s, void *p, size_t n) {
  if (s->ssl) {
    plc__nopipe np; /* a TLS 1.3 key update may write */
    plc__nopipe_begin(&np);
    ssize_t out = plc__tls_io(s, SSL_read(s->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n));
    plc__nopipe_end(&np);
    return out;
  }
  for (;;) {
    ssize_t r = recv(s->fd, p, n, 0);
    if (r > 0)
      return r;
    if (r == 0)
      return -1;
    if (errno == EINTR)
      continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  }
}

ssize_t plc_sock_write(plc_sock *s, const void *p, size_t n) {
  if (s->ssl) {
    plc__nopipe np;
    plc__nopipe_begin(&np);
    int r = SSL_write(s->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    ssize_t out = plc__tls_io(s, r);
    plc__nopipe_end(&np);
    return out;
  }
  for (;;) {
    ssize_t r = send(s->fd, p, n, MSG_NOSIGNAL);
    if (r >= 0)
      return r;
    if (errno == EINTR)
      continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  }
}

void plc_sock_close(plc_sock *s) {
  plc__close_fd(s);
  if (s->ai)
    freeaddrinfo(s->ai);
  s->ai = s->ai_cur = NULL;
}
