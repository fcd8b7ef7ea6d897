/* pl_cursor: the delivery cursor's decisions, without I/O.
 *
 * A session is a cursor over its device's durable queue (architecture.md
 * §5). This module holds what the cursor knows (last_sent, the state, the
 * router's push numbers) and answers what to do with each push, each fetched
 * entry, the end of a page, a drain and an idle check; pl_sess_msg.c does the
 * writing, the fetching and the holding it is told to.
 *
 * Pushes are hints. The router numbers the pushes it sends to one attached
 * endpoint 1, 2, 3...; a number that is not the one expected (a lost push),
 * or a qid not above everything written (out of order), makes the cursor
 * fetch from the store after last_sent, never write out of order or skip; a
 * number seen already is a duplicate and is ignored.
 *
 * Invariant: every queued entry with qid <= last_sent was written (a WRITE
 * answer means "write it now": the cursor has already counted it). */
#ifndef PL_CURSOR_H
#define PL_CURSOR_H

#include <stdint.h>

typedef enum pl_cursor_state {
  PL_CURSOR_OFF,      /* not attached: pushes are ignored */
  PL_CURSOR_FETCHING, /* a fetch is in flight: pushes are held */
  PL_CURSOR_LIVE,     /* pushes in order are written as they come */
  PL_CURSOR_LAGGING,  /* the output is full: pushes are ignored until it drains */
} pl_cursor_state;

typedef enum pl_cursor_act {
  PL_CURSOR_IGNORE, /* nothing to do: a duplicate, or the store has it for a later fetch */
  PL_CURSOR_WRITE,  /* write this entry now (last_sent is its qid already) */
  PL_CURSOR_HOLD,   /* keep this push, in arrival order, until the page ends */
  PL_CURSOR_FETCH,  /* drop what is held, fetch after last_sent (state is FETCHING) */
  PL_CURSOR_LAG,    /* drop what is held, wait for the drain (state is LAGGING) */
  PL_CURSOR_FLUSH,  /* the page was the last: offer each held push to pl_cursor_flush */
} pl_cursor_act;

typedef struct pl_cursor {
  uint64_t last_sent; /* highest qid written */
  uint64_t hint_next; /* the router's push number expected next */
  uint64_t held_max;  /* highest qid held during this fetch */
  uint32_t nheld, max_held;
  uint8_t state;
  uint8_t again; /* during a fetch: a push was lost, out of order or over max_held */
} pl_cursor;

/* A cursor that has written nothing and holds at most max_held pushes. */
void pl_cursor_init(pl_cursor *c, uint32_t max_held);
/* Attached to the router (a new numbering, from 1); the caller fetches next. */
void pl_cursor_attach(pl_cursor *c);
/* Detached: pushes are ignored. */
void pl_cursor_off(pl_cursor *c);
/* A fetch after last_sent is being submitted: hold pushes. */
void pl_cursor_fetch(pl_cursor *c);

pl_cursor_act pl_cursor__push_slow(pl_cursor *c, uint64_t hint, uint64_t qid, int over);

/* A push numbered hint for entry qid; over: the output is above its high
 * mark. The case of every message (LIVE, next number, next qid) is inline:
 * two compares and a write, as cheap as before pushes were hints. */
static inline pl_cursor_act pl_cursor_push(pl_cursor *c, uint64_t hint, uint64_t qid, int over) {
  if (c->state == PL_CURSOR_LIVE && hint == c->hint_next && qid > c->last_sent && !over) {
    c->hint_next = hint + 1;
    c->last_sent = qid;
    return PL_CURSOR_WRITE;
  }
  return pl_cursor__push_slow(c, hint, qid, over);
}

/* An entry of a fetched page, in qid order: WRITE, IGNORE (written already)
 * or LAG (the rest stays in the queue for the fetch after the drain). */
pl_cursor_act pl_cursor_entry(pl_cursor *c, uint64_t qid, int over);
/* The page's end: more says the store has more after it; over as above.
 * FETCH (again), LAG, or FLUSH (then the cursor is LIVE). */
pl_cursor_act pl_cursor_page_end(pl_cursor *c, int more, int over);
/* A held push, in arrival order, after FLUSH: WRITE or IGNORE. */
pl_cursor_act pl_cursor_flush(pl_cursor *c, uint64_t qid);
/* The output drained: FETCH if lagging, else IGNORE. */
pl_cursor_act pl_cursor_drained(pl_cursor *c);
/* The idle check: sent is the router's count of pushes numbered for this
 * attachment. FETCH if LIVE and one of them never arrived (a lost push with
 * no later push to show the gap), else IGNORE. */
pl_cursor_act pl_cursor_check(pl_cursor *c, uint64_t sent);

#endif
