#include "pb_users.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/pl_mem.h"

static int pb__mixed; /* set before the workers fork: each inherits it */

void pb_users_mixed(int on) { pb__mixed = on; }

void pb_users_name(uint32_t i, char *out, size_t outlen) {
  if (pb__mixed) /* Knuth's multiplicative hash: neighbours differ in every hex digit */
    snprintf(out, outlen, "pb%ux%08x", i, (unsigned)(i * 2654435761u));
  else
    snprintf(out, outlen, "pb%u", i);
}

/* Parses "pb<i> <token>"; returns the index or -1. */
static long pb__parse_line(char *line, char **token) {
  if (strncmp(line, "pb", 2) != 0)
    return -1;
  char *end;
  long i = strtol(line + 2, &end, 10);
  if (end == line + 2 || *end != ' ' || i < 0)
    return -1;
  char *t = end + 1;
  t[strcspn(t, "\r\n")] = '\0';
  if (!*t)
    return -1;
  *token = t;
  return i;
}

static void pb__load(pb_users *u, FILE *f) {
  char line[256];
  while (fgets(line, sizeof line, f)) {
    char *tok;
    long i = pb__parse_line(line, &tok);
    if (i < 0 || (uint32_t)i >= u->n)
      continue;
    pl_free(u->token[i]);
    u->token[i] = pl_strdup(tok);
  }
}

pb_users *pb_users_open(const char *path, uint32_t n) {
  int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0)
    return NULL;
  pb_users *u = pl_calloc(1, sizeof *u);
  u->n = n;
  u->fd = fd;
  u->token = pl_calloc(n ? n : 1, sizeof *u->token);
  snprintf(u->path, sizeof u->path, "%s", path);
  FILE *f = fopen(path, "r");
  if (f) {
    pb__load(u, f);
    fclose(f);
  }
  return u;
}

void pb_users_close(pb_users *u) {
  if (!u)
    return;
  for (uint32_t i = 0; i < u->n; i++)
    pl_free(u->token[i]);
  pl_free(u->token);
  if (u->fd >= 0)
    close(u->fd);
  pl_free(u);
}

const char *pb_users_token(const pb_users *u, uint32_t i) { return i < u->n ? u->token[i] : NULL; }

void pb_users_set_token(pb_users *u, uint32_t i, const char *token) {
  if (i >= u->n)
    return;
  pl_free(u->token[i]);
  u->token[i] = pl_strdup(token);
  char line[160];
  int len = snprintf(line, sizeof line, "pb%u %s\n", i, token);
  if (u->fd >= 0 && len > 0 && (size_t)len < sizeof line && write(u->fd, line, (size_t)len) != len)
    fprintf(stderr, "parley-bench: cannot append to %s\n", u->path);
}

uint32_t pb_users_missing(const pb_users *u, uint32_t from, uint32_t to) {
  uint32_t n = 0;
  for (uint32_t i = from; i < to && i < u->n; i++)
    n += u->token[i] == NULL;
  return n;
}
