/* pl_sq_push: push tokens and pending push notifications in
 * parley.db (schema 8), for the PL_STORE_PUSH_* ops.
 *
 * Tables:
 *   push_tokens   device_id -> user_id, user (name), provider, token, updated
 *   push_pending  device_id -> user_id, count (messages it stands for),
 *                 first_ms (its burst began), due_ms (when it may be
 *                 claimed: the window's end, a retry's time, or a lease's
 *                 end), attempts, claim (the fence, +1 per claim), owner
 *                 (who holds the lease; informational), sender, conv,
 *                 preview (NULL in privacy mode)
 *
 * A lease is only due_ms moved forward: a claimed row is not due until its
 * lease ends, so the claim query needs no second condition and the next
 * wake-up is min(due_ms) over one index. Before schema 8 the push service
 * kept the same two tables in <data>/push.db; open imports that file once. */
#include "sq_push.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../common/pl_log.h"
#include "../../common/pl_mem.h"

static const char pl__schema[] =
    "BEGIN;"
    "CREATE TABLE IF NOT EXISTS push_tokens(device_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
    " user TEXT NOT NULL, provider TEXT NOT NULL, token TEXT NOT NULL, updated INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS push_pending(device_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
    " count INTEGER NOT NULL, first_ms INTEGER NOT NULL, due_ms INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL, claim INTEGER NOT NULL DEFAULT 0, owner TEXT, sender TEXT, conv TEXT,"
    " preview BLOB);"
    "CREATE INDEX IF NOT EXISTS push_pending_due ON push_pending(due_ms);"
    "COMMIT;";

/* Tokens of devices that are signed out (or gone): left by a logout while
 * push was off, or by an imported push.db. */
#define PL__STALE                                                                   \
  "SELECT t.device_id FROM push_tokens t LEFT JOIN devices d ON d.id = t.device_id" \
  " WHERE d.token_hash IS NULL"

#define PL__STMTS(X)                                                                                         \
  X(TOK_PUT, "INSERT INTO push_tokens(device_id, user_id, user, provider, token, updated)"                   \
             " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(device_id) DO UPDATE SET"                          \
             " user_id = excluded.user_id, user = excluded.user, provider = excluded.provider,"              \
             " token = excluded.token, updated = excluded.updated")                                          \
  X(TOK_DEL, "DELETE FROM push_tokens WHERE device_id = ?1")                                                 \
  X(TOK_DEL_IF, "DELETE FROM push_tokens WHERE device_id = ?1 AND token = ?2")                               \
  X(TOK_ALL, "SELECT device_id, user_id, user, provider, token FROM push_tokens ORDER BY device_id")         \
  X(STALE_PEND, "DELETE FROM push_pending WHERE device_id IN (" PL__STALE ")")                               \
  X(STALE_TOK, "DELETE FROM push_tokens WHERE device_id IN (" PL__STALE ")")                                 \
  X(PEND_DEL, "DELETE FROM push_pending WHERE device_id = ?1")                                               \
  /* a row only for a device with a token, and not one of the sender's own */                                \
  X(PEND_ADD,                                                                                                \
    "INSERT INTO push_pending(device_id, user_id, count, first_ms, due_ms, attempts, sender, conv, preview)" \
    " SELECT device_id, user_id, 1, ?2, ?3, 0, ?4, ?5, ?6 FROM push_tokens"                                  \
    " WHERE device_id = ?1 AND user IS NOT ?7 ON CONFLICT(device_id) DO UPDATE SET count = count + 1,"       \
    " sender = excluded.sender, conv = excluded.conv, preview = excluded.preview")                           \
  X(CLAIM_DUE,                                                                                               \
    "SELECT p.device_id, p.user_id, p.count, p.first_ms, p.claim, p.attempts, t.user, t.provider, t.token,"  \
    " p.sender, p.conv, p.preview FROM push_pending p JOIN push_tokens t ON t.device_id = p.device_id"       \
    " WHERE p.due_ms <= ?1 ORDER BY p.due_ms LIMIT ?2")                                                      \
  X(CLAIM_SET, "UPDATE push_pending SET due_ms = ?2, owner = ?3, claim = claim + 1 WHERE device_id = ?1")    \
  X(PEND_STATE, "SELECT count(*), min(due_ms) FROM push_pending")                                            \
  X(DONE_SENT, "DELETE FROM push_pending WHERE device_id = ?1 AND claim = ?2 AND count <= ?3")               \
  /* messages that came while the notification was out: a window of their own */                             \
  X(DONE_REST, "UPDATE push_pending SET count = count - ?3, first_ms = ?4, due_ms = ?4 + ?5,"                \
               " attempts = 0, owner = NULL WHERE device_id = ?1 AND claim = ?2 AND count > ?3")             \
  X(DONE_LATER, "UPDATE push_pending SET due_ms = ?3, attempts = ?4, owner = NULL"                           \
                " WHERE device_id = ?1 AND claim = ?2")                                                      \
  X(DONE_RELEASE, "UPDATE push_pending SET due_ms = 0, owner = NULL WHERE device_id = ?1 AND claim = ?2")    \
  X(DONE_DROP, "DELETE FROM push_pending WHERE device_id = ?1 AND claim = ?2")

enum {
#define PL__STMT_ENUM(name, sql) ST_##name,
  PL__STMTS(PL__STMT_ENUM)
#undef PL__STMT_ENUM
      ST__COUNT
};

static const char *const pl__sql[] = {
#define PL__STMT_SQL(name, sql) sql,
    PL__STMTS(PL__STMT_SQL)
#undef PL__STMT_SQL
};

struct pl_sq_push {
  sqlite3 *db;
  sqlite3_stmt *st[ST__COUNT];
};

/* ---- small helpers --------------------------------------------------------- */

static pl_err pl__err(pl_sq_push *sp, sqlite3_stmt *st, int rc) {
  pl_error("store: sqlite error %d (%s) in: %s", rc, sqlite3_errmsg(sp->db), st ? sqlite3_sql(st) : "?");
  return PL_ERR_STORE;
}

/* SQL integers are signed 64-bit. */
static void pl__u64(sqlite3_stmt *st, int i, uint64_t v) {
  sqlite3_bind_int64(st, i, (sqlite3_int64)(v > INT64_MAX ? INT64_MAX : v));
}

static void pl__str(sqlite3_stmt *st, int i, const char *s) {
  if (s)
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
}

static uint64_t pl__col_u64(sqlite3_stmt *st, int i) { return (uint64_t)sqlite3_column_int64(st, i); }

/* A column as a NUL-terminated copy (its length in *len); NULL stays NULL. */
static char *pl__col_dup(sqlite3_stmt *st, int i, size_t *len) {
  const void *p = sqlite3_column_blob(st, i);
  size_t n = (size_t)sqlite3_column_bytes(st, i);
  if (len)
    *len = p ? n : 0;
  return p || sqlite3_column_type(st, i) != SQLITE_NULL ? pl_strndup(p ? p : "", n) : NULL;
}

/* Steps a statement that returns no rows; resets it and clears its
 * bindings (they may point at the caller's strings). *changes: rows it
 * changed (may be NULL). */
static pl_err pl__run(pl_sq_push *sp, int which, int *changes) {
  sqlite3_stmt *st = sp->st[which];
  int rc = sqlite3_step(st);
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl__err(sp, st, rc);
  if (changes)
    *changes = e == PL_OK ? sqlite3_changes(sp->db) : 0;
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return e;
}

static pl_err pl__run_dev(pl_sq_push *sp, int which, uint64_t device, uint64_t claim, int *changes) {
  pl__u64(sp->st[which], 1, device);
  if (sqlite3_bind_parameter_count(sp->st[which]) >= 2)
    pl__u64(sp->st[which], 2, claim);
  return pl__run(sp, which, changes);
}

/* ---- tokens ------------------------------------------------------------------ */

pl_err pl_sq_push_forget(pl_sq_push *sp, uint64_t device) {
  pl_err e = pl__run_dev(sp, ST_TOK_DEL, device, 0, NULL);
  return e == PL_OK ? pl__run_dev(sp, ST_PEND_DEL, device, 0, NULL) : e;
}

pl_err pl_sq_push_token(pl_sq_push *sp, pl_store_req *r) {
  uint64_t dev = r->u.push_token.in.device;
  if (!r->u.push_token.in.token || !*r->u.push_token.in.token)
    return pl_sq_push_forget(sp, dev);
  sqlite3_stmt *st = sp->st[ST_TOK_PUT];
  pl__u64(st, 1, dev);
  pl__u64(st, 2, r->u.push_token.in.user_id);
  pl__str(st, 3, r->u.push_token.in.user);
  pl__str(st, 4, r->u.push_token.in.provider);
  pl__str(st, 5, r->u.push_token.in.token);
  pl__u64(st, 6, r->u.push_token.in.now);
  return pl__run(sp, ST_TOK_PUT, NULL);
}

pl_err pl_sq_push_tokens(pl_sq_push *sp, pl_store_req *r) {
  pl_err e = pl__run(sp, ST_STALE_PEND, NULL);
  if (e == PL_OK)
    e = pl__run(sp, ST_STALE_TOK, NULL);
  sqlite3_stmt *st = sp->st[ST_TOK_ALL];
  size_t cap = 0;
  int rc = SQLITE_DONE;
  while (e == PL_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (r->u.push_tokens.out.ntokens == cap) {
      cap = cap ? cap * 2 : 16;
      r->u.push_tokens.out.tokens =
          pl_realloc(r->u.push_tokens.out.tokens, cap * sizeof *r->u.push_tokens.out.tokens);
    }
    r->u.push_tokens.out.tokens[r->u.push_tokens.out.ntokens++] = (pl_store_push_token){
        .device = pl__col_u64(st, 0),
        .user_id = pl__col_u64(st, 1),
        .user = pl__col_dup(st, 2, NULL),
        .provider = pl__col_dup(st, 3, NULL),
        .token = pl__col_dup(st, 4, NULL),
    };
  }
  if (e == PL_OK && rc != SQLITE_DONE)
    e = pl__err(sp, st, rc);
  sqlite3_reset(st);
  return e;
}

/* ---- pending notifications ------------------------------------------------------ */

pl_err pl_sq_push_enqueue(pl_sq_push *sp, pl_store_req *r) {
  pl_err e = PL_OK;
  for (size_t i = 0; e == PL_OK && i < r->u.push_enqueue.in.ndevices; i++) {
    sqlite3_stmt *st = sp->st[ST_PEND_ADD];
    int n;
    pl__u64(st, 1, r->u.push_enqueue.in.devices[i]);
    pl__u64(st, 2, r->u.push_enqueue.in.now);
    pl__u64(st, 3, r->u.push_enqueue.in.now + r->u.push_enqueue.in.window_ms);
    pl__str(st, 4, r->u.push_enqueue.in.from);
    pl__str(st, 5, r->u.push_enqueue.in.conv);
    if (r->u.push_enqueue.in.text)
      sqlite3_bind_blob(st, 6, r->u.push_enqueue.in.text, (int)r->u.push_enqueue.in.text_len, SQLITE_STATIC);
    pl__str(st, 7, r->u.push_enqueue.in.sender);
    e = pl__run(sp, ST_PEND_ADD, &n);
    r->u.push_enqueue.out.enqueued += (uint64_t)n;
  }
  return e;
}

static pl_err pl__state(pl_sq_push *sp, pl_store_req *r) {
  sqlite3_stmt *st = sp->st[ST_PEND_STATE];
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    r->u.push_claim.out.pending = pl__col_u64(st, 0);
    r->u.push_claim.out.next_due = pl__col_u64(st, 1);
  }
  sqlite3_reset(st);
  return rc == SQLITE_ROW ? PL_OK : pl__err(sp, st, rc);
}

/* The due rows, read before any is leased (a scan must not see the rows it
 * moves). */
static pl_err pl__claim_read(pl_sq_push *sp, pl_store_req *r) {
  sqlite3_stmt *st = sp->st[ST_CLAIM_DUE];
  int rc;
  pl__u64(st, 1, r->u.push_claim.in.now);
  pl__u64(st, 2, r->u.push_claim.in.limit);
  r->u.push_claim.out.rows = pl_calloc(r->u.push_claim.in.limit, sizeof *r->u.push_claim.out.rows);
  while (r->u.push_claim.out.nrows < r->u.push_claim.in.limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    pl_store_push_row *w = &r->u.push_claim.out.rows[r->u.push_claim.out.nrows++];
    w->device = pl__col_u64(st, 0);
    w->user_id = pl__col_u64(st, 1);
    w->count = pl__col_u64(st, 2);
    w->first_ms = pl__col_u64(st, 3);
    w->claim = pl__col_u64(st, 4) + 1;
    w->attempts = (uint32_t)sqlite3_column_int(st, 5);
    w->user = pl__col_dup(st, 6, NULL);
    w->provider = pl__col_dup(st, 7, NULL);
    w->token = pl__col_dup(st, 8, NULL);
    w->from = pl__col_dup(st, 9, NULL);
    w->conv = pl__col_dup(st, 10, NULL);
    w->text = pl__col_dup(st, 11, &w->text_len);
  }
  pl_err e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl__err(sp, st, rc);
  sqlite3_reset(st);
  return e;
}

/* The claim rules are pl_store.h's. */
pl_err pl_sq_push_claim(pl_sq_push *sp, pl_store_req *r) {
  pl_err e = r->u.push_claim.in.limit ? pl__claim_read(sp, r) : PL_OK;
  for (size_t i = 0; e == PL_OK && i < r->u.push_claim.out.nrows; i++) {
    sqlite3_stmt *st = sp->st[ST_CLAIM_SET];
    pl__u64(st, 1, r->u.push_claim.out.rows[i].device);
    pl__u64(st, 2, r->u.push_claim.in.now + r->u.push_claim.in.lease_ms);
    pl__str(st, 3, r->u.push_claim.in.owner);
    e = pl__run(sp, ST_CLAIM_SET, NULL);
  }
  return e == PL_OK ? pl__state(sp, r) : e;
}

static pl_err pl__sent(pl_sq_push *sp, const pl_store_push_result *x, uint64_t now, uint64_t window) {
  int n;
  sqlite3_stmt *st = sp->st[ST_DONE_SENT];
  pl__u64(st, 3, x->count);
  pl_err e = pl__run_dev(sp, ST_DONE_SENT, x->device, x->claim, &n);
  if (e != PL_OK || n)
    return e;
  st = sp->st[ST_DONE_REST];
  pl__u64(st, 3, x->count);
  pl__u64(st, 4, now);
  pl__u64(st, 5, window);
  return pl__run_dev(sp, ST_DONE_REST, x->device, x->claim, NULL);
}

/* The provider disowns the token it was sent to: it goes, and the row with
 * it; unless the device registered another meanwhile, which gets the row. */
static pl_err pl__bad_token(pl_sq_push *sp, const pl_store_push_result *x) {
  int n;
  pl__str(sp->st[ST_TOK_DEL_IF], 2, x->token);
  pl__u64(sp->st[ST_TOK_DEL_IF], 1, x->device);
  pl_err e = pl__run(sp, ST_TOK_DEL_IF, &n);
  if (e != PL_OK)
    return e;
  return n ? pl__run_dev(sp, ST_PEND_DEL, x->device, 0, NULL)
           : pl__run_dev(sp, ST_DONE_RELEASE, x->device, x->claim, NULL);
}

static pl_err pl__result(pl_sq_push *sp, const pl_store_req *r, const pl_store_push_result *x) {
  switch (x->outcome) {
  case PL_PUSH_DONE_SENT: return pl__sent(sp, x, r->u.push_done.in.now, r->u.push_done.in.window_ms);
  case PL_PUSH_DONE_LATER:
    pl__u64(sp->st[ST_DONE_LATER], 3, x->due_ms);
    pl__u64(sp->st[ST_DONE_LATER], 4, x->attempts);
    return pl__run_dev(sp, ST_DONE_LATER, x->device, x->claim, NULL);
  case PL_PUSH_DONE_DROP: return pl__run_dev(sp, ST_DONE_DROP, x->device, x->claim, NULL);
  case PL_PUSH_DONE_BAD_TOKEN: return pl__bad_token(sp, x);
  case PL_PUSH_DONE_RELEASE: return pl__run_dev(sp, ST_DONE_RELEASE, x->device, x->claim, NULL);
  }
  return PL_OK; /* unreachable: pl_store_req_valid checks outcomes */
}

pl_err pl_sq_push_done(pl_sq_push *sp, pl_store_req *r) {
  pl_err e = PL_OK;
  for (size_t i = 0; e == PL_OK && i < r->u.push_done.in.nresults; i++)
    e = pl__result(sp, r, &r->u.push_done.in.results[i]);
  return e;
}

/* ---- open: the tables, push.db, the statements ------------------------------------ */

static pl_err pl__exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK)
    return PL_OK;
  pl_error("store: sqlite: %s: %s", sql, err ? err : sqlite3_errmsg(db));
  sqlite3_free(err);
  return PL_ERR_STORE;
}

/* Does the attached push.db hold both tables of the old push service?
 * 1 yes, 0 no (an empty file), -1 it cannot be read. */
static int pl__old_tables(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  int n = -1;
  if (sqlite3_prepare_v2(db,
                         "SELECT count(*) FROM pushdb.sqlite_master WHERE type = 'table'"
                         " AND name IN ('tokens', 'pending')",
                         -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int(st, 0) == 2;
  sqlite3_finalize(st);
  return n;
}

static pl_err pl__attach(sqlite3 *db, const char *path) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "ATTACH DATABASE ?1 AS pushdb", -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
  }
  if (rc != SQLITE_OK)
    pl_warn("store: cannot read %s: %s", path, sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc == SQLITE_OK ? PL_OK : PL_ERR_STORE;
}

/* Rows of an old push.db win nothing: the store's own rows are newer. A
 * pending row keeps its due time (a lease left by a crash included). */
static const char pl__import_sql[] =
    "BEGIN IMMEDIATE;"
    "INSERT OR IGNORE INTO main.push_tokens(device_id, user_id, user, provider, token, updated)"
    " SELECT device_id, user_id, user, provider, token, updated FROM pushdb.tokens;"
    "INSERT OR IGNORE INTO main.push_pending(device_id, user_id, count, first_ms, due_ms, attempts,"
    " sender, conv, preview) SELECT device_id, user_id, count, first_ms, next_ms, attempts, sender, conv,"
    " preview FROM pushdb.pending WHERE device_id IN (SELECT device_id FROM main.push_tokens);"
    "COMMIT;";

/* path, its -wal (if SQLite left one) -> <path>.imported[-wal]; -shm goes. */
static void pl__set_aside(const char *path) {
  char from[1100], to[1100];
  static const char *const tails[] = {"", "-wal"};
  for (size_t i = 0; i < 2; i++) {
    snprintf(from, sizeof from, "%s%s", path, tails[i]);
    snprintf(to, sizeof to, "%s.imported%s", path, tails[i]);
    if (access(from, F_OK) == 0 && rename(from, to) != 0)
      pl_warn("store: cannot rename %s to %s", from, to);
  }
  snprintf(from, sizeof from, "%s-shm", path);
  unlink(from);
}

/* Schema 8's upgrade: the tokens and pending notifications of a push.db
 * the push service kept before, imported once. A push.db that cannot be
 * read is left where it is, with a warning: the devices register their
 * tokens again when their apps next start, which is no reason to refuse
 * to start. */
static void pl__import(sqlite3 *db, const char *dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s/push.db", dir);
  if (access(path, F_OK) != 0 || pl__attach(db, path) != PL_OK)
    return;
  int old = pl__old_tables(db);
  int ok = old == 0 || (old == 1 && pl__exec(db, pl__import_sql) == PL_OK);
  if (!ok && !sqlite3_get_autocommit(db))
    pl__exec(db, "ROLLBACK");
  pl__exec(db, "DETACH DATABASE pushdb");
  if (!ok) {
    pl_warn("store: %s could not be imported; left in place (devices register their tokens again)", path);
    return;
  }
  pl__set_aside(path);
  pl_info("store: imported push tokens and pending notifications from %s (now %s.imported)", path, path);
}

pl_err pl_sq_push_open(pl_sq_push **out, sqlite3 *db, const char *dir) {
  pl_sq_push *sp = pl_calloc(1, sizeof *sp);
  pl_err e = pl__exec(db, pl__schema);
  *out = NULL;
  sp->db = db;
  if (e != PL_OK)
    goto out;
  pl__import(db, dir);
  for (int i = 0; i < ST__COUNT; i++)
    if (sqlite3_prepare_v3(db, pl__sql[i], -1, SQLITE_PREPARE_PERSISTENT, &sp->st[i], NULL) != SQLITE_OK) {
      pl_error("store: sqlite: cannot prepare %s: %s", pl__sql[i], sqlite3_errmsg(db));
      e = PL_ERR_STORE;
      goto out;
    }
  *out = sp;
  sp = NULL;
out:
  pl_sq_push_close(sp);
  return e;
}

void pl_sq_push_close(pl_sq_push *sp) {
  if (!sp)
    return;
  for (int i = 0; i < ST__COUNT; i++)
    sqlite3_finalize(sp->st[i]);
  pl_free(sp);
}
