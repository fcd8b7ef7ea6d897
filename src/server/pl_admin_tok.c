#include "pl_admin_tok.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pl_fs.h"
#include "common/pl_mem.h"
#include "common/pl_time.h"
#include "pl_config.h"

#define PL__HASH_HEX 65

typedef struct pl__tok {
  char name[PL_ADMIN_NAME_MAX];
  char hash[PL__HASH_HEX];
  unsigned long long created;
} pl__tok;

static void pl__path(const char *dir, char *out, size_t n) { snprintf(out, n, "%s/admin-tokens", dir); }

static void pl__hash(const char *token, char out[PL__HASH_HEX]) {
  uint8_t h[32];
  crypto_generichash(h, sizeof h, (const uint8_t *)token, strlen(token), NULL, 0);
  sodium_bin2hex(out, PL__HASH_HEX, h, sizeof h);
}

/* The file's tokens (*n of them; NULL and 0 if there is no file). */
static pl__tok *pl__load(const char *dir, size_t *n) {
  char path[600], line[256];
  pl__path(dir, path, sizeof path);
  pl__tok *v = NULL;
  *n = 0;
  FILE *f = fopen(path, "r");
  if (!f)
    return NULL;
  while (fgets(line, sizeof line, f)) {
    pl__tok t;
    if (sscanf(line, "%63s %64s %llu", t.name, t.hash, &t.created) != 3 || strlen(t.hash) != 64)
      continue;
    v = pl_realloc(v, (*n + 1) * sizeof *v);
    v[(*n)++] = t;
  }
  fclose(f);
  return v;
}

int pl_admin_tok_check(const char *dir, const char *token, char who[PL_ADMIN_NAME_MAX]) {
  size_t n;
  pl__tok *v = pl__load(dir, &n);
  char want[PL__HASH_HEX];
  int found = n ? 0 : -1;
  pl__hash(token ? token : "", want);
  /* every line compared in constant time: the answer's timing tells nothing */
  for (size_t i = 0; i < n; i++)
    if (token && !strncmp(token, PL_ADMIN_TOK_PREFIX, 5) && sodium_memcmp(want, v[i].hash, 64) == 0) {
      snprintf(who, PL_ADMIN_NAME_MAX, "%s", v[i].name);
      found = 1;
    }
  pl_free(v);
  return found;
}

/* Writes the tokens to a new file (0600) and renames it over the old one. */
static int pl__save(const char *dir, const pl__tok *v, size_t n) {
  char path[600], tmp[640];
  pl__path(dir, path, sizeof path);
  snprintf(tmp, sizeof tmp, "%s.new", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!f) {
    fprintf(stderr, "parleyd admin-token: cannot write %s: %s\n", tmp, strerror(errno));
    if (fd >= 0)
      close(fd);
    return -1;
  }
  fprintf(f, "# parleyd admin tokens: name, BLAKE2b-256 of the token, created (ms). Made by parleyd "
             "admin-token.\n");
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%s %s %llu\n", v[i].name, v[i].hash, v[i].created);
  int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path) != 0) {
    fprintf(stderr, "parleyd admin-token: cannot write %s: %s\n", path, strerror(errno));
    return -1;
  }
  return 0;
}

static int pl__name_ok(const char *s) {
  size_t n = strlen(s);
  return n >= 1 && n < PL_ADMIN_NAME_MAX &&
         strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@-") == n;
}

static int pl__create(const char *dir, const char *name) {
  size_t n;
  pl__tok *v = pl__load(dir, &n);
  int rc = 1;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(v[i].name, name)) {
      fprintf(stderr, "parleyd admin-token: a token named %s exists (revoke it first)\n", name);
      goto out;
    }
  uint8_t raw[32];
  char b64[64], token[80];
  randombytes_buf(raw, sizeof raw);
  sodium_bin2base64(b64, sizeof b64, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  snprintf(token, sizeof token, PL_ADMIN_TOK_PREFIX "%s", b64);
  v = pl_realloc(v, (n + 1) * sizeof *v);
  snprintf(v[n].name, sizeof v[n].name, "%s", name);
  pl__hash(token, v[n].hash);
  v[n].created = (unsigned long long)pl_now_ms();
  if (pl__save(dir, v, n + 1) != 0)
    goto out;
  printf("%s\n", token);
  fprintf(stderr,
          "admin token %s created; it is shown only now: keep it (parleyctl reads PARLEY_ADMIN_TOKEN)\n",
          name);
  rc = 0;
out:
  pl_free(v);
  return rc;
}

static int pl__revoke(const char *dir, const char *name) {
  size_t n, k = 0;
  pl__tok *v = pl__load(dir, &n);
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i].name, name))
      v[k++] = v[i];
  int rc = k == n ? 1 : pl__save(dir, v, k) != 0;
  if (k == n)
    fprintf(stderr, "parleyd admin-token: no token named %s\n", name);
  pl_free(v);
  return rc;
}

static int pl__list(const char *dir) {
  size_t n;
  pl__tok *v = pl__load(dir, &n);
  for (size_t i = 0; i < n; i++)
    printf("{\"name\":\"%s\",\"created\":%llu}\n", v[i].name, v[i].created);
  pl_free(v);
  return 0;
}

static int pl__usage(void) {
  fprintf(stderr,
          "usage: parleyd admin-token create NAME | list | revoke NAME [--data DIR] [--config FILE]\n");
  return 2;
}

int pl_admin_tok_main(int argc, char **argv) {
  pl_config c;
  char err[600];
  const char *cmd = NULL, *name = NULL;
  pl_config_defaults(&c);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if ((!strcmp(a, "--data") || !strcmp(a, "--config")) && i + 1 < argc) {
      int bad = !strcmp(a, "--data") ? pl_config_set(&c, "data", argv[++i], err, sizeof err)
                                     : pl_config_load(&c, argv[++i], err, sizeof err);
      if (bad) {
        fprintf(stderr, "parleyd admin-token: %s\n", err);
        return 2;
      }
    } else if (!cmd) {
      cmd = a;
    } else if (!name) {
      name = a;
    } else {
      return pl__usage();
    }
  }
  if (sodium_init() < 0)
    return 1;
  if (!cmd || (strcmp(cmd, "list") && (!name || !pl__name_ok(name))))
    return pl__usage();
  umask(077);
  if (pl_mkdirs(c.data) != 0) {
    fprintf(stderr, "parleyd admin-token: cannot use data dir %s: %s\n", c.data, strerror(errno));
    return 1;
  }
  if (!strcmp(cmd, "create"))
    return pl__create(c.data, name);
  if (!strcmp(cmd, "revoke"))
    return pl__revoke(c.data, name);
  if (!strcmp(cmd, "list") && !name)
    return pl__list(c.data);
  return pl__usage();
}
