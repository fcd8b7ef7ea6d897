/* img_fixtures: tiny real images (made once with libvips, 10x6, committed
 * as C arrays) wrapped with planted metadata, for tests/unit/test_img.c and
 * the fuzz_img seeds (fuzz/make_seeds.c). Every builder appends one whole
 * file to *out. The planted strings below must all be gone after
 * pl_img_strip; the EXIF blocks carry orientation FX_ORIENTATION (JPEG, PNG)
 * or FX_WEBP_ORIENTATION, a camera model and a GPS IFD. */
#ifndef IMG_FIXTURES_H
#define IMG_FIXTURES_H

#include "common/pl_buf.h"

#define FX_W 10
#define FX_H 6
#define FX_ORIENTATION 6
#define FX_WEBP_ORIENTATION 3

/* Planted in EXIF (model, GPS), XMP, comments, text chunks, IPTC, thumbnails. */
extern const char *const fx_secrets[];

/* Baseline or progressive JPEG: APP0 JFIF with a thumbnail, APP1 EXIF, APP1
 * XMP, COM, APP13 IPTC, APP2 ICC_PROFILE (kept), then the image. */
void fx_jpeg(pl_bytes *out, int progressive);
/* PNG: IHDR, tEXt, eXIf, tIME, iTXt, then pHYs, IDAT, IEND. */
void fx_png(pl_bytes *out);
/* APNG of two frames (acTL, fcTL, IDAT, fcTL, fdAT), with a tEXt. */
void fx_apng(pl_bytes *out);
/* WebP in a VP8X container (EXIF and XMP flags set): the lossless (VP8L)
 * or lossy (VP8) bitstream, an EXIF chunk, an odd-sized XMP chunk. */
void fx_webp(pl_bytes *out, int lossless);
/* Animated WebP: VP8X, ANIM, two ANMF frames (VP8L), an XMP chunk. */
void fx_webp_anim(pl_bytes *out);
/* GIF89a, 10x6, global palette: comment, XMP application extension,
 * NETSCAPE2.0 loop, two frames of 1x1 each with a graphic control. */
void fx_gif(pl_bytes *out);

/* Helpers for tests that build their own variants. */
void fx_be32(pl_bytes *out, uint32_t v);
void fx_png_chunk(pl_bytes *out, const char *type, const void *data, size_t n);

#endif
