/* Group redelivery after a crash (issue 14): a device's position in the
 * group histories is saved with the Ack that moved it, so a kill -9 right
 * after the Ack does not send the device what it acknowledged again, however
 * far away the next sweep is (here an hour). Observed through the protocol
 * only: after the restart the first group Message the device gets is a new
 * one, with a qid above what it acked. Before the fix the cursor waited for
 * the sweep (--sweep-interval), and crashes faster than it made member
 * devices receive each group message again and again. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rawcl.h"
#include "testlib.h"

/* The sweep an hour away: only the Ack itself can have saved the cursor. */
#define ARGS "--threads 2 --argon2-mem 8 --argon2-ops 1 --sweep-interval 3600"
#define T_MS 10000
#define N_MSGS 5

static tl_server srv;

/* GroupCreate "crew" with bob; returns the group id's text in gid. */
static void create(int fd, char gid[24]) {
  Parley__GroupCreate c = PARLEY__GROUP_CREATE__INIT;
  char *members[] = {"bob"};
  c.ref = "c1";
  c.name = "crew";
  c.description = "";
  c.members = members;
  c.n_members = 1;
  gid[0] = 0;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE, &c) == 0);
  Parley__GroupInfo *g = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_INFO, T_MS);
  CHECK(g && g->base.descriptor == &parley__group_info__descriptor);
  if (g && g->base.descriptor == &parley__group_info__descriptor) {
    snprintf(gid, 24, "%s", g->group);
    protobuf_c_message_free_unpacked(&g->base, NULL);
  }
}

/* A group Send; waits for its SendAck (the commit), skipping the sender's
 * own copy of the message. */
static void send_group(int fd, const char *gid, const char *id) {
  Parley__Send s = PARLEY__SEND__INIT;
  s.id = (char *)id;
  s.to = "";
  s.group = (char *)gid;
  s.body.data = (uint8_t *)id;
  s.body.len = strlen(id);
  s.client_ts = 1;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_SEND, &s) == 0);
  Parley__SendAck *a = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_SEND_ACK, T_MS);
  CHECK(a && a->base.descriptor == &parley__send_ack__descriptor);
  if (a)
    protobuf_c_message_free_unpacked(&a->base, NULL);
}

/* GROUP_INFO, answered after the commit of the requests before it: once it
 * is here, an Ack sent before it is on disk. */
static void group_info(int fd, const char *gid) {
  Parley__GroupUpdate u = PARLEY__GROUP_UPDATE__INIT;
  u.ref = "i1";
  u.group = (char *)gid;
  u.op = PARLEY__GROUP_OP__GROUP_INFO;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE, &u) == 0);
  Parley__GroupInfo *g = rc_expect(fd, PARLEY__FRAME_TYPE__FRAME_GROUP_INFO, T_MS);
  CHECK(g && g->base.descriptor == &parley__group_info__descriptor);
  if (g)
    protobuf_c_message_free_unpacked(&g->base, NULL);
}

static void test_acked_group_messages_not_sent_again_after_kill9(void) {
  char ta[128], tb[128], gid[24];
  tl_server_start(&srv, ARGS);
  int alice = rc_register(srv.port, "alice", ta);
  int bob = rc_register(srv.port, "bob", tb);
  create(alice, gid);
  for (int i = 0; i < N_MSGS; i++) {
    char id[16];
    snprintf(id, sizeof id, "m%d", i);
    send_group(alice, gid, id);
  }
  /* bob's device: the "created" event, then the messages */
  Parley__Message *m[N_MSGS + 2];
  size_t got = 0;
  while (got < N_MSGS + 1) {
    Parley__Message *x = rc_expect(bob, PARLEY__FRAME_TYPE__FRAME_MESSAGE, T_MS);
    CHECK(x && x->base.descriptor == &parley__message__descriptor);
    if (!x || x->base.descriptor != &parley__message__descriptor)
      break;
    m[got++] = x;
  }
  CHECK_EQ_U(got, N_MSGS + 1);
  uint64_t acked = got ? m[got - 1]->qid : 0;
  CHECK(got == 0 || m[got - 1]->event == NULL);
  rc_free_msgs(m, got);
  rc_ack(bob, acked);
  group_info(bob, gid);
  tl_server_kill(&srv, SIGKILL); /* right after the Ack: the sweep never ran */
  close(alice);
  close(bob);
  tl_server_restart(&srv);
  bob = rc_back(srv.port, tb);
  alice = rc_back(srv.port, ta);
  send_group(alice, gid, "after");
  /* in qid order: anything acked sent again would come before the new one */
  Parley__Message *x = rc_expect(bob, PARLEY__FRAME_TYPE__FRAME_MESSAGE, T_MS);
  CHECK(x && x->base.descriptor == &parley__message__descriptor);
  if (x && x->base.descriptor == &parley__message__descriptor) {
    if (x->qid <= acked)
      fprintf(stderr, "     qid %llu sent again (acked up to %llu)\n", (unsigned long long)x->qid,
              (unsigned long long)acked);
    CHECK(x->qid > acked);
    CHECK(x->body.len == 5 && !memcmp(x->body.data, "after", 5));
    protobuf_c_message_free_unpacked(&x->base, NULL);
  }
  close(alice);
  close(bob);
}

int main(void) {
  tl_run_server(&srv, "test_acked_group_messages_not_sent_again_after_kill9",
                test_acked_group_messages_not_sent_again_after_kill9);
  return tl_summary();
}
