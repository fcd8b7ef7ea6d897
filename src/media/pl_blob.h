/* pl_blob: where uploaded bytes live, behind one interface.
 *
 * Content-addressed: a blob's key is the hex SHA-256 of its bytes, so the
 * same bytes are stored once however often they are uploaded. The store of
 * records (pl_store's media table) says which keys are in use; the blob
 * store only keeps bytes. pl_blob_fs keeps them as files under a directory;
 * pl_blob_pg (pl_blob_pg.h) in PostgreSQL, for nodes sharing that store;
 * an S3-compatible store implements the same ops (put: a PUT of the object
 * named by the key; open: a GET through a local spool file, or the caller
 * redirects to a presigned URL instead). */
#ifndef PL_BLOB_H
#define PL_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "common/pl_err.h"

#define PL_BLOB_KEY_LEN 64 /* hex SHA-256 */

typedef struct pl_blob pl_blob;

typedef struct pl_blob_ops {
  const char *name;
  /* open reads across the network (pl_blob_pg): not on an event loop */
  int remote;
  /* Takes the file at tmp (on the same file system as the store's spool
   * directory) as the bytes of key; if key is there already, tmp is just
   * removed. Any thread. */
  pl_err (*put_file)(pl_blob *b, const char *key, const char *tmp);
  int (*exists)(pl_blob *b, const char *key);
  /* A descriptor to read key's bytes from, and their size. Any thread. */
  pl_err (*open)(pl_blob *b, const char *key, int *fd, uint64_t *size);
  pl_err (*remove)(pl_blob *b, const char *key);
  /* Optional: tmp's bytes replace key's (re-encryption), and every key
   * stored, to fn (a walk; keys put meanwhile may or may not come). */
  pl_err (*replace_file)(pl_blob *b, const char *key, const char *tmp);
  void (*each)(pl_blob *b, void (*fn)(void *ud, const char *key), void *ud);
  /* A directory for files on their way in (uploads being written). */
  const char *(*spool)(pl_blob *b);
  void (*free)(pl_blob *b);
} pl_blob_ops;

struct pl_blob {
  const pl_blob_ops *ops;
};

/* Files under dir: dir/ab/abcdef... (the first two hex digits fan the
 * files out), and dir/tmp for the spool. Creates the directories. */
pl_err pl_blob_fs_open(const char *dir, pl_blob **out);

/* Sealed at rest (pl_blob_seal.c): the bytes inner keeps are sealed with
 * the ring in ref (pl_seal), in chunks that open one by one; open returns a
 * descriptor of the opened bytes (in memory, never on disk). inner must
 * have replace_file and each. Takes inner. */
struct pl_seal_ref;
pl_err pl_blob_seal_open(pl_blob *inner, struct pl_seal_ref *ref, pl_blob **out);
/* Re-seals, in the background, every blob not sealed with the current key
 * (after a rotation; one pass also runs at open). */
void pl_blob_seal_rekey(pl_blob *b);
/* Blobs per key id the last finished pass left, the passes, one running. */
void pl_blob_seal_stats(pl_blob *b, uint64_t files[256], uint64_t *passes, int *running);

/* 1 if key is 64 lower-case hex digits (a key from anywhere else is refused). */
int pl_blob_key_valid(const char *key);

#endif
