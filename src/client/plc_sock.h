/* plc_sock: libparley's non-blocking TCP socket, nothing protocol specific.
 *
 * A connect walks the resolved addresses in order: each attempt is a
 * non-blocking connect whose outcome the caller learns by polling for
 * POLLOUT and calling plc_sock_finish(); on failure it moves to the next. */
#ifndef PLC_SOCK_H
#define PLC_SOCK_H

#include <netdb.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct plc_sock {
  int fd;                  /* -1 when closed */
  int connecting;          /* a connect is in progress on fd */
  struct addrinfo *ai;     /* resolved addresses (freed once connected) */
  struct addrinfo *ai_cur; /* the address being tried */
} plc_sock;

void plc_sock_init(plc_sock *s);

/* Resolves host:port (blocking: getaddrinfo) and starts connecting to the
 * first address that accepts a connect attempt. Returns 0 (connecting or
 * connected: see s->connecting) or -1 if no address could be tried. */
int plc_sock_open(plc_sock *s, const char *host, int port);

/* After POLLOUT (or POLLERR/POLLHUP) on a connecting socket: returns 1 once
 * connected, 0 if still in progress (an attempt failed and the next address
 * is being tried), -1 if every address failed. */
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
