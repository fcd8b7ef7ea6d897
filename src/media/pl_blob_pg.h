/* pl_blob_pg: the blob store (pl_blob_ops) in PostgreSQL, for nodes that
 * share a PostgreSQL store: the bytes in the blobs and blob_chunks tables
 * (pg_schema.c) beside the media rows, so every node serves every upload.
 * Uploads still spool to the node's own disk (spool, made here) before
 * put_file streams them in. */
#ifndef PL_BLOB_PG_H
#define PL_BLOB_PG_H

#include "media/pl_blob.h"

/* conninfo as --store gives it; connects when first used (the store, opened
 * after the media, makes the tables). No replace_file nor each: no
 * re-encryption at rest on PostgreSQL. */
pl_err pl_blob_pg_open(const char *conninfo, const char *spool, pl_blob **out);
/* A sharded store's (--store-shard): n databases, conninfo[0] shard 0; a
 * key goes to the shard of the bucket in its first 4 hex digits
 * (pl_bucket_of_key), as the node's bucket map has it now (map, which the
 * caller keeps; NULL: the formula's). Secrets are shard 0's. */
struct pl_shardmap;
pl_err pl_blob_pg_open_shards(const char *const *conninfo, unsigned n, const struct pl_shardmap *map,
                              const char *spool, pl_blob **out);
/* The shared secret called name (n bytes): out's bytes if the database
 * has none yet (the first caller's win), then the database's in out. */
pl_err pl_blob_pg_secret(pl_blob *b, const char *name, uint8_t *out, size_t n);

#endif
