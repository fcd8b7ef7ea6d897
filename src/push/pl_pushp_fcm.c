/* FCM HTTP v1: a service account's RS256-signed JWT buys an OAuth2 access
 * token (cached until a minute before it expires), which authorizes
 * POST {endpoint}/v1/projects/PROJECT/messages:send. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "../common/pl_buf.h"
#include "../common/pl_fs.h"
#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "pl_jwt.h"
#include "pl_pushp.h"

#define PL__FCM_ENDPOINT "https://fcm.googleapis.com"
#define PL__FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"

typedef struct pl__fcm {
  pl_fcm_creds creds;
  pl_jwt_key *key;
  char *endpoint;
  char *access; /* the cached access token, or NULL */
  uint64_t access_until_ms;
  uint32_t timeout_ms;
} pl__fcm;

static char *pl__jstr(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s && *s ? pl_strdup(s) : NULL;
}

void pl_pushp_fcm_creds_clear(pl_fcm_creds *c) {
  pl_free(c->project_id);
  pl_free(c->client_email);
  pl_free(c->private_key);
  pl_free(c->token_uri);
  memset(c, 0, sizeof *c);
}

pl_err pl_pushp_fcm_parse_creds(const char *json, size_t len, pl_fcm_creds *c) {
  memset(c, 0, sizeof *c);
  json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
  if (json_is_object(o)) {
    c->project_id = pl__jstr(o, "project_id");
    c->client_email = pl__jstr(o, "client_email");
    c->private_key = pl__jstr(o, "private_key");
    c->token_uri = pl__jstr(o, "token_uri");
  }
  json_decref(o);
  if (c->project_id && c->client_email && c->private_key && c->token_uri)
    return PL_OK;
  pl_pushp_fcm_creds_clear(c);
  return PL_ERR_INVALID_ARGUMENT;
}

pl_err pl_pushp_fcm_parse_token(const char *json, size_t len, char **token, uint64_t *expires_in) {
  json_t *o = json_loadb(json, len, 0, NULL);
  json_t *e = json_object_get(o, "expires_in");
  *token = json_is_object(o) ? pl__jstr(o, "access_token") : NULL;
  *expires_in = json_is_integer(e) && json_integer_value(e) > 0 ? (uint64_t)json_integer_value(e) : 3600;
  json_decref(o);
  return *token ? PL_OK : PL_ERR_INVALID_ARGUMENT;
}

static pl_err pl__fcm_init(void **st, const pl_pushp_config *cfg, char *why, size_t whylen) {
  if (!cfg->fcm_credentials || !*cfg->fcm_credentials)
    return PL_ERR_NOT_FOUND;
  size_t len;
  char *text = pl_read_file(cfg->fcm_credentials, 1 << 20, &len);
  pl__fcm *f = pl_calloc(1, sizeof *f);
  pl_err e = PL_ERR_CONFIG;
  if (!text) {
    snprintf(why, whylen, "fcm-credentials %s: cannot read it", cfg->fcm_credentials);
    goto out;
  }
  if (pl_pushp_fcm_parse_creds(text, len, &f->creds) != PL_OK) {
    snprintf(why, whylen, "fcm-credentials %s: want project_id, client_email, private_key, token_uri",
             cfg->fcm_credentials);
    goto out;
  }
  if (!(f->key = pl_jwt_key_from_pem(f->creds.private_key, strlen(f->creds.private_key)))) {
    snprintf(why, whylen, "fcm-credentials %s: private_key is not a PEM private key", cfg->fcm_credentials);
    goto out;
  }
  f->endpoint = pl_strdup(cfg->fcm_endpoint && *cfg->fcm_endpoint ? cfg->fcm_endpoint : PL__FCM_ENDPOINT);
  f->timeout_ms = cfg->timeout_ms;
  *st = f;
  f = NULL;
  e = PL_OK;
out:
  pl_free(text);
  if (f) {
    pl_pushp_fcm_creds_clear(&f->creds);
    pl_jwt_key_free(f->key);
    pl_free(f);
  }
  return e;
}

static void pl__fcm_free(void *st) {
  pl__fcm *f = st;
  pl_pushp_fcm_creds_clear(&f->creds);
  pl_jwt_key_free(f->key);
  pl_free(f->endpoint);
  pl_free(f->access);
  pl_free(f);
}

/* The JWT grant assertion (RFC 7523) for the service account. */
static char *pl__fcm_assertion(pl__fcm *f, uint64_t now_s) {
  json_t *c =
      json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", f->creds.client_email, "scope", PL__FCM_SCOPE, "aud",
                f->creds.token_uri, "iat", (json_int_t)now_s, "exp", (json_int_t)(now_s + 3600));
  char *claims = json_dumps(c, JSON_COMPACT), *jwt = NULL;
  json_decref(c);
  if (claims && pl_jwt_sign(f->key, "RS256", "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims, &jwt) != PL_OK)
    jwt = NULL;
  free(claims);
  return jwt;
}

/* Mints an access token (blocking; the push thread only). */
static pl_err pl__fcm_token(pl__fcm *f, uint64_t now_ms) {
  if (f->access && now_ms + 60000 < f->access_until_ms)
    return PL_OK;
  char *jwt = pl__fcm_assertion(f, now_ms / 1000);
  CURL *h = curl_easy_init();
  pl_bytes ans = {0};
  pl_err e = PL_ERR_IO;
  if (!jwt || !h)
    goto out;
  char *esc = curl_easy_escape(h, jwt, 0);
  size_t n = strlen(esc) + 80;
  char *form = pl_malloc(n);
  snprintf(form, n, "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer&assertion=%s",
           esc);
  curl_free(esc);
  curl_easy_setopt(h, CURLOPT_URL, f->creds.token_uri);
  curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, form);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)f->timeout_ms);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, pl_pushp_collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &ans);
  pl_free(form);
  long status = 0;
  CURLcode rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  char *tok;
  uint64_t ttl;
  if (rc != CURLE_OK || status != 200 ||
      pl_pushp_fcm_parse_token((char *)ans.p, ans.len, &tok, &ttl) != PL_OK) {
    pl_warn("push fcm: no access token from %s (%s, HTTP %ld)", f->creds.token_uri, curl_easy_strerror(rc),
            status);
    goto out;
  }
  pl_free(f->access);
  f->access = tok;
  f->access_until_ms = now_ms + ttl * 1000;
  e = PL_OK;
out:
  pl_bytes_free(&ans);
  curl_easy_cleanup(h);
  pl_free(jwt);
  return e;
}

static json_t *pl__fcm_message(const pl_push_note *n) {
  char badge[24], count[24];
  snprintf(badge, sizeof badge, "%llu", (unsigned long long)n->badge);
  snprintf(count, sizeof count, "%llu", (unsigned long long)n->count);
  json_t *notif = json_pack("{s:s}", "title", pl_pushp_title(n));
  if (n->text)
    json_object_set_new(notif, "body", json_string(n->text));
  json_t *data = json_pack("{s:s, s:s}", "badge", badge, "count", count);
  if (n->from)
    json_object_set_new(data, "conv", json_string(n->conv));
  return json_pack("{s:{s:s, s:o, s:{s:s, s:{s:I}}, s:{s:{s:s}, s:{s:{s:I}}}, s:o}}", "message", "token",
                   n->token, "notification", notif, "android", "collapse_key", "parley", "notification",
                   "notification_count", (json_int_t)n->badge, "apns", "headers", "apns-collapse-id",
                   "parley", "payload", "aps", "badge", (json_int_t)n->badge, "data", data);
}

static pl_err pl__fcm_build(void *st, const pl_push_note *n, uint64_t now_ms, pl_pushp_req *req) {
  pl__fcm *f = st;
  pl_err e = pl__fcm_token(f, now_ms);
  if (e != PL_OK)
    return e;
  json_t *m = pl__fcm_message(n);
  char *body = m ? json_dumps(m, JSON_COMPACT) : NULL;
  json_decref(m);
  if (!body)
    return PL_ERR_INVALID_ARGUMENT;
  size_t len = strlen(f->endpoint) + strlen(f->creds.project_id) + 40;
  req->url = pl_malloc(len);
  snprintf(req->url, len, "%s/v1/projects/%s/messages:send", f->endpoint, f->creds.project_id);
  req->body = pl_strdup(body);
  free(body);
  size_t alen = strlen(f->access) + 8;
  char *auth = pl_malloc(alen);
  snprintf(auth, alen, "Bearer %s", f->access);
  pl_pushp_req_header(req, "Authorization", auth);
  pl_pushp_req_header(req, "Content-Type", "application/json");
  pl_free(auth);
  return PL_OK;
}

/* Does an FCM error body blame the token? details[] carries errorCode
 * UNREGISTERED, or a BadRequest whose fieldViolations name message.token. */
static int pl__fcm_token_blamed(const char *body, size_t len) {
  json_t *o = json_loadb(body, len, 0, NULL);
  json_t *details = json_object_get(json_object_get(o, "error"), "details");
  int blamed = 0;
  for (size_t i = 0; json_is_array(details) && i < json_array_size(details) && !blamed; i++) {
    json_t *d = json_array_get(details, i);
    const char *code = json_string_value(json_object_get(d, "errorCode"));
    blamed = code && !strcmp(code, "UNREGISTERED");
    json_t *fv = json_object_get(d, "fieldViolations");
    for (size_t j = 0; json_is_array(fv) && j < json_array_size(fv) && !blamed; j++) {
      const char *field = json_string_value(json_object_get(json_array_get(fv, j), "field"));
      blamed = field && !strcmp(field, "message.token");
    }
  }
  json_decref(o);
  return blamed;
}

pl_push_verdict pl_pushp_fcm_verdict(long status, const char *body, size_t len) {
  if (status == 200)
    return PL_PUSH_OK;
  if (status == 404)
    return PL_PUSH_INVALID_TOKEN; /* UNREGISTERED */
  if (status == 400 && body && pl__fcm_token_blamed(body, len))
    return PL_PUSH_INVALID_TOKEN;
  if (status == 0 || status == 401 || status == 429 || status >= 500)
    return PL_PUSH_RETRY; /* 401: our access token; a new one is minted */
  return PL_PUSH_FAIL;
}

static pl_push_verdict pl__fcm_classify(void *st, long status, const char *body, size_t len) {
  pl__fcm *f = st;
  if (status == 401) { /* revoked or expired early: mint a new one */
    pl_free(f->access);
    f->access = NULL;
  }
  return pl_pushp_fcm_verdict(status, body, len);
}

const pl_pushp pl_pushp_fcm = {
    .name = "fcm",
    .init = pl__fcm_init,
    .free = pl__fcm_free,
    .build = pl__fcm_build,
    .classify = pl__fcm_classify,
};
