#include "pl_tcp.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"
#include "pl_mqttgw.h"

/* Reading also stops while this many frames wait: small answers (Pongs)
 * cost more in buffers and queue slots than their bytes say. */
#define PL__HOLD_FRAMES 2048

typedef struct pl_tcp_conn pl_tcp_conn;

struct pl_tcp_listener {
  uv_tcp_t tcp;
  pl_loop *loop;
  const pl_conn_handler *h;
  uint32_t max_frame;
  pl_limits *limits;
  const pl_stream_type *type; /* plain or TLS */
  void *type_arg;
  int proxy;          /* a PROXY v2 header first: admitted by the client's address once it came */
  int mqtt;           /* MQTT clients, through a gateway each (pl_mqttgw) */
  pl_tcp_conn *conns; /* doubly linked list of open connections */
  size_t count;
  uint64_t warned_ms; /* last "cannot accept" warning */
  int closing;
};

struct pl_tcp_conn {
  pl_conn c; /* first: a pl_conn * is a pl_tcp_conn * */
  pl_stream s;
  pl_tcp_listener *lst;
  pl_bytes *rbuf; /* unparsed input; NULL (no memory, not even the pl_bytes) between frames */
  pl_mqttgw *gw;  /* an MQTT listener's: it parses the input and writes the output */
  uint8_t paused;
  uint8_t cutting;        /* the handler is answering a cut: its one frame passes */
  uint8_t ip_key_counted; /* admitted by the limits: leaves them when closed */
  uint8_t listed;         /* in the listener's list, opened to the handler */
  pl_tcp_conn *prev, *next;
};

static size_t pl__rbuf_cap(const pl_tcp_conn *tc) { return tc->rbuf ? tc->rbuf->cap : 0; }

static void pl__rbuf_free(pl_tcp_conn *tc) {
  if (!tc->rbuf)
    return;
  pl_bytes_free(tc->rbuf);
  pl_free(tc->rbuf);
  tc->rbuf = NULL;
}

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

static pl_tcp_conn *pl__tc(pl_stream *s) { return (pl_tcp_conn *)((char *)s - offsetof(pl_tcp_conn, s)); }

/* ---- output ----------------------------------------------------------- */

static void pl__read_again(pl_tcp_conn *tc);

/* What the connection's buffers hold, for the server-wide bound. */
static void pl_tcp__account(pl_tcp_conn *tc) {
  pl_conn *c = &tc->c;
  c->out_bytes = tc->s.out_bytes;
  if (c->limits)
    pl_limits_account(c->limits, &c->mem_counted,
                      tc->s.dead
                          ? 0
                          : c->out_bytes + pl__rbuf_cap(tc) +
                                (tc->gw ? pl_mqttgw_buffered(tc->gw) + pl_mqttgw_held_bytes(tc->gw) : 0));
}

static void pl_tcp__check_drain(pl_tcp_conn *tc) {
  pl_conn *c = &tc->c;
  if (tc->s.closing)
    return;
  if (c->want_drain && c->out_bytes <= c->drain_mark / 2) {
    c->want_drain = 0;
    c->h->on_drain(c, c->h->ud);
  }
  if (c->out_held && pl_conn_out_drained(c) && tc->s.qlen < PL__HOLD_FRAMES / 2 && !tc->s.closing) {
    c->out_held = 0;
    c->last_rx_ms = pl_mono_ms(); /* its silence was ours */
    pl__read_again(tc);
  }
}

/* The stream wrote what it could: drains, and the end of a closing one. */
static void pl_tcp__on_written(pl_stream *s) {
  pl_tcp_conn *tc = pl__tc(s);
  tc->c.out_bytes = s->out_bytes;
  tc->c.progress_ms = s->progress_ms;
  pl_tcp__check_drain(tc);
  if (s->dead)
    return;
  if (s->closing) {
    pl__rbuf_free(tc); /* its input will never be read: a big frame's bytes go now */
    if (pl_stream_idle(s))
      pl_stream_fin(s, tc->c.limits && !tc->ip_key_counted);
  }
  pl_tcp__account(tc);
}

static void pl__tcp_close(pl_conn *c);

/* The transport ends a connection (a cap, or a client that does not read):
 * the handler answers why, and that one frame is queued whatever the
 * budget; then it closes. */
static void pl_tcp__cut(pl_tcp_conn *tc, pl_err why) {
  pl_conn *c = &tc->c;
  if (tc->s.closing)
    return;
  tc->cutting = 1;
  c->h->on_bad_input(c, why, c->h->ud);
  tc->cutting = 0;
  pl__tcp_close(c);
}

/* A cut for the connection's behaviour (not a refusal at accept): counted. */
static void pl__cut_counted(pl_tcp_conn *tc, pl_err why) {
  if (!tc->s.closing && tc->c.limits)
    pl_limits_count_cut(tc->c.limits, why);
  pl_tcp__cut(tc, why);
}

static void pl__tcp_write(pl_conn *c, pl_buf *b) {
  pl_tcp_conn *tc = (pl_tcp_conn *)c;
  if (tc->s.closing)
    return;
  if (!tc->cutting && pl_conn_over_budget(c)) {
    pl__cut_counted(tc, PL_ERR_SLOW_CONSUMER);
    return;
  }
  if (tc->gw)
    pl_mqttgw_output(tc->gw, b); /* the gateway writes what it stands for (pl_tcp__gw_write) */
  else
    pl_stream_write(&tc->s, b);
  pl_tcp__account(tc);
}

static void pl_tcp__gw_write(void *ud, const uint8_t *p, size_t n) {
  pl_tcp_conn *tc = ud;
  if (!tc->s.closing)
    pl_stream_write_bytes(&tc->s, p, n);
}

static const pl_mqttgw_io pl__tcp_gw_io = {.write = pl_tcp__gw_write};

/* ---- closing ---------------------------------------------------------- */

static void pl_tcp__on_closing(pl_stream *s) {
  pl_tcp_conn *tc = pl__tc(s);
  if (tc->listed && tc->c.h->on_closing)
    tc->c.h->on_closing(&tc->c, tc->c.h->ud);
}

static void pl_tcp__on_closed(pl_stream *s) {
  pl_tcp_conn *tc = pl__tc(s);
  pl_tcp_listener *l = tc->lst;
  pl__rbuf_free(tc);
  pl_mqttgw_free(tc->gw);
  tc->gw = NULL;
  pl_tcp__account(tc);
  if (tc->ip_key_counted)
    pl_limits_leave(tc->c.limits, tc->c.ip_key);
  if (tc->listed) {
    if (tc->prev)
      tc->prev->next = tc->next;
    else
      l->conns = tc->next;
    if (tc->next)
      tc->next->prev = tc->prev;
    l->count--;
    pl_debug("conn %llu: closed", (unsigned long long)tc->c.id);
    tc->c.h->on_close(&tc->c, tc->c.h->ud);
  }
  pl_free(tc);
}

static void pl__tcp_close(pl_conn *c) {
  pl_tcp_conn *tc = (pl_tcp_conn *)c;
  if (tc->gw && !tc->s.closing)
    pl_mqttgw_closing(tc->gw); /* an MQTT 5 client is told why */
  pl_stream_closing(&tc->s);
}

static void pl_tcp__on_eof(pl_stream *s) {
  pl__tcp_close(&pl__tc(s)->c); /* the peer is done sending: flush and close */
}

/* ---- input ------------------------------------------------------------ */

/* Reading stops until the output drains (pl_tcp__check_drain restarts it). */
static void pl_tcp__hold_reading(pl_tcp_conn *tc) {
  tc->c.out_held = 1;
  tc->c.progress_ms = pl_mono_ms();
  pl_stream_read_stop(&tc->s);
}

/* Parses and dispatches whole frames from p[0..n); returns bytes consumed. */
static size_t pl__dispatch(pl_tcp_conn *tc, const uint8_t *p, size_t n) {
  pl_conn *c = &tc->c;
  size_t off = 0;
  while (!tc->s.closing && !tc->paused && !c->out_held) {
    if (pl_conn_out_full(c) || tc->s.qlen >= PL__HOLD_FRAMES) { /* more answers would only pile up */
      pl_tcp__hold_reading(tc);
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
      pl_stream_read_stop(&tc->s);
    }
  }
  return off;
}

/* An MQTT connection's input: the gateway handles what is whole. */
static void pl_tcp__gw_run(pl_tcp_conn *tc) {
  if (tc->paused || tc->c.out_held || tc->s.closing)
    return;
  int r = pl_mqttgw_run(tc->gw);
  if (r == PL_MQTTGW_PAUSE && !tc->s.closing) {
    tc->paused = 1;
    pl_stream_read_stop(&tc->s);
  } else if (r == PL_MQTTGW_HOLD) {
    pl_tcp__hold_reading(tc);
  }
}

static void pl__process_rbuf(pl_tcp_conn *tc) {
  size_t used = pl__dispatch(tc, tc->rbuf->p, tc->rbuf->len);
  if (!tc->rbuf)
    return; /* (the handler closed it: pl_tcp__on_written freed it) */
  if (used >= tc->rbuf->len)
    pl__rbuf_free(tc); /* idle connections own no read buffer */
  else
    pl_bytes_consume(tc->rbuf, used);
}

/* Keeps the bytes of a frame still arriving. */
static void pl__rbuf_append(pl_tcp_conn *tc, const uint8_t *p, size_t n) {
  if (!tc->rbuf)
    tc->rbuf = pl_calloc(1, sizeof *tc->rbuf);
  pl_bytes_append(tc->rbuf, p, n);
}

static void pl_tcp__on_data(pl_stream *s, const uint8_t *p, size_t n) {
  pl_tcp_conn *tc = pl__tc(s);
  if (s->closing)
    return;
  tc->c.last_rx_ms = pl_mono_ms();
  if (tc->gw) {
    pl_mqttgw_push(tc->gw, p, n);
    pl_tcp__gw_run(tc);
  } else if (!tc->rbuf) {
    size_t used = pl__dispatch(tc, p, n);
    if (used < n && !s->closing)
      pl__rbuf_append(tc, p + used, n - used);
  } else {
    pl__rbuf_append(tc, p, n);
    pl__process_rbuf(tc);
  }
  /* A big frame in the making holds memory as its bytes arrive: none more
   * while all connections together hold too much. */
  size_t held = tc->gw ? pl_mqttgw_buffered(tc->gw) : tc->rbuf ? tc->rbuf->len : 0;
  if (held > PL_LOOP_RBUF && tc->c.limits && pl_limits_memory_over(tc->c.limits))
    pl__cut_counted(tc, PL_ERR_TOO_MANY_CONNECTIONS);
  pl_tcp__account(tc);
}

static void pl__tcp_pause(pl_conn *c) {
  pl_tcp_conn *tc = (pl_tcp_conn *)c;
  if (!tc->paused && !tc->s.closing) {
    tc->paused = 1;
    pl_stream_read_stop(&tc->s);
  }
}

/* Reading goes on, first with what waited, unless the session paused it
 * or the output is over its mark. */
static void pl__read_again(pl_tcp_conn *tc) {
  if (tc->paused || tc->s.closing)
    return;
  if (tc->gw)
    pl_tcp__gw_run(tc);
  else if (tc->rbuf)
    pl__process_rbuf(tc);
  if (!tc->paused && !tc->s.closing && !tc->c.out_held)
    pl_stream_read_start(&tc->s);
}

static void pl__tcp_resume(pl_conn *c) {
  pl_tcp_conn *tc = (pl_tcp_conn *)c;
  if (!tc->paused || tc->s.closing)
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

/* A PROXY v2 header named the client: it is the connection's address from
 * now on (limits, throttle, logs), and it is admitted by it. */
static void pl_tcp__on_peer(pl_stream *s, const struct sockaddr *sa) {
  pl_tcp_conn *tc = pl__tc(s);
  pl_conn *c = &tc->c;
  if (sa) {
    c->ip_key = pl_limits_key(sa);
    pl_addr_set(&c->peer, sa);
  }
  char peer[PL_ADDR_STR];
  pl_debug("conn %llu: %s through a proxy", (unsigned long long)c->id, pl_addr_str(&c->peer, peer));
  tc->ip_key_counted = c->limits && pl_limits_admit(c->limits, c->ip_key) == PL_OK;
  if (c->limits && !tc->ip_key_counted)
    pl_tcp__cut(tc, PL_ERR_TOO_MANY_CONNECTIONS);
}

static const pl_stream_cbs pl__tcp_cbs = {
    .on_data = pl_tcp__on_data,
    .on_eof = pl_tcp__on_eof,
    .on_written = pl_tcp__on_written,
    .on_closing = pl_tcp__on_closing,
    .on_closed = pl_tcp__on_closed,
    .on_peer = pl_tcp__on_peer,
};

/* ---- listener --------------------------------------------------------- */

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

static void pl_tcp__on_connection(uv_stream_t *server, int status) {
  pl_tcp_listener *l = server->data;
  if (status < 0)
    pl_tcp_accept_failed(&l->warned_ms, status);
  if (status < 0 || l->closing)
    return;
  pl_tcp_conn *tc = pl_calloc(1, sizeof *tc);
  tc->lst = l;
  if (pl_stream_accept(&tc->s, server, l->loop, l->type, l->type_arg, l->proxy, &pl__tcp_cbs) != 0)
    return; /* closing: on_closed frees it */
  tc->c.ops = &pl__tcp_ops;
  tc->c.h = l->h;
  tc->c.loop = l->loop;
  tc->c.max_frame = l->max_frame;
  tc->c.last_rx_ms = pl_mono_ms();
  tc->c.id = pl_conn_new_id();
  tc->c.limits = l->limits;
  if (l->mqtt)
    tc->gw = pl_mqttgw_new(&tc->c, &pl__tcp_gw_io, tc, 0);
  tc->c.ip_key = pl_tcp_peer_key(&tc->s.tcp);
  /* Behind a proxy, the socket's address is the proxy's: the connection is
   * admitted once the header says whose it is (pl_tcp__on_peer). */
  tc->ip_key_counted = l->limits && !l->proxy && pl_limits_admit(l->limits, tc->c.ip_key) == PL_OK;
  pl_addr_of_peer(&tc->c.peer, &tc->s.tcp);
  tc->listed = 1;
  tc->next = l->conns;
  if (l->conns)
    l->conns->prev = tc;
  l->conns = tc;
  l->count++;
  l->h->on_open(&tc->c, l->h->ud);
  if (l->limits && !l->proxy && !tc->ip_key_counted) { /* over a cap: told so, and closed */
    pl_tcp__cut(tc, PL_ERR_TOO_MANY_CONNECTIONS);
    /* at once: a burst of accepts must not run out of descriptors on
     * connections it only refuses */
    pl_stream_flush_now(&tc->s);
  }
  if (!tc->s.closing)
    pl_stream_read_start(&tc->s);
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
  l->type = cfg->type ? cfg->type : &pl_stream_plain;
  l->type_arg = cfg->type_arg;
  l->proxy = cfg->proxy;
  l->mqtt = cfg->mqtt;
  l->tcp.data = l;
  pl_err e = pl_tcp_open_listener(loop, &l->tcp, cfg, pl_tcp__on_connection);
  if (e == PL_OK)
    *out = l;
  return e;
}

static void pl_tcp__listener_closed(uv_handle_t *h) {
  pl_tcp_listener *l = h->data;
  l->closing = 2;
}

void pl_tcp_listener_free(pl_tcp_listener *l) { pl_free(l); }

void pl_tcp_abort_all(pl_tcp_listener *l) {
  for (pl_tcp_conn *tc = l->conns; tc; tc = tc->next)
    pl_stream_abort(&tc->s);
}

void pl_tcp_listener_close(pl_tcp_listener *l) {
  if (l->closing)
    return;
  l->closing = 1;
  uv_close((uv_handle_t *)&l->tcp, pl_tcp__listener_closed);
}

void pl_tcp_close_all(pl_tcp_listener *l) {
  for (pl_tcp_conn *tc = l->conns; tc; tc = tc->next) {
    if (tc->s.closing)
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
    if (pl_stream_sweep(&tc->s, now) || tc->s.closing)
      continue;
    if (pl_conn_stuck(c, now))
      pl__cut_counted(tc, PL_ERR_SLOW_CONSUMER);
    else if (pl_conn_idle_due(c, now))
      c->h->on_idle(c, c->h->ud);
  }
}
