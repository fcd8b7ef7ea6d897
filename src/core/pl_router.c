#include "pl_router.h"

#include <pthread.h>
#include <string.h>

#include "../common/pl_log.h"
#include "../common/pl_map.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"
#include "../proto/pl_frame.h"
#include "../proto/pl_strings.h"
#include "../rules/pl_bucket.h"

typedef struct pl__route {
  pl_loop *loop;
  void *ep;
  uint64_t pushed; /* pushes numbered for this attachment (the sink's hint) */
} pl__route;

/* A group's live audience: its members' attached devices. pos maps a
 * device to its index + 1, so leaving costs O(1) in a 100k-member group. */
typedef struct pl__gset {
  uint64_t *devs;
  size_t n, cap;
  pl_map pos;
} pl__gset;

/* The groups an attached device is in the audience of. */
typedef struct pl__dgroups {
  uint64_t *gids;
  size_t n;
} pl__dgroups;

typedef struct pl__local {
  pl_router base; /* base.sink: where pushes and kicks go */
  pthread_mutex_t mu;
  pl_map global;    /* device -> pl__route *, guarded by mu */
  pl_map groups;    /* gid -> pl__gset, guarded by mu */
  pl_map devgroups; /* device -> pl__dgroups (devices in some group only), guarded by mu */
  int nloops;
  pl_map *local;                  /* [loop index] device -> ep, owned by that loop's thread */
  pl_task **out_head, **out_tail; /* [loop index] pushes of this commit (store thread) */
} pl__local;

typedef struct pl__push_task {
  pl_task task;
  pl__local *r;
  pl_loop *loop;
  uint64_t device, qid;
  uint64_t gid, seq;  /* a group history entry: its group and its position there */
  uint64_t hint;      /* the route's push number (0: an ephemeral frame) */
  void *ep;           /* the attachment it was numbered for (NULL: whichever) */
  uint64_t commit_us; /* when its commit ended (0: an ephemeral frame) */
  pl_buf *frame;
} pl__push_task;

typedef struct pl__kick_task {
  pl_task task;
  pl__local *r;
  pl_loop *loop;
  uint64_t device;
  void *ep;
} pl__kick_task;

/* Receipts and read syncs are queue entries like messages (pl_msg_kind). */
static pl_buf *pl__encode_event(const pl_msg *m) {
  if (m->kind == PL_MSG_READ_SYNC) {
    Parley__ReadSync rs = PARLEY__READ_SYNC__INIT;
    rs.qid = m->qid;
    rs.conv = m->conv;
    rs.seq = m->seq;
    rs.unread = m->aux;
    rs.server_ts = m->server_ts;
    return pl_frame_encode(PARLEY__FRAME_TYPE__FRAME_READ_SYNC, &rs.base);
  }
  Parley__Receipt rc = PARLEY__RECEIPT__INIT;
  rc.qid = m->qid;
  rc.conv = m->conv;
  rc.by = m->from;
  rc.status = m->kind == PL_MSG_READ ? PARLEY__RECEIPT_STATUS__RECEIPT_READ
                                     : PARLEY__RECEIPT_STATUS__RECEIPT_DELIVERED;
  rc.seq = m->seq;
  rc.server_ts = m->server_ts;
  return pl_frame_encode(PARLEY__FRAME_TYPE__FRAME_RECEIPT, &rc.base);
}

/* A Message frame whose strings a protobuf decoder takes, even from a row
 * stored before strings were checked (protocol.md 4, "Strings"). */
static pl_buf *pl__encode_msg(const Parley__Message *msg) {
  pl_buf *b = pl_frame_encode(PARLEY__FRAME_TYPE__FRAME_MESSAGE, &msg->base);
  pl_strings_repair(PARLEY__FRAME_TYPE__FRAME_MESSAGE, b->data + PL_FRAME_HDR, b->len - PL_FRAME_HDR);
  return b;
}

pl_buf *pl_router_encode(const pl_msg *m) {
  if (m->kind != PL_MSG_MESSAGE && m->kind != PL_MSG_GROUP_EVENT)
    return pl__encode_event(m);
  Parley__Message msg = PARLEY__MESSAGE__INIT;
  Parley__GroupEvent ev = PARLEY__GROUP_EVENT__INIT;
  if (strncmp(m->conv, "g:", 2) == 0)
    msg.group = m->conv + 2;
  if (m->kind == PL_MSG_GROUP_EVENT) {
    /* stored as from = actor, id = user, body = name, aux = type | role << 8 */
    char name[128];
    size_t n = m->body_len < sizeof name - 1 ? m->body_len : sizeof name - 1;
    memcpy(name, m->body ? (const char *)m->body : "", n);
    name[n] = 0;
    ev.type = (Parley__GroupEventType)(m->aux & 0xff);
    ev.actor = m->from;
    ev.user = m->id;
    ev.name = name;
    ev.role = (Parley__GroupRole)((m->aux >> 8) & 0xff);
    msg.event = &ev;
    msg.qid = m->qid;
    msg.conv = m->conv;
    msg.seq = m->seq;
    msg.from = m->from;
    msg.from_device = m->from_device;
    msg.id = "";
    msg.server_ts = m->server_ts;
    return pl__encode_msg(&msg);
  }
  msg.qid = m->qid;
  msg.conv = m->conv;
  msg.seq = m->seq;
  msg.from = m->from;
  msg.from_device = m->from_device;
  msg.id = m->id;
  msg.body.data = m->body;
  msg.body.len = m->body_len;
  msg.client_ts = m->client_ts;
  msg.server_ts = m->server_ts;
  /* the store keeps the attachment packed, as the wire has it */
  if (m->media_len)
    msg.media = parley__media__unpack(NULL, m->media_len, m->media);
  if (m->act_len) /* as is the act (protocol.md 11.9) */
    msg.act = parley__act__unpack(NULL, m->act_len, m->act);
  pl_buf *b = pl__encode_msg(&msg);
  if (msg.media)
    parley__media__free_unpacked(msg.media, NULL);
  if (msg.act)
    parley__act__free_unpacked(msg.act, NULL);
  return b;
}

static void pl__kick_run(pl_task *t) {
  pl__kick_task *k = (pl__kick_task *)t;
  pl_map *local = &k->r->local[pl_loop_index(k->loop)];
  /* Only if ep is still the one registered: then it is alive. */
  if (pl_map_get(local, k->device) == k->ep)
    k->r->base.sink.kick(k->ep);
  pl_free(k);
}

/* Posts a kick of ep (serving device on loop) to that loop. */
static void pl__post_kick(pl__local *r, pl_loop *loop, uint64_t device, void *ep) {
  pl__kick_task *k = pl_malloc(sizeof *k);
  k->task.fn = pl__kick_run;
  k->r = r;
  k->loop = loop;
  k->device = device;
  k->ep = ep;
  if (pl_loop_post(loop, &k->task) != PL_OK)
    pl_free(k);
}

static void pl__fetch_run(pl_task *t) {
  pl__kick_task *k = (pl__kick_task *)t;
  if (pl_map_get(&k->r->local[pl_loop_index(k->loop)], k->device) == k->ep && k->r->base.sink.fetch)
    k->r->base.sink.fetch(k->ep);
  pl_free(k);
}

static int pl__bit(const uint64_t *bits, uint64_t device) {
  uint32_t b = pl_bucket_of_id(device);
  return (int)(bits[b / 64] >> (b % 64) & 1);
}

/* Posts a fetch hint to each attached device of devices (all: NULL; of
 * those, only the devices of the buckets in bits, if not NULL). */
static void pl__hint_devices(pl__local *r, const uint64_t *devices, size_t n, const uint64_t *bits) {
  uint64_t k;
  void *v;
  pthread_mutex_lock(&r->mu);
  size_t it = 0;
  for (size_t i = 0; devices ? i < n : pl_map_next(&r->global, &it, &k, &v); i++) {
    pl__route *rt = devices ? pl_map_get(&r->global, devices[i]) : v;
    if (!rt || (bits && !pl__bit(bits, devices ? devices[i] : k)))
      continue;
    pl__kick_task *t = pl_malloc(sizeof *t);
    t->task.fn = pl__fetch_run;
    t->r = r;
    t->loop = rt->loop;
    t->device = devices ? devices[i] : k;
    t->ep = rt->ep;
    if (pl_loop_post(rt->loop, &t->task) != PL_OK) /* never blocks: fine under the lock */
      pl_free(t);
  }
  pthread_mutex_unlock(&r->mu);
}

static uint64_t *pl__audience(pl__local *r, uint64_t gid, const uint64_t *skip, size_t nskip, size_t *n);

static void pl__hint(pl_router *base, const uint64_t *devices, size_t n, uint64_t gid) {
  pl__local *r = (pl__local *)base;
  if (!gid) {
    pl__hint_devices(r, devices, n, NULL);
    return;
  }
  size_t na;
  uint64_t *devs = pl__audience(r, gid, NULL, 0, &na);
  if (na)
    pl__hint_devices(r, devs, na, NULL);
  pl_free(devs);
}

static void pl__hint_buckets(pl_router *base, const uint64_t *bits) {
  pl__hint_devices((pl__local *)base, NULL, 0, bits);
}

static void pl__kick_device(pl_router *base, uint64_t device) {
  pl__local *r = (pl__local *)base;
  pthread_mutex_lock(&r->mu);
  pl__route *rt = pl_map_get(&r->global, device);
  pl__route at = rt ? *rt : (pl__route){0};
  pthread_mutex_unlock(&r->mu);
  if (at.ep) /* posted even to this loop: the caller may be inside the session */
    pl__post_kick(r, at.loop, device, at.ep);
}

static void pl__attach(pl_router *base, uint64_t device, pl_loop *loop, void *ep) {
  pl__local *r = (pl__local *)base;
  pl_map_put(&r->local[pl_loop_index(loop)], device, ep);
  pl__route *nr = pl_malloc(sizeof *nr);
  nr->loop = loop;
  nr->ep = ep;
  nr->pushed = 0; /* a new numbering per attachment, from 1 */
  pthread_mutex_lock(&r->mu);
  pl__route *old = pl_map_put(&r->global, device, nr);
  pthread_mutex_unlock(&r->mu);
  if (!old)
    return;
  if (old->ep != ep) {
    if (old->loop == loop) {
      /* Same loop: local already points at ep; kick the old one directly. */
      r->base.sink.kick(old->ep);
    } else {
      pl__post_kick(r, old->loop, device, old->ep);
    }
  }
  pl_free(old);
}

/* ---- group audiences (mu held) ---- */

static void pl__gset_add(pl__local *r, uint64_t gid, uint64_t device) {
  pl__gset *g = pl_map_get(&r->groups, gid);
  if (!g) {
    g = pl_calloc(1, sizeof *g);
    pl_map_put(&r->groups, gid, g);
  }
  if (pl_map_get(&g->pos, device))
    return;
  if (g->n == g->cap) {
    g->cap = g->cap ? g->cap * 2 : 8;
    g->devs = pl_realloc(g->devs, g->cap * sizeof *g->devs);
  }
  g->devs[g->n++] = device;
  pl_map_put(&g->pos, device, (void *)(uintptr_t)g->n);
}

static void pl__gset_del(pl__local *r, uint64_t gid, uint64_t device) {
  pl__gset *g = pl_map_get(&r->groups, gid);
  uintptr_t at = g ? (uintptr_t)pl_map_del(&g->pos, device) : 0;
  if (!at)
    return;
  uint64_t last = g->devs[--g->n];
  if (at - 1 < g->n) { /* the last one fills the hole */
    g->devs[at - 1] = last;
    pl_map_put(&g->pos, last, (void *)at);
  }
  if (!g->n) {
    pl_map_del(&r->groups, gid);
    pl_map_free(&g->pos);
    pl_free(g->devs);
    pl_free(g);
  }
}

/* device leaves every group audience it is in. */
static void pl__groups_drop(pl__local *r, uint64_t device) {
  pl__dgroups *d = pl_map_del(&r->devgroups, device);
  if (!d)
    return;
  for (size_t i = 0; i < d->n; i++)
    pl__gset_del(r, d->gids[i], device);
  pl_free(d->gids);
  pl_free(d);
}

static void pl__dgroups_add(pl__local *r, uint64_t device, uint64_t gid) {
  pl__dgroups *d = pl_map_get(&r->devgroups, device);
  if (!d) {
    d = pl_calloc(1, sizeof *d);
    pl_map_put(&r->devgroups, device, d);
  }
  for (size_t i = 0; i < d->n; i++)
    if (d->gids[i] == gid)
      return;
  d->gids = pl_realloc(d->gids, (d->n + 1) * sizeof *d->gids);
  d->gids[d->n++] = gid;
  pl__gset_add(r, gid, device);
}

static void pl__dgroups_del(pl__local *r, uint64_t device, uint64_t gid) {
  pl__dgroups *d = pl_map_get(&r->devgroups, device);
  for (size_t i = 0; d && i < d->n; i++)
    if (d->gids[i] == gid) {
      d->gids[i] = d->gids[--d->n];
      pl__gset_del(r, gid, device);
      break;
    }
}

static void pl__group_change(pl_router *base, const pl_group_change *c) {
  pl__local *r = (pl__local *)base;
  pthread_mutex_lock(&r->mu);
  for (size_t i = 0; i < c->n; i++) {
    if (!c->join)
      pl__dgroups_del(r, c->devices[i], c->gid);
    else if (pl_map_get(&r->global, c->devices[i])) /* offline devices catch up by fetching */
      pl__dgroups_add(r, c->devices[i], c->gid);
  }
  pthread_mutex_unlock(&r->mu);
}

static void pl__device_groups(pl_router *base, uint64_t device, const uint64_t *gids, size_t n) {
  pl__local *r = (pl__local *)base;
  pthread_mutex_lock(&r->mu);
  pl__groups_drop(r, device);
  for (size_t i = 0; i < n && pl_map_get(&r->global, device); i++)
    pl__dgroups_add(r, device, gids[i]);
  pthread_mutex_unlock(&r->mu);
}

static void pl__detach(pl_router *base, uint64_t device, pl_loop *loop, void *ep) {
  pl__local *r = (pl__local *)base;
  pl_map *local = &r->local[pl_loop_index(loop)];
  if (pl_map_get(local, device) == ep)
    pl_map_del(local, device);
  pl__route *gone = NULL;
  pthread_mutex_lock(&r->mu);
  pl__route *cur = pl_map_get(&r->global, device);
  if (cur && cur->ep == ep) {
    gone = pl_map_del(&r->global, device);
    pl__groups_drop(r, device);
  }
  pthread_mutex_unlock(&r->mu);
  pl_free(gone);
}

static void pl__push_run(pl_task *t) {
  pl__push_task *p = (pl__push_task *)t;
  void *ep = pl_map_get(&p->r->local[pl_loop_index(p->loop)], p->device);
  /* A push numbered for an attachment taken over since: the newer one's
   * first fetch, submitted after the takeover, reads its message. */
  if (ep && p->ep && p->ep != ep)
    ep = NULL;
  if (ep)
    p->r->base.sink.push(ep, p->qid, p->gid, p->seq, p->hint, p->frame);
  if (ep && p->commit_us && p->r->base.sink.delivery)
    pl_hist_add(&p->r->base.sink.delivery[pl_loop_index(p->loop)], pl_mono_us() - p->commit_us);
  pl_buf_unref(p->frame);
  pl_free(p);
}

/* Holds a push for the end of the commit, in order, per loop. */
static void pl__hold(pl__local *r, pl__push_task *p) {
  int i = pl_loop_index(p->loop);
  p->task.next = NULL;
  if (r->out_tail[i])
    r->out_tail[i]->next = &p->task;
  else
    r->out_head[i] = &p->task;
  r->out_tail[i] = &p->task;
}

static void pl__deliver(pl_router *base, const pl_msg *m, const uint64_t *devices, size_t n) {
  pl__local *r = (pl__local *)base;
  pl__route stack[16], *at = n <= 16 ? stack : pl_malloc(n * sizeof *at);
  uint64_t now = pl_mono_us();
  pthread_mutex_lock(&r->mu); /* one lock for all of this message's devices */
  for (size_t i = 0; i < n; i++) {
    pl__route *rt = pl_map_get(&r->global, devices[i]);
    if (rt)
      rt->pushed++; /* numbered under the lock, in the order posted */
    at[i] = rt ? *rt : (pl__route){0};
  }
  pthread_mutex_unlock(&r->mu);
  pl_buf *frame = NULL;
  for (size_t i = 0; i < n; i++) {
    if (!at[i].loop)
      continue; /* offline: the durable queue has it */
    if (!frame)
      frame = pl_router_encode(m); /* once, shared by every receiver */
    pl__push_task *p = pl_malloc(sizeof *p);
    p->task.fn = pl__push_run;
    p->r = r;
    p->loop = at[i].loop;
    p->device = devices[i];
    p->qid = m->qid;
    p->gid = m->gid;
    p->seq = m->seq;
    p->hint = at[i].pushed;
    p->ep = at[i].ep;
    p->commit_us = now;
    p->frame = pl_buf_ref(frame);
    pl__hold(r, p);
  }
  pl_buf_unref(frame);
  if (at != stack)
    pl_free(at);
}

static int pl__among(uint64_t dev, const uint64_t *set, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (set[i] == dev)
      return 1;
  return 0;
}

/* A copy (taken under the lock) of the group's audience but the nskip
 * devices of skip (a few: the sender, blockers); the caller frees it. */
static uint64_t *pl__audience(pl__local *r, uint64_t gid, const uint64_t *skip, size_t nskip, size_t *n) {
  uint64_t *devs = NULL;
  *n = 0;
  pthread_mutex_lock(&r->mu);
  pl__gset *g = pl_map_get(&r->groups, gid);
  if (g && g->n) {
    devs = pl_malloc(g->n * sizeof *devs);
    for (size_t i = 0; i < g->n; i++)
      if (!pl__among(g->devs[i], skip, nskip))
        devs[(*n)++] = g->devs[i];
  }
  pthread_mutex_unlock(&r->mu);
  return devs;
}

/* To the group's audience: the same path as 1:1 (one encoded frame shared
 * by every receiver). */
static void pl__deliver_group(pl_router *base, const pl_msg *m, uint64_t gid, uint64_t skip) {
  size_t n;
  uint64_t *devs = pl__audience((pl__local *)base, gid, &skip, 1, &n);
  pl_msg g = *m; /* (shallow) its group, for the receivers' cursors */
  g.gid = gid;
  if (n)
    pl__deliver(base, &g, devs, n);
  pl_free(devs);
}

static void pl__deliver_end(pl_router *base) {
  pl__local *r = (pl__local *)base;
  for (int i = 0; i < r->nloops; i++) {
    pl_task *head = r->out_head[i], *tail = r->out_tail[i];
    if (!head)
      continue;
    r->out_head[i] = r->out_tail[i] = NULL;
    if (pl_loop_post_list(((pl__push_task *)head)->loop, head, tail) == PL_OK)
      continue;
    while (head) { /* the loop is closing: the queue keeps these */
      pl__push_task *p = (pl__push_task *)head;
      head = head->next;
      pl_buf_unref(p->frame);
      pl_free(p);
    }
  }
}

static void pl__push_frame(pl_router *base, const uint64_t *devices, size_t n, pl_buf *frame) {
  pl__local *r = (pl__local *)base;
  for (size_t i = 0; i < n; i++) {
    pthread_mutex_lock(&r->mu);
    pl__route *rt = pl_map_get(&r->global, devices[i]);
    pl_loop *loop = rt ? rt->loop : NULL;
    pthread_mutex_unlock(&r->mu);
    if (!loop)
      continue; /* offline: ephemeral frames are not kept */
    pl__push_task *p = pl_malloc(sizeof *p);
    p->task.fn = pl__push_run;
    p->r = r;
    p->loop = loop;
    p->device = devices[i];
    p->qid = p->gid = p->seq = 0;
    p->hint = 0;
    p->ep = NULL;
    p->commit_us = 0;
    p->frame = pl_buf_ref(frame);
    if (pl_loop_post(loop, &p->task) != PL_OK) {
      pl_buf_unref(p->frame);
      pl_free(p);
    }
  }
}

static void pl__push_group_frame(pl_router *base, uint64_t gid, const uint64_t *skip, size_t nskip,
                                 pl_buf *frame) {
  size_t n;
  uint64_t *devs = pl__audience((pl__local *)base, gid, skip, nskip, &n);
  if (n)
    pl__push_frame(base, devs, n, frame);
  pl_free(devs);
}

static int pl__is_online(pl_router *base, uint64_t device) {
  pl__local *r = (pl__local *)base;
  pthread_mutex_lock(&r->mu);
  int on = pl_map_get(&r->global, device) != NULL;
  pthread_mutex_unlock(&r->mu);
  return on;
}

static uint64_t pl__pushed(pl_router *base, uint64_t device, pl_loop *loop, void *ep) {
  pl__local *r = (pl__local *)base;
  (void)loop;
  pthread_mutex_lock(&r->mu);
  pl__route *rt = pl_map_get(&r->global, device);
  uint64_t n = rt && rt->ep == ep ? rt->pushed : 0;
  pthread_mutex_unlock(&r->mu);
  return n;
}

static size_t pl__count(pl_router *base) {
  pl__local *r = (pl__local *)base;
  pthread_mutex_lock(&r->mu);
  size_t n = r->global.len;
  pthread_mutex_unlock(&r->mu);
  return n;
}

static void pl__free_router(pl_router *base) {
  pl__local *r = (pl__local *)base;
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&r->global, &it, &k, &v);)
    pl_free(v);
  pl_map_free(&r->global);
  for (size_t it = 0; pl_map_next(&r->devgroups, &it, &k, &v);) {
    pl_free(((pl__dgroups *)v)->gids);
    pl_free(v);
  }
  pl_map_free(&r->devgroups);
  for (size_t it = 0; pl_map_next(&r->groups, &it, &k, &v);) {
    pl_map_free(&((pl__gset *)v)->pos);
    pl_free(((pl__gset *)v)->devs);
    pl_free(v);
  }
  pl_map_free(&r->groups);
  for (int i = 0; i < r->nloops; i++)
    pl_map_free(&r->local[i]);
  pl_free(r->local);
  pl_free(r->out_head);
  pl_free(r->out_tail);
  pthread_mutex_destroy(&r->mu);
  pl_free(r);
}

static const pl_router_ops pl__local_ops = {
    .attach = pl__attach,
    .detach = pl__detach,
    .deliver = pl__deliver,
    .deliver_end = pl__deliver_end,
    .deliver_group = pl__deliver_group,
    .group_change = pl__group_change,
    .device_groups = pl__device_groups,
    .push_frame = pl__push_frame,
    .push_group_frame = pl__push_group_frame,
    .kick = pl__kick_device,
    .hint = pl__hint,
    .hint_buckets = pl__hint_buckets,
    .pushed = pl__pushed,
    .is_online = pl__is_online,
    .count = pl__count,
    .free = pl__free_router,
};

pl_router *pl_router_local_new(int nloops) {
  pl__local *r = pl_calloc(1, sizeof *r);
  r->base.ops = &pl__local_ops;
  pthread_mutex_init(&r->mu, NULL);
  pl_map_init(&r->global);
  r->nloops = nloops;
  r->local = pl_calloc((size_t)nloops, sizeof *r->local);
  r->out_head = pl_calloc((size_t)nloops, sizeof *r->out_head);
  r->out_tail = pl_calloc((size_t)nloops, sizeof *r->out_tail);
  return &r->base;
}
