/* pl_throttle: who may try to authenticate now. Backend-neutral rules, with
 * the clock passed in (ms, monotonic), so they are unit-tested without
 * sleeping.
 *
 * Two kinds of counters, kept by key (a string: "a:alice|127.0.0.1", ...)
 * in one fixed-size table, so an attacker who sprays user names or
 * addresses cannot grow memory:
 *
 *  - a token bucket (attempts per second, a burst): pl_throttle_take;
 *  - failures with a growing lockout: after `free` failures, each further
 *    failure locks the key for base_ms, 2 * base_ms, 4 * base_ms ... capped
 *    at max_ms. While locked, pl_throttle_check refuses (whatever the
 *    password would have been). Refused attempts do not count, so hammering
 *    a locked key does not extend the lock; after max_ms without a failure
 *    the count starts again from zero, so no lock is ever permanent.
 *
 * The table is set-associative (8 entries per set); a new key evicts, in
 * its set, first an entry with nothing to remember, else the one touched
 * least recently. Keys are hashed with a random secret (SipHash), so
 * nobody can aim many keys at one set. Thread-safe (one mutex). */
#ifndef PL_THROTTLE_H
#define PL_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct pl_throttle pl_throttle;

typedef struct pl_throttle_policy {
  uint32_t free;    /* failures without a lockout */
  uint32_t base_ms; /* the first lockout */
  uint32_t max_ms;  /* the longest lockout, and how long a count is kept */
} pl_throttle_policy;

/* A table of about `entries` keys (rounded up to a power of two). */
pl_throttle *pl_throttle_new(size_t entries);
void pl_throttle_free(pl_throttle *t);

/* 0 if key may try now, else the ms until it may. */
uint64_t pl_throttle_check(pl_throttle *t, const char *key, const pl_throttle_policy *p, uint64_t now);
/* Counts a failure of key; returns its lockout from now (0: none yet). */
uint64_t pl_throttle_fail(pl_throttle *t, const char *key, const pl_throttle_policy *p, uint64_t now);
/* Forgets key's failures (a success). */
void pl_throttle_reset(pl_throttle *t, const char *key);
/* Takes one token from key's bucket (n tokens per period_ms, at most burst
 * held; n 0: unlimited). 0 if taken, else the ms until one is there. */
uint64_t pl_throttle_take(pl_throttle *t, const char *key, uint32_t n, uint32_t period_ms, uint32_t burst,
                          uint64_t now);
/* Holds one of at most max concurrent jobs of key: 1 if held (give it back
 * with pl_throttle_release), 0 if key has max already. */
int pl_throttle_hold(pl_throttle *t, const char *key, uint32_t max, uint64_t now);
void pl_throttle_release(pl_throttle *t, const char *key);

/* The lockout after n failures under p (0 while n <= free). */
uint64_t pl_throttle_lockout(const pl_throttle_policy *p, uint32_t n);

/* ---- the rules for Register, Login and Resume (docs/operations.md,
 * "Login throttling") ----
 *
 * Per source address: a token bucket of attempts of any kind (rate a
 * second, burst), another of registrations (register_per_hour), and a
 * failure count (wrong passwords and unknown tokens: token guessing) under
 * the `address` policy. Per account: failures counted per (account,
 * address) under `account_address` (the lockout the audit asked for, which
 * an attacker elsewhere cannot use against the owner) and per account over
 * all addresses under the looser `account` policy (guessing spread over
 * many addresses meets a delay too; its short cap bounds what it can do to
 * the owner). A successful login clears its (account, address) count. */
typedef enum { PL_ATTEMPT_REGISTER, PL_ATTEMPT_LOGIN, PL_ATTEMPT_RESUME } pl_auth_attempt;

typedef struct pl_auth_limits {
  uint32_t rate, burst;       /* attempts a second per address (0: unlimited) */
  uint32_t register_per_hour; /* registrations per address (0: unlimited) */
  pl_throttle_policy account_address, account, address;
} pl_auth_limits;

/* The address part of a peer name ("1.2.3.4:5678" -> "1.2.3.4",
 * "::1:5678" -> "::1"); a name without a port is taken whole. */
void pl_throttle_addr(const char *peer, char *out, size_t cap);

/* 0 if the attempt may go ahead (and be hashed), else the ms to wait.
 * user is NULL unless a is LOGIN. Takes a token of addr's buckets. */
uint64_t pl_throttle_auth_admit(pl_throttle *t, const pl_auth_limits *l, pl_auth_attempt a, const char *user,
                                const char *addr, uint64_t now);
/* A wrong password (LOGIN) or an unknown token (RESUME). */
void pl_throttle_auth_failed(pl_throttle *t, const pl_auth_limits *l, pl_auth_attempt a, const char *user,
                             const char *addr, uint64_t now);
void pl_throttle_auth_succeeded(pl_throttle *t, pl_auth_attempt a, const char *user, const char *addr);

#endif
