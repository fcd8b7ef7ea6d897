/* sq_db: the SQLite backend's frame: open and close, the schema and its
 * migrations, prepared statements, begin/commit/rollback, the TTL sweep, the
 * dispatch of a request by op, and the pl_store_sqlite vtable. The tables
 * and the caches are described in sq_internal.h. */
#include "../../common/pl_seal.h"
#include "../pl_store_valid.h"
#include "sq_internal.h"

/* a device's cursor in a group's history (schema 10; also made by its upgrade) */
#define PL__GCURSOR_TABLE                                                                \
  "CREATE TABLE IF NOT EXISTS gcursor(device_id INTEGER NOT NULL, gid INTEGER NOT NULL," \
  " seq INTEGER NOT NULL, PRIMARY KEY(device_id, gid)) WITHOUT ROWID;"

static const char pl__schema[] =
    "BEGIN;"
    "CREATE TABLE IF NOT EXISTS users(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
    " pwhash TEXT NOT NULL, created INTEGER NOT NULL, read_receipts INTEGER NOT NULL DEFAULT 1,"
    " last_seen INTEGER NOT NULL DEFAULT 0, last_seen_vis INTEGER NOT NULL DEFAULT 2,"
    " disabled INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS devices(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
    " name TEXT NOT NULL, token_hash BLOB UNIQUE, created INTEGER NOT NULL,"
    " token_at INTEGER NOT NULL DEFAULT 0, used_at INTEGER NOT NULL DEFAULT 0, UNIQUE(user_id, name));"
    "CREATE TABLE IF NOT EXISTS convs(conv TEXT PRIMARY KEY, last_seq INTEGER NOT NULL,"
    " last_ts INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS messages(qid INTEGER PRIMARY KEY AUTOINCREMENT, conv TEXT NOT NULL,"
    " seq INTEGER NOT NULL, sender_uid INTEGER NOT NULL, from_name TEXT NOT NULL,"
    " from_device TEXT NOT NULL, client_id TEXT NOT NULL, body BLOB NOT NULL,"
    " client_ts INTEGER NOT NULL, server_ts INTEGER NOT NULL, expires INTEGER NOT NULL,"
    " refs INTEGER NOT NULL, kind INTEGER NOT NULL DEFAULT 0, aux INTEGER NOT NULL DEFAULT 0,"
    " gid INTEGER NOT NULL DEFAULT 0, media_id TEXT, media BLOB);"
    "CREATE INDEX IF NOT EXISTS messages_expires ON messages(expires);"
    "CREATE INDEX IF NOT EXISTS messages_events ON messages(conv, kind, sender_uid) WHERE kind != 0;"
    "CREATE TABLE IF NOT EXISTS reads(uid INTEGER NOT NULL, conv TEXT NOT NULL, read_seq INTEGER NOT NULL,"
    " delivered_seq INTEGER NOT NULL, PRIMARY KEY(uid, conv)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS queue(device_id INTEGER NOT NULL, qid INTEGER NOT NULL,"
    " PRIMARY KEY(device_id, qid)) WITHOUT ROWID;"
    /* The TTL sweep deletes queue rows by qid. */
    "CREATE INDEX IF NOT EXISTS queue_qid ON queue(qid);"
    /* kept for the TTL, so every byte counts: see sq_dedup.c */
    "CREATE TABLE IF NOT EXISTS dedup(id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL, cid NOT NULL,"
    " cref INTEGER NOT NULL, seq INTEGER NOT NULL, server_ts INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS dedup_rings(device_id INTEGER PRIMARY KEY, ring BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS contacts(uid INTEGER NOT NULL, contact_uid INTEGER NOT NULL,"
    " PRIMARY KEY(uid, contact_uid)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS blocks(uid INTEGER NOT NULL, blocked_uid INTEGER NOT NULL,"
    " PRIMARY KEY(uid, blocked_uid)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS groups(gid INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,"
    " description TEXT NOT NULL, created INTEGER NOT NULL, members INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS members(gid INTEGER NOT NULL, uid INTEGER NOT NULL, role INTEGER NOT NULL,"
    " since_seq INTEGER NOT NULL, left_seq INTEGER NOT NULL, joined INTEGER NOT NULL,"
    " PRIMARY KEY(gid, uid)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS members_uid ON members(uid, gid);"
    "CREATE TABLE IF NOT EXISTS greads(gid INTEGER NOT NULL, uid INTEGER NOT NULL, delivered_seq INTEGER NOT "
    "NULL,"
    " read_seq INTEGER NOT NULL, PRIMARY KEY(gid, uid)) WITHOUT ROWID;" PL__GCURSOR_TABLE
    "CREATE INDEX IF NOT EXISTS messages_group ON messages(gid, seq) WHERE gid != 0;"
    /* uploads (protocol.md 13): a row per upload; rows may share a blob (same bytes) */
    "CREATE TABLE IF NOT EXISTS media(id TEXT PRIMARY KEY, owner INTEGER NOT NULL, blob TEXT NOT NULL,"
    " thumb TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,"
    " thumb_size INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,"
    " thumb_width INTEGER NOT NULL, thumb_height INTEGER NOT NULL, created INTEGER NOT NULL,"
    " expires INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS media_owner ON media(owner);"
    "CREATE INDEX IF NOT EXISTS media_expires ON media(expires);"
    "CREATE INDEX IF NOT EXISTS media_blob ON media(blob);"
    "CREATE INDEX IF NOT EXISTS media_thumb ON media(thumb);"
    /* the conversations a message carrying the media went to: who may fetch it */
    "CREATE TABLE IF NOT EXISTS media_grants(media TEXT NOT NULL, conv TEXT NOT NULL,"
    " PRIMARY KEY(media, conv)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS messages_media ON messages(media_id) WHERE media_id IS NOT NULL;"
    /* privacy settings beyond the users columns (no row: the defaults) */
    "CREATE TABLE IF NOT EXISTS privacy(uid INTEGER PRIMARY KEY, group_add INTEGER NOT NULL DEFAULT 0);"
    "PRAGMA user_version = 10;"
    "COMMIT;";

static const char *const pl__sql[ST__COUNT] = {
#define PL__STMT_SQL(name, sql) sql,
    PL__STMTS(PL__STMT_SQL)
#undef PL__STMT_SQL
};

static void pl__caches_drop(pl__sq *q) {
  pl_sq_conv_reads_drop(q);
  pl_sq_dedup_rings_drop(q);
  pl_sq_queue_qlen_drop(q);
  pl_sq_conv_cache_drop(q);
  pl_sq_acct_users_drop(q);
}

/* ---- the vtable ----------------------------------------------------------------- */

static pl_err pl__push_token(pl__sq *q, pl_store_req *r) { return pl_sq_push_token(q->push, r); }
static pl_err pl__push_tokens(pl__sq *q, pl_store_req *r) { return pl_sq_push_tokens(q->push, r); }
static pl_err pl__push_enqueue(pl__sq *q, pl_store_req *r) { return pl_sq_push_enqueue(q->push, r); }
static pl_err pl__push_claim(pl__sq *q, pl_store_req *r) { return pl_sq_push_claim(q->push, r); }
static pl_err pl__push_done(pl__sq *q, pl_store_req *r) { return pl_sq_push_done(q->push, r); }
static pl_err pl__stats(pl__sq *q, pl_store_req *r) { return pl_sq_stats(q->db, r); }

/* The backend's third of the table of ops (pl_store_ops.c and
 * pl_store_valid.c have the others): what runs each op. */
static const pl_sq_op pl__sq_ops[] = {
    [PL_STORE_REGISTER] = {pl_sq_acct_register},
    [PL_STORE_GET_USER] = {pl_sq_acct_get_user},
    [PL_STORE_LOGIN_DEVICE] = {pl_sq_acct_login_device},
    [PL_STORE_RESUME] = {pl_sq_acct_resume},
    [PL_STORE_LOGOUT] = {pl_sq_acct_logout},
    [PL_STORE_SEND] = {pl_sq_conv_send},
    [PL_STORE_FETCH] = {pl_sq_queue_fetch},
    [PL_STORE_ACK] = {pl_sq_queue_ack},
    [PL_STORE_MARK_READ] = {pl_sq_conv_mark_read},
    [PL_STORE_SETTINGS] = {pl_sq_acct_settings},
    [PL_STORE_UNREAD] = {pl_sq_conv_unread},
    [PL_STORE_CONTACTS] = {pl_sq_acct_contacts},
    [PL_STORE_BLOCK] = {pl_sq_acct_block},
    [PL_STORE_PRESENCE] = {pl_sq_acct_presence},
    [PL_STORE_SEEN] = {pl_sq_acct_seen},
    [PL_STORE_TYPING] = {pl_sq_acct_typing},
    [PL_STORE_GROUP_CREATE] = {pl_sq_group_create},
    [PL_STORE_GROUP_UPDATE] = {pl_sq_group_update},
    [PL_STORE_GROUP_LIST] = {pl_sq_group_list},
    [PL_STORE_GROUP_RECEIPTS] = {pl_sq_ghist_group_receipts},
    [PL_STORE_MEDIA_AUTH] = {pl_sq_media_auth},
    [PL_STORE_MEDIA_PUT] = {pl_sq_media_put},
    [PL_STORE_MEDIA_GET] = {pl_sq_media_get},
    [PL_STORE_GROUP_DEVICES] = {pl_sq_group_devices},
    [PL_STORE_DEVICES] = {pl_sq_acct_devices},
    [PL_STORE_PUSH_TOKEN] = {pl__push_token},
    [PL_STORE_PUSH_TOKENS] = {pl__push_tokens},
    [PL_STORE_PUSH_ENQUEUE] = {pl__push_enqueue},
    [PL_STORE_PUSH_CLAIM] = {pl__push_claim},
    [PL_STORE_PUSH_DONE] = {pl__push_done},
    [PL_STORE_STATS] = {pl__stats},
    [PL_STORE_ADMIN] = {pl_sq_admin},
};

const pl_sq_op *pl_sq_op_get(int op) {
  if (op < 0 || (size_t)op >= sizeof pl__sq_ops / sizeof pl__sq_ops[0] || !pl__sq_ops[op].exec)
    return NULL;
  return &pl__sq_ops[op];
}

/* An op this backend has no entry for is refused like a malformed request
 * (as the switch did), and said so in the log: a new op without its entry. */
static pl_err pl__sq_exec(void *be, pl_store_req *r) {
  const pl_sq_op *o = pl_sq_op_get(r->op);
  if (!o)
    pl_error("store: sqlite has no operation %d (%s)", (int)r->op, pl_store_op_name(r->op));
  if (!o || !pl_store_req_valid(r)) {
    r->status = PL_ERR_INVALID_ARGUMENT;
    return PL_OK;
  }
  return o->exec(be, r);
}

static pl_err pl__sq_begin(void *be) {
  pl__sq *q = be;
  /* Trim here, between transactions: inside one, callers hold pointers
   * into the caches. */
  if (q->qlen.len > PL__CACHE_MAX)
    pl_sq_queue_qlen_drop(q);
  if (q->convs.len > PL__CACHE_MAX)
    pl_sq_conv_cache_drop(q);
  if (q->users.len > PL__CACHE_MAX)
    pl_sq_acct_users_drop(q);
  if (q->reads.len > PL__CACHE_MAX)
    pl_sq_conv_reads_drop(q);
  if (q->gmeta.len > PL__CACHE_MAX)
    pl_sq_ghist_gmeta_drop(q);
  pl_sq_seal_refresh(q);
  pl_err e = pl_sq_run(q, q->st[ST_BEGIN]);
  if (e == PL_OK && q->gcurs.len + q->greads.len > PL__GCACHE_MAX)
    e = pl_sq_ghist_gcache_drop(q); /* written in this transaction first */
  if (e == PL_OK && q->ring_entries > PL__DEDUP_MEM_ENTRIES) {
    e = pl_sq_dedup_rings_save(q); /* nothing unsaved may go with them */
    if (e == PL_OK)
      pl_sq_dedup_rings_drop(q);
  }
  return e;
}

static pl_err pl__sq_commit(void *be) {
  pl__sq *q = be;
  pl_err e = pl_sq_conv_flush(q);
  if (e == PL_OK)
    e = pl_sq_conv_reads_flush(q);
  if (e == PL_OK)
    e = pl_sq_run(q, q->st[ST_COMMIT]);
  for (size_t i = 0; e == PL_OK && i < q->ngone; i++)
    if (q->blob_gone)
      q->blob_gone(q->blob_ud, q->gone[i]);
  pl_sq_media_gone_clear(q);
  return e;
}

static void pl__sq_rollback(void *be) {
  pl__sq *q = be;
  if (!sqlite3_get_autocommit(q->db))
    pl_sq_run(q, q->st[ST_ROLLBACK]);
  pl__caches_drop(q);
  pl_sq_media_gone_clear(q); /* their rows are back */
  pl_sq_ghist_gmeta_drop(q); /* may name rows that were rolled back */
  pl_sq_ghist_gcur_drop(q);  /* written through: the table has what committed */
  if (pl_sq_dedup_rings_replay(q) != PL_OK)
    pl_error("store: cannot reload the dedup rings; retries of recent sends may be stored twice");
}

/* The cached group writes, then the re-encryption pass (sq_seal.c): both a
 * chunk per transaction, requests served between chunks. */
static size_t pl__sq_backlog(void *be) {
  pl__sq *q = be;
  return q->gdirty + (size_t)q->rekey_pending;
}

static pl_err pl__sq_flush(void *be, size_t max) {
  pl__sq *q = be;
  if (q->gdirty || !q->rekey_pending)
    return pl_sq_ghist_gcache_flush_some(be, max);
  uint64_t after = q->rekey_after;
  char media_after[sizeof q->rekey_media_after];
  memcpy(media_after, q->rekey_media_after, sizeof media_after);
  pl_err e = pl_sq_seal_rekey(q);
  if (e != PL_OK) { /* the batch is rolled back: done again */
    q->rekey_after = after;
    memcpy(q->rekey_media_after, media_after, sizeof media_after);
  }
  return e;
}

static void pl__sq_seal_stats(void *be, pl_store_seal_stats *out) {
  pl__sq *q = be;
  out->kid = q->seal ? pl_seal_current(q->seal) : 0;
  out->passes = atomic_load(&q->seal_passes);
  out->running = q->rekey_pending;
  for (unsigned k = 0; k < 256; k++)
    out->rows[k] = atomic_load(&q->seal_rows[k]);
}

static pl_err pl__sq_checkpoint(void *be) { return pl_sq_disk_checkpoint(((pl__sq *)be)->db); }

static uint64_t pl__sq_free_bytes(void *be) { return pl_sq_disk_free_bytes(((pl__sq *)be)->db); }

static pl_err pl__sq_expire(void *be, uint64_t now_ms, uint64_t *deleted) {
  static const int steps[] = {ST_EXPIRE_QUEUE, ST_EXPIRE_MSGS, ST_EXPIRE_DEDUP};
  pl__sq *q = be;
  pl_err e = PL_OK;
  uint64_t changes[3] = {0, 0, 0};
  for (size_t i = 0; i < 3 && e == PL_OK; i++) {
    sqlite3_stmt *st = q->st[steps[i]];
    /* messages carry their expiry; dedup records are kept for the TTL */
    uint64_t t = steps[i] == ST_EXPIRE_DEDUP ? pl_sq_dedup_cut(q, now_ms) : now_ms;
    pl_sq_bind_u64(st, 1, pl_sq_clamp(t));
    e = pl_sq_run(q, st);
    changes[i] = (uint64_t)sqlite3_changes64(q->db);
  }
  if (changes[0])
    pl_sq_queue_qlen_drop(q); /* queue rows of unknown devices went */
  if (e == PL_OK)
    e = pl_sq_ghist_groups_trim(q, &changes[1]);
  if (e == PL_OK)
    e = pl_sq_media_expire(q, now_ms);
  if (e == PL_OK)
    e = pl_sq_acts_expire(q, now_ms);
  if (e == PL_OK)
    e = pl_sq_dedup_rings_save(q); /* the sweep's transaction also saves the rings */
  *deleted = e == PL_OK ? changes[1] : 0;
  return e;
}

/* ---- open and close ---------------------------------------------------------------- */

static void pl__sq_close(void *be) {
  pl__sq *q = be;
  if (!q)
    return;
  /* the cursors and watermarks the last sweep did not write */
  if (q->st[ST_BEGIN] && pl_sq_run(q, q->st[ST_BEGIN]) == PL_OK &&
      (pl_sq_ghist_gcache_drop(q) != PL_OK || pl_sq_run(q, q->st[ST_COMMIT]) != PL_OK))
    pl_sq_run(q, q->st[ST_ROLLBACK]);
  pl_sq_ghist_gmeta_drop(q);
  pl_sq_ghist_gcur_drop(q);
  pl_sq_push_close(q->push);
  for (int i = 0; i < ST__COUNT; i++)
    sqlite3_finalize(q->st[i]);
  if (sqlite3_close(q->db) != SQLITE_OK)
    pl_error("store: sqlite close: %s", sqlite3_errmsg(q->db));
  pl__caches_drop(q);
  pl_sq_media_gone_clear(q);
  pl_free(q->gone);
  pl_free(q);
}

static int pl__first_col(void *arg, int ncol, char **vals, char **names) {
  (void)names;
  char **out = arg;
  if (ncol > 0 && vals[0] && !*out)
    *out = pl_strdup(vals[0]);
  return 0;
}

/* Runs sql; *val gets the first column of its first row (pl_free it). */
static pl_err pl__exec_sql(pl__sq *q, const char *sql, char **val) {
  char *err = NULL, *v = NULL;
  int rc = sqlite3_exec(q->db, sql, pl__first_col, &v, &err);
  if (rc != SQLITE_OK) {
    pl_error("store: sqlite: %s: %s", sql, err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    pl_free(v);
    return PL_ERR_STORE;
  }
  if (val)
    *val = v;
  else
    pl_free(v);
  return PL_OK;
}

/* Schema 7: token lifetimes. The tokens of an upgraded data dir count from
 * the upgrade (their issue time was not kept), so nobody is signed out by it. */
static pl_err pl__upgrade_tokens(pl__sq *q) {
  char sql[256];
  unsigned long long now = (unsigned long long)pl_now_ms();
  snprintf(sql, sizeof sql,
           "ALTER TABLE devices ADD COLUMN token_at INTEGER NOT NULL DEFAULT %llu;"
           "ALTER TABLE devices ADD COLUMN used_at INTEGER NOT NULL DEFAULT %llu;",
           now, now);
  return pl__exec_sql(q, sql, NULL);
}

/* *has: table has a column named col (0 also when there is no such table). */
static pl_err pl__has_column(pl__sq *q, const char *table, const char *col, int *has) {
  char sql[160], *v = NULL;
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pragma_table_info('%s') WHERE name = '%s'", table, col);
  pl_err e = pl__exec_sql(q, sql, &v);
  *has = e == PL_OK && v && atoi(v) > 0;
  pl_free(v);
  return e;
}

/* seq_of(g, x): group g's last seq when x was the newest qid: the seq before
 * its first entry after x, or the group's last seq when none is left after
 * x (the history goes oldest first: trimmed, full or expired). Within a
 * group qid order is seq order, since one thread committed them, so the
 * first entry after x is found by qid: one probe of the schema-9 index
 * messages_group(gid, qid), not a scan of the rest of the history. */
#define PL__SEQ_OF(g, x)                                                           \
  "COALESCE((SELECT seq FROM messages WHERE gid = " g " AND gid != 0 AND qid > " x \
  " ORDER BY qid LIMIT 1) - 1, (SELECT last_seq FROM convs WHERE conv = 'g:' || " g "), 0)"

/* Schema 10: the group positions move from the global qid to each group's
 * seq: members.since_qid/left_qid become since_seq/left_seq (joined, which
 * was since_qid, follows), each device's devices.acked becomes a gcursor row
 * per group of its user, and the history's index goes by seq. One
 * transaction with the new version, so a crash leaves either dir whole. */
static pl_err pl__upgrade_gcursor(pl__sq *q) {
  static const char convert[] =
      "ALTER TABLE members ADD COLUMN since_seq INTEGER NOT NULL DEFAULT 0;"
      "ALTER TABLE members ADD COLUMN left_seq INTEGER NOT NULL DEFAULT 0;"
      "UPDATE members SET since_seq = " PL__SEQ_OF(
          "members.gid",
          "members.since_qid") ","
                               " joined = " PL__SEQ_OF(
                                   "members.gid",
                                   "members.joined") ","
                                                     " left_seq = CASE WHEN left_qid = 0 THEN 0 "
                                                     "ELSE " PL__SEQ_OF(
                                                         "members.gid",
                                                         "members.left_qid") " END;"
                                                                             "ALTER TABLE members DROP "
                                                                             "COLUMN since_qid; ALTER TABLE "
                                                                             "members DROP COLUMN left_qid;"
                                                                             "DROP INDEX IF EXISTS "
                                                                             "messages_group;";
  static const char cursors[] =
      "INSERT OR REPLACE INTO gcursor(device_id, gid, seq) SELECT d.id, m.gid, " PL__SEQ_OF(
          "m.gid", "d.acked") " FROM members m JOIN devices d ON d.user_id = m.uid;";
  int old = 0, acked = 0;
  pl_err e = pl__has_column(q, "members", "since_qid", &old);
  if (e == PL_OK)
    e = pl__has_column(q, "devices", "acked", &acked);
  if (e != PL_OK || (!old && !acked))
    return e;
  pl_info("store: upgrading the group positions to schema 10 (per-group seqs instead of qids)");
  e = pl__exec_sql(q, "BEGIN;" PL__GCURSOR_TABLE, NULL);
  if (e == PL_OK && old && acked)
    e = pl__exec_sql(q, cursors, NULL);
  if (e == PL_OK && old)
    e = pl__exec_sql(q, convert, NULL);
  if (e == PL_OK && acked)
    e = pl__exec_sql(q, "ALTER TABLE devices DROP COLUMN acked;", NULL);
  if (e == PL_OK)
    e = pl__exec_sql(q, "PRAGMA user_version = 10; COMMIT;", NULL);
  if (e != PL_OK)
    pl__exec_sql(q, "ROLLBACK", NULL);
  return e;
}

/* WAL; synchronous=FULL makes COMMIT fsync the WAL before it returns (the
 * server acks only after that), NORMAL survives a crash of the process. */
static pl_err pl__setup(pl__sq *q, int durable, uint32_t cache_kib) {
  char cache[64];
  /* The page cache is SQLite's own copy of pages the OS caches anyway. At
   * 16 MiB it held ~160 B per idle connection at 19,000 (each one's token,
   * device and user rows were read once, at its Resume) and nothing the
   * hot paths need: they touch the right edge of a few indexes. */
  snprintf(cache, sizeof cache, "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-%u",
           cache_kib ? cache_kib : 2048);
  char *mode = NULL, *ver = NULL;
  pl_err e = pl__exec_sql(q, "PRAGMA journal_mode=WAL", &mode);
  if (e == PL_OK && (!mode || strcmp(mode, "wal") != 0)) {
    pl_error("store: cannot switch the database to WAL mode (got %s)", mode ? mode : "nothing");
    e = PL_ERR_STORE;
  }
  if (e == PL_OK)
    e = pl__exec_sql(q, durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL);
  if (e == PL_OK)
    e = pl__exec_sql(q, cache, NULL);
  if (e == PL_OK) /* see sq_disk.h */
    e = pl__exec_sql(q, PL_SQ_SECURE_DELETE, NULL);
  if (e == PL_OK)
    e = pl__exec_sql(q, "PRAGMA user_version", &ver);
  if (e == PL_OK && ver && atoi(ver) > PL__SCHEMA_VERSION) {
    pl_error("store: database schema version %s is newer than this server's (%d)", ver, PL__SCHEMA_VERSION);
    e = PL_ERR_STORE;
  }
  if (e == PL_OK && ver && atoi(ver) == 1) {
    pl_warn("store: upgrading the database from schema 1: dropping the old dedup records");
    e = pl__exec_sql(q, "DROP INDEX IF EXISTS dedup_expires; DROP TABLE IF EXISTS dedup", NULL);
  }
  if (e == PL_OK && ver && (atoi(ver) == 1 || atoi(ver) == 2))
    e = pl__exec_sql(q,
                     "ALTER TABLE messages ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;"
                     "ALTER TABLE messages ADD COLUMN aux INTEGER NOT NULL DEFAULT 0;"
                     "ALTER TABLE users ADD COLUMN read_receipts INTEGER NOT NULL DEFAULT 1;",
                     NULL);
  if (e == PL_OK && ver && atoi(ver) >= 1 && atoi(ver) <= 3)
    e = pl__exec_sql(q,
                     "ALTER TABLE users ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;"
                     "ALTER TABLE users ADD COLUMN last_seen_vis INTEGER NOT NULL DEFAULT 2;",
                     NULL);
  if (e == PL_OK && ver && atoi(ver) >= 1 && atoi(ver) <= 4)
    e = pl__exec_sql(q, "ALTER TABLE messages ADD COLUMN gid INTEGER NOT NULL DEFAULT 0;", NULL);
  if (e == PL_OK && ver && atoi(ver) >= 1 && atoi(ver) <= 5)
    e = pl__exec_sql(
        q, "ALTER TABLE messages ADD COLUMN media_id TEXT; ALTER TABLE messages ADD COLUMN media BLOB;",
        NULL);
  if (e == PL_OK && ver && atoi(ver) >= 1 && atoi(ver) <= 6)
    e = pl__upgrade_tokens(q);
  if (e == PL_OK) /* by the columns, like the dedup records: any dir of before 10 */
    e = pl__upgrade_gcursor(q);
  if (e == PL_OK) /* by the table's columns, not the version: any dir of before 10 */
    e = pl_sq_dedup_upgrade(q->db);
  if (e == PL_OK)
    e = pl__exec_sql(q, pl__schema, NULL);
  if (e == PL_OK) /* 11: message actions, a step of its own (sq_acts.c) */
    e = pl_sq_acts_upgrade(q->db);
  if (e == PL_OK) /* 12: users.disabled and invites, a step of its own (sq_admin.c) */
    e = pl_sq_admin_upgrade(q->db);
  if (e == PL_OK) /* 13: an action's target by its dedup record (sq_acts.c) */
    e = pl_sq_acts_upgrade13(q->db);
  if (e == PL_OK) /* messages.sk: encryption at rest (sq_seal.c), by the column */
    e = pl_sq_seal_upgrade(q->db);
  pl_free(mode);
  pl_free(ver);
  return e;
}

/* A schema step: adds table.column (decl: its type and default) when the
 * table lacks it (a fresh database has it from the schema already), then
 * runs sql (CREATE ... IF NOT EXISTS, the version; NULL: nothing), all in one
 * transaction, so a crash leaves the data dir before or after the step,
 * whole. what names the step in the log. */
pl_err pl_sq_upgrade_column(sqlite3 *db, const char *table, const char *column, const char *decl,
                            const char *sql, const char *what) {
  char *check = sqlite3_mprintf("SELECT count(*) FROM pragma_table_info(%Q) WHERE name = %Q", table, column);
  char *alter = sqlite3_mprintf("ALTER TABLE \"%w\" ADD COLUMN \"%w\" %s", table, column, decl);
  sqlite3_stmt *st = NULL;
  int has = 0;
  pl_err e = PL_ERR_STORE;
  if (!check || !alter || sqlite3_prepare_v2(db, check, -1, &st, NULL) != SQLITE_OK)
    goto out;
  if (sqlite3_step(st) == SQLITE_ROW)
    has = sqlite3_column_int(st, 0);
  if (!has)
    pl_info("store: upgrading: %s", what);
  if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
    goto out;
  if ((!has && sqlite3_exec(db, alter, NULL, NULL, NULL) != SQLITE_OK) ||
      (sql && sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) ||
      sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    pl_error("store: %s: %s", what, sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    goto out;
  }
  e = PL_OK;
out:
  sqlite3_finalize(st);
  sqlite3_free(check);
  sqlite3_free(alter);
  return e;
}

static pl_err pl__prepare(pl__sq *q) {
  for (int i = 0; i < ST__COUNT; i++) {
    int rc = sqlite3_prepare_v3(q->db, pl__sql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i], NULL);
    if (rc != SQLITE_OK) {
      pl_error("store: sqlite: cannot prepare %s: %s", pl__sql[i], sqlite3_errmsg(q->db));
      return PL_ERR_STORE;
    }
  }
  return PL_OK;
}

static pl_err pl__sq_open(void **out, const pl_store_config *cfg) {
  pl__sq *q = pl_calloc(1, sizeof *q);
  size_t n = strlen(cfg->dir) + sizeof "/parley.db";
  char *path = pl_malloc(n);
  pl_err e = PL_ERR_STORE;
  *out = NULL;
  snprintf(path, n, "%s/parley.db", cfg->dir);
  q->ttl_ms = cfg->ttl_ms;
  q->acts = cfg->acts;
  if (!q->acts.edit_ms) /* 0: the documented defaults (protocol.md 11.9) */
    q->acts.edit_ms = PL_ACTS_EDIT_WINDOW_S * 1000ull;
  if (!q->acts.delete_ms)
    q->acts.delete_ms = PL_ACTS_DELETE_WINDOW_S * 1000ull;
  q->max_devices = cfg->max_devices;
  q->max_queue = cfg->max_queue;
  q->rules = cfg->rules;
  q->max_group = cfg->max_group ? cfg->max_group : 100000u;
  q->group_detail = cfg->group_detail;
  q->online = cfg->online;
  q->online_ud = cfg->online_ud;
  q->media_ttl_ms = pl_retention_media_ttl(cfg->media_ttl_ms, cfg->ttl_ms);
  q->blob_gone = cfg->blob_gone;
  q->blob_exists = cfg->blob_exists;
  q->blob_ud = cfg->blob_ud;
  q->seal_ref = cfg->seal;
  q->seal = cfg->seal ? pl_seal_ref_get(cfg->seal) : NULL;
  /* SQLite counts every allocation under a global mutex unless told not
   * to; we never read those counters. Only possible before the library
   * initialises, so a second store in one process keeps the first setting. */
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  int rc =
      sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    pl_error("store: cannot open %s: %s", path, q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
    goto out;
  }
  sqlite3_busy_timeout(q->db, 5000); /* a tool reading the file meanwhile */
  if (pl__setup(q, cfg->durable, cfg->page_cache_kib) != PL_OK ||
      pl_sq_push_open(&q->push, q->db, cfg->dir) != PL_OK || pl__prepare(q) != PL_OK ||
      pl_sq_seal_open(q) != PL_OK || pl_sq_dedup_rings_replay(q) != PL_OK)
    goto out;
  *out = q;
  q = NULL;
  e = PL_OK;
out:
  pl_free(path);
  pl__sq_close(q);
  return e;
}

const pl_store_backend pl_store_sqlite = {
    .name = "sqlite",
    .queue_exact = 0, /* one writer: qids rise in each device's commit order, with gaps */
    .open = pl__sq_open,
    .close = pl__sq_close,
    .begin = pl__sq_begin,
    .exec = pl__sq_exec,
    .commit = pl__sq_commit,
    .rollback = pl__sq_rollback,
    .expire = pl__sq_expire,
    .backlog = pl__sq_backlog,
    .flush = pl__sq_flush,
    .checkpoint = pl__sq_checkpoint,
    .free_bytes = pl__sq_free_bytes,
    .seal_stats = pl__sq_seal_stats,
    .backup = pl_sq_admin_backup,
};
