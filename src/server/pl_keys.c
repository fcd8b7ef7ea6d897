#include "pl_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pl_log.h"
#include "common/pl_mem.h"

static int pl__usage(void) {
  fprintf(stderr, "usage: parleyd key new FILE        make a key file of one random key (id 1)\n"
                  "       parleyd key add FILE        add a random key (the next id): it encrypts from the\n"
                  "                                   next start or SIGHUP; the older keys still decrypt\n"
                  "       parleyd key remove FILE ID  drop key ID (once nothing is sealed with it)\n"
                  "       parleyd key list FILE       the key ids, the current one marked\n");
  return 2;
}

static int pl__load_cli(const char *path, pl_seal **s) {
  char why[600];
  if (pl_seal_load(path, s, why, sizeof why) != PL_OK) {
    fprintf(stderr, "parleyd key: %s\n", why);
    return 1;
  }
  return 0;
}

static int pl__save_cli(const pl_seal *s, const char *path) {
  if (pl_seal_save(s, path) != PL_OK) {
    fprintf(stderr, "parleyd key: cannot write %s\n", path);
    return 1;
  }
  return 0;
}

static int pl__new(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0) {
    fprintf(stderr, "parleyd key: %s exists; a new key file would lose its keys (use: parleyd key add)\n",
            path);
    return 1;
  }
  pl_seal *s = pl_seal_new();
  int rc = !s || pl__save_cli(s, path);
  if (!rc)
    printf("%s: key 1\n", path);
  pl_seal_free(s);
  return rc;
}

static int pl__change(const char *path, const char *cmd, const char *id) {
  pl_seal *s = NULL;
  uint8_t kid = 0;
  int rc = pl__load_cli(path, &s);
  if (rc)
    return rc;
  pl_err e;
  if (!strcmp(cmd, "add")) {
    e = pl_seal_add(s, &kid);
  } else {
    long v = id ? strtol(id, NULL, 10) : 0;
    kid = (uint8_t)(v > 0 && v <= PL_SEAL_MAX_KID ? v : 0);
    e = pl_seal_remove(s, kid);
  }
  if (e != PL_OK) {
    fprintf(stderr, "parleyd key %s: %s\n", cmd,
            e == PL_ERR_NOT_FOUND ? "no such key id"
            : kid                 ? "the only key cannot go"
                                  : "no ids left (255)");
    rc = 1;
  } else {
    rc = pl__save_cli(s, path);
  }
  if (!rc)
    printf("%s: key %u %s; current key %u\n", path, (unsigned)kid, !strcmp(cmd, "add") ? "added" : "removed",
           (unsigned)pl_seal_current(s));
  pl_seal_free(s);
  return rc;
}

static int pl__list(const char *path) {
  pl_seal *s = NULL;
  uint8_t ids[PL_SEAL_MAX_KID];
  if (pl__load_cli(path, &s))
    return 1;
  size_t n = pl_seal_ids(s, ids);
  for (size_t i = 0; i < n; i++)
    printf("%u%s\n", (unsigned)ids[i], ids[i] == pl_seal_current(s) ? " current" : "");
  pl_seal_free(s);
  return 0;
}

int pl_keys_main(int argc, char **argv) {
  if (argc < 3)
    return pl__usage();
  const char *cmd = argv[1], *path = argv[2];
  umask(077);
  if (!strcmp(cmd, "new") && argc == 3)
    return pl__new(path);
  if (!strcmp(cmd, "add") && argc == 3)
    return pl__change(path, cmd, NULL);
  if (!strcmp(cmd, "remove") && argc == 4)
    return pl__change(path, cmd, argv[3]);
  if (!strcmp(cmd, "list") && argc == 3)
    return pl__list(path);
  return pl__usage();
}

pl_err pl_keys_load(const char *path, pl_seal_ref **out) {
  char why[600];
  pl_seal *s = NULL;
  pl_err e = pl_seal_load(path, &s, why, sizeof why);
  *out = NULL;
  if (e != PL_OK) {
    pl_error("%s", why);
    return e;
  }
  pl_info("encryption at rest: key file %s, current key id %u", path, (unsigned)pl_seal_current(s));
  *out = pl_seal_ref_new(s);
  return PL_OK;
}

/* Why key kid may not leave yet (NULL: it may): the last finished passes
 * of the store and the media must have left nothing sealed with it. */
static const char *pl__still_used(uint8_t kid, pl_store *store, pl_media *media) {
  pl_store_seal_stats ss;
  pl_media_seal_stats ms;
  pl_store_get_seal_stats(store, &ss);
  pl_media_get_seal_stats(media, &ms);
  if (ss.running || !ss.passes || ss.kid == kid || ss.rows[kid])
    return "the store's re-encryption has not finished (parley_seal_store_passes)";
  if (ms.running || !ms.passes || ms.files[kid])
    return "the media's re-encryption has not finished (parley_seal_media_passes)";
  return NULL;
}

void pl_keys_reload(const char *path, pl_seal_ref *ref, pl_store *store, pl_media *media) {
  char why[600];
  pl_seal *s = NULL;
  if (pl_seal_load(path, &s, why, sizeof why) != PL_OK) {
    pl_error("key file: %s; keeping the keys in use", why);
    return;
  }
  const pl_seal *cur = pl_seal_ref_get(ref);
  uint8_t ids[PL_SEAL_MAX_KID];
  size_t n = pl_seal_ids(cur, ids);
  for (size_t i = 0; i < n; i++) {
    const char *busy = pl_seal_has(s, ids[i]) ? NULL : pl__still_used(ids[i], store, media);
    if (busy) {
      pl_error("key file: key %u was removed but %s; keeping the keys in use", (unsigned)ids[i], busy);
      pl_seal_free(s);
      return;
    }
  }
  int rotated = pl_seal_current(s) != pl_seal_current(cur);
  pl_info("key file reloaded: current key id %u%s", (unsigned)pl_seal_current(s),
          rotated ? "; re-encrypting what older keys sealed, in the background" : "");
  pl_seal_ref_set(ref, s);
  if (rotated)
    pl_media_rekey(media);
}
