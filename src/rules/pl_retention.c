#include "pl_retention.h"

uint64_t pl_retention_media_expires(uint64_t media_ttl_ms, uint64_t now) {
  /* unlike messages, 0 is not "never": a media TTL of 0 (only with a message
   * TTL of 0 too, which parleyd's options refuse) expires an upload at once */
  if (now >= PL_RETENTION_NEVER || media_ttl_ms >= PL_RETENTION_NEVER - now)
    return PL_RETENTION_NEVER;
  return now + media_ttl_ms;
}

pl_retention_tokens pl_retention_token_cuts(uint64_t idle_ms, uint64_t max_ms, uint64_t now) {
  pl_retention_tokens c;
  c.used_after = idle_ms && now > idle_ms ? now - idle_ms : 0;
  c.issued_after = max_ms && now > max_ms ? now - max_ms : 0;
  return c;
}
