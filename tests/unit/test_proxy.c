/* pl_proxy: the PROXY protocol v2 header, as haproxy's send-proxy-v2 writes it. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "net/pl_proxy.h"
#include "testlib.h"

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A PROXY header for TCP over IPv4 from src:sport, then "rest". */
static size_t v4(uint8_t *out, const char *src, uint16_t sport, uint8_t cmd, const char *rest) {
  memcpy(out, SIG, 12);
  out[12] = (uint8_t)(0x20 | cmd);
  out[13] = 0x11;
  out[14] = 0;
  out[15] = 12;
  inet_pton(AF_INET, src, out + 16);
  inet_pton(AF_INET, "192.0.2.1", out + 20);
  out[24] = (uint8_t)(sport >> 8), out[25] = (uint8_t)sport;
  out[26] = 0x1e, out[27] = 0x14;
  memcpy(out + 28, rest, strlen(rest));
  return 28 + strlen(rest);
}

static void test_ipv4_then_data(void) {
  uint8_t b[64];
  size_t n = v4(b, "203.0.113.7", 40001, 1, "hello");
  pl_proxy_info in;
  size_t used = 0;
  CHECK_EQ_I(pl_proxy_parse(b, n, &in, &used), PL_OK);
  CHECK_EQ_U(used, 28); /* what follows is the connection's */
  CHECK(in.has_addr && !in.local);
  const struct sockaddr_in *a = (const struct sockaddr_in *)&in.src;
  char ip[32];
  inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
  CHECK(!strcmp(ip, "203.0.113.7"));
  CHECK_EQ_U(ntohs(a->sin_port), 40001);
}

static void test_split_needs_more(void) {
  uint8_t b[64];
  size_t n = v4(b, "203.0.113.7", 1, 1, "");
  pl_proxy_info in;
  size_t used;
  for (size_t k = 0; k < n; k++) /* every prefix: more, never a refusal */
    CHECK_EQ_I(pl_proxy_parse(b, k, &in, &used), PL_ERR_AGAIN);
}

static void test_ipv6_local_and_tlvs(void) {
  uint8_t b[80] = {0};
  memcpy(b, SIG, 12);
  b[12] = 0x21, b[13] = 0x21, b[15] = 36 + 7;
  inet_pton(AF_INET6, "2001:db8::5", b + 16);
  b[48] = 0x9c, b[49] = 0x41;
  memcpy(b + 52,
         "\x04\x00\x04"
         "abcd",
         7); /* a TLV, skipped */
  pl_proxy_info in;
  size_t used;
  CHECK_EQ_I(pl_proxy_parse(b, 59, &in, &used), PL_OK);
  CHECK_EQ_U(used, 59);
  CHECK(in.has_addr && in.src.ss_family == AF_INET6);
  CHECK_EQ_U(ntohs(((const struct sockaddr_in6 *)&in.src)->sin6_port), 40001);
  b[12] = 0x20, b[13] = 0x00, b[15] = 0; /* LOCAL: the proxy's own check */
  CHECK_EQ_I(pl_proxy_parse(b, 16, &in, &used), PL_OK);
  CHECK(in.local && !in.has_addr);
}

static void test_refusals(void) {
  uint8_t b[64];
  size_t n = v4(b, "203.0.113.7", 1, 1, ""), used;
  pl_proxy_info in;
  const uint8_t hello[] = {0, 0, 0, 3, 1, 8, 1}; /* a native client without a proxy */
  CHECK_EQ_I(pl_proxy_parse(hello, sizeof hello, &in, &used), PL_ERR_BAD_FRAME);
  CHECK_EQ_I(pl_proxy_parse((const uint8_t *)"\x16\x03\x01", 3, &in, &used), PL_ERR_BAD_FRAME); /* TLS */
  CHECK_EQ_I(pl_proxy_parse((const uint8_t *)"PROXY TCP4 ", 11, &in, &used), PL_ERR_BAD_FRAME); /* v1 */
  b[12] = 0x11; /* version 1 in the binary form */
  CHECK_EQ_I(pl_proxy_parse(b, n, &in, &used), PL_ERR_BAD_FRAME);
  b[12] = 0x21;
  b[14] = 0x10; /* 4 KiB of TLVs: more than it buffers */
  CHECK_EQ_I(pl_proxy_parse(b, n, &in, &used), PL_ERR_BAD_FRAME);
  b[14] = 0, b[15] = 8; /* too short for two IPv4 addresses and ports */
  CHECK_EQ_I(pl_proxy_parse(b, n, &in, &used), PL_ERR_BAD_FRAME);
}

int main(void) {
  RUN(test_ipv4_then_data);
  RUN(test_split_needs_more);
  RUN(test_ipv6_local_and_tlvs);
  RUN(test_refusals);
  return tl_summary();
}
