/* pg_admin: PL_STORE_ADMIN on PostgreSQL (the operator's calls,
 * docs/admin.md), the invites and the disabled flag: what sq_admin.c does
 * on SQLite, under the same rules (pl_signup for invites, pl_roles through
 * pg_groups.c for a removal or a deleted member's Leave) and the same
 * order of each account action (pl_store_admin_account, which both
 * backends give their loads and stores: pl__ops).
 *
 * Several nodes share the database, so an action that changes an account
 * (password, ban, revoke, delete) first locks the user's row FOR UPDATE:
 * a sign-in on another node reads that row FOR SHARE in its transaction
 * (pg_acct.c), so it either commits first and its new token is signed out
 * here, or waits and then sees the ban or the deletion. The devices signed
 * out go to out.kicked; the admin API closes their connections through
 * the router, which on a cluster tells every node (KICK on the bus). */
#include "../../rules/pl_signup.h"
#include "pg_internal.h"

/* ---- users --------------------------------------------------------------------- */

#define PL__USER_COLS                                                                        \
  "SELECT u.id, u.name, u.created, u.last_seen, u.disabled, (SELECT count(*) FROM devices d" \
  " WHERE d.user_id = u.id AND d.token_hash IS NOT NULL) FROM users u "

/* Rows of res (PL__USER_COLS) into out.users, at most max; *more if one was
 * left. Clears res. */
static void pl__users_read(PGresult *res, pl_store_req *r, uint32_t max) {
  pl_store_admin_req *a = &r->u.admin;
  size_t n = (size_t)PQntuples(res);
  if (n > max) {
    n = max;
    a->out.more = 1;
  }
  a->out.users = pl_calloc(n + 1, sizeof *a->out.users);
  for (int i = 0; i < (int)n; i++) {
    pl_admin_user *u = &a->out.users[a->out.nusers++];
    u->id = pl_pg_col_u64(res, i, 0);
    u->name = pl_pg_col_str(res, i, 1);
    u->created = pl_pg_col_u64(res, i, 2);
    u->last_seen = pl_pg_col_u64(res, i, 3);
    u->disabled = pl_pg_col_int(res, i, 4);
    u->devices = pl_pg_col_u64(res, i, 5);
  }
  PQclear(res);
}

/* Names in the byte order SQLite's list uses, whatever the database's
 * collation: the "after" of a page is the last name of the one before. */
static pl_err pl__users(void *be, pl_store_req *r) {
  pl__pg *g = be;
  const pl_store_admin_req *a = &r->u.admin;
  uint32_t max = pl_store_admin_limit(r);
  PGresult *res;
  pl_err e =
      pl_pg_q(g, &res,
              PL__USER_COLS "WHERE strpos(u.name, $1) > 0 AND u.name > $2 COLLATE \"C\""
                            " ORDER BY u.name COLLATE \"C\" LIMIT $3",
              "ssu", a->in.query ? a->in.query : "", a->in.after ? a->in.after : "", (uint64_t)max + 1);
  if (e == PL_OK)
    pl__users_read(res, r, max);
  return e;
}

/* The user in.user as out.users[0] (its row locked if lock); NOT_FOUND
 * (status) if none. */
static pl_err pl__user_load(pl__pg *g, pl_store_req *r, int lock) {
  PGresult *res;
  pl_err e = pl_pg_q(
      g, &res, lock ? PL__USER_COLS "WHERE u.name = $1 FOR UPDATE OF u" : PL__USER_COLS "WHERE u.name = $1",
      "s", r->u.admin.in.user);
  if (e != PL_OK)
    return e;
  pl__users_read(res, r, 1);
  r->u.admin.out.more = 0;
  if (!r->u.admin.out.nusers)
    r->status = PL_ERR_NOT_FOUND;
  return PL_OK;
}

/* Appends uid's devices to out.devices (queued: its queue rows now). */
static pl_err pl__user_devices(void *be, pl_store_req *r, uint64_t uid) {
  pl_store_admin_req *a = &r->u.admin;
  PGresult *res;
  pl_err e =
      pl_pg_q(be, &res,
              "SELECT d.id, d.name, d.created, d.used_at, (d.token_hash IS NOT NULL)::int, " PL_PG_QUEUED(
                  "d") " FROM devices d WHERE d.user_id = $1 ORDER BY d.id",
              "u", uid);
  if (e != PL_OK)
    return e;
  size_t n = (size_t)PQntuples(res);
  a->out.devices = pl_realloc(a->out.devices, (a->out.ndevices + n + 1) * sizeof *a->out.devices);
  for (int i = 0; i < (int)n; i++) {
    pl_admin_device *d = &a->out.devices[a->out.ndevices++];
    memset(d, 0, sizeof *d);
    d->id = pl_pg_col_u64(res, i, 0);
    d->name = pl_pg_col_str(res, i, 1);
    d->created = pl_pg_col_u64(res, i, 2);
    d->used_at = pl_pg_col_u64(res, i, 3);
    d->signed_in = pl_pg_col_int(res, i, 4);
    d->queued = pl_pg_col_u64(res, i, 5);
  }
  PQclear(res);
  return PL_OK;
}

/* Groups: of a user (uid != 0: my_role is theirs, all of them) or all,
 * after in.after_id, at most max. */
static pl_err pl__groups_read(pl__pg *g, pl_store_req *r, uint64_t uid, uint32_t max) {
  pl_store_admin_req *a = &r->u.admin;
  PGresult *res;
  pl_err e =
      uid ? pl_pg_q(g, &res,
                    "SELECT gr.gid, gr.name, gr.description, gr.members, m.role, 0 FROM members m"
                    " JOIN groups gr ON gr.gid = m.gid WHERE m.uid = $1 AND m.role > 0 ORDER BY gr.gid",
                    "u", uid)
          : pl_pg_q(g, &res,
                    "SELECT gid, name, description, members, 0, 0 FROM groups WHERE gid > $1"
                    " ORDER BY gid LIMIT $2",
                    "uu", a->in.after_id, (uint64_t)max + 1);
  if (e != PL_OK)
    return e;
  pl_pg_group_rows(res, &a->out.groups, &a->out.ngroups, max, &a->out.more);
  PQclear(res);
  return PL_OK;
}

/* The uploads of uid (0: everyone's): how many, and their bytes. */
static pl_err pl__user_media(pl__pg *g, pl_store_req *r, uint64_t uid) {
  PGresult *res;
  pl_err e = pl_pg_q(g, &res,
                     "SELECT count(*), COALESCE(sum(size + thumb_size), 0) FROM media"
                     " WHERE $1::bigint = 0 OR owner = $1",
                     "u", uid);
  if (e != PL_OK)
    return e;
  r->u.admin.out.media_count = pl_pg_col_u64(res, 0, 0);
  r->u.admin.out.media_bytes = pl_pg_col_u64(res, 0, 1);
  PQclear(res);
  return PL_OK;
}

static pl_err pl__create(void *be, pl_store_req *r) {
  pl__pg *g = be;
  uint64_t uid = 0;
  pl_err e = pl_pg_u64(g, &uid, "SELECT id FROM users WHERE name = $1", "s", r->u.admin.in.user);
  if (e != PL_OK)
    return e;
  if (uid) {
    r->status = PL_ERR_USER_EXISTS;
    return PL_OK;
  }
  e = pl_pg_acct_user_insert(g, r->u.admin.in.user, r->u.admin.in.pwhash, &uid);
  return e == PL_OK ? pl__user_load(g, r, 0) : e;
}

/* ---- the accounts (the order of each action: pl_store_admin_account) ------------ */

static pl_err pl__op_load(void *be, pl_store_req *r, int lock) { return pl__user_load(be, r, lock); }

static pl_err pl__op_groups(void *be, pl_store_req *r, uint64_t uid) {
  return pl__groups_read(be, r, uid, UINT32_MAX);
}

static pl_err pl__op_media(void *be, pl_store_req *r, uint64_t uid) { return pl__user_media(be, r, uid); }

static pl_err pl__op_logout(void *be, pl_store_req *lo) { return pl_pg_acct_logout(be, lo); }

static pl_err pl__op_group_update(void *be, pl_store_req *sub) { return pl_pg_group_update(be, sub); }

/* PASSWORD, DISABLE, ENABLE: the user's row (locked by the load). */
static pl_err pl__op_set(void *be, pl_store_req *r, uint64_t uid) {
  const pl_store_admin_req *a = &r->u.admin;
  if (a->in.action == PL_ADMIN_PASSWORD)
    return pl_pg_q(be, NULL, "UPDATE users SET pwhash = $2 WHERE id = $1", "us", uid, a->in.pwhash);
  return pl_pg_q(be, NULL, "UPDATE users SET disabled = $2 WHERE id = $1", "ui", uid,
                 a->in.action == PL_ADMIN_DISABLE);
}

/* ---- groups ---------------------------------------------------------------------- */

static pl_err pl__group(void *be, pl_store_req *r) {
  pl__pg *g = be;
  pl_store_admin_req *a = &r->u.admin;
  a->in.after_id = a->in.group - 1;
  pl_err e = pl__groups_read(g, r, 0, 1);
  a->out.more = 0;
  if (e != PL_OK)
    return e;
  if (!a->out.ngroups || a->out.groups[0].gid != a->in.group) {
    r->status = PL_ERR_NOT_FOUND;
    return PL_OK;
  }
  return pl_pg_group_members(g, &a->out.groups[0]);
}

static pl_err pl__remove(void *be, pl_store_req *r) {
  pl__pg *g = be;
  pl_pg_user *u = NULL;
  int role = PL_ROLE_NONE;
  pl_err e = pl_pg_user_find(g, r, 0, r->u.admin.in.user, &u); /* (on its shard: the group's is g) */
  if (e != PL_OK || r->status != PL_OK)
    return e;
  if (u)
    e = pl_pg_group_role(g, r->u.admin.in.group, u->id, &role);
  if (e == PL_OK && role == PL_ROLE_NONE)
    r->status = PL_ERR_NOT_MEMBER;
  else if (e == PL_OK)
    e = pl_pg_group_remove_by(g, r, r->u.admin.in.group, u, role, r->u.admin.in.by);
  pl_pg_user_free(u);
  return e;
}

/* ---- delete ------------------------------------------------------------------------ */

/* What is the user's alone, in one statement: rows keyed by its id or its
 * devices'. Its messages already in other users' queues stay theirs. */
#define PL__USER_ROWS                                                                      \
  "WITH d AS (SELECT id FROM devices WHERE user_id = $1),"                                 \
  " a AS (DELETE FROM dedup WHERE device_id IN (SELECT id FROM d)),"                       \
  " b AS (DELETE FROM gcursor WHERE device_id IN (SELECT id FROM d)),"                     \
  " dq AS (DELETE FROM dequeued WHERE device_id IN (SELECT id FROM d)),"                   \
  " c AS (DELETE FROM push_tokens WHERE user_id = $1),"                                    \
  " p AS (DELETE FROM push_pending WHERE user_id = $1),"                                   \
  " m AS (DELETE FROM members WHERE uid = $1), gr AS (DELETE FROM greads WHERE uid = $1)," \
  " r AS (DELETE FROM reads WHERE uid = $1),"                                              \
  " ct AS (DELETE FROM contacts WHERE uid = $1 OR contact_uid = $1),"                      \
  " bl AS (DELETE FROM blocks WHERE uid = $1 OR blocked_uid = $1)"                         \
  " DELETE FROM devices WHERE user_id = $1"

/* DELETE's last step (pl_store_admin_account signed the user out and out
 * of its groups before): the uploads, the rows, the user's own last (its
 * devices name it). */
static pl_err pl__op_drop(void *be, uint64_t uid) {
  pl_err e = pl_pg_media_drop_owner(be, uid);
  if (e == PL_OK)
    e = pl_pg_q(be, NULL, PL__USER_ROWS, "u", uid);
  return e == PL_OK ? pl_pg_q(be, NULL, "DELETE FROM users WHERE id = $1", "u", uid) : e;
}

/* ---- invites and queues ------------------------------------------------------------ */

static pl_err pl__invite(void *be, pl_store_req *r) {
  pl__pg *g = be;
  const pl_store_admin_req *a = &r->u.admin;
  PGresult *res;
  pl_err e =
      pl_pg_q(g, &res,
              "INSERT INTO invites(code, uses_left, expires, created) VALUES($1, $2, $3, $4)"
              " ON CONFLICT(code) DO NOTHING RETURNING 1",
              "suuu", a->in.code, a->in.uses ? a->in.uses : 1, pl_pg_clamp(a->in.expires), pl_now_ms());
  if (e == PL_OK && PQntuples(res) == 0)
    r->status = PL_ERR_USER_EXISTS; /* the code is taken */
  PQclear(res);
  return e;
}

static pl_err pl__invites(void *be, pl_store_req *r) {
  pl__pg *g = be;
  pl_store_admin_req *a = &r->u.admin;
  PGresult *res;
  uint64_t now = pl_now_ms();
  pl_err e = pl_pg_q(
      g, &res, "SELECT code, uses_left, expires, created FROM invites ORDER BY created, code COLLATE \"C\"",
      NULL);
  if (e != PL_OK)
    return e;
  int n = PQntuples(res);
  a->out.invites = pl_calloc((size_t)n + 1, sizeof *a->out.invites);
  for (int i = 0; i < n; i++) {
    uint64_t left = pl_pg_col_u64(res, i, 1), exp = pl_pg_col_u64(res, i, 2);
    if (!pl_signup_invite_ok(left, exp, now))
      continue;
    pl_admin_invite *v = &a->out.invites[a->out.ninvites++];
    v->code = pl_pg_col_str(res, i, 0);
    v->uses_left = left;
    v->expires = exp;
    v->created = pl_pg_col_u64(res, i, 3);
  }
  PQclear(res);
  return PL_OK;
}

static pl_err pl__invite_del(void *be, pl_store_req *r) {
  pl__pg *g = be;
  PGresult *res;
  pl_err e = pl_pg_q(g, &res, "DELETE FROM invites WHERE code = $1 RETURNING 1", "s", r->u.admin.in.code);
  if (e == PL_OK && PQntuples(res) == 0)
    r->status = PL_ERR_NOT_FOUND;
  PQclear(res);
  return e;
}

/* The deepest queues by the length the queue limits keep (PL_PG_QUEUED:
 * no count over the whole queue table). */
static pl_err pl__top_queues(void *be, pl_store_req *r) {
  pl__pg *g = be;
  pl_store_admin_req *a = &r->u.admin;
  PGresult *res;
  pl_err e = pl_pg_q(g, &res,
                     "SELECT * FROM (SELECT d.id, " PL_PG_QUEUED(
                         "d") " AS q, d.name, u.name FROM devices d"
                              " JOIN users u ON u.id = d.user_id) x WHERE q > 0 ORDER BY q DESC, id LIMIT $1",
                     "u", (uint64_t)pl_store_admin_limit(r));
  if (e != PL_OK)
    return e;
  int n = PQntuples(res);
  a->out.devices = pl_calloc((size_t)n + 1, sizeof *a->out.devices);
  for (int i = 0; i < n; i++) {
    pl_admin_device *d = &a->out.devices[a->out.ndevices++];
    d->id = pl_pg_col_u64(res, i, 0);
    d->queued = pl_pg_col_u64(res, i, 1);
    d->name = pl_pg_col_str(res, i, 2);
    d->user = pl_pg_col_str(res, i, 3);
    d->signed_in = 1;
  }
  PQclear(res);
  return PL_OK;
}

/* What /metrics counts, the deepest queues, the uploads, and the size of
 * the database (pg_database_size: the whole database, indexes included). */
static pl_err pl__stats(void *be, pl_store_req *r) {
  pl__pg *g = be;
  pl_err e = pl_pg_conv_counts(g, &r->u.admin.out.counts);
  if (e == PL_OK)
    e = pl_pg_u64(g, &r->u.admin.out.db_bytes, "SELECT pg_database_size(current_database())", NULL);
  if (e == PL_OK)
    e = pl__top_queues(g, r);
  if (e == PL_OK)
    e = pl__user_media(g, r, 0);
  return e;
}

/* ---- the op, and what other ops ask of this file ------------------------------------ */

/* GROUPS: a page of every group. */
static pl_err pl__groups_page(void *be, pl_store_req *r) {
  return pl__groups_read(be, r, 0, pl_store_admin_limit(r));
}

static pl_err pl__invite_take(void *be, pl_store_req *r) {
  return pl_pg_admin_invite_take(be, r, r->u.admin.in.code);
}

static pl_err pl__invite_give(void *be, pl_store_req *r) {
  return pl_pg_q(be, NULL, "UPDATE invites SET uses_left = uses_left + 1 WHERE code = $1", "s",
                 r->u.admin.in.code);
}

static const pl_store_admin_ops pl__ops;

/* LEAVE_GROUPS: a user of another shard (read there) out of this shard's
 * groups, each as by its own Leave; USER_GROUPS: its groups here (its role
 * as my_role). None: NOT_FOUND. */
static pl_err pl__user_groups(void *be, pl_store_req *r) {
  pl__pg *g = be;
  pl_pg_user *u = NULL;
  pl_err e = pl_pg_user_find(g, r, 0, r->u.admin.in.user, &u);
  if (e == PL_OK && r->status == PL_OK && !u)
    r->status = PL_ERR_NOT_FOUND;
  if (e == PL_OK && u)
    e = pl__groups_read(g, r, u->id, UINT32_MAX);
  for (size_t i = 0;
       e == PL_OK && u && r->u.admin.in.action == PL_ADMIN_LEAVE_GROUPS && i < r->u.admin.out.ngroups; i++)
    e = pl_store_admin_leave(r, g, &pl__ops, u->id, r->u.admin.out.groups[i].gid);
  pl_pg_user_free(u);
  return e;
}

static const pl_store_admin_ops pl__ops = {
    .user_load = pl__op_load,
    .devices = pl__user_devices,
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

pl_err pl_pg_admin(pl__pg *g, pl_store_req *r) { return pl_store_admin_run(r, g, &pl__ops); }

pl_err pl_pg_admin_disabled(pl__pg *g, uint64_t uid, int share, int *disabled) {
  uint64_t v = 0;
  pl_err e = pl_pg_u64(g, &v,
                       share ? "SELECT disabled FROM users WHERE id = $1 FOR SHARE"
                             : "SELECT disabled FROM users WHERE id = $1",
                       "u", uid);
  *disabled = e == PL_OK && v != 0;
  return e;
}

pl_err pl_pg_admin_invite_take(pl__pg *g, pl_store_req *r, const char *code) {
  PGresult *res;
  pl_err e = pl_pg_q(g, &res, "SELECT uses_left, expires FROM invites WHERE code = $1 FOR UPDATE", "s", code);
  if (e != PL_OK)
    return e;
  int ok = PQntuples(res) > 0 &&
           pl_signup_invite_ok(pl_pg_col_u64(res, 0, 0), pl_pg_col_u64(res, 0, 1), pl_now_ms());
  PQclear(res);
  if (!ok) {
    r->status = PL_ERR_INVITE_INVALID;
    return PL_OK;
  }
  return pl_pg_q(g, NULL, "UPDATE invites SET uses_left = uses_left - 1 WHERE code = $1", "s", code);
}
