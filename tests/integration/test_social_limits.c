/* Abuse limits against the real parleyd over raw sockets (audit finding 7,
 * docs/protocol.md 10.7 and 11.8): a stranger cannot fill an offline user's
 * queue (one sender's share of it), a burst of Sends past the user's rate
 * is refused with RATE_LIMITED and nothing stored, a group's history for an
 * offline member is bounded, and who may add a user to a group is the
 * user's setting (everyone / contacts / nobody). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rawcl.h"
#include "testlib.h"

#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1"
#define T_MS 10000

enum {
  SEND_ACK = PARLEY__FRAME_TYPE__FRAME_SEND_ACK,
  ERROR = PARLEY__FRAME_TYPE__FRAME_ERROR,
  INFO = PARLEY__FRAME_TYPE__FRAME_GROUP_INFO,
  QUEUE_FULL = PARLEY__ERROR_CODE__ERR_QUEUE_FULL,
  RATE_LIMITED = PARLEY__ERROR_CODE__ERR_RATE_LIMITED,
  NOT_ALLOWED = PARLEY__ERROR_CODE__ERR_NOT_ALLOWED,
};

static tl_server srv;

static void run(const char *name, void (*fn)(void)) { tl_run_server(&srv, name, fn); }

static int user(const char *name, char tok[128]) { return rc_register(srv.port, name, tok); }
static int back(const char *tok) { return rc_back(srv.port, tok); }

/* The answers to n Sends (other frames skipped): acks counted in *acked,
 * errors by code in *full and *limited (any other error fails the test);
 * the largest retry_after_ms seen in *retry (if not NULL). */
static void answers(int fd, int n, int *acked, int *full, int *limited, uint32_t *retry) {
  for (int got = 0; got < n;) {
    void *m = NULL;
    int t = tl_recv_frame(fd, T_MS, &m);
    CHECK(t > 0);
    if (t == SEND_ACK) {
      (*acked)++;
      got++;
    } else if (t == ERROR) {
      Parley__Error *e = m;
      int code = (int)e->code;
      CHECK(code == QUEUE_FULL || code == RATE_LIMITED);
      CHECK(e->ref[0] != 0); /* ref = the Send's id */
      *(code == QUEUE_FULL ? full : limited) += 1;
      if (retry && e->retry_after_ms > *retry)
        *retry = e->retry_after_ms;
      got++;
    }
    protobuf_c_message_free_unpacked(m, NULL);
  }
}

/* The audit's attack: with --max-queue 200, a stranger's 200 pipelined
 * sends filled Bob's queue and then his friend got QUEUE_FULL. Now the
 * stranger may hold half of it (--max-queue-share 50): the rest of his
 * sends are refused, and the friend's still go through. */
static void test_stranger_cannot_fill_queue(void) {
  char tb[128], t[128];
  tl_server_start(&srv, FAST " --max-queue 200 --send-rate 0");
  close(user("bob", tb)); /* offline from now on */
  int friend = user("alice", t), stranger = user("mallory", t);
  for (int i = 0; i < 200; i++) {
    char id[16];
    snprintf(id, sizeof id, "x%d", i);
    rc_send(stranger, id, "bob", "buy now");
  }
  int acked = 0, full = 0, limited = 0;
  answers(stranger, 200, &acked, &full, &limited, NULL);
  CHECK_EQ_I(acked, 100);
  CHECK_EQ_I(full, 100);
  int err = 0;
  CHECK(rc_send_wait(friend, "f1", "bob", "lunch?", &err) > 0);
  CHECK_EQ_I(err, 0);
  CHECK_EQ_I(tl_metric(&srv, "parley_store_message_queue_entries"), 101); /* /metrics: what is stored */
  int bob = back(tb);
  Parley__Message *got[128];
  size_t n = rc_collect(bob, got, 101, T_MS); /* each within T_MS: a loaded server may pause */
  CHECK_EQ_U(n, 101);
  tl_expect_nothing(bob, 500); /* and no more */
  if (n == 101)
    CHECK_STR(got[100]->from, "alice");
  rc_free_msgs(got, n);
  close(bob);
  close(friend);
  close(stranger);
}

/* A burst past --send-burst gets RATE_LIMITED (ref = id, retry_after_ms
 * set), nothing of it stored; the same id later goes through. */
static void test_send_burst_rate_limited(void) {
  char t[128];
  tl_server_start(&srv, FAST " --send-rate 5 --send-burst 20");
  close(user("bob", t));
  int a = user("alice", t);
  uint64_t t0 = tl_now_ms();
  for (int i = 0; i < 60; i++) {
    char id[16];
    snprintf(id, sizeof id, "b%d", i);
    rc_send(a, id, "bob", "hi");
  }
  int acked = 0, full = 0, limited = 0;
  uint32_t retry = 0;
  answers(a, 60, &acked, &full, &limited, &retry);
  uint64_t refilled = (tl_now_ms() - t0) * 5 / 1000 + 1;  /* at most, on a slow machine */
  CHECK(acked >= 20 && (uint64_t)acked <= 20 + refilled); /* the burst, and what came back meanwhile */
  CHECK(limited > 0);
  CHECK_EQ_I(acked + limited, 60);
  CHECK_EQ_I(full, 0);
  CHECK(retry > 0 && retry <= 1000);
  CHECK_EQ_I(tl_metric(&srv, "parley_store_messages"), acked); /* the refused ones were not stored */
  usleep((retry + 50) * 1000); /* as told: wait retry_after_ms, then the same id */
  int err = 0;
  CHECK(rc_send_wait(a, "b59", "bob", "hi", &err) > 0);
  CHECK_EQ_I(err, 0);
  close(a);
}

static char gid[24];

static void create(int fd, const char *member, int want_err) {
  Parley__GroupCreate c = PARLEY__GROUP_CREATE__INIT;
  char *members[1] = {(char *)member};
  c.ref = "c1";
  c.name = "team";
  c.description = "";
  c.members = members;
  c.n_members = 1;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE, &c) == 0);
  if (want_err) {
    tl_expect_error(fd, want_err, "c1", T_MS);
    return;
  }
  Parley__GroupInfo *g = rc_expect(fd, INFO, T_MS);
  CHECK(g && g->base.descriptor == &parley__group_info__descriptor);
  snprintf(gid, sizeof gid, "%s", g->group);
  protobuf_c_message_free_unpacked(&g->base, NULL);
}

/* GROUP_ADD of who; returns the member count after it, or 0 after the
 * Error want_err. */
static uint64_t add(int fd, const char *who, int want_err) {
  Parley__GroupUpdate u = PARLEY__GROUP_UPDATE__INIT;
  u.ref = "a1";
  u.group = gid;
  u.op = PARLEY__GROUP_OP__GROUP_ADD;
  u.user = (char *)who;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE, &u) == 0);
  Parley__GroupInfo *g = rc_expect(fd, INFO, T_MS);
  if (!g)
    return 0;
  uint64_t count = 0;
  if (g->base.descriptor == &parley__error__descriptor) {
    CHECK_EQ_I(((Parley__Error *)g)->code, want_err);
    CHECK_STR(((Parley__Error *)g)->ref, "a1");
  } else {
    CHECK_EQ_I(want_err, 0);
    count = g->member_count;
  }
  protobuf_c_message_free_unpacked(&g->base, NULL);
  return count;
}

/* 400 messages of 64 KiB to a group with an offline member used to be
 * kept in full for him; now the group's history keeps the group's share of
 * a queue (--max-queue 200, 50 %: 100), and he gets the newest 100, in
 * order, when he returns. */
static void test_group_history_bounded(void) {
  char tb[128], t[128];
  tl_server_start(&srv, FAST " --max-queue 200 --send-rate 0 --durability process");
  close(user("bob", tb));
  int a = user("alice", t);
  create(a, "bob", 0);
  static uint8_t body[64 * 1024];
  memset(body, 'x', sizeof body);
  for (int sent = 0; sent < 400;) {
    int window = 0;
    for (; window < 20; window++, sent++) {
      char id[16];
      snprintf(id, sizeof id, "g%d", sent);
      Parley__Send s = PARLEY__SEND__INIT;
      s.id = id;
      s.to = "";
      s.group = gid;
      s.body.data = body;
      s.body.len = sizeof body;
      CHECK(tl_send_frame(a, PARLEY__FRAME_TYPE__FRAME_SEND, &s) == 0);
    }
    int acked = 0, full = 0, limited = 0;
    answers(a, window, &acked, &full, &limited, NULL);
    CHECK_EQ_I(acked, window); /* an offline member never blocks the group */
  }
  long long kept = tl_metric(&srv, "parley_store_group_history");
  CHECK(kept > 0 && kept <= 100);
  int bob = back(tb);
  Parley__Message *got[128];
  size_t n = rc_collect(bob, got, 100, T_MS); /* each within T_MS: a loaded server may pause */
  CHECK_EQ_U(n, 100);
  tl_expect_nothing(bob, 500); /* and no more */
  for (size_t i = 1; i < n; i++)
    CHECK_EQ_U(got[i]->seq, got[i - 1]->seq + 1);
  if (n)
    CHECK_EQ_U(got[n - 1]->seq, 401); /* the newest (seq 1 is the group's creation) */
  rc_free_msgs(got, n);
  close(bob);
  close(a);
}

/* The current group's members as its member fd sees them (GroupUpdate
 * GROUP_INFO): "name:role,..." sorted by name, in out. */
static void members(int fd, char *out, size_t cap) {
  Parley__GroupUpdate u = PARLEY__GROUP_UPDATE__INIT;
  u.ref = "i1";
  u.group = gid;
  u.op = PARLEY__GROUP_OP__GROUP_INFO;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE, &u) == 0);
  Parley__GroupInfo *g = rc_expect(fd, INFO, T_MS);
  CHECK(g && g->base.descriptor == &parley__group_info__descriptor);
  out[0] = '\0';
  for (size_t i = 0; i < g->n_members; i++)
    snprintf(out + strlen(out), cap - strlen(out), "%s%s:%d", i ? "," : "", g->members[i]->user,
             (int)g->members[i]->role);
  CHECK_EQ_U(g->member_count, g->n_members);
  protobuf_c_message_free_unpacked(&g->base, NULL);
}

/* Settings{group_add: who} (0: only read); the answer must say want. */
static void group_add_setting(int fd, int who, int want) {
  Parley__Settings m = PARLEY__SETTINGS__INIT;
  m.ref = "s";
  m.group_add = (Parley__GroupAdd)who;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_SETTINGS, &m) == 0);
  /* (group Messages before it are skipped) */
  Parley__SettingsState *st = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_SETTINGS_STATE, T_MS);
  CHECK(st && st->base.descriptor == &parley__settings_state__descriptor);
  CHECK_EQ_I(st->group_add, want);
  protobuf_c_message_free_unpacked(&st->base, NULL);
}

/* Bob says who may add him: nobody refuses a GroupCreate naming him as a
 * whole (no group is made) and a GROUP_ADD (he is not a member); contacts
 * lets only users in his contact list add him. */
static void test_group_add_setting(void) {
  char t[128], tb[128];
  tl_server_start(&srv, FAST);
  int a = user("alice", t), bob = user("bob", tb), carol = user("carol", t);
  group_add_setting(bob, 0, PARLEY__GROUP_ADD__GROUP_ADD_EVERYONE); /* the default */
  group_add_setting(bob, PARLEY__GROUP_ADD__GROUP_ADD_NOBODY, PARLEY__GROUP_ADD__GROUP_ADD_NOBODY);
  create(a, "bob", NOT_ALLOWED);
  CHECK_EQ_I(tl_metric(&srv, "parley_store_groups"), 0); /* no group was made at all */
  create(a, "carol", 0);
  CHECK_EQ_U(add(a, "bob", NOT_ALLOWED), 0);
  char who[128];
  members(a, who, sizeof who);
  CHECK_STR(who, "alice:3,carol:1"); /* bob is not in it */
  group_add_setting(bob, PARLEY__GROUP_ADD__GROUP_ADD_CONTACTS, PARLEY__GROUP_ADD__GROUP_ADD_CONTACTS);
  CHECK_EQ_U(add(a, "bob", NOT_ALLOWED), 0); /* alice is not in his contacts */
  Parley__Contacts c = PARLEY__CONTACTS__INIT;
  c.ref = "k";
  c.op = PARLEY__CONTACT_OP__CONTACT_ADD;
  c.user = "alice";
  CHECK(tl_send_frame(bob, PARLEY__FRAME_TYPE__FRAME_CONTACTS, &c) == 0);
  Parley__ContactList *l = tl_expect(bob, PARLEY__FRAME_TYPE__FRAME_CONTACT_LIST, T_MS);
  protobuf_c_message_free_unpacked(&l->base, NULL);
  CHECK_EQ_U(add(a, "bob", 0), 3);
  Parley__Settings bad = PARLEY__SETTINGS__INIT;
  bad.ref = "bad";
  bad.group_add = (Parley__GroupAdd)9;
  CHECK(tl_send_frame(bob, PARLEY__FRAME_TYPE__FRAME_SETTINGS, &bad) == 0);
  Parley__Error *e = rc_expect(bob, ERROR, T_MS); /* after the event that added him */
  CHECK(e != NULL);
  CHECK_EQ_I(e->code, PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT);
  CHECK_STR(e->ref, "bad");
  protobuf_c_message_free_unpacked(&e->base, NULL);
  group_add_setting(bob, 0, PARLEY__GROUP_ADD__GROUP_ADD_CONTACTS); /* unchanged by the bad request */
  members(a, who, sizeof who);
  CHECK_STR(who, "alice:3,bob:1,carol:1");
  close(a);
  close(bob);
  close(carol);
  /* kept across a restart (kill -9: what was answered was committed) */
  tl_server_kill(&srv, SIGKILL);
  tl_server_restart(&srv);
  bob = back(tb);
  group_add_setting(bob, 0, PARLEY__GROUP_ADD__GROUP_ADD_CONTACTS);
  close(bob);
}

int main(void) {
  run("stranger_cannot_fill_queue", test_stranger_cannot_fill_queue);
  run("send_burst_rate_limited", test_send_burst_rate_limited);
  run("group_history_bounded", test_group_history_bounded);
  run("group_add_setting", test_group_add_setting);
  return tl_summary();
}
