/* APNs with token-based auth: an ES256 JWT (kid = key id, iss = team id)
 * signed with the .p8 key, reused for 50 minutes (Apple refuses tokens
 * older than an hour and throttles new ones made more often than every 20
 * minutes); POST {endpoint}/3/device/TOKEN over HTTP/2. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "../common/pl_fs.h"
#include "../common/pl_mem.h"
#include "pl_jwt.h"
#include "pl_pushp.h"

#define PL__APNS_ENDPOINT "https://api.push.apple.com"
#define PL__APNS_JWT_MS (50u * 60u * 1000u)

typedef struct pl__apns {
  pl_jwt_key *key;
  char *key_id, *team_id, *topic, *endpoint;
  char *jwt; /* the provider token in use, or NULL */
  uint64_t jwt_at_ms;
} pl__apns;

static void pl__apns_free(void *st) {
  pl__apns *a = st;
  pl_jwt_key_free(a->key);
  pl_free(a->key_id);
  pl_free(a->team_id);
  pl_free(a->topic);
  pl_free(a->endpoint);
  pl_free(a->jwt);
  pl_free(a);
}

static int pl__set(const char *s) { return s && *s; }

static pl_err pl__apns_init(void **st, const pl_pushp_config *cfg, char *why, size_t whylen) {
  if (!pl__set(cfg->apns_key))
    return PL_ERR_NOT_FOUND;
  if (!pl__set(cfg->apns_key_id) || !pl__set(cfg->apns_team_id) || !pl__set(cfg->apns_topic)) {
    snprintf(why, whylen, "apns-key needs apns-key-id, apns-team-id and apns-topic");
    return PL_ERR_CONFIG;
  }
  size_t len;
  char *pem = pl_read_file(cfg->apns_key, 64 * 1024, &len);
  pl_jwt_key *k = pem ? pl_jwt_key_from_pem(pem, len) : NULL;
  pl_free(pem);
  char *probe = NULL; /* an EC P-256 key, or it would fail at the first push */
  if (!k || pl_jwt_sign(k, "ES256", "{}", "{}", &probe) != PL_OK) {
    snprintf(why, whylen, "apns-key %s: not an EC P-256 private key (PEM .p8)", cfg->apns_key);
    pl_jwt_key_free(k);
    return PL_ERR_CONFIG;
  }
  pl_free(probe);
  pl__apns *a = pl_calloc(1, sizeof *a);
  a->key = k;
  a->key_id = pl_strdup(cfg->apns_key_id);
  a->team_id = pl_strdup(cfg->apns_team_id);
  a->topic = pl_strdup(cfg->apns_topic);
  a->endpoint = pl_strdup(pl__set(cfg->apns_endpoint) ? cfg->apns_endpoint : PL__APNS_ENDPOINT);
  *st = a;
  return PL_OK;
}

static pl_err pl__apns_jwt(pl__apns *a, uint64_t now_ms) {
  if (a->jwt && now_ms - a->jwt_at_ms < PL__APNS_JWT_MS)
    return PL_OK;
  json_t *h = json_pack("{s:s, s:s}", "alg", "ES256", "kid", a->key_id);
  json_t *c = json_pack("{s:s, s:I}", "iss", a->team_id, "iat", (json_int_t)(now_ms / 1000));
  char *hs = json_dumps(h, JSON_COMPACT), *cs = json_dumps(c, JSON_COMPACT), *jwt = NULL;
  json_decref(h);
  json_decref(c);
  pl_err e = hs && cs ? pl_jwt_sign(a->key, "ES256", hs, cs, &jwt) : PL_ERR_INVALID_ARGUMENT;
  free(hs);
  free(cs);
  if (e == PL_OK) {
    pl_free(a->jwt);
    a->jwt = jwt;
    a->jwt_at_ms = now_ms;
  }
  return e;
}

static pl_err pl__apns_build(void *st, const pl_push_note *n, uint64_t now_ms, pl_pushp_req *req) {
  pl__apns *a = st;
  pl_err e = pl__apns_jwt(a, now_ms);
  if (e != PL_OK)
    return e;
  json_t *alert = json_pack("{s:s}", "title", pl_pushp_title(n));
  if (n->text)
    json_object_set_new(alert, "body", json_string(n->text));
  json_t *o = json_pack("{s:{s:o, s:I, s:s}}", "aps", "alert", alert, "badge", (json_int_t)n->badge, "sound",
                        "default");
  char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!body)
    return PL_ERR_INVALID_ARGUMENT;
  size_t len = strlen(a->endpoint) + strlen(n->token) + 16;
  req->url = pl_malloc(len);
  snprintf(req->url, len, "%s/3/device/%s", a->endpoint, n->token);
  req->body = pl_strdup(body);
  free(body);
  size_t alen = strlen(a->jwt) + 8;
  char *auth = pl_malloc(alen);
  snprintf(auth, alen, "bearer %s", a->jwt);
  pl_pushp_req_header(req, "authorization", auth);
  pl_free(auth);
  pl_pushp_req_header(req, "apns-topic", a->topic);
  pl_pushp_req_header(req, "apns-push-type", "alert");
  pl_pushp_req_header(req, "apns-collapse-id", "parley");
  pl_pushp_req_header(req, "apns-priority", "10");
  pl_pushp_req_header(req, "Content-Type", "application/json");
  req->http2 = 1;
  return PL_OK;
}

/* The "reason" of an APNs error body, or "" (reason is borrowed into buf). */
static const char *pl__apns_reason(const char *body, size_t len, char *buf, size_t n) {
  json_t *o = body ? json_loadb(body, len, 0, NULL) : NULL;
  const char *r = json_string_value(json_object_get(o, "reason"));
  snprintf(buf, n, "%s", r ? r : "");
  json_decref(o);
  return buf;
}

pl_push_verdict pl_pushp_apns_verdict(long status, const char *body, size_t len) {
  char reason[64];
  if (status == 200)
    return PL_PUSH_OK;
  if (status == 410)
    return PL_PUSH_INVALID_TOKEN; /* Unregistered */
  pl__apns_reason(body, len, reason, sizeof reason);
  if (status == 400 && (!strcmp(reason, "BadDeviceToken") || !strcmp(reason, "DeviceTokenNotForTopic") ||
                        !strcmp(reason, "Unregistered")))
    return PL_PUSH_INVALID_TOKEN;
  if (status == 0 || status == 429 || status >= 500 ||
      (status == 403 && !strcmp(reason, "ExpiredProviderToken")))
    return PL_PUSH_RETRY;
  return PL_PUSH_FAIL;
}

static pl_push_verdict pl__apns_classify(void *st, long status, const char *body, size_t len) {
  pl__apns *a = st;
  pl_push_verdict v = pl_pushp_apns_verdict(status, body, len);
  if (status == 403) { /* make a new provider token for the next attempt */
    pl_free(a->jwt);
    a->jwt = NULL;
  }
  return v;
}

const pl_pushp pl_pushp_apns = {
    .name = "apns",
    .init = pl__apns_init,
    .free = pl__apns_free,
    .build = pl__apns_build,
    .classify = pl__apns_classify,
};
