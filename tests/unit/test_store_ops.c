/* test_store_ops: the table of store operations. Every op from the first to
 * the last has a name, a clear function and an exec function in the SQLite
 * backend; an op without an entry is refused, not a crash; and clearing a
 * request of each op frees what its out holds (run under ASan: LSan reports
 * what a clear function forgets). */
#include <stdlib.h>
#include <string.h>

#include "common/pl_log.h"
#include "common/pl_mem.h"
#include "store/pl_store.h"
#include "store/sqlite/sq_internal.h"
#include "testlib.h"

static void test_every_op_has_an_entry(void) {
  for (int op = PL_STORE_OP_FIRST; op <= PL_STORE_OP_LAST; op++) {
    const pl_store_op_info *o = pl_store_op_get(op);
    CHECK(o != NULL);
    if (!o)
      continue;
    CHECK(o->name != NULL && *o->name);
    CHECK(o->clear != NULL);
    CHECK_STR(pl_store_op_name(op), o->name);
    for (int k = PL_STORE_OP_FIRST; k < op; k++) /* names tell ops apart in logs and metrics */
      CHECK(strcmp(pl_store_op_name(k), o->name) != 0);
    const pl_sq_op *b = pl_sq_op_get(op);
    CHECK(b != NULL && b->exec != NULL);
  }
}

static void test_unknown_ops_have_none(void) {
  const int bad[] = {0, -1, PL_STORE_OP_LAST + 1, 1000};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK(pl_store_op_get(bad[i]) == NULL);
    CHECK(pl_sq_op_get(bad[i]) == NULL);
    CHECK_STR(pl_store_op_name(bad[i]), "unknown");
  }
}

/* The disk-full path refuses what grows the data: messages and uploads. */
static void test_only_send_and_media_put_grow(void) {
  for (int op = PL_STORE_OP_FIRST; op <= PL_STORE_OP_LAST; op++)
    CHECK_EQ_I(pl_store_op_get(op)->grows, op == PL_STORE_SEND || op == PL_STORE_MEDIA_PUT);
  CHECK_EQ_I(pl_store_op_get(PL_STORE_STATS)->writes, 0);
  CHECK_EQ_I(pl_store_op_get(PL_STORE_SEND)->writes, 1);
}

/* An op the store and the backend do not know comes back INVALID_ARGUMENT. */
static void test_unknown_op_is_refused(void) {
  char *dir = tl_tempdir();
  pl_store_config c = {.dir = dir, .ttl_ms = 3600u * 1000u, .max_devices = 4, .max_queue = 1000};
  pl_store *s = NULL;
  CHECK_EQ_I(pl_store_open(&s, &pl_store_sqlite, &c, NULL), PL_OK);
  pl_store_req r = {.op = (pl_store_op)(PL_STORE_OP_LAST + 1)};
  CHECK_EQ_I(pl_store_call(s, &r), PL_ERR_INVALID_ARGUMENT);
  CHECK_EQ_I(r.status, PL_ERR_INVALID_ARGUMENT);
  pl_store_req_clear(&r);
  r = (pl_store_req){.op = PL_STORE_STATS}; /* the store still works */
  CHECK_EQ_I(pl_store_call(s, &r), PL_OK);
  CHECK_EQ_I(r.status, PL_OK);
  pl_store_req_clear(&r);
  pl_store_close(s);
  tl_rmrf(dir);
  free(dir);
}

static char **strv(size_t n) {
  char **v = pl_calloc(n, sizeof *v);
  for (size_t i = 0; i < n; i++)
    v[i] = pl_strdup("x");
  return v;
}

static void msg_fill(pl_msg *m) {
  m->conv = pl_strdup("dm:a:b");
  m->from = pl_strdup("a");
  m->from_device = pl_strdup("phone");
  m->id = pl_strdup("m1");
  m->body = (uint8_t *)pl_strdup("hi");
  m->media = (uint8_t *)pl_strdup("m");
}

static void info_fill(pl_group_info *g) {
  g->name = pl_strdup("team");
  g->description = pl_strdup("d");
  g->members = pl_calloc(2, sizeof *g->members);
  g->members[0].user = pl_strdup("a");
  g->members[1].user = pl_strdup("b");
  g->nmembers = 2;
}

static uint64_t *ids(size_t n) { return pl_calloc(n, sizeof(uint64_t)); }

/* Gives r's out (for r->op) something to free in every pointer field. */
static void out_fill(pl_store_req *r) {
  switch (r->op) {
  case PL_STORE_GET_USER: r->u.get_user.out.pwhash = pl_strdup("h"); break;
  case PL_STORE_RESUME:
    r->u.resume.out.user = pl_strdup("a");
    r->u.resume.out.device = pl_strdup("phone");
    break;
  case PL_STORE_SEND:
    r->u.send.out.conv = pl_strdup("dm:a:b");
    msg_fill(&r->u.send.out.msg);
    r->u.send.out.targets = ids(r->u.send.out.ntargets = 2);
    break;
  case PL_STORE_FETCH:
    r->u.fetch.out.msgs = pl_calloc(2, sizeof(pl_msg));
    msg_fill(&r->u.fetch.out.msgs[0]);
    msg_fill(&r->u.fetch.out.msgs[1]);
    r->u.fetch.out.nmsgs = 2;
    r->u.fetch.out.gids = ids(r->u.fetch.out.ngids = 3);
    break;
  case PL_STORE_UNREAD:
    r->u.unread.out.convs = pl_calloc(1, sizeof(pl_conv_state));
    r->u.unread.out.convs[0].conv = pl_strdup("dm:a:b");
    r->u.unread.out.nconvs = 1;
    break;
  case PL_STORE_CONTACTS: r->u.contacts.out.names = strv(r->u.contacts.out.nnames = 2); break;
  case PL_STORE_PRESENCE:
    r->u.presence.out.views = pl_calloc(1, sizeof(pl_presence_view));
    r->u.presence.out.views[0].user = pl_strdup("b");
    r->u.presence.out.nviews = 1;
    break;
  case PL_STORE_TYPING:
    r->u.typing.out.conv = pl_strdup("g:1");
    r->u.typing.out.targets = ids(r->u.typing.out.ntargets = 1);
    break;
  case PL_STORE_GROUP_CREATE: info_fill(&r->u.group_create.out.info); break;
  case PL_STORE_GROUP_UPDATE: info_fill(&r->u.group_update.out.info); break;
  case PL_STORE_GROUP_LIST:
    r->u.group_list.out.groups = pl_calloc(2, sizeof(pl_group_info));
    info_fill(&r->u.group_list.out.groups[0]);
    info_fill(&r->u.group_list.out.groups[1]);
    r->u.group_list.out.ngroups = 2;
    break;
  case PL_STORE_GROUP_RECEIPTS:
    r->u.group_receipts.out.names = strv(r->u.group_receipts.out.nnames = 2);
    r->u.group_receipts.out.read_by = strv(r->u.group_receipts.out.nread_by = 1);
    break;
  case PL_STORE_GROUP_DEVICES:
    r->u.group_devices.out.targets = ids(r->u.group_devices.out.ntargets = 2);
    break;
  case PL_STORE_MEDIA_AUTH:
    r->u.media_auth.out.user = pl_strdup("a");
    r->u.media_auth.out.device = pl_strdup("phone");
    break;
  case PL_STORE_MEDIA_GET:
    r->u.media_get.out.user = pl_strdup("a");
    r->u.media_get.out.device = pl_strdup("phone");
    break;
  case PL_STORE_DEVICES:
    r->u.devices.out.devices = pl_calloc(1, sizeof(pl_device_row));
    r->u.devices.out.devices[0].name = pl_strdup("phone");
    r->u.devices.out.ndevices = 1;
    r->u.devices.out.targets = ids(r->u.devices.out.ntargets = 1);
    r->u.devices.out.names = strv(r->u.devices.out.nnames = 1);
    break;
  case PL_STORE_PUSH_TOKENS:
    r->u.push_tokens.out.tokens = pl_calloc(1, sizeof(pl_store_push_token));
    r->u.push_tokens.out.tokens[0].user = pl_strdup("a");
    r->u.push_tokens.out.tokens[0].provider = pl_strdup("webhook");
    r->u.push_tokens.out.tokens[0].token = pl_strdup("t");
    r->u.push_tokens.out.ntokens = 1;
    break;
  case PL_STORE_PUSH_CLAIM: {
    pl_store_push_row *w = r->u.push_claim.out.rows = pl_calloc(1, sizeof(pl_store_push_row));
    w->user = pl_strdup("a");
    w->provider = pl_strdup("webhook");
    w->token = pl_strdup("t");
    w->from = pl_strdup("b");
    w->conv = pl_strdup("dm:a:b");
    w->text = pl_strdup("hi");
    r->u.push_claim.out.nrows = 1;
    break;
  }
  default: break; /* numbers only, or no out */
  }
  /* What any op may leave for delivery. */
  r->events = pl_calloc(1, sizeof(pl_store_event));
  msg_fill(&r->events[0].msg);
  r->events[0].targets = ids(r->events[0].ntargets = 1);
  r->nevents = 1;
  r->changes = pl_calloc(2, sizeof(pl_group_change));
  r->changes[0].devices = ids(r->changes[0].n = 1);
  r->nchanges = 1;
  r->changes_cap = 2;
}

/* Bytes of r other than the common header are zero (the union). */
static int union_zero(const pl_store_req *r) {
  const unsigned char *p = (const unsigned char *)&r->u;
  for (size_t i = 0; i < sizeof r->u; i++)
    if (p[i])
      return 0;
  return 1;
}

static void test_clear_frees_every_out(void) {
  for (int op = PL_STORE_OP_FIRST; op <= PL_STORE_OP_LAST; op++) {
    pl_store_req r = {.op = (pl_store_op)op};
    out_fill(&r);
    pl_store_req_clear(&r);
    CHECK(union_zero(&r)); /* freed and zeroed; a leak shows under LSan */
    CHECK(r.events == NULL && r.nevents == 0 && r.changes == NULL && r.nchanges == 0 && r.changes_cap == 0);
    pl_store_req_clear(&r); /* twice is fine */
  }
}

/* A request the store ran as one op and the caller then set to another:
 * the clear frees what the store left, by the op it ran. */
static void test_clear_follows_the_op_the_store_ran(void) {
  pl_store_req r = {.op = PL_STORE_GROUP_DEVICES};
  pl_store_req_out_begin(&r);
  r.u.group_devices.out.targets = ids(r.u.group_devices.out.ntargets = 4);
  r.op = PL_STORE_PUSH_ENQUEUE;
  pl_store_req_clear(&r);
  CHECK(r.u.group_devices.out.targets == NULL);
  pl_store_req_clear(&r);
}

int main(void) {
  pl_log_set_level(PL_LOG_WARN);
  RUN(test_every_op_has_an_entry);
  RUN(test_unknown_ops_have_none);
  RUN(test_only_send_and_media_put_grow);
  RUN(test_unknown_op_is_refused);
  RUN(test_clear_frees_every_out);
  RUN(test_clear_follows_the_op_the_store_ran);
  return tl_summary();
}
