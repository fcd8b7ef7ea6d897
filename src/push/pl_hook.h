/* pl_hook: the before-send moderation webhook (docs/operations.md,
 * "Moderation webhook"): parleyd POSTs a message's text, sender and
 * conversation to an outside classifier and does what it answers, beside
 * the word filter. pl_hook_call is blocking (libcurl, with a timeout) and
 * runs on the core's moderation threads, never on a loop; pl_hook_parse,
 * the reading of the answer, is a pure function (fuzz_push). */
#ifndef PL_HOOK_H
#define PL_HOOK_H

#include <stddef.h>
#include <stdint.h>

typedef enum pl_hook_verdict {
  PL_HOOK_ALLOW = 0, /* store the message as sent */
  PL_HOOK_REJECT,    /* refuse it (FILTERED, nothing stored) */
  PL_HOOK_MASK,      /* store the text the hook gave instead */
  PL_HOOK_ERROR,     /* no usable answer (timeout, network, a bad answer): the fail policy decides */
} pl_hook_verdict;

typedef struct pl_hook_config {
  const char *url;     /* http(s)://... */
  const char *token;   /* sent as "Authorization: Bearer <token>" ("" or NULL: none) */
  uint32_t timeout_ms; /* the whole call */
  int fail_closed;     /* on PL_HOOK_ERROR: 1 reject, 0 allow */
} pl_hook_config;

/* What the hook is asked about (strings NUL-terminated; text is len bytes of UTF-8). */
typedef struct pl_hook_msg {
  const char *sender, *device, *conv, *id;
  const uint8_t *text;
  size_t len;
} pl_hook_msg;

/* The answer: status 200 and {"action":"allow"|"reject"|"mask","text":..}
 * ("text" only with mask: the text to store, a string). MASK gives the text
 * in *mask (pl_malloc'ed, *mask_len bytes); anything else is PL_HOOK_ERROR. */
pl_hook_verdict pl_hook_parse(long status, const char *body, size_t len, char **mask, size_t *mask_len);

/* Asks the hook (blocking, at most cfg->timeout_ms). The fail policy is
 * the caller's: this returns PL_HOOK_ERROR when the hook gave no answer. */
pl_hook_verdict pl_hook_call(const pl_hook_config *cfg, const pl_hook_msg *m, char **mask, size_t *mask_len);

const char *pl_hook_verdict_name(pl_hook_verdict v);

#endif
