/* pl_media_get.c: downloads (GET/HEAD /media/ID[/thumb]) with ranges, ETag
 * and caching headers, and signed, expiring links (POST /media/ID/link). */
#include "pl_media_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/pl_log.h"
#include "common/pl_mem.h"
#include "common/pl_time.h"

/* ---- downloads ------------------------------------------------------------- */

/* A stored type as a string that outlives the request (pl_http_ex_reply). */
static const char *pl__static_type(const char *t) {
  for (pl_img_type i = PL_IMG_JPEG; i <= PL_IMG_GIF; i++)
    if (!strcmp(t, pl_img_mime(i)))
      return pl_img_mime(i);
  return "application/octet-stream";
}

typedef struct pl__dl {
  pl_media_mreq sreq;
  pl_media *m;
  pl_http_ex *x;
  char id[33];
  int thumb, link, head;
  char *range, *if_range, *inm;
  pl_mjob job; /* the blob's open, off the loop when the blob store is remote */
  int fd;      /* the blob's, until the answer takes it */
  uint64_t size;
  pl_err open_e;
} pl__dl;

static void pl__dl_free(pl__dl *d) {
  if (d->fd >= 0)
    close(d->fd);
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
  pl_media_hex(mac, sizeof mac, out);
}

static int pl__signed_ok(const pl_media *m, const char *url, const char *id, int thumb) {
  char exp[24], sig[80], want[65];
  if (!pl_media_query(url, "exp", exp, sizeof exp) || !pl_media_query(url, "sig", sig, sizeof sig))
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
  if (*d->sreq.req.u.media_get.out.media.thumb)
    json_object_set_new(j, "thumb_url", json_string(turl));
  pl_media_json_res(res, 200, j);
}

static const char *pl__key(const pl__dl *d) {
  const pl_media_row *r = &d->sreq.req.u.media_get.out.media;
  return d->thumb ? r->thumb : r->blob;
}

/* If-None-Match names the blob's ETag (its key, the bytes' hash, quoted):
 * a revalidation, answered 304 without reading the bytes. */
static int pl__revalidated(const pl__dl *d) {
  char etag[70];
  snprintf(etag, sizeof etag, "\"%s\"", pl__key(d));
  return d->inm && strstr(d->inm, etag);
}

/* The file, whole or the range asked for, with the headers caches need;
 * d->fd and d->size are the blob's (d->open_e: why there is none). */
static void pl__file_answer(pl__dl *d, pl_http_res *res) {
  const pl_media_row *r = &d->sreq.req.u.media_get.out.media;
  const char *key = pl__key(d);
  uint64_t size = d->size, first = 0, last = 0;
  static _Thread_local char extra[512]; /* pl_http_ex_reply copies it */
  char etag[70];
  snprintf(etag, sizeof etag, "\"%s\"", key);
  int img = !strncmp(d->thumb ? "image/jpeg" : r->type, "image/", 6);
  int n =
      snprintf(extra, sizeof extra,
               "ETag: %s\r\nCache-Control: private, max-age=31536000, immutable\r\nAccept-Ranges: bytes\r\n"
               "X-Content-Type-Options: nosniff\r\nContent-Security-Policy: default-src 'none'\r\n%s",
               etag, img ? "" : "Content-Disposition: attachment\r\n");
  res->type = d->thumb ? "image/jpeg" : pl__static_type(r->type);
  res->extra = extra;
  if (pl__revalidated(d)) {
    res->status = 304;
    return;
  }
  if (d->open_e != PL_OK) {
    pl_error("media: blob %s of %s: %s", key, r->id, pl_err_msg(d->open_e));
    res->extra = NULL;
    pl_media_error_res(res, 503, "the file is not available");
    return;
  }
  int range = d->range && (!d->if_range || !strcmp(d->if_range, etag))
                  ? pl_http_range(d->range, size, &first, &last)
                  : 0;
  if (range < 0) {
    snprintf(extra + n, sizeof extra - (size_t)n, "Content-Range: bytes */%llu\r\n",
             (unsigned long long)size);
    res->type = "application/json";
    pl_media_error_res(res, 416, "range not satisfiable");
    return;
  }
  res->has_file = 1;
  res->file_fd = d->fd;
  d->fd = -1; /* the answer's now */
  res->file_off = range ? first : 0;
  res->file_len = range ? last - first + 1 : size;
  res->status = range ? 206 : 200;
  if (range)
    snprintf(extra + n, sizeof extra - (size_t)n, "Content-Range: bytes %llu-%llu/%llu\r\n",
             (unsigned long long)first, (unsigned long long)last, (unsigned long long)size);
  atomic_fetch_add_explicit(&d->m->downloads, 1, memory_order_relaxed);
}

static void pl__answer(pl__dl *d) {
  pl_http_res res = {0};
  switch (d->sreq.req.status) {
  case PL_OK: d->link ? pl__link_answer(d, &res) : pl__file_answer(d, &res); break;
  case PL_ERR_BAD_TOKEN: pl_media_error_res(&res, 401, "bad token"); break;
  case PL_ERR_FORBIDDEN: pl_media_error_res(&res, 403, "you may not see this media"); break;
  case PL_ERR_NOT_FOUND: pl_media_error_res(&res, 404, "no such media"); break;
  default: pl_media_error_res(&res, 503, "try again later"); break;
  }
  pl_http_ex_reply(d->x, &res);
  pl__dl_free(d);
}

static void pl__open_work(pl_mjob *j) {
  pl__dl *d = (pl__dl *)((char *)j - offsetof(pl__dl, job));
  d->open_e = d->m->blob->ops->open(d->m->blob, pl__key(d), &d->fd, &d->size);
}

static void pl__open_done(pl_mjob *j) { pl__answer((pl__dl *)((char *)j - offsetof(pl__dl, job))); }

static void pl__get_done(pl_media_mreq *r) {
  pl__dl *d = (pl__dl *)r;
  int file = r->req.status == PL_OK && !d->link;
  if (file && !*pl__key(d)) {
    pl_http_res res = {0};
    pl_media_error_res(&res, 404, "no thumbnail");
    pl_http_ex_reply(d->x, &res);
    pl__dl_free(d);
    return;
  }
  if (!file || pl__revalidated(d)) {
    pl__answer(d);
    return;
  }
  /* a database's blob (pl_blob_pg) is read on media's download threads, not
   * here, where it would hold up every connection of this loop */
  d->job.work = pl__open_work;
  d->job.done = pl__open_done;
  if (d->m->blob->ops->remote && pl_mpool_submit(d->m->dl, pl_loop_uv(r->loop), &d->job) == PL_OK)
    return;
  pl__open_work(&d->job);
  pl__answer(d);
}

static char *pl__dup(const char *s) { return s ? pl_strdup(s) : NULL; }

void pl_media_get_route(pl_media *m, const pl_http_req *req, const char *id, pl_http_res *res,
                        pl_http_ex *x) {
  const char *slash = strchr(id, '/');
  size_t idlen = slash ? (size_t)(slash - id) : strlen(id);
  int thumb = slash && !strcmp(slash, "/thumb"), link = slash && !strcmp(slash, "/link");
  int get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
  if (!pl_media_id_valid(id, idlen) || (slash && !thumb && !link)) {
    pl_media_error_res(res, 404, "no such media");
    return;
  }
  if (link ? strcmp(req->method, "POST") : !get) {
    pl_media_error_res(res, 405, "method not allowed");
    res->extra = link ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n";
    return;
  }
  pl__dl *d = pl_calloc(1, sizeof *d);
  d->m = m;
  d->x = x;
  d->fd = -1;
  memcpy(d->id, id, 32);
  d->thumb = thumb;
  d->link = link;
  d->range = pl__dup(req->hdr[PL_H_RANGE]);
  d->if_range = pl__dup(req->hdr[PL_H_IF_RANGE]);
  d->inm = pl__dup(req->hdr[PL_H_IF_NONE_MATCH]);
  d->sreq.req.op = PL_STORE_MEDIA_GET;
  d->sreq.req.u.media_get.in.media_id = d->id;
  if (!link && pl__signed_ok(m, req->url, d->id, thumb)) {
    d->sreq.req.u.media_get.in.any_user = 1;
  } else if (!pl_media_bearer(req, d->sreq.req.u.media_get.in.token_hash, &d->sreq.req.route)) {
    pl__dl_free(d);
    pl_media_error_res(res, 401, "a token or a signed link is needed");
    res->extra = "WWW-Authenticate: Bearer\r\n";
    return;
  }
  pl_http_ex_hold(x);
  res->status = 0;
  pl_media_mreq_submit(m, &d->sreq, pl_http_ex_loop(x), pl__get_done);
}
