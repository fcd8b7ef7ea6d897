/* pl_roles: the rules of groups and roles (docs/protocol.md 11.8).
 *
 * src/rules/ holds the product's rules as pure functions: no I/O, no
 * SQLite, no globals. A store backend (SQLite today, PostgreSQL in issue
 * 15) loads the facts a rule needs, asks the rule, and stores what it
 * decides; the core may ask the same rules. So a new backend implements the
 * group operations by loading and storing only, and each rule is tested
 * without a database (tests/unit/test_roles.c).
 *
 * What this module decides: who may do what to whom, the limits of a
 * group's name, description and size, the order of the steps (and events)
 * of each operation, the heir when the owner leaves, which part of a
 * group's history a member's device is owed (a member who left: up to its
 * removal), how far a full history is cut, and which groups are small
 * enough for named receipts and typing.
 *
 * What the backend keeps (contracts it must honour, stated here so every
 * backend honours the same ones):
 * - positions in a group's history are its seqs (gap-free, per group);
 * - a member's join point (since) is the group's last seq before it joins,
 *   so the first entry it is owed is the event that made it a member;
 * - a member who leaves keeps left = the seq of the event of its leaving;
 * - a group's history is deleted up to the lowest cursor of every signed-in
 *   device of every member (and of members who left, up to their left), and
 *   a member who left is forgotten once nothing is owed to it. */
#ifndef PL_ROLES_H
#define PL_ROLES_H

#include <stddef.h>
#include <stdint.h>

#include "../common/pl_err.h"

/* Roles and operations: the wire's GroupRole and GroupOp values (the same
 * numbers as PL_ROLE_* and PL_GROUP_* in pl_store.h). */
enum { PL_ROLES_NONE = 0, PL_ROLES_MEMBER = 1, PL_ROLES_ADMIN = 2, PL_ROLES_OWNER = 3 };
enum {
  PL_ROLES_OP_INFO = 0,
  PL_ROLES_OP_ADD = 1,
  PL_ROLES_OP_REMOVE = 2,
  PL_ROLES_OP_LEAVE = 3,
  PL_ROLES_OP_RENAME = 4,
  PL_ROLES_OP_SET_ROLE = 5,
  PL_ROLES_OP_CREATE = 6 /* GroupCreate: not a GroupOp on the wire */
};

/* GroupEvent types (the wire's GroupEventType). */
enum {
  PL_ROLES_GE_CREATED = 1,
  PL_ROLES_GE_ADDED,
  PL_ROLES_GE_REMOVED,
  PL_ROLES_GE_LEFT,
  PL_ROLES_GE_RENAMED,
  PL_ROLES_GE_ROLE
};

/* Bytes of a group's name (at least 1) and description. */
#define PL_ROLES_NAME_MAX 100u
#define PL_ROLES_DESC_MAX 1000u

/* ---- who may do what ---- */

/* Is role that of a member (who may send, read, mark read, ask receipts,
 * type and leave)? A user who left has role NONE. */
int pl_roles_member(int role);

/* May an actor with role ar do op to a user with role tr (NONE: not a
 * member)? Admins add and rename; the owner removes anyone but itself, an
 * admin only plain members; only the owner sets roles, never its own. */
int pl_roles_may(int op, int ar, int tr);

/* Are name (1..100 bytes) and desc (NULL, or up to 1000 bytes) allowed? */
int pl_roles_name_ok(const char *name, const char *desc);

/* A GroupCreate naming nusers users: PL_OK, PL_ERR_GROUP_FULL (more than
 * max_group; checked first) or PL_ERR_INVALID_ARGUMENT (the name). */
pl_err pl_roles_create_check(const char *name, const char *desc, size_t nusers, uint32_t max_group);

/* May a group of count members take one more (else PL_ERR_GROUP_FULL)? */
pl_err pl_roles_room(uint64_t count, uint32_t max_group);

/* What the backend knows of a GroupUpdate before anything changes. */
typedef struct pl_roles_update {
  int op;                  /* PL_ROLES_OP_* */
  int mine;                /* the actor's role (NONE: not a member, or no such group) */
  int theirs;              /* the target's role (ADD, REMOVE, SET_ROLE) */
  int peer;                /* ADD, REMOVE, SET_ROLE: the target user exists */
  int blocks_me;           /* ADD: the target blocked the actor */
  int new_role;            /* SET_ROLE: the role asked for */
  const char *name, *desc; /* RENAME */
} pl_roles_update;

/* The verdict on a GroupUpdate: PL_OK or the refusal (NOT_MEMBER,
 * UNKNOWN_PEER, FORBIDDEN, INVALID_ARGUMENT), with *change = 1 when the
 * operation changes something (0: answer with the group as it is). Before
 * an ADD that changes something the backend still asks who may add the
 * target (Settings.group_add: NOT_ALLOWED) and then pl_roles_room. */
pl_err pl_roles_update_check(const pl_roles_update *u, int *change);

/* ---- what an operation does, in order ---- */

typedef enum pl_roles_step {
  PL_ROLES_S_END = 0,
  PL_ROLES_S_JOIN,  /* the new members join, owed the history from the next entry */
  PL_ROLES_S_EVENT, /* the operation's event joins the history */
  PL_ROLES_S_LEFT,  /* the target leaves, owed the history up to that event */
  PL_ROLES_S_HEIR,  /* if it was the owner: the heir owns the group (a GE_ROLE event) */
  PL_ROLES_S_WRITE  /* the new name or role is stored */
} pl_roles_step;

/* The steps of op (one that changes something), ending with S_END. The
 * answer (GroupInfo) is read after them, and is sent after their events. */
const pl_roles_step *pl_roles_steps(int op);

/* The event type op puts in the history (0: none). */
int pl_roles_event(int op);

/* ---- the heir ---- */

/* A member who may inherit: the backend lists the group's members but the
 * one leaving (in any order; it may list only the earliest of each role,
 * since the rule never picks a later one). joined: its join point (the
 * group's seq then: members who joined in one request share it). */
typedef struct pl_roles_cand {
  uint64_t uid, joined;
  int role;
} pl_roles_cand;

/* Is a a better heir than b? The longest-standing admin, else the
 * longest-standing member; among those who joined together, the lower uid
 * (the older account). Non-members never are. */
int pl_roles_heir_better(const pl_roles_cand *a, const pl_roles_cand *b);

/* The index of the heir among n candidates, or n if none (the owner was the
 * last member). */
size_t pl_roles_heir(const pl_roles_cand *c, size_t n);

/* ---- history ---- */

/* A device's window of a group's history: the entries with lo < seq <= hi
 * are owed to it. since/left: the membership's join and leave points (left
 * 0: still a member); cursor: what the device acknowledged; after: where
 * the device asks to start. Returns 0 if nothing can be owed (lo >= hi). */
int pl_roles_owed(uint64_t since, uint64_t left, uint64_t cursor, uint64_t after, uint64_t *lo, uint64_t *hi);

/* One signed-in device of a member (present, or gone with history owed)
 * as the sweep sees it: the membership's since/left, the device's cursor
 * (0: none). */
typedef struct pl_roles_hold {
  uint64_t since, left, cursor;
} pl_roles_hold;
/* How far the sweep may delete a group's history (seq <= the result):
 * below the lowest point a device is still owed entries after
 * (pl_roles_owed); a device of a member who left that has all it was
 * owed holds nothing; with no device holding, all of it (UINT64_MAX). */
uint64_t pl_roles_trim_upto(const pl_roles_hold *h, size_t n);

/* How many of the oldest entries of a history holding entries go before
 * one more joins it, when it may keep cap (0: no bound). */
uint64_t pl_roles_hist_excess(uint64_t entries, uint64_t cap);

/* Is a group of members members small enough (at most detail) for named
 * receipts, live receipts and typing? */
int pl_roles_detailed(uint64_t members, uint32_t detail);

#endif
