#include "pl_proxy.h"

#include <netinet/in.h>
#include <string.h>

/* haproxy's proxy-protocol.txt, section 2.2. */
static const uint8_t pl__sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum { PL__HEAD = 16, PL__CMD_LOCAL = 0x0, PL__CMD_PROXY = 0x1 };
enum { PL__AF_INET = 0x1, PL__AF_INET6 = 0x2, PL__STREAM = 0x1 };

pl_err pl_proxy_parse(const uint8_t *p, size_t n, pl_proxy_info *out, size_t *used) {
  memset(out, 0, sizeof *out);
  /* Whatever has arrived of the signature must match it already: a client
   * speaking TLS or the native protocol directly is refused at once. */
  size_t sig = n < sizeof pl__sig ? n : sizeof pl__sig;
  if (memcmp(p, pl__sig, sig) != 0)
    return PL_ERR_BAD_FRAME;
  if (n < PL__HEAD)
    return PL_ERR_AGAIN;
  uint8_t ver = p[12] >> 4, cmd = p[12] & 0x0f, fam = p[13] >> 4, proto = p[13] & 0x0f;
  size_t len = (size_t)p[14] << 8 | p[15];
  if (ver != 2 || (cmd != PL__CMD_LOCAL && cmd != PL__CMD_PROXY) || PL__HEAD + len > PL_PROXY_MAX)
    return PL_ERR_BAD_FRAME;
  if (n < PL__HEAD + len)
    return PL_ERR_AGAIN;
  const uint8_t *a = p + PL__HEAD;
  *used = PL__HEAD + len;
  out->local = cmd == PL__CMD_LOCAL;
  if (out->local || proto != PL__STREAM)
    return PL_OK; /* a health check, or an address we do not count by: the socket's stands */
  if (fam == PL__AF_INET) {
    if (len < 12)
      return PL_ERR_BAD_FRAME;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&out->src;
    s4->sin_family = AF_INET;
    memcpy(&s4->sin_addr, a, 4);
    memcpy(&s4->sin_port, a + 8, 2); /* both big-endian on the wire and in sockaddr */
    out->has_addr = 1;
  } else if (fam == PL__AF_INET6) {
    if (len < 36)
      return PL_ERR_BAD_FRAME;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->src;
    s6->sin6_family = AF_INET6;
    memcpy(&s6->sin6_addr, a, 16);
    memcpy(&s6->sin6_port, a + 32, 2);
    out->has_addr = 1;
  }
  return PL_OK;
}
