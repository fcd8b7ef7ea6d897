#include "pl_hook.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "../common/pl_buf.h"
#include "../common/pl_mem.h"

const char *pl_hook_verdict_name(pl_hook_verdict v) {
  static const char *const names[] = {"allow", "reject", "mask", "error"};
  return v <= PL_HOOK_ERROR ? names[v] : "?";
}

pl_hook_verdict pl_hook_parse(long status, const char *body, size_t len, char **mask, size_t *mask_len) {
  pl_hook_verdict v = PL_HOOK_ERROR;
  *mask = NULL;
  *mask_len = 0;
  if (status != 200 || !body)
    return v;
  json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
  json_t *a = json_object_get(j, "action"), *t = json_object_get(j, "text");
  const char *s = json_is_string(a) ? json_string_value(a) : "";
  if (!strcmp(s, "allow"))
    v = PL_HOOK_ALLOW;
  else if (!strcmp(s, "reject"))
    v = PL_HOOK_REJECT;
  else if (!strcmp(s, "mask") && json_is_string(t)) {
    *mask_len = json_string_length(t);
    *mask = pl_malloc(*mask_len + 1);
    memcpy(*mask, json_string_value(t), *mask_len + 1);
    v = PL_HOOK_MASK;
  }
  json_decref(j);
  return v;
}

static size_t pl__gather(char *p, size_t size, size_t n, void *ud) {
  pl_bytes *b = ud;
  if (b->len + size * n > 65536) /* an answer is a verdict, not a novel */
    return 0;
  pl_bytes_append(b, p, size * n);
  return size * n;
}

pl_hook_verdict pl_hook_call(const pl_hook_config *cfg, const pl_hook_msg *m, char **mask, size_t *mask_len) {
  *mask = NULL;
  *mask_len = 0;
  json_t *text = json_stringn((const char *)m->text, m->len);
  if (!text) /* not UTF-8: nothing a text classifier can read */
    return PL_HOOK_ERROR;
  json_t *q = json_pack("{s:s,s:s,s:s,s:s,s:o}", "sender", m->sender, "device", m->device, "conversation",
                        m->conv, "id", m->id, "text", text);
  char *body = json_dumps(q, JSON_COMPACT);
  json_decref(q);
  char auth[600];
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
  if (cfg->token && *cfg->token) {
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", cfg->token);
    h = curl_slist_append(h, auth);
  }
  pl_bytes answer = {0};
  long status = 0;
  CURL *c = curl_easy_init();
  if (c && body) {
    curl_easy_setopt(c, CURLOPT_URL, cfg->url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)cfg->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* a worker thread: no SIGALRM for DNS timeouts */
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, pl__gather);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
    if (curl_easy_perform(c) == CURLE_OK)
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  }
  pl_hook_verdict v = pl_hook_parse(status, (const char *)answer.p, answer.len, mask, mask_len);
  curl_easy_cleanup(c);
  curl_slist_free_all(h);
  free(body);
  pl_bytes_free(&answer);
  return v;
}
