/* group: one sender (user 0, alone in worker 0) and a group of --members
 * users (1..members; default --conns) of which the first --conns are
 * connected, spread over the other workers. Worker 0 makes the group
 * (the server's RSS before and after is the group's memory), then sends
 * --messages group messages (default 200) at --rate a second (default 10,
 * so that each message's fan-out is measured alone) or, with --rate 0, as
 * fast as --window sends in flight allow (default 16).
 *
 * Every member connection records each message's latency (send time is in
 * the body); per message, the latest delivery over all members is its
 * "last delivery" (tracked for the first PB_GROUP_TRACK messages). Lost =
 * messages acked x members online - unique deliveries. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_mem.h"
#include "pb_scen.h"

#define PB__GROUP_LINGER_S 0.5

typedef struct gmember {
  pb_conn c;
  struct gstate *st;
  uint8_t *seen; /* bitmap of message numbers */
} gmember;

typedef struct gstate {
  pb_ctx *ctx;
  gmember *m; /* this worker's members; worker 0: m[0] is the sender */
  uint32_t n, ready;
  char gid[24];
  uint64_t expect, got; /* deliveries */
  uint64_t inflight;
  uint64_t *sent_at; /* by message number (sender) */
  int created, listed;
} gstate;

static void group_defaults(pb_opts *o) {
  if (!o->conns)
    o->conns = 10000;
  if (!o->members || o->members < o->conns)
    o->members = o->conns;
  if (!o->messages)
    o->messages = 200;
  if (o->rate < 0)
    o->rate = 10;
  if (o->window < 16)
    o->window = 16;
}

static uint32_t group_users(const pb_opts *o) { return 1 + o->members; }
static uint32_t group_conns(const pb_opts *o) { return o->conns; }

/* Body: "<run_id> <k> <send us>" */
static int group_parse(const Parley__Message *m, uint64_t run_id, uint64_t *k, uint64_t *ts) {
  char buf[80];
  uint64_t rid;
  if (m->event || m->body.len == 0 || m->body.len >= sizeof buf)
    return -1;
  memcpy(buf, m->body.data, m->body.len);
  buf[m->body.len] = 0;
  if (sscanf(buf, "%" SCNu64 " %" SCNu64 " %" SCNu64, &rid, k, ts) != 3 || rid != run_id)
    return -1;
  return 0;
}

static void group_on_member_frame(pb_conn *c, uint8_t type, const ProtobufCMessage *msg) {
  gmember *gm = c->ud;
  gstate *st = gm->st;
  pb_result *r = st->ctx->res;
  if (type == PARLEY__FRAME_TYPE__FRAME_GROUP_LIST) {
    const Parley__GroupList *l = (const Parley__GroupList *)msg;
    char want[40];
    snprintf(want, sizeof want, "bench-%" PRIu64, st->ctx->run_id);
    for (size_t i = 0; i < l->n_groups; i++)
      if (!strcmp(l->groups[i]->name, want))
        snprintf(st->gid, sizeof st->gid, "%s", l->groups[i]->group);
    st->listed = 1;
    return;
  }
  if (type != PARLEY__FRAME_TYPE__FRAME_MESSAGE)
    return;
  const Parley__Message *m = (const Parley__Message *)msg;
  uint64_t k, ts, now = pb_now_us();
  r->received++;
  if (strcmp(m->group, st->gid) != 0 || group_parse(m, st->ctx->run_id, &k, &ts) != 0 ||
      k >= st->ctx->o->messages) {
    r->stale++; /* the group's "created" event, or another run's */
    return;
  }
  if (gm->seen[k / 8] & (1u << (k % 8))) {
    r->duplicated++;
    return;
  }
  gm->seen[k / 8] |= (uint8_t)(1u << (k % 8));
  r->unique++;
  st->got++;
  uint64_t lat = now > ts ? now - ts : 0;
  pb_hist_add(&r->lat, lat);
  if (k < PB_GROUP_TRACK && lat > r->gmax_us[k])
    r->gmax_us[k] = (uint32_t)(lat < UINT32_MAX ? lat : UINT32_MAX);
  if (!r->t_first_rx)
    r->t_first_rx = now;
  r->t_last_rx = now;
}

static void group_on_sender_frame(pb_conn *c, uint8_t type, const ProtobufCMessage *msg) {
  gmember *gm = c->ud;
  gstate *st = gm->st;
  pb_result *r = st->ctx->res;
  if (type == PARLEY__FRAME_TYPE__FRAME_GROUP_INFO) {
    snprintf(st->gid, sizeof st->gid, "%s", ((const Parley__GroupInfo *)msg)->group);
    st->created = 1;
  } else if (type == PARLEY__FRAME_TYPE__FRAME_SEND_ACK) {
    const Parley__SendAck *a = (const Parley__SendAck *)msg;
    uint64_t k = strtoull(a->id + 1, NULL, 10);
    r->acked++;
    st->inflight--;
    if (k < st->ctx->o->messages && st->sent_at[k])
      pb_hist_add(&r->ack, pb_now_us() - st->sent_at[k]);
  } else if (type == PARLEY__FRAME_TYPE__FRAME_ERROR) {
    const Parley__Error *e = (const Parley__Error *)msg;
    if (e->ref[0] == 'g') {
      r->refused++;
      st->inflight--;
    } else if (!st->created) {
      pb_ctx_fail(st->ctx, "making the group failed: error %d (%s)", e->code, e->message);
      st->created = -1;
    }
  }
}

static void group_on_ready(pb_conn *c) {
  gmember *gm = c->ud;
  gm->st->ready++;
  gm->st->ctx->res->conns++;
}

static void group_on_close(pb_conn *c, const char *why) {
  gmember *gm = c->ud;
  gm->st->ctx->res->disconnects++;
  fprintf(stderr, "parley-bench: group: connection of user %u closed: %s\n", c->uidx, why);
}

static const pb_conn_cbs group_member_cbs = {group_on_ready, group_on_member_frame, group_on_close};
static const pb_conn_cbs group_sender_cbs = {group_on_ready, group_on_sender_frame, group_on_close};

static int group_all_ready(void *arg) {
  gstate *st = arg;
  return st->ready + st->ctx->net.failed >= st->n;
}

static int group_made(void *arg) { return ((gstate *)arg)->created != 0; }
static int group_listed(void *arg) { return ((gstate *)arg)->listed; }

/* Worker 0: connects the sender and makes the group of users 1..members. */
static int group_create(pb_ctx *c, gstate *st) {
  const pb_opts *o = c->o;
  pb_conn_start(&st->m[0].c);
  if (pb_ctx_run(c, group_all_ready, st, o->timeout) != 0 || st->ready != 1)
    return pb_ctx_fail(c, "the sender could not connect");
  char name[40], **names = pl_calloc(o->members, sizeof *names);
  for (uint32_t i = 0; i < o->members; i++) {
    names[i] = pl_malloc(32);
    pb_users_name(i + 1, names[i], 32);
  }
  snprintf(name, sizeof name, "bench-%" PRIu64, c->run_id);
  Parley__GroupCreate g = PARLEY__GROUP_CREATE__INIT;
  g.ref = "create";
  g.name = name;
  g.n_members = o->members;
  g.members = names;
  pb_sample before = pb_server_sample(c->server_pid);
  uint64_t t0 = pb_now_us();
  pb_ctx_say(c, "making a group of %u members", o->members + 1);
  pb_conn_send(&st->m[0].c, PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE, &g.base);
  int rc = pb_ctx_run(c, group_made, st, o->timeout);
  c->res->group_create_us = pb_now_us() - t0;
  pb_sample after = pb_server_sample(c->server_pid);
  for (uint32_t i = 0; i < o->members; i++)
    pl_free(names[i]);
  pl_free(names);
  if (rc != 0 || st->created != 1)
    return st->created < 0 ? -1 : pb_ctx_fail(c, "making the group timed out");
  if (before.ok && after.ok && after.rss_bytes > before.rss_bytes)
    c->res->group_rss = after.rss_bytes - before.rss_bytes;
  pb_ctx_say(c, "group %s made in %.2f s", st->gid, (double)c->res->group_create_us / 1e6);
  return 0;
}

/* Other workers: connect this worker's online members, then learn the
 * group's id from the first of them. */
static int group_join(pb_ctx *c, gstate *st) {
  const pb_opts *o = c->o;
  uint64_t t0 = pb_now_us();
  for (uint32_t i = 0; i < st->n; i++)
    pb_conn_start(&st->m[i].c);
  pb_ctx_say(c, "connecting %u members", st->n);
  if (pb_ctx_run(c, group_all_ready, st, o->timeout) != 0 || st->ready < st->n)
    return pb_ctx_fail(c, "connecting members: %u of %u ready", st->ready, st->n);
  pb_ctx_say(c, "%u members ready in %.1f s", st->n, pb_scen_secs(t0, pb_now_us()));
  if (!st->n)
    return 0;
  /* worker 0 makes the group meanwhile: ask until it is there */
  Parley__GroupListGet l = PARLEY__GROUP_LIST_GET__INIT;
  l.ref = "list";
  for (uint64_t until = pb_now_us() + (uint64_t)(o->timeout * 1e6); !st->gid[0] && pb_now_us() < until;) {
    st->listed = 0;
    pb_conn_send(&st->m[0].c, PARLEY__FRAME_TYPE__FRAME_GROUP_LIST_GET, &l.base);
    if (pb_ctx_run(c, group_listed, st, o->timeout) != 0)
      break;
    if (!st->gid[0])
      pb_ctx_sleep(c, 0.1);
  }
  if (!st->gid[0])
    return pb_ctx_fail(c, "the members do not see the group");
  st->expect = o->messages * st->n;
  return 0;
}

static int group_setup(pb_ctx *c) {
  const pb_opts *o = c->o;
  gstate *st = pl_calloc(1, sizeof *st);
  c->state = st;
  st->ctx = c;
  uint32_t nd = c->nw - 1; /* member workers */
  if (c->w == 0) {
    st->n = 1;
    st->m = pl_calloc(1, sizeof *st->m);
    pb_conn_init(&st->m[0].c, &c->net, 0, &group_sender_cbs, &st->m[0]);
    st->m[0].st = st;
    st->sent_at = pl_calloc(o->messages, sizeof *st->sent_at);
  } else {
    st->m = pl_calloc(o->conns / nd + 1, sizeof *st->m);
    for (uint32_t u = c->w - 1; u < o->conns; u += nd) {
      gmember *gm = &st->m[st->n++];
      gm->st = st;
      gm->seen = pl_calloc(o->messages / 8 + 1, 1);
      pb_conn_init(&gm->c, &c->net, u + 1, &group_member_cbs, gm);
    }
  }
  /* (set-up has no barriers: the members poll for the group instead) */
  if (c->w == 0 ? group_create(c, st) != 0 : group_join(c, st) != 0)
    return -1;
  pb_ctx_sleep(c, 0.5); /* every first fetch (the "created" event) is done */
  return 0;
}

static int group_window_open(void *arg) {
  gstate *st = arg;
  return st->inflight < st->ctx->o->window;
}

static int group_answered(void *arg) { return ((gstate *)arg)->inflight == 0; }
static int group_all_in(void *arg) {
  gstate *st = arg;
  return st->got >= st->expect;
}

static void group_send(pb_ctx *c, gstate *st, uint64_t k) {
  char id[24], body[80];
  uint64_t now = pb_now_us();
  snprintf(id, sizeof id, "g%" PRIu64 "-%" PRIu64, k, c->run_id);
  int n = snprintf(body, sizeof body, "%" PRIu64 " %" PRIu64 " %" PRIu64, c->run_id, k, now);
  Parley__Send s = PARLEY__SEND__INIT;
  s.id = id;
  s.to = "";
  s.group = st->gid;
  s.body.data = (uint8_t *)body;
  s.body.len = (size_t)n;
  s.client_ts = now / 1000;
  st->sent_at[k] = now;
  st->inflight++;
  c->res->sent++;
  pb_conn_send(&st->m[0].c, PARLEY__FRAME_TYPE__FRAME_SEND, &s.base);
}

static int group_run(pb_ctx *c) {
  const pb_opts *o = c->o;
  gstate *st = c->state;
  pb_result *r = c->res;
  r->t_go = pb_now_us();
  if (c->w == 0) {
    for (uint64_t k = 0; k < o->messages; k++) {
      if (o->rate > 0) {
        group_send(c, st, k);
        pb_ctx_sleep(c, 1.0 / o->rate);
      } else {
        if (pb_ctx_run(c, group_window_open, st, o->timeout) != 0)
          break;
        group_send(c, st, k);
      }
    }
    pb_ctx_run(c, group_answered, st, o->timeout);
    r->unanswered = st->inflight;
    r->t_stop = pb_now_us();
  } else if (pb_ctx_run(c, group_all_in, st, o->timeout) != 0) {
    fprintf(stderr, "parley-bench: group: worker %u: %" PRIu64 " of %" PRIu64 " deliveries within %.0f s\n",
            c->w, st->got, st->expect, o->timeout);
  }
  pb_ctx_sleep(c, PB__GROUP_LINGER_S); /* late duplicates */
  if (c->w != 0)
    r->lost = st->expect - st->got;
  return 0;
}

static void group_teardown(pb_ctx *c) {
  gstate *st = c->state;
  for (uint32_t i = 0; i < st->n; i++) {
    pb_conn_drop(&st->m[i].c, 1);
    pl_free(st->m[i].seen);
  }
  pl_free(st->m);
  pl_free(st->sent_at);
  pl_free(st);
}

static int group_u32_cmp(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void group_report(const pb_opts *o, const pb_result *r, const pb_sample s[3], pb_report *rep) {
  double secs = pb_scen_secs(r->t_go, r->t_last_rx);
  pb_report_num(rep, "delivered_per_s", "group deliveries/s", (double)r->unique / secs, "msg/s");
  pb_report_latency(rep, &r->lat);
  size_t n = o->messages < PB_GROUP_TRACK ? (size_t)o->messages : PB_GROUP_TRACK;
  uint32_t *v = pl_malloc((n ? n : 1) * sizeof *v);
  memcpy(v, r->gmax_us, n * sizeof *v);
  qsort(v, n, sizeof *v, group_u32_cmp);
  if (n) {
    pb_report_num(rep, "last_delivery_p50_us", "last delivery of a message, p50", v[(n - 1) / 2], "us");
    pb_report_num(rep, "last_delivery_p99_us", "last delivery of a message, p99",
                  v[(size_t)((double)(n - 1) * 0.99)], "us");
    pb_report_num(rep, "last_delivery_max_us", "last delivery of a message, max", v[n - 1], "us");
  }
  pl_free(v);
  if (s[1].ok && s[2].ok && r->unique)
    pb_report_num(rep, "server_cpu_us_per_msg", "server CPU per delivery",
                  (double)(s[2].cpu_us - s[1].cpu_us) / (double)r->unique, "us");
  pb_report_null(rep, "server_rss_per_conn_bytes", "server RSS per connection", "bytes");
  pb_report_int(rep, "members", "group members", (uint64_t)o->members + 1);
  pb_report_int(rep, "online", "members online", o->conns);
  pb_report_num(rep, "group_rss_bytes", "server RSS to make the group", (double)r->group_rss, "bytes");
  pb_report_num(rep, "group_create_s", "time to make the group", (double)r->group_create_us / 1e6, "s");
  pb_report_int(rep, "deliveries", "unique deliveries", r->unique);
}

const pb_scenario pb_scen_group = {
    .name = "group",
    .defaults = group_defaults,
    .users = group_users,
    .conns = group_conns,
    .solo_worker0 = 1,
    .setup = group_setup,
    .run = group_run,
    .teardown = group_teardown,
    .report = group_report,
};
