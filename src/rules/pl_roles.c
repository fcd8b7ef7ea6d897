/* pl_roles: the rules of groups and roles; see pl_roles.h. */
#include "pl_roles.h"

#include <string.h>

int pl_roles_member(int role) { return role > PL_ROLES_NONE; }

int pl_roles_may(int op, int ar, int tr) {
  if (!pl_roles_member(ar))
    return 0;
  switch (op) {
  case PL_ROLES_OP_ADD:
  case PL_ROLES_OP_RENAME: return ar >= PL_ROLES_ADMIN;
  case PL_ROLES_OP_REMOVE:
    return ar == PL_ROLES_OWNER ? tr != PL_ROLES_OWNER : ar == PL_ROLES_ADMIN && tr == PL_ROLES_MEMBER;
  case PL_ROLES_OP_SET_ROLE: return ar == PL_ROLES_OWNER && tr != PL_ROLES_OWNER;
  default: return 1; /* INFO, LEAVE: any member; an unknown op is refused by its verdict */
  }
}

int pl_roles_name_ok(const char *name, const char *desc) {
  size_t n = name ? strlen(name) : 0;
  return n >= 1 && n <= PL_ROLES_NAME_MAX && (!desc || strlen(desc) <= PL_ROLES_DESC_MAX);
}

pl_err pl_roles_create_check(const char *name, const char *desc, size_t nusers, uint32_t max_group) {
  if (nusers > max_group)
    return PL_ERR_GROUP_FULL;
  return pl_roles_name_ok(name, desc) ? PL_OK : PL_ERR_INVALID_ARGUMENT;
}

pl_err pl_roles_room(uint64_t count, uint32_t max_group) {
  return count < max_group ? PL_OK : PL_ERR_GROUP_FULL;
}

static int pl__needs_peer(int op) {
  return op == PL_ROLES_OP_ADD || op == PL_ROLES_OP_REMOVE || op == PL_ROLES_OP_SET_ROLE;
}

/* The checks in the order their answers take precedence: a stranger learns
 * nothing (NOT_MEMBER before anything), then the target, then the roles,
 * then the operation's own arguments. */
pl_err pl_roles_update_check(const pl_roles_update *u, int *change) {
  *change = 0;
  if (!pl_roles_member(u->mine))
    return PL_ERR_NOT_MEMBER; /* also for a group that does not exist */
  if (pl__needs_peer(u->op) && (!u->peer || (u->op == PL_ROLES_OP_ADD && u->blocks_me)))
    return PL_ERR_UNKNOWN_PEER; /* a user who blocked the actor is "unknown" too */
  if (!pl_roles_may(u->op, u->mine, u->theirs))
    return PL_ERR_FORBIDDEN;
  switch (u->op) {
  case PL_ROLES_OP_INFO: return PL_OK;
  case PL_ROLES_OP_ADD: *change = !pl_roles_member(u->theirs); return PL_OK;   /* already there: nothing */
  case PL_ROLES_OP_REMOVE: *change = pl_roles_member(u->theirs); return PL_OK; /* not there: nothing */
  case PL_ROLES_OP_LEAVE: *change = 1; return PL_OK;
  case PL_ROLES_OP_RENAME:
    if (!pl_roles_name_ok(u->name, u->desc))
      return PL_ERR_INVALID_ARGUMENT;
    *change = 1;
    return PL_OK;
  case PL_ROLES_OP_SET_ROLE:
    if (u->new_role != PL_ROLES_ADMIN && u->new_role != PL_ROLES_MEMBER)
      return PL_ERR_INVALID_ARGUMENT; /* there is one owner: it is never given */
    if (!pl_roles_member(u->theirs))
      return PL_ERR_NOT_MEMBER;
    *change = u->theirs != u->new_role;
    return PL_OK;
  default: return PL_ERR_INVALID_ARGUMENT;
  }
}

/* Joins come before the event that announces them, so the new members'
 * history starts with it; a leave's event comes before the leave, so the
 * member who goes receives it and nothing after; the heir comes last, its
 * GE_ROLE after the GE_LEFT it follows from. */
static const pl_roles_step pl__create[] = {PL_ROLES_S_JOIN, PL_ROLES_S_EVENT, PL_ROLES_S_END};
static const pl_roles_step pl__add[] = {PL_ROLES_S_JOIN, PL_ROLES_S_EVENT, PL_ROLES_S_END};
static const pl_roles_step pl__leave[] = {PL_ROLES_S_EVENT, PL_ROLES_S_LEFT, PL_ROLES_S_HEIR, PL_ROLES_S_END};
static const pl_roles_step pl__write[] = {PL_ROLES_S_WRITE, PL_ROLES_S_EVENT, PL_ROLES_S_END};
static const pl_roles_step pl__none[] = {PL_ROLES_S_END};

const pl_roles_step *pl_roles_steps(int op) {
  switch (op) {
  case PL_ROLES_OP_CREATE: return pl__create;
  case PL_ROLES_OP_ADD: return pl__add;
  case PL_ROLES_OP_REMOVE:
  case PL_ROLES_OP_LEAVE: return pl__leave;
  case PL_ROLES_OP_RENAME:
  case PL_ROLES_OP_SET_ROLE: return pl__write;
  default: return pl__none;
  }
}

int pl_roles_event(int op) {
  switch (op) {
  case PL_ROLES_OP_CREATE: return PL_ROLES_GE_CREATED;
  case PL_ROLES_OP_ADD: return PL_ROLES_GE_ADDED;
  case PL_ROLES_OP_REMOVE: return PL_ROLES_GE_REMOVED;
  case PL_ROLES_OP_LEAVE: return PL_ROLES_GE_LEFT;
  case PL_ROLES_OP_RENAME: return PL_ROLES_GE_RENAMED;
  case PL_ROLES_OP_SET_ROLE: return PL_ROLES_GE_ROLE;
  default: return 0;
  }
}

int pl_roles_heir_better(const pl_roles_cand *a, const pl_roles_cand *b) {
  if (!pl_roles_member(a->role) || a->role == PL_ROLES_OWNER)
    return 0; /* the owner is the one leaving; one who left inherits nothing */
  if (!b || !pl_roles_member(b->role) || b->role == PL_ROLES_OWNER)
    return 1;
  if (a->role != b->role)
    return a->role > b->role; /* an admin before any member */
  if (a->joined != b->joined)
    return a->joined < b->joined;
  return a->uid < b->uid;
}

size_t pl_roles_heir(const pl_roles_cand *c, size_t n) {
  size_t best = n;
  for (size_t i = 0; i < n; i++)
    if (pl_roles_heir_better(&c[i], best < n ? &c[best] : NULL))
      best = i;
  return best;
}

int pl_roles_owed(uint64_t since, uint64_t left, uint64_t cursor, uint64_t after, uint64_t *lo,
                  uint64_t *hi) {
  uint64_t from = after > cursor ? after : cursor;
  *lo = since > from ? since : from; /* nothing from before it joined */
  *hi = left ? left : UINT64_MAX;    /* one who left: up to the event of its leaving */
  return *lo < *hi;
}

uint64_t pl_roles_trim_upto(const pl_roles_hold *h, size_t n) {
  uint64_t upto = UINT64_MAX, lo, hi;
  for (size_t i = 0; i < n; i++)
    if (pl_roles_owed(h[i].since, h[i].left, h[i].cursor, 0, &lo, &hi) && lo < upto)
      upto = lo;
  return upto;
}

uint64_t pl_roles_hist_excess(uint64_t entries, uint64_t cap) {
  return cap && entries >= cap ? entries - cap + 1 : 0;
}

int pl_roles_detailed(uint64_t members, uint32_t detail) { return members <= detail; }
