/* Linked shards (pl_store_link, pl_store_shard.c): a request runs on the
 * shard of the user it concerns, found from a name, a token's bucket or an
 * id; counts and the operator's lists run on every shard and are merged.
 * Two SQLite stores stand for two databases here: placement and merging are
 * the router's, whatever the backend (the PostgreSQL test, pg_test_shards,
 * checks ids and the shard record on real databases). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rules/pl_bucket.h"
#include "store/pl_shardmap.h"
#include "store/pl_store_int.h"
#include "store_db.h"

/* "alice" is in bucket 14599 (shard 1 of 2), "bob" in 2644 (shard 0) */
#define ALICE_BUCKET 14599u

/* a sign-up through the linked set (with an invite code, or NULL): its status */
static pl_err signup_with(pl_store *s, const char *user, unsigned tok, const char *invite) {
  pl_store_req r = {.op = PL_STORE_REGISTER};
  r.u.reg.in.user = user;
  r.u.reg.in.invite = invite;
  r.u.reg.in.device = "phone";
  r.u.reg.in.pwhash = "x";
  token(r.u.reg.in.token_hash, tok);
  pl_err e = pl_store_call(s, &r);
  pl_store_req_clear(&r);
  return e;
}

static pl_err signup(pl_store *s, const char *user, unsigned tok) { return signup_with(s, user, tok, NULL); }

/* The operator's action on user through the linked set, into *a (clear it). */
static pl_err user_action(pl_store *s, int action, const char *user, pl_store_req *a) {
  memset(a, 0, sizeof *a);
  a->op = PL_STORE_ADMIN;
  a->u.admin.in.action = action;
  a->u.admin.in.user = user;
  return pl_store_call(s, a);
}

/* uses left of the one invite the operator sees (-1: none listed) */
static long long invite_uses(pl_store *s) {
  pl_store_req a = {.op = PL_STORE_ADMIN};
  a.u.admin.in.action = PL_ADMIN_INVITES;
  CHECK_EQ_I(pl_store_call(s, &a), PL_OK);
  long long n = a.u.admin.out.ninvites == 1 ? (long long)a.u.admin.out.invites[0].uses_left : -1;
  pl_store_req_clear(&a);
  return n;
}

/* Two SQLite stores, each in a temp dir, linked as shards 0 and 1. */
static void shards_open(char *dir[2], pl_store *s[2]) {
  for (unsigned i = 0; i < 2; i++) {
    dir[i] = tl_tempdir();
    pl_store_config c = {
        .dir = dir[i], .ttl_ms = 3600000, .max_devices = 4, .max_queue = 1000, .shard = i, .nshards = 2};
    CHECK_EQ_I(pl_store_open(&s[i], &pl_store_sqlite, &c, &store_db_hooks), PL_OK);
  }
  pl_store_link(s, 2);
}

static void shards_close(char *dir[2], pl_store *s[2]) {
  pl_store_close(s[0]); /* closes both */
  for (unsigned i = 0; i < 2; i++) {
    tl_rmrf(dir[i]);
    free(dir[i]);
  }
}

/* Shard 0 keeps the invites; a sign-up on shard 1 takes a use there first
 * and gives it back when the sign-up fails. */
static void test_invites_on_shard0(void) {
  char *dir[2];
  pl_store *s[2];
  shards_open(dir, s);
  pl_store_req a = {.op = PL_STORE_ADMIN};
  a.u.admin.in.action = PL_ADMIN_INVITE;
  a.u.admin.in.code = "c1";
  a.u.admin.in.uses = 2;
  CHECK_EQ_I(pl_store_call(s[1], &a), PL_OK);
  pl_store_req_clear(&a);
  CHECK_EQ_I(db_count(dir[0], "invites"), 1);
  CHECK_EQ_I(db_count(dir[1], "invites"), 0);

  /* alice and erin live on shard 1, bob on shard 0 */
  CHECK_EQ_I(signup_with(s[0], "alice", 1, "c1"), PL_OK);
  CHECK_EQ_I(db_count(dir[1], "users"), 1);
  CHECK_EQ_I(invite_uses(s[0]), 1);
  CHECK_EQ_I(signup_with(s[0], "alice", 2, "c1"), PL_ERR_USER_EXISTS);
  CHECK_EQ_I(invite_uses(s[0]), 1); /* given back */
  CHECK_EQ_I(signup_with(s[0], "erin", 3, "nope"), PL_ERR_INVITE_INVALID);
  CHECK_EQ_I(db_count(dir[1], "users"), 1);
  CHECK_EQ_I(signup_with(s[1], "bob", 4, "c1"), PL_OK); /* on shard 0: in one transaction */
  CHECK_EQ_I(invite_uses(s[0]), -1);                    /* used up: no longer listed */
  CHECK_EQ_I(signup_with(s[0], "erin", 5, "c1"), PL_ERR_INVITE_INVALID);
  CHECK_EQ_I(db_count(dir[1], "users"), 1);
  CHECK_EQ_I(db_count(dir[0], "users"), 1);

  shards_close(dir, s);
}

static void test_requests_run_on_their_users_shard(void) {
  char *dir[2];
  pl_store *s[2];
  shards_open(dir, s);
  /* sign-up by name: each account on its home shard, whichever store is asked */
  CHECK_EQ_I(signup(s[0], "alice", 1), PL_OK);
  CHECK_EQ_I(signup(s[1], "bob", 2), PL_OK);
  CHECK_EQ_I(db_count(dir[1], "users"), 1);
  CHECK_EQ_I(db_count(dir[0], "users"), 1);
  CHECK_EQ_I(signup(s[0], "alice", 3), PL_ERR_USER_EXISTS); /* found there again */

  pl_store_req g = {.op = PL_STORE_GET_USER};
  g.u.get_user.in.user = "alice";
  CHECK_EQ_I(pl_store_call(s[0], &g), PL_OK);
  CHECK(g.u.get_user.out.user_id != 0);
  pl_store_req_clear(&g);

  /* a token's bucket names its shard: without it, shard 0 does not know it */
  pl_store_req r = {.op = PL_STORE_RESUME};
  token(r.u.resume.in.token_hash, 1);
  r.route = 1 + ALICE_BUCKET;
  CHECK_EQ_I(pl_store_call(s[0], &r), PL_OK);
  CHECK_STR(r.u.resume.out.user, "alice");
  pl_store_req_clear(&r);
  memset(&r, 0, sizeof r);
  r.op = PL_STORE_RESUME;
  token(r.u.resume.in.token_hash, 1);
  CHECK_EQ_I(pl_store_call(s[0], &r), PL_ERR_BAD_TOKEN);
  pl_store_req_clear(&r);

  /* counted on both and summed */
  pl_store_req st = {.op = PL_STORE_STATS};
  CHECK_EQ_I(pl_store_call(s[1], &st), PL_OK);
  CHECK_EQ_U(st.u.stats.out.counts.users, 2);
  CHECK_EQ_U(st.u.stats.out.counts.devices, 2);
  pl_store_req_clear(&st);

  /* the operator's list: both shards' users, merged in name order, paged */
  CHECK_EQ_I(signup(s[0], "carol", 4), PL_OK);
  pl_store_req a = {.op = PL_STORE_ADMIN};
  a.u.admin.in.action = PL_ADMIN_USERS;
  a.u.admin.in.limit = 2;
  CHECK_EQ_I(pl_store_call(s[0], &a), PL_OK);
  CHECK_EQ_U(a.u.admin.out.nusers, 2);
  CHECK_STR(a.u.admin.out.users[0].name, "alice");
  CHECK_STR(a.u.admin.out.users[1].name, "bob");
  CHECK_EQ_I(a.u.admin.out.more, 1);
  pl_store_req_clear(&a);
  memset(&a, 0, sizeof a);
  a.op = PL_STORE_ADMIN;
  a.u.admin.in.action = PL_ADMIN_USERS;
  a.u.admin.in.limit = 2;
  a.u.admin.in.after = "bob";
  CHECK_EQ_I(pl_store_call(s[0], &a), PL_OK);
  CHECK_EQ_U(a.u.admin.out.nusers, 1);
  CHECK_STR(a.u.admin.out.users[0].name, "carol");
  CHECK_EQ_I(a.u.admin.out.more, 0);
  pl_store_req_clear(&a);

  /* the operator's view of alice: her groups asked of every shard while
   * hers answers (shard 0 knows no alice: NOT_FOUND there is no error);
   * deleted: out of every shard's groups first, then gone from hers */
  CHECK_EQ_I(user_action(s[0], PL_ADMIN_USER, "alice", &a), PL_OK);
  CHECK_EQ_U(a.u.admin.out.nusers, 1);
  CHECK_STR(a.u.admin.out.nusers ? a.u.admin.out.users[0].name : "", "alice");
  CHECK_EQ_U(a.u.admin.out.ngroups, 0);
  pl_store_req_clear(&a);
  CHECK_EQ_I(user_action(s[0], PL_ADMIN_DELETE, "alice", &a), PL_OK);
  pl_store_req_clear(&a);
  CHECK_EQ_I(db_count(dir[1], "users"), 0);
  CHECK_EQ_I(db_count(dir[0], "users"), 2);
  CHECK_EQ_I(user_action(s[0], PL_ADMIN_USER, "alice", &a), PL_ERR_NOT_FOUND);
  pl_store_req_clear(&a);

  shards_close(dir, s);
}

static void test_route(void) {
  pl_store_req r = {.op = PL_STORE_FETCH};
  r.user_id = pl_bucket_id(ALICE_BUCKET, 7);
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 1);
  CHECK_EQ_I(pl_store_route(&r, NULL, 4), 3);
  r.user_id = 7; /* bucket 0 */
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 0);
  memset(&r, 0, sizeof r);
  r.op = PL_STORE_GET_USER;
  r.u.get_user.in.user = "bob";
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 0);
  r.u.get_user.in.user = "alice";
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 1);
  memset(&r, 0, sizeof r);
  r.op = PL_STORE_GROUP_DEVICES;
  r.u.group_devices.in.group = pl_bucket_id(ALICE_BUCKET, 3);
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 1);
  memset(&r, 0, sizeof r);
  r.op = PL_STORE_MEDIA_GET;
  r.u.media_get.in.any_user = 1;
  r.u.media_get.in.media_id = "39070000000000000000000000000000";
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 1);
  r.op = PL_STORE_PUSH_CLAIM;
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), PL_ROUTE_EACH);
  r.op = PL_STORE_PUSH_DONE;
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), PL_ROUTE_SPLIT);
  /* a 1:1 send: the conversation's shard, the pair's lower bucket's, with
   * an attachment or without; a group's: the group's */
  memset(&r, 0, sizeof r);
  r.op = PL_STORE_SEND;
  r.user_id = pl_bucket_id(ALICE_BUCKET, 7);
  r.u.send.in.peer = "bob";
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 0);
  r.u.send.in.media_id = "39070000000000000000000000000000";
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 0);
  r.u.send.in.peer = "alice";
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 1);
  r.u.send.in.peer = NULL;
  r.u.send.in.group = pl_bucket_id(0, 3);
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 0);
  /* every request naming a group: the group's shard, whoever asks; the
   * asker's groups: every shard's */
  memset(&r, 0, sizeof r);
  r.user_id = pl_bucket_id(0, 7);
  r.op = PL_STORE_GROUP_UPDATE;
  r.u.group_update.in.group = pl_bucket_id(ALICE_BUCKET, 3);
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 1);
  r.op = PL_STORE_GROUP_RECEIPTS;
  r.u.group_receipts.in.group = pl_bucket_id(ALICE_BUCKET, 3);
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 1);
  memset(&r.u, 0, sizeof r.u);
  r.op = PL_STORE_MARK_READ;
  r.u.mark_read.in.group = pl_bucket_id(ALICE_BUCKET, 3);
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 1);
  r.u.mark_read.in.group = 0;
  r.u.mark_read.in.peer = "alice";
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 0); /* 1:1: the reader's */
  memset(&r.u, 0, sizeof r.u);
  r.op = PL_STORE_TYPING;
  r.u.typing.in.group = pl_bucket_id(ALICE_BUCKET, 3);
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 1);
  memset(&r.u, 0, sizeof r.u);
  r.op = PL_STORE_GROUP_CREATE;
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 0); /* the creator's: the gid takes its bucket */
  r.op = PL_STORE_GROUP_LIST;
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), PL_ROUTE_EACH);
  memset(&r, 0, sizeof r);
  r.op = PL_STORE_ADMIN;
  r.u.admin.in.action = PL_ADMIN_DISABLE;
  r.u.admin.in.user = "alice";
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), 1);
  r.u.admin.in.action = PL_ADMIN_STATS;
  CHECK_EQ_I(pl_store_route(&r, NULL, 2), PL_ROUTE_EACH);
}

static unsigned count_bits(const uint64_t *bits) {
  unsigned n = 0;
  for (unsigned w = 0; w < PL_SHARDMAP_WORDS; w++)
    n += (unsigned)__builtin_popcountll(bits[w]);
  return n;
}
static int has_bit(const uint64_t *bits, uint32_t b) { return (int)(bits[b / 64] >> (b % 64) & 1); }

static atomic_int stale_done;
static void on_stale_done(pl_store_req *r) {
  (void)r;
  atomic_store(&stale_done, 1);
}

/* r put on store s's queue as the router would have at map epoch `at`; its
 * status once run. */
static pl_err run_routed_at(pl_store *s, pl_store_req *r, uint64_t at) {
  atomic_store(&stale_done, 0);
  r->done = on_stale_done;
  r->routed_at = at + 1;
  pl_store__enqueue(s, r);
  for (uint64_t until = tl_now_ms() + 10000; !atomic_load(&stale_done) && tl_now_ms() < until;)
    usleep(1000);
  CHECK(atomic_load(&stale_done));
  return r->status;
}

/* A request routed by an older map than the one held when it runs, whose
 * bucket the newer map puts on another shard, does not run where it was
 * sent: run there, a write would pass that shard's fence (the session
 * tells the newer epoch) and commit after the mover copied from it, lost.
 * It fails with PL_ERR_MOVED (a retryable INTERNAL for the client). A
 * request whose shard the newer map did not change runs. */
static void test_stale_route_refused(void) {
  char *dir[2];
  pl_store *s[2];
  pl_shardmap *m = pl_shardmap_new();
  for (unsigned i = 0; i < 2; i++) {
    dir[i] = tl_tempdir();
    pl_store_config c = {.dir = dir[i],
                         .ttl_ms = 3600000,
                         .max_devices = 4,
                         .max_queue = 1000,
                         .shard = i,
                         .nshards = 2,
                         .shardmap = m};
    CHECK_EQ_I(pl_store_open(&s[i], &pl_store_sqlite, &c, &store_db_hooks), PL_OK);
  }
  pl_store_link(s, 2);
  CHECK_EQ_I(signup(s[0], "alice", 1), PL_OK); /* bucket 14599: shard 1 */
  CHECK_EQ_I(signup(s[0], "bob", 2), PL_OK);   /* bucket 2644: shard 0 */
  pl_store_req r = {.op = PL_STORE_GET_USER};
  r.u.get_user.in.user = "alice";
  CHECK_EQ_I(run_routed_at(s[1], &r, 0), PL_OK); /* the map has not moved: it runs */
  pl_store_req_clear(&r);
  uint32_t b[] = {ALICE_BUCKET}, to[] = {0};
  CHECK_EQ_I(pl_shardmap_take(m, 1, b, to, 1), 1); /* alice's bucket moved to shard 0 */
  r = (pl_store_req){.op = PL_STORE_GET_USER};
  r.u.get_user.in.user = "alice";
  CHECK_EQ_I(run_routed_at(s[1], &r, 0), PL_ERR_MOVED); /* sent to shard 1 at epoch 0 */
  pl_store_req_clear(&r);
  pl_store_stats st;
  pl_store_get_stats(s[1], &st);
  CHECK_EQ_I((int)st.fenced, 1); /* counted (/metrics: parley_store_fenced_total) */
  r = (pl_store_req){.op = PL_STORE_GET_USER};
  r.u.get_user.in.user = "alice";
  CHECK_EQ_I(run_routed_at(s[0], &r, 1),
             PL_ERR_BAD_CREDENTIALS); /* routed at epoch 1: runs (no row moved here) */
  pl_store_req_clear(&r);
  r = (pl_store_req){.op = PL_STORE_GET_USER};
  r.u.get_user.in.user = "bob";
  CHECK_EQ_I(run_routed_at(s[0], &r, 0), PL_OK); /* bob's bucket did not move */
  pl_store_req_clear(&r);
  shards_close(dir, s);
  pl_shardmap_free(m);
}

/* A moved bucket routes to its new shard; the others stay with the formula;
 * an older epoch's map is not taken over a newer one. */
static void test_route_moved(void) {
  pl_shardmap *m = pl_shardmap_new();
  pl_store_req r = {.op = PL_STORE_FETCH};
  r.user_id = pl_bucket_id(ALICE_BUCKET, 7);
  CHECK_EQ_U(pl_shardmap_epoch(m), 0);
  CHECK_EQ_I(pl_store_route(&r, m, 2), 1);
  uint32_t b[] = {ALICE_BUCKET, 5}, to[] = {0, 1};
  uint64_t bits[PL_SHARDMAP_WORDS];
  CHECK_EQ_I(pl_shardmap_changed(m, bits), 0);
  CHECK_EQ_I(pl_shardmap_take(m, 3, b, to, 2), 1);
  CHECK_EQ_U(pl_shardmap_epoch(m), 3);
  CHECK_EQ_I(pl_store_route(&r, m, 2), 0);
  /* the buckets whose shard changed, once: their connected devices read again */
  CHECK_EQ_I(pl_shardmap_changed(m, bits), 1);
  CHECK_EQ_U(count_bits(bits), 2);
  CHECK(has_bit(bits, ALICE_BUCKET) && has_bit(bits, 5));
  CHECK_EQ_I(pl_shardmap_changed(m, bits), 0);
  CHECK_EQ_U(count_bits(bits), 0);
  CHECK_EQ_U(pl_shardmap_of(m, 5, 2), 1);
  CHECK_EQ_U(pl_shardmap_of(m, ALICE_BUCKET + 1, 2), 1); /* its neighbour was not moved */
  CHECK_EQ_U(pl_shardmap_of(m, 6, 2), 0);
  r.op = PL_STORE_GET_USER;
  r.u.get_user.in.user = "alice";
  CHECK_EQ_I(pl_store_route(&r, m, 2), 0);
  CHECK_EQ_I(pl_shardmap_take(m, 3, b, to, 1), 0); /* not newer */
  CHECK_EQ_U(pl_shardmap_of(m, 5, 2), 1);
  CHECK_EQ_I(pl_shardmap_take(m, 4, b + 1, to + 1, 1), 1); /* alice's bucket back where the formula has it */
  CHECK_EQ_I(pl_shardmap_changed(m, bits), 1);             /* alice's only: 5 stays on shard 1 */
  CHECK_EQ_U(count_bits(bits), 1);
  CHECK(has_bit(bits, ALICE_BUCKET));
  CHECK_EQ_U(pl_shardmap_of(m, ALICE_BUCKET, 2), 1);
  CHECK_EQ_U(pl_shardmap_of(m, 5, 2), 1);
  CHECK_EQ_U(pl_shardmap_of(m, 5, 1), 0); /* a shard the node does not have: the formula */
  pl_shardmap_free(m);
}

/* A shard added to a store of two holds only the buckets moved to it: the
 * formula still spreads the others over the first two. */
static void test_route_added_shard(void) {
  pl_shardmap *m = pl_shardmap_new();
  pl_shardmap_set_base(m, 2);
  CHECK_EQ_U(pl_shardmap_base(m), 2);
  CHECK_EQ_U(pl_shardmap_of(m, ALICE_BUCKET, 3), 1); /* 14599 * 2 / 16384: 1 (with 3: 2) */
  CHECK_EQ_U(pl_shardmap_of(m, 100, 3), 0);
  uint32_t b[] = {ALICE_BUCKET}, to[] = {2};
  CHECK_EQ_I(pl_shardmap_take(m, 1, b, to, 1), 1);
  CHECK_EQ_U(pl_shardmap_of(m, ALICE_BUCKET, 3), 2);
  CHECK_EQ_U(pl_shardmap_of(m, ALICE_BUCKET - 1, 3), 1);
  pl_store_req r = {.op = PL_STORE_GET_USER};
  r.u.get_user.in.user = "alice";
  CHECK_EQ_I(pl_store_route(&r, m, 3), 2);
  pl_shardmap_free(m);
}

int main(void) {
  RUN(test_route);
  RUN(test_route_moved);
  RUN(test_stale_route_refused);
  RUN(test_route_added_shard);
  RUN(test_requests_run_on_their_users_shard);
  RUN(test_invites_on_shard0);
  return tl_summary();
}
