/* fuzz_push: what push providers and their credentials send back to us
 * (pl_pushp): the FCM and APNs answer classifiers, the FCM service-account
 * file and token-endpoint answer parsers, and the DER-to-raw ECDSA
 * signature conversion of pl_jwt, and the moderation webhook's answer
 * (pl_hook_parse).
 *
 * Input: byte 0 picks the parser, bytes 1-2 an HTTP status (big endian),
 * the rest is the body. Every verdict is one of the four, a parse either
 * fails or gives every field, and nothing leaks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_mem.h"
#include "push/pl_hook.h"
#include "push/pl_jwt.h"
#include "push/pl_pushp.h"

#define FUZZ_CHECK(cond)                                                           \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "fuzz_push: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

static void verdict_ok(pl_push_verdict v) {
  FUZZ_CHECK(v == PL_PUSH_OK || v == PL_PUSH_RETRY || v == PL_PUSH_INVALID_TOKEN || v == PL_PUSH_FAIL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3)
    return 0;
  long status = (long)data[1] << 8 | data[2];
  const char *body = (const char *)data + 3;
  size_t len = size - 3;
  switch (data[0] % 7) {
  case 0: verdict_ok(pl_pushp_fcm_verdict(status, body, len)); break;
  case 1: verdict_ok(pl_pushp_apns_verdict(status, body, len)); break;
  case 2: verdict_ok(pl_pushp_webhook_verdict(status)); break;
  case 3: {
    pl_fcm_creds c;
    memset(&c, 0, sizeof c);
    if (pl_pushp_fcm_parse_creds(body, len, &c) == PL_OK)
      FUZZ_CHECK(c.project_id && c.client_email && c.private_key && c.token_uri);
    pl_pushp_fcm_creds_clear(&c);
    break;
  }
  case 4: {
    char *token = NULL;
    uint64_t exp = 0;
    if (pl_pushp_fcm_parse_token(body, len, &token, &exp) == PL_OK)
      FUZZ_CHECK(token != NULL);
    pl_free(token);
    break;
  }
  case 5: {
    uint8_t raw[64];
    (void)pl_jwt_der_to_raw(data + 3, len, raw, 32);
    char *b = pl_b64url(data + 3, len);
    FUZZ_CHECK(b && strlen(b) == (len * 4 + 2) / 3);
    pl_free(b);
    break;
  }
  case 6: { /* the moderation webhook's answer (pl_hook): a mask always has its text */
    char *mask = NULL;
    size_t mlen = 0;
    pl_hook_verdict v = pl_hook_parse(status, body, len, &mask, &mlen);
    FUZZ_CHECK(v <= PL_HOOK_ERROR && (v == PL_HOOK_MASK) == (mask != NULL));
    pl_free(mask);
    break;
  }
  }
  FUZZ_CHECK(pl_mem_used() == 0);
  return 0;
}
