/* pg_social: contacts, blocks, presence, last seen and 1:1 typing on
 * PostgreSQL (docs/protocol.md 11.5-11.7), by the rules of pl_privacy. */
#include "../../rules/pl_conv.h"
#include "../../rules/pl_privacy.h"
#include "pg_internal.h"

/* Me and the other user, named peer_name: a request status (and PL_OK) if
 * either is missing or they are the same user. Both are freed by the caller. */
static pl_err pl__me_and_peer(pl__pg *g, pl_store_req *r, const char *peer_name, pl_pg_user **me,
                              pl_pg_user **peer) {
  *me = NULL;
  pl_err e = pl_pg_user_by_name(g, peer_name, peer);
  if (e == PL_OK && *peer)
    e = pl_pg_user_get(g, r->user_id, me);
  if (e != PL_OK)
    return e;
  r->status = pl_privacy_peer(*peer != NULL, *me != NULL, *me && *peer && (*me)->id == (*peer)->id, 0);
  return PL_OK;
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
    e = pl_pg_q(g, &res,
                "SELECT u.name FROM contacts c JOIN users u ON u.id = c.contact_uid WHERE c.uid = $1"
                " ORDER BY u.name COLLATE \"C\"",
                "u", r->user_id);
  if (e != PL_OK)
    goto out;
  x->out.nnames = (size_t)PQntuples(res);
  x->out.names = pl_calloc(x->out.nnames + 1, sizeof *x->out.names);
  for (size_t i = 0; i < x->out.nnames; i++)
    x->out.names[i] = pl_pg_col_str(res, (int)i, 0);
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

/* What viewer may see of u (protocol.md 11.6). */
static pl_err pl__view(pl__pg *g, const pl_pg_user *viewer, const pl_pg_user *u, pl_presence_view *v) {
  uint64_t contact = 1, last_seen = 0;
  int self = u->id == viewer->id;
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
    e = pl_pg_user_by_name(g, x->in.users[i], &u);
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
