/* pl_proxy: the PROXY protocol v2 header (haproxy's `send-proxy-v2`), a pure
 * codec over (pointer, length).
 *
 * A proxy in front of parleyd (haproxy, nginx stream, a cloud load
 * balancer) opens each connection with this binary header, which carries
 * the client's address: the limits, the login throttle and the logs then see
 * the client, not the proxy. Only version 2 is read; its TLVs are skipped. */
#ifndef PL_PROXY_H
#define PL_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../common/pl_err.h"

/* The longest header accepted (16 bytes + addresses + TLVs): haproxy's are
 * well under it; more is refused rather than buffered. */
#define PL_PROXY_MAX 1024

typedef struct pl_proxy_info {
  int local;                   /* command LOCAL (the proxy's own check): keep the socket's address */
  int has_addr;                /* src holds the client's address (TCP over IPv4 or IPv6) */
  struct sockaddr_storage src; /* the client's address and port */
} pl_proxy_info;

/* Parses the header at the start of p[0..n). PL_OK: *used bytes were the
 * header, *out says whose connection it is; PL_ERR_AGAIN: a valid start,
 * more bytes needed; PL_ERR_BAD_FRAME: not a PROXY v2 header (or longer
 * than PL_PROXY_MAX), the connection must be closed. */
pl_err pl_proxy_parse(const uint8_t *p, size_t n, pl_proxy_info *out, size_t *used);

#endif
