/* sq_stats: PL_STORE_STATS on the SQLite backend, what the
 * store holds counted row by row (for /metrics). Store thread only. */
#ifndef PL_STORE_SQLITE_STATS_H
#define PL_STORE_SQLITE_STATS_H

#include <sqlite3.h>

#include "../pl_store.h"

/* Fills r->u.stats.out.counts inside the open transaction. Read-only, so a failed
 * query fails only this request (r->status), never its batch: always PL_OK. */
pl_err pl_sq_stats(sqlite3 *db, pl_store_req *r);

#endif
