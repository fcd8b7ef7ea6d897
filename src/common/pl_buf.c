#include "pl_buf.h"

#include <string.h>

#include "pl_mem.h"

pl_buf *pl_buf_new(size_t len) {
  pl_buf *b = pl_malloc(sizeof *b + len);
  atomic_init(&b->refs, 1);
  b->len = (uint32_t)len;
  return b;
}

pl_buf *pl_buf_copy(const void *p, size_t len) {
  pl_buf *b = pl_buf_new(len);
  if (len)
    memcpy(b->data, p, len);
  return b;
}

pl_buf *pl_buf_ref(pl_buf *b) {
  atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  return b;
}

void pl_buf_unref(pl_buf *b) {
  if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
    pl_free(b);
}

void pl_bytes_reserve(pl_bytes *b, size_t extra) {
  if (b->len + extra <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra)
    cap *= 2;
  b->p = pl_realloc(b->p, cap);
  b->cap = cap;
}

void pl_bytes_append(pl_bytes *b, const void *p, size_t n) {
  if (!n)
    return;
  pl_bytes_reserve(b, n);
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

void pl_bytes_consume(pl_bytes *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

void pl_bytes_free(pl_bytes *b) {
  pl_free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}
