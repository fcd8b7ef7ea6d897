/* pl_store_shard: a request's shard, and the requests that run on every
 * shard (docs/scaling.md 7, steps 1 and 2).
 *
 * A user's rows live on the shard of its home bucket (pl_bucket.h): a
 * request goes there, found from what it carries: the asking user's id,
 * a name (sign-up, sign-in), a token's bucket (resume, media) or a group
 * id. A 1:1 send goes to its conversation's shard, that of the
 * pair's lower bucket (the sender's id and the peer's name give both),
 * which copies it to the other user's shard (pg_relay.c). A request that
 * names a group goes to the group's shard (its id's bucket: its
 * creator's), which reads its members' users on their shards
 * (pg_groups.c). One shard answers every request but those below, which
 * concern the whole server or the asker's groups on every shard and run
 * on each shard as a copy of the request (a "kid"), their answers merged
 * into the request by the last kid to finish; and push notifications,
 * split by their devices' shards. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../common/pl_mem.h"
#include "../rules/pl_bucket.h"
#include "pl_shardmap.h"
#include "pl_store_int.h"

static int pl__of_id(uint64_t id, const pl_shardmap *m, unsigned n) {
  return (int)pl_shardmap_of(m, pl_bucket_of_id(id), n);
}

static int pl__of_name(const char *name, const pl_shardmap *m, unsigned n) {
  return name ? (int)pl_shardmap_of(m, pl_bucket_of_name(name, strlen(name)), n) : 0;
}

static int pl__of_route(uint32_t route, const pl_shardmap *m, unsigned n) {
  return route ? (int)pl_shardmap_of(m, route - 1, n) : 0;
}

static int pl__admin(const pl_store_admin_req *a, const pl_shardmap *m, unsigned n) {
  switch (a->in.action) {
  case PL_ADMIN_USERS:
  case PL_ADMIN_GROUPS:
  case PL_ADMIN_TOP_QUEUES:
  case PL_ADMIN_STATS: return PL_ROUTE_EACH;
  case PL_ADMIN_GROUP:
  case PL_ADMIN_REMOVE: return pl__of_id(a->in.group, m, n);
  case PL_ADMIN_INVITE: /* the invites live on shard 0 (a sign-up elsewhere: pl__signup_start) */
  case PL_ADMIN_INVITES:
  case PL_ADMIN_INVITE_DEL:
  case PL_ADMIN_INVITE_TAKE:
  case PL_ADMIN_INVITE_GIVE: return 0;
  default: return pl__of_name(a->in.user, m, n);
  }
}

/* A 1:1 send: its conversation's shard, the pair's lower bucket's (an
 * attachment's upload is read and granted on its owner's shard from
 * there, pg_media.c). A group's: the group's. */
static int pl__of_send(const pl_store_req *r, const pl_shardmap *m, unsigned n) {
  const pl_store_send_req *s = &r->u.send;
  if (s->in.group)
    return pl__of_id(s->in.group, m, n);
  if (!s->in.peer)
    return pl__of_id(r->user_id, m, n);
  uint32_t me = pl_bucket_of_id(r->user_id), peer = pl_bucket_of_name(s->in.peer, strlen(s->in.peer));
  return (int)pl_shardmap_of(m, pl_bucket_of_pair(me, peer), n);
}

int pl_store_route(const pl_store_req *r, const pl_shardmap *m, unsigned n) {
  switch (r->op) {
  case PL_STORE_SEND: return pl__of_send(r, m, n);
  case PL_STORE_REGISTER: return pl__of_name(r->u.reg.in.user, m, n);
  case PL_STORE_GET_USER: return pl__of_name(r->u.get_user.in.user, m, n);
  case PL_STORE_RESUME:
  case PL_STORE_MEDIA_AUTH: return pl__of_route(r->route, m, n);
  case PL_STORE_MEDIA_GET: {
    uint32_t b;
    if (r->u.media_get.in.any_user && r->u.media_get.in.media_id &&
        pl_bucket_of_media(r->u.media_get.in.media_id, &b) == 0)
      return (int)pl_shardmap_of(m, b, n);
    return pl__of_route(r->route, m, n);
  }
  case PL_STORE_GROUP_DEVICES: return pl__of_id(r->u.group_devices.in.group, m, n);
  case PL_STORE_GROUP_UPDATE: return pl__of_id(r->u.group_update.in.group, m, n);
  case PL_STORE_GROUP_RECEIPTS: return pl__of_id(r->u.group_receipts.in.group, m, n);
  case PL_STORE_GROUP_LIST: return PL_ROUTE_EACH; /* the asker's groups live on any shard */
  case PL_STORE_MARK_READ:
    if (r->u.mark_read.in.group)
      return pl__of_id(r->u.mark_read.in.group, m, n);
    return pl__of_id(r->user_id, m, n);
  case PL_STORE_TYPING:
    if (r->u.typing.in.group)
      return pl__of_id(r->u.typing.in.group, m, n);
    return pl__of_id(r->user_id, m, n);
  case PL_STORE_PUSH_TOKEN: return pl__of_id(r->u.push_token.in.device, m, n);
  case PL_STORE_PUSH_ENQUEUE: /* a message's devices: on both users' shards */
  case PL_STORE_PUSH_DONE: return PL_ROUTE_SPLIT;
  case PL_STORE_PUSH_TOKENS:
  case PL_STORE_PUSH_CLAIM:
  case PL_STORE_STATS: return PL_ROUTE_EACH;
  case PL_STORE_ADMIN: return pl__admin(&r->u.admin, m, n);
  default: /* the asker's: an ACK without receipts names only its device */
    return pl__of_id(r->user_id ? r->user_id : r->device_id, m, n);
  }
}

/* ---- on every shard -------------------------------------------------------- */

typedef struct pl__fan {
  pl_store_req *req; /* the caller's */
  pl_store *home;    /* hands req back */
  const pl_shardmap *map;
  unsigned n;
  atomic_uint left;
  pl_store_req *kids;          /* [n] */
  pl_store_push_result *parts; /* SPLIT: PUSH_DONE's results regrouped by shard */
  uint64_t *devs;              /* SPLIT: PUSH_ENQUEUE's devices regrouped by shard */
} pl__fan;

/* STATS and ADMIN STATS: the counts, summed. */
static void pl__add_counts(pl_store_counts *to, const pl_store_counts *c) {
  to->users += c->users;
  to->devices += c->devices;
  to->messages += c->messages;
  to->message_queue += c->message_queue;
  to->events += c->events;
  to->queue += c->queue;
  to->group_history += c->group_history;
  to->groups += c->groups;
  to->members += c->members;
  to->dedup += c->dedup;
  to->media += c->media;
  to->outbox += c->outbox;
}

static int pl__by_name(const void *a, const void *b) {
  return strcmp(((const pl_admin_user *)a)->name, ((const pl_admin_user *)b)->name);
}

static int pl__by_gid(const void *a, const void *b) {
  uint64_t x = ((const pl_group_info *)a)->gid, y = ((const pl_group_info *)b)->gid;
  return x < y ? -1 : x > y;
}

static int pl__by_queued(const void *a, const void *b) {
  uint64_t x = ((const pl_admin_device *)a)->queued, y = ((const pl_admin_device *)b)->queued;
  return x > y ? -1 : x < y;
}

/* Gathers kids' arrays of elements of size sz (at offset arr/cnt in each
 * kid's request) into one array; the kids' arrays are emptied. */
static void *pl__gather(pl__fan *f, size_t arr_off, size_t cnt_off, size_t sz, size_t *total) {
  *total = 0;
  for (unsigned i = 0; i < f->n; i++)
    *total += *(size_t *)((char *)&f->kids[i] + cnt_off);
  char *all = pl_calloc(*total + 1, sz), *at = all;
  for (unsigned i = 0; i < f->n; i++) {
    char *k = (char *)&f->kids[i];
    void **a = (void **)(k + arr_off);
    size_t *c = (size_t *)(k + cnt_off);
    if (*c)
      memcpy(at, *a, *c * sz);
    at += *c * sz;
    pl_free(*a);
    *a = NULL;
    *c = 0;
  }
  return all;
}

#define PL__GATHER(f, member, count, total)                                      \
  pl__gather((f), offsetof(pl_store_req, member), offsetof(pl_store_req, count), \
             sizeof *((pl_store_req *)0)->member, (total))

/* A sorted list cut at limit: the elements past it are freed. */
static void pl__cut_users(pl_store_admin_req *a, size_t limit) {
  qsort(a->out.users, a->out.nusers, sizeof *a->out.users, pl__by_name);
  while (a->out.nusers > limit) {
    a->out.more = 1;
    pl_free(a->out.users[--a->out.nusers].name);
  }
}

static void pl__cut_devices(pl_store_admin_req *a, size_t limit) {
  qsort(a->out.devices, a->out.ndevices, sizeof *a->out.devices, pl__by_queued);
  while (a->out.ndevices > limit) {
    pl_admin_device *d = &a->out.devices[--a->out.ndevices];
    pl_free(d->name);
    pl_free(d->user);
  }
}

static void pl__cut_groups(pl_store_admin_req *a, size_t limit) {
  qsort(a->out.groups, a->out.ngroups, sizeof *a->out.groups, pl__by_gid);
  while (a->out.ngroups > limit) {
    a->out.more = 1;
    pl_group_info_clear(&a->out.groups[--a->out.ngroups]);
  }
}

static void pl__merge_admin(pl__fan *f) {
  pl_store_admin_req *a = &f->req->u.admin;
  size_t limit = pl_store_admin_limit(f->req);
  for (unsigned i = 0; i < f->n; i++) {
    const pl_store_admin_req *k = &f->kids[i].u.admin;
    pl__add_counts(&a->out.counts, &k->out.counts);
    a->out.db_bytes += k->out.db_bytes;
    a->out.media_count += k->out.media_count;
    a->out.media_bytes += k->out.media_bytes;
    a->out.more |= k->out.more;
  }
  a->out.users = PL__GATHER(f, u.admin.out.users, u.admin.out.nusers, &a->out.nusers);
  a->out.devices = PL__GATHER(f, u.admin.out.devices, u.admin.out.ndevices, &a->out.ndevices);
  a->out.groups = PL__GATHER(f, u.admin.out.groups, u.admin.out.ngroups, &a->out.ngroups);
  pl__cut_users(a, limit);
  pl__cut_groups(a, limit);
  pl__cut_devices(a, limit);
}

static void pl__merge(pl__fan *f) {
  pl_store_req *r = f->req;
  switch (r->op) {
  case PL_STORE_STATS:
    for (unsigned i = 0; i < f->n; i++)
      pl__add_counts(&r->u.stats.out.counts, &f->kids[i].u.stats.out.counts);
    break;
  case PL_STORE_PUSH_TOKENS:
    r->u.push_tokens.out.tokens =
        PL__GATHER(f, u.push_tokens.out.tokens, u.push_tokens.out.ntokens, &r->u.push_tokens.out.ntokens);
    break;
  case PL_STORE_PUSH_CLAIM: {
    pl_store_push_claim_req *c = &r->u.push_claim;
    for (unsigned i = 0; i < f->n; i++) {
      const pl_store_push_claim_req *k = &f->kids[i].u.push_claim;
      c->out.pending += k->out.pending;
      if (k->out.next_due && (!c->out.next_due || k->out.next_due < c->out.next_due))
        c->out.next_due = k->out.next_due;
    }
    c->out.rows = PL__GATHER(f, u.push_claim.out.rows, u.push_claim.out.nrows, &c->out.nrows);
    break;
  }
  case PL_STORE_ADMIN: pl__merge_admin(f); break;
  case PL_STORE_GROUP_LIST: { /* each shard's by gid, the shards in gid order: sorted again all the same */
    pl_store_group_list_req *l = &r->u.group_list;
    l->out.groups = PL__GATHER(f, u.group_list.out.groups, u.group_list.out.ngroups, &l->out.ngroups);
    qsort(l->out.groups, l->out.ngroups, sizeof *l->out.groups, pl__by_gid);
    break;
  }
  case PL_STORE_PUSH_ENQUEUE:
    for (unsigned i = 0; i < f->n; i++)
      r->u.push_enqueue.out.enqueued += f->kids[i].u.push_enqueue.out.enqueued;
    break;
  default: break;
  }
}

/* The last kid to finish merges and hands the request back. */
static void pl__kid_done(pl_store_req *kid) {
  pl__fan *f = kid->data;
  if (atomic_fetch_sub_explicit(&f->left, 1, memory_order_acq_rel) != 1)
    return;
  pl_store_req *r = f->req;
  r->status = PL_OK;
  for (unsigned i = 0; i < f->n && r->status == PL_OK; i++)
    r->status = f->kids[i].status;
  if (r->status == PL_OK)
    pl__merge(f);
  for (unsigned i = 0; i < f->n; i++) /* what was merged out is zeroed: only the rest is freed */
    pl_store_req_clear(&f->kids[i]);
  pl_store *home = f->home;
  pl_free(f->kids);
  pl_free(f->parts);
  pl_free(f->devs);
  pl_free(f);
  pl_store__hand_back(home, r);
}

/* PUSH_ENQUEUE's devices by shard: kid i gets shard i's. */
static void pl__split_devices(pl__fan *f, const pl_store_push_enqueue_req *q) {
  f->devs = pl_calloc(q->in.ndevices + 1, sizeof *f->devs);
  size_t at = 0;
  for (unsigned i = 0; i < f->n; i++) {
    pl_store_push_enqueue_req *k = &f->kids[i].u.push_enqueue;
    k->in.devices = f->devs + at;
    k->in.ndevices = 0;
    for (size_t j = 0; j < q->in.ndevices; j++)
      if (pl__of_id(q->in.devices[j], f->map, f->n) == (int)i) {
        f->devs[at++] = q->in.devices[j];
        k->in.ndevices++;
      }
  }
}

/* PUSH_DONE's results by shard: kid i gets those of shard i's devices. */
static void pl__split(pl__fan *f, const pl_store_push_done_req *d) {
  f->parts = pl_calloc(d->in.nresults + 1, sizeof *f->parts);
  size_t at = 0;
  for (unsigned i = 0; i < f->n; i++) {
    pl_store_push_done_req *k = &f->kids[i].u.push_done;
    k->in.results = f->parts + at;
    k->in.nresults = 0;
    for (size_t j = 0; j < d->in.nresults; j++)
      if (pl__of_id(d->in.results[j].device, f->map, f->n) == (int)i) {
        f->parts[at++] = d->in.results[j];
        k->in.nresults++;
      }
  }
}

static void pl__fan_out(pl_store *const *stores, unsigned n, const pl_shardmap *m, pl_store_req *req,
                        int split) {
  pl_store_req_out_begin(req);
  pl__fan *f = pl_calloc(1, sizeof *f);
  f->req = req;
  f->home = stores[0];
  f->n = n;
  f->map = m;
  atomic_init(&f->left, n);
  f->kids = pl_calloc(n, sizeof *f->kids);
  for (unsigned i = 0; i < n; i++) {
    pl_store_req *k = &f->kids[i];
    k->op = req->op;
    k->user_id = req->user_id;
    k->device_id = req->device_id;
    k->route = req->route;
    memcpy(&k->u, &req->u, sizeof k->u); /* the in: borrowed from req, as req borrows it */
    k->done = pl__kid_done;
    k->data = f;
  }
  if (split && req->op == PL_STORE_PUSH_ENQUEUE)
    pl__split_devices(f, &req->u.push_enqueue);
  else if (split)
    pl__split(f, &req->u.push_done);
  for (unsigned i = 0; i < n; i++)
    pl_store__enqueue(stores[i], &f->kids[i]);
}

/* ---- a sign-up with an invite, on another shard than the invites' ----------
 *
 * Shard 0 keeps the invites. A sign-up on shard k takes a use of its code
 * there first (its own transaction: INVITE_INVALID ends it), then registers
 * on shard k without the code, and gives the use back if that fails (the
 * name taken, the database away). A crash between the two transactions
 * loses the use, never grants one more. */

typedef struct pl__signup {
  pl_store_req *req; /* the caller's REGISTER */
  pl_store *invites, *home;
  pl_store_done_cb done; /* req's own, while it runs as the saga's */
  void *origin, *data;
  const char *invite;
  pl_store_req side; /* INVITE_TAKE, then INVITE_GIVE */
} pl__signup;

static void pl__signup_end(pl__signup *u, pl_err status) {
  pl_store_req *r = u->req;
  pl_store *back = u->invites;
  r->done = u->done;
  r->origin = u->origin;
  r->data = u->data;
  r->u.reg.in.invite = u->invite;
  if (status != PL_OK)
    r->status = status;
  pl_store_req_clear(&u->side);
  pl_free(u);
  pl_store__hand_back(back, r);
}

static void pl__signup_given(pl_store_req *side) { pl__signup_end(side->data, PL_OK); }

static void pl__signup_registered(pl_store_req *r) {
  pl__signup *u = r->data;
  if (r->status == PL_OK) {
    pl__signup_end(u, PL_OK);
    return;
  }
  pl_store_req_clear(&u->side);
  memset(&u->side, 0, sizeof u->side);
  u->side.op = PL_STORE_ADMIN;
  u->side.u.admin.in.action = PL_ADMIN_INVITE_GIVE;
  u->side.u.admin.in.code = u->invite;
  u->side.done = pl__signup_given;
  u->side.data = u;
  pl_store__enqueue(u->invites, &u->side);
}

static void pl__signup_taken(pl_store_req *side) {
  pl__signup *u = side->data;
  if (side->status != PL_OK) { /* INVITE_INVALID, or the database */
    pl__signup_end(u, side->status);
    return;
  }
  pl_store_req *r = u->req;
  r->u.reg.in.invite = NULL; /* used up on shard 0 */
  r->done = pl__signup_registered;
  r->origin = NULL;
  r->data = u;
  pl_store__enqueue(u->home, r);
}

static void pl__signup_start(pl_store *invites, pl_store *home, pl_store_req *req) {
  pl__signup *u = pl_calloc(1, sizeof *u);
  pl_store_req_out_begin(req);
  req->status = PL_OK;
  u->req = req;
  u->invites = invites;
  u->home = home;
  u->done = req->done;
  u->origin = req->origin;
  u->data = req->data;
  u->invite = req->u.reg.in.invite;
  u->side.op = PL_STORE_ADMIN;
  u->side.u.admin.in.action = PL_ADMIN_INVITE_TAKE;
  u->side.u.admin.in.code = u->invite;
  u->side.done = pl__signup_taken;
  u->side.data = u;
  pl_store__enqueue(invites, &u->side);
}

/* ---- requests about one user on the other shards (the sagas below) ------- */

/* action about user on every shard but to, each handed to done with data:
 * [*k] of them (pl_free the array after clearing each). */
static pl_store_req *pl__sides(unsigned n, unsigned to, int action, const char *user, pl_store_done_cb done,
                               void *data, unsigned *k) {
  pl_store_req *v = pl_calloc(n, sizeof *v);
  *k = 0;
  for (unsigned j = 0; j < n; j++) {
    if (j == to)
      continue;
    pl_store_req *s = &v[(*k)++];
    s->op = PL_STORE_ADMIN;
    s->u.admin.in.action = action;
    s->u.admin.in.user = user; /* (borrowed: the caller's request outlives the sides) */
    s->done = done;
    s->data = data;
  }
  return v;
}

/* Sends side[] (from pl__sides) to their shards, and home (if not NULL) to to. */
static void pl__sides_send(pl_store *const *stores, unsigned n, unsigned to, pl_store_req *side,
                           pl_store_req *home) {
  for (unsigned j = 0, i = 0; j < n; j++)
    if (j != to)
      pl_store__enqueue(stores[j], &side[i++]);
    else if (home)
      pl_store__enqueue(stores[j], home);
}

/* ---- an account deleted: first out of the other shards' groups ----------
 *
 * A user's groups may live on any shard; its DELETE runs on its own, which
 * takes it out of that shard's groups. So every other shard first takes
 * it out of its own (LEAVE_GROUPS, each its own transaction, side by side),
 * and only when all of them did does the DELETE run; a failure (a shard
 * away) ends it there with that error, the user still there, and the
 * operator's retry goes on from the groups left. */

typedef struct pl__erase {
  pl_store_req *req; /* the caller's DELETE */
  pl_store *home;
  unsigned n;
  atomic_uint left;
  atomic_int status;  /* the first side's failure */
  pl_store_req *side; /* [n]: LEAVE_GROUPS on each shard but home */
} pl__erase;

static void pl__erase_side_done(pl_store_req *side) {
  pl__erase *x = side->data;
  int ok = PL_OK;
  if (side->status != PL_OK && side->status != PL_ERR_NOT_FOUND) /* (none: DELETE says so) */
    atomic_compare_exchange_strong(&x->status, &ok, (int)side->status);
  if (atomic_fetch_sub_explicit(&x->left, 1, memory_order_acq_rel) != 1)
    return;
  pl_store_req *r = x->req;
  pl_store *home = x->home;
  pl_err status = (pl_err)atomic_load(&x->status);
  for (unsigned i = 0; i < x->n; i++)
    pl_store_req_clear(&x->side[i]);
  pl_free(x->side);
  pl_free(x);
  if (status != PL_OK) {
    r->status = status;
    pl_store__hand_back(home, r);
  } else {
    pl_store__enqueue(home, r);
  }
}

static void pl__erase_start(pl_store *const *stores, unsigned n, unsigned to, pl_store_req *req) {
  pl__erase *x = pl_calloc(1, sizeof *x);
  pl_store_req_out_begin(req);
  req->status = PL_OK;
  x->req = req;
  x->home = stores[to];
  atomic_init(&x->left, n - 1);
  atomic_init(&x->status, PL_OK);
  x->side = pl__sides(n, to, PL_ADMIN_LEAVE_GROUPS, req->u.admin.in.user, pl__erase_side_done, x, &x->n);
  pl__sides_send(stores, n, to, x->side, NULL);
}

/* ---- the operator's view of a user: its groups of every shard --------------
 *
 * USER runs on the user's shard, which lists that shard's groups; every
 * other shard lists its own at the same time (USER_GROUPS), merged by gid
 * into the answer when all are done. A shard away fails it (retryable). */

typedef struct pl__view {
  pl_store_req *req; /* the caller's USER, run on home as the saga's */
  pl_store *home;
  unsigned n;
  atomic_uint left;
  pl_store_req *side;    /* [n]: USER_GROUPS on each shard but home */
  pl_store_done_cb done; /* req's own, while it runs as the saga's */
  void *origin, *data;
} pl__view;

static void pl__view_merge(pl_store_req *r, pl_store_req *side, size_t nside) {
  pl_store_admin_req *a = &r->u.admin;
  for (size_t i = 0; i < nside && r->status == PL_OK; i++) {
    pl_store_admin_req *k = &side[i].u.admin;
    if (side[i].status != PL_OK && side[i].status != PL_ERR_NOT_FOUND)
      r->status = side[i].status;
    else if (k->out.ngroups) { /* taken over: the side's array keeps no element */
      a->out.groups =
          pl_realloc(a->out.groups, (a->out.ngroups + k->out.ngroups + 1) * sizeof *a->out.groups);
      memcpy(a->out.groups + a->out.ngroups, k->out.groups, k->out.ngroups * sizeof *k->out.groups);
      a->out.ngroups += k->out.ngroups;
      k->out.ngroups = 0;
    }
  }
  if (r->status == PL_OK && a->out.ngroups > 1)
    qsort(a->out.groups, a->out.ngroups, sizeof *a->out.groups, pl__by_gid);
}

static void pl__view_part_done(pl__view *v) {
  if (atomic_fetch_sub_explicit(&v->left, 1, memory_order_acq_rel) != 1)
    return;
  pl_store_req *r = v->req;
  pl_store *home = v->home;
  r->done = v->done;
  r->origin = v->origin;
  r->data = v->data;
  if (r->status == PL_OK)
    pl__view_merge(r, v->side, v->n);
  for (unsigned i = 0; i < v->n; i++)
    pl_store_req_clear(&v->side[i]);
  pl_free(v->side);
  pl_free(v);
  pl_store__hand_back(home, r);
}

static void pl__view_home_done(pl_store_req *r) { pl__view_part_done(r->data); }
static void pl__view_side_done(pl_store_req *s) { pl__view_part_done(s->data); }

static void pl__view_start(pl_store *const *stores, unsigned n, unsigned to, pl_store_req *req) {
  pl__view *v = pl_calloc(1, sizeof *v);
  v->req = req;
  v->home = stores[to];
  v->done = req->done;
  v->origin = req->origin;
  v->data = req->data;
  atomic_init(&v->left, n); /* the sides and home */
  v->side = pl__sides(n, to, PL_ADMIN_USER_GROUPS, req->u.admin.in.user, pl__view_side_done, v, &v->n);
  req->done = pl__view_home_done;
  req->origin = NULL;
  req->data = v;
  pl__sides_send(stores, n, to, v->side, req);
}

void pl_store__submit_linked(pl_store *const *stores, unsigned n, const pl_shardmap *m, pl_store_req *req) {
  /* the epoch first: a map taken meanwhile makes the stamp older than the
   * route, and the store thread then only checks the route again */
  uint64_t at = m ? pl_shardmap_epoch(m) + 1 : 0;
  int to = pl_store_route(req, m, n);
  req->routed_at = 0; /* the flows across shards below send their parts where they mean to */
  if (to > 0 && to < (int)n && req->op == PL_STORE_REGISTER && req->u.reg.in.invite)
    pl__signup_start(stores[0], stores[to], req);
  else if (to >= 0 && to < (int)n && n > 1 && req->op == PL_STORE_ADMIN &&
           req->u.admin.in.action == PL_ADMIN_DELETE)
    pl__erase_start(stores, n, (unsigned)to, req);
  else if (to >= 0 && to < (int)n && n > 1 && req->op == PL_STORE_ADMIN &&
           req->u.admin.in.action == PL_ADMIN_USER)
    pl__view_start(stores, n, (unsigned)to, req);
  else if (to >= 0) {
    req->routed_at = at;
    pl_store__enqueue(stores[to < (int)n ? to : 0], req);
  } else
    pl__fan_out(stores, n, m, req, to == PL_ROUTE_SPLIT);
}
