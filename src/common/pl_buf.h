/* pl_buf: an immutable, reference-counted byte buffer. An outgoing frame is
 * encoded once into a pl_buf and shared by every connection that sends it;
 * each holder takes a reference and drops it once written. The count is
 * atomic because a buffer made on the commit thread is written by loops. */
#ifndef PL_BUF_H
#define PL_BUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pl_buf {
  atomic_uint refs;
  uint32_t len;
  uint8_t data[]; /* len bytes */
} pl_buf;

/* A new buffer of len bytes (uninitialised) with one reference. */
pl_buf *pl_buf_new(size_t len);
/* A new buffer holding a copy of p[0..len). */
pl_buf *pl_buf_copy(const void *p, size_t len);
pl_buf *pl_buf_ref(pl_buf *b);
void pl_buf_unref(pl_buf *b);

/* A growable byte vector for one owner (read remainders, encoders). */
typedef struct pl_bytes {
  uint8_t *p;
  size_t len, cap;
} pl_bytes;

void pl_bytes_reserve(pl_bytes *b, size_t extra);
void pl_bytes_append(pl_bytes *b, const void *p, size_t n);
/* Drops the first n bytes. */
void pl_bytes_consume(pl_bytes *b, size_t n);
/* Frees the storage; b is empty afterwards. */
void pl_bytes_free(pl_bytes *b);

#endif
