/* pl_store_ops: the table of store operations, whatever the backend: each
 * op's name, whether it writes or grows the data, and how the out of its
 * request type is freed (pl_store_req_clear). The backend has its own table
 * of what runs each op (sq_db.c for SQLite). */
#include <stddef.h>
#include <string.h>

#include "../common/pl_mem.h"
#include "../rules/pl_devices.h"
#include "parley.pb-c.h"
#include "pl_store.h"

void pl_msg_clear(pl_msg *m) {
  pl_free(m->conv);
  pl_free(m->from);
  pl_free(m->from_device);
  pl_free(m->id);
  pl_free(m->body);
  pl_free(m->media);
  pl_free(m->act);
  memset(m, 0, sizeof *m);
}

void pl_group_info_clear(pl_group_info *g) {
  pl_free(g->name);
  pl_free(g->description);
  for (size_t i = 0; i < g->nmembers; i++)
    pl_free(g->members[i].user);
  pl_free(g->members);
  memset(g, 0, sizeof *g);
}

pl_store_event *pl_store_event_add(pl_store_req *r, uint64_t qid, int kind, const char *conv, uint64_t seq,
                                   const char *by, uint64_t aux, uint64_t now, uint64_t *t, size_t n) {
  r->events = pl_realloc(r->events, (r->nevents + 1) * sizeof *r->events);
  pl_store_event *ev = &r->events[r->nevents++];
  memset(ev, 0, sizeof *ev);
  ev->msg.qid = qid;
  ev->msg.kind = kind;
  ev->msg.aux = aux;
  ev->msg.conv = pl_strdup(conv);
  ev->msg.seq = seq;
  ev->msg.from = pl_strdup(by);
  ev->msg.from_device = pl_strdup("");
  ev->msg.id = pl_strdup("");
  ev->msg.server_ts = now;
  ev->targets = t;
  ev->ntargets = n;
  return ev;
}

int pl_store_send_plain(const pl_store_req *r) {
  const pl_store_send_req *s = &r->u.send;
  return r->op == PL_STORE_SEND && (!s->in.media_id || !*s->in.media_id) &&
         (!s->in.act || s->in.act->kind == PL_ACT_NONE);
}

void pl_store_send_fill_msg(pl_store_req *r, const char *from) {
  pl_msg *m = &r->u.send.out.msg;
  m->conv = pl_strdup(r->u.send.out.conv);
  m->seq = r->u.send.out.seq;
  m->from = pl_strdup(from);
  m->from_device = pl_strdup(r->u.send.in.device_name ? r->u.send.in.device_name : "");
  m->id = pl_strdup(r->u.send.in.client_id);
  m->body = pl_memdup(r->u.send.in.body, r->u.send.in.body_len);
  m->body_len = r->u.send.in.body_len;
  m->client_ts = r->u.send.in.client_ts;
  m->server_ts = r->u.send.out.server_ts;
}

/* A revoked device into out.targets and out.names (DEVICES). */
static void pl__revoked(pl_store_devices_req *x, const pl_device_row *d) {
  x->out.targets = pl_realloc(x->out.targets, (x->out.ntargets + 1) * sizeof *x->out.targets);
  x->out.targets[x->out.ntargets++] = d->id;
  x->out.names = pl_realloc(x->out.names, (x->out.nnames + 1) * sizeof *x->out.names);
  x->out.names[x->out.nnames++] = pl_strdup(d->name);
}

pl_err pl_store_devices_run(pl_store_req *r, void *be, pl_err (*list)(void *be, pl_store_req *r),
                            pl_err (*logout)(void *be, pl_store_req *lo)) {
  pl_store_devices_req *x = &r->u.devices;
  pl_err e = list(be, r);
  int op = x->in.device_op, found = 0, named;
  for (size_t i = 0; e == PL_OK && i < x->out.ndevices; i++) {
    const pl_device_row *d = &x->out.devices[i];
    if (pl_devices_revokes(op, x->in.name, r->device_id, d->id, d->name, &named)) {
      pl_store_req lo = {.op = PL_STORE_LOGOUT}; /* revoking is logging out */
      lo.device_id = d->id;
      e = logout(be, &lo);
      pl_store_req_clear(&lo);
      if (e == PL_OK)
        pl__revoked(x, d);
    }
    found |= named;
  }
  if (e != PL_OK || op == PL_DEVICES_LIST)
    return e;
  if ((r->status = pl_devices_revoke_status(op, found, x->out.ntargets)) != PL_OK)
    return PL_OK;
  for (size_t i = 0; i < x->out.ndevices; i++)
    pl_free(x->out.devices[i].name);
  pl_free(x->out.devices);
  x->out.devices = NULL;
  x->out.ndevices = 0;
  return list(be, r);
}

uint32_t pl_store_admin_limit(const pl_store_req *r) {
  uint32_t n = r->u.admin.in.limit;
  return n == 0 ? 100 : n > 1000 ? 1000 : n;
}

static void pl__kicked(pl_store_admin_req *a, uint64_t dev) {
  a->out.kicked = pl_realloc(a->out.kicked, (a->out.nkicked + 1) * sizeof *a->out.kicked);
  a->out.kicked[a->out.nkicked++] = dev;
}

/* uid's devices (only: the one named so; NULL: all) signed out; NOT_FOUND
 * (r->status) if only names none. */
static pl_err pl__revoke(pl_store_req *r, void *be, const pl_store_admin_ops *ops, uint64_t uid,
                         const char *only) {
  pl_store_admin_req *a = &r->u.admin;
  size_t from = a->out.ndevices;
  int found = 0;
  pl_err e = ops->devices(be, r, uid);
  for (size_t i = from; e == PL_OK && i < a->out.ndevices; i++) {
    const pl_admin_device *d = &a->out.devices[i];
    if (only && strcmp(only, d->name))
      continue;
    found = 1;
    if (!d->signed_in)
      continue;
    pl_store_req lo = {.op = PL_STORE_LOGOUT, .device_id = d->id};
    e = ops->logout(be, &lo);
    pl_store_req_clear(&lo);
    if (e == PL_OK)
      pl__kicked(a, d->id);
  }
  if (e == PL_OK && only && !found)
    r->status = PL_ERR_NOT_FOUND;
  return e;
}

/* The events and audience changes of sub, run on r's behalf, move to r:
 * the store delivers them after the commit like r's own. */
static void pl__adopt(pl_store_req *r, pl_store_req *sub) {
  if (sub->nevents) {
    r->events = pl_realloc(r->events, (r->nevents + sub->nevents) * sizeof *r->events);
    memcpy(r->events + r->nevents, sub->events, sub->nevents * sizeof *r->events);
    r->nevents += sub->nevents;
  }
  if (sub->nchanges) {
    r->changes = pl_realloc(r->changes, (r->nchanges + sub->nchanges) * sizeof *r->changes);
    memcpy(r->changes + r->nchanges, sub->changes, sub->nchanges * sizeof *r->changes);
    r->nchanges += sub->nchanges;
    r->changes_cap = r->nchanges;
  }
  pl_free(sub->events);
  pl_free(sub->changes);
  sub->events = NULL;
  sub->changes = NULL;
  sub->nevents = sub->nchanges = sub->changes_cap = 0;
}

pl_err pl_store_admin_leave(pl_store_req *r, void *be, const pl_store_admin_ops *ops, uint64_t uid,
                            uint64_t gid) {
  pl_store_req sub = {.op = PL_STORE_GROUP_UPDATE, .user_id = uid};
  sub.u.group_update.in.group = gid;
  sub.u.group_update.in.group_op = PL_GROUP_LEAVE;
  pl_err e = ops->group_update(be, &sub);
  if (e == PL_OK && sub.status != PL_OK)
    r->status = sub.status;
  pl__adopt(r, &sub);
  pl_store_req_clear(&sub);
  return e;
}

/* Signed out, out of every group, then gone with all that is its alone. */
static pl_err pl__delete(pl_store_req *r, void *be, const pl_store_admin_ops *ops, uint64_t uid) {
  pl_store_admin_req *a = &r->u.admin;
  pl_err e = pl__revoke(r, be, ops, uid, NULL);
  if (e == PL_OK)
    e = ops->groups(be, r, uid);
  for (size_t i = 0; e == PL_OK && i < a->out.ngroups; i++)
    e = pl_store_admin_leave(r, be, ops, uid, a->out.groups[i].gid);
  return e == PL_OK ? ops->drop(be, uid) : e;
}

pl_err pl_store_admin_run(pl_store_req *r, void *be, const pl_store_admin_ops *ops) {
  pl_store_admin_req *a = &r->u.admin;
  int action = a->in.action;
  if (action != PL_ADMIN_USER && action != PL_ADMIN_DELETE && action != PL_ADMIN_REVOKE &&
      action != PL_ADMIN_ENABLE && action != PL_ADMIN_PASSWORD && action != PL_ADMIN_DISABLE) {
    int known = action >= 0 && action < PL_ADMIN_NACTIONS && ops->action[action];
    if (known)
      return ops->action[action](be, r);
    r->status = PL_ERR_INVALID_ARGUMENT;
    return PL_OK;
  }
  pl_err e = ops->user_load(be, r, action != PL_ADMIN_USER);
  if (e != PL_OK || r->status != PL_OK)
    return e;
  uint64_t uid = a->out.users[0].id;
  switch (action) {
  case PL_ADMIN_USER:
    e = ops->devices(be, r, uid);
    if (e == PL_OK)
      e = ops->groups(be, r, uid);
    return e == PL_OK ? ops->media(be, r, uid) : e;
  case PL_ADMIN_DELETE: return pl__delete(r, be, ops, uid);
  case PL_ADMIN_REVOKE: return pl__revoke(r, be, ops, uid, a->in.device);
  case PL_ADMIN_ENABLE: a->out.users[0].disabled = 0; return ops->set(be, r, uid);
  default: /* PASSWORD, DISABLE: every device signed out */
    a->out.users[0].disabled |= action == PL_ADMIN_DISABLE;
    e = ops->set(be, r, uid);
    return e == PL_OK ? pl__revoke(r, be, ops, uid, NULL) : e;
  }
}

static void pl__strv_free(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    pl_free(v[i]);
  pl_free(v);
}

/* ---- what each op's out holds -------------------------------------------- */

/* Ops whose out holds no memory (numbers only, or no out at all). */
static void pl__clear_none(pl_store_req *r) { (void)r; }

static void pl__clear_get_user(pl_store_req *r) { pl_free(r->u.get_user.out.pwhash); }

static void pl__clear_resume(pl_store_req *r) {
  pl_free(r->u.resume.out.user);
  pl_free(r->u.resume.out.device);
}

static void pl__clear_send(pl_store_req *r) {
  pl_free(r->u.send.out.conv);
  pl_msg_clear(&r->u.send.out.msg);
  pl_free(r->u.send.out.targets);
  pl_free(r->u.send.out.qids);
}

static void pl__clear_fetch(pl_store_req *r) {
  for (size_t i = 0; i < r->u.fetch.out.nmsgs; i++)
    pl_msg_clear(&r->u.fetch.out.msgs[i]);
  pl_free(r->u.fetch.out.msgs);
  pl_free(r->u.fetch.out.gids);
}

static void pl__clear_unread(pl_store_req *r) {
  for (size_t i = 0; i < r->u.unread.out.nconvs; i++)
    pl_free(r->u.unread.out.convs[i].conv);
  pl_free(r->u.unread.out.convs);
}

static void pl__clear_contacts(pl_store_req *r) {
  pl__strv_free(r->u.contacts.out.names, r->u.contacts.out.nnames);
}

static void pl__clear_presence(pl_store_req *r) {
  for (size_t i = 0; i < r->u.presence.out.nviews; i++)
    pl_free(r->u.presence.out.views[i].user);
  pl_free(r->u.presence.out.views);
}

static void pl__clear_typing(pl_store_req *r) {
  pl_free(r->u.typing.out.conv);
  pl_free(r->u.typing.out.targets);
}

static void pl__clear_group_create(pl_store_req *r) { pl_group_info_clear(&r->u.group_create.out.info); }

static void pl__clear_group_update(pl_store_req *r) { pl_group_info_clear(&r->u.group_update.out.info); }

static void pl__clear_group_list(pl_store_req *r) {
  for (size_t i = 0; i < r->u.group_list.out.ngroups; i++)
    pl_group_info_clear(&r->u.group_list.out.groups[i]);
  pl_free(r->u.group_list.out.groups);
}

static void pl__clear_group_receipts(pl_store_req *r) {
  pl__strv_free(r->u.group_receipts.out.names, r->u.group_receipts.out.nnames);
  pl__strv_free(r->u.group_receipts.out.read_by, r->u.group_receipts.out.nread_by);
}

static void pl__clear_group_devices(pl_store_req *r) { pl_free(r->u.group_devices.out.targets); }

static void pl__clear_media_auth(pl_store_req *r) {
  pl_free(r->u.media_auth.out.user);
  pl_free(r->u.media_auth.out.device);
}

static void pl__clear_media_get(pl_store_req *r) {
  pl_free(r->u.media_get.out.user);
  pl_free(r->u.media_get.out.device);
}

static void pl__clear_devices(pl_store_req *r) {
  for (size_t i = 0; i < r->u.devices.out.ndevices; i++)
    pl_free(r->u.devices.out.devices[i].name);
  pl_free(r->u.devices.out.devices);
  pl_free(r->u.devices.out.targets);
  pl__strv_free(r->u.devices.out.names, r->u.devices.out.nnames);
}

static void pl__clear_push_tokens(pl_store_req *r) {
  for (size_t i = 0; i < r->u.push_tokens.out.ntokens; i++) {
    pl_store_push_token *t = &r->u.push_tokens.out.tokens[i];
    pl_free(t->user);
    pl_free(t->provider);
    pl_free(t->token);
  }
  pl_free(r->u.push_tokens.out.tokens);
}

static void pl__clear_push_claim(pl_store_req *r) {
  for (size_t i = 0; i < r->u.push_claim.out.nrows; i++) {
    pl_store_push_row *w = &r->u.push_claim.out.rows[i];
    pl_free(w->user);
    pl_free(w->provider);
    pl_free(w->token);
    pl_free(w->from);
    pl_free(w->conv);
    pl_free(w->text);
  }
  pl_free(r->u.push_claim.out.rows);
}

static void pl__clear_admin(pl_store_req *r) {
  pl_store_admin_req *a = &r->u.admin;
  for (size_t i = 0; i < a->out.nusers; i++)
    pl_free(a->out.users[i].name);
  pl_free(a->out.users);
  for (size_t i = 0; i < a->out.ndevices; i++) {
    pl_free(a->out.devices[i].name);
    pl_free(a->out.devices[i].user);
  }
  pl_free(a->out.devices);
  for (size_t i = 0; i < a->out.ngroups; i++)
    pl_group_info_clear(&a->out.groups[i]);
  pl_free(a->out.groups);
  for (size_t i = 0; i < a->out.ninvites; i++)
    pl_free(a->out.invites[i].code);
  pl_free(a->out.invites);
  pl_free(a->out.kicked);
}

/* ---- the table ----------------------------------------------------------- */

/* Where an op's out lies in the request, to zero it (an op without one: 0, 0). */
#define PL__OUT(m) offsetof(pl_store_req, u.m.out), sizeof(((pl_store_req *)0)->u.m.out)
#define PL__NO_OUT 0, 0

typedef struct pl__op {
  pl_store_op_info info;
  size_t out_off, out_size;
} pl__op;

/* writes 0: the op never writes (it still runs in its batch's transaction).
 * grows: SEND and MEDIA_PUT only, as the disk-full path has always had it. */
static const pl__op pl__ops[] = {
    [PL_STORE_REGISTER] = {{"register", 1, 0, pl__clear_none}, PL__OUT(reg)},
    [PL_STORE_GET_USER] = {{"get_user", 0, 0, pl__clear_get_user}, PL__OUT(get_user)},
    [PL_STORE_LOGIN_DEVICE] = {{"login_device", 1, 0, pl__clear_none}, PL__OUT(login)},
    [PL_STORE_RESUME] = {{"resume", 1, 0, pl__clear_resume}, PL__OUT(resume)},
    [PL_STORE_LOGOUT] = {{"logout", 1, 0, pl__clear_none}, PL__OUT(ack)},
    [PL_STORE_SEND] = {{"send", 1, 1, pl__clear_send}, PL__OUT(send)},
    [PL_STORE_FETCH] = {{"fetch", 1, 0, pl__clear_fetch}, PL__OUT(fetch)},
    [PL_STORE_ACK] = {{"ack", 1, 0, pl__clear_none}, PL__OUT(ack)},
    [PL_STORE_MARK_READ] = {{"mark_read", 1, 0, pl__clear_none}, PL__NO_OUT},
    [PL_STORE_SETTINGS] = {{"settings", 1, 0, pl__clear_none}, PL__OUT(settings)},
    [PL_STORE_UNREAD] = {{"unread", 1, 0, pl__clear_unread}, PL__OUT(unread)},
    [PL_STORE_CONTACTS] = {{"contacts", 1, 0, pl__clear_contacts}, PL__OUT(contacts)},
    [PL_STORE_BLOCK] = {{"block", 1, 0, pl__clear_none}, PL__OUT(block)},
    [PL_STORE_PRESENCE] = {{"presence", 1, 0, pl__clear_presence}, PL__OUT(presence)},
    [PL_STORE_SEEN] = {{"seen", 1, 0, pl__clear_none}, PL__NO_OUT},
    [PL_STORE_TYPING] = {{"typing", 0, 0, pl__clear_typing}, PL__OUT(typing)},
    [PL_STORE_GROUP_CREATE] = {{"group_create", 1, 0, pl__clear_group_create}, PL__OUT(group_create)},
    [PL_STORE_GROUP_UPDATE] = {{"group_update", 1, 0, pl__clear_group_update}, PL__OUT(group_update)},
    [PL_STORE_GROUP_LIST] = {{"group_list", 1, 0, pl__clear_group_list}, PL__OUT(group_list)},
    [PL_STORE_GROUP_RECEIPTS] = {{"group_receipts", 1, 0, pl__clear_group_receipts}, PL__OUT(group_receipts)},
    [PL_STORE_MEDIA_AUTH] = {{"media_auth", 1, 0, pl__clear_media_auth}, PL__OUT(media_auth)},
    [PL_STORE_MEDIA_PUT] = {{"media_put", 1, 1, pl__clear_none}, PL__OUT(media_put)},
    [PL_STORE_MEDIA_GET] = {{"media_get", 1, 0, pl__clear_media_get}, PL__OUT(media_get)},
    [PL_STORE_GROUP_DEVICES] = {{"group_devices", 0, 0, pl__clear_group_devices}, PL__OUT(group_devices)},
    [PL_STORE_DEVICES] = {{"devices", 1, 0, pl__clear_devices}, PL__OUT(devices)},
    [PL_STORE_PUSH_TOKEN] = {{"push_token", 1, 0, pl__clear_none}, PL__NO_OUT},
    [PL_STORE_PUSH_TOKENS] = {{"push_tokens", 1, 0, pl__clear_push_tokens}, PL__OUT(push_tokens)},
    [PL_STORE_PUSH_ENQUEUE] = {{"push_enqueue", 1, 0, pl__clear_none}, PL__OUT(push_enqueue)},
    [PL_STORE_PUSH_CLAIM] = {{"push_claim", 1, 0, pl__clear_push_claim}, PL__OUT(push_claim)},
    [PL_STORE_PUSH_DONE] = {{"push_done", 1, 0, pl__clear_none}, PL__NO_OUT},
    [PL_STORE_STATS] = {{"stats", 0, 0, pl__clear_none}, PL__OUT(stats)},
    [PL_STORE_ADMIN] = {{"admin", 1, 0, pl__clear_admin}, PL__OUT(admin)},
};

static const pl__op *pl__op_get(int op) {
  if (op < 0 || (size_t)op >= sizeof pl__ops / sizeof pl__ops[0] || !pl__ops[op].info.name)
    return NULL;
  return &pl__ops[op];
}

const pl_store_op_info *pl_store_op_get(int op) {
  const pl__op *o = pl__op_get(op);
  return o ? &o->info : NULL;
}

const char *pl_store_op_name(int op) {
  const pl__op *o = pl__op_get(op);
  return o ? o->info.name : "unknown";
}

/* Frees and zeroes what req's out holds: the outputs of out_op, the op the
 * store last ran req as (a caller may have set op to the next one since),
 * or of op if the store never ran it (out_op 0). */
void pl_store_req_clear(pl_store_req *req) {
  const pl__op *o = req->out_op < 0 ? NULL : pl__op_get(req->out_op ? req->out_op : (int)req->op);
  if (o) {
    o->info.clear(req);
    if (o->out_size)
      memset((char *)req + o->out_off, 0, o->out_size);
  }
  for (size_t i = 0; i < req->nevents; i++) {
    pl_msg_clear(&req->events[i].msg);
    pl_free(req->events[i].targets);
    pl_free(req->events[i].qids);
  }
  pl_free(req->events);
  for (size_t i = 0; i < req->nchanges; i++)
    pl_free(req->changes[i].devices);
  pl_free(req->changes);
  req->events = NULL;
  req->nevents = 0;
  req->changes = NULL;
  req->nchanges = req->changes_cap = 0;
  req->out_op = -1; /* nothing held: out may now lie under the next op's in */
}

void pl_store_req_out_begin(pl_store_req *req) {
  pl_store_req_clear(req);
  const pl__op *o = pl__op_get(req->op);
  if (o && o->out_size)
    memset((char *)req + o->out_off, 0, o->out_size);
  req->out_op = o ? (int)req->op : -1;
}

/* The packed Act a message carries: what the client sent, and when it
 * vanishes; NULL when there is nothing to say. */
uint8_t *pl_store_act_pack(const pl_act *a, uint64_t vanish_at, size_t *len) {
  Parley__Act p = PARLEY__ACT__INIT;
  if (a) {
    p.kind = (Parley__ActKind)a->kind;
    p.target = a->target;
    p.reply_to = a->reply_to;
    p.forwarded = a->forwarded;
    p.timer_s = a->timer_s;
    p.target_conv = a->target_conv && *a->target_conv ? (char *)a->target_conv : "";
  }
  p.vanish_at = vanish_at;
  *len = parley__act__get_packed_size(&p);
  if (!*len)
    return NULL;
  uint8_t *b = pl_malloc(*len);
  parley__act__pack(&p, b);
  return b;
}

/* The attachment as the wire carries it: what the server stored. */
void pl_store_media_pack(const pl_media_row *m, uint8_t **out, size_t *len) {
  Parley__Media pm = PARLEY__MEDIA__INIT;
  pm.id = (char *)m->id;
  pm.type = (char *)m->type;
  pm.size = m->size;
  pm.width = m->width;
  pm.height = m->height;
  pm.thumb_width = m->thumb_width;
  pm.thumb_height = m->thumb_height;
  pm.thumb_size = m->thumb_size;
  pm.name = (char *)m->name;
  *len = parley__media__get_packed_size(&pm);
  *out = pl_malloc(*len ? *len : 1);
  parley__media__pack(&pm, *out);
}
