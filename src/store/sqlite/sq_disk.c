/* sq_disk: the SQLite backend when the disk fills. */
#include "sq_disk.h"

#include <errno.h>
#include <stddef.h>

#include "../../common/pl_log.h"

int pl_sq_disk_full(sqlite3 *db, int rc) {
  if ((rc & 0xff) == SQLITE_FULL)
    return 1;
  int sys = db ? sqlite3_system_errno(db) : 0;
  return (rc & 0xff) == SQLITE_IOERR && (sys == ENOSPC || sys == EDQUOT);
}

pl_err pl_sq_disk_checkpoint(sqlite3 *db) {
  int log = 0, done = 0;
  int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &done);
  if (rc == SQLITE_OK)
    return PL_OK;
  pl_warn("store: checkpoint: %s (%d of %d WAL frames written)", sqlite3_errmsg(db), done, log);
  return pl_sq_disk_full(db, rc) ? PL_ERR_STORAGE_FULL : PL_ERR_STORE;
}

static uint64_t pl__pragma_u64(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  uint64_t v = 0;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    v = (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

uint64_t pl_sq_disk_free_bytes(sqlite3 *db) {
  return pl__pragma_u64(db, "PRAGMA freelist_count") * pl__pragma_u64(db, "PRAGMA page_size");
}
