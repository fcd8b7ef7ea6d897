#include "pl_router_cluster.h"

#include <pthread.h>
#include <string.h>
#include <sys/time.h>

#include "../common/pl_log.h"
#include "../common/pl_map.h"
#include "../common/pl_mem.h"
#include "pl_cluster_int.h"

uint64_t pl_cluster__wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

void pl_cluster__pub(pl__cluster *c, uint8_t type, uint64_t a, uint64_t b) {
  pl_busmsg m = {.type = type, .a = a, .b = b};
  if (c->bus)
    pl_bus_publish(c->bus, &m);
}

/* Publishes ids in chunks, each with a, b and the payload. */
void pl_cluster__pub_ids(pl__cluster *c, uint8_t type, uint64_t a, uint64_t b, const uint64_t *ids, size_t n,
                         const uint8_t *payload, size_t plen) {
  for (size_t at = 0; c->bus && (at < n || (at == 0 && n == 0));) {
    size_t k = n - at < PL__CHUNK ? n - at : PL__CHUNK;
    pl_busmsg m = {.type = type,
                   .a = a,
                   .b = b,
                   .nids = (uint32_t)k,
                   .ids = ids + at,
                   .plen = (uint32_t)plen,
                   .payload = payload};
    pl_bus_publish(c->bus, &m);
    at += k;
    if (!n)
      break;
  }
}

static void pl__push_id(uint64_t **a, size_t *n, size_t *cap, uint64_t id) {
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 64;
    *a = pl_realloc(*a, *cap * sizeof **a);
  }
  (*a)[(*n)++] = id;
}

/* ---- the router calls: the inner router first, then the bus ---- */

static void pl__attach(pl_router *base, uint64_t device, pl_loop *loop, void *ep) {
  pl__cluster *c = (pl__cluster *)base;
  c->inner->ops->attach(c->inner, device, loop, ep);
  uint64_t since = pl_cluster__wall_ms();
  pthread_mutex_lock(&c->mu);
  pl_map_put(&c->mine, device, (void *)(uintptr_t)since);
  pthread_mutex_unlock(&c->mu);
  pl_cluster__pub(c, PL_BUSMSG_ATTACH, device, since); /* its connection elsewhere closes */
}

static void pl__detach(pl_router *base, uint64_t device, pl_loop *loop, void *ep) {
  pl__cluster *c = (pl__cluster *)base;
  c->inner->ops->detach(c->inner, device, loop, ep);
  if (c->inner->ops->is_online(c->inner, device))
    return; /* a newer connection here has it */
  pthread_mutex_lock(&c->mu);
  int had = pl_map_del(&c->mine, device) != NULL;
  pthread_mutex_unlock(&c->mu);
  if (had)
    pl_cluster__pub(c, PL_BUSMSG_DETACH, device, 0);
}

static void pl__deliver(pl_router *base, const pl_msg *m, const uint64_t *devices, size_t n) {
  pl__cluster *c = (pl__cluster *)base;
  c->inner->ops->deliver(c->inner, m, devices, n);
  /* Not attached here: maybe on another node, which reads the store. */
  for (size_t i = 0; i < n; i++)
    if (!c->inner->ops->is_online(c->inner, devices[i]))
      pl__push_id(&c->hint_devs, &c->nhint_devs, &c->cap_devs, devices[i]);
}

static void pl__deliver_group(pl_router *base, const pl_msg *m, uint64_t gid, uint64_t skip) {
  pl__cluster *c = (pl__cluster *)base;
  c->inner->ops->deliver_group(c->inner, m, gid, skip);
  if (!c->nhint_gids || c->hint_gids[c->nhint_gids - 1] != gid)
    pl__push_id(&c->hint_gids, &c->nhint_gids, &c->cap_gids, gid);
}

/* One bus message per commit for its 1:1 hints, one per group. */
static void pl__deliver_end(pl_router *base) {
  pl__cluster *c = (pl__cluster *)base;
  c->inner->ops->deliver_end(c->inner);
  if (c->nhint_devs)
    pl_cluster__pub_ids(c, PL_BUSMSG_HINT, 0, 0, c->hint_devs, c->nhint_devs, NULL, 0);
  for (size_t i = 0; i < c->nhint_gids; i++)
    if (i == 0 || c->hint_gids[i] != c->hint_gids[i - 1])
      pl_cluster__pub(c, PL_BUSMSG_GHINT, c->hint_gids[i], 0);
  c->nhint_devs = c->nhint_gids = 0;
}

static void pl__group_change(pl_router *base, const pl_group_change *gc) {
  pl__cluster *c = (pl__cluster *)base;
  c->inner->ops->group_change(c->inner, gc);
  pl_cluster__pub_ids(c, PL_BUSMSG_GCHANGE, gc->gid, gc->join ? 1 : 0, gc->devices, gc->n, NULL, 0);
}

static void pl__device_groups(pl_router *base, uint64_t device, const uint64_t *gids, size_t n) {
  pl__cluster *c = (pl__cluster *)base;
  c->inner->ops->device_groups(c->inner, device, gids, n); /* read by this node, for its device */
}

static void pl__push_group_frame(pl_router *base, uint64_t gid, const uint64_t *skip, size_t nskip,
                                 pl_buf *frame) {
  pl__cluster *c = (pl__cluster *)base;
  c->inner->ops->push_group_frame(c->inner, gid, skip, nskip, frame);
  pl_cluster__pub_ids(c, PL_BUSMSG_GFRAME, gid, 0, skip, nskip, frame->data, frame->len);
}

static void pl__push_frame(pl_router *base, const uint64_t *devices, size_t n, pl_buf *frame) {
  pl__cluster *c = (pl__cluster *)base;
  c->inner->ops->push_frame(c->inner, devices, n, frame);
  uint64_t stack[32], *away = n <= 32 ? stack : pl_malloc(n * sizeof *away);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (!c->inner->ops->is_online(c->inner, devices[i]))
      away[k++] = devices[i];
  if (k)
    pl_cluster__pub_ids(c, PL_BUSMSG_FRAME, 0, 0, away, k, frame->data, frame->len);
  if (away != stack)
    pl_free(away);
}

static void pl__kick(pl_router *base, uint64_t device) {
  pl__cluster *c = (pl__cluster *)base;
  c->inner->ops->kick(c->inner, device);
  pl_cluster__pub(c, PL_BUSMSG_KICK, device, 0);
}

static void pl__hint(pl_router *base, const uint64_t *devices, size_t n, uint64_t gid) {
  pl__cluster *c = (pl__cluster *)base;
  c->inner->ops->hint(c->inner, devices, n, gid);
}

/* A move: each node took the map itself, so nothing goes on the bus. */
static void pl__hint_buckets(pl_router *base, const uint64_t *bits) {
  pl__cluster *c = (pl__cluster *)base;
  c->inner->ops->hint_buckets(c->inner, bits);
}

static uint64_t pl__pushed(pl_router *base, uint64_t device, pl_loop *loop, void *ep) {
  pl__cluster *c = (pl__cluster *)base;
  return c->inner->ops->pushed(c->inner, device, loop, ep);
}

/* Attached here or, as far as the bus told, on another node. */
static int pl__is_online(pl_router *base, uint64_t device) {
  pl__cluster *c = (pl__cluster *)base;
  if (c->inner->ops->is_online(c->inner, device))
    return 1;
  pthread_mutex_lock(&c->mu);
  int on = pl_map_get(&c->remote, device) != NULL;
  pthread_mutex_unlock(&c->mu);
  return on;
}

static size_t pl__count(pl_router *base) {
  pl__cluster *c = (pl__cluster *)base;
  return c->inner->ops->count(c->inner);
}

static void pl__free_names(pl_map *m) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(m, &it, &k, &v);)
    pl_free(v);
  pl_map_free(m);
}

static void pl__free(pl_router *base) {
  pl__cluster *c = (pl__cluster *)base;
  pl_bus_close(c->bus); /* no handler runs after this */
  c->inner->ops->free(c->inner);
  pl_map_free(&c->mine);
  pl__free_names(&c->users);
  pl_map_free(&c->remote);
  for (int i = 0; i < c->nnodes; i++) {
    pl_map_free(&c->nodes[i]->users);
    pl_free(c->nodes[i]);
  }
  pl_free(c->hint_devs);
  pl_free(c->hint_gids);
  pthread_mutex_destroy(&c->mu);
  pl_free(c);
}

static const pl_router_ops pl__cluster_ops = {
    .attach = pl__attach,
    .detach = pl__detach,
    .deliver = pl__deliver,
    .deliver_end = pl__deliver_end,
    .deliver_group = pl__deliver_group,
    .group_change = pl__group_change,
    .device_groups = pl__device_groups,
    .push_frame = pl__push_frame,
    .push_group_frame = pl__push_group_frame,
    .kick = pl__kick,
    .hint = pl__hint,
    .hint_buckets = pl__hint_buckets,
    .pushed = pl__pushed,
    .is_online = pl__is_online,
    .count = pl__count,
    .free = pl__free,
};

pl_router *pl_router_cluster_new(pl_router *inner) {
  pl__cluster *c = pl_calloc(1, sizeof *c);
  c->base.ops = &pl__cluster_ops;
  c->inner = inner;
  pthread_mutex_init(&c->mu, NULL);
  return &c->base;
}

void pl_router_cluster_stop(pl_router *r) { pl_bus_stop(((pl__cluster *)r)->bus); }

pl_bus *pl_router_cluster_bus(pl_router *r) { return ((pl__cluster *)r)->bus; }

/* ---- presence: this node's side (pl_presence_peer; presence's lock held) ---- */

static void pl__peer_online(void *ud, uint64_t uid, const char *user) {
  pl__cluster *c = ud;
  size_t len = strlen(user);
  char *name = pl_malloc(len + 1);
  memcpy(name, user, len + 1);
  pthread_mutex_lock(&c->mu);
  pl_free(pl_map_put(&c->users, uid, name));
  pthread_mutex_unlock(&c->mu);
  pl_busmsg m = {.type = PL_BUSMSG_ONLINE, .a = uid, .plen = (uint32_t)len, .payload = (const uint8_t *)user};
  pl_bus_publish(c->bus, &m);
}

static void pl__peer_offline(void *ud, uint64_t uid, uint64_t last_seen) {
  pl__cluster *c = ud;
  pthread_mutex_lock(&c->mu);
  pl_free(pl_map_del(&c->users, uid));
  pthread_mutex_unlock(&c->mu);
  pl_cluster__pub(c, PL_BUSMSG_OFFLINE, uid, last_seen);
}

static void pl__peer_forget(void *ud, uint64_t uid, uint64_t viewer) {
  pl_cluster__pub(ud, PL_BUSMSG_FORGET, uid, viewer);
}

static void pl__peer_seen(void *ud, uint64_t uid, int visible) {
  pl_cluster__pub(ud, PL_BUSMSG_SEEN, uid, visible != 0);
}

pl_err pl_router_cluster_start(pl_router *r, pl_presence *presence, pl_loop *loop, const pl_bus_config *bus) {
  pl__cluster *c = (pl__cluster *)r;
  snprintf(c->node, sizeof c->node, "%s", bus->node);
  c->bcfg = *bus;
  c->bcfg.node = c->node;
  c->inner->sink = c->base.sink; /* set by the core, before any call */
  c->presence = presence;
  c->loop = loop;
  pl_bus_handlers h = {.ud = c,
                       .on_msg = pl_cluster__on_msg,
                       .on_node_dead = pl_cluster__on_node_dead,
                       .on_connected = pl_cluster__on_connected};
  pl_err e = pl_bus_open(&c->bus, &c->bcfg, &h);
  if (e != PL_OK)
    return e;
  pl_presence_peer peer = {.ud = c,
                           .online = pl__peer_online,
                           .offline = pl__peer_offline,
                           .forget = pl__peer_forget,
                           .seen = pl__peer_seen};
  pl_presence_set_peer(presence, &peer);
  return PL_OK;
}
