/* pg_social: contacts, blocks, presence, last seen and 1:1 typing on
 * PostgreSQL (docs/protocol.md 11.5-11.7), by the rules of pl_privacy.
 * With shards, the other user may live on another shard (docs/scaling.md
 * 2): it is read there (pl_pg_xpipe); a contact or block is a row of its
 * owner's, here; what a watched user lets others see is read on its shard. */
#include "../../rules/pl_conv.h"
#include "../../rules/pl_privacy.h"
#include "pg_internal.h"

/* Me and the other user, named peer_name: a request status (and PL_OK) if
 * either is missing or they are the same user. Both are freed by the caller. */
static pl_err pl__me_and_peer(pl__pg *g, pl_store_req *r, const char *peer_name, pl_pg_user **me,
                              pl_pg_user **peer) {
  pl_pg_pipe p;
  pl_pg_xpipe x;
  pl_err xe = PL_OK;
  *me = *peer = NULL;
  pl_pg_pipe_begin(&p, g);
  pl_pg_xpipe_begin(&x, g, &p); /* both in one round trip (each on its shard) */
  long peer_at = pl_pg_xpipe_user_by_name(&x, peer_name), me_at = pl_pg_xpipe_user(&x, r->user_id);
  pl_err e = pl_pg_xpipe_end(&x);
  if (e == PL_OK) {
    pl_err pe;
    pl_pg_user_load(pl_pg_xpipe_take(&x, peer_at, &pe), PL_OK, peer);
    pl_pg_user_load(pl_pg_xpipe_take(&x, me_at, &xe), PL_OK, me);
    r->status = pe != PL_OK ? pe : xe; /* a shard away: this request fails (retryable), not the batch */
  }
  pl_pg_xpipe_clear(&x);
  pl_pg_pipe_clear(&p);
  if (e != PL_OK || r->status != PL_OK)
    return e;
  r->status = pl_privacy_peer(*peer != NULL, *me != NULL, *me && *peer && (*me)->id == (*peer)->id, 0);
  return PL_OK;
}

static int pl__by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b); /* as COLLATE "C" */
}

/* The contacts' names, wherever they live, sorted; one that is gone is left out. */
static pl_err pl__contact_names(pl__pg *g, const PGresult *res, pl_store_contacts_req *x) {
  size_t n = (size_t)PQntuples(res), k = 0;
  uint64_t *ids = pl_malloc((n + 1) * sizeof *ids);
  for (size_t i = 0; i < n; i++)
    ids[i] = pl_pg_col_u64(res, (int)i, 0);
  x->out.names = pl_calloc(n + 1, sizeof *x->out.names);
  pl_err e = pl_pg_xpipe_names(g, ids, n, x->out.names);
  for (size_t i = 0; i < n; i++)
    if (x->out.names[i])
      x->out.names[k++] = x->out.names[i];
  x->out.nnames = k;
  qsort(x->out.names, k, sizeof *x->out.names, pl__by_name);
  pl_free(ids);
  return e;
}

pl_err pl_pg_social_contacts(pl__pg *g, pl_store_req *r) {
  pl_store_contacts_req *x = &r->u.contacts;
  pl_pg_user *me = NULL, *peer = NULL;
  PGresult *res = NULL;
  pl_err e = PL_OK;
  if (x->in.contact_op) {
    e = pl__me_and_peer(g, r, x->in.peer, &me, &peer);
    if (e != PL_OK || r->status != PL_OK)
      goto out;
    x->out.peer_id = peer->id;
    e = pl_pg_q(g, NULL,
                x->in.contact_op == 1
                    ? "INSERT INTO contacts(uid, contact_uid) VALUES($1, $2) ON CONFLICT DO NOTHING"
                    : "DELETE FROM contacts WHERE uid = $1 AND contact_uid = $2",
                "uu", me->id, peer->id);
  }
  if (e == PL_OK)
    e = pl_pg_q(g, &res, "SELECT contact_uid FROM contacts WHERE uid = $1", "u", r->user_id);
  if (e == PL_OK)
    e = pl__contact_names(g, res, x);
out:
  PQclear(res);
  pl_pg_user_free(me);
  pl_pg_user_free(peer);
  return e;
}

pl_err pl_pg_social_block(pl__pg *g, pl_store_req *r) {
  pl_pg_user *me = NULL, *peer = NULL;
  pl_err e = pl__me_and_peer(g, r, r->u.block.in.peer, &me, &peer);
  if (e == PL_OK && r->status == PL_OK) {
    r->u.block.out.peer_id = peer->id;
    e = pl_pg_q(g, NULL,
                r->u.block.in.blocked
                    ? "INSERT INTO blocks(uid, blocked_uid) VALUES($1, $2) ON CONFLICT DO NOTHING"
                    : "DELETE FROM blocks WHERE uid = $1 AND blocked_uid = $2",
                "uu", me->id, peer->id);
  }
  pl_pg_user_free(me);
  pl_pg_user_free(peer);
  return e;
}

/* What viewer may see of u (protocol.md 11.6), read on u's shard. */
static pl_err pl__view(pl__pg *g, const pl_pg_user *viewer, const pl_pg_user *u, pl_presence_view *v) {
  uint64_t contact = 1, last_seen = 0;
  int self = u->id == viewer->id;
  if (!(g = pl_pg_home(g, u->id)))
    return PL_ERR_STORE;
  pl_err e = self
                 ? PL_OK
                 : pl_pg_u64(g, &contact, "SELECT count(*) FROM contacts WHERE uid = $1 AND contact_uid = $2",
                             "uu", u->id, viewer->id);
  if (e == PL_OK)
    e = pl_pg_u64(g, &last_seen, "SELECT last_seen FROM users WHERE id = $1", "u", u->id);
  if (e != PL_OK)
    return e;
  pl_privacy_view pv =
      pl_privacy_view_of(self, contact > 0, pl_pg_user_blocks(u, viewer->id), u->last_seen_vis);
  v->uid = u->id;
  v->visible = pv.visible;
  v->seen_visible = pv.seen_visible;
  v->last_seen = v->seen_visible ? last_seen : 0;
  return PL_OK;
}

pl_err pl_pg_social_presence(pl__pg *g, pl_store_req *r) {
  pl_store_presence_req *x = &r->u.presence;
  pl_pg_user *me, *u = NULL;
  pl_err e = pl_pg_user_get(g, r->user_id, &me);
  if (e != PL_OK || !me) {
    r->status = e == PL_OK ? PL_ERR_INVALID_ARGUMENT : r->status;
    return e;
  }
  x->out.views = pl_calloc(x->in.nusers ? x->in.nusers : 1, sizeof *x->out.views);
  for (size_t i = 0; i < x->in.nusers && e == PL_OK; i++) {
    pl_presence_view *v = &x->out.views[x->out.nviews++];
    v->user = pl_strdup(x->in.users[i]);
    pl__pg *home = pl_pg_home_of_name(g, x->in.users[i]); /* the watched user's shard */
    e = home ? pl_pg_user_by_name(home, x->in.users[i], &u) : PL_ERR_STORE;
    if (e == PL_OK && u)
      e = pl__view(g, me, u, v);
    pl_pg_user_free(u);
    u = NULL;
  }
  pl_pg_user_free(me);
  return e;
}

pl_err pl_pg_social_seen(pl__pg *g, pl_store_req *r) {
  return pl_pg_q(g, NULL, "UPDATE users SET last_seen = greatest(last_seen, $2) WHERE id = $1", "uu",
                 r->user_id, r->u.seen.in.at);
}

/* Typing goes to the peer's devices unless the peer blocked the typist. */
pl_err pl_pg_social_typing(pl__pg *g, pl_store_req *r) {
  pl_pg_user *me = NULL, *peer = NULL;
  if (r->u.typing.in.group)
    return pl_pg_group_typing(g, r);
  pl_err e = pl__me_and_peer(g, r, r->u.typing.in.peer, &me, &peer);
  if (e == PL_OK && r->status == PL_OK) {
    r->u.typing.out.conv = pl_conv_dm(me->name, peer->name);
    if (pl_privacy_sees_typing(pl_pg_user_blocks(peer, me->id)))
      r->u.typing.out.targets = pl_pg_queue_devs_except(peer, 0, &r->u.typing.out.ntargets);
  }
  pl_pg_user_free(me);
  pl_pg_user_free(peer);
  return e;
}
