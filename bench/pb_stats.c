#include "pb_stats.h"

#include <string.h>

#include "common/pl_mem.h"

/* ---- histogram ----------------------------------------------------------- */

static unsigned pb__msb(uint64_t v) { return 63u - (unsigned)__builtin_clzll(v); }

static uint32_t pb__bucket(uint64_t v) {
  if (v < PB_HIST_SUB)
    return (uint32_t)v;
  if (v >> PB_HIST_MAX_BITS)
    v = (1ull << PB_HIST_MAX_BITS) - 1;
  unsigned k = pb__msb(v);
  uint32_t sub = (uint32_t)(v >> (k - PB_HIST_SUB_BITS)) & (PB_HIST_SUB - 1);
  return PB_HIST_SUB + (k - PB_HIST_SUB_BITS) * PB_HIST_SUB + sub;
}

/* The middle of bucket i. */
static uint64_t pb__bucket_mid(uint32_t i) {
  if (i < PB_HIST_SUB)
    return i;
  unsigned k = (i - PB_HIST_SUB) / PB_HIST_SUB + PB_HIST_SUB_BITS;
  uint64_t sub = (i - PB_HIST_SUB) % PB_HIST_SUB;
  uint64_t width = 1ull << (k - PB_HIST_SUB_BITS);
  return ((PB_HIST_SUB + sub) << (k - PB_HIST_SUB_BITS)) + width / 2;
}

void pb_hist_add(pb_hist *h, uint64_t us) {
  h->b[pb__bucket(us)]++;
  if (!h->count || us < h->min)
    h->min = us;
  if (us > h->max)
    h->max = us;
  h->count++;
  h->sum += us;
}

void pb_hist_merge(pb_hist *into, const pb_hist *h) {
  if (!h->count)
    return;
  for (uint32_t i = 0; i < PB_HIST_BUCKETS; i++)
    into->b[i] += h->b[i];
  if (!into->count || h->min < into->min)
    into->min = h->min;
  if (h->max > into->max)
    into->max = h->max;
  into->count += h->count;
  into->sum += h->sum;
}

uint64_t pb_hist_quantile(const pb_hist *h, double q) {
  if (!h->count)
    return 0;
  uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
  if (rank < 1)
    rank = 1;
  uint64_t seen = 0;
  for (uint32_t i = 0; i < PB_HIST_BUCKETS; i++) {
    seen += h->b[i];
    if (seen >= rank) {
      uint64_t v = pb__bucket_mid(i);
      return v < h->min ? h->min : v > h->max ? h->max : v;
    }
  }
  return h->max;
}

/* ---- sender ledger ------------------------------------------------------- */

static void pb__track_grow(pb_track *t, uint64_t seq) {
  if (seq <= t->cap)
    return;
  uint64_t cap = t->cap ? t->cap : 1024;
  while (cap < seq)
    cap *= 2;
  t->st = pl_realloc(t->st, cap);
  memset(t->st + t->cap, 0, cap - t->cap);
  t->ts = pl_realloc(t->ts, cap * sizeof *t->ts);
  memset(t->ts + t->cap, 0, (cap - t->cap) * sizeof *t->ts);
  t->cap = cap;
}

void pb_track_mark(pb_track *t, uint64_t seq, uint8_t flag) {
  if (!seq)
    return;
  pb__track_grow(t, seq);
  t->st[seq - 1] |= flag;
}

void pb_track_set_time(pb_track *t, uint64_t seq, uint64_t us) {
  if (!seq)
    return;
  pb__track_grow(t, seq);
  t->ts[seq - 1] = us;
}

uint64_t pb_track_time(const pb_track *t, uint64_t seq) { return seq && seq <= t->cap ? t->ts[seq - 1] : 0; }

int pb_track_has(const pb_track *t, uint64_t seq, uint8_t flag) {
  return seq && seq <= t->cap && (t->st[seq - 1] & flag);
}

unsigned pb_track_recv(pb_track *t, uint64_t seq) {
  if (!seq)
    return 0;
  pb__track_grow(t, seq);
  unsigned n = t->st[seq - 1] >> 3;
  if (n < 31)
    n++;
  t->st[seq - 1] = (uint8_t)((t->st[seq - 1] & 7u) | (n << 3));
  return n;
}

void pb_track_free(pb_track *t) {
  pl_free(t->st);
  pl_free(t->ts);
  t->st = NULL;
  t->ts = NULL;
  t->cap = 0;
}

void pb_track_tally(const pb_track *t, uint64_t upto, pb_result *r) {
  for (uint64_t s = 0; s < upto && s < t->cap; s++) {
    unsigned flags = t->st[s] & 7u, n = t->st[s] >> 3;
    if ((flags & PB_T_ACKED) && n == 0)
      r->lost++;
    if (n > 1)
      r->duplicated += n - 1;
    if (n && !(flags & PB_T_ACKED))
      r->unacked_received++;
  }
}

/* ---- results ------------------------------------------------------------- */

void pb_result_init(pb_result *r) { memset(r, 0, sizeof *r); }

static void pb__min_set(uint64_t *into, uint64_t v) {
  if (v && (!*into || v < *into))
    *into = v;
}

static void pb__max_set(uint64_t *into, uint64_t v) {
  if (v > *into)
    *into = v;
}

void pb_result_merge(pb_result *into, const pb_result *r) {
  if (r->failed && !into->failed) {
    into->failed = r->failed;
    memcpy(into->why, r->why, sizeof into->why);
  }
  const uint64_t *src[] = {
      &r->conns,       &r->conn_failed, &r->retries,     &r->relogins,   &r->registered,
      &r->disconnects, &r->sent,        &r->acked,       &r->acked_dup,  &r->refused,
      &r->received,    &r->unique,      &r->lost,        &r->duplicated, &r->unacked_received,
      &r->unanswered,  &r->stale,       &r->misrouted,   &r->phase_done, &r->bench_cpu_us,
      &r->redelivered, &r->dup_shown,   &r->qid_regress, &r->resent,     &r->resent_dup,
      &r->resent_new};
  uint64_t *dst[] = {
      &into->conns,       &into->conn_failed, &into->retries,     &into->relogins,   &into->registered,
      &into->disconnects, &into->sent,        &into->acked,       &into->acked_dup,  &into->refused,
      &into->received,    &into->unique,      &into->lost,        &into->duplicated, &into->unacked_received,
      &into->unanswered,  &into->stale,       &into->misrouted,   &into->phase_done, &into->bench_cpu_us,
      &into->redelivered, &into->dup_shown,   &into->qid_regress, &into->resent,     &into->resent_dup,
      &into->resent_new};
  for (size_t i = 0; i < sizeof src / sizeof src[0]; i++)
    *dst[i] += *src[i];
  pb__min_set(&into->t_go, r->t_go);
  pb__min_set(&into->t_first_rx, r->t_first_rx);
  pb__min_set(&into->t_phase0, r->t_phase0);
  pb__max_set(&into->t_stop, r->t_stop);
  pb__max_set(&into->t_last_rx, r->t_last_rx);
  pb__max_set(&into->t_phase_end, r->t_phase_end);
  pb_hist_merge(&into->lat, &r->lat);
  for (size_t i = 0; i < PB_GROUP_TRACK; i++)
    if (r->gmax_us[i] > into->gmax_us[i])
      into->gmax_us[i] = r->gmax_us[i];
  pb__max_set(&into->group_rss, r->group_rss);
  pb__max_set(&into->group_create_us, r->group_create_us);
  pb_hist_merge(&into->lat2, &r->lat2);
  pb_hist_merge(&into->ack, &r->ack);
  pb_hist_merge(&into->lag, &r->lag);
}
