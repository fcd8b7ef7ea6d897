#include "pl_presence.h"

#include <pthread.h>
#include <string.h>
#include <uv.h>

#include "../common/pl_map.h"
#include "../common/pl_mem.h"
#include "../proto/pl_frame.h"

typedef struct pl__sub {
  uint64_t device, viewer;
} pl__sub;

typedef struct pl__entry {
  uint64_t uid;
  char name[40];
  uint32_t online;  /* connected devices */
  uint32_t gen;     /* bumped when an offline event is cancelled */
  int announced;    /* followers were last told "online" */
  int pending;      /* an offline event waits for its grace timer */
  int seen_visible; /* followers may see last_seen */
  uint64_t last_seen;
  pl__sub *subs;
  size_t nsubs, cap;
} pl__entry;

/* Whom a device follows, to undo it on disconnect. owner is the connection
 * that subscribed: a device's old connection, closed after a newer one took
 * over (protocol.md 7.4), must not undo the newer one's follows. */
typedef struct pl__follow {
  uint64_t *uids;
  size_t n;
  uint64_t owner;
} pl__follow;

typedef struct pl__timer {
  uv_timer_t t;
  pl_presence *p;
  uint64_t uid;
  uint32_t gen;
  struct pl__timer *prev, *next;
} pl__timer;

struct pl_presence {
  pthread_mutex_t mu;
  pl_router *router;
  uint32_t grace_ms;
  pl_map users;   /* uid -> pl__entry, or a tagged count (see pl__count) */
  pl_map follows; /* device -> pl__follow */
  pl__timer *timers;
  pl_presence_peer peer; /* a cluster's (peer.ud NULL: none) */
  pl_map localn;         /* with a peer: uid -> devices of uid on this node */
  uint32_t gens;         /* source of entry generations: unique, so no stale timer matches */
};

pl_presence *pl_presence_new(pl_router *router, uint32_t grace_ms) {
  pl_presence *p = pl_calloc(1, sizeof *p);
  pthread_mutex_init(&p->mu, NULL);
  p->router = router;
  p->grace_ms = grace_ms;
  return p;
}

/* An online user nobody follows is only a count of connected devices, kept
 * in the map's value slot with its low bit set (entries are malloc'ed, so
 * their low bit is clear): no allocation, no event, one map slot. */
static int pl__tagged(const void *v) { return ((uintptr_t)v & 1u) != 0; }
static void *pl__tag(uint32_t online) { return (void *)(((uintptr_t)online << 1) | 1u); }
static uint32_t pl__count(const void *v) { return (uint32_t)((uintptr_t)v >> 1); }

/* uid's entry, or NULL if it has none (mu held); *online gets its count. */
static pl__entry *pl__find(pl_presence *p, uint64_t uid, uint32_t *online) {
  void *v = pl_map_get(&p->users, uid);
  if (!v || pl__tagged(v)) {
    *online = v ? pl__count(v) : 0;
    return NULL;
  }
  *online = ((pl__entry *)v)->online;
  return v;
}

static void pl__entry_free(pl__entry *e) {
  pl_free(e->subs);
  pl_free(e);
}

void pl_presence_free(pl_presence *p) {
  uint64_t k;
  void *v;
  if (!p)
    return;
  for (size_t it = 0; pl_map_next(&p->users, &it, &k, &v);)
    if (!pl__tagged(v))
      pl__entry_free(v);
  for (size_t it = 0; pl_map_next(&p->follows, &it, &k, &v);) {
    pl_free(((pl__follow *)v)->uids);
    pl_free(v);
  }
  pl_map_free(&p->users);
  pl_map_free(&p->follows);
  pl_map_free(&p->localn);
  while (p->timers) { /* their handles were closed with their loops */
    pl__timer *t = p->timers;
    p->timers = t->next;
    pl_free(t);
  }
  pthread_mutex_destroy(&p->mu);
  pl_free(p);
}

/* uid's entry, made (from its count, if it is online) when it has none. */
static pl__entry *pl__get(pl_presence *p, uint64_t uid) {
  uint32_t online;
  pl__entry *e = pl__find(p, uid, &online);
  if (!e) {
    e = pl_calloc(1, sizeof *e);
    e->uid = uid;
    e->seen_visible = 1;
    e->online = online;
    e->announced = online > 0; /* what a new follower is told first */
    pl_map_put(&p->users, uid, e);
  }
  return e;
}

/* Shrinks an entry nobody follows back to a count, or drops it (mu held). */
static void pl__gc(pl_presence *p, pl__entry *e) {
  if (e->nsubs || e->pending)
    return;
  if (e->online)
    pl_map_put(&p->users, e->uid, pl__tag(e->online));
  else
    pl_map_del(&p->users, e->uid);
  pl__entry_free(e);
}

/* The event for e's followers, or NULL if nobody follows (mu held).
 * *devs gets their devices (pl_free it). */
static pl_buf *pl__event(pl__entry *e, uint64_t **devs, size_t *n) {
  *devs = NULL;
  *n = e->nsubs;
  if (!e->nsubs || !e->name[0])
    return NULL;
  Parley__Presence m = PARLEY__PRESENCE__INIT;
  m.ref = "";
  m.user = e->name;
  m.visible = 1;
  m.online = e->online > 0;
  m.last_seen = e->seen_visible ? e->last_seen : 0;
  *devs = pl_malloc(e->nsubs * sizeof **devs);
  for (size_t i = 0; i < e->nsubs; i++)
    (*devs)[i] = e->subs[i].device;
  return pl_frame_encode(PARLEY__FRAME_TYPE__FRAME_PRESENCE, &m.base);
}

/* Sends an event built under the lock, after releasing it. */
static void pl__emit(pl_presence *p, pl_buf *frame, uint64_t *devs, size_t n) {
  if (frame)
    p->router->ops->push_frame(p->router, devs, n, frame);
  pl_buf_unref(frame);
  pl_free(devs);
}

static void pl__online(pl_presence *p, uint64_t uid, const char *user) {
  uint64_t *devs = NULL;
  size_t n = 0;
  pl_buf *frame = NULL;
  pthread_mutex_lock(&p->mu);
  uint32_t online;
  pl__entry *e = pl__find(p, uid, &online);
  if (!e) { /* nobody follows: count the device, tell no one */
    pl_map_put(&p->users, uid, pl__tag(online + 1));
    pthread_mutex_unlock(&p->mu);
    return;
  }
  snprintf(e->name, sizeof e->name, "%s", user);
  if (e->online++ == 0) {
    e->gen = ++p->gens; /* cancels a pending offline event: a flap shows nothing */
    e->pending = 0;
    if (!e->announced) {
      e->announced = 1;
      frame = pl__event(e, &devs, &n);
    }
  }
  pl__gc(p, e); /* its followers may have left while it was away */
  pthread_mutex_unlock(&p->mu);
  pl__emit(p, frame, devs, n);
}

static void pl__timer_closed(uv_handle_t *h) { pl_free(h->data); }

static void pl__grace_over(uv_timer_t *t) {
  pl__timer *pt = t->data;
  pl_presence *p = pt->p;
  uint64_t *devs = NULL;
  size_t n = 0;
  pl_buf *frame = NULL;
  pthread_mutex_lock(&p->mu);
  if (pt->prev)
    pt->prev->next = pt->next;
  else
    p->timers = pt->next;
  if (pt->next)
    pt->next->prev = pt->prev;
  uint32_t online;
  pl__entry *e = pl__find(p, pt->uid, &online);
  if (e && e->gen == pt->gen && !e->online) {
    e->pending = 0;
    if (e->announced) {
      e->announced = 0;
      frame = pl__event(e, &devs, &n);
    }
    pl__gc(p, e);
  }
  pthread_mutex_unlock(&p->mu);
  pl__emit(p, frame, devs, n);
  uv_close((uv_handle_t *)t, pl__timer_closed);
}

static void pl__offline(pl_presence *p, uint64_t uid, pl_loop *loop, uint64_t now_ms) {
  pthread_mutex_lock(&p->mu);
  uint32_t online;
  pl__entry *e = pl__find(p, uid, &online);
  if (!e) { /* nobody follows: nobody to tell */
    if (online > 1)
      pl_map_put(&p->users, uid, pl__tag(online - 1));
    else if (online == 1)
      pl_map_del(&p->users, uid);
    pthread_mutex_unlock(&p->mu);
    return;
  }
  if (now_ms > e->last_seen)
    e->last_seen = now_ms;
  if (!e->online || --e->online > 0) {
    pthread_mutex_unlock(&p->mu);
    return;
  }
  if (!e->nsubs) { /* the followers left meanwhile */
    pl__gc(p, e);
    pthread_mutex_unlock(&p->mu);
    return;
  }
  e->pending = 1;
  pl__timer *t = pl_calloc(1, sizeof *t);
  t->p = p;
  t->uid = uid;
  t->gen = e->gen = ++p->gens;
  t->next = p->timers;
  if (p->timers)
    p->timers->prev = t;
  p->timers = t;
  pthread_mutex_unlock(&p->mu);
  uv_timer_init(pl_loop_uv(loop), &t->t);
  t->t.data = t;
  uv_timer_start(&t->t, pl__grace_over, p->grace_ms, 0);
  uv_unref((uv_handle_t *)&t->t); /* a pending offline event does not delay a shutdown */
}

int pl_presence_is_online(pl_presence *p, uint64_t uid) {
  uint32_t online;
  pthread_mutex_lock(&p->mu);
  pl__find(p, uid, &online);
  pthread_mutex_unlock(&p->mu);
  return online > 0;
}

void pl_presence_online_count(pl_presence *p, uint64_t *users, uint64_t *conns) {
  uint64_t k;
  void *v;
  *users = *conns = 0;
  pthread_mutex_lock(&p->mu);
  for (size_t it = 0; pl_map_next(&p->users, &it, &k, &v);) {
    uint32_t n = pl__tagged(v) ? pl__count(v) : ((pl__entry *)v)->online;
    *users += n > 0;
    *conns += n;
  }
  pthread_mutex_unlock(&p->mu);
}

/* Removes device from uid's followers (mu held). */
static void pl__unfollow(pl_presence *p, uint64_t uid, uint64_t device) {
  uint32_t online;
  pl__entry *e = pl__find(p, uid, &online);
  if (!e)
    return;
  for (size_t i = 0; i < e->nsubs; i++)
    if (e->subs[i].device == device) {
      e->subs[i] = e->subs[--e->nsubs];
      break;
    }
  pl__gc(p, e);
}

static void pl__unsubscribe(pl_presence *p, uint64_t device) {
  pl__follow *f = pl_map_del(&p->follows, device);
  if (!f)
    return;
  for (size_t i = 0; i < f->n; i++)
    pl__unfollow(p, f->uids[i], device);
  pl_free(f->uids);
  pl_free(f);
}

void pl_presence_unsubscribe(pl_presence *p, uint64_t device, uint64_t owner) {
  pthread_mutex_lock(&p->mu);
  pl__follow *f = pl_map_get(&p->follows, device);
  if (f && f->owner == owner)
    pl__unsubscribe(p, device);
  pthread_mutex_unlock(&p->mu);
}

void pl_presence_subscribe(pl_presence *p, uint64_t device, uint64_t owner, uint64_t viewer_uid,
                           const pl_presence_view *views, size_t n) {
  pthread_mutex_lock(&p->mu);
  pl__unsubscribe(p, device);
  pl__follow *f = pl_calloc(1, sizeof *f);
  f->owner = owner;
  f->uids = pl_malloc((n ? n : 1) * sizeof *f->uids);
  for (size_t i = 0; i < n; i++) {
    const pl_presence_view *v = &views[i];
    if (!v->uid || !v->visible || v->uid == viewer_uid)
      continue;
    pl__entry *e = pl__get(p, v->uid);
    if (!e->name[0])
      snprintf(e->name, sizeof e->name, "%s", v->user);
    e->seen_visible = v->seen_visible;
    if (v->last_seen > e->last_seen)
      e->last_seen = v->last_seen;
    if (e->nsubs == e->cap) {
      e->cap = e->cap ? e->cap * 2 : 4;
      e->subs = pl_realloc(e->subs, e->cap * sizeof *e->subs);
    }
    e->subs[e->nsubs++] = (pl__sub){device, viewer_uid};
    f->uids[f->n++] = v->uid;
  }
  pl_map_put(&p->follows, device, f);
  pthread_mutex_unlock(&p->mu);
}

void pl_presence_remote_forget(pl_presence *p, uint64_t uid, uint64_t viewer_uid) {
  pthread_mutex_lock(&p->mu);
  uint32_t online;
  pl__entry *e = pl__find(p, uid, &online);
  for (size_t i = 0; e && i < e->nsubs;) {
    if (e->subs[i].viewer != viewer_uid) {
      i++;
      continue;
    }
    /* Also out of that device's follow list, so a disconnect finds nothing. */
    pl__follow *f = pl_map_get(&p->follows, e->subs[i].device);
    for (size_t k = 0; f && k < f->n; k++)
      if (f->uids[k] == uid) {
        f->uids[k] = f->uids[--f->n];
        break;
      }
    e->subs[i] = e->subs[--e->nsubs];
  }
  if (e)
    pl__gc(p, e);
  pthread_mutex_unlock(&p->mu);
}

void pl_presence_remote_seen(pl_presence *p, uint64_t uid, int visible) {
  pthread_mutex_lock(&p->mu);
  uint32_t online;
  pl__entry *e = pl__find(p, uid, &online);
  if (e)
    e->seen_visible = visible;
  pthread_mutex_unlock(&p->mu);
}

/* ---- a cluster ---------------------------------------------------------- */

void pl_presence_set_peer(pl_presence *p, const pl_presence_peer *peer) { p->peer = *peer; }

/* This node's count of uid's devices moves by delta; the peer hears of
 * 0 -> 1 and 1 -> 0. */
static void pl__local_count(pl_presence *p, uint64_t uid, int delta, const char *user, uint64_t now_ms) {
  if (!p->peer.ud)
    return;
  pthread_mutex_lock(&p->mu);
  uintptr_t n = (uintptr_t)pl_map_get(&p->localn, uid);
  if (delta > 0) {
    pl_map_put(&p->localn, uid, (void *)(n + 1));
    if (n == 0)
      p->peer.online(p->peer.ud, uid, user);
  } else if (n) {
    if (n == 1)
      pl_map_del(&p->localn, uid);
    else
      pl_map_put(&p->localn, uid, (void *)(n - 1));
    if (n == 1)
      p->peer.offline(p->peer.ud, uid, now_ms);
  }
  pthread_mutex_unlock(&p->mu);
}

void pl_presence_online(pl_presence *p, uint64_t uid, const char *user) {
  pl__local_count(p, uid, 1, user, 0);
  pl__online(p, uid, user);
}

void pl_presence_offline(pl_presence *p, uint64_t uid, pl_loop *loop, uint64_t now_ms) {
  pl__local_count(p, uid, -1, NULL, now_ms);
  pl__offline(p, uid, loop, now_ms);
}

void pl_presence_remote_online(pl_presence *p, uint64_t uid, const char *user) { pl__online(p, uid, user); }

void pl_presence_remote_offline(pl_presence *p, uint64_t uid, pl_loop *loop, uint64_t last_seen) {
  pl__offline(p, uid, loop, last_seen);
}

void pl_presence_forget(pl_presence *p, uint64_t uid, uint64_t viewer_uid) {
  if (p->peer.ud)
    p->peer.forget(p->peer.ud, uid, viewer_uid);
  pl_presence_remote_forget(p, uid, viewer_uid);
}

void pl_presence_set_seen_visible(pl_presence *p, uint64_t uid, int visible) {
  if (p->peer.ud)
    p->peer.seen(p->peer.ud, uid, visible);
  pl_presence_remote_seen(p, uid, visible);
}
