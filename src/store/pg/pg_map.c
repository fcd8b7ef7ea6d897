/* pg_map: a node's bucket map against its shards' (docs/scaling.md 4).
 *
 * Each shard holds the map in map_epoch (its epoch) and bucket_map (the
 * buckets moved, each with its shard). The mover (pg_move.c) fences a
 * shard with statement triggers that refuse every write of a session whose
 * parley.epoch is older than the move's (SQLSTATE PLMAP): a node that did
 * not hear of a move cannot write where a bucket no longer lives. Each
 * session says which epoch it routes by before its next statement after
 * the node took a newer map, so a node pays for this once per move. And
 * each session holds the map on a lease: before a statement, if it has not
 * read its database's epoch for PL_PG_MAP_LEASE_MS, it does, so a node
 * stopped or busy for a while never writes by an old map once it goes on;
 * the mover counts on that to take its fence down. */
#include <stdio.h>

#include "../pl_shardmap.h"
#include "pg_internal.h"

pl_err pl_pg_map_load(pl__pg *g) {
  if (!g->map)
    return PL_OK;
  PGresult *res = NULL;
  int stale = g->map_stale;
  g->map_stale = 0; /* the statement below goes out without loading again */
  g->map_checked_ms = pl_mono_ms();
  pl_err e = pl_pg_q(
      g, &res,
      "SELECT e.epoch, b.bucket, b.shard FROM map_epoch e LEFT JOIN bucket_map b ON b.epoch <= e.epoch"
      " ORDER BY b.bucket",
      NULL);
  if (e != PL_OK) {
    g->map_stale = stale;
    return e;
  }
  int n = PQntuples(res);
  uint64_t epoch = n ? pl_pg_col_u64(res, 0, 0) : 0;
  uint32_t *b = pl_malloc(((size_t)n + 1) * sizeof *b), *s = pl_malloc(((size_t)n + 1) * sizeof *s);
  size_t k = 0;
  unsigned beyond = 0;
  for (int i = 0; i < n; i++) {
    if (PQgetisnull(res, i, 1))
      continue;
    b[k] = (uint32_t)pl_pg_col_u64(res, i, 1);
    s[k] = (uint32_t)pl_pg_col_u64(res, i, 2);
    if (s[k] >= g->nshards && s[k] + 1 > beyond)
      beyond = s[k] + 1;
    k++;
  }
  PQclear(res);
  if (beyond && epoch > pl_shardmap_epoch(g->map)) {
    /* not taken: this node would route those buckets where they are not,
     * and its writes stay fenced everywhere (its epoch is older) */
    if (epoch != g->map_refused)
      pl_error("store: the bucket map (epoch %llu) puts buckets on shard %u, and this server was given %u"
               " shards: restart it with every shard (--store-shard)",
               (unsigned long long)epoch, beyond - 1, g->nshards);
    g->map_refused = epoch;
    e = PL_ERR_CONFIG;
  } else if (epoch && pl_shardmap_take(g->map, epoch, b, s, k)) {
    pl_info("store: shard %u: bucket map epoch %llu taken (%zu buckets moved)", g->shard,
            (unsigned long long)epoch, k);
  }
  pl_free(b);
  pl_free(s);
  return e;
}

void pl_pg_map_sync(pl__pg *g) {
  if (!g->map || !g->conn || g->epoch_held || PQtransactionStatus(g->conn) != PQTRANS_IDLE)
    return;
  uint64_t now = pl_mono_ms();
  int lapsed = now - g->map_checked_ms > PL_PG_MAP_LEASE_MS;
  if (!g->map_stale && !lapsed && g->epoch_told == pl_shardmap_epoch(g->map))
    return;
  /* before a pending BEGIN, not with it: a setting made in a transaction
   * that rolls back is undone */
  int begin = g->begin_pending;
  g->begin_pending = 0;
  if (lapsed && !g->map_stale) { /* the lease: the map confirmed before a write */
    uint64_t epoch = 0;
    g->map_checked_ms = now; /* first: pl_pg_u64 comes back here */
    if (pl_pg_u64(g, &epoch, "SELECT epoch FROM map_epoch", NULL) != PL_OK)
      g->map_checked_ms = 0;
    else if (epoch > pl_shardmap_epoch(g->map))
      g->map_stale = 1;
  }
  if (!g->map_stale || pl_pg_map_load(g) == PL_OK) {
    uint64_t epoch = pl_shardmap_epoch(g->map);
    if (g->epoch_told != epoch) {
      char v[24];
      snprintf(v, sizeof v, "%llu", (unsigned long long)epoch);
      g->epoch_told = epoch; /* first: pl_pg_q comes back here */
      if (pl_pg_q(g, NULL, "SELECT set_config('parley.epoch', $1, false)", "s", v) != PL_OK)
        g->epoch_told = (uint64_t)-1; /* told nothing: again next time */
    }
  }
  g->begin_pending = begin;
}

void pl_pg_map_poll(pl__pg *g) {
  g->map_checked_ms = 0; /* the lease lapses: sync asks */
  pl_pg_map_sync(g);
}
