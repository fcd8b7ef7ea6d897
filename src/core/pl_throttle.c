#include "pl_throttle.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "../common/pl_mem.h"

#define PL__WAYS 8

typedef struct pl__tentry {
  uint64_t h;       /* 0: free */
  uint64_t touched; /* for eviction */
  uint64_t last_fail, locked_until;
  uint64_t bucket_at; /* when tokens was last brought up to date */
  uint64_t tokens_m;  /* thousandths of a token */
  uint32_t fails;
  uint32_t held; /* pl_throttle_hold */
  uint8_t has_bucket;
} pl__tentry;

struct pl_throttle {
  pthread_mutex_t mu;
  unsigned char key[crypto_shorthash_KEYBYTES];
  size_t nsets; /* a power of two */
  pl__tentry *e;
};

pl_throttle *pl_throttle_new(size_t entries) {
  pl_throttle *t = pl_calloc(1, sizeof *t);
  size_t sets = 1;
  while (sets * PL__WAYS < entries)
    sets <<= 1;
  t->nsets = sets;
  t->e = pl_calloc(sets * PL__WAYS, sizeof *t->e);
  randombytes_buf(t->key, sizeof t->key);
  pthread_mutex_init(&t->mu, NULL);
  return t;
}

void pl_throttle_free(pl_throttle *t) {
  if (!t)
    return;
  pthread_mutex_destroy(&t->mu);
  pl_free(t->e);
  pl_free(t);
}

uint64_t pl_throttle_lockout(const pl_throttle_policy *p, uint32_t n) {
  if (n <= p->free)
    return 0;
  uint32_t k = n - p->free - 1;
  uint64_t d = k >= 32 ? p->max_ms : (uint64_t)p->base_ms << k;
  return d > p->max_ms ? p->max_ms : d;
}

/* Worth keeping: a failure count or a lock still running. */
static int pl__busy(const pl__tentry *x, uint64_t now) {
  return x->locked_until > now || x->fails || x->held;
}

/* key's entry; if it has none, one made (evicting another) or, unless
 * make, NULL. Under mu. */
static pl__tentry *pl__entry(pl_throttle *t, const char *key, uint64_t now, int make) {
  uint64_t h;
  crypto_shorthash((unsigned char *)&h, (const unsigned char *)key, strlen(key), t->key);
  h |= 1;
  pl__tentry *set = t->e + (h & (t->nsets - 1)) * PL__WAYS, *victim = set;
  for (int i = 0; i < PL__WAYS; i++) {
    pl__tentry *x = set + i;
    if (x->h == h) {
      if (make)
        x->touched = now;
      return x;
    }
    /* free beats idle beats busy; then the least recently touched */
    int xr = x->h ? 1 + pl__busy(x, now) : 0, vr = victim->h ? 1 + pl__busy(victim, now) : 0;
    if (xr < vr || (xr == vr && x->touched < victim->touched))
      victim = x;
  }
  if (!make)
    return NULL;
  memset(victim, 0, sizeof *victim);
  victim->h = h;
  victim->touched = now;
  return victim;
}

/* Forgets failures older than the policy keeps them. */
static void pl__decay(pl__tentry *x, const pl_throttle_policy *p, uint64_t now) {
  if (x->fails && now - x->last_fail >= p->max_ms && now >= x->locked_until)
    x->fails = 0;
}

uint64_t pl_throttle_check(pl_throttle *t, const char *key, const pl_throttle_policy *p, uint64_t now) {
  pthread_mutex_lock(&t->mu);
  pl__tentry *x = pl__entry(t, key, now, 1);
  pl__decay(x, p, now);
  uint64_t wait = x->locked_until > now ? x->locked_until - now : 0;
  pthread_mutex_unlock(&t->mu);
  return wait;
}

uint64_t pl_throttle_fail(pl_throttle *t, const char *key, const pl_throttle_policy *p, uint64_t now) {
  pthread_mutex_lock(&t->mu);
  pl__tentry *x = pl__entry(t, key, now, 1);
  pl__decay(x, p, now);
  if (x->fails < UINT32_MAX)
    x->fails++;
  x->last_fail = now;
  uint64_t d = pl_throttle_lockout(p, x->fails);
  if (d && now + d > x->locked_until)
    x->locked_until = now + d;
  pthread_mutex_unlock(&t->mu);
  return d;
}

void pl_throttle_reset(pl_throttle *t, const char *key) {
  pthread_mutex_lock(&t->mu);
  pl__tentry *x = pl__entry(t, key, 0, 0);
  if (x) {
    x->fails = 0;
    x->locked_until = 0;
  }
  pthread_mutex_unlock(&t->mu);
}

uint64_t pl_throttle_take(pl_throttle *t, const char *key, uint32_t n, uint32_t period_ms, uint32_t burst,
                          uint64_t now) {
  if (!n || !period_ms)
    return 0;
  uint64_t cap = (uint64_t)(burst ? burst : 1) * 1000u, wait = 0;
  pthread_mutex_lock(&t->mu);
  pl__tentry *x = pl__entry(t, key, now, 1);
  if (!x->has_bucket) {
    x->has_bucket = 1;
    x->tokens_m = cap;
  } else if (now > x->bucket_at) {
    uint64_t dt = now - x->bucket_at;
    uint64_t add = dt >= period_ms ? cap : dt * n * 1000u / period_ms;
    x->tokens_m = add >= cap || x->tokens_m + add >= cap ? cap : x->tokens_m + add;
  }
  x->bucket_at = now;
  if (x->tokens_m >= 1000u)
    x->tokens_m -= 1000u;
  else
    wait = ((1000u - x->tokens_m) * period_ms + n * 1000u - 1) / (n * 1000u);
  pthread_mutex_unlock(&t->mu);
  return wait;
}

int pl_throttle_hold(pl_throttle *t, const char *key, uint32_t max, uint64_t now) {
  pthread_mutex_lock(&t->mu);
  pl__tentry *x = pl__entry(t, key, now, 1);
  int ok = x->held < max;
  x->held += (uint32_t)ok;
  pthread_mutex_unlock(&t->mu);
  return ok;
}

/* A hold whose entry was evicted meanwhile (a set full of busy keys) is
 * simply gone: the table stays bounded, the limit is briefly looser. */
void pl_throttle_release(pl_throttle *t, const char *key) {
  pthread_mutex_lock(&t->mu);
  pl__tentry *x = pl__entry(t, key, 0, 0);
  if (x && x->held)
    x->held--;
  pthread_mutex_unlock(&t->mu);
}

/* ---- the rules for Register, Login and Resume ------------------------------ */

void pl_throttle_addr(const char *peer, char *out, size_t cap) {
  const char *colon = strrchr(peer, ':');
  size_t n = colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)
                 ? (size_t)(colon - peer)
                 : strlen(peer);
  snprintf(out, cap, "%.*s", (int)n, peer);
}

/* "kind:a" or "kind:a|b" */
static void pl__key(char *out, size_t cap, char kind, const char *a, const char *b) {
  if (b)
    snprintf(out, cap, "%c:%s|%s", kind, a, b);
  else
    snprintf(out, cap, "%c:%s", kind, a);
}

uint64_t pl_throttle_auth_admit(pl_throttle *t, const pl_auth_limits *l, pl_auth_attempt a, const char *user,
                                const char *addr, uint64_t now) {
  char k[160];
  pl__key(k, sizeof k, 'n', addr, NULL);
  uint64_t w = pl_throttle_take(t, k, l->rate, 1000, l->burst, now);
  if (!w && a == PL_ATTEMPT_REGISTER) {
    pl__key(k, sizeof k, 'r', addr, NULL);
    w = pl_throttle_take(t, k, l->register_per_hour, 3600000u, l->register_per_hour, now);
  }
  if (w || a == PL_ATTEMPT_REGISTER)
    return w;
  pl__key(k, sizeof k, 'f', addr, NULL);
  w = pl_throttle_check(t, k, &l->address, now);
  if (w || a != PL_ATTEMPT_LOGIN)
    return w;
  pl__key(k, sizeof k, 'u', user, addr);
  w = pl_throttle_check(t, k, &l->account_address, now);
  pl__key(k, sizeof k, 'a', user, NULL);
  uint64_t w2 = w ? 0 : pl_throttle_check(t, k, &l->account, now);
  return w ? w : w2;
}

void pl_throttle_auth_failed(pl_throttle *t, const pl_auth_limits *l, pl_auth_attempt a, const char *user,
                             const char *addr, uint64_t now) {
  char k[160];
  if (a == PL_ATTEMPT_REGISTER)
    return;
  pl__key(k, sizeof k, 'f', addr, NULL);
  pl_throttle_fail(t, k, &l->address, now);
  if (a != PL_ATTEMPT_LOGIN)
    return;
  pl__key(k, sizeof k, 'u', user, addr);
  pl_throttle_fail(t, k, &l->account_address, now);
  pl__key(k, sizeof k, 'a', user, NULL);
  pl_throttle_fail(t, k, &l->account, now);
}

void pl_throttle_auth_succeeded(pl_throttle *t, pl_auth_attempt a, const char *user, const char *addr) {
  char k[160];
  if (a != PL_ATTEMPT_LOGIN)
    return;
  pl__key(k, sizeof k, 'u', user, addr);
  pl_throttle_reset(t, k);
}
