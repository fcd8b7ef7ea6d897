/* pl_cursor: the delivery cursor's decisions. A model store (the committed
 * entries of one device's queue) and a model router whose pushes are lost,
 * repeated and reordered; the device must still get every entry once, in
 * qid order, and last_sent must never cover an entry it was not sent. */
#include <stdlib.h>
#include <string.h>

#include "core/pl_cursor.h"
#include "testlib.h"

#define MAXE 4096

typedef struct push {
  uint64_t hint, qid;
} push;

typedef struct fetch {
  int busy, ran;       /* submitted; executed against the store */
  uint32_t gen;        /* the session keeps only the latest fetch's page */
  uint64_t after;      /* last_sent at submission */
  uint64_t page[MAXE]; /* what the store returned when it ran */
  size_t n;
  int more;
} fetch;

typedef struct model {
  pl_cursor c;
  uint64_t store[MAXE]; /* committed qids, rising */
  size_t nstore;
  uint64_t pushed; /* the router's numbering for this attachment */
  push net[MAXE];  /* pushes in flight, any order */
  size_t nnet;
  uint64_t held[MAXE]; /* the session's pending list */
  size_t nheld;
  fetch f[4]; /* fetches in flight (a later one may replace an earlier) */
  uint32_t gen;
  uint64_t got[MAXE]; /* what the device received */
  size_t ngot;
  size_t limit; /* page size */
  unsigned seed;
} model;

static unsigned rnd(model *m, unsigned n) {
  m->seed = m->seed * 1103515245u + 12345u;
  return (m->seed >> 8) % n;
}

/* The device receives qid: it must be the next entry of the store, and
 * last_sent must be exactly what was written. */
static void wrote(model *m, uint64_t qid) {
  CHECK(m->ngot < m->nstore);
  if (m->ngot >= m->nstore)
    return;
  CHECK_EQ_U(qid, m->store[m->ngot]);
  m->got[m->ngot++] = qid;
  CHECK_EQ_U(m->c.last_sent, qid);
}

static void start_fetch(model *m) {
  m->nheld = 0;
  for (int i = 0; i < 4; i++)
    if (!m->f[i].busy) {
      m->f[i] = (fetch){.busy = 1, .gen = ++m->gen, .after = m->c.last_sent};
      return;
    }
  CHECK(!"more than 4 fetches in flight");
}

static void act(model *m, pl_cursor_act a, uint64_t qid) {
  switch (a) {
  case PL_CURSOR_WRITE: wrote(m, qid); break;
  case PL_CURSOR_HOLD: m->held[m->nheld++] = qid; break;
  case PL_CURSOR_FETCH: start_fetch(m); break;
  case PL_CURSOR_LAG: m->nheld = 0; break;
  default: break;
  }
}

static void commit(model *m) {
  if (m->nstore >= MAXE - 1)
    return;
  uint64_t last = m->nstore ? m->store[m->nstore - 1] : 0;
  m->store[m->nstore++] = last + 1 + rnd(m, 3); /* other devices' entries between */
  /* The router numbers the push after the commit. */
  m->net[m->nnet++] = (push){.hint = ++m->pushed, .qid = m->store[m->nstore - 1]};
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
  act(m, pl_cursor_push(&m->c, p.hint, p.qid, rnd(m, 1000) < 5), p.qid);
}

static void run_fetch(model *m, fetch *f) {
  f->n = 0;
  size_t i = 0;
  while (i < m->nstore && m->store[i] <= f->after)
    i++;
  for (; i < m->nstore && f->n < m->limit; i++)
    f->page[f->n++] = m->store[i];
  f->more = i < m->nstore;
  f->ran = 1;
}

static void complete_fetch(model *m, fetch *f) {
  f->busy = 0;
  if (f->gen != m->gen || m->c.state != PL_CURSOR_FETCHING)
    return; /* replaced by a later fetch */
  for (size_t i = 0; i < f->n; i++) {
    pl_cursor_act a = pl_cursor_entry(&m->c, f->page[i], rnd(m, 1000) < 5);
    if (a == PL_CURSOR_LAG) {
      m->nheld = 0;
      return;
    }
    if (a == PL_CURSOR_WRITE)
      wrote(m, f->page[i]);
  }
  pl_cursor_act a = pl_cursor_page_end(&m->c, f->more, rnd(m, 1000) < 5);
  if (a != PL_CURSOR_FLUSH) {
    act(m, a, 0);
    return;
  }
  size_t n = m->nheld;
  m->nheld = 0;
  for (size_t i = 0; i < n; i++)
    if (pl_cursor_flush(&m->c, m->held[i]) == PL_CURSOR_WRITE)
      wrote(m, m->held[i]);
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

static void attach(model *m, unsigned seed, size_t limit) {
  memset(m, 0, sizeof *m);
  m->seed = seed;
  m->limit = limit;
  pl_cursor_init(&m->c, 64);
  pl_cursor_attach(&m->c);
  pl_cursor_fetch(&m->c);
  start_fetch(m);
}

static int quiet(const model *m) {
  for (int i = 0; i < 4; i++)
    if (m->f[i].busy)
      return 0;
  return m->c.state == PL_CURSOR_LIVE && !m->nnet;
}

static void test_lost_repeated_reordered_pushes(void) {
  model *m = malloc(sizeof *m);
  for (unsigned seed = 1; seed <= 300; seed++) {
    attach(m, seed, 1 + seed % 16);
    for (int round = 0; round < 2000; round++) {
      unsigned r = rnd(m, 100);
      if (r < 25)
        commit(m);
      else if (r < 65)
        deliver(m, 1);
      else if (r < 95)
        step_fetches(m);
      else if (r < 98)
        act(m, pl_cursor_drained(&m->c), 0);
      else
        act(m, pl_cursor_check(&m->c, m->pushed), 0);
    }
    /* No more commits: the network empties (still lossy), then fetches,
     * drains and idle checks must bring the device to the end. */
    while (m->nnet)
      deliver(m, 1);
    for (int i = 0; i < 100000 && (!quiet(m) || m->ngot < m->nstore); i++) {
      for (int k = 0; k < 4; k++)
        if (m->f[k].busy)
          step_fetches(m);
      act(m, pl_cursor_drained(&m->c), 0);
      act(m, pl_cursor_check(&m->c, m->pushed), 0);
      if (m->c.state == PL_CURSOR_LIVE && m->ngot < m->nstore && !m->nnet && quiet(m))
        break; /* stuck: fails below */
    }
    CHECK_EQ_U(m->ngot, m->nstore);
    CHECK(memcmp(m->got, m->store, m->ngot * sizeof *m->got) == 0);
    if (tl_failures())
      break;
  }
  free(m);
}

static void test_in_order_is_written_at_once(void) {
  pl_cursor c;
  pl_cursor_init(&c, 8);
  pl_cursor_attach(&c);
  pl_cursor_fetch(&c);
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FLUSH);
  CHECK_EQ_I(pl_cursor_push(&c, 1, 10, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_push(&c, 2, 12, 0), PL_CURSOR_WRITE);
  CHECK_EQ_U(c.last_sent, 12);
  CHECK_EQ_I(pl_cursor_push(&c, 2, 12, 0), PL_CURSOR_IGNORE); /* a duplicate */
  CHECK_EQ_I(pl_cursor_check(&c, 2), PL_CURSOR_IGNORE);       /* nothing lost */
}

static void test_gap_and_disorder_fetch(void) {
  pl_cursor c;
  pl_cursor_init(&c, 8);
  pl_cursor_attach(&c);
  pl_cursor_fetch(&c);
  pl_cursor_page_end(&c, 0, 0);
  CHECK_EQ_I(pl_cursor_push(&c, 2, 20, 0), PL_CURSOR_FETCH);  /* push 1 was lost */
  CHECK_EQ_U(c.last_sent, 0);                                 /* nothing skipped */
  CHECK_EQ_I(pl_cursor_push(&c, 1, 10, 0), PL_CURSOR_IGNORE); /* late: the fetch reads it */
  CHECK_EQ_I(pl_cursor_entry(&c, 10, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_entry(&c, 20, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FLUSH);
  CHECK_EQ_I(pl_cursor_push(&c, 3, 15, 0), PL_CURSOR_FETCH); /* below last_sent */
}

/* A router whose numbers do not follow qids (two writers): held pushes out
 * of qid order are not written in arrival order; another fetch reads them. */
static void test_held_out_of_order_fetches_again(void) {
  pl_cursor c;
  pl_cursor_init(&c, 8);
  pl_cursor_attach(&c);
  pl_cursor_fetch(&c);
  CHECK_EQ_I(pl_cursor_push(&c, 1, 20, 0), PL_CURSOR_HOLD);
  CHECK_EQ_I(pl_cursor_push(&c, 2, 10, 0), PL_CURSOR_IGNORE);
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FETCH);
  CHECK_EQ_I(pl_cursor_entry(&c, 10, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_entry(&c, 20, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FLUSH);
  CHECK_EQ_I(pl_cursor_push(&c, 3, 30, 1), PL_CURSOR_LAG); /* output full */
  CHECK_EQ_I(pl_cursor_push(&c, 4, 40, 0), PL_CURSOR_IGNORE);
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
  CHECK_EQ_I(pl_cursor_entry(&c, 7, 0), PL_CURSOR_WRITE);
  CHECK_EQ_I(pl_cursor_page_end(&c, 0, 0), PL_CURSOR_FLUSH);
  CHECK_EQ_I(pl_cursor_push(&c, 1, 7, 0), PL_CURSOR_IGNORE); /* it turns up late */
  CHECK_EQ_I(pl_cursor_push(&c, 2, 9, 0), PL_CURSOR_WRITE);
}

int main(void) {
  RUN(test_in_order_is_written_at_once);
  RUN(test_gap_and_disorder_fetch);
  RUN(test_held_out_of_order_fetches_again);
  RUN(test_lost_last_push_found_by_check);
  RUN(test_lost_repeated_reordered_pushes);
  return tl_summary();
}
