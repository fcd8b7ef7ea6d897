/* sq_disk: the SQLite backend when the disk fills.
 *
 * secure_delete is FAST. Debian builds SQLite with it ON, which overwrites
 * every deleted byte: deleting 500 acked messages of 30 KB then writes
 * 15.6 MB of WAL (each freed overflow page, zeroed) against 0.21 MB with
 * FAST or OFF, so on a full disk the acks that would free space could not
 * be written. FAST zeroes what is deleted inside pages a delete writes
 * anyway (small bodies, kept in the b-tree page) at no extra I/O; bodies
 * long enough to spill into overflow pages (over ~4 KB) stay in free pages
 * until SQLite reuses them. The measurement and the privacy trade-off:
 * docs/operations.md, "Disk full", and docs/architecture.md. */
#ifndef PL_STORE_SQLITE_DISK_H
#define PL_STORE_SQLITE_DISK_H

#include <sqlite3.h>
#include <stdint.h>

#include "../../common/pl_err.h"

#define PL_SQ_SECURE_DELETE "PRAGMA secure_delete=FAST"

/* Did a call that returned rc fail for want of disk space (SQLITE_FULL, or
 * an I/O error whose errno is ENOSPC or EDQUOT)? */
int pl_sq_disk_full(sqlite3 *db, int rc);
/* A TRUNCATE checkpoint: the WAL into the database, then the WAL file cut
 * to nothing, its space back to the filesystem. PL_ERR_STORAGE_FULL if the
 * database could not grow; other failures PL_ERR_STORE (both logged). */
pl_err pl_sq_disk_checkpoint(sqlite3 *db);
/* The database's free pages in bytes (freelist_count x page_size): room new
 * rows take before the file grows. 0 if it cannot be read. */
uint64_t pl_sq_disk_free_bytes(sqlite3 *db);

#endif
