#include "pl_img.h"

#include <string.h>
#include <zlib.h>

/* One run over the input. The same walk runs twice: first to check (emit 0:
 * nothing is written, only counted), then to write (emit 1), so the caller
 * never receives part of a file that turns out bad. */
typedef struct pl__img {
  const uint8_t *p;
  size_t n;
  pl_img_limits lim;
  pl_img_write_fn write;
  void *ud;
  int emit;
  uint64_t written;   /* bytes emitted so far in this pass */
  uint64_t webp_body; /* WebP: the chunk bytes the checking pass emitted (the new RIFF size) */
  int webp_exif;      /* WebP: the checking pass keeps a minimal EXIF (VP8X must say so) */
  pl_img_info *info;
} pl__img;

/* No function here holds a resource, so a failure simply returns. */
#define PL__TRY(x)      \
  do {                  \
    pl_err pl__e = (x); \
    if (pl__e != PL_OK) \
      return pl__e;     \
  } while (0)
#define PL__BAD PL_ERR_BAD_MEDIA

static uint32_t pl__be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t pl__be32(const uint8_t *p) { return pl__be16(p) << 16 | pl__be16(p + 2); }
static uint32_t pl__le16(const uint8_t *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t pl__le24(const uint8_t *p) { return (uint32_t)p[2] << 16 | pl__le16(p); }
static uint32_t pl__le32(const uint8_t *p) { return (uint32_t)p[3] << 24 | pl__le24(p); }
static uint32_t pl__u16(const uint8_t *p, int le) { return le ? pl__le16(p) : pl__be16(p); }
static uint32_t pl__u32(const uint8_t *p, int le) { return le ? pl__le32(p) : pl__be32(p); }

/* 1 if p[off .. off+len) lies inside the input (written to survive overflow). */
static int pl__has(const pl__img *c, size_t off, size_t len) { return off <= c->n && len <= c->n - off; }

static pl_err pl__put(pl__img *c, const void *p, size_t n) {
  c->written += n;
  if (!c->emit || n == 0)
    return PL_OK;
  return c->write(c->ud, p, n) == 0 ? PL_OK : PL_ERR_IO;
}

/* A width and height from a header: zero is malformed; above the limits is a
 * bomb, refused before any decoder sizes a buffer from it. */
static pl_err pl__dims(const pl__img *c, uint32_t w, uint32_t h) {
  if (w == 0 || h == 0)
    return PL__BAD;
  if (w > c->lim.max_side || h > c->lim.max_side || (uint64_t)w * h > c->lim.max_pixels)
    return PL_ERR_MEDIA_TOO_LARGE;
  return PL_OK;
}

static pl_err pl__frame(const pl__img *c, uint32_t frames) {
  return frames > c->lim.max_frames ? PL_ERR_MEDIA_TOO_LARGE : PL_OK;
}

/* ---- EXIF (a TIFF structure): only the Orientation tag is read. ---- */

#define PL__TIFF_MIN 26 /* header, IFD0 with one entry, no next IFD */

/* IFD0's Orientation (tag 0x0112, one SHORT) in t[0..n), or 0 when it is
 * absent, out of 1..8, or the structure is malformed: metadata that cannot be
 * read is dropped all the same, so it is no reason to refuse the image. */
static int pl__tiff_orientation(const uint8_t *t, size_t n) {
  if (n < 8 || t[0] != t[1] || (t[0] != 'I' && t[0] != 'M'))
    return 0;
  int le = t[0] == 'I';
  uint32_t ifd = pl__u32(t + 4, le);
  if (pl__u16(t + 2, le) != 42 || ifd > n - 2)
    return 0;
  uint32_t count = pl__u16(t + ifd, le);
  for (size_t e = (size_t)ifd + 2, i = 0; i < count && n >= 12 && e <= n - 12; i++, e += 12) {
    if (pl__u16(t + e, le) != 0x0112)
      continue;
    uint32_t v = pl__u16(t + e + 8, le);
    int ok = pl__u16(t + e + 2, le) == 3 && pl__u32(t + e + 4, le) == 1 && v >= 1 && v <= 8;
    return ok ? (int)v : 0;
  }
  return 0;
}

/* The smallest EXIF that keeps a rotation: big-endian, IFD0 = Orientation. */
static void pl__tiff_min(uint8_t t[PL__TIFF_MIN], int orientation) {
  static const uint8_t tpl[PL__TIFF_MIN] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0,
                                            3,   0,   0, 0,  1, 0, 0, 0, 0, 0, 0,    0,    0};
  memcpy(t, tpl, sizeof tpl);
  t[19] = (uint8_t)orientation;
}

/* Records the orientation of the first EXIF block seen; 1 if a minimal one
 * is to be written in its place. Orientation 1 is the default and is
 * reported as 0, like no EXIF at all: stripping the output again then gives
 * the same info, since the output has no EXIF for it. */
static int pl__exif_seen(pl__img *c, int *seen, const uint8_t *t, size_t n) {
  if (*seen)
    return 0;
  *seen = 1;
  int o = pl__tiff_orientation(t, n);
  c->info->orientation = o > 1 ? o : 0;
  return o > 1;
}

/* ---- JPEG ---- */

typedef struct pl__jpeg_st {
  int sof, sos, exif;
} pl__jpeg_st;

/* APP0 JFIF rewritten without its thumbnail (a thumbnail can show what a
 * crop removed); other APP0s (JFXX thumbnails, AVI1) are dropped. */
static pl_err pl__jpeg_jfif(pl__img *c, const uint8_t *d, size_t dn) {
  if (dn < 14 || memcmp(d, "JFIF", 5) != 0)
    return PL_OK;
  uint8_t s[18] = {0xFF, 0xE0, 0, 16};
  memcpy(s + 4, d, 12); /* id, version, units, density; thumbnail 0x0 */
  return pl__put(c, s, sizeof s);
}

static pl_err pl__jpeg_exif(pl__img *c, pl__jpeg_st *j, const uint8_t *d, size_t dn) {
  if (dn < 6 || memcmp(d, "Exif\0", 6) != 0 || !pl__exif_seen(c, &j->exif, d + 6, dn - 6))
    return PL_OK;
  uint8_t s[4 + 6 + PL__TIFF_MIN] = {0xFF, 0xE1, 0, 2 + 6 + PL__TIFF_MIN, 'E', 'x', 'i', 'f', 0, 0};
  pl__tiff_min(s + 10, c->info->orientation);
  return pl__put(c, s, sizeof s);
}

static pl_err pl__jpeg_sof(pl__img *c, pl__jpeg_st *j, const uint8_t *d, size_t dn) {
  if (dn < 6 || dn != 6 + 3 * (size_t)d[5])
    return PL__BAD;
  if (j->sof++)
    return PL_OK; /* the first frame is the one viewers show */
  c->info->height = pl__be16(d + 1);
  c->info->width = pl__be16(d + 3);
  return pl__dims(c, c->info->width, c->info->height);
}

/* APPn segments kept: the ICC profile (colour) and Adobe's (it tells the
 * decoder the colour transform). EXIF, XMP, IPTC, MPF, FlashPix... go. */
static int pl__jpeg_app_kept(uint8_t m, const uint8_t *d, size_t dn) {
  if (m == 0xE2)
    return dn >= 12 && memcmp(d, "ICC_PROFILE", 12) == 0;
  return m == 0xEE && dn >= 5 && memcmp(d, "Adobe", 5) == 0;
}

/* One marker segment s[0..n) (s = FF marker length data). */
static pl_err pl__jpeg_segment(pl__img *c, pl__jpeg_st *j, uint8_t m, const uint8_t *s, size_t n) {
  const uint8_t *d = s + 4;
  size_t dn = n - 4;
  if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC)
    PL__TRY(pl__jpeg_sof(c, j, d, dn));
  else if (m == 0xE0)
    return pl__jpeg_jfif(c, d, dn);
  else if (m == 0xE1)
    return pl__jpeg_exif(c, j, d, dn); /* EXIF and XMP both go */
  else if (((m >= 0xE0 && m <= 0xEF) || m == 0xFE) && !pl__jpeg_app_kept(m, d, dn))
    return PL_OK; /* and COM */
  else if (m == 0xDA && !j->sof)
    return PL__BAD;
  return pl__put(c, s, n);
}

/* Copies the entropy-coded data after an SOS up to the next marker: a 0xFF
 * followed by 0x00 is a stuffed byte and RSTn markers belong to the scan. */
static pl_err pl__jpeg_scan(pl__img *c, size_t *pos) {
  size_t i = *pos;
  for (;;) {
    const uint8_t *f = memchr(c->p + i, 0xFF, c->n - i);
    if (!f || (size_t)(f - c->p) + 1 >= c->n)
      return PL__BAD; /* no EOI */
    i = (size_t)(f - c->p);
    uint8_t b = c->p[i + 1];
    if (b != 0x00 && b != 0xFF && (b < 0xD0 || b > 0xD7))
      break;
    i += b == 0xFF ? 1 : 2; /* a fill byte before a marker is copied with the data */
  }
  PL__TRY(pl__put(c, c->p + *pos, i - *pos));
  *pos = i;
  return PL_OK;
}

static pl_err pl__jpeg(pl__img *c) {
  pl__jpeg_st j = {0};
  size_t pos = 2;
  PL__TRY(pl__put(c, c->p, 2));
  for (;;) {
    if (pos >= c->n || c->p[pos] != 0xFF)
      return PL__BAD;
    while (pos < c->n && c->p[pos] == 0xFF)
      pos++; /* fill bytes */
    if (pos >= c->n)
      return PL__BAD;
    uint8_t m = c->p[pos++];
    if (m == 0xD9)
      return j.sos ? pl__put(c, c->p + pos - 2, 2) : PL__BAD; /* EOI; what follows is dropped */
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8))
      return PL__BAD; /* no standalone marker belongs here */
    if (!pl__has(c, pos, 2) || pl__be16(c->p + pos) < 2 || !pl__has(c, pos, pl__be16(c->p + pos)))
      return PL__BAD;
    size_t len = pl__be16(c->p + pos);
    PL__TRY(pl__jpeg_segment(c, &j, m, c->p + pos - 2, len + 2));
    pos += len;
    if (m == 0xDA) {
      j.sos = 1;
      PL__TRY(pl__jpeg_scan(c, &pos));
    }
  }
}

/* ---- PNG ---- */

static const uint8_t pl__png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};

/* Ancillary chunks that change how pixels look (colour, transparency, aspect,
 * HDR) or that make an APNG; every other ancillary chunk is dropped. */
static int pl__png_kept(const uint8_t *t) {
  static const char keep[][4] = {{'t', 'R', 'N', 'S'}, {'g', 'A', 'M', 'A'}, {'c', 'H', 'R', 'M'},
                                 {'s', 'R', 'G', 'B'}, {'i', 'C', 'C', 'P'}, {'s', 'B', 'I', 'T'},
                                 {'p', 'H', 'Y', 's'}, {'b', 'K', 'G', 'D'}, {'c', 'I', 'C', 'P'},
                                 {'m', 'D', 'C', 'V'}, {'c', 'L', 'L', 'I'}, {'a', 'c', 'T', 'L'},
                                 {'f', 'c', 'T', 'L'}, {'f', 'd', 'A', 'T'}};
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
    if (memcmp(t, keep[i], 4) == 0)
      return 1;
  return 0;
}

/* CRC over type + data. A fuzzing build skips the check (as libpng's
 * fuzzers do), or mutations would rarely get past it. */
static int pl__png_crc_ok(const uint8_t *t, uint32_t len) {
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  (void)t, (void)len;
  return 1;
#else
  return crc32(0, t, len + 4) == pl__be32(t + 4 + len);
#endif
}

static pl_err pl__png_ihdr(pl__img *c, const uint8_t *d, uint32_t len) {
  if (len != 13)
    return PL__BAD;
  c->info->width = pl__be32(d);
  c->info->height = pl__be32(d + 4);
  PL__TRY(pl__dims(c, c->info->width, c->info->height));
  uint8_t depth = d[8], ct = d[9];
  int ok = ct == 0   ? (depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16)
           : ct == 3 ? (depth == 1 || depth == 2 || depth == 4 || depth == 8)
                     : (ct == 2 || ct == 4 || ct == 6) && (depth == 8 || depth == 16);
  return ok && d[10] == 0 && d[11] == 0 && d[12] <= 1 ? PL_OK : PL__BAD;
}

static pl_err pl__png_actl(pl__img *c, const uint8_t *d, uint32_t len) {
  if (len != 8 || pl__be32(d) == 0)
    return PL__BAD;
  c->info->frames = pl__be32(d);
  c->info->animated = 1;
  return pl__frame(c, c->info->frames);
}

/* A frame's rectangle must lie on the canvas (the APNG rule decoders rely on). */
static pl_err pl__png_fctl(pl__img *c, uint32_t *fctl, const uint8_t *d, uint32_t len) {
  if (len != 26)
    return PL__BAD;
  uint32_t w = pl__be32(d + 4), h = pl__be32(d + 8), x = pl__be32(d + 12), y = pl__be32(d + 16);
  PL__TRY(pl__dims(c, w, h));
  PL__TRY(pl__frame(c, ++*fctl));
  if ((uint64_t)x + w > c->info->width || (uint64_t)y + h > c->info->height)
    return PL__BAD;
  return PL_OK;
}

/* eXIf goes; a rotation is kept as a minimal eXIf (browsers honour it). */
static pl_err pl__png_exif(pl__img *c, int *seen, const uint8_t *d, uint32_t len) {
  if (!pl__exif_seen(c, seen, d, len))
    return PL_OK;
  uint8_t s[4 + 4 + PL__TIFF_MIN + 4] = {0, 0, 0, PL__TIFF_MIN, 'e', 'X', 'I', 'f'};
  pl__tiff_min(s + 8, c->info->orientation);
  uint32_t crc = (uint32_t)crc32(0, s + 4, 4 + PL__TIFF_MIN);
  for (int i = 0; i < 4; i++)
    s[8 + PL__TIFF_MIN + i] = (uint8_t)(crc >> (24 - 8 * i));
  return pl__put(c, s, sizeof s);
}

typedef struct pl__png_st {
  uint32_t chunks, fctl;
  int idat, exif;
} pl__png_st;

/* One chunk t[-4 .. 8+len) (t = its type); 1 in *end after IEND. */
static pl_err pl__png_chunk(pl__img *c, pl__png_st *s, const uint8_t *t, uint32_t len, int *end) {
  const uint8_t *d = t + 4;
  if (s->chunks++ == 0 && memcmp(t, "IHDR", 4) != 0)
    return PL__BAD;
  if (memcmp(t, "IHDR", 4) == 0)
    PL__TRY(s->chunks == 1 ? pl__png_ihdr(c, d, len) : PL__BAD);
  else if (memcmp(t, "IEND", 4) == 0) {
    if (!s->idat || len != 0)
      return PL__BAD;
    *end = 1;
  } else if (memcmp(t, "IDAT", 4) == 0)
    s->idat = 1;
  else if (memcmp(t, "acTL", 4) == 0)
    PL__TRY(pl__png_actl(c, d, len));
  else if (memcmp(t, "fcTL", 4) == 0)
    PL__TRY(pl__png_fctl(c, &s->fctl, d, len));
  else if (memcmp(t, "eXIf", 4) == 0)
    return pl__png_exif(c, &s->exif, d, len);
  else if (!(t[0] & 0x20) && memcmp(t, "PLTE", 4) != 0)
    return PL__BAD; /* an unknown critical chunk: no decoder may show the image */
  else if ((t[0] & 0x20) && !pl__png_kept(t))
    return PL_OK; /* tEXt, zTXt, iTXt, tIME and the rest */
  return pl__put(c, t - 4, (size_t)len + 12);
}

static int pl__png_type_ok(const uint8_t *t) {
  for (int i = 0; i < 4; i++)
    if (!((t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z')))
      return 0;
  return 1;
}

static pl_err pl__png(pl__img *c) {
  pl__png_st s = {0};
  size_t pos = sizeof pl__png_sig;
  int end = 0;
  PL__TRY(pl__put(c, c->p, pos));
  while (!end) {
    if (!pl__has(c, pos, 8))
      return PL__BAD; /* no IEND */
    uint32_t len = pl__be32(c->p + pos);
    const uint8_t *t = c->p + pos + 4;
    if (len > 0x7fffffffu || !pl__has(c, pos + 8, (size_t)len + 4) || !pl__png_type_ok(t) ||
        (!c->emit && !pl__png_crc_ok(t, len))) /* the writing pass knows they are right */
      return PL__BAD;
    PL__TRY(pl__png_chunk(c, &s, t, len, &end));
    pos += (size_t)len + 12;
  }
  return PL_OK;
}

/* ---- WebP ---- */

#define PL__VP8X_ICC 0x20
#define PL__VP8X_EXIF 0x08
#define PL__VP8X_XMP 0x04
#define PL__VP8X_ANIM 0x02

typedef struct pl__webp_st {
  int first, vp8x, anim, image, exif;
} pl__webp_st;

/* The size of a VP8 (lossy key frame) or VP8L (lossless) bitstream, checked
 * against the limits wherever it appears: a decoder sizes buffers from it. */
static pl_err pl__webp_bitstream(pl__img *c, const uint8_t *fourcc, const uint8_t *d, uint32_t n, uint32_t *w,
                                 uint32_t *h) {
  if (fourcc[3] == 'L') {
    if (n < 5 || d[0] != 0x2F || pl__le32(d + 1) >> 29 != 0)
      return PL__BAD;
    *w = 1 + (pl__le32(d + 1) & 0x3FFF);
    *h = 1 + (pl__le32(d + 1) >> 14 & 0x3FFF);
  } else {
    if (n < 10 || (d[0] & 1) != 0 || d[3] != 0x9D || d[4] != 0x01 || d[5] != 0x2A)
      return PL__BAD; /* not a key frame */
    *w = pl__le16(d + 6) & 0x3FFF;
    *h = pl__le16(d + 8) & 0x3FFF;
  }
  return pl__dims(c, *w, *h);
}

static int pl__webp_is(const uint8_t *fourcc, const char *name) { return memcmp(fourcc, name, 4) == 0; }

static int pl__webp_is_bitstream(const uint8_t *fourcc) {
  return pl__webp_is(fourcc, "VP8 ") || pl__webp_is(fourcc, "VP8L");
}

/* The frame data inside an ANMF (d[0..n) after its 16-byte header): chunks
 * with the same framing, each bitstream checked. */
static pl_err pl__webp_frame_data(pl__img *c, pl__webp_st *s, const uint8_t *d, size_t n) {
  size_t pos = 0;
  while (pos < n) {
    if (n - pos < 8 || pl__le32(d + pos + 4) > n - pos - 8)
      return PL__BAD;
    uint32_t size = pl__le32(d + pos + 4), w, h;
    if (pl__webp_is_bitstream(d + pos)) {
      PL__TRY(pl__webp_bitstream(c, d + pos, d + pos + 8, size, &w, &h));
      s->image = 1;
    }
    pos += 8 + (size_t)size + (size & 1);
  }
  return pos == n ? PL_OK : PL__BAD;
}

static pl_err pl__webp_anmf(pl__img *c, pl__webp_st *s, const uint8_t *d, uint32_t size) {
  if (!s->anim || size < 16)
    return PL__BAD;
  uint32_t x = 2 * pl__le24(d), y = 2 * pl__le24(d + 3), w = 1 + pl__le24(d + 6), h = 1 + pl__le24(d + 9);
  PL__TRY(pl__dims(c, w, h));
  PL__TRY(pl__frame(c, ++c->info->frames));
  if ((uint64_t)x + w > c->info->width || (uint64_t)y + h > c->info->height)
    return PL__BAD;
  return pl__webp_frame_data(c, s, d + 16, size - 16);
}

/* VP8X is written with the XMP flag cleared, and the EXIF flag set only if
 * a minimal EXIF is kept (found by the checking pass). */
static pl_err pl__webp_vp8x(pl__img *c, pl__webp_st *s, const uint8_t *ch, uint32_t size) {
  if (!s->first || size < 10)
    return PL__BAD;
  const uint8_t *d = ch + 8;
  s->vp8x = 1;
  s->anim = (d[0] & PL__VP8X_ANIM) != 0;
  c->info->width = 1 + pl__le24(d + 4);
  c->info->height = 1 + pl__le24(d + 7);
  c->info->animated = s->anim;
  c->info->frames = s->anim ? 0 : 1;
  PL__TRY(pl__dims(c, c->info->width, c->info->height));
  uint8_t flags = (d[0] & (uint8_t) ~(PL__VP8X_EXIF | PL__VP8X_XMP)) | (c->webp_exif ? PL__VP8X_EXIF : 0);
  PL__TRY(pl__put(c, ch, 8));
  PL__TRY(pl__put(c, &flags, 1));
  return pl__put(c, d + 1, (size_t)size - 1 + (size & 1));
}

/* EXIF goes; a rotation is kept as a minimal EXIF chunk, as for JPEG and PNG
 * (browsers and libvips honour it). Some writers prefix "Exif\0\0". */
static pl_err pl__webp_exif(pl__img *c, pl__webp_st *s, const uint8_t *d, uint32_t size) {
  size_t skip = size >= 6 && memcmp(d, "Exif\0", 6) == 0 ? 6 : 0;
  if (!pl__exif_seen(c, &s->exif, d + skip, size - skip))
    return PL_OK;
  c->webp_exif = 1;
  uint8_t ch[8 + PL__TIFF_MIN] = {'E', 'X', 'I', 'F', PL__TIFF_MIN};
  pl__tiff_min(ch + 8, c->info->orientation);
  return pl__put(c, ch, sizeof ch);
}

/* One chunk ch[0 .. 8+size+pad). */
static pl_err pl__webp_chunk(pl__img *c, pl__webp_st *s, const uint8_t *ch, uint32_t size) {
  const uint8_t *d = ch + 8;
  uint32_t w, h;
  if (pl__webp_is(ch, "VP8X"))
    return pl__webp_vp8x(c, s, ch, size);
  if (s->first && !pl__webp_is_bitstream(ch))
    return PL__BAD;
  if (pl__webp_is_bitstream(ch)) {
    PL__TRY(pl__webp_bitstream(c, ch, d, size, &w, &h));
    if (s->first)
      c->info->width = w, c->info->height = h; /* the simple format: no canvas */
    s->image = 1;
  } else if (pl__webp_is(ch, "ANMF")) {
    PL__TRY(pl__webp_anmf(c, s, d, size));
  } else if (pl__webp_is(ch, "EXIF")) {
    return s->vp8x ? pl__webp_exif(c, s, d, size) : PL_OK; /* without VP8X, no viewer reads it */
  } else if (!pl__webp_is(ch, "ALPH") && !pl__webp_is(ch, "ICCP") && !pl__webp_is(ch, "ANIM")) {
    return PL_OK; /* XMP and unknown chunks */
  }
  return pl__put(c, ch, 8 + (size_t)size + (size & 1));
}

static pl_err pl__webp(pl__img *c) {
  uint32_t riff = pl__le32(c->p + 4);
  if (riff < 4 || riff > c->n - 8)
    return PL__BAD; /* truncated */
  size_t end = 8 + (size_t)riff, pos = 12;
  pl__webp_st s = {.first = 1};
  uint8_t hdr[12] = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'E', 'B', 'P'};
  uint32_t out = (uint32_t)(4 + c->webp_body); /* no more than the input's, which fit */
  for (int i = 0; i < 4; i++)
    hdr[4 + i] = (uint8_t)(out >> 8 * i);
  PL__TRY(pl__put(c, hdr, sizeof hdr));
  uint64_t body = c->written;
  while (pos < end) {
    if (end - pos < 8)
      return PL__BAD;
    uint32_t size = pl__le32(c->p + pos + 4);
    if (size > end - pos - 8 || (size & 1) > end - pos - 8 - size)
      return PL__BAD; /* past the RIFF, with its pad byte */
    PL__TRY(pl__webp_chunk(c, &s, c->p + pos, size));
    s.first = 0;
    pos += 8 + (size_t)size + (size & 1);
  }
  if (!s.image || (s.anim && c->info->frames == 0) || c->written - body > UINT32_MAX - 4)
    return PL__BAD; /* the last: a minimal EXIF grew a file of 4 GiB past what RIFF can say */
  c->webp_body = c->written - body;
  return PL_OK;
}

/* ---- GIF ---- */

/* Steps over data sub-blocks (length byte, bytes) and their 0 terminator. */
static pl_err pl__gif_blocks(const pl__img *c, size_t *pos) {
  for (;;) {
    if (*pos >= c->n)
      return PL__BAD;
    size_t len = c->p[(*pos)++];
    if (len == 0)
      return PL_OK;
    if (!pl__has(c, *pos, len))
      return PL__BAD;
    *pos += len;
  }
}

static pl_err pl__gif_image(pl__img *c, size_t *pos) {
  size_t start = *pos;
  if (!pl__has(c, start, 10))
    return PL__BAD;
  const uint8_t *d = c->p + start;
  PL__TRY(pl__dims(c, pl__le16(d + 5), pl__le16(d + 7)));
  PL__TRY(pl__frame(c, ++c->info->frames));
  *pos += 10;
  if (d[9] & 0x80)
    *pos += 3u << ((d[9] & 7) + 1); /* local colour table */
  if (!pl__has(c, *pos, 1) || c->p[*pos] < 1 || c->p[*pos] > 11)
    return PL__BAD; /* LZW minimum code size */
  (*pos)++;
  PL__TRY(pl__gif_blocks(c, pos));
  return pl__put(c, d, *pos - start);
}

/* Kept: graphic control (timing, transparency), plain text (drawn content),
 * and the application extensions for looping and colour. Dropped: comments,
 * XMP and any other application data. */
static int pl__gif_ext_kept(const pl__img *c, size_t pos) {
  uint8_t label = c->p[pos + 1];
  if (label == 0xF9 || label == 0x01)
    return 1;
  if (label != 0xFF || !pl__has(c, pos + 2, 12) || c->p[pos + 2] != 11)
    return 0;
  const uint8_t *id = c->p + pos + 3;
  return memcmp(id, "NETSCAPE2.0", 11) == 0 || memcmp(id, "ANIMEXTS1.0", 11) == 0 ||
         memcmp(id, "ICCRGBG1012", 11) == 0;
}

static pl_err pl__gif_ext(pl__img *c, size_t *pos) {
  size_t start = *pos;
  if (!pl__has(c, start, 2))
    return PL__BAD;
  int keep = pl__gif_ext_kept(c, start);
  *pos += 2;
  PL__TRY(pl__gif_blocks(c, pos));
  return keep ? pl__put(c, c->p + start, *pos - start) : PL_OK;
}

static pl_err pl__gif(pl__img *c) {
  if (!pl__has(c, 0, 13))
    return PL__BAD;
  c->info->width = pl__le16(c->p + 6);
  c->info->height = pl__le16(c->p + 8);
  c->info->frames = 0;
  PL__TRY(pl__dims(c, c->info->width, c->info->height));
  size_t pos = 13;
  if (c->p[10] & 0x80)
    pos += 3u << ((c->p[10] & 7) + 1); /* global colour table */
  if (pos > c->n)
    return PL__BAD;
  PL__TRY(pl__put(c, c->p, pos));
  for (;;) {
    if (pos >= c->n)
      return PL__BAD; /* no trailer */
    uint8_t b = c->p[pos];
    if (b == 0x3B) {
      c->info->animated = c->info->frames > 1;
      return c->info->frames ? pl__put(c, c->p + pos, 1) : PL__BAD;
    }
    if (b == 0x2C)
      PL__TRY(pl__gif_image(c, &pos));
    else if (b == 0x21)
      PL__TRY(pl__gif_ext(c, &pos));
    else
      return PL__BAD;
  }
}

/* ---- public ---- */

pl_img_type pl_img_sniff(const uint8_t *p, size_t n) {
  if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
    return PL_IMG_JPEG;
  if (n >= sizeof pl__png_sig && memcmp(p, pl__png_sig, sizeof pl__png_sig) == 0)
    return PL_IMG_PNG;
  if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
    return PL_IMG_WEBP;
  if (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
    return PL_IMG_GIF;
  return PL_IMG_NONE;
}

const char *pl_img_mime(pl_img_type t) {
  static const char *const mime[] = {NULL, "image/jpeg", "image/png", "image/webp", "image/gif"};
  return (unsigned)t < sizeof mime / sizeof mime[0] ? mime[t] : NULL;
}

const char *pl_img_ext(pl_img_type t) {
  static const char *const ext[] = {NULL, "jpg", "png", "webp", "gif"};
  return (unsigned)t < sizeof ext / sizeof ext[0] ? ext[t] : NULL;
}

pl_err pl_img_strip(const uint8_t *p, size_t n, const pl_img_limits *lim, pl_img_write_fn write, void *ud,
                    pl_img_info *info) {
  static pl_err (*const walk[])(pl__img *) = {NULL, pl__jpeg, pl__png, pl__webp, pl__gif};
  pl_img_info got = {0};
  pl__img c = {.p = p, .n = n, .lim = PL_IMG_LIMITS_DEFAULT, .write = write, .ud = ud, .info = &got};
  pl_err err = PL_ERR_MEDIA_TYPE;
  if (lim)
    c.lim = *lim;
  pl_img_type t = pl_img_sniff(p, n);
  if (t == PL_IMG_NONE)
    goto out;
  for (c.emit = 0; c.emit <= (write != NULL); c.emit++) {
    got = (pl_img_info){.type = t, .frames = 1};
    c.written = 0;
    err = walk[t](&c);
    if (err != PL_OK)
      goto out;
  }
out:
  if (info)
    *info = got;
  return err;
}
