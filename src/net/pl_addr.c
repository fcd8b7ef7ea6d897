#include "pl_addr.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

void pl_addr_set(pl_addr *a, const struct sockaddr *sa) {
  memset(a, 0, sizeof *a);
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    memcpy(a->ip, &in->sin_addr, 4);
    a->port = ntohs(in->sin_port);
    a->family = 4;
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    memcpy(a->ip, &in6->sin6_addr, 16);
    a->port = ntohs(in6->sin6_port);
    a->family = 6;
  }
}

void pl_addr_of_peer(pl_addr *a, const uv_tcp_t *tcp) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  memset(a, 0, sizeof *a);
  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0)
    pl_addr_set(a, (const struct sockaddr *)&ss);
}

const char *pl_addr_str(const pl_addr *a, char out[PL_ADDR_STR]) {
  char ip[INET6_ADDRSTRLEN] = "?";
  out[0] = '\0';
  if (a->family == 4) {
    struct sockaddr_in in = {.sin_family = AF_INET};
    memcpy(&in.sin_addr, a->ip, 4);
    uv_ip4_name(&in, ip, sizeof ip);
  } else if (a->family == 6) {
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    memcpy(&in6.sin6_addr, a->ip, 16);
    uv_ip6_name(&in6, ip, sizeof ip);
  } else {
    return out;
  }
  snprintf(out, PL_ADDR_STR, "%s:%u", ip, (unsigned)a->port);
  return out;
}
