/* pl_media_int.h: what the files of the media service (pl_media*.c) share:
 * the service's struct, the store request whose answer runs on a loop, the
 * small HTTP helpers, the result of processing an upload, and the functions
 * one file calls in another (named pl_media_<file>_..., after their home
 * file; the helpers of pl_media.c are plain pl_media_...). Nothing outside
 * src/media/ includes it; the public names are in pl_media.h.
 *
 *   pl_media.c       life cycle, config defaults, link key, store hooks,
 *                    routing of /media requests, the shared helpers
 *   pl_media_up.c    the upload sink: POST /media and PATCH of resumable
 *                    uploads, spooling, the token and quota checks before
 *                    any byte is kept; the resumable uploads' index and
 *                    their routes (POST, HEAD|GET, DELETE /media/uploads)
 *   pl_media_work.c  processing on a media worker: type sniffing, metadata
 *                    stripping (pl_img), libvips decode and thumbnail, the
 *                    blob puts
 *   pl_media_get.c   downloads: ranges, caching headers, signed links */
#ifndef PL_MEDIA_INT_H
#define PL_MEDIA_INT_H

#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>

#include "common/pl_map.h"
#include "media/pl_media.h"
#include "media/pl_mpool.h"
#include "rules/pl_quota.h"

struct pl_media {
  pl_media_config cfg;
  pl_blob *blob;
  pl_blob *blob_db; /* on PostgreSQL: the database's blob store (blob, or what blob caches) */
  pl_store *store;
  /* media's own threads, apart from libuv's pool where logins hash: one
   * for spool writes (short), cfg.workers for processing (long) */
  pl_mpool *io, *work;
  pl_mpool *dl; /* downloads' blob reads when the blob store is remote (pl_blob_pg), else NULL */
  pthread_mutex_t rs_mu;
  pl_map rs;         /* id's first 16 hex digits -> pl__rs (pl_media_up.c) */
  pl_quota quota;    /* the quota, and what unfinished uploads reserve of it (under rs_mu) */
  uint64_t rs_swept; /* when stale resumable uploads were last looked for */
  uint8_t link_key[crypto_auth_hmacsha256_KEYBYTES];
  atomic_uint_fast64_t uploads, upload_bytes, refused, downloads;
};

/* ---- pl_media.c ------------------------------------------------------------ */

/* A store request whose answer runs on the loop that asked. */
typedef struct pl_media_mreq pl_media_mreq;
struct pl_media_mreq {
  pl_store_req req;
  pl_task task;
  pl_loop *loop;
  void (*fn)(pl_media_mreq *r);
};

void pl_media_mreq_submit(pl_media *m, pl_media_mreq *r, pl_loop *loop, void (*fn)(pl_media_mreq *));

/* j (consumed) as the body of res, with status. */
void pl_media_json_res(pl_http_res *res, int status, json_t *j);
void pl_media_error_res(pl_http_res *res, int status, const char *why);
/* "Bearer <token>" -> the hash the store keeps of the token and the
 * store route it carries (pl_store_req.route); 0 if none. */
int pl_media_bearer(const pl_http_req *req, uint8_t hash[PL_TOKEN_HASH_LEN], uint32_t *route);
/* The value of query parameter k (percent-decoded, at most cap-1 bytes). */
int pl_media_query(const char *url, const char *k, char *out, size_t cap);
/* A file name as given, made safe to show and to put in a header. */
void pl_media_clean_name(char *s);
/* An id of an upload or a resumable upload: 32 lower-case hex digits. */
int pl_media_id_valid(const char *id, size_t n);
/* n bytes as 2n hex digits and a NUL. */
void pl_media_hex(const uint8_t *d, size_t n, char *out);

/* ---- pl_media_up.c --------------------------------------------------------- */

/* POST /media/uploads (Upload-Length), HEAD|GET and DELETE /media/uploads/ID. */
int pl_media_up_route(pl_media *m, const pl_http_req *req, const char *path, pl_http_res *res, pl_http_ex *x);
/* At start-up: the unfinished uploads of before a restart enter the index,
 * with their reservations; the stale ones go. */
void pl_media_up_load(pl_media *m);

/* ---- pl_media_work.c ------------------------------------------------------- */

/* The result of processing an upload. */
typedef struct pl_media_result {
  pl_media_row row;
  pl_err e;
  const char *why; /* for the answer */
} pl_media_result;

/* On a media worker: the n bytes of spool file tmp (open as fd) become the
 * blob (and thumbnail) of res->row, or res->e says why not. */
void pl_media_work_process(pl_media *m, int fd, const char *tmp, uint64_t n, pl_media_result *res);

/* ---- pl_media_get.c -------------------------------------------------------- */

/* GET/HEAD /media/ID[/thumb], POST /media/ID/link; id is the path past
 * "/media/". Always answers (or holds x for the store's answer). */
void pl_media_get_route(pl_media *m, const pl_http_req *req, const char *id, pl_http_res *res, pl_http_ex *x);

#endif
