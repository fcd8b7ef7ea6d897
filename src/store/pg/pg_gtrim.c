/* pg_gtrim: the sweep's trimming of group histories on PostgreSQL
 * (protocol.md 11.8, "Retention"): a group's entries are deleted once
 * every signed-in device of every member they are owed to has acknowledged
 * them, not only at the TTL and the history cap. How far is the rules'
 * (pl_roles_trim_upto); this file reads what they need and deletes.
 *
 * Each sweep takes the next PL__GROUPS groups after the last it did (the
 * store thread runs it: a pass is bounded). Groups of more than
 * PL__MEMBERS members are left to the TTL and the cap: reading all their
 * members' devices would hold the store thread too long.
 *
 * Sharded, a group's members, cursors and history are on its shard, the
 * members' devices on theirs, read there (one statement per shard, side by
 * side); a group with a member on a shard that cannot be read now waits for
 * a later sweep. The reads are no snapshot and need none, because the
 * members and cursors are read first: a device or member that was not there
 * yet is owed only what comes after its start, past every cursor read (a
 * cursor read before it moved is lower still), so the bound never passes
 * an entry some device is still owed. */
#include "../../rules/pl_roles.h"
#include "pg_internal.h"

#define PL__GROUPS 64u
#define PL__MEMBERS 5000u

static int pl__by_uid(const void *a, const void *b) {
  const pl_pg_dev *x = a, *y = b;
  return x->uid != y->uid ? (x->uid < y->uid ? -1 : 1) : (x->id > y->id) - (x->id < y->id);
}

/* The first of uid's devices in v[n] (sorted), or n. */
static size_t pl__first(const pl_pg_dev *v, size_t n, uint64_t uid) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (v[mid].uid < uid)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The cursor of (gid, dev) in res (gid, device_id, seq; sorted), 0 if none. */
static uint64_t pl__cursor(const PGresult *res, uint64_t gid, uint64_t dev) {
  int lo = 0, hi = PQntuples(res);
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    uint64_t g = pl_pg_col_u64(res, mid, 0), d = pl_pg_col_u64(res, mid, 1);
    if (g < gid || (g == gid && d < dev))
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < PQntuples(res) && pl_pg_col_u64(res, lo, 0) == gid && pl_pg_col_u64(res, lo, 1) == dev
             ? pl_pg_col_u64(res, lo, 2)
             : 0;
}

/* The signed-in devices of the members in ms (gid, uid, ...), by user. */
static pl_err pl__devices(pl__pg *g, const PGresult *ms, pl_pg_dev **out, size_t *n, unsigned char *away) {
  size_t nu = (size_t)PQntuples(ms);
  uint64_t *uids = pl_malloc((nu + 1) * sizeof *uids);
  for (size_t i = 0; i < nu; i++)
    uids[i] = pl_pg_col_u64(ms, (int)i, 1);
  pl_err e = pl_pg_xdevices(g, uids, nu, NULL, out, n, away);
  if (e == PL_OK && *n > 1)
    qsort(*out, *n, sizeof **out, pl__by_uid);
  pl_free(uids);
  return e;
}

/* The rows of ms for group gid from *at on (sorted by gid), as holds: one
 * per signed-in device of each member; 0 if a member's shard is away. */
static int pl__holds(pl__pg *g, const PGresult *ms, int *at, uint64_t gid, const PGresult *cur,
                     const pl_pg_dev *d, size_t nd, const unsigned char *away, pl_roles_hold **h, size_t *nh,
                     size_t *cap) {
  int ok = 1;
  *nh = 0;
  for (; *at < PQntuples(ms) && pl_pg_col_u64(ms, *at, 0) == gid; (*at)++) {
    uint64_t uid = pl_pg_col_u64(ms, *at, 1);
    if (away[pl_pg_shard_of_id(g, uid)])
      ok = 0;
    for (size_t i = pl__first(d, nd, uid); i < nd && d[i].uid == uid; i++) {
      *h = pl_pg_reserve(*h, *nh, cap, sizeof **h);
      (*h)[(*nh)++] = (pl_roles_hold){pl_pg_col_u64(ms, *at, 2), pl_pg_col_u64(ms, *at, 3),
                                      pl__cursor(cur, gid, d[i].id)};
    }
  }
  return ok;
}

pl_err pl_pg_gtrim(pl__pg *g, uint64_t *deleted) {
  PGresult *gs = NULL;
  pl_err e = pl_pg_q(g, &gs, "SELECT gid FROM groups WHERE gid > $1 AND members <= $2 ORDER BY gid LIMIT $3",
                     "uuu", g->gtrim_after, (uint64_t)PL__MEMBERS, (uint64_t)PL__GROUPS);
  size_t ng = e == PL_OK ? (size_t)PQntuples(gs) : 0;
  if (e == PL_OK) /* from the start again after the last */
    g->gtrim_after = ng < PL__GROUPS ? 0 : pl_pg_col_u64(gs, (int)ng - 1, 0);
  if (!ng) {
    PQclear(gs);
    return e;
  }
  uint64_t *gids = pl_malloc(ng * sizeof *gids);
  for (size_t i = 0; i < ng; i++)
    gids[i] = pl_pg_col_u64(gs, (int)i, 0);
  PQclear(gs);
  char *arr = pl_pg_array(gids, ng);
  /* 1: the members (present, or gone with history owed), their cursors */
  pl_pg_pipe p, w;
  pl_pg_pipe_begin(&p, g);
  pl_pg_pipe_add(&p,
                 "SELECT gid, uid, since_seq, left_seq FROM members WHERE gid = ANY($1::bigint[])"
                 " AND (role > 0 OR left_seq > 0) ORDER BY gid",
                 "s", arr);
  pl_pg_pipe_add(
      &p, "SELECT gid, device_id, seq FROM gcursor WHERE gid = ANY($1::bigint[]) ORDER BY gid, device_id",
      "s", arr);
  pl_free(arr);
  e = pl_pg_pipe_end(&p);
  /* 2: their devices, after (the file comment says why) */
  pl_pg_dev *d = NULL;
  size_t nd = 0, nh = 0, cap = 0;
  unsigned char *away = pl_calloc(pl_pg_shards(g), 1);
  if (e == PL_OK)
    e = pl__devices(g, p.res[0], &d, &nd, away);
  /* 3: each group's history up to its bound */
  pl_roles_hold *h = NULL;
  int at = 0;
  pl_pg_pipe_begin(&w, g);
  for (size_t i = 0; e == PL_OK && i < ng; i++) {
    while (at < PQntuples(p.res[0]) && pl_pg_col_u64(p.res[0], at, 0) < gids[i])
      at++;
    if (!pl__holds(g, p.res[0], &at, gids[i], p.res[1], d, nd, away, &h, &nh, &cap))
      continue; /* a member's shard away: its devices are not known */
    uint64_t upto = pl_pg_clamp(pl_roles_trim_upto(h, nh));
    if (upto)
      pl_pg_pipe_add(&w, "DELETE FROM messages WHERE gid = $1 AND seq <= $2", "uu", gids[i], upto);
  }
  if (e == PL_OK)
    e = pl_pg_pipe_end(&w);
  for (int i = 0; e == PL_OK && i < w.n; i++)
    *deleted += strtoull(PQcmdTuples(w.res[i]), NULL, 10);
  pl_pg_pipe_clear(&w);
  pl_pg_pipe_clear(&p);
  pl_free(h);
  pl_free(d);
  pl_free(away);
  pl_free(gids);
  return e;
}
