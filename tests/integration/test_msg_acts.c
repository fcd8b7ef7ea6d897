/* Message actions against the real parleyd over raw sockets (protocol.md
 * 14): replies, reactions, edits, deletes for everyone and for me, and
 * disappearing messages, with two devices per user (one offline while it
 * happens), in 1:1 and in a group; the windows running out; the word
 * filter and blocking on edits and reactions. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rawcl.h"
#include "testlib.h"

#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1"
#define T_MS 10000
#define QUIET_MS 300

enum {
  REG = PARLEY__FRAME_TYPE__FRAME_REGISTER,
  LOGIN = PARLEY__FRAME_TYPE__FRAME_LOGIN,
  SEND = PARLEY__FRAME_TYPE__FRAME_SEND,
  ACK = PARLEY__FRAME_TYPE__FRAME_SEND_ACK,
  MESSAGE = PARLEY__FRAME_TYPE__FRAME_MESSAGE,
  INFO = PARLEY__FRAME_TYPE__FRAME_GROUP_INFO,
  NONE = PARLEY__ACT_KIND__ACT_NONE,
  REACTION = PARLEY__ACT_KIND__ACT_REACTION,
  EDIT = PARLEY__ACT_KIND__ACT_EDIT,
  DELETE = PARLEY__ACT_KIND__ACT_DELETE,
  TIMER = PARLEY__ACT_KIND__ACT_TIMER,
  DELETE_FOR_ME = PARLEY__ACT_KIND__ACT_DELETE_FOR_ME,
};

static tl_server srv;
static char gid[24];
static int forward_next; /* act() marks its next plain message forwarded */

static void run(const char *name, void (*fn)(void)) { tl_run_server(&srv, name, fn); }

static int dev(int type, const char *user, const char *device, char tok[128]) {
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_auth(fd, type, user, "secret-pass", device, tok), 0);
  return fd;
}

static int back(const char *tok) {
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_resume(fd, tok), 0);
  return fd;
}

/* In a group the sending device gets its entry too, before the ack (one
 * stream for every member device): skipped here. */
static uint64_t group_answer(int fd, const char *id, int want_err) {
  void *m = NULL;
  int t;
  while ((t = tl_recv_frame(fd, T_MS, &m)) == MESSAGE)
    protobuf_c_message_free_unpacked(m, NULL);
  uint64_t seq = 0;
  CHECK_EQ_I(t, want_err ? PARLEY__FRAME_TYPE__FRAME_ERROR : ACK);
  if (t == PARLEY__FRAME_TYPE__FRAME_ERROR) {
    CHECK_EQ_I(((Parley__Error *)m)->code, want_err);
    CHECK_STR(((Parley__Error *)m)->ref, id);
  } else if (t == ACK) {
    seq = ((Parley__SendAck *)m)->seq;
  }
  if (m)
    protobuf_c_message_free_unpacked(m, NULL);
  return seq;
}

/* Sends an act (to a user, or to gid when to is NULL); returns the
 * SendAck's seq, or 0 after the Error want_err (checked). */
static uint64_t act(int fd, const char *id, const char *to, int kind, uint64_t target, const char *body,
                    int want_err) {
  Parley__Send s = PARLEY__SEND__INIT;
  Parley__Act a = PARLEY__ACT__INIT;
  s.id = (char *)id;
  s.to = (char *)(to ? to : "");
  s.group = to ? "" : gid;
  s.body.data = (uint8_t *)body;
  s.body.len = strlen(body);
  s.client_ts = 1;
  a.kind = (Parley__ActKind)kind;
  if (kind == TIMER)
    a.timer_s = (uint32_t)target;
  else if (kind == NONE)
    a.reply_to = target;
  else
    a.target = target;
  a.forwarded = kind == NONE && forward_next;
  forward_next = 0;
  if (kind == DELETE_FOR_ME)
    a.target_conv = "dm:alice:bob";
  s.act = &a;
  CHECK(tl_send_frame(fd, SEND, &s) == 0);
  if (!to)
    return group_answer(fd, id, want_err);
  if (want_err) {
    tl_expect_error(fd, want_err, id, T_MS);
    return 0;
  }
  Parley__SendAck *k = tl_expect(fd, ACK, T_MS);
  uint64_t seq = k ? k->seq : 0;
  if (k)
    protobuf_c_message_free_unpacked(&k->base, NULL);
  return seq;
}

static uint64_t say(int fd, const char *id, const char *to, const char *body) {
  int err = 0;
  uint64_t seq = to ? rc_send_wait(fd, id, to, body, &err) : act(fd, id, NULL, NONE, 0, body, 0);
  CHECK_EQ_I(err, 0);
  return seq;
}

/* The next Message must be seq with this act kind, target and body. */
static Parley__Message *next(int fd, uint64_t seq, int kind, uint64_t target, const char *body) {
  Parley__Message *m = tl_expect(fd, MESSAGE, T_MS);
  if (!m)
    return NULL;
  CHECK_EQ_U(m->seq, seq);
  CHECK_EQ_I(m->act ? (int)m->act->kind : NONE, kind);
  uint64_t t = !m->act         ? 0
               : kind == NONE  ? m->act->reply_to
               : kind == TIMER ? m->act->timer_s
                               : m->act->target;
  CHECK_EQ_U(t, target);
  CHECK_EQ_U(m->body.len, strlen(body));
  CHECK(m->body.len == strlen(body) && (!m->body.len || memcmp(m->body.data, body, m->body.len) == 0));
  return m;
}

static void next_free(int fd, uint64_t seq, int kind, uint64_t target, const char *body) {
  Parley__Message *m = next(fd, seq, kind, target, body);
  if (m)
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

#define THUMBS "\xf0\x9f\x91\x8d"

/* A reply, a reaction changed and removed, an edit: each reaches the online
 * device at once and the offline one, in order, when it comes back; a
 * retry is answered as a duplicate; the wrong sender is refused. */
static void test_reply_react_edit(void) {
  char ta[128], tb[128], tl[128];
  tl_server_start(&srv, FAST);
  int a = dev(REG, "alice", "phone", ta);
  int b = dev(REG, "bob", "phone", tb);
  close(dev(LOGIN, "bob", "laptop", tl)); /* bob's laptop: offline throughout */
  CHECK_EQ_U(say(a, "m1", "bob", "hello"), 1);
  next_free(b, 1, NONE, 0, "hello");
  CHECK_EQ_U(act(b, "r1", "alice", NONE, 1, "hi back", 0), 2); /* a reply quoting seq 1 */
  next_free(a, 2, NONE, 1, "hi back");
  CHECK_EQ_U(act(b, "x1", "alice", REACTION, 1, THUMBS, 0), 3);
  next_free(a, 3, REACTION, 1, THUMBS);
  CHECK_EQ_U(act(b, "x2", "alice", REACTION, 1, "\xe2\x9d\xa4", 0), 4); /* changed */
  next_free(a, 4, REACTION, 1, "\xe2\x9d\xa4");
  CHECK_EQ_U(act(b, "x3", "alice", REACTION, 1, "", 0), 5); /* removed */
  next_free(a, 5, REACTION, 1, "");
  CHECK_EQ_U(act(a, "e1", "bob", EDIT, 1, "hello, bob", 0), 6);
  next_free(b, 6, EDIT, 1, "hello, bob");
  CHECK_EQ_U(act(a, "e1", "bob", EDIT, 1, "hello, bob", 0), 6); /* a retry: the same seq, nothing new */
  act(b, "e2", "alice", EDIT, 1, "mine now", PARLEY__ERROR_CODE__ERR_NOT_AUTHOR);
  act(b, "r2", "alice", NONE, 99, "to nothing", PARLEY__ERROR_CODE__ERR_NO_TARGET);
  act(b, "x4", "alice", REACTION, 42, THUMBS, PARLEY__ERROR_CODE__ERR_NO_TARGET);
  act(b, "x5", "alice", REACTION, 1, "two words", PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT);
  tl_expect_nothing(a, QUIET_MS); /* nothing refused was stored */
  tl_expect_nothing(b, QUIET_MS);
  int l = back(tl); /* the laptop gets it all, in order */
  next_free(l, 1, NONE, 0, "hello");
  next_free(l, 2, NONE, 1, "hi back");
  next_free(l, 3, REACTION, 1, THUMBS);
  next_free(l, 4, REACTION, 1, "\xe2\x9d\xa4");
  next_free(l, 5, REACTION, 1, "");
  next_free(l, 6, EDIT, 1, "hello, bob");
  tl_expect_nothing(l, QUIET_MS);
  close(l);
  close(a);
  close(b);
}

/* Delete for everyone: the online device is told; the offline one never
 * receives the message, only the delete; a second delete, or a reaction
 * to it, finds nothing. Delete for me goes to my other devices only. */
static void test_delete(void) {
  char ta[128], tb[128], tl[128], tal[128];
  tl_server_start(&srv, FAST);
  int a = dev(REG, "alice", "phone", ta);
  close(dev(LOGIN, "alice", "laptop", tal));
  int b = dev(REG, "bob", "phone", tb);
  close(dev(LOGIN, "bob", "laptop", tl));
  CHECK_EQ_U(say(a, "m1", "bob", "oops"), 1);
  next_free(b, 1, NONE, 0, "oops");
  CHECK_EQ_U(act(a, "d1", "bob", DELETE, 1, "", 0), 2);
  next_free(b, 2, DELETE, 1, "");
  act(a, "d2", "bob", DELETE, 1, "", PARLEY__ERROR_CODE__ERR_NO_TARGET);
  act(b, "x1", "alice", REACTION, 1, THUMBS, PARLEY__ERROR_CODE__ERR_NO_TARGET);
  CHECK_EQ_U(say(b, "m2", "alice", "bob's"), 3);
  next_free(a, 3, NONE, 0, "bob's");
  act(a, "d3", "bob", DELETE, 3, "", PARLEY__ERROR_CODE__ERR_NOT_AUTHOR);
  act(a, "f1", "bob", DELETE_FOR_ME, 3, "", PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT); /* only to myself */
  CHECK_EQ_U(act(a, "f2", "alice", DELETE_FOR_ME, 3, "", 0), 1); /* seq 1 of dm:alice:alice */
  int l = back(tl);
  next_free(l, 2, DELETE, 1, ""); /* the deleted message itself left the laptop's queue */
  next_free(l, 3, NONE, 0, "bob's");
  tl_expect_nothing(l, QUIET_MS);
  int al = back(tal);
  Parley__Message *m = next(al, 2, DELETE, 1, "");
  if (m)
    protobuf_c_message_free_unpacked(&m->base, NULL);
  next_free(al, 3, NONE, 0, "bob's");
  m = next(al, 1, DELETE_FOR_ME, 3, "");
  if (m) {
    CHECK_STR(m->conv, "dm:alice:alice");
    CHECK_STR(m->act->target_conv, "dm:alice:bob");
    protobuf_c_message_free_unpacked(&m->base, NULL);
  }
  tl_expect_nothing(b, QUIET_MS); /* bob never hears of alice's delete for me */
  close(al);
  close(l);
  close(a);
  close(b);
}

/* The windows of edit (3 s) and delete (5 s) run out. */
static void test_windows_expire(void) {
  char ta[128], tb[128];
  tl_server_start(&srv, FAST " --edit-window 3 --delete-window 5");
  int a = dev(REG, "alice", "phone", ta);
  int b = dev(REG, "bob", "phone", tb);
  uint64_t t0 = tl_now_ms();
  say(a, "m1", "bob", "one");
  say(a, "m2", "bob", "two");
  CHECK_EQ_U(act(a, "e1", "bob", EDIT, 1, "one!", 0), 3);
  while (tl_now_ms() < t0 + 3500) /* the edit window of seq 1 has passed */
    usleep(50000);
  act(a, "e2", "bob", EDIT, 1, "one!!", PARLEY__ERROR_CODE__ERR_WINDOW_CLOSED);
  CHECK_EQ_U(act(a, "d1", "bob", DELETE, 1, "", 0), 4); /* deleting still may */
  while (tl_now_ms() < t0 + 5500)
    usleep(50000);
  act(a, "d2", "bob", DELETE, 2, "", PARLEY__ERROR_CODE__ERR_WINDOW_CLOSED);
  next_free(b, 1, NONE, 0, "one"), next_free(b, 2, NONE, 0, "two");
  next_free(b, 3, EDIT, 1, "one!"), next_free(b, 4, DELETE, 1, "");
  CHECK_EQ_U(act(b, "x1", "alice", REACTION, 2, THUMBS, 0), 5); /* reactions have no window */
  close(a);
  close(b);
}

/* Edits and reactions pass the word filter and the block like messages. */
static void test_filter_and_block(void) {
  char ta[128], tb[128], words[256];
  char *dir = tl_tempdir();
  snprintf(words, sizeof words, "%s/words.txt", dir);
  FILE *f = fopen(words, "w");
  CHECK(f != NULL);
  if (!f)
    return;
  fputs("badword\n", f);
  fclose(f);
  char args[512];
  snprintf(args, sizeof args, FAST " --filter-words %s", words);
  tl_server_start(&srv, args);
  int a = dev(REG, "alice", "phone", ta);
  int b = dev(REG, "bob", "phone", tb);
  say(a, "m1", "bob", "fine");
  next_free(b, 1, NONE, 0, "fine");
  act(a, "e1", "bob", EDIT, 1, "a badword here", PARLEY__ERROR_CODE__ERR_FILTERED);
  act(b, "x1", "alice", REACTION, 1, "badword", PARLEY__ERROR_CODE__ERR_FILTERED);
  forward_next = 1;
  act(a, "w1", "bob", NONE, 0, "forwarded badword", PARLEY__ERROR_CODE__ERR_FILTERED);
  forward_next = 1;
  CHECK_EQ_U(act(a, "w2", "bob", NONE, 0, "forwarded", 0), 2);
  Parley__Message *m = next(b, 2, NONE, 0, "forwarded");
  if (m) {
    CHECK(m->act && m->act->forwarded);
    protobuf_c_message_free_unpacked(&m->base, NULL);
  }
  rc_block(b, "alice", 1);
  act(a, "e2", "bob", EDIT, 1, "fine!", PARLEY__ERROR_CODE__ERR_BLOCKED);
  act(a, "r1", "bob", NONE, 1, "a reply", PARLEY__ERROR_CODE__ERR_BLOCKED);
  tl_expect_nothing(b, QUIET_MS);
  close(a);
  close(b);
  tl_rmrf(dir);
  free(dir);
}

static void create_group(int fd, const char **members, size_t n) {
  Parley__GroupCreate c = PARLEY__GROUP_CREATE__INIT;
  c.ref = "c1";
  c.name = "team";
  c.members = (char **)members;
  c.n_members = n;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE, &c) == 0);
  void *m = NULL;
  int t;
  while ((t = tl_recv_frame(fd, T_MS, &m)) == MESSAGE) /* the "created" event */
    protobuf_c_message_free_unpacked(m, NULL);
  CHECK_EQ_I(t, INFO);
  if (t == INFO)
    snprintf(gid, sizeof gid, "%s", ((Parley__GroupInfo *)m)->group);
  if (m)
    protobuf_c_message_free_unpacked(m, NULL);
}

/* The group's next entry must be a Message of this act (skipping nothing). */
static Parley__Message *gnext(int fd, uint64_t seq, int kind, uint64_t target, const char *body) {
  Parley__Message *m = next(fd, seq, kind, target, body);
  if (m)
    CHECK_STR(m->group, gid);
  return m;
}

/* In a group: reactions of several members, an admin deletes a member's
 * message (a member may not), only admins set the timer, which is
 * announced and then stamps each message with when it vanishes; a deleted
 * entry reaches a device that reads the history later as a tombstone. */
static void test_group(void) {
  char ta[128], tb[128], tc[128], tcl[128];
  tl_server_start(&srv, FAST " --test-disappear 2");
  int a = dev(REG, "alice", "phone", ta);
  int b = dev(REG, "bob", "phone", tb);
  int c = dev(REG, "carol", "phone", tc);
  close(dev(LOGIN, "carol", "laptop", tcl));
  const char *members[] = {"bob", "carol"};
  create_group(a, members, 2); /* seq 1: created */
  next_free(b, 1, NONE, 0, ""), next_free(c, 1, NONE, 0, "");
  CHECK_EQ_U(say(b, "m1", NULL, "from bob"), 2);
  next_free(a, 2, NONE, 0, "from bob"), next_free(c, 2, NONE, 0, "from bob");
  CHECK_EQ_U(act(a, "x1", NULL, REACTION, 2, THUMBS, 0), 3);
  next_free(b, 3, REACTION, 2, THUMBS), next_free(c, 3, REACTION, 2, THUMBS);
  CHECK_EQ_U(act(c, "x2", NULL, REACTION, 2, THUMBS, 0), 4);
  next_free(b, 4, REACTION, 2, THUMBS), next_free(a, 4, REACTION, 2, THUMBS);
  act(c, "d1", NULL, DELETE, 2, "", PARLEY__ERROR_CODE__ERR_NOT_AUTHOR);
  CHECK_EQ_U(act(a, "d2", NULL, DELETE, 2, "", 0), 5); /* the owner may */
  next_free(b, 5, DELETE, 2, ""), next_free(c, 5, DELETE, 2, "");
  act(b, "t1", NULL, TIMER, 86400, "", PARLEY__ERROR_CODE__ERR_FORBIDDEN);
  CHECK_EQ_U(act(a, "t2", NULL, TIMER, 86400, "", 0), 6);
  next_free(b, 6, TIMER, 86400, ""), next_free(c, 6, TIMER, 86400, "");
  uint64_t before = tl_now_ms();
  CHECK_EQ_U(say(b, "m2", NULL, "soon gone"), 7);
  Parley__Message *m = gnext(c, 7, NONE, 0, "soon gone");
  if (m) { /* --test-disappear 2: two seconds after it was sent */
    CHECK(m->act != NULL && m->act->vanish_at == m->server_ts + 2000);
    CHECK(m->server_ts + 1000 >= before);
    protobuf_c_message_free_unpacked(&m->base, NULL);
  }
  next_free(a, 7, NONE, 0, "soon gone");
  while (tl_now_ms() < before + 2500) /* seq 7 has vanished */
    usleep(50000);
  int cl = back(tcl); /* the laptop reads the history now */
  next_free(cl, 1, NONE, 0, "");
  next_free(cl, 2, DELETE, 2, ""); /* the tombstone of bob's message */
  next_free(cl, 3, REACTION, 2, THUMBS);
  next_free(cl, 4, REACTION, 2, THUMBS);
  next_free(cl, 5, DELETE, 2, "");
  next_free(cl, 6, TIMER, 86400, "");
  tl_expect_nothing(cl, QUIET_MS); /* not seq 7: it vanished on the server too */
  close(cl);
  close(a);
  close(b);
  close(c);
}

/* 1:1 disappearing messages: either side sets the timer; a device offline
 * past a message's vanish time never receives it; off again ends it. */
static void test_disappearing_dm(void) {
  char ta[128], tb[128], tl[128];
  tl_server_start(&srv, FAST " --test-disappear 2");
  int a = dev(REG, "alice", "phone", ta);
  int b = dev(REG, "bob", "phone", tb);
  close(dev(LOGIN, "bob", "laptop", tl));
  CHECK_EQ_U(act(b, "t1", "alice", TIMER, 604800, "", 0), 1); /* bob sets it */
  next_free(a, 1, TIMER, 604800, "");
  act(a, "t2", "alice", TIMER, 3600, "", PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT); /* not a setting */
  uint64_t before = tl_now_ms();
  rc_send(a, "m1", "bob", "secret");
  Parley__SendAck *k = tl_expect(a, ACK, T_MS); /* the sender learns when it vanishes too */
  uint64_t vanish = 0;
  if (k) {
    CHECK_EQ_U(k->seq, 2);
    CHECK_EQ_U(k->vanish_at, k->server_ts + 2000);
    vanish = k->vanish_at;
    protobuf_c_message_free_unpacked(&k->base, NULL);
  }
  rc_send(a, "m1", "bob", "secret"); /* a retry's SendAck is the original's, vanish_at too */
  k = tl_expect(a, ACK, T_MS);
  if (k) {
    CHECK_EQ_U(k->seq, 2);
    CHECK_EQ_U(k->vanish_at, vanish);
    protobuf_c_message_free_unpacked(&k->base, NULL);
  }
  Parley__Message *m = next(b, 2, NONE, 0, "secret");
  if (m) {
    CHECK(m->act != NULL && m->act->vanish_at == m->server_ts + 2000);
    protobuf_c_message_free_unpacked(&m->base, NULL);
  }
  CHECK_EQ_U(act(a, "t3", "bob", TIMER, 0, "", 0), 3); /* alice turns it off */
  next_free(b, 3, TIMER, 0, "");
  while (tl_now_ms() < before + 2500)
    usleep(50000);
  /* seq 2 keeps its own 2 s though the timer is off now: no target */
  act(b, "xv", "alice", REACTION, 2, THUMBS, PARLEY__ERROR_CODE__ERR_NO_TARGET);
  int l = back(tl);
  next_free(l, 1, TIMER, 604800, "");
  next_free(l, 3, TIMER, 0, ""); /* seq 2 vanished before the laptop came */
  tl_expect_nothing(l, QUIET_MS);
  close(l);
  close(a);
  close(b);
}

/* next, then acks it (and waits until the server has read the Ack). */
static void next_ack(int fd, uint64_t seq, int kind, uint64_t target, const char *body) {
  Parley__Message *m = next(fd, seq, kind, target, body);
  if (m) {
    rc_ack_sync(fd, m->qid);
    protobuf_c_message_free_unpacked(&m->base, NULL);
  }
}

/* A target outlives its message row: once every device has acked it (the
 * row is gone) and across a restart, it can still be edited, reacted to
 * and deleted for everyone; an action is never a target itself. */
static void test_targets_outlive_rows(void) {
  char ta[128], tb[128];
  int st;
  tl_server_start(&srv, FAST);
  int a = dev(REG, "alice", "phone", ta);
  int b = dev(REG, "bob", "phone", tb);
  CHECK_EQ_U(say(a, "m1", "bob", "hello"), 1);
  next_ack(b, 1, NONE, 0, "hello"); /* bob's phone was its only target: the row goes */
  CHECK_EQ_U(act(b, "x1", "alice", REACTION, 1, THUMBS, 0), 2);
  next_ack(a, 2, REACTION, 1, THUMBS);
  close(a);
  close(b);
  CHECK_EQ_I(tl_server_kill_wait(&srv, SIGTERM, T_MS, &st), 1);
  tl_server_restart(&srv);
  a = back(ta);
  b = back(tb);
  CHECK_EQ_U(act(a, "e1", "bob", EDIT, 1, "hello, bob", 0), 3);
  next_free(b, 3, EDIT, 1, "hello, bob");
  act(a, "x2", "bob", REACTION, 2, THUMBS, PARLEY__ERROR_CODE__ERR_NO_TARGET); /* a reaction */
  act(b, "x3", "alice", REACTION, 3, THUMBS, PARLEY__ERROR_CODE__ERR_NO_TARGET); /* an edit */
  act(b, "e2", "alice", EDIT, 1, "bob's now", PARLEY__ERROR_CODE__ERR_NOT_AUTHOR);
  CHECK_EQ_U(act(a, "d1", "bob", DELETE, 1, "", 0), 4);
  next_free(b, 4, DELETE, 1, "");
  act(b, "x4", "alice", REACTION, 1, THUMBS, PARLEY__ERROR_CODE__ERR_NO_TARGET);
  act(a, "e3", "bob", EDIT, 1, "again", PARLEY__ERROR_CODE__ERR_NO_TARGET);
  tl_expect_nothing(a, QUIET_MS);
  tl_expect_nothing(b, QUIET_MS);
  close(a);
  close(b);
}

int main(void) {
  run("reply_react_edit", test_reply_react_edit);
  run("delete", test_delete);
  run("windows_expire", test_windows_expire);
  run("filter_and_block", test_filter_and_block);
  run("group", test_group);
  run("disappearing_dm", test_disappearing_dm);
  run("targets_outlive_rows", test_targets_outlive_rows);
  return tl_summary();
}
