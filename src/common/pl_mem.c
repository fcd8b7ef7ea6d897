#include "pl_mem.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A size header in front of each block lets pl_free account for the bytes
 * without malloc_usable_size (not portable, and wrong under ASan). 16 bytes
 * keep the user pointer aligned for any type. */
#define PL__HDR 16

static atomic_size_t pl__used;

static void *pl__oom(size_t n) {
  fprintf(stderr, "parley: out of memory allocating %zu bytes\n", n);
  abort();
}

void *pl_malloc(size_t n) {
  unsigned char *p = malloc(n + PL__HDR);
  if (!p)
    return pl__oom(n);
  memcpy(p, &n, sizeof n);
  atomic_fetch_add_explicit(&pl__used, n, memory_order_relaxed);
  return p + PL__HDR;
}

void *pl_calloc(size_t count, size_t n) {
  if (n && count > (size_t)-1 / n - PL__HDR)
    return pl__oom((size_t)-1);
  void *p = pl_malloc(count * n);
  memset(p, 0, count * n);
  return p;
}

void *pl_realloc(void *ptr, size_t n) {
  if (!ptr)
    return pl_malloc(n);
  unsigned char *base = (unsigned char *)ptr - PL__HDR;
  size_t old;
  memcpy(&old, base, sizeof old);
  unsigned char *p = realloc(base, n + PL__HDR);
  if (!p)
    return pl__oom(n);
  memcpy(p, &n, sizeof n);
  atomic_fetch_add_explicit(&pl__used, n, memory_order_relaxed);
  atomic_fetch_sub_explicit(&pl__used, old, memory_order_relaxed);
  return p + PL__HDR;
}

void pl_free(void *ptr) {
  if (!ptr)
    return;
  unsigned char *base = (unsigned char *)ptr - PL__HDR;
  size_t n;
  memcpy(&n, base, sizeof n);
  atomic_fetch_sub_explicit(&pl__used, n, memory_order_relaxed);
  free(base);
}

char *pl_strndup(const char *s, size_t n) {
  char *d = pl_malloc(n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *pl_strdup(const char *s) { return pl_strndup(s, strlen(s)); }

void *pl_memdup(const void *p, size_t n) {
  void *d = pl_malloc(n ? n : 1);
  if (n)
    memcpy(d, p, n);
  return d;
}

size_t pl_mem_used(void) { return atomic_load_explicit(&pl__used, memory_order_relaxed); }
