/* pl_admin_json: the admin API's answers as JSON (docs/admin.md), from the
 * store's ADMIN results and the core's counters. */
#include <stdlib.h>
#include <string.h>

#include "common/pl_jsonu64.h"
#include "common/pl_mem.h"
#include "common/pl_time.h"
#include "pl_admin_int.h"
#include "rules/pl_signup.h"

static const char *pl__role(int role) {
  static const char *const names[] = {"none", "member", "admin", "owner"};
  return role >= 0 && role <= 3 ? names[role] : "?";
}

void pl_admin_json_res(pl_http_res *res, int status, json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  res->status = status;
  res->type = "application/json";
  if (s) {
    pl_bytes_append(&res->body, s, strlen(s));
    pl_bytes_append(&res->body, "\n", 1);
  }
  free(s);
  json_decref(j);
}

void pl_admin_error_res(pl_http_res *res, int status, const char *code, const char *why) {
  pl_admin_json_res(res, status, json_pack("{s:s,s:s,s:i}", "error", code, "message", why, "status", status));
}

json_t *pl_admin_json_user(const pl_admin_user *u) {
  return json_pack("{s:s,s:o,s:I,s:I,s:b,s:I}", "user", u->name, "id", pl_json_u64(u->id), "created",
                   (json_int_t)u->created, "last_seen", (json_int_t)u->last_seen, "disabled", u->disabled,
                   "devices", (json_int_t)u->devices);
}

static json_t *pl__device(const pl_admin_device *d, pl_core *core) {
  json_t *j = json_pack("{s:s,s:o,s:I,s:b}", "name", d->name, "id", pl_json_u64(d->id), "queued",
                        (json_int_t)d->queued, "signed_in", d->signed_in);
  if (d->user)
    json_object_set_new(j, "user", json_string(d->user));
  else {
    json_object_set_new(j, "created", json_integer((json_int_t)d->created));
    json_object_set_new(j, "last_used", json_integer((json_int_t)d->used_at));
  }
  json_object_set_new(j, "online", json_boolean(pl_core_online(core, d->id)));
  return j;
}

static json_t *pl__devices(const pl_store_admin_req *a, pl_core *core) {
  json_t *v = json_array();
  for (size_t i = 0; i < a->out.ndevices; i++)
    json_array_append_new(v, pl__device(&a->out.devices[i], core));
  return v;
}

static json_t *pl__group(const pl_group_info *g, int with_role) {
  json_t *j = json_pack("{s:o,s:s,s:s,s:I}", "id", pl_json_u64(g->gid), "name", g->name, "description",
                        g->description, "members", (json_int_t)g->member_count);
  if (with_role)
    json_object_set_new(j, "role", json_string(pl__role(g->my_role)));
  if (g->nmembers) {
    json_t *m = json_array();
    for (size_t i = 0; i < g->nmembers; i++)
      json_array_append_new(
          m, json_pack("{s:s,s:s}", "user", g->members[i].user, "role", pl__role(g->members[i].role)));
    json_object_set_new(j, "member_list", m);
  }
  return j;
}

static json_t *pl__groups(const pl_store_admin_req *a, int with_role) {
  json_t *v = json_array();
  for (size_t i = 0; i < a->out.ngroups; i++)
    json_array_append_new(v, pl__group(&a->out.groups[i], with_role));
  return v;
}

static json_t *pl__users(const pl_store_admin_req *a) {
  json_t *v = json_array();
  for (size_t i = 0; i < a->out.nusers; i++)
    json_array_append_new(v, pl_admin_json_user(&a->out.users[i]));
  json_t *next =
      a->out.more && a->out.nusers ? json_string(a->out.users[a->out.nusers - 1].name) : json_null();
  return json_pack("{s:o,s:o}", "users", v, "next", next);
}

static json_t *pl__invites(const pl_store_admin_req *a) {
  json_t *v = json_array();
  for (size_t i = 0; i < a->out.ninvites; i++) {
    const pl_admin_invite *n = &a->out.invites[i];
    json_array_append_new(v, json_pack("{s:s,s:I,s:I,s:I}", "code", n->code, "uses_left",
                                       (json_int_t)n->uses_left, "expires", (json_int_t)n->expires, "created",
                                       (json_int_t)n->created));
  }
  return json_pack("{s:o}", "invites", v);
}

json_t *pl_admin_json_stats(const pl_admin *a, const pl_store_admin_req *s) {
  pl_core_stats cs;
  pl_core_get_stats(a->cfg.core, &cs);
  const pl_store_counts *c = &s->out.counts;
  json_t *store =
      json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "users", (json_int_t)c->users, "devices",
                (json_int_t)c->devices, "messages", (json_int_t)c->messages, "queue", (json_int_t)c->queue,
                "group_history", (json_int_t)c->group_history, "groups", (json_int_t)c->groups, "members",
                (json_int_t)c->members, "media", (json_int_t)c->media);
  return json_pack("{s:s,s:I,s:b,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o}", "version", a->cfg.version, "uptime_s",
                   (json_int_t)((pl_now_ms() - a->cfg.started_ms) / 1000), "draining", cs.draining,
                   "registration", pl_signup_name(a->cfg.signup), "online_users", (json_int_t)cs.online_users,
                   "online_devices", (json_int_t)cs.online_devices, "connections", (json_int_t)cs.conns_open,
                   "login_failures", (json_int_t)cs.login_failures, "database_bytes",
                   (json_int_t)s->out.db_bytes, "media_bytes", (json_int_t)s->out.media_bytes, "store", store,
                   "deepest_queues", pl__devices(s, a->cfg.core));
}

/* The answer of a call that went well. */
static json_t *pl__ok(const pl_admin_call *c, int *status) {
  const pl_store_admin_req *a = &c->req.u.admin;
  json_t *j;
  switch (a->in.action) {
  case PL_ADMIN_USERS: return pl__users(a);
  case PL_ADMIN_USER:
    j = pl_admin_json_user(&a->out.users[0]);
    json_object_set_new(j, "device_list", pl__devices(a, c->a->cfg.core));
    json_object_set_new(j, "groups", pl__groups(a, 1));
    json_object_set_new(j, "media",
                        json_pack("{s:I,s:I}", "count", (json_int_t)a->out.media_count, "bytes",
                                  (json_int_t)a->out.media_bytes));
    return j;
  case PL_ADMIN_CREATE: *status = 201; return pl_admin_json_user(&a->out.users[0]);
  case PL_ADMIN_GROUPS:
    return json_pack("{s:o,s:o}", "groups", pl__groups(a, 0), "next",
                     a->out.more && a->out.ngroups ? pl_json_u64(a->out.groups[a->out.ngroups - 1].gid)
                                                   : json_null());
  case PL_ADMIN_GROUP: return pl__group(&a->out.groups[0], 0);
  case PL_ADMIN_REMOVE:
    return json_pack("{s:o,s:s}", "group", pl_json_u64(a->in.group), "removed", a->in.user);
  case PL_ADMIN_INVITE:
    *status = 201;
    return json_pack("{s:s,s:I,s:I}", "code", a->in.code, "uses", (json_int_t)(a->in.uses ? a->in.uses : 1),
                     "expires", (json_int_t)a->in.expires);
  case PL_ADMIN_INVITES: return pl__invites(a);
  case PL_ADMIN_INVITE_DEL: return json_pack("{s:s}", "deleted", a->in.code);
  case PL_ADMIN_TOP_QUEUES: return json_pack("{s:o}", "queues", pl__devices(a, c->a->cfg.core));
  case PL_ADMIN_STATS: return pl_admin_json_stats(c->a, a);
  case PL_ADMIN_BACKUP:
    *status = 201;
    return json_pack("{s:s,s:I}", "path", a->in.path, "bytes", (json_int_t)a->out.db_bytes);
  default: /* PASSWORD, DISABLE, ENABLE, DELETE, REVOKE */
    return json_pack("{s:s,s:I}", "user", a->in.user, "signed_out", (json_int_t)a->out.nkicked);
  }
}

json_t *pl_admin_json_answer(const pl_admin_call *c, int *status) {
  pl_err e = c->req.status;
  *status = 200;
  if (e == PL_OK)
    return pl__ok(c, status);
  switch (e) {
  case PL_ERR_NOT_FOUND: *status = 404; break;
  case PL_ERR_NOT_MEMBER: *status = 404; break;
  case PL_ERR_USER_EXISTS: *status = 409; break;
  case PL_ERR_INVALID_ARGUMENT: *status = 400; break;
  case PL_ERR_SHUTTING_DOWN:
  case PL_ERR_STORAGE_FULL: *status = 503; break;
  default: *status = 500; break;
  }
  const char *why =
      e == PL_ERR_USER_EXISTS && c->req.u.admin.in.action == PL_ADMIN_INVITE   ? "that code exists"
      : e == PL_ERR_USER_EXISTS && c->req.u.admin.in.action == PL_ADMIN_BACKUP ? "that file exists"
                                                                               : pl_err_msg(e);
  return json_pack("{s:s,s:s,s:i}", "error", pl_err_name(e), "message", why, "status", *status);
}
