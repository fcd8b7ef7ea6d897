#include "pl_stream.h"

#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"
#include "pl_proxy.h"

/* Writes go out in chunks of at most this many buffers per syscall. */
#define PL__IOV_MAX 256
/* A queue's first array: the few frames of one pass (Welcome, AuthOk, a Pong). */
#define PL__QUEUE_FIRST 8
/* A closing connection whose peer does not read gets this long, then is cut. */
#define PL__CLOSE_GRACE_MS 5000
/* A proxy sends its header at once: one that does not is cut after this. */
#define PL__PROXY_MS 10000

/* One uv_write: it owns the references of the buffers it writes. */
typedef struct pl__wreq {
  uv_write_t req;
  pl_stream *s;
  uint32_t n, off; /* off: already written of bufs[0] */
  pl_buf *bufs[];
} pl__wreq;

const pl_stream_type pl_stream_plain = {.name = "tcp"};

static pl_stream *pl__of_flusher(pl_flusher *f) {
  return (pl_stream *)((char *)f - offsetof(pl_stream, flusher));
}

uint8_t *pl_stream_rbuf(pl_stream *s) { return pl_loop_rbuf(pl_stream_loop(s)); }

void pl_stream_mark(pl_stream *s) {
  if (!s->dead)
    pl_loop_mark(pl_stream_loop(s), &s->flusher);
}

/* ---- the queue ------------------------------------------------------- */

static void pl__push(pl_stream *s, pl_buf *b) {
  if (s->qlen == s->qcap) {
    s->qcap = s->qcap ? s->qcap * 2 : PL__QUEUE_FIRST;
    s->q = pl_realloc(s->q, s->qcap * sizeof *s->q);
  }
  s->q[s->qlen++] = b;
  s->out_bytes += b->len;
}

void pl_stream_write(pl_stream *s, pl_buf *b) {
  if (s->closing && s->lingering)
    return;
  if (s->dead || !b->len)
    return;
  pl__push(s, pl_buf_ref(b));
  if (!s->type->encode)
    s->enc = s->qlen;
  pl_stream_mark(s);
}

void pl_stream_write_bytes(pl_stream *s, const void *p, size_t n) {
  if (s->dead || !n)
    return;
  pl_buf *b = pl_buf_copy(p, n);
  pl_stream_write(s, b);
  pl_buf_unref(b);
}

void pl_stream_encoded(pl_stream *s, pl_buf *wire) {
  for (uint32_t i = s->enc; i < s->qlen; i++) {
    s->out_bytes -= s->q[i]->len;
    pl_buf_unref(s->q[i]);
  }
  s->qlen = s->enc;
  if (wire)
    pl__push(s, wire);
  s->enc = s->qlen;
}

void pl_stream_put_wire(pl_stream *s, pl_buf *wire) {
  pl__push(s, wire); /* makes room; then moved before the plaintext */
  memmove(s->q + s->enc + 1, s->q + s->enc, (s->qlen - 1 - s->enc) * sizeof *s->q);
  s->q[s->enc++] = wire;
  pl_stream_mark(s);
}

/* Drops n written bytes from the head of the queue. */
static void pl__advance(pl_stream *s, size_t n) {
  if (n)
    s->progress_ms = pl_mono_ms();
  s->out_bytes -= n;
  uint32_t i = 0;
  while (n && i < s->enc) {
    size_t left = s->q[i]->len - s->qoff;
    if (n < left) {
      s->qoff += (uint32_t)n;
      break;
    }
    n -= left;
    s->qoff = 0;
    pl_buf_unref(s->q[i++]);
  }
  memmove(s->q, s->q + i, (s->qlen - i) * sizeof *s->q);
  s->qlen -= i;
  s->enc -= i;
}

static uint32_t pl__iov(const pl_stream *s, uv_buf_t *iov, size_t *total) {
  uint32_t n = s->enc < PL__IOV_MAX ? s->enc : PL__IOV_MAX;
  *total = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t off = i == 0 ? s->qoff : 0;
    iov[i] = uv_buf_init((char *)s->q[i]->data + off, s->q[i]->len - off);
    *total += iov[i].len;
  }
  return n;
}

/* ---- writing --------------------------------------------------------- */

static void pl__write_cb(uv_write_t *req, int status) {
  pl__wreq *w = (pl__wreq *)req;
  pl_stream *s = w->s;
  size_t bytes = 0;
  for (uint32_t i = 0; i < w->n; i++) {
    bytes += w->bufs[i]->len;
    pl_buf_unref(w->bufs[i]);
  }
  bytes -= w->off;
  pl_free(w);
  s->writing = 0;
  s->out_bytes -= bytes;
  s->progress_ms = pl_mono_ms();
  if (status < 0) {
    if (status != UV_ECANCELED)
      pl_debug("stream: write failed: %s", uv_strerror(status));
    pl_stream_abort(s);
    return;
  }
  pl_stream_mark(s);
}

/* Hands the head of the queue to libuv as one uv_write (the socket would
 * block); the request takes the queue's references. */
static void pl__write_rest(pl_stream *s) {
  uv_buf_t iov[PL__IOV_MAX];
  size_t total;
  uint32_t n = pl__iov(s, iov, &total);
  pl__wreq *w = pl_malloc(sizeof *w + n * sizeof(pl_buf *));
  w->s = s;
  w->n = n;
  w->off = s->qoff;
  memcpy(w->bufs, s->q, n * sizeof(pl_buf *));
  memmove(s->q, s->q + n, (s->qlen - n) * sizeof *s->q);
  s->qlen -= n;
  s->enc -= n;
  s->qoff = 0;
  s->writing = 1;
  if (uv_write(&w->req, (uv_stream_t *)&s->tcp, iov, n, pl__write_cb) < 0) {
    s->writing = 0;
    for (uint32_t i = 0; i < n; i++)
      pl_buf_unref(w->bufs[i]);
    s->out_bytes -= total;
    pl_free(w);
    pl_stream_abort(s);
  }
}

/* A queue of the first size that the write emptied gives its array back
 * now, not at the next sweep: 19,000 idle connections that each answered a
 * Ping would hold it for up to a second, long enough for later long-lived
 * blocks to land after it and leave it a hole the heap cannot return.
 * Larger arrays (a busy connection's) wait for the sweep: growing one again
 * on every pass would cost more than it saves. */
static void pl__queue_trim(pl_stream *s) {
  if (s->qlen || !s->q || s->qcap > PL__QUEUE_FIRST)
    return;
  pl_free(s->q);
  s->q = NULL;
  s->qcap = 0;
}

/* One writev per chunk of up to PL__IOV_MAX buffers; what the socket does
 * not take now goes to libuv, which waits for it to become writable. */
static void pl_stream__write(pl_stream *s) {
  while (s->enc && !s->writing && !s->dead) {
    uv_buf_t iov[PL__IOV_MAX];
    size_t total;
    uint32_t n = pl__iov(s, iov, &total);
    int r = uv_try_write((uv_stream_t *)&s->tcp, iov, n);
    if (r < 0 && r != UV_EAGAIN) {
      pl_stream_abort(s);
      return;
    }
    if (r > 0)
      pl__advance(s, (size_t)r);
    if ((r < 0 || (size_t)r < total) && s->enc)
      pl__write_rest(s);
  }
  pl__queue_trim(s);
}

static void pl__redrive(pl_stream *s);
static void pl__do_fin(pl_stream *s);

static void pl_stream__flush(pl_flusher *f) {
  pl_stream *s = pl__of_flusher(f);
  if (s->dead)
    return;
  if (s->redrive)
    pl__redrive(s);
  if (!s->dead && s->cb->on_fill)
    s->cb->on_fill(s);
  if (!s->dead && s->type->encode && s->enc < s->qlen && s->type->encode(s) != 0)
    pl_stream_abort(s);
  pl_stream__write(s);
  if (s->dead)
    return;
  if (s->fin_wanted) {
    if (pl_stream_idle(s))
      pl__do_fin(s);
    return;
  }
  s->cb->on_written(s);
}

void pl_stream_flush_now(pl_stream *s) { pl_stream__flush(&s->flusher); }

/* ---- reading --------------------------------------------------------- */

static void pl__alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  pl_stream *s = h->data;
  *buf = uv_buf_init((char *)pl_loop_rbuf(pl_stream_loop(s)), PL_LOOP_RBUF);
}

/* Bytes from the socket through the connection type to the owner. */
static void pl__input(pl_stream *s, const uint8_t *p, size_t n) {
  if (!s->type->read)
    s->cb->on_data(s, p, n);
  else if (s->type->read(s, p, n) != 0)
    pl_stream_abort(s);
}

/* The PROXY v2 header first (pl_proxy), then what follows it goes on as
 * the connection's bytes. */
static void pl__proxy_in(pl_stream *s, const uint8_t *p, size_t n) {
  pl_bytes *pre = s->pre;
  if (pre->len) { /* a header split over reads: gather it */
    pl_bytes_append(pre, p, n);
    p = pre->p;
    n = pre->len;
  }
  pl_proxy_info info;
  size_t used = 0;
  pl_err e = pl_proxy_parse(p, n, &info, &used);
  if (e == PL_ERR_AGAIN) {
    if (!pre->len)
      pl_bytes_append(pre, p, n);
    return;
  }
  s->pre = NULL; /* awaited no more; its bytes are freed below, after use */
  if (e != PL_OK) {
    pl_debug("stream: no PROXY v2 header: cut");
    pl_stream_abort(s);
  } else {
    if (s->cb->on_peer)
      s->cb->on_peer(s, info.has_addr ? (const struct sockaddr *)&info.src : NULL);
    if (!s->closing && n > used)
      pl__input(s, p + used, n - used);
  }
  pl_bytes_free(pre);
  pl_free(pre);
}

static void pl__read_cb(uv_stream_t *us, ssize_t nread, const uv_buf_t *buf) {
  pl_stream *s = us->data;
  if (nread == 0)
    return;
  if (nread < 0) {
    if (nread == UV_EOF)
      s->cb->on_eof(s);
    else
      pl_stream_abort(s);
    return;
  }
  if (s->pre)
    pl__proxy_in(s, (const uint8_t *)buf->base, (size_t)nread);
  else
    pl__input(s, (const uint8_t *)buf->base, (size_t)nread);
  if (!s->dead && s->type->encode && s->qlen)
    pl_stream_mark(s); /* handshake records to send */
}

/* Input the type decoded while reading was stopped goes to the owner now. */
static void pl__redrive(pl_stream *s) {
  s->redrive = 0;
  if (s->reading && !s->closing && s->type->read && s->type->read(s, NULL, 0) != 0)
    pl_stream_abort(s);
}

void pl_stream_read_start(pl_stream *s) {
  if (s->dead || s->closing)
    return;
  s->reading = 1;
  if (s->type->pending && s->type->pending(s)) { /* not from inside a callback: next pass */
    s->redrive = 1;
    pl_stream_mark(s);
  }
  uv_read_start((uv_stream_t *)&s->tcp, pl__alloc_cb, pl__read_cb);
}

void pl_stream_read_stop(pl_stream *s) {
  s->reading = 0;
  if (!s->dead && !s->lingering)
    uv_read_stop((uv_stream_t *)&s->tcp);
}

/* ---- closing --------------------------------------------------------- */

static void pl__closed_cb(uv_handle_t *h) {
  pl_stream *s = h->data;
  for (uint32_t i = 0; i < s->qlen; i++)
    pl_buf_unref(s->q[i]);
  pl_free(s->q);
  s->q = NULL;
  s->qlen = s->qcap = s->enc = 0;
  if (s->pre) {
    pl_bytes_free(s->pre);
    pl_free(s->pre);
    s->pre = NULL;
  }
  s->out_bytes = 0;
  if (s->type->free)
    s->type->free(s);
  s->cb->on_closed(s); /* frees s */
}

/* Once, whichever way closing begins. */
static void pl__closing_begins(pl_stream *s) {
  if (!s->closing && s->cb->on_closing)
    s->cb->on_closing(s);
}

void pl_stream_abort(pl_stream *s) {
  if (s->dead)
    return;
  pl__closing_begins(s);
  s->dead = s->closing = 1;
  s->reading = 0;
  uv_close((uv_handle_t *)&s->tcp, pl__closed_cb);
}

void pl_stream_closing(pl_stream *s) {
  if (s->closing)
    return;
  pl__closing_begins(s);
  s->closing = 1;
  s->closing_since = pl_mono_ms();
  pl_stream_read_stop(s);
  pl_stream_mark(s);
}

static void pl__drop_cb(uv_stream_t *us, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  if (nread < 0) /* the peer closed too (or broke): done */
    pl_stream_abort(us->data);
}

static void pl__shut_cb(uv_shutdown_t *req, int status) {
  pl_stream *s = req->data;
  pl_free(req); /* libuv calls back even when the handle closes first (ECANCELED) */
  if (s->dead)
    return;
  if (status < 0 || uv_read_start((uv_stream_t *)&s->tcp, pl__alloc_cb, pl__drop_cb) != 0)
    pl_stream_abort(s);
}

/* Closing a socket with received bytes unread sends a reset, and a reset
 * destroys what the peer has not read yet (the Error saying why it was
 * closed). So: nothing unread, close now; else a FIN, then what the peer
 * still sends is read and dropped until it closes too (at most the grace,
 * pl_stream_sweep). */
static void pl__do_fin(pl_stream *s) {
  s->fin_wanted = 0;
  s->lingering = 1;
  uv_os_fd_t fd;
  int unread = 0;
  int known = uv_fileno((const uv_handle_t *)&s->tcp, &fd) == 0 && ioctl(fd, FIONREAD, &unread) == 0;
  if (s->drop_fin) {
    /* One refused past a cap holds no slot: it must not hold a descriptor
     * for the grace either. What it sent is dropped now, so the close is a
     * FIN, not a reset that would destroy its Error. */
    if (known && unread)
      (void)!recv(fd, pl_loop_rbuf(pl_stream_loop(s)), PL_LOOP_RBUF, MSG_DONTWAIT);
    pl_stream_abort(s);
    return;
  }
  if (known && !unread) {
    pl_stream_abort(s);
    return;
  }
  uv_shutdown_t *req = pl_malloc(sizeof *req); /* only while lingering: not in every connection */
  req->data = s;
  if (uv_shutdown(req, (uv_stream_t *)&s->tcp, pl__shut_cb) != 0) {
    pl_free(req);
    pl_stream_abort(s);
  }
}

void pl_stream_fin(pl_stream *s, int drop) {
  if (s->lingering || s->fin_wanted || s->dead)
    return;
  s->drop_fin = (uint8_t)drop;
  if (s->type->shutdown) {
    s->type->shutdown(s); /* its last words join the queue */
    s->fin_wanted = 1;
    pl_stream_mark(s);
    return;
  }
  pl__do_fin(s);
}

int pl_stream_sweep(pl_stream *s, uint64_t now) {
  if (s->dead)
    return 1;
  if (s->closing && now - s->closing_since > PL__CLOSE_GRACE_MS) {
    pl_stream_abort(s);
    return 1;
  }
  if (s->pre && now - s->closing_since > PL__PROXY_MS) {
    pl_debug("stream: no PROXY header in time: cut");
    pl_stream_abort(s);
    return 1;
  }
  uint64_t due = s->type->deadline ? s->type->deadline(s) : 0;
  if (due && now > due) {
    pl_debug("stream: %s not ready in time: cut", s->type->name);
    pl_stream_abort(s);
    return 1;
  }
  if (!s->qlen && s->q) { /* an idle connection owns no output queue */
    pl_free(s->q);
    s->q = NULL;
    s->qcap = 0;
  }
  if (!s->qlen && !s->writing && s->type->trim)
    s->type->trim(s);
  return 0;
}

int pl_stream_accept(pl_stream *s, uv_stream_t *server, pl_loop *loop, const pl_stream_type *type,
                     void *type_arg, int proxy, const pl_stream_cbs *cb) {
  s->type = type;
  s->cb = cb;
  s->flusher.fn = pl_stream__flush;
  s->progress_ms = pl_mono_ms();
  uv_tcp_init(pl_loop_uv(loop), &s->tcp);
  s->tcp.data = s;
  int rc = uv_accept(server, (uv_stream_t *)&s->tcp);
  if (rc == 0 && type->accept && type->accept(s, type_arg) != 0)
    rc = UV_ENOMEM;
  if (rc != 0) {
    pl_stream_abort(s);
    return rc;
  }
  uv_tcp_nodelay(&s->tcp, 1);
  if (proxy) {
    s->pre = pl_calloc(1, sizeof *s->pre);
    s->closing_since = pl_mono_ms();
  }
  return 0;
}
