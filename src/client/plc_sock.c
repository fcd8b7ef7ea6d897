#include "plc_sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void plc_sock_init(plc_sock *s) {
  s->fd = -1;
  s->connecting = 0;
  s->ai = s->ai_cur = NULL;
}

static void plc__close_fd(plc_sock *s) {
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
      s->connecting = 0;
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

int plc_sock_finish(plc_sock *s) {
  if (!s->connecting)
    return s->fd >= 0 ? 1 : -1;
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
    err = errno;
  if (err == 0) {
    s->connecting = 0;
    freeaddrinfo(s->ai);
    s->ai = s->ai_cur = NULL;
    return 1;
  }
  if (err == EINPROGRESS || err == EALREADY)
    return 0;
  plc__close_fd(s);
  return plc__try_from(s, s->ai_cur ? s->ai_cur->ai_next : NULL) == 0 ? 0 : -1;
}

ssize_t plc_sock_read(plc_sock *s, void *p, size_t n) {
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
