/* pg_move: `parleyd move-buckets`, the mover (docs/scaling.md 4): buckets
 * lo..hi go from the shard that holds them to shard `to` while the nodes
 * run. Nothing of a bucket may be written on the old shard once the new
 * one holds its rows, and no node may route by the old map once it can
 * write: every step below keeps both, and a mover that dies mid-way is
 * run again to finish (each step can run twice).
 *
 *  1. Freeze and copy. On the old shard S, one transaction locks every
 *     table against writes (SHARE ROW EXCLUSIVE: writers wait, readers go
 *     on), reads the buckets' rows and copies them to T in one transaction
 *     of T's (binary COPY; message rows renumbered there, as T numbers its
 *     own; T's id sequences raised past S's, so ids stay unique in a
 *     bucket). Before S's transaction commits it puts the fence on S:
 *     statement triggers on every table that refuse the writes of any
 *     session whose parley.epoch is older than the move's (the writers
 *     that waited get SQLSTATE PLMAP), and it notes the move in S's
 *     bucket_map (not yet in its epoch, so no node takes it).
 *  2. Fence the others. On every other shard (T last), one transaction
 *     puts the same fence and re-addresses the copies still owed to S's
 *     users of the buckets (outbox rows) to T; on T it also copies in the
 *     ones owed to users who now live there (they would otherwise come
 *     after messages sent to them directly), and notes the move.
 *  3. Publish: every shard's epoch moves to the move's, with the map. A
 *     node that was refused reads the map (pg_map.c) and retries there;
 *     the others hear of it within a second (their poll).
 *  4. After --grace seconds (nodes that only read see the frozen copy
 *     meanwhile), the buckets' rows are deleted from S.
 *
 * Between 1 and 3 every shard refuses the writes of every node (they
 * route by the old epoch): a short stop, retried by clients with the same
 * ids, in exchange for no lock or transaction across machines. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../rules/pl_bucket.h"
#include "../pl_move.h"
#include "../pl_shardmap.h"
#include "pg_internal.h"

#define PL__MAX_SHARDS 64
/* The movers' advisory lock, on shard 0 ("parleymv" as a bigint). */
#define PL__MOVE_LOCK "8097879414873353590"

/* Every table a node's store writes: the fence's. The blob store's
 * sessions are not the store's (they route by the map, pl_blob_pg.c):
 * its tables are frozen with the others but not fenced. */
static const char *const pl__fenced[] = {
    "users",   "devices", "convs",       "messages",    "queue",        "dedup",  "reads",        "contacts",
    "blocks",  "msgidx",  "conv_timers", "push_tokens", "push_pending", "media",  "media_grants", "groups",
    "members", "gcursor", "greads",      "invites",     "dequeued",     "outbox", "relay"};
#define PL__NFENCED (sizeof pl__fenced / sizeof pl__fenced[0])

typedef struct pl__mv {
  pl__pg *db[PL__MAX_SHARDS];
  unsigned n, from, to;
  uint32_t lo, hi;
  unsigned base;  /* the shards the store began with (the formula's) */
  uint64_t held;  /* the map's epoch before the move */
  uint64_t epoch; /* the move's */
  char *names;    /* the buckets' users' names, a text[] expression */
  char *convs;    /* the conversations homed in the buckets, a text[] expression */
  unsigned grace_s;
  int keep_fence;  /* --keep-fence: the fence stays up after the move */
  char *held_rows; /* the published map's bucket_map rows, a VALUES list (NULL: none) */
  int busy;        /* another mover holds the lock: this one did nothing */
} pl__mv;

static char *pl__vsql(const char *fmt, va_list ap) {
  va_list again;
  va_copy(again, ap);
  int len = vsnprintf(NULL, 0, fmt, ap);
  size_t n = (size_t)(len > 0 ? len : 0) + 1;
  char *s = pl_malloc(n);
  vsnprintf(s, n, fmt, again);
  va_end(again);
  return s;
}

static char *pl__sql(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = pl__vsql(fmt, ap);
  va_end(ap);
  return s;
}

/* Runs the statement(s) fmt makes on g. */
static pl_err pl__x(pl__pg *g, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = pl__vsql(fmt, ap);
  va_end(ap);
  pl_err e = pl_pg_q(g, NULL, s, NULL);
  pl_free(s);
  return e;
}

/* The row's id names a bucket moved: as a range of ids, which the
 * tables' indexes on their ids serve (ids are bucket << 48 | n). */
static const char *pl__in(const pl__mv *mv, const char *col) {
  static char buf[8][128];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, sizeof buf[0], "(%s BETWEEN %llu AND %llu)", col, (unsigned long long)mv->lo << 48,
           (((unsigned long long)mv->hi + 1) << 48) - 1);
  return b;
}

/* A blob key's bucket (its first 4 hex digits) is one moved. */
static const char *pl__key_in(const pl__mv *mv, const char *col) {
  static char buf[2][256];
  static int k;
  char *b = buf[k++ % 2];
  snprintf(b, sizeof buf[0],
           "(CASE WHEN substr(%1$s, 1, 4) ~ '^[0-9a-f]{4}$' THEN ('x' || substr(%1$s, 1, 4))::bit(16)::int"
           " BETWEEN %2$u AND %3$u ELSE false END)",
           col, mv->lo, mv->hi);
  return b;
}

/* A 1:1 conversation (or receipt stream) of one of the buckets' users. */
static char *pl__dm_of(const pl__mv *mv, const char *col) {
  return pl__sql("(%1$s LIKE 'dm:%%' AND (split_part(split_part(%1$s, '#', 1), ':', 2) = ANY(%2$s)"
                 " OR split_part(split_part(%1$s, '#', 1), ':', 3) = ANY(%2$s)))",
                 col, mv->names);
}

/* ---- step 1: the rows, S to T ----------------------------------------------- */

/* Rows of select on S into `into` on T, by binary COPY (the two schemas
 * are the same migrations: the same columns in the same order). */
static pl_err pl__copy(pl__mv *mv, const char *select, const char *into) {
  PGconn *s = mv->db[mv->from]->conn, *t = mv->db[mv->to]->conn;
  char *out = pl__sql("COPY (%s) TO STDOUT (FORMAT binary)", select);
  char *in = pl__sql("COPY %s FROM STDIN (FORMAT binary)", into);
  pl_err e = PL_OK;
  PGresult *r = PQexec(t, in);
  if (PQresultStatus(r) != PGRES_COPY_IN) {
    pl_error("move: %s: %s", in, PQresultErrorMessage(r));
    e = PL_ERR_STORE;
  }
  PQclear(r);
  if (e == PL_OK) {
    r = PQexec(s, out);
    if (PQresultStatus(r) != PGRES_COPY_OUT) {
      pl_error("move: %s: %s", out, PQresultErrorMessage(r));
      e = PL_ERR_STORE;
    }
    PQclear(r);
    char *buf;
    int len;
    while (e == PL_OK && (len = PQgetCopyData(s, &buf, 0)) > 0) {
      if (PQputCopyData(t, buf, len) != 1)
        e = PL_ERR_STORE;
      PQfreemem(buf);
    }
    while ((r = PQgetResult(s))) {
      if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_COPY_OUT) {
        pl_error("move: %s: %s", out, PQresultErrorMessage(r));
        e = PL_ERR_STORE;
      }
      PQclear(r);
    }
    PQputCopyEnd(t, e == PL_OK ? NULL : "the mover's read failed");
    while ((r = PQgetResult(t))) {
      if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        if (e == PL_OK)
          pl_error("move: %s: %s", in, PQresultErrorMessage(r));
        e = PL_ERR_STORE;
      }
      PQclear(r);
    }
  }
  pl_free(out);
  pl_free(in);
  return e;
}

/* A text[] expression of the first column of S's rows of sql. */
static pl_err pl__list(pl__mv *mv, const char *sql, int (*keep)(const pl__mv *, const char *), char **out,
                       size_t *n) {
  PGresult *res = NULL;
  pl_err e = pl_pg_q(mv->db[mv->from], &res, sql, NULL);
  *out = NULL;
  *n = 0;
  if (e != PL_OK)
    return e;
  size_t len = 32;
  for (int i = 0; i < PQntuples(res); i++)
    len += (size_t)PQgetlength(res, i, 0) + 4;
  char *s = *out = pl_malloc(len), *p = s;
  p += sprintf(p, "ARRAY[");
  for (int i = 0; i < PQntuples(res); i++) {
    const char *v = PQgetvalue(res, i, 0); /* names, "dm:a:b", "g:N": no quote in them */
    if (keep && !keep(mv, v))
      continue;
    p += sprintf(p, "%s'%s'", *n ? "," : "", v);
    (*n)++;
  }
  sprintf(p, "]::text[]");
  PQclear(res);
  return PL_OK;
}

/* Whether conv is a 1:1 conversation homed in the buckets moved. */
static int pl__homed(const pl__mv *mv, const char *conv) {
  uint32_t home;
  return pl_bucket_of_dm(conv, &home) == 0 && home >= mv->lo && home <= mv->hi;
}

/* What S holds of the buckets, and what T might hold of them from a move
 * that failed before (deleted first). */
static pl_err pl__clean_t(pl__mv *mv) {
  pl__pg *t = mv->db[mv->to];
  char *dm = pl__dm_of(mv, "conv");
  pl_err e = pl__x(
      t,
      "DELETE FROM messages WHERE mid IN (SELECT mid FROM queue WHERE %1$s) OR (gid <> 0 AND %2$s);"
      "DELETE FROM queue WHERE %1$s; DELETE FROM dequeued WHERE %1$s; DELETE FROM push_tokens WHERE %1$s;"
      "DELETE FROM push_pending WHERE %1$s; DELETE FROM devices WHERE %3$s; DELETE FROM users WHERE %4$s;"
      "DELETE FROM contacts WHERE %5$s; DELETE FROM blocks WHERE %5$s;"
      "DELETE FROM media_grants WHERE media IN (SELECT id FROM media WHERE %6$s); DELETE FROM media WHERE "
      "%6$s;"
      "DELETE FROM blob_chunks WHERE %7$s; DELETE FROM blobs WHERE %8$s;"
      "DELETE FROM groups WHERE %2$s; DELETE FROM members WHERE %2$s; DELETE FROM gcursor WHERE %2$s;"
      "DELETE FROM greads WHERE %2$s; DELETE FROM convs WHERE conv = ANY(%9$s);"
      "DELETE FROM dedup WHERE conv = ANY(%9$s); DELETE FROM msgidx WHERE conv = ANY(%9$s);"
      "DELETE FROM conv_timers WHERE conv = ANY(%9$s); DELETE FROM outbox WHERE conv = ANY(%9$s)",
      pl__in(mv, "device_id"), pl__in(mv, "gid"), pl__in(mv, "user_id"), pl__in(mv, "id"), pl__in(mv, "uid"),
      pl__in(mv, "owner"), pl__key_in(mv, "key"), pl__key_in(mv, "key"), mv->convs);
  pl_free(dm);
  return e;
}

/* The plain tables: S's rows as they are. */
static pl_err pl__copy_plain(pl__mv *mv) {
  struct {
    const char *table, *col;
  } by_id[] = {{"users", "id"},
               {"devices", "user_id"},
               {"dequeued", "device_id"},
               {"contacts", "uid"},
               {"blocks", "uid"},
               {"push_tokens", "device_id"},
               {"push_pending", "device_id"},
               {"media", "owner"},
               {"groups", "gid"},
               {"members", "gid"},
               {"gcursor", "gid"},
               {"greads", "gid"}};
  pl_err e = PL_OK;
  for (size_t i = 0; e == PL_OK && i < sizeof by_id / sizeof by_id[0]; i++) {
    char *sel = pl__sql("SELECT * FROM %s WHERE %s", by_id[i].table, pl__in(mv, by_id[i].col));
    e = pl__copy(mv, sel, by_id[i].table);
    pl_free(sel);
  }
  const char *by_conv[] = {"convs", "dedup", "conv_timers", "outbox"};
  for (size_t i = 0; e == PL_OK && i < sizeof by_conv / sizeof by_conv[0]; i++) {
    char *sel = pl__sql("SELECT * FROM %s WHERE conv = ANY(%s)", by_conv[i], mv->convs);
    e = pl__copy(mv, sel, by_conv[i]);
    pl_free(sel);
  }
  char *sel[3] = {pl__sql("SELECT * FROM media_grants WHERE media IN (SELECT id FROM media WHERE %s)",
                          pl__in(mv, "owner")),
                  pl__sql("SELECT * FROM blobs WHERE %s", pl__key_in(mv, "key")),
                  pl__sql("SELECT * FROM blob_chunks WHERE %s", pl__key_in(mv, "key"))};
  const char *into[3] = {"media_grants", "blobs", "blob_chunks"};
  for (int i = 0; i < 3; i++) {
    if (e == PL_OK)
      e = pl__copy(mv, sel[i], into[i]);
    pl_free(sel[i]);
  }
  return e;
}

/* Messages (those the buckets' devices' queues hold, the groups' history
 * and the moved conversations' entries an action may name) take new
 * mids on T; the queues and the action index follow them. Read marks and
 * relay guards of the buckets' users are merged (T may hold some of a
 * conversation's already: its other side's). */
static pl_err pl__copy_renumbered(pl__mv *mv) {
  pl__pg *t = mv->db[mv->to];
  pl_err e = pl__x(t, "CREATE TEMP TABLE mv_messages (LIKE messages) ON COMMIT DROP;"
                      "CREATE TEMP TABLE mv_queue (LIKE queue) ON COMMIT DROP;"
                      "CREATE TEMP TABLE mv_msgidx (LIKE msgidx) ON COMMIT DROP;"
                      "CREATE TEMP TABLE mv_reads (LIKE reads) ON COMMIT DROP;"
                      "CREATE TEMP TABLE mv_relay (LIKE relay) ON COMMIT DROP");
  char *dm_reads = pl__dm_of(mv, "conv"), *dm_relay = pl__dm_of(mv, "stream");
  char *sel[5] = {
      pl__sql("SELECT * FROM messages WHERE mid IN (SELECT mid FROM queue WHERE %1$s) OR (gid <> 0 AND %2$s)"
              " OR (gid = 0 AND conv = ANY(%3$s) AND mid IN (SELECT mid FROM msgidx WHERE conv = ANY(%3$s)))",
              pl__in(mv, "device_id"), pl__in(mv, "gid"), mv->convs),
      pl__sql("SELECT * FROM queue WHERE %s", pl__in(mv, "device_id")),
      pl__sql("SELECT * FROM msgidx WHERE conv = ANY(%s)", mv->convs),
      pl__sql("SELECT * FROM reads WHERE %s OR %s", pl__in(mv, "uid"), dm_reads),
      pl__sql("SELECT * FROM relay WHERE %s", dm_relay)};
  const char *into[5] = {"mv_messages", "mv_queue", "mv_msgidx", "mv_reads", "mv_relay"};
  for (int i = 0; i < 5; i++) {
    if (e == PL_OK)
      e = pl__copy(mv, sel[i], into[i]);
    pl_free(sel[i]);
  }
  pl_free(dm_reads);
  pl_free(dm_relay);
  PGresult *cols = NULL;
  if (e == PL_OK) /* messages' columns but mid, in order */
    e = pl_pg_q(
        t, &cols,
        "SELECT string_agg(quote_ident(column_name), ',' ORDER BY ordinal_position) FROM"
        " information_schema.columns WHERE table_schema = current_schema() AND table_name = 'messages'"
        " AND column_name <> 'mid'",
        NULL);
  if (e == PL_OK) {
    const char *c = PQgetvalue(cols, 0, 0);
    e = pl__x(t,
              "ANALYZE mv_messages; ANALYZE mv_queue; ANALYZE mv_msgidx;"
              "UPDATE mv_messages m SET refs = coalesce(c.n, 0) FROM mv_messages o LEFT JOIN"
              " (SELECT mid, count(*) n FROM mv_queue GROUP BY mid) c ON c.mid = o.mid"
              " WHERE o.mid = m.mid AND m.gid = 0;"
              "ALTER TABLE mv_messages ADD COLUMN new_mid bigint;"
              "UPDATE mv_messages SET new_mid = nextval(pg_get_serial_sequence('messages', 'mid'));"
              "INSERT INTO messages(mid, %1$s) SELECT new_mid, %1$s FROM mv_messages;"
              "INSERT INTO queue(device_id, qid, mid) SELECT q.device_id, q.qid, m.new_mid FROM mv_queue q"
              " JOIN mv_messages m ON m.mid = q.mid;"
              "INSERT INTO msgidx(conv, seq, mid, sender_uid, server_ts, expires, deleted)"
              " SELECT x.conv, x.seq, coalesce(m.new_mid, 0), x.sender_uid, x.server_ts, x.expires, x.deleted"
              " FROM mv_msgidx x LEFT JOIN mv_messages m ON m.mid = x.mid;"
              "INSERT INTO reads SELECT * FROM mv_reads ON CONFLICT(uid, conv) DO UPDATE"
              " SET read_seq = greatest(reads.read_seq, EXCLUDED.read_seq),"
              " delivered_seq = greatest(reads.delivered_seq, EXCLUDED.delivered_seq);"
              "INSERT INTO relay SELECT * FROM mv_relay ON CONFLICT(stream) DO UPDATE"
              " SET upto = greatest(relay.upto, EXCLUDED.upto)",
              c);
  }
  PQclear(cols);
  return e;
}

/* T's id sequences past S's: a bucket's ids are its number and a
 * shard's sequence, and T now numbers the buckets' new ids. */
static pl_err pl__sequences(pl__mv *mv) {
  const char *seqs[] = {"users_id_seq", "devices_id_seq", "groups_gid_seq"};
  pl_err e = PL_OK;
  for (int i = 0; e == PL_OK && i < 3; i++) {
    uint64_t last = 0;
    char *q = pl__sql("SELECT last_value FROM %s", seqs[i]);
    e = pl_pg_u64(mv->db[mv->from], &last, q, NULL);
    pl_free(q);
    if (e == PL_OK)
      e = pl__x(mv->db[mv->to], "SELECT setval('%1$s', greatest((SELECT last_value FROM %1$s), %2$llu))",
                seqs[i], (unsigned long long)last);
  }
  return e;
}

/* The fence at epoch on g's tables (in g's open transaction). */
static pl_err pl__fence(pl__pg *g, uint64_t epoch) {
  pl_err e = PL_OK;
  for (size_t i = 0; e == PL_OK && i < PL__NFENCED; i++)
    e = pl__x(
        g,
        "CREATE OR REPLACE TRIGGER pl_fence BEFORE INSERT OR UPDATE OR DELETE ON %1$s FOR EACH STATEMENT"
        " WHEN (coalesce(nullif(current_setting('parley.epoch', true), ''), '0')::bigint < %2$llu)"
        " EXECUTE FUNCTION pl_fence('%2$llu')",
        pl__fenced[i], (unsigned long long)epoch);
  return e;
}

/* Every table of g frozen against writes until its transaction ends. */
static pl_err pl__freeze(pl__pg *g) {
  char *list = pl_strdup("blobs, blob_chunks");
  for (size_t i = 0; i < PL__NFENCED; i++) {
    char *l = pl__sql("%s, %s", list, pl__fenced[i]);
    pl_free(list);
    list = l;
  }
  pl_err e = pl__x(g, "BEGIN; LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE", list);
  pl_free(list);
  return e;
}

/* The move noted in g's bucket_map, at the move's epoch. */
static pl_err pl__note(pl__mv *mv, pl__pg *g) {
  return pl__x(g,
               "INSERT INTO bucket_map(bucket, shard, was, epoch) SELECT b, %u, %u, %llu FROM"
               " generate_series(%u, %u) b ON CONFLICT(bucket) DO UPDATE SET shard = EXCLUDED.shard,"
               " was = EXCLUDED.was, epoch = EXCLUDED.epoch",
               mv->to, mv->from, (unsigned long long)mv->epoch, mv->lo, mv->hi);
}

static void pl__rollback(pl__pg *g) {
  if (g && g->conn && PQtransactionStatus(g->conn) != PQTRANS_IDLE)
    pl_pg_q(g, NULL, "ROLLBACK", NULL);
}

/* What the buckets hold on S that is not named by an id: their users'
 * names and the conversations homed in them (1:1 and the groups'). */
static pl_err pl__lists(pl__mv *mv) {
  size_t nn = 0, nc = 0, ng = 0;
  char *groups = NULL, *q = pl__sql("SELECT name FROM users WHERE %s ORDER BY name", pl__in(mv, "id"));
  pl_err e = pl__list(mv, q, NULL, &mv->names, &nn);
  pl_free(q);
  if (e == PL_OK) {
    char *dm = pl__dm_of(mv, "conv");
    q = pl__sql("SELECT conv FROM convs WHERE %s ORDER BY conv", dm);
    e = pl__list(mv, q, pl__homed, &mv->convs, &nc);
    pl_free(q);
    pl_free(dm);
  }
  if (e == PL_OK) {
    q = pl__sql("SELECT 'g:' || gid FROM groups WHERE %s ORDER BY gid", pl__in(mv, "gid"));
    e = pl__list(mv, q, NULL, &groups, &ng);
    pl_free(q);
  }
  if (e == PL_OK) { /* both kinds of conversation in one list */
    char *both = pl__sql("(%s || %s)", mv->convs, groups);
    pl_free(mv->convs);
    mv->convs = both;
    pl_info("move: buckets %u..%u on shard %u: %zu users, %zu conversations, %zu groups", mv->lo, mv->hi,
            mv->from, nn, nc, ng);
  }
  pl_free(groups);
  return e;
}

static pl_err pl__step1(pl__mv *mv) {
  pl__pg *s = mv->db[mv->from], *t = mv->db[mv->to];
  int copied = 0;
  pl_err e = pl__freeze(s);
  if (e == PL_OK)
    e = pl__lists(mv);
  if (e == PL_OK)
    e = pl__x(t, "BEGIN");
  if (e == PL_OK)
    e = pl__clean_t(mv);
  if (e == PL_OK)
    e = pl__copy_plain(mv);
  if (e == PL_OK)
    e = pl__copy_renumbered(mv);
  if (e == PL_OK)
    e = pl__sequences(mv);
  if (e == PL_OK && (e = pl__x(t, "COMMIT")) == PL_OK)
    copied = 1;
  pl__rollback(t);
  if (e == PL_OK)
    pl_info("move: copied to shard %u", mv->to);
  if (e == PL_OK)
    e = pl__fence(s, mv->epoch);
  if (e == PL_OK)
    e = pl__note(mv, s);
  if (e == PL_OK)
    e = pl__x(s, "COMMIT");
  pl__rollback(s);
  if (e != PL_OK && copied) { /* S keeps the buckets: T's copy must not count (listed twice) */
    pl_err c = pl__x(t, "BEGIN");
    if (c == PL_OK && (c = pl__clean_t(mv)) == PL_OK)
      c = pl__x(t, "COMMIT");
    pl__rollback(t);
    if (c != PL_OK)
      pl_warn("move: shard %u keeps a copy of buckets %u..%u: run the move again", mv->to, mv->lo, mv->hi);
  }
  return e;
}

/* ---- steps 2 to 4 ------------------------------------------------------------- */

static pl_err pl__step2(pl__mv *mv) {
  pl_err e = PL_OK;
  for (unsigned i = 0; e == PL_OK && i < mv->n; i++) {
    unsigned k = i + 1 == mv->n ? mv->to : (i >= mv->to ? i + 1 : i); /* T last */
    if (k == mv->from || k >= mv->n)
      continue;
    pl__pg *g = mv->db[k];
    int local = 0;
    e = pl__freeze(g);
    if (e == PL_OK)
      e = pl__fence(g, mv->epoch);
    uint64_t moved = 0;
    if (e == PL_OK) {
      char *q = pl__sql("WITH u AS (UPDATE outbox SET target = %u WHERE target = %u AND %s RETURNING 1)"
                        " SELECT count(*) FROM u",
                        mv->to, mv->from, pl__in(mv, "uid"));
      e = pl_pg_u64(g, &moved, q, NULL);
      pl_free(q);
    }
    if (e == PL_OK && k == mv->to)
      e = pl_pg_relay_local(g, mv->from, mv->lo, mv->hi, &local);
    if (e == PL_OK && k == mv->to)
      e = pl__note(mv, g);
    if (e == PL_OK)
      e = pl__x(g, "COMMIT");
    pl__rollback(g);
    if (e == PL_OK)
      pl_info("move: shard %u fenced at epoch %llu; %llu copies owed to shard %u now owed to shard %u", k,
              (unsigned long long)mv->epoch, (unsigned long long)moved, mv->from, mv->to);
    if (e == PL_OK && local)
      pl_info("move: shard %u: %d copies owed to its new users made there", k, local);
  }
  return e;
}

static pl_err pl__step3(pl__mv *mv) {
  pl_err e = PL_OK;
  for (unsigned k = 0; e == PL_OK && k < mv->n; k++) {
    pl__pg *g = mv->db[k];
    e = pl__x(g, "BEGIN");
    if (e == PL_OK && mv->held_rows) /* the whole map: a shard added since has none of it */
      e = pl__x(
          g, "INSERT INTO bucket_map(bucket, shard, was, epoch, at) VALUES %s ON CONFLICT(bucket) DO NOTHING",
          mv->held_rows);
    if (e == PL_OK)
      e = pl__note(mv, g);
    if (e == PL_OK)
      e = pl__x(g,
                "UPDATE map_epoch SET epoch = greatest(epoch, %1$llu); UPDATE bucket_map SET at ="
                " (extract(epoch FROM clock_timestamp()) * 1000)::bigint WHERE epoch = %1$llu AND at = 0",
                (unsigned long long)mv->epoch);
    if (e == PL_OK && k == mv->from) /* S's pending pushes would go out twice: T has them */
      e = pl__x(g, "DELETE FROM push_pending WHERE %s", pl__in(mv, "device_id"));
    if (e == PL_OK)
      e = pl__x(g, "COMMIT");
    pl__rollback(g);
  }
  if (e == PL_OK)
    pl_info("move: buckets %u..%u are on shard %u from map epoch %llu", mv->lo, mv->hi, mv->to,
            (unsigned long long)mv->epoch);
  return e;
}

/* The fence down on every shard once no node can route by a map older
 * than the move's: the map's lease (PL_PG_MAP_LEASE_MS) plus the longest
 * a node's transaction may sit idle (4 s, pg_db.c) after the publication.
 * Until then every written statement pays for it (benchmarks.md). */
#define PL__FENCE_HOLD_MS (PL_PG_MAP_LEASE_MS + 5000u)

static pl_err pl__unfence(pl__mv *mv) {
  uint64_t wait = 0;
  char *q =
      pl__sql("SELECT greatest(0, coalesce(max(at), 0) + %u - (extract(epoch FROM clock_timestamp()) * 1000)"
              "::bigint) FROM bucket_map WHERE epoch = %llu",
              PL__FENCE_HOLD_MS, (unsigned long long)mv->epoch);
  pl_err e = pl_pg_u64(mv->db[mv->to], &wait, q, NULL);
  pl_free(q);
  if (e == PL_OK && wait) {
    pl_info("move: the fence comes down in %llu ms (every node has read the map by then)",
            (unsigned long long)wait);
    usleep((useconds_t)(wait * 1000));
  }
  /* a transaction per table: DROP TRIGGER waits for the table's writers,
   * and holding one table while waiting for the next deadlocked with a
   * node's transaction that held the next and wanted the first (seen in
   * pg_test_move). Half down is harmless now: no node routes by the old map. */
  for (unsigned k = 0; e == PL_OK && k < mv->n; k++)
    for (size_t i = 0; e == PL_OK && i < PL__NFENCED; i++)
      e = pl__x(mv->db[k], "DROP TRIGGER IF EXISTS pl_fence ON %s", pl__fenced[i]);
  if (e == PL_OK)
    pl_info("move: the fence is down on every shard");
  return e;
}

/* The buckets' rows on the shard they left (the mover's session passes
 * its fence). Messages other devices still hold stay, one reference less. */
static pl_err pl__step4(pl__mv *mv, unsigned was) {
  pl__pg *s = mv->db[was];
  mv->from = was;
  pl_err e = mv->convs ? PL_OK : pl__lists(mv); /* a move finished by a second run */
  if (e == PL_OK)
    e = pl__x(s, "BEGIN");
  if (e == PL_OK)
    e = pl__x(
        s,
        "CREATE TEMP TABLE mv_gone(mid bigint, n bigint) ON COMMIT DROP;"
        "WITH q AS (DELETE FROM queue WHERE %1$s RETURNING mid) INSERT INTO mv_gone SELECT mid, count(*)"
        " FROM q GROUP BY mid;"
        "UPDATE messages m SET refs = m.refs - g.n FROM mv_gone g WHERE m.mid = g.mid;"
        "DELETE FROM messages m USING mv_gone g WHERE m.mid = g.mid AND m.refs <= 0 AND m.gid = 0;"
        "DELETE FROM messages WHERE gid <> 0 AND %2$s;"
        "DELETE FROM dequeued WHERE %1$s; DELETE FROM push_tokens WHERE %1$s; DELETE FROM push_pending WHERE "
        "%1$s;"
        "DELETE FROM gcursor WHERE %2$s; DELETE FROM greads WHERE %2$s; DELETE FROM members WHERE %2$s;"
        "DELETE FROM groups WHERE %2$s; DELETE FROM contacts WHERE %3$s; DELETE FROM blocks WHERE %3$s;"
        "DELETE FROM media_grants WHERE media IN (SELECT id FROM media WHERE %4$s);"
        "DELETE FROM media WHERE %4$s; DELETE FROM blob_chunks WHERE %5$s; DELETE FROM blobs WHERE %6$s;"
        "DELETE FROM devices WHERE %7$s",
        pl__in(mv, "device_id"), pl__in(mv, "gid"), pl__in(mv, "uid"), pl__in(mv, "owner"),
        pl__key_in(mv, "key"), pl__key_in(mv, "key"), pl__in(mv, "user_id"));
  if (e == PL_OK)
    e = pl__x(s,
              "DELETE FROM convs WHERE conv = ANY(%1$s); DELETE FROM dedup WHERE conv = ANY(%1$s);"
              "DELETE FROM msgidx WHERE conv = ANY(%1$s); DELETE FROM conv_timers WHERE conv = ANY(%1$s);"
              "DELETE FROM outbox WHERE conv = ANY(%1$s)",
              mv->convs);
  if (e == PL_OK)
    e = pl__x(s, "DELETE FROM users WHERE %s", pl__in(mv, "id"));
  if (e == PL_OK)
    e = pl__x(s, "COMMIT");
  pl__rollback(s);
  if (e == PL_OK)
    pl_info("move: buckets %u..%u deleted from shard %u", mv->lo, mv->hi, was);
  return e;
}

/* ---- where the buckets are ---------------------------------------------------- */

/* The published map (the newest epoch of any shard) into m; *noted: the
 * epoch of a move of lo..hi to `to` noted on its old shard but not
 * published (0: none), and *was that shard. */
static pl_err pl__where(pl__mv *mv, pl_shardmap *m, uint64_t *noted, unsigned *was) {
  uint64_t best = 0;
  unsigned at = 0;
  pl_err e = PL_OK;
  *noted = 0;
  for (unsigned k = 0; e == PL_OK && k < mv->n; k++) {
    uint64_t ep = 0;
    e = pl_pg_u64(mv->db[k], &ep, "SELECT epoch FROM map_epoch", NULL);
    if (e == PL_OK && (ep > best || k == 0)) {
      best = ep;
      at = k;
    }
  }
  if (e == PL_OK) {
    pl__pg *g = mv->db[at];
    g->map = m; /* loads into m */
    e = pl_pg_map_load(g);
    g->map = NULL;
  }
  if (e == PL_OK) { /* its rows, for the shards that lack them (step 3) */
    PGresult *res = NULL;
    e = pl_pg_q(mv->db[at], &res,
                "SELECT string_agg(format('(%s,%s,%s,%s,%s)', bucket, shard, was, epoch, at), ',')"
                " FROM bucket_map WHERE epoch <= (SELECT epoch FROM map_epoch)",
                NULL);
    if (e == PL_OK && !PQgetisnull(res, 0, 0))
      mv->held_rows = pl_strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
  }
  mv->held = best;
  for (unsigned k = 0; e == PL_OK && k < mv->n; k++) {
    uint64_t c = 0, ep = 0;
    char *q =
        pl__sql("SELECT count(*), coalesce(min(epoch), 0) FROM bucket_map WHERE bucket BETWEEN %u AND %u"
                " AND shard = %u AND epoch > %llu",
                mv->lo, mv->hi, mv->to, (unsigned long long)best);
    PGresult *res = NULL;
    e = pl_pg_q(mv->db[k], &res, q, NULL);
    pl_free(q);
    if (e == PL_OK) {
      c = pl_pg_col_u64(res, 0, 0);
      ep = pl_pg_col_u64(res, 0, 1);
    }
    PQclear(res);
    if (e == PL_OK && c == (uint64_t)(mv->hi - mv->lo + 1) && k != mv->to) {
      *noted = ep;
      *was = k;
    }
  }
  return e;
}

static int pl__usage(void) {
  fprintf(
      stderr,
      "usage: parleyd move-buckets LO[-HI] --to SHARD --store URI --store-shard URI ... [--grace S]\n"
      "                            [--keep-fence]\n"
      "  moves buckets LO..HI (0..%u) from the shard that holds them to shard SHARD (0: --store, 1: the\n"
      "  first --store-shard, ...) while the nodes run; give the shards as the nodes are given them.\n"
      "  --grace S: seconds between the move and the deletion of the rows the old shard kept (10)\n"
      "  --keep-fence: leave the fence up after the move (it costs each written statement a few\n"
      "  microseconds; by default it comes down %u s after the move; run the move again to take it down)\n"
      "  Run it again after a failure: it finishes or redoes the move. One move at a time: while\n"
      "  another runs on the same shards it exits 3 and does nothing. docs/operations.md 16.2\n",
      PL_BUCKETS - 1, PL__FENCE_HOLD_MS / 1000);
  return 2;
}

/* One move at a time: a second mover would read the map the first is
 * changing, take the same epoch and publish over it. Every mover is given
 * shard 0 (--store), so one lock there is enough. It is the session's: it
 * goes with the mover's connection, also when the mover dies. */
static pl_err pl__lock(pl__mv *mv) {
  uint64_t got = 0;
  pl_err e = pl_pg_u64(mv->db[0], &got, "SELECT pg_try_advisory_lock(" PL__MOVE_LOCK ")::int", NULL);
  if (e == PL_OK && !got) {
    pl_error("move: another move is running on these shards (it holds the movers' lock on shard 0):"
             " run this one once it has ended");
    mv->busy = 1;
    e = PL_ERR_AGAIN;
  }
  return e;
}

static pl_err pl__run(pl__mv *mv) {
  pl_shardmap *m = pl_shardmap_new();
  pl_shardmap_set_base(m, mv->base);
  uint64_t noted = 0;
  unsigned was = 0;
  pl_err e = pl__lock(mv);
  if (e == PL_OK)
    e = pl__where(mv, m, &noted, &was);
  if (e != PL_OK)
    goto out;
  mv->epoch = noted ? noted : mv->held + 1;
  for (unsigned k = 0; e == PL_OK && k < mv->n; k++) /* the mover's own writes pass every fence */
    e = pl__x(mv->db[k], "SELECT set_config('parley.epoch', '%llu', false)", (unsigned long long)mv->epoch);
  if (e != PL_OK)
    goto out;
  unsigned at = pl_shardmap_of(m, mv->lo, mv->n);
  int moved = 1, one = 1;
  for (uint32_t b = mv->lo; b <= mv->hi; b++) {
    moved &= pl_shardmap_of(m, b, mv->n) == mv->to;
    one &= pl_shardmap_of(m, b, mv->n) == at;
  }
  if (moved && !noted) {
    uint64_t w = 0;
    char *q = pl__sql("SELECT coalesce((SELECT was FROM bucket_map WHERE bucket = %u), %u)", mv->lo, mv->to);
    e = pl_pg_u64(mv->db[mv->to], &w, q, NULL);
    pl_free(q);
    pl_info("move: buckets %u..%u are on shard %u already", mv->lo, mv->hi, mv->to);
    if (e == PL_OK && w != mv->to && w < mv->n) { /* published everywhere; what the old shard kept */
      mv->from = (unsigned)w;
      mv->epoch = mv->held;
      if ((e = pl__step3(mv)) == PL_OK)
        e = pl__step4(mv, (unsigned)w);
    }
    if (e == PL_OK && !mv->keep_fence)
      e = pl__unfence(mv);
    goto out;
  }
  if (!one) {
    pl_error("move: buckets %u..%u are not all on one shard: move them in parts", mv->lo, mv->hi);
    e = PL_ERR_INVALID_ARGUMENT;
    goto out;
  }
  mv->from = noted ? was : at;
  if (!noted) {
    pl_info("move: buckets %u..%u, shard %u to shard %u, map epoch %llu", mv->lo, mv->hi, mv->from, mv->to,
            (unsigned long long)mv->epoch);
    e = pl__step1(mv);
  } else {
    pl_info("move: finishing the move of buckets %u..%u to shard %u (epoch %llu)", mv->lo, mv->hi, mv->to,
            (unsigned long long)mv->epoch);
  }
  if (e == PL_OK)
    e = pl__step2(mv);
  if (e == PL_OK)
    e = pl__step3(mv);
  if (e == PL_OK && mv->grace_s) {
    pl_info("move: waiting %u s before deleting the rows shard %u kept", mv->grace_s, mv->from);
    sleep(mv->grace_s);
  }
  if (e == PL_OK)
    e = pl__step4(mv, mv->from);
  if (e == PL_OK && !mv->keep_fence)
    e = pl__unfence(mv);
out:
  pl_shardmap_free(m);
  return e;
}

/* A deadlock or serialization failure with a node's transaction
 * (PL_ERR_AGAIN: PostgreSQL aborted the mover's) is no reason to stop:
 * every step is made to be run again (pl__run finds where the move is), so
 * the mover does that itself, a few times, after a short pause. */
#define PL__MOVE_TRIES 5

/* What a run read of the shards (pl__lists, pl__where), freed. */
static void pl__forget(pl__mv *mv) {
  pl_free(mv->names);
  pl_free(mv->convs);
  pl_free(mv->held_rows);
  mv->names = mv->convs = mv->held_rows = NULL;
}

static pl_err pl__run_again(pl__mv *mv) {
  pl_err e = pl__run(mv);
  for (int i = 1; e == PL_ERR_AGAIN && !mv->busy && i < PL__MOVE_TRIES; i++) {
    pl_warn("move: a transaction conflicted with a node's; running the move again (try %d of %d)", i + 1,
            PL__MOVE_TRIES);
    for (unsigned k = 0; k < mv->n; k++)
      pl__rollback(mv->db[k]);
    pl__forget(mv);
    usleep(100000u << i);
    e = pl__run(mv);
  }
  return e;
}

static int pl__range(const char *s, uint32_t *lo, uint32_t *hi) {
  char *end;
  unsigned long a = strtoul(s, &end, 10), b = a;
  if (end == s)
    return -1;
  if (*end == '-') {
    const char *t = end + 1;
    b = strtoul(t, &end, 10);
    if (end == t)
      return -1;
  }
  if (*end || a > b || b >= PL_BUCKETS)
    return -1;
  *lo = (uint32_t)a;
  *hi = (uint32_t)b;
  return 0;
}

int pl_move_main(int argc, char **argv) {
  pl__mv mv = {.grace_s = 10};
  const char *uris[PL__MAX_SHARDS] = {0};
  const char *range = NULL;
  long to = -1;
  unsigned n = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--store") && v) {
      uris[0] = argv[++i];
    } else if (!strcmp(a, "--store-shard") && v && n < PL__MAX_SHARDS) {
      uris[n++] = argv[++i];
    } else if (!strcmp(a, "--to") && v) {
      to = strtol(argv[++i], NULL, 10);
    } else if (!strcmp(a, "--keep-fence")) {
      mv.keep_fence = 1;
    } else if (!strcmp(a, "--grace") && v) {
      mv.grace_s = (unsigned)strtoul(argv[++i], NULL, 10);
    } else if (a[0] != '-' && !range) {
      range = a;
    } else {
      return pl__usage();
    }
  }
  if (!range || pl__range(range, &mv.lo, &mv.hi) != 0 || !uris[0] || n < 2 || to < 0 || to >= (long)n)
    return pl__usage();
  mv.n = n;
  mv.to = (unsigned)to;
  pl_err e = PL_OK;
  unsigned base = 0;
  for (unsigned k = 0; e == PL_OK && k < n; k++) {
    mv.db[k] = pl_pg_session(uris[k], k, n, &base);
    if (!mv.db[k])
      e = PL_ERR_STORE;
    else /* the mover's transactions wait on the nodes' locks, and hold theirs while it copies */
      e = pl__x(mv.db[k], "SET idle_in_transaction_session_timeout = 0; SET statement_timeout = 0;"
                          " SET lock_timeout = '20s'");
  }
  mv.base = base;
  if (e == PL_OK)
    e = pl__run_again(&mv);
  for (unsigned k = 0; k < n; k++)
    if (mv.db[k])
      pl_pg_session_free(mv.db[k]);
  pl__forget(&mv);
  if (mv.busy)
    return 3;
  if (e != PL_OK) {
    pl_error("move: failed (%s); run it again to finish or redo it", pl_err_msg(e));
    return 1;
  }
  return 0;
}
