/* pl_privacy: blocks, contacts and the privacy settings (docs/protocol.md
 * 11.5-11.7): who may write to whom, who sees a user's presence, last seen
 * and typing, what a block hides, and the settings' values, defaults and
 * validation. Decisions only, over values a backend loads (a user's block
 * list, whether a contact row exists, the stored settings): no I/O, no
 * backend. The calls on the send path are inline. */
#ifndef PL_PRIVACY_H
#define PL_PRIVACY_H

#include <stddef.h>
#include <stdint.h>

#include "common/pl_err.h"
#include "store/pl_store.h" /* PL_LAST_SEEN_*, PL_GROUP_ADD_* (the wire's values) */

/* ---- blocks and who may write to whom ---- */

/* Did the user whose block list is blocked[0..n) block uid? Lists are a
 * handful of ids: a scan beats any index. */
static inline int pl_privacy_blocks(const uint64_t *blocked, size_t n, uint64_t uid) {
  for (size_t i = 0; i < n; i++)
    if (blocked[i] == uid)
      return 1;
  return 0;
}

/* A request that names another user (send, mark read, typing, contacts,
 * block): UNKNOWN_PEER when no user has that name; INVALID_ARGUMENT when the
 * asking user is gone, or names itself where that makes no sense (self_ok
 * 0: contacts, blocks, typing; a note to self is a send); else PL_OK. */
static inline pl_err pl_privacy_peer(int peer_known, int me_known, int self, int self_ok) {
  if (!peer_known)
    return PL_ERR_UNKNOWN_PEER;
  return !me_known || (self && !self_ok) ? PL_ERR_INVALID_ARGUMENT : PL_OK;
}

/* May a user send to a peer who did (1) or did not (0) block it? A block
 * refuses the send: nothing is stored, no seq is used (11.5). */
static inline pl_err pl_privacy_may_send(int peer_blocked_me) {
  return peer_blocked_me ? PL_ERR_BLOCKED : PL_OK;
}

/* Does a typist's Typing reach a user (1:1 or in a group)? Not one who
 * blocked the typist; dropped silently (11.7). */
static inline int pl_privacy_sees_typing(int blocked_typist) { return !blocked_typist; }

/* Receipts from a user who blocked you: none (pl_receipts, which decides
 * them, takes the block as an argument). */

/* ---- presence and last seen (11.5, 11.6) ---- */

/* What a viewer may see of a user. */
typedef struct pl_privacy_view {
  int visible;      /* online status */
  int seen_visible; /* the last-seen time */
} pl_privacy_view;

/* self: the viewer is the user; contact: the user has the viewer in its
 * contact list; blocked: the user blocked the viewer, who then sees what any
 * stranger sees (a block cannot be told from not being a contact);
 * last_seen: the user's setting (PL_LAST_SEEN_*). */
pl_privacy_view pl_privacy_view_of(int self, int contact, int blocked, int last_seen);

/* ---- settings (Settings, protocol.md 11.4-11.6, 10.7) ---- */

/* A user's privacy settings as stored. */
typedef struct pl_privacy_settings {
  int read_receipts; /* 1 on, 0 off */
  int last_seen;     /* PL_LAST_SEEN_* */
  int group_add;     /* PL_GROUP_ADD_*; 0: never set, which means EVERYONE */
} pl_privacy_settings;

/* A new user's settings: the backend stores them at registration. The
 * SQLite schema's column defaults, which filled in the users of data dirs
 * upgraded from before these settings, are the same values. */
#define PL_PRIVACY_DEFAULTS ((pl_privacy_settings){1, PL_LAST_SEEN_CONTACTS, 0})

/* Which fields a Settings request changes. */
enum { PL_PRIVACY_SET_RECEIPTS = 1, PL_PRIVACY_SET_LAST_SEEN = 2, PL_PRIVACY_SET_GROUP_ADD = 4 };

/* A Settings request on cur: read_receipts 1 on, 2 off; last_seen a
 * PL_LAST_SEEN_*; group_add a PL_GROUP_ADD_*; 0 (or, for the first two, any
 * other value) leaves a field as it is. *next gets the settings after it and
 * *changed the PL_PRIVACY_SET_* bits of the fields the backend must write.
 * INVALID_ARGUMENT, and nothing changes, for a group_add out of range. */
pl_err pl_privacy_settings_apply(const pl_privacy_settings *cur, int read_receipts, int last_seen,
                                 int group_add, pl_privacy_settings *next, unsigned *changed);

/* The group_add a client is shown: EVERYONE for a user who never set it. */
static inline int pl_privacy_group_add_shown(int stored) { return stored ? stored : PL_GROUP_ADD_EVERYONE; }

#endif
