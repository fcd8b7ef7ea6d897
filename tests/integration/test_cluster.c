/* Two parleyd nodes on one bus (real nats-servers, three in a cluster, on
 * loopback): presence and typing seen across nodes, a device that logs in on
 * the other node closes its old connection, a node killed (kill -9) or
 * stopped (SIGSTOP) is declared dead and its users go offline within the
 * liveness window (and come back with a stopped node), and one NATS server
 * of three killed leaves the nodes working.
 *
 * Until the nodes share a store (--store postgresql://, test_cluster_pg),
 * each node has its own SQLite store and the test makes the same users, in
 * the same order, on both: ids then agree across the nodes, which is all
 * the bus carries. Exits 77 (skipped) without nats-server. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "natsrv.h"
#include "rawcl.h"
#include "testlib.h"

#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1 --presence-grace 300"
#define T_MS 10000
/* the liveness window (--bus-dead, 6 s by default) + the grace + a loaded machine */
#define DEAD_MS 20000

enum {
  REG = PARLEY__FRAME_TYPE__FRAME_REGISTER,
  LOGIN = PARLEY__FRAME_TYPE__FRAME_LOGIN,
  PRESENCE = PARLEY__FRAME_TYPE__FRAME_PRESENCE,
  DONE = PARLEY__FRAME_TYPE__FRAME_DONE,
  TYPING_EVENT = PARLEY__FRAME_TYPE__FRAME_TYPING_EVENT,
};

static tl_nats ns;
static tl_server na, nb;
/* the users' tokens on each node: [node][0 alice, 1 bob] */
static char tok[2][2][128];

/* Three NATS servers; node A on the first, node B on the second. */
static void cluster_up(void) { tl_nats_nodes_up(&ns, &na, &nb, FAST); }
static void cluster_down(void) { tl_nats_nodes_down(&ns, &na, &nb); }

/* alice and bob on both nodes, in that order (so with the same ids). */
static void users(void) {
  tl_server *nodes[2] = {&na, &nb};
  for (int n = 0; n < 2; n++)
    for (int u = 0; u < 2; u++) {
      int fd = rc_open(nodes[n]->port, PARLEY__CLIENT_KIND__KIND_MOBILE);
      CHECK_EQ_I(rc_auth(fd, REG, u ? "bob" : "alice", "secret-pass", "phone", tok[n][u]), 0);
      close(fd);
    }
}

static int back(tl_server *srv, const char *t) {
  int fd = rc_open(srv->port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_resume(fd, t), 0);
  return fd;
}

static void done(int fd, const char *ref) {
  Parley__Done *d = tl_expect(fd, DONE, T_MS);
  CHECK_STR(d->ref, ref);
  protobuf_c_message_free_unpacked(&d->base, NULL);
}

static void add_contact(int fd, const char *user) {
  Parley__Contacts c = PARLEY__CONTACTS__INIT;
  c.ref = "c";
  c.op = PARLEY__CONTACT_OP__CONTACT_ADD;
  c.user = (char *)user;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_CONTACTS, &c) == 0);
  Parley__ContactList *l = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_CONTACT_LIST, T_MS);
  protobuf_c_message_free_unpacked(&l->base, NULL);
}

/* The next Presence frame on fd (of alice) says online == want. */
static void expect_presence(int fd, int want, int timeout_ms) {
  Parley__Presence *p = tl_expect(fd, PRESENCE, timeout_ms);
  CHECK_STR(p->user, "alice");
  int on = p->online;
  protobuf_c_message_free_unpacked(&p->base, NULL);
  CHECK_EQ_I(on, want);
}

/* Asks until alice is seen offline (her registration's grace may run). */
static void wait_alice_offline(int fd) {
  for (uint64_t until = tl_now_ms() + T_MS;;) {
    Parley__PresenceGet g = PARLEY__PRESENCE_GET__INIT;
    g.ref = "g";
    g.user = "alice";
    CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_PRESENCE_GET, &g) == 0);
    Parley__Presence *p = tl_expect(fd, PRESENCE, T_MS);
    int on = p->online;
    protobuf_c_message_free_unpacked(&p->base, NULL);
    if (!on)
      return;
    CHECK(tl_now_ms() < until);
    usleep(50 * 1000);
  }
}

/* bob, on node B, follows alice (who has him as a contact, in both nodes'
 * stores), who is offline; returns his connection. */
static int bob_follows_alice(void) {
  users();
  for (int n = 0; n < 2; n++) {
    int a = back(n ? &nb : &na, tok[n][0]);
    add_contact(a, "bob");
    close(a);
  }
  int b = back(&nb, tok[1][1]);
  wait_alice_offline(b);
  Parley__PresenceSubscribe s = PARLEY__PRESENCE_SUBSCRIBE__INIT;
  char *who[1] = {"alice"};
  s.ref = "p";
  s.n_users = 1;
  s.users = who;
  CHECK(tl_send_frame(b, PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE, &s) == 0);
  done(b, "p");
  expect_presence(b, 0, T_MS); /* what a new follower is told first */
  return b;
}

/* alice comes online on A: bob hears it on B; she leaves: he hears that. */
static void test_presence_across_nodes(void) {
  cluster_up();
  int b = bob_follows_alice();
  int a = back(&na, tok[0][0]);
  expect_presence(b, 1, T_MS);
  close(a);
  expect_presence(b, 0, T_MS);
  close(b);
  cluster_down();
}

/* alice types on A to bob on B. */
static void test_typing_across_nodes(void) {
  cluster_up();
  users();
  int a = back(&na, tok[0][0]);
  int b = back(&nb, tok[1][1]);
  Parley__Typing t = PARLEY__TYPING__INIT;
  t.to = "bob";
  t.typing = 1;
  CHECK(tl_send_frame(a, PARLEY__FRAME_TYPE__FRAME_TYPING, &t) == 0);
  Parley__TypingEvent *ev = tl_expect(b, TYPING_EVENT, T_MS);
  CHECK_STR(ev->from, "alice");
  CHECK_STR(ev->conv, "dm:alice:bob");
  CHECK(ev->typing);
  protobuf_c_message_free_unpacked(&ev->base, NULL);
  CHECK(tl_metric(&na, "parley_bus_messages_sent_total") > 0);
  close(a);
  close(b);
  cluster_down();
}

/* alice's phone is connected to A and logs in on B: A closes its
 * connection; B's stays. */
static void test_takeover_across_nodes(void) {
  cluster_up();
  users();
  int old = back(&na, tok[0][0]);
  int fresh = rc_open(nb.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  char t[128];
  CHECK_EQ_I(rc_auth(fresh, LOGIN, "alice", "secret-pass", "phone", t), 0);
  CHECK_EQ_I(tl_wait_closed(old, T_MS), 1);
  CHECK(tl_log_count(&na, "logged in on node B") >= 1);
  Parley__Ping p = PARLEY__PING__INIT;
  CHECK(tl_send_frame(fresh, PARLEY__FRAME_TYPE__FRAME_PING, &p) == 0);
  void *pong = tl_expect(fresh, PARLEY__FRAME_TYPE__FRAME_PONG, T_MS);
  protobuf_c_message_free_unpacked(pong, NULL);
  close(old);
  close(fresh);
  cluster_down();
}

/* alice sends through A to bob, who is connected to B only: A publishes one
 * hint, B receives it (and bob's session reads its queue; what it finds
 * there needs a shared store: test_cluster_pg). */
static void test_hint_to_other_node(void) {
  cluster_up();
  users();
  int b = back(&nb, tok[1][1]);
  int a = back(&na, tok[0][0]);
  int err = 0;
  CHECK(rc_send_wait(a, "h1", "bob", "hint me", &err) > 0);
  tl_wait_metric(&na, "parley_bus_hints_sent_total", 1, T_MS);
  tl_wait_metric(&nb, "parley_bus_hints_received_total", 1, T_MS);
  CHECK_EQ_I(tl_metric(&nb, "parley_bus_hints_sent_total"), 0);
  close(a);
  close(b);
  cluster_down();
}

/* A node killed with kill -9: the other declares it dead within the
 * liveness window and its users go offline for their followers. */
static void test_node_killed(void) {
  cluster_up();
  int b = bob_follows_alice();
  int a = back(&na, tok[0][0]);
  expect_presence(b, 1, T_MS);
  uint64_t t0 = tl_now_ms();
  tl_server_kill(&na, SIGKILL);
  expect_presence(b, 0, DEAD_MS);
  CHECK(tl_now_ms() - t0 >= 5000); /* by the liveness window (6 s), not sooner */
  CHECK_EQ_I(tl_metric(&nb, "parley_bus_dead_nodes_total"), 1);
  close(a);
  close(b);
  cluster_down();
}

/* A node stopped (SIGSTOP) keeps its TCP connections: only its silence
 * tells. Its users go offline; when it runs again it is alive again and
 * says what it serves, so alice is online again for bob. */
static void test_node_stopped(void) {
  cluster_up();
  int b = bob_follows_alice();
  int a = back(&na, tok[0][0]);
  expect_presence(b, 1, T_MS);
  CHECK(kill(na.pid, SIGSTOP) == 0);
  expect_presence(b, 0, DEAD_MS);
  CHECK_EQ_I(tl_metric(&nb, "parley_bus_dead_nodes_total"), 1);
  CHECK(kill(na.pid, SIGCONT) == 0);
  expect_presence(b, 1, DEAD_MS);
  tl_wait_metric(&nb, "parley_bus_nodes_alive", 1, T_MS);
  close(a);
  close(b);
  cluster_down();
}

/* The NATS server node A uses is killed: A reconnects to another of the
 * three (learnt from the cluster) and typing still crosses. */
static void test_nats_server_killed(void) {
  cluster_up();
  users();
  int a = back(&na, tok[0][0]);
  int b = back(&nb, tok[1][1]);
  tl_nats_kill(&ns, 0);
  tl_wait_metric(&na, "parley_bus_reconnects_total", 1, T_MS);
  tl_wait_metric(&na, "parley_bus_connected", 1, T_MS);
  CHECK_EQ_I(tl_metric(&nb, "parley_bus_reconnects_total"), 0);
  Parley__Typing t = PARLEY__TYPING__INIT;
  t.to = "bob";
  t.typing = 1;
  /* a typing event sent before the route to B's server is back may be lost
   * (it is ephemeral): send again until one arrives */
  Parley__TypingEvent *ev = NULL;
  for (uint64_t until = tl_now_ms() + T_MS; !ev && tl_now_ms() < until;) {
    t.typing = !t.typing; /* an off always passes the rate limit; on after off too */
    CHECK(tl_send_frame(a, PARLEY__FRAME_TYPE__FRAME_TYPING, &t) == 0);
    void *m = NULL;
    int type = tl_recv_frame(b, 500, &m);
    if (type == TYPING_EVENT)
      ev = m;
    else if (m)
      protobuf_c_message_free_unpacked(m, NULL);
  }
  CHECK(ev != NULL);
  CHECK_STR(ev->from, "alice");
  protobuf_c_message_free_unpacked(&ev->base, NULL);
  close(a);
  close(b);
  cluster_down();
}

int main(void) {
  if (!tl_nats_bin()) {
    printf("skipped: nats-server is not installed (scripts/deps.sh --test)\n");
    return 77;
  }
  RUN(test_presence_across_nodes);
  RUN(test_typing_across_nodes);
  RUN(test_takeover_across_nodes);
  RUN(test_hint_to_other_node);
  RUN(test_node_killed);
  RUN(test_node_stopped);
  RUN(test_nats_server_killed);
  return tl_summary();
}
