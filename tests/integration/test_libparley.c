/* libparley against the real parleyd: blocking auth and send_wait, the
 * receive callback with auto-ack, the clock offset, and the outbox that
 * survives a server kill -9: messages queued while the server is down are
 * sent after the automatic reconnect (resume by token) and each is acked
 * and delivered exactly once; message actions with their act and codes. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parley/parley.h"
#include "testlib.h"

#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1"

typedef struct rx {
  int n, acks, dup_seq;
  uint64_t last_seq;
  char last_from[32];
  int last_kind; /* the last message's act (PARLEY_ACT_*) */
  uint64_t last_target, last_reply;
  char last_body[32];
} rx;

static void on_message(parley *c, const parley_message *m, void *ud) {
  (void)c;
  rx *r = ud;
  if (m->seq <= r->last_seq)
    r->dup_seq++;
  r->last_seq = m->seq;
  snprintf(r->last_from, sizeof r->last_from, "%s", m->from);
  snprintf(r->last_body, sizeof r->last_body, "%.*s", (int)m->body_len, (const char *)m->body);
  r->last_kind = m->act ? m->act->kind : PARLEY_ACT_NONE;
  r->last_target = m->act ? m->act->target : 0;
  r->last_reply = m->act ? m->act->reply_to : 0;
  r->n++;
}

static void on_ack(parley *c, const parley_send_ack *a, void *ud) {
  (void)c;
  (void)a;
  ((rx *)ud)->acks++;
}

static parley *client(const tl_server *s, rx *r) {
  parley_options o = {0};
  o.port = s->port;
  o.reconnect_min_ms = 50;
  o.reconnect_max_ms = 500;
  o.cb.on_message = on_message;
  o.cb.on_ack = on_ack;
  o.ud = r;
  parley *c = parley_new(&o);
  CHECK(c != NULL);
  CHECK_EQ_I(parley_connect(c), PARLEY_OK);
  return c;
}

/* Starts s and registers alice (a) and bob (b). */
static void alice_and_bob(tl_server *s, rx *ra, rx *rb, parley **a, parley **b) {
  tl_server_start(s, FAST);
  *a = client(s, ra);
  *b = client(s, rb);
  CHECK_EQ_I(parley_register(*a, "alice", "alice-secret", "phone"), PARLEY_OK);
  CHECK_EQ_I(parley_register(*b, "bob", "bob-secret", "phone"), PARLEY_OK);
}

static void pump(parley *a, parley *b, int ms) {
  for (int i = 0; i < ms / 10; i++) {
    parley_run(a, 5);
    parley_run(b, 5);
  }
}

static void test_send_receive_and_reconnect(void) {
  tl_server s;
  tl_server_start(&s, FAST);
  rx ra = {0}, rb = {0};
  parley *a = client(&s, &ra), *b = client(&s, &rb);
  CHECK_EQ_I(parley_register(a, "alice", "alice-secret", "phone"), PARLEY_OK);
  CHECK_EQ_I(parley_register(b, "bob", "bob-secret", "phone"), PARLEY_OK);
  CHECK_EQ_I(parley_register(b, "carol", "x-secret-x", "phone"), PARLEY_E_STATE); /* refused locally */
  CHECK(parley_token(a) != NULL && strlen(parley_token(a)) > 20);
  /* The clock offset is small on one machine. */
  CHECK(llabs((long long)parley_clock_offset(a)) < 1000);

  parley_send_ack ack;
  CHECK_EQ_I(parley_send_wait(a, "lp-1", "bob", "hi bob", 6, &ack, 5000), PARLEY_OK);
  CHECK_EQ_U(ack.seq, 1);
  CHECK_STR(ack.conv, "dm:alice:bob");
  CHECK_EQ_I(parley_send_wait(a, "lp-2", "nobody", "x", 1, &ack, 5000), PARLEY_E_UNKNOWN_PEER);
  pump(a, b, 500);
  CHECK_EQ_I(rb.n, 1);
  CHECK_STR(rb.last_from, "alice");

  /* Kill the server, queue 50 sends meanwhile, restart: the outbox drains. */
  tl_server_kill(&s, SIGKILL);
  pump(a, b, 200);
  char id[32];
  for (int i = 0; i < 50; i++) {
    snprintf(id, sizeof id, "down-%d", i);
    CHECK_EQ_I(parley_send(a, id, "bob", id, strlen(id), NULL), PARLEY_OK);
  }
  CHECK_EQ_U(parley_outbox_len(a), 50);
  tl_server_restart(&s);
  for (int i = 0; i < 1000 && (ra.acks < 50 || rb.n < 51); i++)
    pump(a, b, 20);
  CHECK_EQ_I(ra.acks, 50);
  CHECK_EQ_U(parley_outbox_len(a), 0);
  CHECK_EQ_I(rb.n, 51);      /* each once */
  CHECK_EQ_I(rb.dup_seq, 0); /* and in order */
  CHECK_EQ_U(rb.last_seq, 51);
  CHECK_EQ_I(parley_get_state(a), PARLEY_STATE_AUTHENTICATED);
  parley_free(a);
  parley_free(b);
  tl_server_stop(&s);
}

/* Sends past the server's per-user rate are answered RATE_LIMITED with
 * retry_after_ms: the outbox sends them again, same ids, when told, and
 * every message arrives exactly once (protocol.md 10.7). */
static tl_server limited; /* stopped by tl_run_server, also when a check fails */

static void test_rate_limited_sends_retried(void) {
  tl_server_start(&limited, FAST " --send-rate 20 --send-burst 10");
  rx ra = {0}, rb = {0};
  parley *a = client(&limited, &ra), *b = client(&limited, &rb);
  CHECK_EQ_I(parley_register(a, "alice", "alice-secret", "phone"), PARLEY_OK);
  CHECK_EQ_I(parley_register(b, "bob", "bob-secret", "phone"), PARLEY_OK);
  char id[32];
  for (int i = 0; i < 40; i++) {
    snprintf(id, sizeof id, "burst-%d", i);
    CHECK_EQ_I(parley_send(a, id, "bob", id, strlen(id), NULL), PARLEY_OK);
  }
  for (int i = 0; i < 1000 && (parley_outbox_len(a) || rb.n < 40); i++)
    pump(a, b, 20);
  CHECK_EQ_U(parley_outbox_len(a), 0);
  CHECK_EQ_I(rb.n, 40); /* each once */
  CHECK_EQ_I(rb.dup_seq, 0);
  CHECK_EQ_U(rb.last_seq, 40);
  parley_free(a);
  parley_free(b);
}

/* parley_settings_wait reads the privacy settings (NULL change), changes
 * only the fields given, refuses a value out of range locally (PARLEY_E_ARG,
 * nothing changed), and the server applies them: bob cannot put alice, whose
 * group_add is NOBODY, in a group (protocol.md 11.8). */
static tl_server settings_srv; /* stopped by tl_run_server, also when a check fails */

static void check_settings(const parley_settings *got, int rr, int ls, int ga) {
  CHECK_EQ_I(got->read_receipts, rr);
  CHECK_EQ_I(got->last_seen, ls);
  CHECK_EQ_I(got->group_add, ga);
}

static void test_settings(void) {
  rx ra = {0}, rb = {0};
  parley *a, *b;
  alice_and_bob(&settings_srv, &ra, &rb, &a, &b);
  parley_settings now;
  CHECK_EQ_I(parley_settings_wait(a, NULL, &now, 5000), PARLEY_OK);
  check_settings(&now, PARLEY_READ_RECEIPTS_ON, PARLEY_LAST_SEEN_CONTACTS, PARLEY_GROUP_ADD_EVERYONE);

  parley_settings ch = {.read_receipts = PARLEY_READ_RECEIPTS_OFF, .group_add = PARLEY_GROUP_ADD_NOBODY};
  CHECK_EQ_I(parley_settings_wait(a, &ch, &now, 5000), PARLEY_OK);
  check_settings(&now, PARLEY_READ_RECEIPTS_OFF, PARLEY_LAST_SEEN_CONTACTS, PARLEY_GROUP_ADD_NOBODY);
  ch = (parley_settings){.last_seen = PARLEY_LAST_SEEN_NOBODY};
  CHECK_EQ_I(parley_settings_wait(a, &ch, NULL, 5000), PARLEY_OK);
  ch = (parley_settings){0}; /* all unchanged: a read */
  CHECK_EQ_I(parley_settings_wait(a, &ch, &now, 5000), PARLEY_OK);
  check_settings(&now, PARLEY_READ_RECEIPTS_OFF, PARLEY_LAST_SEEN_NOBODY, PARLEY_GROUP_ADD_NOBODY);
  CHECK_EQ_I(parley_settings_wait(b, NULL, &now, 5000), PARLEY_OK); /* bob's are his own */
  check_settings(&now, PARLEY_READ_RECEIPTS_ON, PARLEY_LAST_SEEN_CONTACTS, PARLEY_GROUP_ADD_EVERYONE);

  /* Out of range: refused before anything is sent, nothing changed. */
  ch = (parley_settings){.read_receipts = PARLEY_READ_RECEIPTS_ON, .group_add = 4};
  CHECK_EQ_I(parley_settings_wait(a, &ch, &now, 5000), PARLEY_E_ARG);
  ch = (parley_settings){.last_seen = -1};
  CHECK_EQ_I(parley_settings_wait(a, &ch, &now, 5000), PARLEY_E_ARG);
  ch = (parley_settings){.read_receipts = 3};
  CHECK_EQ_I(parley_settings_wait(a, &ch, &now, 5000), PARLEY_E_ARG);
  CHECK_EQ_I(parley_settings_wait(a, NULL, &now, 5000), PARLEY_OK);
  check_settings(&now, PARLEY_READ_RECEIPTS_OFF, PARLEY_LAST_SEEN_NOBODY, PARLEY_GROUP_ADD_NOBODY);
  CHECK_EQ_I(parley_settings_wait(NULL, NULL, &now, 5000), PARLEY_E_ARG);

  /* The server applies group_add: NOBODY refuses bob, EVERYONE lets him. */
  const char *members[] = {"alice"};
  parley_group g;
  memset(&g, 0, sizeof g);
  CHECK_EQ_I(parley_group_create_wait(b, "team", "", members, 1, &g, 5000), PARLEY_E_NOT_ALLOWED);
  parley_group_clear(&g);
  ch = (parley_settings){.group_add = PARLEY_GROUP_ADD_EVERYONE};
  CHECK_EQ_I(parley_settings_wait(a, &ch, &now, 5000), PARLEY_OK);
  check_settings(&now, PARLEY_READ_RECEIPTS_OFF, PARLEY_LAST_SEEN_NOBODY, PARLEY_GROUP_ADD_EVERYONE);
  CHECK_EQ_I(parley_group_create_wait(b, "team", "", members, 1, &g, 5000), PARLEY_OK);
  parley_group_clear(&g);
  parley_free(a);
  parley_free(b);
}

/* Message actions (protocol.md 11.9) through parley_send_act_wait: a reply
 * and a reaction arrive with their act; a refused edit returns its code. */
static tl_server acts_srv;

static void test_message_actions(void) {
  rx ra = {0}, rb = {0};
  parley *a, *b;
  alice_and_bob(&acts_srv, &ra, &rb, &a, &b);
  parley_send_ack ack;
  CHECK_EQ_I(parley_send_wait(a, "m1", "bob", "hello", 5, &ack, 5000), PARLEY_OK);
  parley_act reply = {.kind = PARLEY_ACT_NONE, .reply_to = 1};
  CHECK_EQ_I(parley_send_act_wait(b, "r1", "alice", NULL, &reply, "hi", 2, &ack, 5000), PARLEY_OK);
  CHECK_EQ_U(ack.seq, 2);
  for (int i = 0; i < 500 && ra.n < 1; i++)
    pump(a, b, 10);
  CHECK_EQ_I(ra.last_kind, PARLEY_ACT_NONE);
  CHECK_EQ_U(ra.last_reply, 1);
  parley_act react = {.kind = PARLEY_ACT_REACTION, .target = 1};
  CHECK_EQ_I(parley_send_act_wait(b, "x1", "alice", NULL, &react, "+1", 2, &ack, 5000), PARLEY_OK);
  for (int i = 0; i < 500 && ra.n < 2; i++)
    pump(a, b, 10);
  CHECK_EQ_I(ra.last_kind, PARLEY_ACT_REACTION);
  CHECK_EQ_U(ra.last_target, 1);
  CHECK_STR(ra.last_body, "+1");
  parley_act edit = {.kind = PARLEY_ACT_EDIT, .target = 1};
  CHECK_EQ_I(parley_send_act_wait(b, "e1", "alice", NULL, &edit, "mine", 4, &ack, 5000), PARLEY_E_NOT_AUTHOR);
  edit.vanish_at = 1; /* the server's to set */
  CHECK_EQ_I(parley_send_act_wait(a, "e2", "bob", NULL, &edit, "hello!", 6, &ack, 5000), PARLEY_E_ARG);
  parley_free(a);
  parley_free(b);
}

int main(void) {
  RUN(test_send_receive_and_reconnect);
  tl_run_server(&acts_srv, "test_message_actions", test_message_actions);
  tl_run_server(&limited, "test_rate_limited_sends_retried", test_rate_limited_sends_retried);
  tl_run_server(&settings_srv, "test_settings", test_settings);
  return tl_summary();
}
