/* fuzz_img: the upload path's image codec (pl_img): sniff, check, strip.
 *
 * Input: a whole file. An error must be one of pl_img's and come with no
 * output. An accepted file must respect the limits, and its stripped copy
 * must be accepted again and strip to the very same bytes and info
 * (idempotence: stripping keeps nothing that a second pass would remove). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_buf.h"
#include "common/pl_mem.h"
#include "media/pl_img.h"

#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "fuzz_img: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                    \
    }                                                                             \
  } while (0)

/* Small limits, so that bombs are easy to reach. */
static const pl_img_limits lim = {.max_side = 4096, .max_frames = 64, .max_pixels = 1u << 22};

static int grow(void *ud, const uint8_t *p, size_t n) {
  pl_bytes_append(ud, p, n);
  return 0;
}

static void check_accepted(size_t size, const pl_bytes *out, const pl_img_info *info) {
  FUZZ_CHECK(info->width > 0 && info->width <= lim.max_side && info->height > 0 &&
             info->height <= lim.max_side);
  FUZZ_CHECK((uint64_t)info->width * info->height <= lim.max_pixels);
  FUZZ_CHECK(info->frames >= 1 && info->frames <= lim.max_frames);
  FUZZ_CHECK(info->orientation == 0 || (info->orientation >= 2 && info->orientation <= 8));
  FUZZ_CHECK(out->len <= size + 64); /* at most a minimal EXIF in place of a smaller one */
  FUZZ_CHECK(pl_img_sniff(out->p, out->len) == info->type);

  pl_bytes again = {0};
  pl_img_info info2;
  FUZZ_CHECK(pl_img_strip(out->p, out->len, &lim, grow, &again, &info2) == PL_OK);
  FUZZ_CHECK(again.len == out->len && memcmp(again.p, out->p, out->len) == 0);
  FUZZ_CHECK(memcmp(&info2, info, sizeof info2) == 0);
  pl_bytes_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pl_img_type t = pl_img_sniff(data, size);
  FUZZ_CHECK((pl_img_mime(t) == NULL) == (t == PL_IMG_NONE));
  pl_bytes out = {0};
  pl_img_info info;
  pl_err e = pl_img_strip(data, size, &lim, grow, &out, &info);
  FUZZ_CHECK(info.type == t);
  FUZZ_CHECK((e == PL_ERR_MEDIA_TYPE) == (t == PL_IMG_NONE));
  if (e == PL_OK)
    check_accepted(size, &out, &info);
  else
    FUZZ_CHECK((e == PL_ERR_BAD_MEDIA || e == PL_ERR_MEDIA_TOO_LARGE || e == PL_ERR_MEDIA_TYPE) &&
               out.len == 0);
  pl_bytes_free(&out);
  FUZZ_CHECK(pl_mem_used() == 0);
  return 0;
}
