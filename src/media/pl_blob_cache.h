/* pl_blob_cache: a node's copy of the blobs it served lately, in front of a
 * remote blob store (pl_blob_pg).
 *
 * Blobs are content-addressed (the key is the SHA-256 of the bytes) and
 * never change, so a copy is never stale: no invalidation between nodes.
 * Who may read a blob is decided before it is opened (the media rows in
 * the store), so a copy kept after another node removed the blob is never
 * served to anyone the store would refuse. The copies are files under dir
 * (the kernel's page cache keeps the hot ones in memory), at most max_bytes
 * in all, the least recently used going first; dir is emptied at open (a
 * copy half written when the machine stopped is never trusted). A blob
 * larger than an eighth of max_bytes is not kept (one video would flush
 * the rest). An upload is kept as it goes in (a hard link of its spooled
 * file), so the node that took it serves the first downloads without
 * reading it back. */
#ifndef PL_BLOB_CACHE_H
#define PL_BLOB_CACHE_H

#include "pl_blob.h"

typedef struct pl_blob_cache_stats {
  uint64_t hits, misses, evictions; /* opens served from a copy, from inner; copies dropped for room */
  uint64_t bytes, files;            /* kept now */
} pl_blob_cache_stats;

/* Takes inner (freed with the cache). dir is made if missing. */
pl_err pl_blob_cache_open(pl_blob *inner, const char *dir, uint64_t max_bytes, pl_blob **out);
/* 0 if b is no cache. */
int pl_blob_cache_stats_get(pl_blob *b, pl_blob_cache_stats *s);

#endif
