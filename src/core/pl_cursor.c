#include "pl_cursor.h"

void pl_cursor_init(pl_cursor *c, uint32_t max_held) {
  *c = (pl_cursor){.max_held = max_held, .hint_next = 1};
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
  c->nheld = 0;
}

static pl_cursor_act pl__lag(pl_cursor *c) {
  c->state = PL_CURSOR_LAGGING;
  c->nheld = 0;
  return PL_CURSOR_LAG;
}

static pl_cursor_act pl__hold(pl_cursor *c, uint64_t qid, int suspect) {
  if (c->again)
    return PL_CURSOR_IGNORE; /* another fetch follows the page: it reads this one */
  if (suspect || qid <= c->held_max || c->nheld >= c->max_held) {
    /* The fetch in flight may have been submitted before the lost push's
     * message committed, and held pushes are written in arrival order: only
     * a fetch after this page is sure to cover them. */
    c->again = 1;
    return PL_CURSOR_IGNORE;
  }
  c->held_max = qid;
  c->nheld++;
  return PL_CURSOR_HOLD;
}

pl_cursor_act pl_cursor__push_slow(pl_cursor *c, uint64_t hint, uint64_t qid, int over) {
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
  case PL_CURSOR_FETCHING: return pl__hold(c, qid, gap);
  case PL_CURSOR_LIVE:
    if (over)
      return pl__lag(c); /* the fetch after the drain reads it, and any lost one */
    if (gap || qid <= c->last_sent) {
      /* Never skip, never drop: the store knows what this push stands for. */
      pl_cursor_fetch(c);
      return PL_CURSOR_FETCH;
    }
    c->last_sent = qid;
    return PL_CURSOR_WRITE;
  default: return PL_CURSOR_IGNORE; /* lagging: the fetch after the drain reads it */
  }
}

pl_cursor_act pl_cursor_entry(pl_cursor *c, uint64_t qid, int over) {
  if (qid <= c->last_sent)
    return PL_CURSOR_IGNORE;
  if (over)
    return pl__lag(c);
  c->last_sent = qid;
  return PL_CURSOR_WRITE;
}

pl_cursor_act pl_cursor_page_end(pl_cursor *c, int more, int over) {
  if (more || c->again) {
    /* Pushes held meanwhile are in the queue too: the next page has them. */
    if (over)
      return pl__lag(c);
    pl_cursor_fetch(c);
    return PL_CURSOR_FETCH;
  }
  c->state = PL_CURSOR_LIVE;
  c->nheld = 0;
  return PL_CURSOR_FLUSH;
}

pl_cursor_act pl_cursor_flush(pl_cursor *c, uint64_t qid) {
  /* Held pushes rise in qid (pl__hold), so this keeps the order. */
  if (qid <= c->last_sent)
    return PL_CURSOR_IGNORE;
  c->last_sent = qid;
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
