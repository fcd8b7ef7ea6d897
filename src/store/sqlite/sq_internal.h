/* sq_internal.h: what the files of the SQLite store backend (src/store/sqlite/)
 * share: the backend's struct, the statement catalogue, the caches, the small
 * SQLite helpers, and the functions one file calls in another (named
 * pl_sq_<family>_..., after their home file). Nothing outside this folder
 * includes it; the backend's one public name is pl_store_sqlite (pl_store.h).
 *
 * The backend on SQLite (WAL mode), <dir>/parley.db.
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
 *   dedup    id (append order), device_id, cid (the client id, packed
 *            when hex), cref (peer uid * 2, or gid * 2 + 1) -> seq,
 *            server_ts: outlives the message so a late retry gets its
 *            original ack (sq_dedup.c says how the conv is rebuilt);
 *            vanish: the message's vanish time (0: none), negated minus
 *            one for an action (pl_sq_dedup_vanish), NULL before schema 13:
 *            a plain message's record (vanish >= 0) is also what finds it
 *            as an action's target (partial index dedup_target, sq_acts.c).
 *            Written in append order (id) and found through an in-memory
 *            ring of fingerprints per sending device (pl_idring); the TTL
 *            sweep deletes the oldest ids. Nothing is keyed by a random
 *            value, so a commit dirties few pages.
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
 *   members  (gid, uid) -> role (0: left), since_seq (the group's last
 *            seq before it joined: the history after it is owed), left_seq
 *            (0: a member; else the seq of its removal event: owed up to
 *            it), joined (= since_seq: the heir's order); by uid too
 *   gcursor  (device_id, gid) -> seq: the device has every entry of the
 *            group's history up to seq (its position in that stream),
 *            written with the Ack that moves it; no row reads as since_seq
 *   greads   (gid, uid) -> delivered_seq, read_seq: group receipts
 *   messages.gid: a group's history entry (no queue rows; positioned by
 *            its seq; partial index messages_group(gid, seq))
 *
 * Schema history: 2 replaced dedup(sender_uid, client_id, ..., expires)
 * keyed by the id itself (a random B-tree insert per message); upgrading
 * from 1 drops the old dedup records. 3 added messages.kind/aux,
 * users.read_receipts and reads. 4 added users.last_seen/last_seen_vis,
 * contacts and blocks. 5 added groups, members, greads, messages.gid and
 * devices.acked. 7 added devices.token_at and used_at (token lifetimes; an
 * upgraded data dir's tokens count from the upgrade). 8 added push_tokens
 * and push_pending (sq_push.c), imported from push.db. 9 made dedup records
 * smaller (cref instead of the conv name, the client id packed, no fp);
 * the upgrade converts the old records (pl_sq_dedup_upgrade). 10 moved the
 * group positions from the global qid (members.since_qid/left_qid,
 * devices.acked) to each group's seq (since_seq/left_seq, gcursor), so that
 * no position depends on one commit order over all writers; the upgrade
 * converts them in place (pl__upgrade_gcursor in sq_db.c). 12 added
 * users.disabled (the operator's ban) and invites (code -> uses_left,
 * expires, created: --registration invite); sq_admin.c's step. 11 added
 * messages.act, msgidx and conv_timers (message actions); 13 added
 * dedup.vanish and dedup_target, which find an action's target through the
 * dedup record every message already writes, so msgidx keeps only deletes
 * for everyone (and the rows schemas 11-12 wrote); sq_acts.c's steps. */
#ifndef PL_SQ_INTERNAL_H
#define PL_SQ_INTERNAL_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/pl_log.h"
#include "../../common/pl_map.h"
#include "../../common/pl_mem.h"
#include "../../common/pl_time.h"
#include "../../rules/pl_retention.h"
#include "../pl_idring.h"
#include "../pl_store.h"
#include "parley.pb-c.h"
#include "sq_disk.h"
#include "sq_push.h"
#include "sq_stats.h"

#define PL__SCHEMA_VERSION 13
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
#define PL__FETCH_BYTES (1u << 20) /* a page's default byte bound */

/* What a fetched entry weighs in a page's byte bound (its payload and a
 * little for its strings). */
static inline size_t pl_sq_msg_weight(const pl_msg *m) { return m->body_len + m->media_len + 64; }
#define PL__CACHE_MAX 65536u
/* Far above any configurable message size, well below SQLite's row limit: a
 * body SQLite would refuse must fail alone, not break its whole batch. */
#define PL__MAX_BODY (256u << 20)

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
  /* the settings a new user starts with are pl_privacy's (PL_PRIVACY_DEFAULTS) */                           \
  X(USER_INSERT, "INSERT INTO users(name, pwhash, created, read_receipts, last_seen_vis)"                    \
                 " VALUES(?1, ?2, ?3, ?4, ?5)")                                                              \
  X(DEVICES_OF, "SELECT id FROM devices WHERE user_id = ?1 AND token_hash IS NOT NULL ORDER BY id")          \
  X(DEVICE_BY_NAME, "SELECT id FROM devices WHERE user_id = ?1 AND name = ?2")                               \
  X(DEVICE_INSERT, "INSERT INTO devices(user_id, name, token_hash, created, token_at, used_at)"              \
                   " VALUES(?1, ?2, ?3, ?4, ?4, ?4)")                                                        \
  X(DEVICE_TOKEN, "UPDATE devices SET token_hash = ?2, token_at = ?3, used_at = ?3 WHERE id = ?1")           \
  X(RESUME,                                                                                                  \
    "SELECT d.id, d.user_id, d.name, u.name, d.used_at FROM devices d JOIN users u ON u.id = d.user_id"      \
    " WHERE d.token_hash = ?1 AND d.used_at >= ?2 AND d.token_at >= ?3")                                     \
  X(DEVICE_USED, "UPDATE devices SET used_at = max(used_at, ?2) WHERE id = ?1")                              \
  X(DEVICE_LIST, "SELECT id, name, created, used_at FROM devices WHERE user_id = ?1"                         \
                 " AND token_hash IS NOT NULL AND used_at >= ?2 AND token_at >= ?3 ORDER BY id")             \
  X(RING_GET, "SELECT ring FROM dedup_rings WHERE device_id = ?1")                                           \
  X(RING_PUT, "INSERT OR REPLACE INTO dedup_rings(device_id, ring) VALUES(?1, ?2)")                          \
  X(META_GET, "SELECT value FROM meta WHERE key = ?1")                                                       \
  X(META_PUT, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)")                                      \
  X(DEDUP_TAIL, "SELECT id, device_id, cid FROM dedup WHERE id > ?1 ORDER BY id")                            \
  X(DEDUP_MAX, "SELECT COALESCE(max(id), 0) FROM dedup")                                                     \
  X(DEDUP_ROW, "SELECT cid, cref, seq, server_ts, vanish FROM dedup WHERE id = ?1 AND server_ts > ?2")       \
  X(DEDUP_PUT, "INSERT INTO dedup(device_id, cid, cref, seq, server_ts, vanish)"                            \
               " VALUES(?1, ?2, ?3, ?4, ?5, ?6)")                                                           \
  X(CONV_GET, "SELECT last_seq, last_ts FROM convs WHERE conv = ?1")                                         \
  X(CONV_PUT, "INSERT OR REPLACE INTO convs(conv, last_seq, last_ts) VALUES(?1, ?2, ?3)")                    \
  X(MSG_INSERT, "INSERT INTO messages(conv, seq, sender_uid, from_name, from_device, client_id, body,"       \
                " client_ts, server_ts, expires, refs, kind, aux, sk)"                                       \
                " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)")                      \
  X(QUEUE_INSERT, "INSERT INTO queue(device_id, qid) VALUES(?1, ?2)")                                        \
  X(QUEUE_COUNT, "SELECT COUNT(*) FROM queue WHERE device_id = ?1")                                          \
  X(QUEUE_FROM, "SELECT COUNT(*) FROM queue q JOIN messages m ON m.qid = q.qid"                              \
                " WHERE q.device_id = ?1 AND m.sender_uid = ?2 AND m.kind = 0")                              \
  X(FETCH, "SELECT m.qid, m.conv, m.seq, m.from_name, m.from_device, m.client_id, m.body, m.client_ts,"      \
           " m.server_ts, m.kind, m.aux, m.media, m.act, m.sk FROM queue q JOIN messages m ON m.qid = q.qid" \
           " WHERE q.device_id = ?1 AND q.qid > ?2 AND m.expires > ?3 ORDER BY q.qid LIMIT ?4")              \
  /* the conversations an ack covers, for delivered receipts */                                              \
  X(ACK_CONVS, "SELECT m.conv, max(m.seq), m.sender_uid FROM queue q JOIN messages m ON m.qid = q.qid"       \
               " WHERE q.device_id = ?1 AND q.qid <= ?2 AND m.kind = 0 AND m.sender_uid != ?3"               \
               " GROUP BY m.conv, m.sender_uid")                                                             \
  X(EVENT_OLD, "SELECT qid FROM messages WHERE conv = ?1 AND kind = ?2 AND sender_uid = ?3 AND kind != 0")   \
  /* every queue row of a replaced event, with the devices, for their queue lengths */                       \
  X(EVENT_UNQUEUE_ALL, "DELETE FROM queue WHERE qid = ?1 RETURNING device_id")                               \
  X(EVENT_DROP, "DELETE FROM messages WHERE qid = ?1")                                                       \
  X(READS_GET, "SELECT read_seq, delivered_seq FROM reads WHERE uid = ?1 AND conv = ?2")                     \
  X(READS_PUT, "INSERT OR REPLACE INTO reads(uid, conv, read_seq, delivered_seq) VALUES(?1, ?2, ?3, ?4)")    \
  /* the peer's watermarks, both settings, and whether the peer blocked me (pl_receipts_peer_marks) */       \
  X(UNREAD, "SELECT r.conv, COALESCE(c.last_seq, 0), r.read_seq, COALESCE(p.delivered_seq, 0),"              \
            " COALESCE(p.read_seq, 0), u.read_receipts, COALESCE(pu.read_receipts, 0), b.uid IS NOT NULL"    \
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
  /* the messages whose last reference goes, then the others lose one: a      */                             \
  /* 1:1 message (one target) is deleted without first being rewritten         */                            \
  X(ACK_MSGS, "DELETE FROM messages WHERE refs <= 1"                                                         \
              " AND qid IN (SELECT qid FROM queue WHERE device_id = ?1 AND qid <= ?2)")                      \
  X(ACK_REFS, "UPDATE messages SET refs = refs - 1"                                                          \
              " WHERE qid IN (SELECT qid FROM queue WHERE device_id = ?1 AND qid <= ?2)")                    \
  /* the queue rows an ack covers: when ACK_MSGS deleted as many, no message is left for ACK_REFS */         \
  X(ACK_COUNT, "SELECT count(*) FROM queue WHERE device_id = ?1 AND qid <= ?2")                              \
  X(ACK_QUEUE, "DELETE FROM queue WHERE device_id = ?1 AND qid <= ?2")                                       \
  X(EXPIRE_QUEUE, "DELETE FROM queue WHERE qid IN (SELECT qid FROM messages WHERE expires <= ?1)")           \
  X(EXPIRE_MSGS, "DELETE FROM messages WHERE expires <= ?1")                                                 \
  /* ---- groups ---- */                                                                                     \
  X(GROUP_INSERT, "INSERT INTO groups(name, description, created, members) VALUES(?1, ?2, ?3, 0)")           \
  X(GROUP_GET, "SELECT name, description, members FROM groups WHERE gid = ?1")                               \
  X(GROUP_RENAME, "UPDATE groups SET name = ?2, description = ?3 WHERE gid = ?1")                            \
  X(GROUP_COUNT, "UPDATE groups SET members = members + ?2 WHERE gid = ?1")                                  \
  X(MEMBER_GET, "SELECT role FROM members WHERE gid = ?1 AND uid = ?2")                                      \
  X(MEMBER_PUT, "INSERT OR REPLACE INTO members(gid, uid, role, since_seq, left_seq, joined)"                \
                " VALUES(?1, ?2, ?3, ?4, 0, ?4)")                                                            \
  X(MEMBER_ROLE, "UPDATE members SET role = ?3 WHERE gid = ?1 AND uid = ?2")                                 \
  X(MEMBER_LEFT, "UPDATE members SET role = 0, left_seq = ?3 WHERE gid = ?1 AND uid = ?2")                   \
  X(MEMBERS_LIST, "SELECT u.name, m.role FROM members m JOIN users u ON u.id = m.uid"                        \
                  " WHERE m.gid = ?1 AND m.role > 0 ORDER BY u.name")                                        \
  /* the heir's candidates: pl_roles_heir_better picks among them */                                         \
  X(MEMBER_HEIR, "SELECT uid, role, joined FROM members WHERE gid = ?1 AND role > 0 AND uid != ?2")          \
  X(GROUPS_OF, "SELECT gid, since_seq, left_seq, role FROM members WHERE uid = ?1 ORDER BY gid")             \
  X(GROUP_LIST, "SELECT g.gid, g.name, g.description, g.members, m.role FROM members m"                      \
                " JOIN groups g ON g.gid = m.gid WHERE m.uid = ?1 AND m.role > 0 ORDER BY g.gid")            \
  X(GMSG_INSERT, "INSERT INTO messages(conv, seq, sender_uid, from_name, from_device, client_id, body,"      \
                 " client_ts, server_ts, expires, refs, kind, aux, gid, sk)"                                 \
                 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?12, ?13, ?14)")                  \
  /* a device's window of a group's history: lo < seq <= hi, qid > ?4 (protocol 1; else 0) */                \
  X(GFETCH,                                                                                                  \
    "SELECT qid, conv, seq, from_name, from_device, client_id, body, client_ts, server_ts, kind,"            \
    " aux, media, act, sk FROM messages WHERE gid = ?1 AND gid != 0 AND seq > ?2 AND seq <= ?3 AND qid > ?4" \
    " AND expires > ?5 ORDER BY seq LIMIT ?6")                                                               \
  /* a device's cursor in a group's history (no row: none yet, read as the member's since_seq) */            \
  X(GCUR_GET, "SELECT seq FROM gcursor WHERE device_id = ?1 AND gid = ?2")                                   \
  X(GCUR_PUT, "INSERT INTO gcursor(device_id, gid, seq) VALUES(?1, ?2, ?3)"                                  \
              " ON CONFLICT(device_id, gid) DO UPDATE SET seq = max(seq, excluded.seq) RETURNING seq")       \
  X(GCUR_FORGET, "DELETE FROM gcursor WHERE gid = ?1 AND device_id IN"                                       \
                 " (SELECT id FROM devices WHERE user_id = ?2) RETURNING device_id")                         \
  X(GROUPS_ALL, "SELECT gid FROM groups")                                                                    \
  /* how far every device of every member (present, or gone with history owed) has it */                     \
  X(GROUP_CURSOR, "SELECT min(max(COALESCE(c.seq, 0), m.since_seq)) FROM members m JOIN devices d"           \
                  " ON d.user_id = m.uid AND d.token_hash IS NOT NULL LEFT JOIN gcursor c"                   \
                  " ON c.device_id = d.id AND c.gid = m.gid WHERE m.gid = ?1")                               \
  X(GROUP_TRIM, "DELETE FROM messages WHERE gid = ?1 AND gid != 0 AND seq <= ?2")                            \
  /* a member who left is forgotten once its devices have all it was owed, or it expired */                  \
  X(GROUP_FORGET,                                                                                            \
    "DELETE FROM members WHERE gid = ?1 AND role = 0 AND (left_seq <= COALESCE("                             \
    "(SELECT min(max(COALESCE(c.seq, 0), members.since_seq)) FROM devices d LEFT JOIN gcursor c"             \
    " ON c.device_id = d.id AND c.gid = ?1 WHERE d.user_id = members.uid"                                    \
    " AND d.token_hash IS NOT NULL), left_seq) OR left_seq < COALESCE("                                      \
    "(SELECT min(seq) FROM messages WHERE gid = ?1 AND gid != 0), left_seq + 1)) RETURNING uid")             \
  X(GREADS_SET, "UPDATE greads SET delivered_seq = ?3, read_seq = ?4 WHERE gid = ?1 AND uid = ?2")           \
  X(GLAST, "SELECT qid, seq FROM messages WHERE gid = ?1 AND gid != 0 ORDER BY seq DESC LIMIT 1")            \
  X(GHIST_COUNT, "SELECT count(*) FROM messages WHERE gid = ?1 AND gid != 0")                                \
  X(GHIST_DROP, "DELETE FROM messages WHERE qid = (SELECT qid FROM messages WHERE gid = ?1 AND gid != 0"     \
                " ORDER BY seq LIMIT 1)")                                                                    \
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
  /* protocol 1: a group's newest seq above a cursor that an Ack's qid covers (down from the top) */         \
  X(GACK_SEQ, "SELECT seq FROM messages WHERE gid = ?1 AND gid != 0 AND seq > ?2 AND qid <= ?3"              \
              " ORDER BY seq DESC LIMIT 1")                                                                  \
  X(GSENDERS_SEQ, "SELECT DISTINCT sender_uid FROM messages WHERE gid = ?1 AND gid != 0 AND seq > ?2"        \
                  " AND seq <= ?3 AND kind = 0 AND sender_uid != ?4")                                        \
  X(UNREAD_GROUPS, "SELECT 'g:' || g.gid, COALESCE(c.last_seq, 0), g.read_seq FROM greads g"                 \
                   " LEFT JOIN convs c ON c.conv = 'g:' || g.gid WHERE g.uid = ?1 ORDER BY g.gid")           \
  /* ---- message actions (sq_acts.c) ---- */                                                                \
  /* msgidx: the deletes for everyone (and plain messages of schemas 11-12) */                             \
  X(ACT_IDX_PUT, "INSERT OR REPLACE INTO msgidx(conv, seq, qid, sender_uid, server_ts, expires, deleted)"    \
                 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, 1)")                                                       \
  X(ACT_IDX_GET, "SELECT qid, sender_uid, server_ts, deleted FROM msgidx"                                    \
                 " WHERE conv = ?1 AND seq = ?2 AND expires > ?3")                                           \
  /* a target by its dedup record (partial index dedup_target) */                                         \
  X(ACT_DEDUP_GET, "SELECT d.server_ts, d.vanish, v.user_id FROM dedup d JOIN devices v ON v.id = d.device_id" \
                   " WHERE d.cref = ?1 AND d.seq = ?2 AND d.vanish >= 0 AND d.server_ts > ?3")               \
  /* a target's message row: in a group's history, or in a queue of the two users' devices */             \
  X(ACT_QID_GROUP, "SELECT qid FROM messages WHERE gid = ?1 AND gid != 0 AND seq = ?2")                      \
  X(ACT_QID_DM, "SELECT m.qid FROM devices v JOIN queue q ON q.device_id = v.id JOIN messages m"             \
                " ON m.qid = q.qid WHERE v.user_id IN (?1, ?2) AND m.conv = ?3 AND m.seq = ?4 LIMIT 1")      \
  X(ACT_IDX_EXPIRE, "DELETE FROM msgidx WHERE expires <= ?1")                                                \
  X(ACT_TIMER_GET, "SELECT timer_s FROM conv_timers WHERE conv = ?1")                                        \
  X(ACT_TIMER_PUT, "INSERT OR REPLACE INTO conv_timers(conv, timer_s) VALUES(?1, ?2)")                       \
  X(ACT_ATTACH, "UPDATE messages SET act = ?2, expires = min(expires, ?3) WHERE qid = ?1")                   \
  /* a group entry deleted for everyone stays a tombstone: empty, no media */                                \
  X(ACT_TOMBSTONE, "UPDATE messages SET body = x'', media = NULL, media_id = NULL, act = ?2 WHERE qid = ?1") \
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
  /* ids follow commit order, so the expired records are (about) a prefix */                                 \
  X(EXPIRE_DEDUP, "DELETE FROM dedup WHERE id < COALESCE((SELECT id FROM dedup WHERE server_ts > ?1"         \
                  " ORDER BY id LIMIT 1), (SELECT max(id) + 1 FROM dedup))")

enum {
#define PL__STMT_ENUM(name, sql) ST_##name,
  PL__STMTS(PL__STMT_ENUM)
#undef PL__STMT_ENUM
      ST__COUNT
};

/* ---- sole-writer caches -------------------------------------------------------
 *
 * These caches sit in front of the tables and are written back (at commit,
 * by the sweep, or at close) instead of read and written per message:
 *   qlen     device -> queue length, and shares: device -> sender -> its
 *            queued messages (sq_queue.c)
 *   convs    conversation -> last seq / server_ts (pl__conv, sq_convs.c)
 *   users    user -> name, settings, devices, blocks, memberships
 *            (pl__user, sq_accounts.c)
 *   reads    (user, conversation) -> watermarks (pl__read, sq_convs.c)
 *   rings    device -> its recent client-id fingerprints (pl_idring, sq_dedup.c)
 *   gcurs, greads, gmeta  group cursors per (device, group) (read
 *            through: each Ack writes its own), group watermarks, group
 *            facts (pl__gcur, pl__gread, pl__gmeta, sq_ghist.c)
 * They are correct only because this backend has one writer: the store
 * thread (pl_store.c) runs every transaction, so nothing can change a row
 * behind a cached copy, and a counter taken from the cache (a seq, a queue
 * length) cannot be taken twice. Every cache may hold effects of the open
 * transaction, so rollback drops them (the group watermarks only move
 * forward and are kept: they wait to be written). A backend with several
 * writers (PostgreSQL, issue 15: several parleyd on one database) must not
 * copy them: it reads and moves these values in its transactions, under the
 * database's locks. One more thing here holds only with one writer: within
 * a group, qid order is seq order. Protocol 1's one stream relies on it (its
 * fetch takes group entries after a qid, its Ack's qid becomes each group's
 * seq: sq_ghist.c); protocol 2 positions each group by seq alone. */

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

/* A user's row in a group's members (role 0: left, history up to left_seq owed). */
typedef struct pl__mship {
  uint64_t gid, since_seq, left_seq;
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
 * and are written once per commit (pl_sq_conv_flush), not once per message. */
typedef struct pl__conv {
  char *name;
  uint64_t seq, ts;
  uint32_t timer_s; /* disappearing messages (conv_timers), once timer_known */
  int timer_known;
  struct pl__conv *next_dirty;
  int dirty;
} pl__conv;

/* In a 10,000-member group every message is acked by 10,000 devices within
 * a few commits, so an ack of group history costs as little SQL as it can:
 * each device's cursor in each group (gcursor) is cached here for fetches
 * and written by the Ack that moves it (one upsert per group it moves, in
 * the Ack's transaction: a crash then redelivers only what was not
 * acknowledged); each member's watermarks (greads) live here and are
 * written by the sweep (every --sweep-interval, a chunk per transaction:
 * pl_store.c), at close, and before a query reads them, so a crash may lose
 * that much of the delivered watermarks (receipts), never a cursor. The
 * watermarks only move forward, so a rollback keeps them; the cursors,
 * written through, are dropped and read again. */
#define PL__GCACHE_MAX (1u << 18)

/* A cached gcursor row (seq 0 also for no row: read as since_seq). */
typedef struct pl__gcur {
  uint64_t dev, gid, seq;
} pl__gcur;

typedef struct pl__gread {
  uint64_t gid, uid, delivered, read;
  int dirty;
} pl__gread;

/* A group's newest history entry and size, for acks without SQL. */
typedef struct pl__gmeta {
  uint64_t last_qid, last_seq, size;
  uint64_t entries; /* rows of its history (0: not counted yet) */
} pl__gmeta;

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
  pl_map gcurs;          /* pl__gcur_key(device, gid) -> pl__gcur: cursors in group histories */
  pl_map greads;         /* pl__gread_key(gid, uid) -> pl__gread: group watermarks */
  pl_map gmeta;          /* gid -> pl__gmeta */
  size_t gdirty;         /* entries of greads not yet written (may over-count) */
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
  pl_sq_push *push; /* the PUSH_* ops (sq_push.c) */
  pl_acts_cfg acts; /* message actions' windows (sq_acts.c) */
  /* encryption at rest (sq_seal.c): the ring (NULL: plain), where it is
   * published, and the re-encryption pass: pending, for which key, its
   * place, rows per key it has seen; what /metrics reads (any thread) */
  const struct pl_seal *seal;
  struct pl_seal_ref *seal_ref;
  int rekey_pending, rekey_media; /* rekey_media: the pass is on media.name */
  uint8_t rekey_kid;
  char rekey_media_after[40];
  uint64_t rekey_after, rekeyed;
  uint64_t rekey_count[256];
  _Atomic uint64_t seal_rows[256];
  _Atomic uint64_t seal_passes;
} pl__sq;

/* The backend's entry for one op (sq_db.c): exec runs it inside the open
 * transaction (pl_store_valid checked it first). */
typedef struct pl_sq_op {
  pl_err (*exec)(pl__sq *q, pl_store_req *r);
} pl_sq_op;
/* The entry of op; NULL if the backend has none. */
const pl_sq_op *pl_sq_op_get(int op);

/* ---- small SQLite helpers (inline: they run on every statement) ----------- */

/* Room for element n of an array that doubles (from 8) when full. */
static inline void *pl_sq_reserve(void *p, size_t n, size_t *cap, size_t elem) {
  if (n < *cap)
    return p;
  *cap = *cap ? *cap * 2 : 8;
  return pl_realloc(p, *cap * elem);
}

static inline pl_err pl_sq_sql_err(pl__sq *q, sqlite3_stmt *st, int rc) {
  pl_error("store: sqlite error %d (%s) in: %s", rc, sqlite3_errmsg(q->db), st ? sqlite3_sql(st) : "?");
  return pl_sq_disk_full(q->db, rc) ? PL_ERR_STORAGE_FULL : PL_ERR_STORE;
}

static inline void pl_sq_bind_u64(sqlite3_stmt *st, int i, uint64_t v) {
  sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

static inline void pl_sq_bind_text(sqlite3_stmt *st, int i, const char *s) {
  sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
}

static inline uint64_t pl_sq_col_u64(sqlite3_stmt *st, int i) {
  return (uint64_t)sqlite3_column_int64(st, i);
}

static inline char *pl_sq_col_str(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return pl_strndup(t ? (const char *)t : "", (size_t)sqlite3_column_bytes(st, i));
}

/* A time for SQL, where integers are signed 64-bit. */
static inline uint64_t pl_sq_clamp(uint64_t v) { return v > INT64_MAX ? INT64_MAX : v; }

static inline uint64_t pl_sq_expires(const pl__sq *q, uint64_t ts) {
  return pl_retention_expires(q->ttl_ms, ts);
}

/* Steps a statement that returns no rows and resets it. */
static inline pl_err pl_sq_run(pl__sq *q, sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* Runs a statement bound to (a). */
static inline pl_err pl_sq_run_text(pl__sq *q, int stmt, const char *a) {
  sqlite3_stmt *st = q->st[stmt];
  pl_sq_bind_text(st, 1, a);
  return pl_sq_run(q, st);
}

static inline pl_err pl_sq_run1(pl__sq *q, int stmt, uint64_t a) {
  pl_sq_bind_u64(q->st[stmt], 1, a);
  return pl_sq_run(q, q->st[stmt]);
}

/* Runs a statement bound to (a, b). */
static inline pl_err pl_sq_run2(pl__sq *q, int stmt, uint64_t a, uint64_t b) {
  sqlite3_stmt *st = q->st[stmt];
  pl_sq_bind_u64(st, 1, a);
  pl_sq_bind_u64(st, 2, b);
  return pl_sq_run(q, st);
}

/* Runs a statement bound to (a, b, c). */
static inline pl_err pl_sq_run3(pl__sq *q, int stmt, uint64_t a, uint64_t b, uint64_t c) {
  pl_sq_bind_u64(q->st[stmt], 3, c);
  return pl_sq_run2(q, stmt, a, b);
}

/* Steps a query once: *found = 1 with a row to read (the caller resets). */
static inline pl_err pl_sq_row(pl__sq *q, sqlite3_stmt *st, int *found) {
  int rc = sqlite3_step(st);
  *found = rc == SQLITE_ROW;
  if (rc == SQLITE_ROW || rc == SQLITE_DONE)
    return PL_OK;
  pl_err e = pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* One u64 from a query bound to (a, b, c) (as many as it takes); *v = 0 if
 * it returns no row or NULL. */
static inline pl_err pl_sq_u64_query(pl__sq *q, int stmt, uint64_t a, uint64_t b, uint64_t c, uint64_t *v) {
  sqlite3_stmt *st = q->st[stmt];
  int n = sqlite3_bind_parameter_count(st), found;
  uint64_t args[3] = {a, b, c};
  for (int i = 0; i < n && i < 3; i++)
    pl_sq_bind_u64(st, i + 1, args[i]);
  pl_err e = pl_sq_row(q, st, &found);
  *v = e == PL_OK && found ? pl_sq_col_u64(st, 0) : 0;
  sqlite3_reset(st);
  return e;
}

/* A dedup record's vanish column as a vanish time (schema 13; NULL reads 0). */
static inline uint64_t pl_sq_dedup_vanish(int64_t v) { return (uint64_t)(v >= 0 ? v : -1 - v); }

static inline uint64_t pl_sq_hash(const char *s) { return pl_hash_bytes(s, strlen(s)); }

/* ---- across files ------------------------------------------------------------ */

/* sq_acts.c: message actions (protocol.md 11.9). upgrade, upgrade13:
 * schemas 11 and 13, steps of their own (run on every open; they do what is
 * missing). check: before anything of a Send is written, refuses
 * (r->status) what pl_acts refuses; peer is the other user of a 1:1 (me for
 * a note to self), gid the group (0 for 1:1). vanish: after check, before
 * the dedup record (which keeps it), out.vanish_at. apply: after the
 * message row (out.msg filled): the Act blob, a delete's removal, a timer. */
/* sq_db.c: a schema step that adds a column when missing (see there). */
pl_err pl_sq_upgrade_column(sqlite3 *db, const char *table, const char *column, const char *decl,
                            const char *sql, const char *what);
pl_err pl_sq_acts_upgrade(sqlite3 *db);
pl_err pl_sq_acts_upgrade13(sqlite3 *db);
pl_err pl_sq_acts_check(pl__sq *q, pl_store_req *r, const char *conv, pl__conv *c, pl__user *me, uint64_t peer,
                        uint64_t gid, uint64_t now);
pl_err pl_sq_acts_vanish(pl__sq *q, pl_store_req *r, pl__conv *c, uint64_t ts);
pl_err pl_sq_acts_apply(pl__sq *q, pl_store_req *r, pl__conv *c, uint64_t peer, uint64_t gid);
pl_err pl_sq_acts_expire(pl__sq *q, uint64_t now);
/* sq_queue.c: takes message qid out of every queue and deletes it. */
pl_err pl_sq_queue_drop_msg(pl__sq *q, uint64_t qid);

/* sq_accounts.c */
void pl_sq_acct_users_drop(pl__sq *q);
int pl_sq_acct_blocks(const pl__user *u, uint64_t uid);
pl_err pl_sq_acct_user_get(pl__sq *q, uint64_t uid, pl__user **out);
pl_err pl_sq_acct_user_by_name(pl__sq *q, const char *name, pl__user **out);
pl_err pl_sq_acct_user_insert(pl__sq *q, const char *name, const char *pwhash);
pl_err pl_sq_acct_register(pl__sq *q, pl_store_req *r);
pl_err pl_sq_acct_get_user(pl__sq *q, pl_store_req *r);
int pl_sq_acct_has_dev(const pl__user *u, uint64_t dev);
pl_err pl_sq_acct_login_device(pl__sq *q, pl_store_req *r);
pl_err pl_sq_acct_resume(pl__sq *q, pl_store_req *r);
pl_err pl_sq_acct_token(pl__sq *q, pl_store_req *r, const uint8_t *hash, uint64_t *uid, uint64_t *did,
                        char **user, char **device);
pl_err pl_sq_acct_settings(pl__sq *q, pl_store_req *r);
pl_err pl_sq_acct_contacts(pl__sq *q, pl_store_req *r);
pl_err pl_sq_acct_block(pl__sq *q, pl_store_req *r);
pl_err pl_sq_acct_has_contact(pl__sq *q, uint64_t uid, uint64_t contact, int *has);
pl_err pl_sq_acct_presence(pl__sq *q, pl_store_req *r);
pl_err pl_sq_acct_seen(pl__sq *q, pl_store_req *r);
pl_err pl_sq_acct_typing(pl__sq *q, pl_store_req *r);
pl_err pl_sq_acct_logout(pl__sq *q, pl_store_req *r);
pl_err pl_sq_acct_devices(pl__sq *q, pl_store_req *r);

/* sq_seal.c: encryption at rest. upgrade: messages.sk (every open). open:
 * after the statements, refuses a wrong or missing key (PL_ERR_CONFIG).
 * sk: the key id new rows get (0: plain). bind: the n bytes at p as
 * parameter i of st, sealed for (col, conv, seq, ts) when there is a key.
 * col: column i of a row sealed with key sk, opened into *out (pl_free).
 * refresh: between transactions, takes a replaced ring. rekey: a batch of
 * the re-encryption pass (rekey_pending), in a transaction. */
pl_err pl_sq_seal_upgrade(sqlite3 *db);
pl_err pl_sq_seal_open(pl__sq *q);
uint8_t pl_sq_seal_sk(const pl__sq *q);
void pl_sq_seal_bind(pl__sq *q, sqlite3_stmt *st, int i, char col, const char *conv, uint64_t seq,
                     uint64_t ts, const void *p, size_t n);
pl_err pl_sq_seal_col(pl__sq *q, sqlite3_stmt *st, int i, uint8_t sk, char col, const char *conv,
                      uint64_t seq, uint64_t ts, uint8_t **out, size_t *n);
/* media.name: sealed (a BLOB, ad = its media id) with a key, else TEXT. */
void pl_sq_seal_bind_name(pl__sq *q, sqlite3_stmt *st, int i, const char *id, const char *name);
pl_err pl_sq_seal_name(pl__sq *q, sqlite3_stmt *st, int i, const char *id, char *out, size_t cap);
void pl_sq_seal_refresh(pl__sq *q);
pl_err pl_sq_seal_rekey(pl__sq *q);

/* sq_queue.c */
void pl_sq_queue_qlen_drop(pl__sq *q);
void pl_sq_queue_shares_add(pl__sq *q, const uint64_t *t, size_t n, uint64_t sender);
pl_err pl_sq_queue_full(pl__sq *q, const pl__user *me, const uint64_t *t, size_t n, int *full);
pl_err pl_sq_queue_msg_insert(pl__sq *q, pl_store_req *r, uint64_t expires);
pl_err pl_sq_queue_insert(pl__sq *q, const uint64_t *t, size_t n, uint64_t qid);
pl_err pl_sq_queue_msg_row(pl__sq *q, sqlite3_stmt *st, pl_msg *m);
pl_err pl_sq_queue_fetch(pl__sq *q, pl_store_req *r);
uint64_t *pl_sq_queue_devs_except(const pl__user *u, uint64_t skip, size_t *n);
void pl_sq_queue_event_out(pl_store_req *r, uint64_t qid, int kind, const char *conv, uint64_t seq,
                           const pl__user *by, uint64_t aux, uint64_t now, uint64_t *t, size_t n);
uint64_t *pl_sq_queue_split_online(pl__sq *q, uint64_t *t, size_t *n, size_t *nlive);
pl_err pl_sq_queue_event(pl__sq *q, pl_store_req *r, int kind, const char *conv, uint64_t seq,
                         const pl__user *by, uint64_t aux, uint64_t *t, size_t n);
pl_err pl_sq_queue_ack(pl__sq *q, pl_store_req *r);

/* sq_dedup.c */
void pl_sq_dedup_rings_drop(pl__sq *q);
pl_err pl_sq_dedup_rings_save(pl__sq *q);
pl_err pl_sq_dedup_rings_replay(pl__sq *q);
uint64_t pl_sq_dedup_cut(const pl__sq *q, uint64_t now);
pl_err pl_sq_dedup_get(pl__sq *q, pl_store_req *r, uint64_t now, int *hit);
/* a dedup record's conversation: the peer's user id (1:1) or the group id */
#define PL_SQ_DEDUP_DM(peer_uid) ((uint64_t)(peer_uid) << 1)
#define PL_SQ_DEDUP_GROUP(gid) ((uint64_t)(gid) << 1 | 1u)
pl_err pl_sq_dedup_put(pl__sq *q, pl_store_req *r, uint64_t cref, uint64_t seq, uint64_t ts);
pl_err pl_sq_dedup_upgrade(sqlite3 *db);

/* sq_convs.c */
void pl_sq_conv_cache_drop(pl__sq *q);
void pl_sq_conv_reads_drop(pl__sq *q);
pl_err pl_sq_conv_get(pl__sq *q, const char *name, pl__conv **out);
void pl_sq_conv_read_touch(pl__sq *q, pl__read *rd);
pl_err pl_sq_conv_reads_flush(pl__sq *q);
pl_err pl_sq_conv_read_load(pl__sq *q, uint64_t uid, const char *conv, pl__read **out);
void pl_sq_conv_peek(const pl__conv *c, uint64_t now, uint64_t *seq, uint64_t *ts);
void pl_sq_conv_take(pl__sq *q, pl__conv *c, uint64_t seq, uint64_t ts);
pl_err pl_sq_conv_flush(pl__sq *q);
pl_err pl_sq_conv_send(pl__sq *q, pl_store_req *r);
pl_err pl_sq_conv_mark_read(pl__sq *q, pl_store_req *r);
pl_err pl_sq_conv_unread(pl__sq *q, pl_store_req *r);

/* sq_groups.c */
void pl_sq_group_gconv(uint64_t gid, char *buf, size_t n);
pl_err pl_sq_group_mships(pl__sq *q, pl__user *u);
pl_err pl_sq_group_mships_of(pl__sq *q, uint64_t uid, pl__user *tmp, pl__user **out);
void pl_sq_group_mships_done(pl__user *tmp);
pl_err pl_sq_group_role(pl__sq *q, pl__user *u, uint64_t gid, int *role);
pl_err pl_sq_group_create(pl__sq *q, pl_store_req *r);
pl_err pl_sq_group_remove_by(pl__sq *q, pl_store_req *r, uint64_t gid, pl__user *u, int was, const char *by);
pl_err pl_sq_group_update(pl__sq *q, pl_store_req *r);
pl_err pl_sq_group_list(pl__sq *q, pl_store_req *r);
/* A row of (gid, name, description, members, role) into g. */
void pl_sq_group_row(sqlite3_stmt *st, pl_group_info *g);
pl_err pl_sq_group_targets(pl__sq *q, int stmt, uint64_t gid, uint64_t uid, uint64_t **targets, size_t *n);
pl_err pl_sq_group_devices(pl__sq *q, pl_store_req *r);

/* sq_ghist.c */
void pl_sq_ghist_gread_forget(pl__sq *q, uint64_t gid, uint64_t uid);
pl_err pl_sq_ghist_gcache_flush_some(pl__sq *q, size_t max);
pl_err pl_sq_ghist_gcache_flush(pl__sq *q);
void pl_sq_ghist_gmeta_drop(pl__sq *q);
pl_err pl_sq_ghist_gcache_drop(pl__sq *q);
void pl_sq_ghist_gcur_drop(pl__sq *q);
pl_err pl_sq_ghist_gcur_put(pl__sq *q, uint64_t dev, uint64_t gid, uint64_t seq);
pl_err pl_sq_ghist_gcur_start(pl__sq *q, uint64_t uid, uint64_t dev);
pl_err pl_sq_ghist_glog_put(pl__sq *q, uint64_t gid, const pl__user *from, const char *device, const char *id,
                            const uint8_t *body, size_t body_len, uint64_t client_ts, int kind, uint64_t aux,
                            pl_msg *m);
pl_err pl_sq_ghist_send_group(pl__sq *q, pl_store_req *r);
/* After pl_sq_queue_fetch's part (in out.msgs, read as far as a page goes). */
pl_err pl_sq_ghist_fetch_groups(pl__sq *q, pl_store_req *r, uint32_t limit, size_t max_bytes);
pl_err pl_sq_ghist_ack_cursor(pl__sq *q, pl_store_req *r);
pl_err pl_sq_ghist_mark_read_group(pl__sq *q, pl_store_req *r);
pl_err pl_sq_ghist_group_receipts(pl__sq *q, pl_store_req *r);
pl_err pl_sq_ghist_groups_trim(pl__sq *q, uint64_t *deleted);
pl_err pl_sq_ghist_typing_group(pl__sq *q, pl_store_req *r);

/* sq_media.c */
pl_err pl_sq_media_for_send(pl__sq *q, pl_store_req *r, uint8_t **att, size_t *len);
pl_err pl_sq_media_attach(pl__sq *q, pl_store_req *r, uint8_t **att, size_t len);
pl_err pl_sq_media_auth(pl__sq *q, pl_store_req *r);
pl_err pl_sq_media_put(pl__sq *q, pl_store_req *r);
pl_err pl_sq_media_get(pl__sq *q, pl_store_req *r);
void pl_sq_media_gone_clear(pl__sq *q);
/* A file key an upload named: dropped after the commit unless another upload names it. */
pl_err pl_sq_media_drop_blob(pl__sq *q, const char *key);

/* sq_admin.c */
pl_err pl_sq_admin(pl__sq *q, pl_store_req *r);
pl_err pl_sq_admin_disabled(pl__sq *q, uint64_t uid, int *disabled);
/* The backend's backup op (any thread but the store's; dir: the data dir). */
pl_err pl_sq_admin_backup(const char *dir, const char *to, uint64_t *bytes);
/* Uses up one registration of invite code (r->status INVITE_INVALID if it admits none). */
pl_err pl_sq_admin_invite_take(pl__sq *q, pl_store_req *r, const char *code);
pl_err pl_sq_admin_upgrade(sqlite3 *db);
pl_err pl_sq_media_expire(pl__sq *q, uint64_t now);

#endif
