/* pg_acct: users, devices and tokens (register, login, resume, logout, the
 * devices op) and settings, on PostgreSQL. The rules are the same modules
 * the SQLite backend asks (pl_devices, pl_privacy, pl_retention). */
#include <string.h>

#include "../../rules/pl_bucket.h"
#include "../../rules/pl_devices.h"
#include "../../rules/pl_privacy.h"
#include "pg_internal.h"

#define PL__TOKEN(h) (const void *)(h), (size_t)PL_TOKEN_HASH_LEN

void pl_pg_user_free(pl_pg_user *u) {
  if (!u)
    return;
  pl_free(u->name);
  pl_free(u->devs);
  pl_free(u->blocked);
  pl_free(u);
}

/* A bigint[] in text form ("{1,2,3}") as numbers. */
static uint64_t *pl__parse_ids(const char *s, size_t *n) {
  size_t cap = 1;
  for (const char *p = s; *p; p++)
    cap += *p == ',';
  uint64_t *v = pl_malloc((cap + 1) * sizeof *v);
  *n = 0;
  for (const char *p = s; *p;) {
    if (*p >= '0' && *p <= '9') {
      char *end;
      v[(*n)++] = strtoull(p, &end, 10);
      p = end;
    } else {
      p++;
    }
  }
  return v;
}

/* The user of pl_pg_q's result (taken over); *out = NULL if none. */
pl_err pl_pg_user_load(PGresult *res, pl_err e, pl_pg_user **out) {
  *out = NULL;
  if (e != PL_OK || PQntuples(res) == 0) {
    PQclear(res);
    return e;
  }
  pl_pg_user *u = pl_calloc(1, sizeof *u);
  u->id = pl_pg_col_u64(res, 0, 0);
  u->name = pl_pg_col_str(res, 0, 1);
  u->read_receipts = pl_pg_col_int(res, 0, 2);
  u->last_seen_vis = pl_pg_col_int(res, 0, 3);
  u->group_add = pl_pg_col_int(res, 0, 4);
  u->devs = pl__parse_ids(PQgetvalue(res, 0, 5), &u->ndevs);
  u->blocked = pl__parse_ids(PQgetvalue(res, 0, 6), &u->nblocked);
  PQclear(res);
  *out = u;
  return PL_OK;
}

pl_err pl_pg_user_get(pl__pg *g, uint64_t uid, pl_pg_user **out) {
  PGresult *res;
  *out = NULL;
  if (!uid)
    return PL_OK;
  pl_err e = pl_pg_q(g, &res, PL_PG_USER_SQL("u.id = $1"), "u", uid);
  return pl_pg_user_load(res, e, out);
}

/* The id (and optionally the password hash) of a user name; 0: none. */
static pl_err pl__user_id(pl__pg *g, const char *name, uint64_t *uid, char **pwhash) {
  PGresult *res;
  pl_err e = pl_pg_q(g, &res, "SELECT id, pwhash FROM users WHERE name = $1", "s", name);
  *uid = 0;
  if (e == PL_OK && PQntuples(res) > 0) {
    *uid = pl_pg_col_u64(res, 0, 0);
    if (pwhash)
      *pwhash = pl_pg_col_str(res, 0, 1);
  }
  PQclear(res);
  return e;
}

pl_err pl_pg_user_by_name(pl__pg *g, const char *name, pl_pg_user **out) {
  PGresult *res;
  pl_err e = pl_pg_q(g, &res, PL_PG_USER_SQL("u.name = $1"), "s", name);
  return pl_pg_user_load(res, e, out);
}

int pl_pg_user_blocks(const pl_pg_user *u, uint64_t uid) {
  return pl_privacy_blocks(u->blocked, u->nblocked, uid);
}

int pl_pg_user_has_dev(const pl_pg_user *u, uint64_t dev) {
  for (size_t i = 0; i < u->ndevs; i++)
    if (u->devs[i] == dev)
      return 1;
  return 0;
}

/* ---- register, login, resume --------------------------------------------------- */

static pl_err pl__device_insert(pl__pg *g, uint64_t uid, const char *name, const uint8_t *token,
                                uint64_t *id) {
  return pl_pg_u64(g, id,
                   /* the id carries its user's bucket (pl_bucket.h; 0 unsharded) */
                   "INSERT INTO devices(id, user_id, name, token_hash, created, token_at, used_at)"
                   " VALUES(($1::bigint >> 48 << 48) | nextval('devices_id_seq'), $1, $2, $3, $4, $4, $4)"
                   " RETURNING id",
                   "usbu", uid, name, PL__TOKEN(token), pl_now_ms());
}

/* A new user with pl_privacy's default settings; *uid its id. Two nodes
 * inserting one name at once: the second meets the unique name, its batch
 * runs again (PL_ERR_AGAIN) and then finds the user. */
pl_err pl_pg_acct_user_insert(pl__pg *g, const char *name, const char *pwhash, uint64_t *uid) {
  pl_privacy_settings set = PL_PRIVACY_DEFAULTS;
  /* the id carries the name's bucket, which names its shard (a store of
   * one database too, so that it can grow; 0 in one made before schema 15) */
  uint64_t bucket = g->bucketed ? pl_bucket_of_name(name, strlen(name)) : 0;
  return pl_pg_u64(g, uid,
                   "INSERT INTO users(id, name, pwhash, created, read_receipts, last_seen_vis)"
                   " VALUES(($6::bigint << 48) | nextval('users_id_seq'), $1, $2, $3, $4, $5) RETURNING id",
                   "ssuiiu", name, pwhash, pl_now_ms(), set.read_receipts, set.last_seen, bucket);
}

pl_err pl_pg_acct_register(pl__pg *g, pl_store_req *r) {
  uint64_t uid;
  pl_err e = pl__user_id(g, r->u.reg.in.user, &uid, NULL);
  if (e != PL_OK)
    return e;
  if (uid) {
    r->status = PL_ERR_USER_EXISTS;
    return PL_OK;
  }
  /* the code is used up in the transaction that makes the account */
  if (r->u.reg.in.invite && (e = pl_pg_admin_invite_take(g, r, r->u.reg.in.invite)) != PL_OK)
    return e;
  if (r->status != PL_OK)
    return PL_OK; /* INVITE_INVALID */
  e = pl_pg_acct_user_insert(g, r->u.reg.in.user, r->u.reg.in.pwhash, &r->u.reg.out.user_id);
  if (e != PL_OK)
    return e;
  return pl__device_insert(g, r->u.reg.out.user_id, r->u.reg.in.device, r->u.reg.in.token_hash,
                           &r->u.reg.out.device_id);
}

/* A disabled account (the operator's ban, pg_admin.c) logs in no more; the
 * session says so only after the password checked out (out.disabled), so a
 * wrong password tells nobody that the account is banned. */
pl_err pl_pg_acct_get_user(pl__pg *g, pl_store_req *r) {
  pl_err e = pl__user_id(g, r->u.get_user.in.user, &r->u.get_user.out.user_id, &r->u.get_user.out.pwhash);
  if (e == PL_OK && !r->u.get_user.out.user_id)
    r->status = PL_ERR_BAD_CREDENTIALS;
  else if (e == PL_OK)
    e = pl_pg_admin_disabled(g, r->u.get_user.out.user_id, 0, &r->u.get_user.out.disabled);
  return e;
}

static pl_err pl__set_token(pl__pg *g, uint64_t dev, const uint8_t *token) {
  return pl_pg_q(g, NULL, "UPDATE devices SET token_hash = $2, token_at = $3, used_at = $3 WHERE id = $1",
                 "ubu", dev, token, token ? (size_t)PL_TOKEN_HASH_LEN : (size_t)0, pl_now_ms());
}

/* The password was checked against GET_USER's read, in an earlier
 * transaction: a ban another node committed since then must still stop
 * the sign-in. The user's row is read FOR SHARE, so a ban (an UPDATE of
 * that row) either commits first and is seen here, or waits for this
 * sign-in to commit and then signs its new token out. */
pl_err pl_pg_acct_login_device(pl__pg *g, pl_store_req *r) {
  pl_pg_user *u = NULL;
  uint64_t dev = 0;
  int disabled = 0;
  pl_err e = pl_pg_admin_disabled(g, r->user_id, 1, &disabled);
  if (e == PL_OK)
    e = pl_pg_u64(g, &dev, "SELECT id FROM devices WHERE user_id = $1 AND name = $2", "us", r->user_id,
                  r->u.login.in.device);
  if (e == PL_OK)
    e = pl_pg_user_get(g, r->user_id, &u);
  if (e != PL_OK)
    goto out;
  r->u.login.out.user_id = r->user_id;
  r->u.login.out.device_id = dev;
  if (!u || disabled) {
    r->status = u ? PL_ERR_ACCOUNT_DISABLED : PL_ERR_BAD_CREDENTIALS;
    goto out;
  }
  /* a known device is refused when it was logged out and the others fill the limit */
  r->status = pl_devices_may_sign_in(g->max_devices, u->ndevs, dev && pl_pg_user_has_dev(u, dev));
  if (r->status != PL_OK)
    goto out;
  if (dev) { /* rotate its token; signed in again: group history from now on */
    int was_out = !pl_pg_user_has_dev(u, dev);
    e = pl__set_token(g, dev, r->u.login.in.token_hash);
    if (e == PL_OK && was_out)
      e = pl_pg_group_cursor_start(g, r->user_id, dev);
    goto out;
  }
  r->u.login.out.created = 1;
  e = pl__device_insert(g, r->user_id, r->u.login.in.device, r->u.login.in.token_hash,
                        &r->u.login.out.device_id);
  /* group history from now on: it gets nothing older, as in 1:1 */
  if (e == PL_OK)
    e = pl_pg_group_cursor_start(g, r->user_id, r->u.login.out.device_id);
out:
  pl_pg_user_free(u);
  return e;
}

/* A token that is unknown, revoked or expired is BAD_TOKEN (r->status); a
 * good one's ids and names go out, and its last use becomes now if the
 * stored one is a grain old (pl_retention_token_touch). */
pl_err pl_pg_acct_token(pl__pg *g, pl_store_req *r, const uint8_t *hash, uint64_t *uid, uint64_t *did,
                        char **user, char **device) {
  PGresult *res;
  pl_err e = pl_pg_q(g, &res,
                     "SELECT d.id, d.user_id, d.name, u.name, d.used_at FROM devices d JOIN users u ON u.id ="
                     " d.user_id WHERE d.token_hash = $1 AND d.used_at >= $2 AND d.token_at >= $3",
                     "buu", PL__TOKEN(hash), r->token_used_after, r->token_issued_after);
  if (e != PL_OK)
    return e;
  if (PQntuples(res) == 0) {
    r->status = PL_ERR_BAD_TOKEN;
    PQclear(res);
    return PL_OK;
  }
  *did = pl_pg_col_u64(res, 0, 0);
  *uid = pl_pg_col_u64(res, 0, 1);
  *device = pl_pg_col_str(res, 0, 2);
  *user = pl_pg_col_str(res, 0, 3);
  uint64_t used_at = pl_pg_col_u64(res, 0, 4), now = pl_now_ms();
  PQclear(res);
  pl_retention_tokens cuts = {r->token_used_after, r->token_issued_after};
  if (!pl_retention_token_touch(&cuts, used_at, now))
    return PL_OK;
  return pl_pg_q(g, NULL, "UPDATE devices SET used_at = greatest(used_at, $2) WHERE id = $1", "uu", *did,
                 now);
}

pl_err pl_pg_acct_resume(pl__pg *g, pl_store_req *r) {
  pl_store_resume_req *x = &r->u.resume;
  return pl_pg_acct_token(g, r, x->in.token_hash, &x->out.user_id, &x->out.device_id, &x->out.user,
                          &x->out.device);
}

/* A logged-out device is no longer a target and its queue and push token
 * go (as on SQLite: a forgotten device must not fill up and block its
 * writers, nor be woken). */
pl_err pl_pg_acct_logout(pl__pg *g, pl_store_req *r) {
  pl_err e = pl__set_token(g, r->device_id, NULL);
  if (e == PL_OK)
    e = pl_pg_push_forget(g, r->device_id);
  if (e != PL_OK)
    return e;
  r->u.ack.in.upto = UINT64_MAX;
  return pl_pg_queue_ack(g, r);
}

/* ---- devices -------------------------------------------------------------------- */

static pl_err pl__device_list(pl__pg *g, pl_store_req *r) {
  PGresult *res;
  pl_err e = pl_pg_q(g, &res,
                     "SELECT id, name, created, used_at FROM devices WHERE user_id = $1 AND token_hash IS NOT"
                     " NULL AND used_at >= $2 AND token_at >= $3 ORDER BY id",
                     "uuu", r->user_id, r->token_used_after, r->token_issued_after);
  if (e != PL_OK)
    return e;
  size_t n = (size_t)PQntuples(res);
  r->u.devices.out.devices = pl_calloc(n + 1, sizeof *r->u.devices.out.devices);
  for (size_t i = 0; i < n; i++) {
    pl_device_row *d = &r->u.devices.out.devices[i];
    d->id = pl_pg_col_u64(res, (int)i, 0);
    d->name = pl_pg_col_str(res, (int)i, 1);
    d->created = pl_pg_col_u64(res, (int)i, 2);
    d->used_at = pl_pg_col_u64(res, (int)i, 3);
  }
  r->u.devices.out.ndevices = n;
  PQclear(res);
  return PL_OK;
}

static pl_err pl__list(void *be, pl_store_req *r) { return pl__device_list(be, r); }

static pl_err pl__logout(void *be, pl_store_req *lo) { return pl_pg_acct_logout(be, lo); }

/* DEVICES: revoke (one by name, or all but the asking device), then list
 * what is still signed in (pl_store_devices_run). */
pl_err pl_pg_acct_devices(pl__pg *be, pl_store_req *r) {
  return pl_store_devices_run(r, be, pl__list, pl__logout);
}

/* ---- settings -------------------------------------------------------------------- */

pl_err pl_pg_acct_settings(pl__pg *g, pl_store_req *r) {
  pl_pg_user *me;
  pl_privacy_settings next;
  unsigned changed = 0;
  pl_err e = pl_pg_user_get(g, r->user_id, &me);
  if (e != PL_OK)
    return e;
  pl_privacy_settings cur = {me ? me->read_receipts : 0, me ? me->last_seen_vis : 0, me ? me->group_add : 0};
  r->status = me ? pl_privacy_settings_apply(&cur, r->u.settings.in.read_receipts, r->u.settings.in.last_seen,
                                             r->u.settings.in.group_add, &next, &changed)
                 : PL_ERR_INVALID_ARGUMENT;
  if (r->status == PL_OK && changed)
    e = pl_pg_q(g, NULL,
                "UPDATE users SET read_receipts = $2, last_seen_vis = $3, group_add = $4 WHERE id = $1",
                "uiii", me->id, next.read_receipts, next.last_seen, next.group_add);
  if (e == PL_OK && r->status == PL_OK) {
    r->u.settings.out.read_receipts = next.read_receipts;
    r->u.settings.out.last_seen = next.last_seen;
    r->u.settings.out.group_add = pl_privacy_group_add_shown(next.group_add);
  }
  pl_pg_user_free(me);
  return e;
}
