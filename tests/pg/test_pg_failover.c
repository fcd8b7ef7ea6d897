/* The database goes away while a client sends, and comes back (PostgreSQL
 * backend only: label pg). Its own PostgreSQL (pg_fixture.sh), stopped at
 * once as a crash would stop it, so the other pg tests keep theirs.
 *
 * What a user relies on: a send in the gap is answered with the retryable
 * INTERNAL, never acked; /healthz says the database is out of reach; once it is back the server reconnects by
 * itself, the same ids sent again are stored once each, and the recipient gets every acked message once, in
 * order, with gap-free seqs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rawcl.h"
#include "testlib.h"

static tl_server srv;
static char pgdir[600];

static int pg_fixture(const char *cmd) {
  char c[1400];
  snprintf(c, sizeof c, "bash '%s' %s '%s' >/dev/null", getenv("PL_PG_FIXTURE"), cmd, pgdir);
  return system(c);
}

static void cleanup(void) {
  if (pgdir[0])
    pg_fixture("stop");
}

/* The status of GET /healthz (0: no answer). */
static int healthz(void) {
  char buf[512];
  int fd = tl_connect(srv.http_port);
  if (fd < 0)
    return 0;
  const char req[] = "GET /healthz HTTP/1.0\r\n\r\n";
  size_t n = tl_write_all(fd, req, sizeof req - 1) == 0 ? tl_read_all(fd, buf, sizeof buf - 1, 5000) : 0;
  close(fd);
  buf[n] = 0;
  return n > 12 ? atoi(buf + 9) : 0;
}

/* /healthz answers want within timeout_ms. */
static void wait_healthz(int want, int timeout_ms) {
  uint64_t until = tl_now_ms() + (uint64_t)timeout_ms;
  while (healthz() != want && tl_now_ms() < until)
    usleep(50 * 1000);
  CHECK_EQ_I(healthz(), want);
}

static void body_of(char *buf, size_t n, int i) { snprintf(buf, n, "message number %d", i); }

/* Sends id to bob until it is acked (the server may still be reconnecting);
 * every answer before the ack must be the retryable INTERNAL. */
static uint64_t send_until_acked(int fd, const char *id, const char *body, uint64_t deadline) {
  for (;;) {
    int err = 0;
    uint64_t seq = rc_send_wait(fd, id, "bob", body, &err);
    if (seq)
      return seq;
    CHECK_EQ_I(err, PARLEY__ERROR_CODE__ERR_INTERNAL);
    CHECK(tl_now_ms() < deadline);
    usleep(100 * 1000); /* a client's retry backoff, not a wait for a condition */
  }
}

static void test_db_down_retryable_then_nothing_lost(void) {
  char uri[256] = "", extra[400], atok[128], btok[128], body[64], id[32];
  /* not under tl_tempdir: the postgres user must reach it */
  const char *t = getenv("TMPDIR");
  snprintf(pgdir, sizeof pgdir, "%s/plpg-failover-XXXXXX", t && *t ? t : "/tmp");
  CHECK(mkdtemp(pgdir) != NULL);
  CHECK(pg_fixture("start") == 0);
  char path[700];
  snprintf(path, sizeof path, "%s/uri", pgdir);
  FILE *f = fopen(path, "r");
  CHECK(f && fgets(uri, sizeof uri, f));
  fclose(f);
  uri[strcspn(uri, "\n")] = 0;
  snprintf(extra, sizeof extra, "--store %s --sweep-interval 1", uri);
  tl_server_start(&srv, extra);
  int alice = rc_register(srv.port, "alice", atok);
  close(rc_register(srv.port, "bob", btok)); /* bob is offline: everything is queued */
  for (int i = 0; i < 10; i++) {
    snprintf(id, sizeof id, "a-%d", i);
    body_of(body, sizeof body, i);
    int err = -1;
    CHECK_EQ_U(rc_send_wait(alice, id, "bob", body, &err), (uint64_t)i + 1);
    CHECK_EQ_I(err, 0);
  }
  CHECK(pg_fixture("pause") == 0);
  /* in the gap: every answer is the retryable error, none an ack */
  for (int i = 10; i < 20; i++) {
    snprintf(id, sizeof id, "a-%d", i);
    body_of(body, sizeof body, i);
    int err = 0;
    CHECK_EQ_U(rc_send_wait(alice, id, "bob", body, &err), 0);
    CHECK_EQ_I(err, PARLEY__ERROR_CODE__ERR_INTERNAL);
  }
  wait_healthz(503, 10000); /* the node says it cannot reach its database */
  CHECK(pg_fixture("resume") == 0);
  uint64_t deadline = tl_now_ms() + 60000;
  for (int i = 10; i < 20; i++) { /* the same ids again */
    snprintf(id, sizeof id, "a-%d", i);
    body_of(body, sizeof body, i);
    CHECK_EQ_U(send_until_acked(alice, id, body, deadline), (uint64_t)i + 1);
  }
  wait_healthz(200, 10000);
  CHECK_EQ_I(tl_metric(&srv, "parley_store_backend_down"), 0);
  int err = -1; /* a retry of one acked before the gap: its first seq, stored once */
  CHECK_EQ_U(rc_send_wait(alice, "a-3", "bob", "message number 3", &err), 4);
  int bob = rc_back(srv.port, btok);
  Parley__Message *m[32];
  size_t n = rc_collect(bob, m, 32, 1500);
  CHECK_EQ_U(n, 20);
  for (size_t i = 0; i < n; i++) {
    snprintf(id, sizeof id, "a-%zu", i);
    body_of(body, sizeof body, (int)i);
    CHECK_STR(m[i]->id, id);
    CHECK_EQ_U(m[i]->seq, i + 1);
    CHECK(m[i]->body.len == strlen(body) && !memcmp(m[i]->body.data, body, m[i]->body.len));
  }
  rc_free_msgs(m, n);
  close(alice);
  close(bob);
  tl_server_stop(&srv);
  cleanup();
  pgdir[0] = 0;
}

int main(void) {
  atexit(cleanup); /* a failed CHECK exits: the PostgreSQL goes with it */
  tl_run_server(&srv, "test_db_down_retryable_then_nothing_lost", test_db_down_retryable_then_nothing_lost);
  return tl_summary();
}
