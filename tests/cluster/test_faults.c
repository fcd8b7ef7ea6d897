/* The cluster under faults, with a client-side ledger (issue 15).
 *
 * Three parleyd nodes share one PostgreSQL (--store) and NATS (--bus); pairs
 * of users send 1:1 messages, each sender and each receiver on its own node,
 * through foclient.h's clients: they fail over to another node when theirs
 * closes or goes silent, resend unacked ids, and record every try, ack and
 * shown message in a ledger (ledger.h). Whatever the fault, at the end:
 * 0 acked lost, 0 shown twice after qid filtering, qids and seqs in order,
 * every conversation's seqs gap-free, every retried id stored once.
 *
 * One scenario per run (argv[1]), each its own ctest (label cluster):
 *   across   sends through one node received on another
 *   kill9    a node killed with kill -9 mid-traffic, three times (each node
 *            once), restarted each time; its clients resume elsewhere
 *            within one heartbeat
 *   kill9_lb the same with every client behind haproxy
 *   sigstop  a node stopped (SIGSTOP): the others declare it dead, its
 *            clients resume elsewhere; after SIGCONT it closes the stale
 *            sessions (takeover), stores a retried Send once and is alive
 *   pgfail   the PostgreSQL primary crashes; a synchronous streaming
 *            standby is promoted; sends in the gap get the retryable
 *            INTERNAL, never an ack; the nodes reconnect by themselves
 *   nats     one NATS server of three killed: hints, presence and typing
 *            still cross the nodes
 *   group    a group whose six members sit on three nodes (protocol 2),
 *            through the kill9 rounds
 *
 * Every process is started through testlib (tl_spawn): a failed check
 * ends them all. Exits 77 (skipped) without nats-server or PostgreSQL. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "foclient.h"
#include "ledger.h"
#include "natsrv.h"
#include "pgsrv.h"
#include "rawcl.h"
#include "testlib.h"

#define NODES 3
#define PAIRS 3
#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1 --presence-grace 300"
/* The clients' heartbeat (--heartbeat-mobile, seconds): a client resumes on
 * another node within one of it. The server cuts a silent client only after
 * 1.5 of it, so a stopped node's sessions are closed by takeover, not that. */
#define HEARTBEAT_S 10
/* A client gives up a node that answers nothing for this long. */
#define SILENCE_MS 3000
/* The bus's liveness window (--bus-dead) plus a loaded machine. */
#define DEAD_MS 20000
#define T_MS 30000

static tl_pg pg, standby;
static tl_nats ns;
static tl_server node[NODES];
static lg_ledger *lg;
static fc_client snd[PAIRS], rcv[PAIRS];
static unsigned sent[PAIRS];
static char dest[PAIRS][80]; /* where pair i's sender sends: its receiver, or "g:GID" */

/* --- the cluster ---------------------------------------------------------- */

static void nodes_start(const char *store) {
  for (int i = 0; i < NODES; i++) {
    char url[256], args[600], name[8];
    /* node 0 is given its first server only (it learns the others from
     * NATS), so that killing that server surely cuts a node; the others
     * get every server (libnats picks one at random) */
    if (i == 0)
      snprintf(url, sizeof url, "%s", ns.url[0]);
    else
      tl_nats_urls(&ns, i % ns.n, url, sizeof url);
    snprintf(args, sizeof args, FAST " --heartbeat-mobile %d --store %s", HEARTBEAT_S, store);
    snprintf(name, sizeof name, "N%d", i);
    tl_nats_node_start(&node[i], name, url, args);
  }
  for (int i = 0; i < NODES; i++) {
    tl_wait_metric(&node[i], "parley_bus_connected", 1, T_MS);
    tl_wait_metric(&node[i], "parley_bus_nodes_alive", NODES - 1, T_MS);
  }
}

static void cluster_up(int nats_servers) {
  tl_pg_start(&pg);
  tl_nats_start(&ns, nats_servers);
  nodes_start(pg.conninfo);
}

/* Stops everything still running; keeps the nodes' logs if the test failed. */
static void cluster_down(int failed) {
  for (int i = 0; i < PAIRS; i++) {
    fc_close(&snd[i]);
    fc_close(&rcv[i]);
  }
  for (int i = 0; i < NODES; i++) {
    if (node[i].pid > 0)
      kill(node[i].pid, SIGCONT); /* a stopped node cannot take SIGTERM */
    if (failed)
      tl_server_abandon(&node[i]);
    else if (node[i].dir)
      tl_server_stop(&node[i]);
  }
  tl_nats_stop(&ns);
  tl_pg_stop(&pg);
  tl_pg_stop(&standby);
  lg_free(lg);
  lg = NULL;
}

static int ports[NODES];
static int nports;

/* Pair i: sender s<i> on node i, receiver r<i> on node i+1 (or every
 * client on the load balancer's port, when lb_port is set). */
static void users_on(int lb_port) {
  nports = lb_port ? 1 : NODES;
  for (int i = 0; i < NODES; i++)
    ports[i] = lb_port ? lb_port : node[i].port;
  lg = lg_new();
  for (int i = 0; i < PAIRS; i++) {
    char s[16], r[16], conv[64];
    snprintf(s, sizeof s, "s%d", i);
    snprintf(r, sizeof r, "r%d", i);
    fc_register(&snd[i], lg, s, ports, nports, i % nports, SILENCE_MS, 1);
    fc_register(&rcv[i], lg, r, ports, nports, (i + 1) % nports, SILENCE_MS, 1);
    fc_dm(conv, sizeof conv, s, r);
    lg_expect(lg, rcv[i].device, conv, r); /* what s sends */
    sent[i] = 0;
    snprintf(dest[i], sizeof dest[i], "%s", r);
  }
}

static void users(void) { users_on(0); }

/* haproxy in front of the nodes, as scripts/cluster.sh runs it (TCP,
 * leastconn, a node out after two failed /healthz a second apart);
 * returns its port. Killed with the test (tl_spawn). */
static int haproxy_up(void) {
  static const char *const bin = "/usr/sbin/haproxy";
  char *dir = tl_tempdir(), cfg[600], log[600];
  int port = tl_free_port();
  snprintf(cfg, sizeof cfg, "%s/haproxy.cfg", dir);
  snprintf(log, sizeof log, "%s/haproxy.log", dir);
  FILE *f = fopen(cfg, "w");
  CHECK(f != NULL);
  fprintf(f,
          "global\n  maxconn 4000\n\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n"
          "  timeout server 1h\n  option redispatch\n  retries 2\n\nfrontend native\n  bind 127.0.0.1:%d\n"
          "  default_backend nodes\n\nbackend nodes\n  balance leastconn\n  option httpchk GET /healthz\n",
          port);
  for (int i = 0; i < NODES; i++)
    fprintf(f, "  server n%d 127.0.0.1:%d check port %d inter 1s fall 2 rise 1\n", i, node[i].port,
            node[i].http_port);
  fclose(f);
  char *argv[] = {(char *)bin, "-db", "-f", cfg, NULL};
  tl_spawn(argv, log, dir);
  free(dir);
  int fd = -1;
  for (uint64_t until = tl_now_ms() + T_MS; fd < 0; usleep(20 * 1000)) {
    fd = tl_connect(port);
    if (fd < 0 && tl_now_ms() > until)
      tl__fail(__FILE__, __LINE__, "haproxy did not listen on %d (see %s)", port, log);
  }
  close(fd);
  return port;
}

/* --- traffic ----------------------------------------------------------------- */

static void msg_id(char *id, size_t cap, int pair, unsigned n) { snprintf(id, cap, "s%d-%u", pair, n); }

/* rounds × (one message per pair, then every receiver reads and pings). */
static void traffic(int rounds) {
  uint64_t deadline = tl_now_ms() + 60000;
  for (int k = 0; k < rounds; k++) {
    for (int i = 0; i < PAIRS; i++) {
      char id[32], body[64];
      msg_id(id, sizeof id, i, ++sent[i]);
      snprintf(body, sizeof body, "message %u of s%d", sent[i], i);
      fc_send(&snd[i], id, dest[i], body, deadline);
    }
    for (int i = 0; i < PAIRS; i++)
      fc_pump(&rcv[i], 0);
  }
}

/* Writes the next Send of pair i without waiting for its answer: the
 * fault that follows makes its outcome unknown, and the sender's next
 * fc_send of the same id (resend) settles it. Returns nothing; the id is
 * sent[i]. */
static void send_unanswered(int i) {
  char id[32], body[64];
  msg_id(id, sizeof id, i, ++sent[i]);
  snprintf(body, sizeof body, "message %u of s%d", sent[i], i);
  Parley__Send s = PARLEY__SEND__INIT;
  s.id = id;
  if (!strncmp(dest[i], "g:", 2))
    s.group = dest[i] + 2;
  else
    s.to = dest[i];
  s.body.data = (uint8_t *)body;
  s.body.len = strlen(body);
  lg_tried(lg, snd[i].user, id);
  tl_send_frame(snd[i].fd, PARLEY__FRAME_TYPE__FRAME_SEND, &s);
}

/* Pair i's ids from first to the last sent, again, in order, each until
 * acked: what an app does with the Sends a fault left unanswered. */
static void resend_from(int i, unsigned first) {
  for (unsigned n = first; n <= sent[i]; n++) {
    char id[32], body[64];
    msg_id(id, sizeof id, i, n);
    snprintf(body, sizeof body, "message %u of s%d", n, i);
    fc_send(&snd[i], id, dest[i], body, tl_now_ms() + 60000);
  }
}

/* INFLIGHT Sends of every pair written, unanswered, as the fault comes;
 * first[i] gets pair i's first. */
#define INFLIGHT 3
static void send_inflight(unsigned first[PAIRS]) {
  for (int i = 0; i < PAIRS; i++) {
    first[i] = sent[i] + 1;
    for (int k = 0; k < INFLIGHT; k++)
      send_unanswered(i);
  }
}

static fc_client *all[2 * PAIRS];

/* Every acked message shown where it belongs, then every check. */
static void settle_and_check(const char *scenario) {
  for (int i = 0; i < PAIRS; i++) {
    all[2 * i] = &snd[i];
    all[2 * i + 1] = &rcv[i];
  }
  fc_settle(all, 2 * PAIRS, tl_now_ms() + T_MS);
  char report[2048];
  size_t bad = lg_check(lg, report, sizeof report);
  unsigned reconnects = 0, closed = 0;
  uint64_t worst = 0;
  for (int i = 0; i < 2 * PAIRS; i++) {
    reconnects += all[i]->reconnects;
    closed += all[i]->closed;
    worst = all[i]->worst_gap > worst ? all[i]->worst_gap : worst;
  }
  printf("ledger %s: %zu acks, %zu ids retried, %zu redelivered (qid filter), %u failovers (%u closed by "
         "the node), longest %llu ms, %zu violations\n%s",
         scenario, lg_acked_count(lg), lg_retried_count(lg), lg_redelivered_count(lg), reconnects, closed,
         (unsigned long long)worst, bad, report);
  CHECK_EQ_U(bad, 0);
}

/* Clients on node v: they see it closed (or silent) at once and resume
 * elsewhere; no later than one heartbeat after t0. */
static void move_off(int v, uint64_t t0) {
  uint64_t worst = 0;
  for (int i = 0; i < 2 * PAIRS; i++) {
    if (all[i]->node != v)
      continue;
    fc_pump(all[i], 0);
    if (all[i]->node == v)
      tl__fail(__FILE__, __LINE__, "%s still on N%d after its node failed (%u failovers)", all[i]->device, v,
               all[i]->reconnects);
    uint64_t took = tl_now_ms() - t0;
    if (took >= HEARTBEAT_S * 1000ull)
      tl__fail(__FILE__, __LINE__, "%s resumed %llu ms after its node failed", all[i]->device,
               (unsigned long long)took);
    worst = took > worst ? took : worst;
  }
  printf("node N%d failed: its clients resumed elsewhere within %llu ms (heartbeat %d s)\n", v,
         (unsigned long long)worst, HEARTBEAT_S);
}

static void list_clients(void) {
  for (int i = 0; i < PAIRS; i++) {
    all[2 * i] = &snd[i];
    all[2 * i + 1] = &rcv[i];
  }
}

/* --- scenarios ------------------------------------------------------------- */

/* 1. Through one node, onto another: every receiver is on another node
 * than its sender, so each message reaches it by a hint over the bus. */
static void test_across(void) {
  cluster_up(1);
  users();
  traffic(40);
  settle_and_check("across");
  long long hints = 0;
  for (int i = 0; i < NODES; i++)
    hints += tl_metric(&node[i], "parley_bus_hints_received_total");
  CHECK(hints >= PAIRS);
}

/* Each node in turn killed (kill -9) with Sends of every sender in flight,
 * its clients resumed (elsewhere: directly, or wherever haproxy sends
 * them, via_lb), the Sends resent, traffic, the node restarted. */
static void kill_rounds(int via_lb) {
  for (int v = 0; v < NODES; v++) {
    unsigned first[PAIRS];
    send_inflight(first);
    uint64_t t0 = tl_now_ms();
    tl_server_kill(&node[v], SIGKILL);
    if (via_lb) {
      for (int i = 0; i < 2 * PAIRS; i++)
        fc_pump(all[i], 0); /* those that were on v resume through haproxy */
      uint64_t took = tl_now_ms() - t0;
      printf("node N%d killed: every client resumed through haproxy within %llu ms\n", v,
             (unsigned long long)took);
      CHECK(took < HEARTBEAT_S * 1000ull);
    } else {
      move_off(v, t0);
    }
    for (int i = 0; i < PAIRS; i++)
      resend_from(i, first[i]); /* those acked meanwhile: duplicates, answered with their seq */
    traffic(6);
    tl_server_restart(&node[v]);
    for (int i = 0; i < NODES; i++)
      tl_wait_metric(&node[i], "parley_bus_nodes_alive", NODES - 1, T_MS);
    traffic(3);
  }
}

/* 2. kill -9 of each node in turn, the clients connected to nodes directly. */
static void test_kill9(void) {
  cluster_up(1);
  users();
  list_clients();
  traffic(10);
  kill_rounds(0);
  settle_and_check("kill9");
}

/* 2b. The same through haproxy: the clients know only its address, and
 * land wherever it sends them when their node dies. */
static void test_kill9_lb(void) {
  if (access("/usr/sbin/haproxy", X_OK) != 0) {
    printf("skipped: haproxy is not installed (scripts/deps.sh --test)\n");
    return;
  }
  cluster_up(1);
  users_on(haproxy_up());
  list_clients();
  traffic(10);
  kill_rounds(1);
  settle_and_check("kill9_lb");
}

/* 6. A group whose members sit on three nodes: every client of the pairs
 * (protocol 2) is a member, every sender sends to it, and every member
 * must be shown what the others sent; then the kill rounds of kill9. */
static void test_group(void) {
  char tok[128], conv[80];
  cluster_up(1);
  for (int i = 0; i < NODES; i++)
    ports[i] = node[i].port;
  lg = lg_new();
  for (int i = 0; i < PAIRS; i++) {
    char s[16], r[16];
    snprintf(s, sizeof s, "s%d", i);
    snprintf(r, sizeof r, "r%d", i);
    fc_register(&snd[i], lg, s, ports, NODES, i % NODES, SILENCE_MS, 2);
    fc_register(&rcv[i], lg, r, ports, NODES, (i + 1) % NODES, SILENCE_MS, 2);
  }
  int fd = rc_open_v(node[0].port, PARLEY__CLIENT_KIND__KIND_MOBILE, 2);
  CHECK_EQ_I(rc_auth(fd, PARLEY__FRAME_TYPE__FRAME_LOGIN, "s0", "secret-pass", "setup", tok), 0);
  char *members[] = {"s1", "s2", "r0", "r1", "r2"};
  Parley__GroupCreate gc = PARLEY__GROUP_CREATE__INIT;
  gc.ref = "g";
  gc.name = "faults";
  gc.n_members = sizeof members / sizeof members[0];
  gc.members = members;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE, &gc) == 0);
  Parley__GroupInfo *gi = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_INFO, T_MS); /* after its events */
  CHECK(gi && gi->base.descriptor == &parley__group_info__descriptor);
  snprintf(conv, sizeof conv, "g:%s", gi->group);
  lg_base(lg, conv, gi->last_seq); /* the creation's events */
  printf("group %s: last seq %llu at creation\n", conv, (unsigned long long)gi->last_seq);
  protobuf_c_message_free_unpacked(&gi->base, NULL);
  close(fd);
  list_clients();
  for (int i = 0; i < 2 * PAIRS; i++)
    lg_expect(lg, all[i]->device, conv, all[i]->user);
  for (int i = 0; i < PAIRS; i++) {
    sent[i] = 0;
    snprintf(dest[i], sizeof dest[i], "%s", conv);
  }
  traffic(10);
  kill_rounds(0);
  settle_and_check("group");
}

/* Reads the stale connection to its end (what the stopped node wrote
 * before or after it stopped, recorded as shown: a client that still read
 * it would show it); 1 if the node closed it within timeout_ms other than
 * by its heartbeat rule. */
static int stale_closed(fc_client *c, int timeout_ms) {
  for (uint64_t until = tl_now_ms() + (uint64_t)timeout_ms; tl_now_ms() < until;) {
    void *m = NULL;
    int t = tl_recv_frame(c->stale_fd, (int)(until - tl_now_ms()), &m);
    if (t == PARLEY__FRAME_TYPE__FRAME_MESSAGE) {
      const Parley__Message *msg = m;
      lg_shown(lg, c->device, msg->conv, msg->seq, msg->from, msg->id, msg->qid);
    }
    int hb = t == PARLEY__FRAME_TYPE__FRAME_ERROR &&
             ((Parley__Error *)m)->code == PARLEY__ERROR_CODE__ERR_HEARTBEAT_TIMEOUT;
    if (m)
      protobuf_c_message_free_unpacked(m, NULL);
    if (hb)
      return 0;
    if (t <= 0)
      return tl_now_ms() < until;
  }
  return 0;
}

/* 3. SIGSTOP of node 1 with a Send in flight on it; traffic while it is
 * stopped; SIGCONT. */
static void test_sigstop(void) {
  const int v = 1;
  cluster_up(1);
  users();
  list_clients();
  for (int i = 0; i < 2 * PAIRS; i++)
    all[i]->keep_stale = 1;
  traffic(10);
  unsigned first[PAIRS];
  send_inflight(first);
  uint64_t t0 = tl_now_ms();
  tl_sigstop(node[v].pid, T_MS); /* every thread stopped: one busy on the Send could finish it */
  move_off(v, t0);               /* each waits SILENCE_MS, then resumes elsewhere */
  for (int i = 0; i < PAIRS; i++)
    resend_from(i, first[i]);
  for (int i = 0; i < NODES; i++)
    if (i != v)
      tl_wait_metric(&node[i], "parley_bus_nodes_alive", NODES - 2, DEAD_MS);
  traffic(10);
  unsigned closed = 0;
  for (int i = 0; i < 2 * PAIRS; i++)
    closed += all[i]->closed;
  CHECK(kill(node[v].pid, SIGCONT) == 0);
  /* it reads the Send it was given before it stopped, finds the id stored
   * by the resend, and closes the sessions that moved (takeover) */
  for (int i = 0; i < 2 * PAIRS; i++)
    if (all[i]->stale_fd >= 0) {
      if (!stale_closed(all[i], T_MS))
        tl__fail(__FILE__, __LINE__, "%s: the stopped node kept (or timed out) its stale session",
                 all[i]->device);
      close(all[i]->stale_fd);
      all[i]->stale_fd = -1;
    }
  CHECK(tl_log_count(&node[v], "logged in on node") >= 1);
  for (int i = 0; i < NODES; i++)
    tl_wait_metric(&node[i], "parley_bus_nodes_alive", NODES - 1, DEAD_MS);
  traffic(10);
  /* the newest session wins everywhere: the node back from its stop
   * closed none of the sessions that moved (a reply slower than
   * SILENCE_MS on a loaded machine is a failover, not a close) */
  unsigned after = 0;
  for (int i = 0; i < 2 * PAIRS; i++)
    after += all[i]->closed;
  CHECK_EQ_U(after, closed);
  settle_and_check("sigstop");
}

/* Sends pair i's next id once: its seq, or 0 with *err the Error's code
 * (-1: no answer, the connection closed). Answers to earlier Sends on the
 * way are recorded (an ack that was on its way when the fault came). */
static uint64_t send_once(int i, int *err) {
  char id[32], body[64];
  msg_id(id, sizeof id, i, ++sent[i]);
  snprintf(body, sizeof body, "message %u of s%d", sent[i], i);
  lg_tried(lg, snd[i].user, id);
  rc_send(snd[i].fd, id, rcv[i].user, body);
  for (;;) {
    ProtobufCMessage *m = rc_expect(snd[i].fd, PARLEY__FRAME_TYPE__FRAME_SEND_ACK, T_MS);
    uint64_t seq = 0;
    int mine = 0;
    *err = -1;
    if (m && m->descriptor == &parley__error__descriptor) {
      *err = (int)((Parley__Error *)m)->code;
      mine = !strcmp(((Parley__Error *)m)->ref, id);
    } else if (m) {
      Parley__SendAck *a = (Parley__SendAck *)m;
      lg_acked(lg, snd[i].user, a->id, a->conv, a->seq);
      mine = !strcmp(a->id, id);
      seq = a->seq;
    }
    if (m)
      protobuf_c_message_free_unpacked(m, NULL);
    if (!m || mine)
      return seq;
  }
}

/* 4. The PostgreSQL primary crashes; its synchronous standby is promoted. */
static void test_pgfail(void) {
  /* synchronous: a commit (so an ack) waits until the standby has it */
  static const char *const sync[] = {"synchronous_standby_names=*", NULL};
  char store[256];
  tl_pg_start_opts(&pg, sync);
  tl_pg_standby(&standby, &pg, NULL);
  snprintf(store, sizeof store,
           "postgresql://parley@127.0.0.1:%d,127.0.0.1:%d/postgres?target_session_attrs=read-write", pg.port,
           standby.port);
  char state[64] = "";
  for (uint64_t until = tl_now_ms() + T_MS; strcmp(state, "sync"); usleep(50 * 1000)) {
    tl_pg_query(&pg, "SELECT sync_state FROM pg_stat_replication", state, sizeof state);
    if (tl_now_ms() > until)
      tl__fail(__FILE__, __LINE__, "the standby is not synchronous (sync_state '%s')", state);
  }
  tl_nats_start(&ns, 1);
  nodes_start(store);
  users();
  list_clients();
  traffic(10);
  unsigned first[PAIRS];
  send_inflight(first);
  tl_pg_crash(&pg);
  /* the gap: the sends in flight and three more each get INTERNAL
   * (retryable) or lose their connection; none is acked */
  for (int i = 0; i < PAIRS; i++)
    for (int k = 0; k < 3 && snd[i].fd >= 0; k++) {
      int err = 0;
      CHECK_EQ_U(send_once(i, &err), 0);
      if (err != PARLEY__ERROR_CODE__ERR_INTERNAL && err != -1)
        tl__fail(__FILE__, __LINE__, "a send in the gap got error %d, not the retryable INTERNAL", err);
      if (err == -1) { /* closed: the client fails over on its next send */
        close(snd[i].fd);
        snd[i].fd = -1;
      }
    }
  uint64_t t0 = tl_now_ms();
  tl_pg_promote(&standby);
  for (int i = 0; i < PAIRS; i++)
    resend_from(i, first[i]); /* the ids of the gap again, oldest first, until acked */
  printf("pgfail: every sender acked again %llu ms after the promotion began\n",
         (unsigned long long)(tl_now_ms() - t0));
  traffic(10);
  settle_and_check("pgfail");
  for (int i = 0; i < NODES; i++)
    CHECK_EQ_I(tl_metric(&node[i], "parley_store_backend_down"), 0);
}

/* Polls node's metric until it is at least want, or fails the test. */
static void wait_metric_min(const tl_server *srv, const char *name, long long want) {
  long long v = -1;
  for (uint64_t until = tl_now_ms() + T_MS; (v = tl_metric(srv, name)) < want; usleep(50 * 1000))
    if (tl_now_ms() > until)
      tl__fail(__FILE__, __LINE__, "%s stayed at %lld (wanted at least %lld)", name, v, want);
}

/* Until a TypingEvent from `from` arrives on fd, sends Typing on (and off:
 * an off always passes the rate limit) from a: an event sent while the bus
 * reconnects may be lost, as typing may be. */
static void typing_crosses(int a, int b, const char *to) {
  Parley__Typing t = PARLEY__TYPING__INIT;
  t.to = (char *)to;
  Parley__TypingEvent *ev = NULL;
  for (uint64_t until = tl_now_ms() + T_MS; !ev && tl_now_ms() < until;) {
    t.typing = !t.typing;
    CHECK(tl_send_frame(a, PARLEY__FRAME_TYPE__FRAME_TYPING, &t) == 0);
    void *m = NULL;
    if (tl_recv_frame(b, 500, &m) == PARLEY__FRAME_TYPE__FRAME_TYPING_EVENT)
      ev = m;
    else if (m)
      protobuf_c_message_free_unpacked(m, NULL);
  }
  CHECK(ev != NULL);
  protobuf_c_message_free_unpacked(&ev->base, NULL);
}

/* The next Presence frame on fd says online == want. */
static void expect_presence(int fd, int want) {
  Parley__Presence *p = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_PRESENCE, T_MS);
  int on = p->online;
  protobuf_c_message_free_unpacked(&p->base, NULL);
  CHECK_EQ_I(on, want);
}

/* p1 on node 0 has p2 (on node 1) as a contact; p2 follows p1. */
static int follow(char tok1[128], char tok2[128]) {
  int a = rc_register(node[0].port, "p1", tok1);
  Parley__Contacts c = PARLEY__CONTACTS__INIT;
  c.ref = "c";
  c.op = PARLEY__CONTACT_OP__CONTACT_ADD;
  c.user = "p2";
  int b = rc_register(node[1].port, "p2", tok2);
  CHECK(tl_send_frame(a, PARLEY__FRAME_TYPE__FRAME_CONTACTS, &c) == 0);
  Parley__ContactList *l = tl_expect(a, PARLEY__FRAME_TYPE__FRAME_CONTACT_LIST, T_MS);
  protobuf_c_message_free_unpacked(&l->base, NULL);
  Parley__PresenceSubscribe s = PARLEY__PRESENCE_SUBSCRIBE__INIT;
  char *who[1] = {"p1"};
  s.ref = "p";
  s.n_users = 1;
  s.users = who;
  CHECK(tl_send_frame(b, PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE, &s) == 0);
  Parley__Done *d = tl_expect(b, PARLEY__FRAME_TYPE__FRAME_DONE, T_MS);
  protobuf_c_message_free_unpacked(&d->base, NULL);
  expect_presence(b, 1);
  close(a);
  expect_presence(b, 0);
  return b;
}

/* 5. One NATS server of three killed (node 0's first): the nodes carry on. */
static void test_nats(void) {
  char tok1[128], tok2[128];
  cluster_up(3);
  users();
  list_clients();
  int b = follow(tok1, tok2);
  traffic(10);
  tl_nats_kill(&ns, 0);
  traffic(10); /* hints from node 0 while it moves to another server */
  wait_metric_min(&node[0], "parley_bus_reconnects_total", 1);
  for (int i = 0; i < NODES; i++)
    tl_wait_metric(&node[i], "parley_bus_connected", 1, T_MS);
  long long before = tl_metric(&node[1], "parley_bus_hints_received_total");
  traffic(10);
  CHECK(tl_metric(&node[1], "parley_bus_hints_received_total") > before);
  int a = rc_back(node[0].port, tok1); /* presence from node 0 reaches node 1 */
  expect_presence(b, 1);
  typing_crosses(a, b, "p2");
  close(a);
  close(b);
  settle_and_check("nats");
}

static const struct {
  const char *name;
  void (*fn)(void);
} scenarios[] = {
    {"across", test_across}, {"kill9", test_kill9}, {"kill9_lb", test_kill9_lb}, {"sigstop", test_sigstop},
    {"pgfail", test_pgfail}, {"nats", test_nats},   {"group", test_group},
};

int main(int argc, char **argv) {
  if (!tl_nats_bin() || !tl_pg_bindir()) {
    printf("skipped: nats-server or PostgreSQL is not installed (scripts/deps.sh --test)\n");
    return 77;
  }
  for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
    if (argc > 1 && strcmp(argv[1], scenarios[i].name))
      continue;
    int before = tl_failures();
    tl__run(scenarios[i].name, scenarios[i].fn);
    cluster_down(tl_failures() != before);
  }
  return tl_summary();
}
