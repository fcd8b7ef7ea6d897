/* pl_sess_group: the group requests (protocol.md 12): GroupCreate,
 * GroupUpdate, GroupListGet and GroupReceiptsGet, each a row of the command
 * table (pl_session.c) whose steps are here. The rules (roles, who may add
 * whom, sizes) are the store's; this checks the shape of a request and
 * writes the answer. */
#include <stdio.h>
#include <string.h>

#include "../common/pl_mem.h"
#include "pl_sess_int.h"

/* ---- GroupCreate, GroupUpdate --------------------------------------------- */

int pl_sess__group_create_bad(const ProtobufCMessage *msg) {
  /* the name and size limits are the store's (it answers those) */
  const Parley__GroupCreate *m = (const Parley__GroupCreate *)msg;
  int bad = 0;
  for (size_t i = 0; i < m->n_members && !bad; i++)
    bad = pl_sess__bad_name(m->members[i]);
  return bad;
}

void pl_sess__group_create_fill(pl_store_req *r, ProtobufCMessage *msg) {
  Parley__GroupCreate *m = (Parley__GroupCreate *)msg;
  r->u.group_create.in.name = m->name;
  r->u.group_create.in.description = m->description;
  r->u.group_create.in.users = (const char *const *)m->members;
  r->u.group_create.in.nusers = m->n_members;
}

int pl_sess__group_update_bad(const ProtobufCMessage *msg) {
  const Parley__GroupUpdate *m = (const Parley__GroupUpdate *)msg;
  int needs_user = m->op == PARLEY__GROUP_OP__GROUP_ADD || m->op == PARLEY__GROUP_OP__GROUP_REMOVE ||
                   m->op == PARLEY__GROUP_OP__GROUP_SET_ROLE;
  return !pl_frame_gid(m->group) || m->op < 0 || m->op > PARLEY__GROUP_OP__GROUP_SET_ROLE ||
         (needs_user && pl_sess__bad_name(m->user));
}

void pl_sess__group_update_fill(pl_store_req *r, ProtobufCMessage *msg) {
  Parley__GroupUpdate *m = (Parley__GroupUpdate *)msg;
  r->u.group_update.in.group = pl_frame_gid(m->group);
  r->u.group_update.in.group_op = (int)m->op;
  r->u.group_update.in.peer = *m->user ? m->user : NULL;
  r->u.group_update.in.name = m->name;
  r->u.group_update.in.description = m->description;
  r->u.group_update.in.role = (int)m->role;
}

/* GroupInfo from the store's view of a group (strings borrowed). */
static void pl__ginfo(Parley__GroupInfo *gi, const pl_group_info *g, char *id, size_t idlen) {
  parley__group_info__init(gi);
  snprintf(id, idlen, "%llu", (unsigned long long)g->gid);
  gi->group = id;
  gi->name = g->name ? g->name : "";
  gi->description = g->description ? g->description : "";
  gi->my_role = (Parley__GroupRole)g->my_role;
  gi->member_count = g->member_count;
  gi->last_seq = g->last_seq;
}

void pl_sess__group_reply(pl_session *s, const char *ref, pl_sess__req *sr) {
  const pl_store_req *req = &sr->req;
  Parley__GroupInfo gi;
  char id[24];
  const pl_group_info *g =
      req->op == PL_STORE_GROUP_CREATE ? &req->u.group_create.out.info : &req->u.group_update.out.info;
  size_t n = g->nmembers;
  Parley__GroupMember *ms = pl_calloc(n ? n : 1, sizeof *ms);
  Parley__GroupMember **ptrs = pl_calloc(n ? n : 1, sizeof *ptrs);
  pl__ginfo(&gi, g, id, sizeof id);
  gi.ref = (char *)ref;
  for (size_t i = 0; i < n; i++) {
    parley__group_member__init(&ms[i]);
    ms[i].user = g->members[i].user;
    ms[i].role = (Parley__GroupRole)g->members[i].role;
    ptrs[i] = &ms[i];
  }
  gi.n_members = n;
  gi.members = ptrs;
  pl_sess__write(s, PARLEY__FRAME_TYPE__FRAME_GROUP_INFO, &gi.base);
  pl_free(ptrs);
  pl_free(ms);
}

/* ---- GroupListGet, GroupReceiptsGet -------------------------------------- */

void pl_sess__group_list_reply(pl_session *s, const char *ref, pl_sess__req *sr) {
  const pl_store_req *req = &sr->req;
  Parley__GroupList gl = PARLEY__GROUP_LIST__INIT;
  size_t n = req->u.group_list.out.ngroups;
  Parley__GroupInfo *gs = pl_calloc(n ? n : 1, sizeof *gs);
  Parley__GroupInfo **ptrs = pl_calloc(n ? n : 1, sizeof *ptrs);
  char(*ids)[24] = pl_calloc(n ? n : 1, sizeof *ids);
  for (size_t i = 0; i < n; i++) {
    pl__ginfo(&gs[i], &req->u.group_list.out.groups[i], ids[i], sizeof ids[i]);
    ptrs[i] = &gs[i];
  }
  gl.ref = (char *)ref;
  gl.n_groups = n;
  gl.groups = ptrs;
  pl_sess__write(s, PARLEY__FRAME_TYPE__FRAME_GROUP_LIST, &gl.base);
  pl_free(ids);
  pl_free(ptrs);
  pl_free(gs);
}

int pl_sess__group_receipts_bad(const ProtobufCMessage *msg) {
  return !pl_frame_gid(((const Parley__GroupReceiptsGet *)msg)->group);
}

void pl_sess__group_receipts_fill(pl_store_req *r, ProtobufCMessage *msg) {
  r->u.group_receipts.in.group = pl_frame_gid(((Parley__GroupReceiptsGet *)msg)->group);
  r->u.group_receipts.in.upto = ((Parley__GroupReceiptsGet *)msg)->seq;
}

void pl_sess__group_receipts_reply(pl_session *s, const char *ref, pl_sess__req *sr) {
  const pl_store_req *req = &sr->req;
  Parley__GroupReceipts gr = PARLEY__GROUP_RECEIPTS__INIT;
  gr.ref = (char *)ref;
  gr.group = ((Parley__GroupReceiptsGet *)sr->msg)->group;
  gr.seq = req->u.group_receipts.in.upto;
  gr.members = req->u.group_receipts.out.members;
  gr.delivered = req->u.group_receipts.out.delivered;
  gr.read = req->u.group_receipts.out.read;
  gr.detailed = req->u.group_receipts.out.detailed != 0;
  gr.n_delivered_by = req->u.group_receipts.out.nnames;
  gr.delivered_by = req->u.group_receipts.out.names;
  gr.n_read_by = req->u.group_receipts.out.nread_by;
  gr.read_by = req->u.group_receipts.out.read_by;
  pl_sess__write(s, PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS, &gr.base);
}
