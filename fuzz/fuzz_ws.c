/* fuzz_ws: the WebSocket frame path (pl_ws over wslay), as the server runs it.
 *
 * Input: byte 0 picks the size of the pieces the rest is fed in. Every whole
 * binary message goes through the native frame parser (as pl_http does) and
 * is echoed back; every third one pauses the connection, which is resumed
 * before the next piece. The output must be a sequence of well-formed
 * server frames: FIN set, no mask, lengths that add up. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_mem.h"
#include "proto/pl_frame.h"
#include "web/pl_ws.h"

#define FUZZ_CHECK(cond)                                                         \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "fuzz_ws: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                   \
    }                                                                            \
  } while (0)

typedef struct fz {
  pl_ws *ws;
  int n;
} fz;

static int on_message(void *ud, int text, const uint8_t *p, size_t n) {
  fz *z = ud;
  FUZZ_CHECK(n <= 4096 + 4);
  if (!text) {
    pl_frame f;
    size_t used;
    if (pl_frame_parse(p, n, 4096, &f, &used) == PL_OK) {
      ProtobufCMessage *m = pl_frame_unpack(&f);
      if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    }
  }
  pl_ws_send(z->ws, text, p, n);
  return ++z->n % 3 == 0;
}

/* Walks the server's output frame by frame. */
static void check_output(const pl_bytes *o) {
  size_t off = 0;
  while (off < o->len) {
    FUZZ_CHECK(o->len - off >= 2);
    const uint8_t *h = o->p + off;
    FUZZ_CHECK(h[0] & 0x80);        /* FIN: the server sends no fragments */
    FUZZ_CHECK((h[0] & 0x70) == 0); /* no reserved bits */
    FUZZ_CHECK((h[1] & 0x80) == 0); /* no mask */
    uint64_t len = h[1] & 0x7f;
    size_t hl = 2;
    if (len == 126) {
      FUZZ_CHECK(o->len - off >= 4);
      len = (uint64_t)h[2] << 8 | h[3];
      hl = 4;
    } else if (len == 127) {
      FUZZ_CHECK(o->len - off >= 10);
      len = 0;
      for (int i = 0; i < 8; i++)
        len = len << 8 | h[2 + i];
      hl = 10;
    }
    FUZZ_CHECK(o->len - off - hl >= len);
    off += hl + (size_t)len;
  }
}

static const pl_ws_handler handler = {.on_message = on_message};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t piece = (size_t)data[0] % 64 + 1;
  data++, size--;
  fz z = {0};
  z.ws = pl_ws_new(4096 + 4, &handler, &z);
  FUZZ_CHECK(pl_ws_buffered(z.ws) == 0);
  FUZZ_CHECK(z.ws != NULL);
  pl_err e = PL_OK;
  for (size_t off = 0; off < size && e == PL_OK; off += piece) {
    size_t n = size - off < piece ? size - off : piece;
    e = pl_ws_input(z.ws, data + off, n);
    /* What it holds (the server's memory bound counts it) never exceeds
     * what came in: the input buffer (up to twice its bytes), the message
     * being gathered, the messages held. */
    FUZZ_CHECK(pl_ws_buffered(z.ws) <= 4 * (off + n) + 512);
    if (e == PL_OK)
      e = pl_ws_resume(z.ws);
  }
  if (e == PL_OK)
    pl_ws_close(z.ws, PL_WS_NORMAL, "bye");
  check_output(pl_ws_output(z.ws));
  pl_ws_free(z.ws);
  FUZZ_CHECK(pl_mem_used() == 0);
  return 0;
}
