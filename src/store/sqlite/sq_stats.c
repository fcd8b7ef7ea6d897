/* sq_stats: PL_STORE_STATS on the SQLite backend.
 *
 * Each figure is a COUNT(*) over a table or an index: a full scan of it,
 * about a millisecond per 10,000 rows, run on the store thread between
 * other requests. That is fine at a scrape interval (seconds) and is why
 * the statements are prepared per call instead of kept open with the hot
 * ones in pl_store_sqlite.c: they are rare. */
#include "sq_stats.h"

#include <stddef.h>

#include "../../common/pl_log.h"

/* One statement per field of pl_store_counts, in its order. */
static const struct {
  size_t off;
  const char *sql;
} pl__stats_sql[] = {
    {offsetof(pl_store_counts, users), "SELECT COUNT(*) FROM users"},
    {offsetof(pl_store_counts, devices), "SELECT COUNT(*) FROM devices WHERE token_hash IS NOT NULL"},
    {offsetof(pl_store_counts, messages), "SELECT COUNT(*) FROM messages WHERE gid = 0 AND kind = 0"},
    {offsetof(pl_store_counts, message_queue),
     "SELECT COUNT(*) FROM queue q JOIN messages m ON m.qid = q.qid WHERE m.kind = 0"},
    {offsetof(pl_store_counts, events), "SELECT COUNT(*) FROM messages WHERE gid = 0 AND kind != 0"},
    {offsetof(pl_store_counts, queue), "SELECT COUNT(*) FROM queue"},
    {offsetof(pl_store_counts, group_history), "SELECT COUNT(*) FROM messages WHERE gid != 0"},
    {offsetof(pl_store_counts, groups), "SELECT COUNT(*) FROM groups"},
    {offsetof(pl_store_counts, members), "SELECT COUNT(*) FROM members WHERE role > 0"},
    {offsetof(pl_store_counts, dedup), "SELECT COUNT(*) FROM dedup"},
    {offsetof(pl_store_counts, media), "SELECT COUNT(*) FROM media"},
};

static pl_err pl__count(sqlite3 *db, const char *sql, uint64_t *n) {
  sqlite3_stmt *st = NULL;
  pl_err e = PL_ERR_STORE;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    pl_error("store: sqlite error %d (%s) in: %s", rc, sqlite3_errmsg(db), sql);
    goto out;
  }
  *n = (uint64_t)sqlite3_column_int64(st, 0);
  e = PL_OK;
out:
  sqlite3_finalize(st);
  return e;
}

pl_err pl_sq_stats(sqlite3 *db, pl_store_req *r) {
  pl_store_counts c = {0};
  for (size_t i = 0; i < sizeof pl__stats_sql / sizeof pl__stats_sql[0]; i++) {
    r->status = pl__count(db, pl__stats_sql[i].sql, (uint64_t *)((char *)&c + pl__stats_sql[i].off));
    if (r->status != PL_OK)
      return PL_OK;
  }
  r->u.stats.out.counts = c;
  return PL_OK;
}
