/* pg_batch: the batch pipeline of the PostgreSQL backend. A run of plain
 * 1:1 sends in a batch costs three round trips whatever its length (see
 * docs/architecture.md, "PostgreSQL backend"):
 *
 *   1. reads (with the transaction's BEGIN): each send's dedup record, its
 *      peer and its sender, the queue lengths of both users' devices; on a
 *      sharded store, a user homed on another shard is read there, through
 *      the link to that shard (pl_pg_link), sent before this round trip is
 *      waited for, so the two overlap;
 *   2. the conversations' rows locked (SELECT ... FOR UPDATE: their last
 *      seq and time) in conv order, the target devices' rows in id order
 *      (the same order on every node: no deadlock between runs), then
 *      their timers (read after the locks, so a timer
 *      another node set and committed meanwhile is seen), and an expired
 *      dedup record the sweep has not reached deleted;
 *   3. one self-contained statement per send (the conversation's new seq,
 *      the dedup record, both read watermarks, the message, its row in the
 *      action targets' index, its queue rows with each device's next qid),
 *      then COMMIT (pl__pg_commit) in the same round trip; a send to a
 *      user of another shard also writes its outbox row in it, and the
 *      copy follows the commit (pg_relay.c).
 *
 * Between 2 and 3 the rules decide in C as on the per-request path
 * (pg_conv.c): pl_privacy, pl_conv, pl_acts, pl_retention, the queue
 * limits. The seq and time each send takes are computed here from the
 * locked row, in request order: two sends of a run to one conversation get
 * consecutive seqs. A new conversation's row is INSERTed without ON
 * CONFLICT: another node creating it meanwhile makes 23505, the batch runs
 * again and then finds the row. Likewise the dedup record: an id another
 * node committed meanwhile fails the insert, and the batch's next run finds
 * the record (a duplicate). Anything else (groups, attachments, message
 * actions but a plain reply or forward) runs on the per-request path. */
#include "../../rules/pl_acts.h"
#include "../../rules/pl_conv.h"
#include "../../rules/pl_privacy.h"
#include "../pl_store_valid.h"
#include "pg_internal.h"

/* Sends per run: the pipeline's buffers stay small (a longer run is cut). */
#define PL__RUN_MAX 128u

/* A send of the run. */
typedef struct pl__fs {
  pl_store_req *r;
  pl_pg_user *me, *peer;
  PGresult *lens;      /* (device, queued) of both users' devices; NULL: no limit */
  PGresult *lens2;     /* across shards: those of the other shard's user */
  int other;           /* across shards (docs/scaling.md 2): the other user's shard; -1: none */
  int at[5];           /* the reads' indexes (PL__AT_*; -1: none) */
  unsigned char there; /* bit k: read k is in the other shard's pipe */
  int failed;          /* the other shard could not be read: a retryable error */
  int live, expired;   /* its dedup record: live (a duplicate), or expired (replaced) */
  int go;              /* it writes */
  struct pl__fs *twin; /* an earlier send of the run with the same device and id */
  int wres;            /* go: its statement's index in the pending pipe */
  uint32_t timer_s;
} pl__fs;

struct pl_pg_batch {
  pl__fs *fs;
  size_t n, cap;
  pl_pg_pipe w; /* the writes sent, not yet read */
  int pending;
};

/* The conversation's row (locked, or new), then one statement for the
 * rest; queue rows (device_id, qid, mid) come back. $1 conv, $2 seq,
 * $3 server_ts, $4 device, $5 client id, $6 vanish, $7 sender, $8 peer,
 * $9 from, $10 from_device, $11 body, $12 client_ts, $13 expires, $14 refs,
 * $15 act, $16 targets, $17 indexed (a plain message), $18 any targets,
 * $19 the sender lives on this shard (its read watermark is here; across
 * shards the peer's row is made here only if the peer lives here: $8 is
 * then the sender's own id, which READS_PEER skips). */
#define PL__READ_MINE " r AS (" PL_PG_READS_MINE_IF("$7::bigint", "$1", "$2::bigint", "$19::int = 1") "),"
#define PL__READ_PEER " rp AS (" PL_PG_READS_PEER("$7::bigint", "$8::bigint", "$1") "),"
#define PL__MESSAGE                                                                                        \
  " m AS (INSERT INTO messages(conv, seq, sender_uid, from_name, from_device, client_id, body, client_ts," \
  " server_ts, expires, refs, act) SELECT $1, $2, $7, $9, $10, $5, $11, $12, $3, $13, $14, $15"            \
  " WHERE $18::int = 1 RETURNING mid),"
#define PL__INDEX                                                                                         \
  " x AS (" PL_PG_ACTS_INDEX("$1", "$2::bigint", "COALESCE((SELECT mid FROM m), 0)", "$7::bigint",        \
                             "$3::bigint", "$13::bigint") " WHERE $17::int = 1" PL_PG_ACTS_INDEX_CONFLICT \
                                                          "), "
#define PL__WRITE(convs)                                                                                 \
  "WITH c AS (" convs "),"                                                                               \
  " d AS (INSERT INTO dedup(device_id, client_id, conv, seq, server_ts, vanish)"                         \
  " VALUES($4, $5, $1, $2, $3, $6))," PL__READ_MINE PL__READ_PEER PL__MESSAGE PL__INDEX PL_PG_QUEUE_PUT( \
      "$16", "(SELECT mid FROM m)")

/* The pipeline's statements, prepared on each connection (pl_pg_batch_stmts). */
enum {
  PL__DEDUP,
  PL__PEER,
  PL__ME,
  PL__LENS,
  PL__LOCK,
  PL__DEVLOCK,
  PL__TIMER,
  PL__UNDEDUP,
  PL__WNEW,
  PL__WNEXT,
  PL__NSTMTS
};
static const pl_pg_stmt pl__st[PL__NSTMTS] = {
    [PL__DEDUP] = {"pl_b_dedup", "SELECT conv, seq, server_ts, vanish, (server_ts > $3)::int FROM dedup"
                                 " WHERE device_id = $1 AND client_id = $2"},
    [PL__PEER] = {"pl_b_peer", PL_PG_USER_SQL("u.name = $1")},
    [PL__ME] = {"pl_b_me", PL_PG_USER_SQL("u.id = $1")},
    [PL__LENS] = {"pl_b_lens",
                  "SELECT d.id, " PL_PG_QUEUED("d") " FROM devices d JOIN users u ON u.id = d.user_id"
                                                    " WHERE u.name = $1 OR u.id = $2"},
    [PL__LOCK] = {"pl_b_lock", "SELECT last_seq, last_ts FROM convs WHERE conv = $1 FOR UPDATE"},
    [PL__DEVLOCK] = {"pl_b_devlock",
                     "SELECT 1 FROM devices WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE"},
    [PL__TIMER] = {"pl_b_timer", PL_PG_ACTS_TIMER_SQL("$1")},
    [PL__UNDEDUP] = {"pl_b_undedup",
                     "DELETE FROM dedup WHERE device_id = $1 AND client_id = $2 AND server_ts <= $3"},
    [PL__WNEW] = {"pl_b_wnew", PL__WRITE("INSERT INTO convs(conv, last_seq, last_ts) VALUES($1, $2, $3)")},
    [PL__WNEXT] = {"pl_b_wnext", PL__WRITE("UPDATE convs SET last_seq = $2, last_ts = $3 WHERE conv = $1")},
};

const pl_pg_stmt *pl_pg_batch_stmts(size_t *n) {
  *n = PL__NSTMTS;
  return pl__st;
}

int pl_pg_batch_fits(const pl__pg *g, const pl_store_req *r) {
  (void)g;
  if (r->op != PL_STORE_SEND || r->u.send.in.group || !pl_store_req_valid(r))
    return 0;
  return pl_store_send_plain(r) && r->u.send.in.body_len <= PL_PG_MAX_BODY;
}

int pl_pg_batch_pending(const pl__pg *g) { return g->batch && g->batch->pending; }

static void pl__fs_free(pl__fs *f) {
  pl_pg_user_free(f->me);
  pl_pg_user_free(f->peer);
  PQclear(f->lens);
  PQclear(f->lens2);
  f->me = f->peer = NULL;
  f->lens = f->lens2 = NULL;
}

static void pl__run_clear(struct pl_pg_batch *b) {
  for (size_t i = 0; i < b->n; i++)
    pl__fs_free(&b->fs[i]);
  b->n = 0;
}

pl_err pl_pg_batch_add(pl__pg *g, pl_store_req *r) {
  if (!g->batch)
    g->batch = pl_calloc(1, sizeof *g->batch);
  struct pl_pg_batch *b = g->batch;
  pl_err e = PL_OK;
  if (b->n == PL__RUN_MAX) { /* the run so far, its writes read */
    e = pl_pg_batch_run(g);
    if (e == PL_OK && b->pending)
      e = pl_pg_batch_sync(g, 0);
  }
  b->fs = pl_pg_reserve(b->fs, b->n, &b->cap, sizeof *b->fs);
  memset(&b->fs[b->n], 0, sizeof b->fs[b->n]);
  b->fs[b->n++].r = r;
  return e;
}

/* ---- 1: the reads ------------------------------------------------------------ */

/* A send between users of two shards (docs/scaling.md 2) runs here, on
 * the conversation's shard (pl_store_shard.c): f->other is the shard of
 * the user who lives elsewhere, whose rows are read there (-1: both here). */
static void pl__where(const pl__pg *g, pl__fs *f) {
  f->other = -1;
  if (g->nshards < 2)
    return;
  unsigned me = pl_pg_shard_of_id(g, f->r->user_id), peer = pl_pg_shard_of_name(g, f->r->u.send.in.peer);
  if (me != g->shard && peer == g->shard)
    f->other = (int)me;
  else if (peer != g->shard && me == g->shard)
    f->other = (int)peer;
}

enum { PL__AT_DEDUP, PL__AT_PEER, PL__AT_ME, PL__AT_LENS, PL__AT_LENS2 };

static void pl__at(pl__fs *f, int k, pl_pg_pipe *p, int there, const pl_pg_stmt *st, const char *fmt,
                   const pl_store_req *r) {
  if (there)
    f->there |= (unsigned char)(1u << k);
  if (fmt[0] == 's' && fmt[1] == 'u')
    f->at[k] = pl_pg_pipe_addp(p, st, fmt, r->u.send.in.peer, r->user_id);
  else if (fmt[0] == 's')
    f->at[k] = pl_pg_pipe_addp(p, st, fmt, r->u.send.in.peer);
  else
    f->at[k] = pl_pg_pipe_addp(p, st, fmt, r->user_id);
}

/* The reads of one send into the pipes: here (p), or the other shard's (o). */
static void pl__reads_add(pl__pg *g, pl__fs *f, pl_pg_pipe *p, pl_pg_pipe *o, uint64_t cut) {
  const pl_store_req *r = f->r;
  int peer_there = f->other >= 0 && pl_pg_shard_of_name(g, r->u.send.in.peer) != g->shard;
  int me_there = f->other >= 0 && !peer_there;
  memset(f->at, -1, sizeof f->at);
  f->at[PL__AT_DEDUP] =
      pl_pg_pipe_addp(p, &pl__st[PL__DEDUP], "usu", r->device_id, r->u.send.in.client_id, cut);
  pl__at(f, PL__AT_PEER, peer_there ? o : p, peer_there, &pl__st[PL__PEER], "s", r);
  pl__at(f, PL__AT_ME, me_there ? o : p, me_there, &pl__st[PL__ME], "u", r);
  if (pl_pg_queue_limited(g)) { /* each shard's lengths of its own user's devices */
    pl__at(f, PL__AT_LENS, p, 0, &pl__st[PL__LENS], "su", r);
    if (f->other >= 0)
      pl__at(f, PL__AT_LENS2, o, 1, &pl__st[PL__LENS], "su", r);
  }
}

/* Read k of f's, taken over (NULL: none). */
static PGresult *pl__take(pl__fs *f, int k, pl_pg_pipe *p, pl_pg_pipe *o) {
  if (f->at[k] < 0)
    return NULL;
  pl_pg_pipe *in = f->there & (1u << k) ? o : p;
  PGresult *res = in->res[f->at[k]];
  in->res[f->at[k]] = NULL;
  return res;
}

/* One send's reads taken from the pipes' results. */
static void pl__reads_take(pl__fs *f, pl_pg_pipe *p, pl_pg_pipe *o) {
  PGresult *d = p->res[f->at[PL__AT_DEDUP]];
  if (PQntuples(d) > 0 && pl_pg_col_int(d, 0, 4)) {
    pl_store_send_req *s = &f->r->u.send;
    f->live = 1;
    s->out.conv = pl_pg_col_str(d, 0, 0);
    s->out.seq = pl_pg_col_u64(d, 0, 1);
    s->out.server_ts = pl_pg_col_u64(d, 0, 2);
    s->out.vanish_at = pl_pg_col_u64(d, 0, 3);
    s->out.duplicate = 1;
    return;
  }
  f->expired = PQntuples(d) > 0;
  pl_pg_user_load(pl__take(f, PL__AT_PEER, p, o), PL_OK, &f->peer);
  pl_pg_user_load(pl__take(f, PL__AT_ME, p, o), PL_OK, &f->me);
  f->lens = pl__take(f, PL__AT_LENS, p, o);
  f->lens2 = pl__take(f, PL__AT_LENS2, p, o);
}

/* The run's reads: one round trip here, and one to each other shard its
 * sends' other users live on (after this one's). A shard that cannot be
 * read fails only the sends that needed it, with a retryable error. */
static pl_err pl__reads(pl__pg *g, struct pl_pg_batch *b) {
  uint64_t cut = pl_retention_dedup_cut(g->ttl_ms, pl_now_ms());
  unsigned k = g->nshards > 1 ? g->nshards : 1;
  pl_pg_pipe p, *o = pl_calloc(k, sizeof *o);
  pl_err *oe = pl_calloc(k, sizeof *oe);
  pl_pg_pipe_begin(&p, g);
  for (size_t i = 0; i < b->n; i++) {
    pl__fs *f = &b->fs[i];
    pl__where(g, f);
    pl__pg *l = f->other >= 0 ? pl_pg_link(g, (unsigned)f->other) : NULL;
    if (f->other >= 0 && !l) {
      f->failed = 1;
      continue;
    }
    if (l && !o[f->other].g)
      pl_pg_pipe_begin(&o[f->other], l);
    pl__reads_add(g, f, &p, f->other >= 0 ? &o[f->other] : NULL, cut);
  }
  for (unsigned j = 0; j < k; j++) /* the other shards' reads sent first: they overlap ours */
    if (o[j].g)
      pl_pg_pipe_send(&o[j]);
  pl_err e = pl_pg_pipe_end(&p);
  for (unsigned j = 0; j < k; j++)
    oe[j] = o[j].g ? pl_pg_pipe_end(&o[j]) : PL_OK;
  for (size_t i = 0; e == PL_OK && i < b->n; i++) {
    pl__fs *f = &b->fs[i];
    if (!f->failed && f->other >= 0 && oe[f->other] != PL_OK)
      f->failed = 1;
    if (f->failed) {
      pl_store_req_clear(f->r);
      f->r->status = PL_ERR_STORE; /* retryable (INTERNAL): the other shard is away */
      continue;
    }
    pl__reads_take(f, &p, f->other >= 0 ? &o[f->other] : NULL);
  }
  pl_pg_pipe_clear(&p);
  for (unsigned j = 0; j < k; j++)
    if (o[j].g)
      pl_pg_pipe_clear(&o[j]);
  pl_free(o);
  pl_free(oe);
  return e;
}

/* ---- the rules, before anything is locked ------------------------------------ */

/* The earlier send of the run (writing) with f's device and id: f is its
 * duplicate (the client sent it twice before the first was answered). */
static pl__fs *pl__twin(struct pl_pg_batch *b, const pl__fs *f) {
  for (pl__fs *o = b->fs; o < f; o++)
    if (o->go && o->r->device_id == f->r->device_id &&
        !strcmp(o->r->u.send.in.client_id, f->r->u.send.in.client_id))
      return o;
  return NULL;
}

/* f's targets' queue lengths: as read, plus the earlier sends of the run
 * that queue for the same devices (not yet written when they were read);
 * *mine: those of the same sender (its share of each queue). */
static uint64_t *pl__lens(struct pl_pg_batch *b, const pl__fs *f, uint64_t **mine) {
  const uint64_t *t = f->r->u.send.out.targets;
  size_t n = f->r->u.send.out.ntargets;
  uint64_t *lens = pl_pg_queue_qids(f->lens, t, n); /* (device, length) rows, like (device, qid) */
  if (f->lens2) { /* the other shard's devices: each device is in one of the two */
    uint64_t *there = pl_pg_queue_qids(f->lens2, t, n);
    for (size_t i = 0; i < n; i++)
      lens[i] += there[i];
    pl_free(there);
  }
  *mine = pl_calloc(n + 1, sizeof **mine);
  for (const pl__fs *o = b->fs; o < f; o++)
    for (size_t j = 0; o->go && j < o->r->u.send.out.ntargets; j++)
      for (size_t i = 0; i < n; i++)
        if (o->r->u.send.out.targets[j] == t[i]) {
          lens[i]++;
          (*mine)[i] += o->r->user_id == f->r->user_id;
        }
  return lens;
}

/* Keeps the devices of this shard among t[n]; returns how many. */
static size_t pl__here(const pl__pg *g, uint64_t *t, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (pl_pg_shard_of_id(g, t[i]) == g->shard)
      t[k++] = t[i];
  return k;
}

/* As pl__send_dm (pg_conv.c) up to the seq: who may send, to which
 * devices, whether their queues take it. */
static pl_err pl__decide(pl__pg *g, struct pl_pg_batch *b, pl__fs *f) {
  pl_store_req *r = f->r;
  const pl_pg_user *me = f->me, *peer = f->peer;
  int full = 0;
  if ((f->twin = pl__twin(b, f)) != NULL)
    return PL_OK;
  r->status = pl_privacy_peer(peer != NULL, me != NULL, peer && me && peer->id == me->id, 1);
  if (r->status == PL_OK)
    r->status = pl_privacy_may_send(pl_pg_user_blocks(peer, me->id)); /* refused: nothing stored */
  if (r->status != PL_OK)
    return PL_OK;
  uint64_t *t = pl_malloc((peer->ndevs + me->ndevs + 1) * sizeof *t);
  r->u.send.out.targets = t;
  r->u.send.out.ntargets =
      pl_conv_dm_targets(peer->devs, peer->ndevs, me->devs, me->ndevs, peer->id == me->id, r->device_id, t);
  pl_err e = PL_OK;
  if (f->lens && r->u.send.out.ntargets) {
    uint64_t *mine, *lens = pl__lens(b, f, &mine);
    e = pl_pg_queue_admit(g, me, t, lens, mine, r->u.send.out.ntargets, &full);
    pl_free(lens);
    pl_free(mine);
  }
  if (e == PL_OK && full) {
    pl_store_req_clear(r);
    r->status = PL_ERR_QUEUE_FULL;
    return PL_OK;
  }
  r->u.send.out.conv = pl_conv_dm(me->name, peer->name);
  if (f->other >= 0) /* the other shard's devices get the copy (T2, pg_relay.c) */
    r->u.send.out.ntargets = pl__here(g, t, r->u.send.out.ntargets);
  f->go = e == PL_OK;
  return e;
}

/* ---- 2: the locks and timers ------------------------------------------------- */

typedef struct pl__conv {
  const char *conv;
  uint64_t seq, ts;
  int exists; /* a row to UPDATE (else: INSERT it) */
} pl__conv;

/* A writing send of the run, to sort by conversation. */
typedef struct pl__lockee {
  const char *conv;
  size_t i;
} pl__lockee;

static int pl__by_conv(const void *a, const void *b) {
  const pl__lockee *x = a, *y = b;
  int c = strcmp(x->conv, y->conv);
  return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* Every target device of the run's writing sends, as a bigint[] literal. */
static char *pl__run_devices(const struct pl_pg_batch *b) {
  size_t n = 0, cap = 0;
  uint64_t *all = NULL;
  for (size_t i = 0; i < b->n; i++)
    for (size_t j = 0; b->fs[i].go && j < b->fs[i].r->u.send.out.ntargets; j++) {
      all = pl_pg_reserve(all, n, &cap, sizeof *all);
      all[n++] = b->fs[i].r->u.send.out.targets[j];
    }
  char *arr = pl_pg_array(all, n);
  pl_free(all);
  return arr;
}

/* The run's row locks, all taken here and in one order on every node:
 * the conversations' rows by conv, then the target devices' rows by id
 * (the writes' next_qid then finds them held). Taken one send at a time,
 * as the writes reach them, two nodes' runs met each other's rows in
 * opposite orders and deadlocked, each wait lasting deadlock_timeout
 * (docs/benchmarks.md, "Deadlocks between nodes"). */
static pl_err pl__locks(pl__pg *g, struct pl_pg_batch *b, pl__conv *cv) {
  pl_pg_pipe p;
  uint64_t cut = pl_retention_dedup_cut(g->ttl_ms, pl_now_ms());
  size_t ngo = 0, *at = pl_malloc((b->n + 1) * sizeof *at);
  pl__lockee *order = pl_malloc((b->n + 1) * sizeof *order);
  for (size_t i = 0; i < b->n; i++)
    if (b->fs[i].go)
      order[ngo++] = (pl__lockee){b->fs[i].r->u.send.out.conv, i};
  qsort(order, ngo, sizeof *order, pl__by_conv);
  pl_pg_pipe_begin(&p, g);
  for (size_t k = 0; k < ngo; k++)
    at[order[k].i] = (size_t)pl_pg_pipe_addp(&p, &pl__st[PL__LOCK], "s", order[k].conv);
  char *devs = pl__run_devices(b);
  pl_pg_pipe_addp(&p, &pl__st[PL__DEVLOCK], "s", devs);
  pl_free(devs);
  /* after every lock: a timer committed before them is seen */
  for (size_t i = 0; i < b->n; i++)
    if (b->fs[i].go)
      pl_pg_pipe_addp(&p, &pl__st[PL__TIMER], "s", b->fs[i].r->u.send.out.conv);
  for (size_t i = 0; i < b->n; i++)
    if (b->fs[i].go && b->fs[i].expired)
      pl_pg_pipe_addp(&p, &pl__st[PL__UNDEDUP], "usu", b->fs[i].r->device_id, b->fs[i].r->u.send.in.client_id,
                      cut);
  pl_err e = pl_pg_pipe_end(&p);
  size_t k = 0;
  for (size_t i = 0; e == PL_OK && i < b->n; i++) {
    pl__fs *f = &b->fs[i];
    if (!f->go)
      continue;
    const PGresult *l = p.res[at[i]];
    cv[i].conv = f->r->u.send.out.conv;
    cv[i].exists = PQntuples(l) > 0;
    cv[i].seq = cv[i].exists ? pl_pg_col_u64(l, 0, 0) : 0;
    cv[i].ts = cv[i].exists ? pl_pg_col_u64(l, 0, 1) : 0;
    f->timer_s = (uint32_t)pl_pg_col_u64(p.res[ngo + 1 + k], 0, 0);
    k++;
  }
  pl_pg_pipe_clear(&p);
  pl_free(order);
  pl_free(at);
  return e;
}

/* ---- 3: the writes ----------------------------------------------------------- */

/* The seq and time f takes (after the conversation's last, in request
 * order), its message as sent, and its statement into the pipe. */
static void pl__write(pl__pg *g, struct pl_pg_batch *b, pl__fs *f, pl__conv *c, uint64_t now) {
  pl_store_req *r = f->r;
  pl_store_send_req *s = &r->u.send;
  const pl_act *a = s->in.act;
  uint64_t expires = 0;
  pl_err st = pl_acts_may_reply(a ? a->reply_to : 0, c->seq);
  if (st != PL_OK) { /* refused: nothing is written */
    pl_store_req_clear(r);
    r->status = st;
    f->go = 0;
    return;
  }
  int fresh = !c->exists;
  c->exists = 1;
  c->seq++;
  c->ts = c->ts > now ? c->ts : now; /* never back in a conversation */
  s->out.seq = c->seq;
  s->out.server_ts = c->ts;
  pl_store_send_fill_msg(r, f->me->name);
  pl_pg_acts_stamp(g, r, f->timer_s, &expires);
  const pl_msg *m = &s->out.msg;
  char *arr = pl_pg_array(s->out.targets, s->out.ntargets);
  const pl_pg_user *there = NULL; /* across shards: the user of the other shard */
  if (f->other >= 0)
    there = pl_pg_shard_of_id(g, f->peer->id) != g->shard ? f->peer : f->me;
  f->wres = pl_pg_pipe_addp(&b->w, &pl__st[fresh ? PL__WNEW : PL__WNEXT], "suuusuuussbuuubsiii", m->conv,
                            m->seq, m->server_ts, r->device_id, m->id, pl_pg_clamp(s->out.vanish_at),
                            r->user_id, there == f->peer ? f->me->id : f->peer->id, m->from, m->from_device,
                            (const void *)m->body, m->body_len, m->client_ts, pl_pg_clamp(expires),
                            pl_retention_msg_refs(s->out.ntargets), (const void *)m->act, m->act_len, arr,
                            pl_pg_acts_indexed(r), s->out.ntargets > 0, there != f->me);
  pl_free(arr);
  if (there) /* T1's outbox row, in the same transaction */
    pl_pg_relay_add(g, &b->w, r, (unsigned)f->other, there->id, expires);
}

pl_err pl_pg_batch_run(pl__pg *g) {
  struct pl_pg_batch *b = g->batch;
  if (!b || !b->n)
    return PL_OK;
  pl__conv *cv = pl_calloc(b->n, sizeof *cv);
  int ngo = 0;
  pl_err e = pl__reads(g, b);
  for (size_t i = 0; e == PL_OK && i < b->n; i++)
    if (!b->fs[i].live && !b->fs[i].failed) {
      e = pl__decide(g, b, &b->fs[i]);
      ngo += b->fs[i].go;
    }
  if (e == PL_OK && ngo)
    e = pl__locks(g, b, cv);
  if (e == PL_OK && ngo) {
    uint64_t now = pl_now_ms();
    pl_pg_pipe_begin(&b->w, g);
    for (size_t i = 0; i < b->n; i++) {
      if (!b->fs[i].go)
        continue;
      /* a conversation's counter goes on from the run's last send to it */
      for (size_t j = i; j-- > 0;)
        if (cv[j].conv && !strcmp(cv[j].conv, cv[i].conv)) {
          cv[i] = cv[j];
          break;
        }
      pl__write(g, b, &b->fs[i], &cv[i], now);
    }
    b->pending = 1;
    e = b->w.err;
  }
  pl_free(cv);
  if (!b->pending) /* nothing to write: the run is done */
    e = e == PL_OK ? pl_pg_batch_sync(g, 0) : e;
  return e;
}

/* A twin's answer is its first's, as a retry's would be. */
static void pl__twin_out(pl__fs *f) {
  pl_store_send_req *s = &f->r->u.send, *o = &f->twin->r->u.send;
  if (f->twin->r->status != PL_OK) {
    f->r->status = f->twin->r->status;
    return;
  }
  s->out.conv = pl_strdup(o->out.conv);
  s->out.seq = o->out.seq;
  s->out.server_ts = o->out.server_ts;
  s->out.vanish_at = o->out.vanish_at;
  s->out.duplicate = 1;
}

pl_err pl_pg_batch_sync(pl__pg *g, int commit) {
  struct pl_pg_batch *b = g->batch;
  pl_err e = PL_OK;
  if (b && b->pending) {
    int ci = commit ? pl_pg_pipe_add(&b->w, "COMMIT", NULL) : -1;
    e = pl_pg_pipe_end(&b->w);
    b->pending = 0;
    /* COMMIT of an aborted transaction answers ROLLBACK, not an error */
    if (e == PL_OK && ci >= 0 && strcmp(PQcmdStatus(b->w.res[ci]), "COMMIT") != 0)
      e = PL_ERR_STORE;
    for (size_t i = 0; e == PL_OK && i < b->n; i++) {
      pl__fs *f = &b->fs[i];
      if (!f->go)
        continue;
      pl_store_send_req *s = &f->r->u.send;
      s->out.qids = pl_pg_queue_qids(b->w.res[f->wres], s->out.targets, s->out.ntargets);
      if (s->out.ntargets)
        s->out.msg.qid = s->out.qids[0];
    }
    pl_pg_pipe_clear(&b->w);
  } else if (commit) {
    e = PL_ERR_STORE; /* (pl__pg_commit asks only with writes pending) */
  }
  for (size_t i = 0; e == PL_OK && b && i < b->n; i++)
    if (b->fs[i].twin)
      pl__twin_out(&b->fs[i]);
  if (b)
    pl__run_clear(b);
  return e;
}

void pl_pg_batch_drop(pl__pg *g) {
  struct pl_pg_batch *b = g->batch;
  if (!b)
    return;
  if (b->pending) /* read (and drop) what the writes answered */
    pl_pg_pipe_end(&b->w);
  pl_pg_pipe_clear(&b->w);
  b->pending = 0;
  pl__run_clear(b);
}

void pl_pg_batch_free(pl__pg *g) {
  pl_pg_batch_drop(g);
  if (g->batch)
    pl_free(g->batch->fs);
  pl_free(g->batch);
  g->batch = NULL;
}
