/* pl_pushp: the push provider interface (one vtable, an implementation per
 * provider: webhook, FCM HTTP v1, APNs), the way curl's vtls/ backends sit
 * behind one table. A provider turns a notification into an HTTP request
 * and classifies the answer; pl_push does the I/O (libcurl), the retries
 * and the bookkeeping. The classifiers and the FCM credentials parser are
 * pure functions over bytes, exported for the unit test and fuzz_push. */
#ifndef PL_PUSHP_H
#define PL_PUSHP_H

#include <stddef.h>
#include <stdint.h>

#include "../common/pl_err.h"

/* One notification for one device. from and text are NULL in privacy mode
 * (text also when the message is not text). */
typedef struct pl_push_note {
  const char *token, *user; /* the device's token; its user's name */
  uint64_t device;
  uint64_t badge, count; /* the user's unread total; messages this notification stands for */
  const char *conv, *from, *text;
} pl_push_note;

/* An HTTP POST a provider built (strings owned; pl_pushp_req_clear). */
#define PL_PUSHP_MAX_HEADERS 8
typedef struct pl_pushp_req {
  char *url, *body;
  char *headers[PL_PUSHP_MAX_HEADERS]; /* "Name: value" */
  int nheaders;
  int http2; /* ask for HTTP/2 (APNs requires it over TLS) */
} pl_pushp_req;

void pl_pushp_req_clear(pl_pushp_req *r);
void pl_pushp_req_header(pl_pushp_req *r, const char *name, const char *value);

typedef enum pl_push_verdict {
  PL_PUSH_OK,            /* delivered to the provider */
  PL_PUSH_RETRY,         /* try again later (5xx, 429, network, an expired credential) */
  PL_PUSH_INVALID_TOKEN, /* the provider disowns the token: forget it */
  PL_PUSH_FAIL,          /* refused for good: drop this notification */
} pl_push_verdict;

/* What the providers are configured with (borrowed strings; "" = unset). */
typedef struct pl_pushp_config {
  const char *webhook_url;
  const char *fcm_credentials, *fcm_endpoint;
  const char *apns_key, *apns_key_id, *apns_team_id, *apns_topic, *apns_endpoint;
  uint32_t timeout_ms; /* FCM's token request (blocking, on the push thread) */
} pl_pushp_config;

typedef struct pl_pushp {
  const char *name; /* as in PushRegister.provider */
  /* PL_ERR_NOT_FOUND: not configured (the provider is off); another error:
   * configured wrongly (why says how). */
  pl_err (*init)(void **st, const pl_pushp_config *cfg, char *why, size_t whylen);
  void (*free)(void *st);
  /* The request for n. May block (FCM mints its OAuth2 token here): push
   * thread only. An error is retried later. */
  pl_err (*build)(void *st, const pl_push_note *n, uint64_t now_ms, pl_pushp_req *req);
  /* The provider's answer (status 0: no HTTP answer at all). */
  pl_push_verdict (*classify)(void *st, long status, const char *body, size_t len);
} pl_pushp;

extern const pl_pushp pl_pushp_webhook, pl_pushp_fcm, pl_pushp_apns;

/* Pure classifiers of an answer's status and body. */
pl_push_verdict pl_pushp_webhook_verdict(long status);
pl_push_verdict pl_pushp_fcm_verdict(long status, const char *body, size_t len);
pl_push_verdict pl_pushp_apns_verdict(long status, const char *body, size_t len);

/* An FCM service-account JSON file's fields (pl_free each). */
typedef struct pl_fcm_creds {
  char *project_id, *client_email, *private_key, *token_uri;
} pl_fcm_creds;
pl_err pl_pushp_fcm_parse_creds(const char *json, size_t len, pl_fcm_creds *c);
void pl_pushp_fcm_creds_clear(pl_fcm_creds *c);
/* The access token and its lifetime in seconds from a token endpoint's answer. */
pl_err pl_pushp_fcm_parse_token(const char *json, size_t len, char **token, uint64_t *expires_in);

/* A libcurl write callback that keeps the first 64 KiB of an answer in
 * the pl_bytes ud (answers worth reading are short) and drops the rest. */
size_t pl_pushp_collect(char *p, size_t size, size_t n, void *ud);

/* The notification's title and body as shown: "New message" and no body in
 * privacy mode (from NULL). */
const char *pl_pushp_title(const pl_push_note *n);

#endif
