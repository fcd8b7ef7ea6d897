/* pl_acts: the rules of message actions (docs/protocol.md 11.9): replies,
 * forwards, reactions, edits, deletes and the disappearing-message timer.
 *
 * Every action is a message of its own in its conversation (Send.act), so it
 * gets a seq, dedup, queues and receipts like any message and reaches an
 * offline device in order after what it acts on. These functions decide
 * what is allowed; the backend stores what they allow and loads what they
 * need (the target's sender, time and state). Pure functions. */
#ifndef PL_ACTS_H
#define PL_ACTS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/pl_err.h"

/* parley.ActKind */
typedef enum pl_act_kind {
  PL_ACT_NONE = 0,
  PL_ACT_REACTION = 1,
  PL_ACT_EDIT = 2,
  PL_ACT_DELETE = 3,
  PL_ACT_TIMER = 4,
  PL_ACT_DELETE_FOR_ME = 5,
} pl_act_kind;

#define PL_ACTS_REACTION_MAX 32u              /* bytes of a reaction */
#define PL_ACTS_EDIT_WINDOW_S 900u            /* 15 minutes (--edit-window) */
#define PL_ACTS_DELETE_WINDOW_S (48u * 3600u) /* 2 days (--delete-window) */

/* A Send.act as the session decoded it. */
typedef struct pl_act {
  int kind;                /* pl_act_kind */
  uint64_t target;         /* REACTION, EDIT, DELETE, DELETE_FOR_ME */
  uint64_t reply_to;       /* NONE: the quoted seq (0: not a reply) */
  int forwarded;           /* NONE */
  uint32_t timer_s;        /* TIMER */
  const char *target_conv; /* DELETE_FOR_ME */
} pl_act;

/* The target as the store knows it (found 0: no such message). */
typedef struct pl_act_target {
  int found;
  uint64_t sender;    /* user id */
  uint64_t server_ts; /* ms since the epoch */
  int deleted;        /* deleted for everyone already */
} pl_act_target;

/* Windows and the test setting, from parleyd's options. */
typedef struct pl_acts_cfg {
  uint64_t edit_ms, delete_ms;
  uint64_t timer_test_ms; /* --test-disappear: every timer but off lasts this long (0: as named) */
} pl_acts_cfg;

/* Checks what needs no stored state (before anything is stored):
 * INVALID_ARGUMENT for a field that does not belong to the kind, a reaction
 * that is no short word, an edit with no text, a timer not in the list, a
 * DELETE_FOR_ME not sent to oneself (self), an action carrying media. */
pl_err pl_acts_check(const pl_act *a, const uint8_t *body, size_t body_len, int has_media, int self);

/* Does the kind act on a message already in the conversation (target)? */
static inline int pl_acts_needs_target(int kind) {
  return kind == PL_ACT_REACTION || kind == PL_ACT_EDIT || kind == PL_ACT_DELETE;
}

/* May user `me` (admin: an admin or the owner of the group) do a (which
 * needs a target) to t, now? NO_TARGET, NOT_AUTHOR, WINDOW_CLOSED. A
 * reply's quoted message only has to exist (pl_acts_may_reply). */
pl_err pl_acts_may(const pl_acts_cfg *c, const pl_act *a, const pl_act_target *t, uint64_t me, int admin,
                   uint64_t now);

/* A reply quotes a message of the conversation: reply_to in 1..last_seq. */
static inline pl_err pl_acts_may_reply(uint64_t reply_to, uint64_t last_seq) {
  return reply_to && reply_to > last_seq ? PL_ERR_NO_TARGET : PL_OK;
}

/* Who may set the timer: either side of a 1:1 conversation; in a group an
 * admin or the owner. */
static inline pl_err pl_acts_may_set_timer(int group, int admin) {
  return group && !admin ? PL_ERR_FORBIDDEN : PL_OK;
}

/* How long messages live on devices under a timer of timer_s (0: off). */
uint64_t pl_acts_timer_ms(const pl_acts_cfg *c, uint32_t timer_s);

/* When a message stamped ts vanishes from every device under timer_ms (0:
 * never); the server deletes it then too (the smaller of this and its TTL
 * expiry, pl_acts_expires). */
static inline uint64_t pl_acts_vanish_at(uint64_t timer_ms, uint64_t ts) {
  return timer_ms ? ts + timer_ms : 0;
}
static inline uint64_t pl_acts_expires(uint64_t ttl_expires, uint64_t vanish_at) {
  return vanish_at && vanish_at < ttl_expires ? vanish_at : ttl_expires;
}

/* Does a delete for everyone take the target out of the queues of devices
 * that have not received it yet (and out of a group's history)? Always:
 * nobody sees what was deleted in time; those that had it see "this
 * message was deleted" when the delete arrives. */
static inline int pl_acts_delete_unqueues(int kind) { return kind == PL_ACT_DELETE; }

/* Does a message of this kind wake an offline device with a push
 * notification? Only what a person reads as new: a message, a reply, a
 * forward; not a reaction, an edit, a delete or a timer change (they show
 * when the app next opens). */
static inline int pl_acts_notifies(int kind) { return kind == PL_ACT_NONE; }

#endif
