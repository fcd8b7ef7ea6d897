/* pl_media: uploads, downloads and signed links (protocol.md 13).
 *
 * An upload (POST /media) streams to a spool file (writes on media's I/O
 * thread; the connection stops reading while one is in flight, so an upload
 * costs a fixed buffer, never its size). When it is whole, a media worker
 * (pl_mpool, never libuv's pool where logins hash) sniffs the type from the
 * bytes (pl_img), writes a copy without metadata, decodes it fully with
 * libvips (a truncated or corrupt image is refused), makes a JPEG
 * thumbnail, and puts both into the blob store under their SHA-256. The
 * store then records the upload against the user's quota and the answer
 * gives its id. Downloads (GET /media/ID[/thumb]) check with the
 * store that the asker may see the media (or take a signed, expiring link),
 * and send the file with ranges, ETag and caching headers. */
#ifndef PL_MEDIA_H
#define PL_MEDIA_H

#include <stdint.h>

#include "media/pl_blob.h"
#include "media/pl_img.h"
#include "net/pl_http.h"
#include "store/pl_store.h"

typedef struct pl_media pl_media;

typedef struct pl_media_config {
  const char *dir;          /* the data directory: files go to dir/media */
  uint64_t max_upload;      /* bytes of one upload (0: 64 MiB) */
  uint64_t quota;           /* bytes of media a user may keep (0: no limit) */
  int allow_files;          /* accept what is not an image, as application/octet-stream */
  uint32_t thumb_px;        /* the thumbnail fits this square (0: 320) */
  pl_img_limits limits;     /* what an image may claim (zeros: PL_IMG_LIMITS_DEFAULT) */
  uint32_t link_ttl_s;      /* signed links last this long (0: 3600) */
  uint32_t max_pending;     /* unfinished resumable uploads a user may have (0: any) */
  uint32_t workers;         /* threads that check images and make thumbnails (0: 2) */
  struct pl_seal_ref *seal; /* blobs and thumbnails sealed at rest with this ring (NULL: plain) */
  /* the PostgreSQL store's conninfo: blobs go to its database (pl_blob_pg),
   * every node sharing it serves every upload; NULL: files under dir/media */
  const char *blob_pg;
  /* The store is PostgreSQL, with `sharded` databases (1: one): media ids
   * and blob keys begin with their owner's bucket (pl_bucket.h), which
   * routes them once the store has several (or is given more later, and
   * buckets move); with several (--store-shard), blob_shards[0 ..
   * sharded-1] (blob_shards[0] = blob_pg) hold the blobs of each shard's
   * users. 0: no bucket in them (the SQLite store, which never shards) */
  unsigned sharded;
  const char *const *blob_shards;
  const struct pl_shardmap *shardmap; /* the node's bucket map (pl_shardmap.h), kept by the caller */
  /* With blob_pg: bytes of blobs this node keeps a copy of, under
   * dir/blobcache (pl_blob_cache.h); 0: none */
  uint64_t blob_cache;
} pl_media_config;

pl_err pl_media_open(pl_media **out, const pl_media_config *cfg);
/* The blob hooks the store needs (blob_gone, blob_exists). */
void pl_media_store_hooks(pl_media *m, pl_store_config *sc);
/* The store, once open; on PostgreSQL also the link key the nodes share
 * (an error if the database does not answer). */
pl_err pl_media_set_store(pl_media *m, pl_store *store);
void pl_media_close(pl_media *m);

/* pl_http_open_fn for POST /media (NULL for other requests). */
pl_http_sink *pl_media_upload(pl_media *m, const pl_http_req *req, pl_http_ex *x, uint64_t *limit,
                              int *status);
/* GET/HEAD /media/ID, /media/ID/thumb; POST /media/ID/link. 0 if path is
 * not one of these. */
int pl_media_route(pl_media *m, const pl_http_req *req, const char *path, pl_http_res *res, pl_http_ex *x);

/* Counters for /metrics. */
typedef struct pl_media_stats {
  uint64_t uploads, upload_bytes, refused, downloads;
  /* the blob cache (zeros: none): opens served from a copy, from the
   * database, copies dropped for room; copies kept now and their bytes */
  uint64_t cache_hits, cache_misses, cache_evictions, cache_files, cache_bytes;
} pl_media_stats;
void pl_media_get_stats(pl_media *m, pl_media_stats *st);

/* Encryption at rest (pl_blob_seal): blobs per key id the last finished
 * re-encryption pass left, the passes, one running (zeros: no key). */
typedef struct pl_media_seal_stats {
  uint64_t files[256];
  uint64_t passes;
  int running;
} pl_media_seal_stats;
void pl_media_get_seal_stats(pl_media *m, pl_media_seal_stats *st);
/* After a rotation: re-seal the blobs in the background. */
void pl_media_rekey(pl_media *m);

#endif
