#include "pl_limits.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "../common/pl_map.h"
#include "../common/pl_mem.h"

struct pl_limits {
  pl_limits_config cfg;
  pthread_mutex_t mu; /* guards by_ip */
  pl_map by_ip;       /* key -> connections from it, as a pointer-sized count */
  atomic_uint_fast64_t conns, spare, refused, slow, memory_cuts;
  atomic_int_fast64_t memory;
};

pl_limits *pl_limits_new(const pl_limits_config *cfg) {
  pl_limits *l = pl_calloc(1, sizeof *l);
  l->cfg = *cfg;
  pthread_mutex_init(&l->mu, NULL);
  return l;
}

void pl_limits_free(pl_limits *l) {
  if (!l)
    return;
  pl_map_free(&l->by_ip);
  pthread_mutex_destroy(&l->mu);
  pl_free(l);
}

const pl_limits_config *pl_limits_cfg(const pl_limits *l) { return &l->cfg; }

uint64_t pl_limits_key(const struct sockaddr *sa) {
  static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  uint32_t v4;
  if (sa->sa_family == AF_INET) {
    v4 = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
  } else if (sa->sa_family == AF_INET6) {
    const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    if (memcmp(a, v4mapped, 12) != 0) {
      /* One host usually gets a whole /64: counting addresses inside it
       * would let one host take as many slots as it likes. */
      uint64_t k = 0;
      for (int i = 0; i < 8; i++)
        k = k << 8 | a[i];
      return k ? k : 1;
    }
    v4 = (uint32_t)a[12] << 24 | (uint32_t)a[13] << 16 | (uint32_t)a[14] << 8 | a[15];
  } else {
    return 1;
  }
  return 0xffff00000000ull | v4;
}

pl_err pl_limits_admit(pl_limits *l, uint64_t key) {
  uint64_t n = atomic_fetch_add_explicit(&l->conns, 1, memory_order_relaxed);
  pl_err e = PL_OK;
  pthread_mutex_lock(&l->mu);
  uintptr_t mine = (uintptr_t)pl_map_get(&l->by_ip, key);
  if ((l->cfg.max_conns && n >= l->cfg.max_conns) || (l->cfg.max_per_ip && mine >= l->cfg.max_per_ip))
    e = PL_ERR_TOO_MANY_CONNECTIONS;
  else
    pl_map_put(&l->by_ip, key, (void *)(mine + 1));
  pthread_mutex_unlock(&l->mu);
  if (e != PL_OK) {
    atomic_fetch_sub_explicit(&l->conns, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->refused, 1, memory_order_relaxed);
  }
  return e;
}

void pl_limits_leave(pl_limits *l, uint64_t key) {
  pthread_mutex_lock(&l->mu);
  uintptr_t mine = (uintptr_t)pl_map_get(&l->by_ip, key);
  if (mine > 1)
    pl_map_put(&l->by_ip, key, (void *)(mine - 1));
  else
    pl_map_del(&l->by_ip, key);
  pthread_mutex_unlock(&l->mu);
  atomic_fetch_sub_explicit(&l->conns, 1, memory_order_relaxed);
}

int pl_limits_spare(pl_limits *l) {
  uint64_t n = atomic_fetch_add_explicit(&l->spare, 1, memory_order_relaxed);
  if (n < l->cfg.reserve)
    return 1;
  atomic_fetch_sub_explicit(&l->spare, 1, memory_order_relaxed);
  return 0;
}

void pl_limits_spare_done(pl_limits *l) { atomic_fetch_sub_explicit(&l->spare, 1, memory_order_relaxed); }

void pl_limits_account(pl_limits *l, size_t *counted, size_t bytes) {
  if (bytes == *counted)
    return;
  atomic_fetch_add_explicit(&l->memory, (int_fast64_t)bytes - (int_fast64_t)*counted, memory_order_relaxed);
  *counted = bytes;
}

int pl_limits_memory_over(const pl_limits *l) {
  return l->cfg.max_memory &&
         atomic_load_explicit(&l->memory, memory_order_relaxed) > (int_fast64_t)l->cfg.max_memory;
}

void pl_limits_count_cut(pl_limits *l, pl_err why) {
  atomic_fetch_add_explicit(why == PL_ERR_SLOW_CONSUMER ? &l->slow : &l->memory_cuts, 1,
                            memory_order_relaxed);
}

void pl_limits_get_stats(const pl_limits *l, pl_limits_stats *st) {
  st->conns = atomic_load_explicit(&l->conns, memory_order_relaxed);
  st->refused = atomic_load_explicit(&l->refused, memory_order_relaxed);
  st->slow_consumers = atomic_load_explicit(&l->slow, memory_order_relaxed);
  st->memory_cuts = atomic_load_explicit(&l->memory_cuts, memory_order_relaxed);
  int_fast64_t m = atomic_load_explicit(&l->memory, memory_order_relaxed);
  st->memory = m > 0 ? (uint64_t)m : 0;
}
