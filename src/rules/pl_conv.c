#include "pl_conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_mem.h"

char *pl_conv_dm(const char *a, const char *b) {
  if (strcmp(a, b) > 0) {
    const char *t = a;
    a = b;
    b = t;
  }
  /* built by hand, not with snprintf: the store makes one for every Send */
  size_t na = strlen(a), nb = strlen(b);
  char *s = pl_malloc(na + nb + 5);
  memcpy(s, "dm:", 3);
  memcpy(s + 3, a, na);
  s[3 + na] = ':';
  memcpy(s + 4 + na, b, nb + 1);
  return s;
}

/* Names hold no ':' ([a-z0-9_.-], pl_auth.h), so the first one after "dm:"
 * splits the two sides. */
int pl_conv_dm_has(const char *conv, const char *name) {
  if (strncmp(conv, "dm:", 3))
    return 0;
  const char *a = conv + 3, *colon = strchr(a, ':');
  size_t n = strlen(name);
  return colon && (((size_t)(colon - a) == n && !strncmp(a, name, n)) || !strcmp(colon + 1, name));
}

uint64_t pl_conv_gid(const char *conv) {
  if (strncmp(conv, "g:", 2))
    return 0;
  return strtoull(conv + 2, NULL, 10);
}

size_t pl_conv_dm_targets(const uint64_t *peer, size_t np, const uint64_t *mine, size_t nm, int self,
                          uint64_t from_dev, uint64_t *out) {
  size_t n = 0;
  if (!self)
    for (size_t i = 0; i < np; i++)
      out[n++] = peer[i];
  for (size_t i = 0; i < nm; i++)
    if (mine[i] != from_dev)
      out[n++] = mine[i];
  return n;
}
