/* fuzz_frame: the native stream parser, driven the way the TCP transport
 * drives it (src/net/pl_tcp.c, pl__read_cb/pl__dispatch).
 *
 * Input: one selector byte, then the byte stream. The stream arrives in two
 * reads split at a point derived from the selector, so frames straddle the
 * read boundary and go through the remainder buffer. Each whole frame is
 * unpacked with its type's descriptor and freed. A framing error ends the
 * stream, as it ends the connection.
 *
 * Oracles besides the sanitizers: the split stream yields exactly the frames
 * of the unsplit one (same count, types, lengths, bytes, final status), every
 * frame lies inside its input, and pl_mem_used() is back where it started. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_buf.h"
#include "common/pl_map.h"
#include "common/pl_mem.h"
#include "proto/pl_frame.h"

#define FUZZ_MAX_FRAME (1u << 20)

/* What one connection saw: a running digest of its frames. */
typedef struct stream {
  pl_bytes rbuf; /* the remainder of a read that ended mid-frame */
  int dead;      /* a framing error closed the stream */
  pl_err fatal;  /* that error */
  size_t frames, decoded;
  uint64_t digest;
} stream;

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "fuzz_frame: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                      \
    }                                                                               \
  } while (0)

static void on_frame(stream *s, const pl_frame *f) {
  s->frames++;
  uint64_t h = pl_hash_bytes(f->payload, f->payload_len);
  s->digest = (s->digest ^ h ^ ((uint64_t)f->type << 56) ^ f->payload_len) * 0x100000001b3ULL;

  ProtobufCMessage *m = pl_frame_unpack(f);
  const ProtobufCMessageDescriptor *d = pl_frame_descriptor(f->type);
  if (!d)
    FUZZ_CHECK(m == NULL);
  if (!m)
    return;
  s->decoded++;
  FUZZ_CHECK(m->descriptor == d);
  protobuf_c_message_free_unpacked(m, NULL);
}

/* Parses whole frames from p[0..n); returns the bytes consumed. */
static size_t dispatch(stream *s, const uint8_t *p, size_t n) {
  size_t off = 0;
  for (;;) {
    pl_frame f;
    size_t used = 0;
    pl_err rc = pl_frame_parse(p + off, n - off, FUZZ_MAX_FRAME, &f, &used);
    if (rc == PL_ERR_AGAIN) {
      FUZZ_CHECK(used == 0);
      return off;
    }
    if (rc != PL_OK) {
      FUZZ_CHECK(rc == PL_ERR_BAD_FRAME || rc == PL_ERR_FRAME_TOO_LARGE);
      s->dead = 1;
      s->fatal = rc;
      return n;
    }
    FUZZ_CHECK(used == PL_FRAME_HDR + f.payload_len && used <= n - off);
    FUZZ_CHECK(f.payload == p + off + PL_FRAME_HDR);
    off += used;
    on_frame(s, &f);
  }
}

/* One read of n bytes, handled like pl__read_cb: parse straight from the read
 * when nothing is buffered, else append and parse the buffer. */
static void feed(stream *s, const uint8_t *p, size_t n) {
  if (s->dead || n == 0)
    return;
  if (s->rbuf.len == 0) {
    size_t used = dispatch(s, p, n);
    if (used < n && !s->dead)
      pl_bytes_append(&s->rbuf, p + used, n - used);
  } else {
    pl_bytes_append(&s->rbuf, p, n);
    size_t used = dispatch(s, s->rbuf.p, s->rbuf.len);
    if (used >= s->rbuf.len)
      pl_bytes_free(&s->rbuf);
    else
      pl_bytes_consume(&s->rbuf, used);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t base = pl_mem_used();
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  size_t split = n ? (size_t)data[0] * n / 255 : 0;

  stream whole = {0}, parts = {0};
  feed(&whole, p, n);
  feed(&parts, p, split);
  feed(&parts, p + split, n - split);

  FUZZ_CHECK(whole.frames == parts.frames);
  FUZZ_CHECK(whole.decoded == parts.decoded);
  FUZZ_CHECK(whole.digest == parts.digest);
  FUZZ_CHECK(whole.dead == parts.dead && whole.fatal == parts.fatal);
  FUZZ_CHECK(whole.rbuf.len == parts.rbuf.len);
  if (whole.rbuf.len)
    FUZZ_CHECK(memcmp(whole.rbuf.p, parts.rbuf.p, whole.rbuf.len) == 0);

  pl_bytes_free(&whole.rbuf);
  pl_bytes_free(&parts.rbuf);
  FUZZ_CHECK(pl_mem_used() == base);
  return 0;
}
