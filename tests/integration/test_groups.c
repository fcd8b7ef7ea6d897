/* Groups against the real parleyd over raw sockets (docs/protocol.md 11.8):
 * membership rules (non-members refused, roles enforced, removed members
 * get nothing new), membership events in the history in order with the
 * messages, a member offline during 500 group messages gets all of them in
 * order on return, and the history is deleted once every member device has
 * passed it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rawcl.h"
#include "testlib.h"

#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1"
#define T_MS 10000
#define QUIET_MS 300
#define HISTORY "parley_store_group_history" /* group entries the store keeps (/metrics) */

enum {
  REG = PARLEY__FRAME_TYPE__FRAME_REGISTER,
  MESSAGE = PARLEY__FRAME_TYPE__FRAME_MESSAGE,
  INFO = PARLEY__FRAME_TYPE__FRAME_GROUP_INFO,
  OWNER = PARLEY__GROUP_ROLE__ROLE_OWNER,
  ADMIN = PARLEY__GROUP_ROLE__ROLE_ADMIN,
  MEMBER = PARLEY__GROUP_ROLE__ROLE_MEMBER,
  NONE = PARLEY__GROUP_ROLE__ROLE_NONE,
};

static tl_server srv;
static char gid[24]; /* the group of the current test */
/* The membership events that reached the actor's device before the answer
 * to its request (the store delivers a commit's events, then answers). */
static int pre_events;
static uint64_t pre_qid;

/* The next frame that is not a group Message (those are counted, and must
 * belong to the current group); must be of type want (or an Error with
 * code want_err and ref, when want_err is set). */
static void *next_answer(int fd, int want, int want_err, const char *ref) {
  void *m = NULL;
  int t;
  pre_events = 0;
  while ((t = tl_recv_frame(fd, T_MS, &m)) == MESSAGE) {
    Parley__Message *msg = m;
    if (!gid[0]) /* a create: its events come before its answer */
      snprintf(gid, sizeof gid, "%s", msg->group);
    CHECK_STR(msg->group, gid);
    pre_qid = msg->qid;
    pre_events++;
    protobuf_c_message_free_unpacked(m, NULL);
  }
  if (want_err) {
    CHECK_EQ_I(t, PARLEY__FRAME_TYPE__FRAME_ERROR);
    if (t == PARLEY__FRAME_TYPE__FRAME_ERROR) {
      CHECK_EQ_I(((Parley__Error *)m)->code, want_err);
      CHECK_STR(((Parley__Error *)m)->ref, ref);
    }
    if (m)
      protobuf_c_message_free_unpacked(m, NULL);
    return NULL;
  }
  CHECK_EQ_I(t, want);
  if (t == PARLEY__FRAME_TYPE__FRAME_ERROR)
    fprintf(stderr, "     unexpected Error %d (%s)\n", ((Parley__Error *)m)->code,
            ((Parley__Error *)m)->message);
  if (t != want && m) {
    protobuf_c_message_free_unpacked(m, NULL);
    return NULL;
  }
  return m;
}

/* The answer to a group request, after the events it caused. */
static Parley__GroupInfo *info_after_events(int fd) { return next_answer(fd, INFO, 0, NULL); }

static void run(const char *name, void (*fn)(void)) { tl_run_server(&srv, name, fn); }
static void start(void) { tl_server_start(&srv, FAST " --sweep-interval 1"); }

static int user(const char *name, char tok[128]) {
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_auth(fd, REG, name, "secret-pass", "phone", tok), 0);
  return fd;
}

static int back(const char *tok) {
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_resume(fd, tok), 0);
  return fd;
}

static int role_of(const Parley__GroupInfo *g, const char *u) {
  for (size_t i = 0; i < g->n_members; i++)
    if (!strcmp(g->members[i]->user, u))
      return g->members[i]->role;
  return NONE;
}

/* Creates a group named "team" with members; checks the answer. */
static void create(int fd, const char **members, size_t n) {
  Parley__GroupCreate c = PARLEY__GROUP_CREATE__INIT;
  c.ref = "c1";
  c.name = "team";
  c.description = "the team";
  c.members = (char **)members;
  c.n_members = n;
  gid[0] = 0;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE, &c) == 0);
  Parley__GroupInfo *g = info_after_events(fd);
  if (!g)
    return;
  CHECK_EQ_I(pre_events, 1); /* one "created" (the initial members are in GroupInfo) */
  CHECK_STR(g->ref, "c1");
  CHECK(g->group[0] != 0);
  CHECK_STR(g->name, "team");
  CHECK_EQ_I(g->my_role, OWNER);
  CHECK_EQ_U(g->member_count, n + 1);
  CHECK_EQ_U(g->n_members, n + 1);
  snprintf(gid, sizeof gid, "%s", g->group);
  protobuf_c_message_free_unpacked(&g->base, NULL);
}

/* A GroupUpdate; returns the GroupInfo (free it) or NULL after the Error
 * with want_err (checked). */
static Parley__GroupInfo *update(int fd, int op, const char *who, int role, int want_err) {
  Parley__GroupUpdate u = PARLEY__GROUP_UPDATE__INIT;
  u.ref = "u1";
  u.group = gid;
  u.op = (Parley__GroupOp)op;
  u.user = (char *)(who ? who : "");
  u.role = (Parley__GroupRole)role;
  u.name = "renamed";
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE, &u) == 0);
  if (want_err)
    return next_answer(fd, 0, want_err, "u1");
  Parley__GroupInfo *g = info_after_events(fd);
  if (g)
    CHECK_STR(g->ref, "u1");
  return g;
}

static void send_group(int fd, const char *id, const char *body, int want_err, uint64_t want_seq) {
  Parley__Send s = PARLEY__SEND__INIT;
  s.id = (char *)id;
  s.to = "";
  s.group = gid;
  s.body.data = (uint8_t *)body;
  s.body.len = strlen(body);
  s.client_ts = 1;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_SEND, &s) == 0);
  if (want_err) {
    next_answer(fd, 0, want_err, id);
    return;
  }
  /* the sending device gets its message too (before the ack): the group's
   * history is one stream for every member device */
  Parley__SendAck *a = next_answer(fd, PARLEY__FRAME_TYPE__FRAME_SEND_ACK, 0, NULL);
  if (!a)
    return;
  char conv[32];
  snprintf(conv, sizeof conv, "g:%s", gid);
  CHECK_STR(a->conv, conv);
  if (want_seq)
    CHECK_EQ_U(a->seq, want_seq);
  protobuf_c_message_free_unpacked(&a->base, NULL);
}

/* The next Message must be this membership event of the group; returns its qid. */
static uint64_t next_event(int fd, int type, const char *actor, const char *who) {
  Parley__Message *m = tl_expect(fd, MESSAGE, T_MS);
  CHECK_STR(m->group, gid);
  CHECK(m->event != NULL);
  uint64_t qid = m->qid;
  if (m->event) {
    CHECK_EQ_I(m->event->type, type);
    CHECK_STR(m->event->actor, actor);
    CHECK_STR(m->event->user, who ? who : "");
  }
  protobuf_c_message_free_unpacked(&m->base, NULL);
  return qid;
}

/* The next Message must be this group message; returns its qid. */
static uint64_t next_msg(int fd, const char *from, const char *body, uint64_t seq) {
  Parley__Message *m = tl_expect(fd, MESSAGE, T_MS);
  CHECK_STR(m->group, gid);
  CHECK(m->event == NULL);
  CHECK_STR(m->from, from);
  CHECK_EQ_U(m->body.len, strlen(body));
  CHECK(m->body.len == strlen(body) && !memcmp(m->body.data, body, m->body.len));
  CHECK_EQ_U(m->seq, seq);
  uint64_t qid = m->qid;
  protobuf_c_message_free_unpacked(&m->base, NULL);
  return qid;
}

/* Roles: only admins add, only the owner promotes, admins remove members
 * only; a non-member learns nothing (NOT_MEMBER for everything). */
static void test_roles_enforced(void) {
  start();
  char t[128];
  int alice = user("alice", t), bob = user("bob", t), carol = user("carol", t), dave = user("dave", t);
  int eve = user("eve", t);
  const char *m[] = {"bob", "carol"};
  create(alice, m, 2);
  update(bob, PARLEY__GROUP_OP__GROUP_ADD, "dave", 0, PARLEY__ERROR_CODE__ERR_FORBIDDEN);
  update(bob, PARLEY__GROUP_OP__GROUP_RENAME, NULL, 0, PARLEY__ERROR_CODE__ERR_FORBIDDEN);
  update(bob, PARLEY__GROUP_OP__GROUP_SET_ROLE, "carol", ADMIN, PARLEY__ERROR_CODE__ERR_FORBIDDEN);
  Parley__GroupInfo *g = update(alice, PARLEY__GROUP_OP__GROUP_SET_ROLE, "bob", ADMIN, 0);
  CHECK_EQ_I(role_of(g, "bob"), ADMIN);
  protobuf_c_message_free_unpacked(&g->base, NULL);
  g = update(bob, PARLEY__GROUP_OP__GROUP_ADD, "dave", 0, 0); /* an admin adds */
  CHECK_EQ_I(role_of(g, "dave"), MEMBER);
  CHECK_EQ_U(g->member_count, 4);
  protobuf_c_message_free_unpacked(&g->base, NULL);
  update(bob, PARLEY__GROUP_OP__GROUP_REMOVE, "alice", 0, PARLEY__ERROR_CODE__ERR_FORBIDDEN);
  update(bob, PARLEY__GROUP_OP__GROUP_SET_ROLE, "dave", ADMIN, PARLEY__ERROR_CODE__ERR_FORBIDDEN);
  g = update(bob, PARLEY__GROUP_OP__GROUP_REMOVE, "carol", 0, 0); /* an admin removes a member */
  CHECK_EQ_I(role_of(g, "carol"), NONE);
  CHECK_EQ_U(g->member_count, 3);
  protobuf_c_message_free_unpacked(&g->base, NULL);
  /* strangers and the removed: NOT_MEMBER, for reading as for writing */
  update(eve, PARLEY__GROUP_OP__GROUP_INFO, NULL, 0, PARLEY__ERROR_CODE__ERR_NOT_MEMBER);
  update(carol, PARLEY__GROUP_OP__GROUP_INFO, NULL, 0, PARLEY__ERROR_CODE__ERR_NOT_MEMBER);
  send_group(eve, "e1", "let me in", PARLEY__ERROR_CODE__ERR_NOT_MEMBER, 0);
  send_group(carol, "c1", "still here?", PARLEY__ERROR_CODE__ERR_NOT_MEMBER, 0);
  /* a group that does not exist looks the same */
  char real[24];
  snprintf(real, sizeof real, "%s", gid);
  snprintf(gid, sizeof gid, "999999");
  send_group(eve, "e2", "hello?", PARLEY__ERROR_CODE__ERR_NOT_MEMBER, 0);
  snprintf(gid, sizeof gid, "%s", real);
  /* the owner leaves: the longest-standing admin owns the group */
  g = update(alice, PARLEY__GROUP_OP__GROUP_LEAVE, NULL, 0, 0);
  CHECK_EQ_I(g->my_role, NONE);
  protobuf_c_message_free_unpacked(&g->base, NULL);
  g = update(bob, PARLEY__GROUP_OP__GROUP_INFO, NULL, 0, 0);
  CHECK_EQ_I(g->my_role, OWNER);
  CHECK_EQ_I(role_of(g, "alice"), NONE);
  CHECK_EQ_U(g->member_count, 2);
  protobuf_c_message_free_unpacked(&g->base, NULL);
  close(alice);
  close(bob);
  close(carol);
  close(dave);
  close(eve);
}

/* Events and messages share the group's seq; a removed member sees its
 * removal and nothing after it, and may not send. */
static void test_history_and_removal(void) {
  start();
  char t[128];
  int alice = user("alice", t), bob = user("bob", t);
  const char *m[] = {"bob"};
  create(alice, m, 1);
  next_event(bob, PARLEY__GROUP_EVENT_TYPE__GE_CREATED, "alice", NULL);
  send_group(alice, "a1", "hello team", 0, 2);
  CHECK_EQ_I(pre_events, 1); /* its own copy */
  next_msg(bob, "alice", "hello team", 2);
  send_group(bob, "b1", "hi alice", 0, 3);
  next_msg(alice, "bob", "hi alice", 3);
  send_group(bob, "b1", "hi alice", 0, 3); /* a retry: the same seq, nothing new sent */
  CHECK_EQ_I(pre_events, 0);
  tl_expect_nothing(alice, QUIET_MS);
  Parley__GroupInfo *g = update(alice, PARLEY__GROUP_OP__GROUP_REMOVE, "bob", 0, 0);
  CHECK_EQ_U(g->last_seq, 4);
  protobuf_c_message_free_unpacked(&g->base, NULL);
  CHECK_EQ_I(pre_events, 1); /* alice's own device got the event too */
  next_event(bob, PARLEY__GROUP_EVENT_TYPE__GE_REMOVED, "alice", "bob");
  send_group(alice, "a2", "bob is gone", 0, 5);
  tl_expect_nothing(bob, QUIET_MS);
  send_group(bob, "b2", "wait", PARLEY__ERROR_CODE__ERR_NOT_MEMBER, 0);
  close(alice);
  close(bob);
}

/* Bob is offline while alice sends 500: on return he gets every one, in
 * seq order, once; acked, they do not come again; and once every member
 * device has them they are deleted from the store. */
static void test_offline_member_500_then_deleted(void) {
  start();
  char ta[128], tb[128];
  int alice = user("alice", ta), bob = user("bob", tb);
  const char *m[] = {"bob"};
  close(bob);
  create(alice, m, 1);
  rc_ack(alice, pre_qid); /* alice's device has the history up to here */
  for (int i = 0; i < 500; i++) {
    char id[16], body[32];
    snprintf(id, sizeof id, "m%d", i);
    snprintf(body, sizeof body, "message %d", i);
    send_group(alice, id, body, 0, (uint64_t)i + 2);
  }
  rc_ack(alice, pre_qid); /* her own copies: her device has them all */
  CHECK_EQ_I(tl_metric(&srv, HISTORY), 501);
  CHECK_EQ_I(tl_metric(&srv, "parley_store_queue_entries"), 0); /* stored once, no per-member rows */
  bob = back(tb);
  uint64_t last = next_event(bob, PARLEY__GROUP_EVENT_TYPE__GE_CREATED, "alice", NULL);
  for (int i = 0; i < 500; i++) {
    char body[32];
    snprintf(body, sizeof body, "message %d", i);
    uint64_t q = next_msg(bob, "alice", body, (uint64_t)i + 2);
    CHECK(q > last);
    last = q;
  }
  tl_expect_nothing(bob, QUIET_MS);
  rc_ack_sync(bob, last);
  close(bob);
  bob = back(tb);
  tl_expect_nothing(bob, QUIET_MS); /* acked: never again */
  /* nor after a restart: the cursors kept in memory are written at close */
  close(bob);
  close(alice);
  tl_server_kill(&srv, SIGTERM);
  tl_server_restart(&srv);
  alice = back(ta);
  bob = back(tb);
  tl_expect_nothing(bob, QUIET_MS);
  /* the sweep (every second here) deletes what every member device passed */
  tl_wait_metric(&srv, HISTORY, 0, T_MS);
  close(alice);
  close(bob);
}

/* Protocol 2: each group's history is a stream of its own, positioned by
 * seq and acknowledged per group (protocol.md 10.3-10.4). Bob, in two groups,
 * acknowledges one of them: after a reconnect only the other's entries come
 * again, under the same seqs; an ack for a seq the connection was not sent
 * is clamped; once both are acked nothing comes, also after a restart. */
static int bob_v2(const char *tok) {
  int fd = rc_open_v(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE, 2);
  CHECK_EQ_I(rc_resume(fd, tok), 0);
  return fd;
}

/* Collects n group Messages of groups g[0] and g[1]; in each group the
 * seqs rise by one (first[k] .. last[k], 0 if none came) and every entry
 * carries its group. */
static void collect_streams(int fd, size_t n, char g[2][24], uint64_t first[2], uint64_t last[2]) {
  Parley__Message *m[16];
  size_t got = rc_collect(fd, m, n, T_MS);
  CHECK_EQ_U(got, n);
  first[0] = first[1] = last[0] = last[1] = 0;
  for (size_t i = 0; i < got; i++) {
    int k = !strcmp(m[i]->group, g[0]) ? 0 : !strcmp(m[i]->group, g[1]) ? 1 : -1;
    CHECK(k >= 0);
    if (k < 0)
      continue;
    if (!first[k])
      first[k] = m[i]->seq;
    else
      CHECK_EQ_U(m[i]->seq, last[k] + 1);
    last[k] = m[i]->seq;
  }
  rc_free_msgs(m, got);
  tl_expect_nothing(fd, QUIET_MS);
}

static void ack_groups(int fd, const char *g1, uint64_t s1, const char *g2, uint64_t s2) {
  Parley__Ack a = PARLEY__ACK__INIT;
  Parley__GroupAck x = PARLEY__GROUP_ACK__INIT, y = PARLEY__GROUP_ACK__INIT, *v[2] = {&x, &y};
  x.group = (char *)g1, x.upto_seq = s1;
  y.group = (char *)g2, y.upto_seq = s2;
  a.groups = v;
  a.n_groups = g2 ? 2 : 1;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_ACK, &a) == 0);
  rc_ack_sync(fd, 0); /* a Pong after it: the Ack is in the store's queue before any later fetch */
}

static void test_v2_group_streams(void) {
  start();
  char ta[128], tb[128], g[2][24];
  uint64_t f[2], l[2];
  int alice = user("alice", ta), bob = user("bob", tb);
  const char *m[] = {"bob"};
  close(bob);
  create(alice, m, 1);
  snprintf(g[0], sizeof g[0], "%s", gid);
  send_group(alice, "a1", "one", 0, 2);
  send_group(alice, "a2", "two", 0, 3);
  create(alice, m, 1);
  snprintf(g[1], sizeof g[1], "%s", gid);
  send_group(alice, "b1", "uno", 0, 2);
  bob = bob_v2(tb);
  collect_streams(bob, 5, g, f, l); /* both histories from their starts */
  CHECK_EQ_U(f[0], 1);
  CHECK_EQ_U(l[0], 3);
  CHECK_EQ_U(f[1], 1);
  CHECK_EQ_U(l[1], 2);
  ack_groups(bob, g[0], 3, NULL, 0); /* only the first group */
  close(bob);
  bob = bob_v2(tb);
  collect_streams(bob, 2, g, f, l); /* the second group again, from its start */
  CHECK_EQ_U(l[0], 0);
  CHECK_EQ_U(f[1], 1);
  CHECK_EQ_U(l[1], 2);
  ack_groups(bob, g[1], 9, NULL, 0); /* clamped to 2, what this connection was sent */
  send_group(alice, "b2", "dos", 0, 3);
  collect_streams(bob, 1, g, f, l); /* live */
  CHECK_EQ_U(f[1], 3);
  close(bob);
  bob = bob_v2(tb);
  collect_streams(bob, 1, g, f, l); /* seq 3 was never acked; 1-2 were */
  CHECK_EQ_U(f[1], 3);
  CHECK_EQ_U(l[1], 3);
  ack_groups(bob, g[0], 3, g[1], 3);
  close(bob);
  close(alice);
  tl_server_kill(&srv, SIGTERM);
  tl_server_restart(&srv);
  bob = bob_v2(tb);
  tl_expect_nothing(bob, QUIET_MS); /* both groups acked, kept across the restart */
  close(bob);
}

/* Protocol 2, on either store: the sweep deletes a group's entries once
 * every member device has acknowledged them, and not before. Alice's
 * device has all four; with bob's at seq 2, only 1-2 go; once his is at
 * the end, the rest. (It must not wait for the TTL: protocol.md 11.8.) */
static void test_v2_history_deleted_when_all_have_it(void) {
  start();
  char ta[128], tb[128], g[2][24] = {"", ""};
  uint64_t f[2], l[2];
  int alice = user("alice", ta), bob = user("bob", tb);
  const char *m[] = {"bob"};
  close(bob);
  close(alice);
  alice = bob_v2(ta);
  create(alice, m, 1);
  snprintf(g[0], sizeof g[0], "%s", gid);
  send_group(alice, "a1", "one", 0, 2);
  send_group(alice, "a2", "two", 0, 3);
  send_group(alice, "a3", "three", 0, 4);
  ack_groups(alice, g[0], 4, NULL, 0);
  bob = bob_v2(tb);
  collect_streams(bob, 4, g, f, l); /* bob's device, signed in before, is owed all */
  CHECK_EQ_U(f[0], 1);
  CHECK_EQ_U(l[0], 4);
  ack_groups(bob, g[0], 2, NULL, 0);
  tl_wait_metric(&srv, HISTORY, 2, T_MS); /* one deletion up to bob's cursor: 3-4 stay */
  ack_groups(bob, g[0], 4, NULL, 0);
  tl_wait_metric(&srv, HISTORY, 0, T_MS);
  close(bob);
  close(alice);
}

/* GroupListGet lists my groups; after leaving, the group is gone from it. */
static void test_list_and_leave(void) {
  start();
  char t[128];
  int alice = user("alice", t), bob = user("bob", t);
  const char *m[] = {"bob"};
  create(alice, m, 1);
  Parley__GroupListGet lg = PARLEY__GROUP_LIST_GET__INIT;
  lg.ref = "l1";
  CHECK(tl_send_frame(bob, PARLEY__FRAME_TYPE__FRAME_GROUP_LIST_GET, &lg) == 0);
  Parley__GroupList *l = next_answer(bob, PARLEY__FRAME_TYPE__FRAME_GROUP_LIST, 0, NULL);
  if (!l)
    return;
  CHECK_EQ_U(l->n_groups, 1);
  if (l->n_groups == 1) {
    CHECK_STR(l->groups[0]->group, gid);
    CHECK_STR(l->groups[0]->name, "team");
    CHECK_EQ_I(l->groups[0]->my_role, MEMBER);
    CHECK_EQ_U(l->groups[0]->member_count, 2);
    CHECK_EQ_U(l->groups[0]->last_seq, 1);
  }
  protobuf_c_message_free_unpacked(&l->base, NULL);
  Parley__GroupInfo *g = update(bob, PARLEY__GROUP_OP__GROUP_LEAVE, NULL, 0, 0);
  CHECK_EQ_I(g->my_role, NONE);
  protobuf_c_message_free_unpacked(&g->base, NULL);
  CHECK(tl_send_frame(bob, PARLEY__FRAME_TYPE__FRAME_GROUP_LIST_GET, &lg) == 0);
  l = tl_expect(bob, PARLEY__FRAME_TYPE__FRAME_GROUP_LIST, T_MS);
  CHECK_EQ_U(l->n_groups, 0);
  protobuf_c_message_free_unpacked(&l->base, NULL);
  close(alice);
  close(bob);
}

/* Everything pending on fd (group events and messages) is read and acked. */
static void drain_ack(int fd) {
  void *m = NULL;
  uint64_t last = 0;
  int t;
  while ((t = tl_recv_frame(fd, QUIET_MS, &m)) > 0) {
    if (t == MESSAGE && ((Parley__Message *)m)->qid > last)
      last = ((Parley__Message *)m)->qid;
    protobuf_c_message_free_unpacked(m, NULL);
  }
  if (last)
    rc_ack_sync(fd, last); /* in the store's queue before what is asked next */
}

static void group_receipts(int fd, uint64_t seq, uint64_t members, uint64_t delivered, uint64_t read,
                           const char *delivered_by, const char *read_by) {
  Parley__GroupReceiptsGet g = PARLEY__GROUP_RECEIPTS_GET__INIT;
  g.ref = "r1";
  g.group = gid;
  g.seq = seq;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS_GET, &g) == 0);
  Parley__GroupReceipts *r = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS, T_MS);
  CHECK_STR(r->ref, "r1");
  CHECK_EQ_U(r->seq, seq);
  CHECK_EQ_U(r->members, members);
  CHECK_EQ_U(r->delivered, delivered);
  CHECK_EQ_U(r->read, read);
  CHECK(r->detailed);
  char got[128] = "";
  for (size_t i = 0; i < r->n_delivered_by; i++)
    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "", r->delivered_by[i]);
  CHECK_STR(got, delivered_by);
  got[0] = 0;
  for (size_t i = 0; i < r->n_read_by; i++)
    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "", r->read_by[i]);
  CHECK_STR(got, read_by);
  protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void mark_read_group(int fd, uint64_t seq) {
  Parley__MarkRead m = PARLEY__MARK_READ__INIT;
  m.ref = "m1";
  m.group = gid;
  m.seq = seq;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_MARK_READ, &m) == 0);
  Parley__Done *d = next_answer(fd, PARLEY__FRAME_TYPE__FRAME_DONE, 0, NULL);
  if (d)
    CHECK_STR(d->ref, "m1");
  if (d)
    protobuf_c_message_free_unpacked(&d->base, NULL);
}

static void next_group_receipt(int fd, int status, const char *by, uint64_t seq) {
  Parley__Receipt *r = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_RECEIPT, T_MS);
  char conv[32];
  snprintf(conv, sizeof conv, "g:%s", gid);
  CHECK_STR(r->conv, conv);
  CHECK_EQ_I(r->status, status);
  CHECK_STR(r->by, by);
  CHECK_EQ_U(r->seq, seq);
  CHECK_EQ_U(r->qid, 0); /* live, never stored */
  protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* Group receipts: each member's delivered and read watermark; the sender
 * gets live updates (small group) and the counts with names on request;
 * read on one device syncs the member's other devices; unread counts. */
static void test_group_receipts_and_read_sync(void) {
  start();
  char t[128];
  int alice = user("alice", t), bob = user("bob", t), carol = user("carol", t);
  int tablet = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_auth(tablet, PARLEY__FRAME_TYPE__FRAME_LOGIN, "bob", "secret-pass", "tablet", t), 0);
  const char *m[] = {"bob", "carol"};
  create(alice, m, 2);
  drain_ack(alice);
  drain_ack(bob);
  drain_ack(tablet);
  drain_ack(carol);
  tl_skip_events = 0;
  send_group(alice, "a1", "hello", 0, 2);
  rc_ack_entry(alice, pre_qid, gid, 2);
  group_receipts(alice, 2, 2, 0, 0, "", "");
  uint64_t q = next_msg(bob, "alice", "hello", 2);
  rc_ack_entry(bob, q, gid, 2);
  next_group_receipt(alice, PARLEY__RECEIPT_STATUS__RECEIPT_DELIVERED, "bob", 2);
  q = next_msg(tablet, "alice", "hello", 2);
  rc_ack_entry(tablet, q, gid, 2); /* bob's second device: no second receipt */
  tl_expect_nothing(alice, QUIET_MS);
  group_receipts(alice, 2, 2, 1, 0, "bob", "");
  mark_read_group(bob, 2);
  next_group_receipt(alice, PARLEY__RECEIPT_STATUS__RECEIPT_READ, "bob", 2);
  Parley__ReadSync *rs = tl_expect(tablet, PARLEY__FRAME_TYPE__FRAME_READ_SYNC, T_MS);
  char conv[32];
  snprintf(conv, sizeof conv, "g:%s", gid);
  CHECK_STR(rs->conv, conv);
  CHECK_EQ_U(rs->seq, 2);
  CHECK_EQ_U(rs->unread, 0);
  protobuf_c_message_free_unpacked(&rs->base, NULL);
  group_receipts(alice, 2, 2, 1, 1, "bob", "bob");
  /* carol has it too, later */
  q = next_msg(carol, "alice", "hello", 2);
  rc_ack_entry(carol, q, gid, 2);
  next_group_receipt(alice, PARLEY__RECEIPT_STATUS__RECEIPT_DELIVERED, "carol", 2);
  /* carol asks: the others are alice (the sender: sending reads) and bob */
  group_receipts(carol, 2, 2, 2, 2, "alice,bob", "alice,bob");
  /* unread: carol has read nothing of 4; alice sent the last one (read) */
  Parley__UnreadGet ug = PARLEY__UNREAD_GET__INIT;
  ug.ref = "u";
  CHECK(tl_send_frame(carol, PARLEY__FRAME_TYPE__FRAME_UNREAD_GET, &ug) == 0);
  Parley__Unread *u = tl_expect(carol, PARLEY__FRAME_TYPE__FRAME_UNREAD, T_MS);
  int found = 0;
  for (size_t i = 0; i < u->n_convs; i++)
    if (!strcmp(u->convs[i]->conv, conv)) {
      found = 1;
      CHECK_EQ_U(u->convs[i]->last_seq, 2);
      CHECK_EQ_U(u->convs[i]->unread, 2);
    }
  CHECK(found);
  protobuf_c_message_free_unpacked(&u->base, NULL);
  /* a stranger may not ask */
  int eve = user("eve", t);
  Parley__GroupReceiptsGet g = PARLEY__GROUP_RECEIPTS_GET__INIT;
  g.ref = "r9";
  g.group = gid;
  g.seq = 2;
  CHECK(tl_send_frame(eve, PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS_GET, &g) == 0);
  tl_expect_error(eve, PARLEY__ERROR_CODE__ERR_NOT_MEMBER, "r9", T_MS);
  tl_skip_events = 1;
  close(alice);
  close(bob);
  close(tablet);
  close(carol);
  close(eve);
}

/* "typing" in the current group. */
static void group_typing(int fd) {
  Parley__Typing ty = PARLEY__TYPING__INIT;
  ty.to = "";
  ty.group = gid;
  ty.typing = 1;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_TYPING, &ty) == 0);
}

/* Typing reaches the other members' connected devices, never stored; a
 * group above --group-detail gets none. */
static void typing_in_group(int want) {
  char t[128];
  int alice = user("alice", t), bob = user("bob", t), carol = user("carol", t);
  const char *m[] = {"bob", "carol"};
  create(alice, m, 2);
  drain_ack(bob);
  drain_ack(carol);
  group_typing(bob);
  if (want) {
    for (int i = 0; i < 2; i++) {
      Parley__TypingEvent *ev = tl_expect(i ? carol : alice, PARLEY__FRAME_TYPE__FRAME_TYPING_EVENT, T_MS);
      CHECK_STR(ev->from, "bob");
      char conv[32];
      snprintf(conv, sizeof conv, "g:%s", gid);
      CHECK_STR(ev->conv, conv);
      protobuf_c_message_free_unpacked(&ev->base, NULL);
    }
  }
  tl_expect_nothing(bob, QUIET_MS);
  tl_expect_nothing(carol, QUIET_MS);
  close(alice);
  close(bob);
  close(carol);
}

/* A member that connects after it joined gets the group's messages live,
 * on protocol 1 too: there, on PostgreSQL, the store gives no group entries
 * (docs/protocol.md 10.3), so only the group's live audience brings them,
 * and a fetch names the device's groups for that whatever the protocol.
 * Regression: on PostgreSQL a protocol 1 device that connected after it
 * joined was in no audience and got nothing. */
static void test_member_back_on_v1_gets_live(void) {
  start();
  char ta[128], tb[128];
  int alice = user("alice", ta), bob = user("bob", tb);
  const char *m[] = {"bob"};
  create(alice, m, 1);
  drain_ack(alice);
  drain_ack(bob);
  close(bob);
  bob = rc_open_v(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE, 1);
  CHECK_EQ_I(rc_resume(bob, tb), 0);
  drain_ack(bob);
  rc_store_barrier(bob); /* its first fetch (which names its groups) is done */
  send_group(alice, "a1", "hello", 0, 2);
  next_msg(bob, "alice", "hello", 2);
  close(bob);
  close(alice);
}

static void test_typing_in_group(void) {
  start();
  typing_in_group(1);
  tl_server_stop(&srv);
  tl_server_start(&srv, FAST " --group-detail 2");
  typing_in_group(0);
}

/* Regression (audit finding 10): a blocked user's typing in a shared group
 * reached the blocker. Carol blocks Bob: Bob's typing reaches Alice, not
 * Carol. The block is one-way (what the blocker receives): Carol's typing
 * still reaches Bob, as her messages do. */
static void test_typing_blocked_in_group(void) {
  char t[128];
  start();
  int alice = user("alice", t), bob = user("bob", t), carol = user("carol", t);
  const char *m[] = {"bob", "carol"};
  create(alice, m, 2);
  drain_ack(bob);
  drain_ack(carol);
  rc_block(carol, "bob", 1);
  group_typing(bob);
  Parley__TypingEvent *ev = tl_expect(alice, PARLEY__FRAME_TYPE__FRAME_TYPING_EVENT, T_MS);
  CHECK_STR(ev->from, "bob");
  protobuf_c_message_free_unpacked(&ev->base, NULL);
  tl_expect_nothing(carol, QUIET_MS);
  group_typing(carol);
  ev = tl_expect(bob, PARLEY__FRAME_TYPE__FRAME_TYPING_EVENT, T_MS);
  CHECK_STR(ev->from, "carol");
  protobuf_c_message_free_unpacked(&ev->base, NULL);
  close(alice);
  close(bob);
  close(carol);
}

int main(void) {
  run("test_roles_enforced", test_roles_enforced);
  run("test_history_and_removal", test_history_and_removal);
  run("test_offline_member_500_then_deleted", test_offline_member_500_then_deleted);
  run("test_list_and_leave", test_list_and_leave);
  run("test_v2_group_streams", test_v2_group_streams);
  run("test_v2_history_deleted_when_all_have_it", test_v2_history_deleted_when_all_have_it);
  run("test_group_receipts_and_read_sync", test_group_receipts_and_read_sync);
  run("test_member_back_on_v1_gets_live", test_member_back_on_v1_gets_live);
  run("test_typing_in_group", test_typing_in_group);
  run("test_typing_blocked_in_group", test_typing_blocked_in_group);
  return tl_summary();
}
