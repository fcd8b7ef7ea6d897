#include "pl_web.h"

#include "pl_assets.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void pl__printf(pl_bytes *b, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n > 0)
    pl_bytes_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void pl__metric(pl_bytes *b, const char *name, const char *type, const char *help, uint64_t v) {
  pl__printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, (unsigned long long)v);
}

static uint64_t pl__rss(void) {
  unsigned long size = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &rss) != 2)
      rss = 0;
    fclose(f);
  }
  return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Prometheus text exposition format 0.0.4. */
static void pl__metrics(const pl_web *w, pl_http_res *res) {
  pl_core_stats cs;
  pl_store_stats ss;
  pl_core_get_stats(w->core, &cs);
  pl_store_get_stats(w->store, &ss);
  pl_bytes *b = &res->body;
  pl__printf(b, "# HELP parley_connections Open client connections (authenticated or not), by transport.\n"
                "# TYPE parley_connections gauge\n");
  pl__printf(b, "parley_connections{transport=\"tcp\"} %llu\n",
             (unsigned long long)(cs.conns_open - cs.conns_ws));
  pl__printf(b, "parley_connections{transport=\"ws\"} %llu\n", (unsigned long long)cs.conns_ws);
  pl__metric(b, "parley_connections_total", "counter", "Client connections opened.", cs.conns_total);
  pl__metric(b, "parley_frames_in_total", "counter", "Frames received from clients.", cs.frames_in);
  pl__metric(b, "parley_sends_total", "counter", "Send requests (messages in).", cs.sends);
  pl__metric(b, "parley_messages_out_total", "counter", "Messages written to devices.", cs.messages_out);
  pl__metric(b, "parley_errors_total", "counter", "Error frames sent to clients.", cs.errors);
  pl__metric(b, "parley_store_commits_total", "counter", "Storage transactions committed.", ss.commits);
  pl__metric(b, "parley_store_requests_total", "counter", "Storage requests run.", ss.requests);
  pl__metric(b, "parley_store_messages_total", "counter", "Messages stored.", ss.messages);
  pl__metric(b, "parley_store_failed_requests_total", "counter", "Storage requests failed with their batch.",
             ss.fails);
  pl__printf(b,
             "# HELP parley_store_commit_seconds_total Time spent committing (fsync included).\n"
             "# TYPE parley_store_commit_seconds_total counter\nparley_store_commit_seconds_total %.6f\n",
             (double)ss.commit_us_total / 1e6);
  pl__metric(b, "parley_memory_rss_bytes", "gauge", "Resident memory of parleyd.", pl__rss());
}

static void pl__text(pl_http_res *res, int status, const char *type, const char *body) {
  res->status = status;
  res->type = type;
  pl_bytes_append(&res->body, body, strlen(body));
}

/* The browser client: revalidated on every load (no-cache + ETag), so a new
 * parleyd never leaves an old client behind in a browser cache. */
static int pl__asset(const char *path, const pl_http_req *req, pl_http_res *res) {
  if (!strcmp(path, "/"))
    path = "/index.html";
  for (const pl_asset *a = pl_assets; a->path; a++) {
    if (strcmp(a->path, path))
      continue;
    static _Thread_local char extra[200];
    snprintf(extra, sizeof extra,
             "ETag: %s\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
             "Content-Security-Policy: default-src 'self'\r\n",
             a->etag);
    res->extra = extra;
    res->type = a->type;
    const char *inm = req->hdr[PL_H_IF_NONE_MATCH];
    if (inm && strstr(inm, a->etag)) {
      res->status = 304;
      return 1;
    }
    res->status = 200;
    res->static_body = a->data;
    res->static_len = a->len;
    return 1;
  }
  return 0;
}

void pl_web_route(void *ud, const pl_http_req *req, pl_http_res *res) {
  const pl_web *w = ud;
  char path[PL_HTTP_MAX_URL + 1];
  size_t n = strcspn(req->url, "?");
  memcpy(path, req->url, n);
  path[n] = '\0';
  int get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
  if (!strcmp(path, "/healthz") && get) {
    pl__text(res, 200, NULL, "ok\n");
  } else if (!strcmp(path, "/metrics") && get) {
    res->status = 200;
    res->type = "text/plain; version=0.0.4; charset=utf-8";
    pl__metrics(w, res);
  } else if (get && pl__asset(path, req, res)) {
    /* filled in */
  } else if (!strcmp(path, "/healthz") || !strcmp(path, "/metrics")) {
    pl__text(res, 405, "application/json", "{\"error\":\"Method Not Allowed\",\"status\":405}\n");
    res->extra = "Allow: GET, HEAD\r\n";
  } else {
    pl__text(res, 404, "application/json", "{\"error\":\"Not Found\",\"status\":404}\n");
  }
}
