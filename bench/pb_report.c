#include "pb_report.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

static const char *const pb__headline[][3] = {
    {"delivered_per_s", "delivered", "msg/s"},
    {"lat_p50_us", "latency p50", "us"},
    {"lat_p99_us", "latency p99", "us"},
    {"lat_p999_us", "latency p99.9", "us"},
    {"lost", "lost (acked, never received)", ""},
    {"duplicated", "duplicated (received twice+)", ""},
    {"server_cpu_us_per_msg", "server CPU per message", "us"},
    {"server_rss_per_conn_bytes", "server RSS per connection", "bytes"},
};

void pb_report_init(pb_report *r, const char *scenario) {
  memset(r, 0, sizeof *r);
  r->scenario = scenario;
  for (size_t i = 0; i < sizeof pb__headline / sizeof pb__headline[0]; i++)
    pb_report_null(r, pb__headline[i][0], pb__headline[i][1], pb__headline[i][2]);
}

static pb_figure *pb__slot(pb_report *r, const char *key) {
  for (int i = 0; i < r->n; i++)
    if (!strcmp(r->f[i].key, key))
      return &r->f[i];
  if (r->n == PB_REPORT_MAX)
    return NULL;
  pb_figure *f = &r->f[r->n++];
  f->key = key;
  return f;
}

static void pb__set(pb_report *r, const char *key, const char *label, const char *unit, double v, int null,
                    int integer) {
  pb_figure *f = pb__slot(r, key);
  if (!f)
    return;
  f->label = label;
  f->unit = unit ? unit : "";
  f->v = v;
  f->null = null || isnan(v) || isinf(v);
  f->integer = integer;
}

void pb_report_num(pb_report *r, const char *key, const char *label, double v, const char *unit) {
  pb__set(r, key, label, unit, v, 0, 0);
}

void pb_report_int(pb_report *r, const char *key, const char *label, uint64_t v) {
  pb__set(r, key, label, "", (double)v, 0, 1);
}

void pb_report_null(pb_report *r, const char *key, const char *label, const char *unit) {
  pb__set(r, key, label, unit, 0, 1, 0);
}

void pb_report_note(pb_report *r, const char *fmt, ...) {
  if (r->nnotes == (int)(sizeof r->notes / sizeof r->notes[0]))
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->notes[r->nnotes++], sizeof r->notes[0], fmt, ap);
  va_end(ap);
}

void pb_report_latency(pb_report *r, const pb_hist *h) {
  if (!h->count)
    return;
  pb__set(r, "lat_p50_us", "latency p50", "us", (double)pb_hist_quantile(h, 0.50), 0, 1);
  pb__set(r, "lat_p99_us", "latency p99", "us", (double)pb_hist_quantile(h, 0.99), 0, 1);
  pb__set(r, "lat_p999_us", "latency p99.9", "us", (double)pb_hist_quantile(h, 0.999), 0, 1);
  pb__set(r, "lat_max_us", "latency max", "us", (double)h->max, 0, 1);
  pb__set(r, "lat_mean_us", "latency mean", "us", (double)h->sum / (double)h->count, 0, 0);
}

void pb_report_ack_latency(pb_report *r, const pb_hist *h) {
  if (!h->count)
    return;
  pb__set(r, "ack_p50_us", "send to SendAck p50", "us", (double)pb_hist_quantile(h, 0.50), 0, 1);
  pb__set(r, "ack_p99_us", "send to SendAck p99", "us", (double)pb_hist_quantile(h, 0.99), 0, 1);
}

void pb_report_lag(pb_report *r, const pb_hist *h) {
  if (!h->count)
    return;
  pb__set(r, "bench_lag_p99_us", "bench late sending, p99", "us", (double)pb_hist_quantile(h, 0.99), 0, 1);
  pb__set(r, "bench_lag_max_us", "bench late sending, max", "us", (double)h->max, 0, 1);
}

static void pb__server(pb_report *r, const pb_sample s[3]) {
  if (!s[0].ok || !s[2].ok) {
    pb_report_null(r, "server_cpu_s", "server CPU, measured phase", "s");
    pb_report_null(r, "server_rss_before_bytes", "server RSS before", "bytes");
    pb_report_null(r, "server_rss_after_bytes", "server RSS after", "bytes");
    return;
  }
  pb_report_num(r, "server_cpu_s", "server CPU, measured phase", (double)(s[2].cpu_us - s[1].cpu_us) / 1e6,
                "s");
  pb_report_num(r, "server_cpu_before_s", "server CPU before (total)", (double)s[0].cpu_us / 1e6, "s");
  pb_report_num(r, "server_cpu_after_s", "server CPU after (total)", (double)s[2].cpu_us / 1e6, "s");
  pb__set(r, "server_rss_before_bytes", "server RSS before", "bytes", (double)s[0].rss_bytes, 0, 1);
  pb__set(r, "server_rss_after_bytes", "server RSS after", "bytes", (double)s[2].rss_bytes, 0, 1);
}

void pb_report_common(pb_report *r, const pb_opts *o, const pb_result *res, const pb_sample s[3]) {
  (void)o;
  pb_report_int(r, "conns", "connections authenticated", res->conns);
  pb_report_int(r, "conn_failed", "connection attempts failed", res->conn_failed);
  pb_report_int(r, "disconnects", "connections lost (reconnected)", res->disconnects);
  pb_report_int(r, "sent", "messages sent", res->sent);
  pb_report_int(r, "acked", "messages acked (SendAck)", res->acked);
  pb_report_int(r, "refused", "messages refused (Error)", res->refused);
  pb_report_int(r, "received", "messages received (all)", res->received);
  pb_report_int(r, "lost", "lost (acked, never received)", res->lost);
  pb_report_int(r, "duplicated", "duplicated (received twice+)", res->duplicated);
  pb_report_int(r, "duplicated_shown", "duplicates a qid filter misses", res->dup_shown);
  pb_report_int(r, "redelivered", "redelivered (old qid: filtered)", res->redelivered);
  pb_report_int(r, "qid_regress", "new message under an old qid", res->qid_regress);
  pb_report_int(r, "unacked_received", "received but never acked", res->unacked_received);
  pb_report_int(r, "unanswered", "sends unanswered when a conn broke", res->unanswered);
  pb_report_int(r, "resent", "of them resent (same id) on reconnect", res->resent);
  pb_report_int(r, "resent_dup", "resends acked as duplicate (dedup)", res->resent_dup);
  pb_report_int(r, "resent_new", "resends acked as new (not stored)", res->resent_new);
  pb_report_int(r, "misrouted", "misrouted (wrong recipient)", res->misrouted);
  pb_report_int(r, "stale", "stale (earlier runs, ignored)", res->stale);
  pb_report_num(r, "bench_cpu_s", "bench CPU, measured phase", (double)res->bench_cpu_us / 1e6, "s");
  pb__server(r, s);
}

/* ---- output ---------------------------------------------------------------- */

static void pb__value(const pb_figure *f, char *buf, size_t n) {
  if (f->null)
    snprintf(buf, n, "-");
  else if (f->integer || fabs(f->v) >= 1e15)
    snprintf(buf, n, "%.0f", f->v);
  else if (fabs(f->v) >= 100)
    snprintf(buf, n, "%.1f", f->v);
  else
    snprintf(buf, n, "%.3f", f->v);
}

static void pb__table(const pb_report *r, FILE *out) {
  fprintf(out, "parley-bench %s\n", r->scenario);
  for (int i = 0; i < r->n; i++) {
    char v[64];
    pb__value(&r->f[i], v, sizeof v);
    fprintf(out, "  %-34s %14s %s\n", r->f[i].label, v, r->f[i].unit);
  }
  for (int i = 0; i < r->nnotes; i++)
    fprintf(out, "  note: %s\n", r->notes[i]);
}

static void pb__json_str(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      fprintf(out, "\\%c", *s);
    else if ((unsigned char)*s < 0x20)
      fprintf(out, "\\u%04x", *s);
    else
      fputc(*s, out);
  }
  fputc('"', out);
}

static void pb__json(const pb_report *r, FILE *out) {
  fprintf(out, "{\"scenario\":");
  pb__json_str(out, r->scenario);
  for (int i = 0; i < r->n; i++) {
    char v[64];
    pb__value(&r->f[i], v, sizeof v);
    fprintf(out, ",\"%s\":%s", r->f[i].key, r->f[i].null ? "null" : v);
  }
  fprintf(out, ",\"notes\":[");
  for (int i = 0; i < r->nnotes; i++) {
    if (i)
      fputc(',', out);
    pb__json_str(out, r->notes[i]);
  }
  fprintf(out, "]}\n");
}

void pb_report_print(const pb_report *r, FILE *out, int json) {
  if (json)
    pb__json(r, out);
  else
    pb__table(r, out);
}
