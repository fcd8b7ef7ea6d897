/* pl_reserve: disk space held back for when the disk fills.
 *
 * A file in the data directory (<dir>/reserve) with `size` bytes allocated
 * (posix_fallocate: real blocks, not a sparse file). When a commit fails
 * because the disk is full, the store releases it, so that what frees
 * space (acks, deletes, the checkpoint that folds the WAL back into the
 * database) and logins can still be written; once the filesystem has room
 * again, the store allocates it anew (docs/operations.md, "Disk full").
 * Without a reserve, SQLite could need space to delete: a checkpoint that
 * cannot grow the database cannot empty the WAL, and a WAL that cannot be
 * emptied needs new space for every write. */
#ifndef PL_RESERVE_H
#define PL_RESERVE_H

#include <stdint.h>

#include "../common/pl_err.h"

typedef struct pl_reserve {
  char *path;    /* <dir>/reserve */
  char *dir;     /* where free space is measured */
  uint64_t size; /* bytes to hold (0: none; the file is not made) */
  int held;      /* the file has its size allocated */
} pl_reserve;

/* Fills in r (no file yet). */
void pl_reserve_init(pl_reserve *r, const char *dir, uint64_t size);
void pl_reserve_free(pl_reserve *r);
/* Allocates the file to its size. PL_OK (also with size 0),
 * PL_ERR_STORAGE_FULL if the filesystem has no room for it (the file is
 * left empty), PL_ERR_IO otherwise (logged). */
pl_err pl_reserve_hold(pl_reserve *r);
/* Gives the space back to the filesystem (the file stays, empty). */
void pl_reserve_release(pl_reserve *r);
/* Bytes an unprivileged writer may still allocate in dir's filesystem
 * (UINT64_MAX if it cannot be told). */
uint64_t pl_reserve_avail(const pl_reserve *r);
/* Free bytes the store waits for before it holds the reserve again and
 * takes new messages: the reserve plus as much again (at least 1 MiB), so
 * that taking it back does not fill the disk at once. */
uint64_t pl_reserve_needed(const pl_reserve *r);

#endif
