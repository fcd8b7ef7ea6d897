/* pl_store_valid: the checks every backend runs on a request before it
 * (moved out of the SQLite backend so the PostgreSQL one shares them). */
#include "pl_store_valid.h"

static int pl__register_ok(const pl_store_req *r) {
  return r->u.reg.in.user && r->u.reg.in.device && r->u.reg.in.pwhash;
}
static int pl__get_user_ok(const pl_store_req *r) { return r->u.get_user.in.user != NULL; }
static int pl__login_ok(const pl_store_req *r) { return r->u.login.in.device != NULL; }
static int pl__send_ok(const pl_store_req *r) {
  const pl_store_send_req *x = &r->u.send;
  return (x->in.peer || x->in.group) && x->in.client_id && (x->in.body || !x->in.body_len);
}
static int pl__group_create_ok(const pl_store_req *r) {
  return r->user_id && (r->u.group_create.in.users || !r->u.group_create.in.nusers);
}
static int pl__group_update_ok(const pl_store_req *r) { return r->user_id && r->u.group_update.in.group; }
static int pl__user_ok(const pl_store_req *r) { return r->user_id != 0; }
static int pl__mark_read_ok(const pl_store_req *r) {
  return (r->u.mark_read.in.peer || r->u.mark_read.in.group) && r->user_id;
}
static int pl__group_receipts_ok(const pl_store_req *r) { return r->user_id && r->u.group_receipts.in.group; }
static int pl__group_devices_ok(const pl_store_req *r) { return r->u.group_devices.in.group != 0; }
static int pl__contacts_ok(const pl_store_req *r) {
  return r->user_id && (r->u.contacts.in.contact_op == 0 || r->u.contacts.in.peer);
}
static int pl__block_ok(const pl_store_req *r) { return r->user_id && r->u.block.in.peer; }
static int pl__typing_ok(const pl_store_req *r) {
  return r->user_id && (r->u.typing.in.peer || r->u.typing.in.group);
}
static int pl__presence_ok(const pl_store_req *r) {
  return r->user_id && (r->u.presence.in.users || !r->u.presence.in.nusers);
}
static int pl__devices_ok(const pl_store_req *r) {
  int op = r->u.devices.in.device_op;
  return r->user_id && op >= PL_DEVICES_LIST && op <= PL_DEVICES_REVOKE_OTHERS &&
         (op != PL_DEVICES_REVOKE || r->u.devices.in.name);
}
static int pl__media_put_ok(const pl_store_req *r) { return r->user_id && r->u.media_put.in.media; }
static int pl__media_get_ok(const pl_store_req *r) { return r->u.media_get.in.media_id != NULL; }

static int pl__push_token_ok(const pl_store_req *r) {
  const pl_store_push_token_req *x = &r->u.push_token;
  return x->in.device && (!x->in.token || !*x->in.token || (x->in.user && x->in.provider && x->in.user_id));
}
static int pl__push_enqueue_ok(const pl_store_req *r) {
  return r->u.push_enqueue.in.devices || !r->u.push_enqueue.in.ndevices;
}
static int pl__push_claim_ok(const pl_store_req *r) { return r->u.push_claim.in.limit <= 4096; }
static int pl__push_done_ok(const pl_store_req *r) {
  const pl_store_push_done_req *x = &r->u.push_done;
  for (size_t i = 0; x->in.results && i < x->in.nresults; i++)
    if (x->in.results[i].outcome < PL_PUSH_DONE_SENT || x->in.results[i].outcome > PL_PUSH_DONE_RELEASE ||
        (x->in.results[i].outcome == PL_PUSH_DONE_BAD_TOKEN && !x->in.results[i].token))
      return 0;
  return x->in.results || !x->in.nresults;
}

static int pl__admin_ok(const pl_store_req *r) {
  const pl_store_admin_req *a = &r->u.admin;
  switch (a->in.action) {
  case PL_ADMIN_USERS:
  case PL_ADMIN_GROUPS:
  case PL_ADMIN_INVITES:
  case PL_ADMIN_STATS:
  case PL_ADMIN_TOP_QUEUES: return 1;
  case PL_ADMIN_BACKUP: return a->in.path != NULL;
  case PL_ADMIN_CREATE:
  case PL_ADMIN_PASSWORD: return a->in.user && a->in.pwhash;
  case PL_ADMIN_GROUP: return a->in.group != 0;
  case PL_ADMIN_REMOVE: return a->in.group && a->in.user;
  case PL_ADMIN_INVITE:
  case PL_ADMIN_INVITE_TAKE:
  case PL_ADMIN_INVITE_GIVE:
  case PL_ADMIN_INVITE_DEL: return a->in.code != NULL;
  case PL_ADMIN_USER:
  case PL_ADMIN_DISABLE:
  case PL_ADMIN_ENABLE:
  case PL_ADMIN_DELETE:
  case PL_ADMIN_LEAVE_GROUPS:
  case PL_ADMIN_USER_GROUPS:
  case PL_ADMIN_REVOKE: return a->in.user != NULL;
  default: return 0;
  }
}

static int (*const pl__valid[])(const pl_store_req *r) = {
    [PL_STORE_REGISTER] = pl__register_ok,
    [PL_STORE_GET_USER] = pl__get_user_ok,
    [PL_STORE_LOGIN_DEVICE] = pl__login_ok,
    [PL_STORE_SEND] = pl__send_ok,
    [PL_STORE_MARK_READ] = pl__mark_read_ok,
    [PL_STORE_SETTINGS] = pl__user_ok,
    [PL_STORE_UNREAD] = pl__user_ok,
    [PL_STORE_CONTACTS] = pl__contacts_ok,
    [PL_STORE_BLOCK] = pl__block_ok,
    [PL_STORE_PRESENCE] = pl__presence_ok,
    [PL_STORE_SEEN] = pl__user_ok,
    [PL_STORE_TYPING] = pl__typing_ok,
    [PL_STORE_GROUP_CREATE] = pl__group_create_ok,
    [PL_STORE_GROUP_UPDATE] = pl__group_update_ok,
    [PL_STORE_GROUP_LIST] = pl__user_ok,
    [PL_STORE_GROUP_RECEIPTS] = pl__group_receipts_ok,
    [PL_STORE_MEDIA_PUT] = pl__media_put_ok,
    [PL_STORE_MEDIA_GET] = pl__media_get_ok,
    [PL_STORE_GROUP_DEVICES] = pl__group_devices_ok,
    [PL_STORE_DEVICES] = pl__devices_ok,
    [PL_STORE_PUSH_TOKEN] = pl__push_token_ok,
    [PL_STORE_PUSH_ENQUEUE] = pl__push_enqueue_ok,
    [PL_STORE_PUSH_CLAIM] = pl__push_claim_ok,
    [PL_STORE_PUSH_DONE] = pl__push_done_ok,
    [PL_STORE_ADMIN] = pl__admin_ok,
};

int pl_store_req_valid(const pl_store_req *r) {
  int op = (int)r->op;
  if (op < 0 || (size_t)op >= sizeof pl__valid / sizeof pl__valid[0] || !pl__valid[op])
    return 1;
  return pl__valid[op](r);
}
