#include "pl_quota.h"

#include "common/pl_mem.h"

void pl_quota_init(pl_quota *q, uint64_t limit, uint32_t max_pending) {
  q->limit = limit;
  q->max_pending = max_pending;
  pl_map_init(&q->users);
}

void pl_quota_free(pl_quota *q) {
  void *v;
  uint64_t k;
  for (size_t i = 0; pl_map_next(&q->users, &i, &k, &v);)
    pl_free(v);
  pl_map_free(&q->users);
}

/* User ids start at 1; the map reserves key 0. */
static uint64_t pl__key(uint64_t user) { return user ? user : UINT64_MAX; }

pl_quota_user pl_quota_reserved(const pl_quota *q, uint64_t user) {
  const pl_quota_user *u = pl_map_get(&q->users, pl__key(user));
  return u ? *u : (pl_quota_user){0};
}

pl_err pl_quota_check(const pl_quota *q, uint64_t user, uint64_t used, uint64_t add) {
  if (!q->limit)
    return PL_OK;
  return pl_quota_fits(q->limit, used, pl_quota_reserved(q, user).bytes, add) ? PL_OK : PL_ERR_QUOTA;
}

pl_err pl_quota_reserve(pl_quota *q, uint64_t user, uint64_t used, uint64_t len) {
  if (q->max_pending && pl_quota_reserved(q, user).count >= q->max_pending)
    return PL_ERR_RATE_LIMITED;
  pl_err e = pl_quota_check(q, user, used, len);
  if (e == PL_OK)
    pl_quota_add(q, user, len);
  return e;
}

void pl_quota_add(pl_quota *q, uint64_t user, uint64_t len) {
  pl_quota_user *u = pl_map_get(&q->users, pl__key(user));
  if (!u) {
    u = pl_calloc(1, sizeof *u);
    pl_map_put(&q->users, pl__key(user), u);
  }
  u->bytes += len;
  u->count++;
}

void pl_quota_release(pl_quota *q, uint64_t user, uint64_t len) {
  pl_quota_user *u = pl_map_get(&q->users, pl__key(user));
  if (!u)
    return;
  u->bytes -= len < u->bytes ? len : u->bytes;
  if (--u->count == 0)
    pl_free(pl_map_del(&q->users, pl__key(user)));
}

uint64_t pl_quota_room(const pl_quota *q, uint64_t user, uint64_t own) {
  if (!q->limit)
    return 0;
  uint64_t held = pl_quota_reserved(q, user).bytes;
  uint64_t others = held > own ? held - own : 0;
  return others < q->limit ? q->limit - others : 1; /* 1: nothing fits, yet a limit */
}
