/* pg_schema: the PostgreSQL schema as a list of versioned migrations.
 *
 * Each migration runs in its own transaction together with the row that
 * records its version in schema_version, so a crash leaves the database at
 * one version or the next, never between. Several parleyd starting at once
 * on an empty or older database take pg_advisory_lock first: one migrates,
 * the others wait and then find nothing left to do. A server never starts
 * on a database newer than it knows. An upgrade is the migrations after
 * the stored version, in place: never a dump and reload. */
#include "pg_internal.h"

/* Any constant both sides agree on: "parley" in ASCII. */
#define PL__MIGRATE_LOCK "112568778877305"

static const char *const pl__migrations[] = {
    /* 1: accounts, 1:1 messages, queues, dedup, watermarks, contacts, blocks */
    "CREATE TABLE users(id bigserial PRIMARY KEY, name text UNIQUE NOT NULL, pwhash text NOT NULL,"
    " created bigint NOT NULL, read_receipts int NOT NULL DEFAULT 1, last_seen bigint NOT NULL DEFAULT 0,"
    " last_seen_vis int NOT NULL DEFAULT 2, group_add int NOT NULL DEFAULT 0);"
    /* next_qid: the device's last queue position taken (gap-free, per device);
     * queued: its queue rows then (until schema 9: PL_PG_QUEUED) */
    "CREATE TABLE devices(id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users(id),"
    " name text NOT NULL, token_hash bytea UNIQUE, created bigint NOT NULL, token_at bigint NOT NULL,"
    " used_at bigint NOT NULL, next_qid bigint NOT NULL DEFAULT 0, queued bigint NOT NULL DEFAULT 0,"
    " UNIQUE(user_id, name));"
    "CREATE TABLE convs(conv text PRIMARY KEY, last_seq bigint NOT NULL, last_ts bigint NOT NULL);"
    "CREATE TABLE messages(mid bigserial PRIMARY KEY, conv text NOT NULL, seq bigint NOT NULL,"
    " sender_uid bigint NOT NULL, from_name text NOT NULL, from_device text NOT NULL,"
    " client_id text NOT NULL, body bytea NOT NULL, client_ts bigint NOT NULL, server_ts bigint NOT NULL,"
    " expires bigint NOT NULL, refs int NOT NULL, kind int NOT NULL DEFAULT 0, aux bigint NOT NULL DEFAULT 0,"
    " gid bigint NOT NULL DEFAULT 0, media_id text, media bytea);"
    "CREATE INDEX messages_expires ON messages(expires);"
    "CREATE INDEX messages_events ON messages(conv, kind, sender_uid) WHERE kind <> 0;"
    "CREATE TABLE queue(device_id bigint NOT NULL, qid bigint NOT NULL, mid bigint NOT NULL,"
    " PRIMARY KEY(device_id, qid));"
    "CREATE INDEX queue_mid ON queue(mid);"
    "CREATE TABLE dedup(device_id bigint NOT NULL, client_id text NOT NULL, conv text NOT NULL,"
    " seq bigint NOT NULL, server_ts bigint NOT NULL, PRIMARY KEY(device_id, client_id));"
    "CREATE INDEX dedup_ts ON dedup(server_ts);"
    "CREATE TABLE reads(uid bigint NOT NULL, conv text NOT NULL, read_seq bigint NOT NULL,"
    " delivered_seq bigint NOT NULL, PRIMARY KEY(uid, conv));"
    "CREATE TABLE contacts(uid bigint NOT NULL, contact_uid bigint NOT NULL, PRIMARY KEY(uid, contact_uid));"
    "CREATE TABLE blocks(uid bigint NOT NULL, blocked_uid bigint NOT NULL, PRIMARY KEY(uid, blocked_uid));",
    /* 2: message actions (pg_acts.c): the packed Act of a message, the
     * index of action targets by (conv, seq), each conversation's timer */
    "ALTER TABLE messages ADD COLUMN act bytea;"
    "CREATE TABLE msgidx(conv text NOT NULL, seq bigint NOT NULL, mid bigint NOT NULL,"
    " sender_uid bigint NOT NULL, server_ts bigint NOT NULL, expires bigint NOT NULL,"
    " deleted int NOT NULL DEFAULT 0, PRIMARY KEY(conv, seq));"
    "CREATE INDEX msgidx_expires ON msgidx(expires);"
    "CREATE TABLE conv_timers(conv text PRIMARY KEY, timer_s bigint NOT NULL);",
    /* 3: push tokens and pending notifications (pg_push.c) */
    "CREATE TABLE push_tokens(device_id bigint PRIMARY KEY, user_id bigint NOT NULL, user_name text NOT NULL,"
    " provider text NOT NULL, token text NOT NULL, updated bigint NOT NULL);"
    "CREATE TABLE push_pending(device_id bigint PRIMARY KEY, user_id bigint NOT NULL, count bigint NOT NULL,"
    " first_ms bigint NOT NULL, due_ms bigint NOT NULL, attempts int NOT NULL,"
    " claim bigint NOT NULL DEFAULT 0, owner text, sender text, conv text, preview bytea);"
    "CREATE INDEX push_pending_due ON push_pending(due_ms);",
    /* 4: uploads (pg_media.c): a row per upload naming its blobs, and the
     * conversations it was sent to (who may fetch it) */
    "CREATE TABLE media(id text PRIMARY KEY, owner bigint NOT NULL, blob text NOT NULL, thumb text NOT NULL,"
    " type text NOT NULL, name text NOT NULL, size bigint NOT NULL, thumb_size bigint NOT NULL,"
    " width bigint NOT NULL, height bigint NOT NULL, thumb_width bigint NOT NULL,"
    " thumb_height bigint NOT NULL, created bigint NOT NULL, expires bigint NOT NULL);"
    "CREATE INDEX media_owner ON media(owner);"
    "CREATE INDEX media_expires ON media(expires);"
    "CREATE INDEX media_blob ON media(blob);"
    "CREATE INDEX media_thumb ON media(thumb);"
    "CREATE INDEX messages_media ON messages(media_id) WHERE media_id IS NOT NULL;"
    "CREATE TABLE media_grants(media text NOT NULL, conv text NOT NULL, PRIMARY KEY(media, conv));",
    /* 5: groups (pg_groups.c, pg_ghist.c): the group, its members (role 0:
     * left, owed history up to left_seq), each device's cursor in each
     * group's history, each member's watermarks; the history itself is
     * message rows with gid set, positioned by seq */
    "CREATE TABLE groups(gid bigserial PRIMARY KEY, name text NOT NULL, description text NOT NULL,"
    " created bigint NOT NULL, members bigint NOT NULL DEFAULT 0);"
    "CREATE TABLE members(gid bigint NOT NULL, uid bigint NOT NULL, role int NOT NULL,"
    " since_seq bigint NOT NULL, left_seq bigint NOT NULL DEFAULT 0, joined bigint NOT NULL,"
    " PRIMARY KEY(gid, uid));"
    "CREATE INDEX members_uid ON members(uid, gid);"
    "CREATE TABLE gcursor(device_id bigint NOT NULL, gid bigint NOT NULL, seq bigint NOT NULL,"
    " PRIMARY KEY(device_id, gid));"
    "CREATE TABLE greads(gid bigint NOT NULL, uid bigint NOT NULL, delivered_seq bigint NOT NULL,"
    " read_seq bigint NOT NULL, PRIMARY KEY(gid, uid));"
    "CREATE INDEX greads_uid ON greads(uid);"
    "CREATE INDEX messages_group ON messages(gid, seq) WHERE gid <> 0;",
    /* 6: when an accepted message vanishes (disappearing messages), so that
     * a retry's SendAck repeats it (pg_acts.c) */
    "ALTER TABLE dedup ADD COLUMN vanish bigint NOT NULL DEFAULT 0;",
    /* 7: the media bytes (pl_blob_pg.c), where every node reaches them: a
     * blob's chunks, then its row, in one transaction; no foreign key, as
     * the chunks come first. The chunks are images and archives, stored
     * out of line without PostgreSQL's compression (it would not shrink them) */
    "CREATE TABLE blobs(key text PRIMARY KEY, size bigint NOT NULL, created bigint NOT NULL);"
    "CREATE TABLE blob_chunks(key text NOT NULL, n int NOT NULL, bytes bytea NOT NULL, PRIMARY KEY(key, n));"
    "ALTER TABLE blob_chunks ALTER COLUMN bytes SET STORAGE EXTERNAL;"
    /* and what every node must hold alike: the key that signs media links */
    "CREATE TABLE secrets(name text PRIMARY KEY, value bytea NOT NULL);",
    /* 8: the operator's ban and the sign-up invites (pg_admin.c) */
    "ALTER TABLE users ADD COLUMN disabled int NOT NULL DEFAULT 0;"
    "CREATE TABLE invites(code text PRIMARY KEY, uses_left bigint NOT NULL, expires bigint NOT NULL,"
    " created bigint NOT NULL);",
    /* 9: a device's queue length as next_qid less the rows deleted since
     * (dequeued), so that an ack no longer locks the device row that sends
     * lock for next_qid (pg_internal.h, PL_PG_QUEUED). devices.queued is
     * left in place, unused (operations.md 1.2: stop the old nodes first). */
    ("CREATE TABLE dequeued(device_id bigint PRIMARY KEY, n bigint NOT NULL);"
     "INSERT INTO dequeued(device_id, n) SELECT id, next_qid - queued FROM devices WHERE next_qid > queued;"),
    /* 10: which shard this database is (docs/scaling.md 7): written by the
     * first server to open it (pl_pg_schema_shard), checked by every later one */
    "CREATE TABLE shard_info(one int PRIMARY KEY CHECK (one = 1), shard int NOT NULL, shards int NOT NULL);",
    /* 11: 1:1 messages and receipts between users of two shards
     * (docs/scaling.md 2, pg_relay.c): on the shard where one was
     * committed, each copy owed to the other shard (self-contained: what
     * the copy stores there), until it committed there; a stream is a
     * conversation's messages (its name) or one kind of its receipts
     * ("conv#kind"). On the receiving shard, each stream's last seq copied
     * in: the guard that makes a copy idempotent and in order */
    "CREATE TABLE outbox(target int NOT NULL, stream text NOT NULL, seq bigint NOT NULL, created bigint NOT "
    "NULL,"
    " conv text NOT NULL, kind int NOT NULL, aux bigint NOT NULL, uid bigint NOT NULL, devs bigint[],"
    " sender_uid bigint NOT NULL, from_name text NOT NULL, from_device text NOT NULL, from_did bigint NOT "
    "NULL,"
    " client_id text NOT NULL, body bytea NOT NULL, client_ts bigint NOT NULL, server_ts bigint NOT NULL,"
    " expires bigint NOT NULL, act bytea, PRIMARY KEY(target, stream, seq));"
    "CREATE INDEX outbox_created ON outbox(target, created);"
    "CREATE TABLE relay(stream text PRIMARY KEY, upto bigint NOT NULL);",
    /* 12: a message's attachment crosses shards with it (the upload and its
     * grants stay on the uploader's shard: pg_media.c) */
    "ALTER TABLE outbox ADD COLUMN media_id text, ADD COLUMN media bytea;",
    /* 13: a member's name beside its id, so that a group's shard lists its
     * members (and names an heir) without reading users of other shards
     * (docs/scaling.md 7, step 4). A name never changes. */
    ("ALTER TABLE members ADD COLUMN name text NOT NULL DEFAULT '';"
     "UPDATE members m SET name = u.name FROM users u WHERE u.id = m.uid;"),
    /* 14: the bucket map (docs/scaling.md 4, pg_move.c, pg_map.c): its
     * epoch, the buckets moved (each with its shard now, the one it left,
     * whose rows the mover deletes once nodes had time to hear, and when
     * the move was published, in the database's ms), and
     * the fence's trigger function: the mover puts it on every table, to
     * refuse the writes of a session that routes by an older map */
    ("CREATE TABLE map_epoch(one int PRIMARY KEY CHECK (one = 1), epoch bigint NOT NULL);"
     "INSERT INTO map_epoch(one, epoch) VALUES(1, 0);"
     "CREATE TABLE bucket_map(bucket int PRIMARY KEY, shard int NOT NULL, was int NOT NULL,"
     " epoch bigint NOT NULL, at bigint NOT NULL DEFAULT 0);"
     "CREATE FUNCTION pl_fence() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
     " RAISE EXCEPTION 'parley: buckets moved (map epoch %); this session routes by epoch %', TG_ARGV[0],"
     " coalesce(nullif(current_setting('parley.epoch', true), ''), '0') USING ERRCODE = 'PLMAP'; END $$;"),
    /* 15: whether the store's ids carry their bucket (docs/scaling.md 4,
     * "Growing a store of one database"): every store's do, even one
     * database's, so that shards can be added to it later; a store of one
     * database that gave ids before this version has users whose ids do
     * not (bucket 0 for all), and can only stay one database */
    ("ALTER TABLE shard_info ADD COLUMN bucketed boolean NOT NULL DEFAULT true;"
     "UPDATE shard_info SET bucketed = (shards > 1 OR NOT EXISTS (SELECT 1 FROM users));"),
};

#define PL__NMIGRATIONS (int)(sizeof pl__migrations / sizeof pl__migrations[0])

int pl_pg_schema_latest(void) { return PL__NMIGRATIONS; }

static pl_err pl__apply(pl__pg *g, int version) {
  char ver[16];
  snprintf(ver, sizeof ver, "%d", version);
  pl_info("store: postgresql schema: migrating to version %d", version);
  pl_err e = pl_pg_q(g, NULL, "BEGIN", NULL);
  if (e == PL_OK)
    e = pl_pg_q(g, NULL, pl__migrations[version - 1], NULL);
  if (e == PL_OK)
    e = pl_pg_q(g, NULL, "INSERT INTO schema_version(version, applied) VALUES($1, $2)", "iu", version,
                pl_now_ms());
  if (e == PL_OK)
    e = pl_pg_q(g, NULL, "COMMIT", NULL);
  if (e != PL_OK)
    pl_pg_q(g, NULL, "ROLLBACK", NULL);
  return e;
}

pl_err pl_pg_schema_migrate(pl__pg *g) {
  uint64_t have = 0;
  pl_err e = pl_pg_q(g, NULL, "SELECT pg_advisory_lock(" PL__MIGRATE_LOCK ")", NULL);
  if (e != PL_OK)
    return e;
  e = pl_pg_q(g, NULL,
              "CREATE TABLE IF NOT EXISTS schema_version(version int PRIMARY KEY, applied bigint NOT NULL)",
              NULL);
  if (e == PL_OK)
    e = pl_pg_u64(g, &have, "SELECT COALESCE(max(version), 0) FROM schema_version", NULL);
  if (e == PL_OK && have > PL__NMIGRATIONS) {
    pl_error("store: postgresql schema version %llu is newer than this server's (%d)",
             (unsigned long long)have, PL__NMIGRATIONS);
    e = PL_ERR_STORE;
  }
  for (int v = (int)have + 1; e == PL_OK && v <= PL__NMIGRATIONS; v++)
    e = pl__apply(g, v);
  pl_pg_q(g, NULL, "SELECT pg_advisory_unlock(" PL__MIGRATE_LOCK ")", NULL);
  return e;
}

/* The database's place in a sharded store, recorded once and then held to:
 * a server given the shards in another order, or fewer of them, would look
 * for users where they are not (and make a second account of a name). The
 * record is (this shard, the shards the store began with: the base the
 * bucket formula spreads over, whether its ids carry their bucket). More
 * shards than the base may be given: a new, empty database becomes an
 * added shard, which holds the buckets the mover brings it (docs/scaling.md
 * 4), and so may a store that began with one database. *base: shard 0's
 * record, which shard 0 (opened first) gives and the others are checked
 * against. A database that gave ids before they carried a bucket (schema
 * 15) and has users cannot become a shard of several: each of its users
 * would be in bucket 0, whatever its name. */
static pl_err pl__unbucketed(unsigned shard, unsigned nshards) {
  pl_error("store: shard %u of %u: this database's users were made before ids carried their bucket"
           " (schema 15), so it can only be a store of one database: it cannot take more shards",
           shard, nshards);
  return PL_ERR_CONFIG;
}

pl_err pl_pg_schema_shard(pl__pg *g, unsigned shard, unsigned nshards, unsigned *base) {
  if (nshards < 1)
    nshards = 1;
  uint64_t users = 0, have_shard = 0, have_n = 0, bucketed = 0;
  pl_err e = pl_pg_u64(g, &have_n, "SELECT COALESCE((SELECT shards FROM shard_info), 0)", NULL);
  if (e == PL_OK && !have_n) { /* the first server to open it (or one older than schema 10) */
    e = pl_pg_u64(g, &users, "SELECT count(*) FROM (SELECT 1 FROM users LIMIT 1) u", NULL);
    if (e == PL_OK && users && nshards > 1) /* refused before it records a place it cannot hold */
      return pl__unbucketed(shard, nshards);
    unsigned k = shard && *base ? *base : nshards; /* an added shard: the store's base */
    if (e == PL_OK)
      e = pl_pg_q(g, NULL,
                  "INSERT INTO shard_info(one, shard, shards, bucketed) VALUES(1, $1, $2, $3 = 0)"
                  " ON CONFLICT DO NOTHING",
                  "iiu", (int)shard, (int)k, users);
    if (e == PL_OK && shard >= k)
      pl_info("store: shard %u added (the store began with %u): it holds the buckets moved to it", shard, k);
  }
  if (e == PL_OK)
    e = pl_pg_u64(g, &have_n, "SELECT shards FROM shard_info", NULL);
  if (e == PL_OK)
    e = pl_pg_u64(g, &have_shard, "SELECT shard FROM shard_info", NULL);
  if (e == PL_OK)
    e = pl_pg_u64(g, &bucketed, "SELECT CASE WHEN bucketed THEN 1 ELSE 0 END FROM shard_info", NULL);
  if (e != PL_OK)
    return e;
  g->bucketed = (int)bucketed;
  if (nshards > 1 && !bucketed)
    return pl__unbucketed(shard, nshards);
  if (!shard)
    *base = (unsigned)have_n;
  if (have_shard != shard || have_n != *base || nshards < have_n) {
    pl_error("store: this database is shard %llu of a store of %llu, but was given as shard %u of %u"
             " (--store is shard 0, each --store-shard the next, in the order first used; shards may"
             " be added at the end, not taken away)",
             (unsigned long long)have_shard, (unsigned long long)have_n, shard, nshards);
    return PL_ERR_CONFIG;
  }
  return PL_OK;
}
