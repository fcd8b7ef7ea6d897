#include "pb_conn.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/pl_mem.h"

#define PB__SCRATCH (256u * 1024u)
#define PB__MAX_FRAME (16u << 20)
#define PB__HB_TICK_US 1000000u
#define PB__MAX_AUTH_TRIES 4

enum { STEP_RESUME, STEP_LOGIN, STEP_REGISTER };

static void pb__kick(pb_net *n);
static void pb__fail(pb_conn *c, const char *why);

/* ---- lists ------------------------------------------------------------- */

static void pb__open_link(pb_conn *c) {
  pb_net *n = c->net;
  c->prev = NULL;
  c->next = n->open;
  if (n->open)
    n->open->prev = c;
  n->open = c;
}

static void pb__open_unlink(pb_conn *c) {
  if (c->prev)
    c->prev->next = c->next;
  else if (c->net->open == c)
    c->net->open = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

static void pb__unqueue(pb_conn *c) {
  pb_net *n = c->net;
  pb_conn *prev = NULL;
  for (pb_conn *q = n->queue; q; prev = q, q = q->qnext) {
    if (q != c)
      continue;
    if (prev)
      prev->qnext = q->qnext;
    else
      n->queue = q->qnext;
    if (n->queue_tail == c)
      n->queue_tail = prev;
    break;
  }
  c->qnext = NULL;
}

static void pb__unack(pb_conn *c) {
  if (!c->ack_queued)
    return;
  for (pb_conn **pp = &c->net->acks; *pp; pp = &(*pp)->ack_next) {
    if (*pp == c) {
      *pp = c->ack_next;
      break;
    }
  }
  c->ack_queued = 0;
}

/* ---- output ------------------------------------------------------------ */

/* send() or SSL_write(), with send()'s results (EAGAIN in errno). */
static ssize_t pb__send(pb_conn *c, const void *p, size_t n) {
  if (!c->ssl)
    return send(c->io.fd, p, n, MSG_NOSIGNAL);
  int r = SSL_write(c->ssl, p, (int)n);
  if (r > 0)
    return r;
  int e = SSL_get_error(c->ssl, r);
  errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EPIPE;
  return -1;
}

static ssize_t pb__recv(pb_conn *c, void *p, size_t n) {
  if (!c->ssl)
    return recv(c->io.fd, p, n, 0);
  int r = SSL_read(c->ssl, p, (int)n);
  if (r > 0)
    return r;
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_ZERO_RETURN)
    return 0;
  errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : ECONNRESET;
  return -1;
}

static void pb__flush(pb_conn *c) {
  if (c->io.fd < 0 || c->state == PB_C_CONNECTING)
    return;
  while (c->out_off < c->out.len) {
    ssize_t w = pb__send(c, c->out.p + c->out_off, c->out.len - c->out_off);
    if (w > 0) {
      c->out_off += (size_t)w;
    } else if (w < 0 && errno == EAGAIN) {
      pb_io_mod(c->net->loop, &c->io, EPOLLIN | EPOLLOUT);
      return;
    } else if (!(w < 0 && errno == EINTR)) {
      pb__fail(c, w < 0 ? strerror(errno) : "write failed");
      return;
    }
  }
  c->out.len = c->out_off = 0;
  if (c->out.cap > 64u * 1024u)
    pl_bytes_free(&c->out);
  pb_io_mod(c->net->loop, &c->io, EPOLLIN);
}

static void pb__flush_cb(pb_defer *d) { pb__flush((pb_conn *)((char *)d - offsetof(pb_conn, flush))); }

static void pb__queue(pb_conn *c, uint8_t type, const ProtobufCMessage *m) {
  pl_frame_append(&c->out, type, m);
  c->last_tx_us = pb_now_us();
  if (c->state != PB_C_CONNECTING)
    pb_loop_defer(c->net->loop, &c->flush);
}

int pb_conn_send(pb_conn *c, uint8_t type, const ProtobufCMessage *m) {
  if (c->io.fd < 0)
    return -1;
  pb__queue(c, type, m);
  return 0;
}

size_t pb_conn_pending(const pb_conn *c) { return c->out.len - c->out_off; }

void pb_conn_ack(pb_conn *c) {
  pb__unack(c);
  if (c->io.fd < 0 || c->max_qid <= c->acked_qid)
    return;
  Parley__Ack a = PARLEY__ACK__INIT;
  a.upto = c->max_qid;
  pb__queue(c, PARLEY__FRAME_TYPE__FRAME_ACK, &a.base);
  c->acked_qid = c->max_qid;
  c->unacked = 0;
}

/* ---- authentication ------------------------------------------------------ */

static void pb__send_auth(pb_conn *c) {
  char name[32];
  pb_users_name(c->uidx, name, sizeof name);
  c->auth_tries++;
  if (c->step == STEP_RESUME) {
    Parley__Resume r = PARLEY__RESUME__INIT;
    r.token = (char *)pb_users_token(c->net->users, c->uidx);
    pb__queue(c, PARLEY__FRAME_TYPE__FRAME_RESUME, &r.base);
  } else if (c->step == STEP_LOGIN) {
    Parley__Login r = PARLEY__LOGIN__INIT;
    r.user = name;
    r.password = PB_PASSWORD;
    r.device = "default";
    pb__queue(c, PARLEY__FRAME_TYPE__FRAME_LOGIN, &r.base);
  } else {
    Parley__Register r = PARLEY__REGISTER__INIT;
    r.user = name;
    r.password = PB_PASSWORD;
    r.device = "default";
    pb__queue(c, PARLEY__FRAME_TYPE__FRAME_REGISTER, &r.base);
  }
}

static void pb__send_hello(pb_conn *c) {
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = PL_PROTOCOL_VERSION;
  h.kind = PARLEY__CLIENT_KIND__KIND_BOT;
  h.client_name = "parley-bench/0.1";
  pb__queue(c, PARLEY__FRAME_TYPE__FRAME_HELLO, &h.base);
}

static void pb__auth_ok(pb_conn *c, const Parley__AuthOk *a) {
  pb_net *n = c->net;
  if (c->step != STEP_RESUME && a->token && *a->token)
    pb_users_set_token(n->users, c->uidx, a->token);
  if (c->step == STEP_REGISTER)
    n->registered++;
  c->state = PB_C_READY;
  c->t_ready_us = pb_now_us();
  n->handshaking--;
  n->ready++;
  pb__kick(n);
  c->cbs->on_ready(c);
}

/* The fallback chain after a refused authentication. */
static void pb__auth_error(pb_conn *c, const Parley__Error *e) {
  int next = -1;
  if (e->code == PARLEY__ERROR_CODE__ERR_BAD_TOKEN)
    next = STEP_LOGIN;
  else if (e->code == PARLEY__ERROR_CODE__ERR_BAD_CREDENTIALS && c->step == STEP_LOGIN)
    next = STEP_REGISTER;
  else if (e->code == PARLEY__ERROR_CODE__ERR_USER_EXISTS)
    next = STEP_LOGIN;
  if (next < 0 || c->auth_tries >= PB__MAX_AUTH_TRIES) {
    c->attempts = c->net->max_attempts; /* refused: retrying the same would not help */
    pb__fail(c, e->message && *e->message ? e->message : "authentication refused");
    return;
  }
  if (c->step == STEP_RESUME)
    c->net->relogins++;
  c->step = (uint8_t)next;
  pb__send_auth(c);
}

static void pb__auth_frame(pb_conn *c, uint8_t type, const ProtobufCMessage *m) {
  if (type == PARLEY__FRAME_TYPE__FRAME_WELCOME) {
    const Parley__Welcome *w = (const Parley__Welcome *)m;
    if (w->heartbeat_ms)
      c->hb_ms = w->heartbeat_ms;
  } else if (type == PARLEY__FRAME_TYPE__FRAME_AUTH_OK) {
    pb__auth_ok(c, (const Parley__AuthOk *)m);
  } else if (type == PARLEY__FRAME_TYPE__FRAME_ERROR) {
    pb__auth_error(c, (const Parley__Error *)m);
  }
}

/* ---- input ------------------------------------------------------------- */

static void pb__ready_frame(pb_conn *c, uint8_t type, const ProtobufCMessage *m) {
  if (type == PARLEY__FRAME_TYPE__FRAME_PONG)
    return;
  if (type == PARLEY__FRAME_TYPE__FRAME_MESSAGE) {
    const Parley__Message *msg = (const Parley__Message *)m;
    if (msg->qid > c->max_qid)
      c->max_qid = msg->qid;
    c->unacked++;
  } else if (type == PARLEY__FRAME_TYPE__FRAME_RECEIPT || type == PARLEY__FRAME_TYPE__FRAME_READ_SYNC) {
    /* Queued like messages (same qid sequence): acked with them, as a
     * client must; their cost is part of what the bench measures. */
    uint64_t qid = type == PARLEY__FRAME_TYPE__FRAME_RECEIPT ? ((const Parley__Receipt *)m)->qid
                                                             : ((const Parley__ReadSync *)m)->qid;
    if (qid > c->max_qid)
      c->max_qid = qid;
    c->unacked++;
    c->receipts++;
    return;
  }
  c->cbs->on_frame(c, type, m);
}

static void pb__frame(pb_conn *c, const pl_frame *f) {
  ProtobufCMessage *m = pl_frame_unpack(f);
  if (!m) {
    pb__fail(c, "undecodable frame from the server");
    return;
  }
  if (c->state == PB_C_READY)
    pb__ready_frame(c, f->type, m);
  else
    pb__auth_frame(c, f->type, m);
  protobuf_c_message_free_unpacked(m, NULL);
}

/* Dispatches whole frames of p[0..n); returns the bytes consumed, or n if
 * the connection was dropped meanwhile (the rest belongs to no one). */
static size_t pb__parse(pb_conn *c, const uint8_t *p, size_t n) {
  uint32_t gen = c->gen;
  size_t off = 0;
  for (;;) {
    pl_frame f;
    size_t used;
    pl_err e = pl_frame_parse(p + off, n - off, PB__MAX_FRAME, &f, &used);
    if (e == PL_ERR_AGAIN)
      return off;
    if (e != PL_OK) {
      pb__fail(c, "bad framing from the server");
      return n;
    }
    off += used;
    pb__frame(c, &f);
    if (c->gen != gen)
      return n;
  }
}

static void pb__input(pb_conn *c, const uint8_t *p, size_t n) {
  uint32_t gen = c->gen;
  if (c->in.len == 0) {
    size_t used = pb__parse(c, p, n);
    if (c->gen == gen && used < n)
      pl_bytes_append(&c->in, p + used, n - used);
    return;
  }
  pl_bytes_append(&c->in, p, n);
  size_t used = pb__parse(c, c->in.p, c->in.len);
  if (c->gen == gen)
    pl_bytes_consume(&c->in, used);
}

static void pb__after_read(pb_conn *c) {
  if (c->unacked >= c->net->ack_batch) {
    pb_conn_ack(c);
  } else if (c->unacked && !c->ack_queued) {
    pb_net *n = c->net;
    c->ack_queued = 1;
    c->ack_next = n->acks;
    n->acks = c;
    if (!n->ack_timer.armed)
      pb_timer_start(n->loop, &n->ack_timer, pb_now_us() + n->ack_delay_us);
  }
}

static void pb__read(pb_conn *c) {
  uint32_t gen = c->gen;
  /* TLS hands out a record at a time: what it holds decrypted is read too */
  for (int i = 0; i < 8 || (c->ssl && SSL_pending(c->ssl) > 0); i++) {
    ssize_t r = pb__recv(c, c->net->scratch, PB__SCRATCH);
    if (r > 0) {
      pb__input(c, c->net->scratch, (size_t)r);
      if (c->gen != gen)
        return;
      if ((size_t)r < PB__SCRATCH && !(c->ssl && SSL_pending(c->ssl) > 0))
        break;
    } else if (r == 0) {
      pb__fail(c, "closed by the server");
      return;
    } else if (errno == EAGAIN || errno == EINTR) {
      break;
    } else {
      pb__fail(c, strerror(errno));
      return;
    }
  }
  pb__after_read(c);
}

/* ---- connecting and closing -------------------------------------------- */

static void pb__connected(pb_conn *c) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
    err = errno;
  if (err) {
    pb__fail(c, strerror(err));
    return;
  }
  if (c->net->tls) {
    c->ssl = SSL_new(c->net->tls);
    SSL_set_fd(c->ssl, c->io.fd);
    SSL_set_connect_state(c->ssl);
    return; /* the handshake is next (pb__handshake) */
  }
  c->state = PB_C_AUTH;
  pb__flush(c);
}

/* One step of the TLS handshake; Hello and the authentication go once done. */
static void pb__handshake(pb_conn *c) {
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    c->state = PB_C_AUTH;
    pb__flush(c);
    return;
  }
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ)
    pb_io_mod(c->net->loop, &c->io, EPOLLIN);
  else if (e == SSL_ERROR_WANT_WRITE)
    pb_io_mod(c->net->loop, &c->io, EPOLLIN | EPOLLOUT);
  else
    pb__fail(c, "TLS handshake failed");
}

static void pb__on_io(pb_io *io, uint32_t ev) {
  pb_conn *c = (pb_conn *)io;
  uint32_t gen = c->gen;
  if (c->state == PB_C_CONNECTING) {
    if (!c->ssl)
      pb__connected(c);
    if (c->gen == gen && c->ssl && c->state == PB_C_CONNECTING)
      pb__handshake(c);
    if (c->gen != gen || c->state == PB_C_CONNECTING)
      return;
  } else if (ev & EPOLLOUT) {
    pb__flush(c);
    if (c->gen != gen)
      return;
  }
  if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
    pb__read(c);
}

static int pb__socket(pb_conn *c) {
  pb_net *n = c->net;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (n->src_base) {
    /* The port is picked at connect(), per 4-tuple: ~28k per source address. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(n->src_base + c->uidx / (n->per_addr ? n->per_addr : 1));
    if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0)
      goto fail;
  }
  if (connect(fd, (struct sockaddr *)&n->server, sizeof n->server) != 0 && errno != EINPROGRESS)
    goto fail;
  return fd;
fail:;
  int e = errno;
  close(fd);
  errno = e;
  return -1;
}

/* Opens the socket and queues Hello + authentication behind the connect. */
static void pb__open(pb_conn *c) {
  pb_net *n = c->net;
  c->attempts++;
  c->state = PB_C_CONNECTING;
  c->t_start_us = pb_now_us();
  n->handshaking++;
  c->io.fd = pb__socket(c);
  if (c->io.fd < 0 || pb_io_add(n->loop, &c->io, EPOLLIN | EPOLLOUT) != 0) {
    c->attempts = n->max_attempts;
    pb__fail(c, strerror(errno));
    return;
  }
  pb__open_link(c);
  c->hb_ms = 30000;
  c->auth_tries = 0;
  c->max_qid = c->acked_qid = 0;
  c->unacked = 0;
  c->step = pb_users_token(n->users, c->uidx) ? STEP_RESUME : STEP_REGISTER;
  pb__send_hello(c);
  pb__send_auth(c);
}

static void pb__kick(pb_net *n) {
  if (n->kicking)
    return;
  n->kicking = 1;
  while (n->queue && (!n->max_handshakes || n->handshaking < n->max_handshakes)) {
    pb_conn *c = n->queue;
    n->queue = c->qnext;
    if (!n->queue)
      n->queue_tail = NULL;
    c->qnext = NULL;
    pb__open(c);
  }
  n->kicking = 0;
}

void pb_conn_start(pb_conn *c) {
  pb_net *n = c->net;
  if (c->state != PB_C_IDLE)
    return;
  c->state = PB_C_QUEUED;
  if (n->queue_tail)
    n->queue_tail->qnext = c;
  else
    n->queue = c;
  n->queue_tail = c;
  pb__kick(n);
}

void pb_conn_drop(pb_conn *c, int rst) {
  pb_net *n = c->net;
  if (c->state == PB_C_QUEUED)
    pb__unqueue(c);
  if (c->state == PB_C_CONNECTING || c->state == PB_C_AUTH)
    n->handshaking--;
  if (c->io.fd >= 0) {
    if (rst) {
      struct linger lg = {.l_onoff = 1, .l_linger = 0};
      setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    pb_io_del(n->loop, &c->io);
    if (c->ssl)
      SSL_free(c->ssl); /* no close_notify: the bench's drops are abrupt on purpose */
    c->ssl = NULL;
    close(c->io.fd);
    c->io.fd = -1;
    pb__open_unlink(c);
  }
  pb__unack(c);
  pb_loop_defer_cancel(n->loop, &c->flush);
  c->state = PB_C_IDLE;
  c->gen++;
  c->out_off = 0;
  pl_bytes_free(&c->out);
  pl_bytes_free(&c->in);
  pb__kick(n);
}

/* A connection that broke: retried while handshaking, else reported. */
static void pb__fail(pb_conn *c, const char *why) {
  pb_net *n = c->net;
  int was_ready = c->state == PB_C_READY;
  char reason[160];
  snprintf(reason, sizeof reason, "%s", why); /* why may live in the buffers freed below */
  pb_conn_drop(c, 0);
  if (!was_ready && c->attempts < n->max_attempts) {
    n->retries++;
    pb_conn_start(c);
    return;
  }
  if (was_ready)
    n->lost_after_ready++;
  else
    n->failed++;
  c->cbs->on_close(c, reason);
}

/* ---- timers and set-up ------------------------------------------------- */

static void pb__ack_tick(pb_timer *t) {
  pb_net *n = t->ud;
  while (n->acks)
    pb_conn_ack(n->acks);
}

static void pb__hb_tick(pb_timer *t) {
  pb_net *n = t->ud;
  uint64_t now = pb_now_us();
  Parley__Ping p = PARLEY__PING__INIT;
  for (pb_conn *c = n->open; c; c = c->next) {
    if (c->state < PB_C_AUTH || now - c->last_tx_us < (uint64_t)c->hb_ms * 500u)
      continue;
    p.client_ts = (uint64_t)now;
    pb__queue(c, PARLEY__FRAME_TYPE__FRAME_PING, &p.base);
  }
  pb_timer_start(n->loop, t, now + PB__HB_TICK_US);
}

void pb_net_init(pb_net *n, pb_loop *l, const struct sockaddr_in *server, pb_users *users) {
  memset(n, 0, sizeof *n);
  n->loop = l;
  n->server = *server;
  n->users = users;
  n->per_addr = 10000;
  n->ack_batch = 64;
  n->ack_delay_us = 5000;
  n->max_attempts = 3;
  n->scratch = pl_malloc(PB__SCRATCH);
  n->ack_timer = (pb_timer){.cb = pb__ack_tick, .ud = n};
  n->hb_timer = (pb_timer){.cb = pb__hb_tick, .ud = n};
  pb_timer_start(l, &n->hb_timer, pb_now_us() + PB__HB_TICK_US);
}

void pb_net_tls(pb_net *n) {
  n->tls = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(n->tls, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_mode(n->tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

void pb_net_free(pb_net *n) {
  SSL_CTX_free(n->tls);
  n->tls = NULL;
  pb_timer_stop(n->loop, &n->ack_timer);
  pb_timer_stop(n->loop, &n->hb_timer);
  pl_free(n->scratch);
  n->scratch = NULL;
}

void pb_conn_init(pb_conn *c, pb_net *n, uint32_t uidx, const pb_conn_cbs *cbs, void *ud) {
  memset(c, 0, sizeof *c);
  c->io = (pb_io){.fd = -1, .cb = pb__on_io};
  c->flush.fn = pb__flush_cb;
  c->net = n;
  c->cbs = cbs;
  c->ud = ud;
  c->uidx = uidx;
}
