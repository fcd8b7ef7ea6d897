/* pl_roles without a store: who may do what to whom, the verdict on each
 * GroupUpdate, the limits, the steps of each operation, the heir, the part
 * of a history owed to a device, the history bound. No SQLite: the rules
 * are pure functions over what a backend loads. */
#include <string.h>

#include "../../src/rules/pl_roles.h"
#include "../../src/store/pl_store.h"
#include "testlib.h"

enum { N = PL_ROLES_NONE, M = PL_ROLES_MEMBER, A = PL_ROLES_ADMIN, O = PL_ROLES_OWNER };

/* The wire's numbers: the rules and the store interface must agree. */
static void test_numbers_match_the_store(void) {
  CHECK_EQ_I(PL_ROLES_NONE, PL_ROLE_NONE);
  CHECK_EQ_I(PL_ROLES_MEMBER, PL_ROLE_MEMBER);
  CHECK_EQ_I(PL_ROLES_ADMIN, PL_ROLE_ADMIN);
  CHECK_EQ_I(PL_ROLES_OWNER, PL_ROLE_OWNER);
  CHECK_EQ_I(PL_ROLES_OP_INFO, PL_GROUP_INFO);
  CHECK_EQ_I(PL_ROLES_OP_ADD, PL_GROUP_ADD);
  CHECK_EQ_I(PL_ROLES_OP_REMOVE, PL_GROUP_REMOVE);
  CHECK_EQ_I(PL_ROLES_OP_LEAVE, PL_GROUP_LEAVE);
  CHECK_EQ_I(PL_ROLES_OP_RENAME, PL_GROUP_RENAME);
  CHECK_EQ_I(PL_ROLES_OP_SET_ROLE, PL_GROUP_SET_ROLE);
}

/* (op, actor role, target role) -> allowed: protocol.md 11.8's table, every cell. */
static void test_may_table(void) {
  static const struct {
    int op, ar, tr, ok;
  } t[] = {
      /* a non-member may do nothing */
      {PL_ROLES_OP_INFO, N, N, 0},
      {PL_ROLES_OP_LEAVE, N, N, 0},
      {PL_ROLES_OP_ADD, N, N, 0},
      /* any member: info and leave */
      {PL_ROLES_OP_INFO, M, N, 1},
      {PL_ROLES_OP_INFO, A, N, 1},
      {PL_ROLES_OP_INFO, O, N, 1},
      {PL_ROLES_OP_LEAVE, M, M, 1},
      {PL_ROLES_OP_LEAVE, A, A, 1},
      {PL_ROLES_OP_LEAVE, O, O, 1},
      /* add, rename: admins and the owner */
      {PL_ROLES_OP_ADD, M, N, 0},
      {PL_ROLES_OP_ADD, A, N, 1},
      {PL_ROLES_OP_ADD, O, N, 1},
      {PL_ROLES_OP_ADD, A, M, 1}, /* already there: allowed, changes nothing */
      {PL_ROLES_OP_RENAME, M, N, 0},
      {PL_ROLES_OP_RENAME, A, N, 1},
      {PL_ROLES_OP_RENAME, O, N, 1},
      /* remove: the owner anyone but itself, an admin plain members only */
      {PL_ROLES_OP_REMOVE, M, M, 0},
      {PL_ROLES_OP_REMOVE, M, N, 0},
      {PL_ROLES_OP_REMOVE, A, M, 1},
      {PL_ROLES_OP_REMOVE, A, A, 0},
      {PL_ROLES_OP_REMOVE, A, O, 0},
      {PL_ROLES_OP_REMOVE, A, N, 0}, /* (today: FORBIDDEN, not "nothing") */
      {PL_ROLES_OP_REMOVE, O, M, 1},
      {PL_ROLES_OP_REMOVE, O, A, 1},
      {PL_ROLES_OP_REMOVE, O, O, 0},
      {PL_ROLES_OP_REMOVE, O, N, 1},
      /* set role: the owner only, never on itself */
      {PL_ROLES_OP_SET_ROLE, M, M, 0},
      {PL_ROLES_OP_SET_ROLE, A, M, 0},
      {PL_ROLES_OP_SET_ROLE, A, A, 0},
      {PL_ROLES_OP_SET_ROLE, O, M, 1},
      {PL_ROLES_OP_SET_ROLE, O, A, 1},
      {PL_ROLES_OP_SET_ROLE, O, O, 0},
      {PL_ROLES_OP_SET_ROLE, O, N, 1}, /* then NOT_MEMBER by the verdict */
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    if (pl_roles_may(t[i].op, t[i].ar, t[i].tr) != t[i].ok)
      tl__fail(__FILE__, __LINE__, "row %zu: op %d actor %d target %d: want %d", i, t[i].op, t[i].ar, t[i].tr,
               t[i].ok);
  }
  CHECK(pl_roles_member(M) && pl_roles_member(A) && pl_roles_member(O));
  CHECK(!pl_roles_member(N));
}

static pl_err verdict(int op, int mine, int theirs, int *change) {
  pl_roles_update u = {.op = op, .mine = mine, .theirs = theirs, .peer = 1, .name = "g", .new_role = A};
  return pl_roles_update_check(&u, change);
}

static void test_update_verdicts(void) {
  int change = 7;
  /* a stranger learns nothing, whatever it asks */
  CHECK_EQ_I(verdict(PL_ROLES_OP_INFO, N, N, &change), PL_ERR_NOT_MEMBER);
  CHECK_EQ_I(change, 0);
  CHECK_EQ_I(verdict(99, N, N, &change), PL_ERR_NOT_MEMBER);
  /* the target: unknown, or blocked the actor (ADD only) */
  pl_roles_update u = {.op = PL_ROLES_OP_ADD, .mine = O, .peer = 0};
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_ERR_UNKNOWN_PEER);
  u.op = PL_ROLES_OP_REMOVE;
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_ERR_UNKNOWN_PEER);
  u.op = PL_ROLES_OP_SET_ROLE;
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_ERR_UNKNOWN_PEER);
  u = (pl_roles_update){.op = PL_ROLES_OP_ADD, .mine = A, .peer = 1, .blocks_me = 1};
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_ERR_UNKNOWN_PEER);
  u.op = PL_ROLES_OP_REMOVE;
  u.theirs = M;
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_OK); /* a block stops adds only */
  CHECK_EQ_I(change, 1);
  /* unknown-peer comes before forbidden: a member asking to add a stranger */
  u = (pl_roles_update){.op = PL_ROLES_OP_ADD, .mine = M, .peer = 0};
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_ERR_UNKNOWN_PEER);
  CHECK_EQ_I(verdict(PL_ROLES_OP_ADD, M, N, &change), PL_ERR_FORBIDDEN);
  /* what changes something, and what does not */
  CHECK_EQ_I(verdict(PL_ROLES_OP_INFO, M, N, &change), PL_OK);
  CHECK_EQ_I(change, 0);
  CHECK_EQ_I(verdict(PL_ROLES_OP_ADD, A, N, &change), PL_OK);
  CHECK_EQ_I(change, 1);
  CHECK_EQ_I(verdict(PL_ROLES_OP_ADD, A, M, &change), PL_OK);
  CHECK_EQ_I(change, 0);
  CHECK_EQ_I(verdict(PL_ROLES_OP_REMOVE, O, N, &change), PL_OK);
  CHECK_EQ_I(change, 0);
  CHECK_EQ_I(verdict(PL_ROLES_OP_REMOVE, O, A, &change), PL_OK);
  CHECK_EQ_I(change, 1);
  CHECK_EQ_I(verdict(PL_ROLES_OP_LEAVE, O, O, &change), PL_OK);
  CHECK_EQ_I(change, 1);
  /* rename: the name's limits, after the roles */
  CHECK_EQ_I(verdict(PL_ROLES_OP_RENAME, A, N, &change), PL_OK);
  CHECK_EQ_I(change, 1);
  u = (pl_roles_update){.op = PL_ROLES_OP_RENAME, .mine = A, .name = ""};
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_ERR_INVALID_ARGUMENT);
  u.mine = M;
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_ERR_FORBIDDEN);
  /* set role: admin or member only; the target must be a member; same role: nothing */
  u = (pl_roles_update){.op = PL_ROLES_OP_SET_ROLE, .mine = O, .theirs = M, .peer = 1, .new_role = O};
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_ERR_INVALID_ARGUMENT);
  u.new_role = N;
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_ERR_INVALID_ARGUMENT);
  u.new_role = A;
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_OK);
  CHECK_EQ_I(change, 1);
  u.theirs = A;
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_OK);
  CHECK_EQ_I(change, 0);
  u.theirs = N;
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_ERR_NOT_MEMBER);
  u.theirs = O;
  CHECK_EQ_I(pl_roles_update_check(&u, &change), PL_ERR_FORBIDDEN);
  /* an op the protocol does not have */
  CHECK_EQ_I(verdict(42, O, N, &change), PL_ERR_INVALID_ARGUMENT);
}

static void test_name_limits(void) {
  char name[PL_ROLES_NAME_MAX + 2], desc[PL_ROLES_DESC_MAX + 2];
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = 0;
  memset(desc, 'd', sizeof desc - 1);
  desc[sizeof desc - 1] = 0;
  CHECK(!pl_roles_name_ok(name, NULL)); /* 101 bytes */
  name[PL_ROLES_NAME_MAX] = 0;
  CHECK(pl_roles_name_ok(name, NULL)); /* 100 */
  CHECK(pl_roles_name_ok("x", NULL));  /* 1 */
  CHECK(!pl_roles_name_ok("", NULL));  /* 0 */
  CHECK(!pl_roles_name_ok(NULL, NULL));
  CHECK(!pl_roles_name_ok(desc, desc));
  CHECK(!pl_roles_name_ok("x", desc)); /* 1001 */
  desc[PL_ROLES_DESC_MAX] = 0;
  CHECK(pl_roles_name_ok("x", desc)); /* 1000 */
  CHECK(pl_roles_name_ok("x", ""));
}

static void test_size_limit(void) {
  CHECK_EQ_I(pl_roles_create_check("g", NULL, 10, 10), PL_OK);
  CHECK_EQ_I(pl_roles_create_check("g", NULL, 11, 10), PL_ERR_GROUP_FULL);
  CHECK_EQ_I(pl_roles_create_check("", NULL, 11, 10), PL_ERR_GROUP_FULL); /* full is said first */
  CHECK_EQ_I(pl_roles_create_check("", NULL, 0, 10), PL_ERR_INVALID_ARGUMENT);
  CHECK_EQ_I(pl_roles_room(9, 10), PL_OK);
  CHECK_EQ_I(pl_roles_room(10, 10), PL_ERR_GROUP_FULL);
  CHECK_EQ_I(pl_roles_room(11, 10), PL_ERR_GROUP_FULL);
}

static size_t nsteps(const pl_roles_step *s) {
  size_t n = 0;
  while (s[n] != PL_ROLES_S_END)
    n++;
  return n;
}

/* Members join before the event that announces them (their history starts
 * with it); one who goes receives the event of its going, then leaves; the
 * heir's GE_ROLE comes after the GE_LEFT. */
static void test_steps_order(void) {
  const pl_roles_step *s = pl_roles_steps(PL_ROLES_OP_CREATE);
  CHECK_EQ_U(nsteps(s), 2);
  CHECK_EQ_I(s[0], PL_ROLES_S_JOIN);
  CHECK_EQ_I(s[1], PL_ROLES_S_EVENT);
  s = pl_roles_steps(PL_ROLES_OP_ADD);
  CHECK_EQ_U(nsteps(s), 2);
  CHECK_EQ_I(s[0], PL_ROLES_S_JOIN);
  CHECK_EQ_I(s[1], PL_ROLES_S_EVENT);
  for (int op = PL_ROLES_OP_REMOVE; op <= PL_ROLES_OP_LEAVE; op++) {
    s = pl_roles_steps(op);
    CHECK_EQ_U(nsteps(s), 3);
    CHECK_EQ_I(s[0], PL_ROLES_S_EVENT);
    CHECK_EQ_I(s[1], PL_ROLES_S_LEFT);
    CHECK_EQ_I(s[2], PL_ROLES_S_HEIR);
  }
  for (int op = PL_ROLES_OP_RENAME; op <= PL_ROLES_OP_SET_ROLE; op++) {
    s = pl_roles_steps(op);
    CHECK_EQ_U(nsteps(s), 2);
    CHECK_EQ_I(s[0], PL_ROLES_S_WRITE);
    CHECK_EQ_I(s[1], PL_ROLES_S_EVENT);
  }
  CHECK_EQ_U(nsteps(pl_roles_steps(PL_ROLES_OP_INFO)), 0);
  CHECK_EQ_U(nsteps(pl_roles_steps(77)), 0);
  CHECK_EQ_I(pl_roles_event(PL_ROLES_OP_CREATE), PL_ROLES_GE_CREATED);
  CHECK_EQ_I(pl_roles_event(PL_ROLES_OP_ADD), PL_ROLES_GE_ADDED);
  CHECK_EQ_I(pl_roles_event(PL_ROLES_OP_REMOVE), PL_ROLES_GE_REMOVED);
  CHECK_EQ_I(pl_roles_event(PL_ROLES_OP_LEAVE), PL_ROLES_GE_LEFT);
  CHECK_EQ_I(pl_roles_event(PL_ROLES_OP_RENAME), PL_ROLES_GE_RENAMED);
  CHECK_EQ_I(pl_roles_event(PL_ROLES_OP_SET_ROLE), PL_ROLES_GE_ROLE);
  CHECK_EQ_I(pl_roles_event(PL_ROLES_OP_INFO), 0);
}

static void test_heir(void) {
  /* the longest-standing admin, though members joined before it */
  pl_roles_cand c[] = {{.uid = 5, .joined = 10, .role = M},
                       {.uid = 6, .joined = 30, .role = A},
                       {.uid = 7, .joined = 20, .role = A},
                       {.uid = 8, .joined = 40, .role = M}};
  CHECK_EQ_U(pl_roles_heir(c, 4), 2);
  /* no admin: the longest-standing member */
  pl_roles_cand m[] = {{.uid = 5, .joined = 50, .role = M},
                       {.uid = 6, .joined = 20, .role = M},
                       {.uid = 7, .joined = 30, .role = M}};
  CHECK_EQ_U(pl_roles_heir(m, 3), 1);
  /* ties by join time (joined in one GroupCreate): the lower uid, in any order */
  pl_roles_cand t[] = {{.uid = 9, .joined = 4, .role = M},
                       {.uid = 3, .joined = 4, .role = M},
                       {.uid = 6, .joined = 4, .role = M}};
  CHECK_EQ_U(pl_roles_heir(t, 3), 1);
  pl_roles_cand ta[] = {{.uid = 2, .joined = 4, .role = M}, {.uid = 9, .joined = 4, .role = A}};
  CHECK_EQ_U(pl_roles_heir(ta, 2), 1); /* the role first */
  /* only the owner was left: no heir */
  CHECK_EQ_U(pl_roles_heir(NULL, 0), 0);
  /* members who left, or an owner listed by mistake, never inherit */
  pl_roles_cand g[] = {{.uid = 1, .joined = 1, .role = N}, {.uid = 2, .joined = 2, .role = O}};
  CHECK_EQ_U(pl_roles_heir(g, 2), 2);
  pl_roles_cand g2[] = {{.uid = 1, .joined = 1, .role = N}, {.uid = 4, .joined = 9, .role = M}};
  CHECK_EQ_U(pl_roles_heir(g2, 2), 1);
  /* streamed one by one, as a backend does */
  pl_roles_cand best = {0};
  for (size_t i = 0; i < 4; i++)
    if (pl_roles_heir_better(&c[i], best.uid ? &best : NULL))
      best = c[i];
  CHECK_EQ_U(best.uid, 7);
}

/* What a device is owed of one group's history: after max(its cursor, where
 * it asks from, where its member joined), up to the member's leaving. */
static void test_owed(void) {
  uint64_t lo, hi;
  CHECK(pl_roles_owed(100, 0, 50, 0, &lo, &hi)); /* nothing from before it joined */
  CHECK_EQ_U(lo, 100);
  CHECK_EQ_U(hi, UINT64_MAX);
  CHECK(pl_roles_owed(100, 0, 150, 120, &lo, &hi)); /* its cursor */
  CHECK_EQ_U(lo, 150);
  CHECK(pl_roles_owed(100, 0, 150, 170, &lo, &hi)); /* where it asks from */
  CHECK_EQ_U(lo, 170);
  CHECK(pl_roles_owed(100, 200, 150, 0, &lo, &hi)); /* left: up to the event of its removal */
  CHECK_EQ_U(lo, 150);
  CHECK_EQ_U(hi, 200);
  CHECK(!pl_roles_owed(100, 200, 200, 0, &lo, &hi)); /* it has all it was owed */
  CHECK(!pl_roles_owed(100, 200, 250, 0, &lo, &hi));
  CHECK(pl_roles_owed(0, 0, 0, 0, &lo, &hi));
  CHECK_EQ_U(lo, 0);
}

/* How far the sweep deletes a group's history: up to the lowest point a
 * member device is owed from; a device of a member who left that has all
 * its window holds nothing; none holding: everything. */
static void test_trim_upto(void) {
  pl_roles_hold h[] = {
      {100, 0, 150}, /* acknowledged up to 150 */
      {100, 0, 0},   /* no cursor: owed from its join */
      {10, 120, 130} /* left at 120, has it all */
  };
  CHECK_EQ_U(pl_roles_trim_upto(h, 3), 100);
  CHECK_EQ_U(pl_roles_trim_upto(h, 1), 150);
  CHECK_EQ_U(pl_roles_trim_upto(h + 2, 1), UINT64_MAX);
  h[2].cursor = 40; /* left, still owed (40, 120] */
  CHECK_EQ_U(pl_roles_trim_upto(h + 2, 1), 40);
  CHECK_EQ_U(pl_roles_trim_upto(h, 3), 40);
  CHECK_EQ_U(pl_roles_trim_upto(NULL, 0), UINT64_MAX);
}

static void test_history_bound(void) {
  CHECK_EQ_U(pl_roles_hist_excess(10, 0), 0); /* no bound */
  CHECK_EQ_U(pl_roles_hist_excess(0, 5), 0);
  CHECK_EQ_U(pl_roles_hist_excess(4, 5), 0);
  CHECK_EQ_U(pl_roles_hist_excess(5, 5), 1); /* full: the oldest goes */
  CHECK_EQ_U(pl_roles_hist_excess(8, 5), 4); /* over (the bound was lowered): back under it */
  CHECK(pl_roles_detailed(256, 256));
  CHECK(!pl_roles_detailed(257, 256));
  CHECK(pl_roles_detailed(0, 0));
}

int main(void) {
  RUN(test_numbers_match_the_store);
  RUN(test_may_table);
  RUN(test_update_verdicts);
  RUN(test_name_limits);
  RUN(test_size_limit);
  RUN(test_steps_order);
  RUN(test_heir);
  RUN(test_owed);
  RUN(test_trim_upto);
  RUN(test_history_bound);
  return tl_summary();
}
