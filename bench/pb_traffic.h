/* pb_traffic: devices that send and receive benchmark messages.
 *
 * A peer is one device connection. It may send to one other user (to) and
 * receive from one (from). Every message it sends carries, in its body,
 *
 *   "<run id, 16 hex> <sender index> <seq> <send time, us>" + padding
 *
 * and the Send.id "<run id>.<seq>" (unique per sending user across runs, so
 * the server's dedup never merges two runs). The sender's ledger (pb_track)
 * records SendAck / Error per seq; the receiver finds the sender's ledger by
 * index (both ends of a flow always live in the same worker) and counts the
 * receipt, so lost and duplicated messages are exact. Messages of another
 * run id (left queued by an earlier run on a kept data dir) are counted as
 * stale and otherwise ignored.
 *
 * A sender whose connection breaks keeps the sends it had in flight and,
 * once it has reconnected, writes them again with the same ids and bodies,
 * as libparley does: the server's dedup answers those the first try had
 * committed with SendAck.duplicate (counted as resent_dup), the others are
 * stored now (resent_new). A kill -9 of the server thus exercises dedup.
 *
 * Sending is either as fast as possible (each sender keeps `window` sends
 * awaiting SendAck) or paced, open loop: message k of the worker is due at
 * t0 + k / rate and goes to sender k mod n; its send time is the time it was
 * due, not the time it left, so a late bench counts against latency
 * (no coordinated omission). */
#ifndef PB_TRAFFIC_H
#define PB_TRAFFIC_H

#include <stdint.h>

#include "pb_conn.h"
#include "pb_stats.h"

#define PB_NOBODY UINT32_MAX
#define PB_REVIVE_US 200000u
#define PB_NO_QUOTA UINT64_MAX

typedef struct pb_traffic pb_traffic;

typedef struct pb_peer {
  pb_conn c; /* first */
  pb_traffic *t;
  uint32_t to, from; /* user indices, or PB_NOBODY */
  uint64_t next_seq, inflight;
  uint64_t low;         /* every seq below it is answered (SendAck or Error) */
  uint64_t resend_mark; /* seqs below it that were unanswered at a reconnect were resent */
  uint8_t resend;       /* the connection broke with sends in flight: resend them once ready */
  uint64_t quota;       /* most messages to send; PB_NO_QUOTA: no limit */
  pb_track tr;          /* as a sender */
  uint64_t qid_seen;    /* as a receiver: highest qid, across reconnects */
  uint8_t ready;
  uint8_t manual;  /* pb_traffic_connect leaves it alone */
  uint8_t want_up; /* reconnect it when the connection is lost */
} pb_peer;

struct pb_traffic {
  pb_net *net;
  pb_result *res;
  uint64_t run_id;
  pb_peer *peers;
  uint32_t npeers, cap;
  pb_peer **by_uidx; /* local senders by user index */
  uint32_t nusers;
  uint32_t window, body_size;
  int filling;   /* max speed: refill windows on SendAck */
  int recording; /* record latencies (the measured phase) */
  int stopping;  /* send no more */
  int closing;   /* disconnects are expected */
  uint64_t ready, errors_logged;
  uint64_t inflight, received_once; /* sends awaiting an answer; this run's messages received */
  uint32_t quota_open;              /* max speed: senders below their quota */
  int has_quota;
  pb_timer revive;              /* reconnects lost peers */
  void (*on_ready)(pb_peer *p); /* optional hook */
  /* open-loop pacing */
  pb_timer pace;
  double interval_us;
  uint64_t pace_t0, pace_n, pace_limit;
  pb_peer **senders;
  uint32_t nsenders;
};

void pb_traffic_init(pb_traffic *t, pb_net *net, pb_result *res, uint64_t run_id, uint32_t cap,
                     uint32_t nusers);
/* Adds a peer for user uidx (at most cap peers); to/from may be PB_NOBODY. */
pb_peer *pb_traffic_add(pb_traffic *t, uint32_t uidx, uint32_t to, uint32_t from);
/* Starts connecting every idle peer that is not manual. */
void pb_traffic_connect(pb_traffic *t);
/* Starts connecting p. A peer started this way is reconnected (after
 * PB_REVIVE_US) whenever its connection is lost, until dropped: a real
 * client resumes too, and the messages queued for it meanwhile still count. */
void pb_traffic_start(pb_peer *p);
/* Disconnects p on purpose (rst: abortive close); it stays down. */
void pb_traffic_drop(pb_peer *p, int rst);
/* Condition: no connection of t's net is queued or handshaking (every
 * started peer is ready, or failed). */
int pb_traffic_connected(void *t);
/* Sends one message from p stamped with ts_us; -1 if p is not connected. */
int pb_traffic_send(pb_peer *p, uint64_t ts_us);
/* Max speed: fills every sender's window (refilled on each SendAck). */
void pb_traffic_fill(pb_traffic *t);
/* Open loop: `rate` messages/s over all senders, `limit` in total (0: no limit). */
void pb_traffic_pace(pb_traffic *t, double rate, uint64_t limit);
/* Sends no more. */
void pb_traffic_stop(pb_traffic *t);
/* Condition: pacing is over (its limit reached) or stopped. */
int pb_traffic_quota_done(void *t);
/* Condition: every send was answered and every acked message received. */
int pb_traffic_settled(void *t);
/* Adds the ledgers' lost / duplicated / unacked counts to the result. */
void pb_traffic_tally(pb_traffic *t);
/* Drops every connection and frees the peers. */
void pb_traffic_free(pb_traffic *t);

#endif
