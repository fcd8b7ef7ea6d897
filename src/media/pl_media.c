#include "pl_media.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include "common/pl_log.h"
#include "common/pl_map.h"
#include "common/pl_mem.h"
#include "common/pl_time.h"
#include "core/pl_auth.h"
#include "pl_mpool.h"
#include "rules/pl_quota.h"

/* Upload bytes gather here and go to disk in one write. */
#define PL__WBUF (256u << 10)

/* A resumable upload (protocol.md 13.2.1): its bytes so far are the spool
 * file tmp/rs-<id>, its owner and length the side file tmp/rs-<id>.meta,
 * so it survives a restart; this is the in-memory index of them. */
typedef struct pl__rs {
  char id[33];
  uint64_t user, length, created;
  char name[128];
  int busy; /* a PATCH is writing to it */
} pl__rs;

struct pl_media {
  pl_media_config cfg;
  pl_blob *blob;
  pl_store *store;
  /* media's own threads, apart from libuv's pool where logins hash: one
   * for spool writes (short), cfg.workers for processing (long) */
  pl_mpool *io, *work;
  pthread_mutex_t rs_mu;
  pl_map rs;         /* id's first 16 hex digits -> pl__rs */
  pl_quota quota;    /* the quota, and what unfinished uploads reserve of it (under rs_mu) */
  uint64_t rs_swept; /* when stale resumable uploads were last looked for */
  uint8_t link_key[crypto_auth_hmacsha256_KEYBYTES];
  atomic_uint_fast64_t uploads, upload_bytes, refused, downloads;
};

/* ---- store requests from a loop ------------------------------------------ */

/* A store request whose answer runs on the loop that asked. */
typedef struct pl__mreq pl__mreq;
struct pl__mreq {
  pl_store_req req;
  pl_task task;
  pl_loop *loop;
  void (*fn)(pl__mreq *r);
};

static void pl__mreq_task(pl_task *t) {
  pl__mreq *r = (pl__mreq *)((char *)t - offsetof(pl__mreq, task));
  r->fn(r);
}

/* On the store thread (or, refused at shutdown, on the submitter's). */
static void pl__mreq_done(pl_store_req *req) {
  pl__mreq *r = (pl__mreq *)req;
  r->task.fn = pl__mreq_task;
  if (pl_loop_post(r->loop, &r->task) != PL_OK)
    r->fn(r); /* the loop's mailbox is closed: the submit came from it */
}

static void pl__mreq_submit(pl_media *m, pl__mreq *r, pl_loop *loop, void (*fn)(pl__mreq *)) {
  r->req.done = pl__mreq_done;
  r->req.origin = NULL;
  r->loop = loop;
  r->fn = fn;
  pl_store_submit(m->store, &r->req);
}

/* ---- small HTTP helpers ---------------------------------------------------- */

static void pl__json_res(pl_http_res *res, int status, json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  res->status = status;
  res->type = "application/json";
  pl_bytes_append(&res->body, s, strlen(s));
  pl_bytes_append(&res->body, "\n", 1);
  free(s);
}

static void pl__error_res(pl_http_res *res, int status, const char *why) {
  pl__json_res(res, status, json_pack("{s:s,s:i}", "error", why, "status", status));
}

/* "Bearer <token>" -> the hash the store keeps of the token. */
static int pl__bearer(const pl_http_req *req, uint8_t hash[PL_TOKEN_HASH_LEN]) {
  const char *a = pl_http_bearer(req);
  size_t n = a ? strlen(a) : 0;
  if (n == 0 || n >= PL_AUTH_TOKEN_MAX)
    return 0;
  pl_auth_token_hash(a, n, hash);
  return 1;
}

/* The value of query parameter k (percent-decoded, at most cap-1 bytes). */
static int pl__query(const char *url, const char *k, char *out, size_t cap) {
  const char *q = strchr(url, '?');
  size_t kl = strlen(k);
  while (q && *q) {
    q++;
    if (!strncmp(q, k, kl) && q[kl] == '=') {
      const char *v = q + kl + 1;
      size_t o = 0;
      while (*v && *v != '&' && o + 1 < cap) {
        if (*v == '%' && v[1] && v[2]) {
          char hex[3] = {v[1], v[2], 0};
          out[o++] = (char)strtol(hex, NULL, 16);
          v += 3;
        } else {
          out[o++] = *v == '+' ? ' ' : *v;
          v++;
        }
      }
      out[o] = '\0';
      return 1;
    }
    q = strchr(q, '&');
  }
  return 0;
}

/* A file name as given, made safe to show and to put in a header. */
static void pl__clean_name(char *s) {
  for (char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
          *p == '-' || *p == '_' || *p == ' '))
      *p = '_';
}

static int pl__id_valid(const char *id, size_t n) {
  if (n != 32)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
      return 0;
  return 1;
}

/* A stored type as a string that outlives the request (pl_http_ex_reply). */
static const char *pl__static_type(const char *t) {
  for (pl_img_type i = PL_IMG_JPEG; i <= PL_IMG_GIF; i++)
    if (!strcmp(t, pl_img_mime(i)))
      return pl_img_mime(i);
  return "application/octet-stream";
}

static json_t *pl__row_json(const pl_media_row *r) {
  return json_pack("{s:s,s:s,s:I,s:i,s:i,s:i,s:i,s:I,s:s}", "id", r->id, "type", r->type, "size",
                   (json_int_t)r->size, "width", (int)r->width, "height", (int)r->height, "thumb_width",
                   (int)r->thumb_width, "thumb_height", (int)r->thumb_height, "thumb_size",
                   (json_int_t)r->thumb_size, "name", r->name);
}

/* ---- processing (a worker thread) ------------------------------------------ */

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

static void pl__hex(const uint8_t *d, size_t n, char *out) {
  static const char hx[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hx[d[i] >> 4];
    out[2 * i + 1] = hx[d[i] & 15];
  }
  out[2 * n] = '\0';
}

static void pl__hfinal(pl__hfile *o, char key[65]) {
  uint8_t d[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(&o->h, d);
  pl__hex(d, sizeof d, key);
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

/* Flushes, syncs and closes o's file; then it becomes the blob of its hash. */
static pl_err pl__hcommit(pl_media *m, pl__hfile *o, const char *path, char key[65]) {
  int bad = fflush(o->f) != 0 || fsync(fileno(o->f)) != 0;
  bad |= fclose(o->f) != 0;
  o->f = NULL;
  if (bad) {
    unlink(path);
    return PL_ERR_IO;
  }
  pl__hfinal(o, key);
  return m->blob->ops->put_file(m->blob, key, path);
}

/* The result of processing an upload. */
typedef struct pl__result {
  pl_media_row row;
  pl_err e;
  const char *why; /* for the answer */
} pl__result;

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
  e = pl__hcommit(m, &o, tpath, row->thumb);
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

static void pl__image(pl_media *m, const uint8_t *p, size_t n, pl_img_type t, pl__result *res) {
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
  res->e = pl__hcommit(m, &o, path, res->row.blob);
  snprintf(res->row.type, sizeof res->row.type, "%s", pl_img_mime(t));
  int turned = info.orientation >= 5 && info.orientation <= 8; /* shown a quarter turn round */
  res->row.width = turned ? info.height : info.width;
  res->row.height = turned ? info.width : info.height;
}

/* Not an image: kept as it came, if the server takes plain files. */
static void pl__plain(pl_media *m, int fd, const char *tmp, const uint8_t *p, size_t n, pl__result *res) {
  uint8_t d[crypto_hash_sha256_BYTES];
  if (!m->cfg.allow_files) {
    res->e = PL_ERR_MEDIA_TYPE;
    res->why = "only JPEG, PNG, WebP and GIF images are accepted";
    return;
  }
  crypto_hash_sha256(d, p, n);
  pl__hex(d, sizeof d, res->row.blob);
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

static void pl__process(pl_media *m, int fd, const char *tmp, uint64_t n, pl__result *res) {
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

/* ---- uploads ----------------------------------------------------------------- */

typedef struct pl__up {
  pl_http_sink sink;
  pl_media *m;
  pl_http_ex *x; /* held from open to the reply (or released at abort) */
  pl_loop *loop;
  int fd;
  char tmp[4096];
  char name[128];
  pl_bytes buf; /* read, not yet written */
  uint64_t off; /* written */
  uint64_t total;
  pl_mjob wjob, pjob; /* a spool write (m->io), the processing (m->work) */
  int werr;           /* the write's errno */
  pl__mreq sreq;
  int busy;   /* a write, a store request or the worker is under way */
  int auth;   /* 0: waiting (nothing is read meanwhile), 1: ok, -1: refused */
  int failed; /* an HTTP status to answer with, once the body has ended */
  int ended, aborted, replied, tries;
  uint64_t user_id, usage;
  pl__result res;
  pl__rs *rs;    /* a resumable upload's PATCH, once its owner is known (else a one-shot POST) */
  uint64_t base; /* its offset when this request began */
  int finished;  /* the resumable upload is done with (stored or refused for good) */
  int patch;     /* PATCH /media/uploads/<rs_id> at Upload-Offset: want */
  char rs_id[33];
  uint64_t want;
} pl__up;

static void pl__rs_release(pl_media *m, pl__rs *rs, int finished);

static void pl__up_free(pl__up *u) {
  /* what arrived before a cut stays (u->rs is set only for its owner) */
  if (u->rs && !u->finished && u->buf.len && u->fd >= 0 && !u->failed)
    if (pwrite(u->fd, u->buf.p, u->buf.len, (off_t)u->off) < 0)
      pl_warn("media: keeping a cut upload's last piece: %s", strerror(errno));
  if (u->fd >= 0)
    close(u->fd);
  if (u->rs)
    pl__rs_release(u->m, u->rs, u->finished);
  else if (*u->tmp)
    unlink(u->tmp); /* gone already if it became a blob */
  pl_bytes_free(&u->buf);
  pl_store_req_clear(&u->sreq.req);
  pl_free(u);
}

static void pl__up_reply(pl__up *u, pl_http_res *res) {
  u->replied = 1;
  if (res->status >= 400)
    atomic_fetch_add_explicit(&u->m->refused, 1, memory_order_relaxed);
  pl_http_ex_reply(u->x, res);
  pl_bytes_free(&res->body);
}

static void pl__up_fail(pl__up *u, int status, const char *why) {
  pl_http_res res = {0};
  pl__error_res(&res, status, why);
  pl__up_reply(u, &res);
}

static void pl__up_step(pl__up *u);

/* After each piece of async work: the upload goes on, or is dropped. */
static void pl__up_settle(pl__up *u) {
  if (u->busy)
    return;
  if (u->aborted || u->replied) {
    if (u->aborted && !u->replied)
      pl_http_ex_release(u->x);
    pl__up_free(u);
    return;
  }
  pl__up_step(u);
}

/* Reading goes on. The sink's callbacks may run inside the resume (the
 * rest of the body, its end): the busy mark keeps them from freeing u under
 * the caller, which settles u after. */
static void pl__up_resume(pl__up *u) {
  u->busy++;
  if (!u->ended && !u->aborted)
    pl_http_ex_resume(u->x);
  u->busy--;
}

/* On the io thread: buf goes to the spool file at off (the loop leaves
 * both alone while the write is out). */
static void pl__write_job(pl_mjob *j) {
  pl__up *u = (pl__up *)((char *)j - offsetof(pl__up, wjob));
  size_t done = 0;
  u->werr = 0;
  while (done < u->buf.len && !u->werr) {
    ssize_t n = pwrite(u->fd, u->buf.p + done, u->buf.len - done, (off_t)(u->off + done));
    if (n > 0)
      done += (size_t)n;
    else if (n == 0 || errno != EINTR)
      u->werr = n < 0 ? errno : EIO;
  }
}

static void pl__write_done(pl_mjob *j) {
  pl__up *u = (pl__up *)((char *)j - offsetof(pl__up, wjob));
  u->busy--;
  if (u->werr) {
    pl_error("media: writing an upload: %s", strerror(u->werr));
    u->failed = 503;
  } else {
    u->off += u->buf.len;
  }
  u->buf.len = 0;
  pl__up_resume(u); /* the next piece gets the refusal, if any */
  pl__up_settle(u);
}

static void pl__write(pl__up *u) {
  u->wjob.work = pl__write_job;
  u->wjob.done = pl__write_done;
  u->busy++;
  if (pl_mpool_submit(u->m->io, pl_loop_uv(u->loop), &u->wjob) != PL_OK) {
    u->busy--;
    u->failed = 503;
  }
}

static void pl__work(pl_mjob *j) {
  pl__up *u = (pl__up *)((char *)j - offsetof(pl__up, pjob));
  memset(&u->res, 0, sizeof u->res);
  pl__process(u->m, u->fd, u->tmp, u->off, &u->res);
}

static void pl__put_done(pl__mreq *r);

static void pl__work_done(pl_mjob *j) {
  pl__up *u = (pl__up *)((char *)j - offsetof(pl__up, pjob));
  u->busy--;
  if (u->aborted) {
    pl__up_settle(u);
    return;
  }
  pl__result *res = &u->res;
  if (res->e != PL_OK) {
    u->finished = res->e != PL_ERR_IO; /* bad bytes: start again */
    int st = res->e == PL_ERR_MEDIA_TYPE                                      ? 415
             : res->e == PL_ERR_BAD_MEDIA || res->e == PL_ERR_MEDIA_TOO_LARGE ? 422
                                                                              : 503;
    pl__up_fail(u, st, res->why ? res->why : "the file could not be stored");
    pl__up_settle(u);
    return;
  }
  /* the id: 128 random bits, so ids cannot be guessed */
  uint8_t rnd[16];
  randombytes_buf(rnd, sizeof rnd);
  pl__hex(rnd, sizeof rnd, res->row.id);
  snprintf(res->row.name, sizeof res->row.name, "%s", u->name);
  pl_store_req_clear(&u->sreq.req);
  memset(&u->sreq.req, 0, sizeof u->sreq.req);
  u->sreq.req.op = PL_STORE_MEDIA_PUT;
  u->sreq.req.in.user_id = u->user_id;
  u->sreq.req.in.media = &res->row;
  pthread_mutex_lock(&u->m->rs_mu); /* what the user's other unfinished uploads leave */
  u->sreq.req.in.quota = pl_quota_room(&u->m->quota, u->user_id, u->rs ? u->rs->length : 0);
  pthread_mutex_unlock(&u->m->rs_mu);
  u->busy++;
  pl__mreq_submit(u->m, &u->sreq, u->loop, pl__put_done);
}

static void pl__start_work(pl__up *u) {
  u->pjob.work = pl__work;
  u->pjob.done = pl__work_done;
  u->busy++;
  if (pl_mpool_submit(u->m->work, pl_loop_uv(u->loop), &u->pjob) != PL_OK) {
    u->busy--;
    pl__up_fail(u, 503, "busy");
  }
}

static void pl__put_done(pl__mreq *r) {
  pl__up *u = (pl__up *)((char *)r - offsetof(pl__up, sreq));
  pl_err st = r->req.status;
  u->busy--;
  if (u->aborted) {
    pl__up_settle(u);
    return;
  }
  if (st == PL_ERR_AGAIN && u->tries++ < 2) { /* the sweep took the bytes meanwhile: store them again */
    pl__start_work(u);
    return;
  }
  if (st == PL_OK) {
    u->finished = 1;
    atomic_fetch_add_explicit(&u->m->uploads, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&u->m->upload_bytes, u->res.row.size, memory_order_relaxed);
    pl_http_res res = {0};
    pl__json_res(&res, 201, pl__row_json(&u->res.row));
    pl__up_reply(u, &res);
  } else {
    pl__up_fail(u, st == PL_ERR_QUOTA ? 413 : 503, st == PL_ERR_QUOTA ? "quota exceeded" : "try again later");
  }
  pl__up_settle(u);
}

/* A one-shot upload that would take the user past the quota, counting what
 * unfinished uploads reserve (a PATCH fills its own reservation). */
static int pl__up_over_quota(pl__up *u) {
  if (u->patch)
    return 0;
  pthread_mutex_lock(&u->m->rs_mu);
  pl_err e = pl_quota_check(&u->m->quota, u->user_id, u->usage, u->total);
  pthread_mutex_unlock(&u->m->rs_mu);
  return e != PL_OK;
}

/* What to do next, when nothing is under way. */
static void pl__up_step(pl__up *u) {
  if (u->auth == 0)
    return; /* the token's answer comes */
  if (!u->failed && u->auth < 0)
    u->failed = 401;
  if (!u->failed && pl__up_over_quota(u))
    u->failed = 413;
  if (!u->ended)
    return; /* more body comes (or the connection closes on the refusal) */
  if (u->failed) {
    pl__up_fail(u, u->failed,
                u->failed == 401   ? "bad token"
                : u->failed == 413 ? "quota exceeded"
                : u->failed == 404 ? "no such upload"
                                   : "try again later");
    pl__up_settle(u);
  } else if (u->buf.len) {
    pl__write(u);
  } else if (u->rs && u->off < u->rs->length) { /* a piece of a resumable upload */
    pl_http_res res = {.status = 204};
    char extra[96];
    snprintf(extra, sizeof extra, "Upload-Offset: %llu\r\nTus-Resumable: 1.0.0\r\n",
             (unsigned long long)u->off);
    res.extra = extra;
    pl__up_reply(u, &res);
    pl__up_settle(u);
  } else {
    pl__start_work(u);
  }
}

static int pl__up_claim(pl__up *u);

/* The token's answer. Only now, and only for the owner, does the upload
 * touch a file: a refused request changes nothing on disk. */
static void pl__auth_done(pl__mreq *r) {
  pl__up *u = (pl__up *)((char *)r - offsetof(pl__up, sreq));
  u->busy--;
  u->user_id = r->req.out.user_id;
  u->usage = r->req.out.usage;
  if (r->req.status == PL_ERR_BAD_TOKEN)
    u->failed = 401;
  else if (r->req.status != PL_OK)
    u->failed = 503;
  else /* also when the client has gone: a PATCH keeps what arrived (pl__up_free) */
    u->failed = pl__up_claim(u);
  u->auth = u->failed ? -1 : 1;
  pl__up_resume(u);
  pl__up_settle(u);
}

/* A refusal while the body comes: the connection answers it and closes
 * (no reply of ours follows, so it is counted here). */
static int pl__up_refuse(pl__up *u, int status) {
  atomic_fetch_add_explicit(&u->m->refused, 1, memory_order_relaxed);
  return status;
}

static int pl__up_data(pl_http_sink *s, const uint8_t *p, size_t n) {
  pl__up *u = (pl__up *)s;
  if (u->auth < 0 || u->failed)
    return pl__up_refuse(u, u->failed ? u->failed : 401);
  u->total += n;
  /* the first piece waits in memory, and nothing more is read, until the token's answer */
  if (u->auth == 0) {
    pl_bytes_append(&u->buf, p, n);
    return 1;
  }
  if (pl__up_over_quota(u))
    return pl__up_refuse(u, 413);
  pl_bytes_append(&u->buf, p, n);
  if (u->buf.len < PL__WBUF)
    return 0;
  pl__write(u);
  return u->failed ? pl__up_refuse(u, u->failed) : 1; /* read on when the write is done */
}

static void pl__up_end(pl_http_sink *s, const pl_http_req *req, pl_http_res *res, pl_http_ex *x) {
  (void)req;
  (void)x;
  pl__up *u = (pl__up *)s;
  u->ended = 1;
  res->status = 0; /* answered when processed (u->x is held) */
  pl__up_settle(u);
}

static void pl__up_abort(pl_http_sink *s) {
  pl__up *u = (pl__up *)s;
  u->aborted = 1;
  pl__up_settle(u);
}

/* ---- resumable uploads (protocol.md 13.2.1) ---------------------------------------- */

#define PL__RS_MAX_AGE_MS (24ull * 3600 * 1000) /* an unfinished resumable upload is dropped after this */

static uint64_t pl__rs_key(const char *id) {
  char k[17];
  memcpy(k, id, 16);
  k[16] = '\0';
  return strtoull(k, NULL, 16) | 1; /* never 0 */
}

static void pl__rs_path(const pl_media *m, const char *id, const char *suffix, char *out, size_t cap) {
  snprintf(out, cap, "%s/rs-%s%s", m->blob->ops->spool(m->blob), id, suffix);
}

/* The upload's record (all are in memory from the start). Under rs_mu. */
static pl__rs *pl__rs_find(pl_media *m, const char *id) {
  pl__rs *rs = pl_map_get(&m->rs, pl__rs_key(id));
  return rs && !strcmp(rs->id, id) ? rs : NULL;
}

/* An unfinished upload from its side file, at start-up: it enters the
 * index and its reservation the quota's ledger. */
static void pl__rs_load(pl_media *m, const char *id) {
  char path[4200], name[128] = "";
  unsigned long long user, length, created;
  pl__rs_path(m, id, ".meta", path, sizeof path);
  FILE *f = fopen(path, "r");
  if (!f || pl__rs_find(m, id)) {
    if (f)
      fclose(f);
    return;
  }
  int n = fscanf(f, "%llu %llu %llu %127s", &user, &length, &created, name);
  fclose(f);
  if (n < 3)
    return;
  pl__rs *rs = pl_calloc(1, sizeof *rs);
  snprintf(rs->id, sizeof rs->id, "%s", id);
  rs->user = user;
  rs->length = length;
  rs->created = created;
  snprintf(rs->name, sizeof rs->name, "%s", strcmp(name, "-") ? name : "");
  pl_map_put(&m->rs, pl__rs_key(id), rs);
  pl_quota_add(&m->quota, rs->user, rs->length);
}

static void pl__rs_forget(pl_media *m, pl__rs *rs) {
  char path[4200];
  pl__rs_path(m, rs->id, "", path, sizeof path);
  unlink(path);
  pl__rs_path(m, rs->id, ".meta", path, sizeof path);
  unlink(path);
  pl_quota_release(&m->quota, rs->user, rs->length);
  pl_map_del(&m->rs, pl__rs_key(rs->id));
  pl_free(rs);
}

static void pl__rs_release(pl_media *m, pl__rs *rs, int finished) {
  pthread_mutex_lock(&m->rs_mu);
  rs->busy = 0;
  if (finished)
    pl__rs_forget(m, rs);
  pthread_mutex_unlock(&m->rs_mu);
}

/* Unfinished uploads older than a day go (looked for at most hourly, on
 * the next creation; their side files tell their age). With load, the side
 * files found enter the index first (at start-up). Under rs_mu. */
static void pl__rs_sweep(pl_media *m, int load) {
  uint64_t now = pl_now_ms();
  if (!load && now - m->rs_swept < 3600u * 1000u)
    return;
  m->rs_swept = now;
  DIR *d = opendir(m->blob->ops->spool(m->blob));
  struct dirent *e;
  while (d && (e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (strncmp(e->d_name, "rs-", 3) || n != 3 + 32 + 5 || strcmp(e->d_name + 35, ".meta"))
      continue;
    char id[33];
    memcpy(id, e->d_name + 3, 32);
    id[32] = '\0';
    if (load)
      pl__rs_load(m, id);
    pl__rs *rs = pl__rs_find(m, id);
    if (rs && !rs->busy && now - rs->created > PL__RS_MAX_AGE_MS)
      pl__rs_forget(m, rs);
  }
  if (d)
    closedir(d);
}

/* POST /media/uploads and HEAD|GET /media/uploads/ID: a request that waits
 * for the token's answer. */
typedef struct pl__rq {
  pl__mreq sreq;
  pl_media *m;
  pl_http_ex *x;
  uint64_t length;
  char id[33], name[128];
  int create, del;
} pl__rq;

static void pl__rs_answer(pl_http_res *res, int status, const pl__rs *rs, uint64_t offset) {
  static _Thread_local char extra[320]; /* pl_http_ex_reply copies it */
  int n = status == 201 ? snprintf(extra, sizeof extra, "Location: /media/uploads/%s\r\n", rs->id) : 0;
  snprintf(
      extra + n, sizeof extra - (size_t)n,
      "Upload-Offset: %llu\r\nUpload-Length: %llu\r\nTus-Resumable: 1.0.0\r\nCache-Control: no-store\r\n",
      (unsigned long long)offset, (unsigned long long)rs->length);
  pl__json_res(res, status,
               json_pack("{s:s,s:I,s:I}", "upload", rs->id, "offset", (json_int_t)offset, "length",
                         (json_int_t)rs->length));
  res->extra = extra;
}

static void pl__rs_create(pl__rq *q, pl_http_res *res) {
  pl_media *m = q->m;
  const pl_store_req *r = &q->sreq.req;
  if (q->length > m->cfg.max_upload) {
    pl__error_res(res, 413, "Content Too Large");
    return;
  }
  /* Its length is reserved against the quota until it is finished,
   * deleted or expired (security finding 8). The record goes into the
   * index first, busy (a PATCH meanwhile gets 409, the sweep leaves it
   * alone), under an id no other record has. */
  pthread_mutex_lock(&m->rs_mu);
  pl__rs_sweep(m, 0);
  pl_err e = pl_quota_reserve(&m->quota, r->out.user_id, r->out.usage, q->length);
  if (e != PL_OK) {
    pthread_mutex_unlock(&m->rs_mu);
    if (e == PL_ERR_QUOTA)
      pl__error_res(res, 413, "quota exceeded");
    else
      pl__error_res(res, 429, "too many unfinished uploads");
    return;
  }
  pl__rs *rs = pl_calloc(1, sizeof *rs);
  rs->user = r->out.user_id;
  rs->length = q->length;
  rs->created = pl_now_ms();
  rs->busy = 1;
  snprintf(rs->name, sizeof rs->name, "%s", q->name);
  do {
    uint8_t rnd[16];
    randombytes_buf(rnd, sizeof rnd);
    pl__hex(rnd, sizeof rnd, rs->id);
  } while (pl_map_get(&m->rs, pl__rs_key(rs->id)));
  pl_map_put(&m->rs, pl__rs_key(rs->id), rs);
  pthread_mutex_unlock(&m->rs_mu);
  char path[4200];
  pl__rs_path(m, rs->id, ".meta", path, sizeof path);
  FILE *f = fopen(path, "w");
  int ok =
      f && fprintf(f, "%llu %llu %llu %s\n", (unsigned long long)rs->user, (unsigned long long)rs->length,
                   (unsigned long long)rs->created, *rs->name ? rs->name : "-") > 0;
  ok = f && fclose(f) == 0 && ok;
  pl__rs_path(m, rs->id, "", path, sizeof path);
  int fd = ok ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
  if (fd >= 0)
    close(fd);
  else
    pl_error("media: cannot make a resumable upload's files in %s", m->blob->ops->spool(m->blob));
  pl__rs copy = *rs;
  pl__rs_release(m, rs, fd < 0); /* not busy any more; on failure, forgotten with its files */
  if (fd < 0) {
    pl__error_res(res, 503, "try again later");
    return;
  }
  pl__rs_answer(res, 201, &copy, 0);
}

static void pl__rs_state(pl__rq *q, pl_http_res *res) {
  pl_media *m = q->m;
  char path[4200];
  struct stat st;
  pthread_mutex_lock(&m->rs_mu);
  pl__rs *rs = pl__rs_find(m, q->id);
  if (!rs || rs->user != q->sreq.req.out.user_id) {
    pthread_mutex_unlock(&m->rs_mu);
    pl__error_res(res, 404, "no such upload");
    return;
  }
  if (q->del) { /* its bytes and its reservation go (tus termination) */
    int busy = rs->busy;
    if (!busy)
      pl__rs_forget(m, rs);
    pthread_mutex_unlock(&m->rs_mu);
    if (busy)
      pl__error_res(res, 409, "a PATCH of this upload is running");
    else
      *res = (pl_http_res){.status = 204, .extra = "Tus-Resumable: 1.0.0\r\n"};
    return;
  }
  pl__rs_path(m, rs->id, "", path, sizeof path);
  uint64_t off = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
  pl__rs copy = *rs;
  pthread_mutex_unlock(&m->rs_mu);
  pl__rs_answer(res, 200, &copy, off);
}

static void pl__rq_done(pl__mreq *r) {
  pl__rq *q = (pl__rq *)r;
  pl_http_res res = {0};
  if (r->req.status == PL_ERR_BAD_TOKEN)
    pl__error_res(&res, 401, "bad token");
  else if (r->req.status != PL_OK)
    pl__error_res(&res, 503, "try again later");
  else if (q->create)
    pl__rs_create(q, &res);
  else
    pl__rs_state(q, &res);
  pl_http_ex_reply(q->x, &res);
  pl_store_req_clear(&q->sreq.req);
  pl_free(q);
}

/* POST /media/uploads (Upload-Length), HEAD|GET and DELETE /media/uploads/ID. */
static int pl__rs_route(pl_media *m, const pl_http_req *req, const char *path, pl_http_res *res,
                        pl_http_ex *x) {
  const char *rest = path + strlen("/media/uploads");
  int create = !*rest && !strcmp(req->method, "POST");
  int del = *rest == '/' && pl__id_valid(rest + 1, strlen(rest + 1)) && !strcmp(req->method, "DELETE");
  int state = *rest == '/' && pl__id_valid(rest + 1, strlen(rest + 1)) &&
              (!strcmp(req->method, "HEAD") || !strcmp(req->method, "GET") || del);
  if (!create && !state) {
    pl__error_res(res, *rest && *rest != '/' ? 404 : 405,
                  *rest && *rest != '/' ? "Not Found" : "method not allowed");
    return 1;
  }
  pl__rq *q = pl_calloc(1, sizeof *q);
  char *end = NULL;
  const char *len = req->hdr[PL_H_UPLOAD_LENGTH];
  q->length = len ? strtoull(len, &end, 10) : 0;
  if (create && (!len || !*len || *end || *len == '-')) {
    pl_free(q);
    pl__error_res(res, 400, "Upload-Length is needed");
    return 1;
  }
  if (!pl__bearer(req, q->sreq.req.in.token_hash)) {
    pl_free(q);
    pl__error_res(res, 401, "a token is needed");
    return 1;
  }
  q->m = m;
  q->x = x;
  q->create = create;
  q->del = del;
  if (state)
    memcpy(q->id, rest + 1, 32);
  if (pl__query(req->url, "name", q->name, sizeof q->name))
    pl__clean_name(q->name);
  q->sreq.req.op = PL_STORE_MEDIA_AUTH;
  pl_http_ex_hold(x);
  res->status = 0;
  pl__mreq_submit(m, &q->sreq, pl_http_ex_loop(x), pl__rq_done);
  return 1;
}

/* PATCH /media/uploads/ID by user at Upload-Offset want: the upload, now
 * busy with this request, and its offset; or NULL and the status. */
static pl__rs *pl__rs_patch(pl_media *m, const char *id, uint64_t user, uint64_t want, uint64_t *off,
                            int *status) {
  char path[4200];
  struct stat st;
  pthread_mutex_lock(&m->rs_mu);
  pl__rs *rs = pl__rs_find(m, id);
  if (rs) {
    pl__rs_path(m, id, "", path, sizeof path);
    *off = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
  }
  if (!rs || rs->user != user)
    *status = 404;                   /* someone else's upload: as if there were none */
  else if (rs->busy || want != *off) /* another PATCH writes, or the client is behind */
    *status = 409;
  else
    rs->busy = 1;
  pthread_mutex_unlock(&m->rs_mu);
  return *status ? NULL : rs;
}

static const pl_http_sink_ops pl__up_ops = {.data = pl__up_data, .end = pl__up_end, .abort = pl__up_abort};

/* Once the token is good: the spool file of the upload, a new one or the
 * resumable upload's (if it is the user's, free, and at the offset the
 * client gave). 0, or the HTTP status to refuse with. */
static int pl__up_claim(pl__up *u) {
  pl_media *m = u->m;
  if (u->patch) {
    int status = 0;
    if (!(u->rs = pl__rs_patch(m, u->rs_id, u->user_id, u->want, &u->off, &status)))
      return status;
    u->base = u->off;
    pl__rs_path(m, u->rs->id, "", u->tmp, sizeof u->tmp);
    u->fd = open(u->tmp, O_RDWR | O_CLOEXEC);
    snprintf(u->name, sizeof u->name, "%s", u->rs->name);
  } else {
    snprintf(u->tmp, sizeof u->tmp, "%s/up-XXXXXX", m->blob->ops->spool(m->blob));
    if ((u->fd = mkstemp(u->tmp)) < 0)
      *u->tmp = '\0';
  }
  if (u->fd >= 0)
    return 0;
  pl_error("media: cannot open a spool file in %s: %s", m->blob->ops->spool(m->blob), strerror(errno));
  return 503;
}

/* The body a PATCH may carry: what its upload lacks past the offset given
 * (any upload's: the owner is not known yet, and the answer says nothing). */
static uint64_t pl__rs_left(pl_media *m, const char *id, uint64_t want) {
  pthread_mutex_lock(&m->rs_mu);
  const pl__rs *rs = pl__rs_find(m, id);
  uint64_t left = rs && want <= rs->length ? rs->length - want : m->cfg.max_upload;
  pthread_mutex_unlock(&m->rs_mu);
  return left;
}

/* While the disk is full (the store gave its reserve back), an upload's
 * bytes would eat the room left for acks: refused before any is read. */
static int pl__disk_full(pl_media *m) {
  pl_store_stats st;
  if (!m->store)
    return 0;
  pl_store_get_stats(m->store, &st);
  return st.disk_full;
}

pl_http_sink *pl_media_upload(pl_media *m, const pl_http_req *req, pl_http_ex *x, uint64_t *limit,
                              int *status) {
  size_t plen = strcspn(req->url, "?");
  static const char up[] = "/media/uploads/";
  int patch = !strcmp(req->method, "PATCH") && plen == sizeof up - 1 + 32 &&
              !strncmp(req->url, up, sizeof up - 1) && pl__id_valid(req->url + sizeof up - 1, 32);
  if (!patch && (strcmp(req->method, "POST") || plen != 6 || strncmp(req->url, "/media", 6)))
    return NULL;
  uint8_t th[PL_TOKEN_HASH_LEN];
  if (!pl__bearer(req, th) || pl__disk_full(m)) {
    *status = pl__disk_full(m) ? 503 : 401;
    atomic_fetch_add_explicit(&m->refused, 1, memory_order_relaxed);
    return NULL;
  }
  const char *o = req->hdr[PL_H_UPLOAD_OFFSET];
  char *end = NULL;
  uint64_t want = o ? strtoull(o, &end, 10) : 0;
  if (patch && (!o || !*o || *end || *o == '-')) {
    *status = 400;
    return NULL;
  }
  /* Nothing is claimed or opened before the token's answer (auth_done);
   * the body waits meanwhile. */
  pl__up *u = pl_calloc(1, sizeof *u);
  u->sink.ops = &pl__up_ops;
  u->m = m;
  u->x = x;
  u->loop = pl_http_ex_loop(x);
  u->fd = -1;
  u->patch = patch;
  u->want = want;
  if (patch)
    memcpy(u->rs_id, req->url + sizeof up - 1, 32);
  else if (pl__query(req->url, "name", u->name, sizeof u->name))
    pl__clean_name(u->name);
  *limit = patch ? pl__rs_left(m, u->rs_id, want) : m->cfg.max_upload;
  pl_http_ex_hold(x);
  memcpy(u->sreq.req.in.token_hash, th, sizeof th);
  u->sreq.req.op = PL_STORE_MEDIA_AUTH;
  u->busy++;
  pl__mreq_submit(m, &u->sreq, u->loop, pl__auth_done); /* may answer at once (shutdown) */
  return &u->sink;
}

/* ---- downloads ------------------------------------------------------------- */

typedef struct pl__dl {
  pl__mreq sreq;
  pl_media *m;
  pl_http_ex *x;
  char id[33];
  int thumb, link, head;
  char *range, *if_range, *inm;
} pl__dl;

static void pl__dl_free(pl__dl *d) {
  pl_store_req_clear(&d->sreq.req);
  pl_free(d->range);
  pl_free(d->if_range);
  pl_free(d->inm);
  pl_free(d);
}

/* hex HMAC-SHA256 of "id/what/exp" under the server's link key */
static void pl__sign(const pl_media *m, const char *id, int thumb, uint64_t exp, char out[65]) {
  char msg[96];
  uint8_t mac[crypto_auth_hmacsha256_BYTES];
  int n = snprintf(msg, sizeof msg, "%s/%s/%llu", id, thumb ? "thumb" : "file", (unsigned long long)exp);
  crypto_auth_hmacsha256(mac, (const uint8_t *)msg, (size_t)n, m->link_key);
  pl__hex(mac, sizeof mac, out);
}

static int pl__signed_ok(const pl_media *m, const char *url, const char *id, int thumb) {
  char exp[24], sig[80], want[65];
  if (!pl__query(url, "exp", exp, sizeof exp) || !pl__query(url, "sig", sig, sizeof sig))
    return 0;
  uint64_t e = strtoull(exp, NULL, 10);
  if (e < pl_now_ms() / 1000)
    return 0;
  pl__sign(m, id, thumb, e, want);
  return strlen(sig) == 64 && sodium_memcmp(sig, want, 64) == 0;
}

static void pl__link_answer(pl__dl *d, pl_http_res *res) {
  uint64_t exp = pl_now_ms() / 1000 + d->m->cfg.link_ttl_s;
  char sig[65], tsig[65], url[256], turl[256];
  pl__sign(d->m, d->id, 0, exp, sig);
  pl__sign(d->m, d->id, 1, exp, tsig);
  snprintf(url, sizeof url, "/media/%s?exp=%llu&sig=%s", d->id, (unsigned long long)exp, sig);
  snprintf(turl, sizeof turl, "/media/%s/thumb?exp=%llu&sig=%s", d->id, (unsigned long long)exp, tsig);
  json_t *j = json_pack("{s:s,s:I}", "url", url, "expires", (json_int_t)exp);
  if (*d->sreq.req.out.media.thumb)
    json_object_set_new(j, "thumb_url", json_string(turl));
  pl__json_res(res, 200, j);
}

/* The file, whole or the range asked for, with the headers caches need. */
static void pl__file_answer(pl__dl *d, pl_http_res *res) {
  const pl_media_row *r = &d->sreq.req.out.media;
  const char *key = d->thumb ? r->thumb : r->blob;
  int fd;
  uint64_t size, first = 0, last = 0;
  if (!*key) {
    pl__error_res(res, 404, "no thumbnail");
    return;
  }
  pl_err e = d->m->blob->ops->open(d->m->blob, key, &fd, &size);
  if (e != PL_OK) {
    pl_error("media: blob %s of %s: %s", key, r->id, pl_err_msg(e));
    pl__error_res(res, 503, "the file is not available");
    return;
  }
  static _Thread_local char extra[512]; /* pl_http_ex_reply copies it */
  char etag[70];
  snprintf(etag, sizeof etag, "\"%s\"", key);
  int img = !strncmp(d->thumb ? "image/jpeg" : r->type, "image/", 6);
  int range = d->range && (!d->if_range || !strcmp(d->if_range, etag))
                  ? pl_http_range(d->range, size, &first, &last)
                  : 0;
  int n =
      snprintf(extra, sizeof extra,
               "ETag: %s\r\nCache-Control: private, max-age=31536000, immutable\r\nAccept-Ranges: bytes\r\n"
               "X-Content-Type-Options: nosniff\r\nContent-Security-Policy: default-src 'none'\r\n%s",
               etag, img ? "" : "Content-Disposition: attachment\r\n");
  res->type = d->thumb ? "image/jpeg" : pl__static_type(r->type);
  res->extra = extra;
  if (d->inm && strstr(d->inm, etag)) {
    close(fd);
    res->status = 304;
    return;
  }
  if (range < 0) {
    close(fd);
    snprintf(extra + n, sizeof extra - (size_t)n, "Content-Range: bytes */%llu\r\n",
             (unsigned long long)size);
    res->type = "application/json";
    pl__error_res(res, 416, "range not satisfiable");
    return;
  }
  res->has_file = 1;
  res->file_fd = fd;
  res->file_off = range ? first : 0;
  res->file_len = range ? last - first + 1 : size;
  res->status = range ? 206 : 200;
  if (range)
    snprintf(extra + n, sizeof extra - (size_t)n, "Content-Range: bytes %llu-%llu/%llu\r\n",
             (unsigned long long)first, (unsigned long long)last, (unsigned long long)size);
  atomic_fetch_add_explicit(&d->m->downloads, 1, memory_order_relaxed);
}

static void pl__get_done(pl__mreq *r) {
  pl__dl *d = (pl__dl *)r;
  pl_http_res res = {0};
  switch (r->req.status) {
  case PL_OK: d->link ? pl__link_answer(d, &res) : pl__file_answer(d, &res); break;
  case PL_ERR_BAD_TOKEN: pl__error_res(&res, 401, "bad token"); break;
  case PL_ERR_FORBIDDEN: pl__error_res(&res, 403, "you may not see this media"); break;
  case PL_ERR_NOT_FOUND: pl__error_res(&res, 404, "no such media"); break;
  default: pl__error_res(&res, 503, "try again later"); break;
  }
  pl_http_ex_reply(d->x, &res);
  pl__dl_free(d);
}

static char *pl__dup(const char *s) { return s ? pl_strdup(s) : NULL; }

int pl_media_route(pl_media *m, const pl_http_req *req, const char *path, pl_http_res *res, pl_http_ex *x) {
  if (!strncmp(path, "/media/uploads", 14) && (path[14] == '\0' || path[14] == '/'))
    return pl__rs_route(m, req, path, res, x);
  if (strncmp(path, "/media/", 7))
    return 0;
  const char *id = path + 7, *slash = strchr(id, '/');
  size_t idlen = slash ? (size_t)(slash - id) : strlen(id);
  int thumb = slash && !strcmp(slash, "/thumb"), link = slash && !strcmp(slash, "/link");
  int get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
  if (!pl__id_valid(id, idlen) || (slash && !thumb && !link)) {
    pl__error_res(res, 404, "no such media");
    return 1;
  }
  if (link ? strcmp(req->method, "POST") : !get) {
    pl__error_res(res, 405, "method not allowed");
    res->extra = link ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n";
    return 1;
  }
  pl__dl *d = pl_calloc(1, sizeof *d);
  d->m = m;
  d->x = x;
  memcpy(d->id, id, 32);
  d->thumb = thumb;
  d->link = link;
  d->range = pl__dup(req->hdr[PL_H_RANGE]);
  d->if_range = pl__dup(req->hdr[PL_H_IF_RANGE]);
  d->inm = pl__dup(req->hdr[PL_H_IF_NONE_MATCH]);
  d->sreq.req.op = PL_STORE_MEDIA_GET;
  d->sreq.req.in.media_id = d->id;
  if (!link && pl__signed_ok(m, req->url, d->id, thumb)) {
    d->sreq.req.in.any_user = 1;
  } else if (!pl__bearer(req, d->sreq.req.in.token_hash)) {
    pl__dl_free(d);
    pl__error_res(res, 401, "a token or a signed link is needed");
    res->extra = "WWW-Authenticate: Bearer\r\n";
    return 1;
  }
  pl_http_ex_hold(x);
  res->status = 0;
  pl__mreq_submit(m, &d->sreq, pl_http_ex_loop(x), pl__get_done);
  return 1;
}

/* ---- the service --------------------------------------------------------------- */

static void pl__blob_gone(void *ud, const char *key) {
  pl_media *m = ud;
  if (m->blob->ops->remove(m->blob, key) != PL_OK)
    pl_warn("media: cannot remove blob %s", key);
}

static int pl__blob_exists(void *ud, const char *key) {
  pl_media *m = ud;
  return m->blob->ops->exists(m->blob, key);
}

void pl_media_store_hooks(pl_media *m, pl_store_config *sc) {
  sc->blob_gone = pl__blob_gone;
  sc->blob_exists = pl__blob_exists;
  sc->blob_ud = m;
}

void pl_media_set_store(pl_media *m, pl_store *store) { m->store = store; }

/* The key that signs links: made once, kept in the data directory, so
 * links survive a restart. */
static pl_err pl__link_key(pl_media *m, const char *dir) {
  char path[4096 + 16];
  snprintf(path, sizeof path, "%s/link.key", dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, m->link_key, sizeof m->link_key);
    close(fd);
    return n == (ssize_t)sizeof m->link_key ? PL_OK : PL_ERR_IO;
  }
  randombytes_buf(m->link_key, sizeof m->link_key);
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return PL_ERR_IO;
  int ok = write(fd, m->link_key, sizeof m->link_key) == (ssize_t)sizeof m->link_key && fsync(fd) == 0;
  close(fd);
  return ok ? PL_OK : PL_ERR_IO;
}

static void pl__vips_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer ud) {
  (void)domain;
  (void)level;
  (void)ud;
  pl_debug("media: libvips: %s", msg);
}

pl_err pl_media_open(pl_media **out, const pl_media_config *cfg) {
  pl_media *m = pl_calloc(1, sizeof *m);
  char dir[4096];
  m->cfg = *cfg;
  if (!m->cfg.max_upload)
    m->cfg.max_upload = 64u << 20;
  if (!m->cfg.thumb_px)
    m->cfg.thumb_px = 320;
  if (!m->cfg.link_ttl_s)
    m->cfg.link_ttl_s = 3600;
  if (!m->cfg.workers)
    m->cfg.workers = 2;
  if (!m->cfg.limits.max_side) {
    pl_img_limits d = PL_IMG_LIMITS_DEFAULT;
    m->cfg.limits = d;
  }
  snprintf(dir, sizeof dir, "%s/media", cfg->dir);
  pthread_mutex_init(&m->rs_mu, NULL);
  pl_quota_init(&m->quota, m->cfg.quota, m->cfg.max_pending);
  pl_err e = pl_blob_fs_open(dir, &m->blob);
  if (e == PL_OK)
    e = pl__link_key(m, dir);
  if (e == PL_OK && VIPS_INIT("parleyd") != 0) {
    pl_error("media: libvips: %s", vips_error_buffer());
    e = PL_ERR_CONFIG;
  }
  if (e == PL_OK)
    e = pl_mpool_new(1, "pl-media-io", NULL, &m->io);
  if (e == PL_OK)
    e = pl_mpool_new(m->cfg.workers, "pl-media", vips_thread_shutdown, &m->work);
  if (e != PL_OK) {
    pl_mpool_free(m->io);
    if (m->blob)
      m->blob->ops->free(m->blob);
    pl_quota_free(&m->quota);
    pthread_mutex_destroy(&m->rs_mu);
    pl_free(m);
    return e;
  }
  pthread_mutex_lock(&m->rs_mu); /* unfinished uploads of before a restart, with their reservations */
  pl__rs_sweep(m, 1);
  pthread_mutex_unlock(&m->rs_mu);
  /* one thread per image (uploads run side by side on the media workers), no
   * operation cache (every image is new), and no loaders beyond the ones
   * marked safe for untrusted input */
  vips_concurrency_set(1);
  vips_cache_set_max(0);
  vips_block_untrusted_set(TRUE);
  /* libvips' warnings about a bad upload are the answer's business, not the log's */
  g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, pl__vips_log, NULL);
  *out = m;
  return PL_OK;
}

void pl_media_close(pl_media *m) {
  if (!m)
    return;
  pl_mpool_free(m->io); /* idle: the loops, which wait for their jobs, have ended */
  pl_mpool_free(m->work);
  m->blob->ops->free(m->blob);
  void *v;
  uint64_t k;
  for (size_t i = 0; pl_map_next(&m->rs, &i, &k, &v);)
    pl_free(v);
  pl_map_free(&m->rs);
  pl_quota_free(&m->quota);
  pthread_mutex_destroy(&m->rs_mu);
  vips_shutdown();
  pl_free(m);
}

void pl_media_get_stats(pl_media *m, pl_media_stats *st) {
  st->uploads = atomic_load_explicit(&m->uploads, memory_order_relaxed);
  st->upload_bytes = atomic_load_explicit(&m->upload_bytes, memory_order_relaxed);
  st->refused = atomic_load_explicit(&m->refused, memory_order_relaxed);
  st->downloads = atomic_load_explicit(&m->downloads, memory_order_relaxed);
}
