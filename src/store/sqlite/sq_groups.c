/* sq_groups: group membership and roles: create, update (add, remove,
 * leave, rename, role), list, members' devices. Data access only: who may
 * do what, the limits, the order of each operation's steps and the heir are
 * the rules' (src/rules/pl_roles.h); this file loads what they need and
 * stores what they decide. */
#include "sq_internal.h"

#include "../../rules/pl_roles.h"

void pl_sq_group_gconv(uint64_t gid, char *buf, size_t n) {
  snprintf(buf, n, "g:%llu", (unsigned long long)gid);
}

pl_err pl_sq_group_mships(pl__sq *q, pl__user *u) {
  sqlite3_stmt *st = q->st[ST_GROUPS_OF];
  size_t cap = 0;
  int rc;
  if (u->ms_loaded)
    return PL_OK;
  u->nms = 0;
  pl_sq_bind_u64(st, 1, u->id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    u->ms = pl_sq_reserve(u->ms, u->nms, &cap, sizeof *u->ms);
    pl__mship *m = &u->ms[u->nms++];
    m->gid = pl_sq_col_u64(st, 0);
    m->since_seq = pl_sq_col_u64(st, 1);
    m->left_seq = pl_sq_col_u64(st, 2);
    m->role = sqlite3_column_int(st, 3);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  u->ms_loaded = e == PL_OK;
  return e;
}

/* The memberships of uid for a read that needs nothing else of the user:
 * the cached user when there is one, else tmp, loaded alone and given back
 * with pl_sq_group_mships_done. A fetch does not fill the users cache: each
 * connection's first fetch would otherwise keep its user (name, devices,
 * blocks) in memory as long as the cache lets it, ~200 B per idle
 * connection that never sends. */
pl_err pl_sq_group_mships_of(pl__sq *q, uint64_t uid, pl__user *tmp, pl__user **out) {
  memset(tmp, 0, sizeof *tmp);
  tmp->id = uid;
  *out = pl_map_get(&q->users, uid);
  if (!*out)
    *out = tmp;
  return pl_sq_group_mships(q, *out);
}

void pl_sq_group_mships_done(pl__user *tmp) { pl_free(tmp->ms); }

/* u's role in gid (PL_ROLE_NONE if not a member). */
pl_err pl_sq_group_role(pl__sq *q, pl__user *u, uint64_t gid, int *role) {
  pl_err e = pl_sq_group_mships(q, u);
  *role = PL_ROLE_NONE;
  for (size_t i = 0; e == PL_OK && i < u->nms; i++)
    if (u->ms[i].gid == gid)
      *role = u->ms[i].role;
  return e;
}

/* A membership event in gid's history, delivered to its members. The
 * GroupEvent travels in generic columns: from = actor, id = user,
 * body = name, aux = type | role << 8 (the router builds the frame). */
static pl_err pl__gevent(pl__sq *q, pl_store_req *r, uint64_t gid, const pl__user *actor, int type,
                         const char *user, const char *name, int role) {
  pl_msg m;
  size_t nl = name ? strlen(name) : 0;
  pl_err e = pl_sq_ghist_glog_put(q, gid, actor, "", user ? user : "", (const uint8_t *)name, nl, 0,
                                  PL_MSG_GROUP_EVENT, (uint64_t)type | ((uint64_t)role << 8), &m);
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
 * connected devices can join (the others fetch), so a group made with
 * 100,000 mostly offline members carries no list for most of them. */
static void pl__gchange(pl__sq *q, pl_store_req *r, uint64_t gid, const pl__user *u, int join) {
  uint64_t devs[64];
  size_t n = 0;
  for (size_t i = 0; i < u->ndevs && n < sizeof devs / sizeof devs[0]; i++)
    if (!join || !q->online || q->online(q->online_ud, u->devs[i]))
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

/* Forget u's cached memberships (they changed in this transaction). */
static void pl__ms_stale(pl__user *u) {
  pl_free(u->ms);
  u->ms = NULL;
  u->nms = 0;
  u->ms_loaded = 0;
}

/* u joins gid, owed the history after the group's last seq now (since_seq,
 * also its join point for the heir: members who join in one request share
 * it); each of its signed-in devices gets its cursor there. */
static pl_err pl__member_put(pl__sq *q, pl_store_req *r, uint64_t gid, pl__user *u, int role) {
  char conv[32];
  pl__conv *c;
  pl_sq_group_gconv(gid, conv, sizeof conv);
  pl_err e = pl_sq_conv_get(q, conv, &c);
  uint64_t since = e == PL_OK ? c->seq : 0;
  sqlite3_stmt *st = q->st[ST_MEMBER_PUT];
  pl_sq_bind_u64(st, 1, gid);
  pl_sq_bind_u64(st, 2, u->id);
  pl_sq_bind_u64(st, 3, (uint64_t)role);
  pl_sq_bind_u64(st, 4, since);
  if (e == PL_OK)
    e = pl_sq_run(q, st);
  if (e == PL_OK)
    e = pl_sq_run2(q, ST_GROUP_COUNT, gid, 1);
  /* watermarks start at the group's last seq: what came before is not the
   * new member's to receive, so it does not count against any receipt */
  if (e == PL_OK)
    e = pl_sq_run3(q, ST_GREADS_PUT, gid, u->id, since);
  for (size_t i = 0; e == PL_OK && i < u->ndevs; i++)
    e = pl_sq_ghist_gcur_put(q, u->devs[i], gid, since);
  pl_sq_ghist_gread_forget(q, gid, u->id);
  pl__gmeta *gm = pl_map_get(&q->gmeta, gid);
  if (gm)
    gm->size++;
  pl__ms_stale(u);
  if (e == PL_OK)
    pl__gchange(q, r, gid, u, 1);
  return e;
}

/* u leaves gid (removed or by itself): keeps the history owed up to left_seq. */
static pl_err pl__member_left(pl__sq *q, pl_store_req *r, uint64_t gid, pl__user *u, uint64_t left_seq) {
  sqlite3_stmt *st = q->st[ST_MEMBER_LEFT];
  pl_sq_bind_u64(st, 1, gid);
  pl_sq_bind_u64(st, 2, u->id);
  pl_sq_bind_u64(st, 3, left_seq);
  pl_err e = pl_sq_run(q, st);
  if (e == PL_OK)
    e = pl_sq_run2(q, ST_GREADS_DEL, gid, u->id);
  pl_sq_ghist_gread_forget(q, gid, u->id);
  pl__gmeta *gm = pl_map_get(&q->gmeta, gid);
  if (gm && gm->size)
    gm->size--;
  if (e == PL_OK) {
    int64_t d = -1;
    sqlite3_stmt *c = q->st[ST_GROUP_COUNT];
    pl_sq_bind_u64(c, 1, gid);
    sqlite3_bind_int64(c, 2, d);
    e = pl_sq_run(q, c);
  }
  pl__ms_stale(u);
  if (e == PL_OK)
    pl__gchange(q, r, gid, u, 0);
  return e;
}

/* GroupInfo lists at most this many members (by name); member_count has all. */
#define PL__GROUP_LIST_MAX 10000u

static pl_err pl__group_members(pl__sq *q, uint64_t gid, pl_group_info *g) {
  sqlite3_stmt *st = q->st[ST_MEMBERS_LIST];
  size_t cap = 0;
  int rc;
  pl_sq_bind_u64(st, 1, gid);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW && g->nmembers < PL__GROUP_LIST_MAX) {
    g->members = pl_sq_reserve(g->members, g->nmembers, &cap, sizeof *g->members);
    g->members[g->nmembers].user = pl_sq_col_str(st, 0);
    g->members[g->nmembers++].role = sqlite3_column_int(st, 1);
  }
  pl_err e = rc == SQLITE_DONE || rc == SQLITE_ROW ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* The group as u sees it, with members if want_members; *found = 0 if gid
 * does not exist. */
static pl_err pl__group_info(pl__sq *q, uint64_t gid, pl__user *u, int want_members, pl_group_info *g,
                             int *found) {
  sqlite3_stmt *st = q->st[ST_GROUP_GET];
  char conv[32];
  pl__conv *c;
  pl_sq_bind_u64(st, 1, gid);
  pl_err e = pl_sq_row(q, st, found);
  if (e != PL_OK || !*found) {
    sqlite3_reset(st);
    return e;
  }
  pl_group_info_clear(g);
  g->gid = gid;
  g->name = pl_sq_col_str(st, 0);
  g->description = pl_sq_col_str(st, 1);
  g->member_count = pl_sq_col_u64(st, 2);
  sqlite3_reset(st);
  e = pl_sq_group_role(q, u, gid, &g->my_role);
  pl_sq_group_gconv(gid, conv, sizeof conv);
  if (e == PL_OK)
    e = pl_sq_conv_get(q, conv, &c);
  if (e == PL_OK)
    g->last_seq = c->seq;
  if (e == PL_OK && want_members && g->my_role > PL_ROLE_NONE)
    e = pl__group_members(q, gid, g);
  return e;
}

/* *verdict: may adder add u to a group (u's setting and contacts, by the
 * core's rule)? */
static pl_err pl__may_add(pl__sq *q, const pl__user *u, const pl__user *adder, pl_err *verdict) {
  int contact = 0;
  *verdict = PL_OK;
  if (!q->rules.may_add || u == adder)
    return PL_OK;
  pl_err e =
      u->group_add > PL_GROUP_ADD_EVERYONE ? pl_sq_acct_has_contact(q, u->id, adder->id, &contact) : PL_OK;
  if (e == PL_OK)
    *verdict = q->rules.may_add(q->rules.ud, u->group_add, contact);
  return e;
}

/* The owner left: the heir (pl_roles_heir_better, over the members the
 * table streams past it) owns the group, announced by a GE_ROLE event. */
static pl_err pl__group_heir(pl__sq *q, pl_store_req *r, uint64_t gid, pl__user *me) {
  sqlite3_stmt *st = q->st[ST_MEMBER_HEIR];
  pl_roles_cand best = {0}, c;
  pl__user *heir = NULL;
  int rc;
  pl_sq_bind_u64(st, 1, gid);
  pl_sq_bind_u64(st, 2, me->id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    c = (pl_roles_cand){pl_sq_col_u64(st, 0), pl_sq_col_u64(st, 2), sqlite3_column_int(st, 1)};
    if (pl_roles_heir_better(&c, best.uid ? &best : NULL))
      best = c;
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  if (e == PL_OK && best.uid)
    e = pl_sq_acct_user_get(q, best.uid, &heir);
  if (e != PL_OK || !heir)
    return e; /* the owner was the last member */
  sqlite3_stmt *rs = q->st[ST_MEMBER_ROLE];
  pl_sq_bind_u64(rs, 1, gid);
  pl_sq_bind_u64(rs, 2, heir->id);
  pl_sq_bind_u64(rs, 3, PL_ROLE_OWNER);
  e = pl_sq_run(q, rs);
  pl__ms_stale(heir);
  return e == PL_OK ? pl__gevent(q, r, gid, me, PL_ROLES_GE_ROLE, heir->name, NULL, PL_ROLE_OWNER) : e;
}

/* One group operation: me acts on u (LEAVE: u = me), whose role was was;
 * name, desc and role as the request gave them (CREATE, RENAME, SET_ROLE). */
typedef struct pl__gop {
  uint64_t gid;
  int op, was;
  pl__user *me, *u;
  const char *name, *desc;
  int role;
  const pl__user *actor; /* the event's actor when not me (the operator's removal) */
} pl__gop;

/* S_JOIN: the members join, owed what comes after the group's last seq so
 * far; GroupCreate's creator is the owner, a user named twice joins once. */
static pl_err pl__step_join(pl__sq *q, pl_store_req *r, const pl__gop *o) {
  if (o->op == PL_GROUP_ADD)
    return pl__member_put(q, r, o->gid, o->u, PL_ROLE_MEMBER);
  pl_err e = pl__member_put(q, r, o->gid, o->me, PL_ROLE_OWNER);
  for (size_t i = 0; e == PL_OK && i < r->u.group_create.in.nusers; i++) {
    int role = PL_ROLE_NONE;
    pl__user *u;
    e = pl_sq_acct_user_by_name(q, r->u.group_create.in.users[i], &u);
    if (e == PL_OK)
      e = pl_sq_group_role(q, u, o->gid, &role);
    if (e == PL_OK && role == PL_ROLE_NONE) /* named twice, or the creator */
      e = pl__member_put(q, r, o->gid, u, PL_ROLE_MEMBER);
  }
  return e;
}

/* S_EVENT: the operation's entry in the history. One GE_CREATED, not one
 * GE_ADDED per initial member: in a group made with 10,000 members that
 * would be 10,000 events to 10,000 devices (they are in GroupInfo). */
static pl_err pl__step_event(pl__sq *q, pl_store_req *r, const pl__gop *o) {
  int type = pl_roles_event(o->op);
  if (o->actor) /* an operator took u out: a removal by them, not u leaving */
    return pl__gevent(q, r, o->gid, o->actor, PL_ROLES_GE_REMOVED, o->u->name, NULL, PL_ROLE_NONE);
  switch (o->op) {
  case PL_GROUP_ADD: return pl__gevent(q, r, o->gid, o->me, type, o->u->name, NULL, PL_ROLE_MEMBER);
  case PL_GROUP_SET_ROLE: return pl__gevent(q, r, o->gid, o->me, type, o->u->name, NULL, o->role);
  case PL_GROUP_REMOVE:
  case PL_GROUP_LEAVE: return pl__gevent(q, r, o->gid, o->me, type, o->u->name, NULL, PL_ROLE_NONE);
  default: return pl__gevent(q, r, o->gid, o->me, type, NULL, o->name, 0); /* CREATE, RENAME */
  }
}

/* S_WRITE: the new name, or the target's new role. */
static pl_err pl__step_write(pl__sq *q, const pl__gop *o) {
  sqlite3_stmt *st;
  if (o->op == PL_GROUP_RENAME) {
    st = q->st[ST_GROUP_RENAME];
    pl_sq_bind_u64(st, 1, o->gid);
    pl_sq_bind_text(st, 2, o->name);
    pl_sq_bind_text(st, 3, o->desc);
    return pl_sq_run(q, st);
  }
  st = q->st[ST_MEMBER_ROLE];
  pl_sq_bind_u64(st, 1, o->gid);
  pl_sq_bind_u64(st, 2, o->u->id);
  pl_sq_bind_u64(st, 3, (uint64_t)o->role);
  pl__ms_stale(o->u);
  return pl_sq_run(q, st);
}

/* Runs op's steps in the rules' order (pl_roles_steps). */
static pl_err pl__group_run(pl__sq *q, pl_store_req *r, const pl__gop *o) {
  pl_err e = PL_OK;
  for (const pl_roles_step *s = pl_roles_steps(o->op); e == PL_OK && *s != PL_ROLES_S_END; s++) {
    switch (*s) {
    case PL_ROLES_S_JOIN: e = pl__step_join(q, r, o); break;
    case PL_ROLES_S_EVENT: e = pl__step_event(q, r, o); break;
    case PL_ROLES_S_LEFT: /* owed up to the event just put */
      e = pl__member_left(q, r, o->gid, o->u, r->events[r->nevents - 1].msg.seq);
      break;
    case PL_ROLES_S_HEIR:
      if (o->was == PL_ROLE_OWNER)
        e = pl__group_heir(q, r, o->gid, o->u);
      break;
    case PL_ROLES_S_WRITE: e = pl__step_write(q, o); break;
    case PL_ROLES_S_END: break;
    }
  }
  return e;
}

/* The operator (admin API) takes u, a member with role was, out of gid: the
 * steps of u's own Leave (an heir if u owned it), announced as a GE_REMOVED
 * whose actor is "admin:<by>" (never a user's name: those have no ':'). */
pl_err pl_sq_group_remove_by(pl__sq *q, pl_store_req *r, uint64_t gid, pl__user *u, int was, const char *by) {
  char name[80];
  snprintf(name, sizeof name, "admin:%s", by && *by ? by : "operator");
  pl__user actor = {.id = 0, .name = name};
  pl__gop o = {.gid = gid, .op = PL_GROUP_LEAVE, .was = was, .me = u, .u = u, .actor = &actor};
  return pl__group_run(q, r, &o);
}

pl_err pl_sq_group_create(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL, *u;
  int found;
  r->status = pl_roles_create_check(r->u.group_create.in.name, r->u.group_create.in.description,
                                    r->u.group_create.in.nusers, q->max_group);
  if (r->status != PL_OK)
    return PL_OK;
  pl_err e = pl_sq_acct_user_get(q, r->user_id, &me);
  for (size_t i = 0; e == PL_OK && me && i < r->u.group_create.in.nusers; i++) {
    e = pl_sq_acct_user_by_name(q, r->u.group_create.in.users[i], &u);
    if (e == PL_OK && (!u || pl_sq_acct_blocks(u, me->id))) {
      r->status = PL_ERR_UNKNOWN_PEER; /* a user who blocked the creator is "unknown" too */
      return PL_OK;
    }
    if (e == PL_OK) /* refused by one: the whole request is, nothing made */
      e = pl__may_add(q, u, me, &r->status);
    if (r->status != PL_OK)
      return e;
  }
  if (e != PL_OK || !me) {
    if (e == PL_OK)
      r->status = PL_ERR_INVALID_ARGUMENT;
    return e;
  }
  sqlite3_stmt *st = q->st[ST_GROUP_INSERT];
  pl_sq_bind_text(st, 1, r->u.group_create.in.name);
  pl_sq_bind_text(st, 2, r->u.group_create.in.description);
  pl_sq_bind_u64(st, 3, pl_now_ms());
  e = pl_sq_run(q, st);
  pl__gop o = {(uint64_t)sqlite3_last_insert_rowid(q->db),
               PL_ROLES_OP_CREATE,
               PL_ROLE_NONE,
               me,
               me,
               r->u.group_create.in.name,
               r->u.group_create.in.description,
               0,
               NULL};
  if (e == PL_OK)
    e = pl__group_run(q, r, &o);
  return e == PL_OK ? pl__group_info(q, o.gid, me, 1, &r->u.group_create.out.info, &found) : e;
}

/* Loads what the rules need to judge a GroupUpdate: the actor's role, and
 * the target's (whether it exists, whether it blocked the actor). */
static pl_err pl__update_load(pl__sq *q, pl_store_req *r, pl__gop *o, pl_roles_update *v) {
  int mine = PL_ROLE_NONE, theirs = PL_ROLE_NONE;
  pl_err e = pl_sq_acct_user_get(q, r->user_id, &o->me);
  if (e == PL_OK && o->me)
    e = pl_sq_group_role(q, o->me, o->gid, &mine);
  *v = (pl_roles_update){.op = o->op, .mine = mine, .new_role = o->role, .name = o->name, .desc = o->desc};
  if (e != PL_OK || mine == PL_ROLE_NONE)
    return e;
  if (o->op == PL_GROUP_ADD || o->op == PL_GROUP_REMOVE || o->op == PL_GROUP_SET_ROLE) {
    e = r->u.group_update.in.peer ? pl_sq_acct_user_by_name(q, r->u.group_update.in.peer, &o->u) : PL_OK;
    if (e == PL_OK && o->u)
      e = pl_sq_group_role(q, o->u, o->gid, &theirs);
    v->peer = o->u != NULL;
    v->blocks_me = o->u && pl_sq_acct_blocks(o->u, o->me->id);
  } else {
    o->u = o->me; /* LEAVE: the actor is the one who goes */
    theirs = mine;
  }
  v->theirs = o->was = theirs;
  return e;
}

pl_err pl_sq_group_update(pl__sq *q, pl_store_req *r) {
  const pl_store_group_update_req *x = &r->u.group_update;
  pl__gop o = {.gid = x->in.group,
               .op = x->in.group_op,
               .name = x->in.name,
               .desc = x->in.description,
               .role = x->in.role};
  pl_roles_update v;
  int change = 0, found;
  pl_err e = pl__update_load(q, r, &o, &v);
  if (e == PL_OK)
    r->status = pl_roles_update_check(&v, &change);
  if (e != PL_OK || r->status != PL_OK)
    return e;
  if (change && o.op == PL_GROUP_ADD) { /* who may add the user, then room for one more */
    e = pl__may_add(q, o.u, o.me, &r->status);
    if (e == PL_OK && r->status == PL_OK)
      e = pl__group_info(q, o.gid, o.me, 0, &r->u.group_update.out.info, &found);
    if (e == PL_OK && r->status == PL_OK)
      r->status = pl_roles_room(r->u.group_update.out.info.member_count, q->max_group);
    if (e != PL_OK || r->status != PL_OK)
      return e;
  }
  if (change)
    e = pl__group_run(q, r, &o);
  return e == PL_OK ? pl__group_info(q, o.gid, o.me, 1, &r->u.group_update.out.info, &found) : e;
}

void pl_sq_group_row(sqlite3_stmt *st, pl_group_info *g) {
  memset(g, 0, sizeof *g);
  g->gid = pl_sq_col_u64(st, 0);
  g->name = pl_sq_col_str(st, 1);
  g->description = pl_sq_col_str(st, 2);
  g->member_count = pl_sq_col_u64(st, 3);
  g->my_role = sqlite3_column_int(st, 4);
}

pl_err pl_sq_group_list(pl__sq *q, pl_store_req *r) {
  sqlite3_stmt *st = q->st[ST_GROUP_LIST];
  size_t cap = 0;
  int rc;
  pl_err e = pl_sq_conv_flush(q); /* last_seq comes from the table */
  if (e != PL_OK)
    return e;
  pl_sq_bind_u64(st, 1, r->user_id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    r->u.group_list.out.groups = pl_sq_reserve(r->u.group_list.out.groups, r->u.group_list.out.ngroups, &cap,
                                               sizeof *r->u.group_list.out.groups);
    pl_sq_group_row(st, &r->u.group_list.out.groups[r->u.group_list.out.ngroups++]);
  }
  e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  for (size_t i = 0; e == PL_OK && i < r->u.group_list.out.ngroups; i++) {
    char conv[32];
    pl__conv *c;
    pl_sq_group_gconv(r->u.group_list.out.groups[i].gid, conv, sizeof conv);
    e = pl_sq_conv_get(q, conv, &c);
    if (e == PL_OK)
      r->u.group_list.out.groups[i].last_seq = c->seq;
  }
  return e;
}

/* Appends to *targets the device ids stmt lists for (gid, uid). */
pl_err pl_sq_group_targets(pl__sq *q, int stmt, uint64_t gid, uint64_t uid, uint64_t **targets, size_t *n) {
  sqlite3_stmt *st = q->st[stmt];
  size_t cap = 0;
  int rc;
  pl_sq_bind_u64(st, 1, gid);
  if (sqlite3_bind_parameter_count(st) > 1)
    pl_sq_bind_u64(st, 2, uid);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    *targets = pl_sq_reserve(*targets, *n, &cap, sizeof **targets);
    (*targets)[(*n)++] = pl_sq_col_u64(st, 0);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* Every logged-in device of the group's current members (push notifications
 * look for the offline ones among them; nothing is written). */
pl_err pl_sq_group_devices(pl__sq *q, pl_store_req *r) {
  pl_store_group_devices_req *x = &r->u.group_devices;
  return pl_sq_group_targets(q, ST_GROUP_DEVICES, x->in.group, 0, &x->out.targets, &x->out.ntargets);
}
