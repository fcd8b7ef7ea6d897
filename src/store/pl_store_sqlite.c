/* pl_store_sqlite: the store backend on SQLite (WAL mode), <dir>/parley.db.
 *
 * Only the store thread writes, so a few small caches sit in front of the
 * tables: queue length per device, last seq/server_ts per conversation, and
 * user -> name + devices. Every cache may hold effects of the open
 * transaction, so rollback() drops them all; they are also trimmed at
 * begin() (never inside a transaction, where callers hold pointers into
 * them) once they grow past PL__CACHE_MAX entries.
 *
 * Schema:
 *   users    id, name (unique), pwhash, created
 *   devices  id, user_id, name, token_hash (unique, NULL = logged out),
 *            created, token_at (when the token was issued), used_at (its
 *            last login or resume); unique (user_id, name)
 *   convs    conv -> last_seq, last_ts: gap-free seq and monotonic
 *            server_ts per conversation (kept when messages are deleted)
 *   messages qid (AUTOINCREMENT: a qid is never reused, even after the
 *            newest message is deleted, because clients page by qid), the
 *            message, expires, refs = queue rows still pointing at it
 *   queue    (device_id, qid): a device's queue, in qid order
 *   dedup    id (append order), device_id, fp, client_id -> conv, seq,
 *            server_ts: outlives the message so a late retry gets its
 *            original ack. Written in append order (id) and found through
 *            an in-memory ring of fingerprints per sending device
 *            (pl_idring); the TTL sweep deletes the oldest ids. Nothing is
 *            keyed by a random value, so a commit dirties few pages.
 *   dedup_rings  device_id -> its ring as saved by pl_idring_save, written
 *            by the sweep (every few seconds), not per message;
 *   meta     'rings_upto': every dedup id up to it is in a saved ring. At
 *            open (and after a rollback) the dedup rows after it are
 *            replayed into the rings, so a crash loses no dedup record.
 *
 *   reads    (uid, conv) -> read_seq, delivered_seq: a user's watermarks;
 *            a row exists for every conversation the user is in (UNREAD)
 *   messages.kind: 0 a message, else an event (pl_msg_kind) queued like one;
 *            a newer event of the same (conv, kind, sender_uid) replaces
 *            the pending one (found through the partial index
 *            messages_events, which holds events only)
 *
 *   groups   gid -> name, description, member count
 *   members  (gid, uid) -> role (0: left), since_qid (history after it is
 *            owed), left_qid (owed up to it once left); by uid too
 *   greads   (gid, uid) -> delivered_seq, read_seq: group receipts
 *   messages.gid: a group's history entry (no queue rows; partial index
 *            messages_group(gid, qid)); devices.acked: the device's Ack,
 *            which is its cursor in every group's history
 *
 * Schema history: 2 replaced dedup(sender_uid, client_id, ..., expires)
 * keyed by the id itself (a random B-tree insert per message); upgrading
 * from 1 drops the old dedup records. 3 added messages.kind/aux,
 * users.read_receipts and reads. 4 added users.last_seen/last_seen_vis,
 * contacts and blocks. 5 added groups, members, greads, messages.gid and
 * devices.acked. 7 added devices.token_at and used_at (token lifetimes; an
 * upgraded data dir's tokens count from the upgrade). */
#include "pl_store.h"

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/pl_log.h"
#include "../common/pl_map.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"
#include "parley.pb-c.h"
#include "pl_idring.h"
#include "pl_store_sqlite_stats.h"

#define PL__SCHEMA_VERSION 7
/* A device's last this-many accepted ids are recognised on retry (within
 * the TTL): the protocol's limit on unanswered Sends (protocol.md 10.1),
 * which is also how far the server reads ahead of its commits; libparley
 * keeps at most 512 in flight. Every Send scans this many fingerprints
 * (4 KiB), so it is not made larger than it must be. */
#define PL__DEDUP_WINDOW 1024u
/* Fingerprints held in memory over all devices before the rings are
 * dropped (and reloaded on demand): ~12 bytes each. */
#define PL__DEDUP_MEM_ENTRIES (4u << 20)
#define PL__FETCH_DEFAULT 256u
#define PL__CACHE_MAX 65536u
/* Far above any configurable message size, well below SQLite's row limit: a
 * body SQLite would refuse must fail alone, not break its whole batch. */
#define PL__MAX_BODY (256u << 20)

/* Room for element n of an array that doubles (from 8) when full. */
static void *pl__reserve(void *p, size_t n, size_t *cap, size_t elem) {
  if (n < *cap)
    return p;
  *cap = *cap ? *cap * 2 : 8;
  return pl_realloc(p, *cap * elem);
}

static const char pl__schema[] =
    "BEGIN;"
    "CREATE TABLE IF NOT EXISTS users(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
    " pwhash TEXT NOT NULL, created INTEGER NOT NULL, read_receipts INTEGER NOT NULL DEFAULT 1,"
    " last_seen INTEGER NOT NULL DEFAULT 0, last_seen_vis INTEGER NOT NULL DEFAULT 2);"
    "CREATE TABLE IF NOT EXISTS devices(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
    " name TEXT NOT NULL, token_hash BLOB UNIQUE, created INTEGER NOT NULL,"
    " acked INTEGER NOT NULL DEFAULT 0, token_at INTEGER NOT NULL DEFAULT 0,"
    " used_at INTEGER NOT NULL DEFAULT 0, UNIQUE(user_id, name));"
    "CREATE TABLE IF NOT EXISTS convs(conv TEXT PRIMARY KEY, last_seq INTEGER NOT NULL,"
    " last_ts INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS messages(qid INTEGER PRIMARY KEY AUTOINCREMENT, conv TEXT NOT NULL,"
    " seq INTEGER NOT NULL, sender_uid INTEGER NOT NULL, from_name TEXT NOT NULL,"
    " from_device TEXT NOT NULL, client_id TEXT NOT NULL, body BLOB NOT NULL,"
    " client_ts INTEGER NOT NULL, server_ts INTEGER NOT NULL, expires INTEGER NOT NULL,"
    " refs INTEGER NOT NULL, kind INTEGER NOT NULL DEFAULT 0, aux INTEGER NOT NULL DEFAULT 0,"
    " gid INTEGER NOT NULL DEFAULT 0, media_id TEXT, media BLOB);"
    "CREATE INDEX IF NOT EXISTS messages_expires ON messages(expires);"
    "CREATE INDEX IF NOT EXISTS messages_events ON messages(conv, kind, sender_uid) WHERE kind != 0;"
    "CREATE TABLE IF NOT EXISTS reads(uid INTEGER NOT NULL, conv TEXT NOT NULL, read_seq INTEGER NOT NULL,"
    " delivered_seq INTEGER NOT NULL, PRIMARY KEY(uid, conv)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS queue(device_id INTEGER NOT NULL, qid INTEGER NOT NULL,"
    " PRIMARY KEY(device_id, qid)) WITHOUT ROWID;"
    /* The TTL sweep deletes queue rows by qid. */
    "CREATE INDEX IF NOT EXISTS queue_qid ON queue(qid);"
    "CREATE TABLE IF NOT EXISTS dedup(id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL,"
    " fp INTEGER NOT NULL, client_id TEXT NOT NULL, conv TEXT NOT NULL, seq INTEGER NOT NULL,"
    " server_ts INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS dedup_rings(device_id INTEGER PRIMARY KEY, ring BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS contacts(uid INTEGER NOT NULL, contact_uid INTEGER NOT NULL,"
    " PRIMARY KEY(uid, contact_uid)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS blocks(uid INTEGER NOT NULL, blocked_uid INTEGER NOT NULL,"
    " PRIMARY KEY(uid, blocked_uid)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS groups(gid INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,"
    " description TEXT NOT NULL, created INTEGER NOT NULL, members INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS members(gid INTEGER NOT NULL, uid INTEGER NOT NULL, role INTEGER NOT NULL,"
    " since_qid INTEGER NOT NULL, left_qid INTEGER NOT NULL, joined INTEGER NOT NULL,"
    " PRIMARY KEY(gid, uid)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS members_uid ON members(uid, gid);"
    "CREATE TABLE IF NOT EXISTS greads(gid INTEGER NOT NULL, uid INTEGER NOT NULL, delivered_seq INTEGER NOT "
    "NULL,"
    " read_seq INTEGER NOT NULL, PRIMARY KEY(gid, uid)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS messages_group ON messages(gid, qid) WHERE gid != 0;"
    /* uploads (protocol.md 13): a row per upload; rows may share a blob (same bytes) */
    "CREATE TABLE IF NOT EXISTS media(id TEXT PRIMARY KEY, owner INTEGER NOT NULL, blob TEXT NOT NULL,"
    " thumb TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,"
    " thumb_size INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,"
    " thumb_width INTEGER NOT NULL, thumb_height INTEGER NOT NULL, created INTEGER NOT NULL,"
    " expires INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS media_owner ON media(owner);"
    "CREATE INDEX IF NOT EXISTS media_expires ON media(expires);"
    "CREATE INDEX IF NOT EXISTS media_blob ON media(blob);"
    "CREATE INDEX IF NOT EXISTS media_thumb ON media(thumb);"
    /* the conversations a message carrying the media went to: who may fetch it */
    "CREATE TABLE IF NOT EXISTS media_grants(media TEXT NOT NULL, conv TEXT NOT NULL,"
    " PRIMARY KEY(media, conv)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS messages_media ON messages(media_id) WHERE media_id IS NOT NULL;"
    /* privacy settings beyond the users columns (no row: the defaults) */
    "CREATE TABLE IF NOT EXISTS privacy(uid INTEGER PRIMARY KEY, group_add INTEGER NOT NULL DEFAULT 0);"
    "PRAGMA user_version = 7;"
    "COMMIT;";

/* name, SQL: every statement is prepared once at open and reused. */
#define PL__STMTS(X)                                                                                         \
  X(BEGIN, "BEGIN IMMEDIATE")                                                                                \
  X(COMMIT, "COMMIT")                                                                                        \
  X(ROLLBACK, "ROLLBACK")                                                                                    \
  X(USER_BY_NAME, "SELECT id, pwhash FROM users WHERE name = ?1")                                            \
  X(USER_BY_ID, "SELECT u.name, u.read_receipts, u.last_seen_vis, COALESCE(p.group_add, 0) FROM users u"     \
                " LEFT JOIN privacy p ON p.uid = u.id WHERE u.id = ?1")                                      \
  X(SET_GROUP_ADD, "INSERT INTO privacy(uid, group_add) VALUES(?1, ?2)"                                      \
                   " ON CONFLICT(uid) DO UPDATE SET group_add = ?2")                                         \
  X(USER_INSERT, "INSERT INTO users(name, pwhash, created) VALUES(?1, ?2, ?3)")                              \
  X(DEVICES_OF, "SELECT id FROM devices WHERE user_id = ?1 AND token_hash IS NOT NULL ORDER BY id")          \
  X(DEVICE_BY_NAME, "SELECT id FROM devices WHERE user_id = ?1 AND name = ?2")                               \
  /* a new device's group cursor starts at the newest qid: it gets nothing older */                          \
  X(DEVICE_INSERT, "INSERT INTO devices(user_id, name, token_hash, created, acked, token_at, used_at)"       \
                   " VALUES(?1, ?2, ?3, ?4, COALESCE((SELECT seq FROM sqlite_sequence"                       \
                   " WHERE name = 'messages'), 0), ?4, ?4)")                                                 \
  X(DEVICE_TOKEN, "UPDATE devices SET token_hash = ?2, token_at = ?3, used_at = ?3 WHERE id = ?1")           \
  X(RESUME, "SELECT d.id, d.user_id, d.name, u.name FROM devices d JOIN users u ON u.id = d.user_id"         \
            " WHERE d.token_hash = ?1 AND d.used_at >= ?2 AND d.token_at >= ?3")                             \
  X(DEVICE_USED, "UPDATE devices SET used_at = max(used_at, ?2) WHERE id = ?1")                              \
  X(DEVICE_LIST, "SELECT id, name, created, used_at FROM devices WHERE user_id = ?1"                         \
                 " AND token_hash IS NOT NULL AND used_at >= ?2 AND token_at >= ?3 ORDER BY id")             \
  X(RING_GET, "SELECT ring FROM dedup_rings WHERE device_id = ?1")                                           \
  X(RING_PUT, "INSERT OR REPLACE INTO dedup_rings(device_id, ring) VALUES(?1, ?2)")                          \
  X(META_GET, "SELECT value FROM meta WHERE key = ?1")                                                       \
  X(META_PUT, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)")                                      \
  X(DEDUP_TAIL, "SELECT id, device_id, fp FROM dedup WHERE id > ?1 ORDER BY id")                             \
  X(DEDUP_MAX, "SELECT COALESCE(max(id), 0) FROM dedup")                                                     \
  X(DEDUP_ROW, "SELECT client_id, conv, seq, server_ts FROM dedup WHERE id = ?1 AND server_ts > ?2")         \
  X(DEDUP_PUT, "INSERT INTO dedup(device_id, fp, client_id, conv, seq, server_ts)"                           \
               " VALUES(?1, ?2, ?3, ?4, ?5, ?6)")                                                            \
  X(CONV_GET, "SELECT last_seq, last_ts FROM convs WHERE conv = ?1")                                         \
  X(CONV_PUT, "INSERT OR REPLACE INTO convs(conv, last_seq, last_ts) VALUES(?1, ?2, ?3)")                    \
  X(MSG_INSERT, "INSERT INTO messages(conv, seq, sender_uid, from_name, from_device, client_id, body,"       \
                " client_ts, server_ts, expires, refs, kind, aux)"                                           \
                " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)")                           \
  X(QUEUE_INSERT, "INSERT INTO queue(device_id, qid) VALUES(?1, ?2)")                                        \
  X(QUEUE_COUNT, "SELECT COUNT(*) FROM queue WHERE device_id = ?1")                                          \
  X(QUEUE_FROM, "SELECT COUNT(*) FROM queue q JOIN messages m ON m.qid = q.qid"                              \
                " WHERE q.device_id = ?1 AND m.sender_uid = ?2 AND m.kind = 0")                              \
  X(FETCH, "SELECT m.qid, m.conv, m.seq, m.from_name, m.from_device, m.client_id, m.body, m.client_ts,"      \
           " m.server_ts, m.kind, m.aux, m.media FROM queue q JOIN messages m ON m.qid = q.qid"              \
           " WHERE q.device_id = ?1 AND q.qid > ?2 AND m.expires > ?3 ORDER BY q.qid LIMIT ?4")              \
  /* the conversations an ack covers, for delivered receipts */                                              \
  X(ACK_CONVS, "SELECT m.conv, max(m.seq), m.sender_uid FROM queue q JOIN messages m ON m.qid = q.qid"       \
               " WHERE q.device_id = ?1 AND q.qid <= ?2 AND m.kind = 0 AND m.sender_uid != ?3"               \
               " GROUP BY m.conv, m.sender_uid")                                                             \
  X(EVENT_OLD, "SELECT qid FROM messages WHERE conv = ?1 AND kind = ?2 AND sender_uid = ?3 AND kind != 0")   \
  X(EVENT_UNQUEUE, "DELETE FROM queue WHERE device_id = ?1 AND qid = ?2")                                    \
  X(EVENT_UNQUEUE_ALL, "DELETE FROM queue WHERE qid = ?1")                                                   \
  X(EVENT_DROP, "DELETE FROM messages WHERE qid = ?1")                                                       \
  X(READS_GET, "SELECT read_seq, delivered_seq FROM reads WHERE uid = ?1 AND conv = ?2")                     \
  X(READS_PUT, "INSERT OR REPLACE INTO reads(uid, conv, read_seq, delivered_seq) VALUES(?1, ?2, ?3, ?4)")    \
  /* the peer's watermarks: none for a user the peer blocked (protocol.md 11.5) */                           \
  X(UNREAD, "SELECT r.conv, COALESCE(c.last_seq, 0), r.read_seq,"                                            \
            " CASE WHEN b.uid IS NULL THEN COALESCE(p.delivered_seq, 0) ELSE 0 END,"                         \
            " CASE WHEN u.read_receipts AND pu.read_receipts AND b.uid IS NULL THEN p.read_seq ELSE 0 END"   \
            " FROM reads r LEFT JOIN convs c ON c.conv = r.conv"                                             \
            " LEFT JOIN reads p ON p.conv = r.conv AND p.uid != r.uid LEFT JOIN users pu ON pu.id = p.uid"   \
            " LEFT JOIN blocks b ON b.uid = p.uid AND b.blocked_uid = r.uid"                                 \
            " JOIN users u ON u.id = r.uid WHERE r.uid = ?1 ORDER BY r.conv")                                \
  X(BLOCKS_OF, "SELECT blocked_uid FROM blocks WHERE uid = ?1")                                              \
  X(BLOCK_ADD, "INSERT OR IGNORE INTO blocks(uid, blocked_uid) VALUES(?1, ?2)")                              \
  X(BLOCK_DEL, "DELETE FROM blocks WHERE uid = ?1 AND blocked_uid = ?2")                                     \
  X(CONTACT_ADD, "INSERT OR IGNORE INTO contacts(uid, contact_uid) VALUES(?1, ?2)")                          \
  X(CONTACT_DEL, "DELETE FROM contacts WHERE uid = ?1 AND contact_uid = ?2")                                 \
  X(CONTACT_HAS, "SELECT 1 FROM contacts WHERE uid = ?1 AND contact_uid = ?2")                               \
  X(CONTACT_LIST, "SELECT u.name FROM contacts c JOIN users u ON u.id = c.contact_uid"                       \
                  " WHERE c.uid = ?1 ORDER BY u.name")                                                       \
  X(USER_SEEN, "UPDATE users SET last_seen = max(last_seen, ?2) WHERE id = ?1")                              \
  X(USER_LAST_SEEN, "SELECT last_seen FROM users WHERE id = ?1")                                             \
  X(SET_LAST_SEEN_VIS, "UPDATE users SET last_seen_vis = ?2 WHERE id = ?1")                                  \
  X(SET_RECEIPTS, "UPDATE users SET read_receipts = ?2 WHERE id = ?1")                                       \
  X(ACK_REFS, "UPDATE messages SET refs = refs - 1"                                                          \
              " WHERE qid IN (SELECT qid FROM queue WHERE device_id = ?1 AND qid <= ?2)")                    \
  X(ACK_MSGS, "DELETE FROM messages WHERE refs <= 0"                                                         \
              " AND qid IN (SELECT qid FROM queue WHERE device_id = ?1 AND qid <= ?2)")                      \
  X(ACK_QUEUE, "DELETE FROM queue WHERE device_id = ?1 AND qid <= ?2")                                       \
  X(EXPIRE_QUEUE, "DELETE FROM queue WHERE qid IN (SELECT qid FROM messages WHERE expires <= ?1)")           \
  X(EXPIRE_MSGS, "DELETE FROM messages WHERE expires <= ?1")                                                 \
  /* ---- groups ---- */                                                                                     \
  X(GROUP_INSERT, "INSERT INTO groups(name, description, created, members) VALUES(?1, ?2, ?3, 0)")           \
  X(GROUP_GET, "SELECT name, description, members FROM groups WHERE gid = ?1")                               \
  X(GROUP_RENAME, "UPDATE groups SET name = ?2, description = ?3 WHERE gid = ?1")                            \
  X(GROUP_COUNT, "UPDATE groups SET members = members + ?2 WHERE gid = ?1")                                  \
  X(MEMBER_GET, "SELECT role FROM members WHERE gid = ?1 AND uid = ?2")                                      \
  X(MEMBER_PUT, "INSERT OR REPLACE INTO members(gid, uid, role, since_qid, left_qid, joined)"                \
                " VALUES(?1, ?2, ?3, ?4, 0, ?5)")                                                            \
  X(MEMBER_ROLE, "UPDATE members SET role = ?3 WHERE gid = ?1 AND uid = ?2")                                 \
  X(MEMBER_LEFT, "UPDATE members SET role = 0, left_qid = ?3 WHERE gid = ?1 AND uid = ?2")                   \
  X(MEMBERS_LIST, "SELECT u.name, m.role FROM members m JOIN users u ON u.id = m.uid"                        \
                  " WHERE m.gid = ?1 AND m.role > 0 ORDER BY u.name")                                        \
  X(MEMBER_HEIR, "SELECT uid FROM members WHERE gid = ?1 AND role > 0 AND uid != ?2"                         \
                 " ORDER BY role DESC, joined LIMIT 1")                                                      \
  X(GROUPS_OF, "SELECT gid, since_qid, left_qid, role FROM members WHERE uid = ?1 ORDER BY gid")             \
  X(GROUP_LIST, "SELECT g.gid, g.name, g.description, g.members, m.role FROM members m"                      \
                " JOIN groups g ON g.gid = m.gid WHERE m.uid = ?1 AND m.role > 0 ORDER BY g.gid")            \
  X(GMSG_INSERT, "INSERT INTO messages(conv, seq, sender_uid, from_name, from_device, client_id, body,"      \
                 " client_ts, server_ts, expires, refs, kind, aux, gid)"                                     \
                 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?12, ?13)")                       \
  /* a group's history after a device's cursor (its own sends included: one stream per group) */             \
  X(GFETCH,                                                                                                  \
    "SELECT qid, conv, seq, from_name, from_device, client_id, body, client_ts, server_ts, kind,"            \
    " aux, media FROM messages WHERE gid = ?1 AND gid != 0 AND qid > ?2 AND qid <= ?3 AND expires > ?4"      \
    " ORDER BY qid LIMIT ?5")                                                                                \
  X(DEV_ACKED_GET, "SELECT acked FROM devices WHERE id = ?1")                                                \
  X(DEV_ACKED_PUT, "UPDATE devices SET acked = max(acked, ?2) WHERE id = ?1")                                \
  X(DEV_ACKED_NOW, "UPDATE devices SET acked = COALESCE((SELECT seq FROM sqlite_sequence"                    \
                   " WHERE name = 'messages'), 0) WHERE id = ?1")                                            \
  X(GROUPS_ALL, "SELECT gid FROM groups")                                                                    \
  /* how far every device of every member (present, or gone with history owed) has it */                     \
  X(GROUP_CURSOR, "SELECT min(max(d.acked, m.since_qid)) FROM members m JOIN devices d"                      \
                  " ON d.user_id = m.uid AND d.token_hash IS NOT NULL WHERE m.gid = ?1")                     \
  X(GROUP_TRIM, "DELETE FROM messages WHERE gid = ?1 AND gid != 0 AND qid <= ?2")                            \
  /* a member who left is forgotten once its devices have all it was owed, or it expired */                  \
  X(GROUP_FORGET, "DELETE FROM members WHERE gid = ?1 AND role = 0 AND (left_qid <= COALESCE("               \
                  "(SELECT min(d.acked) FROM devices d WHERE d.user_id = members.uid"                        \
                  " AND d.token_hash IS NOT NULL), left_qid) OR left_qid < COALESCE("                        \
                  "(SELECT min(qid) FROM messages WHERE gid = ?1 AND gid != 0), left_qid + 1))")             \
  X(GREADS_SET, "UPDATE greads SET delivered_seq = ?3, read_seq = ?4 WHERE gid = ?1 AND uid = ?2")           \
  X(GLAST, "SELECT qid, seq FROM messages WHERE gid = ?1 AND gid != 0 ORDER BY qid DESC LIMIT 1")            \
  X(GHIST_COUNT, "SELECT count(*) FROM messages WHERE gid = ?1 AND gid != 0")                                \
  X(GHIST_DROP,                                                                                              \
    "DELETE FROM messages WHERE qid = (SELECT min(qid) FROM messages WHERE gid = ?1 AND gid != 0)")          \
  X(GROUP_SIZE, "SELECT members FROM groups WHERE gid = ?1")                                                 \
  X(GROUP_DEVICES, "SELECT d.id FROM members m JOIN devices d ON d.user_id = m.uid"                          \
                   " AND d.token_hash IS NOT NULL WHERE m.gid = ?1 AND m.role > 0")                          \
  /* the devices of a group's members who blocked ?2 (not told of its typing) */                             \
  X(GROUP_BLOCKERS, "SELECT d.id FROM members m JOIN blocks b ON b.uid = m.uid AND b.blocked_uid = ?2"       \
                    " JOIN devices d ON d.user_id = m.uid AND d.token_hash IS NOT NULL"                      \
                    " WHERE m.gid = ?1 AND m.role > 0")                                                      \
  X(GREADS_PUT, "INSERT OR REPLACE INTO greads(gid, uid, delivered_seq, read_seq) VALUES(?1, ?2, ?3, ?3)")   \
  X(GREADS_GET, "SELECT delivered_seq, read_seq FROM greads WHERE gid = ?1 AND uid = ?2")                    \
  X(GREADS_DEL, "DELETE FROM greads WHERE gid = ?1 AND uid = ?2")                                            \
  X(GREADS_COUNT, "SELECT count(*), COALESCE(sum(delivered_seq >= ?2), 0), COALESCE(sum(read_seq >= ?2), 0)" \
                  " FROM greads WHERE gid = ?1 AND uid != ?3")                                               \
  X(GREADS_NAMES, "SELECT u.name, g.delivered_seq >= ?2, g.read_seq >= ?2 FROM greads g"                     \
                  " JOIN users u ON u.id = g.uid WHERE g.gid = ?1 AND g.uid != ?3 ORDER BY u.name")          \
  /* the newest seq of a group among the qids an Ack covers */                                               \
  X(GACK_SEQ, "SELECT max(seq) FROM messages WHERE gid = ?1 AND gid != 0 AND qid > ?2 AND qid <= ?3")        \
  X(GSENDERS_QID, "SELECT DISTINCT sender_uid FROM messages WHERE gid = ?1 AND gid != 0 AND qid > ?2"        \
                  " AND qid <= ?3 AND kind = 0 AND sender_uid != ?4")                                        \
  X(GSENDERS_SEQ, "SELECT DISTINCT sender_uid FROM messages WHERE gid = ?1 AND gid != 0 AND seq > ?2"        \
                  " AND seq <= ?3 AND kind = 0 AND sender_uid != ?4")                                        \
  X(UNREAD_GROUPS, "SELECT 'g:' || g.gid, COALESCE(c.last_seq, 0), g.read_seq FROM greads g"                 \
                   " LEFT JOIN convs c ON c.conv = 'g:' || g.gid WHERE g.uid = ?1 ORDER BY g.gid")           \
  /* ---- media ---- */                                                                                      \
  X(MEDIA_INSERT, "INSERT INTO media(id, owner, blob, thumb, type, name, size, thumb_size, width, height,"   \
                  " thumb_width, thumb_height, created, expires)"                                            \
                  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)")                    \
  X(MEDIA_GET, "SELECT owner, blob, thumb, type, name, size, thumb_size, width, height, thumb_width,"        \
               " thumb_height, created, expires FROM media WHERE id = ?1")                                   \
  X(MEDIA_USAGE, "SELECT COALESCE(sum(size + thumb_size), 0) FROM media WHERE owner = ?1")                   \
  X(MEDIA_GRANT, "INSERT OR IGNORE INTO media_grants(media, conv) VALUES(?1, ?2)")                           \
  X(MEDIA_GRANTS, "SELECT conv FROM media_grants WHERE media = ?1")                                          \
  X(MEDIA_TOUCH, "UPDATE media SET expires = max(expires, ?2) WHERE id = ?1")                                \
  X(MEDIA_ATTACH, "UPDATE messages SET media_id = ?2, media = ?3 WHERE qid = ?1")                            \
  /* uploads past their TTL that no stored message carries */                                                \
  X(MEDIA_EXPIRED, "SELECT id, blob, thumb FROM media WHERE expires <= ?1 AND NOT EXISTS"                    \
                   " (SELECT 1 FROM messages WHERE media_id = media.id) LIMIT 256")                          \
  X(MEDIA_DEL, "DELETE FROM media WHERE id = ?1")                                                            \
  X(MEDIA_GRANTS_DEL, "DELETE FROM media_grants WHERE media = ?1")                                           \
  X(BLOB_USED, "SELECT 1 FROM media WHERE blob = ?1 OR thumb = ?1 LIMIT 1")                                  \
  X(MSG_MAXQID, "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0)")             \
  /* ids follow commit order, so the expired records are (about) a prefix */                                 \
  X(EXPIRE_DEDUP, "DELETE FROM dedup WHERE id < COALESCE((SELECT id FROM dedup WHERE server_ts > ?1"         \
                  " ORDER BY id LIMIT 1), (SELECT max(id) + 1 FROM dedup))")

enum {
#define PL__STMT_ENUM(name, sql) ST_##name,
  PL__STMTS(PL__STMT_ENUM)
#undef PL__STMT_ENUM
      ST__COUNT
};

static const char *const pl__sql[ST__COUNT] = {
#define PL__STMT_SQL(name, sql) sql,
    PL__STMTS(PL__STMT_SQL)
#undef PL__STMT_SQL
};

/* A cached user: name and device ids (ascending). */
typedef struct pl__user {
  uint64_t id;
  char *name;
  int read_receipts, last_seen_vis, group_add;
  uint64_t *blocked; /* users this one blocked */
  size_t nblocked;
  uint64_t *devs;
  size_t ndevs;
  struct pl__mship *ms; /* group memberships (incl. left ones still owed history) */
  size_t nms;
  int ms_loaded;
} pl__user;

/* A user's row in a group's members (role 0: left, history up to left_qid owed). */
typedef struct pl__mship {
  uint64_t gid, since_qid, left_qid;
  int role;
} pl__mship;

/* A cached pair of watermarks of one user in one conversation; written
 * once per commit like the conversation counters. */
typedef struct pl__read {
  uint64_t uid;
  char *conv;
  uint64_t read_seq, delivered_seq;
  struct pl__read *next_dirty;
  int dirty;
} pl__read;

/* A cached conversation counter. Counters live here during a transaction
 * and are written once per commit (pl__convs_flush), not once per message. */
typedef struct pl__conv {
  char *name;
  uint64_t seq, ts;
  struct pl__conv *next_dirty;
  int dirty;
} pl__conv;

typedef struct pl__sq {
  sqlite3 *db;
  sqlite3_stmt *st[ST__COUNT];
  uint64_t ttl_ms;
  uint32_t max_devices, max_queue, max_group;
  uint32_t group_detail; /* groups up to this size get named receipts and live receipt updates */
  pl_map qlen;           /* device id -> queue length + 1 (values must not be NULL) */
  pl_map convs;          /* hash(conv) -> pl__conv */
  pl_map users;          /* user id -> pl__user (owner) */
  pl_map names;          /* hash(name) -> pl__user (borrowed from users) */
  pl__conv *dirty;       /* convs whose counter moved in this transaction */
  pl_map reads;          /* hash(uid, conv) -> pl__read */
  pl_map dacks;          /* device -> pl__dack: its cursor in group histories */
  pl_map greads;         /* pl__gread_key(gid, uid) -> pl__gread: group watermarks */
  pl_map gmeta;          /* gid -> pl__gmeta */
  size_t gdirty;         /* entries of dacks and greads not yet written (may over-count) */
  pl__read *dirty_reads;
  int (*online)(void *ud, uint64_t device);
  void *online_ud;
  uint64_t media_ttl_ms;
  void (*blob_gone)(void *ud, const char *key);
  int (*blob_exists)(void *ud, const char *key);
  void *blob_ud;
  char **gone; /* blob keys the open transaction leaves unused: dropped after its commit */
  size_t ngone, gone_cap;
  pl_map rings;   /* device id -> pl_idring of its recent client ids */
  pl_map unsaved; /* device id -> 1: its ring has entries not in dedup_rings */
  size_t ring_entries;
  /* the rules the core gives (pl_store_rules), and what they need counted:
   * device id -> pl_map * of sender uid -> its messages queued there + 1 */
  pl_store_rules rules;
  pl_map shares;
} pl__sq;

/* ---- small SQLite helpers ------------------------------------------------ */

static pl_err pl__sql_err(pl__sq *q, sqlite3_stmt *st, int rc) {
  pl_error("store: sqlite error %d (%s) in: %s", rc, sqlite3_errmsg(q->db), st ? sqlite3_sql(st) : "?");
  return PL_ERR_STORE;
}

static void pl__bind_u64(sqlite3_stmt *st, int i, uint64_t v) { sqlite3_bind_int64(st, i, (sqlite3_int64)v); }

static void pl__bind_text(sqlite3_stmt *st, int i, const char *s) {
  sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
}

static uint64_t pl__col_u64(sqlite3_stmt *st, int i) { return (uint64_t)sqlite3_column_int64(st, i); }

static char *pl__col_str(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return pl_strndup(t ? (const char *)t : "", (size_t)sqlite3_column_bytes(st, i));
}

/* A time for SQL, where integers are signed 64-bit. */
static uint64_t pl__clamp(uint64_t v) { return v > INT64_MAX ? INT64_MAX : v; }

static uint64_t pl__expires(const pl__sq *q, uint64_t ts) {
  if (!q->ttl_ms || ts >= INT64_MAX - q->ttl_ms)
    return INT64_MAX; /* ttl 0: never */
  return ts + q->ttl_ms;
}

/* Steps a statement that returns no rows and resets it. */
static pl_err pl__run(pl__sq *q, sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* Runs a statement bound to (a). */
static pl_err pl__run_text(pl__sq *q, int stmt, const char *a) {
  sqlite3_stmt *st = q->st[stmt];
  pl__bind_text(st, 1, a);
  return pl__run(q, st);
}

static pl_err pl__run1(pl__sq *q, int stmt, uint64_t a) {
  pl__bind_u64(q->st[stmt], 1, a);
  return pl__run(q, q->st[stmt]);
}

/* Runs a statement bound to (a, b). */
static pl_err pl__run2(pl__sq *q, int stmt, uint64_t a, uint64_t b) {
  sqlite3_stmt *st = q->st[stmt];
  pl__bind_u64(st, 1, a);
  pl__bind_u64(st, 2, b);
  return pl__run(q, st);
}

/* Runs a statement bound to (a, b, c). */
static pl_err pl__run3(pl__sq *q, int stmt, uint64_t a, uint64_t b, uint64_t c) {
  pl__bind_u64(q->st[stmt], 3, c);
  return pl__run2(q, stmt, a, b);
}

/* Steps a query once: *found = 1 with a row to read (the caller resets). */
static pl_err pl__row(pl__sq *q, sqlite3_stmt *st, int *found) {
  int rc = sqlite3_step(st);
  *found = rc == SQLITE_ROW;
  if (rc == SQLITE_ROW || rc == SQLITE_DONE)
    return PL_OK;
  pl_err e = pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* One u64 from a query bound to (a, b, c) (as many as it takes); *v = 0 if
 * it returns no row or NULL. */
static pl_err pl__u64_query(pl__sq *q, int stmt, uint64_t a, uint64_t b, uint64_t c, uint64_t *v) {
  sqlite3_stmt *st = q->st[stmt];
  int n = sqlite3_bind_parameter_count(st), found;
  uint64_t args[3] = {a, b, c};
  for (int i = 0; i < n && i < 3; i++)
    pl__bind_u64(st, i + 1, args[i]);
  pl_err e = pl__row(q, st, &found);
  *v = e == PL_OK && found ? pl__col_u64(st, 0) : 0;
  sqlite3_reset(st);
  return e;
}

/* ---- caches --------------------------------------------------------------- */

static uint64_t pl__hash(const char *s) { return pl_hash_bytes(s, strlen(s)); }

static void pl__user_free(pl__user *u) {
  pl_free(u->ms);
  pl_free(u->blocked);
  pl_free(u->name);
  pl_free(u->devs);
  pl_free(u);
}

static void pl__users_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->users, &it, &k, &v);)
    pl__user_free(v);
  pl_map_free(&q->users);
  pl_map_free(&q->names);
}

static void pl__convs_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->convs, &it, &k, &v);) {
    pl__conv *c = v;
    pl_free(c->name);
    pl_free(c);
  }
  pl_map_free(&q->convs);
  q->dirty = NULL;
}

static void pl__rings_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->rings, &it, &k, &v);)
    pl_idring_free(v);
  pl_map_free(&q->rings);
  pl_map_free(&q->unsaved);
  q->ring_entries = 0;
}

static void pl__reads_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->reads, &it, &k, &v);) {
    pl__read *rd = v;
    pl_free(rd->conv);
    pl_free(rd);
  }
  pl_map_free(&q->reads);
  q->dirty_reads = NULL;
}

static void pl__shares_drop_dev(pl__sq *q, uint64_t dev) {
  pl_map *m = pl_map_del(&q->shares, dev);
  if (m)
    pl_map_free(m);
  pl_free(m);
}

static void pl__qlen_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->shares, &it, &k, &v);) {
    pl_map_free(v);
    pl_free(v);
  }
  pl_map_free(&q->shares);
  pl_map_free(&q->qlen);
}

static void pl__caches_drop(pl__sq *q) {
  pl__reads_drop(q);
  pl__rings_drop(q);
  pl__qlen_drop(q);
  pl__convs_drop(q);
  pl__users_drop(q);
}

static void pl__user_forget(pl__sq *q, uint64_t uid) {
  pl__user *u = pl_map_del(&q->users, uid);
  if (!u)
    return;
  uint64_t h = pl__hash(u->name);
  if (pl_map_get(&q->names, h) == u)
    pl_map_del(&q->names, h);
  pl__user_free(u);
}

static pl_err pl__load_devices(pl__sq *q, pl__user *u) {
  sqlite3_stmt *st = q->st[ST_DEVICES_OF];
  size_t cap = 0;
  int rc;
  pl__bind_u64(st, 1, u->id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    u->devs = pl__reserve(u->devs, u->ndevs, &cap, sizeof *u->devs);
    u->devs[u->ndevs++] = pl__col_u64(st, 0);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

static pl_err pl__load_blocked(pl__sq *q, pl__user *u) {
  sqlite3_stmt *st = q->st[ST_BLOCKS_OF];
  size_t cap = 0;
  int rc;
  pl__bind_u64(st, 1, u->id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    u->blocked = pl__reserve(u->blocked, u->nblocked, &cap, sizeof *u->blocked);
    u->blocked[u->nblocked++] = pl__col_u64(st, 0);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* Did u block uid? */
static int pl__blocks(const pl__user *u, uint64_t uid) {
  for (size_t i = 0; i < u->nblocked; i++)
    if (u->blocked[i] == uid)
      return 1;
  return 0;
}

/* The user uid, from the cache or loaded into it; *out = NULL if none. */
static pl_err pl__user_get(pl__sq *q, uint64_t uid, pl__user **out) {
  sqlite3_stmt *st = q->st[ST_USER_BY_ID];
  pl__user *u = NULL;
  int found = 0;
  *out = uid ? pl_map_get(&q->users, uid) : NULL;
  if (*out || !uid)
    return PL_OK;
  pl__bind_u64(st, 1, uid);
  pl_err e = pl__row(q, st, &found);
  if (e != PL_OK || !found)
    goto out;
  u = pl_calloc(1, sizeof *u);
  u->id = uid;
  u->name = pl__col_str(st, 0);
  u->read_receipts = (int)sqlite3_column_int(st, 1);
  u->last_seen_vis = (int)sqlite3_column_int(st, 2);
  u->group_add = (int)sqlite3_column_int(st, 3);
  sqlite3_reset(st);
  e = pl__load_devices(q, u);
  if (e == PL_OK)
    e = pl__load_blocked(q, u);
  if (e != PL_OK)
    goto out;
  pl_map_put(&q->users, uid, u);
  pl_map_put(&q->names, pl__hash(u->name), u);
  *out = u;
  u = NULL;
out:
  sqlite3_reset(st);
  if (u)
    pl__user_free(u);
  return e;
}

/* The id (and optionally a copy of the password hash) of a user name. */
static pl_err pl__user_id(pl__sq *q, const char *name, uint64_t *uid, char **pwhash) {
  sqlite3_stmt *st = q->st[ST_USER_BY_NAME];
  int found;
  *uid = 0;
  pl__bind_text(st, 1, name);
  pl_err e = pl__row(q, st, &found);
  if (e == PL_OK && found) {
    *uid = pl__col_u64(st, 0);
    if (pwhash)
      *pwhash = pl__col_str(st, 1);
  }
  sqlite3_reset(st);
  return e;
}

static pl_err pl__user_by_name(pl__sq *q, const char *name, pl__user **out) {
  uint64_t uid;
  *out = pl_map_get(&q->names, pl__hash(name));
  if (*out && strcmp((*out)->name, name) == 0)
    return PL_OK;
  *out = NULL;
  pl_err e = pl__user_id(q, name, &uid, NULL);
  if (e != PL_OK || !uid)
    return e;
  e = pl__user_get(q, uid, out);
  if (*out)
    pl_map_put(&q->names, pl__hash(name), *out);
  return e;
}

/* Queue length of a device (cached; counted on a miss). */
static pl_err pl__qlen(pl__sq *q, uint64_t dev, uint64_t *n) {
  sqlite3_stmt *st = q->st[ST_QUEUE_COUNT];
  void *v = pl_map_get(&q->qlen, dev);
  int found;
  if (v) {
    *n = (uint64_t)((uintptr_t)v - 1);
    return PL_OK;
  }
  pl__bind_u64(st, 1, dev);
  pl_err e = pl__row(q, st, &found);
  *n = e == PL_OK && found ? pl__col_u64(st, 0) : 0;
  sqlite3_reset(st);
  if (e == PL_OK)
    pl_map_put(&q->qlen, dev, (void *)(uintptr_t)(*n + 1));
  return e;
}

static void pl__qlen_add(pl__sq *q, uint64_t dev, int64_t delta) {
  void *v = pl_map_get(&q->qlen, dev);
  if (!v)
    return;
  int64_t n = (int64_t)((uintptr_t)v - 1) + delta;
  if (n < 0)
    pl_map_del(&q->qlen, dev); /* out of step: recount next time */
  else
    pl_map_put(&q->qlen, dev, (void *)(uintptr_t)(n + 1));
}

static pl_err pl__conv_get(pl__sq *q, const char *name, pl__conv **out) {
  sqlite3_stmt *st = q->st[ST_CONV_GET];
  uint64_t h = pl__hash(name);
  pl__conv *c = pl_map_get(&q->convs, h);
  int found;
  *out = c;
  if (c && strcmp(c->name, name) == 0)
    return PL_OK;
  pl__bind_text(st, 1, name);
  pl_err e = pl__row(q, st, &found);
  if (e != PL_OK)
    return e;
  if (!c) {
    c = pl_calloc(1, sizeof *c);
    pl_map_put(&q->convs, h, c);
  }
  pl_free(c->name); /* a hash collision: the entry now caches this conv */
  c->name = pl_strdup(name);
  c->seq = found ? pl__col_u64(st, 0) : 0;
  c->ts = found ? pl__col_u64(st, 1) : 0;
  sqlite3_reset(st);
  *out = c;
  return PL_OK;
}

static void pl__read_touch(pl__sq *q, pl__read *rd) {
  if (!rd->dirty) {
    rd->dirty = 1;
    rd->next_dirty = q->dirty_reads;
    q->dirty_reads = rd;
  }
}

/* The watermarks of uid in conv, from the cache or loaded into it (a row
 * that does not exist yet starts at 0 and is written at commit). */
static pl_err pl__read_get(pl__sq *q, uint64_t uid, const char *conv, pl__read **out) {
  sqlite3_stmt *st = q->st[ST_READS_GET];
  uint64_t h = pl__hash(conv) ^ (uid * 0x9E3779B97F4A7C15ULL);
  pl__read *rd = pl_map_get(&q->reads, h);
  int found;
  *out = rd;
  if (rd && rd->uid == uid && strcmp(rd->conv, conv) == 0)
    return PL_OK;
  if (rd && rd->dirty)
    return PL_ERR_AGAIN; /* a colliding entry still to be written: the caller flushes */
  pl__bind_u64(st, 1, uid);
  pl__bind_text(st, 2, conv);
  pl_err e = pl__row(q, st, &found);
  if (e != PL_OK)
    return e;
  if (!rd) {
    rd = pl_calloc(1, sizeof *rd);
    pl_map_put(&q->reads, h, rd);
  }
  pl_free(rd->conv);
  rd->uid = uid;
  rd->conv = pl_strdup(conv);
  rd->read_seq = found ? pl__col_u64(st, 0) : 0;
  rd->delivered_seq = found ? pl__col_u64(st, 1) : 0;
  sqlite3_reset(st);
  rd->dirty = 0;
  if (!found)
    pl__read_touch(q, rd); /* the row must exist for UNREAD */
  *out = rd;
  return PL_OK;
}

static pl_err pl__reads_flush(pl__sq *q) {
  sqlite3_stmt *st = q->st[ST_READS_PUT];
  pl_err e = PL_OK;
  for (pl__read *rd = q->dirty_reads; rd && e == PL_OK; rd = rd->next_dirty) {
    pl__bind_u64(st, 1, rd->uid);
    pl__bind_text(st, 2, rd->conv);
    pl__bind_u64(st, 3, rd->read_seq);
    pl__bind_u64(st, 4, rd->delivered_seq);
    e = pl__run(q, st);
  }
  if (e != PL_OK)
    return e;
  for (pl__read *rd = q->dirty_reads; rd; rd = rd->next_dirty)
    rd->dirty = 0;
  q->dirty_reads = NULL;
  return PL_OK;
}

/* pl__read_get that makes room when a hash collision holds unwritten data. */
static pl_err pl__read_load(pl__sq *q, uint64_t uid, const char *conv, pl__read **out) {
  pl_err e = pl__read_get(q, uid, conv, out);
  if (e == PL_ERR_AGAIN) {
    e = pl__reads_flush(q);
    if (e == PL_OK)
      e = pl__read_get(q, uid, conv, out);
  }
  return e;
}

/* ---- accounts and devices -------------------------------------------------- */

static pl_err pl__device_insert(pl__sq *q, uint64_t uid, const char *name, const uint8_t *token,
                                uint64_t *id) {
  sqlite3_stmt *st = q->st[ST_DEVICE_INSERT];
  pl__bind_u64(st, 1, uid);
  pl__bind_text(st, 2, name);
  sqlite3_bind_blob(st, 3, token, PL_TOKEN_HASH_LEN, SQLITE_STATIC);
  pl__bind_u64(st, 4, pl_now_ms());
  pl_err e = pl__run(q, st);
  *id = e == PL_OK ? (uint64_t)sqlite3_last_insert_rowid(q->db) : 0;
  pl__user_forget(q, uid); /* its device list changed */
  return e;
}

static pl_err pl__register(pl__sq *q, pl_store_req *r) {
  sqlite3_stmt *st = q->st[ST_USER_INSERT];
  uint64_t uid;
  pl_err e = pl__user_id(q, r->in.user, &uid, NULL);
  if (e != PL_OK)
    return e;
  if (uid) {
    r->status = PL_ERR_USER_EXISTS;
    return PL_OK;
  }
  pl__bind_text(st, 1, r->in.user);
  pl__bind_text(st, 2, r->in.pwhash);
  pl__bind_u64(st, 3, pl_now_ms());
  e = pl__run(q, st);
  if (e != PL_OK)
    return e;
  r->out.user_id = (uint64_t)sqlite3_last_insert_rowid(q->db);
  return pl__device_insert(q, r->out.user_id, r->in.device, r->in.token_hash, &r->out.device_id);
}

static pl_err pl__get_user(pl__sq *q, pl_store_req *r) {
  pl_err e = pl__user_id(q, r->in.user, &r->out.user_id, &r->out.pwhash);
  if (e == PL_OK && !r->out.user_id)
    r->status = PL_ERR_BAD_CREDENTIALS;
  return e;
}

static pl_err pl__set_token(pl__sq *q, uint64_t dev, const uint8_t *token) {
  sqlite3_stmt *st = q->st[ST_DEVICE_TOKEN];
  pl__bind_u64(st, 1, dev);
  if (token)
    sqlite3_bind_blob(st, 2, token, PL_TOKEN_HASH_LEN, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 2);
  pl__bind_u64(st, 3, pl_now_ms());
  return pl__run(q, st);
}

static pl_err pl__device_by_name(pl__sq *q, uint64_t uid, const char *name, uint64_t *dev) {
  sqlite3_stmt *st = q->st[ST_DEVICE_BY_NAME];
  int found;
  pl__bind_u64(st, 1, uid);
  pl__bind_text(st, 2, name);
  pl_err e = pl__row(q, st, &found);
  *dev = e == PL_OK && found ? pl__col_u64(st, 0) : 0;
  sqlite3_reset(st);
  return e;
}

static int pl__has_dev(const pl__user *u, uint64_t dev) {
  for (size_t i = 0; i < u->ndevs; i++)
    if (u->devs[i] == dev)
      return 1;
  return 0;
}

static pl_err pl__login_device(pl__sq *q, pl_store_req *r) {
  pl__user *u;
  pl_err e = pl__device_by_name(q, r->in.user_id, r->in.device, &r->out.device_id);
  if (e != PL_OK)
    return e;
  r->out.user_id = r->in.user_id;
  if (r->out.device_id) { /* a known device: rotate its token */
    e = pl__user_get(q, r->in.user_id, &u);
    if (e != PL_OK)
      return e;
    if (u && q->max_devices && u->ndevs >= q->max_devices && !pl__has_dev(u, r->out.device_id)) {
      r->status = PL_ERR_TOO_MANY_DEVICES; /* logged out, and the others fill the limit */
      return PL_OK;
    }
    int was_out = u && !pl__has_dev(u, r->out.device_id);
    pl__user_forget(q, r->in.user_id); /* it may have been logged out: a target again */
    e = pl__set_token(q, r->out.device_id, r->in.token_hash);
    /* like a new device: group history from now on (its cursor moved to
     * the end when it logged out) */
    return e == PL_OK && was_out ? pl__run1(q, ST_DEV_ACKED_NOW, r->out.device_id) : e;
  }
  e = pl__user_get(q, r->in.user_id, &u);
  if (e != PL_OK)
    return e;
  if (!u)
    r->status = PL_ERR_BAD_CREDENTIALS;
  else if (q->max_devices && u->ndevs >= q->max_devices)
    r->status = PL_ERR_TOO_MANY_DEVICES;
  if (r->status != PL_OK)
    return PL_OK;
  r->out.created = 1;
  return pl__device_insert(q, r->in.user_id, r->in.device, r->in.token_hash, &r->out.device_id);
}

/* A token that is unknown, revoked or expired (in.token_*_after) is
 * BAD_TOKEN; a good one's last use becomes now. */
static pl_err pl__resume(pl__sq *q, pl_store_req *r) {
  sqlite3_stmt *st = q->st[ST_RESUME];
  int found;
  sqlite3_bind_blob(st, 1, r->in.token_hash, PL_TOKEN_HASH_LEN, SQLITE_STATIC);
  pl__bind_u64(st, 2, r->in.token_used_after);
  pl__bind_u64(st, 3, r->in.token_issued_after);
  pl_err e = pl__row(q, st, &found);
  if (e == PL_OK && found) {
    r->out.device_id = pl__col_u64(st, 0);
    r->out.user_id = pl__col_u64(st, 1);
    r->out.device = pl__col_str(st, 2);
    r->out.user = pl__col_str(st, 3);
  } else if (e == PL_OK) {
    r->status = PL_ERR_BAD_TOKEN;
  }
  sqlite3_reset(st);
  return e == PL_OK && found ? pl__run2(q, ST_DEVICE_USED, r->out.device_id, pl_now_ms()) : e;
}

/* ---- send -------------------------------------------------------------------- */

/* groups (below) */
static pl_err pl__send_group(pl__sq *q, pl_store_req *r);
static pl_err pl__fetch_groups(pl__sq *q, pl_store_req *r, uint32_t limit);
static pl_err pl__ack_cursor(pl__sq *q, pl_store_req *r);
static pl_err pl__groups_trim(pl__sq *q, uint64_t *deleted);
static pl_err pl__typing_group(pl__sq *q, pl_store_req *r);
static pl_err pl__gcache_flush(pl__sq *q);

/* The ring of dev's recent ids, loaded from dedup_rings on first use. */
static pl_err pl__ring(pl__sq *q, uint64_t dev, pl_idring **out) {
  sqlite3_stmt *st = q->st[ST_RING_GET];
  pl_idring *r = pl_map_get(&q->rings, dev);
  int found;
  *out = r;
  if (r)
    return PL_OK;
  r = pl_idring_new();
  q->ring_entries += pl_idring_cap(r);
  pl__bind_u64(st, 1, dev);
  pl_err e = pl__row(q, st, &found);
  if (e == PL_OK && found)
    q->ring_entries +=
        pl_idring_load(&r, PL__DEDUP_WINDOW, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
  sqlite3_reset(st);
  if (e != PL_OK) {
    pl_idring_free(r);
    return e;
  }
  pl_map_put(&q->rings, dev, r);
  *out = r;
  return PL_OK;
}

static pl_err pl__ring_push(pl__sq *q, uint64_t dev, uint32_t fp, int64_t row) {
  pl_idring *r;
  pl_err e = pl__ring(q, dev, &r);
  if (e != PL_OK)
    return e;
  q->ring_entries += pl_idring_push(&r, PL__DEDUP_WINDOW, fp, row);
  pl_map_put(&q->rings, dev, r); /* it may have moved */
  pl_map_put(&q->unsaved, dev, (void *)1);
  return PL_OK;
}

static pl_err pl__meta_get(pl__sq *q, const char *key, uint64_t *v) {
  sqlite3_stmt *st = q->st[ST_META_GET];
  int found;
  pl__bind_text(st, 1, key);
  pl_err e = pl__row(q, st, &found);
  *v = e == PL_OK && found ? pl__col_u64(st, 0) : 0;
  sqlite3_reset(st);
  return e;
}

static pl_err pl__meta_put(pl__sq *q, const char *key, uint64_t v) {
  sqlite3_stmt *st = q->st[ST_META_PUT];
  pl__bind_text(st, 1, key);
  pl__bind_u64(st, 2, v);
  return pl__run(q, st);
}

/* Inside a transaction: saves every ring with unsaved entries and moves
 * rings_upto to the newest dedup id, so a restart replays nothing older. */
static pl_err pl__rings_save(pl__sq *q) {
  sqlite3_stmt *st = q->st[ST_RING_PUT];
  uint64_t dev, maxid = 0;
  void *v;
  int found;
  pl_err e = PL_OK;
  for (size_t it = 0; e == PL_OK && pl_map_next(&q->unsaved, &it, &dev, &v);) {
    uint8_t *img;
    size_t len;
    pl_idring_save(pl_map_get(&q->rings, dev), &img, &len);
    pl__bind_u64(st, 1, dev);
    sqlite3_bind_blob(st, 2, img, (int)len, SQLITE_STATIC);
    e = pl__run(q, st);
    pl_free(img);
  }
  if (e == PL_OK) {
    sqlite3_stmt *mx = q->st[ST_DEDUP_MAX];
    e = pl__row(q, mx, &found);
    maxid = e == PL_OK && found ? pl__col_u64(mx, 0) : 0;
    sqlite3_reset(mx);
  }
  if (e == PL_OK)
    e = pl__meta_put(q, "rings_upto", maxid);
  if (e == PL_OK)
    pl_map_free(&q->unsaved); /* a rollback of this transaction replays them */
  return e;
}

/* Replays the dedup rows no saved ring has seen into the rings (at open,
 * and after a rollback dropped rings that held unsaved entries). */
static pl_err pl__rings_replay(pl__sq *q) {
  sqlite3_stmt *st = q->st[ST_DEDUP_TAIL];
  uint64_t upto;
  int rc = SQLITE_DONE;
  pl_err e = pl__meta_get(q, "rings_upto", &upto);
  if (e != PL_OK)
    return e;
  pl__bind_u64(st, 1, upto);
  while (e == PL_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
    e = pl__ring_push(q, pl__col_u64(st, 1), (uint32_t)sqlite3_column_int64(st, 2),
                      sqlite3_column_int64(st, 0));
  if (e == PL_OK && rc != SQLITE_DONE)
    e = pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* The oldest time a dedup record may have and still count. */
static uint64_t pl__dedup_cut(const pl__sq *q, uint64_t now) {
  return q->ttl_ms && now > q->ttl_ms ? now - q->ttl_ms : 0;
}

/* Is client_id one this device committed within the window and the TTL?
 * On a hit, out is filled with the original's conv, seq and server_ts. */
static pl_err pl__dedup_get(pl__sq *q, pl_store_req *r, uint64_t now, int *hit) {
  sqlite3_stmt *st = q->st[ST_DEDUP_ROW];
  const char *id = r->in.client_id;
  uint32_t fp = pl_idring_fp(id, strlen(id)), pos = 0;
  pl_idring *ring;
  int64_t row;
  int found;
  *hit = 0;
  pl_err e = pl__ring(q, r->in.device_id, &ring);
  while (e == PL_OK && !*hit && pl_idring_next(ring, fp, &pos, &row)) {
    pl__bind_u64(st, 1, (uint64_t)row);
    pl__bind_u64(st, 2, pl__clamp(pl__dedup_cut(q, now)));
    e = pl__row(q, st, &found);
    if (e == PL_OK && found && strcmp((const char *)sqlite3_column_text(st, 0), id) == 0) {
      *hit = 1;
      r->out.duplicate = 1;
      r->out.conv = pl__col_str(st, 1);
      r->out.seq = pl__col_u64(st, 2);
      r->out.server_ts = pl__col_u64(st, 3);
    }
    sqlite3_reset(st);
  }
  return e;
}

/* Records the committed id: one append to the table and the index tail of
 * this device, and one entry in its ring. */
static pl_err pl__dedup_put(pl__sq *q, pl_store_req *r, const char *conv, uint64_t seq, uint64_t ts) {
  sqlite3_stmt *st = q->st[ST_DEDUP_PUT];
  const char *id = r->in.client_id;
  uint32_t fp = pl_idring_fp(id, strlen(id));
  pl__bind_u64(st, 1, r->in.device_id);
  pl__bind_u64(st, 2, fp);
  pl__bind_text(st, 3, id);
  pl__bind_text(st, 4, conv);
  pl__bind_u64(st, 5, seq);
  pl__bind_u64(st, 6, pl__clamp(ts));
  pl_err e = pl__run(q, st);
  return e == PL_OK ? pl__ring_push(q, r->in.device_id, fp, sqlite3_last_insert_rowid(q->db)) : e;
}

/* The peer's devices, then the sender's other devices; none twice. */
static uint64_t *pl__targets(const pl__user *peer, const pl__user *me, uint64_t from_dev, size_t *n) {
  uint64_t *t = pl_malloc((peer->ndevs + me->ndevs + 1) * sizeof *t);
  *n = 0;
  if (peer != me)
    for (size_t i = 0; i < peer->ndevs; i++)
      t[(*n)++] = peer->devs[i];
  for (size_t i = 0; i < me->ndevs; i++)
    if (me->devs[i] != from_dev)
      t[(*n)++] = me->devs[i];
  return t;
}

/* ---- a sender's share of a device queue (pl_store_rules.queue_admit) ---- */

typedef struct pl__share_arg {
  pl__sq *q;
  uint64_t dev, sender;
} pl__share_arg;

/* How many of dev's queued messages sender sent (cached; counted on a miss). */
static pl_err pl__share_count(void *arg, uint64_t *n) {
  pl__share_arg *a = arg;
  pl_map *m = pl_map_get(&a->q->shares, a->dev);
  void *v = m ? pl_map_get(m, a->sender) : NULL;
  if (v) {
    *n = (uint64_t)((uintptr_t)v - 1);
    return PL_OK;
  }
  pl_err e = pl__u64_query(a->q, ST_QUEUE_FROM, a->dev, a->sender, 0, n);
  if (e != PL_OK)
    return e;
  if (!m) {
    m = pl_calloc(1, sizeof *m);
    pl_map_put(&a->q->shares, a->dev, m);
  }
  pl_map_put(m, a->sender, (void *)(uintptr_t)(*n + 1));
  return PL_OK;
}

/* Counts the messages just queued from sender (those counted already). */
static void pl__shares_add(pl__sq *q, const uint64_t *t, size_t n, uint64_t sender) {
  for (size_t i = 0; i < n; i++) {
    pl_map *m = pl_map_get(&q->shares, t[i]);
    void *v = m ? pl_map_get(m, sender) : NULL;
    if (v)
      pl_map_put(m, sender, (char *)v + 1);
  }
}

/* *full if a target queue has no room for a message from me: past
 * max_queue, or past my share of it (the core's rule, when given). */
static pl_err pl__queues_full(pl__sq *q, const pl__user *me, const uint64_t *t, size_t n, int *full) {
  uint64_t len;
  *full = 0;
  for (size_t i = 0; (q->max_queue || q->rules.queue_admit) && i < n && !*full; i++) {
    pl_err e = pl__qlen(q, t[i], &len);
    if (e != PL_OK)
      return e;
    if (!q->rules.queue_admit) {
      *full = len >= q->max_queue;
      continue;
    }
    pl__share_arg a = {q, t[i], me->id};
    e = q->rules.queue_admit(q->rules.ud, len, pl__has_dev(me, t[i]), pl__share_count, &a);
    *full = e == PL_ERR_QUEUE_FULL;
    if (e != PL_OK && !*full)
      return e;
  }
  return PL_OK;
}

static char *pl__conv_name(const char *a, const char *b) {
  if (strcmp(a, b) > 0) {
    const char *t = a;
    a = b;
    b = t;
  }
  size_t n = strlen(a) + strlen(b) + 5;
  char *s = pl_malloc(n);
  snprintf(s, n, "dm:%s:%s", a, b);
  return s;
}

/* The next seq of c and its server time, which never goes back within a
 * conv. Nothing is taken until pl__conv_take. */
static void pl__conv_peek(const pl__conv *c, uint64_t now, uint64_t *seq, uint64_t *ts) {
  *seq = c->seq + 1;
  *ts = now > c->ts ? now : c->ts;
}

static void pl__conv_take(pl__sq *q, pl__conv *c, uint64_t seq, uint64_t ts) {
  c->seq = seq;
  c->ts = ts;
  if (!c->dirty) {
    c->dirty = 1;
    c->next_dirty = q->dirty;
    q->dirty = c;
  }
}

/* Writes the counters that moved, inside the transaction about to commit. */
static pl_err pl__convs_flush(pl__sq *q) {
  sqlite3_stmt *st = q->st[ST_CONV_PUT];
  pl_err e = PL_OK;
  for (pl__conv *c = q->dirty; c && e == PL_OK; c = c->next_dirty) {
    pl__bind_text(st, 1, c->name);
    pl__bind_u64(st, 2, c->seq);
    pl__bind_u64(st, 3, pl__clamp(c->ts));
    e = pl__run(q, st);
  }
  if (e != PL_OK)
    return e; /* the caller rolls back, which drops the cache */
  for (pl__conv *c = q->dirty; c; c = c->next_dirty)
    c->dirty = 0;
  q->dirty = NULL;
  return PL_OK;
}

/* out.msg is filled (but for qid) before this runs. */
static pl_err pl__msg_insert(pl__sq *q, pl_store_req *r, uint64_t expires) {
  sqlite3_stmt *st = q->st[ST_MSG_INSERT];
  const pl_msg *m = &r->out.msg;
  pl__bind_text(st, 1, m->conv);
  pl__bind_u64(st, 2, m->seq);
  pl__bind_u64(st, 3, r->in.user_id);
  pl__bind_text(st, 4, m->from);
  pl__bind_text(st, 5, m->from_device);
  pl__bind_text(st, 6, m->id);
  sqlite3_bind_blob(st, 7, m->body, (int)m->body_len, SQLITE_STATIC);
  pl__bind_u64(st, 8, m->client_ts);
  pl__bind_u64(st, 9, m->server_ts);
  pl__bind_u64(st, 10, expires);
  pl__bind_u64(st, 11, r->out.ntargets);
  pl__bind_u64(st, 12, PL_MSG_MESSAGE);
  pl__bind_u64(st, 13, 0);
  pl_err e = pl__run(q, st);
  r->out.msg.qid = e == PL_OK ? (uint64_t)sqlite3_last_insert_rowid(q->db) : 0;
  return e;
}

static pl_err pl__queue_insert(pl__sq *q, const uint64_t *t, size_t n, uint64_t qid) {
  sqlite3_stmt *st = q->st[ST_QUEUE_INSERT];
  pl_err e = PL_OK;
  for (size_t i = 0; i < n && e == PL_OK; i++) {
    pl__bind_u64(st, 1, t[i]);
    pl__bind_u64(st, 2, qid);
    e = pl__run(q, st);
    if (e == PL_OK)
      pl__qlen_add(q, t[i], 1);
  }
  return e;
}

static void pl__fill_msg(pl_store_req *r, const char *from) {
  pl_msg *m = &r->out.msg;
  m->conv = pl_strdup(r->out.conv);
  m->seq = r->out.seq;
  m->from = pl_strdup(from);
  m->from_device = pl_strdup(r->in.device_name ? r->in.device_name : "");
  m->id = pl_strdup(r->in.client_id);
  m->body = pl_memdup(r->in.body, r->in.body_len);
  m->body_len = r->in.body_len;
  m->client_ts = r->in.client_ts;
  m->server_ts = r->out.server_ts;
}

/* Writes an accepted message: dedup row, seq, message row, queue rows. A
 * message with no target (a note to self, no other device) gets a seq and
 * a dedup row but no message row; its qid is 0. */
static pl_err pl__send_write(pl__sq *q, pl_store_req *r, const pl__user *peer, const pl__user *me,
                             uint64_t now) {
  char *conv = pl__conv_name(me->name, peer->name);
  uint64_t seq, ts;
  pl__conv *c;
  pl_err e = pl__conv_get(q, conv, &c);
  if (e == PL_OK) {
    pl__conv_peek(c, now, &seq, &ts);
    e = pl__dedup_put(q, r, conv, seq, ts);
  }
  if (e != PL_OK) {
    pl_free(conv);
    return e;
  }
  pl__read *mine, *theirs;
  if (peer != me)
    e = pl__read_load(q, peer->id, conv, &theirs); /* its row must exist for UNREAD */
  if (e == PL_OK)
    e = pl__read_load(q, me->id, conv, &mine); /* last: the pointer stays valid */
  if (e != PL_OK) {
    pl_free(conv);
    return e;
  }
  if (seq > mine->read_seq) {
    mine->read_seq = seq; /* sending reads the conversation (protocol.md 11.4) */
    pl__read_touch(q, mine);
  }
  pl__conv_take(q, c, seq, ts);
  r->out.conv = conv;
  r->out.seq = seq;
  r->out.server_ts = ts;
  pl__fill_msg(r, me->name);
  if (r->out.ntargets) {
    e = pl__msg_insert(q, r, pl__expires(q, ts));
    if (e == PL_OK)
      e = pl__queue_insert(q, r->out.targets, r->out.ntargets, r->out.msg.qid);
    if (e == PL_OK)
      pl__shares_add(q, r->out.targets, r->out.ntargets, me->id);
  }
  return e;
}

static pl_err pl__send_dm(pl__sq *q, pl_store_req *r, uint64_t now) {
  pl__user *peer = NULL, *me = NULL;
  int full;
  pl_err e = pl__user_by_name(q, r->in.peer, &peer);
  if (e == PL_OK && peer)
    e = pl__user_get(q, r->in.user_id, &me);
  if (e != PL_OK)
    return e;
  if (!peer || !me) {
    r->status = !peer ? PL_ERR_UNKNOWN_PEER : PL_ERR_INVALID_ARGUMENT;
    return PL_OK;
  }
  if (pl__blocks(peer, me->id)) {
    r->status = PL_ERR_BLOCKED; /* nothing stored (protocol.md 11.5) */
    return PL_OK;
  }
  r->out.targets = pl__targets(peer, me, r->in.device_id, &r->out.ntargets);
  e = pl__queues_full(q, me, r->out.targets, r->out.ntargets, &full);
  if (e == PL_OK && full) {
    pl_store_req_clear(r);
    r->status = PL_ERR_QUEUE_FULL;
    return PL_OK;
  }
  return e == PL_OK ? pl__send_write(q, r, peer, me, now) : e;
}

static pl_err pl__media_for_send(pl__sq *q, pl_store_req *r, uint8_t **att, size_t *len);
static pl_err pl__media_attach(pl__sq *q, pl_store_req *r, uint8_t **att, size_t len);

static pl_err pl__send(pl__sq *q, pl_store_req *r) {
  uint64_t now = pl_now_ms();
  int hit;
  uint8_t *att = NULL;
  size_t att_len = 0;
  pl_err e = pl__dedup_get(q, r, now, &hit);
  if (e != PL_OK || hit)
    return e;
  if (r->in.body_len > PL__MAX_BODY) {
    r->status = PL_ERR_MESSAGE_TOO_LARGE;
    return PL_OK;
  }
  /* checked before anything is written: a refused send leaves no trace */
  if (r->in.media_id && *r->in.media_id) {
    e = pl__media_for_send(q, r, &att, &att_len);
    if (e != PL_OK || r->status != PL_OK)
      return e;
  }
  e = r->in.group ? pl__send_group(q, r) : pl__send_dm(q, r, now);
  if (e == PL_OK && r->status == PL_OK && att)
    e = pl__media_attach(q, r, &att, att_len);
  pl_free(att);
  return e;
}

/* ---- fetch and ack ------------------------------------------------------------ */

static void pl__msg_row(sqlite3_stmt *st, pl_msg *m) {
  m->qid = pl__col_u64(st, 0);
  m->conv = pl__col_str(st, 1);
  m->seq = pl__col_u64(st, 2);
  m->from = pl__col_str(st, 3);
  m->from_device = pl__col_str(st, 4);
  m->id = pl__col_str(st, 5);
  const void *body = sqlite3_column_blob(st, 6);
  m->body_len = (size_t)sqlite3_column_bytes(st, 6);
  m->body = pl_memdup(body, m->body_len);
  m->client_ts = pl__col_u64(st, 7);
  m->server_ts = pl__col_u64(st, 8);
  m->kind = (int)sqlite3_column_int(st, 9);
  m->aux = pl__col_u64(st, 10);
  m->media = NULL;
  m->media_len = 0;
  if (sqlite3_column_type(st, 11) == SQLITE_BLOB) {
    m->media_len = (size_t)sqlite3_column_bytes(st, 11);
    m->media = pl_memdup(sqlite3_column_blob(st, 11), m->media_len);
  }
}

static pl_err pl__fetch(pl__sq *q, pl_store_req *r) {
  sqlite3_stmt *st = q->st[ST_FETCH];
  uint32_t limit = r->in.limit ? r->in.limit : PL__FETCH_DEFAULT;
  size_t cap = 0;
  int rc;
  pl__bind_u64(st, 1, r->in.device_id);
  pl__bind_u64(st, 2, pl__clamp(r->in.after));
  pl__bind_u64(st, 3, pl__clamp(pl_now_ms()));
  pl__bind_u64(st, 4, (uint64_t)limit + 1); /* one more tells whether there is more */
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (r->out.nmsgs == limit) {
      r->out.more = 1;
      break;
    }
    if (r->out.nmsgs == cap) {
      cap = cap ? cap * 2 : 16;
      cap = cap < limit ? cap : limit;
      r->out.msgs = pl_realloc(r->out.msgs, cap * sizeof *r->out.msgs);
    }
    pl__msg_row(st, &r->out.msgs[r->out.nmsgs++]);
  }
  pl_err e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  return e == PL_OK ? pl__fetch_groups(q, r, limit) : e;
}

/* ---- events: receipts and read syncs (docs/protocol.md 11.4) --------------- */

/* The signed-in devices of u but skip (0: none skipped). */
static uint64_t *pl__devs_except(const pl__user *u, uint64_t skip, size_t *n) {
  uint64_t *t = pl_malloc((u->ndevs + 1) * sizeof *t);
  *n = 0;
  for (size_t i = 0; i < u->ndevs; i++)
    if (u->devs[i] != skip)
      t[(*n)++] = u->devs[i];
  return t;
}

/* Deletes the pending events a new one of the same (conv, kind, by)
 * replaces, from every queue that holds them. */
static pl_err pl__event_coalesce(pl__sq *q, int kind, const char *conv, uint64_t by, const uint64_t *t,
                                 size_t n) {
  sqlite3_stmt *st = q->st[ST_EVENT_OLD];
  uint64_t old[8];
  size_t nold = 0;
  int rc;
  pl__bind_text(st, 1, conv);
  pl__bind_u64(st, 2, (uint64_t)kind);
  pl__bind_u64(st, 3, by);
  /* Coalescing keeps at most one pending; a few more only after a crash. */
  while ((rc = sqlite3_step(st)) == SQLITE_ROW && nold < sizeof old / sizeof old[0])
    old[nold++] = pl__col_u64(st, 0);
  pl_err e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  for (size_t k = 0; k < nold && e == PL_OK; k++) {
    sqlite3_stmt *un = q->st[ST_EVENT_UNQUEUE];
    for (size_t i = 0; i < n && e == PL_OK; i++) {
      pl__bind_u64(un, 1, t[i]);
      pl__bind_u64(un, 2, old[k]);
      e = pl__run(q, un);
      if (e == PL_OK)
        pl__qlen_add(q, t[i], -(int64_t)sqlite3_changes(q->db));
    }
    static const int drop[] = {ST_EVENT_UNQUEUE_ALL, ST_EVENT_DROP};
    for (size_t j = 0; j < 2 && e == PL_OK; j++) {
      pl__bind_u64(q->st[drop[j]], 1, old[k]);
      e = pl__run(q, q->st[drop[j]]);
    }
  }
  return e;
}

/* Records an event in r->out.events for the deliver hook (qid 0: pushed to
 * connected devices, not stored). Takes t over. */
static void pl__event_out(pl_store_req *r, uint64_t qid, int kind, const char *conv, uint64_t seq,
                          const pl__user *by, uint64_t aux, uint64_t now, uint64_t *t, size_t n) {
  r->out.events = pl_realloc(r->out.events, (r->out.nevents + 1) * sizeof *r->out.events);
  pl_store_event *ev = &r->out.events[r->out.nevents++];
  memset(ev, 0, sizeof *ev);
  ev->msg.qid = qid;
  ev->msg.kind = kind;
  ev->msg.aux = aux;
  ev->msg.conv = pl_strdup(conv);
  ev->msg.seq = seq;
  ev->msg.from = pl_strdup(by->name);
  ev->msg.from_device = pl_strdup("");
  ev->msg.id = pl_strdup("");
  ev->msg.server_ts = now;
  ev->targets = t;
  ev->ntargets = n;
}

/* Moves the connected devices of t[0..*n) to a new array (returned, with
 * its length in *nlive); the rest stay in t. */
static uint64_t *pl__split_online(pl__sq *q, uint64_t *t, size_t *n, size_t *nlive) {
  uint64_t *live = pl_malloc((*n + 1) * sizeof *live);
  size_t keep = 0;
  *nlive = 0;
  for (size_t i = 0; i < *n; i++) {
    if (q->online && q->online(q->online_ud, t[i]))
      live[(*nlive)++] = t[i];
    else
      t[keep++] = t[i];
  }
  *n = keep;
  return live;
}

/* An event (receipt or read sync) for targets (taken over): pushed at once
 * to the connected ones, queued durably for the others, replacing the
 * pending one of the same (conv, kind, by). */
static pl_err pl__event(pl__sq *q, pl_store_req *r, int kind, const char *conv, uint64_t seq,
                        const pl__user *by, uint64_t aux, uint64_t *t, size_t n) {
  sqlite3_stmt *st = q->st[ST_MSG_INSERT];
  uint64_t now = pl_now_ms();
  size_t nlive;
  uint64_t *live = pl__split_online(q, t, &n, &nlive);
  if (nlive)
    pl__event_out(r, 0, kind, conv, seq, by, aux, now, live, nlive);
  else
    pl_free(live);
  pl_err e = n ? pl__event_coalesce(q, kind, conv, by->id, t, n) : PL_OK;
  if (e != PL_OK || !n) {
    pl_free(t);
    return e;
  }
  pl__bind_text(st, 1, conv);
  pl__bind_u64(st, 2, seq);
  pl__bind_u64(st, 3, by->id);
  pl__bind_text(st, 4, by->name);
  pl__bind_text(st, 5, "");
  pl__bind_text(st, 6, "");
  sqlite3_bind_zeroblob(st, 7, 0);
  pl__bind_u64(st, 8, 0);
  pl__bind_u64(st, 9, now);
  pl__bind_u64(st, 10, pl__expires(q, now));
  pl__bind_u64(st, 11, n);
  pl__bind_u64(st, 12, (uint64_t)kind);
  pl__bind_u64(st, 13, aux);
  e = pl__run(q, st);
  uint64_t qid = e == PL_OK ? (uint64_t)sqlite3_last_insert_rowid(q->db) : 0;
  if (e == PL_OK)
    e = pl__queue_insert(q, t, n, qid);
  if (e != PL_OK) {
    pl_free(t);
    return e;
  }
  pl__event_out(r, qid, kind, conv, seq, by, aux, now, t, n);
  return PL_OK;
}

typedef struct pl__acked {
  char *conv;
  uint64_t seq, sender;
} pl__acked;

/* The conversations an ack of dev up to qid covers, with the highest seq
 * acked in each and who sent it (messages from others only). */
static pl_err pl__acked_convs(pl__sq *q, pl_store_req *r, pl__acked **out, size_t *n) {
  sqlite3_stmt *st = q->st[ST_ACK_CONVS];
  size_t cap = 0;
  int rc;
  *out = NULL;
  *n = 0;
  pl__bind_u64(st, 1, r->in.device_id);
  pl__bind_u64(st, 2, pl__clamp(r->in.upto));
  pl__bind_u64(st, 3, r->in.user_id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    *out = pl__reserve(*out, *n, &cap, sizeof **out);
    (*out)[*n].conv = pl__col_str(st, 0);
    (*out)[*n].seq = pl__col_u64(st, 1);
    (*out)[(*n)++].sender = pl__col_u64(st, 2);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* Delivered receipts for an ack: once per conversation whose delivered
 * watermark of the acking user moves, to every device of the sender. */
static pl_err pl__delivered(pl__sq *q, pl_store_req *r) {
  pl__acked *a;
  pl__user *me = NULL, *sender;
  pl__read *rd;
  size_t n, nt;
  pl_err e = pl__acked_convs(q, r, &a, &n);
  if (e == PL_OK && n)
    e = pl__user_get(q, r->in.user_id, &me);
  for (size_t i = 0; i < n && e == PL_OK && me; i++) {
    e = pl__read_load(q, me->id, a[i].conv, &rd);
    if (e != PL_OK || a[i].seq <= rd->delivered_seq)
      continue;
    rd->delivered_seq = a[i].seq;
    pl__read_touch(q, rd);
    e = pl__user_get(q, a[i].sender, &sender);
    if (e == PL_OK && sender && !pl__blocks(me, sender->id)) { /* none to a blocked user (11.5) */
      uint64_t *t = pl__devs_except(sender, 0, &nt);
      e = pl__event(q, r, PL_MSG_DELIVERED, a[i].conv, a[i].seq, me, 0, t, nt);
    }
  }
  for (size_t i = 0; i < n; i++)
    pl_free(a[i].conv);
  pl_free(a);
  return e;
}

static pl_err pl__mark_read_group(pl__sq *q, pl_store_req *r);

static pl_err pl__mark_read(pl__sq *q, pl_store_req *r) {
  if (r->in.group)
    return pl__mark_read_group(q, r);
  pl__user *peer = NULL, *me = NULL;
  pl__conv *c;
  pl__read *rd;
  size_t nt;
  pl_err e = pl__user_by_name(q, r->in.peer, &peer);
  if (e == PL_OK && peer)
    e = pl__user_get(q, r->in.user_id, &me);
  if (e != PL_OK)
    return e;
  if (!peer || !me) {
    r->status = !peer ? PL_ERR_UNKNOWN_PEER : PL_ERR_INVALID_ARGUMENT;
    return PL_OK;
  }
  char *conv = pl__conv_name(me->name, peer->name);
  e = pl__conv_get(q, conv, &c);
  uint64_t last = e == PL_OK ? c->seq : 0;
  uint64_t seq = r->in.upto < last ? r->in.upto : last;
  if (e == PL_OK)
    e = pl__read_load(q, me->id, conv, &rd);
  if (e == PL_OK && seq > rd->read_seq) {
    rd->read_seq = seq;
    pl__read_touch(q, rd);
    uint64_t *t = pl__devs_except(me, r->in.device_id, &nt);
    e = pl__event(q, r, PL_MSG_READ_SYNC, conv, seq, me, last - seq, t, nt);
    /* Read receipts off on either side: none (protocol.md 11.4); none to a
     * user I blocked (11.5). */
    if (e == PL_OK && peer != me && me->read_receipts && peer->read_receipts && !pl__blocks(me, peer->id)) {
      t = pl__devs_except(peer, 0, &nt);
      e = pl__event(q, r, PL_MSG_READ, conv, seq, me, 0, t, nt);
    }
  }
  pl_free(conv);
  return e;
}

static pl_err pl__settings(pl__sq *q, pl_store_req *r) {
  pl__user *me;
  pl_err e = pl__user_get(q, r->in.user_id, &me);
  if (e != PL_OK)
    return e;
  if (!me || r->in.group_add < 0 || r->in.group_add > PL_GROUP_ADD_NOBODY) {
    r->status = PL_ERR_INVALID_ARGUMENT; /* nothing changed */
    return PL_OK;
  }
  if (r->in.group_add) {
    e = pl__run2(q, ST_SET_GROUP_ADD, me->id, (uint64_t)r->in.group_add);
    if (e == PL_OK)
      me->group_add = r->in.group_add;
  }
  if (r->in.read_receipts == 1 || r->in.read_receipts == 2) {
    sqlite3_stmt *st = q->st[ST_SET_RECEIPTS];
    pl__bind_u64(st, 1, me->id);
    pl__bind_u64(st, 2, r->in.read_receipts == 1);
    e = pl__run(q, st);
    if (e == PL_OK)
      me->read_receipts = r->in.read_receipts == 1;
  }
  if (e == PL_OK && r->in.last_seen >= PL_LAST_SEEN_EVERYONE && r->in.last_seen <= PL_LAST_SEEN_NOBODY) {
    e = pl__run2(q, ST_SET_LAST_SEEN_VIS, me->id, (uint64_t)r->in.last_seen);
    if (e == PL_OK)
      me->last_seen_vis = r->in.last_seen;
  }
  r->out.read_receipts = me->read_receipts;
  r->out.last_seen = me->last_seen_vis;
  r->out.group_add = me->group_add ? me->group_add : PL_GROUP_ADD_EVERYONE;
  return e;
}

static pl_err pl__unread(pl__sq *q, pl_store_req *r) {
  sqlite3_stmt *st = q->st[ST_UNREAD];
  size_t cap = 0;
  int rc;
  /* Counters and watermarks of this transaction are still in memory. */
  pl_err e = pl__convs_flush(q);
  if (e == PL_OK)
    e = pl__reads_flush(q);
  if (e != PL_OK)
    return e;
  pl__bind_u64(st, 1, r->in.user_id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    r->out.convs = pl__reserve(r->out.convs, r->out.nconvs, &cap, sizeof *r->out.convs);
    pl_conv_state *cs = &r->out.convs[r->out.nconvs++];
    cs->conv = pl__col_str(st, 0);
    cs->last_seq = pl__col_u64(st, 1);
    cs->read_seq = pl__col_u64(st, 2);
    cs->peer_delivered = pl__col_u64(st, 3);
    cs->peer_read = pl__col_u64(st, 4);
  }
  e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  if (e != PL_OK)
    return e;
  /* then the groups (their receipts are counts: GroupReceiptsGet) */
  if ((e = pl__gcache_flush(q)) != PL_OK)
    return e;
  st = q->st[ST_UNREAD_GROUPS];
  pl__bind_u64(st, 1, r->in.user_id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    r->out.convs = pl__reserve(r->out.convs, r->out.nconvs, &cap, sizeof *r->out.convs);
    pl_conv_state *cs = &r->out.convs[r->out.nconvs++];
    memset(cs, 0, sizeof *cs);
    cs->conv = pl__col_str(st, 0);
    cs->last_seq = pl__col_u64(st, 1);
    cs->read_seq = pl__col_u64(st, 2);
  }
  e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* ---- contacts, blocking, presence, typing (docs/protocol.md 11.5-11.7) ------ */

/* Me and the other user named by r->in.peer; sets a request status (and
 * returns PL_OK) if either is missing or they are the same user. */
static pl_err pl__me_and_peer(pl__sq *q, pl_store_req *r, pl__user **me, pl__user **peer) {
  pl_err e = pl__user_by_name(q, r->in.peer, peer);
  if (e == PL_OK && *peer)
    e = pl__user_get(q, r->in.user_id, me);
  if (e != PL_OK)
    return e;
  if (!*peer)
    r->status = PL_ERR_UNKNOWN_PEER;
  else if (!*me || *me == *peer)
    r->status = PL_ERR_INVALID_ARGUMENT;
  else
    r->out.peer_id = (*peer)->id;
  return PL_OK;
}

static pl_err pl__contacts(pl__sq *q, pl_store_req *r) {
  sqlite3_stmt *st = q->st[ST_CONTACT_LIST];
  pl__user *me = NULL, *peer = NULL;
  size_t cap = 0;
  int rc;
  pl_err e = PL_OK;
  if (r->in.contact_op) {
    e = pl__me_and_peer(q, r, &me, &peer);
    if (e != PL_OK || r->status != PL_OK)
      return e;
    e = pl__run2(q, r->in.contact_op == 1 ? ST_CONTACT_ADD : ST_CONTACT_DEL, me->id, peer->id);
  }
  if (e != PL_OK)
    return e;
  pl__bind_u64(st, 1, r->in.user_id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    r->out.names = pl__reserve(r->out.names, r->out.nnames, &cap, sizeof *r->out.names);
    r->out.names[r->out.nnames++] = pl__col_str(st, 0);
  }
  e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

static pl_err pl__block(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL, *peer = NULL;
  pl_err e = pl__me_and_peer(q, r, &me, &peer);
  if (e != PL_OK || r->status != PL_OK)
    return e;
  e = pl__run2(q, r->in.blocked ? ST_BLOCK_ADD : ST_BLOCK_DEL, me->id, peer->id);
  if (e == PL_OK)
    pl__user_forget(q, me->id); /* its block list changed */
  return e;
}

static pl_err pl__has_contact(pl__sq *q, uint64_t uid, uint64_t contact, int *has) {
  sqlite3_stmt *st = q->st[ST_CONTACT_HAS];
  pl__bind_u64(st, 1, uid);
  pl__bind_u64(st, 2, contact);
  pl_err e = pl__row(q, st, has);
  sqlite3_reset(st);
  return e;
}

/* What viewer may see of u (protocol.md 11.6). */
static pl_err pl__view(pl__sq *q, const pl__user *viewer, const pl__user *u, pl_presence_view *v) {
  sqlite3_stmt *st = q->st[ST_USER_LAST_SEEN];
  int contact = 1, found;
  pl_err e = u == viewer ? PL_OK : pl__has_contact(q, u->id, viewer->id, &contact);
  if (e != PL_OK)
    return e;
  int blocked = pl__blocks(u, viewer->id);
  v->uid = u->id;
  v->visible = contact && !blocked;
  v->seen_visible = u == viewer || (!blocked && (u->last_seen_vis == PL_LAST_SEEN_EVERYONE ||
                                                 (u->last_seen_vis == PL_LAST_SEEN_CONTACTS && contact)));
  pl__bind_u64(st, 1, u->id);
  e = pl__row(q, st, &found);
  v->last_seen = e == PL_OK && found && v->seen_visible ? pl__col_u64(st, 0) : 0;
  sqlite3_reset(st);
  return e;
}

static pl_err pl__presence(pl__sq *q, pl_store_req *r) {
  pl__user *me, *u;
  pl_err e = pl__user_get(q, r->in.user_id, &me);
  if (e != PL_OK || !me) {
    r->status = e == PL_OK ? PL_ERR_INVALID_ARGUMENT : r->status;
    return e;
  }
  r->out.views = pl_calloc(r->in.nusers ? r->in.nusers : 1, sizeof *r->out.views);
  for (size_t i = 0; i < r->in.nusers && e == PL_OK; i++) {
    pl_presence_view *v = &r->out.views[r->out.nviews++];
    v->user = pl_strdup(r->in.users[i]);
    e = pl__user_by_name(q, r->in.users[i], &u);
    if (e == PL_OK && u)
      e = pl__view(q, me, u, v);
  }
  return e;
}

static pl_err pl__seen(pl__sq *q, pl_store_req *r) {
  return pl__run2(q, ST_USER_SEEN, r->in.user_id, pl__clamp(r->in.upto));
}

/* Typing goes to the peer's devices unless the peer blocked the typist. */

static pl_err pl__typing(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL, *peer = NULL;
  if (r->in.group)
    return pl__typing_group(q, r);
  pl_err e = pl__me_and_peer(q, r, &me, &peer);
  if (e != PL_OK || r->status != PL_OK)
    return e;
  r->out.conv = pl__conv_name(me->name, peer->name);
  if (!pl__blocks(peer, me->id))
    r->out.targets = pl__devs_except(peer, 0, &r->out.ntargets);
  return PL_OK;
}

/* Set-based: drop one reference from every acked message, delete those
 * left with none, then the queue rows themselves; delivered receipts first
 * (they read the rows about to go). */
static pl_err pl__ack(pl__sq *q, pl_store_req *r) {
  static const int steps[] = {ST_ACK_REFS, ST_ACK_MSGS, ST_ACK_QUEUE};
  uint64_t queued;
  pl_err e = pl__qlen(q, r->in.device_id, &queued);
  if (e == PL_OK && !queued) /* group history only: no SQL at all */
    return pl__ack_cursor(q, r);
  if (e == PL_OK && r->in.user_id)
    e = pl__delivered(q, r);
  if (e == PL_OK)
    e = pl__ack_cursor(q, r);
  uint64_t upto = pl__clamp(r->in.upto);
  for (size_t i = 0; i < sizeof steps / sizeof steps[0] && e == PL_OK; i++) {
    sqlite3_stmt *st = q->st[steps[i]];
    pl__bind_u64(st, 1, r->in.device_id);
    pl__bind_u64(st, 2, upto);
    e = pl__run(q, st);
  }
  if (e != PL_OK)
    return e;
  r->out.removed = (uint64_t)sqlite3_changes64(q->db);
  pl__qlen_add(q, r->in.device_id, -(int64_t)r->out.removed);
  if (r->out.removed)
    pl__shares_drop_dev(q, r->in.device_id); /* recounted when needed */
  return PL_OK;
}

/* A logged-out device is no longer a target, and what was queued for it is
 * dropped: otherwise a forgotten device would fill its queue and, through
 * QUEUE_FULL, block everyone who writes to its user. Logging in again
 * starts it with the messages sent from then on, like a new device. */
static pl_err pl__logout(pl__sq *q, pl_store_req *r) {
  pl_err e = pl__set_token(q, r->in.device_id, NULL);
  if (e != PL_OK)
    return e;
  r->in.upto = UINT64_MAX;
  e = pl__ack(q, r);
  pl__users_drop(q); /* device lists changed; logouts are rare */
  return e;
}

/* ---- devices ------------------------------------------------------------------ */

static pl_err pl__device_list(pl__sq *q, pl_store_req *r) {
  sqlite3_stmt *st = q->st[ST_DEVICE_LIST];
  pl__bind_u64(st, 1, r->in.user_id);
  pl__bind_u64(st, 2, r->in.token_used_after);
  pl__bind_u64(st, 3, r->in.token_issued_after);
  size_t cap = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    r->out.devices = pl__reserve(r->out.devices, r->out.ndevices, &cap, sizeof *r->out.devices);
    pl_device_row *d = &r->out.devices[r->out.ndevices++];
    d->id = pl__col_u64(st, 0);
    d->name = pl__col_str(st, 1);
    d->created = pl__col_u64(st, 2);
    d->used_at = pl__col_u64(st, 3);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* Revoking a device is logging it out (pl__logout): its token and its queue
 * go. Its id and name are added to out.targets and out.names. */
static pl_err pl__revoke(pl__sq *q, pl_store_req *r, const pl_device_row *d) {
  pl_store_req lo = {.op = PL_STORE_LOGOUT};
  lo.in.device_id = d->id;
  pl_err e = pl__logout(q, &lo);
  pl_store_req_clear(&lo);
  if (e != PL_OK)
    return e;
  r->out.targets = pl_realloc(r->out.targets, (r->out.ntargets + 1) * sizeof *r->out.targets);
  r->out.targets[r->out.ntargets++] = d->id;
  r->out.names = pl_realloc(r->out.names, (r->out.nnames + 1) * sizeof *r->out.names);
  r->out.names[r->out.nnames++] = pl_strdup(d->name);
  return PL_OK;
}

/* DEVICES: revoke (one by name, or all but the asking device), then list
 * what is still signed in. An unknown name, or the asking device's own
 * (Logout is for that), is INVALID_ARGUMENT. */
static pl_err pl__devices(pl__sq *q, pl_store_req *r) {
  pl_err e = pl__device_list(q, r);
  int op = r->in.device_op, found = 0;
  for (size_t i = 0; e == PL_OK && i < r->out.ndevices; i++) {
    const pl_device_row *d = &r->out.devices[i];
    int named = op == PL_DEVICES_REVOKE && !strcmp(d->name, r->in.name);
    found |= named;
    if ((named || op == PL_DEVICES_REVOKE_OTHERS) && d->id != r->in.device_id)
      e = pl__revoke(q, r, d);
  }
  if (e != PL_OK || r->in.device_op == PL_DEVICES_LIST)
    return e;
  if (r->in.device_op == PL_DEVICES_REVOKE && (!found || !r->out.ntargets)) {
    r->status = PL_ERR_INVALID_ARGUMENT;
    return PL_OK;
  }
  for (size_t i = 0; i < r->out.ndevices; i++)
    pl_free(r->out.devices[i].name);
  pl_free(r->out.devices);
  r->out.devices = NULL;
  r->out.ndevices = 0;
  return pl__device_list(q, r);
}

/* ---- group caches ----------------------------------------------------------------- */

/* In a 10,000-member group every message is acked by 10,000 devices within
 * a few commits, so nothing about an ack of group history may cost SQL:
 * each device's cursor (devices.acked) and each member's watermarks
 * (greads) live here and are written by the sweep (every --sweep-interval,
 * a chunk per transaction: pl_store.c), at close, and before a query reads
 * them. A crash loses at most that much
 * progress: the devices get those messages again (same qids: clients drop
 * them, protocol.md 10.6) and ack them again; no message is lost by it. The
 * values only move forward, so a rollback keeps them. */
#define PL__GCACHE_MAX (1u << 18)

typedef struct pl__dack {
  uint64_t acked;
  int dirty;
} pl__dack;

typedef struct pl__gread {
  uint64_t gid, uid, delivered, read;
  int dirty;
} pl__gread;

/* A group's newest history entry and size, for acks without SQL. */
typedef struct pl__gmeta {
  uint64_t last_qid, last_seq, size;
  uint64_t entries; /* rows of its history (0: not counted yet) */
} pl__gmeta;

static uint64_t pl__gread_key(uint64_t gid, uint64_t uid) { return (gid * 0x9E3779B97F4A7C15ULL) ^ uid ^ 1; }

static pl_err pl__dack_get(pl__sq *q, uint64_t dev, uint64_t *acked) {
  pl__dack *d = pl_map_get(&q->dacks, dev);
  if (d) {
    *acked = d->acked;
    return PL_OK;
  }
  pl_err e = pl__u64_query(q, ST_DEV_ACKED_GET, dev, 0, 0, acked);
  if (e == PL_OK) {
    d = pl_calloc(1, sizeof *d);
    d->acked = *acked;
    pl_map_put(&q->dacks, dev, d);
  }
  return e;
}

static void pl__dack_set(pl__sq *q, uint64_t dev, uint64_t acked) {
  pl__dack *d = pl_map_get(&q->dacks, dev);
  if (!d) {
    d = pl_calloc(1, sizeof *d);
    pl_map_put(&q->dacks, dev, d);
  }
  if (acked > d->acked) {
    d->acked = acked;
    q->gdirty += !d->dirty;
    d->dirty = 1;
  }
}

/* The cached watermarks of uid in gid (NULL: not a member). */
static pl_err pl__gread_get(pl__sq *q, uint64_t gid, uint64_t uid, pl__gread **out);

static void pl__gread_mark(pl__sq *q, pl__gread *g) {
  q->gdirty += !g->dirty;
  g->dirty = 1;
}

static pl_err pl__gread_write(pl__sq *q, pl__gread *g) {
  sqlite3_stmt *st = q->st[ST_GREADS_SET];
  pl__bind_u64(st, 1, g->gid);
  pl__bind_u64(st, 2, g->uid);
  pl__bind_u64(st, 3, g->delivered);
  pl__bind_u64(st, 4, g->read);
  pl_err e = pl__run(q, st);
  if (e == PL_OK && g->dirty) {
    g->dirty = 0;
    q->gdirty -= q->gdirty > 0;
  }
  return e;
}

static pl_err pl__gread_get(pl__sq *q, uint64_t gid, uint64_t uid, pl__gread **out) {
  uint64_t key = pl__gread_key(gid, uid);
  pl__gread *g = pl_map_get(&q->greads, key);
  int found;
  *out = NULL;
  if (g && g->gid == gid && g->uid == uid) {
    *out = g;
    return PL_OK;
  }
  if (g && g->dirty) { /* a colliding key: keep its news before it goes */
    pl_err e = pl__gread_write(q, g);
    if (e != PL_OK)
      return e;
  }
  sqlite3_stmt *st = q->st[ST_GREADS_GET];
  pl__bind_u64(st, 1, gid);
  pl__bind_u64(st, 2, uid);
  pl_err e = pl__row(q, st, &found);
  if (e == PL_OK && found) {
    if (!g) {
      g = pl_calloc(1, sizeof *g);
      pl_map_put(&q->greads, key, g);
    }
    *g = (pl__gread){gid, uid, pl__col_u64(st, 0), pl__col_u64(st, 1), 0};
    *out = g;
  }
  sqlite3_reset(st);
  return e;
}

static void pl__gread_forget(pl__sq *q, uint64_t gid, uint64_t uid) {
  uint64_t key = pl__gread_key(gid, uid);
  pl__gread *g = pl_map_get(&q->greads, key);
  if (g && g->gid == gid && g->uid == uid) {
    q->gdirty -= g->dirty && q->gdirty > 0;
    pl_map_del(&q->greads, key);
    pl_free(g);
  }
}

/* Writes up to max cursors and watermarks that moved (inside a
 * transaction); when it gets through them all, none is left unwritten. */
static pl_err pl__gcache_flush_some(pl__sq *q, size_t max) {
  uint64_t k;
  void *v;
  pl_err e = PL_OK;
  size_t n = 0;
  for (size_t it = 0; e == PL_OK && n < max && pl_map_next(&q->dacks, &it, &k, &v);) {
    pl__dack *d = v;
    if (!d->dirty)
      continue;
    if ((e = pl__run2(q, ST_DEV_ACKED_PUT, k, d->acked)) == PL_OK) {
      d->dirty = 0;
      q->gdirty -= q->gdirty > 0;
    }
    n++;
  }
  for (size_t it = 0; e == PL_OK && n < max && pl_map_next(&q->greads, &it, &k, &v);)
    if (((pl__gread *)v)->dirty) {
      e = pl__gread_write(q, v);
      n++;
    }
  if (e == PL_OK && n < max)
    q->gdirty = 0; /* the count may drift up (entries dropped with their map) */
  return e;
}

/* Writes every cursor and watermark that moved (inside a transaction). */
static pl_err pl__gcache_flush(pl__sq *q) { return pl__gcache_flush_some(q, SIZE_MAX); }

static void pl__gmeta_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->gmeta, &it, &k, &v);)
    pl_free(v);
  pl_map_free(&q->gmeta);
}

/* Flushes, then frees the caches of cursors and watermarks. */
static pl_err pl__gcache_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  pl_err e = pl__gcache_flush(q);
  if (e != PL_OK)
    return e;
  for (size_t it = 0; pl_map_next(&q->dacks, &it, &k, &v);)
    pl_free(v);
  pl_map_free(&q->dacks);
  for (size_t it = 0; pl_map_next(&q->greads, &it, &k, &v);)
    pl_free(v);
  pl_map_free(&q->greads);
  return PL_OK;
}

static pl_err pl__gmeta_get(pl__sq *q, uint64_t gid, pl__gmeta **out) {
  pl__gmeta *m = pl_map_get(&q->gmeta, gid);
  int found;
  if (m) {
    *out = m;
    return PL_OK;
  }
  m = pl_calloc(1, sizeof *m);
  sqlite3_stmt *st = q->st[ST_GLAST];
  pl__bind_u64(st, 1, gid);
  pl_err e = pl__row(q, st, &found);
  if (e == PL_OK && found) {
    m->last_qid = pl__col_u64(st, 0);
    m->last_seq = pl__col_u64(st, 1);
  }
  sqlite3_reset(st);
  if (e == PL_OK)
    e = pl__u64_query(q, ST_GROUP_SIZE, gid, 0, 0, &m->size);
  if (e != PL_OK) {
    pl_free(m);
    return e;
  }
  pl_map_put(&q->gmeta, gid, m);
  *out = m;
  return PL_OK;
}

/* ---- groups (docs/protocol.md 11.8) ------------------------------------------------ */

/* A group's history is stored once: message rows with gid set, no queue
 * rows. Each device's cursor is its devices.acked (its cumulative Ack, which
 * covers group messages because they share the qid sequence), so a member
 * costs no row per message. */

#define PL__GROUP_NAME_MAX 100u
#define PL__GROUP_DESC_MAX 1000u
/* GroupEvent types (the wire's GroupEventType) */
enum { PL__GE_CREATED = 1, PL__GE_ADDED, PL__GE_REMOVED, PL__GE_LEFT, PL__GE_RENAMED, PL__GE_ROLE };

static void pl__gconv(uint64_t gid, char *buf, size_t n) {
  snprintf(buf, n, "g:%llu", (unsigned long long)gid);
}

static pl_err pl__mships(pl__sq *q, pl__user *u) {
  sqlite3_stmt *st = q->st[ST_GROUPS_OF];
  size_t cap = 0;
  int rc;
  if (u->ms_loaded)
    return PL_OK;
  u->nms = 0;
  pl__bind_u64(st, 1, u->id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    u->ms = pl__reserve(u->ms, u->nms, &cap, sizeof *u->ms);
    pl__mship *m = &u->ms[u->nms++];
    m->gid = pl__col_u64(st, 0);
    m->since_qid = pl__col_u64(st, 1);
    m->left_qid = pl__col_u64(st, 2);
    m->role = sqlite3_column_int(st, 3);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  u->ms_loaded = e == PL_OK;
  return e;
}

/* u's role in gid (PL_ROLE_NONE if not a member). */
static pl_err pl__role(pl__sq *q, pl__user *u, uint64_t gid, int *role) {
  pl_err e = pl__mships(q, u);
  *role = PL_ROLE_NONE;
  for (size_t i = 0; e == PL_OK && i < u->nms; i++)
    if (u->ms[i].gid == gid)
      *role = u->ms[i].role;
  return e;
}

/* The highest qid ever given (AUTOINCREMENT keeps it in sqlite_sequence):
 * a history that starts "now" starts after it. */
static pl_err pl__max_qid(pl__sq *q, uint64_t *qid) {
  sqlite3_stmt *st = q->st[ST_MSG_MAXQID];
  int found;
  pl_err e = pl__row(q, st, &found);
  *qid = e == PL_OK && found ? pl__col_u64(st, 0) : 0;
  sqlite3_reset(st);
  return e;
}

/* Appends a row to gid's history; out.msg-like data goes to *m (qid set). */
/* Makes room for one more entry of a group's history within
 * rules.group_history: its oldest entries go, so a member device that far
 * behind misses them (protocol.md 11.8) and no offline member makes a
 * group's history grow without end. */
static pl_err pl__ghist_room(pl__sq *q, uint64_t gid) {
  uint64_t cap = q->rules.group_history;
  pl__gmeta *gm;
  if (!cap)
    return PL_OK;
  pl_err e = pl__gmeta_get(q, gid, &gm);
  if (e == PL_OK && !gm->entries)
    e = pl__u64_query(q, ST_GHIST_COUNT, gid, 0, 0, &gm->entries);
  while (e == PL_OK && gm->entries >= cap) {
    e = pl__run1(q, ST_GHIST_DROP, gid);
    if (e == PL_OK && sqlite3_changes(q->db) != 1)
      break; /* out of step with the table: it is recounted next time */
    gm->entries--;
  }
  if (e == PL_OK && gm->entries >= cap)
    gm->entries = 0;
  return e;
}

static pl_err pl__glog_put(pl__sq *q, uint64_t gid, const pl__user *from, const char *device, const char *id,
                           const uint8_t *body, size_t body_len, uint64_t client_ts, int kind, uint64_t aux,
                           pl_msg *m) {
  char conv[32];
  pl__conv *c;
  uint64_t seq, ts;
  pl__gconv(gid, conv, sizeof conv);
  pl_err e = pl__conv_get(q, conv, &c);
  if (e != PL_OK)
    return e;
  pl__conv_peek(c, pl_now_ms(), &seq, &ts);
  e = pl__ghist_room(q, gid);
  if (e != PL_OK)
    return e;
  sqlite3_stmt *st = q->st[ST_GMSG_INSERT];
  pl__bind_text(st, 1, conv);
  pl__bind_u64(st, 2, seq);
  pl__bind_u64(st, 3, from->id);
  pl__bind_text(st, 4, from->name);
  pl__bind_text(st, 5, device);
  pl__bind_text(st, 6, id);
  sqlite3_bind_blob(st, 7, body_len ? (const void *)body : "", (int)body_len, SQLITE_STATIC);
  pl__bind_u64(st, 8, client_ts);
  pl__bind_u64(st, 9, ts);
  pl__bind_u64(st, 10, pl__expires(q, ts));
  pl__bind_u64(st, 11, (uint64_t)kind);
  pl__bind_u64(st, 12, aux);
  pl__bind_u64(st, 13, gid);
  e = pl__run(q, st);
  if (e != PL_OK)
    return e;
  pl__conv_take(q, c, seq, ts);
  memset(m, 0, sizeof *m);
  m->qid = (uint64_t)sqlite3_last_insert_rowid(q->db);
  pl__gmeta *gm = pl_map_get(&q->gmeta, gid);
  if (gm) {
    gm->last_qid = m->qid;
    gm->last_seq = seq;
    gm->entries += gm->entries != 0;
  }
  m->kind = kind;
  m->aux = aux;
  m->conv = pl_strdup(conv);
  m->seq = seq;
  m->from = pl_strdup(from->name);
  m->from_device = pl_strdup(device);
  m->id = pl_strdup(id);
  m->body = pl_memdup(body_len ? (const void *)body : "", body_len);
  m->body_len = body_len;
  m->client_ts = client_ts;
  m->server_ts = ts;
  return PL_OK;
}

/* A membership event in gid's history, delivered to its members. The
 * GroupEvent travels in generic columns: from = actor, id = user,
 * body = name, aux = type | role << 8 (the router builds the frame). */
static pl_err pl__gevent(pl__sq *q, pl_store_req *r, uint64_t gid, const pl__user *actor, int type,
                         const char *user, const char *name, int role) {
  pl_msg m;
  size_t nl = name ? strlen(name) : 0;
  pl_err e = pl__glog_put(q, gid, actor, "", user ? user : "", (const uint8_t *)name, nl, 0,
                          PL_MSG_GROUP_EVENT, (uint64_t)type | ((uint64_t)role << 8), &m);
  if (e != PL_OK)
    return e;
  r->out.events = pl_realloc(r->out.events, (r->out.nevents + 1) * sizeof *r->out.events);
  pl_store_event *ev = &r->out.events[r->out.nevents++];
  memset(ev, 0, sizeof *ev);
  ev->msg = m;
  ev->group = gid;
  return PL_OK;
}

/* Records that u's devices join (or leave) gid's live audience. Only
 * connected devices can join (the others fetch), so a group made with
 * 100,000 mostly offline members carries no list for most of them. */
static void pl__gchange(pl__sq *q, pl_store_req *r, uint64_t gid, const pl__user *u, int join) {
  uint64_t devs[64];
  size_t n = 0;
  for (size_t i = 0; i < u->ndevs && n < sizeof devs / sizeof devs[0]; i++)
    if (!join || !q->online || q->online(q->online_ud, u->devs[i]))
      devs[n++] = u->devs[i];
  if (!n)
    return;
  if (r->out.nchanges == r->out.changes_cap) {
    r->out.changes_cap = r->out.changes_cap ? r->out.changes_cap * 2 : 4;
    r->out.changes = pl_realloc(r->out.changes, r->out.changes_cap * sizeof *r->out.changes);
  }
  pl_group_change *c = &r->out.changes[r->out.nchanges++];
  c->gid = gid;
  c->join = join;
  c->n = n;
  c->devices = pl_memdup(devs, n * sizeof *devs);
}

/* Forget u's cached memberships (they changed in this transaction). */
static void pl__ms_stale(pl__user *u) {
  pl_free(u->ms);
  u->ms = NULL;
  u->nms = 0;
  u->ms_loaded = 0;
}

static pl_err pl__member_put(pl__sq *q, pl_store_req *r, uint64_t gid, pl__user *u, int role,
                             uint64_t since) {
  sqlite3_stmt *st = q->st[ST_MEMBER_PUT];
  pl__bind_u64(st, 1, gid);
  pl__bind_u64(st, 2, u->id);
  pl__bind_u64(st, 3, (uint64_t)role);
  pl__bind_u64(st, 4, since);
  pl__bind_u64(st, 5, since);
  pl_err e = pl__run(q, st);
  if (e == PL_OK)
    e = pl__run2(q, ST_GROUP_COUNT, gid, 1);
  /* watermarks start at the group's last seq: what came before is not the
   * new member's to receive, so it does not count against any receipt */
  char conv[32];
  pl__conv *c;
  pl__gconv(gid, conv, sizeof conv);
  if (e == PL_OK)
    e = pl__conv_get(q, conv, &c);
  if (e == PL_OK)
    e = pl__run3(q, ST_GREADS_PUT, gid, u->id, c->seq);
  pl__gread_forget(q, gid, u->id);
  pl__gmeta *gm = pl_map_get(&q->gmeta, gid);
  if (gm)
    gm->size++;
  pl__ms_stale(u);
  if (e == PL_OK)
    pl__gchange(q, r, gid, u, 1);
  return e;
}

/* u leaves gid (removed or by itself): keeps the history owed up to left_qid. */
static pl_err pl__member_left(pl__sq *q, pl_store_req *r, uint64_t gid, pl__user *u, uint64_t left_qid) {
  sqlite3_stmt *st = q->st[ST_MEMBER_LEFT];
  pl__bind_u64(st, 1, gid);
  pl__bind_u64(st, 2, u->id);
  pl__bind_u64(st, 3, left_qid);
  pl_err e = pl__run(q, st);
  if (e == PL_OK)
    e = pl__run2(q, ST_GREADS_DEL, gid, u->id);
  pl__gread_forget(q, gid, u->id);
  pl__gmeta *gm = pl_map_get(&q->gmeta, gid);
  if (gm && gm->size)
    gm->size--;
  if (e == PL_OK) {
    int64_t d = -1;
    sqlite3_stmt *c = q->st[ST_GROUP_COUNT];
    pl__bind_u64(c, 1, gid);
    sqlite3_bind_int64(c, 2, d);
    e = pl__run(q, c);
  }
  pl__ms_stale(u);
  if (e == PL_OK)
    pl__gchange(q, r, gid, u, 0);
  return e;
}

/* GroupInfo lists at most this many members (by name); member_count has all. */
#define PL__GROUP_LIST_MAX 10000u

static pl_err pl__group_members(pl__sq *q, uint64_t gid, pl_group_info *g) {
  sqlite3_stmt *st = q->st[ST_MEMBERS_LIST];
  size_t cap = 0;
  int rc;
  pl__bind_u64(st, 1, gid);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW && g->nmembers < PL__GROUP_LIST_MAX) {
    g->members = pl__reserve(g->members, g->nmembers, &cap, sizeof *g->members);
    g->members[g->nmembers].user = pl__col_str(st, 0);
    g->members[g->nmembers++].role = sqlite3_column_int(st, 1);
  }
  pl_err e = rc == SQLITE_DONE || rc == SQLITE_ROW ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* The group as u sees it, with members if want_members; *found = 0 if gid
 * does not exist. */
static pl_err pl__group_info(pl__sq *q, uint64_t gid, pl__user *u, int want_members, pl_group_info *g,
                             int *found) {
  sqlite3_stmt *st = q->st[ST_GROUP_GET];
  char conv[32];
  pl__conv *c;
  pl__bind_u64(st, 1, gid);
  pl_err e = pl__row(q, st, found);
  if (e != PL_OK || !*found) {
    sqlite3_reset(st);
    return e;
  }
  pl_group_info_clear(g);
  g->gid = gid;
  g->name = pl__col_str(st, 0);
  g->description = pl__col_str(st, 1);
  g->member_count = pl__col_u64(st, 2);
  sqlite3_reset(st);
  e = pl__role(q, u, gid, &g->my_role);
  pl__gconv(gid, conv, sizeof conv);
  if (e == PL_OK)
    e = pl__conv_get(q, conv, &c);
  if (e == PL_OK)
    g->last_seq = c->seq;
  if (e == PL_OK && want_members && g->my_role > PL_ROLE_NONE)
    e = pl__group_members(q, gid, g);
  return e;
}

static int pl__gname_ok(const char *name, const char *desc) {
  size_t n = name ? strlen(name) : 0;
  return n >= 1 && n <= PL__GROUP_NAME_MAX && (!desc || strlen(desc) <= PL__GROUP_DESC_MAX);
}

/* *verdict: may adder add u to a group (u's setting and contacts, by the
 * core's rule)? */
static pl_err pl__may_add(pl__sq *q, const pl__user *u, const pl__user *adder, pl_err *verdict) {
  int contact = 0;
  *verdict = PL_OK;
  if (!q->rules.may_add || u == adder)
    return PL_OK;
  pl_err e = u->group_add > PL_GROUP_ADD_EVERYONE ? pl__has_contact(q, u->id, adder->id, &contact) : PL_OK;
  if (e == PL_OK)
    *verdict = q->rules.may_add(q->rules.ud, u->group_add, contact);
  return e;
}

static pl_err pl__group_create(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL, *u;
  int found;
  if (!pl__gname_ok(r->in.name, r->in.description) || r->in.nusers > q->max_group) {
    r->status = r->in.nusers > q->max_group ? PL_ERR_GROUP_FULL : PL_ERR_INVALID_ARGUMENT;
    return PL_OK;
  }
  pl_err e = pl__user_get(q, r->in.user_id, &me);
  for (size_t i = 0; e == PL_OK && me && i < r->in.nusers; i++) {
    e = pl__user_by_name(q, r->in.users[i], &u);
    if (e == PL_OK && (!u || pl__blocks(u, me->id))) {
      r->status = PL_ERR_UNKNOWN_PEER; /* a user who blocked the creator is "unknown" too */
      return PL_OK;
    }
    if (e == PL_OK) /* refused by one: the whole request is, nothing made */
      e = pl__may_add(q, u, me, &r->status);
    if (r->status != PL_OK)
      return e;
  }
  if (e != PL_OK || !me) {
    if (e == PL_OK)
      r->status = PL_ERR_INVALID_ARGUMENT;
    return e;
  }
  sqlite3_stmt *st = q->st[ST_GROUP_INSERT];
  pl__bind_text(st, 1, r->in.name);
  pl__bind_text(st, 2, r->in.description);
  pl__bind_u64(st, 3, pl_now_ms());
  e = pl__run(q, st);
  uint64_t gid = (uint64_t)sqlite3_last_insert_rowid(q->db);
  /* The creator's "created" event comes first; members join right before it. */
  uint64_t since = 0;
  if (e == PL_OK)
    e = pl__max_qid(q, &since);
  if (e == PL_OK)
    e = pl__member_put(q, r, gid, me, PL_ROLE_OWNER, since);
  for (size_t i = 0; e == PL_OK && i < r->in.nusers; i++) {
    int role = PL_ROLE_NONE;
    e = pl__user_by_name(q, r->in.users[i], &u);
    if (e == PL_OK)
      e = pl__role(q, u, gid, &role);
    if (e == PL_OK && role == PL_ROLE_NONE) /* named twice, or the creator */
      e = pl__member_put(q, r, gid, u, PL_ROLE_MEMBER, since);
  }
  if (e == PL_OK)
    e = pl__gevent(q, r, gid, me, PL__GE_CREATED, NULL, r->in.name, 0);
  /* One event, not one "added" per initial member: in a group made with
   * 10,000 members that would be 10,000 events to 10,000 devices. The
   * members are in GroupInfo (GROUP_INFO). */
  return e == PL_OK ? pl__group_info(q, gid, me, 1, &r->out.info, &found) : e;
}

/* May actor (role ar) act on a member with role tr by op? (protocol.md 11.8) */
static int pl__may(int op, int ar, int tr) {
  switch (op) {
  case PL_GROUP_ADD:
  case PL_GROUP_RENAME: return ar >= PL_ROLE_ADMIN;
  case PL_GROUP_REMOVE:
    return ar == PL_ROLE_OWNER ? tr != PL_ROLE_OWNER : ar == PL_ROLE_ADMIN && tr == PL_ROLE_MEMBER;
  case PL_GROUP_SET_ROLE: return ar == PL_ROLE_OWNER && tr != PL_ROLE_OWNER;
  default: return 1;
  }
}

/* The owner left: the longest-standing admin (else member) owns the group. */
static pl_err pl__group_heir(pl__sq *q, pl_store_req *r, uint64_t gid, pl__user *me) {
  sqlite3_stmt *st = q->st[ST_MEMBER_HEIR];
  pl__user *heir = NULL;
  int found;
  pl__bind_u64(st, 1, gid);
  pl__bind_u64(st, 2, me->id);
  pl_err e = pl__row(q, st, &found);
  uint64_t uid = e == PL_OK && found ? pl__col_u64(st, 0) : 0;
  sqlite3_reset(st);
  if (e == PL_OK && uid)
    e = pl__user_get(q, uid, &heir);
  if (e != PL_OK || !heir)
    return e;
  sqlite3_stmt *rs = q->st[ST_MEMBER_ROLE];
  pl__bind_u64(rs, 1, gid);
  pl__bind_u64(rs, 2, heir->id);
  pl__bind_u64(rs, 3, PL_ROLE_OWNER);
  e = pl__run(q, rs);
  pl__ms_stale(heir);
  return e == PL_OK ? pl__gevent(q, r, gid, me, PL__GE_ROLE, heir->name, NULL, PL_ROLE_OWNER) : e;
}

static pl_err pl__group_leave(pl__sq *q, pl_store_req *r, uint64_t gid, pl__user *me, pl__user *actor,
                              int type, int was) {
  pl_err e = pl__gevent(q, r, gid, actor, type, me->name, NULL, PL_ROLE_NONE);
  uint64_t left = e == PL_OK ? r->out.events[r->out.nevents - 1].msg.qid : 0;
  if (e == PL_OK)
    e = pl__member_left(q, r, gid, me, left);
  if (e == PL_OK && was == PL_ROLE_OWNER)
    e = pl__group_heir(q, r, gid, me);
  return e;
}

static pl_err pl__group_update(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL, *u = NULL;
  int mine = PL_ROLE_NONE, theirs = PL_ROLE_NONE, found;
  uint64_t gid = r->in.group;
  int op = r->in.group_op;
  pl_err e = pl__user_get(q, r->in.user_id, &me);
  if (e == PL_OK && me)
    e = pl__role(q, me, gid, &mine);
  if (e != PL_OK || !me || mine == PL_ROLE_NONE) {
    if (e == PL_OK)
      r->status = PL_ERR_NOT_MEMBER; /* also for a group that does not exist */
    return e;
  }
  if (op == PL_GROUP_ADD || op == PL_GROUP_REMOVE || op == PL_GROUP_SET_ROLE) {
    e = r->in.peer ? pl__user_by_name(q, r->in.peer, &u) : PL_OK;
    if (e == PL_OK && u)
      e = pl__role(q, u, gid, &theirs);
    if (e != PL_OK)
      return e;
    if (!u || (op == PL_GROUP_ADD && pl__blocks(u, me->id))) {
      r->status = PL_ERR_UNKNOWN_PEER;
      return PL_OK;
    }
  }
  if (op == PL_GROUP_ADD && theirs == PL_ROLE_NONE && pl__may(op, mine, theirs)) {
    e = pl__may_add(q, u, me, &r->status);
    if (e != PL_OK || r->status != PL_OK)
      return e;
  }
  if (!pl__may(op, mine, theirs)) {
    r->status = PL_ERR_FORBIDDEN;
    return PL_OK;
  }
  switch (op) {
  case PL_GROUP_INFO: break;
  case PL_GROUP_ADD:
    if (theirs != PL_ROLE_NONE)
      break; /* already a member: nothing changes */
    e = pl__group_info(q, gid, me, 0, &r->out.info, &found);
    if (e == PL_OK && r->out.info.member_count >= q->max_group) {
      r->status = PL_ERR_GROUP_FULL;
      return PL_OK;
    }
    /* the added member's history starts with the event that adds it */
    uint64_t since = 0;
    if (e == PL_OK)
      e = pl__max_qid(q, &since);
    if (e == PL_OK)
      e = pl__member_put(q, r, gid, u, PL_ROLE_MEMBER, since);
    if (e == PL_OK)
      e = pl__gevent(q, r, gid, me, PL__GE_ADDED, u->name, NULL, PL_ROLE_MEMBER);
    break;
  case PL_GROUP_REMOVE:
    if (theirs == PL_ROLE_NONE)
      break;
    e = pl__group_leave(q, r, gid, u, me, PL__GE_REMOVED, theirs);
    break;
  case PL_GROUP_LEAVE: e = pl__group_leave(q, r, gid, me, me, PL__GE_LEFT, mine); break;
  case PL_GROUP_RENAME:
    if (!pl__gname_ok(r->in.name, r->in.description)) {
      r->status = PL_ERR_INVALID_ARGUMENT;
      return PL_OK;
    } else {
      sqlite3_stmt *st = q->st[ST_GROUP_RENAME];
      pl__bind_u64(st, 1, gid);
      pl__bind_text(st, 2, r->in.name);
      pl__bind_text(st, 3, r->in.description);
      e = pl__run(q, st);
    }
    if (e == PL_OK)
      e = pl__gevent(q, r, gid, me, PL__GE_RENAMED, NULL, r->in.name, 0);
    break;
  case PL_GROUP_SET_ROLE:
    if (r->in.role != PL_ROLE_ADMIN && r->in.role != PL_ROLE_MEMBER) {
      r->status = PL_ERR_INVALID_ARGUMENT;
      return PL_OK;
    }
    if (theirs == PL_ROLE_NONE) {
      r->status = PL_ERR_NOT_MEMBER;
      return PL_OK;
    }
    if (theirs == r->in.role)
      break;
    {
      sqlite3_stmt *st = q->st[ST_MEMBER_ROLE];
      pl__bind_u64(st, 1, gid);
      pl__bind_u64(st, 2, u->id);
      pl__bind_u64(st, 3, (uint64_t)r->in.role);
      e = pl__run(q, st);
      pl__ms_stale(u);
    }
    if (e == PL_OK)
      e = pl__gevent(q, r, gid, me, PL__GE_ROLE, u->name, NULL, r->in.role);
    break;
  default: r->status = PL_ERR_INVALID_ARGUMENT; return PL_OK;
  }
  return e == PL_OK ? pl__group_info(q, gid, me, 1, &r->out.info, &found) : e;
}

static pl_err pl__group_list(pl__sq *q, pl_store_req *r) {
  sqlite3_stmt *st = q->st[ST_GROUP_LIST];
  size_t cap = 0;
  int rc;
  pl_err e = pl__convs_flush(q); /* last_seq comes from the table */
  if (e != PL_OK)
    return e;
  pl__bind_u64(st, 1, r->in.user_id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    r->out.groups = pl__reserve(r->out.groups, r->out.ngroups, &cap, sizeof *r->out.groups);
    pl_group_info *g = &r->out.groups[r->out.ngroups++];
    memset(g, 0, sizeof *g);
    g->gid = pl__col_u64(st, 0);
    g->name = pl__col_str(st, 1);
    g->description = pl__col_str(st, 2);
    g->member_count = pl__col_u64(st, 3);
    g->my_role = sqlite3_column_int(st, 4);
  }
  e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  for (size_t i = 0; e == PL_OK && i < r->out.ngroups; i++) {
    char conv[32];
    pl__conv *c;
    pl__gconv(r->out.groups[i].gid, conv, sizeof conv);
    e = pl__conv_get(q, conv, &c);
    if (e == PL_OK)
      r->out.groups[i].last_seq = c->seq;
  }
  return e;
}

/* A group message: the same contract as 1:1 (dedup, seq, both clocks),
 * stored once in the group's history. Only members may send. */
static pl_err pl__send_group(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL;
  int role = PL_ROLE_NONE;
  pl_err e = pl__user_get(q, r->in.user_id, &me);
  if (e == PL_OK && me)
    e = pl__role(q, me, r->in.group, &role);
  if (e != PL_OK)
    return e;
  if (!me || role == PL_ROLE_NONE) {
    r->status = PL_ERR_NOT_MEMBER;
    return PL_OK;
  }
  char conv[32];
  pl__conv *c;
  uint64_t seq, ts;
  pl__gconv(r->in.group, conv, sizeof conv);
  e = pl__conv_get(q, conv, &c);
  if (e == PL_OK) {
    pl__conv_peek(c, pl_now_ms(), &seq, &ts);
    e = pl__dedup_put(q, r, conv, seq, ts);
  }
  if (e == PL_OK)
    e = pl__glog_put(q, r->in.group, me, r->in.device_name ? r->in.device_name : "", r->in.client_id,
                     r->in.body, r->in.body_len, r->in.client_ts, PL_MSG_MESSAGE, 0, &r->out.msg);
  pl__gread *g = NULL;
  if (e == PL_OK) /* sending reads the conversation, as in 1:1 */
    e = pl__gread_get(q, r->in.group, me->id, &g);
  if (e != PL_OK)
    return e;
  if (g && r->out.msg.seq > g->read) {
    g->read = r->out.msg.seq;
    g->delivered = g->delivered > g->read ? g->delivered : g->read;
    pl__gread_mark(q, g);
  }
  r->out.conv = pl_strdup(conv);
  r->out.seq = r->out.msg.seq;
  r->out.server_ts = r->out.msg.server_ts;
  r->out.group = r->in.group;
  return PL_OK;
}

/* After the queue rows of a fetch (out.msgs, qid order, at most limit
 * plus one read ahead): merges in the history of each group of the device's
 * user past the device's cursor, keeping qid order and the limit. */
static int pl__qid_cmp(const void *a, const void *b) {
  const pl_msg *x = a, *y = b;
  return x->qid < y->qid ? -1 : x->qid > y->qid;
}

static pl_err pl__fetch_groups(pl__sq *q, pl_store_req *r, uint32_t limit) {
  pl__user *me = NULL;
  pl_err e = r->in.user_id ? pl__user_get(q, r->in.user_id, &me) : PL_OK;
  if (e == PL_OK && me)
    e = pl__mships(q, me);
  if (e != PL_OK || !me || !me->nms)
    return e;
  uint64_t acked = 0;
  e = pl__dack_get(q, r->in.device_id, &acked);
  size_t cap = r->out.nmsgs;
  for (size_t g = 0; e == PL_OK && g < me->nms; g++) {
    const pl__mship *m = &me->ms[g];
    uint64_t after = r->in.after > acked ? r->in.after : acked;
    if (m->since_qid > after)
      after = m->since_qid;
    sqlite3_stmt *st = q->st[ST_GFETCH];
    int rc;
    pl__bind_u64(st, 1, m->gid);
    pl__bind_u64(st, 2, pl__clamp(after));
    pl__bind_u64(st, 3, m->left_qid ? m->left_qid : INT64_MAX);
    pl__bind_u64(st, 4, pl__clamp(pl_now_ms()));
    pl__bind_u64(st, 5, (uint64_t)limit + 1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      r->out.msgs = pl__reserve(r->out.msgs, r->out.nmsgs, &cap, sizeof *r->out.msgs);
      pl__msg_row(st, &r->out.msgs[r->out.nmsgs++]);
    }
    e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
    sqlite3_reset(st);
  }
  if (r->out.nmsgs > 1) /* (qsort of NULL, 0 is undefined) */
    qsort(r->out.msgs, r->out.nmsgs, sizeof *r->out.msgs, pl__qid_cmp);
  if (r->out.nmsgs > limit) { /* the first limit of the merge are exactly the next ones */
    for (size_t i = limit; i < r->out.nmsgs; i++)
      pl_msg_clear(&r->out.msgs[i]);
    r->out.nmsgs = limit;
    r->out.more = 1;
  }
  r->out.gids = pl_malloc((me->nms + 1) * sizeof *r->out.gids);
  for (size_t g = 0; g < me->nms; g++)
    if (me->ms[g].role > PL_ROLE_NONE)
      r->out.gids[r->out.ngids++] = me->ms[g].gid;
  return e;
}

/* Live receipts (never stored: GroupReceiptsGet recovers a missed one) to
 * the connected devices of the senders of gid's messages that stmt finds
 * between lo and hi. Only for groups up to group_detail members. */
static pl_err pl__group_receipts_live(pl__sq *q, pl_store_req *r, uint64_t gid, int stmt, uint64_t lo,
                                      uint64_t hi, int kind, uint64_t seq, const pl__user *by) {
  pl__gmeta *gm;
  pl_err e = pl__gmeta_get(q, gid, &gm);
  if (e != PL_OK || gm->size > q->group_detail)
    return e;
  sqlite3_stmt *st = q->st[stmt];
  uint64_t senders[64];
  size_t n = 0;
  int rc;
  pl__bind_u64(st, 1, gid);
  pl__bind_u64(st, 2, lo);
  pl__bind_u64(st, 3, hi);
  pl__bind_u64(st, 4, by->id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < sizeof senders / sizeof senders[0])
    senders[n++] = pl__col_u64(st, 0);
  e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  char conv[32];
  pl__gconv(gid, conv, sizeof conv);
  for (size_t i = 0; i < n && e == PL_OK; i++) {
    pl__user *to;
    size_t nt, nlive;
    e = pl__user_get(q, senders[i], &to);
    if (e != PL_OK || !to || pl__blocks(by, to->id))
      continue; /* none to a user the reader blocked (protocol.md 11.5) */
    uint64_t *t = pl__devs_except(to, 0, &nt);
    uint64_t *live = pl__split_online(q, t, &nt, &nlive);
    pl_free(t);
    if (nlive)
      pl__event_out(r, 0, kind, conv, seq, by, 0, pl_now_ms(), live, nlive);
    else
      pl_free(live);
  }
  return e;
}

/* A device of a group member moves its cursor with every Ack, and with it
 * the member's delivered watermark in each group the Ack covers (once per
 * user: a second device's Ack of the same messages moves nothing). */
static pl_err pl__ack_cursor(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL;
  uint64_t old, upto = pl__clamp(r->in.upto);
  pl_err e = r->in.user_id ? pl__user_get(q, r->in.user_id, &me) : PL_OK;
  if (e == PL_OK && me)
    e = pl__mships(q, me);
  if (e != PL_OK || !me || !me->nms)
    return e;
  e = pl__dack_get(q, r->in.device_id, &old);
  if (e != PL_OK || upto <= old)
    return e;
  for (size_t i = 0; i < me->nms && e == PL_OK; i++) {
    uint64_t gid = me->ms[i].gid, seq = 0;
    pl__gmeta *gm;
    pl__gread *g = NULL;
    if (me->ms[i].role == PL_ROLE_NONE || (e = pl__gmeta_get(q, gid, &gm)) != PL_OK || gm->last_qid <= old)
      continue; /* nothing of this group in the acked range */
    if (gm->last_qid <= upto)
      seq = gm->last_seq; /* caught up: the common case, no SQL */
    else
      e = pl__u64_query(q, ST_GACK_SEQ, gid, old, upto, &seq);
    if (e == PL_OK && seq)
      e = pl__gread_get(q, gid, me->id, &g);
    if (e != PL_OK || !g || seq <= g->delivered)
      continue;
    g->delivered = seq;
    pl__gread_mark(q, g);
    e = pl__group_receipts_live(q, r, gid, ST_GSENDERS_QID, old, upto, PL_MSG_DELIVERED, seq, me);
  }
  if (e == PL_OK)
    pl__dack_set(q, r->in.device_id, upto);
  return e;
}

/* MarkRead in a group: the member's read watermark, a read sync to its
 * other devices (stored for offline ones, as in 1:1), live read receipts to
 * the senders in small groups. Read receipts are always on in groups (as in
 * WhatsApp): the privacy setting covers 1:1 conversations. */
static pl_err pl__mark_read_group(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL;
  int role = PL_ROLE_NONE;
  pl__conv *c;
  char conv[32];
  uint64_t was = 0;
  size_t nt;
  pl_err e = pl__user_get(q, r->in.user_id, &me);
  if (e == PL_OK && me)
    e = pl__role(q, me, r->in.group, &role);
  if (e != PL_OK || !me || role == PL_ROLE_NONE) {
    if (e == PL_OK)
      r->status = PL_ERR_NOT_MEMBER;
    return e;
  }
  pl__gconv(r->in.group, conv, sizeof conv);
  e = pl__conv_get(q, conv, &c);
  uint64_t last = e == PL_OK ? c->seq : 0;
  uint64_t seq = r->in.upto < last ? r->in.upto : last;
  pl__gread *g = NULL;
  if (e == PL_OK)
    e = pl__gread_get(q, r->in.group, me->id, &g);
  was = g ? g->read : 0;
  if (e != PL_OK || !g || seq <= was)
    return e;
  g->read = seq;
  g->delivered = g->delivered > seq ? g->delivered : seq;
  pl__gread_mark(q, g);
  if (e == PL_OK) {
    uint64_t *t = pl__devs_except(me, r->in.device_id, &nt);
    e = pl__event(q, r, PL_MSG_READ_SYNC, conv, seq, me, last - seq, t, nt);
  }
  if (e == PL_OK)
    e = pl__group_receipts_live(q, r, r->in.group, ST_GSENDERS_SEQ, was, seq, PL_MSG_READ, seq, me);
  return e;
}

/* Counts of the other members with seq delivered / read, and their names in
 * groups up to group_detail members. */
static pl_err pl__group_receipts(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL;
  int role = PL_ROLE_NONE, found, rc;
  pl_err e = pl__user_get(q, r->in.user_id, &me);
  if (e == PL_OK && me)
    e = pl__role(q, me, r->in.group, &role);
  if (e != PL_OK || !me || role == PL_ROLE_NONE) {
    if (e == PL_OK)
      r->status = PL_ERR_NOT_MEMBER;
    return e;
  }
  e = pl__gcache_flush(q); /* the counts come from the table */
  if (e != PL_OK)
    return e;
  sqlite3_stmt *st = q->st[ST_GREADS_COUNT];
  pl__bind_u64(st, 1, r->in.group);
  pl__bind_u64(st, 2, pl__clamp(r->in.upto));
  pl__bind_u64(st, 3, me->id);
  e = pl__row(q, st, &found);
  if (e == PL_OK && found) {
    r->out.members = pl__col_u64(st, 0);
    r->out.delivered = pl__col_u64(st, 1);
    r->out.read = pl__col_u64(st, 2);
  }
  sqlite3_reset(st);
  if (e != PL_OK || r->out.members + 1 > q->group_detail)
    return e;
  r->out.detailed = 1;
  st = q->st[ST_GREADS_NAMES];
  pl__bind_u64(st, 1, r->in.group);
  pl__bind_u64(st, 2, pl__clamp(r->in.upto));
  pl__bind_u64(st, 3, me->id);
  r->out.names = pl_calloc(r->out.members + 1, sizeof *r->out.names);
  r->out.read_by = pl_calloc(r->out.members + 1, sizeof *r->out.read_by);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW && r->out.nnames < r->out.members &&
         r->out.nread_by < r->out.members) {
    if (sqlite3_column_int(st, 1))
      r->out.names[r->out.nnames++] = pl__col_str(st, 0);
    if (sqlite3_column_int(st, 2))
      r->out.read_by[r->out.nread_by++] = pl__col_str(st, 0);
  }
  e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* The sweep: a group's history is deleted up to where every device of
 * every member has it; members who left are forgotten once nothing is owed. */
static pl_err pl__groups_trim(pl__sq *q, uint64_t *deleted) {
  sqlite3_stmt *all = q->st[ST_GROUPS_ALL];
  pl_err fe = pl__gcache_flush(q); /* the cursors come from the table */
  if (fe != PL_OK)
    return fe;
  uint64_t *gids = NULL;
  size_t n = 0, cap = 0;
  int rc;
  while ((rc = sqlite3_step(all)) == SQLITE_ROW) {
    gids = pl__reserve(gids, n, &cap, sizeof *gids);
    gids[n++] = pl__col_u64(all, 0);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, all, rc);
  sqlite3_reset(all);
  for (size_t i = 0; i < n && e == PL_OK; i++) {
    sqlite3_stmt *cur = q->st[ST_GROUP_CURSOR];
    int found;
    pl__bind_u64(cur, 1, gids[i]);
    e = pl__row(q, cur, &found);
    int none = !found || sqlite3_column_type(cur, 0) == SQLITE_NULL;
    uint64_t upto = none ? 0 : pl__col_u64(cur, 0);
    sqlite3_reset(cur);
    if (e == PL_OK && none) /* no member device left: the history is owed to no one */
      upto = INT64_MAX;
    if (e == PL_OK && upto)
      e = pl__run2(q, ST_GROUP_TRIM, gids[i], upto);
    if (e == PL_OK)
      *deleted += (uint64_t)sqlite3_changes64(q->db);
    if (e == PL_OK)
      e = pl__run1(q, ST_GROUP_FORGET, gids[i]);
  }
  pl_free(gids);
  if (e == PL_OK)
    pl__users_drop(q); /* members who were forgotten */
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->gmeta, &it, &k, &v);)
    ((pl__gmeta *)v)->entries = 0; /* histories shrank (and expired): recount */
  return e;
}

/* Typing in a group: members only; none above group_detail members (the
 * router then sends it to the group's live audience). */
static pl_err pl__group_targets(pl__sq *q, pl_store_req *r, int stmt, uint64_t uid);

/* out.targets: the devices of the group's members who blocked uid. */
static pl_err pl__group_blockers(pl__sq *q, pl_store_req *r, uint64_t uid) {
  return pl__group_targets(q, r, ST_GROUP_BLOCKERS, uid);
}

static pl_err pl__typing_group(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL;
  int role = PL_ROLE_NONE;
  uint64_t size = 0;
  pl_err e = pl__user_get(q, r->in.user_id, &me);
  if (e == PL_OK && me)
    e = pl__role(q, me, r->in.group, &role);
  pl__gmeta *gm;
  if (e == PL_OK && role != PL_ROLE_NONE && (e = pl__gmeta_get(q, r->in.group, &gm)) == PL_OK)
    size = gm->size;
  if (e != PL_OK || !me || role == PL_ROLE_NONE) {
    if (e == PL_OK)
      r->status = PL_ERR_NOT_MEMBER;
    return e;
  }
  char conv[32];
  pl__gconv(r->in.group, conv, sizeof conv);
  r->out.conv = pl_strdup(conv);
  if (size > q->group_detail)
    return PL_OK;
  r->out.group = r->in.group;
  return pl__group_blockers(q, r, me->id);
}

/* ---- media (protocol.md 13) ---------------------------------------------------- */

static void pl__copy(char *dst, size_t cap, const unsigned char *src) {
  snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

static pl_err pl__media_load(pl__sq *q, const char *id, pl_media_row *m, int *found) {
  sqlite3_stmt *st = q->st[ST_MEDIA_GET];
  pl__bind_text(st, 1, id);
  pl_err e = pl__row(q, st, found);
  memset(m, 0, sizeof *m);
  if (e == PL_OK && *found) {
    snprintf(m->id, sizeof m->id, "%s", id);
    m->owner = pl__col_u64(st, 0);
    pl__copy(m->blob, sizeof m->blob, sqlite3_column_text(st, 1));
    pl__copy(m->thumb, sizeof m->thumb, sqlite3_column_text(st, 2));
    pl__copy(m->type, sizeof m->type, sqlite3_column_text(st, 3));
    pl__copy(m->name, sizeof m->name, sqlite3_column_text(st, 4));
    m->size = pl__col_u64(st, 5);
    m->thumb_size = pl__col_u64(st, 6);
    m->width = (uint32_t)pl__col_u64(st, 7);
    m->height = (uint32_t)pl__col_u64(st, 8);
    m->thumb_width = (uint32_t)pl__col_u64(st, 9);
    m->thumb_height = (uint32_t)pl__col_u64(st, 10);
    m->created = pl__col_u64(st, 11);
    m->expires = pl__col_u64(st, 12);
  }
  sqlite3_reset(st);
  return e;
}

/* Whether conv ("dm:a:b" or "g:N") is one u takes part in now. */
static pl_err pl__in_conv(pl__sq *q, pl__user *u, const char *conv, int *in) {
  *in = 0;
  if (!strncmp(conv, "dm:", 3)) {
    const char *a = conv + 3, *colon = strchr(a, ':');
    size_t n = strlen(u->name);
    *in = colon && (((size_t)(colon - a) == n && !strncmp(a, u->name, n)) || !strcmp(colon + 1, u->name));
    return PL_OK;
  }
  if (strncmp(conv, "g:", 2))
    return PL_OK;
  int role;
  pl_err e = pl__role(q, u, strtoull(conv + 2, NULL, 10), &role);
  *in = e == PL_OK && role != PL_ROLE_NONE;
  return e;
}

/* May u see m: its uploader, or a user in a conversation (now) that a
 * message carrying it went to. */
static pl_err pl__media_visible(pl__sq *q, pl__user *u, const pl_media_row *m, int *ok) {
  *ok = m->owner == u->id;
  if (*ok)
    return PL_OK;
  sqlite3_stmt *st = q->st[ST_MEDIA_GRANTS];
  pl__bind_text(st, 1, m->id);
  size_t n = 0, cap = 0;
  char **convs = NULL;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    convs = pl__reserve(convs, n, &cap, sizeof *convs);
    convs[n++] = pl__col_str(st, 0);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  for (size_t i = 0; i < n && e == PL_OK && !*ok; i++)
    e = pl__in_conv(q, u, convs[i], ok);
  for (size_t i = 0; i < n; i++)
    pl_free(convs[i]);
  pl_free(convs);
  return e;
}

/* The attachment as the wire carries it: what the server stored. */
static void pl__media_pack(const pl_media_row *m, uint8_t **out, size_t *len) {
  Parley__Media pm = PARLEY__MEDIA__INIT;
  pm.id = (char *)m->id;
  pm.type = (char *)m->type;
  pm.size = m->size;
  pm.width = m->width;
  pm.height = m->height;
  pm.thumb_width = m->thumb_width;
  pm.thumb_height = m->thumb_height;
  pm.thumb_size = m->thumb_size;
  pm.name = (char *)m->name;
  *len = parley__media__get_packed_size(&pm);
  *out = pl_malloc(*len ? *len : 1);
  parley__media__pack(&pm, *out);
}

/* SEND with in.media_id: the sender must be able to see the media
 * (uploaded it, or got it in a message: forwarding). */
static pl_err pl__media_for_send(pl__sq *q, pl_store_req *r, uint8_t **att, size_t *len) {
  pl__user *me = NULL;
  pl_media_row m;
  int found = 0, ok = 0;
  pl_err e = pl__user_get(q, r->in.user_id, &me);
  if (e == PL_OK && me)
    e = pl__media_load(q, r->in.media_id, &m, &found);
  if (e == PL_OK && found)
    e = pl__media_visible(q, me, &m, &ok);
  if (e != PL_OK)
    return e;
  if (!ok) {
    r->status = PL_ERR_UNKNOWN_MEDIA;
    return PL_OK;
  }
  pl__media_pack(&m, att, len);
  return PL_OK;
}

/* After a send with an attachment committed its row: the row carries it,
 * the conversation may fetch it, and it lives a TTL past this message. */
static pl_err pl__media_attach(pl__sq *q, pl_store_req *r, uint8_t **att, size_t len) {
  pl_err e = PL_OK;
  if (r->out.msg.qid) {
    sqlite3_stmt *st = q->st[ST_MEDIA_ATTACH];
    pl__bind_u64(st, 1, r->out.msg.qid);
    pl__bind_text(st, 2, r->in.media_id);
    sqlite3_bind_blob(st, 3, *att, (int)len, SQLITE_STATIC);
    e = pl__run(q, st);
  }
  if (e == PL_OK) {
    sqlite3_stmt *st = q->st[ST_MEDIA_GRANT];
    pl__bind_text(st, 1, r->in.media_id);
    pl__bind_text(st, 2, r->out.conv);
    e = pl__run(q, st);
  }
  if (e == PL_OK) {
    sqlite3_stmt *st = q->st[ST_MEDIA_TOUCH];
    pl__bind_text(st, 1, r->in.media_id);
    pl__bind_u64(st, 2, pl__clamp(pl_now_ms() + q->media_ttl_ms));
    e = pl__run(q, st);
  }
  if (e == PL_OK) {
    r->out.msg.media = *att;
    r->out.msg.media_len = len;
    *att = NULL;
  }
  return e;
}

static pl_err pl__media_usage(pl__sq *q, uint64_t uid, uint64_t *usage) {
  return pl__u64_query(q, ST_MEDIA_USAGE, uid, 0, 0, usage);
}

static pl_err pl__media_auth(pl__sq *q, pl_store_req *r) {
  pl_err e = pl__resume(q, r);
  if (e == PL_OK && r->status == PL_OK)
    e = pl__media_usage(q, r->out.user_id, &r->out.usage);
  return e;
}

static pl_err pl__media_put(pl__sq *q, pl_store_req *r) {
  const pl_media_row *m = r->in.media;
  pl_err e = pl__media_usage(q, r->in.user_id, &r->out.usage);
  if (e != PL_OK)
    return e;
  if (r->in.quota && r->out.usage + m->size + m->thumb_size > r->in.quota) {
    r->status = PL_ERR_QUOTA;
    return PL_OK;
  }
  /* the sweep may have dropped these bytes since the uploader found them */
  if (q->blob_exists &&
      (!q->blob_exists(q->blob_ud, m->blob) || (*m->thumb && !q->blob_exists(q->blob_ud, m->thumb)))) {
    r->status = PL_ERR_AGAIN;
    return PL_OK;
  }
  uint64_t now = pl_now_ms();
  sqlite3_stmt *st = q->st[ST_MEDIA_INSERT];
  pl__bind_text(st, 1, m->id);
  pl__bind_u64(st, 2, r->in.user_id);
  pl__bind_text(st, 3, m->blob);
  pl__bind_text(st, 4, m->thumb);
  pl__bind_text(st, 5, m->type);
  pl__bind_text(st, 6, m->name);
  pl__bind_u64(st, 7, m->size);
  pl__bind_u64(st, 8, m->thumb_size);
  pl__bind_u64(st, 9, m->width);
  pl__bind_u64(st, 10, m->height);
  pl__bind_u64(st, 11, m->thumb_width);
  pl__bind_u64(st, 12, m->thumb_height);
  pl__bind_u64(st, 13, now);
  pl__bind_u64(st, 14, pl__clamp(now + q->media_ttl_ms));
  e = pl__run(q, st);
  if (e == PL_OK)
    r->out.usage += m->size + m->thumb_size;
  return e;
}

static pl_err pl__media_get(pl__sq *q, pl_store_req *r) {
  pl__user *u = NULL;
  int found = 0, ok = 1;
  pl_err e = PL_OK;
  if (!r->in.any_user) {
    e = pl__resume(q, r);
    if (e != PL_OK || r->status != PL_OK)
      return e;
    e = pl__user_get(q, r->out.user_id, &u);
  }
  if (e == PL_OK)
    e = pl__media_load(q, r->in.media_id, &r->out.media, &found);
  if (e == PL_OK && found && u)
    e = pl__media_visible(q, u, &r->out.media, &ok);
  if (e == PL_OK && (!found || !ok))
    r->status = !found ? PL_ERR_NOT_FOUND : PL_ERR_FORBIDDEN;
  return e;
}

static void pl__gone_add(pl__sq *q, const char *key) {
  if (!*key)
    return;
  for (size_t i = 0; i < q->ngone; i++)
    if (!strcmp(q->gone[i], key))
      return;
  q->gone = pl__reserve(q->gone, q->ngone, &q->gone_cap, sizeof *q->gone);
  q->gone[q->ngone++] = pl_strdup(key);
}

static void pl__gone_clear(pl__sq *q) {
  for (size_t i = 0; i < q->ngone; i++)
    pl_free(q->gone[i]);
  q->ngone = 0;
}

/* Inside the sweep: uploads past their TTL that no stored message carries
 * go, and so do the blobs no upload names any more (after the commit). */
static pl_err pl__media_expire(pl__sq *q, uint64_t now) {
  sqlite3_stmt *st = q->st[ST_MEDIA_EXPIRED];
  pl_err e = PL_OK;
  size_t n = 0, cap = 0;
  char **rows = NULL; /* id, blob, thumb triples */
  int rc;
  pl__bind_u64(st, 1, pl__clamp(now));
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    rows = pl__reserve(rows, n, &cap, 3 * sizeof *rows);
    for (int k = 0; k < 3; k++)
      rows[3 * n + (size_t)k] = pl__col_str(st, k);
    n++;
  }
  if (rc != SQLITE_DONE)
    e = pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  for (size_t i = 0; i < n && e == PL_OK; i++) {
    e = pl__run_text(q, ST_MEDIA_GRANTS_DEL, rows[3 * i]);
    if (e == PL_OK)
      e = pl__run_text(q, ST_MEDIA_DEL, rows[3 * i]);
  }
  for (size_t i = 0; i < 2 * n && e == PL_OK; i++) {
    const char *key = rows[3 * (i / 2) + 1 + i % 2];
    int used = 0;
    sqlite3_stmt *u = q->st[ST_BLOB_USED];
    pl__bind_text(u, 1, key);
    e = pl__row(q, u, &used);
    sqlite3_reset(u);
    if (e == PL_OK && !used)
      pl__gone_add(q, key);
  }
  for (size_t i = 0; i < 3 * n; i++)
    pl_free(rows[i]);
  pl_free(rows);
  if (e == PL_OK && n)
    pl_info("store: %zu expired upload(s) deleted", n);
  return e;
}

/* out.targets: the device ids stmt lists for (in.group, uid). */
static pl_err pl__group_targets(pl__sq *q, pl_store_req *r, int stmt, uint64_t uid) {
  sqlite3_stmt *st = q->st[stmt];
  size_t cap = 0;
  int rc;
  pl__bind_u64(st, 1, r->in.group);
  if (sqlite3_bind_parameter_count(st) > 1)
    pl__bind_u64(st, 2, uid);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    r->out.targets = pl__reserve(r->out.targets, r->out.ntargets, &cap, sizeof *r->out.targets);
    r->out.targets[r->out.ntargets++] = pl__col_u64(st, 0);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl__sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* Every logged-in device of the group's current members (push notifications
 * look for the offline ones among them; nothing is written). */
static pl_err pl__group_devices(pl__sq *q, pl_store_req *r) {
  return pl__group_targets(q, r, ST_GROUP_DEVICES, 0);
}

/* ---- the vtable ----------------------------------------------------------------- */

static int pl__valid(const pl_store_req *r) {
  switch (r->op) {
  case PL_STORE_REGISTER: return r->in.user && r->in.device && r->in.pwhash;
  case PL_STORE_GET_USER: return r->in.user != NULL;
  case PL_STORE_LOGIN_DEVICE: return r->in.device != NULL;
  case PL_STORE_SEND:
    return (r->in.peer || r->in.group) && r->in.client_id && (r->in.body || !r->in.body_len);
  case PL_STORE_GROUP_CREATE: return r->in.user_id && (r->in.users || !r->in.nusers);
  case PL_STORE_GROUP_UPDATE: return r->in.user_id && r->in.group;
  case PL_STORE_GROUP_LIST: return r->in.user_id != 0;
  case PL_STORE_RESUME:
  case PL_STORE_LOGOUT:
  case PL_STORE_FETCH:
  case PL_STORE_ACK: return 1;
  case PL_STORE_MARK_READ: return (r->in.peer || r->in.group) && r->in.user_id;
  case PL_STORE_GROUP_RECEIPTS: return r->in.user_id && r->in.group;
  case PL_STORE_GROUP_DEVICES: return r->in.group != 0;
  case PL_STORE_SETTINGS:
  case PL_STORE_UNREAD:
  case PL_STORE_SEEN: return r->in.user_id != 0;
  case PL_STORE_CONTACTS: return r->in.user_id && (r->in.contact_op == 0 || r->in.peer);
  case PL_STORE_BLOCK: return r->in.user_id && r->in.peer;
  case PL_STORE_TYPING: return r->in.user_id && (r->in.peer || r->in.group);
  case PL_STORE_PRESENCE: return r->in.user_id && (r->in.users || !r->in.nusers);
  case PL_STORE_MEDIA_AUTH: return 1;
  case PL_STORE_DEVICES:
    return r->in.user_id && r->in.device_op >= PL_DEVICES_LIST &&
           r->in.device_op <= PL_DEVICES_REVOKE_OTHERS &&
           (r->in.device_op != PL_DEVICES_REVOKE || r->in.name);
  case PL_STORE_MEDIA_PUT: return r->in.user_id && r->in.media;
  case PL_STORE_MEDIA_GET: return r->in.media_id != NULL;
  case PL_STORE_STATS: return 1;
  }
  return 0;
}

static pl_err pl__sq_exec(void *be, pl_store_req *r) {
  pl__sq *q = be;
  if (!pl__valid(r)) {
    r->status = PL_ERR_INVALID_ARGUMENT;
    return PL_OK;
  }
  switch (r->op) {
  case PL_STORE_REGISTER: return pl__register(q, r);
  case PL_STORE_GET_USER: return pl__get_user(q, r);
  case PL_STORE_LOGIN_DEVICE: return pl__login_device(q, r);
  case PL_STORE_RESUME: return pl__resume(q, r);
  case PL_STORE_LOGOUT: return pl__logout(q, r);
  case PL_STORE_SEND: return pl__send(q, r);
  case PL_STORE_FETCH: return pl__fetch(q, r);
  case PL_STORE_ACK: return pl__ack(q, r);
  case PL_STORE_MARK_READ: return pl__mark_read(q, r);
  case PL_STORE_SETTINGS: return pl__settings(q, r);
  case PL_STORE_UNREAD: return pl__unread(q, r);
  case PL_STORE_CONTACTS: return pl__contacts(q, r);
  case PL_STORE_BLOCK: return pl__block(q, r);
  case PL_STORE_PRESENCE: return pl__presence(q, r);
  case PL_STORE_SEEN: return pl__seen(q, r);
  case PL_STORE_TYPING: return pl__typing(q, r);
  case PL_STORE_GROUP_CREATE: return pl__group_create(q, r);
  case PL_STORE_GROUP_UPDATE: return pl__group_update(q, r);
  case PL_STORE_GROUP_LIST: return pl__group_list(q, r);
  case PL_STORE_GROUP_RECEIPTS: return pl__group_receipts(q, r);
  case PL_STORE_MEDIA_AUTH: return pl__media_auth(q, r);
  case PL_STORE_MEDIA_PUT: return pl__media_put(q, r);
  case PL_STORE_MEDIA_GET: return pl__media_get(q, r);
  case PL_STORE_GROUP_DEVICES: return pl__group_devices(q, r);
  case PL_STORE_DEVICES: return pl__devices(q, r);
  case PL_STORE_STATS: return pl_sqlite_stats(q->db, r);
  }
  return PL_OK; /* unreachable: pl__valid rejects unknown ops */
}

static pl_err pl__sq_begin(void *be) {
  pl__sq *q = be;
  /* Trim here, between transactions: inside one, callers hold pointers
   * into the caches. */
  if (q->qlen.len > PL__CACHE_MAX)
    pl__qlen_drop(q);
  if (q->convs.len > PL__CACHE_MAX)
    pl__convs_drop(q);
  if (q->users.len > PL__CACHE_MAX)
    pl__users_drop(q);
  if (q->reads.len > PL__CACHE_MAX)
    pl__reads_drop(q);
  if (q->gmeta.len > PL__CACHE_MAX)
    pl__gmeta_drop(q);
  pl_err e = pl__run(q, q->st[ST_BEGIN]);
  if (e == PL_OK && q->dacks.len + q->greads.len > PL__GCACHE_MAX)
    e = pl__gcache_drop(q); /* written in this transaction first */
  if (e == PL_OK && q->ring_entries > PL__DEDUP_MEM_ENTRIES) {
    e = pl__rings_save(q); /* nothing unsaved may go with them */
    if (e == PL_OK)
      pl__rings_drop(q);
  }
  return e;
}

static pl_err pl__sq_commit(void *be) {
  pl__sq *q = be;
  pl_err e = pl__convs_flush(q);
  if (e == PL_OK)
    e = pl__reads_flush(q);
  if (e == PL_OK)
    e = pl__run(q, q->st[ST_COMMIT]);
  for (size_t i = 0; e == PL_OK && i < q->ngone; i++)
    if (q->blob_gone)
      q->blob_gone(q->blob_ud, q->gone[i]);
  pl__gone_clear(q);
  return e;
}

static void pl__sq_rollback(void *be) {
  pl__sq *q = be;
  if (!sqlite3_get_autocommit(q->db))
    pl__run(q, q->st[ST_ROLLBACK]);
  pl__caches_drop(q);
  pl__gone_clear(q); /* their rows are back */
  pl__gmeta_drop(q); /* may name rows that were rolled back */
  if (pl__rings_replay(q) != PL_OK)
    pl_error("store: cannot reload the dedup rings; retries of recent sends may be stored twice");
}

static size_t pl__sq_backlog(void *be) { return ((pl__sq *)be)->gdirty; }

static pl_err pl__sq_flush(void *be, size_t max) { return pl__gcache_flush_some(be, max); }

static pl_err pl__sq_expire(void *be, uint64_t now_ms, uint64_t *deleted) {
  static const int steps[] = {ST_EXPIRE_QUEUE, ST_EXPIRE_MSGS, ST_EXPIRE_DEDUP};
  pl__sq *q = be;
  pl_err e = PL_OK;
  uint64_t changes[3] = {0, 0, 0};
  for (size_t i = 0; i < 3 && e == PL_OK; i++) {
    sqlite3_stmt *st = q->st[steps[i]];
    /* messages carry their expiry; dedup records are kept for the TTL */
    uint64_t t = steps[i] == ST_EXPIRE_DEDUP ? pl__dedup_cut(q, now_ms) : now_ms;
    pl__bind_u64(st, 1, pl__clamp(t));
    e = pl__run(q, st);
    changes[i] = (uint64_t)sqlite3_changes64(q->db);
  }
  if (changes[0])
    pl__qlen_drop(q); /* queue rows of unknown devices went */
  if (e == PL_OK)
    e = pl__groups_trim(q, &changes[1]);
  if (e == PL_OK)
    e = pl__media_expire(q, now_ms);
  if (e == PL_OK)
    e = pl__rings_save(q); /* the sweep's transaction also saves the rings */
  *deleted = e == PL_OK ? changes[1] : 0;
  return e;
}

/* ---- open and close ---------------------------------------------------------------- */

static void pl__sq_close(void *be) {
  pl__sq *q = be;
  if (!q)
    return;
  /* the cursors and watermarks the last sweep did not write */
  if (q->st[ST_BEGIN] && pl__run(q, q->st[ST_BEGIN]) == PL_OK &&
      (pl__gcache_drop(q) != PL_OK || pl__run(q, q->st[ST_COMMIT]) != PL_OK))
    pl__run(q, q->st[ST_ROLLBACK]);
  pl__gmeta_drop(q);
  for (int i = 0; i < ST__COUNT; i++)
    sqlite3_finalize(q->st[i]);
  if (sqlite3_close(q->db) != SQLITE_OK)
    pl_error("store: sqlite close: %s", sqlite3_errmsg(q->db));
  pl__caches_drop(q);
  pl__gone_clear(q);
  pl_free(q->gone);
  pl_free(q);
}

static int pl__first_col(void *arg, int ncol, char **vals, char **names) {
  (void)names;
  char **out = arg;
  if (ncol > 0 && vals[0] && !*out)
    *out = pl_strdup(vals[0]);
  return 0;
}

/* Runs sql; *val gets the first column of its first row (pl_free it). */
static pl_err pl__exec_sql(pl__sq *q, const char *sql, char **val) {
  char *err = NULL, *v = NULL;
  int rc = sqlite3_exec(q->db, sql, pl__first_col, &v, &err);
  if (rc != SQLITE_OK) {
    pl_error("store: sqlite: %s: %s", sql, err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    pl_free(v);
    return PL_ERR_STORE;
  }
  if (val)
    *val = v;
  else
    pl_free(v);
  return PL_OK;
}

/* Schema 7: token lifetimes. The tokens of an upgraded data dir count from
 * the upgrade (their issue time was not kept), so nobody is signed out by it. */
static pl_err pl__upgrade_tokens(pl__sq *q) {
  char sql[256];
  unsigned long long now = (unsigned long long)pl_now_ms();
  snprintf(sql, sizeof sql,
           "ALTER TABLE devices ADD COLUMN token_at INTEGER NOT NULL DEFAULT %llu;"
           "ALTER TABLE devices ADD COLUMN used_at INTEGER NOT NULL DEFAULT %llu;",
           now, now);
  return pl__exec_sql(q, sql, NULL);
}

/* WAL; synchronous=FULL makes COMMIT fsync the WAL before it returns (the
 * server acks only after that), NORMAL survives a crash of the process. */
static pl_err pl__setup(pl__sq *q, int durable) {
  char *mode = NULL, *ver = NULL;
  pl_err e = pl__exec_sql(q, "PRAGMA journal_mode=WAL", &mode);
  if (e == PL_OK && (!mode || strcmp(mode, "wal") != 0)) {
    pl_error("store: cannot switch the database to WAL mode (got %s)", mode ? mode : "nothing");
    e = PL_ERR_STORE;
  }
  if (e == PL_OK)
    e = pl__exec_sql(q, durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL);
  if (e == PL_OK)
    e = pl__exec_sql(q, "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16384", NULL);
  if (e == PL_OK)
    e = pl__exec_sql(q, "PRAGMA user_version", &ver);
  if (e == PL_OK && ver && atoi(ver) > PL__SCHEMA_VERSION) {
    pl_error("store: database schema version %s is newer than this server's (%d)", ver, PL__SCHEMA_VERSION);
    e = PL_ERR_STORE;
  }
  if (e == PL_OK && ver && atoi(ver) == 1) {
    pl_warn("store: upgrading the database from schema 1: dropping the old dedup records");
    e = pl__exec_sql(q, "DROP INDEX IF EXISTS dedup_expires; DROP TABLE IF EXISTS dedup", NULL);
  }
  if (e == PL_OK && ver && (atoi(ver) == 1 || atoi(ver) == 2))
    e = pl__exec_sql(q,
                     "ALTER TABLE messages ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;"
                     "ALTER TABLE messages ADD COLUMN aux INTEGER NOT NULL DEFAULT 0;"
                     "ALTER TABLE users ADD COLUMN read_receipts INTEGER NOT NULL DEFAULT 1;",
                     NULL);
  if (e == PL_OK && ver && atoi(ver) >= 1 && atoi(ver) <= 3)
    e = pl__exec_sql(q,
                     "ALTER TABLE users ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;"
                     "ALTER TABLE users ADD COLUMN last_seen_vis INTEGER NOT NULL DEFAULT 2;",
                     NULL);
  if (e == PL_OK && ver && atoi(ver) >= 1 && atoi(ver) <= 4)
    e = pl__exec_sql(q,
                     "ALTER TABLE messages ADD COLUMN gid INTEGER NOT NULL DEFAULT 0;"
                     "ALTER TABLE devices ADD COLUMN acked INTEGER NOT NULL DEFAULT 0;",
                     NULL);
  if (e == PL_OK && ver && atoi(ver) >= 1 && atoi(ver) <= 5)
    e = pl__exec_sql(
        q, "ALTER TABLE messages ADD COLUMN media_id TEXT; ALTER TABLE messages ADD COLUMN media BLOB;",
        NULL);
  if (e == PL_OK && ver && atoi(ver) >= 1 && atoi(ver) <= 6)
    e = pl__upgrade_tokens(q);
  if (e == PL_OK)
    e = pl__exec_sql(q, pl__schema, NULL);
  pl_free(mode);
  pl_free(ver);
  return e;
}

static pl_err pl__prepare(pl__sq *q) {
  for (int i = 0; i < ST__COUNT; i++) {
    int rc = sqlite3_prepare_v3(q->db, pl__sql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i], NULL);
    if (rc != SQLITE_OK) {
      pl_error("store: sqlite: cannot prepare %s: %s", pl__sql[i], sqlite3_errmsg(q->db));
      return PL_ERR_STORE;
    }
  }
  return PL_OK;
}

static pl_err pl__sq_open(void **out, const pl_store_config *cfg) {
  pl__sq *q = pl_calloc(1, sizeof *q);
  size_t n = strlen(cfg->dir) + sizeof "/parley.db";
  char *path = pl_malloc(n);
  pl_err e = PL_ERR_STORE;
  *out = NULL;
  snprintf(path, n, "%s/parley.db", cfg->dir);
  q->ttl_ms = cfg->ttl_ms;
  q->max_devices = cfg->max_devices;
  q->max_queue = cfg->max_queue;
  q->rules = cfg->rules;
  q->max_group = cfg->max_group ? cfg->max_group : 100000u;
  q->group_detail = cfg->group_detail;
  q->online = cfg->online;
  q->online_ud = cfg->online_ud;
  q->media_ttl_ms = cfg->media_ttl_ms ? cfg->media_ttl_ms : cfg->ttl_ms;
  q->blob_gone = cfg->blob_gone;
  q->blob_exists = cfg->blob_exists;
  q->blob_ud = cfg->blob_ud;
  /* SQLite counts every allocation under a global mutex unless told not
   * to; we never read those counters. Only possible before the library
   * initialises, so a second store in one process keeps the first setting. */
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  int rc =
      sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    pl_error("store: cannot open %s: %s", path, q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
    goto out;
  }
  sqlite3_busy_timeout(q->db, 5000); /* a tool reading the file meanwhile */
  if (pl__setup(q, cfg->durable) != PL_OK || pl__prepare(q) != PL_OK || pl__rings_replay(q) != PL_OK)
    goto out;
  *out = q;
  q = NULL;
  e = PL_OK;
out:
  pl_free(path);
  pl__sq_close(q);
  return e;
}

const pl_store_backend pl_store_sqlite = {
    .name = "sqlite",
    .open = pl__sq_open,
    .close = pl__sq_close,
    .begin = pl__sq_begin,
    .exec = pl__sq_exec,
    .commit = pl__sq_commit,
    .rollback = pl__sq_rollback,
    .expire = pl__sq_expire,
    .backlog = pl__sq_backlog,
    .flush = pl__sq_flush,
};
