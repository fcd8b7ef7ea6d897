/* pl_busmsg: the cluster bus's message codec. */
#include <stdlib.h>
#include <string.h>

#include "cluster/pl_busmsg.h"
#include "testlib.h"

static size_t enc(const pl_busmsg *m, uint8_t *out, size_t cap) {
  size_t n = 0;
  CHECK_EQ_I(pl_busmsg_encode(m, out, cap, &n), PL_OK);
  CHECK_EQ_U(n, pl_busmsg_size(m));
  return n;
}

static void test_round_trip(void) {
  static const uint64_t ids[] = {1, 0xffffffffffffffffull, 42};
  static const uint8_t frame[] = {0, 0, 0, 3, 7, 'a', 'b', 'c'};
  pl_busmsg m = {.type = PL_BUSMSG_FRAME,
                 .node_len = 6,
                 .node = "node-a",
                 .incarnation = 1765000000123ull,
                 .a = 7,
                 .b = 1ull << 40,
                 .nids = 3,
                 .ids = ids,
                 .plen = sizeof frame,
                 .payload = frame};
  uint8_t buf[256];
  size_t n = enc(&m, buf, sizeof buf);
  CHECK_EQ_U(n, PL_BUSMSG_HEADER + 6 + 3 * 8 + sizeof frame);
  pl_busmsg d;
  CHECK_EQ_I(pl_busmsg_decode(buf, n, &d), PL_OK);
  CHECK_EQ_U(d.type, PL_BUSMSG_FRAME);
  CHECK_EQ_U(d.node_len, 6);
  CHECK(memcmp(d.node, "node-a", 6) == 0);
  CHECK_EQ_U(d.incarnation, 1765000000123ull);
  CHECK_EQ_U(d.a, 7);
  CHECK_EQ_U(d.b, 1ull << 40);
  CHECK_EQ_U(d.nids, 3);
  for (uint32_t i = 0; i < 3; i++)
    CHECK_EQ_U(pl_busmsg_id(&d, i), ids[i]);
  CHECK_EQ_U(d.plen, sizeof frame);
  CHECK(memcmp(d.payload, frame, sizeof frame) == 0);
  CHECK_STR(pl_busmsg_type_name(d.type), "FRAME");
}

/* A message with neither ids nor payload (ALIVE) is the header and the name. */
static void test_minimal(void) {
  pl_busmsg m = {.type = PL_BUSMSG_ALIVE, .node_len = 1, .node = "x", .a = 2000};
  uint8_t buf[64];
  size_t n = enc(&m, buf, sizeof buf);
  CHECK_EQ_U(n, PL_BUSMSG_HEADER + 1);
  pl_busmsg d;
  CHECK_EQ_I(pl_busmsg_decode(buf, n, &d), PL_OK);
  CHECK_EQ_U(d.a, 2000);
  CHECK(d.payload == NULL && d.nids == 0);
}

/* Every prefix of a message, and the message with one byte more, is refused. */
static void test_truncated_and_trailing(void) {
  static const uint64_t ids[] = {5, 6};
  pl_busmsg m = {.type = PL_BUSMSG_HINT,
                 .node_len = 2,
                 .node = "n1",
                 .nids = 2,
                 .ids = ids,
                 .plen = 3,
                 .payload = (const uint8_t *)"abc"};
  uint8_t buf[128];
  size_t n = enc(&m, buf, sizeof buf - 1);
  pl_busmsg d;
  for (size_t len = 0; len < n; len++)
    CHECK_EQ_I(pl_busmsg_decode(buf, len, &d), PL_ERR_BAD_FRAME);
  buf[n] = 0;
  CHECK_EQ_I(pl_busmsg_decode(buf, n + 1, &d), PL_ERR_BAD_FRAME);
  CHECK_EQ_I(pl_busmsg_decode(buf, n, &d), PL_OK);
}

/* Bad magic, version, type, node length, and counts that claim more than
 * the input holds (a count near 2^32 must not wrap a length check). */
static void test_bad_fields(void) {
  pl_busmsg m = {.type = PL_BUSMSG_KICK, .node_len = 1, .node = "n", .a = 9};
  uint8_t good[64], buf[64];
  size_t n = enc(&m, good, sizeof good);
  pl_busmsg d;
  struct {
    size_t at;
    uint8_t v;
  } bad[] = {{0, 'X'}, {2, 2}, {3, 0}, {3, PL_BUSMSG_TYPE_MAX + 1}, {4, 64}, {4, 0xff}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memcpy(buf, good, n);
    buf[bad[i].at] = bad[i].v;
    CHECK_EQ_I(pl_busmsg_decode(buf, n, &d), PL_ERR_BAD_FRAME);
  }
  /* nids at offset 5 + 1 + 24: claim 0xffffffff ids */
  memcpy(buf, good, n);
  memset(buf + 30, 0xff, 4);
  CHECK_EQ_I(pl_busmsg_decode(buf, n, &d), PL_ERR_BAD_FRAME);
  /* plen (the last 4 bytes): claim 0xffffffff bytes */
  memcpy(buf, good, n);
  memset(buf + n - 4, 0xff, 4);
  CHECK_EQ_I(pl_busmsg_decode(buf, n, &d), PL_ERR_BAD_FRAME);
}

static void test_encode_limits(void) {
  uint8_t buf[64];
  size_t n;
  pl_busmsg m = {.type = 0, .node_len = 1, .node = "n"};
  CHECK_EQ_I(pl_busmsg_encode(&m, buf, sizeof buf, &n), PL_ERR_INVALID_ARGUMENT);
  m.type = PL_BUSMSG_ALIVE;
  m.node_len = PL_BUSMSG_MAX_NODE + 1;
  CHECK_EQ_I(pl_busmsg_encode(&m, buf, sizeof buf, &n), PL_ERR_INVALID_ARGUMENT);
  m.node_len = 1;
  m.nids = PL_BUSMSG_MAX_IDS + 1;
  m.ids = (const uint64_t *)buf;
  CHECK_EQ_U(pl_busmsg_size(&m), 0);
  m.nids = 0;
  CHECK_EQ_I(pl_busmsg_encode(&m, buf, PL_BUSMSG_HEADER, &n), PL_ERR_NOMEM);
  CHECK_STR(pl_busmsg_type_name(200), "?");
}

int main(void) {
  RUN(test_round_trip);
  RUN(test_minimal);
  RUN(test_truncated_and_trailing);
  RUN(test_bad_fields);
  RUN(test_encode_limits);
  return tl_summary();
}
