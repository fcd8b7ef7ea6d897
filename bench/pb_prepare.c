#include "pb_prepare.h"

#include <stdio.h>

#include "common/pl_mem.h"
#include "pb_conn.h"

#define PB__SAY_EVERY_US 5000000u

typedef struct pb__prep {
  const pb_opts *o;
  pb_net net;
  pb_conn *conns;
  uint32_t next, end, missing, done, failed;
  pb_timer say;
  uint64_t t0;
} pb__prep;

static void pb__next(pb__prep *p, pb_conn *c) {
  while (p->next < p->end && pb_users_token(p->net.users, p->next))
    p->next++;
  if (p->next >= p->end)
    return;
  c->uidx = p->next++; /* c is idle: re-aim it at the next user */
  pb_conn_start(c);
}

static void pb__on_ready(pb_conn *c) {
  pb__prep *p = c->ud;
  p->done++;
  pb_conn_drop(c, 0);
  pb__next(p, c);
}

static void pb__on_close(pb_conn *c, const char *why) {
  pb__prep *p = c->ud;
  if (p->failed++ < 5)
    fprintf(stderr, "parley-bench: cannot create user pb%u: %s\n", c->uidx, why);
  pb__next(p, c);
}

static void pb__on_frame(pb_conn *c, uint8_t type, const ProtobufCMessage *m) {
  (void)c;
  (void)type;
  (void)m;
}

static const pb_conn_cbs pb__cbs = {
    .on_ready = pb__on_ready, .on_frame = pb__on_frame, .on_close = pb__on_close};

static void pb__say(pb_timer *t) {
  pb__prep *p = t->ud;
  double s = (double)(pb_now_us() - p->t0) / 1e6;
  if (!p->o->quiet)
    fprintf(stderr, "parley-bench: created %u of %u users (%.0f/s)\n", p->done, p->missing, p->done / s);
  pb_timer_start(p->net.loop, t, pb_now_us() + PB__SAY_EVERY_US);
}

static int pb__finished(void *arg) {
  pb__prep *p = arg;
  return p->done + p->failed >= p->missing;
}

int pb_prepare_users(const pb_opts *o, const struct sockaddr_in *server, pb_users *u, uint32_t n,
                     uint32_t parallel, uint32_t *created) {
  pb__prep p = {.o = o, .end = n, .missing = pb_users_missing(u, 0, n)};
  *created = 0;
  if (!p.missing)
    return 0;
  if (!o->quiet)
    fprintf(stderr, "parley-bench: creating %u users (once: tokens cached in %s)\n", p.missing, u->path);
  pb_loop *l = pb_loop_new();
  pb_net_init(&p.net, l, server, u);
  p.net.src_base = o->src_base;
  p.net.per_addr = o->per_addr;
  if (o->tls)
    pb_net_tls(&p.net);
  p.conns = pl_calloc(parallel, sizeof *p.conns);
  p.t0 = pb_now_us();
  p.say = (pb_timer){.cb = pb__say, .ud = &p};
  pb_timer_start(l, &p.say, p.t0 + PB__SAY_EVERY_US);
  for (uint32_t i = 0; i < parallel; i++) {
    pb_conn_init(&p.conns[i], &p.net, 0, &pb__cbs, &p);
    pb__next(&p, &p.conns[i]);
  }
  int rc = pb_loop_run(l, pb__finished, &p, pb_now_us() + (uint64_t)(o->timeout * 10 * 1e6));
  for (uint32_t i = 0; i < parallel; i++)
    pb_conn_drop(&p.conns[i], 0);
  pb_timer_stop(l, &p.say);
  pb_net_free(&p.net);
  pb_loop_free(l);
  pl_free(p.conns);
  *created = p.done;
  if (rc != 0 || p.failed)
    fprintf(stderr, "parley-bench: %u users could not be created\n", p.missing - p.done);
  return rc != 0 || p.failed ? -1 : 0;
}
