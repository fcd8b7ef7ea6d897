/* pl_cursor: the delivery cursor's decisions. A model store (the committed
 * entries of one device's queue) and a model router whose pushes are lost,
 * repeated and reordered; the device must still get every entry once, in
 * qid order, and last_sent must never cover an entry it was not sent. */
#include <stdlib.h>
#include <string.h>

#include "core/pl_cursor.h"
#include "testlib.h"

#define MAXE 4096
#define NS 4 /* streams: 0 the queue, 1..3 groups */

/* An entry: its stream and its position there. */
typedef struct ent {
  uint64_t gid, pos;
} ent;

typedef struct push {
  uint64_t hint;
  ent e;
} push;

typedef struct fetch {
  int busy, ran;      /* submitted; executed against the store */
  uint32_t gen;       /* the session keeps only the latest fetch's page */
  uint64_t after[NS]; /* per stream, what was written at submission */
  ent page[MAXE];     /* what the store returned when it ran */
  size_t n;
  int more;
} fetch;

typedef struct model {
  pl_cursor c;
  int streams;     /* 1: protocol 2 (groups are streams of their own); 0: one stream */
  int writers;     /* 1: one (hints numbered in commit order); 2: several (any order) */
  ent store[MAXE]; /* committed entries, in commit order */
  size_t nstore;
  uint64_t next[NS]; /* per stream, the last position given */
  ent bus[MAXE];     /* committed, not yet numbered by the router (several writers: any order) */
  size_t nbus;
  uint64_t pushed; /* the router's numbering for this attachment */
  push net[MAXE];  /* pushes in flight, any order */
  size_t nnet;
  ent held[MAXE]; /* the session's pending list */
  size_t nheld;
  fetch f[4]; /* fetches in flight (a later one may replace an earlier) */
  uint32_t gen;
  size_t ngot[NS]; /* per stream, how many of its entries the device received */
  size_t total;    /* received in all */
  size_t limit;    /* page size */
  unsigned seed;
} model;

static unsigned rnd(model *m, unsigned n) {
  m->seed = m->seed * 1103515245u + 12345u;
  return (m->seed >> 8) % n;
}

/* The k-th entry (from 0) of stream g in the store, or NULL. */
static const ent *nth(const model *m, uint64_t g, size_t k) {
  for (size_t i = 0; i < m->nstore; i++)
    if (m->store[i].gid == g && k-- == 0)
      return &m->store[i];
  return NULL;
}

static size_t count(const model *m, uint64_t g) {
  size_t n = 0;
  for (size_t i = 0; i < m->nstore; i++)
    n += m->store[i].gid == g;
  return n;
}

/* The device receives e: it must be the next entry of its stream in the
 * store, and the cursor must count exactly what was written. */
static void wrote(model *m, ent e) {
  const ent *want = nth(m, e.gid, m->ngot[e.gid]);
  CHECK(want != NULL);
  if (!want)
    return;
  CHECK_EQ_U(e.pos, want->pos);
  m->ngot[e.gid]++;
  m->total++;
  CHECK_EQ_U(pl_cursor_sent(&m->c, e.gid), e.pos);
}

static void start_fetch(model *m) {
  m->nheld = 0;
  for (int i = 0; i < 4; i++)
    if (!m->f[i].busy) {
      m->f[i] = (fetch){.busy = 1, .gen = ++m->gen};
      for (uint64_t g = 0; g < NS; g++)
        m->f[i].after[g] = pl_cursor_sent(&m->c, g);
      return;
    }
  CHECK(!"more than 4 fetches in flight");
}

static void act(model *m, pl_cursor_act a, ent e) {
  switch (a) {
  case PL_CURSOR_WRITE: wrote(m, e); break;
  case PL_CURSOR_HOLD: m->held[m->nheld++] = e; break;
  case PL_CURSOR_FETCH: start_fetch(m); break;
  case PL_CURSOR_LAG: m->nheld = 0; break;
  default: break;
  }
}

static const ent none = {0, 0};

/* The router numbers a committed entry's push. With one writer it does so
 * in commit order; with several, in whatever order the writers' hints
 * reach it. */
static void route(model *m) {
  if (!m->nbus)
    return;
  size_t i = m->writers > 1 ? rnd(m, (unsigned)m->nbus) : 0;
  ent e = m->bus[i];
  memmove(&m->bus[i], &m->bus[i + 1], (m->nbus - i - 1) * sizeof *m->bus);
  m->nbus--;
  m->net[m->nnet++] = (push){.hint = ++m->pushed, .e = e};
}

static void commit(model *m) {
  if (m->nstore >= MAXE - 1)
    return;
  uint64_t g = m->streams ? rnd(m, NS) : 0;
  /* The queue's positions have gaps (other devices' entries between, one
   * global counter) unless it is exact; a group's seqs have none. */
  m->next[g] += g || m->c.queue_exact ? 1 : 1 + rnd(m, 3);
  ent e = {g, m->next[g]};
  m->store[m->nstore++] = e;
  m->bus[m->nbus++] = e;
  if (m->writers == 1)
    route(m);
}

/* One push leaves the network: lost, repeated (it stays), or in any order. */
static void deliver(model *m, int lossy) {
  if (!m->nnet)
    return;
  size_t i = rnd(m, (unsigned)m->nnet);
  push p = m->net[i];
  unsigned r = rnd(m, 100);
  if (!lossy || r >= 4) /* 96 %: gone from the network */
    m->net[i] = m->net[--m->nnet];
  if (lossy && r < 2)
    return; /* lost */
  act(m, pl_cursor_push(&m->c, p.hint, p.e.gid, p.e.pos, rnd(m, 1000) < 5), p.e);
}

/* Each stream's entries after its position, merged in commit order, the
 * first limit of them: each stream's part is a prefix of what it has. */
static void run_fetch(model *m, fetch *f) {
  f->n = 0;
  f->more = 0;
  for (size_t i = 0; i < m->nstore; i++) {
    if (m->store[i].pos <= f->after[m->store[i].gid])
      continue;
    if (f->n == m->limit) {
      f->more = 1;
      break;
    }
    f->page[f->n++] = m->store[i];
  }
  f->ran = 1;
}

static void complete_fetch(model *m, fetch *f) {
  f->busy = 0;
  if (f->gen != m->gen || m->c.state != PL_CURSOR_FETCHING)
    return; /* replaced by a later fetch */
  for (size_t i = 0; i < f->n; i++) {
    pl_cursor_act a = pl_cursor_entry(&m->c, f->page[i].gid, f->page[i].pos, rnd(m, 1000) < 5);
    if (a == PL_CURSOR_LAG) {
      m->nheld = 0;
      return;
    }
    if (a == PL_CURSOR_WRITE)
      wrote(m, f->page[i]);
  }
  pl_cursor_act a = pl_cursor_page_end(&m->c, f->more, rnd(m, 1000) < 5);
  if (a != PL_CURSOR_FLUSH) {
    act(m, a, none);
    return;
  }
  size_t n = m->nheld;
  m->nheld = 0;
  for (size_t i = 0; i < n; i++) {
    a = pl_cursor_flush(&m->c, m->held[i].gid, m->held[i].pos);
    if (a == PL_CURSOR_FETCH) { /* the rest held is dropped: the fetch reads it */
      start_fetch(m);
      return;
    }
    if (a == PL_CURSOR_WRITE)
      wrote(m, m->held[i]);
  }
}

/* The store runs and answers fetches in any order of time, but each after
 * its submission. */
static void step_fetches(model *m) {
  fetch *busy[4];
  unsigned n = 0;
  for (int i = 0; i < 4; i++)
    if (m->f[i].busy)
      busy[n++] = &m->f[i];
  if (!n)
    return;
  fetch *f = busy[rnd(m, n)];
  if (!f->ran)
    run_fetch(m, f);
  else
    complete_fetch(m, f);
}

static void attach(model *m, unsigned seed, size_t limit, int streams, int writers, int exact) {
  pl_cursor_free(&m->c);
  memset(m, 0, sizeof *m);
  m->seed = seed;
  m->limit = limit;
  m->streams = streams;
  m->writers = writers;
  pl_cursor_init(&m->c, 64);
  m->c.queue_exact = (uint8_t)exact;
  pl_cursor_attach(&m->c);
  pl_cursor_fetch(&m->c);
  start_fetch(m);
}

static int quiet(const model *m) {
  for (int i = 0; i < 4; i++)
    if (m->f[i].busy)
      return 0;
  return m->c.state == PL_CURSOR_LIVE && !m->nnet && !m->nbus;
}

/* Random commits, routing, lost / repeated / reordered pushes, fetches
 * answered late, full outputs, drains and idle checks; then the network
 * empties and the device must have every entry of every stream once, in
 * each stream's order. */
static void run_model(int streams, int writers, int exact) {
  model *m = calloc(1, sizeof *m);
  for (unsigned seed = 1; seed <= 300; seed++) {
    attach(m, seed, 1 + seed % 16, streams, writers, exact);
    for (int round = 0; round < 2000; round++) {
      unsigned r = rnd(m, 100);
      if (r < 25)
        commit(m);
      else if (r < 35)
        route(m);
      else if (r < 65)
        deliver(m, 1);
      else if (r < 95)
        step_fetches(m);
      else if (r < 98)
        act(m, pl_cursor_drained(&m->c), none);
      else
        act(m, pl_cursor_check(&m->c, m->pushed), none);
    }
    /* No more commits: the hints reach the router, the network empties
     * (still lossy), then fetches, drains and idle checks must bring the
     * device to the end. */
    while (m->nbus)
      route(m);
    while (m->nnet)
      deliver(m, 1);
    for (int i = 0; i < 100000 && (!quiet(m) || m->total < m->nstore); i++) {
      for (int k = 0; k < 4; k++)
        if (m->f[k].busy)
          step_fetches(m);
      act(m, pl_cursor_drained(&m->c), none);
      act(m, pl_cursor_check(&m->c, m->pushed), none);
      if (m->total < m->nstore && quiet(m))
        break; /* stuck: fails below */
    }
    CHECK_EQ_U(m->total, m->nstore);
    for (uint64_t g = 0; g < NS; g++)
      CHECK_EQ_U(m->ngot[g], count(m, g));
    if (tl_failures())
      break;
  }
  pl_cursor_free(&m->c);
  free(m);
}

/* Protocol 1, one writer: one stream in qid order. */
static void test_lost_repeated_reordered_pushes(void) { run_model(0, 1, 0); }

/* Protocol 2: the queue and three groups, each in its own commit order.
 * With one writer (SQLite) the queue's qids have gaps; with several the
 * router numbers hints in any order across and within streams, and the
 * queue needs gap-free per-device positions (exact), as groups have. */
static void test_several_writers_streams(void) {
  run_model(1, 1, 0);
  run_model(1, 2, 1);
}

static void test_in_order_is_written_at_once(void) {
  pl_cursor c;
  pl_cursor_init(&c, 8);
  pl_cursor_attach(&c);
  pl_cursor_fetch(&c);
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FLUSH);
  CHECK_EQ_I(pl_cursor_push(&c, 1, 0, 10, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_push(&c, 2, 0, 12, 0), PL_CURSOR_WRITE);
  CHECK_EQ_U(c.last_sent, 12);
  CHECK_EQ_I(pl_cursor_push(&c, 2, 0, 12, 0), PL_CURSOR_IGNORE); /* a duplicate */
  CHECK_EQ_I(pl_cursor_check(&c, 2), PL_CURSOR_IGNORE);          /* nothing lost */
}

static void test_gap_and_disorder_fetch(void) {
  pl_cursor c;
  pl_cursor_init(&c, 8);
  pl_cursor_attach(&c);
  pl_cursor_fetch(&c);
  pl_cursor_page_end(&c, 0, 0);
  CHECK_EQ_I(pl_cursor_push(&c, 2, 0, 20, 0), PL_CURSOR_FETCH);  /* push 1 was lost */
  CHECK_EQ_U(c.last_sent, 0);                                    /* nothing skipped */
  CHECK_EQ_I(pl_cursor_push(&c, 1, 0, 10, 0), PL_CURSOR_IGNORE); /* late: the fetch reads it */
  CHECK_EQ_I(pl_cursor_entry(&c, 0, 10, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_entry(&c, 0, 20, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FLUSH);
  CHECK_EQ_I(pl_cursor_push(&c, 3, 0, 15, 0), PL_CURSOR_FETCH); /* below last_sent */
}

/* A router whose numbers do not follow qids (two writers): held pushes out
 * of qid order are not written in arrival order; another fetch reads them. */
static void test_held_out_of_order_fetches_again(void) {
  pl_cursor c;
  pl_cursor_init(&c, 8);
  pl_cursor_attach(&c);
  pl_cursor_fetch(&c);
  CHECK_EQ_I(pl_cursor_push(&c, 1, 0, 20, 0), PL_CURSOR_HOLD);
  CHECK_EQ_I(pl_cursor_push(&c, 2, 0, 10, 0), PL_CURSOR_IGNORE);
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FETCH);
  CHECK_EQ_I(pl_cursor_entry(&c, 0, 10, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_entry(&c, 0, 20, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FLUSH);
  CHECK_EQ_I(pl_cursor_push(&c, 3, 0, 30, 1), PL_CURSOR_LAG); /* output full */
  CHECK_EQ_I(pl_cursor_push(&c, 4, 0, 40, 0), PL_CURSOR_IGNORE);
  CHECK_EQ_I(pl_cursor_drained(&c), PL_CURSOR_FETCH);
  CHECK_EQ_U(c.last_sent, 20);
}

static void test_lost_last_push_found_by_check(void) {
  pl_cursor c;
  pl_cursor_init(&c, 8);
  pl_cursor_attach(&c);
  pl_cursor_fetch(&c);
  pl_cursor_page_end(&c, 0, 0);
  /* the router numbered push 1; it never came and nothing followed it */
  CHECK_EQ_I(pl_cursor_check(&c, 1), PL_CURSOR_FETCH);
  CHECK_EQ_I(pl_cursor_entry(&c, 0, 7, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FLUSH);
  CHECK_EQ_I(pl_cursor_push(&c, 1, 0, 7, 0), PL_CURSOR_IGNORE); /* it turns up late */
  CHECK_EQ_I(pl_cursor_push(&c, 2, 0, 9, 0), PL_CURSOR_WRITE);
}

/* A cluster's hint (another node committed for this device; no push carries
 * it): a live cursor fetches; one fetching already fetches once more after
 * its page (that page may have been read before the commit); a lagging one
 * waits for its drain, which fetches anyway. */
static void test_hint_from_another_node(void) {
  pl_cursor c;
  pl_cursor_init(&c, 8);
  CHECK_EQ_I(pl_cursor_hint(&c), PL_CURSOR_IGNORE); /* not attached */
  pl_cursor_attach(&c);
  pl_cursor_fetch(&c);
  CHECK_EQ_I(pl_cursor_hint(&c), PL_CURSOR_IGNORE); /* fetching: noted */
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FETCH);
  CHECK_EQ_I(pl_cursor_entry(&c, 0, 5, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FLUSH);
  CHECK_EQ_I(pl_cursor_hint(&c), PL_CURSOR_FETCH); /* live */
  CHECK_EQ_I(c.state, PL_CURSOR_FETCHING);
  CHECK_EQ_I(pl_cursor_entry(&c, 0, 6, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FLUSH);
  CHECK_EQ_I(pl_cursor_push(&c, 1, 0, 7, 1), PL_CURSOR_LAG);
  CHECK_EQ_I(pl_cursor_hint(&c), PL_CURSOR_IGNORE); /* lagging: the drain fetches */
  CHECK_EQ_I(pl_cursor_drained(&c), PL_CURSOR_FETCH);
  CHECK_EQ_U(c.last_sent, 6);
  pl_cursor_free(&c);
}

/* A group stream (protocol 2) is exact: a push that is not the next seq
 * makes the cursor fetch, since with several writers the router may number
 * seq 6 before seq 5. Its first push on a connection starts from 0 written,
 * so it fetches once (the page starts from the device's stored cursor). */
static void test_exact_group_stream(void) {
  pl_cursor c;
  pl_cursor_init(&c, 8);
  pl_cursor_attach(&c);
  pl_cursor_fetch(&c);
  CHECK_EQ_I(pl_cursor_entry(&c, 7, 4, 0), PL_CURSOR_WRITE); /* group 7 from its stored cursor */
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FLUSH);
  CHECK_EQ_I(pl_cursor_push(&c, 1, 7, 5, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_push(&c, 2, 7, 7, 0), PL_CURSOR_FETCH); /* 6 was numbered after 7 */
  CHECK_EQ_U(pl_cursor_sent(&c, 7), 5);
  CHECK_EQ_I(pl_cursor_push(&c, 3, 9, 1, 0), PL_CURSOR_HOLD); /* another group, held */
  CHECK_EQ_I(pl_cursor_entry(&c, 7, 6, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_entry(&c, 7, 7, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FLUSH);
  CHECK_EQ_I(pl_cursor_flush(&c, 9, 1), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_push(&c, 2, 7, 7, 0), PL_CURSOR_IGNORE);  /* that number again: a duplicate */
  CHECK_EQ_I(pl_cursor_push(&c, 4, 12, 40, 0), PL_CURSOR_FETCH); /* first of group 12 here */
  CHECK_EQ_U(pl_cursor_sent(&c, 12), 0);
  CHECK_EQ_U(pl_cursor_sent(&c, 0), 0); /* the queue untouched */
  pl_cursor_free(&c);
}

int main(void) {
  RUN(test_in_order_is_written_at_once);
  RUN(test_gap_and_disorder_fetch);
  RUN(test_held_out_of_order_fetches_again);
  RUN(test_lost_last_push_found_by_check);
  RUN(test_lost_repeated_reordered_pushes);
  RUN(test_several_writers_streams);
  RUN(test_exact_group_stream);
  RUN(test_hint_from_another_node);
  return tl_summary();
}
