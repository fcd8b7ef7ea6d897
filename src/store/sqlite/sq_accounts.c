/* sq_accounts: users, devices and tokens (register, login, resume, logout,
 * the devices op), settings and privacy, contacts, blocks, presence, last
 * seen and 1:1 typing; the users cache. */
#include "../../rules/pl_conv.h"
#include "../../rules/pl_devices.h"
#include "../../rules/pl_privacy.h"
#include "sq_internal.h"

static void pl__user_free(pl__user *u) {
  pl_free(u->ms);
  pl_free(u->blocked);
  pl_free(u->name);
  pl_free(u->devs);
  pl_free(u);
}

void pl_sq_acct_users_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->users, &it, &k, &v);)
    pl__user_free(v);
  pl_map_free(&q->users);
  pl_map_free(&q->names);
}

static void pl__user_forget(pl__sq *q, uint64_t uid) {
  pl__user *u = pl_map_del(&q->users, uid);
  if (!u)
    return;
  uint64_t h = pl_sq_hash(u->name);
  if (pl_map_get(&q->names, h) == u)
    pl_map_del(&q->names, h);
  pl__user_free(u);
}

static pl_err pl__load_devices(pl__sq *q, pl__user *u) {
  sqlite3_stmt *st = q->st[ST_DEVICES_OF];
  size_t cap = 0;
  int rc;
  pl_sq_bind_u64(st, 1, u->id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    u->devs = pl_sq_reserve(u->devs, u->ndevs, &cap, sizeof *u->devs);
    u->devs[u->ndevs++] = pl_sq_col_u64(st, 0);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

static pl_err pl__load_blocked(pl__sq *q, pl__user *u) {
  sqlite3_stmt *st = q->st[ST_BLOCKS_OF];
  size_t cap = 0;
  int rc;
  pl_sq_bind_u64(st, 1, u->id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    u->blocked = pl_sq_reserve(u->blocked, u->nblocked, &cap, sizeof *u->blocked);
    u->blocked[u->nblocked++] = pl_sq_col_u64(st, 0);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* Did u block uid? */
int pl_sq_acct_blocks(const pl__user *u, uint64_t uid) {
  return pl_privacy_blocks(u->blocked, u->nblocked, uid);
}

/* The user uid, from the cache or loaded into it; *out = NULL if none. */
pl_err pl_sq_acct_user_get(pl__sq *q, uint64_t uid, pl__user **out) {
  sqlite3_stmt *st = q->st[ST_USER_BY_ID];
  pl__user *u = NULL;
  int found = 0;
  *out = uid ? pl_map_get(&q->users, uid) : NULL;
  if (*out || !uid)
    return PL_OK;
  pl_sq_bind_u64(st, 1, uid);
  pl_err e = pl_sq_row(q, st, &found);
  if (e != PL_OK || !found)
    goto out;
  u = pl_calloc(1, sizeof *u);
  u->id = uid;
  u->name = pl_sq_col_str(st, 0);
  u->read_receipts = (int)sqlite3_column_int(st, 1);
  u->last_seen_vis = (int)sqlite3_column_int(st, 2);
  u->group_add = (int)sqlite3_column_int(st, 3);
  sqlite3_reset(st);
  e = pl__load_devices(q, u);
  if (e == PL_OK)
    e = pl__load_blocked(q, u);
  if (e != PL_OK)
    goto out;
  pl_map_put(&q->users, uid, u);
  pl_map_put(&q->names, pl_sq_hash(u->name), u);
  *out = u;
  u = NULL;
out:
  sqlite3_reset(st);
  if (u)
    pl__user_free(u);
  return e;
}

/* The id (and optionally a copy of the password hash) of a user name. */
static pl_err pl__user_id(pl__sq *q, const char *name, uint64_t *uid, char **pwhash) {
  sqlite3_stmt *st = q->st[ST_USER_BY_NAME];
  int found;
  *uid = 0;
  pl_sq_bind_text(st, 1, name);
  pl_err e = pl_sq_row(q, st, &found);
  if (e == PL_OK && found) {
    *uid = pl_sq_col_u64(st, 0);
    if (pwhash)
      *pwhash = pl_sq_col_str(st, 1);
  }
  sqlite3_reset(st);
  return e;
}

pl_err pl_sq_acct_user_by_name(pl__sq *q, const char *name, pl__user **out) {
  uint64_t uid;
  *out = pl_map_get(&q->names, pl_sq_hash(name));
  if (*out && strcmp((*out)->name, name) == 0)
    return PL_OK;
  *out = NULL;
  pl_err e = pl__user_id(q, name, &uid, NULL);
  if (e != PL_OK || !uid)
    return e;
  e = pl_sq_acct_user_get(q, uid, out);
  if (*out)
    pl_map_put(&q->names, pl_sq_hash(name), *out);
  return e;
}

/* ---- accounts and devices -------------------------------------------------- */

static pl_err pl__device_insert(pl__sq *q, uint64_t uid, const char *name, const uint8_t *token,
                                uint64_t *id) {
  sqlite3_stmt *st = q->st[ST_DEVICE_INSERT];
  pl_sq_bind_u64(st, 1, uid);
  pl_sq_bind_text(st, 2, name);
  sqlite3_bind_blob(st, 3, token, PL_TOKEN_HASH_LEN, SQLITE_STATIC);
  pl_sq_bind_u64(st, 4, pl_now_ms());
  pl_err e = pl_sq_run(q, st);
  *id = e == PL_OK ? (uint64_t)sqlite3_last_insert_rowid(q->db) : 0;
  pl__user_forget(q, uid); /* its device list changed */
  return e;
}

/* A new user with pl_privacy's default settings (group_add 0: no privacy row yet). */
pl_err pl_sq_acct_user_insert(pl__sq *q, const char *name, const char *pwhash) {
  sqlite3_stmt *st = q->st[ST_USER_INSERT];
  pl_privacy_settings set = PL_PRIVACY_DEFAULTS;
  pl_sq_bind_text(st, 1, name);
  pl_sq_bind_text(st, 2, pwhash);
  pl_sq_bind_u64(st, 3, pl_now_ms());
  pl_sq_bind_u64(st, 4, (uint64_t)set.read_receipts);
  pl_sq_bind_u64(st, 5, (uint64_t)set.last_seen);
  return pl_sq_run(q, st);
}

pl_err pl_sq_acct_register(pl__sq *q, pl_store_req *r) {
  uint64_t uid;
  pl_err e = pl__user_id(q, r->u.reg.in.user, &uid, NULL);
  if (e != PL_OK)
    return e;
  if (uid) {
    r->status = PL_ERR_USER_EXISTS;
    return PL_OK;
  }
  if (r->u.reg.in.invite && (e = pl_sq_admin_invite_take(q, r, r->u.reg.in.invite)) != PL_OK)
    return e;
  if (r->status != PL_OK)
    return PL_OK; /* INVITE_INVALID */
  e = pl_sq_acct_user_insert(q, r->u.reg.in.user, r->u.reg.in.pwhash);
  if (e != PL_OK)
    return e;
  r->u.reg.out.user_id = (uint64_t)sqlite3_last_insert_rowid(q->db);
  return pl__device_insert(q, r->u.reg.out.user_id, r->u.reg.in.device, r->u.reg.in.token_hash,
                           &r->u.reg.out.device_id);
}

/* A disabled account (the operator's ban, sq_admin.c) logs in no more; the
 * session says so only after the password checked out (out.disabled), so a
 * wrong password tells nobody that the account is banned. */
pl_err pl_sq_acct_get_user(pl__sq *q, pl_store_req *r) {
  pl_err e = pl__user_id(q, r->u.get_user.in.user, &r->u.get_user.out.user_id, &r->u.get_user.out.pwhash);
  if (e == PL_OK && !r->u.get_user.out.user_id)
    r->status = PL_ERR_BAD_CREDENTIALS;
  else if (e == PL_OK)
    e = pl_sq_admin_disabled(q, r->u.get_user.out.user_id, &r->u.get_user.out.disabled);
  return e;
}

static pl_err pl__set_token(pl__sq *q, uint64_t dev, const uint8_t *token) {
  sqlite3_stmt *st = q->st[ST_DEVICE_TOKEN];
  pl_sq_bind_u64(st, 1, dev);
  if (token)
    sqlite3_bind_blob(st, 2, token, PL_TOKEN_HASH_LEN, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 2);
  pl_sq_bind_u64(st, 3, pl_now_ms());
  return pl_sq_run(q, st);
}

static pl_err pl__device_by_name(pl__sq *q, uint64_t uid, const char *name, uint64_t *dev) {
  sqlite3_stmt *st = q->st[ST_DEVICE_BY_NAME];
  int found;
  pl_sq_bind_u64(st, 1, uid);
  pl_sq_bind_text(st, 2, name);
  pl_err e = pl_sq_row(q, st, &found);
  *dev = e == PL_OK && found ? pl_sq_col_u64(st, 0) : 0;
  sqlite3_reset(st);
  return e;
}

int pl_sq_acct_has_dev(const pl__user *u, uint64_t dev) {
  for (size_t i = 0; i < u->ndevs; i++)
    if (u->devs[i] == dev)
      return 1;
  return 0;
}

/* The password was checked against GET_USER's read, in an earlier batch:
 * a ban committed since then must still stop the sign-in (the store thread
 * runs one batch at a time, so a ban after this one signs the new token
 * out). */
pl_err pl_sq_acct_login_device(pl__sq *q, pl_store_req *r) {
  pl__user *u;
  int disabled = 0;
  pl_err e = pl_sq_admin_disabled(q, r->user_id, &disabled);
  if (e != PL_OK)
    return e;
  if (disabled) {
    r->status = PL_ERR_ACCOUNT_DISABLED;
    return PL_OK;
  }
  e = pl__device_by_name(q, r->user_id, r->u.login.in.device, &r->u.login.out.device_id);
  if (e != PL_OK)
    return e;
  r->u.login.out.user_id = r->user_id;
  if (r->u.login.out.device_id) { /* a known device: rotate its token */
    e = pl_sq_acct_user_get(q, r->user_id, &u);
    if (e != PL_OK)
      return e;
    /* refused when it was logged out and the others fill the limit */
    if (u && (r->status = pl_devices_may_sign_in(q->max_devices, u->ndevs,
                                                 pl_sq_acct_has_dev(u, r->u.login.out.device_id))) != PL_OK)
      return PL_OK;
    int was_out = u && !pl_sq_acct_has_dev(u, r->u.login.out.device_id);
    pl__user_forget(q, r->user_id); /* it may have been logged out: a target again */
    e = pl__set_token(q, r->u.login.out.device_id, r->u.login.in.token_hash);
    /* like a new device: group history from now on */
    return e == PL_OK && was_out ? pl_sq_ghist_gcur_start(q, r->user_id, r->u.login.out.device_id) : e;
  }
  e = pl_sq_acct_user_get(q, r->user_id, &u);
  if (e != PL_OK)
    return e;
  r->status = u ? pl_devices_may_sign_in(q->max_devices, u->ndevs, 0) : PL_ERR_BAD_CREDENTIALS;
  if (r->status != PL_OK)
    return PL_OK;
  r->u.login.out.created = 1;
  e = pl__device_insert(q, r->user_id, r->u.login.in.device, r->u.login.in.token_hash,
                        &r->u.login.out.device_id);
  /* group history from now on: it gets nothing older, as in 1:1 */
  return e == PL_OK ? pl_sq_ghist_gcur_start(q, r->user_id, r->u.login.out.device_id) : e;
}

/* A token that is unknown, revoked or expired (r's token_*_after) is
 * BAD_TOKEN (r->status); a good one's device and user go to *did, *uid,
 * *device, *user, and its last use becomes now if the stored one is a grain
 * old (pl_retention_token_touch). RESUME, MEDIA_AUTH and MEDIA_GET check
 * their tokens with it. */
pl_err pl_sq_acct_token(pl__sq *q, pl_store_req *r, const uint8_t *hash, uint64_t *uid, uint64_t *did,
                        char **user, char **device) {
  sqlite3_stmt *st = q->st[ST_RESUME];
  int found;
  sqlite3_bind_blob(st, 1, hash, PL_TOKEN_HASH_LEN, SQLITE_STATIC);
  pl_sq_bind_u64(st, 2, r->token_used_after);
  pl_sq_bind_u64(st, 3, r->token_issued_after);
  pl_err e = pl_sq_row(q, st, &found);
  uint64_t used_at = 0, now = pl_now_ms();
  if (e == PL_OK && found) {
    *did = pl_sq_col_u64(st, 0);
    *uid = pl_sq_col_u64(st, 1);
    *device = pl_sq_col_str(st, 2);
    *user = pl_sq_col_str(st, 3);
    used_at = pl_sq_col_u64(st, 4);
  } else if (e == PL_OK) {
    r->status = PL_ERR_BAD_TOKEN;
  }
  sqlite3_reset(st);
  pl_retention_tokens cuts = {r->token_used_after, r->token_issued_after};
  if (e != PL_OK || !found || !pl_retention_token_touch(&cuts, used_at, now))
    return e;
  return pl_sq_run2(q, ST_DEVICE_USED, *did, now);
}

pl_err pl_sq_acct_resume(pl__sq *q, pl_store_req *r) {
  pl_store_resume_req *x = &r->u.resume;
  return pl_sq_acct_token(q, r, x->in.token_hash, &x->out.user_id, &x->out.device_id, &x->out.user,
                          &x->out.device);
}

/* SETTINGS: pl_privacy decides what changes; the fields it names are
 * written, and the cached user follows. */
pl_err pl_sq_acct_settings(pl__sq *q, pl_store_req *r) {
  pl__user *me;
  pl_privacy_settings next;
  unsigned changed = 0;
  pl_err e = pl_sq_acct_user_get(q, r->user_id, &me);
  if (e != PL_OK)
    return e;
  pl_privacy_settings cur = {me ? me->read_receipts : 0, me ? me->last_seen_vis : 0, me ? me->group_add : 0};
  r->status = me ? pl_privacy_settings_apply(&cur, r->u.settings.in.read_receipts, r->u.settings.in.last_seen,
                                             r->u.settings.in.group_add, &next, &changed)
                 : PL_ERR_INVALID_ARGUMENT;
  if (r->status != PL_OK)
    return PL_OK; /* nothing changed */
  if (changed & PL_PRIVACY_SET_GROUP_ADD)
    e = pl_sq_run2(q, ST_SET_GROUP_ADD, me->id, (uint64_t)next.group_add);
  if (e == PL_OK && (changed & PL_PRIVACY_SET_RECEIPTS))
    e = pl_sq_run2(q, ST_SET_RECEIPTS, me->id, (uint64_t)next.read_receipts);
  if (e == PL_OK && (changed & PL_PRIVACY_SET_LAST_SEEN))
    e = pl_sq_run2(q, ST_SET_LAST_SEEN_VIS, me->id, (uint64_t)next.last_seen);
  if (e != PL_OK)
    return e; /* rolled back: the cache drops too */
  me->read_receipts = next.read_receipts;
  me->last_seen_vis = next.last_seen;
  me->group_add = next.group_add;
  r->u.settings.out.read_receipts = me->read_receipts;
  r->u.settings.out.last_seen = me->last_seen_vis;
  r->u.settings.out.group_add = pl_privacy_group_add_shown(me->group_add);
  return e;
}

/* ---- contacts, blocking, presence, typing (docs/protocol.md 11.5-11.7) ------ */

/* Me and the other user, named peer_name; sets a request status (and
 * returns PL_OK) if either is missing or they are the same user, else the
 * peer's id in *peer_id (may be NULL). */
static pl_err pl__me_and_peer(pl__sq *q, pl_store_req *r, const char *peer_name, uint64_t *peer_id,
                              pl__user **me, pl__user **peer) {
  pl_err e = pl_sq_acct_user_by_name(q, peer_name, peer);
  if (e == PL_OK && *peer)
    e = pl_sq_acct_user_get(q, r->user_id, me);
  if (e != PL_OK)
    return e;
  r->status = pl_privacy_peer(*peer != NULL, *me != NULL, *me == *peer, 0);
  if (r->status == PL_OK && peer_id)
    *peer_id = (*peer)->id;
  return PL_OK;
}

pl_err pl_sq_acct_contacts(pl__sq *q, pl_store_req *r) {
  sqlite3_stmt *st = q->st[ST_CONTACT_LIST];
  pl__user *me = NULL, *peer = NULL;
  size_t cap = 0;
  int rc;
  pl_err e = PL_OK;
  if (r->u.contacts.in.contact_op) {
    e = pl__me_and_peer(q, r, r->u.contacts.in.peer, &r->u.contacts.out.peer_id, &me, &peer);
    if (e != PL_OK || r->status != PL_OK)
      return e;
    e = pl_sq_run2(q, r->u.contacts.in.contact_op == 1 ? ST_CONTACT_ADD : ST_CONTACT_DEL, me->id, peer->id);
  }
  if (e != PL_OK)
    return e;
  pl_sq_bind_u64(st, 1, r->user_id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    r->u.contacts.out.names = pl_sq_reserve(r->u.contacts.out.names, r->u.contacts.out.nnames, &cap,
                                            sizeof *r->u.contacts.out.names);
    r->u.contacts.out.names[r->u.contacts.out.nnames++] = pl_sq_col_str(st, 0);
  }
  e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

pl_err pl_sq_acct_block(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL, *peer = NULL;
  pl_err e = pl__me_and_peer(q, r, r->u.block.in.peer, &r->u.block.out.peer_id, &me, &peer);
  if (e != PL_OK || r->status != PL_OK)
    return e;
  e = pl_sq_run2(q, r->u.block.in.blocked ? ST_BLOCK_ADD : ST_BLOCK_DEL, me->id, peer->id);
  if (e == PL_OK)
    pl__user_forget(q, me->id); /* its block list changed */
  return e;
}

pl_err pl_sq_acct_has_contact(pl__sq *q, uint64_t uid, uint64_t contact, int *has) {
  sqlite3_stmt *st = q->st[ST_CONTACT_HAS];
  pl_sq_bind_u64(st, 1, uid);
  pl_sq_bind_u64(st, 2, contact);
  pl_err e = pl_sq_row(q, st, has);
  sqlite3_reset(st);
  return e;
}

/* What viewer may see of u (protocol.md 11.6). */
static pl_err pl__view(pl__sq *q, const pl__user *viewer, const pl__user *u, pl_presence_view *v) {
  sqlite3_stmt *st = q->st[ST_USER_LAST_SEEN];
  int contact = 1, found;
  pl_err e = u == viewer ? PL_OK : pl_sq_acct_has_contact(q, u->id, viewer->id, &contact);
  if (e != PL_OK)
    return e;
  pl_privacy_view pv =
      pl_privacy_view_of(u == viewer, contact, pl_sq_acct_blocks(u, viewer->id), u->last_seen_vis);
  v->uid = u->id;
  v->visible = pv.visible;
  v->seen_visible = pv.seen_visible;
  pl_sq_bind_u64(st, 1, u->id);
  e = pl_sq_row(q, st, &found);
  v->last_seen = e == PL_OK && found && v->seen_visible ? pl_sq_col_u64(st, 0) : 0;
  sqlite3_reset(st);
  return e;
}

pl_err pl_sq_acct_presence(pl__sq *q, pl_store_req *r) {
  pl__user *me, *u;
  pl_err e = pl_sq_acct_user_get(q, r->user_id, &me);
  if (e != PL_OK || !me) {
    r->status = e == PL_OK ? PL_ERR_INVALID_ARGUMENT : r->status;
    return e;
  }
  r->u.presence.out.views =
      pl_calloc(r->u.presence.in.nusers ? r->u.presence.in.nusers : 1, sizeof *r->u.presence.out.views);
  for (size_t i = 0; i < r->u.presence.in.nusers && e == PL_OK; i++) {
    pl_presence_view *v = &r->u.presence.out.views[r->u.presence.out.nviews++];
    v->user = pl_strdup(r->u.presence.in.users[i]);
    e = pl_sq_acct_user_by_name(q, r->u.presence.in.users[i], &u);
    if (e == PL_OK && u)
      e = pl__view(q, me, u, v);
  }
  return e;
}

pl_err pl_sq_acct_seen(pl__sq *q, pl_store_req *r) {
  return pl_sq_run2(q, ST_USER_SEEN, r->user_id, pl_sq_clamp(r->u.seen.in.at));
}

/* Typing goes to the peer's devices unless the peer blocked the typist
 * (pl_privacy_sees_typing). */

pl_err pl_sq_acct_typing(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL, *peer = NULL;
  if (r->u.typing.in.group)
    return pl_sq_ghist_typing_group(q, r);
  pl_err e = pl__me_and_peer(q, r, r->u.typing.in.peer, NULL, &me, &peer);
  if (e != PL_OK || r->status != PL_OK)
    return e;
  r->u.typing.out.conv = pl_conv_dm(me->name, peer->name);
  if (pl_privacy_sees_typing(pl_sq_acct_blocks(peer, me->id)))
    r->u.typing.out.targets = pl_sq_queue_devs_except(peer, 0, &r->u.typing.out.ntargets);
  return PL_OK;
}

/* A logged-out device is no longer a target, and what was queued for it is
 * dropped: otherwise a forgotten device would fill its queue and, through
 * QUEUE_FULL, block everyone who writes to its user. Logging in again
 * starts it with the messages sent from then on, like a new device. Its
 * push token goes in the same transaction: a crash after the logout must
 * not leave a signed-out phone receiving notifications. */
pl_err pl_sq_acct_logout(pl__sq *q, pl_store_req *r) {
  pl_err e = pl__set_token(q, r->device_id, NULL);
  if (e == PL_OK)
    e = pl_sq_push_forget(q->push, r->device_id);
  if (e != PL_OK)
    return e;
  r->u.ack.in.upto = UINT64_MAX;
  e = pl_sq_queue_ack(q, r);
  pl_sq_acct_users_drop(q); /* device lists changed; logouts are rare */
  return e;
}

/* ---- devices ------------------------------------------------------------------ */

static pl_err pl__device_list(pl__sq *q, pl_store_req *r) {
  sqlite3_stmt *st = q->st[ST_DEVICE_LIST];
  pl_sq_bind_u64(st, 1, r->user_id);
  pl_sq_bind_u64(st, 2, r->token_used_after);
  pl_sq_bind_u64(st, 3, r->token_issued_after);
  size_t cap = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    r->u.devices.out.devices = pl_sq_reserve(r->u.devices.out.devices, r->u.devices.out.ndevices, &cap,
                                             sizeof *r->u.devices.out.devices);
    pl_device_row *d = &r->u.devices.out.devices[r->u.devices.out.ndevices++];
    d->id = pl_sq_col_u64(st, 0);
    d->name = pl_sq_col_str(st, 1);
    d->created = pl_sq_col_u64(st, 2);
    d->used_at = pl_sq_col_u64(st, 3);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* Revoking a device is logging it out (pl_sq_acct_logout): its token and its queue
 * go. Its id and name are added to out.targets and out.names. */
static pl_err pl__list(void *be, pl_store_req *r) { return pl__device_list(be, r); }

static pl_err pl__logout(void *be, pl_store_req *lo) { return pl_sq_acct_logout(be, lo); }

/* DEVICES: revoke (one by name, or all but the asking device), then list
 * what is still signed in (pl_store_devices_run). */
pl_err pl_sq_acct_devices(pl__sq *be, pl_store_req *r) {
  return pl_store_devices_run(r, be, pl__list, pl__logout);
}
