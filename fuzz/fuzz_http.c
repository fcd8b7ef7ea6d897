/* fuzz_http: the HTTP request path (pl_httpreq over http-parser).
 *
 * Input: byte 0 picks the size of the pieces the rest is fed in (as reads
 * would cut it). Requests are taken one at a time as the server does; each
 * whole one must be sane (a method, a NUL-terminated URL within the limit,
 * a body within its limit), and an error must be an HTTP status. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_mem.h"
#include "web/pl_httpreq.h"

#define FUZZ_CHECK(cond)                                                           \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "fuzz_http: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

/* Requests to /media stream their bodies (as uploads do), up to 8 KiB. */
static int on_head(void *ud, pl_httpreq *r) {
  (void)ud;
  if (!strncmp(r->req.url, "/media", 6)) {
    r->stream = 1;
    r->max_body = 8192;
  }
  return !strncmp(r->req.url, "/refuse", 7) ? 401 : 0;
}

/* A Range header against a few body sizes: a range given is inside. */
static void check_range(const char *v) {
  static const uint64_t lens[] = {0, 1, 10, 1000, UINT64_MAX >> 2};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    uint64_t first = 0, last = 0;
    int rc = pl_http_range(v, lens[i], &first, &last);
    FUZZ_CHECK(rc >= -1 && rc <= 1);
    if (rc == 1)
      FUZZ_CHECK(first <= last && last < lens[i]);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t piece = (size_t)data[0] % 64 + 1;
  data++, size--;
  pl_httpreq r;
  pl_httpreq_init(&r, 2048, 4096);
  r.on_head = on_head;
  uint64_t streamed = 0;
  size_t off = 0;
  int requests = 0;
  while (off < size) {
    size_t n = size - off < piece ? size - off : piece;
    int st;
    size_t used = pl_httpreq_feed(&r, data + off, n, &st);
    FUZZ_CHECK(used <= n);
    off += used;
    if (r.stream) { /* the caller takes the body out after each feed */
      streamed += r.req.body.len;
      FUZZ_CHECK(streamed == r.body_total && streamed <= 8192);
      r.req.body.len = 0;
    }
    if (st >= 400) {
      FUZZ_CHECK(st < 600);
      break;
    }
    if (st == 1) {
      const pl_http_req *q = &r.req;
      FUZZ_CHECK(q->method != NULL);
      FUZZ_CHECK(q->url_len <= PL_HTTP_MAX_URL && strlen(q->url) <= q->url_len);
      FUZZ_CHECK(q->body.len <= 4096);
      check_range(q->hdr[PL_H_RANGE]);
      const char *bearer = pl_http_bearer(q);
      if (bearer) /* inside the header, not empty, no space first */
        FUZZ_CHECK(q->hdr[PL_H_AUTHORIZATION] && bearer > q->hdr[PL_H_AUTHORIZATION] && *bearer &&
                   *bearer != ' ');
      streamed = 0;
      for (int i = 0; i < PL_H__COUNT; i++)
        if (q->hdr[i])
          (void)pl_http_has_token(q->hdr[i], "upgrade");
      if (q->upgrade)
        break; /* the rest is another protocol's */
      pl_httpreq_next(&r);
      requests++;
    } else if (used == 0) {
      break;
    }
  }
  pl_httpreq_free(&r);
  FUZZ_CHECK(pl_mem_used() == 0);
  return 0;
}
