#include "cli_http.h"

#include <errno.h>

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cli__buf {
  char *p;
  size_t n;
} cli__buf;

static size_t cli__collect(char *p, size_t sz, size_t nm, void *ud) {
  cli__buf *b = ud;
  size_t n = sz * nm;
  if (b->n + n > (1u << 20))
    return 0; /* an answer this long is not ours */
  char *q = realloc(b->p, b->n + n + 1);
  if (!q)
    return 0;
  memcpy(q + b->n, p, n);
  b->p = q;
  b->n += n;
  b->p[b->n] = '\0';
  return n;
}

/* The "error" of a JSON error answer, or the status line's meaning. */
static void cli__why(long status, const cli__buf *b, char *why, size_t whylen) {
  json_t *j = b->p ? json_loads(b->p, 0, NULL) : NULL;
  const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;
  snprintf(why, whylen, "HTTP %ld%s%s", status, e ? ": " : "", e ? e : "");
  json_decref(j);
}

static CURL *cli__easy(const char *url, const char *token, struct curl_slist **h) {
  CURL *c = curl_easy_init();
  if (!c)
    return NULL;
  char auth[160];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  *h = curl_slist_append(NULL, auth);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, *h);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  return c;
}

/* Runs c; the HTTP status, or -1 with why filled (no answer). */
static long cli__perform(CURL *c, char *why, size_t whylen) {
  CURLcode rc = curl_easy_perform(c);
  long status = -1;
  if (rc != CURLE_OK)
    snprintf(why, whylen, "%s", curl_easy_strerror(rc));
  else
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

int cli_http_upload(const char *base, const char *token, const char *file, char id[33], char **json,
                    char *why, size_t whylen) {
  FILE *f = fopen(file, "rb");
  if (!f) {
    snprintf(why, whylen, "cannot open %s: %s", file, strerror(errno));
    return CLI_HTTP_LOCAL;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  rewind(f);
  const char *slash = strrchr(file, '/');
  const char *name = slash ? slash + 1 : file;
  char url[2048];
  CURL *c0 = curl_easy_init();
  char *ename = c0 ? curl_easy_escape(c0, name, 0) : NULL;
  snprintf(url, sizeof url, "%s/media?name=%s", base, ename ? ename : "");
  curl_free(ename);
  if (c0)
    curl_easy_cleanup(c0);
  struct curl_slist *h = NULL;
  cli__buf b = {0};
  CURL *c = cli__easy(url, token, &h);
  long status = -1;
  if (c) {
    h = curl_slist_append(h, "Content-Type: application/octet-stream");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_READDATA, f); /* streamed from the file */
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, cli__collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    status = cli__perform(c, why, whylen);
    curl_easy_cleanup(c);
  }
  curl_slist_free_all(h);
  fclose(f);
  int rc = status == 201 ? 0 : (int)status;
  if (rc == 0) {
    json_t *j = json_loads(b.p ? b.p : "", 0, NULL);
    const char *v = j ? json_string_value(json_object_get(j, "id")) : NULL;
    if (v && strlen(v) == 32) {
      memcpy(id, v, 33);
      *json = b.p;
      b.p = NULL;
    } else {
      snprintf(why, whylen, "the server's answer has no media id");
      rc = -1;
    }
    json_decref(j);
  } else if (status > 0) {
    cli__why(status, &b, why, whylen);
  }
  free(b.p);
  return rc;
}

int cli_http_fetch(const char *base, const char *token, const char *id, int thumb, const char *out, char *why,
                   size_t whylen) {
  char url[2048], tmp[4096];
  snprintf(url, sizeof url, "%s/media/%s%s", base, id, thumb ? "/thumb" : "");
  snprintf(tmp, sizeof tmp, "%s.part", out);
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    snprintf(why, whylen, "cannot write %s: %s", tmp, strerror(errno));
    return CLI_HTTP_LOCAL;
  }
  struct curl_slist *h = NULL;
  CURL *c = cli__easy(url, token, &h);
  long status = -1;
  cli__buf err = {0};
  if (c) {
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    status = cli__perform(c, why, whylen);
    curl_easy_cleanup(c);
  }
  curl_slist_free_all(h);
  int bad = fclose(f) != 0;
  if (status == 200 && !bad && rename(tmp, out) == 0)
    return 0;
  if (status > 0) { /* the error answer went to the file: read it back for the reason */
    FILE *e = fopen(tmp, "rb");
    char body[512] = "";
    size_t n = e ? fread(body, 1, sizeof body - 1, e) : 0;
    if (e)
      fclose(e);
    body[n] = '\0';
    err.p = body;
    cli__why(status, &err, why, whylen);
  }
  remove(tmp);
  return status == 200 ? -1 : (int)status;
}
