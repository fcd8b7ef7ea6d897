#include "pl_seal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pl_mem.h"

struct pl_seal {
  /* key[id], present[id]: ids are 1..255 */
  uint8_t key[PL_SEAL_MAX_KID + 1][PL_SEAL_KEY_LEN];
  uint8_t present[PL_SEAL_MAX_KID + 1];
  uint8_t current;
};

_Static_assert(PL_SEAL_NONCE_LEN == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce size");
_Static_assert(PL_SEAL_TAG_LEN == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag size");
_Static_assert(PL_SEAL_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key size");

static pl_seal *pl__alloc(void) {
  if (sodium_init() < 0)
    return NULL;
  return pl_calloc(1, sizeof(pl_seal));
}

void pl_seal_free(pl_seal *s) {
  if (!s)
    return;
  sodium_memzero(s, sizeof *s);
  pl_free(s);
}

static int pl__hexval(uint8_t c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* 64 hex digits at p (n left) into k; 0 if they are not. */
static int pl__hexkey(const uint8_t *p, size_t n, uint8_t *k) {
  if (n < 2 * PL_SEAL_KEY_LEN)
    return 0;
  for (size_t i = 0; i < PL_SEAL_KEY_LEN; i++) {
    int hi = pl__hexval(p[2 * i]), lo = pl__hexval(p[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return 0;
    k[i] = (uint8_t)(hi << 4 | lo);
  }
  return 1;
}

static void pl__put(pl_seal *s, uint8_t kid, const uint8_t *k) {
  memcpy(s->key[kid], k, PL_SEAL_KEY_LEN);
  s->present[kid] = 1;
  if (kid > s->current)
    s->current = kid;
}

/* One line (without its newline) of a key file. */
static pl_err pl__line(pl_seal *s, const uint8_t *p, size_t n) {
  while (n && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
    n--;
  if (!n || p[0] == '#')
    return PL_OK;
  uint8_t k[PL_SEAL_KEY_LEN];
  unsigned id = 0;
  size_t i = 0;
  if (n == 2 * PL_SEAL_KEY_LEN) /* a bare key: id 1 */
    id = 1;
  else
    for (; i < n && i < 4 && p[i] >= '0' && p[i] <= '9'; i++)
      id = id * 10 + (unsigned)(p[i] - '0');
  if (id == 0 || id > PL_SEAL_MAX_KID || s->present[id])
    return PL_ERR_CONFIG;
  if (i) {
    if (i == n || (p[i] != ' ' && p[i] != '\t'))
      return PL_ERR_CONFIG;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
      i++;
  }
  if (n - i != 2 * PL_SEAL_KEY_LEN || !pl__hexkey(p + i, n - i, k))
    return PL_ERR_CONFIG;
  pl__put(s, (uint8_t)id, k);
  sodium_memzero(k, sizeof k);
  return PL_OK;
}

static pl_err pl__text(pl_seal *s, const uint8_t *p, size_t n) {
  pl_err e = PL_OK;
  for (size_t at = 0; at < n && e == PL_OK;) {
    const uint8_t *nl = memchr(p + at, '\n', n - at);
    size_t len = nl ? (size_t)(nl - (p + at)) : n - at;
    e = pl__line(s, p + at, len);
    at += len + 1;
  }
  return e;
}

pl_err pl_seal_parse(const uint8_t *p, size_t n, pl_seal **out) {
  *out = NULL;
  if (n > PL_SEAL_FILE_MAX)
    return PL_ERR_CONFIG;
  pl_seal *s = pl__alloc();
  if (!s)
    return PL_ERR_INTERNAL;
  pl_err e = pl__text(s, p, n);
  if ((e != PL_OK || !s->current) && n == PL_SEAL_KEY_LEN) { /* not text: 32 raw bytes */
    memset(s->present, 0, sizeof s->present);
    s->current = 0;
    pl__put(s, 1, p);
    e = PL_OK;
  }
  if (e == PL_OK && !s->current)
    e = PL_ERR_CONFIG;
  if (e != PL_OK) {
    pl_seal_free(s);
    return e;
  }
  *out = s;
  return PL_OK;
}

pl_seal *pl_seal_new(void) {
  pl_seal *s = pl__alloc();
  if (s) {
    randombytes_buf(s->key[1], PL_SEAL_KEY_LEN);
    s->present[1] = 1;
    s->current = 1;
  }
  return s;
}

uint8_t pl_seal_current(const pl_seal *s) { return s->current; }

int pl_seal_has(const pl_seal *s, uint8_t kid) { return kid && s->present[kid]; }

size_t pl_seal_ids(const pl_seal *s, uint8_t *ids) {
  size_t n = 0;
  for (unsigned id = 1; id <= PL_SEAL_MAX_KID; id++)
    if (s->present[id])
      ids[n++] = (uint8_t)id;
  return n;
}

pl_err pl_seal_add(pl_seal *s, uint8_t *kid) {
  if (s->current >= PL_SEAL_MAX_KID)
    return PL_ERR_CONFIG;
  uint8_t id = (uint8_t)(s->current + 1);
  randombytes_buf(s->key[id], PL_SEAL_KEY_LEN);
  s->present[id] = 1;
  s->current = id;
  *kid = id;
  return PL_OK;
}

pl_err pl_seal_remove(pl_seal *s, uint8_t kid) {
  if (!pl_seal_has(s, kid))
    return PL_ERR_NOT_FOUND;
  uint8_t ids[PL_SEAL_MAX_KID];
  size_t n = pl_seal_ids(s, ids);
  if (n == 1)
    return PL_ERR_CONFIG;
  s->present[kid] = 0;
  sodium_memzero(s->key[kid], PL_SEAL_KEY_LEN);
  if (kid == s->current) /* the newest left: the next newest seals */
    s->current = n >= 2 ? ids[n - 2] : 0;
  return PL_OK;
}

char *pl_seal_format(const pl_seal *s, size_t *n) {
  static const char head[] = "# parleyd key file: <id> <key>; the highest id encrypts, every key decrypts\n";
  size_t cap = sizeof head + (size_t)PL_SEAL_MAX_KID * (4 + 2 * PL_SEAL_KEY_LEN + 2);
  char *out = pl_malloc(cap);
  size_t at = (size_t)snprintf(out, cap, "%s", head);
  for (unsigned id = 1; id <= PL_SEAL_MAX_KID; id++) {
    if (!s->present[id])
      continue;
    at += (size_t)snprintf(out + at, cap - at, "%u ", id);
    sodium_bin2hex(out + at, cap - at, s->key[id], PL_SEAL_KEY_LEN);
    at += 2 * PL_SEAL_KEY_LEN;
    out[at++] = '\n';
    out[at] = '\0';
  }
  *n = at;
  return out;
}

void pl_seal_encrypt(const pl_seal *s, const uint8_t *ad, size_t adlen, const uint8_t *p, size_t n,
                     uint8_t *out) {
  out[0] = s->current;
  randombytes_buf(out + 1, PL_SEAL_NONCE_LEN);
  crypto_aead_xchacha20poly1305_ietf_encrypt(out + 1 + PL_SEAL_NONCE_LEN, NULL, p, n, ad, adlen, NULL,
                                             out + 1, s->key[s->current]);
}

uint8_t pl_seal_kid(const uint8_t *c, size_t n) { return n >= PL_SEAL_OVERHEAD ? c[0] : 0; }

pl_err pl_seal_decrypt(const pl_seal *s, const uint8_t *ad, size_t adlen, const uint8_t *c, size_t n,
                       uint8_t *out) {
  if (n < PL_SEAL_OVERHEAD)
    return PL_ERR_STORE;
  if (!pl_seal_has(s, c[0]))
    return PL_ERR_NOT_FOUND;
  int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
      out, NULL, NULL, c + 1 + PL_SEAL_NONCE_LEN, n - 1 - PL_SEAL_NONCE_LEN, ad, adlen, c + 1, s->key[c[0]]);
  return rc == 0 ? PL_OK : PL_ERR_STORE;
}

/* ---- a shared ring ---------------------------------------------------------- */

struct pl_seal_ref {
  _Atomic(pl_seal *) cur;
  pthread_mutex_t mu;
  pl_seal **old; /* replaced rings, freed with the ref */
  size_t nold;
};

pl_seal_ref *pl_seal_ref_new(pl_seal *s) {
  pl_seal_ref *r = pl_calloc(1, sizeof *r);
  atomic_init(&r->cur, s);
  pthread_mutex_init(&r->mu, NULL);
  return r;
}

const pl_seal *pl_seal_ref_get(pl_seal_ref *r) { return atomic_load_explicit(&r->cur, memory_order_acquire); }

void pl_seal_ref_set(pl_seal_ref *r, pl_seal *s) {
  pthread_mutex_lock(&r->mu);
  r->old = pl_realloc(r->old, (r->nold + 1) * sizeof *r->old);
  r->old[r->nold++] = atomic_exchange_explicit(&r->cur, s, memory_order_acq_rel);
  pthread_mutex_unlock(&r->mu);
}

void pl_seal_ref_free(pl_seal_ref *r) {
  if (!r)
    return;
  for (size_t i = 0; i < r->nold; i++)
    pl_seal_free(r->old[i]);
  pl_free(r->old);
  pl_seal_free(atomic_load(&r->cur));
  pthread_mutex_destroy(&r->mu);
  pl_free(r);
}

/* ---- the key file ---------------------------------------------------------- */

pl_err pl_seal_load(const char *path, pl_seal **out, char *why, size_t cap) {
  uint8_t buf[PL_SEAL_FILE_MAX + 1];
  struct stat st;
  pl_err e = PL_ERR_CONFIG;
  ssize_t n = -1;
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(why, cap, "cannot read key file %s: %s", path, strerror(errno));
    goto out;
  }
  if (st.st_mode & 077) {
    snprintf(why, cap, "key file %s is mode %03o: it must be 0600 (chmod 600 %s)", path,
             (unsigned)(st.st_mode & 0777), path);
    goto out;
  }
  n = read(fd, buf, sizeof buf);
  if (n < 0 || (size_t)n > PL_SEAL_FILE_MAX) {
    snprintf(why, cap, "cannot read key file %s: %s", path, n < 0 ? strerror(errno) : "too large");
    goto out;
  }
  e = pl_seal_parse(buf, (size_t)n, out);
  if (e != PL_OK)
    snprintf(
        why, cap,
        "key file %s holds no valid keys: each line must be \"<id 1-255> <64 hex digits>\" (parleyd keygen "
        "makes one)",
        path);
out:
  sodium_memzero(buf, sizeof buf);
  if (fd >= 0)
    close(fd);
  return e;
}

pl_err pl_seal_save(const pl_seal *s, const char *path) {
  size_t n, plen = strlen(path) + sizeof ".new";
  char *text = pl_seal_format(s, &n), *tmp = pl_malloc(plen);
  pl_err e = PL_ERR_IO;
  snprintf(tmp, plen, "%s.new", path);
  unlink(tmp);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0 && write(fd, text, n) == (ssize_t)n && fsync(fd) == 0 && close(fd) == 0) {
    fd = -1;
    e = rename(tmp, path) == 0 ? PL_OK : PL_ERR_IO;
  }
  if (fd >= 0)
    close(fd);
  if (e != PL_OK)
    unlink(tmp);
  sodium_memzero(text, n);
  pl_free(text);
  pl_free(tmp);
  return e;
}
