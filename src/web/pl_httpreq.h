/* pl_httpreq: one HTTP/1.1 request at a time out of a byte stream, over
 * http-parser, with the limits a public server needs (request line and
 * headers, body). A pure codec over (pointer, length): the socket side feeds
 * it, so does the fuzzer.
 *
 * Only the headers Parley acts on are kept; the rest are parsed (and count
 * against the header limit) but dropped. */
#ifndef PL_HTTPREQ_H
#define PL_HTTPREQ_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

#include "common/pl_buf.h"

#define PL_HTTP_MAX_URL 2048

typedef enum pl_http_hdr {
  PL_H_HOST,
  PL_H_UPGRADE,
  PL_H_CONNECTION,
  PL_H_WS_KEY,
  PL_H_WS_VERSION,
  PL_H_WS_PROTOCOL,
  PL_H_ORIGIN,
  PL_H_CONTENT_TYPE,
  PL_H_AUTHORIZATION,
  PL_H_IF_NONE_MATCH,
  PL_H_RANGE,
  PL_H_IF_RANGE,
  PL_H_UPLOAD_LENGTH,
  PL_H_UPLOAD_OFFSET,
  PL_H__COUNT
} pl_http_hdr;

typedef struct pl_http_req {
  const char *method; /* "GET", ... (static) */
  char url[PL_HTTP_MAX_URL + 1];
  size_t url_len;
  char *hdr[PL_H__COUNT]; /* NULL when absent; a repeated header is joined with ", " */
  pl_bytes body;
  int keep_alive, upgrade, http_minor;
} pl_http_req;

typedef struct pl_httpreq pl_httpreq;
struct pl_httpreq {
  http_parser p;
  http_parser_settings s;
  pl_http_req req;
  size_t max_head, max_body, head_bytes;
  size_t default_body; /* max_body for every request unless on_head changes it */
  /* Optional: called once a request's head is parsed (req has the method,
   * URL and headers). Returns 0 to go on, or an HTTP status (4xx) to refuse
   * the request. It may stream the body: stream = 1 and max_body = the most
   * it takes; then each feed appends the body bytes it parsed to req.body,
   * and the caller takes them out before the next feed (so an upload is
   * never held whole). */
  int (*on_head)(void *ud, pl_httpreq *r);
  void *ud;
  int stream;
  uint64_t body_total; /* body bytes of this request so far */
  int field;           /* pl_http_hdr of the header being read, -1: not kept */
  char fname[32];      /* the field name so far (longer ones are not ours) */
  size_t fname_len;
  int in_value, status, complete;
};

void pl_httpreq_init(pl_httpreq *r, size_t max_head, size_t max_body);
/* Frees what the current request holds. */
void pl_httpreq_free(pl_httpreq *r);
/* Forgets the request just handled; the next one may follow on the stream. */
void pl_httpreq_next(pl_httpreq *r);

/* Feeds p[0..n). Returns how many bytes it took; it stops right after a
 * whole request (the rest is the next request's, or with an upgrade the new
 * protocol's). *status: 0 need more, 1 a whole request is in r->req, or the
 * HTTP status to answer with before closing (400, 413, 414, 431, 505). */
size_t pl_httpreq_feed(pl_httpreq *r, const uint8_t *p, size_t n, int *status);

/* A Range header (RFC 9110 14.1.2) against a body of len bytes: 1 and the
 * inclusive [*first, *last] for one satisfiable byte range; 0 to ignore it
 * (absent, malformed, or several ranges: answer with the whole body); -1 if
 * it cannot be satisfied (answer 416). */
int pl_http_range(const char *v, uint64_t len, uint64_t *first, uint64_t *last);

/* 1 if the comma-separated header value v has token t (case-insensitive). */
int pl_http_has_token(const char *v, const char *t);

/* The token of "Authorization: Bearer <token>" (a pointer into the header,
 * spaces before it skipped), or NULL if there is none or it is empty. */
const char *pl_http_bearer(const pl_http_req *q);

#endif
