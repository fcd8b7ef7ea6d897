/* pl_sess_social: the requests about conversations and people, answered
 * after a store commit: MarkRead, Settings, UnreadGet (protocol.md 11.4),
 * Contacts, Block, PresenceSubscribe and PresenceGet; with Devices,
 * PushRegister and Logout. Each state request is a row of the command table
 * (pl_session.c) naming its steps here: bad (a malformed request), fill
 * (the store request's inputs) and reply (the answer after the commit). */
#include <string.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "pl_sess_int.h"

#define PL__MAX_FOLLOW 1000u /* users one PresenceSubscribe may name */

int pl_sess__bad_name(const char *u) { return !pl_auth_valid_user(u, strlen(u)); }

/* ---- requests answered after a commit ----------------------------------- */

static void pl__state_done(pl_store_req *req) {
  pl_sess__req *sr = PL_SESS__REQ(req);
  const char *ref = pl_sess__ref(sr->cmd, sr->msg);
  if (req->status != PL_OK)
    pl_sess__error(sr->s, req->status, ref);
  else
    sr->cmd->reply(sr->s, ref, sr);
  pl_sess__req_free(sr);
}

int pl_sess__on_state(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  const char *ref = pl_sess__ref(cmd, in->msg);
  int ref_ok = strlen(ref) <= PL_SESS_MAX_ID;
  if (!ref_ok || (cmd->bad && cmd->bad(in->msg))) {
    pl_sess__error(s, PL_ERR_INVALID_ARGUMENT, ref_ok ? ref : NULL);
    return 0;
  }
  pl_sess__req *sr = pl_sess__req_new(s, cmd->op, in, pl__state_done);
  sr->cmd = cmd;
  sr->req.user_id = s->user_id;
  sr->req.device_id = s->device_id;
  if (cmd->fill)
    cmd->fill(&sr->req, sr->msg);
  pl_sess__submit(sr);
  return 0;
}

/* ---- MarkRead, Settings, UnreadGet --------------------------------------- */

int pl_sess__mark_read_bad(const ProtobufCMessage *msg) {
  const Parley__MarkRead *m = (const Parley__MarkRead *)msg;
  return *m->group ? !pl_frame_gid(m->group) || *m->peer : pl_sess__bad_name(m->peer);
}

void pl_sess__mark_read_fill(pl_store_req *r, ProtobufCMessage *msg) {
  Parley__MarkRead *m = (Parley__MarkRead *)msg;
  r->u.mark_read.in.group = *m->group ? pl_frame_gid(m->group) : 0;
  r->u.mark_read.in.peer = r->u.mark_read.in.group ? NULL : m->peer;
  r->u.mark_read.in.upto = m->seq;
}

int pl_sess__settings_bad(const ProtobufCMessage *msg) {
  const Parley__Settings *m = (const Parley__Settings *)msg;
  return m->read_receipts > PARLEY__TOGGLE__TOGGLE_OFF ||
         m->last_seen > PARLEY__LAST_SEEN__LAST_SEEN_NOBODY || m->read_receipts < 0 || m->last_seen < 0;
}

void pl_sess__settings_fill(pl_store_req *r, ProtobufCMessage *msg) {
  Parley__Settings *m = (Parley__Settings *)msg;
  r->u.settings.in.read_receipts = (int)m->read_receipts;
  r->u.settings.in.last_seen = (int)m->last_seen;
  r->u.settings.in.group_add = (int)m->group_add; /* the store checks its range */
}

void pl_sess__settings_reply(pl_session *s, const char *ref, pl_sess__req *sr) {
  const pl_store_req *req = &sr->req;
  Parley__SettingsState st = PARLEY__SETTINGS_STATE__INIT;
  st.ref = (char *)ref;
  st.read_receipts = req->u.settings.out.read_receipts != 0;
  st.last_seen = (Parley__LastSeen)req->u.settings.out.last_seen;
  st.group_add = (Parley__GroupAdd)req->u.settings.out.group_add;
  pl_presence_set_seen_visible(s->core->presence, s->user_id,
                               req->u.settings.out.last_seen != PL_LAST_SEEN_NOBODY);
  pl_sess__write(s, PARLEY__FRAME_TYPE__FRAME_SETTINGS_STATE, &st.base);
}

void pl_sess__unread_reply(pl_session *s, const char *ref, pl_sess__req *sr) {
  const pl_store_req *req = &sr->req;
  Parley__Unread u = PARLEY__UNREAD__INIT;
  Parley__ConvState *cs = pl_calloc(req->u.unread.out.nconvs ? req->u.unread.out.nconvs : 1, sizeof *cs);
  Parley__ConvState **ptrs = pl_calloc(req->u.unread.out.nconvs ? req->u.unread.out.nconvs : 1, sizeof *ptrs);
  for (size_t i = 0; i < req->u.unread.out.nconvs; i++) {
    const pl_conv_state *c = &req->u.unread.out.convs[i];
    parley__conv_state__init(&cs[i]);
    cs[i].conv = c->conv;
    cs[i].last_seq = c->last_seq;
    cs[i].read_seq = c->read_seq;
    cs[i].unread = c->last_seq > c->read_seq ? c->last_seq - c->read_seq : 0;
    cs[i].peer_delivered = c->peer_delivered;
    cs[i].peer_read = c->peer_read;
    ptrs[i] = &cs[i];
  }
  u.ref = (char *)ref;
  u.n_convs = req->u.unread.out.nconvs;
  u.convs = ptrs;
  pl_sess__write(s, PARLEY__FRAME_TYPE__FRAME_UNREAD, &u.base);
  pl_free(ptrs);
  pl_free(cs);
}

/* ---- Contacts, Block ----------------------------------------------------- */

int pl_sess__contacts_bad(const ProtobufCMessage *msg) {
  const Parley__Contacts *m = (const Parley__Contacts *)msg;
  return m->op < 0 || m->op > PARLEY__CONTACT_OP__CONTACT_REMOVE || (m->op && pl_sess__bad_name(m->user));
}

void pl_sess__contacts_fill(pl_store_req *r, ProtobufCMessage *msg) {
  r->u.contacts.in.contact_op = (int)((Parley__Contacts *)msg)->op;
  r->u.contacts.in.peer = ((Parley__Contacts *)msg)->user;
}

void pl_sess__contacts_reply(pl_session *s, const char *ref, pl_sess__req *sr) {
  const pl_store_req *req = &sr->req;
  Parley__ContactList cl = PARLEY__CONTACT_LIST__INIT;
  cl.ref = (char *)ref;
  cl.n_users = req->u.contacts.out.nnames;
  cl.users = req->u.contacts.out.names;
  if (req->u.contacts.in.contact_op == PARLEY__CONTACT_OP__CONTACT_REMOVE) /* they may not see me any more */
    pl_presence_forget(s->core->presence, s->user_id, req->u.contacts.out.peer_id);
  pl_sess__write(s, PARLEY__FRAME_TYPE__FRAME_CONTACT_LIST, &cl.base);
}

int pl_sess__block_bad(const ProtobufCMessage *msg) {
  return pl_sess__bad_name(((const Parley__Block *)msg)->user);
}

void pl_sess__block_fill(pl_store_req *r, ProtobufCMessage *msg) {
  r->u.block.in.peer = ((Parley__Block *)msg)->user;
  r->u.block.in.blocked = ((Parley__Block *)msg)->blocked;
}

void pl_sess__block_reply(pl_session *s, const char *ref, pl_sess__req *sr) {
  if (sr->req.u.block.in.blocked)
    pl_presence_forget(s->core->presence, s->user_id, sr->req.u.block.out.peer_id);
  pl_sess__reply_done(s, ref, sr);
}

/* ---- PresenceSubscribe, PresenceGet --------------------------------------- */

int pl_sess__presence_sub_bad(const ProtobufCMessage *msg) {
  const Parley__PresenceSubscribe *m = (const Parley__PresenceSubscribe *)msg;
  int bad = m->n_users > PL__MAX_FOLLOW;
  for (size_t i = 0; i < m->n_users && !bad; i++)
    bad = pl_sess__bad_name(m->users[i]);
  return bad;
}

void pl_sess__presence_sub_fill(pl_store_req *r, ProtobufCMessage *msg) {
  r->u.presence.in.users = (const char *const *)((Parley__PresenceSubscribe *)msg)->users;
  r->u.presence.in.nusers = ((Parley__PresenceSubscribe *)msg)->n_users;
}

int pl_sess__presence_get_bad(const ProtobufCMessage *msg) {
  return pl_sess__bad_name(((const Parley__PresenceGet *)msg)->user);
}

void pl_sess__presence_get_fill(pl_store_req *r, ProtobufCMessage *msg) {
  r->u.presence.in.users = (const char *const *)&((Parley__PresenceGet *)msg)->user;
  r->u.presence.in.nusers = 1;
}

/* The current state of each user the store found (get: an unknown one is
 * UNKNOWN_PEER). */
static void pl__presence_views(pl_session *s, const char *ref, const pl_store_req *req, int get) {
  for (size_t i = 0; i < req->u.presence.out.nviews; i++) {
    const pl_presence_view *v = &req->u.presence.out.views[i];
    if (!v->uid && get) {
      pl_sess__error(s, PL_ERR_UNKNOWN_PEER, ref);
      continue;
    }
    Parley__Presence m = PARLEY__PRESENCE__INIT;
    m.ref = (char *)ref;
    m.user = v->user;
    m.visible = v->visible;
    m.online = v->visible && pl_presence_is_online(s->core->presence, v->uid);
    m.last_seen = v->seen_visible && !m.online ? v->last_seen : 0;
    pl_sess__write(s, PARLEY__FRAME_TYPE__FRAME_PRESENCE, &m.base);
  }
}

/* Done, then the current state of every user asked for. */
void pl_sess__presence_sub_reply(pl_session *s, const char *ref, pl_sess__req *sr) {
  if (!s->conn || s->state != PL_SESS_READY) /* gone meanwhile: nobody to tell */
    return;
  pl_presence_subscribe(s->core->presence, s->device_id, s->conn->id, s->user_id,
                        sr->req.u.presence.out.views, sr->req.u.presence.out.nviews);
  pl_sess__reply_done(s, ref, sr);
  pl__presence_views(s, ref, &sr->req, 0);
}

void pl_sess__presence_get_reply(pl_session *s, const char *ref, pl_sess__req *sr) {
  pl__presence_views(s, ref, &sr->req, 1);
}

/* ---- Logout --------------------------------------------------------------- */

static void pl__logout_done(pl_store_req *req) {
  pl_sess__req *sr = PL_SESS__REQ(req);
  pl_session *s = sr->s;
  if (req->status == PL_OK) /* a logged-out device gets no notifications (the store dropped its token) */
    pl_push_forget(s->core->push, s->device_id);
  if (s->conn && req->status == PL_OK) {
    Parley__LogoutOk m = PARLEY__LOGOUT_OK__INIT;
    pl_sess__write(s, PARLEY__FRAME_TYPE__FRAME_LOGOUT_OK, &m.base);
    char peer[PL_ADDR_STR];
    pl_info("conn %llu %s: %s@%s logged out", (unsigned long long)s->conn->id,
            pl_addr_str(&s->conn->peer, peer), s->user, s->device);
    pl_conn_close(s->conn);
  } else if (s->conn) {
    /* Still logged in: serve the device again. */
    pl_sess__error(s, req->status, NULL);
    pl_sess__attach(s);
    pl_sess__start_sync(s);
    pl_sess__resume_reading(s);
  }
  pl_sess__req_free(sr);
}

int pl_sess__on_logout(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  (void)cmd;
  (void)in;
  s->core->router->ops->detach(s->core->router, s->device_id, s->loop, s);
  pl_sess__off(s);
  pl_sess__req *sr = pl_sess__req_new(s, PL_STORE_LOGOUT, NULL, pl__logout_done);
  sr->req.device_id = s->device_id;
  pl_sess__submit(sr);
  s->paused = 1;
  return 1;
}

/* ---- devices ------------------------------------------------------------ */

/* A revoked device is logged out (the store dropped its token and queue):
 * its connection closes and it gets no more notifications. */
static void pl__revoked(pl_session *s, const pl_store_req *req) {
  for (size_t i = 0; i < req->u.devices.out.ntargets; i++) {
    s->core->router->ops->kick(s->core->router, req->u.devices.out.targets[i]);
    pl_push_forget(s->core->push, req->u.devices.out.targets[i]);
    char peer[PL_ADDR_STR];
    pl_info("conn %llu %s: %s revoked device %s", (unsigned long long)s->conn->id,
            pl_addr_str(&s->conn->peer, peer), s->user, req->u.devices.out.names[i]);
  }
}

static void pl__devices_done(pl_store_req *req) {
  pl_sess__req *sr = PL_SESS__REQ(req);
  pl_session *s = sr->s;
  Parley__Devices *m = (Parley__Devices *)sr->msg;
  if (req->status == PL_OK && s->conn)
    pl__revoked(s, req);
  if (req->status != PL_OK) {
    pl_sess__error(s, req->status, m->ref);
    return pl_sess__req_free(sr);
  }
  size_t n = req->u.devices.out.ndevices;
  Parley__DeviceInfo *info = pl_calloc(n ? n : 1, sizeof *info);
  Parley__DeviceInfo **ptrs = pl_calloc(n ? n : 1, sizeof *ptrs);
  for (size_t i = 0; i < n; i++) {
    const pl_device_row *d = &req->u.devices.out.devices[i];
    parley__device_info__init(&info[i]);
    info[i].name = d->name;
    info[i].device_id = d->id;
    info[i].created = d->created;
    info[i].last_used = d->used_at;
    info[i].current = d->id == s->device_id;
    info[i].online = s->core->router->ops->is_online(s->core->router, d->id);
    ptrs[i] = &info[i];
  }
  Parley__DeviceList dl = PARLEY__DEVICE_LIST__INIT;
  dl.ref = m->ref;
  dl.n_devices = n;
  dl.devices = ptrs;
  dl.n_revoked = req->u.devices.out.nnames;
  dl.revoked = req->u.devices.out.names;
  pl_sess__write(s, PARLEY__FRAME_TYPE__FRAME_DEVICE_LIST, &dl.base);
  pl_free(ptrs);
  pl_free(info);
  pl_sess__req_free(sr);
}

/* Devices: list mine; revoke one by name, or all but this one. */
int pl_sess__on_devices(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  (void)cmd;
  Parley__Devices *m = (Parley__Devices *)in->msg;
  int ref_ok = strlen(m->ref) <= PL_SESS_MAX_ID;
  int bad =
      !ref_ok || m->op < PARLEY__DEVICES_OP__DEVICES_LIST ||
      m->op > PARLEY__DEVICES_OP__DEVICES_REVOKE_OTHERS ||
      (m->op == PARLEY__DEVICES_OP__DEVICES_REVOKE && !pl_auth_valid_device(m->device, strlen(m->device)));
  if (bad) {
    pl_sess__error(s, PL_ERR_INVALID_ARGUMENT, ref_ok ? m->ref : NULL);
    return 0;
  }
  pl_sess__req *sr = pl_sess__req_new(s, PL_STORE_DEVICES, in, pl__devices_done);
  sr->req.user_id = s->user_id;
  sr->req.device_id = s->device_id;
  sr->req.u.devices.in.device_op = (int)m->op;
  sr->req.u.devices.in.name = m->device;
  pl_sess__submit(sr);
  return 0;
}

/* PushRegister: the push service keeps the token (no store request). */
int pl_sess__on_push_register(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  (void)cmd;
  const Parley__PushRegister *m = (const Parley__PushRegister *)in->msg;
  int ok = strlen(m->ref) <= PL_SESS_MAX_ID &&
           pl_push_register(s->core->push, s->device_id, s->user_id, s->user, m->provider, m->token) == PL_OK;
  if (!ok) {
    pl_sess__error(s, PL_ERR_INVALID_ARGUMENT, strlen(m->ref) <= PL_SESS_MAX_ID ? m->ref : NULL);
    return 0;
  }
  pl_sess__reply_done(s, m->ref, NULL);
  return 0;
}
