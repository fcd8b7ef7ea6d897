/* pl_retention: how long things live (docs/protocol.md 11.3, 13.6): a
 * message's expiry, when a message is deleted, how long a dedup record
 * counts, media's lifetime, and token lifetimes. Times are ms since the
 * epoch; "never" is INT64_MAX, the largest time a database column holds.
 * Decisions only; the backend stores the times and deletes what they say is
 * gone. The calls on the send path are inline. */
#ifndef PL_RETENTION_H
#define PL_RETENTION_H

#include <stddef.h>
#include <stdint.h>

#define PL_RETENTION_NEVER ((uint64_t)INT64_MAX)

/* When a message (or event) stamped ts expires: ttl_ms after it; ttl 0:
 * never. Once expired it is not delivered, even before the sweep. */
static inline uint64_t pl_retention_expires(uint64_t ttl_ms, uint64_t ts) {
  if (!ttl_ms || ts >= PL_RETENTION_NEVER - ttl_ms)
    return PL_RETENTION_NEVER;
  return ts + ttl_ms;
}

/* A stored message is queued for ntargets devices and holds that many
 * references; each device's Ack (or logout) drops one. */
static inline uint64_t pl_retention_msg_refs(size_t ntargets) { return (uint64_t)ntargets; }

/* Is a stored message gone? When every target device acked it, or its TTL
 * ran out (11.3). The SQLite backend's ack and sweep statements are this
 * predicate, set-based (ACK_MSGS, EXPIRE_MSGS). */
static inline int pl_retention_msg_gone(uint64_t refs, uint64_t expires, uint64_t now) {
  return refs == 0 || expires <= now;
}

/* The oldest server_ts a dedup record may have and still answer a retry
 * with its original ack: records live for the message TTL (0: forever). */
static inline uint64_t pl_retention_dedup_cut(uint64_t ttl_ms, uint64_t now) {
  return ttl_ms && now > ttl_ms ? now - ttl_ms : 0;
}

/* Media's time-to-live: --media-ttl, or the message TTL when not set. */
static inline uint64_t pl_retention_media_ttl(uint64_t media_ttl_ms, uint64_t ttl_ms) {
  return media_ttl_ms ? media_ttl_ms : ttl_ms;
}

/* The expiry an upload gets when it is stored and again (only ever later)
 * each time a message carries it: it outlives its last message by the
 * media TTL (13.6). */
uint64_t pl_retention_media_expires(uint64_t media_ttl_ms, uint64_t now);

/* Is an upload gone? Its expiry passed and no stored message carries it.
 * The SQLite sweep's MEDIA_EXPIRED query is this predicate. */
static inline int pl_retention_media_gone(uint64_t expires, uint64_t now, int carried) {
  return !carried && expires <= now;
}

/* Token lifetimes (--token-idle-ttl, --token-max-ttl; 0: no limit). */
typedef struct pl_retention_tokens {
  uint64_t used_after;   /* a token last used before this has expired (idle) */
  uint64_t issued_after; /* a token issued before this has expired (too old) */
} pl_retention_tokens;

pl_retention_tokens pl_retention_token_cuts(uint64_t idle_ms, uint64_t max_ms, uint64_t now);

/* Does a token last used at used_at, issued at issued_at, still work? The
 * SQLite RESUME and DEVICE_LIST statements are this predicate. */
static inline int pl_retention_token_alive(const pl_retention_tokens *c, uint64_t used_at,
                                           uint64_t issued_at) {
  return used_at >= c->used_after && issued_at >= c->issued_after;
}

/* A token's last use is written only when the stored one is older than a
 * grain: 1/64 of the idle lifetime, at most an hour (an hour when there is
 * no idle limit). So resuming, or downloading with the token, is a read and
 * not a write (100,000 phones reconnecting after a network blip would
 * otherwise be 100,000 row updates), and a token in use expires at most
 * 1/64 of its idle lifetime early; a device list shows its last use to
 * within the grain. */
#define PL_RETENTION_TOKEN_GRAIN_MAX_MS (3600u * 1000u)
static inline int pl_retention_token_touch(const pl_retention_tokens *c, uint64_t used_at, uint64_t now) {
  uint64_t idle = c->used_after && now > c->used_after ? now - c->used_after : 0;
  uint64_t grain = idle ? idle / 64 : PL_RETENTION_TOKEN_GRAIN_MAX_MS;
  if (grain > PL_RETENTION_TOKEN_GRAIN_MAX_MS)
    grain = PL_RETENTION_TOKEN_GRAIN_MAX_MS;
  return now > used_at && now - used_at >= grain;
}

#endif
