/* test_store_groups: a device's group histories as streams of their own
 * (protocol 2: in.streams = 1), on the SQLite backend.
 *
 * A device's stream is its queue (positions: qid) and each of its groups'
 * histories (positions: the group's seq). Protocol 2 fetches each group
 * after the seq its connection asks for (gafter) or its stored cursor, and
 * acknowledges each group apart (gacks), moving a cursor per (device,
 * group) that outlives a restart. Protocol 1 (one stream merged by qid) is
 * what test_store.c and the integration tests check. */
#include <stdlib.h>
#include <string.h>

#include "common/pl_log.h"
#include "common/pl_time.h"
#include "store/pl_store.h"
#include "store_db.h"
#include "testlib.h"

static pl_store *open_store(const char *dir) {
  pl_store_config c = {.dir = dir, .ttl_ms = 3600u * 1000u, .max_devices = 4, .max_queue = 1000};
  pl_store *s = NULL;
  CHECK_EQ_I(pl_store_open(&s, &pl_store_sqlite, &c, &store_db_hooks), PL_OK);
  return s;
}

/* A protocol 2 fetch for a's device: the queue after the qid after, each
 * group listed in gafter after its seq (the others after their cursor). */
static void fetch2(pl_store *s, const account *a, uint64_t after, const pl_store_gpos *gafter, size_t n,
                   uint32_t limit, pl_store_req *r) {
  memset(r, 0, sizeof *r);
  r->op = PL_STORE_FETCH;
  r->device_id = a->did;
  r->user_id = a->uid;
  r->u.fetch.in.streams = 1;
  r->u.fetch.in.after = after;
  r->u.fetch.in.gafter = gafter;
  r->u.fetch.in.ngafter = n;
  r->u.fetch.in.limit = limit;
  CHECK_EQ_I(pl_store_call(s, r), PL_OK);
  CHECK_EQ_I(r->status, PL_OK);
}

/* A protocol 1 fetch: one stream after the qid after. */
static void fetch1(pl_store *s, const account *a, uint64_t after, uint32_t limit, pl_store_req *r) {
  memset(r, 0, sizeof *r);
  r->op = PL_STORE_FETCH;
  r->device_id = a->did;
  r->user_id = a->uid;
  r->u.fetch.in.after = after;
  r->u.fetch.in.limit = limit;
  CHECK_EQ_I(pl_store_call(s, r), PL_OK);
  CHECK_EQ_I(r->status, PL_OK);
}

/* A protocol 2 Ack: the queue up to upto, each group in gacks up to its seq. */
static void ack2(pl_store *s, const account *a, uint64_t upto, const pl_store_gpos *gacks, size_t n) {
  pl_store_req r = {.op = PL_STORE_ACK};
  r.device_id = a->did;
  r.user_id = a->uid;
  r.u.ack.in.streams = 1;
  r.u.ack.in.upto = upto;
  r.u.ack.in.gacks = gacks;
  r.u.ack.in.ngacks = n;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  pl_store_req_clear(&r);
}

/* A protocol 1 Ack up to the qid upto (queue and groups). */
static void ack1(pl_store *s, const account *a, uint64_t upto) {
  pl_store_req r = {.op = PL_STORE_ACK};
  r.device_id = a->did;
  r.user_id = a->uid;
  r.u.ack.in.upto = upto;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  pl_store_req_clear(&r);
}

/* One expected entry of a page: a group's (gid, seq), or the queue's (gid 0, qid). */
typedef struct want {
  uint64_t gid, pos;
} want;

/* The page holds exactly w[0..n), in order (qid order), and says more. */
static void page_is(const pl_store_req *r, const want *w, size_t n, int more) {
  CHECK_EQ_U(r->u.fetch.out.nmsgs, n);
  CHECK_EQ_I(r->u.fetch.out.more, more);
  for (size_t i = 0; i < n; i++) {
    const pl_msg *m = &r->u.fetch.out.msgs[i];
    CHECK_EQ_U(m->gid, w[i].gid);
    CHECK_EQ_U(w[i].gid ? m->seq : m->qid, w[i].pos);
    if (i)
      CHECK(m->qid > r->u.fetch.out.msgs[i - 1].qid);
  }
}

/* Rows of DIR's gcursor for (device, gid) with seq; -1 if unreadable. */
static long long cursor_rows(const char *dir, uint64_t dev, uint64_t gid, uint64_t seq) {
  char where[160];
  snprintf(where, sizeof where, "gcursor WHERE device_id = %llu AND gid = %llu AND seq = %llu",
           (unsigned long long)dev, (unsigned long long)gid, (unsigned long long)seq);
  return db_count(dir, where);
}

/* Two groups and the queue, interleaved: a protocol 2 page takes the first
 * `limit` of the three streams merged by qid, so each stream's part is a
 * prefix of it, and the next fetch goes on per stream (the queue after its
 * last qid, each group after its last seq), not filtered by the queue's
 * qid. Every group entry names its group. */
static void test_fetch_streams_resume_per_group(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir);
  account a = reg(s, "alice", "phone", 1), b = reg(s, "bob", "phone", 2);
  const char *bob[] = {"bob"};
  uint64_t g1 = group_make(s, &a, bob, 1, NULL), g2 = group_make(s, &a, bob, 1, NULL); /* seq 1 each */
  msg_send(s, &a, g1, NULL, "g1-2");
  entry_pos d1 = msg_send(s, &a, 0, "bob", "d1");
  msg_send(s, &a, g2, NULL, "g2-2");
  msg_send(s, &a, g1, NULL, "g1-3");
  entry_pos d2 = msg_send(s, &a, 0, "bob", "d2");
  msg_send(s, &a, g2, NULL, "g2-3");
  msg_send(s, &a, g1, NULL, "g1-4");
  pl_store_req r;

  fetch2(s, &b, 0, NULL, 0, 4, &r);
  page_is(&r, (const want[]){{g1, 1}, {g2, 1}, {g1, 2}, {0, d1.qid}}, 4, 1);
  char conv[32];
  snprintf(conv, sizeof conv, "g:%llu", (unsigned long long)g1);
  CHECK_STR(r.u.fetch.out.msgs[2].conv, conv);
  CHECK_STR(r.u.fetch.out.msgs[2].id, "g1-2");
  CHECK_EQ_U(r.u.fetch.out.ngids, 2); /* the live audience, as in protocol 1 */
  pl_store_req_clear(&r);
  pl_store_gpos at[] = {{g1, 2}, {g2, 1}};
  fetch2(s, &b, d1.qid, at, 2, 4, &r);
  page_is(&r, (const want[]){{g2, 2}, {g1, 3}, {0, d2.qid}, {g2, 3}}, 4, 1);
  pl_store_req_clear(&r);
  pl_store_gpos at2[] = {{g1, 3}, {g2, 3}};
  fetch2(s, &b, d2.qid, at2, 2, 4, &r);
  page_is(&r, (const want[]){{g1, 4}}, 1, 0);
  pl_store_req_clear(&r);

  /* each group resumes on its own: g1 after seq 1 though the queue is past
   * qids of g1's later entries; g2, not listed, from its cursor (nothing acked) */
  pl_store_gpos only1[] = {{g1, 1}};
  fetch2(s, &b, d2.qid, only1, 1, 0, &r);
  page_is(&r, (const want[]){{g2, 1}, {g1, 2}, {g2, 2}, {g1, 3}, {g2, 3}, {g1, 4}}, 6, 0);
  pl_store_req_clear(&r);
  /* protocol 1 over the same data: one stream, everything after the qid */
  fetch1(s, &b, d1.qid, 0, &r);
  page_is(&r, (const want[]){{g2, 2}, {g1, 3}, {0, d2.qid}, {g2, 3}, {g1, 4}}, 5, 0);
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* A 1,000-byte message from a's device to the group gid or the user peer. */
static void big_send(pl_store *s, const account *a, uint64_t gid, const char *peer, const char *cid) {
  static uint8_t body[1000];
  memset(body, 'x', sizeof body);
  msg_send_body(s, a, gid, peer, cid, body, sizeof body);
}

/* Pages are bounded in bytes too: with room for about three 1,000-byte
 * entries per page, paging through the queue and two groups (protocol 1
 * after the last qid; protocol 2 per stream) brings every entry exactly
 * once, in order, every page within the bound but for its last entry; an
 * entry bigger than the bound still comes, alone. */
static void test_fetch_pages_bounded_in_bytes(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir);
  account a = reg(s, "alice", "phone", 1), b = reg(s, "bob", "phone", 2);
  const char *bob[] = {"bob"};
  uint64_t g1 = group_make(s, &a, bob, 1, NULL), g2 = group_make(s, &a, bob, 1, NULL);
  for (int i = 0; i < 8; i++) {
    char id[16];
    snprintf(id, sizeof id, "q%d", i);
    big_send(s, &a, 0, "bob", id);
    snprintf(id, sizeof id, "a%d", i);
    big_send(s, &a, i % 3 ? g1 : g2, NULL, id);
  }
  pl_store_req r;
  fetch1(s, &b, 0, 0, &r); /* all of it, unbounded in practice (1 MiB) */
  size_t n = r.u.fetch.out.nmsgs;
  CHECK_EQ_U(n, 18); /* two GE_CREATED, 8 + 8 messages */
  uint64_t all[32];
  for (size_t i = 0; i < n && i < 32; i++)
    all[i] = r.u.fetch.out.msgs[i].qid;
  pl_store_req_clear(&r);

  for (int proto = 1; proto <= 2; proto++) {
    uint64_t after = 0, got[32];
    size_t ngot = 0, pages = 0;
    pl_store_gpos at[2] = {{g1, 0}, {g2, 0}};
    for (int more = 1; more && pages < 40; pages++) {
      memset(&r, 0, sizeof r);
      r.op = PL_STORE_FETCH;
      r.device_id = b.did;
      r.user_id = b.uid;
      r.u.fetch.in.streams = proto == 2;
      r.u.fetch.in.after = after;
      r.u.fetch.in.gafter = at;
      r.u.fetch.in.ngafter = 2;
      r.u.fetch.in.max_bytes = 3000;
      CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
      CHECK(r.u.fetch.out.nmsgs >= 1);
      size_t weight = 0; /* every entry but the last fits the bound */
      for (size_t i = 0; i + 1 < r.u.fetch.out.nmsgs; i++)
        weight += r.u.fetch.out.msgs[i].body_len + 64;
      CHECK(weight <= 3000);
      for (size_t i = 0; i < r.u.fetch.out.nmsgs && ngot < 32; i++) {
        const pl_msg *m = &r.u.fetch.out.msgs[i];
        got[ngot++] = m->qid;
        if (!m->gid)
          after = m->qid;
        else if (proto == 1)
          after = m->qid;
        else
          at[m->gid == g1 ? 0 : 1].seq = m->seq;
      }
      if (proto == 1 && r.u.fetch.out.nmsgs)
        after = r.u.fetch.out.msgs[r.u.fetch.out.nmsgs - 1].qid;
      more = r.u.fetch.out.more;
      pl_store_req_clear(&r);
    }
    CHECK(pages >= 6);
    CHECK_EQ_U(ngot, n);
    CHECK(memcmp(got, all, n * sizeof *got) == 0); /* once each, in order */
  }
  /* one entry above the bound comes alone */
  memset(&r, 0, sizeof r);
  r.op = PL_STORE_FETCH;
  r.device_id = b.did;
  r.user_id = b.uid;
  r.u.fetch.in.max_bytes = 10;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_U(r.u.fetch.out.nmsgs, 1);
  CHECK_EQ_I(r.u.fetch.out.more, 1);
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* A protocol 2 Ack moves the cursor of each group it names, only that one,
 * never back, never past the group's last seq; a group the user is not in
 * is ignored, and a member who left acks at most up to its removal. The
 * cursors outlive a restart; the Ack's upto is the queue's alone; the
 * member's delivered watermark follows the cursor. */
static void test_ack_streams_per_group(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir);
  account a = reg(s, "alice", "phone", 1), b = reg(s, "bob", "phone", 2), c = reg(s, "carol", "phone", 3);
  const char *bob[] = {"bob"}, *carol[] = {"carol"};
  uint64_t g1 = group_make(s, &a, bob, 1, NULL), g3 = group_make(s, &a, bob, 1, NULL);
  uint64_t g2 = group_make(s, &a, carol, 1, NULL);
  for (int i = 0; i < 3; i++)
    msg_send(s, &a, g1, NULL, i == 0 ? "m1" : i == 1 ? "m2" : "m3"); /* g1 seq 2..4 */
  msg_send(s, &a, g3, NULL, "n1");                                   /* g3 seq 2 */
  msg_send(s, &a, g2, NULL, "c1");                                   /* g2 seq 2 */
  entry_pos d = msg_send(s, &a, 0, "bob", "d1");
  pl_store_req r;

  ack2(s, &b, 0, (const pl_store_gpos[]){{g1, 2}, {g2, 2}}, 2); /* not in g2: ignored */
  CHECK_EQ_I(cursor_rows(dir, b.did, g1, 2), 1);
  CHECK_EQ_I(cursor_rows(dir, b.did, g3, 0), 1); /* written when bob joined, untouched */
  char where[128];
  snprintf(where, sizeof where, "gcursor WHERE device_id = %llu AND gid = %llu", (unsigned long long)b.did,
           (unsigned long long)g2);
  CHECK_EQ_I(db_count(dir, where), 0);
  fetch2(s, &b, 0, NULL, 0, 0, &r);
  page_is(&r, (const want[]){{g3, 1}, {g1, 3}, {g1, 4}, {g3, 2}, {0, d.qid}}, 5, 0);
  pl_store_req_clear(&r);

  /* the watermark moved with the cursor: bob has seq 2 of g1 delivered, not 3 */
  for (uint64_t seq = 2; seq <= 3; seq++) {
    r = (pl_store_req){.op = PL_STORE_GROUP_RECEIPTS};
    r.user_id = a.uid;
    r.u.group_receipts.in.group = g1;
    r.u.group_receipts.in.upto = seq;
    CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
    CHECK_EQ_U(r.u.group_receipts.out.members, 1);
    CHECK_EQ_U(r.u.group_receipts.out.delivered, seq == 2);
    pl_store_req_clear(&r);
  }

  ack2(s, &b, d.qid, (const pl_store_gpos[]){{g1, 1}}, 1); /* back: no; the queue: yes */
  CHECK_EQ_I(cursor_rows(dir, b.did, g1, 2), 1);
  pl_store_close(s); /* and after a restart, each group goes on after its acked seq */
  s = open_store(dir);
  fetch2(s, &b, 0, NULL, 0, 0, &r);
  page_is(&r, (const want[]){{g3, 1}, {g1, 3}, {g1, 4}, {g3, 2}}, 4, 0);
  pl_store_req_clear(&r);
  ack2(s, &b, 0, (const pl_store_gpos[]){{g1, 99}, {g3, 1}}, 2); /* 99: up to the last, 4 */
  CHECK_EQ_I(cursor_rows(dir, b.did, g1, 4), 1);
  fetch2(s, &b, 0, NULL, 0, 0, &r);
  page_is(&r, (const want[]){{g3, 2}}, 1, 0);
  pl_store_req_clear(&r);

  /* carol is removed (g2 seq 3) and g2 goes on (seq 4): she is owed up to 3 */
  entry_pos gone = group_op(s, &a, g2, PL_GROUP_REMOVE, "carol");
  CHECK_EQ_U(gone.seq, 3);
  msg_send(s, &a, g2, NULL, "c2");
  ack2(s, &c, 0, (const pl_store_gpos[]){{g2, 4}}, 1); /* past her removal: ignored */
  fetch2(s, &c, 0, NULL, 0, 0, &r);
  page_is(&r, (const want[]){{g2, 1}, {g2, 2}, {g2, 3}}, 3, 0);
  pl_store_req_clear(&r);
  ack2(s, &c, 0, (const pl_store_gpos[]){{g2, 3}}, 1);
  fetch2(s, &c, 0, NULL, 0, 0, &r);
  page_is(&r, NULL, 0, 0);
  pl_store_req_clear(&r);
  uint64_t deleted = 0; /* the sweep forgets her: nothing is owed any more */
  CHECK_EQ_I(pl_store_expire_now(s, pl_now_ms(), &deleted), PL_OK);
  snprintf(where, sizeof where, "members WHERE uid = %llu", (unsigned long long)c.uid);
  CHECK_EQ_I(db_count(dir, where), 0);
  snprintf(where, sizeof where, "gcursor WHERE device_id = %llu", (unsigned long long)c.did);
  CHECK_EQ_I(db_count(dir, where), 0);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* Protocol 1's Ack (a qid) moves each group's cursor to the newest seq it
 * covers: the group's last when the Ack is past it, else the newest entry
 * at or below the qid (one probe); the sweep deletes what every member
 * device passed. */
static void test_ack_qid_moves_group_cursors(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir);
  account a = reg(s, "alice", "phone", 1), b = reg(s, "bob", "phone", 2);
  const char *bob[] = {"bob"};
  uint64_t g1 = group_make(s, &a, bob, 1, NULL), g2 = group_make(s, &a, bob, 1, NULL);
  entry_pos m2 = msg_send(s, &a, g1, NULL, "m2");
  msg_send(s, &a, g2, NULL, "n2");
  entry_pos d = msg_send(s, &a, 0, "bob", "d1");
  msg_send(s, &a, g1, NULL, "m3");
  ack1(s, &b, d.qid); /* g1 up to m2 (seq 2: m3 is after d), g2 all of it (seq 2) */
  CHECK_EQ_I(cursor_rows(dir, b.did, g1, m2.seq), 1);
  CHECK_EQ_I(cursor_rows(dir, b.did, g2, 2), 1);
  pl_store_req r;
  fetch1(s, &b, 0, 0, &r);
  page_is(&r, (const want[]){{g1, 3}}, 1, 0);
  pl_store_req_clear(&r);
  ack1(s, &a, UINT64_MAX >> 1); /* alice's device has everything, bob's not g1's seq 3 */
  uint64_t deleted = 0;
  CHECK_EQ_I(pl_store_expire_now(s, pl_now_ms(), &deleted), PL_OK);
  CHECK_EQ_U(deleted, 4); /* both created events, m2 and n2 */
  CHECK_EQ_I(db_count(dir, "messages WHERE gid != 0"), 1);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

/* A device made (or signed in again) after entries were sent starts at
 * each group's last seq, and a member added later at the seq before its
 * GE_ADDED event: the cursor rows are written then, so nothing older comes. */
static void test_cursors_start_at_join(void) {
  char *dir = tl_tempdir();
  pl_store *s = open_store(dir);
  account a = reg(s, "alice", "phone", 1), b = reg(s, "bob", "phone", 2), d = reg(s, "dave", "phone", 3);
  const char *bob[] = {"bob"};
  uint64_t g = group_make(s, &a, bob, 1, NULL);
  msg_send(s, &a, g, NULL, "m2");
  entry_pos added = group_op(s, &a, g, PL_GROUP_ADD, "dave"); /* seq 3 */
  CHECK_EQ_I(cursor_rows(dir, d.did, g, added.seq - 1), 1);
  pl_store_req r = {.op = PL_STORE_LOGIN_DEVICE};
  r.user_id = b.uid;
  r.u.login.in.device = "laptop";
  token(r.u.login.in.token_hash, 4);
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.u.login.out.created, 1);
  account bl = b;
  bl.did = r.u.login.out.device_id;
  pl_store_req_clear(&r);
  CHECK_EQ_I(cursor_rows(dir, bl.did, g, 3), 1);
  msg_send(s, &a, g, NULL, "m4");
  fetch2(s, &d, 0, NULL, 0, 0, &r);
  page_is(&r, (const want[]){{g, 3}, {g, 4}}, 2, 0);
  pl_store_req_clear(&r);
  fetch2(s, &bl, 0, NULL, 0, 0, &r);
  page_is(&r, (const want[]){{g, 4}}, 1, 0);
  pl_store_req_clear(&r);
  fetch2(s, &b, 0, NULL, 0, 0, &r);
  page_is(&r, (const want[]){{g, 1}, {g, 2}, {g, 3}, {g, 4}}, 4, 0);
  pl_store_req_clear(&r);
  r = (pl_store_req){.op = PL_STORE_LOGOUT}; /* signed out, and in again after m5: from 5 on */
  r.device_id = bl.did;
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  pl_store_req_clear(&r);
  msg_send(s, &a, g, NULL, "m5");
  r = (pl_store_req){.op = PL_STORE_LOGIN_DEVICE};
  r.user_id = b.uid;
  r.u.login.in.device = "laptop";
  token(r.u.login.in.token_hash, 5);
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.u.login.out.created, 0);
  pl_store_req_clear(&r);
  msg_send(s, &a, g, NULL, "m6");
  fetch2(s, &bl, 0, NULL, 0, 0, &r);
  page_is(&r, (const want[]){{g, 6}}, 1, 0);
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

int main(void) {
  pl_log_set_level(PL_LOG_WARN);
  RUN(test_fetch_streams_resume_per_group);
  RUN(test_fetch_pages_bounded_in_bytes);
  RUN(test_ack_streams_per_group);
  RUN(test_ack_qid_moves_group_cursors);
  RUN(test_cursors_start_at_join);
  return tl_summary();
}
