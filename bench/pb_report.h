/* pb_report: the figures of a run, printed as a table or one JSON object.
 *
 * A report is an ordered list of named figures; a figure may be null (the
 * scenario has no such number). Every report starts with the headline keys
 * (delivered_per_s, lat_p50_us, lat_p99_us, lat_p999_us, lost, duplicated,
 * server_cpu_us_per_msg, server_rss_per_conn_bytes), null until set. */
#ifndef PB_REPORT_H
#define PB_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "pb_opts.h"
#include "pb_server.h"
#include "pb_stats.h"

#define PB_REPORT_MAX 64

typedef struct pb_figure {
  const char *key, *label, *unit;
  double v;
  int null, integer;
} pb_figure;

typedef struct pb_report {
  const char *scenario;
  pb_figure f[PB_REPORT_MAX];
  int n;
  char notes[8][200];
  int nnotes;
} pb_report;

void pb_report_init(pb_report *r, const char *scenario);
/* Sets (or adds) a figure. */
void pb_report_num(pb_report *r, const char *key, const char *label, double v, const char *unit);
void pb_report_int(pb_report *r, const char *key, const char *label, uint64_t v);
void pb_report_null(pb_report *r, const char *key, const char *label, const char *unit);
/* A line printed under the table (and as "notes" in JSON). */
void pb_report_note(pb_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Adds the latency quantiles of h (or nulls if h is empty). */
void pb_report_latency(pb_report *r, const pb_hist *h);
/* Adds the send-to-SendAck quantiles of h (nothing if h is empty). */
void pb_report_ack_latency(pb_report *r, const pb_hist *h);
/* Open loop: how late the bench itself sent (p99, max of h). */
void pb_report_lag(pb_report *r, const pb_hist *h);
/* Adds the figures every scenario shares: conns, ledger, server before/after. */
void pb_report_common(pb_report *r, const pb_opts *o, const pb_result *res, const pb_sample s[3]);

void pb_report_print(const pb_report *r, FILE *out, int json);

#endif
