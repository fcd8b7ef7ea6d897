/* pg_groups: group membership and roles on PostgreSQL: create, update
 * (add, remove, leave, rename, role), list, members' devices. Data access
 * only: who may do what, the limits, the order of each operation's steps
 * and the heir are the rules' (src/rules/pl_roles.h), as in sq_groups.c.
 *
 * Several nodes may change one group at once: an update first locks the
 * group's row (SELECT ... FOR UPDATE), so the checks it makes (roles, the
 * member count) hold until it commits; events take the group's next seq
 * under the conversation row's lock like any group message (pg_ghist.c).
 *
 * Sharded, a group lives on its creator's shard (its id's bucket) with
 * its members (of any shard, each with its name), their cursors and
 * watermarks and its history; every request naming it runs there
 * (pl_store_shard.c). The users themselves, their settings, contacts and
 * devices are read on their own shards (pl_pg_user_find, pl_pg_xpipe),
 * before anything is written. */
#include "../../rules/pl_roles.h"
#include "pg_internal.h"

void pl_pg_group_gconv(uint64_t gid, char *buf, size_t n) {
  snprintf(buf, n, "g:%llu", (unsigned long long)gid);
}

pl_err pl_pg_group_role(pl__pg *g, uint64_t gid, uint64_t uid, int *role) {
  uint64_t v = 0;
  pl_err e = pl_pg_u64(g, &v, "SELECT role FROM members WHERE gid = $1 AND uid = $2", "uu", gid, uid);
  *role = e == PL_OK ? (int)v : PL_ROLE_NONE;
  return e;
}

/* On every shard: the user's groups may live on any. Another shard's
 * failure is not the sign-in's: the device is then owed that shard's
 * groups from each membership's start, as before it had a cursor. */
pl_err pl_pg_group_cursor_start(pl__pg *g, uint64_t uid, uint64_t dev) {
  pl_err e = PL_OK;
  for (unsigned j = 0; e == PL_OK && j < pl_pg_shards(g); j++) {
    pl__pg *h = pl_pg_at(g, j);
    pl_err he =
        !h ? PL_ERR_STORE
           : pl_pg_q(h, NULL,
                     "INSERT INTO gcursor(device_id, gid, seq) SELECT $2, m.gid, COALESCE(c.last_seq, 0)"
                     " FROM members m LEFT JOIN convs c ON c.conv = 'g:' || m.gid WHERE m.uid = $1"
                     " ON CONFLICT(device_id, gid) DO UPDATE SET seq = greatest(gcursor.seq, EXCLUDED.seq)",
                     "uu", uid, dev);
    if (h == g)
      e = he;
    else if (he != PL_OK)
      pl_warn("store: shard %u: device %llu's group cursors not started", j, (unsigned long long)dev);
  }
  return e;
}

/* A membership event in gid's history, delivered to its members. The
 * GroupEvent travels in generic columns: from = actor, id = user,
 * body = name, aux = type | role << 8 (the router builds the frame). */
static pl_err pl__gevent(pl__pg *g, pl_store_req *r, uint64_t gid, const pl_pg_user *actor, int type,
                         const char *user, const char *name, int role) {
  pl_msg m;
  size_t nl = name ? strlen(name) : 0;
  pl_err e = pl_pg_ghist_put(g, gid, actor, "", user ? user : "", (const uint8_t *)name, nl, 0,
                             PL_MSG_GROUP_EVENT, (uint64_t)type | ((uint64_t)role << 8), NULL, 0, &m);
  if (e != PL_OK)
    return e;
  r->events = pl_realloc(r->events, (r->nevents + 1) * sizeof *r->events);
  pl_store_event *ev = &r->events[r->nevents++];
  memset(ev, 0, sizeof *ev);
  ev->msg = m;
  ev->group = gid;
  return PL_OK;
}

/* Records that u's devices join (or leave) gid's live audience. Only
 * connected devices can join (the others fetch). */
static void pl__gchange(pl__pg *g, pl_store_req *r, uint64_t gid, const pl_pg_user *u, int join) {
  uint64_t devs[64];
  size_t n = 0;
  for (size_t i = 0; i < u->ndevs && n < sizeof devs / sizeof devs[0]; i++)
    if (!join || !g->online || g->online(g->online_ud, u->devs[i]))
      devs[n++] = u->devs[i];
  if (!n)
    return;
  if (r->nchanges == r->changes_cap) {
    r->changes_cap = r->changes_cap ? r->changes_cap * 2 : 4;
    r->changes = pl_realloc(r->changes, r->changes_cap * sizeof *r->changes);
  }
  pl_group_change *c = &r->changes[r->nchanges++];
  c->gid = gid;
  c->join = join;
  c->n = n;
  c->devices = pl_memdup(devs, n * sizeof *devs);
}

/* u joins gid, owed the history after the group's last seq now (since_seq,
 * also its join point for the heir); its signed-in devices get their
 * cursors there, and its watermarks start there (what came before is not
 * the new member's to receive, so it counts against no receipt). */
static pl_err pl__member_put(pl__pg *g, pl_store_req *r, uint64_t gid, const pl_pg_user *u, int role) {
  char conv[32], *devs = pl_pg_array(u->devs, u->ndevs);
  pl_pg_group_gconv(gid, conv, sizeof conv);
  pl_err e =
      pl_pg_q(g, NULL,
              "WITH s AS (SELECT COALESCE((SELECT last_seq FROM convs WHERE conv = $4), 0) AS s),"
              " m AS (INSERT INTO members(gid, uid, role, since_seq, left_seq, joined, name)"
              " SELECT $1, $2, $3, s, 0, s, $6 FROM s"
              " ON CONFLICT(gid, uid) DO UPDATE SET role = $3, since_seq = EXCLUDED.since_seq, left_seq = 0,"
              " joined = EXCLUDED.joined, name = $6),"
              " c AS (UPDATE groups SET members = members + 1 WHERE gid = $1),"
              " r AS (INSERT INTO greads(gid, uid, delivered_seq, read_seq) SELECT $1, $2, s, s FROM s"
              " ON CONFLICT(gid, uid) DO UPDATE SET delivered_seq = EXCLUDED.delivered_seq, read_seq = "
              "EXCLUDED.read_seq)"
              " INSERT INTO gcursor(device_id, gid, seq) SELECT d, $1, s FROM s, unnest($5::bigint[]) d"
              " ON CONFLICT(device_id, gid) DO UPDATE SET seq = greatest(gcursor.seq, EXCLUDED.seq)",
              "uuusss", gid, u->id, (uint64_t)role, conv, devs, u->name);
  pl_free(devs);
  if (e == PL_OK)
    pl__gchange(g, r, gid, u, 1);
  return e;
}

/* u leaves gid (removed or by itself): keeps the history owed up to left_seq. */
static pl_err pl__member_left(pl__pg *g, pl_store_req *r, uint64_t gid, const pl_pg_user *u,
                              uint64_t left_seq) {
  pl_err e = pl_pg_q(g, NULL,
                     "WITH m AS (UPDATE members SET role = 0, left_seq = $3 WHERE gid = $1 AND uid = $2),"
                     " r AS (DELETE FROM greads WHERE gid = $1 AND uid = $2)"
                     " UPDATE groups SET members = greatest(members - 1, 0) WHERE gid = $1",
                     "uuu", gid, u->id, left_seq);
  if (e == PL_OK)
    pl__gchange(g, r, gid, u, 0);
  return e;
}

/* GroupInfo lists at most this many members (by name); member_count has all. */
#define PL__GROUP_LIST_MAX 10000u

/* The group as uid sees it, with members if want_members; *found = 0 if
 * gid does not exist. */
static pl_err pl__group_info(pl__pg *g, uint64_t gid, uint64_t uid, int want_members, pl_group_info *gi,
                             int *found) {
  PGresult *res;
  pl_err e =
      pl_pg_q(g, &res,
              "SELECT name, description, members, COALESCE((SELECT role FROM members WHERE gid = $1 AND"
              " uid = $2), 0), COALESCE((SELECT last_seq FROM convs WHERE conv = 'g:' || $1), 0)"
              " FROM groups WHERE gid = $1",
              "uu", gid, uid);
  *found = e == PL_OK && PQntuples(res) > 0;
  if (*found) {
    pl_group_info_clear(gi);
    gi->gid = gid;
    gi->name = pl_pg_col_str(res, 0, 0);
    gi->description = pl_pg_col_str(res, 0, 1);
    gi->member_count = pl_pg_col_u64(res, 0, 2);
    gi->my_role = pl_pg_col_int(res, 0, 3);
    gi->last_seq = pl_pg_col_u64(res, 0, 4);
  }
  PQclear(res);
  if (e != PL_OK || !*found || !want_members || gi->my_role <= PL_ROLE_NONE)
    return e;
  return pl_pg_group_members(g, gi);
}

pl_err pl_pg_group_members(pl__pg *g, pl_group_info *gi) {
  PGresult *res;
  pl_err e = pl_pg_q(
      g, &res,
      "SELECT name, role FROM members WHERE gid = $1 AND role > 0 ORDER BY name COLLATE \"C\" LIMIT $2", "uu",
      gi->gid, (uint64_t)PL__GROUP_LIST_MAX);
  if (e != PL_OK)
    return e;
  size_t n = (size_t)PQntuples(res);
  gi->members = pl_calloc(n + 1, sizeof *gi->members);
  for (size_t i = 0; i < n; i++) {
    gi->members[i].user = pl_pg_col_str(res, (int)i, 0);
    gi->members[i].role = pl_pg_col_int(res, (int)i, 1);
  }
  gi->nmembers = n;
  PQclear(res);
  return PL_OK;
}

/* *verdict: may adder add u to a group (u's setting and contacts, read on
 * u's shard, by the core's rule)? That shard away: PL_ERR_STORE. */
static pl_err pl__may_add(pl__pg *g, const pl_pg_user *u, const pl_pg_user *adder, pl_err *verdict) {
  uint64_t contact = 0;
  *verdict = PL_OK;
  if (!g->rules.may_add || u->id == adder->id)
    return PL_OK;
  pl__pg *h = pl_pg_home(g, u->id);
  pl_err e = !h ? PL_ERR_STORE
             : u->group_add > PL_GROUP_ADD_EVERYONE
                 ? pl_pg_u64(h, &contact, "SELECT count(*) FROM contacts WHERE uid = $1 AND contact_uid = $2",
                             "uu", u->id, adder->id)
                 : PL_OK;
  if (e != PL_OK && h != g) { /* (g's own failure is its transaction's) */
    *verdict = PL_ERR_STORE;
    return PL_OK;
  }
  if (e == PL_OK)
    *verdict = g->rules.may_add(g->rules.ud, u->group_add, contact != 0);
  return e;
}

/* The owner left: the heir (pl_roles_heir_better over the members but
 * the one leaving) owns the group, announced by a GE_ROLE event. */
static pl_err pl__group_heir(pl__pg *g, pl_store_req *r, uint64_t gid, const pl_pg_user *me) {
  PGresult *res;
  pl_roles_cand best = {0}, c;
  int at = -1;
  pl_err e = pl_pg_q(g, &res,
                     "SELECT uid, role, joined, name FROM members WHERE gid = $1 AND role > 0 AND uid <> $2",
                     "uu", gid, me->id);
  for (int i = 0; e == PL_OK && i < PQntuples(res); i++) {
    c = (pl_roles_cand){pl_pg_col_u64(res, i, 0), pl_pg_col_u64(res, i, 2), pl_pg_col_int(res, i, 1)};
    if (pl_roles_heir_better(&c, best.uid ? &best : NULL)) {
      best = c;
      at = i;
    }
  }
  if (e == PL_OK && at >= 0) /* (none: the owner was the last member) */
    e = pl_pg_q(g, NULL, "UPDATE members SET role = $3 WHERE gid = $1 AND uid = $2", "uuu", gid, best.uid,
                (uint64_t)PL_ROLE_OWNER);
  if (e == PL_OK && at >= 0)
    e = pl__gevent(g, r, gid, me, PL_ROLES_GE_ROLE, PQgetvalue(res, at, 3), NULL, PL_ROLE_OWNER);
  PQclear(res);
  return e;
}

/* One group operation: me acts on u (LEAVE: u = me), whose role was was. */
typedef struct pl__gop {
  uint64_t gid;
  int op, was;
  pl_pg_user *me, *u;
  const char *name, *desc;
  int role;
  const pl_pg_user *actor; /* the event's actor when not me (the operator's removal) */
  pl_pg_user **users;      /* GroupCreate's members, read by pl__create_check */
  size_t nusers;
} pl__gop;

/* S_JOIN: the members join; GroupCreate's creator is the owner, a user
 * named twice joins once. */
static pl_err pl__step_join(pl__pg *g, pl_store_req *r, const pl__gop *o) {
  if (o->op == PL_GROUP_ADD)
    return pl__member_put(g, r, o->gid, o->u, PL_ROLE_MEMBER);
  pl_err e = pl__member_put(g, r, o->gid, o->me, PL_ROLE_OWNER);
  for (size_t i = 0; e == PL_OK && i < o->nusers; i++) {
    int role = PL_ROLE_NONE;
    e = pl_pg_group_role(g, o->gid, o->users[i]->id, &role);
    if (e == PL_OK && role == PL_ROLE_NONE) /* named twice, or the creator */
      e = pl__member_put(g, r, o->gid, o->users[i], PL_ROLE_MEMBER);
  }
  return e;
}

/* S_EVENT: the operation's entry in the history (one GE_CREATED for a new
 * group, not one GE_ADDED per initial member). */
static pl_err pl__step_event(pl__pg *g, pl_store_req *r, const pl__gop *o) {
  int type = pl_roles_event(o->op);
  switch (o->op) {
  case PL_GROUP_ADD: return pl__gevent(g, r, o->gid, o->me, type, o->u->name, NULL, PL_ROLE_MEMBER);
  case PL_GROUP_SET_ROLE: return pl__gevent(g, r, o->gid, o->me, type, o->u->name, NULL, o->role);
  case PL_GROUP_REMOVE:
  case PL_GROUP_LEAVE:
    if (o->actor) /* an operator took u out: a removal by them, not u leaving */
      return pl__gevent(g, r, o->gid, o->actor, PL_ROLES_GE_REMOVED, o->u->name, NULL, PL_ROLE_NONE);
    return pl__gevent(g, r, o->gid, o->me, type, o->u->name, NULL, PL_ROLE_NONE);
  default: return pl__gevent(g, r, o->gid, o->me, type, NULL, o->name, 0); /* CREATE, RENAME */
  }
}

/* S_WRITE: the new name, or the target's new role. */
static pl_err pl__step_write(pl__pg *g, const pl__gop *o) {
  if (o->op == PL_GROUP_RENAME)
    return pl_pg_q(g, NULL, "UPDATE groups SET name = $2, description = $3 WHERE gid = $1", "uss", o->gid,
                   o->name, o->desc ? o->desc : "");
  return pl_pg_q(g, NULL, "UPDATE members SET role = $3 WHERE gid = $1 AND uid = $2", "uuu", o->gid, o->u->id,
                 (uint64_t)o->role);
}

/* Runs op's steps in the rules' order (pl_roles_steps). */
static pl_err pl__group_run(pl__pg *g, pl_store_req *r, const pl__gop *o) {
  pl_err e = PL_OK;
  for (const pl_roles_step *s = pl_roles_steps(o->op); e == PL_OK && *s != PL_ROLES_S_END; s++) {
    switch (*s) {
    case PL_ROLES_S_JOIN: e = pl__step_join(g, r, o); break;
    case PL_ROLES_S_EVENT: e = pl__step_event(g, r, o); break;
    case PL_ROLES_S_LEFT: /* owed up to the event just put */
      e = pl__member_left(g, r, o->gid, o->u, r->events[r->nevents - 1].msg.seq);
      break;
    case PL_ROLES_S_HEIR:
      if (o->was == PL_ROLE_OWNER)
        e = pl__group_heir(g, r, o->gid, o->u);
      break;
    case PL_ROLES_S_WRITE: e = pl__step_write(g, o); break;
    case PL_ROLES_S_END: break;
    }
  }
  return e;
}

/* Every named user exists, has not blocked the creator and may be added
 * by them (o->users: each read on its shard, pl_pg_user_find); otherwise
 * r->status says why and nothing is made. */
static pl_err pl__create_check(pl__pg *g, pl_store_req *r, const pl_pg_user *me, pl__gop *o) {
  pl_err e = PL_OK;
  o->users = pl_calloc(r->u.group_create.in.nusers + 1, sizeof *o->users);
  for (size_t i = 0; e == PL_OK && r->status == PL_OK && i < r->u.group_create.in.nusers; i++) {
    pl_pg_user *u = NULL;
    e = pl_pg_user_find(g, r, 0, r->u.group_create.in.users[i], &u);
    if (e == PL_OK && r->status == PL_OK && (!u || pl_pg_user_blocks(u, me->id)))
      r->status = PL_ERR_UNKNOWN_PEER;         /* a user who blocked the creator is "unknown" too */
    else if (e == PL_OK && r->status == PL_OK) /* refused by one: the whole request is */
      e = pl__may_add(g, u, me, &r->status);
    if (u)
      o->users[o->nusers++] = u;
  }
  return e;
}

/* The steps of u's own Leave (an heir if u owned it) under the group
 * row's lock, announced as a GE_REMOVED whose actor is "admin:<by>" (never
 * a user's name: those have no ':'). */
pl_err pl_pg_group_remove_by(pl__pg *g, pl_store_req *r, uint64_t gid, pl_pg_user *u, int was,
                             const char *by) {
  char name[80];
  snprintf(name, sizeof name, "admin:%s", by && *by ? by : "operator");
  pl_pg_user actor = {.id = 0, .name = name};
  pl__gop o = {.gid = gid, .op = PL_GROUP_LEAVE, .was = was, .me = u, .u = u, .actor = &actor};
  pl_err e = pl_pg_q(g, NULL, "SELECT 1 FROM groups WHERE gid = $1 FOR UPDATE", "u", gid);
  return e == PL_OK ? pl__group_run(g, r, &o) : e;
}

pl_err pl_pg_group_create(pl__pg *g, pl_store_req *r) {
  pl_pg_user *me = NULL;
  uint64_t gid = 0;
  int found;
  r->status = pl_roles_create_check(r->u.group_create.in.name, r->u.group_create.in.description,
                                    r->u.group_create.in.nusers, g->max_group);
  if (r->status != PL_OK)
    return PL_OK;
  pl__gop o = {.op = PL_ROLES_OP_CREATE,
               .was = PL_ROLE_NONE,
               .name = r->u.group_create.in.name,
               .desc = r->u.group_create.in.description};
  pl_err e = pl_pg_user_get(g, r->user_id, &me); /* (routed to the creator's shard) */
  if (e == PL_OK && !me)
    r->status = PL_ERR_INVALID_ARGUMENT;
  if (e == PL_OK && me)
    e = pl__create_check(g, r, me, &o);
  if (e == PL_OK && r->status == PL_OK)
    e = pl_pg_u64(
        g, &gid,
        /* the gid carries its creator's bucket (pl_bucket.h; 0 unsharded) */
        "INSERT INTO groups(gid, name, description, created, members)"
        " VALUES(($4::bigint >> 48 << 48) | nextval('groups_gid_seq'), $1, $2, $3, 0) RETURNING gid",
        "ssuu", r->u.group_create.in.name,
        r->u.group_create.in.description ? r->u.group_create.in.description : "", pl_now_ms(), r->user_id);
  o.gid = gid;
  o.me = o.u = me;
  if (e == PL_OK && gid)
    e = pl__group_run(g, r, &o);
  if (e == PL_OK && gid)
    e = pl__group_info(g, gid, me->id, 1, &r->u.group_create.out.info, &found);
  for (size_t i = 0; i < o.nusers; i++)
    pl_pg_user_free(o.users[i]);
  pl_free(o.users);
  pl_pg_user_free(me);
  return e;
}

/* Loads what the rules need to judge a GroupUpdate: the actor's role, and
 * the target's (whether it exists, whether it blocked the actor), after
 * locking the group's row. */
static pl_err pl__update_load(pl__pg *g, pl_store_req *r, pl__gop *o, pl_roles_update *v) {
  int mine = PL_ROLE_NONE, theirs = PL_ROLE_NONE;
  pl_err e = pl_pg_q(g, NULL, "SELECT 1 FROM groups WHERE gid = $1 FOR UPDATE", "u", o->gid);
  if (e == PL_OK)
    e = pl_pg_user_find(g, r, r->user_id, NULL, &o->me);
  if (e == PL_OK && o->me)
    e = pl_pg_group_role(g, o->gid, o->me->id, &mine);
  *v = (pl_roles_update){.op = o->op, .mine = mine, .new_role = o->role, .name = o->name, .desc = o->desc};
  if (e != PL_OK || mine == PL_ROLE_NONE || r->status != PL_OK)
    return e;
  theirs = mine; /* LEAVE: the actor is the one who goes */
  if (o->op == PL_GROUP_ADD || o->op == PL_GROUP_REMOVE || o->op == PL_GROUP_SET_ROLE) {
    theirs = PL_ROLE_NONE;
    e = r->u.group_update.in.peer ? pl_pg_user_find(g, r, 0, r->u.group_update.in.peer, &o->u) : PL_OK;
    if (e == PL_OK && o->u)
      e = pl_pg_group_role(g, o->gid, o->u->id, &theirs);
    v->peer = o->u != NULL;
    v->blocks_me = o->u && pl_pg_user_blocks(o->u, o->me->id);
  }
  v->theirs = o->was = theirs;
  return e;
}

pl_err pl_pg_group_update(pl__pg *g, pl_store_req *r) {
  const pl_store_group_update_req *x = &r->u.group_update;
  pl__gop o = {.gid = x->in.group,
               .op = x->in.group_op,
               .name = x->in.name,
               .desc = x->in.description,
               .role = x->in.role};
  pl_roles_update v;
  int change = 0, found;
  pl_err e = pl__update_load(g, r, &o, &v);
  if (e == PL_OK && r->status == PL_OK) /* (else another shard was away) */
    r->status = pl_roles_update_check(&v, &change);
  if (e == PL_OK && r->status == PL_OK && change && o.op == PL_GROUP_ADD) { /* who may add, then room */
    e = pl__may_add(g, o.u, o.me, &r->status);
    if (e == PL_OK && r->status == PL_OK)
      e = pl__group_info(g, o.gid, o.me->id, 0, &r->u.group_update.out.info, &found);
    if (e == PL_OK && r->status == PL_OK)
      r->status = pl_roles_room(r->u.group_update.out.info.member_count, g->max_group);
  }
  const pl_pg_user *target = o.u ? o.u : o.me;
  pl__gop run = o;
  run.u = (pl_pg_user *)target;
  if (e == PL_OK && r->status == PL_OK && change)
    e = pl__group_run(g, r, &run);
  if (e == PL_OK && r->status == PL_OK)
    e = pl__group_info(g, o.gid, o.me->id, 1, &r->u.group_update.out.info, &found);
  pl_pg_user_free(o.me);
  pl_pg_user_free(o.u);
  return e;
}

pl_err pl_pg_group_list(pl__pg *g, pl_store_req *r) {
  PGresult *res;
  pl_store_group_list_req *x = &r->u.group_list;
  pl_err e = pl_pg_q(g, &res,
                     "SELECT gr.gid, gr.name, gr.description, gr.members, m.role,"
                     " COALESCE((SELECT last_seq FROM convs WHERE conv = 'g:' || gr.gid), 0)"
                     " FROM members m JOIN groups gr ON gr.gid = m.gid WHERE m.uid = $1 AND m.role > 0"
                     " ORDER BY gr.gid",
                     "u", r->user_id);
  if (e != PL_OK)
    return e;
  pl_pg_group_rows(res, &x->out.groups, &x->out.ngroups, SIZE_MAX, NULL);
  PQclear(res);
  return PL_OK;
}

void pl_pg_group_rows(PGresult *res, pl_group_info **v, size_t *n, size_t max, int *more) {
  size_t rows = (size_t)PQntuples(res);
  if (rows > max) {
    rows = max;
    *more = 1;
  }
  *v = pl_calloc(rows + 1, sizeof **v);
  for (size_t i = 0; i < rows; i++) {
    pl_group_info *gi = &(*v)[(*n)++];
    gi->gid = pl_pg_col_u64(res, (int)i, 0);
    gi->name = pl_pg_col_str(res, (int)i, 1);
    gi->description = pl_pg_col_str(res, (int)i, 2);
    gi->member_count = pl_pg_col_u64(res, (int)i, 3);
    gi->my_role = pl_pg_col_int(res, (int)i, 4);
    gi->last_seq = pl_pg_col_u64(res, (int)i, 5);
  }
}

/* The device ids sql (parameters: gid, and uid if it uses $2) lists. */
pl_err pl_pg_group_targets(pl__pg *g, const char *sql, uint64_t gid, uint64_t uid, uint64_t **t, size_t *n) {
  PGresult *res;
  pl_err e = uid ? pl_pg_q(g, &res, sql, "uu", gid, uid) : pl_pg_q(g, &res, sql, "u", gid);
  if (e != PL_OK)
    return e;
  *n = (size_t)PQntuples(res);
  *t = pl_calloc(*n + 1, sizeof **t);
  for (size_t i = 0; i < *n; i++)
    (*t)[i] = pl_pg_col_u64(res, (int)i, 0);
  PQclear(res);
  return PL_OK;
}

static int pl__by_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

pl_err pl_pg_group_member_devices(pl__pg *g, uint64_t gid, const char *cond, uint64_t **t, size_t *n,
                                  unsigned *away) {
  uint64_t *uids = NULL;
  size_t nu = 0, nd = 0;
  pl_pg_dev *d = NULL;
  unsigned char *off = pl_calloc(pl_pg_shards(g), 1);
  pl_err e = pl_pg_group_targets(g, "SELECT uid FROM members WHERE gid = $1 AND role > 0 ORDER BY uid", gid,
                                 0, &uids, &nu);
  if (e == PL_OK)
    e = pl_pg_xdevices(g, uids, nu, cond, &d, &nd, off);
  *t = pl_calloc(nd + 1, sizeof **t);
  *n = e == PL_OK ? nd : 0;
  for (size_t i = 0; i < *n; i++)
    (*t)[i] = d[i].id;
  qsort(*t, *n, sizeof **t, pl__by_u64);
  *away = 0;
  for (unsigned j = 0; j < pl_pg_shards(g); j++)
    *away += off[j];
  pl_free(off);
  pl_free(d);
  pl_free(uids);
  return e;
}

/* Every logged-in device of the group's current members (push looks for
 * the offline ones among them; nothing is written). */
pl_err pl_pg_group_devices(pl__pg *g, pl_store_req *r) {
  pl_store_group_devices_req *x = &r->u.group_devices;
  unsigned away; /* (a push is a hint: those members' devices get none) */
  return pl_pg_group_member_devices(g, x->in.group, NULL, &x->out.targets, &x->out.ntargets, &away);
}

pl_err pl_pg_group_stats(pl__pg *g, pl_store_counts *c) {
  PGresult *res;
  pl_err e = pl_pg_q(g, &res,
                     "SELECT (SELECT count(*) FROM groups), (SELECT count(*) FROM members WHERE role > 0),"
                     " (SELECT count(*) FROM media), (SELECT count(*) FROM outbox)",
                     NULL);
  if (e == PL_OK) {
    c->groups = pl_pg_col_u64(res, 0, 0);
    c->members = pl_pg_col_u64(res, 0, 1);
    c->media = pl_pg_col_u64(res, 0, 2);
    c->outbox = pl_pg_col_u64(res, 0, 3);
  }
  PQclear(res);
  return e;
}
