#include "pl_tcp.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"

/* Writes go out in chunks of at most this many buffers per syscall. */
#define PL__IOV_MAX 256
/* Reading also stops while this many frames wait: small answers (Pongs)
 * cost more in buffers and queue slots than their bytes say. */
#define PL__HOLD_FRAMES 2048
/* A closing connection whose peer does not read gets this long, then is cut. */
#define PL__CLOSE_GRACE_MS 5000

typedef struct pl_tcp_conn pl_tcp_conn;

struct pl_tcp_listener {
  uv_tcp_t tcp;
  pl_loop *loop;
  const pl_conn_handler *h;
  uint32_t max_frame;
  pl_limits *limits;
  pl_tcp_conn *conns; /* doubly linked list of open connections */
  size_t count;
  uint64_t warned_ms; /* last "cannot accept" warning */
  int closing;
};

struct pl_tcp_conn {
  pl_conn c; /* first: a pl_conn * is a pl_tcp_conn * */
  uv_tcp_t tcp;
  uv_shutdown_t shut; /* the FIN once a closing connection's output is out */
  pl_tcp_listener *lst;
  pl_flusher flusher;
  pl_buf **q; /* output queue; q[0] is written from offset qoff */
  uint32_t qlen, qcap, qoff;
  pl_bytes rbuf; /* unparsed input; empty (no memory) between frames */
  uint64_t closing_since;
  uint8_t writing, paused, closing, dead;
  uint8_t cutting;        /* the handler is answering a cut: its one frame passes */
  uint8_t ip_key_counted; /* admitted by the limits: leaves them when closed */
  uint8_t lingering;      /* FIN sent: waiting for the peer's, input dropped */
  pl_tcp_conn *prev, *next;
};

typedef struct pl_wreq {
  uv_write_t req;
  pl_tcp_conn *tc;
  uint32_t n;
  pl_buf *bufs[];
} pl_wreq;

static uint64_t pl__next_conn_id = 1; /* guarded by pl__id_mu */
static uv_mutex_t pl__id_mu;
static uv_once_t pl__id_once = UV_ONCE_INIT;
static void pl__id_init(void) { uv_mutex_init(&pl__id_mu); }

uint64_t pl_conn_new_id(void) {
  uv_once(&pl__id_once, pl__id_init);
  uv_mutex_lock(&pl__id_mu);
  uint64_t id = pl__next_conn_id++;
  uv_mutex_unlock(&pl__id_mu);
  return id;
}

/* ---- output ----------------------------------------------------------- */

static void pl__flush(pl_flusher *f);
static void pl__hard_close(pl_tcp_conn *tc);
static void pl__read_again(pl_tcp_conn *tc);

/* What the connection's buffers hold, for the server-wide bound. */
static void pl__account(pl_tcp_conn *tc) {
  pl_conn *c = &tc->c;
  if (c->limits)
    pl_limits_account(c->limits, &c->mem_counted, tc->dead ? 0 : c->out_bytes + tc->rbuf.cap);
}

static void pl__check_drain(pl_tcp_conn *tc) {
  pl_conn *c = &tc->c;
  if (c->want_drain && c->out_bytes <= c->drain_mark / 2 && !tc->closing) {
    c->want_drain = 0;
    c->h->on_drain(c, c->h->ud);
  }
  if (c->out_held && pl_conn_out_drained(c) && tc->qlen < PL__HOLD_FRAMES / 2 && !tc->closing) {
    c->out_held = 0;
    c->last_rx_ms = pl_mono_ms(); /* its silence was ours */
    pl__read_again(tc);
  }
}

/* Drops n written bytes from the head of the queue. */
static void pl__advance(pl_tcp_conn *tc, size_t n) {
  if (n)
    tc->c.progress_ms = pl_mono_ms();
  tc->c.out_bytes -= n;
  uint32_t i = 0;
  while (n && i < tc->qlen) {
    size_t left = tc->q[i]->len - tc->qoff;
    if (n < left) {
      tc->qoff += (uint32_t)n;
      break;
    }
    n -= left;
    tc->qoff = 0;
    pl_buf_unref(tc->q[i++]);
  }
  memmove(tc->q, tc->q + i, (tc->qlen - i) * sizeof *tc->q);
  tc->qlen -= i;
}

static uint32_t pl__iov(pl_tcp_conn *tc, uv_buf_t *iov) {
  uint32_t n = tc->qlen < PL__IOV_MAX ? tc->qlen : PL__IOV_MAX;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t off = i == 0 ? tc->qoff : 0;
    iov[i] = uv_buf_init((char *)tc->q[i]->data + off, tc->q[i]->len - off);
  }
  return n;
}

static void pl__write_cb(uv_write_t *req, int status) {
  pl_wreq *w = (pl_wreq *)req;
  pl_tcp_conn *tc = w->tc;
  size_t bytes = 0;
  for (uint32_t i = 0; i < w->n; i++) {
    bytes += w->bufs[i]->len;
    pl_buf_unref(w->bufs[i]);
  }
  if (w->n)
    bytes -= (size_t)(uintptr_t)req->data; /* offset into the first buffer */
  pl_free(w);
  tc->writing = 0;
  tc->c.out_bytes -= bytes;
  tc->c.progress_ms = pl_mono_ms();
  pl__account(tc);
  if (status < 0) {
    if (status != UV_ECANCELED)
      pl_debug("conn %llu: write failed: %s", (unsigned long long)tc->c.id, uv_strerror(status));
    pl__hard_close(tc);
    return;
  }
  pl__check_drain(tc);
  if (tc->qlen || tc->closing)
    pl_loop_mark(tc->c.loop, &tc->flusher);
}

/* Hands the head of the queue to libuv as one uv_write (used when the
 * socket would block). The write request takes the queue's references. */
static void pl__write_rest(pl_tcp_conn *tc) {
  uv_buf_t iov[PL__IOV_MAX];
  uint32_t n = pl__iov(tc, iov);
  pl_wreq *w = pl_malloc(sizeof *w + n * sizeof(pl_buf *));
  w->tc = tc;
  w->n = n;
  w->req.data = (void *)(uintptr_t)tc->qoff;
  memcpy(w->bufs, tc->q, n * sizeof(pl_buf *));
  memmove(tc->q, tc->q + n, (tc->qlen - n) * sizeof *tc->q);
  tc->qlen -= n;
  tc->qoff = 0;
  tc->writing = 1;
  int rc = uv_write(&w->req, (uv_stream_t *)&tc->tcp, iov, n, pl__write_cb);
  if (rc < 0) {
    tc->writing = 0;
    for (uint32_t i = 0; i < n; i++)
      pl_buf_unref(w->bufs[i]);
    pl_free(w);
    pl__hard_close(tc);
  }
}

static void pl__drop_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  if (nread < 0) /* the peer closed too (or broke): done */
    pl__hard_close(s->data);
}

static void pl__alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);

/* Reads and drops what has arrived (one loop buffer's worth at most). */
static void pl__drop_waiting(pl_tcp_conn *tc) {
  uv_os_fd_t fd;
  if (uv_fileno((const uv_handle_t *)&tc->tcp, &fd) == 0)
    (void)!recv(fd, pl_loop_rbuf(tc->c.loop), PL_LOOP_RBUF, MSG_DONTWAIT);
}

static void pl__shut_cb(uv_shutdown_t *req, int status) {
  pl_tcp_conn *tc = req->data;
  if (tc->dead)
    return;
  if (status < 0 || uv_read_start((uv_stream_t *)&tc->tcp, pl__alloc_cb, pl__drop_cb) != 0)
    pl__hard_close(tc);
}

/* All output is written: a FIN, then what the peer still sends is read and
 * dropped until it closes too (at most the close grace, pl_tcp_sweep).
 * Closing with unread input would send a reset instead, and a reset
 * destroys what the peer has not read yet: the Error saying why. */
static void pl__linger(pl_tcp_conn *tc) {
  if (tc->lingering)
    return;
  tc->lingering = 1;
  /* One refused past a cap holds no slot: it must not hold a descriptor
   * for the grace either. Its small Error is out; what it sent is dropped
   * now, so the close is a FIN, not a reset that would destroy the Error. */
  if (tc->c.limits && !tc->ip_key_counted)
    pl__drop_waiting(tc);
  else if (pl_tcp_fin(&tc->tcp, &tc->shut, tc, pl__shut_cb))
    return;
  pl__hard_close(tc);
}

static void pl__flush(pl_flusher *f) {
  pl_tcp_conn *tc = (pl_tcp_conn *)((char *)f - offsetof(pl_tcp_conn, flusher));
  if (tc->dead)
    return;
  /* One writev per chunk of up to PL__IOV_MAX frames; what the socket does
   * not take now goes to libuv, which waits for it to become writable. */
  while (tc->qlen && !tc->writing) {
    uv_buf_t iov[PL__IOV_MAX];
    uint32_t n = pl__iov(tc, iov);
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++)
      total += iov[i].len;
    int r = uv_try_write((uv_stream_t *)&tc->tcp, iov, n);
    if (r < 0 && r != UV_EAGAIN) {
      pl__hard_close(tc);
      return;
    }
    if (r > 0)
      pl__advance(tc, (size_t)r);
    if ((r < 0 || (size_t)r < total) && tc->qlen)
      pl__write_rest(tc);
  }
  if (tc->dead)
    return;
  pl__check_drain(tc);
  if (tc->closing && !tc->qlen && !tc->writing)
    pl__linger(tc);
  if (tc->closing) /* its input will never be read: a big frame's bytes go now */
    pl_bytes_free(&tc->rbuf);
  pl__account(tc);
}

static void pl__tcp_close(pl_conn *c);

/* The transport ends a connection (a cap, or a client that does not read):
 * the handler answers why, and that one frame is queued whatever the
 * budget; then it closes. */
static void pl__cut(pl_tcp_conn *tc, pl_err why) {
  pl_conn *c = &tc->c;
  if (tc->closing)
    return;
  tc->cutting = 1;
  c->h->on_bad_input(c, why, c->h->ud);
  tc->cutting = 0;
  pl__tcp_close(c);
}

/* A cut for the connection's behaviour (not a refusal at accept): counted. */
static void pl__cut_counted(pl_tcp_conn *tc, pl_err why) {
  if (!tc->closing && tc->c.limits)
    pl_limits_count_cut(tc->c.limits, why);
  pl__cut(tc, why);
}

static void pl__tcp_write(pl_conn *c, pl_buf *b) {
  pl_tcp_conn *tc = (pl_tcp_conn *)c;
  if (tc->closing || tc->dead)
    return;
  if (!tc->cutting && pl_conn_over_budget(c)) {
    pl__cut_counted(tc, PL_ERR_SLOW_CONSUMER);
    return;
  }
  if (tc->qlen == tc->qcap) {
    tc->qcap = tc->qcap ? tc->qcap * 2 : 8;
    tc->q = pl_realloc(tc->q, tc->qcap * sizeof *tc->q);
  }
  tc->q[tc->qlen++] = pl_buf_ref(b);
  c->out_bytes += b->len;
  pl__account(tc);
  pl_loop_mark(c->loop, &tc->flusher);
}

/* ---- closing ---------------------------------------------------------- */

static void pl__closed_cb(uv_handle_t *h) {
  pl_tcp_conn *tc = h->data;
  pl_tcp_listener *l = tc->lst;
  for (uint32_t i = 0; i < tc->qlen; i++)
    pl_buf_unref(tc->q[i]);
  pl_free(tc->q);
  pl_bytes_free(&tc->rbuf);
  pl__account(tc);
  if (tc->ip_key_counted)
    pl_limits_leave(tc->c.limits, tc->c.ip_key);
  if (tc->prev)
    tc->prev->next = tc->next;
  else
    l->conns = tc->next;
  if (tc->next)
    tc->next->prev = tc->prev;
  l->count--;
  pl_debug("conn %llu: closed", (unsigned long long)tc->c.id);
  tc->c.h->on_close(&tc->c, tc->c.h->ud);
  pl_free(tc);
}

static void pl__hard_close(pl_tcp_conn *tc) {
  if (tc->dead)
    return;
  tc->dead = 1;
  tc->closing = 1;
  uv_close((uv_handle_t *)&tc->tcp, pl__closed_cb);
}

static void pl__tcp_close(pl_conn *c) {
  pl_tcp_conn *tc = (pl_tcp_conn *)c;
  if (tc->closing)
    return;
  tc->closing = 1;
  tc->closing_since = pl_mono_ms();
  uv_read_stop((uv_stream_t *)&tc->tcp);
  pl_loop_mark(c->loop, &tc->flusher);
}

/* ---- input ------------------------------------------------------------ */

/* Reading stops until the output drains (pl__check_drain restarts it). */
static void pl__hold_reading(pl_tcp_conn *tc) {
  tc->c.out_held = 1;
  tc->c.progress_ms = pl_mono_ms();
  uv_read_stop((uv_stream_t *)&tc->tcp);
}

/* Parses and dispatches whole frames from p[0..n); returns bytes consumed. */
static size_t pl__dispatch(pl_tcp_conn *tc, const uint8_t *p, size_t n) {
  pl_conn *c = &tc->c;
  size_t off = 0;
  while (!tc->closing && !tc->paused && !c->out_held) {
    if (pl_conn_out_full(c) || tc->qlen >= PL__HOLD_FRAMES) { /* more answers would only pile up */
      pl__hold_reading(tc);
      break;
    }
    pl_frame f;
    size_t used;
    pl_err rc = pl_frame_parse(p + off, n - off, c->max_frame, &f, &used);
    if (rc == PL_ERR_AGAIN)
      break;
    if (rc != PL_OK) {
      c->h->on_bad_input(c, rc, c->h->ud);
      return n; /* nothing after a framing error can be trusted */
    }
    off += used;
    if (c->h->on_frame(c, &f, c->h->ud)) {
      tc->paused = 1;
      uv_read_stop((uv_stream_t *)&tc->tcp);
    }
  }
  return off;
}

static void pl__process_rbuf(pl_tcp_conn *tc) {
  size_t used = pl__dispatch(tc, tc->rbuf.p, tc->rbuf.len);
  if (used >= tc->rbuf.len)
    pl_bytes_free(&tc->rbuf); /* idle connections own no read buffer */
  else
    pl_bytes_consume(&tc->rbuf, used);
}

static void pl__alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  pl_tcp_conn *tc = h->data;
  *buf = uv_buf_init((char *)pl_loop_rbuf(tc->c.loop), PL_LOOP_RBUF);
}

static void pl__read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  pl_tcp_conn *tc = s->data;
  if (nread == 0)
    return;
  if (nread < 0) {
    if (nread == UV_EOF)
      pl__tcp_close(&tc->c); /* the peer is done sending: flush and close */
    else
      pl__hard_close(tc);
    return;
  }
  tc->c.last_rx_ms = pl_mono_ms();
  const uint8_t *p = (const uint8_t *)buf->base;
  if (tc->rbuf.len == 0) {
    size_t used = pl__dispatch(tc, p, (size_t)nread);
    if (used < (size_t)nread && !tc->closing)
      pl_bytes_append(&tc->rbuf, p + used, (size_t)nread - used);
  } else {
    pl_bytes_append(&tc->rbuf, p, (size_t)nread);
    pl__process_rbuf(tc);
  }
  /* A big frame in the making holds memory as its bytes arrive: none more
   * while all connections together hold too much. */
  if (tc->rbuf.len > PL_LOOP_RBUF && tc->c.limits && pl_limits_memory_over(tc->c.limits))
    pl__cut_counted(tc, PL_ERR_TOO_MANY_CONNECTIONS);
  pl__account(tc);
}

static void pl__tcp_pause(pl_conn *c) {
  pl_tcp_conn *tc = (pl_tcp_conn *)c;
  if (!tc->paused && !tc->closing) {
    tc->paused = 1;
    uv_read_stop((uv_stream_t *)&tc->tcp);
  }
}

/* Reading goes on, first with what waited, unless the session paused it
 * or the output is over its mark. */
static void pl__read_again(pl_tcp_conn *tc) {
  if (tc->paused || tc->closing)
    return;
  if (tc->rbuf.len)
    pl__process_rbuf(tc);
  if (!tc->paused && !tc->closing && !tc->c.out_held)
    uv_read_start((uv_stream_t *)&tc->tcp, pl__alloc_cb, pl__read_cb);
}

static void pl__tcp_resume(pl_conn *c) {
  pl_tcp_conn *tc = (pl_tcp_conn *)c;
  if (!tc->paused || tc->closing)
    return;
  tc->paused = 0;
  pl__read_again(tc);
}

static const pl_transport_ops pl__tcp_ops = {
    .name = "tcp",
    .kind = PL_CONN_TCP,
    .write = pl__tcp_write,
    .close = pl__tcp_close,
    .pause = pl__tcp_pause,
    .resume = pl__tcp_resume,
};

/* ---- listener --------------------------------------------------------- */

void pl_tcp_peer_name(const uv_tcp_t *tcp, char *out, size_t cap) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  out[0] = '\0';
  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
    return;
  char ip[40] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
  }
  snprintf(out, cap, "%s:%d", ip, port);
}

static void pl__free_data(uv_handle_t *h) { pl_free(h->data); }

int pl_tcp_fin(uv_tcp_t *tcp, uv_shutdown_t *req, void *owner, uv_shutdown_cb cb) {
  uv_os_fd_t fd;
  int unread = 0;
  if (uv_fileno((const uv_handle_t *)tcp, &fd) != 0 || ioctl(fd, FIONREAD, &unread) != 0)
    unread = 1; /* unknown: the careful way */
  if (!unread)
    return 0; /* nothing to reset over: a plain close */
  req->data = owner;
  return uv_shutdown(req, (uv_stream_t *)tcp, cb) == 0;
}

uint64_t pl_tcp_peer_key(const uv_tcp_t *tcp) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
    return 1;
  return pl_limits_key((const struct sockaddr *)&ss);
}

void pl_tcp_accept_failed(uint64_t *warned_ms, int status) {
  /* libuv accepts and closes what waits when out of descriptors, so the
   * listener goes on; say so, at most once a minute. */
  uint64_t now = pl_mono_ms();
  if (status == UV_ECANCELED || now - *warned_ms < 60000)
    return;
  *warned_ms = now;
  pl_warn("accept: %s: connections are being dropped (raise the open-file limit, or lower --max-conns)",
          uv_strerror(status));
}

static void pl__on_connection(uv_stream_t *server, int status) {
  pl_tcp_listener *l = server->data;
  if (status < 0)
    pl_tcp_accept_failed(&l->warned_ms, status);
  if (status < 0 || l->closing)
    return;
  pl_tcp_conn *tc = pl_calloc(1, sizeof *tc);
  uv_tcp_init(pl_loop_uv(l->loop), &tc->tcp);
  tc->tcp.data = tc;
  if (uv_accept(server, (uv_stream_t *)&tc->tcp) != 0) {
    uv_close((uv_handle_t *)&tc->tcp, pl__free_data);
    return;
  }
  tc->lst = l;
  tc->c.ops = &pl__tcp_ops;
  tc->c.h = l->h;
  tc->c.loop = l->loop;
  tc->c.max_frame = l->max_frame;
  tc->c.last_rx_ms = pl_mono_ms();
  tc->c.id = pl_conn_new_id();
  tc->c.limits = l->limits;
  tc->c.ip_key = pl_tcp_peer_key(&tc->tcp);
  tc->ip_key_counted = l->limits && pl_limits_admit(l->limits, tc->c.ip_key) == PL_OK;
  tc->flusher.fn = pl__flush;
  uv_tcp_nodelay(&tc->tcp, 1);
  pl_tcp_peer_name(&tc->tcp, tc->c.peer, sizeof tc->c.peer);
  tc->next = l->conns;
  if (l->conns)
    l->conns->prev = tc;
  l->conns = tc;
  l->count++;
  l->h->on_open(&tc->c, l->h->ud);
  if (l->limits && !tc->ip_key_counted) { /* over a cap: told so, and closed */
    pl__cut(tc, PL_ERR_TOO_MANY_CONNECTIONS);
    /* at once: a burst of accepts must not run out of descriptors on
     * connections it only refuses */
    pl__flush(&tc->flusher);
  }
  if (!tc->closing)
    uv_read_start((uv_stream_t *)&tc->tcp, pl__alloc_cb, pl__read_cb);
}

int pl_tcp_bind_reuseport(const pl_tcp_config *cfg, int *fd_out) {
  struct sockaddr_storage ss;
  if (uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&ss) != 0)
    return UV_EINVAL;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return uv_translate_sys_error(errno);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  socklen_t len = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
    int err = errno;
    close(fd);
    return uv_translate_sys_error(err);
  }
  *fd_out = fd;
  return 0;
}

pl_err pl_tcp_open_listener(pl_loop *loop, uv_tcp_t *tcp, const pl_tcp_config *cfg, uv_connection_cb cb) {
  int fd = -1, rc = pl_tcp_bind_reuseport(cfg, &fd);
  if (rc != 0) {
    pl_error("listen %s:%d: %s", cfg->host, cfg->port, uv_strerror(rc));
    pl_free(tcp); /* not a libuv handle yet */
    return PL_ERR_IO;
  }
  uv_tcp_init(pl_loop_uv(loop), tcp);
  uv_tcp_open(tcp, fd);
  rc = uv_listen((uv_stream_t *)tcp, cfg->backlog > 0 ? cfg->backlog : 4096, cb);
  if (rc != 0) {
    pl_error("listen %s:%d: %s", cfg->host, cfg->port, uv_strerror(rc));
    uv_close((uv_handle_t *)tcp, (uv_close_cb)pl_free); /* tcp is its struct's first member */
    return PL_ERR_IO;
  }
  return PL_OK;
}

pl_err pl_tcp_listen(pl_loop *loop, const pl_tcp_config *cfg, const pl_conn_handler *h,
                     pl_tcp_listener **out) {
  pl_tcp_listener *l = pl_calloc(1, sizeof *l);
  l->loop = loop;
  l->h = h;
  l->max_frame = cfg->max_frame;
  l->limits = cfg->limits;
  l->tcp.data = l;
  pl_err e = pl_tcp_open_listener(loop, &l->tcp, cfg, pl__on_connection);
  if (e == PL_OK)
    *out = l;
  return e;
}

static void pl__listener_closed(uv_handle_t *h) {
  pl_tcp_listener *l = h->data;
  l->closing = 2;
}

void pl_tcp_listener_free(pl_tcp_listener *l) { pl_free(l); }

void pl_tcp_abort_all(pl_tcp_listener *l) {
  pl_tcp_conn *next;
  for (pl_tcp_conn *tc = l->conns; tc; tc = next) {
    next = tc->next;
    pl__hard_close(tc);
  }
}

void pl_tcp_listener_close(pl_tcp_listener *l) {
  if (l->closing)
    return;
  l->closing = 1;
  uv_close((uv_handle_t *)&l->tcp, pl__listener_closed);
}

void pl_tcp_close_all(pl_tcp_listener *l) {
  for (pl_tcp_conn *tc = l->conns; tc; tc = tc->next) {
    if (tc->closing)
      continue;
    if (tc->c.h->on_shutdown)
      tc->c.h->on_shutdown(&tc->c, tc->c.h->ud);
    pl__tcp_close(&tc->c);
  }
}

int pl_tcp_port(const pl_tcp_listener *l) { return pl_tcp_handle_port(&l->tcp); }

int pl_tcp_handle_port(const uv_tcp_t *tcp) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len) != 0)
    return -1;
  return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                       : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* SO_REUSEPORT would let a second parleyd share the port (and split the
 * clients between two databases): first make sure nobody holds it. */
pl_err pl_tcp_probe(const pl_tcp_config *cfg) {
  struct sockaddr_storage ss;
  if (uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&ss) != 0)
    return PL_ERR_CONFIG;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  if (fd < 0)
    return PL_ERR_IO;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  int rc = bind(fd, (struct sockaddr *)&ss, len);
  int err = errno;
  close(fd);
  if (rc != 0) {
    pl_error("listen %s:%d: %s", cfg->host, cfg->port, strerror(err));
    return PL_ERR_IO;
  }
  return PL_OK;
}

size_t pl_tcp_count(const pl_tcp_listener *l) { return l->count; }

void pl_tcp_sweep(pl_tcp_listener *l, uint64_t now) {
  pl_tcp_conn *next;
  for (pl_tcp_conn *tc = l->conns; tc; tc = next) {
    next = tc->next;
    pl_conn *c = &tc->c;
    if (tc->closing) {
      if (!tc->dead && now - tc->closing_since > PL__CLOSE_GRACE_MS)
        pl__hard_close(tc);
      continue;
    }
    if (!tc->qlen && tc->q) { /* an idle connection owns no output queue */
      pl_free(tc->q);
      tc->q = NULL;
      tc->qcap = 0;
    }
    if (pl_conn_stuck(c, now))
      pl__cut_counted(tc, PL_ERR_SLOW_CONSUMER);
    else if (pl_conn_idle_due(c, now))
      c->h->on_idle(c, c->h->ud);
  }
}
