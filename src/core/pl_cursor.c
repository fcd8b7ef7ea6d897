#include "pl_cursor.h"

#include <string.h>

#include "../common/pl_mem.h"

void pl_cursor_init(pl_cursor *c, uint16_t max_held) {
  *c = (pl_cursor){.max_held = max_held, .hint_next = 1};
}

void pl_cursor_free(pl_cursor *c) {
  pl_free(c->gs);
  pl_cursor_init(c, c->max_held);
}

void pl_cursor_attach(pl_cursor *c) {
  c->hint_next = 1; /* the router numbers each attachment from 1 */
  c->state = PL_CURSOR_OFF;
}

void pl_cursor_off(pl_cursor *c) {
  c->state = PL_CURSOR_OFF;
  c->nheld = 0;
}

void pl_cursor_fetch(pl_cursor *c) {
  c->state = PL_CURSOR_FETCHING;
  c->again = 0;
  c->held_max = 0;
  for (uint32_t i = 0; i < c->ngs; i++)
    c->gs[i].held_max = 0;
  c->nheld = 0;
}

/* Binary search: the index of gid, or where it would go. */
static uint32_t pl__find(const pl_cursor *c, uint64_t gid) {
  uint32_t lo = 0, hi = c->ngs;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (c->gs[mid].gid < gid)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

pl_cursor_stream *pl_cursor_stream_get(pl_cursor *c, uint64_t gid, int create) {
  uint32_t i = pl__find(c, gid);
  if (i < c->ngs && c->gs[i].gid == gid)
    return &c->gs[i];
  if (!create)
    return NULL;
  if (c->ngs == c->gscap) {
    c->gscap = c->gscap ? c->gscap * 2 : 4;
    c->gs = pl_realloc(c->gs, c->gscap * sizeof *c->gs);
  }
  memmove(&c->gs[i + 1], &c->gs[i], (c->ngs - i) * sizeof *c->gs);
  c->ngs++;
  c->gs[i] = (pl_cursor_stream){.gid = gid};
  return &c->gs[i];
}

uint64_t pl_cursor_sent(const pl_cursor *c, uint64_t gid) {
  if (!gid)
    return c->last_sent;
  const pl_cursor_stream *s = pl_cursor_stream_get((pl_cursor *)c, gid, 0);
  return s ? s->last_sent : 0;
}

/* The stream's written and held marks. A group stream is made on its
 * first entry: before it, nothing of the group was written on this
 * connection, so 0 is exact. */
static int pl__marks(pl_cursor *c, uint64_t gid, uint64_t **sent, uint64_t **held) {
  if (!gid) {
    *sent = &c->last_sent;
    *held = &c->held_max;
    return c->queue_exact;
  }
  pl_cursor_stream *s = pl_cursor_stream_get(c, gid, 1);
  *sent = &s->last_sent;
  *held = &s->held_max;
  return 1;
}

static pl_cursor_act pl__lag(pl_cursor *c) {
  c->state = PL_CURSOR_LAGGING;
  c->nheld = 0;
  return PL_CURSOR_LAG;
}

static pl_cursor_act pl__hold(pl_cursor *c, uint64_t gid, uint64_t pos, int suspect) {
  uint64_t *sent, *held;
  if (c->again)
    return PL_CURSOR_IGNORE; /* another fetch follows the page: it reads this one */
  int exact = pl__marks(c, gid, &sent, &held);
  /* (the first held one of an exact stream is checked against the page at flush) */
  if (suspect || pos <= *held || (exact && *held && pos != *held + 1) || c->nheld >= c->max_held) {
    /* The fetch in flight may have been submitted before the lost push's
     * message committed, and held pushes are written in arrival order: only
     * a fetch after this page is sure to cover them. */
    c->again = 1;
    return PL_CURSOR_IGNORE;
  }
  *held = pos;
  c->nheld++;
  return PL_CURSOR_HOLD;
}

pl_cursor_act pl_cursor__push_slow(pl_cursor *c, uint64_t hint, uint64_t gid, uint64_t pos, int over) {
  uint64_t *sent, *held;
  if (c->state == PL_CURSOR_OFF)
    return PL_CURSOR_IGNORE;
  /* A number below the expected one was seen already (a duplicate), or a
   * higher one came first and made the cursor fetch; that fetch was submitted
   * after the router numbered this push, hence after its message committed. */
  if (hint < c->hint_next)
    return PL_CURSOR_IGNORE;
  int gap = hint != c->hint_next;
  c->hint_next = hint + 1;
  switch (c->state) {
  case PL_CURSOR_FETCHING: return pl__hold(c, gid, pos, gap);
  case PL_CURSOR_LIVE:
    if (over)
      return pl__lag(c); /* the fetch after the drain reads it, and any lost one */
    int exact = pl__marks(c, gid, &sent, &held);
    if (gap || pos <= *sent || (exact && pos != *sent + 1)) {
      /* Never skip, never drop: the store knows what this push stands for. */
      pl_cursor_fetch(c);
      return PL_CURSOR_FETCH;
    }
    *sent = pos;
    return PL_CURSOR_WRITE;
  default: return PL_CURSOR_IGNORE; /* lagging: the fetch after the drain reads it */
  }
}

pl_cursor_act pl_cursor_entry(pl_cursor *c, uint64_t gid, uint64_t pos, int over) {
  uint64_t *sent, *held;
  pl__marks(c, gid, &sent, &held);
  if (pos <= *sent)
    return PL_CURSOR_IGNORE;
  if (over)
    return pl__lag(c);
  *sent = pos;
  return PL_CURSOR_WRITE;
}

pl_cursor_act pl_cursor_page_end(pl_cursor *c, int more, int over) {
  if (more || c->again) {
    /* Pushes held meanwhile are stored too: the next page has them. */
    if (over)
      return pl__lag(c);
    pl_cursor_fetch(c);
    return PL_CURSOR_FETCH;
  }
  c->state = PL_CURSOR_LIVE;
  c->nheld = 0;
  return PL_CURSOR_FLUSH;
}

pl_cursor_act pl_cursor_flush(pl_cursor *c, uint64_t gid, uint64_t pos) {
  uint64_t *sent, *held;
  /* Held pushes rise in each stream (pl__hold), so this keeps the order. */
  int exact = pl__marks(c, gid, &sent, &held);
  if (pos <= *sent)
    return PL_CURSOR_IGNORE;
  if (exact && pos != *sent + 1) { /* the page ended before it: something between is stored */
    pl_cursor_fetch(c);
    return PL_CURSOR_FETCH;
  }
  *sent = pos;
  return PL_CURSOR_WRITE;
}

pl_cursor_act pl_cursor_drained(pl_cursor *c) {
  if (c->state != PL_CURSOR_LAGGING)
    return PL_CURSOR_IGNORE;
  pl_cursor_fetch(c);
  return PL_CURSOR_FETCH;
}

pl_cursor_act pl_cursor_check(pl_cursor *c, uint64_t sent) {
  if (c->state != PL_CURSOR_LIVE || sent < c->hint_next)
    return PL_CURSOR_IGNORE;
  /* Pushes up to sent were numbered before this check, after their messages
   * committed: the fetch reads them, so their late arrival is ignored. */
  c->hint_next = sent + 1;
  pl_cursor_fetch(c);
  return PL_CURSOR_FETCH;
}

pl_cursor_act pl_cursor_hint(pl_cursor *c) {
  if (c->state == PL_CURSOR_FETCHING) {
    c->again = 1;
    return PL_CURSOR_IGNORE;
  }
  if (c->state != PL_CURSOR_LIVE)
    return PL_CURSOR_IGNORE;
  pl_cursor_fetch(c);
  return PL_CURSOR_FETCH;
}
