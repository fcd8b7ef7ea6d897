#include "pb_mqc.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/pl_mem.h"

#define PB_MQC__READ 65536
#define PB_MQC__SUB_ID 1

static pl_mqtt_str pb_mqc__s(const char *s) {
  return s ? (pl_mqtt_str){(const uint8_t *)s, strlen(s)} : (pl_mqtt_str){0};
}

static void pb_mqc__queue(pb_mqc *m, const pl_mqtt_pkt *pk, const pl_mqtt_sub *subs, size_t nsubs) {
  pl_mqtt_encode(pk, PL_MQTT_V311, subs, nsubs, &m->out);
  if (m->state != PB_MQ_CONNECTING)
    pb_loop_defer(m->loop, &m->flush);
}

static void pb_mqc__drop(pb_mqc *m) {
  pb_loop_defer_cancel(m->loop, &m->flush);
  if (m->io.fd >= 0) {
    pb_io_del(m->loop, &m->io);
    close(m->io.fd);
    m->io.fd = -1;
  }
  pl_bytes_free(&m->in);
  pl_bytes_free(&m->out);
  m->out_off = 0;
  m->state = PB_MQ_IDLE;
}

static void pb_mqc__fail(pb_mqc *m, const char *why) {
  pb_mqc__drop(m);
  if (m->cbs->on_close)
    m->cbs->on_close(m, why);
}

static void pb_mqc__flush(pb_mqc *m) {
  if (m->io.fd < 0 || m->state == PB_MQ_CONNECTING)
    return;
  while (m->out_off < m->out.len) {
    ssize_t w = send(m->io.fd, m->out.p + m->out_off, m->out.len - m->out_off, MSG_NOSIGNAL);
    if (w > 0) {
      m->out_off += (size_t)w;
    } else if (w < 0 && errno == EAGAIN) {
      pb_io_mod(m->loop, &m->io, EPOLLIN | EPOLLOUT);
      return;
    } else if (!(w < 0 && errno == EINTR)) {
      pb_mqc__fail(m, w < 0 ? strerror(errno) : "write failed");
      return;
    }
  }
  m->out.len = m->out_off = 0;
  pb_io_mod(m->loop, &m->io, EPOLLIN);
}

static void pb_mqc__flush_cb(pb_defer *d) { pb_mqc__flush((pb_mqc *)((char *)d - offsetof(pb_mqc, flush))); }

/* ---- input ------------------------------------------------------------- */

static void pb_mqc__ready(pb_mqc *m) {
  m->state = PB_MQ_READY;
  if (m->cbs->on_ready)
    m->cbs->on_ready(m);
}

/* One whole packet; returns -1 if m was closed. */
static int pb_mqc__packet(pb_mqc *m, const pl_mqtt_pkt *pk) {
  switch (pk->type) {
  case PL_MQTT_CONNACK:
    if (pk->reason) {
      pb_mqc__fail(m, "CONNACK refused the login");
      return -1;
    }
    if (!m->want_suback)
      pb_mqc__ready(m);
    return 0;
  case PL_MQTT_SUBACK:
    if (pk->list.n < 1 || pk->list.p[0] >= 0x80) {
      pb_mqc__fail(m, "SUBACK refused the subscription");
      return -1;
    }
    m->want_suback = 0;
    pb_mqc__ready(m);
    return 0;
  case PL_MQTT_PUBLISH:
    if (pk->qos == 1)
      pb_mqc__queue(m, &(pl_mqtt_pkt){.type = PL_MQTT_PUBACK, .id = pk->id}, NULL, 0);
    if (pk->qos == 2) {
      pb_mqc__fail(m, "a QoS 2 PUBLISH (the bench asks for QoS 1)");
      return -1;
    }
    if (m->cbs->on_publish)
      m->cbs->on_publish(m, pk);
    return m->io.fd < 0 ? -1 : 0;
  case PL_MQTT_PUBACK:
    if (m->cbs->on_puback)
      m->cbs->on_puback(m, pk->id, pk->reason);
    return m->io.fd < 0 ? -1 : 0;
  case PL_MQTT_PINGRESP:
    return 0;
  default:
    pb_mqc__fail(m, "an unexpected packet from the broker");
    return -1;
  }
}

/* Parses the whole packets of p[0..n); returns the bytes used, or -1 if m
 * was closed. */
static ssize_t pb_mqc__parse(pb_mqc *m, const uint8_t *p, size_t n) {
  size_t off = 0;
  while (off < n) {
    uint8_t type, flags, why;
    size_t hlen, rlen;
    pl_err e = pl_mqtt_header(p + off, n - off, 0, &type, &flags, &hlen, &rlen, &why);
    if (e == PL_ERR_AGAIN || (e == PL_OK && n - off < hlen + rlen))
      break;
    pl_mqtt_pkt pk;
    if (e != PL_OK || pl_mqtt_decode(p + off, hlen + rlen, PL_MQTT_V311, &pk, &why) != PL_OK) {
      pb_mqc__fail(m, "a malformed packet from the broker");
      return -1;
    }
    if (pb_mqc__packet(m, &pk) < 0)
      return -1;
    off += hlen + rlen;
  }
  return (ssize_t)off;
}

static int pb_mqc__input(pb_mqc *m, const uint8_t *p, size_t n) {
  if (m->in.len) {
    pl_bytes_append(&m->in, p, n);
    ssize_t used = pb_mqc__parse(m, m->in.p, m->in.len);
    if (used < 0)
      return -1;
    pl_bytes_consume(&m->in, (size_t)used);
    return 0;
  }
  ssize_t used = pb_mqc__parse(m, p, n);
  if (used < 0)
    return -1;
  if ((size_t)used < n)
    pl_bytes_append(&m->in, p + used, n - (size_t)used);
  return 0;
}

static void pb_mqc__read(pb_mqc *m) {
  static uint8_t buf[PB_MQC__READ]; /* one loop per process: shared by its connections */
  for (int i = 0; i < 8; i++) {
    ssize_t r = recv(m->io.fd, buf, sizeof buf, 0);
    if (r > 0) {
      if (pb_mqc__input(m, buf, (size_t)r) < 0 || (size_t)r < sizeof buf)
        return;
    } else if (r == 0) {
      pb_mqc__fail(m, "closed by the broker");
      return;
    } else if (errno == EAGAIN || errno == EINTR) {
      return;
    } else {
      pb_mqc__fail(m, strerror(errno));
      return;
    }
  }
}

static void pb_mqc__on_io(pb_io *io, uint32_t ev) {
  pb_mqc *m = (pb_mqc *)io;
  if (m->state == PB_MQ_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(m->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
      err = errno;
    if (err) {
      pb_mqc__fail(m, strerror(err));
      return;
    }
    m->state = PB_MQ_LOGIN;
    pb_mqc__flush(m);
    return;
  }
  if (ev & EPOLLOUT) {
    pb_mqc__flush(m);
    if (m->io.fd < 0)
      return;
  }
  if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
    pb_mqc__read(m);
}

/* ---- starting ---------------------------------------------------------- */

static int pb_mqc__socket(const pb_mqc *m) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (m->src) {
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(m->src)};
    if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0)
      goto fail;
  }
  if (connect(fd, (const struct sockaddr *)m->server, sizeof *m->server) != 0 && errno != EINPROGRESS)
    goto fail;
  return fd;
fail:;
  int e = errno;
  close(fd);
  errno = e;
  return -1;
}

void pb_mqc_init(pb_mqc *m, pb_loop *l, const struct sockaddr_in *server, uint32_t src, const pb_mqc_cbs *cbs,
                 void *ud) {
  memset(m, 0, sizeof *m);
  m->io = (pb_io){.fd = -1, .cb = pb_mqc__on_io};
  m->flush.fn = pb_mqc__flush_cb;
  m->loop = l;
  m->server = server;
  m->src = src;
  m->cbs = cbs;
  m->ud = ud;
}

int pb_mqc_start(pb_mqc *m, const pb_mqc_login *login) {
  int fd = pb_mqc__socket(m);
  if (fd < 0)
    return -1;
  m->io.fd = fd;
  if (pb_io_add(m->loop, &m->io, EPOLLIN | EPOLLOUT) != 0) {
    int e = errno;
    pb_mqc__drop(m);
    errno = e;
    return -1;
  }
  m->state = PB_MQ_CONNECTING;
  pl_mqtt_pkt c = {.type = PL_MQTT_CONNECT,
                   .cflags = (uint8_t)((login->persist ? 0 : PL_MQTT_CF_CLEAN) |
                                       (login->user ? PL_MQTT_CF_USERNAME : 0) |
                                       (login->pass ? PL_MQTT_CF_PASSWORD : 0)),
                   .client_id = pb_mqc__s(login->client_id),
                   .username = pb_mqc__s(login->user),
                   .password = pb_mqc__s(login->pass)};
  pb_mqc__queue(m, &c, NULL, 0);
  if (login->sub) {
    pl_mqtt_sub s = {.filter = pb_mqc__s(login->sub), .opts = 1};
    pb_mqc__queue(m, &(pl_mqtt_pkt){.type = PL_MQTT_SUBSCRIBE, .id = PB_MQC__SUB_ID}, &s, 1);
    m->want_suback = 1;
  }
  return 0;
}

void pb_mqc_publish(pb_mqc *m, const char *topic, const void *payload, size_t n, uint16_t id) {
  pl_mqtt_pkt p = {.type = PL_MQTT_PUBLISH,
                   .qos = id ? 1 : 0,
                   .id = id,
                   .topic = pb_mqc__s(topic),
                   .payload = {(const uint8_t *)payload, n}};
  pb_mqc__queue(m, &p, NULL, 0);
}

void pb_mqc_close(pb_mqc *m) {
  if (m->state == PB_MQ_READY) {
    pl_mqtt_pkt d = {.type = PL_MQTT_DISCONNECT};
    m->out.len = m->out_off = 0;
    pl_mqtt_encode(&d, PL_MQTT_V311, NULL, 0, &m->out);
    (void)!send(m->io.fd, m->out.p, m->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  pb_mqc__drop(m);
}
