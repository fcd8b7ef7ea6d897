/* pl_receipts: read state and receipts (docs/protocol.md 11.4): the
 * delivered and read watermarks that only move forward, which events an Ack
 * or a MarkRead makes and for whom, unread counts, what a user sees of the
 * other side's watermarks, and how events travel (live to connected devices
 * without being stored; a newer one replaces the pending one). Decisions
 * only, over values a backend loads; no I/O. The calls on the send and ack
 * paths are inline. */
#ifndef PL_RECEIPTS_H
#define PL_RECEIPTS_H

#include <stddef.h>
#include <stdint.h>

#include "store/pl_store.h" /* PL_MSG_* */

/* Moves a watermark (delivered or read) up to seq; 1 if it moved. A
 * watermark never goes back, so a late or repeated Ack / MarkRead makes
 * nothing. */
static inline int pl_receipts_advance(uint64_t *mark, uint64_t seq) {
  if (seq <= *mark)
    return 0;
  *mark = seq;
  return 1;
}

/* How far a MarkRead up to upto reads a conversation whose newest seq is
 * last: a seq past the end is clamped to it. */
static inline uint64_t pl_receipts_read_upto(uint64_t upto, uint64_t last) {
  return upto < last ? upto : last;
}

/* Unread messages of a conversation: last_seq - read_seq. Exact, because
 * sending reads the conversation (pl_receipts_advance on the sender's read
 * watermark), so everything after it is from the other side. */
static inline uint64_t pl_receipts_unread(uint64_t last_seq, uint64_t read_seq) {
  return last_seq > read_seq ? last_seq - read_seq : 0;
}

/* After an Ack moved the acking user's delivered watermark of a 1:1
 * conversation: does the sender get a delivered Receipt? Yes (read receipts
 * off or not), unless the acking user blocked the sender (11.5). */
static inline int pl_receipts_delivered_to_sender(int acker_blocked_sender) { return !acker_blocked_sender; }

/* After a MarkRead moved a user's read watermark: its other devices always
 * get a ReadSync (receipts off changes nothing there); does the peer get a
 * read Receipt? Only another user, with read receipts on on both sides (one
 * who hides its reads sees none either), whom the reader did not block. */
static inline int pl_receipts_read_to_peer(int self, int my_receipts, int peer_receipts, int i_blocked_peer) {
  return !self && my_receipts && peer_receipts && !i_blocked_peer;
}

/* UnreadGet: the other user's watermarks of a 1:1 conversation as a user
 * sees them: none from a peer who blocked the user; the read one only when
 * both have read receipts on. */
static inline void pl_receipts_peer_marks(uint64_t delivered, uint64_t read, int my_receipts,
                                          int peer_receipts, int peer_blocked_me, uint64_t *shown_delivered,
                                          uint64_t *shown_read) {
  *shown_delivered = peer_blocked_me ? 0 : delivered;
  *shown_read = my_receipts && peer_receipts && !peer_blocked_me ? read : 0;
}

/* Does a new event of this kind replace the pending (queued, unacked) one
 * of the same (conversation, kind, sender)? Every event does: a device that
 * was away gets one Receipt per conversation and status, the newest.
 * Messages never do. */
static inline int pl_receipts_replaces_pending(int kind) { return kind != PL_MSG_MESSAGE; }

/* An event's targets: the connected ones get it at once with qid 0, not
 * stored (nothing to ack); only the others get it queued. Moves the devices
 * online(ud, device) says are connected from t[0..*n) to live (room for *n),
 * keeping the order of both; returns how many moved. */
size_t pl_receipts_split_live(uint64_t *t, size_t *n, uint64_t *live, int (*online)(void *ud, uint64_t dev),
                              void *ud);

#endif
