/* Contacts, presence and last seen, blocking and typing against the real
 * parleyd over raw sockets (docs/protocol.md 11.5-11.7): presence only for
 * contacts, offline events after the grace with the last-seen time, flaps
 * coalesced into nothing, last-seen privacy, a blocked user learns nothing
 * (no presence, no typing; sends refused), typing is never stored and is
 * rate-limited. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rawcl.h"
#include "testlib.h"

#define GRACE_MS 300
#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1 --presence-grace 300"
#define T_MS 10000
#define QUIET_MS 600 /* longer than the grace */

enum {
  REG = PARLEY__FRAME_TYPE__FRAME_REGISTER,
  PRESENCE = PARLEY__FRAME_TYPE__FRAME_PRESENCE,
  DONE = PARLEY__FRAME_TYPE__FRAME_DONE,
  TYPING_EVENT = PARLEY__FRAME_TYPE__FRAME_TYPING_EVENT,
};

static tl_server srv;

static void run(const char *name, void (*fn)(void)) { tl_run_server(&srv, name, fn); }

static int reg(const char *user, char tok[128]) {
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_auth(fd, REG, user, "secret-pass", "phone", tok), 0);
  return fd;
}

static int back(const char *tok) {
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_resume(fd, tok), 0);
  return fd;
}

static void done(int fd, const char *ref) {
  Parley__Done *d = tl_expect(fd, DONE, T_MS);
  CHECK_STR(d->ref, ref);
  protobuf_c_message_free_unpacked(&d->base, NULL);
}

/* Contacts request; returns the list as "a,b,c". */
static char *contacts(int fd, int op, const char *user) {
  static char out[256];
  Parley__Contacts c = PARLEY__CONTACTS__INIT;
  c.ref = "c";
  c.op = (Parley__ContactOp)op;
  c.user = (char *)(user ? user : "");
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_CONTACTS, &c) == 0);
  Parley__ContactList *l = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_CONTACT_LIST, T_MS);
  out[0] = 0;
  for (size_t i = 0; l && i < l->n_users; i++) {
    strcat(out, i ? "," : "");
    strcat(out, l->users[i]);
  }
  if (l)
    protobuf_c_message_free_unpacked(&l->base, NULL);
  return out;
}

static void block(int fd, const char *user, int on) {
  Parley__Block b = PARLEY__BLOCK__INIT;
  b.ref = "b";
  b.user = (char *)user;
  b.blocked = on;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_BLOCK, &b) == 0);
  done(fd, "b");
}

static void last_seen_setting(int fd, int vis) {
  Parley__Settings m = PARLEY__SETTINGS__INIT;
  m.ref = "s";
  m.last_seen = (Parley__LastSeen)vis;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_SETTINGS, &m) == 0);
  Parley__SettingsState *st = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_SETTINGS_STATE, T_MS);
  CHECK_EQ_I(st->last_seen, vis);
  protobuf_c_message_free_unpacked(&st->base, NULL);
}

/* The next frame must be a Presence of user; fills the three fields. */
static void presence(int fd, const char *user, int *visible, int *online, uint64_t *last_seen) {
  Parley__Presence *p = tl_expect(fd, PRESENCE, T_MS);
  if (!p)
    return;
  CHECK_STR(p->user, user);
  *visible = p->visible;
  *online = p->online;
  *last_seen = p->last_seen;
  protobuf_c_message_free_unpacked(&p->base, NULL);
}

static void subscribe(int fd, const char *user) {
  Parley__PresenceSubscribe s = PARLEY__PRESENCE_SUBSCRIBE__INIT;
  char *users[1] = {(char *)user};
  s.ref = "p";
  s.n_users = 1;
  s.users = users;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE, &s) == 0);
  done(fd, "p");
}

static void get(int fd, const char *user, int *visible, int *online, uint64_t *last_seen) {
  Parley__PresenceGet g = PARLEY__PRESENCE_GET__INIT;
  g.ref = "g";
  g.user = (char *)user;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_PRESENCE_GET, &g) == 0);
  presence(fd, user, visible, online, last_seen);
}

/* Asks (PresenceGet) until user is seen offline (past the grace, which a
 * loaded server may reach late), or fails after T_MS. For a follower who
 * may see user's online status. */
static void get_offline(int fd, const char *user, int *visible, int *online, uint64_t *last_seen) {
  uint64_t until = tl_now_ms() + T_MS;
  for (;;) {
    get(fd, user, visible, online, last_seen);
    if (!*online || tl_now_ms() >= until)
      break;
    usleep(20 * 1000);
  }
  CHECK(!*online);
}

static void typing(int fd, const char *to, int on) {
  Parley__Typing t = PARLEY__TYPING__INIT;
  t.to = (char *)to;
  t.typing = on;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_TYPING, &t) == 0);
}

/* Alice and Bob on a fresh server; Bob has Alice as a contact and she
 * follows him (and saw him online). */
static void alice_follows_bob(char ta[128], char tb[128], int *a, int *b) {
  int vis, on;
  uint64_t seen;
  *a = reg("alice", ta);
  *b = reg("bob", tb);
  CHECK_STR(contacts(*b, PARLEY__CONTACT_OP__CONTACT_ADD, "alice"), "alice");
  subscribe(*a, "bob");
  presence(*a, "bob", &vis, &on, &seen);
  CHECK(vis && on);
}

static void test_contacts(void) {
  char t[128];
  tl_server_start(&srv, FAST);
  int a = reg("alice", t);
  close(reg("bob", t));
  close(reg("carol", t));
  CHECK_STR(contacts(a, PARLEY__CONTACT_OP__CONTACT_LIST, NULL), "");
  CHECK_STR(contacts(a, PARLEY__CONTACT_OP__CONTACT_ADD, "carol"), "carol");
  CHECK_STR(contacts(a, PARLEY__CONTACT_OP__CONTACT_ADD, "bob"), "bob,carol");
  CHECK_STR(contacts(a, PARLEY__CONTACT_OP__CONTACT_ADD, "bob"), "bob,carol"); /* twice: once */
  CHECK_STR(contacts(a, PARLEY__CONTACT_OP__CONTACT_REMOVE, "carol"), "bob");
  Parley__Contacts c = PARLEY__CONTACTS__INIT;
  c.ref = "x";
  c.op = PARLEY__CONTACT_OP__CONTACT_ADD;
  c.user = "nobody";
  CHECK(tl_send_frame(a, PARLEY__FRAME_TYPE__FRAME_CONTACTS, &c) == 0);
  tl_expect_error(a, PARLEY__ERROR_CODE__ERR_UNKNOWN_PEER, "x", T_MS);
  c.user = "alice";
  CHECK(tl_send_frame(a, PARLEY__FRAME_TYPE__FRAME_CONTACTS, &c) == 0);
  tl_expect_error(a, PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT, "x", T_MS);
  close(a);
}

/* Alice follows Bob (she is in his contacts): online at once, offline
 * after the grace with his last-seen time; a flap shows nothing; Carol, not
 * a contact, sees nothing at all. */
static void test_presence_events_and_flaps(void) {
  char ta[128], tb[128], tc[128];
  int vis, on;
  uint64_t seen;
  tl_server_start(&srv, FAST);
  int a = reg("alice", ta);
  int b = reg("bob", tb);
  int c = reg("carol", tc);
  CHECK_STR(contacts(b, PARLEY__CONTACT_OP__CONTACT_ADD, "alice"), "alice");
  subscribe(a, "bob");
  presence(a, "bob", &vis, &on, &seen);
  CHECK(vis && on);
  subscribe(c, "bob");
  presence(c, "bob", &vis, &on, &seen);
  CHECK(!vis && !on && seen == 0);
  uint64_t t0 = tl_now_ms();
  close(b);
  presence(a, "bob", &vis, &on, &seen);
  CHECK(vis && !on);
  CHECK(seen >= t0 - 1000 && seen <= tl_now_ms());
  CHECK(tl_now_ms() - t0 >= GRACE_MS - 50); /* not before the grace */
  b = back(tb);
  presence(a, "bob", &vis, &on, &seen);
  CHECK(vis && on);
  for (int i = 0; i < 3; i++) { /* a flapping phone */
    close(b);
    usleep(50 * 1000);
    b = back(tb);
  }
  tl_expect_nothing(a, QUIET_MS);
  tl_expect_nothing(c, QUIET_MS);
  close(a);
  close(b);
  close(c);
}

/* Regression (audit finding 9): a device that signs in again while its old
 * connection is open (the server closes the old one, protocol.md 7.4) used
 * to stay "online" for good once the new connection closed too, with no
 * last seen. Each cycle: Bob's phone connects a second time, the first
 * connection is closed by the server, the second closes; Alice, following
 * him, must see him offline with his last-seen time, and online again when
 * he comes back. */
static void test_presence_after_replaced_connection(void) {
  char ta[128], tb[128];
  int vis, on;
  uint64_t seen;
  tl_server_start(&srv, FAST);
  int a, b;
  alice_follows_bob(ta, tb, &a, &b);
  for (int cycle = 0; cycle < 3; cycle++) {
    int b2 = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
    CHECK_EQ_I(rc_auth(b2, PARLEY__FRAME_TYPE__FRAME_LOGIN, "bob", "secret-pass", "phone", tb), 0);
    CHECK(tl_wait_closed(b, T_MS)); /* the older connection of the device is closed */
    close(b);
    uint64_t t0 = tl_now_ms();
    close(b2);
    presence(a, "bob", &vis, &on, &seen);
    CHECK(vis && !on);
    CHECK(seen >= t0 - 1000 && seen <= tl_now_ms());
    get(a, "bob", &vis, &on, &seen);
    CHECK(vis && !on && seen > 0);
    b = back(tb);
    presence(a, "bob", &vis, &on, &seen);
    CHECK(vis && on);
  }
  close(a);
  close(b);
}

/* Last seen: NOBODY hides it from contacts too; EVERYONE shows it to
 * non-contacts (without their online status). */
static void test_last_seen_privacy(void) {
  char ta[128], tb[128], tc[128];
  int vis, on;
  uint64_t seen;
  tl_server_start(&srv, FAST);
  int a = reg("alice", ta);
  int b = reg("bob", tb);
  int c = reg("carol", tc);
  CHECK_STR(contacts(b, PARLEY__CONTACT_OP__CONTACT_ADD, "alice"), "alice");
  last_seen_setting(b, PARLEY__LAST_SEEN__LAST_SEEN_NOBODY);
  close(b);
  get_offline(a, "bob", &vis, &on, &seen);
  CHECK(vis && !on && seen == 0);
  b = back(tb);
  last_seen_setting(b, PARLEY__LAST_SEEN__LAST_SEEN_CONTACTS);
  close(b);
  get_offline(a, "bob", &vis, &on, &seen);
  CHECK(vis && !on && seen > 0);
  get(c, "bob", &vis, &on, &seen);
  CHECK(!vis && !on && seen == 0);
  b = back(tb);
  last_seen_setting(b, PARLEY__LAST_SEEN__LAST_SEEN_EVERYONE);
  close(b);
  get_offline(a, "bob", &vis, &on, &seen); /* alice, a contact, sees when he is offline */
  get(c, "bob", &vis, &on, &seen);
  CHECK(!vis && !on && seen > 0);
  close(a);
  close(c);
}

/* Bob blocks Alice: her sends are refused with BLOCKED and nothing is
 * stored, she sees no presence and no last seen, her typing does not reach
 * him; unblocked, all works again. */
static void test_blocking(void) {
  char ta[128], tb[128];
  int vis, on, err = 0;
  uint64_t seen;
  tl_server_start(&srv, FAST);
  int a, b;
  alice_follows_bob(ta, tb, &a, &b);
  block(b, "alice", 1);
  CHECK_EQ_U(rc_send_wait(a, "m1", "bob", "hello?", &err), 0);
  CHECK_EQ_I(err, PARLEY__ERROR_CODE__ERR_BLOCKED);
  CHECK_EQ_I(tl_metric(&srv, "parley_store_messages"), 0); /* nothing stored */
  get(a, "bob", &vis, &on, &seen);
  CHECK(!vis && !on && seen == 0);
  typing(a, "bob", 1);
  close(b);
  tl_expect_nothing(a, QUIET_MS); /* her subscription went with the block: no offline event */
  b = back(tb);
  tl_expect_nothing(b, QUIET_MS); /* no typing reached him */
  block(b, "alice", 0);
  CHECK(rc_send_wait(a, "m2", "bob", "hi", &err) > 0);
  CHECK_EQ_I(err, 0);
  close(a);
  close(b);
}

/* Typing reaches the peer's online devices, rate-limited, never stored. */
static void test_typing(void) {
  char ta[128], tb[128];
  tl_server_start(&srv, FAST);
  int a = reg("alice", ta);
  int b = reg("bob", tb);
  typing(a, "bob", 1);
  Parley__TypingEvent *ev = tl_expect(b, TYPING_EVENT, T_MS);
  CHECK_STR(ev->from, "alice");
  CHECK_STR(ev->conv, "dm:alice:bob");
  CHECK(ev->typing);
  CHECK(ev->expires_ms >= 1000);
  protobuf_c_message_free_unpacked(&ev->base, NULL);
  typing(a, "bob", 1); /* within the interval: dropped */
  typing(a, "bob", 0); /* stopping always passes */
  ev = tl_expect(b, TYPING_EVENT, T_MS);
  CHECK(!ev->typing);
  protobuf_c_message_free_unpacked(&ev->base, NULL);
  tl_expect_nothing(b, QUIET_MS);
  /* never stored (/metrics: what the store holds) */
  CHECK_EQ_I(tl_metric(&srv, "parley_store_messages"), 0);
  CHECK_EQ_I(tl_metric(&srv, "parley_store_events"), 0);
  CHECK_EQ_I(tl_metric(&srv, "parley_store_queue_entries"), 0);
  typing(a, "nobody", 1);
  tl_expect_error(a, PARLEY__ERROR_CODE__ERR_UNKNOWN_PEER, "nobody", T_MS);
  close(a);
  close(b);
}

int main(void) {
  run("contacts", test_contacts);
  run("presence_events_and_flaps", test_presence_events_and_flaps);
  run("presence_after_replaced_connection", test_presence_after_replaced_connection);
  run("last_seen_privacy", test_last_seen_privacy);
  run("blocking", test_blocking);
  run("typing", test_typing);
  return tl_summary();
}
