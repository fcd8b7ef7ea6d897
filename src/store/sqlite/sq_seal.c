/* sq_seal: the SQLite backend's side of encryption at rest (pl_seal,
 * docs/operations.md "Encryption at rest").
 *
 * With a key (--key-file), what a message says is sealed before SQLite sees
 * it, so neither the database, its WAL nor its freed pages ever hold it:
 *   messages.body   the message (and a group event's text, e.g. a name)
 *   messages.media  the packed Media descriptor (file name, type, size)
 *   media.name      an upload's file name: a BLOB when sealed (ad: its
 *                   media id), TEXT when plain (no key column needed)
 * An empty body stays empty (a tombstone, a receipt). messages.act holds
 * only numbers and a conversation name (pl_act), like the other columns
 * the server routes by, and is not sealed. Each sealed value's associated
 * data is its column, conversation, seq and server time, so a value copied
 * into another row (or column) does not open.
 *
 *   messages.sk   0: the row's values are plain; else the key id that
 *                 sealed them (each value also starts with it)
 *   meta 'seal'   a sealed check value: a start with the wrong key, or
 *                 with none on a data dir that has one, fails clearly
 *
 * Rotation: when the ring's current key is not the one the rows were sealed
 * with, a pass over messages in qid order rewrites each row under another
 * key (or plain), a batch per transaction through the store's backlog (so
 * sends wait for one batch at most), and counts the rows per key it leaves
 * behind: what /metrics shows. */
#include <stdatomic.h>

#include "../../common/pl_seal.h"
#include "sq_internal.h"

#define PL__REKEY_BATCH 256u
#define PL__AD_MAX 512u
static const uint8_t pl__check_text[] = "parley-seal-check";

pl_err pl_sq_seal_upgrade(sqlite3 *db) {
  return pl_sq_upgrade_column(db, "messages", "sk", "INTEGER NOT NULL DEFAULT 0", NULL, "messages.sk (sealing)");
}

uint8_t pl_sq_seal_sk(const pl__sq *q) { return q->seal ? pl_seal_current(q->seal) : 0; }

/* col | seq | ts | conv: where a value lives. *n its length; NULL if conv
 * is too long to fit (never: names are bounded far below). */
static size_t pl__ad(uint8_t *ad, char col, const char *conv, uint64_t seq, uint64_t ts) {
  size_t cl = strlen(conv);
  if (cl > PL__AD_MAX - 17)
    cl = PL__AD_MAX - 17;
  ad[0] = (uint8_t)col;
  for (int i = 0; i < 8; i++) {
    ad[1 + i] = (uint8_t)(seq >> (8 * i));
    ad[9 + i] = (uint8_t)(ts >> (8 * i));
  }
  memcpy(ad + 17, conv, cl);
  return 17 + cl;
}

static uint8_t *pl__seal(const pl_seal *s, char col, const char *conv, uint64_t seq, uint64_t ts,
                         const void *p, size_t n, size_t *out_n) {
  uint8_t ad[PL__AD_MAX];
  size_t adn = pl__ad(ad, col, conv, seq, ts);
  uint8_t *c = pl_malloc(n + PL_SEAL_OVERHEAD);
  pl_seal_encrypt(s, ad, adn, p, n, c);
  *out_n = n + PL_SEAL_OVERHEAD;
  return c;
}

void pl_sq_seal_bind(pl__sq *q, sqlite3_stmt *st, int i, char col, const char *conv, uint64_t seq,
                     uint64_t ts, const void *p, size_t n) {
  if (!q->seal || !n) {
    sqlite3_bind_blob(st, i, n ? p : "", (int)n, SQLITE_STATIC);
    return;
  }
  size_t cn;
  uint8_t *c = pl__seal(q->seal, col, conv, seq, ts, p, n, &cn);
  sqlite3_bind_blob(st, i, c, (int)cn, pl_free);
}

/* Opens the n bytes at c (a value of row (conv, seq, ts) sealed with key
 * sk) into a new buffer. */
static pl_err pl__open(const pl_seal *s, uint8_t sk, char col, const char *conv, uint64_t seq, uint64_t ts,
                       const void *c, size_t n, uint8_t **out, size_t *out_n) {
  *out = NULL;
  *out_n = 0;
  if (!sk || !n) {
    *out = pl_memdup(n ? c : "", n);
    *out_n = n;
    return PL_OK;
  }
  if (!s || n < PL_SEAL_OVERHEAD)
    return PL_ERR_STORE;
  uint8_t ad[PL__AD_MAX];
  size_t adn = pl__ad(ad, col, conv, seq, ts);
  uint8_t *p = pl_malloc(n - PL_SEAL_OVERHEAD + 1);
  pl_err e = pl_seal_decrypt(s, ad, adn, c, n, p);
  if (e != PL_OK) {
    pl_free(p);
    return e;
  }
  *out = p;
  *out_n = n - PL_SEAL_OVERHEAD;
  return PL_OK;
}

pl_err pl_sq_seal_col(pl__sq *q, sqlite3_stmt *st, int i, uint8_t sk, char col, const char *conv,
                      uint64_t seq, uint64_t ts, uint8_t **out, size_t *n) {
  pl_err e = pl__open(q->seal, sk, col, conv, seq, ts, sqlite3_column_blob(st, i),
                      (size_t)sqlite3_column_bytes(st, i), out, n);
  if (e != PL_OK)
    pl_error("store: a message of %s (seq %llu) does not open with the key file (key id %u): %s", conv,
             (unsigned long long)seq, (unsigned)sk,
             e == PL_ERR_NOT_FOUND ? "the key file lacks that key" : "wrong key or altered row");
  return e;
}

void pl_sq_seal_bind_name(pl__sq *q, sqlite3_stmt *st, int i, const char *id, const char *name) {
  if (!q->seal) {
    pl_sq_bind_text(st, i, name);
    return;
  }
  size_t cn;
  uint8_t *c = pl__seal(q->seal, 'n', id, 0, 0, name, strlen(name), &cn);
  sqlite3_bind_blob(st, i, c, (int)cn, pl_free);
}

pl_err pl_sq_seal_name(pl__sq *q, sqlite3_stmt *st, int i, const char *id, char *out, size_t cap) {
  const void *v = sqlite3_column_blob(st, i);
  size_t n = (size_t)sqlite3_column_bytes(st, i), pn = 0;
  uint8_t *p = NULL;
  pl_err e = PL_OK;
  if (sqlite3_column_type(st, i) == SQLITE_BLOB) {
    e = pl__open(q->seal, pl_seal_kid(v, n), 'n', id, 0, 0, v, n, &p, &pn);
  } else {
    p = pl_memdup(v ? v : "", n);
    pn = n;
  }
  if (e != PL_OK)
    pl_error("store: the name of upload %s does not open with the key file", id);
  snprintf(out, cap, "%.*s", e == PL_OK ? (int)pn : 0, p ? (const char *)p : "");
  pl_free(p);
  return e;
}

/* ---- at open ---------------------------------------------------------------- */

static pl_err pl__check_get(pl__sq *q, uint8_t **val, size_t *n) {
  sqlite3_stmt *st = NULL;
  pl_err e = PL_ERR_STORE;
  *val = NULL;
  *n = 0;
  if (sqlite3_prepare_v2(q->db, "SELECT value FROM meta WHERE key = 'seal'", -1, &st, NULL) != SQLITE_OK)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *n = (size_t)sqlite3_column_bytes(st, 0);
    *val = pl_memdup(sqlite3_column_blob(st, 0), *n);
  }
  e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : PL_ERR_STORE;
out:
  sqlite3_finalize(st);
  return e;
}

static pl_err pl__check_put(pl__sq *q) {
  size_t n;
  uint8_t *c = pl__seal(q->seal, 'k', "", 0, 0, pl__check_text, sizeof pl__check_text, &n);
  sqlite3_stmt *st = NULL;
  pl_err e = PL_ERR_STORE;
  if (sqlite3_prepare_v2(q->db, "INSERT OR REPLACE INTO meta(key, value) VALUES('seal', ?1)", -1, &st,
                         NULL) == SQLITE_OK) {
    sqlite3_bind_blob(st, 1, c, (int)n, SQLITE_STATIC);
    e = sqlite3_step(st) == SQLITE_DONE ? PL_OK : PL_ERR_STORE;
  }
  sqlite3_finalize(st);
  pl_free(c);
  return e;
}

/* The key ids the rows use, as a bit set (ids[kid / 64] bit kid % 64). */
static pl_err pl__ids_used(pl__sq *q, uint64_t ids[4]) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(q->db, "SELECT DISTINCT sk FROM messages", -1, &st, NULL);
  if (rc != SQLITE_OK)
    st = NULL;
  memset(ids, 0, 4 * sizeof *ids);
  while (st && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    unsigned k = (unsigned)sqlite3_column_int(st, 0) & 255u;
    ids[k / 64] |= 1ull << (k % 64);
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE)
    return PL_ERR_STORE;
  rc = sqlite3_prepare_v2(q->db, "SELECT DISTINCT substr(name, 1, 1) FROM media WHERE typeof(name) = 'blob'",
                          -1, &st, NULL);
  if (rc != SQLITE_OK)
    st = NULL;
  while (st && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    const uint8_t *b = sqlite3_column_blob(st, 0);
    unsigned k = sqlite3_column_bytes(st, 0) ? b[0] : 0;
    ids[k / 64] |= 1ull << (k % 64);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? PL_OK : PL_ERR_STORE;
}

/* Refuses a start that would serve garbage or fail later: a data dir with
 * sealed rows and no key, a key that does not open its check value, rows
 * sealed with a key the file lacks. With a key and none of that, the check
 * value is (re)written under the current key. */
pl_err pl_sq_seal_open(pl__sq *q) {
  uint8_t *chk, *plain = NULL;
  size_t n, pn;
  uint64_t ids[4];
  pl_err e = pl__check_get(q, &chk, &n);
  if (e == PL_OK)
    e = pl__ids_used(q, ids);
  if (e != PL_OK)
    goto out;
  if (!q->seal) {
    if (chk || (ids[0] & ~1ull) || ids[1] || ids[2] || ids[3]) {
      pl_error("store: this data dir is encrypted (messages are sealed): start parleyd with its --key-file");
      e = PL_ERR_CONFIG;
    }
    goto out;
  }
  pl_err ce = chk ? pl__open(q->seal, pl_seal_kid(chk, n), 'k', "", 0, 0, chk, n, &plain, &pn) : PL_OK;
  if (ce != PL_OK) {
    pl_error("store: the key file does not open this data dir (its check value, key id %u, does not open%s):"
             " wrong key file?",
             (unsigned)pl_seal_kid(chk, n), ce == PL_ERR_NOT_FOUND ? ": the key file lacks that key id" : "");
    e = PL_ERR_CONFIG;
    goto out;
  }
  for (unsigned k = 1; k <= PL_SEAL_MAX_KID; k++)
    if ((ids[k / 64] >> (k % 64) & 1) && !pl_seal_has(q->seal, (uint8_t)k)) {
      pl_error("store: messages are sealed with key id %u, which the key file lacks", k);
      e = PL_ERR_CONFIG;
      goto out;
    }
  e = pl__check_put(q);
  /* a first pass: anything under another key (or plain) is rewritten, and
   * the counts a key's removal is checked against are made */
  q->rekey_pending = 1;
  q->rekey_kid = pl_seal_current(q->seal);
out:
  pl_free(chk);
  pl_free(plain);
  return e;
}

/* ---- rotation --------------------------------------------------------------- */

/* Between transactions: the ring the store was given may have a new key
 * (pl_seal_ref_set); a pass then starts. */
void pl_sq_seal_refresh(pl__sq *q) {
  if (!q->seal_ref)
    return;
  q->seal = pl_seal_ref_get(q->seal_ref);
  if (pl_seal_current(q->seal) != q->rekey_kid) {
    q->rekey_kid = pl_seal_current(q->seal);
    q->rekey_pending = 1;
    q->rekey_media = 0;
    q->rekey_after = 0;
    q->rekey_media_after[0] = '\0';
    memset(q->rekey_count, 0, sizeof q->rekey_count);
  }
}

/* One row of the pass: rewritten under the current key unless it has it. */
static pl_err pl__rekey_row(pl__sq *q, sqlite3_stmt *st, sqlite3_stmt *up) {
  uint8_t sk = (uint8_t)sqlite3_column_int(st, 6), cur = pl_seal_current(q->seal);
  const char *conv = (const char *)sqlite3_column_text(st, 1);
  uint64_t seq = pl_sq_col_u64(st, 2), ts = pl_sq_col_u64(st, 3);
  uint8_t *body = NULL, *media = NULL;
  size_t bn, mn;
  q->rekey_count[cur]++;
  if (sk == cur)
    return PL_OK;
  pl_err e = pl_sq_seal_col(q, st, 4, sk, 'b', conv ? conv : "", seq, ts, &body, &bn);
  int has_media = sqlite3_column_type(st, 5) == SQLITE_BLOB;
  if (e == PL_OK && has_media)
    e = pl_sq_seal_col(q, st, 5, sk, 'm', conv ? conv : "", seq, ts, &media, &mn);
  if (e == PL_OK) {
    pl_sq_seal_bind(q, up, 1, 'b', conv ? conv : "", seq, ts, body, bn);
    if (has_media)
      pl_sq_seal_bind(q, up, 2, 'm', conv ? conv : "", seq, ts, media, mn);
    else
      sqlite3_bind_null(up, 2);
    pl_sq_bind_u64(up, 3, cur);
    pl_sq_bind_u64(up, 4, pl_sq_col_u64(st, 0));
    e = pl_sq_run(q, up);
    q->rekeyed++;
  }
  pl_free(body);
  pl_free(media);
  return e;
}

/* A batch of the pass over media.name (after the messages'); 1 in *done at
 * the end of the table. */
static pl_err pl__rekey_names(pl__sq *q, int *done) {
  sqlite3_stmt *st = NULL, *up = NULL;
  pl_err e = PL_ERR_STORE;
  size_t rows = 0;
  uint8_t cur = pl_seal_current(q->seal);
  char name[256];
  int rc = sqlite3_prepare_v2(q->db, "SELECT id, name FROM media WHERE id > ?1 ORDER BY id LIMIT ?2", -1, &st,
                              NULL);
  if (rc != SQLITE_OK ||
      sqlite3_prepare_v2(q->db, "UPDATE media SET name = ?1 WHERE id = ?2", -1, &up, NULL) != SQLITE_OK)
    goto out;
  pl_sq_bind_text(st, 1, q->rekey_media_after);
  pl_sq_bind_u64(st, 2, PL__REKEY_BATCH);
  e = PL_OK;
  while (e == PL_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *id = (const char *)sqlite3_column_text(st, 0);
    const uint8_t *v = sqlite3_column_blob(st, 1);
    size_t n = (size_t)sqlite3_column_bytes(st, 1);
    rows++;
    snprintf(q->rekey_media_after, sizeof q->rekey_media_after, "%s", id ? id : "");
    if (sqlite3_column_type(st, 1) == SQLITE_BLOB && pl_seal_kid(v, n) == cur)
      continue;
    e = pl_sq_seal_name(q, st, 1, q->rekey_media_after, name, sizeof name);
    if (e == PL_OK) {
      pl_sq_seal_bind_name(q, up, 1, q->rekey_media_after, name);
      pl_sq_bind_text(up, 2, q->rekey_media_after);
      e = pl_sq_run(q, up);
    }
  }
  if (e == PL_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    e = pl_sq_sql_err(q, st, rc);
  *done = e == PL_OK && rows < PL__REKEY_BATCH;
out:
  sqlite3_finalize(st);
  sqlite3_finalize(up);
  return e;
}

/* The pass is done: the check value moves to the current key too, and the
 * pass's counts are what /metrics shows. */
static pl_err pl__rekey_done(pl__sq *q) {
  pl_err e = pl__check_put(q);
  if (e != PL_OK)
    return e;
  q->rekey_pending = q->rekey_media = 0;
  q->rekey_media_after[0] = '\0';
  for (unsigned k = 0; k <= PL_SEAL_MAX_KID; k++)
    atomic_store(&q->seal_rows[k], q->rekey_count[k]);
  atomic_store(&q->seal_passes, q->seal_passes + 1);
  pl_info("store: re-encryption pass done: %llu messages under key id %u (%llu rewritten so far)",
          (unsigned long long)q->rekey_count[pl_seal_current(q->seal)], (unsigned)pl_seal_current(q->seal),
          (unsigned long long)q->rekeyed);
  return PL_OK;
}

/* A batch of the pass, inside a transaction: the messages in qid order,
 * then the uploads' names. */
pl_err pl_sq_seal_rekey(pl__sq *q) {
  if (q->rekey_media) {
    int done = 0;
    pl_err e = pl__rekey_names(q, &done);
    return e == PL_OK && done ? pl__rekey_done(q) : e;
  }
  sqlite3_stmt *st = NULL, *up = NULL;
  pl_err e = PL_ERR_STORE;
  size_t rows = 0;
  int rc = sqlite3_prepare_v2(q->db,
                              "SELECT qid, conv, seq, server_ts, body, media, sk FROM messages WHERE qid > ?1"
                              " ORDER BY qid LIMIT ?2",
                              -1, &st, NULL);
  if (rc != SQLITE_OK ||
      sqlite3_prepare_v2(q->db, "UPDATE messages SET body = ?1, media = ?2, sk = ?3 WHERE qid = ?4", -1, &up,
                         NULL) != SQLITE_OK)
    goto out;
  pl_sq_bind_u64(st, 1, q->rekey_after);
  pl_sq_bind_u64(st, 2, PL__REKEY_BATCH);
  e = PL_OK;
  while (e == PL_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    rows++;
    q->rekey_after = pl_sq_col_u64(st, 0);
    e = pl__rekey_row(q, st, up);
  }
  if (e == PL_OK && rc != SQLITE_DONE)
    e = pl_sq_sql_err(q, st, rc);
  if (e == PL_OK && rows < PL__REKEY_BATCH)
    q->rekey_media = 1;
out:
  sqlite3_finalize(st);
  sqlite3_finalize(up);
  return e;
}
