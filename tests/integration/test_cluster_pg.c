/* Messages across nodes that share a PostgreSQL store (--store
 * postgresql://): sent through node A, received on node B, which learns of
 * it by a hint over the bus and reads it from the store; a hint lost while
 * B is cut from the bus is made good when B is back (every local session
 * reads its queue again). Real PostgreSQL and nats-servers, started here.
 *
 * Exits 77 (skipped) while parleyd has no PostgreSQL backend (its --help does
 * not mention postgresql://), or without nats-server or PostgreSQL. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "natsrv.h"
#include "pgsrv.h"
#include "rawcl.h"
#include "testlib.h"

#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1"
#define T_MS 10000
/* a NATS server that hangs is left after two missed pings (2 s apart) */
#define CUT_MS 30000

static tl_nats ns;
static tl_pg pg;
static tl_server na, nb;

static int pg_backend(void) {
  const char *bin = getenv("PARLEYD");
  char cmd[600], line[512];
  int found = 0;
  if (!bin)
    return 0;
  snprintf(cmd, sizeof cmd, "'%s' --help 2>&1", bin);
  FILE *f = popen(cmd, "r");
  while (f && fgets(line, sizeof line, f))
    found |= strstr(line, "postgresql://") != NULL;
  if (f)
    pclose(f);
  return found;
}

/* PostgreSQL, three NATS servers, and the two nodes on that one store. */
static void cluster_up(void) {
  char extra[512];
  tl_pg_start(&pg);
  snprintf(extra, sizeof extra, FAST " --store %s", pg.conninfo);
  tl_nats_nodes_up(&ns, &na, &nb, extra);
}

static void cluster_down(void) {
  tl_nats_nodes_down(&ns, &na, &nb);
  tl_pg_stop(&pg);
}

static void expect_msg(int fd, const char *id, const char *body, int timeout_ms) {
  Parley__Message *m = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_MESSAGE, timeout_ms);
  CHECK_STR(m->from, "alice");
  CHECK_STR(m->id, id);
  CHECK(m->body.len == strlen(body) && memcmp(m->body.data, body, m->body.len) == 0);
  protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* Is the node's process still running (not exited, not a zombie)? */
static int node_running(const tl_server *s) {
  char path[64], st = 0;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)s->pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  int ok = fscanf(f, "%*d (%*[^)]) %c", &st) == 1;
  fclose(f);
  return ok && st != 'Z';
}

/* expect_msg on a node's client, for up to timeout_ms, failing at once if
 * the node died meanwhile: a crash is not a message late. */
static void expect_msg_from(const tl_server *node, int fd, const char *id, const char *body, int timeout_ms) {
  for (uint64_t end = tl_now_ms() + (uint64_t)timeout_ms;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 200) > 0)
      break;
    if (!node_running(node))
      tl__fail(__FILE__, __LINE__, "node %s (pid %d) died while its client waited (its log: %s.log)", node->addr,
               (int)node->pid, node->dir);
    if (tl_now_ms() >= end)
      tl__fail(__FILE__, __LINE__, "no message within %d ms", timeout_ms);
  }
  expect_msg(fd, id, body, T_MS);
}

/* alice sends through A; bob, connected to B, gets it once. */
static void test_message_across_nodes(void) {
  char ta[128], tb[128];
  cluster_up();
  int a = rc_open(na.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_auth(a, PARLEY__FRAME_TYPE__FRAME_REGISTER, "alice", "secret-pass", "phone", ta), 0);
  int b = rc_open(nb.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_auth(b, PARLEY__FRAME_TYPE__FRAME_REGISTER, "bob", "secret-pass", "phone", tb), 0);
  int err = 0;
  CHECK(rc_send_wait(a, "m1", "bob", "hello from A", &err) > 0);
  expect_msg(b, "m1", "hello from A", T_MS);
  CHECK(tl_metric(&nb, "parley_bus_hints_received_total") >= 1);
  tl_expect_nothing(b, 500); /* once */
  close(a);
  close(b);
  cluster_down();
}

/* B's NATS server hangs (SIGSTOP): the hint for bob is lost on the way.
 * B leaves that server, reconnects to another, and bob's session reads its
 * queue: the message arrives all the same. */
static void test_lost_hint_recovered(void) {
  char ta[128], tb[128];
  cluster_up();
  int a = rc_open(na.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_auth(a, PARLEY__FRAME_TYPE__FRAME_REGISTER, "alice", "secret-pass", "phone", ta), 0);
  int b = rc_open(nb.port, PARLEY__CLIENT_KIND__KIND_BOT); /* a long heartbeat: no pings needed meanwhile */
  CHECK_EQ_I(rc_auth(b, PARLEY__FRAME_TYPE__FRAME_REGISTER, "bob", "secret-pass", "phone", tb), 0);
  CHECK(kill(ns.pid[1], SIGSTOP) == 0);
  int err = 0;
  CHECK(rc_send_wait(a, "m2", "bob", "sent while B was cut off", &err) > 0);
  expect_msg_from(&nb, b, "m2", "sent while B was cut off", CUT_MS);
  CHECK(tl_metric(&nb, "parley_bus_reconnects_total") >= 1);
  kill(ns.pid[1], SIGCONT);
  close(a);
  close(b);
  cluster_down();
}

int main(void) {
  if (!pg_backend()) {
    printf("skipped: parleyd has no PostgreSQL backend yet (--store postgresql://)\n");
    return 77;
  }
  if (!tl_nats_bin() || !tl_pg_bindir()) {
    printf("skipped: nats-server or PostgreSQL is not installed (scripts/deps.sh --test)\n");
    return 77;
  }
  RUN(test_message_across_nodes);
  RUN(test_lost_hint_recovered);
  return tl_summary();
}
