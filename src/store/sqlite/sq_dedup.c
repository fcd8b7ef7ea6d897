/* sq_dedup: dedup records and the per-device rings of recent client ids
 * (pl_idring) that find them, saved in dedup_rings; the meta table. */
#include "sq_internal.h"

void pl_sq_dedup_rings_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->rings, &it, &k, &v);)
    pl_idring_free(v);
  pl_map_free(&q->rings);
  pl_map_free(&q->unsaved);
  q->ring_entries = 0;
}

/* The ring of dev's recent ids, loaded from dedup_rings on first use. */
static pl_err pl__ring(pl__sq *q, uint64_t dev, pl_idring **out) {
  sqlite3_stmt *st = q->st[ST_RING_GET];
  pl_idring *r = pl_map_get(&q->rings, dev);
  int found;
  *out = r;
  if (r)
    return PL_OK;
  r = pl_idring_new();
  q->ring_entries += pl_idring_cap(r);
  pl_sq_bind_u64(st, 1, dev);
  pl_err e = pl_sq_row(q, st, &found);
  if (e == PL_OK && found)
    q->ring_entries +=
        pl_idring_load(&r, PL__DEDUP_WINDOW, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
  sqlite3_reset(st);
  if (e != PL_OK) {
    pl_idring_free(r);
    return e;
  }
  pl_map_put(&q->rings, dev, r);
  *out = r;
  return PL_OK;
}

static pl_err pl__ring_push(pl__sq *q, uint64_t dev, uint32_t fp, int64_t row) {
  pl_idring *r;
  pl_err e = pl__ring(q, dev, &r);
  if (e != PL_OK)
    return e;
  q->ring_entries += pl_idring_push(&r, PL__DEDUP_WINDOW, fp, row);
  pl_map_put(&q->rings, dev, r); /* it may have moved */
  pl_map_put(&q->unsaved, dev, (void *)1);
  return PL_OK;
}

static pl_err pl__meta_get(pl__sq *q, const char *key, uint64_t *v) {
  sqlite3_stmt *st = q->st[ST_META_GET];
  int found;
  pl_sq_bind_text(st, 1, key);
  pl_err e = pl_sq_row(q, st, &found);
  *v = e == PL_OK && found ? pl_sq_col_u64(st, 0) : 0;
  sqlite3_reset(st);
  return e;
}

static pl_err pl__meta_put(pl__sq *q, const char *key, uint64_t v) {
  sqlite3_stmt *st = q->st[ST_META_PUT];
  pl_sq_bind_text(st, 1, key);
  pl_sq_bind_u64(st, 2, v);
  return pl_sq_run(q, st);
}

/* Inside a transaction: saves every ring with unsaved entries and moves
 * rings_upto to the newest dedup id, so a restart replays nothing older. */
pl_err pl_sq_dedup_rings_save(pl__sq *q) {
  sqlite3_stmt *st = q->st[ST_RING_PUT];
  uint64_t dev, maxid = 0;
  void *v;
  int found;
  pl_err e = PL_OK;
  for (size_t it = 0; e == PL_OK && pl_map_next(&q->unsaved, &it, &dev, &v);) {
    uint8_t *img;
    size_t len;
    pl_idring_save(pl_map_get(&q->rings, dev), &img, &len);
    pl_sq_bind_u64(st, 1, dev);
    sqlite3_bind_blob(st, 2, img, (int)len, SQLITE_STATIC);
    e = pl_sq_run(q, st);
    pl_free(img);
  }
  if (e == PL_OK) {
    sqlite3_stmt *mx = q->st[ST_DEDUP_MAX];
    e = pl_sq_row(q, mx, &found);
    maxid = e == PL_OK && found ? pl_sq_col_u64(mx, 0) : 0;
    sqlite3_reset(mx);
  }
  if (e == PL_OK)
    e = pl__meta_put(q, "rings_upto", maxid);
  if (e == PL_OK)
    pl_map_free(&q->unsaved); /* a rollback of this transaction replays them */
  return e;
}

/* Replays the dedup rows no saved ring has seen into the rings (at open,
 * and after a rollback dropped rings that held unsaved entries). */
pl_err pl_sq_dedup_rings_replay(pl__sq *q) {
  sqlite3_stmt *st = q->st[ST_DEDUP_TAIL];
  uint64_t upto;
  int rc = SQLITE_DONE;
  pl_err e = pl__meta_get(q, "rings_upto", &upto);
  if (e != PL_OK)
    return e;
  pl_sq_bind_u64(st, 1, upto);
  while (e == PL_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
    e = pl__ring_push(q, pl_sq_col_u64(st, 1), (uint32_t)sqlite3_column_int64(st, 2),
                      sqlite3_column_int64(st, 0));
  if (e == PL_OK && rc != SQLITE_DONE)
    e = pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* The oldest time a dedup record may have and still count. */
uint64_t pl_sq_dedup_cut(const pl__sq *q, uint64_t now) { return pl_retention_dedup_cut(q->ttl_ms, now); }

/* Is client_id one this device committed within the window and the TTL?
 * On a hit, out is filled with the original's conv, seq and server_ts. */
pl_err pl_sq_dedup_get(pl__sq *q, pl_store_req *r, uint64_t now, int *hit) {
  sqlite3_stmt *st = q->st[ST_DEDUP_ROW];
  const char *id = r->in.client_id;
  uint32_t fp = pl_idring_fp(id, strlen(id)), pos = 0;
  pl_idring *ring;
  int64_t row;
  int found;
  *hit = 0;
  pl_err e = pl__ring(q, r->in.device_id, &ring);
  while (e == PL_OK && !*hit && pl_idring_next(ring, fp, &pos, &row)) {
    pl_sq_bind_u64(st, 1, (uint64_t)row);
    pl_sq_bind_u64(st, 2, pl_sq_clamp(pl_sq_dedup_cut(q, now)));
    e = pl_sq_row(q, st, &found);
    if (e == PL_OK && found && strcmp((const char *)sqlite3_column_text(st, 0), id) == 0) {
      *hit = 1;
      r->out.duplicate = 1;
      r->out.conv = pl_sq_col_str(st, 1);
      r->out.seq = pl_sq_col_u64(st, 2);
      r->out.server_ts = pl_sq_col_u64(st, 3);
    }
    sqlite3_reset(st);
  }
  return e;
}

/* Records the committed id: one append to the table and the index tail of
 * this device, and one entry in its ring. */
pl_err pl_sq_dedup_put(pl__sq *q, pl_store_req *r, const char *conv, uint64_t seq, uint64_t ts) {
  sqlite3_stmt *st = q->st[ST_DEDUP_PUT];
  const char *id = r->in.client_id;
  uint32_t fp = pl_idring_fp(id, strlen(id));
  pl_sq_bind_u64(st, 1, r->in.device_id);
  pl_sq_bind_u64(st, 2, fp);
  pl_sq_bind_text(st, 3, id);
  pl_sq_bind_text(st, 4, conv);
  pl_sq_bind_u64(st, 5, seq);
  pl_sq_bind_u64(st, 6, pl_sq_clamp(ts));
  pl_err e = pl_sq_run(q, st);
  return e == PL_OK ? pl__ring_push(q, r->in.device_id, fp, sqlite3_last_insert_rowid(q->db)) : e;
}
