#include "pl_httpreq.h"

#include <string.h>
#include <strings.h>

#include "common/pl_mem.h"

static const char *const pl__hdr_names[PL_H__COUNT] = {"host",
                                                       "upgrade",
                                                       "connection",
                                                       "sec-websocket-key",
                                                       "sec-websocket-version",
                                                       "sec-websocket-protocol",
                                                       "origin",
                                                       "content-type",
                                                       "authorization",
                                                       "if-none-match",
                                                       "range",
                                                       "if-range",
                                                       "upload-length",
                                                       "upload-offset"};

#define PL__R(x) ((pl_httpreq *)(void *)(x)) /* p is the first member */

/* Counts request-line and header bytes; fails with 431 past the limit. */
static int pl__head(pl_httpreq *r, size_t n, int status) {
  r->head_bytes += n;
  if (r->head_bytes > r->max_head) {
    r->status = status;
    return -1;
  }
  return 0;
}

static int pl__on_url(http_parser *p, const char *at, size_t n) {
  pl_httpreq *r = PL__R(p);
  if (r->req.url_len + n > PL_HTTP_MAX_URL) {
    r->status = 414;
    return -1;
  }
  memcpy(r->req.url + r->req.url_len, at, n);
  r->req.url_len += n;
  r->req.url[r->req.url_len] = '\0';
  return pl__head(r, n, 414);
}

static int pl__on_field(http_parser *p, const char *at, size_t n) {
  pl_httpreq *r = PL__R(p);
  if (r->in_value) { /* a new field begins */
    r->in_value = 0;
    r->fname_len = 0;
    r->field = -1;
  }
  if (r->fname_len + n < sizeof r->fname) {
    memcpy(r->fname + r->fname_len, at, n);
    r->fname_len += n;
  } else {
    r->fname_len = sizeof r->fname; /* too long to be one of ours */
  }
  return pl__head(r, n, 431);
}

static int pl__find_field(const pl_httpreq *r) {
  for (int i = 0; i < PL_H__COUNT; i++)
    if (r->fname_len == strlen(pl__hdr_names[i]) && !strncasecmp(r->fname, pl__hdr_names[i], r->fname_len))
      return i;
  return -1;
}

static int pl__on_value(http_parser *p, const char *at, size_t n) {
  pl_httpreq *r = PL__R(p);
  if (!r->in_value) {
    r->in_value = 1;
    r->field = r->fname_len < sizeof r->fname ? pl__find_field(r) : -1;
    if (r->field >= 0 && r->req.hdr[r->field]) { /* repeated: join as RFC 9110 5.3 allows */
      size_t old = strlen(r->req.hdr[r->field]);
      r->req.hdr[r->field] = pl_realloc(r->req.hdr[r->field], old + 3);
      memcpy(r->req.hdr[r->field] + old, ", ", 3);
    }
  }
  if (pl__head(r, n, 431) != 0)
    return -1;
  if (r->field < 0)
    return 0;
  char *v = r->req.hdr[r->field];
  size_t old = v ? strlen(v) : 0;
  v = pl_realloc(v, old + n + 1);
  memcpy(v + old, at, n);
  v[old + n] = '\0';
  r->req.hdr[r->field] = v;
  return 0;
}

static int pl__on_headers(http_parser *p) {
  pl_httpreq *r = PL__R(p);
  if (p->http_major != 1) {
    r->status = 505;
    return -1;
  }
  r->req.method = http_method_str((enum http_method)p->method);
  r->req.keep_alive = http_should_keep_alive(p);
  r->req.upgrade = p->upgrade;
  r->req.http_minor = p->http_minor;
  int st = r->on_head ? r->on_head(r->ud, r) : 0;
  if (st) {
    r->status = st;
    return -1;
  }
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > r->max_body) {
    r->status = 413;
    return -1;
  }
  return 0;
}

static int pl__on_body(http_parser *p, const char *at, size_t n) {
  pl_httpreq *r = PL__R(p);
  if (r->body_total + n > r->max_body) {
    r->status = 413;
    return -1;
  }
  r->body_total += n;
  pl_bytes_append(&r->req.body, at, n);
  return 0;
}

static int pl__on_complete(http_parser *p) {
  pl_httpreq *r = PL__R(p);
  r->complete = 1;
  http_parser_pause(p, 1); /* one request at a time: pipelined ones wait */
  return 0;
}

void pl_httpreq_init(pl_httpreq *r, size_t max_head, size_t max_body) {
  memset(r, 0, sizeof *r);
  r->max_head = max_head;
  r->max_body = r->default_body = max_body;
  r->field = -1;
  http_parser_init(&r->p, HTTP_REQUEST);
  http_parser_settings_init(&r->s);
  r->s.on_url = pl__on_url;
  r->s.on_header_field = pl__on_field;
  r->s.on_header_value = pl__on_value;
  r->s.on_headers_complete = pl__on_headers;
  r->s.on_body = pl__on_body;
  r->s.on_message_complete = pl__on_complete;
}

static void pl__clear(pl_httpreq *r) {
  for (int i = 0; i < PL_H__COUNT; i++)
    pl_free(r->req.hdr[i]);
  pl_bytes_free(&r->req.body);
  memset(&r->req, 0, sizeof r->req);
}

void pl_httpreq_free(pl_httpreq *r) { pl__clear(r); }

void pl_httpreq_next(pl_httpreq *r) {
  pl__clear(r);
  r->head_bytes = 0;
  r->fname_len = 0;
  r->field = -1;
  r->in_value = r->complete = r->status = r->stream = 0;
  r->body_total = 0;
  r->max_body = r->default_body;
  http_parser_pause(&r->p, 0);
}

size_t pl_httpreq_feed(pl_httpreq *r, const uint8_t *p, size_t n, int *status) {
  *status = 0;
  if (r->status) {
    *status = r->status;
    return 0;
  }
  if (r->complete) {
    *status = 1;
    return 0;
  }
  size_t used = http_parser_execute(&r->p, &r->s, (const char *)p, n);
  enum http_errno e = HTTP_PARSER_ERRNO(&r->p);
  if (r->complete) {
    *status = 1;
    return used;
  }
  if (e != HPE_OK && e != HPE_PAUSED) {
    if (!r->status)
      r->status = e == HPE_INVALID_VERSION ? 505 : 400;
    *status = r->status;
    return used;
  }
  return used;
}

int pl_http_has_token(const char *v, const char *t) {
  size_t tl = strlen(t);
  while (v && *v) {
    while (*v == ' ' || *v == '\t' || *v == ',')
      v++;
    const char *e = v;
    while (*e && *e != ',')
      e++;
    const char *end = e;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
      end--;
    if ((size_t)(end - v) == tl && !strncasecmp(v, t, tl))
      return 1;
    v = e;
  }
  return 0;
}

const char *pl_http_bearer(const pl_http_req *q) {
  const char *a = q->hdr[PL_H_AUTHORIZATION];
  if (!a || strncasecmp(a, "Bearer ", 7))
    return NULL;
  a += 7;
  while (*a == ' ')
    a++;
  return *a ? a : NULL;
}

/* Digits at *s into *v (no overflow past 2^63); 1 if there was at least one. */
static int pl__digits(const char **s, uint64_t *v) {
  const char *p = *s;
  uint64_t x = 0;
  while (*p >= '0' && *p <= '9') {
    if (x > (UINT64_MAX >> 1) / 10)
      return 0;
    x = x * 10 + (uint64_t)(*p++ - '0');
  }
  if (p == *s)
    return 0;
  *v = x;
  *s = p;
  return 1;
}

int pl_http_range(const char *v, uint64_t len, uint64_t *first, uint64_t *last) {
  if (!v || strncasecmp(v, "bytes=", 6))
    return 0;
  const char *p = v + 6;
  while (*p == ' ')
    p++;
  uint64_t a = 0, b = 0;
  int has_a = pl__digits(&p, &a);
  if (*p++ != '-')
    return 0;
  int has_b = pl__digits(&p, &b);
  while (*p == ' ')
    p++;
  if (*p || (!has_a && !has_b) || (has_a && has_b && b < a))
    return 0;   /* malformed, or a list of ranges: the whole answer (RFC 9110 14.2) */
  if (!has_a) { /* the last b bytes */
    if (b == 0 || len == 0)
      return -1;
    *first = b >= len ? 0 : len - b;
    *last = len - 1;
    return 1;
  }
  if (a >= len)
    return -1;
  *first = a;
  *last = has_b && b < len ? b : len - 1;
  return 1;
}
