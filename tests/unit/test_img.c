/* pl_img: sniffing, checking and metadata stripping (src/media/pl_img.c),
 * over the fixtures of tests/img_fixtures.c. With libvips (PL_TEST_VIPS) the
 * stripped files are also decoded, to show they are still images. */
#include <stdlib.h>

#include "common/pl_mem.h"
#include "img_fixtures.h"
#include "media/pl_img.h"
#include "testlib.h"

#ifdef PL_TEST_VIPS
#include <vips/vips.h>
#endif

static const pl_img_limits lim = PL_IMG_LIMITS_DEFAULT;

static int out_write(void *ud, const uint8_t *p, size_t n) {
  pl_bytes_append(ud, p, n);
  return 0;
}

static int has(const pl_bytes *b, const void *needle, size_t n) {
  for (size_t i = 0; n <= b->len && i <= b->len - n; i++)
    if (memcmp(b->p + i, needle, n) == 0)
      return 1;
  return 0;
}

static int has_str(const pl_bytes *b, const char *s) { return has(b, s, strlen(s)); }

/* Decodes every pixel of p[0..n) with libvips; 1 if it is a w x h image. */
static int decodes(const pl_bytes *b, uint32_t w, uint32_t h) {
#ifdef PL_TEST_VIPS
  VipsImage *im = vips_image_new_from_buffer(b->p, b->len, "", NULL);
  double avg = 0;
  int ok = im && vips_image_get_width(im) == (int)w && vips_image_get_height(im) == (int)h &&
           vips_avg(im, &avg, NULL) == 0;
  if (im)
    g_object_unref(im);
  if (!ok)
    fprintf(stderr, "vips: %s\n", vips_error_buffer());
  vips_error_clear();
  return ok;
#else
  (void)b, (void)w, (void)h;
  return 1;
#endif
}

/* Strips in, checks that no planted secret is left and that stripping the
 * output again changes nothing; the output is left in *out. */
static pl_img_info strip_clean(const pl_bytes *in, pl_bytes *out) {
  pl_img_info info, again;
  pl_bytes twice = {0};
  CHECK_EQ_I(pl_img_strip(in->p, in->len, &lim, out_write, out, &info), PL_OK);
  for (const char *const *s = fx_secrets; *s; s++)
    CHECK(!has_str(out, *s));
  CHECK_EQ_I(pl_img_sniff(out->p, out->len), info.type);
  CHECK_EQ_I(pl_img_strip(out->p, out->len, &lim, out_write, &twice, &again), PL_OK);
  CHECK(twice.len == out->len && memcmp(twice.p, out->p, out->len) == 0);
  CHECK(memcmp(&info, &again, sizeof info) == 0);
  pl_bytes_free(&twice);
  return info;
}

static void check_info(pl_img_info i, pl_img_type t, uint32_t frames, int orientation, int animated) {
  CHECK_EQ_I(i.type, t);
  CHECK_EQ_U(i.width, FX_W);
  CHECK_EQ_U(i.height, FX_H);
  CHECK_EQ_U(i.frames, frames);
  CHECK_EQ_I(i.orientation, orientation);
  CHECK_EQ_I(i.animated, animated);
}

/* ---- sniffing ---- */

static void test_sniff_magic_only(void) {
  pl_bytes b = {0};
  fx_jpeg(&b, 0);
  CHECK_EQ_I(pl_img_sniff(b.p, b.len), PL_IMG_JPEG);
  CHECK_EQ_I(pl_img_sniff(b.p, 2), PL_IMG_NONE);
  b.len = 0;
  fx_png(&b);
  CHECK_EQ_I(pl_img_sniff(b.p, PL_IMG_SNIFF_LEN), PL_IMG_PNG);
  CHECK_EQ_I(pl_img_sniff(b.p, 7), PL_IMG_NONE);
  b.len = 0;
  fx_webp(&b, 1);
  CHECK_EQ_I(pl_img_sniff(b.p, 12), PL_IMG_WEBP);
  b.len = 0;
  fx_gif(&b);
  CHECK_EQ_I(pl_img_sniff(b.p, 6), PL_IMG_GIF);
  pl_bytes_free(&b);

  CHECK_EQ_I(pl_img_sniff(NULL, 0), PL_IMG_NONE);
  CHECK_EQ_I(pl_img_sniff((const uint8_t *)"%PDF-1.7\n%\xe2\xe3\xcf\xd3", 14), PL_IMG_NONE);
  CHECK_EQ_I(pl_img_sniff((const uint8_t *)"PK\x03\x04\x14\0\0\0", 8), PL_IMG_NONE);
  CHECK_EQ_I(pl_img_sniff((const uint8_t *)"RIFF\x24\0\0\0WAVEfmt ", 16), PL_IMG_NONE);
  CHECK_EQ_I(pl_img_sniff((const uint8_t *)"GIF88a", 6), PL_IMG_NONE);
  CHECK_STR(pl_img_mime(PL_IMG_WEBP), "image/webp");
  CHECK_STR(pl_img_ext(PL_IMG_JPEG), "jpg");
  CHECK(pl_img_mime(PL_IMG_NONE) == NULL && pl_img_ext(PL_IMG_NONE) == NULL);
}

static void test_pdf_renamed_jpg_is_not_an_image(void) {
  static const char pdf[] = "%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n";
  pl_bytes out = {0};
  pl_img_info info;
  CHECK_EQ_I(pl_img_strip((const uint8_t *)pdf, sizeof pdf - 1, &lim, out_write, &out, &info),
             PL_ERR_MEDIA_TYPE);
  CHECK_EQ_I(info.type, PL_IMG_NONE);
  CHECK_EQ_I(pl_img_strip(NULL, 0, &lim, out_write, &out, &info), PL_ERR_MEDIA_TYPE);
  CHECK_EQ_U(out.len, 0);
}

/* ---- stripping, per format ---- */

static void test_jpeg_strip_keeps_orientation_only(void) {
  for (int progressive = 0; progressive <= 1; progressive++) {
    pl_bytes in = {0}, out = {0};
    fx_jpeg(&in, progressive);
    pl_bytes_append(&in, "TRAILER", 7); /* after EOI: dropped */
    pl_img_info i = strip_clean(&in, &out);
    check_info(i, PL_IMG_JPEG, 1, FX_ORIENTATION, 0);
    static const uint8_t min_exif[] = {0xFF, 0xE1, 0, 34, 'E', 'x', 'i', 'f', 0, 0,
                                       'M',  'M',  0, 42, 0,   0,   0,   8,   0, 1,
                                       1,    0x12, 0, 3,  0,   0,   0,   1,   0, FX_ORIENTATION};
    CHECK(has(&out, min_exif, sizeof min_exif));
    CHECK(has(&out, "ICC_PROFILE", 12)); /* colour kept */
    CHECK(has(&out, "JFIF", 5));         /* kept, without its thumbnail */
    CHECK(!has_str(&out, "TRAILER") && !has(&out, "http://ns.adobe.com", 19) && !has(&out, "Photoshop", 9));
    CHECK(out.p[out.len - 2] == 0xFF && out.p[out.len - 1] == 0xD9);
    CHECK(decodes(&out, FX_W, FX_H));
    pl_bytes_free(&in);
    pl_bytes_free(&out);
  }
}

static void test_jpeg_orientation_1_leaves_no_exif(void) {
  static const uint8_t soi_exif[] = {0xFF, 0xD8, 0xFF, 0xE1, 0, 34, 'E', 'x', 'i', 'f',  0, 0, 'I',
                                     'I',  42,   0,    8,    0, 0,  0,   1,   0,   0x12, 1, 3, 0,
                                     1,    0,    0,    0,    1, 0,  0,   0,   0,   0,    0, 0};
  pl_bytes in = {0}, out = {0};
  pl_bytes_append(&in, soi_exif, sizeof soi_exif);
  fx_jpeg(&in, 0);
  memmove(in.p + sizeof soi_exif, in.p + sizeof soi_exif + 2, in.len - sizeof soi_exif - 2); /* one SOI */
  in.len -= 2;
  pl_img_info i = strip_clean(&in, &out);
  CHECK_EQ_I(i.orientation, 0); /* the first EXIF counts; 1 is no rotation */
  CHECK(!has(&out, "Exif", 4));
  pl_bytes_free(&in);
  pl_bytes_free(&out);
}

/* Entropy-coded data with a stuffed 0xFF00, a restart marker and a fill
 * byte before EOI is copied as it is: nothing in this file is metadata. */
static void test_jpeg_scan_markers_copied(void) {
  static const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xC0, 0,    11,   8,    0,    FX_H, 0,    FX_W, 1, 1,
                                 0x11, 0,    0xFF, 0xDA, 0,    8,    1,    1,    0,    0,    0x3F, 0, 0x12,
                                 0xFF, 0,    0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xFF, 0xD9, 0xFF, 0xD9};
  pl_bytes in = {0}, out = {0};
  pl_bytes_append(&in, jpeg, sizeof jpeg);
  pl_img_info i = strip_clean(&in, &out);
  check_info(i, PL_IMG_JPEG, 1, 0, 0);
  CHECK(out.len == sizeof jpeg - 2 &&
        memcmp(out.p, jpeg, out.len) == 0); /* the second EOI is after the end */
  CHECK_EQ_I(pl_img_strip(jpeg, sizeof jpeg, &lim, NULL, NULL, &i), PL_OK); /* check only */
  CHECK_EQ_U(i.width, FX_W);
  pl_bytes_free(&in);
  pl_bytes_free(&out);
}

static void test_png_strip(void) {
  pl_bytes in = {0}, out = {0};
  fx_png(&in);
  pl_bytes_append(&in, "TRAILER", 7);
  pl_img_info i = strip_clean(&in, &out);
  check_info(i, PL_IMG_PNG, 1, FX_ORIENTATION, 0);
  CHECK(!has(&out, "tEXt", 4) && !has(&out, "tIME", 4) && !has(&out, "iTXt", 4) && !has_str(&out, "TRAILER"));
  CHECK(has(&out, "pHYs", 4) && has(&out, "eXIf", 4)); /* a minimal eXIf keeps the rotation */
  CHECK_EQ_U(out.len, 95 + 12 + 26);                   /* vips's own file, and that eXIf */
  CHECK(decodes(&out, FX_W, FX_H));
  pl_bytes_free(&in);
  pl_bytes_free(&out);
}

static void test_apng_frames(void) {
  pl_bytes in = {0}, out = {0};
  fx_apng(&in);
  pl_img_info i = strip_clean(&in, &out);
  check_info(i, PL_IMG_PNG, 2, 0, 1);
  CHECK(has(&out, "acTL", 4) && has(&out, "fcTL", 4) && has(&out, "fdAT", 4));
  CHECK(decodes(&out, FX_W, FX_H));
  pl_img_limits one = lim;
  one.max_frames = 1;
  CHECK_EQ_I(pl_img_strip(in.p, in.len, &one, NULL, NULL, NULL), PL_ERR_MEDIA_TOO_LARGE);
  pl_bytes_free(&in);
  pl_bytes_free(&out);
}

static void test_webp_strip(void) {
  for (int lossless = 0; lossless <= 1; lossless++) {
    pl_bytes in = {0}, out = {0};
    fx_webp(&in, lossless);
    CHECK(in.p[20] == 0x0C);
    pl_img_info i = strip_clean(&in, &out);
    check_info(i, PL_IMG_WEBP, 1, FX_WEBP_ORIENTATION, 0);
    static const uint8_t min_exif[] = {
        'E', 'X', 'I', 'F', 26, 0,    0, 0, 'M', 'M', 0, 42, 0, 0,
        0,   8,   0,   1,   1,  0x12, 0, 3, 0,   0,   0, 1,  0, FX_WEBP_ORIENTATION};
    CHECK(has(&out, min_exif, sizeof min_exif) && !has(&out, "XMP ", 4));
    CHECK_EQ_U(out.p[20], 0x08); /* VP8X flags: XMP cleared, EXIF (the minimal one) kept */
    uint32_t riff = out.p[4] | (uint32_t)out.p[5] << 8 | (uint32_t)out.p[6] << 16 | (uint32_t)out.p[7] << 24;
    CHECK_EQ_U(riff, out.len - 8);
    CHECK(decodes(&out, FX_W, FX_H));
    pl_bytes_free(&in);
    pl_bytes_free(&out);
  }
}

static void test_webp_animated(void) {
  pl_bytes in = {0}, out = {0};
  fx_webp_anim(&in);
  pl_img_info i = strip_clean(&in, &out);
  check_info(i, PL_IMG_WEBP, 2, 0, 1);
  CHECK_EQ_U(out.p[20], 0x02);
  CHECK(decodes(&out, FX_W, FX_H));
  pl_bytes_free(&in);
  pl_bytes_free(&out);
}

static void test_gif_strip(void) {
  pl_bytes in = {0}, out = {0};
  fx_gif(&in);
  pl_img_info i = strip_clean(&in, &out);
  check_info(i, PL_IMG_GIF, 2, 0, 1);
  CHECK(has(&out, "NETSCAPE2.0", 11) && !has(&out, "XMP Data", 8));
  CHECK_EQ_U(out.len, in.len - (3 + 21 + 1) - (14 + 40 + 2)); /* the comment and the XMP go */
  CHECK(decodes(&out, FX_W, FX_H));
  pl_img_limits one = lim;
  one.max_frames = 1;
  CHECK_EQ_I(pl_img_strip(in.p, in.len, &one, NULL, NULL, &i), PL_ERR_MEDIA_TOO_LARGE);
  pl_bytes_free(&in);
  pl_bytes_free(&out);
}

/* ---- malformed input ---- */

typedef void (*fixture_fn)(pl_bytes *out);
static void fx_jpeg_base(pl_bytes *o) { fx_jpeg(o, 0); }
static void fx_jpeg_prog(pl_bytes *o) { fx_jpeg(o, 1); }
static void fx_webp_lossy(pl_bytes *o) { fx_webp(o, 0); }
static void fx_webp_lossless(pl_bytes *o) { fx_webp(o, 1); }
static const fixture_fn fixtures[] = {fx_jpeg_base,  fx_jpeg_prog,     fx_png,       fx_apng,
                                      fx_webp_lossy, fx_webp_lossless, fx_webp_anim, fx_gif};

static int never_write(void *ud, const uint8_t *p, size_t n) {
  (void)p, (void)n;
  ++*(int *)ud;
  return -1;
}

/* Every prefix of every fixture is refused, and nothing is written. */
static void test_every_truncation_fails_cleanly(void) {
  for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
    pl_bytes in = {0};
    fixtures[f](&in);
    for (size_t n = 0; n < in.len; n++) {
      int writes = 0;
      uint8_t *copy = pl_memdup(in.p, n ? n : 1); /* ASan sees any read past n */
      pl_err e = pl_img_strip(copy, n, &lim, never_write, &writes, NULL);
      CHECK(e == PL_ERR_BAD_MEDIA || e == PL_ERR_MEDIA_TYPE);
      CHECK_EQ_I(writes, 0);
      pl_free(copy);
    }
    pl_bytes_free(&in);
  }
}

static void test_write_failure_is_io(void) {
  pl_bytes in = {0};
  int writes = 0;
  fx_gif(&in);
  CHECK_EQ_I(pl_img_strip(in.p, in.len, &lim, never_write, &writes, NULL), PL_ERR_IO);
  CHECK_EQ_I(writes, 1);
  pl_bytes_free(&in);
}

static void test_png_bad_crc(void) {
  pl_bytes in = {0};
  fx_png(&in);
  in.p[in.len - 20] ^= 1; /* inside the IDAT */
  CHECK_EQ_I(pl_img_strip(in.p, in.len, &lim, NULL, NULL, NULL), PL_ERR_BAD_MEDIA);
  pl_bytes_free(&in);
}

/* ---- decompression bombs: refused from the header, the rest unread ---- */

static void png_header(pl_bytes *b, uint32_t w, uint32_t h) {
  uint8_t ihdr[13] = {0, 0, 0, 0, 0, 0, 0, 0, 8, 2, 0, 0, 0};
  for (int i = 0; i < 4; i++)
    ihdr[i] = (uint8_t)(w >> (24 - 8 * i)), ihdr[4 + i] = (uint8_t)(h >> (24 - 8 * i));
  pl_bytes_append(b, "\x89PNG\r\n\x1a\n", 8);
  fx_png_chunk(b, "IHDR", ihdr, sizeof ihdr);
}

static void test_bombs_refused_from_the_header(void) {
  pl_bytes b = {0};
  pl_img_info i;
  png_header(&b, 100000, 100000);
  CHECK_EQ_I(pl_img_strip(b.p, b.len, &lim, NULL, NULL, &i), PL_ERR_MEDIA_TOO_LARGE);
  CHECK_EQ_U(i.width, 100000);
  b.len = 0;
  png_header(&b, 10000, 10000); /* each side fine, the area not */
  CHECK_EQ_I(pl_img_strip(b.p, b.len, &lim, NULL, NULL, NULL), PL_ERR_MEDIA_TOO_LARGE);
  b.len = 0;
  png_header(&b, 0, 10);
  CHECK_EQ_I(pl_img_strip(b.p, b.len, &lim, NULL, NULL, NULL), PL_ERR_BAD_MEDIA);

  static const uint8_t gif[] = {'G', 'I',  'F', '8', '9', 'a', 10,   0,    6,    0,    0, 0,
                                0,   0x2C, 0,   0,   0,   0,   0xFF, 0xFF, 0xFF, 0xFF, 0};
  CHECK_EQ_I(pl_img_strip(gif, sizeof gif, &lim, NULL, NULL, NULL), PL_ERR_MEDIA_TOO_LARGE);
  static const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8, 0xEA, 0x60, 0xEA, 0x60, 3};
  CHECK_EQ_I(pl_img_strip(jpeg, sizeof jpeg, &lim, NULL, NULL, &i), PL_ERR_BAD_MEDIA); /* cut in the SOF */
  uint8_t sof[2 + 19] = {0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8, 0xEA, 0x60, 0xEA, 0x60, 3};
  CHECK_EQ_I(pl_img_strip(sof, sizeof sof, &lim, NULL, NULL, &i), PL_ERR_MEDIA_TOO_LARGE);
  CHECK_EQ_U(i.width, 60000);

  b.len = 0;
  fx_webp(&b, 1);
  b.p[24] = b.p[27] = 0xFF, b.p[25] = b.p[28] = 0x3F; /* canvas 16384 x 16384 */
  b.len = 30;
  CHECK_EQ_I(pl_img_strip(b.p, b.len, &lim, NULL, NULL, NULL), PL_ERR_BAD_MEDIA); /* the RIFF is cut */
  b.p[4] = 22, b.p[5] = b.p[6] = b.p[7] = 0;
  CHECK_EQ_I(pl_img_strip(b.p, b.len, &lim, NULL, NULL, NULL), PL_ERR_MEDIA_TOO_LARGE);
  pl_bytes_free(&b);
}

static void test_no_leaks(void) { CHECK_EQ_U(pl_mem_used(), 0); }

int main(void) {
#ifdef PL_TEST_VIPS
  if (VIPS_INIT("test_img"))
    return 1;
  vips_cache_set_max(0);
#endif
  RUN(test_sniff_magic_only);
  RUN(test_pdf_renamed_jpg_is_not_an_image);
  RUN(test_jpeg_strip_keeps_orientation_only);
  RUN(test_jpeg_orientation_1_leaves_no_exif);
  RUN(test_jpeg_scan_markers_copied);
  RUN(test_png_strip);
  RUN(test_apng_frames);
  RUN(test_webp_strip);
  RUN(test_webp_animated);
  RUN(test_gif_strip);
  RUN(test_every_truncation_fails_cleanly);
  RUN(test_write_failure_is_io);
  RUN(test_png_bad_crc);
  RUN(test_bombs_refused_from_the_header);
  RUN(test_no_leaks);
#ifdef PL_TEST_VIPS
  vips_shutdown();
#endif
  return tl_summary();
}
