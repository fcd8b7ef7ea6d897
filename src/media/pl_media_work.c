/* pl_media_work.c: what a media worker does with a whole upload: sniff its
 * type, write a copy without metadata (pl_img), decode every pixel and make
 * a thumbnail with libvips, and put both into the blob store. Runs off the
 * loops; touches only the spool file, the blob store and the result. */
#include "pl_media_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vips/vips.h>

#include "common/pl_log.h"
#include "rules/pl_bucket.h"

/* Output that is hashed as it is written. */
typedef struct pl__hfile {
  FILE *f;
  crypto_hash_sha256_state h;
  uint64_t n;
} pl__hfile;

static int pl__hwrite(void *ud, const uint8_t *p, size_t n) {
  pl__hfile *o = ud;
  crypto_hash_sha256_update(&o->h, p, n);
  o->n += n;
  return fwrite(p, 1, n, o->f) == n ? 0 : -1;
}

static void pl__hfinal(pl__hfile *o, char key[65]) {
  uint8_t d[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(&o->h, d);
  pl_media_hex(d, sizeof d, key);
}

/* A new spool file; path gets its name. */
static FILE *pl__spool_file(pl_media *m, const char *what, char *path, size_t cap) {
  snprintf(path, cap, "%s/%s-XXXXXX", m->blob->ops->spool(m->blob), what);
  int fd = mkstemp(path);
  if (fd < 0)
    return NULL;
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    close(fd);
    unlink(path);
  }
  return f;
}

/* On a sharded store a blob lives on its owner's shard: its key's first 4
 * hex digits become the owner's bucket (the blob store routes by them), so
 * equal bytes are stored once per bucket, not once per server. */
static void pl__key_bucket(const pl_media *m, char key[65], uint64_t owner) {
  if (m->cfg.sharded)
    pl_bucket_media_put(key, pl_bucket_of_id(owner));
}

/* Flushes, syncs and closes o's file; then it becomes the blob of its hash. */
static pl_err pl__hcommit(pl_media *m, pl__hfile *o, const char *path, char key[65], uint64_t owner) {
  int bad = fflush(o->f) != 0 || fsync(fileno(o->f)) != 0;
  bad |= fclose(o->f) != 0;
  o->f = NULL;
  if (bad) {
    unlink(path);
    return PL_ERR_IO;
  }
  pl__hfinal(o, key);
  pl__key_bucket(m, key, owner);
  return m->blob->ops->put_file(m->blob, key, path);
}

/* Decodes every pixel (every frame of an animation): a truncated or
 * corrupt file fails here, not in a recipient's viewer. */
static pl_err pl__vips_check(const char *path, pl_img_type t, const pl_img_info *info) {
  VipsImage *im = NULL;
  double avg;
  int multi = t == PL_IMG_GIF || t == PL_IMG_WEBP;
  if (multi)
    im = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_TRUNCATED,
                                  "n", -1, NULL);
  else
    im = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_TRUNCATED,
                                  NULL);
  pl_err e = PL_OK;
  if (!im || (uint32_t)vips_image_get_width(im) != info->width || vips_avg(im, &avg, NULL) != 0)
    e = PL_ERR_BAD_MEDIA;
  if (e != PL_OK)
    pl_debug("media: libvips refused an image: %s", vips_error_buffer());
  vips_error_clear();
  if (im)
    g_object_unref(im);
  return e;
}

/* A JPEG thumbnail that fits px x px, upright, on white where transparent. */
static pl_err pl__thumb(pl_media *m, const char *path, pl_media_row *row) {
  VipsImage *t = NULL, *flat = NULL;
  void *buf = NULL;
  size_t len = 0;
  int px = (int)m->cfg.thumb_px;
  pl_err e = PL_ERR_BAD_MEDIA;
  if (vips_thumbnail(path, &t, px, "height", px, "size", VIPS_SIZE_DOWN, "fail_on", VIPS_FAIL_ON_TRUNCATED,
                     NULL) != 0)
    goto out;
  if (vips_image_hasalpha(t)) {
    VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
    int rc = vips_flatten(t, &flat, "background", white, NULL);
    vips_area_unref(VIPS_AREA(white));
    if (rc != 0)
      goto out;
    g_object_unref(t);
    t = flat;
    flat = NULL;
  }
  if (vips_jpegsave_buffer(t, &buf, &len, "Q", 75, "strip", TRUE, "optimize_coding", TRUE, NULL) != 0)
    goto out;
  char tpath[4096];
  pl__hfile o = {0};
  crypto_hash_sha256_init(&o.h);
  o.f = pl__spool_file(m, "thumb", tpath, sizeof tpath);
  if (!o.f || pl__hwrite(&o, buf, len) != 0) {
    if (o.f) {
      fclose(o.f);
      unlink(tpath);
    }
    e = PL_ERR_IO;
    goto out;
  }
  e = pl__hcommit(m, &o, tpath, row->thumb, row->owner);
  row->thumb_size = len;
  row->thumb_width = (uint32_t)vips_image_get_width(t);
  row->thumb_height = (uint32_t)vips_image_get_height(t);
out:
  if (e == PL_ERR_BAD_MEDIA)
    pl_debug("media: no thumbnail: %s", vips_error_buffer());
  vips_error_clear();
  g_free(buf);
  if (t)
    g_object_unref(t);
  if (flat)
    g_object_unref(flat);
  return e;
}

static void pl__image(pl_media *m, const uint8_t *p, size_t n, pl_img_type t, pl_media_result *res) {
  char path[4096];
  pl__hfile o = {0};
  pl_img_info info;
  crypto_hash_sha256_init(&o.h);
  o.f = pl__spool_file(m, "img", path, sizeof path);
  if (!o.f) {
    res->e = PL_ERR_IO;
    return;
  }
  res->e = pl_img_strip(p, n, &m->cfg.limits, pl__hwrite, &o, &info);
  if (res->e != PL_OK) {
    fclose(o.f);
    unlink(path);
    res->why = res->e == PL_ERR_MEDIA_TOO_LARGE ? "the image is too large" : "the image is damaged";
    return;
  }
  res->e = fflush(o.f) == 0 ? PL_OK : PL_ERR_IO; /* libvips reads the file by name */
  if (res->e == PL_OK)
    res->e = pl__vips_check(path, t, &info);
  if (res->e == PL_OK)
    res->e = pl__thumb(m, path, &res->row);
  if (res->e != PL_OK) {
    fclose(o.f);
    unlink(path);
    res->why = "the image is damaged";
    return;
  }
  res->row.size = o.n;
  res->e = pl__hcommit(m, &o, path, res->row.blob, res->row.owner);
  snprintf(res->row.type, sizeof res->row.type, "%s", pl_img_mime(t));
  int turned = info.orientation >= 5 && info.orientation <= 8; /* shown a quarter turn round */
  res->row.width = turned ? info.height : info.width;
  res->row.height = turned ? info.width : info.height;
}

/* Not an image: kept as it came, if the server takes plain files. */
static void pl__plain(pl_media *m, int fd, const char *tmp, const uint8_t *p, size_t n,
                      pl_media_result *res) {
  uint8_t d[crypto_hash_sha256_BYTES];
  if (!m->cfg.allow_files) {
    res->e = PL_ERR_MEDIA_TYPE;
    res->why = "only JPEG, PNG, WebP and GIF images are accepted";
    return;
  }
  crypto_hash_sha256(d, p, n);
  pl_media_hex(d, sizeof d, res->row.blob);
  pl__key_bucket(m, res->row.blob, res->row.owner);
  snprintf(res->row.type, sizeof res->row.type, "application/octet-stream");
  res->row.size = n;
  /* the blob store takes a second name of the spool file, so the spool stays
   * for a retry (the sweep may take the blob before the store records it) */
  char put[4200];
  snprintf(put, sizeof put, "%s.put", tmp);
  unlink(put);
  res->e =
      fsync(fd) == 0 && link(tmp, put) == 0 ? m->blob->ops->put_file(m->blob, res->row.blob, put) : PL_ERR_IO;
}

void pl_media_work_process(pl_media *m, int fd, const char *tmp, uint64_t n, pl_media_result *res) {
  if (n == 0) {
    res->e = PL_ERR_BAD_MEDIA;
    res->why = "the upload is empty";
    return;
  }
  void *p = mmap(NULL, (size_t)n, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) {
    res->e = PL_ERR_IO;
    return;
  }
  pl_img_type t = pl_img_sniff(p, (size_t)n);
  if (t != PL_IMG_NONE)
    pl__image(m, p, (size_t)n, t, res);
  else
    pl__plain(m, fd, tmp, p, (size_t)n, res);
  munmap(p, (size_t)n);
}
