/* fuzz_tls: the server's TLS record path (pl_tls as a pl_stream connection
 * type), fed arbitrary bytes as if a peer sent them.
 *
 * One pl_tls context with a throw-away certificate (made at start-up). Each
 * input: byte 0 picks the size of the pieces the rest is read in; each piece
 * goes through the type's read hook exactly as pl_stream hands it a socket
 * read (memory BIO in, handshake, records out into the stream's queue);
 * plaintext the peer sends is echoed through the encode hook, and the
 * stream's queue must stay consistent: every entry before enc is wire bytes,
 * out_bytes is the sum of what is queued. At the end the close path runs
 * (close_notify) and the state is freed. */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/pl_mem.h"
#include "net/pl_loop.h"
#include "net/pl_stream.h"
#include "net/pl_tls.h"

#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "fuzz_tls: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                    \
    }                                                                             \
  } while (0)

static pl_tls *tls;
static pl_loop *loop;
static size_t echoed;

static void on_data(pl_stream *s, const uint8_t *p, size_t n) {
  echoed += n;
  pl_stream_write_bytes(s, p, n < 512 ? n : 512);
}
static void on_eof(pl_stream *s) { pl_stream_closing(s); }
static void on_written(pl_stream *s) { (void)s; }
static void on_closed(pl_stream *s) { (void)s; }

static const pl_stream_cbs cbs = {
    .on_data = on_data, .on_eof = on_eof, .on_written = on_written, .on_closed = on_closed};

/* A P-256 key and a self-signed certificate, written where pl_tls reads them. */
static void make_cert(const char *cert_path, const char *key_path) {
  EVP_PKEY *k = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  FUZZ_CHECK(k && x);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, k);
  X509_NAME *nm = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, nm);
  FUZZ_CHECK(X509_sign(x, k, EVP_sha256()) > 0);
  FILE *c = fopen(cert_path, "w"), *kf = fopen(key_path, "w");
  FUZZ_CHECK(c && kf);
  FUZZ_CHECK(PEM_write_X509(c, x) && PEM_write_PrivateKey(kf, k, NULL, NULL, 0, NULL, NULL));
  fclose(c);
  fclose(kf);
  X509_free(x);
  EVP_PKEY_free(k);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  char dir[] = "/tmp/fuzz_tls-XXXXXX", cert[64], key[64];
  FUZZ_CHECK(mkdtemp(dir));
  snprintf(cert, sizeof cert, "%s/cert.pem", dir);
  snprintf(key, sizeof key, "%s/key.pem", dir);
  make_cert(cert, key);
  pl_tls_config cfg = {.cert = cert, .key = key, .min_version = 12};
  FUZZ_CHECK(pl_tls_new(&cfg, &tls) == PL_OK);
  unlink(cert);
  unlink(key);
  rmdir(dir);
  loop = pl_loop_new(0); /* never run: it lends its read buffer and flusher list */
  return 0;
}

/* The queue's invariants after each step. */
static void check_queue(const pl_stream *s) {
  size_t sum = 0;
  FUZZ_CHECK(s->enc <= s->qlen && s->qlen <= s->qcap);
  for (uint32_t i = 0; i < s->qlen; i++)
    sum += s->q[i]->len;
  FUZZ_CHECK(sum == s->out_bytes);
}

/* What the socket would send: the wire entries, dropped as if written. */
static void drain_wire(pl_stream *s) {
  while (s->enc) {
    s->out_bytes -= s->q[0]->len;
    pl_buf_unref(s->q[0]);
    memmove(s->q, s->q + 1, (s->qlen - 1) * sizeof *s->q);
    s->qlen--;
    s->enc--;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t piece = (size_t)data[0] * 7 + 1;
  data++;
  size--;
  pl_stream s;
  memset(&s, 0, sizeof s);
  s.tcp.loop = pl_loop_uv(loop);
  s.type = &pl_tls_type;
  s.cb = &cbs;
  s.reading = 1;
  s.flusher.queued = 1; /* the loop never runs: nothing goes on its list */
  FUZZ_CHECK(pl_tls_type.accept(&s, tls) == 0);
  for (size_t off = 0; off < size && !s.dead; off += piece) {
    size_t n = size - off < piece ? size - off : piece;
    if (pl_tls_type.read(&s, data + off, n) != 0)
      break;
    check_queue(&s);
    if (s.enc < s.qlen)
      FUZZ_CHECK(pl_tls_type.encode(&s) == 0);
    check_queue(&s);
    drain_wire(&s);
    if (s.closing)
      break;
  }
  pl_tls_type.shutdown(&s);
  check_queue(&s);
  for (uint32_t i = 0; i < s.qlen; i++)
    pl_buf_unref(s.q[i]);
  pl_free(s.q);
  pl_tls_type.free(&s);
  return 0;
}
