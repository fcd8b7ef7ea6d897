/* Messages across nodes that share a PostgreSQL store (--store
 * postgresql://): sent through node A, received on node B, which learns of
 * it by a hint over the bus and reads it from the store; a hint lost while
 * B is cut from the bus is made good when B is back (every local session
 * reads its queue again); the operator's ban and deletion through one node
 * close the user's sessions on both. Real PostgreSQL and nats-servers,
 * started here.
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
      tl__fail(__FILE__, __LINE__, "node %s (pid %d) died while its client waited (its log: %s.log)",
               node->addr, (int)node->pid, node->dir);
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
  /* bob's first fetch done: on a loaded machine it ran after m2's commit
   * and read it, with no hint needed (the check below then failed) */
  rc_store_barrier(b);
  /* stopped for good before the send: a kill alone let B's server, not yet
   * stopped on a loaded machine, forward m2's hint (m2 came within 5 ms,
   * with no reconnect, and the check below failed) */
  tl_sigstop(ns.pid[1], T_MS);
  int err = 0;
  CHECK(rc_send_wait(a, "m2", "bob", "sent while B was cut off", &err) > 0);
  expect_msg_from(&nb, b, "m2", "sent while B was cut off", CUT_MS);
  CHECK(tl_metric(&nb, "parley_bus_reconnects_total") >= 1);
  kill(ns.pid[1], SIGCONT);
  close(a);
  close(b);
  cluster_down();
}

/* Regression: bob (protocol 1) on B. alice's message through A commits
 * qid 1 while B is cut from the bus (its hint is lost); carol's through B
 * commits qid 2 and is pushed to bob at once. bob's cursor took the push
 * as next and skipped qid 1 for good (the refetch after B's return reads
 * after qid 2): a protocol 1 session's queue was not counted gap-free on
 * PostgreSQL. The gap must make it read the store first, so bob gets
 * alice's message, then carol's. */
static void test_lost_hint_then_local_push(void) {
  char ta[128], tb[128], tc[128];
  cluster_up();
  int a = rc_open(na.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(a, PARLEY__FRAME_TYPE__FRAME_REGISTER, "alice", "secret-pass", "phone", ta), 0);
  int c = rc_open(nb.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(c, PARLEY__FRAME_TYPE__FRAME_REGISTER, "carol", "secret-pass", "phone", tc), 0);
  int b = rc_open_v(nb.port, PARLEY__CLIENT_KIND__KIND_BOT, 1);
  CHECK_EQ_I(rc_auth(b, PARLEY__FRAME_TYPE__FRAME_REGISTER, "bob", "secret-pass", "phone", tb), 0);
  tl_sigstop(ns.pid[1], T_MS);
  int err = 0;
  CHECK(rc_send_wait(a, "m1", "bob", "from A, its hint lost", &err) > 0);
  CHECK(rc_send_wait(c, "m2", "bob", "from B, pushed", &err) > 0);
  Parley__Message *m = tl_expect(b, PARLEY__FRAME_TYPE__FRAME_MESSAGE, T_MS);
  CHECK_STR(m->from, "alice");
  CHECK_STR(m->id, "m1");
  CHECK_EQ_U(m->qid, 1);
  protobuf_c_message_free_unpacked(&m->base, NULL);
  m = tl_expect(b, PARLEY__FRAME_TYPE__FRAME_MESSAGE, T_MS);
  CHECK_STR(m->from, "carol");
  CHECK_STR(m->id, "m2");
  CHECK_EQ_U(m->qid, 2);
  protobuf_c_message_free_unpacked(&m->base, NULL);
  kill(ns.pid[1], SIGCONT);
  close(a);
  close(b);
  close(c);
  cluster_down();
}

/* An admin token for node s (parleyd admin-token create in its data dir). */
static void admin_token(const tl_server *s, char tok[128]) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "'%s' admin-token create ops --data '%s' 2>/dev/null", getenv("PARLEYD"), s->dir);
  FILE *f = popen(cmd, "r"); /* the token alone on standard output */
  CHECK(f != NULL);
  tok[0] = '\0';
  if (f && fgets(tok, 128, f))
    tok[strcspn(tok, "\r\n")] = '\0';
  if (f)
    pclose(f);
  CHECK(strncmp(tok, "padm_", 5) == 0);
}

/* method path on s's admin API; its HTTP status (the answer into buf). */
static int admin_call(const tl_server *s, const char *tok, const char *method, const char *path, char *buf,
                      size_t cap) {
  char req[600];
  int fd = tl_connect(s->http_port);
  CHECK(fd >= 0);
  int n = snprintf(
      req, sizeof req,
      "%s %s HTTP/1.1\r\nHost: node\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
      "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
      method, path, tok);
  CHECK(tl_write_all(fd, req, (size_t)n) == 0);
  tl_read_all(fd, buf, cap, T_MS);
  close(fd);
  return strncmp(buf, "HTTP/1.1 ", 9) == 0 ? atoi(buf + 9) : -1;
}

/* The operator bans bob and deletes carol through node A: their sessions
 * close on every node, B's too (the signed-out devices are kicked on the
 * bus), and neither signs in again on either node. Regression: the admin
 * API answered INVALID_ARGUMENT on PostgreSQL. */
static void test_admin_across_nodes(void) {
  char tok[128], t1[128], t2[128], t3[128], buf[4096];
  cluster_up();
  admin_token(&na, tok);
  int b1 = rc_open(nb.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(b1, PARLEY__FRAME_TYPE__FRAME_REGISTER, "bob", "secret-pass", "phone", t1), 0);
  int b2 = rc_open(na.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(b2, PARLEY__FRAME_TYPE__FRAME_LOGIN, "bob", "secret-pass", "laptop", t2), 0);
  int c1 = rc_open(nb.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(c1, PARLEY__FRAME_TYPE__FRAME_REGISTER, "carol", "secret-pass", "phone", t3), 0);
  CHECK_EQ_I(admin_call(&na, tok, "POST", "/admin/users/bob/disable", buf, sizeof buf), 200);
  CHECK(strstr(buf, "\"signed_out\": 2") || strstr(buf, "\"signed_out\":2"));
  CHECK(tl_wait_closed(b1, T_MS)); /* on B, which heard of it on the bus */
  CHECK(tl_wait_closed(b2, T_MS)); /* on A */
  int x = rc_open(nb.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(x, PARLEY__FRAME_TYPE__FRAME_LOGIN, "bob", "secret-pass", "phone", t1),
             PARLEY__ERROR_CODE__ERR_ACCOUNT_DISABLED);
  close(x);
  CHECK_EQ_I(admin_call(&na, tok, "DELETE", "/admin/users/carol", buf, sizeof buf), 200);
  CHECK(tl_wait_closed(c1, T_MS));
  x = rc_open(nb.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(x, PARLEY__FRAME_TYPE__FRAME_LOGIN, "carol", "secret-pass", "phone", t3),
             PARLEY__ERROR_CODE__ERR_BAD_CREDENTIALS);
  close(x);
  /* admin tokens are each node's own file (docs/admin.md): B has none */
  CHECK_EQ_I(admin_call(&nb, tok, "GET", "/admin/users", buf, sizeof buf), 404);
  close(b1);
  close(b2);
  close(c1);
  cluster_down();
}

/* Regression: a ban through node A while B is cut off from the bus (its
 * NATS server hangs): the KICK never reaches B, and bob's session there
 * went on. Back on the bus, B's sessions read their queues again, and the
 * fetch of a signed-out device closes its session (pl_store.h, FETCH). */
static void test_admin_kick_lost(void) {
  char tok[128], t1[128], buf[4096];
  cluster_up();
  admin_token(&na, tok);
  int b1 = rc_open(nb.port, PARLEY__CLIENT_KIND__KIND_BOT); /* a long heartbeat: no pings needed meanwhile */
  CHECK_EQ_I(rc_auth(b1, PARLEY__FRAME_TYPE__FRAME_REGISTER, "bob", "secret-pass", "phone", t1), 0);
  rc_store_barrier(b1); /* its first fetch done before the ban (else it reads the ban, no KICK needed) */
  tl_sigstop(ns.pid[1], T_MS);
  CHECK_EQ_I(admin_call(&na, tok, "POST", "/admin/users/bob/disable", buf, sizeof buf), 200);
  CHECK(tl_wait_closed(b1, CUT_MS));
  CHECK(tl_metric(&nb, "parley_bus_reconnects_total") >= 1); /* closed by the fetch after it, not a KICK */
  kill(ns.pid[1], SIGCONT);
  close(b1);
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
  RUN(test_lost_hint_then_local_push);
  RUN(test_admin_across_nodes);
  RUN(test_admin_kick_lost);
  return tl_summary();
}
