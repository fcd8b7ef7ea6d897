/* sq_admin: PL_STORE_ADMIN on the SQLite backend (the operator's calls,
 * docs/admin.md), the invites, the disabled flag, and their schema step.
 *
 * These run a few times a day, so their statements are prepared per call
 * (like sq_stats.c) instead of joining the hot catalogue in sq_internal.h.
 * Signing devices out, leaving groups and dropping media reuse the paths the
 * users' own requests take (logout, LEAVE, the media sweep's blob list), so
 * an admin action leaves the data as the user's own would. */
#include "../../rules/pl_signup.h"
#include "sq_internal.h"

#include <sys/stat.h>
#include <unistd.h>

/* ---- small helpers ----------------------------------------------------------- */

static pl_err pl__prep(pl__sq *q, const char *sql, sqlite3_stmt **st) {
  if (sqlite3_prepare_v2(q->db, sql, -1, st, NULL) == SQLITE_OK)
    return PL_OK;
  pl_error("store: sqlite: cannot prepare %s: %s", sql, sqlite3_errmsg(q->db));
  return PL_ERR_STORE;
}

/* Runs sql bound to (a, b) as integers; no rows. */
static pl_err pl__exec2(pl__sq *q, const char *sql, uint64_t a, uint64_t b) {
  sqlite3_stmt *st = NULL;
  pl_err e = pl__prep(q, sql, &st);
  if (e != PL_OK)
    return e;
  int n = sqlite3_bind_parameter_count(st);
  if (n >= 1)
    pl_sq_bind_u64(st, 1, a);
  if (n >= 2)
    pl_sq_bind_u64(st, 2, b);
  int rc = sqlite3_step(st);
  e = rc == SQLITE_DONE || rc == SQLITE_ROW ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_finalize(st);
  return e;
}

/* One number sql answers. */
static pl_err pl__exec_u64(pl__sq *q, const char *sql, uint64_t *v) {
  sqlite3_stmt *st = NULL;
  pl_err e = pl__prep(q, sql, &st);
  if (e != PL_OK)
    return e;
  int rc = sqlite3_step(st);
  *v = rc == SQLITE_ROW ? pl_sq_col_u64(st, 0) : 0;
  e = rc == SQLITE_ROW ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_finalize(st);
  return e;
}

/* ---- users ---------------------------------------------------------------------- */

#define PL__USER_COLS                                                                        \
  "SELECT u.id, u.name, u.created, u.last_seen, u.disabled, (SELECT count(*) FROM devices d" \
  " WHERE d.user_id = u.id AND d.token_hash IS NOT NULL) FROM users u "

static void pl__user_row(sqlite3_stmt *st, pl_admin_user *u) {
  u->id = pl_sq_col_u64(st, 0);
  u->name = pl_sq_col_str(st, 1);
  u->created = pl_sq_col_u64(st, 2);
  u->last_seen = pl_sq_col_u64(st, 3);
  u->disabled = sqlite3_column_int(st, 4);
  u->devices = pl_sq_col_u64(st, 5);
}

/* Rows of st (bound) into out.users, at most max; *more if one was left. */
static pl_err pl__users_read(pl__sq *q, sqlite3_stmt *st, pl_store_req *r, uint32_t max) {
  pl_store_admin_req *a = &r->u.admin;
  size_t cap = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (a->out.nusers == max) {
      a->out.more = 1;
      break;
    }
    a->out.users = pl_sq_reserve(a->out.users, a->out.nusers, &cap, sizeof *a->out.users);
    memset(&a->out.users[a->out.nusers], 0, sizeof *a->out.users);
    pl__user_row(st, &a->out.users[a->out.nusers++]);
  }
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
}

static pl_err pl__users(void *be, pl_store_req *r) {
  pl__sq *q = be;
  sqlite3_stmt *st = NULL;
  uint32_t max = pl_store_admin_limit(r);
  pl_err e =
      pl__prep(q, PL__USER_COLS "WHERE instr(u.name, ?1) > 0 AND u.name > ?2 ORDER BY u.name LIMIT ?3", &st);
  if (e != PL_OK)
    return e;
  pl_sq_bind_text(st, 1, r->u.admin.in.query);
  pl_sq_bind_text(st, 2, r->u.admin.in.after);
  pl_sq_bind_u64(st, 3, (uint64_t)max + 1);
  e = pl__users_read(q, st, r, max);
  sqlite3_finalize(st);
  return e;
}

/* The user in.user as out.users[0]; NOT_FOUND (status) if none. */
static pl_err pl__user_load(pl__sq *q, pl_store_req *r) {
  sqlite3_stmt *st = NULL;
  pl_err e = pl__prep(q, PL__USER_COLS "WHERE u.name = ?1", &st);
  if (e != PL_OK)
    return e;
  pl_sq_bind_text(st, 1, r->u.admin.in.user);
  e = pl__users_read(q, st, r, 1);
  sqlite3_finalize(st);
  r->u.admin.out.more = 0;
  if (e == PL_OK && !r->u.admin.out.nusers)
    r->status = PL_ERR_NOT_FOUND;
  return e;
}

static pl_err pl__user_devices(pl__sq *q, pl_store_req *r, uint64_t uid) {
  pl_store_admin_req *a = &r->u.admin;
  sqlite3_stmt *st = NULL;
  size_t cap = 0;
  int rc;
  pl_err e = pl__prep(q,
                      "SELECT d.id, d.name, d.created, d.used_at, d.token_hash IS NOT NULL,"
                      " (SELECT count(*) FROM queue q WHERE q.device_id = d.id) FROM devices d"
                      " WHERE d.user_id = ?1 ORDER BY d.id",
                      &st);
  if (e != PL_OK)
    return e;
  pl_sq_bind_u64(st, 1, uid);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    a->out.devices = pl_sq_reserve(a->out.devices, a->out.ndevices, &cap, sizeof *a->out.devices);
    pl_admin_device *d = &a->out.devices[a->out.ndevices++];
    memset(d, 0, sizeof *d);
    d->id = pl_sq_col_u64(st, 0);
    d->name = pl_sq_col_str(st, 1);
    d->created = pl_sq_col_u64(st, 2);
    d->used_at = pl_sq_col_u64(st, 3);
    d->signed_in = sqlite3_column_int(st, 4);
    d->queued = pl_sq_col_u64(st, 5);
  }
  e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_finalize(st);
  return e;
}

/* Groups: of a user (uid != 0: my_role is theirs) or all after a gid. */
static pl_err pl__groups_read(pl__sq *q, pl_store_req *r, uint64_t uid, uint32_t max) {
  pl_store_admin_req *a = &r->u.admin;
  sqlite3_stmt *st = NULL;
  size_t cap = 0;
  int rc;
  pl_err e = pl__prep(q,
                      uid ? "SELECT g.gid, g.name, g.description, g.members, m.role FROM members m"
                            " JOIN groups g ON g.gid = m.gid WHERE m.uid = ?1 AND m.role > 0 ORDER BY g.gid"
                          : "SELECT gid, name, description, members, 0 FROM groups WHERE gid > ?1"
                            " ORDER BY gid LIMIT ?2",
                      &st);
  if (e != PL_OK)
    return e;
  pl_sq_bind_u64(st, 1, uid ? uid : a->in.after_id);
  if (!uid)
    pl_sq_bind_u64(st, 2, (uint64_t)max + 1);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (a->out.ngroups == max) {
      a->out.more = 1;
      break;
    }
    a->out.groups = pl_sq_reserve(a->out.groups, a->out.ngroups, &cap, sizeof *a->out.groups);
    pl_sq_group_row(st, &a->out.groups[a->out.ngroups++]);
  }
  e = rc == SQLITE_DONE || rc == SQLITE_ROW ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_finalize(st);
  return e;
}

/* The uploads of uid (0: everyone's): how many, and their bytes. */
static pl_err pl__user_media(pl__sq *q, pl_store_req *r, uint64_t uid) {
  sqlite3_stmt *st = NULL;
  pl_err e = pl__prep(q,
                      uid ? "SELECT count(*), COALESCE(sum(size + thumb_size), 0) FROM media WHERE owner = ?1"
                          : "SELECT count(*), COALESCE(sum(size + thumb_size), 0) FROM media",
                      &st);
  if (e != PL_OK)
    return e;
  if (uid)
    pl_sq_bind_u64(st, 1, uid);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    r->u.admin.out.media_count = pl_sq_col_u64(st, 0);
    r->u.admin.out.media_bytes = pl_sq_col_u64(st, 1);
  }
  e = rc == SQLITE_ROW ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_finalize(st);
  return e;
}

static pl_err pl__create(void *be, pl_store_req *r) {
  pl__sq *q = be;
  pl__user *u;
  pl_err e = pl_sq_acct_user_by_name(q, r->u.admin.in.user, &u);
  if (e != PL_OK)
    return e;
  if (u) {
    r->status = PL_ERR_USER_EXISTS;
    return PL_OK;
  }
  e = pl_sq_acct_user_insert(q, r->u.admin.in.user, r->u.admin.in.pwhash);
  return e == PL_OK ? pl__user_load(q, r) : e;
}

/* ---- the accounts (the order of each action: pl_store_admin_account) ------------ */

static pl_err pl__op_load(void *be, pl_store_req *r, int lock) {
  (void)lock; /* one writer: the transaction holds the whole database */
  return pl__user_load(be, r);
}

static pl_err pl__op_devices(void *be, pl_store_req *r, uint64_t uid) { return pl__user_devices(be, r, uid); }

static pl_err pl__op_groups(void *be, pl_store_req *r, uint64_t uid) {
  return pl__groups_read(be, r, uid, UINT32_MAX);
}

static pl_err pl__op_media(void *be, pl_store_req *r, uint64_t uid) { return pl__user_media(be, r, uid); }

static pl_err pl__op_logout(void *be, pl_store_req *lo) { return pl_sq_acct_logout(be, lo); }

static pl_err pl__op_group_update(void *be, pl_store_req *sub) { return pl_sq_group_update(be, sub); }

/* PASSWORD, DISABLE, ENABLE: the user's row. */
static pl_err pl__op_set(void *be, pl_store_req *r, uint64_t uid) {
  pl__sq *q = be;
  const pl_store_admin_req *a = &r->u.admin;
  if (a->in.action != PL_ADMIN_PASSWORD)
    return pl__exec2(q, "UPDATE users SET disabled = ?2 WHERE id = ?1", uid,
                     a->in.action == PL_ADMIN_DISABLE);
  sqlite3_stmt *st = NULL;
  pl_err e = pl__prep(q, "UPDATE users SET pwhash = ?2 WHERE id = ?1", &st);
  if (e != PL_OK)
    return e;
  pl_sq_bind_u64(st, 1, uid);
  pl_sq_bind_text(st, 2, a->in.pwhash);
  e = pl_sq_run(q, st);
  sqlite3_finalize(st);
  return e;
}

/* ---- groups ---------------------------------------------------------------------- */

static pl_err pl__group(void *be, pl_store_req *r) {
  pl__sq *q = be;
  pl_store_admin_req *a = &r->u.admin;
  a->in.after_id = a->in.group - 1;
  pl_err e = pl__groups_read(q, r, 0, 1);
  a->out.more = 0;
  if (e != PL_OK)
    return e;
  if (!a->out.ngroups || a->out.groups[0].gid != a->in.group) {
    r->status = PL_ERR_NOT_FOUND;
    return PL_OK;
  }
  pl_group_info *g = &a->out.groups[0];
  sqlite3_stmt *st = q->st[ST_MEMBERS_LIST];
  size_t cap = 0;
  int rc;
  pl_sq_bind_u64(st, 1, g->gid);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    g->members = pl_sq_reserve(g->members, g->nmembers, &cap, sizeof *g->members);
    g->members[g->nmembers].user = pl_sq_col_str(st, 0);
    g->members[g->nmembers++].role = sqlite3_column_int(st, 1);
  }
  e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

static pl_err pl__remove(void *be, pl_store_req *r) {
  pl__sq *q = be;
  pl__user *u;
  int role = PL_ROLE_NONE;
  pl_err e = pl_sq_acct_user_by_name(q, r->u.admin.in.user, &u);
  if (e == PL_OK && u)
    e = pl_sq_group_role(q, u, r->u.admin.in.group, &role);
  if (e != PL_OK)
    return e;
  if (!u || role == PL_ROLE_NONE) {
    r->status = PL_ERR_NOT_MEMBER;
    return PL_OK;
  }
  return pl_sq_group_remove_by(q, r, r->u.admin.in.group, u, role, r->u.admin.in.by);
}

/* ---- delete ------------------------------------------------------------------------ */

/* What is the user's alone: rows keyed by its id or its devices'. */
static const char *const pl__user_rows[] = {
    "DELETE FROM dedup WHERE device_id IN (SELECT id FROM devices WHERE user_id = ?1)",
    "DELETE FROM dedup_rings WHERE device_id IN (SELECT id FROM devices WHERE user_id = ?1)",
    "DELETE FROM gcursor WHERE device_id IN (SELECT id FROM devices WHERE user_id = ?1)",
    "DELETE FROM devices WHERE user_id = ?1",
    "DELETE FROM members WHERE uid = ?1",
    "DELETE FROM greads WHERE uid = ?1",
    "DELETE FROM reads WHERE uid = ?1",
    "DELETE FROM contacts WHERE uid = ?1 OR contact_uid = ?1",
    "DELETE FROM blocks WHERE uid = ?1 OR blocked_uid = ?1",
    "DELETE FROM privacy WHERE uid = ?1",
    "DELETE FROM users WHERE id = ?1",
};

/* The user's uploads go, and the files no other upload names (after the
 * commit, like the media sweep's). */
static pl_err pl__media_drop(pl__sq *q, uint64_t uid) {
  sqlite3_stmt *st = NULL;
  char **keys = NULL;
  size_t n = 0, cap = 0;
  int rc;
  pl_err e = pl__prep(q, "DELETE FROM media WHERE owner = ?1 RETURNING id, blob, thumb", &st);
  if (e != PL_OK)
    return e;
  pl_sq_bind_u64(st, 1, uid);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    keys = pl_sq_reserve(keys, n + 2, &cap, sizeof *keys); /* room for all three */
    keys[n++] = pl_sq_col_str(st, 0);
    keys[n++] = pl_sq_col_str(st, 1);
    keys[n++] = pl_sq_col_str(st, 2);
  }
  e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_finalize(st);
  for (size_t i = 0; i < n && e == PL_OK; i += 3) {
    e = pl_sq_run_text(q, ST_MEDIA_GRANTS_DEL, keys[i]);
    for (size_t k = 1; k < 3 && e == PL_OK; k++)
      e = pl_sq_media_drop_blob(q, keys[i + k]);
  }
  for (size_t i = 0; i < n; i++)
    pl_free(keys[i]);
  pl_free(keys);
  return e;
}

/* DELETE's last step: the uploads, then the rows, then the caches that
 * knew the user (pl_store_admin_account signed it out and out of its
 * groups before). */
static pl_err pl__op_drop(void *be, uint64_t uid) {
  pl__sq *q = be;
  pl_err e = pl__media_drop(q, uid);
  /* the rings hold the devices' recent ids: saved first, so none of them is
   * left unsaved when they are dropped with the devices' rows below */
  if (e == PL_OK && (e = pl_sq_dedup_rings_save(q)) == PL_OK)
    pl_sq_dedup_rings_drop(q);
  for (size_t i = 0; e == PL_OK && i < sizeof pl__user_rows / sizeof pl__user_rows[0]; i++)
    e = pl__exec2(q, pl__user_rows[i], uid, 0);
  pl_sq_acct_users_drop(q);
  pl_sq_queue_qlen_drop(q);
  return e;
}

/* ---- invites and queues ------------------------------------------------------------ */

static pl_err pl__invite(void *be, pl_store_req *r) {
  pl__sq *q = be;
  const pl_store_admin_req *a = &r->u.admin;
  sqlite3_stmt *st = NULL;
  pl_err e = pl__prep(
      q, "INSERT OR IGNORE INTO invites(code, uses_left, expires, created) VALUES(?1, ?2, ?3, ?4)", &st);
  if (e != PL_OK)
    return e;
  pl_sq_bind_text(st, 1, a->in.code);
  pl_sq_bind_u64(st, 2, a->in.uses ? a->in.uses : 1);
  pl_sq_bind_u64(st, 3, pl_sq_clamp(a->in.expires));
  pl_sq_bind_u64(st, 4, pl_now_ms());
  e = pl_sq_run(q, st);
  sqlite3_finalize(st);
  if (e == PL_OK && !sqlite3_changes(q->db))
    r->status = PL_ERR_USER_EXISTS; /* the code is taken */
  return e;
}

static pl_err pl__invites(void *be, pl_store_req *r) {
  pl__sq *q = be;
  pl_store_admin_req *a = &r->u.admin;
  sqlite3_stmt *st = NULL;
  size_t cap = 0;
  int rc;
  uint64_t now = pl_now_ms();
  pl_err e = pl__prep(q, "SELECT code, uses_left, expires, created FROM invites ORDER BY created, code", &st);
  if (e != PL_OK)
    return e;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    uint64_t left = pl_sq_col_u64(st, 1), exp = pl_sq_col_u64(st, 2);
    if (!pl_signup_invite_ok(left, exp, now))
      continue;
    a->out.invites = pl_sq_reserve(a->out.invites, a->out.ninvites, &cap, sizeof *a->out.invites);
    pl_admin_invite *v = &a->out.invites[a->out.ninvites++];
    v->code = pl_sq_col_str(st, 0);
    v->uses_left = left;
    v->expires = exp;
    v->created = pl_sq_col_u64(st, 3);
  }
  e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_finalize(st);
  return e;
}

static pl_err pl__invite_del(void *be, pl_store_req *r) {
  pl__sq *q = be;
  sqlite3_stmt *st = NULL;
  pl_err e = pl__prep(q, "DELETE FROM invites WHERE code = ?1", &st);
  if (e != PL_OK)
    return e;
  pl_sq_bind_text(st, 1, r->u.admin.in.code);
  e = pl_sq_run(q, st);
  sqlite3_finalize(st);
  if (e == PL_OK && !sqlite3_changes(q->db))
    r->status = PL_ERR_NOT_FOUND;
  return e;
}

static pl_err pl__invite_take(void *be, pl_store_req *r) {
  return pl_sq_admin_invite_take(be, r, r->u.admin.in.code);
}

static pl_err pl__invite_give(void *be, pl_store_req *r) {
  pl__sq *q = be;
  sqlite3_stmt *st = NULL;
  pl_err e = pl__prep(q, "UPDATE invites SET uses_left = uses_left + 1 WHERE code = ?1", &st);
  if (e != PL_OK)
    return e;
  pl_sq_bind_text(st, 1, r->u.admin.in.code);
  e = pl_sq_run(q, st);
  sqlite3_finalize(st);
  return e;
}

static pl_err pl__top_queues(void *be, pl_store_req *r) {
  pl__sq *q = be;
  pl_store_admin_req *a = &r->u.admin;
  sqlite3_stmt *st = NULL;
  size_t cap = 0;
  int rc;
  pl_err e =
      pl__prep(q,
               "SELECT c.device_id, c.n, d.name, u.name FROM (SELECT device_id, count(*) AS n FROM queue"
               " GROUP BY device_id ORDER BY n DESC LIMIT ?1) c JOIN devices d ON d.id = c.device_id"
               " JOIN users u ON u.id = d.user_id ORDER BY c.n DESC, c.device_id",
               &st);
  if (e != PL_OK)
    return e;
  pl_sq_bind_u64(st, 1, pl_store_admin_limit(r));
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    a->out.devices = pl_sq_reserve(a->out.devices, a->out.ndevices, &cap, sizeof *a->out.devices);
    pl_admin_device *d = &a->out.devices[a->out.ndevices++];
    memset(d, 0, sizeof *d);
    d->id = pl_sq_col_u64(st, 0);
    d->queued = pl_sq_col_u64(st, 1);
    d->name = pl_sq_col_str(st, 2);
    d->user = pl_sq_col_str(st, 3);
    d->signed_in = 1;
  }
  e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_finalize(st);
  return e;
}

static pl_err pl__stats(void *be, pl_store_req *r) {
  pl__sq *q = be;
  pl_store_req c = {.op = PL_STORE_STATS};
  pl_err e = pl_sq_stats(q->db, &c);
  r->status = c.status;
  if (e != PL_OK || r->status != PL_OK)
    return e;
  r->u.admin.out.counts = c.u.stats.out.counts;
  e = pl__top_queues(q, r);
  if (e == PL_OK)
    e = pl__user_media(q, r, 0);
  uint64_t pages = 0, size = 0;
  if (e == PL_OK)
    e = pl__exec_u64(q, "PRAGMA page_count", &pages);
  if (e == PL_OK)
    e = pl__exec_u64(q, "PRAGMA page_size", &size);
  r->u.admin.out.db_bytes = pages * size;
  return e;
}

/* SQLite's online backup: a consistent copy of the database as of the
 * last commit, page by page, while the server goes on. Not a file copy,
 * which could catch the WAL half-written. It runs on a thread of the
 * caller's (not the store thread, which serves sends meanwhile), from a
 * reader connection of its own: in WAL mode its read transaction sees one
 * snapshot through the whole copy while the store keeps committing, so one
 * step over every page never restarts. dir is the data dir. */
pl_err pl_sq_admin_backup(const char *dir, const char *to, uint64_t *bytes) {
  char from[4096];
  sqlite3 *src = NULL, *dst = NULL;
  struct stat sb;
  pl_err e = PL_ERR_STORE;
  snprintf(from, sizeof from, "%s/parley.db", dir);
  if (stat(to, &sb) == 0)
    return PL_ERR_USER_EXISTS; /* never over an existing file */
  int rc = sqlite3_open_v2(from, &src, SQLITE_OPEN_READONLY, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_open_v2(to, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc == SQLITE_OK)
    sqlite3_busy_timeout(src, 5000);
  sqlite3_backup *b = rc == SQLITE_OK ? sqlite3_backup_init(dst, "main", src, "main") : NULL;
  if (b) {
    rc = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    e = rc == SQLITE_DONE ? PL_OK : PL_ERR_STORE;
  }
  if (e != PL_OK)
    pl_error("store: backup to %s failed: %s", to,
             dst   ? sqlite3_errmsg(dst)
             : src ? sqlite3_errmsg(src)
                   : "?");
  sqlite3_close(dst);
  sqlite3_close(src);
  if (e != PL_OK)
    unlink(to);
  else if (stat(to, &sb) == 0)
    *bytes = (uint64_t)sb.st_size;
  return e;
}

/* ---- the op, and what other ops ask of this file ------------------------------------ */

/* GROUPS: a page of every group. */
static pl_err pl__groups_page(void *be, pl_store_req *r) {
  return pl__groups_read(be, r, 0, pl_store_admin_limit(r));
}

static const pl_store_admin_ops pl__ops;

/* LEAVE_GROUPS and USER_GROUPS (pl_store.h), which linked stores ask of
 * each other: a SQLite store is never a shard of several databases, so
 * the user is one of its own or NOT_FOUND, and its groups are here. */
static pl_err pl__user_groups(void *be, pl_store_req *r) {
  pl_err e = pl__user_load(be, r);
  if (e != PL_OK || r->status != PL_OK)
    return e;
  uint64_t uid = r->u.admin.out.users[0].id;
  e = pl__groups_read(be, r, uid, UINT32_MAX);
  for (size_t i = 0;
       e == PL_OK && r->u.admin.in.action == PL_ADMIN_LEAVE_GROUPS && i < r->u.admin.out.ngroups; i++)
    e = pl_store_admin_leave(r, be, &pl__ops, uid, r->u.admin.out.groups[i].gid);
  return e;
}

static const pl_store_admin_ops pl__ops = {
    .user_load = pl__op_load,
    .devices = pl__op_devices,
    .groups = pl__op_groups,
    .media = pl__op_media,
    .logout = pl__op_logout,
    .group_update = pl__op_group_update,
    .set = pl__op_set,
    .drop = pl__op_drop,
    .action = {[PL_ADMIN_USERS] = pl__users,
               [PL_ADMIN_CREATE] = pl__create,
               [PL_ADMIN_GROUPS] = pl__groups_page,
               [PL_ADMIN_GROUP] = pl__group,
               [PL_ADMIN_REMOVE] = pl__remove,
               [PL_ADMIN_INVITE] = pl__invite,
               [PL_ADMIN_INVITES] = pl__invites,
               [PL_ADMIN_INVITE_DEL] = pl__invite_del,
               [PL_ADMIN_INVITE_TAKE] = pl__invite_take,
               [PL_ADMIN_INVITE_GIVE] = pl__invite_give,
               [PL_ADMIN_LEAVE_GROUPS] = pl__user_groups,
               [PL_ADMIN_USER_GROUPS] = pl__user_groups,
               [PL_ADMIN_TOP_QUEUES] = pl__top_queues,
               [PL_ADMIN_STATS] = pl__stats},
};

pl_err pl_sq_admin(pl__sq *q, pl_store_req *r) { return pl_store_admin_run(r, q, &pl__ops); }

pl_err pl_sq_admin_disabled(pl__sq *q, uint64_t uid, int *disabled) {
  sqlite3_stmt *st = NULL;
  pl_err e = pl__prep(q, "SELECT disabled FROM users WHERE id = ?1", &st);
  if (e != PL_OK)
    return e;
  pl_sq_bind_u64(st, 1, uid);
  int rc = sqlite3_step(st);
  *disabled = rc == SQLITE_ROW && sqlite3_column_int(st, 0);
  e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_finalize(st);
  return e;
}

pl_err pl_sq_admin_invite_take(pl__sq *q, pl_store_req *r, const char *code) {
  sqlite3_stmt *st = NULL;
  pl_err e = pl__prep(q, "SELECT uses_left, expires FROM invites WHERE code = ?1", &st);
  if (e != PL_OK)
    return e;
  pl_sq_bind_text(st, 1, code);
  int rc = sqlite3_step(st);
  int ok = rc == SQLITE_ROW && pl_signup_invite_ok(pl_sq_col_u64(st, 0), pl_sq_col_u64(st, 1), pl_now_ms());
  e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_finalize(st);
  if (e != PL_OK)
    return e;
  if (!ok) {
    r->status = PL_ERR_INVITE_INVALID;
    return PL_OK;
  }
  if ((e = pl__prep(q, "UPDATE invites SET uses_left = uses_left - 1 WHERE code = ?1", &st)) != PL_OK)
    return e;
  pl_sq_bind_text(st, 1, code);
  e = pl_sq_run(q, st);
  sqlite3_finalize(st);
  return e;
}

/* Schema 12, the step of this file: users.disabled (added when the users
 * table lacks it: a fresh database has it from the schema) and invites, in
 * one transaction with the version, so a crash leaves either dir whole. */
pl_err pl_sq_admin_upgrade(sqlite3 *db) {
  return pl_sq_upgrade_column(
      db, "users", "disabled", "INTEGER NOT NULL DEFAULT 0",
      "CREATE TABLE IF NOT EXISTS invites(code TEXT PRIMARY KEY, uses_left INTEGER NOT NULL,"
      " expires INTEGER NOT NULL, created INTEGER NOT NULL) WITHOUT ROWID;"
      "PRAGMA user_version = 12",
      "schema 12 (users.disabled, invites)");
}
