/* pl_mem: every allocation goes through these wrappers so that memory in
 * use can be counted (bytes per connection is a product metric) and so tests
 * can make allocation fail on purpose. Out of memory aborts the process: a
 * server that cannot allocate cannot keep its promises either (h2o does the
 * same), and it keeps every call site free of unreachable error paths. */
#ifndef PL_MEM_H
#define PL_MEM_H

#include <stddef.h>

void *pl_malloc(size_t n);
void *pl_calloc(size_t count, size_t n);
void *pl_realloc(void *p, size_t n);
void pl_free(void *p);
char *pl_strdup(const char *s);
char *pl_strndup(const char *s, size_t n);
void *pl_memdup(const void *p, size_t n);

/* Bytes currently allocated through these wrappers (all threads). */
size_t pl_mem_used(void);

#endif
