/* pl_cluster_apply: what the other nodes say on the bus, applied here.
 *
 * Runs on libnats's delivery thread (on_msg, on_connected) and on the bus
 * thread (on_node_dead). The cluster's lock is never held while calling the
 * inner router or presence (they take their own locks, and presence calls
 * the cluster back under its lock). */
#include <string.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "pl_cluster_int.h"

typedef struct pl__offline_task {
  pl_task task;
  pl__cluster *c;
  uint64_t uid, last_seen;
} pl__offline_task;

static void pl__offline_run(pl_task *t) {
  pl__offline_task *o = (pl__offline_task *)t;
  pl_presence_remote_offline(o->c->presence, o->uid, o->c->loop, o->last_seen);
  pl_free(o);
}

/* A user gone from another node: its grace timer runs on a loop. */
static void pl__post_offline(pl__cluster *c, uint64_t uid, uint64_t last_seen) {
  pl__offline_task *o = pl_malloc(sizeof *o);
  o->task.fn = pl__offline_run;
  o->c = c;
  o->uid = uid;
  o->last_seen = last_seen;
  if (pl_loop_post(c->loop, &o->task) != PL_OK)
    pl_free(o);
}

/* The index of the node called name (made if missing and make), or -1 (mu held). */
static int pl__node(pl__cluster *c, const char *name, size_t len, int make) {
  for (int i = 0; i < c->nnodes; i++)
    if (strlen(c->nodes[i]->name) == len && memcmp(c->nodes[i]->name, name, len) == 0)
      return i;
  if (!make || c->nnodes == PL__MAX_NODES || len > PL_BUSMSG_MAX_NODE)
    return -1;
  pl__peer_node *n = pl_calloc(1, sizeof *n);
  memcpy(n->name, name, len);
  c->nodes[c->nnodes] = n;
  return c->nnodes++;
}

static uint64_t *pl__ids(const pl_busmsg *m) {
  uint64_t *ids = pl_malloc((m->nids ? m->nids : 1) * sizeof *ids);
  for (uint32_t i = 0; i < m->nids; i++)
    ids[i] = pl_busmsg_id(m, i);
  return ids;
}

/* Device m->a is now served by m's node since m->b. If it is attached here
 * too, the older connection goes: ours, or (we say so again) theirs. */
static void pl__on_attach(pl__cluster *c, const pl_busmsg *m) {
  pthread_mutex_lock(&c->mu);
  int idx = pl__node(c, m->node, m->node_len, 1);
  if (idx >= 0)
    pl_map_put(&c->remote, m->a, (void *)(uintptr_t)(idx + 1));
  uint64_t since = (uint64_t)(uintptr_t)pl_map_get(&c->mine, m->a);
  pthread_mutex_unlock(&c->mu);
  if (!since)
    return;
  size_t mylen = strlen(c->node);
  int cmp = memcmp(c->node, m->node, mylen < m->node_len ? mylen : m->node_len);
  int ours_older = since < m->b || (since == m->b && (cmp < 0 || (cmp == 0 && mylen < m->node_len)));
  if (ours_older) {
    pl_info("bus: device %llu logged in on node %.*s: closing its connection here", (unsigned long long)m->a,
            (int)m->node_len, m->node);
    c->inner->ops->kick(c->inner, m->a);
  } else {
    pl_cluster__pub(c, PL_BUSMSG_ATTACH, m->a, since);
  }
}

static void pl__on_detach(pl__cluster *c, const pl_busmsg *m) {
  pthread_mutex_lock(&c->mu);
  int idx = pl__node(c, m->node, m->node_len, 0);
  if (idx >= 0 && (uintptr_t)pl_map_get(&c->remote, m->a) == (uintptr_t)(idx + 1))
    pl_map_del(&c->remote, m->a);
  pthread_mutex_unlock(&c->mu);
}

static void pl__on_online(pl__cluster *c, const pl_busmsg *m) {
  char name[128];
  snprintf(name, sizeof name, "%.*s", (int)(m->plen < 127 ? m->plen : 127),
           m->payload ? (const char *)m->payload : "");
  pthread_mutex_lock(&c->mu);
  int idx = pl__node(c, m->node, m->node_len, 1);
  int fresh = idx >= 0 && !pl_map_get(&c->nodes[idx]->users, m->a);
  if (fresh) /* an announcement again (STATE) counts once */
    pl_map_put(&c->nodes[idx]->users, m->a, (void *)1);
  pthread_mutex_unlock(&c->mu);
  if (fresh)
    pl_presence_remote_online(c->presence, m->a, name);
}

static void pl__on_offline(pl__cluster *c, const pl_busmsg *m) {
  pthread_mutex_lock(&c->mu);
  int idx = pl__node(c, m->node, m->node_len, 0);
  int had = idx >= 0 && pl_map_del(&c->nodes[idx]->users, m->a) != NULL;
  pthread_mutex_unlock(&c->mu);
  if (had)
    pl__post_offline(c, m->a, m->b);
}

/* What this node serves, for the others: devices and users. */
static void pl__announce(pl__cluster *c) {
  uint64_t k;
  void *v;
  size_t nd = 0, nu = 0;
  pthread_mutex_lock(&c->mu);
  uint64_t *devs = pl_malloc((c->mine.len + 1) * 2 * sizeof *devs);
  for (size_t it = 0; pl_map_next(&c->mine, &it, &k, &v); nd++) {
    devs[2 * nd] = k;
    devs[2 * nd + 1] = (uint64_t)(uintptr_t)v;
  }
  uint64_t *uids = pl_malloc((c->users.len + 1) * sizeof *uids);
  char **names = pl_malloc((c->users.len + 1) * sizeof *names);
  for (size_t it = 0; pl_map_next(&c->users, &it, &k, &v); nu++) {
    uids[nu] = k;
    size_t len = strlen(v);
    names[nu] = pl_malloc(len + 1);
    memcpy(names[nu], v, len + 1);
  }
  pthread_mutex_unlock(&c->mu);
  for (size_t i = 0; i < nd; i++)
    pl_cluster__pub(c, PL_BUSMSG_ATTACH, devs[2 * i], devs[2 * i + 1]);
  for (size_t i = 0; i < nu; i++) {
    pl_busmsg m = {.type = PL_BUSMSG_ONLINE,
                   .a = uids[i],
                   .plen = (uint32_t)strlen(names[i]),
                   .payload = (const uint8_t *)names[i]};
    pl_bus_publish(c->bus, &m);
    pl_free(names[i]);
  }
  pl_free(devs);
  pl_free(uids);
  pl_free(names);
}

/* Ephemeral frames: to whichever of the devices are attached here. */
static void pl__on_frame(pl__cluster *c, const pl_busmsg *m) {
  if (!m->plen)
    return;
  uint64_t *ids = pl__ids(m);
  pl_buf *frame = pl_buf_copy(m->payload, m->plen);
  if (m->type == PL_BUSMSG_FRAME)
    c->inner->ops->push_frame(c->inner, ids, m->nids, frame);
  else
    c->inner->ops->push_group_frame(c->inner, m->a, ids, m->nids, frame);
  pl_buf_unref(frame);
  pl_free(ids);
}

static void pl__on_ids(pl__cluster *c, const pl_busmsg *m) {
  uint64_t *ids = pl__ids(m);
  if (m->type == PL_BUSMSG_HINT) {
    c->inner->ops->hint(c->inner, ids, m->nids, 0);
  } else { /* GCHANGE: the committing node's hook, for the audiences cached here */
    pl_group_change gc = {.gid = m->a, .devices = ids, .n = m->nids, .join = m->b != 0};
    c->inner->ops->group_change(c->inner, &gc);
  }
  pl_free(ids);
}

void pl_cluster__on_msg(void *ud, const pl_busmsg *m) {
  pl__cluster *c = ud;
  switch (m->type) {
  case PL_BUSMSG_HINT:
  case PL_BUSMSG_GCHANGE: pl__on_ids(c, m); break;
  case PL_BUSMSG_GHINT: c->inner->ops->hint(c->inner, NULL, 0, m->a); break;
  case PL_BUSMSG_FRAME:
  case PL_BUSMSG_GFRAME: pl__on_frame(c, m); break;
  case PL_BUSMSG_ATTACH: pl__on_attach(c, m); break;
  case PL_BUSMSG_DETACH: pl__on_detach(c, m); break;
  case PL_BUSMSG_KICK: c->inner->ops->kick(c->inner, m->a); break;
  case PL_BUSMSG_ONLINE: pl__on_online(c, m); break;
  case PL_BUSMSG_OFFLINE: pl__on_offline(c, m); break;
  case PL_BUSMSG_FORGET: pl_presence_remote_forget(c->presence, m->a, m->b); break;
  case PL_BUSMSG_SEEN: pl_presence_remote_seen(c->presence, m->a, m->b != 0); break;
  case PL_BUSMSG_STATE:
    if (!m->plen || (m->plen == strlen(c->node) && memcmp(m->payload, c->node, m->plen) == 0))
      pl__announce(c);
    break;
  default: /* ALIVE: the bus noted it */ break;
  }
}

/* A node silent too long (or restarted): its users are offline and its
 * devices nowhere, as far as this node can tell; it announces them again
 * if it comes back. */
void pl_cluster__on_node_dead(void *ud, const char *node, uint64_t incarnation) {
  pl__cluster *c = ud;
  (void)incarnation;
  uint64_t k, *uids = NULL, *devs = NULL;
  void *v;
  size_t nu = 0, nd = 0;
  pthread_mutex_lock(&c->mu);
  int idx = pl__node(c, node, strlen(node), 0);
  if (idx >= 0) {
    pl__peer_node *n = c->nodes[idx];
    uids = pl_malloc((n->users.len + 1) * sizeof *uids);
    for (size_t it = 0; pl_map_next(&n->users, &it, &k, &v);)
      uids[nu++] = k;
    pl_map_free(&n->users);
    memset(&n->users, 0, sizeof n->users);
    devs = pl_malloc((c->remote.len + 1) * sizeof *devs);
    for (size_t it = 0; pl_map_next(&c->remote, &it, &k, &v);)
      if ((uintptr_t)v == (uintptr_t)(idx + 1))
        devs[nd++] = k;
    for (size_t i = 0; i < nd; i++)
      pl_map_del(&c->remote, devs[i]);
  }
  pthread_mutex_unlock(&c->mu);
  pl_warn("bus: node %s is gone: %zu users offline, %zu devices released", node, nu, nd);
  uint64_t now = pl_cluster__wall_ms();
  for (size_t i = 0; i < nu; i++)
    pl__post_offline(c, uids[i], now);
  pl_free(uids);
  pl_free(devs);
}

/* Whatever was said on the bus while this node was cut off is lost: say
 * what we serve, ask the others for theirs, and (again) let every local
 * session read its queue, for the hints that never came. */
void pl_cluster__on_connected(void *ud, int again) {
  pl__cluster *c = ud;
  pl__announce(c);
  pl_busmsg st = {.type = PL_BUSMSG_STATE};
  pl_bus_publish(c->bus, &st);
  if (again)
    c->inner->ops->hint(c->inner, NULL, 0, 0);
}
