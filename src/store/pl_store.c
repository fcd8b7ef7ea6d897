/* pl_store: the store thread, its request queue and group commit.
 *
 * Submitters append to a mutex-protected FIFO and signal a condvar. The one
 * store thread takes up to max_batch requests at a time, runs them in one
 * backend transaction and commits once; then delivers new messages and hands
 * every request back in submission order. The backend is only ever used from
 * this thread (open/close excepted), so it needs no locking of its own. */
#include "pl_store.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"
#include "../rules/pl_retention.h"
#include "pl_reserve.h"
#include "pl_shardmap.h"
#include "pl_store_int.h"

#define PL__DEFAULT_SWEEP_MS 10000u
#define PL__DEFAULT_FLUSH_CHUNK 2048u
#define PL__RELAY_MS 1000u /* the backend's relay (between shards) runs this often */
#define PL__DEFAULT_BATCH 1024u
#define PL__FULL_PROBE_MS 1000u /* while the disk is full, free space is looked at this often */

/* A pl_store_expire_now caller waiting for the store thread. */
typedef struct pl__sweep {
  struct pl__sweep *next;
  uint64_t now_ms, deleted;
  pl_err err;
  int done;
} pl__sweep;

/* A pl_store_call caller: the request's own done/origin/data are parked
 * here while the request runs with the internal done. */
typedef struct pl__call {
  pl_store *s;
  pl_store_done_cb done;
  void *origin, *data;
  int finished;
} pl__call;

/* Linked shards (pl_store_link): every store of the set points to it. */
typedef struct pl__link {
  pl_store **stores;
  unsigned n;
  /* The hooks after a commit (deliver, done callbacks run on the store
   * thread) were written for one store thread: the router gathers a
   * commit's pushes per loop until deliver_end. Shards take turns there. */
  pthread_mutex_t post_mu;
} pl__link;

struct pl_store {
  const pl_store_backend *be;
  void *bctx;
  pl_store_config cfg;
  pl_store_hooks hooks;
  pthread_t thread;
  pthread_mutex_t mu;    /* guards everything below */
  pthread_cond_t wake;   /* the store thread: work, a sweep or stop */
  pthread_cond_t called; /* pl_store_call / expire_now waiters */
  pl_store_req *head, *tail;
  size_t queued; /* requests between head and tail */
  int idle;      /* the thread sleeps until work comes (submit signals) */
  pl__sweep *sweeps;
  int closing;                     /* no more submissions; the thread drains and exits */
  int running;                     /* the thread has not exited: a hook of the drain may still submit */
  pl_store_stats stats;            /* stats.disk_full: the store thread's full, for readers */
  pl_hist commit_hist, batch_hist; /* us per commit; requests per transaction */
  pl_reserve reserve;              /* store thread only (after open) */
  int full;                        /* the disk is full: SEND and MEDIA_PUT are refused (store thread) */
  uint64_t next_probe;             /* mono ms: the next look at free space while unreserved */
  pl__link *link;                  /* linked shards (NULL: one store) */
  uint64_t rerouted;               /* (mu) requests refused before sending (stats.fenced) */
  uint64_t map_seen;               /* the bucket map's epoch when this thread last looked */
};

/* ---- handing requests back ---------------------------------------------- */

/* The last touch of req: after post the request belongs to another thread. */
void pl_store__hand_back(pl_store *s, pl_store_req *req) {
  if (req->origin && s->hooks.post)
    s->hooks.post(s->hooks.ud, req->origin, req);
  else if (req->done)
    req->done(req);
}

/* A group's membership changes of one request: joins go before its
 * events (an added member sees "added"), leaves after (a removed one too). */
static void pl__group_changes(pl_store *s, const pl_store_req *r, int join) {
  for (size_t i = 0; s->hooks.group_change && i < r->nchanges; i++)
    if (r->changes[i].join == join)
      s->hooks.group_change(s->hooks.ud, &r->changes[i]);
}

/* A message for targets; with per-device qids (queue_exact backends) one
 * call per target, each with its own position. */
static void pl__deliver_to(pl_store *s, const pl_msg *m, const uint64_t *t, const uint64_t *qids, size_t n) {
  if (!qids) {
    s->hooks.deliver(s->hooks.ud, m, t, n);
    return;
  }
  pl_msg one = *m;
  for (size_t i = 0; i < n; i++) {
    one.qid = qids[i];
    s->hooks.deliver(s->hooks.ud, &one, &t[i], 1);
  }
}

static void pl__deliver_event(pl_store *s, const pl_store_event *ev, uint64_t skip) {
  if (ev->group && s->hooks.deliver_group)
    s->hooks.deliver_group(s->hooks.ud, &ev->msg, ev->group, skip);
  else if (!ev->group)
    pl__deliver_to(s, &ev->msg, ev->targets, ev->qids, ev->ntargets);
}

/* In request (= commit) order, so each device's live stream keeps qid order
 * and a membership change takes effect exactly between two messages. */
static void pl__deliver_batch(pl_store *s, pl_store_req *batch) {
  if (!s->hooks.deliver)
    return;
  for (pl_store_req *r = batch; r; r = r->next) {
    if (r->status != PL_OK)
      continue;
    pl__group_changes(s, r, 1);
    const pl_store_send_req *send = &r->u.send;
    if (r->op == PL_STORE_SEND && !send->out.duplicate && send->out.group && s->hooks.deliver_group)
      s->hooks.deliver_group(s->hooks.ud, &send->out.msg, send->out.group, 0);
    else if (r->op == PL_STORE_SEND && !send->out.duplicate && send->out.ntargets)
      pl__deliver_to(s, &send->out.msg, send->out.targets, send->out.qids, send->out.ntargets);
    for (size_t i = 0; i < r->nevents; i++)
      pl__deliver_event(s, &r->events[i], 0);
    pl__group_changes(s, r, 0);
    if (r->op == PL_STORE_FETCH && r->u.fetch.out.ngids && s->hooks.device_groups)
      s->hooks.device_groups(s->hooks.ud, r->device_id, r->u.fetch.out.gids, r->u.fetch.out.ngids);
  }
  if (s->hooks.deliver_end)
    s->hooks.deliver_end(s->hooks.ud);
}

static void pl__hand_back_batch(pl_store *s, pl_store_req *batch) {
  while (batch) {
    pl_store_req *next = batch->next;
    batch->next = NULL;
    pl_store__hand_back(s, batch);
    batch = next;
  }
}

/* ---- the store thread ---------------------------------------------------- */

static uint64_t pl__commit_timed(pl_store *s, pl_err *e) {
  uint64_t t0 = pl_mono_us();
  *e = s->be->commit(s->bctx);
  return pl_mono_us() - t0;
}

/* While the disk is full, what would grow the data is refused; what frees
 * space (acks, the sweep) and what keeps users signed in goes through. */
static int pl__grows(const pl_store_req *r) {
  const pl_store_op_info *o = pl_store_op_get(r->op);
  return o && o->grows;
}

/* A request routed by an older map than the one held now, whose bucket
 * the newer map put on another shard, does not run here: it fails with the
 * retryable INTERNAL (PL_ERR_MOVED) and the client's retry goes the right
 * way. Run here, it would pass the old shard's fence (the backend tells
 * the database the newer epoch at begin) and commit where the mover has
 * already copied from: lost when the mover deletes what it left (seen: an
 * acked group message, routed before the node took the map and run
 * after). Called after begin, so the map read here is at least as new as
 * the epoch the backend told. */
static void pl__reroute(pl_store *s, pl_store_req *batch) {
  const pl_shardmap *m = s->cfg.shardmap;
  uint64_t now = m ? pl_shardmap_epoch(m) + 1 : 0, n = 0;
  for (pl_store_req *r = batch; r; r = r->next) {
    if (!r->routed_at || r->routed_at == now || r->status != PL_OK)
      continue;
    int to = pl_store_route(r, m, s->cfg.nshards);
    if (to >= (int)s->cfg.nshards)
      to = 0; /* as pl_store__submit_linked sends it */
    if (to >= 0 && (unsigned)to != s->cfg.shard) {
      r->status = PL_ERR_MOVED;
      n++;
    }
  }
  if (n) {
    pthread_mutex_lock(&s->mu);
    s->rerouted += n;
    pthread_mutex_unlock(&s->mu);
  }
}

/* Runs one batch in one transaction. Returns the time commit() took. */
static uint64_t pl__exec_batch(pl_store *s, pl_store_req *batch, pl_err *e) {
  uint64_t us = 0;
  *e = s->be->begin(s->bctx);
  for (pl_store_req *r = batch; r; r = r->next)
    r->status = s->full && pl__grows(r) ? PL_ERR_STORAGE_FULL : PL_OK;
  pl__reroute(s, batch);
  if (*e == PL_OK && s->be->exec_batch)
    *e = s->be->exec_batch(s->bctx, batch);
  for (pl_store_req *r = batch; !s->be->exec_batch && *e == PL_OK && r; r = r->next)
    if (r->status == PL_OK)
      *e = s->be->exec(s->bctx, r);
  if (*e == PL_OK)
    us = pl__commit_timed(s, e);
  if (*e != PL_OK) {
    /* not for a move's refusal (expected, and the backend told it) nor a
     * conflict (the backend warned, and the batch runs again: pl__exec_all
     * tells if it never gets through) */
    if (*e != PL_ERR_MOVED && *e != PL_ERR_AGAIN)
      pl_error("store: transaction of a batch failed (%s); rolling back", pl_err_name(*e));
    s->be->rollback(s->bctx);
    /* out_begin, not clear: the request may run again (a conflict's retry,
     * the disk-full pass), and its outputs must be freed and zeroed before
     * each run. A plain clear leaves no op to free by, so a second failed
     * run kept the first's counts (a fetch's nmsgs) over a new array. */
    for (pl_store_req *r = batch; r; r = r->next) {
      pl_store_req_out_begin(r);
      r->status = *e == PL_ERR_STORAGE_FULL && pl__grows(r) ? PL_ERR_STORAGE_FULL : PL_ERR_INTERNAL;
    }
  }
  return us;
}

/* ---- disk full ----------------------------------------------------------- */

static void pl__set_full(pl_store *s, int full) {
  s->full = full;
  pthread_mutex_lock(&s->mu);
  s->stats.disk_full = full;
  s->stats.disk_full_total += full;
  pthread_mutex_unlock(&s->mu);
}

static void pl__checkpoint(pl_store *s) {
  if (s->be->checkpoint && s->be->checkpoint(s->bctx) != PL_OK)
    pl_warn("store: checkpoint while the disk is full failed (tried again in a second)");
}

static void pl__disk_stats(pl_store *s, uint64_t avail, uint64_t dbfree) {
  pthread_mutex_lock(&s->mu);
  s->stats.disk_avail = avail;
  s->stats.db_free = dbfree;
  s->stats.reserve_held = s->reserve.held || !s->reserve.size;
  pthread_mutex_unlock(&s->mu);
}

/* The disk is full (a transaction failed for want of space, or the probe
 * found no room left): give the reserve back to the filesystem and fold the
 * WAL into the database, so that the next transaction (the batch again,
 * without its sends) has room. */
static void pl__disk_full(pl_store *s) {
  if (!s->full) {
    uint64_t held = s->reserve.held ? s->reserve.size : 0;
    pl_reserve_release(&s->reserve);
    pl__set_full(s, 1);
    pl_error("store: the disk is full: released the %llu-byte reserve; new messages and uploads are "
             "refused (STORAGE_FULL) until %llu bytes are free on the disk or inside the database, acks and "
             "logins go on",
             (unsigned long long)held, (unsigned long long)pl_reserve_needed(&s->reserve));
  }
  s->next_probe = pl_mono_ms() + PL__FULL_PROBE_MS;
  pl__checkpoint(s);
  pl__disk_stats(s, pl_reserve_avail(&s->reserve), s->be->free_bytes ? s->be->free_bytes(s->bctx) : 0);
}

/* Runs without its reserve: full, or taking messages into the database's
 * free pages until the disk has room for the reserve again. */
static int pl__unreserved(const pl_store *s) { return s->full || (s->reserve.size && !s->reserve.held); }

/* Every PL__FULL_PROBE_MS while unreserved. Once the disk has room for the
 * reserve and as much again, it holds the reserve and takes messages.
 * Otherwise, acks may have freed room inside the database, which new
 * messages reuse without the file growing (a server whose own queues
 * filled the disk recovers when its clients ack): it takes messages while
 * the database has the reserve's size free inside it, and the disk half of
 * it for the WAL; below that, it refuses them again before a commit can
 * fail, so the file never has to grow without a reserve to give back. */
static void pl__disk_probe(pl_store *s) {
  s->next_probe = pl_mono_ms() + PL__FULL_PROBE_MS;
  if (s->full)
    pl__checkpoint(s); /* acks may have emptied the WAL's pages */
  uint64_t avail = pl_reserve_avail(&s->reserve), need = pl_reserve_needed(&s->reserve);
  uint64_t dbfree = s->be->free_bytes ? s->be->free_bytes(s->bctx) : 0, size = s->reserve.size;
  if (avail >= need && pl_reserve_hold(&s->reserve) == PL_OK) {
    pl__disk_stats(s, avail, dbfree);
    if (s->full)
      pl__set_full(s, 0);
    pl_warn("store: disk space is back (%llu bytes free): the reserve is held again, new messages are taken",
            (unsigned long long)avail);
    return;
  }
  pl__disk_stats(s, avail, dbfree);
  if (s->full && dbfree >= need && avail >= size / 2) {
    pl__set_full(s, 0);
    pl_warn("store: %llu bytes free inside the database: new messages are taken again, without the reserve "
            "until %llu bytes are free on the disk",
            (unsigned long long)dbfree, (unsigned long long)need);
  } else if (!s->full && (dbfree < size || avail < size / 4)) {
    pl__disk_full(s);
  }
}

static int pl__any_runs(const pl_store *s, const pl_store_req *batch) {
  for (const pl_store_req *r = batch; r; r = r->next)
    if (!(s->full && pl__grows(r)))
      return 1;
  return 0;
}

/* A conflict with another server's transaction (PL_ERR_AGAIN: a
 * serialization failure or deadlock the database aborted) runs the batch
 * again, a few times: nothing of the aborted attempt was stored. */
#define PL__CONFLICT_RETRIES 8
/* The retries of each part of a batch split after its own ran out. */
#define PL__SPLIT_RETRIES 3

static uint64_t pl__exec_retrying(pl_store *s, pl_store_req *batch, int retries, pl_err *e) {
  uint64_t us = pl__exec_batch(s, batch, e);
  for (int i = 0; *e == PL_ERR_AGAIN && i < retries; i++) {
    pthread_mutex_lock(&s->mu);
    s->stats.retries++;
    pthread_mutex_unlock(&s->mu);
    us = pl__exec_batch(s, batch, e);
  }
  return us;
}

static uint64_t pl__exec_split(pl_store *s, pl_store_req *batch, size_t n, pl_err *e, size_t *done);

/* A batch still conflicting after its retries runs in halves, each in its
 * own transaction with a few retries (and halves of those likewise): one
 * request that keeps meeting another server's (a fetch behind a hot device
 * row, say) then no longer fails all the others, nor they it, and a lone
 * request that still conflicts fails alone. The halves commit in order, and
 * after one that failed the rest fails too (the retryable INTERNAL, as the
 * batch's failure left them): a session's requests are in the batch in
 * the order it sent them, and a failed send followed by a stored later one
 * would reorder its conversation. *done: how many requests, from the
 * first, committed. */
static uint64_t pl__exec_halves(pl_store *s, pl_store_req *batch, size_t n, pl_err *e, size_t *done) {
  size_t h = n / 2, d1 = 0, d2 = 0;
  pl_store_req *last = batch;
  for (size_t i = 1; i < h; i++)
    last = last->next;
  pl_store_req *rest = last->next;
  last->next = NULL;
  uint64_t us = pl__exec_split(s, batch, h, e, &d1);
  last->next = rest;
  if (d1 == h)
    us += pl__exec_split(s, rest, n - h, e, &d2);
  *done = d1 + d2;
  return us;
}

static uint64_t pl__exec_split(pl_store *s, pl_store_req *batch, size_t n, pl_err *e, size_t *done) {
  uint64_t us = pl__exec_retrying(s, batch, PL__SPLIT_RETRIES, e);
  *done = *e == PL_OK ? n : 0;
  if (*e == PL_ERR_AGAIN && n > 1)
    return us + pl__exec_halves(s, batch, n, e, done);
  return us;
}

/* Runs the batch (n requests) with its retries, split if they run out.
 * PL_OK when any of it committed: the requests tell their own outcome, and
 * *failed counts those that failed with a transaction. */
static uint64_t pl__exec_all(pl_store *s, pl_store_req *batch, size_t n, pl_err *e, size_t *failed) {
  size_t done = 0;
  uint64_t us = pl__exec_retrying(s, batch, PL__CONFLICT_RETRIES, e);
  *failed = *e == PL_OK ? 0 : n;
  if (*e == PL_ERR_AGAIN && n > 1) {
    pl_warn("store: a batch of %zu requests still conflicts after %d runs: it runs in parts", n,
            PL__CONFLICT_RETRIES + 1);
    pthread_mutex_lock(&s->mu);
    s->stats.splits++;
    pthread_mutex_unlock(&s->mu);
    us += pl__exec_halves(s, batch, n, e, &done);
    *failed = n - done;
    if (*failed && *e == PL_ERR_AGAIN)
      pl_error("store: %zu of %zu requests failed: their part still conflicted after its re-runs", *failed,
               n);
    if (done)
      *e = PL_OK;
  } else if (*e == PL_ERR_AGAIN) {
    pl_error("store: %zu requests failed: their transaction still conflicted after its re-runs", n);
  }
  if (*e == PL_ERR_AGAIN) /* still conflicting: a retryable error for the clients */
    *e = PL_ERR_STORE;
  return us;
}

static void pl__run_batch(pl_store *s, pl_store_req *batch, size_t n) {
  pl_err e;
  size_t failed;
  uint64_t us = pl__exec_all(s, batch, n, &e, &failed);
  if (e == PL_ERR_STORAGE_FULL) {
    pl__disk_full(s);
    if (pl__any_runs(s, batch)) { /* the acks and logins of the batch, in the space just freed */
      us = pl__exec_batch(s, batch, &e);
      failed = e == PL_OK ? 0 : n;
    }
  }
  uint64_t msgs = 0;
  for (pl_store_req *r = batch; e == PL_OK && r; r = r->next)
    if (r->op == PL_STORE_SEND && r->status == PL_OK && !r->u.send.out.duplicate)
      msgs++;
  pthread_mutex_lock(&s->mu);
  s->stats.requests += n;
  s->stats.commits += e == PL_OK;
  s->stats.commit_us_total += us;
  s->stats.messages += msgs;
  s->stats.fails += failed;
  /* a batch of nothing but refused sends is the disk-full state, which
   * disk_full tells (it would otherwise stay "failing" after the recovery);
   * a batch a move's fence refused is not a failing store either: the next
   * one goes through with the new map, and /healthz must not take the node
   * out of the load balancer meanwhile */
  s->stats.write_failing = e != PL_OK && e != PL_ERR_STORAGE_FULL && e != PL_ERR_MOVED;
  s->stats.write_err = e;
  pthread_mutex_unlock(&s->mu);
  pl_hist_add(&s->batch_hist, n);
  if (e == PL_OK)
    pl_hist_add(&s->commit_hist, us);
  if (s->link)
    pthread_mutex_lock(&s->link->post_mu);
  if (e == PL_OK)
    pl__deliver_batch(s, batch);
  pl__hand_back_batch(s, batch);
  if (s->link)
    pthread_mutex_unlock(&s->link->post_mu);
}

static pl_err pl__sweep_once(pl_store *s, uint64_t now_ms, uint64_t *deleted) {
  *deleted = 0;
  pl_err e = s->be->begin(s->bctx);
  if (e == PL_OK)
    e = s->be->expire(s->bctx, now_ms, deleted);
  if (e == PL_OK)
    e = s->be->commit(s->bctx);
  if (e != PL_OK) {
    s->be->rollback(s->bctx);
    *deleted = 0;
    pl_error("store: TTL sweep failed: %s", pl_err_name(e));
    if (e == PL_ERR_STORAGE_FULL) /* the disk filled with no request running */
      pl__disk_full(s);
  } else if (*deleted) {
    pl_debug("store: TTL sweep deleted %llu messages", (unsigned long long)*deleted);
  }
  return e;
}

/* What the relay (a backend's work between shards) queued: delivered as a
 * commit's messages are, taking turns with the other shards' commits. */
static void pl__relay_deliver(void *ud, const pl_msg *m, const uint64_t *t, const uint64_t *qids, size_t n) {
  pl_store *s = ud;
  if (!s->hooks.deliver)
    return;
  if (s->link)
    pthread_mutex_lock(&s->link->post_mu);
  pl__deliver_to(s, m, t, qids, n);
  if (s->hooks.deliver_end)
    s->hooks.deliver_end(s->hooks.ud);
  if (s->link)
    pthread_mutex_unlock(&s->link->post_mu);
}

/* A map taken since this thread last looked (by any store thread of the
 * node, on a refusal or its poll): the connected devices of the buckets it
 * moved read their queues again (hooks.moved). One atomic load when
 * nothing changed; the first thread to look takes the changed buckets. */
static void pl__moved_check(pl_store *s) {
  uint64_t epoch = pl_shardmap_epoch(s->cfg.shardmap);
  if (epoch == s->map_seen || !s->hooks.moved)
    return;
  s->map_seen = epoch;
  uint64_t bits[PL_SHARDMAP_WORDS];
  if (pl_shardmap_changed(s->cfg.shardmap, bits))
    s->hooks.moved(s->hooks.ud, bits);
}

static size_t pl__backlog(const pl_store *s) { return s->be->backlog ? s->be->backlog(s->bctx) : 0; }

/* The sweep's first part: the backend's cached writes (group cursors and
 * watermarks, ~1.5 us each), a chunk per transaction, so that requests
 * arriving meanwhile wait for one chunk, not for all of them (20,000 at
 * once stalled every request for 23-34 ms). */
static pl_err pl__flush_chunk(pl_store *s) {
  pl_err e = s->be->begin(s->bctx);
  if (e == PL_OK)
    e = s->be->flush(s->bctx, s->cfg.flush_chunk ? s->cfg.flush_chunk : PL__DEFAULT_FLUSH_CHUNK);
  if (e == PL_OK)
    e = s->be->commit(s->bctx);
  if (e != PL_OK) {
    s->be->rollback(s->bctx);
    pl_error("store: writing cached cursors failed: %s (the sweep writes them)", pl_err_name(e));
  }
  return e;
}

/* Called and returns with s->mu held. */
static void pl__run_sweeps(pl_store *s, pl__sweep *list) {
  pthread_mutex_unlock(&s->mu);
  for (pl__sweep *w = list; w; w = w->next)
    w->err = pl__sweep_once(s, w->now_ms, &w->deleted);
  pthread_mutex_lock(&s->mu);
  for (pl__sweep *w = list; w; w = w->next)
    w->done = 1;
  pthread_cond_broadcast(&s->called);
}

/* Detaches up to max requests from the queue (s->mu held). */
static pl_store_req *pl__take(pl_store *s, size_t max, size_t *n) {
  pl_store_req *first = s->head, *last = NULL;
  *n = 0;
  for (pl_store_req *r = first; r && *n < max; r = r->next) {
    last = r;
    (*n)++;
  }
  s->head = last->next;
  s->queued -= *n;
  if (!s->head)
    s->tail = NULL;
  last->next = NULL;
  return first;
}

static void pl__deadline(struct timespec *ts, uint64_t mono_ms) {
  ts->tv_sec = (time_t)(mono_ms / 1000u);
  ts->tv_nsec = (long)(mono_ms % 1000u) * 1000000L;
}

static void pl__deadline_us(struct timespec *ts, uint64_t mono_us) {
  ts->tv_sec = (time_t)(mono_us / 1000000u);
  ts->tv_nsec = (long)(mono_us % 1000000u) * 1000L;
}

/* Commit pacing: while commits run back to back, the next one starts no
 * sooner than commit_delay_us after the previous one started, so that
 * under load each commit (whose fsync costs the kernel ~100 us of CPU on
 * a virtual disk, whatever its size) carries more requests. A request
 * that finds the store idle is committed at once. Returns 1 and fills
 * *until if the thread should wait. */
static int pl__pace(const pl_store *s, size_t max, uint64_t last_start_us, uint64_t *until) {
  uint64_t d = s->cfg.commit_delay_us;
  if (!d || s->queued >= max || s->closing)
    return 0;
  *until = last_start_us + d;
  return pl_mono_us() < *until;
}

static void *pl__thread(void *arg) {
  pl_store *s = arg;
  pthread_setname_np(pthread_self(), "pl-store"); /* shows in top -H, perf, gdb */
  uint64_t sweep_ms = s->cfg.sweep_ms ? s->cfg.sweep_ms : PL__DEFAULT_SWEEP_MS;
  size_t max = s->cfg.max_batch ? s->cfg.max_batch : PL__DEFAULT_BATCH;
  uint64_t next_sweep = pl_mono_ms() + sweep_ms, last_start = 0, until;
  uint64_t next_relay = pl_mono_ms() + PL__RELAY_MS;
  /* only a sharded store has work between shards: one alone never wakes for it */
  int relays = s->be->relay && s->cfg.nshards > 1;
  int yield = 0, flush_failed = 0; /* yield: queued requests go before the next chunk */
  pthread_mutex_lock(&s->mu);
  for (;;) {
    if (s->sweeps) {
      pl__sweep *list = s->sweeps;
      s->sweeps = NULL;
      pl__run_sweeps(s, list);
    } else if (pl__unreserved(s) && pl_mono_ms() >= s->next_probe) {
      pthread_mutex_unlock(&s->mu);
      pl__disk_probe(s);
      pthread_mutex_lock(&s->mu);
    } else if (pl_mono_ms() >= next_sweep && !(yield && s->head) && !flush_failed && pl__backlog(s)) {
      pthread_mutex_unlock(&s->mu);
      flush_failed = pl__flush_chunk(s) != PL_OK;
      yield = 1;
      pthread_mutex_lock(&s->mu);
    } else if (pl_mono_ms() >= next_sweep && !(yield && s->head)) {
      /* Checked before the queue so a never-empty queue cannot starve it. */
      pthread_mutex_unlock(&s->mu);
      uint64_t deleted;
      pl__sweep_once(s, pl_now_ms(), &deleted);
      next_sweep = pl_mono_ms() + sweep_ms;
      yield = flush_failed = 0;
      pthread_mutex_lock(&s->mu);
    } else if (relays && pl_mono_ms() >= next_relay && !(yield && s->head)) {
      pthread_mutex_unlock(&s->mu);
      s->be->relay(s->bctx, pl__relay_deliver, s);
      pl__moved_check(s);
      next_relay = pl_mono_ms() + PL__RELAY_MS;
      pthread_mutex_lock(&s->mu);
    } else if (s->head && pl__pace(s, max, last_start, &until)) {
      struct timespec ts;
      pl__deadline_us(&ts, until);
      pthread_cond_timedwait(&s->wake, &s->mu, &ts); /* submits do not wake it */
    } else if (s->head) {
      size_t n;
      last_start = pl_mono_us();
      pl_store_req *batch = pl__take(s, max, &n);
      pthread_mutex_unlock(&s->mu);
      pl__run_batch(s, batch, n);
      pl__moved_check(s);
      yield = 0;
      pthread_mutex_lock(&s->mu);
    } else if (s->closing) {
      s->running = 0;
      break;
    } else {
      struct timespec ts;
      uint64_t wake = pl__unreserved(s) && s->next_probe < next_sweep ? s->next_probe : next_sweep;
      pl__deadline(&ts, relays && next_relay < wake ? next_relay : wake);
      s->idle = 1;
      pthread_cond_timedwait(&s->wake, &s->mu, &ts);
      s->idle = 0;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ---- public calls -------------------------------------------------------- */

static void pl__sync_init(pl_store *s) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  /* Timed waits on the monotonic clock: a wall-clock jump must not stall
   * or rush the TTL sweep. */
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->wake, &ca);
  pthread_cond_init(&s->called, NULL);
  pthread_condattr_destroy(&ca);
}

static void pl__sync_destroy(pl_store *s) {
  pthread_cond_destroy(&s->called);
  pthread_cond_destroy(&s->wake);
  pthread_mutex_destroy(&s->mu);
}

/* A disk already too full for the reserve: start refusing messages (the
 * probe takes them once there is room); any other failure stops the start. */
static pl_err pl__reserve_open(pl_store *s) {
  pl_err e = pl_reserve_hold(&s->reserve);
  pl__disk_stats(s, 0, 0);
  if (e != PL_ERR_STORAGE_FULL)
    return e;
  pl__disk_full(s);
  return PL_OK;
}

pl_err pl_store_open(pl_store **out, const pl_store_backend *be, const pl_store_config *cfg,
                     const pl_store_hooks *hooks) {
  pl_store *s = pl_calloc(1, sizeof *s);
  int opened = 0;
  *out = NULL;
  pl_hist_init(&s->commit_hist, pl_hist_us_bounds, pl_hist_us_n);
  pl_hist_init(&s->batch_hist, pl_hist_pow2_bounds, pl_hist_pow2_n);
  s->be = be;
  s->cfg = *cfg;
  if (hooks && hooks->online) {
    s->cfg.online = hooks->online;
    s->cfg.online_ud = hooks->ud;
  }
  if (hooks) {
    s->hooks = *hooks;
    s->cfg.rules = hooks->rules;
  }
  pl__sync_init(s);
  pl_reserve_init(&s->reserve, cfg->dir, cfg->disk_reserve);
  pl_err e = be->open(&s->bctx, &s->cfg);
  if (e != PL_OK)
    goto out;
  opened = 1;
  e = pl__reserve_open(s);
  if (e != PL_OK)
    goto out;
  s->running = 1;
  if (pthread_create(&s->thread, NULL, pl__thread, s) != 0) {
    e = PL_ERR_INTERNAL;
    goto out;
  }
  pl_info("store: %s backend open in %s (%s)", be->name, cfg->dir, cfg->durable ? "fsync" : "process");
  *out = s;
  s = NULL;
out:
  if (s) {
    if (opened)
      be->close(s->bctx);
    pl_reserve_free(&s->reserve);
    pl__sync_destroy(s);
    pl_free(s);
  }
  return e;
}

/* Token lifetimes (pl_retention): the oldest last use and issue a token may
 * have to work; the backend keeps the tokens that pass. */
static void pl__token_cutoffs(const pl_store_config *cfg, pl_store_req *req) {
  if (req->op != PL_STORE_RESUME && req->op != PL_STORE_MEDIA_AUTH && req->op != PL_STORE_DEVICES &&
      req->op != PL_STORE_MEDIA_GET)
    return;
  pl_retention_tokens c = pl_retention_token_cuts(cfg->token_idle_ms, cfg->token_max_ms, pl_now_ms());
  req->token_used_after = c.used_after;
  req->token_issued_after = c.issued_after;
}

void pl_store_submit(pl_store *s, pl_store_req *req) {
  if (s->link)
    pl_store__submit_linked(s->link->stores, s->link->n, s->cfg.shardmap, req);
  else
    pl_store__enqueue(s, req);
}

void pl_store_link(pl_store **stores, unsigned n) {
  if (n < 2)
    return;
  pl__link *l = pl_calloc(1, sizeof *l);
  l->stores = pl_malloc(n * sizeof *l->stores);
  memcpy(l->stores, stores, n * sizeof *l->stores);
  l->n = n;
  pthread_mutex_init(&l->post_mu, NULL);
  for (unsigned i = 0; i < n; i++)
    stores[i]->link = l;
}

/* The head of a linked set stands for all of it (stop, close, stats). */
static int pl__is_head(const pl_store *s) { return s->link && s->link->stores[0] == s; }

void pl_store__enqueue(pl_store *s, pl_store_req *req) {
  pl_store_req_out_begin(req);
  req->status = PL_OK;
  req->next = NULL;
  pl__token_cutoffs(&s->cfg, req);
  pthread_mutex_lock(&s->mu);
  /* A hook on the store thread (the push service queueing the
   * notifications of the drain's last commits) may still submit while it
   * drains: the thread runs the queue empty before it exits. */
  if (s->closing && !(s->running && pthread_equal(pthread_self(), s->thread))) {
    pthread_mutex_unlock(&s->mu);
    req->status = PL_ERR_SHUTTING_DOWN;
    pl_store__hand_back(s, req);
    return;
  }
  if (s->tail)
    s->tail->next = req;
  else
    s->head = req;
  s->tail = req;
  s->queued++;
  if (s->idle) /* a busy or pacing thread takes it without a wake-up */
    pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&s->mu);
}

static void pl__call_done(pl_store_req *req) {
  pl__call *c = req->data;
  pl_store *s = c->s;
  pthread_mutex_lock(&s->mu);
  c->finished = 1;
  pthread_cond_broadcast(&s->called);
  pthread_mutex_unlock(&s->mu);
}

pl_err pl_store_call(pl_store *s, pl_store_req *req) {
  pl__call c = {.s = s, .done = req->done, .origin = req->origin, .data = req->data};
  req->done = pl__call_done;
  req->origin = NULL;
  req->data = &c;
  pl_store_submit(s, req);
  pthread_mutex_lock(&s->mu);
  while (!c.finished)
    pthread_cond_wait(&s->called, &s->mu);
  pthread_mutex_unlock(&s->mu);
  req->done = c.done;
  req->origin = c.origin;
  req->data = c.data;
  return req->status;
}

pl_err pl_store_expire_now(pl_store *s, uint64_t now_ms, uint64_t *deleted) {
  pl__sweep w = {.now_ms = now_ms};
  pthread_mutex_lock(&s->mu);
  if (s->closing) {
    w.err = PL_ERR_SHUTTING_DOWN;
    goto out;
  }
  w.next = s->sweeps;
  s->sweeps = &w;
  pthread_cond_signal(&s->wake);
  while (!w.done)
    pthread_cond_wait(&s->called, &s->mu);
out:
  pthread_mutex_unlock(&s->mu);
  if (deleted)
    *deleted = w.deleted;
  return w.err;
}

static void pl__stop_one(pl_store *s);

void pl_store_stop(pl_store *s) {
  pl__stop_one(s);
  /* then the other shards: shard 0's last commits may still submit to them */
  for (unsigned i = 1; pl__is_head(s) && i < s->link->n; i++)
    pl__stop_one(s->link->stores[i]);
}

static void pl__stop_one(pl_store *s) {
  pthread_mutex_lock(&s->mu);
  int was = s->closing;
  s->closing = 1;
  pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&s->mu);
  if (was)
    return;
  pthread_join(s->thread, NULL);
  pthread_mutex_lock(&s->mu); /* pl_store_get_stats asks the backend under it */
  void *bctx = s->bctx;
  s->bctx = NULL;
  pthread_mutex_unlock(&s->mu);
  s->be->close(bctx);
  pl_info("store: closed (%llu requests in %llu commits)", (unsigned long long)s->stats.requests,
          (unsigned long long)s->stats.commits);
}

static void pl__free_one(pl_store *s) {
  pl_reserve_free(&s->reserve);
  pl__sync_destroy(s);
  pl_free(s);
}

void pl_store_close(pl_store *s) {
  if (!s)
    return;
  pl_store_stop(s);
  pl__link *l = pl__is_head(s) ? s->link : NULL;
  if (l) {
    for (unsigned i = 1; i < l->n; i++)
      pl__free_one(l->stores[i]);
    pthread_mutex_destroy(&l->post_mu);
    pl_free(l->stores);
    pl_free(l);
  }
  pl__free_one(s);
}

int pl_store_queue_exact(const pl_store *s) { return s && s->be->queue_exact; }

pl_err pl_store_backup(pl_store *s, const char *to, uint64_t *bytes) {
  *bytes = 0;
  return s->be->backup ? s->be->backup(s->cfg.dir, to, bytes) : PL_ERR_CONFIG;
}

const char *pl_store_backup_instead(const pl_store *s) {
  return s->be->backup ? NULL : s->be->backup_instead ? s->be->backup_instead : "this store makes no backups";
}

void pl_store_get_seal_stats(pl_store *s, pl_store_seal_stats *st) {
  memset(st, 0, sizeof *st);
  pthread_mutex_lock(&s->mu); /* the backend is closed under it */
  if (s->be->seal_stats && s->bctx)
    s->be->seal_stats(s->bctx, st);
  pthread_mutex_unlock(&s->mu);
}

static void pl__stats_one(pl_store *s, pl_store_stats *st);

/* A linked set's: the counters summed over its shards; the histograms,
 * disk and failure state are shard 0's, backend_down any shard's. */
void pl_store_get_stats(pl_store *s, pl_store_stats *st) {
  pl__stats_one(s, st);
  for (unsigned i = 1; pl__is_head(s) && i < s->link->n; i++) {
    pl_store_stats o;
    pl__stats_one(s->link->stores[i], &o);
    st->commits += o.commits;
    st->requests += o.requests;
    st->messages += o.messages;
    st->fails += o.fails;
    st->commit_us_total += o.commit_us_total;
    st->queued += o.queued;
    st->retries += o.retries;
    st->splits += o.splits;
    st->fenced += o.fenced;
    st->round_trips += o.round_trips;
    st->relay_copies += o.relay_copies;
    st->relay_swept += o.relay_swept;
    st->backend_down |= o.backend_down;
    st->write_failing |= o.write_failing;
  }
}

static void pl__stats_one(pl_store *s, pl_store_stats *st) {
  pthread_mutex_lock(&s->mu);
  *st = s->stats;
  st->queued = s->queued;
  st->backend_down = s->be->down && s->bctx ? s->be->down(s->bctx) : 0;
  st->round_trips = s->be->round_trips && s->bctx ? s->be->round_trips(s->bctx) : 0;
  st->fenced = (s->be->fenced && s->bctx ? s->be->fenced(s->bctx) : 0) + s->rerouted;
  st->relay_copies = st->relay_swept = 0;
  if (s->be->relayed && s->bctx)
    s->be->relayed(s->bctx, &st->relay_copies, &st->relay_swept);
  pthread_mutex_unlock(&s->mu);
  st->disk_needed = pl_reserve_needed(&s->reserve);
  st->commit_hist = &s->commit_hist;
  st->batch_hist = &s->batch_hist;
}
