/* pl_addr: a peer's address as the connection keeps it.
 *
 * Every connection holds its client's address for logs and the login
 * throttle; as text ("[v6]:port") that was 48 bytes a connection, read only
 * when a line is logged. The binary form is 20: the text is made on demand
 * into the caller's buffer. */
#ifndef PL_ADDR_H
#define PL_ADDR_H

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

/* Room for pl_addr_str's text, with its terminator. */
#define PL_ADDR_STR 48

typedef struct pl_addr {
  uint8_t ip[16]; /* IPv4: the first 4 bytes */
  uint16_t port;  /* host order */
  uint8_t family; /* 0: unknown, 4, 6 */
  uint8_t spare;
} pl_addr;

/* a from a socket address (unknown for other families). */
void pl_addr_set(pl_addr *a, const struct sockaddr *sa);
/* a from the peer of a connected socket (unknown if it has none). */
void pl_addr_of_peer(pl_addr *a, const uv_tcp_t *tcp);
/* "ip:port" into out (IPv6 without brackets, as before); "" if unknown.
 * Returns out, so it can sit in a log call. */
const char *pl_addr_str(const pl_addr *a, char out[PL_ADDR_STR]);

#endif
