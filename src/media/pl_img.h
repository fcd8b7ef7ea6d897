/* pl_img: the first look at an uploaded image, before any decoder runs.
 *
 * A pure codec over (pointer, length): it sniffs the real type from the
 * magic bytes (never the client's word), checks the container structure
 * with strict bounds, refuses decompression bombs from the header alone
 * (so no decoder allocates for them), and writes a copy with the metadata
 * removed (EXIF with GPS and camera, XMP, IPTC, comments, text chunks),
 * losslessly: pixel data is copied through, never re-encoded. No I/O, no
 * globals; the upload path and the fuzzer call it the same way.
 *
 * What each format keeps and drops, and why, is in docs/architecture.md
 * ("Media: pl_img"). */
#ifndef PL_IMG_H
#define PL_IMG_H

#include <stddef.h>
#include <stdint.h>

#include "common/pl_err.h"

typedef enum pl_img_type { PL_IMG_NONE = 0, PL_IMG_JPEG, PL_IMG_PNG, PL_IMG_WEBP, PL_IMG_GIF } pl_img_type;

/* The bytes pl_img_sniff needs at most. */
#define PL_IMG_SNIFF_LEN 16

/* The type from the magic numbers at p[0..n) (n may be shorter than
 * PL_IMG_SNIFF_LEN, or 0); PL_IMG_NONE for anything else (PDF, ZIP, text...). */
pl_img_type pl_img_sniff(const uint8_t *p, size_t n);
/* "image/jpeg", "image/png", "image/webp", "image/gif"; NULL for PL_IMG_NONE. */
const char *pl_img_mime(pl_img_type t);
/* "jpg", "png", "webp", "gif"; NULL for PL_IMG_NONE. */
const char *pl_img_ext(pl_img_type t);

typedef struct pl_img_info {
  pl_img_type type;
  uint32_t width, height; /* from the header (JPEG: the first SOFn; WebP: the VP8X canvas) */
  uint32_t frames;        /* GIF: image descriptors; APNG: acTL's count; WebP: ANMF chunks; else 1 */
  int orientation;        /* EXIF orientation 2..8 (JPEG, PNG eXIf, WebP EXIF), kept in the output as a
                           * minimal EXIF; 0 for none, 1 (the default) or an unreadable EXIF */
  int animated;           /* 1 for an APNG (acTL), an animated WebP, a GIF of more than one frame */
} pl_img_info;

typedef struct pl_img_limits {
  uint32_t max_side;   /* width and height, of the image and of every frame */
  uint32_t max_frames; /* GIF, APNG and WebP animation frames */
  uint64_t max_pixels; /* width * height, of the image and of every frame */
} pl_img_limits;

/* The limits used when pl_img_strip is given NULL. */
#define PL_IMG_LIMITS_DEFAULT \
  { .max_side = 16384, .max_frames = 1000, .max_pixels = 50000000 }

/* Writes one piece of the output; nonzero aborts pl_img_strip with PL_ERR_IO. */
typedef int (*pl_img_write_fn)(void *ud, const uint8_t *p, size_t n);

/* Checks p[0..n) (the whole file) and writes it without metadata through
 * write(ud, ...), in consecutive pieces. The input is walked twice: once to
 * check it all, once to write, so write is called only for an input that is
 * accepted, and the only error after the first call is PL_ERR_IO. With
 * write NULL the input is only checked (and info filled).
 *
 * Errors: PL_ERR_MEDIA_TYPE (not JPEG, PNG, WebP or GIF);
 * PL_ERR_MEDIA_TOO_LARGE (a side, width * height or the frame count above
 * lim: decided from the header, before the rest is looked at);
 * PL_ERR_BAD_MEDIA (truncated: a segment or chunk running past the end, no
 * JPEG EOI / PNG IEND / GIF trailer / whole RIFF; a bad length, CRC or
 * marker; a zero width or height); PL_ERR_IO (write failed). Bytes after the
 * end marker (EOI, IEND, trailer, the RIFF size) are dropped, not refused.
 *
 * info (may be NULL) is filled as far as the input was read, on failure too. */
pl_err pl_img_strip(const uint8_t *p, size_t n, const pl_img_limits *lim, pl_img_write_fn write, void *ud,
                    pl_img_info *info);

#endif
