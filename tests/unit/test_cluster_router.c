/* pl_router_cluster: what a node does with the other nodes' bus messages,
 * without NATS: the cluster router around a model of the local router that
 * records what it is asked, fed decoded bus messages directly. Takeover
 * keeps the newest connection (ties by node name); a node declared dead
 * takes its devices with it; hints reach the local router as they came. */
#include <string.h>

#include "cluster/pl_cluster_int.h"
#include "common/pl_mem.h"
#include "testlib.h"

typedef struct model {
  pl_router base;
  uint64_t online[16];
  size_t nonline;
  uint64_t kicked[16];
  size_t nkicked;
  uint64_t hinted[16];
  size_t nhinted;
  uint64_t hint_gid;
} model;

static model *M(pl_router *r) { return (model *)r; }
static void m_attach(pl_router *r, uint64_t d, pl_loop *l, void *ep) {
  (void)l, (void)ep;
  M(r)->online[M(r)->nonline++] = d;
}
static void m_detach(pl_router *r, uint64_t d, pl_loop *l, void *ep) {
  (void)l, (void)ep;
  for (size_t i = 0; i < M(r)->nonline; i++)
    if (M(r)->online[i] == d)
      M(r)->online[i] = M(r)->online[--M(r)->nonline];
}
static int m_is_online(pl_router *r, uint64_t d) {
  for (size_t i = 0; i < M(r)->nonline; i++)
    if (M(r)->online[i] == d)
      return 1;
  return 0;
}
static void m_kick(pl_router *r, uint64_t d) { M(r)->kicked[M(r)->nkicked++] = d; }
static void m_hint(pl_router *r, const uint64_t *d, size_t n, uint64_t gid) {
  for (size_t i = 0; i < n; i++)
    M(r)->hinted[M(r)->nhinted++] = d[i];
  M(r)->hint_gid = gid;
}
static void m_free(pl_router *r) { pl_free(r); }

static const pl_router_ops model_ops = {.attach = m_attach,
                                        .detach = m_detach,
                                        .is_online = m_is_online,
                                        .kick = m_kick,
                                        .hint = m_hint,
                                        .free = m_free};

static pl_router *cluster(model **inner) {
  *inner = pl_calloc(1, sizeof **inner);
  (*inner)->base.ops = &model_ops;
  pl_router *r = pl_router_cluster_new(&(*inner)->base);
  snprintf(((pl__cluster *)r)->node, sizeof((pl__cluster *)r)->node, "M");
  return r;
}

static void say(pl_router *r, uint8_t type, const char *node, uint64_t a, uint64_t b, const uint64_t *ids,
                uint32_t n) {
  pl_busmsg m = {
      .type = type, .node = node, .node_len = (uint8_t)strlen(node), .a = a, .b = b, .nids = n, .ids = ids};
  pl_cluster__on_msg(r, &m);
}

/* The device logs in on B after it did here: this connection goes. */
static void test_takeover_newer_elsewhere(void) {
  model *in;
  pl_router *r = cluster(&in);
  r->ops->attach(r, 5, NULL, NULL);
  say(r, PL_BUSMSG_ATTACH, "B", 5, pl_cluster__wall_ms() + 1000, NULL, 0);
  CHECK_EQ_U(in->nkicked, 1);
  CHECK_EQ_U(in->kicked[0], 5);
  r->ops->free(r);
}

/* B announces an older attachment (a re-announcement after a cut): this
 * newer connection stays, and B is told (its own closes). Equal times: the
 * node whose name sorts first gives way. */
static void test_takeover_older_elsewhere_and_ties(void) {
  model *in;
  pl_router *r = cluster(&in);
  r->ops->attach(r, 6, NULL, NULL);
  say(r, PL_BUSMSG_ATTACH, "B", 6, 1, NULL, 0);
  CHECK_EQ_U(in->nkicked, 0);
  uint64_t since = (uint64_t)(uintptr_t)pl_map_get(&((pl__cluster *)r)->mine, 6);
  say(r, PL_BUSMSG_ATTACH, "Z", 6, since, NULL, 0); /* "M" < "Z": M gives way */
  CHECK_EQ_U(in->nkicked, 1);
  say(r, PL_BUSMSG_ATTACH, "A", 6, since, NULL, 0); /* "A" < "M": A gives way */
  CHECK_EQ_U(in->nkicked, 1);
  r->ops->free(r);
}

/* Devices another node serves count as online until it detaches them or
 * is declared dead. */
static void test_remote_devices_and_dead_node(void) {
  model *in;
  pl_router *r = cluster(&in);
  say(r, PL_BUSMSG_ATTACH, "B", 9, 1, NULL, 0);
  say(r, PL_BUSMSG_ATTACH, "C", 10, 1, NULL, 0);
  CHECK(r->ops->is_online(r, 9) && r->ops->is_online(r, 10));
  say(r, PL_BUSMSG_DETACH, "C", 9, 0, NULL, 0); /* not C's: ignored */
  CHECK(r->ops->is_online(r, 9));
  pl_cluster__on_node_dead(r, "B", 1);
  CHECK(!r->ops->is_online(r, 9));
  CHECK(r->ops->is_online(r, 10));
  say(r, PL_BUSMSG_DETACH, "C", 10, 0, NULL, 0);
  CHECK(!r->ops->is_online(r, 10));
  r->ops->free(r);
}

static void test_hints_reach_the_local_router(void) {
  model *in;
  pl_router *r = cluster(&in);
  const uint64_t devs[] = {3, 4};
  say(r, PL_BUSMSG_HINT, "B", 0, 0, devs, 2);
  CHECK_EQ_U(in->nhinted, 2);
  CHECK_EQ_U(in->hinted[1], 4);
  say(r, PL_BUSMSG_GHINT, "B", 77, 0, NULL, 0);
  CHECK_EQ_U(in->hint_gid, 77);
  r->ops->free(r);
}

int main(void) {
  RUN(test_takeover_newer_elsewhere);
  RUN(test_takeover_older_elsewhere_and_ties);
  RUN(test_remote_devices_and_dead_node);
  RUN(test_hints_reach_the_local_router);
  return tl_summary();
}
