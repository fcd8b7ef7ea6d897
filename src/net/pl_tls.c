#include "pl_tls.h"

#include <openssl/buffer.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <string.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"

/* Plaintext is gathered into records of up to this many bytes: many small
 * frames of one pass become one record, not one record each. */
#define PL__RECORD 16384

typedef struct pl__tkey {
  uint8_t name[16], aes[32], hmac[32];
  uint64_t born_ms;
} pl__tkey;

struct pl_tls {
  pl_tls_config cfg;
  char *cert, *key;
  uv_mutex_t mu; /* ctx and the ticket keys: loops accept while SIGHUP reloads */
  SSL_CTX *ctx;
  pl__tkey cur, prev;
  int has_prev;
};

/* A connection's TLS state (pl_stream.tls). */
typedef struct pl__tconn {
  SSL *ssl;
  uint64_t deadline_ms; /* the handshake's; 0 once done */
  uint8_t ready, failed;
} pl__tconn;

/* The last OpenSSL error, for logs. */
static const char *pl__ossl_err(char *buf, size_t cap) {
  unsigned long e = ERR_peek_last_error();
  if (!e)
    snprintf(buf, cap, "unknown error");
  else
    ERR_error_string_n(e, buf, cap);
  ERR_clear_error();
  return buf;
}

/* ---- memory ---------------------------------------------------------- */

static void *pl__ossl_malloc(size_t n, const char *file, int line) {
  (void)file;
  (void)line;
  return pl_malloc(n);
}

static void *pl__ossl_realloc(void *p, size_t n, const char *file, int line) {
  (void)file;
  (void)line;
  if (!n) { /* realloc(p, 0) frees, as OpenSSL's own does */
    pl_free(p);
    return NULL;
  }
  return pl_realloc(p, n);
}

static void pl__ossl_free(void *p, const char *file, int line) {
  (void)file;
  (void)line;
  pl_free(p);
}

void pl_tls_global_init(void) { CRYPTO_set_mem_functions(pl__ossl_malloc, pl__ossl_realloc, pl__ossl_free); }

/* ---- session tickets ------------------------------------------------- */

static void pl__tkey_new(pl__tkey *k) {
  RAND_bytes(k->name, sizeof k->name);
  RAND_bytes(k->aes, sizeof k->aes);
  RAND_bytes(k->hmac, sizeof k->hmac);
  k->born_ms = pl_mono_ms();
}

/* The key to seal with (rotated when due) or the one that opens name; 0
 * if none does. Returns 1 for the current key, 2 for the previous one. */
static int pl__tkey_get(pl_tls *t, const uint8_t *name, pl__tkey *out) {
  int rc = 0;
  uv_mutex_lock(&t->mu);
  if (pl_mono_ms() - t->cur.born_ms > (uint64_t)t->cfg.ticket_s * 1000) {
    t->prev = t->cur;
    t->has_prev = 1;
    pl__tkey_new(&t->cur);
  }
  if (!name || !memcmp(name, t->cur.name, 16)) {
    *out = t->cur;
    rc = 1;
  } else if (t->has_prev && !memcmp(name, t->prev.name, 16)) {
    *out = t->prev;
    rc = 2;
  }
  uv_mutex_unlock(&t->mu);
  return rc;
}

/* OpenSSL's ticket callback (RFC 5077 layout: AES-256-CBC and HMAC-SHA256). */
static int pl__ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                         EVP_MAC_CTX *hctx, int enc) {
  pl_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
  pl__tkey k;
  int rc = pl__tkey_get(t, enc ? NULL : name, &k);
  if (!rc)
    return 0; /* unknown or expired key: a full handshake */
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof k.hmac),
                         OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (enc) {
    memcpy(name, k.name, 16);
    if (RAND_bytes(iv, 16) != 1 || !EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv))
      return -1;
  } else if (!EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv)) {
    return -1;
  }
  if (!EVP_MAC_CTX_set_params(hctx, params))
    return -1;
  OPENSSL_cleanse(&k, sizeof k);
  return rc; /* 2: opened with the previous key, so a new ticket is sent */
}

/* ---- the context ----------------------------------------------------- */

static SSL_CTX *pl__ctx_load(pl_tls *t) {
  char why[256];
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx)
    goto fail;
  SSL_CTX_set_min_proto_version(ctx, t->cfg.min_version == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
  /* Idle connections give their record buffers back: memory per
   * connection is a product figure. */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_max_early_data(ctx, 0); /* no 0-RTT: protocol.md, TLS */
  /* Resumption by tickets only (no per-server session cache to share
   * across loops); one ticket per connection is enough for one client. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 1);
  SSL_CTX_set_timeout(ctx, (long)t->cfg.ticket_s * 2);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, pl__ticket_cb);
  SSL_CTX_set_app_data(ctx, t);
  if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
    pl_error("tls: certificate %s: %s", t->cert, pl__ossl_err(why, sizeof why));
    SSL_CTX_free(ctx);
    return NULL;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    pl_error("tls: key %s: %s", t->key, pl__ossl_err(why, sizeof why));
    SSL_CTX_free(ctx);
    return NULL;
  }
  return ctx;
fail:
  pl_error("tls: %s", pl__ossl_err(why, sizeof why));
  return NULL;
}

pl_err pl_tls_new(const pl_tls_config *cfg, pl_tls **out) {
  pl_tls *t = pl_calloc(1, sizeof *t);
  t->cfg = *cfg;
  if (!t->cfg.handshake_ms)
    t->cfg.handshake_ms = 10000;
  if (!t->cfg.ticket_s)
    t->cfg.ticket_s = 12 * 3600;
  if (t->cfg.min_version != 12)
    t->cfg.min_version = 13;
  t->cert = pl_strdup(cfg->cert);
  t->key = pl_strdup(cfg->key);
  t->cfg.cert = t->cert;
  t->cfg.key = t->key;
  uv_mutex_init(&t->mu);
  pl__tkey_new(&t->cur);
  t->ctx = pl__ctx_load(t);
  if (!t->ctx) {
    pl_tls_free(t);
    return PL_ERR_CONFIG;
  }
  *out = t;
  return PL_OK;
}

pl_err pl_tls_reload(pl_tls *t) {
  SSL_CTX *ctx = pl__ctx_load(t);
  if (!ctx) {
    pl_warn("tls: keeping the certificate in use");
    return PL_ERR_CONFIG;
  }
  uv_mutex_lock(&t->mu);
  SSL_CTX *old = t->ctx;
  t->ctx = ctx;
  uv_mutex_unlock(&t->mu);
  SSL_CTX_free(old); /* connections that started on it hold their own reference */
  pl_info("tls: certificate %s reloaded", t->cert);
  return PL_OK;
}

void pl_tls_free(pl_tls *t) {
  if (!t)
    return;
  SSL_CTX_free(t->ctx);
  uv_mutex_destroy(&t->mu);
  OPENSSL_cleanse(&t->cur, sizeof t->cur);
  OPENSSL_cleanse(&t->prev, sizeof t->prev);
  pl_free(t->cert);
  pl_free(t->key);
  pl_free(t);
}

/* ---- the connection type --------------------------------------------- */

/* Records OpenSSL made (handshake, alerts, tickets, encrypted data) as one
 * buffer, or NULL. */
static pl_buf *pl__take_wire(pl__tconn *tc) {
  BIO *w = SSL_get_wbio(tc->ssl);
  size_t n = BIO_ctrl_pending(w);
  if (!n)
    return NULL;
  pl_buf *b = pl_buf_new(n);
  int r = BIO_read(w, b->data, (int)n);
  b->len = r > 0 ? (uint32_t)r : 0;
  return b;
}

/* Handshake records and alerts go ahead of any plaintext still waiting. */
static void pl__send_wire(pl_stream *s) {
  pl_buf *b = pl__take_wire(s->tls);
  if (b)
    pl_stream_put_wire(s, b);
}

static int pl__accept(pl_stream *s, void *arg) {
  pl_tls *t = arg;
  uv_mutex_lock(&t->mu);
  SSL *ssl = SSL_new(t->ctx); /* takes a reference to the context in use */
  uv_mutex_unlock(&t->mu);
  BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
  if (!ssl || !r || !w) {
    SSL_free(ssl);
    BIO_free(r);
    BIO_free(w);
    return -1;
  }
  BIO_set_mem_eof_return(r, -1); /* empty means "wait for more", not EOF */
  SSL_set_bio(ssl, r, w);
  SSL_set_accept_state(ssl);
  pl__tconn *tc = pl_calloc(1, sizeof *tc);
  tc->ssl = ssl;
  tc->deadline_ms = pl_mono_ms() + t->cfg.handshake_ms;
  s->tls = tc;
  return 0;
}

/* The peer is not speaking TLS, or broke it: its alert goes out, nothing
 * else does, and the connection closes. */
static void pl_tls__fail(pl_stream *s, const char *what) {
  pl__tconn *tc = s->tls;
  char why[256];
  pl_debug("tls: %s: %s", what, pl__ossl_err(why, sizeof why));
  tc->failed = 1;
  pl_stream_encoded(s, NULL); /* plaintext waiting for the handshake is dropped */
  pl__send_wire(s);
  pl_stream_closing(s);
}

/* Returns 0 to go on, 1 when the handshake still waits for the peer. */
static int pl__handshake(pl_stream *s) {
  pl__tconn *tc = s->tls;
  int r = SSL_do_handshake(tc->ssl);
  if (r == 1) {
    tc->ready = 1;
    tc->deadline_ms = 0;
    return 0;
  }
  int e = SSL_get_error(tc->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    pl__send_wire(s);
    return 1;
  }
  pl_tls__fail(s, "handshake failed");
  return 1;
}

static int pl__read(pl_stream *s, const uint8_t *p, size_t n) {
  pl__tconn *tc = s->tls;
  if (tc->failed)
    return 0;
  if (n && BIO_write(SSL_get_rbio(tc->ssl), p, (int)n) != (int)n)
    return -1;
  if (!tc->ready && pl__handshake(s))
    return 0;
  /* The records are in the BIO: the loop's buffer is free for plaintext. */
  uint8_t *buf = pl_stream_rbuf(s);
  while (s->reading && !s->closing) {
    int k = SSL_read(tc->ssl, buf, PL_LOOP_RBUF);
    if (k > 0) {
      s->cb->on_data(s, buf, (size_t)k);
      continue;
    }
    int e = SSL_get_error(tc->ssl, k);
    if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: as EOF */
      s->cb->on_eof(s);
      break;
    }
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      pl_tls__fail(s, "read");
      return 0;
    }
    break;
  }
  if (!s->dead)
    pl__send_wire(s); /* tickets after the handshake, key updates */
  return 0;
}

/* SSL_write into a memory BIO does not block: it fails only on error. */
static int pl__seal(pl__tconn *tc, const uint8_t *p, size_t n) {
  return n == 0 || SSL_write(tc->ssl, p, (int)n) == (int)n ? 0 : -1;
}

static int pl__encode(pl_stream *s) {
  pl__tconn *tc = s->tls;
  if (!tc->ready || tc->failed)
    return 0;                       /* the plaintext waits for the handshake */
  uint8_t *rec = pl_stream_rbuf(s); /* nothing is read during a flush */
  size_t fill = 0;
  for (uint32_t i = s->enc; i < s->qlen; i++) {
    const pl_buf *b = s->q[i];
    if (fill + b->len > PL__RECORD) {
      if (pl__seal(tc, rec, fill) != 0)
        return -1;
      fill = 0;
    }
    if (b->len >= PL__RECORD) {
      if (pl__seal(tc, b->data, b->len) != 0)
        return -1;
      continue;
    }
    memcpy(rec + fill, b->data, b->len);
    fill += b->len;
  }
  if (pl__seal(tc, rec, fill) != 0)
    return -1;
  pl_stream_encoded(s, pl__take_wire(tc));
  return 0;
}

static int pl__pending(const pl_stream *s) {
  const pl__tconn *tc = s->tls;
  return tc->ready && !tc->failed &&
         (SSL_pending(tc->ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(tc->ssl)) > 0);
}

static void pl__shutdown(pl_stream *s) {
  pl__tconn *tc = s->tls;
  if (!tc->ready || tc->failed)
    return;
  SSL_shutdown(tc->ssl); /* our close_notify; the peer's is not awaited */
  pl__send_wire(s);
  ERR_clear_error();
}

static void pl__free(pl_stream *s) {
  pl__tconn *tc = s->tls;
  if (!tc)
    return;
  SSL_free(tc->ssl);
  pl_free(tc);
  s->tls = NULL;
}

/* A memory BIO keeps the buffer its biggest burst needed (the handshake's
 * certificate chain, a large message) even once empty: an idle
 * connection swaps its empty BIOs for new ones that own nothing. */
static void pl__trim(pl_stream *s) {
  pl__tconn *tc = s->tls;
  BIO *r = SSL_get_rbio(tc->ssl), *w = SSL_get_wbio(tc->ssl);
  if (!tc->ready || tc->failed || BIO_ctrl_pending(r) || BIO_ctrl_pending(w) || SSL_pending(tc->ssl))
    return;
  BUF_MEM *rm = NULL, *wm = NULL;
  BIO_get_mem_ptr(r, &rm);
  BIO_get_mem_ptr(w, &wm);
  if ((!rm || !rm->max) && (!wm || !wm->max))
    return; /* nothing held */
  BIO *nr = BIO_new(BIO_s_mem()), *nw = BIO_new(BIO_s_mem());
  if (!nr || !nw) {
    BIO_free(nr);
    BIO_free(nw);
    return;
  }
  BIO_set_mem_eof_return(nr, -1);
  SSL_set_bio(tc->ssl, nr, nw); /* frees the old pair */
}

static uint64_t pl__deadline(const pl_stream *s) {
  const pl__tconn *tc = s->tls;
  return tc ? tc->deadline_ms : 0;
}

const pl_stream_type pl_tls_type = {
    .name = "tls",
    .accept = pl__accept,
    .read = pl__read,
    .encode = pl__encode,
    .pending = pl__pending,
    .shutdown = pl__shutdown,
    .free = pl__free,
    .deadline = pl__deadline,
    .trim = pl__trim,
};
