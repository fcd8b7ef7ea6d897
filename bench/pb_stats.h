/* pb_stats: what a worker measures, in a form that merges across workers.
 *
 * pb_hist is a log-linear latency histogram in microseconds: exact below
 * 128 us, then 128 buckets per power of two (under 0.8 % relative error),
 * up to 2^41 us. Fixed size, so a result travels over a pipe as plain bytes.
 *
 * pb_track is a sender's ledger, one byte per sequence number: whether the
 * message was sent, acknowledged by the server (SendAck) or refused (Error),
 * and how many times a receiver got it. Lost and duplicated counts come from
 * it exactly, not from counters that could drift. */
#ifndef PB_STATS_H
#define PB_STATS_H

#include <stddef.h>
#include <stdint.h>

#define PB_HIST_SUB_BITS 7
#define PB_HIST_SUB (1u << PB_HIST_SUB_BITS)
#define PB_HIST_MAX_BITS 41
#define PB_HIST_BUCKETS (PB_HIST_SUB + (PB_HIST_MAX_BITS - PB_HIST_SUB_BITS) * PB_HIST_SUB)

typedef struct pb_hist {
  uint64_t count, sum, min, max;
  uint32_t b[PB_HIST_BUCKETS];
} pb_hist;

void pb_hist_add(pb_hist *h, uint64_t us);
void pb_hist_merge(pb_hist *into, const pb_hist *h);
/* The value at quantile q (0..1), the middle of its bucket; 0 if empty. */
uint64_t pb_hist_quantile(const pb_hist *h, double q);

enum { PB_T_SENT = 1, PB_T_ACKED = 2, PB_T_REFUSED = 4 };

typedef struct pb_track {
  uint8_t *st;  /* by seq - 1: flags in bits 0..2, receive count in bits 3..7 */
  uint64_t *ts; /* by seq - 1: send time (us), for the SendAck latency */
  uint64_t cap;
} pb_track;

/* Sets flag on seq (from 1), growing the ledger. */
void pb_track_mark(pb_track *t, uint64_t seq, uint8_t flag);
/* Records / reads the send time of seq (0 if none). */
void pb_track_set_time(pb_track *t, uint64_t seq, uint64_t us);
uint64_t pb_track_time(const pb_track *t, uint64_t seq);
/* 1 if seq has flag. */
int pb_track_has(const pb_track *t, uint64_t seq, uint8_t flag);
/* Counts one receipt of seq; returns how many there have been (saturates at 31). */
unsigned pb_track_recv(pb_track *t, uint64_t seq);
void pb_track_free(pb_track *t);

/* Everything a worker reports. Times are pb_now_us() values; 0 = unset. */
#define PB_GROUP_TRACK 1024 /* group: messages whose last delivery is tracked */

typedef struct pb_result {
  int32_t failed; /* the worker could not complete the scenario */
  char why[160];
  uint64_t conns; /* connections that authenticated */
  uint64_t conn_failed, retries, relogins, registered, disconnects;
  uint64_t sent, acked, acked_dup, refused, received, unique;
  uint64_t lost, duplicated, unacked_received, unanswered, stale, misrouted;
  uint64_t redelivered, dup_shown, qid_regress; /* against a qid-filtering client (protocol 10.6) */
  /* sends written again, same id, after a reconnect; of their SendAcks, how
   * many said duplicate (the first try had committed: a dedup hit) or not */
  uint64_t resent, resent_dup, resent_new;
  uint64_t t_go, t_stop, t_first_rx, t_last_rx; /* measured phase */
  uint64_t t_phase0, t_phase_end,
      phase_done;        /* drain: connect..last message; storm: reconnect..last AuthOk */
  uint64_t bench_cpu_us; /* this worker's CPU in the measured phase */
  pb_hist lat;           /* end-to-end message latency */
  pb_hist lat2;          /* storm: connect-to-AuthOk time of each reconnecting device */
  pb_hist ack;           /* send to SendAck (the server's commit path) */
  pb_hist lag;           /* open loop: how late the bench sent each message (its own share of latency) */
  /* group: per tracked message, the latest delivery over this worker's
   * members (us after sending; merged by maximum), and the group's cost */
  uint32_t gmax_us[PB_GROUP_TRACK];
  uint64_t group_rss, group_create_us;
} pb_result;

void pb_result_init(pb_result *r);
void pb_result_merge(pb_result *into, const pb_result *r);

/* Tallies a sender's ledger for seqs 1..upto into r (lost, duplicated,
 * unacked_received). */
void pb_track_tally(const pb_track *t, uint64_t upto, pb_result *r);

#endif
