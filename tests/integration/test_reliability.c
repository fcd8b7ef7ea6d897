/* The reliability contract against the real parleyd: nothing acked is lost
 * (also across kill -9), nothing is delivered twice, order is kept, and a
 * message is deleted once every device acked it or its TTL ran out. */
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rawcl.h"

/* thousands of pipelined sends from one user: no per-user send rate (10.7) */
#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1 --send-rate 0"
enum { REG = PARLEY__FRAME_TYPE__FRAME_REGISTER, LOGIN = PARLEY__FRAME_TYPE__FRAME_LOGIN };

static int user(const tl_server *s, const char *name, const char *device, int reg, char tok[128]) {
  int fd = rc_open(s->port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(fd, reg ? REG : LOGIN, name, "secret-pass", device, tok), 0);
  return fd;
}

static int resume(const tl_server *s, const char *tok) {
  int fd = rc_open(s->port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_resume(fd, tok), 0);
  return fd;
}

/* Pipelines n sends "<prefix>-<i>" and waits for all acks, in order. */
static void send_many(int fd, const char *prefix, int n, uint64_t first_seq) {
  char id[64];
  for (int i = 0; i < n; i++) {
    snprintf(id, sizeof id, "%s-%d", prefix, i);
    rc_send(fd, id, "bob", id);
  }
  for (int i = 0; i < n; i++) {
    Parley__SendAck *a = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_SEND_ACK, 20000);
    CHECK(a && a->base.descriptor == &parley__send_ack__descriptor);
    snprintf(id, sizeof id, "%s-%d", prefix, i);
    CHECK_STR(a->id, id);
    CHECK_EQ_U(a->seq, first_seq + (uint64_t)i);
    CHECK_STR(a->conv, "dm:alice:bob");
    protobuf_c_message_free_unpacked(&a->base, NULL);
  }
}

/* Receives exactly n messages "<prefix>-0..n-1" with seq from first_seq, in order; acks them. */
static void recv_many(int fd, const char *prefix, int n, uint64_t first_seq) {
  Parley__Message **m = calloc((size_t)n + 1, sizeof *m);
  size_t got = rc_collect(fd, m, (size_t)n + 1, 2000);
  CHECK_EQ_U(got, (size_t)n);
  char id[64];
  for (int i = 0; i < n; i++) {
    snprintf(id, sizeof id, "%s-%d", prefix, i);
    CHECK_STR(m[i]->id, id);
    CHECK_EQ_U(m[i]->seq, first_seq + (uint64_t)i);
    CHECK(m[i]->body.len == strlen(id) && memcmp(m[i]->body.data, id, m[i]->body.len) == 0);
    CHECK_STR(m[i]->from, "alice");
    CHECK(m[i]->server_ts > 1700000000000ull && m[i]->client_ts == 1);
    if (i)
      CHECK(m[i]->qid > m[i - 1]->qid);
  }
  rc_ack(fd, m[n - 1]->qid);
  rc_free_msgs(m, got);
  free(m);
}

static void test_order_offline_then_online(void) {
  tl_server s;
  tl_server_start(&s, FAST);
  char btok[128];
  int alice = user(&s, "alice", "phone", 1, NULL);
  close(user(&s, "bob", "phone", 1, btok));
  send_many(alice, "off", 1000, 1); /* bob offline */
  int bob = resume(&s, btok);
  recv_many(bob, "off", 1000, 1);
  send_many(alice, "on", 1000, 1001); /* bob online */
  recv_many(bob, "on", 1000, 1001);
  usleep(300000);
  CHECK_EQ_I(tl_db_count(s.dir, TL_MESSAGES), 0); /* all acked: nothing kept */
  close(alice);
  close(bob);
  tl_server_stop(&s);
}

static void test_offline_across_kill9(void) {
  tl_server s;
  tl_server_start(&s, FAST);
  char btok[128];
  int alice = user(&s, "alice", "phone", 1, NULL);
  close(user(&s, "bob", "phone", 1, btok));
  int err = 0;
  CHECK_EQ_U(rc_send_wait(alice, "k-0", "bob", "k-0", &err), 1);
  tl_server_kill(&s, SIGKILL); /* right after the ack: it must be on disk */
  close(alice);
  tl_server_restart(&s);
  int bob = resume(&s, btok);
  recv_many(bob, "k", 1, 1);
  close(bob);
  usleep(300000);
  bob = resume(&s, btok); /* acked: not delivered again */
  Parley__Message *m[1];
  CHECK_EQ_U(rc_collect(bob, m, 1, 700), 0);
  close(bob);
  tl_server_stop(&s);
}

static void test_retry_dedup_across_restart(void) {
  tl_server s;
  tl_server_start(&s, FAST);
  char atok[128], btok[128];
  int alice = user(&s, "alice", "phone", 1, atok);
  close(user(&s, "bob", "phone", 1, btok));
  int err = 0;
  CHECK_EQ_U(rc_send_wait(alice, "r-0", "bob", "r-0", &err), 1);
  rc_send(alice, "r-0", "bob", "r-0");
  Parley__SendAck *a = rc_expect(alice, PARLEY__FRAME_TYPE__FRAME_SEND_ACK, 5000);
  CHECK(a && a->base.descriptor == &parley__send_ack__descriptor && a->seq == 1 && a->duplicate);
  protobuf_c_message_free_unpacked(&a->base, NULL);
  close(alice);
  tl_server_kill(&s, SIGKILL);
  tl_server_restart(&s);
  alice = resume(&s, atok);
  rc_send(alice, "r-0", "bob", "r-0");
  a = rc_expect(alice, PARLEY__FRAME_TYPE__FRAME_SEND_ACK, 5000);
  CHECK(a && a->base.descriptor == &parley__send_ack__descriptor && a->seq == 1 && a->duplicate);
  protobuf_c_message_free_unpacked(&a->base, NULL);
  CHECK_EQ_U(rc_send_wait(alice, "r-1", "bob", "r-1", &err), 2); /* the next id is new */
  int bob = resume(&s, btok);
  recv_many(bob, "r", 2, 1); /* r-0 once, then r-1 */
  close(alice);
  close(bob);
  tl_server_stop(&s);
}

static void test_devices_and_deletion(void) {
  tl_server s;
  tl_server_start(&s, FAST);
  char ptok[128], ltok[128];
  int alice = user(&s, "alice", "phone", 1, NULL);
  int alice_pc = user(&s, "alice", "pc", 0, NULL);
  close(user(&s, "bob", "phone", 1, ptok));
  close(user(&s, "bob", "laptop", 0, ltok));
  int err = 0;
  CHECK_EQ_U(rc_send_wait(alice, "d-0", "bob", "d-0", &err), 1);
  /* The sender's other device gets a copy of its own message. */
  recv_many(alice_pc, "d", 1, 1);
  int phone = resume(&s, ptok);
  recv_many(phone, "d", 1, 1); /* and acks */
  usleep(300000);
  CHECK_EQ_I(tl_db_count(s.dir, TL_MESSAGES), 1); /* the laptop has not acked */
  int laptop = resume(&s, ltok);
  recv_many(laptop, "d", 1, 1);
  usleep(300000);
  CHECK_EQ_I(tl_db_count(s.dir, TL_MESSAGES), 0);
  CHECK_EQ_I(tl_db_count(s.dir, TL_MSG_QUEUE), 0);
  /* A device linked after a message was sent does not get it. */
  close(laptop);
  CHECK_EQ_U(rc_send_wait(alice, "d-1", "bob", "d-1", &err), 2);
  int tablet = user(&s, "bob", "tablet", 0, NULL);
  Parley__Message *m[1];
  CHECK_EQ_U(rc_collect(tablet, m, 1, 700), 0);
  close(tablet);
  close(alice);
  close(alice_pc);
  close(phone);
  tl_server_stop(&s);
}

static void test_ttl_expiry(void) {
  tl_server s;
  tl_server_start(&s, FAST " --ttl 1");
  char btok[128];
  int alice = user(&s, "alice", "phone", 1, NULL);
  close(user(&s, "bob", "phone", 1, btok));
  int err = 0;
  CHECK_EQ_U(rc_send_wait(alice, "t-0", "bob", "t-0", &err), 1);
  sleep(2);
  int bob = resume(&s, btok);
  Parley__Message *m[1];
  CHECK_EQ_U(rc_collect(bob, m, 1, 700), 0);
  close(alice);
  close(bob);
  tl_server_stop(&s);
}

static void test_slow_consumer(void) {
  tl_server s;
  tl_server_start(&s, FAST);
  char btok[128];
  int alice = user(&s, "alice", "phone", 1, NULL);
  close(user(&s, "bob", "phone", 1, btok));
  int bob = resume(&s, btok); /* connected, but does not read while alice sends */
  send_many(alice, "s", 20000, 1);
  recv_many(bob, "s", 20000, 1);
  close(alice);
  close(bob);
  tl_server_stop(&s);
}

int main(void) {
  RUN(test_order_offline_then_online);
  RUN(test_offline_across_kill9);
  RUN(test_retry_dedup_across_restart);
  RUN(test_devices_and_deletion);
  RUN(test_ttl_expiry);
  RUN(test_slow_consumer);
  return tl_summary();
}
