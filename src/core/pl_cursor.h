/* pl_cursor: the delivery cursor's decisions, without I/O.
 *
 * A session is a cursor over its device's durable streams (architecture.md
 * §5): the device's queue, and (protocol 2) each of its groups' histories.
 * This module holds what the cursor knows (per stream, the last position
 * written; the state; the router's push numbers) and answers what to do with
 * each push, each fetched entry, the end of a page, a drain and an idle
 * check; pl_sess_msg.c does the writing, the fetching and the holding it is
 * told to.
 *
 * A position is (stream, pos): stream 0 is the device's queue, pos its qid;
 * stream g (protocol 2) is group g's history, pos the entry's seq. A
 * protocol 1 session puts every entry in stream 0 by qid (one committer
 * makes that one order). Each stream is in its own commit order; streams
 * are independent of each other.
 *
 * Pushes are hints. The router numbers the pushes it sends to one attached
 * endpoint 1, 2, 3...; a number that is not the one expected (a lost push),
 * or a position not above everything written in its stream (out of order),
 * makes the cursor fetch from the store after what was written, never write
 * out of order or skip; a number seen already is a duplicate and is ignored.
 * In an exact stream (gap-free positions: a group's seqs; the queue when the
 * backend allocates per-device positions) a push is written only if it is
 * the stream's next position: with several writers the router may number a
 * later entry before an earlier one of the same stream, and only the gap
 * shows it.
 *
 * Invariant: in every stream, every stored entry with a position <= the
 * stream's last written one was written (a WRITE answer means "write it
 * now": the cursor has already counted it). */
#ifndef PL_CURSOR_H
#define PL_CURSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum pl_cursor_state {
  PL_CURSOR_OFF,      /* not attached: pushes are ignored */
  PL_CURSOR_FETCHING, /* a fetch is in flight: pushes are held */
  PL_CURSOR_LIVE,     /* pushes in order are written as they come */
  PL_CURSOR_LAGGING,  /* the output is full: pushes are ignored until it drains */
} pl_cursor_state;

typedef enum pl_cursor_act {
  PL_CURSOR_IGNORE, /* nothing to do: a duplicate, or the store has it for a later fetch */
  PL_CURSOR_WRITE,  /* write this entry now (it counts as written already) */
  PL_CURSOR_HOLD,   /* keep this push, in arrival order, until the page ends */
  PL_CURSOR_FETCH,  /* drop what is held, fetch after what was written (state is FETCHING) */
  PL_CURSOR_LAG,    /* drop what is held, wait for the drain (state is LAGGING) */
  PL_CURSOR_FLUSH,  /* the page was the last: offer each held push to pl_cursor_flush */
} pl_cursor_act;

/* A group's stream (protocol 2): positions are the history's seqs. */
typedef struct pl_cursor_stream {
  uint64_t gid;
  uint64_t last_sent; /* highest seq written on this connection */
  uint64_t held_max;  /* highest seq held during this fetch */
  uint64_t ack_want;  /* the client's Ack (at most last_sent); the session's */
  uint64_t ack_sent;  /* what the session handed the store */
} pl_cursor_stream;

typedef struct pl_cursor {
  uint64_t last_sent;   /* the queue's highest qid written */
  uint64_t held_max;    /* the queue's highest qid held during this fetch */
  pl_cursor_stream *gs; /* groups with an entry written or held, by gid (NULL: none) */
  uint32_t ngs, gscap;
  uint64_t hint_next;       /* the router's push number expected next */
  uint16_t nheld, max_held; /* (16 bits: a session holds at most 4096; it is per connection) */
  uint8_t state;
  uint8_t again;       /* during a fetch: a push was lost, out of order or over max_held */
  uint8_t queue_exact; /* the queue's positions are gap-free (group streams always are) */
} pl_cursor;

/* A cursor that has written nothing and holds at most max_held pushes. */
void pl_cursor_init(pl_cursor *c, uint16_t max_held);
/* Frees the group streams (the cursor is then as after init). */
void pl_cursor_free(pl_cursor *c);
/* Attached to the router (a new numbering, from 1); the caller fetches next. */
void pl_cursor_attach(pl_cursor *c);
/* Detached: pushes are ignored. */
void pl_cursor_off(pl_cursor *c);
/* A fetch after what was written is being submitted: hold pushes. */
void pl_cursor_fetch(pl_cursor *c);

/* Group gid's stream; create: add it if missing (else NULL). */
pl_cursor_stream *pl_cursor_stream_get(pl_cursor *c, uint64_t gid, int create);
/* The highest position written in a stream (0: none). */
uint64_t pl_cursor_sent(const pl_cursor *c, uint64_t gid);

pl_cursor_act pl_cursor__push_slow(pl_cursor *c, uint64_t hint, uint64_t gid, uint64_t pos, int over);

/* A push numbered hint for entry (gid, pos); over: the output is above its
 * high mark. The case of every 1:1 message (LIVE, next number, next qid)
 * is inline: three compares and a write. */
static inline pl_cursor_act pl_cursor_push(pl_cursor *c, uint64_t hint, uint64_t gid, uint64_t pos,
                                           int over) {
  if (c->state == PL_CURSOR_LIVE && hint == c->hint_next && !gid && pos > c->last_sent &&
      (!c->queue_exact || pos == c->last_sent + 1) && !over) {
    c->hint_next = hint + 1;
    c->last_sent = pos;
    return PL_CURSOR_WRITE;
  }
  return pl_cursor__push_slow(c, hint, gid, pos, over);
}

/* An entry of a fetched page (each stream's entries rising): WRITE, IGNORE
 * (written already) or LAG (the rest stays stored for the fetch after the
 * drain). */
pl_cursor_act pl_cursor_entry(pl_cursor *c, uint64_t gid, uint64_t pos, int over);
/* The page's end: more says the store has more after it; over as above.
 * FETCH (again), LAG, or FLUSH (then the cursor is LIVE). */
pl_cursor_act pl_cursor_page_end(pl_cursor *c, int more, int over);
/* A held push, in arrival order, after FLUSH: WRITE, IGNORE, or FETCH (a
 * gap in an exact stream: drop the rest held, the fetch reads them). */
pl_cursor_act pl_cursor_flush(pl_cursor *c, uint64_t gid, uint64_t pos);
/* The output drained: FETCH if lagging, else IGNORE. */
pl_cursor_act pl_cursor_drained(pl_cursor *c);
/* The idle check: sent is the router's count of pushes numbered for this
 * attachment. FETCH if LIVE and one of them never arrived (a lost push with
 * no later push to show the gap), else IGNORE. */
pl_cursor_act pl_cursor_check(pl_cursor *c, uint64_t sent);
/* A hint that the store holds something no push carried (another node
 * committed it): FETCH if LIVE; during a fetch, fetch again after it (it
 * may have read before that commit); else IGNORE (a drain fetches). */
pl_cursor_act pl_cursor_hint(pl_cursor *c);

#endif
