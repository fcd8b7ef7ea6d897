/* pg_internal.h: what the files of the PostgreSQL store backend
 * (src/store/pg/) share: the backend's struct, the query helpers, and the
 * functions one file calls in another (pl_pg_<family>_..., after their home
 * file). Nothing outside this folder includes it; the backend's one public
 * name is pl_store_pg (pl_store.h).
 *
 * Several parleyd may run on one database, so nothing a transaction decides
 * from is cached between transactions: every counter is read and moved under
 * the database's row locks, in the transaction that uses it
 * (docs/architecture.md, "The PostgreSQL backend"):
 *   - a conversation's seq: INSERT INTO convs ... ON CONFLICT DO UPDATE SET
 *     last_seq = convs.last_seq + 1 RETURNING (the row lock orders senders
 *     of one conversation; other conversations do not wait);
 *   - a device's queue position: UPDATE devices SET next_qid = next_qid + 1
 *     RETURNING, so each device's qids are gap-free and rise in its commit
 *     order (the backend is queue_exact);
 *   - dedup: a row per (device_id, client_id), its primary key; a retry
 *     that races its first attempt on another node meets the key and the
 *     batch runs again, then finds the record.
 *
 * Schema (pg_schema.c; versioned migrations under pg_advisory_lock):
 *   users, devices (next_qid), convs, messages (mid: the message; refs =
 *   queue rows pointing at it), queue (device_id, qid) -> mid, dedup,
 *   reads, contacts, blocks, groups, members, gcursor, greads, media,
 *   media_grants, blobs and blob_chunks (the media bytes, pl_blob_pg),
 *   push_tokens, push_pending;
 *   msgidx, conv_timers (message actions, pg_acts.c). */
#ifndef PL_PG_INTERNAL_H
#define PL_PG_INTERNAL_H

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/pl_log.h"
#include "../../common/pl_mem.h"
#include "../../common/pl_time.h"
#include "../../rules/pl_retention.h"
#include "../pl_store.h"

#define PL_PG_FETCH_DEFAULT 256u
#define PL_PG_FETCH_BYTES (1u << 20)
/* As on SQLite: far above any configurable message, refused alone. */
#define PL_PG_MAX_BODY (256u << 20)

typedef struct pl__pg {
  PGconn *conn;
  char *conninfo;
  uint64_t ttl_ms, media_ttl_ms;
  pl_acts_cfg acts; /* edit and delete windows, the disappearing test setting */
  uint32_t max_devices, max_queue, max_group, group_detail;
  pl_store_rules rules;
  int (*online)(void *ud, uint64_t device);
  void *online_ud;
  atomic_int down;                  /* the connection is lost (read by /healthz from other threads) */
  uint64_t retry_at_ms;             /* while down: the next reconnect attempt */
  uint32_t backoff_ms;              /* the wait after the next failed attempt */
  atomic_uint_fast64_t round_trips; /* round trips: a statement, or a pipeline's sync */
  atomic_uint_fast64_t fenced;      /* statements a move's fence refused (PLMAP) */
  atomic_uint_fast64_t copies;      /* outbox rows copied to other shards (pg_relay.c) ... */
  atomic_uint_fast64_t swept;       /* ... of them by the sweep */
  int begin_pending;                /* BEGIN is owed: it goes with the next statement or pipe */
  struct pl_pg_batch *batch;        /* the batch pipeline's state (pg_batch.c), NULL: none yet */
  unsigned shard, nshards;          /* this database's place in a sharded store (0 of 1: none) */
  int bucketed;                     /* new ids carry their bucket (shard_info.bucketed): it can grow */
  /* Sharded: a connection of this store's own to each other shard
   * ([nshards], NULL at shard; connected at first use, pl_pg_link), and
   * the run's sends whose copies go there after the commit (pg_relay.c). */
  struct pl__pg **links;
  int is_link; /* this is one of them */
  struct pl_pg_relay *relay;
  uint64_t gtrim_after; /* the sweep's trimming goes on after this gid (pg_gtrim.c) */
  /* Sharded: the node's bucket map (pl_shardmap.h; NULL unsharded), the
   * epoch this session last told its database (the parley.epoch setting
   * the fence compares, pg_map.c), and whether the database refused a
   * write for an older map (SQLSTATE PLMAP): the map is read again before
   * the next statement outside a transaction. */
  struct pl_shardmap *map;
  uint64_t epoch_told;
  uint64_t map_checked_ms; /* when this session last read its database's epoch (pl_mono_ms) */
  uint64_t map_refused;    /* the epoch of a map naming shards this node lacks (said once) */
  int map_stale;
  /* Between a store transaction's begin and its end: the epoch told at
   * begin stays (pl_pg_map_sync does nothing), since the store checked its
   * requests' routes against the map as it was then (pl_store.c,
   * pl__reroute); told a newer one before the transaction's first
   * statement, a request routed by the older map would pass the fence. */
  int epoch_held;
} pl__pg;

/* A user as a transaction reads it (never kept across transactions). */
typedef struct pl_pg_user {
  uint64_t id;
  char *name;
  int read_receipts, last_seen_vis, group_add;
  uint64_t *devs; /* signed-in devices, ascending */
  size_t ndevs;
  uint64_t *blocked; /* users this one blocked */
  size_t nblocked;
} pl_pg_user;

/* A session of the database conninfo, shard `shard` of nshards, outside
 * any store (the mover's): connected, its schema current and its place
 * checked (*base as pl_pg_schema_shard's: open shard 0 first), the hot
 * statements prepared; NULL if any of it failed (logged). */
pl__pg *pl_pg_session(const char *conninfo, unsigned shard, unsigned nshards, unsigned *base);
void pl_pg_session_free(pl__pg *g);

/* ---- the bucket map (pg_map.c, docs/scaling.md 4) ----------------------------- */

/* Reads the database's bucket map (map_epoch, bucket_map) into g->map if
 * it is newer than the one held. */
pl_err pl_pg_map_load(pl__pg *g);
/* Outside a transaction: the map read again if the database refused a
 * write for an older one, and this session's parley.epoch set to the map
 * held (pg_db.c calls it before every statement or pipe). */
void pl_pg_map_sync(pl__pg *g);
/* Once a second (the relay sweep): the map read again if the database's
 * epoch moved on (a node that only reads would not learn of it). */
void pl_pg_map_poll(pl__pg *g);
/* The map's lease: a session reads its database's epoch before a
 * statement if it has not for this long (a node stopped and resumed, or
 * busy, routes by a map at most this old). The mover takes its fence down
 * only once every node must have read the new map (pg_move.c). */
#define PL_PG_MAP_LEASE_MS 3000u
/* The mover's, in its transaction on g (the shard buckets lo..hi moved
 * to from shard `from`): the outbox rows now owed to g's own users (those
 * owed to from's users of the buckets, and those of conversations that
 * came with the buckets for g's users) copied here as a T2 would, and
 * deleted. *n: how many. */
pl_err pl_pg_relay_local(pl__pg *g, unsigned from, uint32_t lo, uint32_t hi, int *n);
/* The SQLSTATE of a write the fence refused (pl_fence, schema 14). */
#define PL_PG_FENCED "PLMAP"

/* ---- queries (pg_db.c) ------------------------------------------------------ */

/* Runs sql with parameters described by fmt, one letter each:
 *   'u' uint64_t, 'i' int, 's' const char * (NULL: SQL NULL),
 *   'b' const void *, size_t (bytea; NULL with 0: SQL NULL).
 * *res (if res) gets the result to PQclear. PL_OK, PL_ERR_AGAIN for a
 * conflict the batch should run again for (serialization failure, deadlock,
 * a unique key another transaction took meanwhile), or PL_ERR_STORE (the
 * connection is marked down if it broke). */
pl_err pl_pg_q(pl__pg *g, PGresult **res, const char *sql, const char *fmt, ...);
/* pl_pg_q's first column of its first row as a number (0: no row or NULL). */
pl_err pl_pg_u64(pl__pg *g, uint64_t *v, const char *sql, const char *fmt, ...);

/* Pipeline mode (libpq 15): statements sent one after another without
 * waiting, their results read after one sync, so they cost one round trip
 * together. For statements that do not depend on each other's results:
 *   pl_pg_pipe p; pl_pg_pipe_begin(&p, g); i = pl_pg_pipe_add(&p, sql, fmt, ...); ...
 *   e = pl_pg_pipe_end(&p); ... p.res[i] ...; pl_pg_pipe_clear(&p);
 * (any number of statements; pl_pg_pipe_add returns the statement's index).
 * A failure (also of a single statement: a later one is then aborted)
 * is pl_pg_pipe_end's result, as pl_pg_q's; the results are cleared.
 * A transaction's pending BEGIN (pl__pg.begin_pending) is sent first.
 * A pipe given no statement sends nothing and costs no round trip. */
typedef struct pl_pg_pipe {
  pl__pg *g;
  pl_err err;
  int n, lead; /* statements; lead: BEGIN went before them */
  int started; /* in pipeline mode (from the first statement) */
  int synced;  /* its sync sent (pl_pg_pipe_send): only the results are left */
  size_t cap;
  const char **sql;
  PGresult **res; /* after pl_pg_pipe_end: n results */
} pl_pg_pipe;
void pl_pg_pipe_begin(pl_pg_pipe *pp, pl__pg *g);
int pl_pg_pipe_add(pl_pg_pipe *pp, const char *sql, const char *fmt, ...);
int pl_pg_pipe_vadd(pl_pg_pipe *pp, const char *sql, const char *fmt, va_list ap);
pl_err pl_pg_pipe_end(pl_pg_pipe *pp);
/* Sends the pipe's sync now, its results read by pl_pg_pipe_end later:
 * pipes on several connections (shards) sent first, then each ended, wait
 * for their round trips side by side. */
void pl_pg_pipe_send(pl_pg_pipe *pp);
/* A statement prepared on every connection (named; pl_pg_batch_stmts). */
typedef struct pl_pg_stmt {
  const char *name, *sql;
} pl_pg_stmt;
/* pl_pg_pipe_add of a prepared statement: no parsing and planning per call. */
int pl_pg_pipe_addp(pl_pg_pipe *pp, const pl_pg_stmt *st, const char *fmt, ...);
void pl_pg_pipe_clear(pl_pg_pipe *pp);

static inline uint64_t pl_pg_col_u64(const PGresult *r, int row, int col) {
  return PQgetisnull(r, row, col) ? 0 : strtoull(PQgetvalue(r, row, col), NULL, 10);
}
static inline int pl_pg_col_int(const PGresult *r, int row, int col) {
  return PQgetisnull(r, row, col) ? 0 : atoi(PQgetvalue(r, row, col));
}
static inline char *pl_pg_col_str(const PGresult *r, int row, int col) {
  return pl_strndup(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}
/* A bytea column (text format) as our own copy; NULL with *len 0 if NULL. */
uint8_t *pl_pg_col_bytes(const PGresult *r, int row, int col, size_t *len);

static inline uint64_t pl_pg_clamp(uint64_t v) { return v > INT64_MAX ? INT64_MAX : v; }

/* Room for element n of an array that doubles (from 8) when full. */
static inline void *pl_pg_reserve(void *p, size_t n, size_t *cap, size_t elem) {
  if (n < *cap)
    return p;
  *cap = *cap ? *cap * 2 : 8;
  return pl_realloc(p, *cap * elem);
}

/* A bigint[] literal for a parameter: "{1,2,3}" (pl_free it). */
char *pl_pg_array(const uint64_t *v, size_t n);

/* ---- the batch pipeline (pg_batch.c) --------------------------------------------- */
/* Is r a request the batch pipeline runs (a plain 1:1 send)? */
int pl_pg_batch_fits(const pl__pg *g, const pl_store_req *r);
/* Takes r into the current run of such requests. */
pl_err pl_pg_batch_add(pl__pg *g, pl_store_req *r);
/* Runs the current run: its reads in one round trip, its row locks and
 * timers in a second, then sends its writes in pipeline mode without
 * waiting (pending: pl_pg_batch_sync reads them). */
pl_err pl_pg_batch_run(pl__pg *g);
/* Reads the pending writes' results (with commit: after a COMMIT sent
 * behind them, in the same round trip) into their requests. */
pl_err pl_pg_batch_sync(pl__pg *g, int commit);
int pl_pg_batch_pending(const pl__pg *g);
/* The statements the pipeline runs, to prepare on each connection. */
const pl_pg_stmt *pl_pg_batch_stmts(size_t *n);
/* Forgets the run and any pending writes (the transaction rolls back). */
void pl_pg_batch_drop(pl__pg *g);
void pl_pg_batch_free(pl__pg *g);

/* ---- between shards (pg_db.c: the links; pg_relay.c: the copies) ------------ */
/* The connection to shard j (NULL: j is this shard, or it cannot be
 * reached now; a later call tries again after a backoff). */
pl__pg *pl_pg_link(pl__pg *g, unsigned j);
/* The shard of a user id, a device id, a name. */
unsigned pl_pg_shard_of_id(const pl__pg *g, uint64_t id);
unsigned pl_pg_shard_of_name(const pl__pg *g, const char *name);
/* Reads of users wherever they live (pg_link.c): each into the pipe of its
 * shard (here: the caller's pipe), all sent by _end before any is waited
 * for; _take gives a read's result (taken over; NULL with *e if its shard
 * could not be read). Handles are -1 for a shard that cannot be reached. */
typedef struct pl_pg_xpipe {
  pl__pg *g;
  pl_pg_pipe *here;  /* the caller's */
  pl_pg_pipe *there; /* [nshards]: begun at first use */
  pl_err *err;       /* [nshards]: each one's end */
} pl_pg_xpipe;
void pl_pg_xpipe_begin(pl_pg_xpipe *x, pl__pg *g, pl_pg_pipe *here);
/* A PL_PG_USER_SQL read of a user by id or name (pl_pg_user_load it). */
long pl_pg_xpipe_user(pl_pg_xpipe *x, uint64_t uid);
long pl_pg_xpipe_user_by_name(pl_pg_xpipe *x, const char *name);
/* Ends here (its result: as pl_pg_pipe_end's) and every other pipe. */
pl_err pl_pg_xpipe_end(pl_pg_xpipe *x);
PGresult *pl_pg_xpipe_take(pl_pg_xpipe *x, long h, pl_err *e);
/* The same statement (sql, fmt and its parameters) on every shard, each in
 * that shard's pipe; at[k] for shard k (k < shards, or at[0] unsharded):
 * its handle for pl_pg_xpipe_take, -1 if that shard cannot be reached. */
void pl_pg_xpipe_every(pl_pg_xpipe *x, long *at, const char *sql, const char *fmt, ...);
/* The pipe of shard j's statements (here for this shard; NULL: j cannot be
 * reached now), and the handle of its statement at for pl_pg_xpipe_take. */
pl_pg_pipe *pl_pg_xpipe_at(pl_pg_xpipe *x, unsigned j);
long pl_pg_xpipe_handle(const pl_pg_xpipe *x, const pl_pg_pipe *p, int at);
/* Clears the other shards' pipes (here is the caller's to clear). */
void pl_pg_xpipe_clear(pl_pg_xpipe *x);
/* One statement sql ($1: a bigint[] literal) per shard holding any of
 * ids[n] (users or devices: their ids name their shard), over those that
 * live there, each into that shard's pipe; at[k] for shard k (k < shards,
 * or at[0] unsharded): its handle for pl_pg_xpipe_take, -2 if no id lives
 * there, -1 if that shard cannot be reached. */
void pl_pg_xpipe_each(pl_pg_xpipe *x, const char *sql, const uint64_t *ids, size_t n, long *at);
/* The names of users ids[n] wherever they live, into names[n] (those
 * still NULL: taken over; a user that is gone leaves its NULL). */
pl_err pl_pg_xpipe_names(pl__pg *g, const uint64_t *ids, size_t n, char **names);
/* The signed-in devices (user id, device id) of users uids[n], each read on
 * its user's shard where the SQL condition cond (NULL: none; appended after
 * "WHERE ...", on devices d) holds, into *out (pl_free it); away[k] for
 * each shard k: it could not be read (its users' devices left out). */
typedef struct pl_pg_dev {
  uint64_t uid, id;
} pl_pg_dev;
pl_err pl_pg_xdevices(pl__pg *g, const uint64_t *uids, size_t n, const char *cond, pl_pg_dev **out,
                      size_t *nout, unsigned char *away);
/* The connection of shard j: g itself (its own, or unsharded), or a link
 * (NULL: unreachable). */
pl__pg *pl_pg_at(pl__pg *g, unsigned j);
/* How many shards (1 unsharded). */
unsigned pl_pg_shards(const pl__pg *g);
/* A user read on its own shard, by id (name NULL) or by name: *out (NULL:
 * none). Another shard's failure is r's (r->status, retryable; PL_OK
 * returned): g's transaction goes on. */
pl_err pl_pg_user_find(pl__pg *g, pl_store_req *r, uint64_t uid, const char *name, pl_pg_user **out);
/* The connection of uid's shard (pl_pg_at). */
pl__pg *pl_pg_home(pl__pg *g, uint64_t uid);
pl__pg *pl_pg_home_of_name(pl__pg *g, const char *name);
/* An upload's: its owner's shard, which its id names (pl_bucket_of_media;
 * an id that names none: g's). _is: whether that is g's own. */
pl__pg *pl_pg_home_of_media(pl__pg *g, const char *media_id);
int pl_pg_home_of_media_is(const pl__pg *g, const char *media_id);
/* The outbox's statements, prepared on each connection as the batch's. */
const pl_pg_stmt *pl_pg_relay_stmts(size_t *n);
/* T1's outbox row for r (a plain 1:1 send written in the run: its out.msg
 * filled), owed to shard target for user uid, into the pipe p; r joins
 * the sends whose copies pl_pg_relay_after makes once the run committed. */
void pl_pg_relay_add(pl__pg *g, pl_pg_pipe *p, pl_store_req *r, unsigned target, uint64_t uid,
                     uint64_t expires);
/* The same for a receipt (kind) by by to devices t[n] of shard target
 * that were not connected (the connected ones got it pushed). */
void pl_pg_relay_add_event(pl__pg *g, pl_pg_pipe *p, pl_store_req *r, unsigned target, int kind,
                           const char *conv, uint64_t seq, const pl_pg_user *by, uint64_t aux, uint64_t now,
                           const uint64_t *t, size_t n);
/* A copy's stream: a conversation's messages (kind 0: its name) or one
 * kind of its receipts ("conv#kind"); pl_free it. */
char *pl_pg_relay_stream(const char *conv, int kind);
/* After the commit: the outbox rows of the committed run's conversations
 * copied to their shards (T2), their devices added to the sends' targets
 * (the deliver hook then pushes or hints them). A failure leaves the rows
 * to the sweep (pl_pg_relay_sweep) and is not the commit's. */
void pl_pg_relay_after(pl__pg *g);
/* The run rolled back: no copies owed. */
void pl_pg_relay_drop(pl__pg *g);
void pl_pg_relay_free(pl__pg *g);
/* The backend's relay op (pl_store_backend.relay). */
void pl_pg_relay_sweep(void *be,
                       void (*deliver)(void *ud, const pl_msg *m, const uint64_t *t, const uint64_t *qids,
                                       size_t n),
                       void *ud);
/* ---- schema (pg_schema.c) ------------------------------------------------------ */
pl_err pl_pg_schema_migrate(pl__pg *g);
/* The newest schema version this server knows. */
int pl_pg_schema_latest(void);
/* Records or checks the database's shard (pg_schema.c); CONFIG if it was another. */
pl_err pl_pg_schema_shard(pl__pg *g, unsigned shard, unsigned nshards, unsigned *base);

/* ---- accounts (pg_acct.c) ------------------------------------------------------ */
void pl_pg_user_free(pl_pg_user *u);
/* A user and its device and block lists in one statement. */
#define PL_PG_USER_SQL(where)                                                                   \
  "SELECT u.id, u.name, u.read_receipts, u.last_seen_vis, u.group_add,"                         \
  " ARRAY(SELECT id FROM devices WHERE user_id = u.id AND token_hash IS NOT NULL ORDER BY id)," \
  " ARRAY(SELECT blocked_uid FROM blocks WHERE uid = u.id) FROM users u WHERE " where
/* The user of a PL_PG_USER_SQL result (taken over, cleared) if e is PL_OK;
 * *out = NULL if none. */
pl_err pl_pg_user_load(PGresult *res, pl_err e, pl_pg_user **out);
pl_err pl_pg_user_get(pl__pg *g, uint64_t uid, pl_pg_user **out);
pl_err pl_pg_user_by_name(pl__pg *g, const char *name, pl_pg_user **out);
int pl_pg_user_blocks(const pl_pg_user *u, uint64_t uid);
int pl_pg_user_has_dev(const pl_pg_user *u, uint64_t dev);
pl_err pl_pg_acct_user_insert(pl__pg *g, const char *name, const char *pwhash, uint64_t *uid);
pl_err pl_pg_acct_register(pl__pg *g, pl_store_req *r);
pl_err pl_pg_acct_get_user(pl__pg *g, pl_store_req *r);
pl_err pl_pg_acct_login_device(pl__pg *g, pl_store_req *r);
pl_err pl_pg_acct_token(pl__pg *g, pl_store_req *r, const uint8_t *hash, uint64_t *uid, uint64_t *did,
                        char **user, char **device);
pl_err pl_pg_acct_resume(pl__pg *g, pl_store_req *r);
pl_err pl_pg_acct_logout(pl__pg *g, pl_store_req *r);
pl_err pl_pg_acct_devices(pl__pg *g, pl_store_req *r);
pl_err pl_pg_acct_settings(pl__pg *g, pl_store_req *r);

/* ---- social (pg_social.c) ---------------------------------------------------- */
pl_err pl_pg_social_contacts(pl__pg *g, pl_store_req *r);
pl_err pl_pg_social_block(pl__pg *g, pl_store_req *r);
pl_err pl_pg_social_presence(pl__pg *g, pl_store_req *r);
pl_err pl_pg_social_seen(pl__pg *g, pl_store_req *r);
pl_err pl_pg_social_typing(pl__pg *g, pl_store_req *r);

/* ---- read watermarks of a send (pg_conv.c, pg_batch.c) ------------------------ */
/* Sending reads the conversation (protocol.md 11.4): the sender's read
 * watermark moves to the new seq (MINE, an upsert), and the peer's row is
 * made if there is none, as UNREAD lists the rows (PEER). PEER never locks
 * the peer's row: ON CONFLICT DO NOTHING takes no lock on a row that is
 * there, where DO UPDATE ... WHERE locks it even when the WHERE is false.
 * That lock made the send wait on the peer's own ack (its delivered
 * watermark in the same row) and, with the device rows both take, deadlock
 * with it across nodes (docs/benchmarks.md, "Deadlocks between nodes").
 * Arguments: SQL expressions of bigint (me, peer, seq) and text (conv). */
#define PL_PG_READS_MINE(me, conv, seq) PL_PG_READS_MINE_IF(me, conv, seq, "true")
/* The same if the SQL condition cond holds (the user lives on this shard). */
#define PL_PG_READS_MINE_IF(me, conv, seq, cond)                                                          \
  "INSERT INTO reads(uid, conv, read_seq, delivered_seq) SELECT " me ", " conv ", " seq ", 0 WHERE " cond \
  " ON CONFLICT(uid, conv) DO UPDATE SET read_seq = greatest(reads.read_seq, EXCLUDED.read_seq)"          \
  " WHERE reads.read_seq < EXCLUDED.read_seq"
#define PL_PG_READS_PEER(me, peer, conv)                                                              \
  "INSERT INTO reads(uid, conv, read_seq, delivered_seq) SELECT " peer ", " conv ", 0, 0 WHERE " peer \
  " <> " me " ON CONFLICT(uid, conv) DO NOTHING"

/* ---- queues (pg_queue.c) ---------------------------------------------------- */
uint64_t *pl_pg_queue_devs_except(const pl_pg_user *u, uint64_t skip, size_t *n);
/* The CTE that queues message mid (an SQL expression) for the devices of
 * the bigint[] parameter targets: each device's counter moves under its
 * row lock, so another node queueing for the same device waits for this
 * commit and takes the next position (qids rise in the device's commit
 * order, without gaps); returns (device_id, qid, mid) rows. */
#define PL_PG_QUEUE_PUT(targets, mid)                                                                   \
  "t AS (UPDATE devices SET next_qid = next_qid + 1 WHERE id = ANY(" targets "::bigint[])"              \
  " RETURNING id, next_qid) INSERT INTO queue(device_id, qid, mid) SELECT id, next_qid, " mid " FROM t" \
  " RETURNING device_id, qid, mid"
/* Each target's qid (parallel to t) from PL_PG_QUEUE_PUT's rows. */
uint64_t *pl_pg_queue_qids(const PGresult *res, const uint64_t *t, size_t n);
/* A device's queue length without a count over its rows: the positions it
 * was given (next_qid, one per queue row ever, gap-free) less the rows
 * deleted since (dequeued.n). The two live in different tables so that a
 * device's ack, which adds to its dequeued row, never waits on the device
 * row that other nodes' sends lock for next_qid (with one counter in the
 * device row, sends and acks deadlocked: docs/benchmarks.md, "Deadlocks
 * between nodes"). d: the devices row's alias. (devices.queued, the
 * counter before schema 9, is no longer kept.) */
#define PL_PG_QUEUED(d) "(" d ".next_qid - COALESCE((SELECT n FROM dequeued WHERE device_id = " d ".id), 0))"
/* Adds n rows deleted from device's queue: SQL expressions (bigint). */
#define PL_PG_DEQUEUED(device, n)                                                       \
  "INSERT INTO dequeued(device_id, n) VALUES(" device ", " n ") ON CONFLICT(device_id)" \
  " DO UPDATE SET n = dequeued.n + EXCLUDED.n"
/* A CTE d of deleted queue rows' device_id, then this: their lengths follow. */
#define PL_PG_QUEUE_UNCOUNT                                                          \
  " INSERT INTO dequeued(device_id, n) SELECT device_id, count(*) FROM d GROUP BY 1" \
  " ON CONFLICT(device_id) DO UPDATE SET n = dequeued.n + EXCLUDED.n"
pl_err pl_pg_queue_full(pl__pg *g, const pl_pg_user *me, const uint64_t *t, size_t n, int *full);
/* pl_pg_queue_full's rule on lengths already read (lens parallel to t);
 * mine (or NULL): rows of me's messages the open batch queues at each
 * target and has not written yet (added to what the database counts). */
pl_err pl_pg_queue_admit(pl__pg *g, const pl_pg_user *me, const uint64_t *t, const uint64_t *lens,
                         const uint64_t *mine, size_t n, int *full);
/* Are queue limits configured at all (else no length needs reading)? */
static inline int pl_pg_queue_limited(const pl__pg *g) { return g->max_queue || g->rules.queue_admit; }
/* An event for targets (taken over): pushed at once to the connected
 * ones, stored for the others (one statement), replacing the pending one
 * of its kind where it coalesces (pl_receipts_replaces_pending). */
pl_err pl_pg_queue_event(pl__pg *g, pl_store_req *r, int kind, const char *conv, uint64_t seq,
                         const pl_pg_user *by, uint64_t aux, uint64_t *t, size_t n);
/* The same for several events in one round trip: each _add puts its
 * statement (if any device is offline) into p; after pl_pg_pipe_end
 * succeeded, pl_pg_queue_event_done gives the stored events their qids.
 * The caller frees q.v either way. */
typedef struct pl_pg_evs {
  struct {
    size_t ev; /* index in r->events */
    int at;    /* the statement's in the pipe */
  } * v;
  size_t n, cap;
} pl_pg_evs;
void pl_pg_queue_event_add(pl__pg *g, pl_pg_pipe *p, pl_pg_evs *q, pl_store_req *r, int kind,
                           const char *conv, uint64_t seq, const pl_pg_user *by, uint64_t aux, uint64_t *t,
                           size_t n);
void pl_pg_queue_event_done(pl_pg_evs *q, pl_pg_pipe *p, pl_store_req *r);
/* The queue's statements, prepared on each connection as the batch's. */
const pl_pg_stmt *pl_pg_queue_stmts(size_t *n);
pl_err pl_pg_queue_fetch(pl__pg *g, pl_store_req *r);
/* A fetched row (qid, conv, seq, from_name, from_device, client_id, body,
 * client_ts, server_ts, kind, aux, media, act) as a pl_msg. */
void pl_pg_queue_msg_row(const PGresult *res, int row, pl_msg *m);
pl_err pl_pg_queue_ack(pl__pg *g, pl_store_req *r);

/* ---- conversations (pg_conv.c) ------------------------------------------------- */
pl_err pl_pg_conv_next(pl__pg *g, const char *conv, uint64_t now, uint64_t *seq, uint64_t *ts);
/* A send's next seq and its dedup record, as one statement of a pipe; then
 * its result read (PL_ERR_AGAIN: another node committed the id meanwhile,
 * the batch runs again and finds it). */
int pl_pg_conv_next_dedup_add(pl__pg *g, pl_pg_pipe *p, pl_store_req *r, const char *conv, uint64_t now);
pl_err pl_pg_conv_next_dedup_read(const PGresult *res, uint64_t *seq, uint64_t *ts);
pl_err pl_pg_conv_read_move(pl__pg *g, uint64_t uid, const char *conv, uint64_t read, uint64_t delivered,
                            int *moved);
pl_err pl_pg_conv_send(pl__pg *g, pl_store_req *r);
pl_err pl_pg_conv_mark_read(pl__pg *g, pl_store_req *r);
pl_err pl_pg_conv_unread(pl__pg *g, pl_store_req *r);
pl_err pl_pg_conv_stats(pl__pg *g, pl_store_req *r);
pl_err pl_pg_conv_counts(pl__pg *g, pl_store_counts *c);

/* ---- groups (pg_groups.c: membership; pg_ghist.c: history) ------------------ */
void pl_pg_group_gconv(uint64_t gid, char *buf, size_t n);
/* uid's role in gid (PL_ROLE_NONE: not a member, or no such group). */
pl_err pl_pg_group_role(pl__pg *g, uint64_t gid, uint64_t uid, int *role);
/* The device ids sql lists (parameters: gid, and uid unless 0), into *t. */
pl_err pl_pg_group_targets(pl__pg *g, const char *sql, uint64_t gid, uint64_t uid, uint64_t **t, size_t *n);
pl_err pl_pg_group_create(pl__pg *g, pl_store_req *r);
pl_err pl_pg_group_update(pl__pg *g, pl_store_req *r);
pl_err pl_pg_group_list(pl__pg *g, pl_store_req *r);
pl_err pl_pg_group_devices(pl__pg *g, pl_store_req *r);
/* The signed-in devices of gid's members (on g, the group's shard), each
 * read on its user's shard where the SQL condition cond (after "WHERE ...",
 * on devices d; NULL: none) holds, by id into *t; *away: how many shards
 * could not be read (their members' devices left out). */
pl_err pl_pg_group_member_devices(pl__pg *g, uint64_t gid, const char *cond, uint64_t **t, size_t *n,
                                  unsigned *away);
/* A device that starts (new, or signed in again) gets its user's groups
 * from now on: a cursor at each group's last seq. */
pl_err pl_pg_group_cursor_start(pl__pg *g, uint64_t uid, uint64_t dev);
/* Appends an entry (a membership event) to gid's history; *m as sent. */
pl_err pl_pg_ghist_put(pl__pg *g, uint64_t gid, const pl_pg_user *from, const char *device, const char *id,
                       const uint8_t *body, size_t body_len, uint64_t client_ts, int kind, uint64_t aux,
                       const uint8_t *act, size_t act_len, pl_msg *m);
/* A group message by me (NULL: unknown) with the role pl__send_reads read. */
pl_err pl_pg_group_send(pl__pg *g, pl_store_req *r, const pl_pg_user *me, int role, const uint8_t *att,
                        size_t att_len);
/* A fetch's groups, after pl_pg_queue_fetch's part: _add puts the
 * memberships' statement of every shard (the user's groups may live on
 * any) into the fetch's first round trip (x: its pipes; at[shards]: the
 * handles, -2 for none asked); pl_pg_group_fetch reads them after
 * pl_pg_xpipe_end and every group's part on the group's shard, in one
 * more round trip, into the page and out.gids. A shard that cannot be
 * read leaves its groups out of this page (they stay owed). */
void pl_pg_group_fetch_add(pl_pg_xpipe *x, const pl_store_req *r, long *at);
pl_err pl_pg_group_fetch(pl__pg *g, pl_store_req *r, pl_pg_xpipe *x, const long *at, uint32_t limit,
                         size_t max_bytes);
pl_err pl_pg_group_ack(pl__pg *g, pl_store_req *r);
pl_err pl_pg_group_mark_read(pl__pg *g, pl_store_req *r);
pl_err pl_pg_group_receipts(pl__pg *g, pl_store_req *r);
pl_err pl_pg_group_unread(pl__pg *g, pl_store_req *r);
pl_err pl_pg_group_typing(pl__pg *g, pl_store_req *r);
pl_err pl_pg_group_stats(pl__pg *g, pl_store_counts *c);
/* The sweep's trimming (pg_gtrim.c): the next groups' histories deleted up
 * to what every member device has; *deleted counts the entries. */
pl_err pl_pg_gtrim(pl__pg *g, uint64_t *deleted);

/* The operator (admin API) takes u, a member with role was, out of gid as
 * u's own Leave would, announced as a removal by "admin:<by>". */
pl_err pl_pg_group_remove_by(pl__pg *g, pl_store_req *r, uint64_t gid, pl_pg_user *u, int was,
                             const char *by);
/* gi's members (role > 0) by name, at most 10,000 (member_count has all). */
pl_err pl_pg_group_members(pl__pg *g, pl_group_info *gi);
/* Groups as the admin API lists them (pl_pg_group_list's columns) from
 * res, into *v (*n of them, *more if one past max was there). */
void pl_pg_group_rows(PGresult *res, pl_group_info **v, size_t *n, size_t max, int *more);

/* ---- the operator's calls (pg_admin.c) --------------------------------------- */
pl_err pl_pg_admin(pl__pg *g, pl_store_req *r);
/* Is uid banned? share: read its row FOR SHARE (a ban waits for the
 * transaction, or is seen by it). */
pl_err pl_pg_admin_disabled(pl__pg *g, uint64_t uid, int share, int *disabled);
/* Register's invite: used up if it still admits one (pl_signup), else
 * r->status INVITE_INVALID. Its row is locked: two nodes never both take
 * a code's last use. */
pl_err pl_pg_admin_invite_take(pl__pg *g, pl_store_req *r, const char *code);

/* ---- message actions (pg_acts.c) ------------------------------------------- */
/* The conversation's timer, as a scalar subquery on the parameter conv. */
#define PL_PG_ACTS_TIMER_SQL(conv) \
  "SELECT COALESCE((SELECT timer_s FROM conv_timers WHERE conv = " conv "), 0)"
/* Before anything is written: may the send's act (if any) be done by user
 * me, whose role in group gid is role (1:1: gid 0)? Refused: the request
 * cleared and r->status set (rules: pl_acts). */
pl_err pl_pg_acts_check(pl__pg *g, pl_store_req *r, const char *conv, uint64_t me, uint64_t gid, int role,
                        uint64_t now);
/* After the seq (out.msg filled): out.msg.act and out.vanish_at under the
 * conversation's timer timer_s; *expires: when the server deletes it. */
void pl_pg_acts_stamp(pl__pg *g, pl_store_req *r, uint32_t timer_s, uint64_t *expires);
/* After the stamp: the dedup record keeps out.vanish_at, which a retry's
 * SendAck repeats; a statement of p (none without a timer). */
void pl_pg_acts_dedup_vanish_add(pl_pg_pipe *p, const pl_store_req *r);
/* The upsert of a plain message's row in the action targets' index, on
 * SQL expressions (the parameters or columns that give them). */
#define PL_PG_ACTS_INDEX(conv, seq, mid, sender, ts, expires)                                         \
  "INSERT INTO msgidx(conv, seq, mid, sender_uid, server_ts, expires, deleted) SELECT " conv ", " seq \
  ", " mid ", " sender ", " ts ", " expires ", 0"
#define PL_PG_ACTS_INDEX_CONFLICT                                                               \
  " ON CONFLICT(conv, seq) DO UPDATE SET mid = EXCLUDED.mid, sender_uid = EXCLUDED.sender_uid," \
  " server_ts = EXCLUDED.server_ts, expires = EXCLUDED.expires, deleted = 0"
/* Does the send's message go in the action targets' index (a plain one)? */
static inline int pl_pg_acts_indexed(const pl_store_req *r) {
  return !r->u.send.in.act || r->u.send.in.act->kind == PL_ACT_NONE;
}
/* After the message row mid (0: none): the target index unless indexed
 * (the row's insert did it), a delete for everyone, a new timer. */
pl_err pl_pg_acts_apply(pl__pg *g, pl_store_req *r, uint64_t mid, uint64_t gid, uint64_t expires,
                        int indexed);
pl_err pl_pg_acts_expire(pl__pg *g, uint64_t now);

/* ---- push notifications (pg_push.c) ------------------------------------------ */
/* A device's push token and pending row go (logout, token removed). */
pl_err pl_pg_push_forget(pl__pg *g, uint64_t device);
pl_err pl_pg_push_token(pl__pg *g, pl_store_req *r);
pl_err pl_pg_push_tokens(pl__pg *g, pl_store_req *r);
pl_err pl_pg_push_enqueue(pl__pg *g, pl_store_req *r);
pl_err pl_pg_push_claim(pl__pg *g, pl_store_req *r);
pl_err pl_pg_push_done(pl__pg *g, pl_store_req *r);

/* ---- media (pg_media.c) ------------------------------------------------------- */
/* An attachment: the packed Media of an upload the sender me (NULL:
 * unknown) may attach, read on the upload's shard; r->status says why
 * not (PL_ERR_STORE: that shard is away, retryable). */
pl_err pl_pg_media_for_send(pl__pg *g, pl_store_req *r, const pl_pg_user *me, uint8_t **att, size_t *len);
/* Whoever is in conv may fetch the upload from now on: as statements of
 * g's pipe when the upload lives on g's shard, else nothing. */
void pl_pg_media_grant_add(pl__pg *g, pl_pg_pipe *p, const char *media_id, const char *conv);
/* The same on the upload's shard when that is another one, committed
 * there at once (before the send's own commit); else nothing. */
pl_err pl_pg_media_grant_away(pl__pg *g, const char *media_id, const char *conv);
pl_err pl_pg_media_auth(pl__pg *g, pl_store_req *r);
pl_err pl_pg_media_put(pl__pg *g, pl_store_req *r);
pl_err pl_pg_media_get(pl__pg *g, pl_store_req *r);
/* The sweep's part: expired uploads no message carries, and the blobs
 * none names any more (in the same transaction). */
pl_err pl_pg_media_expire(pl__pg *g, uint64_t now);
/* A deleted user's uploads go with their grants, and their blobs no other
 * upload names, in this transaction. */
pl_err pl_pg_media_drop_owner(pl__pg *g, uint64_t uid);

#endif
