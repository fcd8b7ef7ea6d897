#include "pl_web.h"

#include "parley.pb-c.h"
#include "pl_assets.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/pl_mem.h"
#include "common/pl_time.h"

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

/* A histogram in Prometheus' form; scale turns the unit into the metric's
 * (1e-6: microseconds into seconds). */
static void pl__hists(pl_bytes *b, const char *name, const char *help, const pl_hist *hs, size_t nh,
                      double scale) {
  pl__printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cum = 0, sum = 0;
  for (size_t k = 0; k < nh; k++)
    sum += atomic_load_explicit(&hs[k].sum, memory_order_relaxed);
  for (size_t i = 0; i <= hs->n; i++) {
    for (size_t k = 0; k < nh; k++)
      cum += atomic_load_explicit(&hs[k].counts[i], memory_order_relaxed);
    if (i < hs->n)
      pl__printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, (double)hs->bounds[i] * scale,
                 (unsigned long long)cum);
  }
  pl__printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %g\n%s_count %llu\n", name, (unsigned long long)cum,
             name, (double)sum * scale, name, (unsigned long long)cum);
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

/* The connection caps and budgets (pl_limits). */
static void pl__limit_metrics(const pl_web *w, pl_bytes *b) {
  pl_limits_stats ls = {0};
  if (w->limits)
    pl_limits_get_stats(w->limits, &ls);
  pl__metric(b, "parley_connections_refused_total", "counter",
             "Connections refused by --max-conns or --max-conns-per-ip.", ls.refused);
  pl__metric(b, "parley_slow_consumers_total", "counter",
             "Connections cut with SLOW_CONSUMER: they did not read what they were sent.", ls.slow_consumers);
  pl__metric(b, "parley_connection_memory_cuts_total", "counter",
             "Connections cut because all connections held --max-conn-memory.", ls.memory_cuts);
  pl__metric(b, "parley_connection_memory_bytes", "gauge",
             "Bytes held in connections' input and output buffers.", ls.memory);
}

/* What the store holds (PL_STORE_STATS), as last counted: NULL before the
 * first count, and the gauges are left out rather than shown as zeros. */
static void pl__store_counts(pl_bytes *b, const pl_store_counts *c) {
  if (!c)
    return;
  pl__metric(b, "parley_store_users", "gauge", "Registered users.", c->users);
  pl__metric(b, "parley_store_devices", "gauge", "Devices signed in (holding a token).", c->devices);
  pl__metric(b, "parley_store_messages", "gauge",
             "One-to-one messages stored, waiting for a device's Ack or the TTL.", c->messages);
  pl__metric(b, "parley_store_message_queue_entries", "gauge",
             "Queue entries of stored one-to-one messages (one per device that has not acked).",
             c->message_queue);
  pl__metric(b, "parley_store_events", "gauge", "Receipts and read syncs stored for offline devices.",
             c->events);
  pl__metric(b, "parley_store_queue_entries", "gauge", "Device queue entries, messages' and events'.",
             c->queue);
  pl__metric(b, "parley_store_group_history", "gauge",
             "Group messages and membership events kept (once per group, not per member).", c->group_history);
  pl__metric(b, "parley_store_groups", "gauge", "Groups.", c->groups);
  pl__metric(b, "parley_store_group_members", "gauge", "Active group memberships.", c->members);
  pl__metric(b, "parley_store_dedup_records", "gauge", "Client message ids kept to answer retries (TTL).",
             c->dedup);
  pl__metric(b, "parley_store_media", "gauge", "Uploads recorded.", c->media);
  pl__metric(b, "parley_store_outbox", "gauge",
             "Copies owed to other shards and not made yet (rises while a shard is away; 0 unsharded).",
             c->outbox);
}

/* s as a Prometheus label value: \\, \" and \n escaped (a device name is any bytes). */
static void pl__label(const char *s, char *out, size_t cap) {
  size_t n = 0;
  for (; *s && n + 3 < cap; s++) {
    if (*s == '\\' || *s == '"' || *s == '\n')
      out[n++] = '\\';
    out[n++] = *s == '\n' ? 'n' : *s;
  }
  out[n] = '\0';
}

/* The sizes and the deepest queues of the last count. */
static void pl__sizes(const pl_web_counted *w, pl_bytes *b) {
  pl__metric(b, "parley_database_bytes", "gauge", "Size of the database (its pages).", w->db_bytes);
  pl__metric(b, "parley_media_bytes", "gauge", "Bytes of the uploads kept (files and thumbnails).",
             w->media_bytes);
  pl__printf(b,
             "# HELP parley_queue_deepest Entries in the deepest device queues (the top %d only).\n"
             "# TYPE parley_queue_deepest gauge\n",
             PL_WEB_DEEPEST);
  for (size_t i = 0; i < w->ndeepest; i++) {
    char dev[140];
    pl__label(w->deepest[i].device, dev, sizeof dev);
    pl__printf(b, "parley_queue_deepest{rank=\"%zu\",user=\"%s\",device=\"%s\"} %llu\n", i + 1,
               w->deepest[i].user, dev, (unsigned long long)w->deepest[i].queued);
  }
}

/* Who is online, failed logins, uptime and version. */
static void pl__server_metrics(const pl_web *w, const pl_core_stats *cs, pl_bytes *b) {
  pl__metric(b, "parley_online_users", "gauge", "Users with at least one signed-in connection.",
             cs->online_users);
  pl__metric(b, "parley_online_devices", "gauge", "Signed-in connections (devices online).",
             cs->online_devices);
  pl__metric(b, "parley_login_failures_total", "counter",
             "Wrong passwords and bad tokens (each logged with the user and address).", cs->login_failures);
  pl__metric(b, "parley_draining", "gauge", "1 while the node is drained for maintenance.",
             (uint64_t)cs->draining);
  pl__metric(b, "parley_moderation_calls_total", "counter", "Sends the moderation webhook was asked about.",
             cs->hook_calls);
  pl__metric(b, "parley_moderation_rejects_total", "counter",
             "Sends refused after the webhook (its reject, or fail-closed).", cs->hook_rejects);
  pl__metric(b, "parley_moderation_masks_total", "counter", "Sends stored with the webhook's masked text.",
             cs->hook_masks);
  pl__metric(b, "parley_moderation_errors_total", "counter",
             "Webhook calls without a usable answer (timeout, network, bad answer): the fail policy decided.",
             cs->hook_errors);
  pl__metric(b, "parley_uptime_seconds", "gauge", "Seconds since parleyd started.",
             (pl_now_ms() - w->started_ms) / 1000);
  pl__printf(b,
             "# HELP parley_build_info parleyd's version.\n# TYPE parley_build_info gauge\n"
             "parley_build_info{version=\"%s\"} 1\n",
             w->version ? w->version : "?");
}

/* A cluster node's bus (docs/operations.md, "Running a cluster"). */
static void pl__bus_metrics(const pl_web *w, pl_bytes *b) {
  if (!w->bus)
    return;
  pl_bus_stats st;
  pl_bus_get_stats(w->bus, &st);
  pl__metric(b, "parley_bus_connected", "gauge", "1 while this node is connected to the cluster's NATS.",
             (uint64_t)st.connected);
  pl__metric(b, "parley_bus_nodes_alive", "gauge", "Other nodes heard on the bus within --bus-dead.",
             st.nodes_alive);
  pl__metric(b, "parley_bus_reconnects_total", "counter", "Times the connection to NATS came back.",
             st.reconnects);
  pl__metric(b, "parley_bus_hints_sent_total", "counter",
             "Hints published: new entries for devices or groups served by other nodes.", st.hints_sent);
  pl__metric(b, "parley_bus_hints_received_total", "counter", "Hints received from other nodes.",
             st.hints_received);
  pl__metric(b, "parley_bus_messages_sent_total", "counter", "Bus messages published.", st.sent);
  pl__metric(b, "parley_bus_messages_received_total", "counter", "Bus messages received from other nodes.",
             st.received);
  pl__metric(b, "parley_bus_send_errors_total", "counter",
             "Bus messages that could not be published (not connected yet, buffer full).", st.send_errors);
  pl__metric(b, "parley_bus_bad_total", "counter", "Bus messages dropped as malformed.", st.bad);
  pl__metric(b, "parley_bus_dead_nodes_total", "counter", "Nodes declared dead (silent for --bus-dead).",
             st.dead_nodes);
}

/* One series per key id with a count (of 256 possible). */
static void pl__per_key(pl_bytes *b, const char *name, const char *help, const uint64_t *v) {
  pl__printf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
  for (unsigned k = 0; k < 256; k++)
    if (v[k])
      pl__printf(b, "%s{key=\"%u\"} %llu\n", name, k, (unsigned long long)v[k]);
}

/* Encryption at rest (docs/operations.md): the current key and the
 * re-encryption passes that move everything onto it. */
static void pl__seal_metrics(const pl_web *w, pl_bytes *b) {
  pl_store_seal_stats ss;
  pl_media_seal_stats ms;
  pl_store_get_seal_stats(w->store, &ss);
  if (!ss.kid)
    return; /* no --key-file */
  pl_media_get_seal_stats(w->media, &ms);
  pl__metric(b, "parley_seal_key_id", "gauge", "The key id new records and uploads are sealed with.", ss.kid);
  pl__metric(b, "parley_seal_store_passes_total", "counter",
             "Finished re-encryption passes over the messages.", ss.passes);
  pl__metric(b, "parley_seal_store_running", "gauge", "1 while a re-encryption pass over the messages runs.",
             (uint64_t)ss.running);
  pl__per_key(b, "parley_seal_store_rows", "Stored messages per key id, as the last finished pass left them.",
              ss.rows);
  pl__metric(b, "parley_seal_media_passes_total", "counter",
             "Finished re-encryption passes over the uploads.", ms.passes);
  pl__metric(b, "parley_seal_media_running", "gauge", "1 while a re-encryption pass over the uploads runs.",
             (uint64_t)ms.running);
  pl__per_key(b, "parley_seal_media_files",
              "Upload and thumbnail files per key id (0: plain), as the last "
              "finished pass left them.",
              ms.files);
}

/* Prometheus text exposition format 0.0.4. */
static void pl__metrics(const pl_web *w, const pl_web_counted *counted, uint64_t counted_at,
                        pl_http_res *res) {
  const pl_store_counts *counts = counted ? &counted->counts : NULL;
  pl_core_stats cs;
  pl_store_stats ss;
  pl_core_get_stats(w->core, &cs);
  pl_store_get_stats(w->store, &ss);
  pl_bytes *b = &res->body;
  pl__printf(b, "# HELP parley_connections Open client connections (authenticated or not), by transport.\n"
                "# TYPE parley_connections gauge\n");
  pl__printf(b, "parley_connections{transport=\"tcp\"} %llu\n",
             (unsigned long long)(cs.conns_open - cs.conns_ws - cs.conns_lp));
  pl__printf(b, "parley_connections{transport=\"ws\"} %llu\n", (unsigned long long)cs.conns_ws);
  pl__printf(b, "parley_connections{transport=\"lp\"} %llu\n", (unsigned long long)cs.conns_lp);
  pl__metric(b, "parley_connections_total", "counter", "Client connections opened.", cs.conns_total);
  pl__limit_metrics(w, b);
  pl__metric(b, "parley_frames_in_total", "counter", "Frames received from clients.", cs.frames_in);
  pl__metric(b, "parley_sends_total", "counter", "Send requests (messages in).", cs.sends);
  pl__metric(b, "parley_messages_out_total", "counter", "Messages written to devices.", cs.messages_out);
  pl__printf(b, "# HELP parley_errors_total Error frames sent to clients, by code.\n"
                "# TYPE parley_errors_total counter\n");
  for (int i = 0; i < PL_CORE_ERROR_CODES; i++) {
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&parley__error_code__descriptor, i);
    if (v && i > 0) /* every code, zeros included, so rates work from the first scrape */
      pl__printf(b, "parley_errors_total{code=\"%s\"} %llu\n", v->name,
                 (unsigned long long)cs.errors_by_code[i]);
  }
  pl__hists(b, "parley_delivery_seconds",
            "Time from a message's commit to its push reaching the recipient connection's loop.", cs.delivery,
            cs.ndelivery, 1e-6);
  pl__metric(b, "parley_store_commits_total", "counter", "Storage transactions committed.", ss.commits);
  pl__metric(b, "parley_store_requests_total", "counter", "Storage requests run.", ss.requests);
  pl__metric(b, "parley_store_messages_total", "counter", "Messages stored.", ss.messages);
  pl__metric(b, "parley_store_failed_requests_total", "counter", "Storage requests failed with their batch.",
             ss.fails);
  pl__metric(b, "parley_store_queue_depth", "gauge", "Storage requests waiting for the store thread.",
             ss.queued);
  pl__metric(b, "parley_store_disk_full", "gauge",
             "1 while the disk is full: the reserve is given back, new messages and uploads are refused.",
             (uint64_t)ss.disk_full);
  pl__metric(b, "parley_store_disk_full_total", "counter",
             "Times the disk filled (a commit failed for space).", ss.disk_full_total);
  pl__metric(
      b, "parley_store_disk_reserve_held", "gauge",
      "1 while the disk reserve is held; 0 while it is given back (the disk filled and has not the room "
      "for it yet).",
      (uint64_t)ss.reserve_held);
  pl__metric(b, "parley_store_write_failing", "gauge", "1 while the last storage transaction failed.",
             (uint64_t)ss.write_failing);
  pl__metric(b, "parley_store_backend_down", "gauge",
             "1 while the server cannot reach its database (PostgreSQL): requests fail with INTERNAL, a "
             "retryable error, and it reconnects with backoff.",
             (uint64_t)ss.backend_down);
  pl__metric(b, "parley_store_round_trips_total", "counter",
             "Statements sent to the database server (PostgreSQL; 0 on SQLite): over "
             "parley_store_commits_total, the round trips per batch.",
             ss.round_trips);
  pl__metric(b, "parley_store_relay_copies_total", "counter",
             "Outbox rows (messages and receipts) carried to another shard (sharded PostgreSQL; else 0).",
             ss.relay_copies);
  pl__metric(b, "parley_store_relay_swept_total", "counter",
             "Of those, rows the once-a-second sweep carried: their node died between commit and copy, "
             "or the shard was away.",
             ss.relay_swept);
  pl__metric(b, "parley_store_conflict_retries_total", "counter",
             "Batches run again because the database aborted them for a conflict with another server "
             "(serialization failure, deadlock, a key taken meanwhile).",
             ss.retries);
  pl__metric(b, "parley_store_conflict_splits_total", "counter",
             "Batches that still conflicted after their re-runs and ran in parts, each in its own "
             "transaction (a part that still conflicts alone fails with a retryable error).",
             ss.splits);
  pl__metric(b, "parley_store_fenced_total", "counter",
             "Batches a shard refused because this node routed by an older bucket map (a move: the "
             "clients retry). Rising outside a move: a move was left half done, run it again.",
             ss.fenced);
  pl__hists(b, "parley_store_commit_seconds", "Time of one commit (fsync included).", ss.commit_hist, 1,
            1e-6);
  pl__hists(b, "parley_store_batch_requests", "Requests per storage transaction (group commit).",
            ss.batch_hist, 1, 1);
  pl__metric(b, "parley_store_counted_at_ms", "gauge",
             "When the parley_store_* gauges were counted: they hold every storage request received before "
             "(ms since the epoch; 0: not yet).",
             counted_at);
  pl__store_counts(b, counts);
  if (counted)
    pl__sizes(counted, b);
  pl__server_metrics(w, &cs, b);
  pl_media_stats ms;
  pl_media_get_stats(w->media, &ms);
  pl__metric(b, "parley_media_uploads_total", "counter", "Uploads stored.", ms.uploads);
  pl__metric(b, "parley_media_upload_bytes_total", "counter", "Bytes of uploads stored (after stripping).",
             ms.upload_bytes);
  pl__metric(b, "parley_media_refused_total", "counter", "Uploads refused (type, damage, size, quota, auth).",
             ms.refused);
  pl__metric(b, "parley_media_downloads_total", "counter", "Media files and thumbnails sent.", ms.downloads);
  pl__metric(b, "parley_media_cache_hits_total", "counter",
             "Media reads served from this node's copy (--media-cache, PostgreSQL store).", ms.cache_hits);
  pl__metric(b, "parley_media_cache_misses_total", "counter",
             "Media reads that went to the database's blob store (--media-cache).", ms.cache_misses);
  pl__metric(b, "parley_media_cache_evictions_total", "counter",
             "Copies dropped to keep the media cache within --media-cache.", ms.cache_evictions);
  pl__metric(b, "parley_media_cache_files", "gauge", "Blobs this node keeps a copy of.", ms.cache_files);
  pl__metric(b, "parley_media_cache_bytes", "gauge", "Bytes of the copies (at most --media-cache).",
             ms.cache_bytes);
  pl__seal_metrics(w, b);
  pl_push_stats ps;
  pl_push_get_stats(w->push, &ps);
  pl__metric(b, "parley_push_sent_total", "counter", "Push notifications a provider accepted.", ps.sent);
  pl__metric(b, "parley_push_retried_total", "counter", "Push notification attempts to be retried.",
             ps.retried);
  pl__metric(b, "parley_push_failed_total", "counter",
             "Push notifications dropped (refused, or out of attempts).", ps.failed);
  pl__metric(b, "parley_push_invalid_tokens_total", "counter",
             "Push tokens forgotten because a provider disowned them.", ps.invalid);
  pl__metric(b, "parley_push_pending", "gauge", "Push notifications waiting (collapse window or retry).",
             ps.pending);
  pl__metric(b, "parley_push_tokens", "gauge", "Devices with a push token.", ps.tokens);
  pl__bus_metrics(w, b);
  pl__metric(b, "parley_memory_rss_bytes", "gauge", "Resident memory of parleyd.", pl__rss());
  pl__metric(b, "parley_memory_heap_bytes", "gauge",
             "Bytes the server's allocations hold (pl_mem: its own and OpenSSL's; not SQLite's).",
             pl_mem_used());
}

static void pl__text(pl_http_res *res, int status, const char *type, const char *body) {
  res->status = status;
  res->type = type;
  pl_bytes_append(&res->body, body, strlen(body));
}

/* 200 "ok" while the store takes writes; 503 with the reason while the disk
 * is full (new messages refused), the database is out of reach
 * (PostgreSQL), or the last transaction failed, so a
 * balancer or orchestrator stops counting on this server until it recovers
 * (docs/operations.md, "Disk full"). */
static void pl__healthz(const pl_web *w, pl_http_res *res) {
  pl_store_stats ss;
  pl_core_stats cs;
  pl_store_get_stats(w->store, &ss);
  pl_core_get_stats(w->core, &cs);
  if (cs.draining) { /* the operator's maintenance (docs/admin.md): balancers move on */
    pl__text(res, 503, NULL, "draining: this node is down for maintenance\n");
    res->extra = "Retry-After: 60\r\n";
    return;
  }
  if (!ss.disk_full && !ss.write_failing && !ss.backend_down) {
    pl__text(res, 200, NULL, "ok\n");
    return;
  }
  res->status = 503;
  res->extra = "Retry-After: 5\r\n";
  if (ss.disk_full)
    pl__printf(&res->body,
               "disk full: new messages are refused until %llu bytes are free on the disk or inside the "
               "database (%llu and %llu now); acks and logins work\n",
               (unsigned long long)ss.disk_needed, (unsigned long long)ss.disk_avail,
               (unsigned long long)ss.db_free);
  else if (ss.backend_down)
    pl__printf(&res->body, "database unreachable: reconnecting; requests fail with a retryable error\n");
  else
    pl__printf(&res->body, "storage writes failing: %s\n", pl_err_name(ss.write_err));
}

/* With --metrics-token, /metrics wants "Authorization: Bearer <token>".
 * The comparison is over hashes in constant time, so neither the token's
 * bytes nor its length show in the answer's timing. */
static int pl__metrics_allowed(const pl_web *w, const pl_http_req *req) {
  if (!w->metrics_token || !*w->metrics_token)
    return 1;
  const char *a = pl_http_bearer(req);
  if (!a)
    return 0;
  uint8_t want[32], got[32];
  crypto_generichash(want, sizeof want, (const uint8_t *)w->metrics_token, strlen(w->metrics_token), NULL, 0);
  crypto_generichash(got, sizeof got, (const uint8_t *)a, strlen(a), NULL, 0);
  return sodium_memcmp(want, got, sizeof want) == 0;
}

/* The store's counts (PL_STORE_STATS) come from the store thread. A scrape
 * does not wait for them: waiting would add a loop pass to every answer
 * (a long one while the loop is flooded) and hang /metrics while the store
 * is stuck, when an operator needs it most. It shows the last count and
 * asks for a new one (one at a time), so the gauges are one scrape old;
 * parley_store_counted_at_ms says from when. */
static void pl__counted(pl_store_req *req) {
  pl_web *w = req->data;
  const pl_store_admin_req *a = &req->u.admin;
  pthread_mutex_lock(&w->counts_mu);
  if (req->status == PL_OK) {
    pl_web_counted *c = &w->counted;
    c->counts = a->out.counts;
    c->db_bytes = a->out.db_bytes;
    c->media_bytes = a->out.media_bytes;
    c->ndeepest = a->out.ndevices < PL_WEB_DEEPEST ? a->out.ndevices : PL_WEB_DEEPEST;
    for (size_t i = 0; i < c->ndeepest; i++) {
      snprintf(c->deepest[i].user, sizeof c->deepest[i].user, "%s", a->out.devices[i].user);
      snprintf(c->deepest[i].device, sizeof c->deepest[i].device, "%s", a->out.devices[i].name);
      c->deepest[i].queued = a->out.devices[i].queued;
    }
    w->counts_at_ms = w->asked_at_ms;
  }
  pl_store_req_clear(req); /* before counting drops: the next scrape reuses req */
  w->counting = 0;
  pthread_mutex_unlock(&w->counts_mu);
}

static void pl__metrics_answer(pl_web *w, const pl_http_req *req, pl_http_res *res) {
  if (!pl__metrics_allowed(w, req)) {
    pl__text(res, 401, "application/json", "{\"error\":\"Unauthorized\",\"status\":401}\n");
    res->extra = "WWW-Authenticate: Bearer realm=\"metrics\"\r\n";
    return;
  }
  pthread_mutex_lock(&w->counts_mu);
  pl_web_counted counted = w->counted;
  uint64_t at = w->counts_at_ms;
  int ask = !w->counting;
  if (ask) {
    w->counting = 1;
    w->asked_at_ms = pl_now_ms();
  }
  pthread_mutex_unlock(&w->counts_mu);
  res->status = 200;
  res->type = "text/plain; version=0.0.4; charset=utf-8";
  pl__metrics(w, at ? &counted : NULL, at, res);
  /* after the answer is made: the next count must not show in this one's
   * parley_store_queue_depth */
  if (ask) {
    memset(&w->counts_req, 0, sizeof w->counts_req);
    w->counts_req.op = PL_STORE_ADMIN; /* the counts, the deepest queues and the sizes */
    w->counts_req.u.admin.in.action = PL_ADMIN_STATS;
    w->counts_req.u.admin.in.limit = PL_WEB_DEEPEST;
    w->counts_req.done = pl__counted; /* on the store thread: origin NULL */
    w->counts_req.data = w;
    pl_store_submit(w->store, &w->counts_req);
  }
}

void pl_web_init(pl_web *w) { pthread_mutex_init(&w->counts_mu, NULL); }

/* After the store stopped: no count is under way any more. */
void pl_web_close(pl_web *w) { pthread_mutex_destroy(&w->counts_mu); }

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
             "Content-Security-Policy: default-src 'self'; img-src 'self' blob:\r\n",
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

pl_http_sink *pl_web_open(void *ud, const pl_http_req *req, pl_http_ex *x, uint64_t *limit, int *status) {
  const pl_web *w = ud;
  return pl_media_upload(w->media, req, x, limit, status);
}

void pl_web_route(void *ud, const pl_http_req *req, pl_http_res *res, pl_http_ex *x) {
  const pl_web *w = ud;
  char path[PL_HTTP_MAX_URL + 1];
  size_t n = strcspn(req->url, "?");
  memcpy(path, req->url, n);
  path[n] = '\0';
  int get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
  if (!strncmp(path, "/lp", 3) && (path[3] == '\0' || path[3] == '/')) {
    pl_lp_route(&w->lp, req, path, res, x);
  } else if ((!strcmp(path, "/api/register") || !strcmp(path, "/api/login")) &&
             !strcmp(req->method, "POST")) {
    pl_lp_auth(&w->lp, req, !strcmp(path, "/api/register"), res, x);
  } else if (w->admin && pl_admin_route(w->admin, req, path, res, x)) {
    /* answered, or held */
  } else if (pl_media_route(w->media, req, path, res, x)) {
    /* answered, or held */
  } else if (!strcmp(path, "/healthz") && get) {
    pl__healthz(w, res);
  } else if (!strcmp(path, "/metrics") && get) {
    pl__metrics_answer(ud, req, res);
  } else if (get && pl__asset(path, req, res)) {
    /* filled in */
  } else if (!strcmp(path, "/healthz") || !strcmp(path, "/metrics")) {
    pl__text(res, 405, "application/json", "{\"error\":\"Method Not Allowed\",\"status\":405}\n");
    res->extra = "Allow: GET, HEAD\r\n";
  } else {
    pl__text(res, 404, "application/json", "{\"error\":\"Not Found\",\"status\":404}\n");
  }
}
