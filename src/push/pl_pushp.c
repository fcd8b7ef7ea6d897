/* The shared parts of the providers, and the generic webhook provider. */
#include "pl_pushp.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "../common/pl_buf.h"
#include "../common/pl_jsonu64.h"
#include "../common/pl_mem.h"

void pl_pushp_req_clear(pl_pushp_req *r) {
  pl_free(r->url);
  pl_free(r->body);
  for (int i = 0; i < r->nheaders; i++)
    pl_free(r->headers[i]);
  memset(r, 0, sizeof *r);
}

void pl_pushp_req_header(pl_pushp_req *r, const char *name, const char *value) {
  if (r->nheaders == PL_PUSHP_MAX_HEADERS)
    return;
  size_t n = strlen(name) + strlen(value) + 3;
  char *h = pl_malloc(n);
  snprintf(h, n, "%s: %s", name, value);
  r->headers[r->nheaders++] = h;
}

size_t pl_pushp_collect(char *p, size_t size, size_t n, void *ud) {
  pl_bytes *b = ud;
  if (b->len < 64 * 1024)
    pl_bytes_append(b, p, size * n < 64 * 1024 - b->len ? size * n : 64 * 1024 - b->len);
  return size * n;
}

const char *pl_pushp_title(const pl_push_note *n) { return n->from ? n->from : "New message"; }

/* ---- webhook: POST the notification as JSON to one URL ------------------ */

typedef struct pl__webhook {
  char *url;
} pl__webhook;

static pl_err pl__wh_init(void **st, const pl_pushp_config *cfg, char *why, size_t whylen) {
  if (!cfg->webhook_url || !*cfg->webhook_url)
    return PL_ERR_NOT_FOUND;
  if (strncmp(cfg->webhook_url, "http://", 7) != 0 && strncmp(cfg->webhook_url, "https://", 8) != 0) {
    snprintf(why, whylen, "push-webhook: not an http:// or https:// URL");
    return PL_ERR_CONFIG;
  }
  pl__webhook *w = pl_calloc(1, sizeof *w);
  w->url = pl_strdup(cfg->webhook_url);
  *st = w;
  return PL_OK;
}

static void pl__wh_free(void *st) {
  pl__webhook *w = st;
  pl_free(w->url);
  pl_free(w);
}

static pl_err pl__wh_build(void *st, const pl_push_note *n, uint64_t now_ms, pl_pushp_req *req) {
  (void)now_ms;
  json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:I, s:I}", "provider", "webhook", "token", n->token, "user",
                        n->user, "device", pl_json_u64(n->device), "badge", (json_int_t)n->badge, "count",
                        (json_int_t)n->count);
  if (!o)
    return PL_ERR_INVALID_ARGUMENT;
  /* The conversation names its users: privacy mode leaves it out with the sender. */
  if (n->from) {
    json_object_set_new(o, "conv", json_string(n->conv));
    json_object_set_new(o, "from", json_string(n->from));
  }
  if (n->text)
    json_object_set_new(o, "text", json_string(n->text));
  char *body = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  req->url = pl_strdup(((pl__webhook *)st)->url);
  req->body = pl_strdup(body);
  free(body);
  pl_pushp_req_header(req, "Content-Type", "application/json");
  return PL_OK;
}

pl_push_verdict pl_pushp_webhook_verdict(long status) {
  if (status >= 200 && status < 300)
    return PL_PUSH_OK;
  if (status == 404 || status == 410)
    return PL_PUSH_INVALID_TOKEN;
  if (status == 0 || status == 408 || status == 429 || status >= 500)
    return PL_PUSH_RETRY;
  return PL_PUSH_FAIL;
}

static pl_push_verdict pl__wh_classify(void *st, long status, const char *body, size_t len) {
  (void)st;
  (void)body;
  (void)len;
  return pl_pushp_webhook_verdict(status);
}

const pl_pushp pl_pushp_webhook = {
    .name = "webhook",
    .init = pl__wh_init,
    .free = pl__wh_free,
    .build = pl__wh_build,
    .classify = pl__wh_classify,
};
