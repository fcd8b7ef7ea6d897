/* sq_dedup: dedup records and the per-device rings of recent client ids
 * (pl_idring) that find them, saved in dedup_rings; the meta table.
 *
 * A record is kept for the whole TTL, one per message, so its size is
 * disk per message/s (docs/operations.md, sizing). It holds only what a
 * late retry needs to get its original SendAck back, in the fewest bytes:
 *   cid   the client id, exactly (a different id must never match), packed
 *         when it is lowercase hex (libparley's ids) or a lowercase UUID
 *         (the web client's): a BLOB of a tag byte and the bytes the hex
 *         spells; any other id is kept as TEXT
 *   cref  the conversation as a number instead of its name: the peer's
 *         user id * 2 for 1:1 (the name is rebuilt from the two users'
 *         names, which never change), the group id * 2 + 1 for a group
 *   seq, server_ts  the ack's values; device_id finds the sender's ring
 * The fingerprint the ring keeps is not stored: it is recomputed from cid
 * when the table is replayed. */
#include "sq_internal.h"

#include "../../rules/pl_conv.h"

enum { PL__CID_UUID = 1, PL__CID_HEX = 2 };
/* ids are 1..64 bytes at the edge (protocol.md 10.1); longer ones are
 * kept as text, unpacked */
#define PL__CID_TEXT_MAX 1024

static int pl__hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int pl__is_uuid(const char *id, size_t n) {
  if (n != 36)
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((i == 8 || i == 13 || i == 18 || i == 23) ? id[i] != '-' : pl__hexval(id[i]) < 0)
      return 0;
  return 1;
}

/* Packs id into out (room for 1 + PL__CID_TEXT_MAX / 2) and returns its length, or
 * 0 when it is kept as text. Exact both ways: pl__cid_unpack gives id back. */
static size_t pl__cid_pack(const char *id, size_t n, uint8_t *out) {
  int uuid = pl__is_uuid(id, n);
  size_t len = 1;
  if (!uuid && (n == 0 || n % 2 || n >= PL__CID_TEXT_MAX))
    return 0;
  out[0] = uuid ? PL__CID_UUID : PL__CID_HEX;
  for (size_t i = 0; i < n; i += 2) {
    if (id[i] == '-' && uuid)
      i++; /* a dash is at an even offset of the digits that remain */
    int hi = pl__hexval(id[i]), lo = pl__hexval(id[i + 1]);
    if (hi < 0 || lo < 0)
      return 0;
    out[len++] = (uint8_t)(hi << 4 | lo);
  }
  return len;
}

/* The text of a packed id into out (cap bytes); its length. */
static size_t pl__cid_unpack(const uint8_t *p, size_t len, char *out, size_t cap) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  for (size_t i = 1; i < len && n + 3 < cap; i++) {
    if (p[0] == PL__CID_UUID && (i == 5 || i == 7 || i == 9 || i == 11))
      out[n++] = '-';
    out[n++] = hex[p[i] >> 4];
    out[n++] = hex[p[i] & 15];
  }
  out[n] = 0;
  return n;
}

/* The client id of column col as text (into out) and its length. */
static size_t pl__cid_text(sqlite3_stmt *st, int col, char *out, size_t cap) {
  const void *v = sqlite3_column_blob(st, col);
  size_t len = (size_t)sqlite3_column_bytes(st, col);
  if (sqlite3_column_type(st, col) == SQLITE_BLOB)
    return pl__cid_unpack(v, len, out, cap);
  len = len < cap ? len : cap - 1;
  memcpy(out, v ? v : "", len);
  out[len] = 0;
  return len;
}

/* Binds id as the cid column stores it (buf: room for 1 + PL__CID_TEXT_MAX / 2,
 * alive until the statement is reset). */
static void pl__cid_bind(sqlite3_stmt *st, int i, const char *id, uint8_t *buf) {
  size_t n = strlen(id), len = pl__cid_pack(id, n, buf);
  if (len)
    sqlite3_bind_blob(st, i, buf, (int)len, SQLITE_STATIC);
  else
    sqlite3_bind_text(st, i, id, (int)n, SQLITE_STATIC);
}

/* Does the stored cid of column col equal id? */
static int pl__cid_eq(sqlite3_stmt *st, int col, const char *id) {
  uint8_t buf[PL__CID_TEXT_MAX / 2 + 1];
  size_t n = strlen(id), len = pl__cid_pack(id, n, buf);
  int blob = sqlite3_column_type(st, col) == SQLITE_BLOB;
  const void *v = sqlite3_column_blob(st, col);
  size_t vlen = (size_t)sqlite3_column_bytes(st, col);
  int eq = blob == (len != 0) &&
           (len ? vlen == len && memcmp(v, buf, len) == 0 : vlen == n && (n == 0 || memcmp(v, id, n) == 0));
  return eq;
}

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
  while (e == PL_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    char id[PL__CID_TEXT_MAX];
    size_t n = pl__cid_text(st, 2, id, sizeof id);
    e = pl__ring_push(q, pl_sq_col_u64(st, 1), pl_idring_fp(id, n), sqlite3_column_int64(st, 0));
  }
  if (e == PL_OK && rc != SQLITE_DONE)
    e = pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* The oldest time a dedup record may have and still count. */
uint64_t pl_sq_dedup_cut(const pl__sq *q, uint64_t now) { return pl_retention_dedup_cut(q->ttl_ms, now); }

/* The conversation name of a record's cref, for the sender uid. */
static pl_err pl__cref_conv(pl__sq *q, uint64_t uid, uint64_t cref, char **conv) {
  pl__user *me = NULL, *peer = NULL;
  char buf[32];
  *conv = NULL;
  if (cref & 1) {
    pl_sq_group_gconv(cref >> 1, buf, sizeof buf);
    *conv = pl_strdup(buf);
    return PL_OK;
  }
  pl_err e = pl_sq_acct_user_get(q, cref >> 1, &peer);
  if (e == PL_OK && peer)
    e = pl_sq_acct_user_get(q, uid, &me);
  if (e == PL_OK && me && peer)
    *conv = pl_conv_dm(me->name, peer->name);
  return e;
}

/* Is client_id one this device committed within the window and the TTL?
 * On a hit, out is filled with the original's conv, seq, server_ts and
 * vanish_at. */
pl_err pl_sq_dedup_get(pl__sq *q, pl_store_req *r, uint64_t now, int *hit) {
  sqlite3_stmt *st = q->st[ST_DEDUP_ROW];
  const char *id = r->u.send.in.client_id;
  uint32_t fp = pl_idring_fp(id, strlen(id)), pos = 0;
  pl_idring *ring;
  int64_t row;
  int found;
  *hit = 0;
  pl_err e = pl__ring(q, r->device_id, &ring);
  while (e == PL_OK && !*hit && pl_idring_next(ring, fp, &pos, &row)) {
    pl_sq_bind_u64(st, 1, (uint64_t)row);
    pl_sq_bind_u64(st, 2, pl_sq_clamp(pl_sq_dedup_cut(q, now)));
    e = pl_sq_row(q, st, &found);
    if (e == PL_OK && found && pl__cid_eq(st, 0, id)) {
      uint64_t cref = pl_sq_col_u64(st, 1);
      r->u.send.out.seq = pl_sq_col_u64(st, 2);
      r->u.send.out.server_ts = pl_sq_col_u64(st, 3);
      r->u.send.out.vanish_at = pl_sq_dedup_vanish(sqlite3_column_int64(st, 4));
      sqlite3_reset(st);
      e = pl__cref_conv(q, r->user_id, cref, &r->u.send.out.conv);
      if (e == PL_OK && !r->u.send.out.conv) {
        /* users are never deleted, so only a damaged row gets here */
        pl_warn("store: dedup record %lld names no conversation; the retry is a new message", (long long)row);
        continue;
      }
      *hit = e == PL_OK;
      r->u.send.out.duplicate = *hit;
      break;
    }
    sqlite3_reset(st);
  }
  return e;
}

/* Records the committed id: one append to the table and one entry in the
 * device's ring. cref: PL_SQ_DEDUP_DM(peer uid) or PL_SQ_DEDUP_GROUP(gid). */
pl_err pl_sq_dedup_put(pl__sq *q, pl_store_req *r, uint64_t cref, uint64_t seq, uint64_t ts) {
  sqlite3_stmt *st = q->st[ST_DEDUP_PUT];
  const char *id = r->u.send.in.client_id;
  size_t n = strlen(id);
  uint32_t fp = pl_idring_fp(id, n);
  uint8_t buf[PL__CID_TEXT_MAX / 2 + 1];
  pl_sq_bind_u64(st, 1, r->device_id);
  pl__cid_bind(st, 2, id, buf);
  pl_sq_bind_u64(st, 3, cref);
  pl_sq_bind_u64(st, 4, seq);
  pl_sq_bind_u64(st, 5, pl_sq_clamp(ts));
  /* an action is no target (sq_acts.c): its vanish time is kept negated */
  int64_t vanish = (int64_t)pl_sq_clamp(r->u.send.out.vanish_at);
  int target = !r->u.send.in.act || r->u.send.in.act->kind == PL_ACT_NONE;
  sqlite3_bind_int64(st, 6, target ? vanish : -1 - vanish);
  pl_err e = pl_sq_run(q, st);
  return e == PL_OK ? pl__ring_push(q, r->device_id, fp, sqlite3_last_insert_rowid(q->db)) : e;
}

/* ---- the upgrade from records that stored the conv name and the raw id ---- */

/* SQL pl_cid(client_id): the id as the cid column stores it. */
static void pl__fn_cid(sqlite3_context *cx, int argc, sqlite3_value **argv) {
  (void)argc;
  const char *id = (const char *)sqlite3_value_text(argv[0]);
  uint8_t buf[PL__CID_TEXT_MAX / 2 + 1];
  size_t n = id ? strlen(id) : 0, len = id ? pl__cid_pack(id, n, buf) : 0;
  if (len)
    sqlite3_result_blob(cx, buf, (int)len, SQLITE_TRANSIENT);
  else
    sqlite3_result_text(cx, id ? id : "", (int)n, SQLITE_TRANSIENT);
}

/* SQL pl_dm_peer(conv, sender): the name of the other user of a 1:1 conv
 * whose sender is sender, or NULL if conv is not one of sender's. */
static void pl__fn_dm_peer(sqlite3_context *cx, int argc, sqlite3_value **argv) {
  (void)argc;
  const char *conv = (const char *)sqlite3_value_text(argv[0]);
  const char *me = (const char *)sqlite3_value_text(argv[1]);
  size_t n = conv ? strlen(conv) : 0, m = me ? strlen(me) : 0;
  if (!conv || !me || n < m + 4 || strncmp(conv, "dm:", 3) != 0) {
    sqlite3_result_null(cx);
    return;
  }
  /* "dm:<me>:<peer>" or "dm:<peer>:<me>"; the candidate is kept only if
   * it rebuilds conv exactly */
  char *cand[2] = {NULL, NULL};
  sqlite3_result_null(cx);
  if (strncmp(conv + 3, me, m) == 0 && conv[3 + m] == ':')
    cand[0] = pl_strdup(conv + 4 + m);
  if (strcmp(conv + n - m, me) == 0 && conv[n - m - 1] == ':')
    cand[1] = pl_strndup(conv + 3, n - m - 4);
  for (int i = 0; i < 2; i++) {
    char *name = cand[i] ? pl_conv_dm(me, cand[i]) : NULL;
    if (name && strcmp(name, conv) == 0) {
      sqlite3_result_text(cx, cand[i], -1, SQLITE_TRANSIENT);
      i = 2;
    }
    pl_free(name);
  }
  pl_free(cand[0]);
  pl_free(cand[1]);
}

/* Logs what the upgrade's count query finds. */
static int pl__fn_dropped(void *arg, int ncol, char **vals, char **names) {
  (void)arg;
  (void)names;
  if (ncol > 0 && vals[0] && strcmp(vals[0], "0") != 0)
    pl_warn("store: %s dedup records named no conversation and were dropped", vals[0]);
  return 0;
}

/* Converts the records of a data dir written before schema 9 (client_id
 * TEXT, conv TEXT, fp) in place, keeping their ids so that the saved rings
 * and rings_upto stay valid: every retry after the upgrade still gets its
 * original ack. Only a record whose conversation names no user (none can,
 * since users are never deleted) is dropped, and counted in the log. */
pl_err pl_sq_dedup_upgrade(sqlite3 *db) {
  static const char sql[] =
      "BEGIN;"
      "CREATE TABLE dedup_new(id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL, cid NOT NULL,"
      " cref INTEGER NOT NULL, seq INTEGER NOT NULL, server_ts INTEGER NOT NULL);"
      "INSERT INTO dedup_new SELECT id, device_id, cid, cref, seq, server_ts FROM ("
      " SELECT d.id, d.device_id, pl_cid(d.client_id) AS cid, d.seq, d.server_ts,"
      "  CASE WHEN d.conv GLOB 'g:[1-9]*' AND d.conv NOT GLOB 'g:*[^0-9]*'"
      "  THEN CAST(substr(d.conv, 3) AS INTEGER) * 2 + 1"
      "  ELSE (SELECT p.id * 2 FROM devices dv JOIN users s ON s.id = dv.user_id"
      "   JOIN users p ON p.name = pl_dm_peer(d.conv, s.name) WHERE dv.id = d.device_id) END AS cref"
      " FROM dedup d) WHERE cref IS NOT NULL ORDER BY id;"
      "SELECT (SELECT count(*) FROM dedup) - (SELECT count(*) FROM dedup_new);"
      "DROP TABLE dedup;"
      "ALTER TABLE dedup_new RENAME TO dedup;"
      "COMMIT;";
  sqlite3_stmt *st = NULL;
  char *err = NULL;
  int old = 0, rc = sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('dedup') WHERE name = 'conv'", -1,
                                       &st, NULL);
  if (rc == SQLITE_OK)
    old = sqlite3_step(st) == SQLITE_ROW;
  sqlite3_finalize(st);
  if (rc != SQLITE_OK || !old)
    return rc == SQLITE_OK ? PL_OK : PL_ERR_STORE;
  pl_info("store: upgrading the dedup records to schema 9 (conversation ids, packed client ids)");
  rc = sqlite3_create_function(db, "pl_cid", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, pl__fn_cid, NULL,
                               NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function(db, "pl_dm_peer", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                                 pl__fn_dm_peer, NULL, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, sql, pl__fn_dropped, NULL, &err);
  if (rc != SQLITE_OK) {
    pl_error("store: cannot upgrade the dedup records: %s", err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return PL_ERR_STORE;
  }
  return PL_OK;
}
