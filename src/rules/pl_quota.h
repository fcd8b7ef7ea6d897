/* pl_quota: how much media a user may still store (protocol.md 13.2,
 * 13.2.1), for the upload path (src/media/) and for the store, which checks
 * the same rule when it records an upload (pl_quota_fits). A resumable
 * upload reserves its declared Upload-Length when it is created, so
 * unfinished uploads count against the quota as stored media do: at every
 * moment, stored + reserved <= quota. This module holds the rule
 * and the ledger of reservations per user; no I/O, no locking (the caller
 * holds its own lock). */
#ifndef PL_QUOTA_H
#define PL_QUOTA_H

#include <stdint.h>

#include "common/pl_err.h"
#include "common/pl_map.h"

typedef struct pl_quota {
  uint64_t limit;       /* bytes a user may keep (0: no limit) */
  uint32_t max_pending; /* unfinished uploads a user may have (0: no limit) */
  pl_map users;         /* user id -> pl_quota_user (only users with reservations) */
} pl_quota;

typedef struct pl_quota_user {
  uint64_t bytes; /* reserved by unfinished uploads */
  uint32_t count; /* unfinished uploads */
} pl_quota_user;

/* The rule itself: do add more bytes fit a limit (0: none) for a user who
 * stores used bytes and holds held more in unfinished uploads? Each term is
 * compared with what is left, so nothing overflows. */
static inline int pl_quota_fits(uint64_t limit, uint64_t used, uint64_t held, uint64_t add) {
  return !limit || (used <= limit && held <= limit - used && add <= limit - used - held);
}

void pl_quota_init(pl_quota *q, uint64_t limit, uint32_t max_pending);
void pl_quota_free(pl_quota *q);

/* What user has reserved (zeros when nothing). */
pl_quota_user pl_quota_reserved(const pl_quota *q, uint64_t user);

/* May user, who stores `used` bytes, add `add` more? PL_OK or PL_ERR_QUOTA
 * (stored + reserved + add over the limit). */
pl_err pl_quota_check(const pl_quota *q, uint64_t user, uint64_t used, uint64_t add);

/* A new unfinished upload of len bytes: PL_ERR_RATE_LIMITED if the user has
 * max_pending already, PL_ERR_QUOTA as pl_quota_check; else reserved. */
pl_err pl_quota_reserve(pl_quota *q, uint64_t user, uint64_t used, uint64_t len);

/* Counts a reservation without checking (one found on disk at start-up:
 * it was allowed when it was made). */
void pl_quota_add(pl_quota *q, uint64_t user, uint64_t len);

/* The upload is finished, expired or deleted: its bytes are free again. */
void pl_quota_release(pl_quota *q, uint64_t user, uint64_t len);

/* The limit to store an upload with, given that it held `own` reserved
 * bytes (0 for a one-shot upload): the quota less what the user's other
 * unfinished uploads hold. 0 means no limit; never 0 when there is one. */
uint64_t pl_quota_room(const pl_quota *q, uint64_t user, uint64_t own);

#endif
