#include "pl_bus.h"

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"

#define PL__SUBJECT "parley.bus"
#define PL__MAX_NODES 256

typedef struct pl__node {
  char name[PL_BUSMSG_MAX_NODE + 1];
  uint64_t incarnation;
  uint64_t heard_ms; /* monotonic */
  int dead;
} pl__node;

struct pl_bus {
  pl_bus_config cfg;
  pl_bus_handlers h;
  char node[PL_BUSMSG_MAX_NODE + 1];
  char *urls; /* every entry with its scheme */
  uint64_t incarnation;
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t stop;
  uv_timer_t alive, sweep;
  uv_timer_t retry;
  natsOptions *opts;
  _Atomic(natsConnection *) nc; /* NULL until the first connection */
  natsSubscription *sub;
  int warned;
  atomic_int closing, stopped, in_handler, connected, ever_connected;
  atomic_uint_fast64_t sent, received, hints_sent, hints_received, reconnects, dead_nodes, send_errors, bad;
  pthread_mutex_t mu; /* guards nodes */
  pl__node nodes[PL__MAX_NODES];
  int nnodes;
};

static uint64_t pl__wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* "nats://a:1,b:2" -> "nats://a:1,nats://b:2" (libnats wants each URL whole). */
static char *pl__urls(const char *in) {
  size_t cap = strlen(in) * 2 + 16, n = 0;
  char *out = pl_malloc(cap);
  const char *p = in;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len) {
      int scheme = memmem(p, len, "://", 3) != NULL;
      n += (size_t)snprintf(out + n, cap - n, "%s%s%.*s", n ? "," : "", scheme ? "" : "nats://", (int)len, p);
    }
    p += len + (e ? 1 : 0);
  }
  out[n] = 0;
  return out;
}

/* ---- the node table ---- */

/* Notes that m's node is alive; 1 if it was unknown or dead (it should
 * announce its state to us), and a restarted node's old incarnation is
 * declared dead. */
static int pl__heard(pl_bus *b, const pl_busmsg *m, uint64_t *old_inc) {
  int fresh = 0;
  *old_inc = 0;
  pthread_mutex_lock(&b->mu);
  pl__node *n = NULL;
  for (int i = 0; i < b->nnodes && !n; i++)
    if (strlen(b->nodes[i].name) == m->node_len && memcmp(b->nodes[i].name, m->node, m->node_len) == 0)
      n = &b->nodes[i];
  if (!n && b->nnodes < PL__MAX_NODES) {
    n = &b->nodes[b->nnodes++];
    memset(n, 0, sizeof *n);
    memcpy(n->name, m->node, m->node_len);
    n->incarnation = m->incarnation;
    fresh = 1;
  }
  if (n && m->incarnation > n->incarnation) { /* it restarted: the old one is gone */
    if (!n->dead)
      *old_inc = n->incarnation;
    n->incarnation = m->incarnation;
    n->dead = 0;
    fresh = 1;
  }
  if (n && m->incarnation == n->incarnation) {
    n->heard_ms = pl_mono_ms();
    if (n->dead)
      fresh = 1;
    n->dead = 0;
  }
  pthread_mutex_unlock(&b->mu);
  return fresh;
}

static void pl__sweep(uv_timer_t *t) {
  pl_bus *b = t->data;
  uint64_t now = pl_mono_ms();
  if (!atomic_load(&b->connected)) {
    /* We hear nobody because we are cut off, not because they died: their
     * window starts again when we are back. */
    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < b->nnodes; i++)
      b->nodes[i].heard_ms = now;
    pthread_mutex_unlock(&b->mu);
    return;
  }
  for (;;) {
    char name[PL_BUSMSG_MAX_NODE + 1] = "";
    uint64_t inc = 0;
    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < b->nnodes && !name[0]; i++) {
      pl__node *n = &b->nodes[i];
      if (!n->dead && now - n->heard_ms > b->cfg.dead_ms) {
        n->dead = 1;
        memcpy(name, n->name, sizeof name);
        inc = n->incarnation;
      }
    }
    pthread_mutex_unlock(&b->mu);
    if (!name[0])
      return;
    atomic_fetch_add(&b->dead_nodes, 1);
    pl_warn("bus: node %s silent for %u ms: declared dead", name, b->cfg.dead_ms);
    b->h.on_node_dead(b->h.ud, name, inc);
  }
}

/* ---- NATS callbacks ---- */

static void pl__on_nats_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  (void)nc;
  (void)sub;
  pl_bus *b = closure;
  atomic_fetch_add(&b->in_handler, 1);
  pl_busmsg m;
  if (atomic_load(&b->closing))
    goto out;
  if (pl_busmsg_decode((const uint8_t *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &m) !=
          PL_OK ||
      m.node_len == 0) {
    atomic_fetch_add(&b->bad, 1);
    goto out;
  }
  if (m.node_len == strlen(b->node) && memcmp(m.node, b->node, m.node_len) == 0 &&
      m.incarnation == b->incarnation)
    goto out; /* our own (NoEcho is per connection; this guards a loop-back) */
  atomic_fetch_add(&b->received, 1);
  if (m.type == PL_BUSMSG_HINT || m.type == PL_BUSMSG_GHINT)
    atomic_fetch_add(&b->hints_received, 1);
  uint64_t old_inc;
  int fresh = pl__heard(b, &m, &old_inc);
  if (old_inc) {
    char name[PL_BUSMSG_MAX_NODE + 1];
    snprintf(name, sizeof name, "%.*s", (int)m.node_len, m.node);
    b->h.on_node_dead(b->h.ud, name, old_inc);
  }
  /* New or back: ask it for what it serves, whatever its first message is.
   * Asking on its ALIVE only lost a node for good: a node continued after
   * SIGSTOP may first send something else (its request for our state, when
   * it has declared us dead while it was stopped and then heard our ALIVE);
   * that marked it alive, its ALIVE then was not news, and its users stayed
   * offline here (test_node_stopped, under load). A repeated announcement
   * is harmless: each user counts once. */
  if (fresh) {
    pl_busmsg st = {.type = PL_BUSMSG_STATE, .plen = m.node_len, .payload = (const uint8_t *)m.node};
    pl_bus_publish(b, &st);
  }
  b->h.on_msg(b->h.ud, &m);
out:
  natsMsg_Destroy(msg);
  atomic_fetch_sub(&b->in_handler, 1);
}

static void pl__on_connected(natsConnection *nc, void *closure) {
  (void)nc;
  pl_bus *b = closure;
  int again = atomic_exchange(&b->ever_connected, 1);
  atomic_store(&b->connected, 1);
  if (again)
    atomic_fetch_add(&b->reconnects, 1);
  pl_info("bus: %s to NATS as node %s", again ? "reconnected" : "connected", b->node);
  if (!atomic_load(&b->closing))
    b->h.on_connected(b->h.ud, again);
}

static void pl__on_disconnected(natsConnection *nc, void *closure) {
  (void)nc;
  pl_bus *b = closure;
  atomic_store(&b->connected, 0);
  if (!atomic_load(&b->closing))
    pl_warn("bus: disconnected from NATS: reconnecting");
}

/* ---- the bus thread ---- */

static void pl__alive(uv_timer_t *t) {
  pl_bus *b = t->data;
  if (!atomic_load(&b->connected))
    return;
  pl_busmsg m = {.type = PL_BUSMSG_ALIVE, .a = b->cfg.alive_ms};
  pl_bus_publish(b, &m);
}

static void pl__closed(uv_handle_t *h) { (void)h; }

static void pl__stop(uv_async_t *a) {
  pl_bus *b = a->data;
  uv_timer_stop(&b->alive);
  uv_timer_stop(&b->sweep);
  uv_close((uv_handle_t *)&b->alive, pl__closed);
  uv_close((uv_handle_t *)&b->sweep, pl__closed);
  uv_timer_stop(&b->retry);
  uv_close((uv_handle_t *)&b->retry, pl__closed);
  uv_close((uv_handle_t *)&b->stop, pl__closed);
  if (b->sub)
    natsSubscription_Unsubscribe(b->sub);
  if (atomic_load(&b->nc))
    natsConnection_Close(atomic_load(&b->nc));
}

static natsStatus pl__options(pl_bus *b) {
  natsOptions *o = NULL;
  natsStatus s = natsOptions_Create(&o);
  char *list = pl_malloc(strlen(b->urls) + 1), *urls[64], *save = NULL;
  int n = 0;
  memcpy(list, b->urls, strlen(b->urls) + 1);
  for (char *t = strtok_r(list, ",", &save); t && n < 64; t = strtok_r(NULL, ",", &save))
    urls[n++] = t;
  if (s == NATS_OK) /* (a comma-separated URL fails to connect with libnats 3.4 and an event loop) */
    s = natsOptions_SetServers(o, (const char **)urls, n);
  pl_free(list);
  if (s == NATS_OK)
    s = natsOptions_SetName(o, b->node);
  if (s == NATS_OK)
    s = natsOptions_SetNoEcho(o, true);
  if (s == NATS_OK)
    s = natsOptions_SetMaxReconnect(o, -1); /* for ever: the store carries on without the bus */
  if (s == NATS_OK)
    s = natsOptions_SetReconnectWait(o, 250);
  if (s == NATS_OK) /* a NATS server that hangs is left within 2 missed pings */
    s = natsOptions_SetPingInterval(o, 2000);
  if (s == NATS_OK)
    s = natsOptions_SetMaxPingsOut(o, 2);
  if (s == NATS_OK)
    s = natsOptions_SetReconnectedCB(o, pl__on_connected, b);
  if (s == NATS_OK)
    s = natsOptions_SetDisconnectedCB(o, pl__on_disconnected, b);
  /* No event loop (natsOptions_SetEventLoop): libnats's own read and flush
   * threads drive the socket. With its libuv adapter, libnats 3.4's ping
   * timer thread closes a stale socket while the bus loop may still be
   * registering it with epoll, which libuv answers with abort(): a node
   * whose NATS server hung could die instead of reconnecting (a likely
   * cause of test_cluster_pg's lost hint failing under load: B's client
   * saw its connection end, B logged nothing). */
  if (s != NATS_OK)
    natsOptions_Destroy(o);
  else
    b->opts = o;
  return s;
}

/* The first connection is made here, on the bus thread, and retried by a
 * timer until a server answers (a warning once, not one per attempt). Later
 * reconnects are libnats's, for ever. */
static void pl__try_connect(uv_timer_t *t) {
  pl_bus *b = t->data;
  natsConnection *nc = NULL;
  natsStatus s = natsConnection_Connect(&nc, b->opts);
  if (s != NATS_OK) {
    if (!b->warned++)
      pl_warn("bus: no NATS server at %s yet (%s): retrying", b->urls, natsStatus_GetText(s));
    uv_timer_start(&b->retry, pl__try_connect, 500, 0);
    return;
  }
  s = natsConnection_Subscribe(&b->sub, nc, PL__SUBJECT, pl__on_nats_msg, b);
  if (s != NATS_OK)
    pl_error("bus: cannot subscribe to %s: %s", PL__SUBJECT, natsStatus_GetText(s));
  atomic_store(&b->nc, nc);
  pl__on_connected(nc, b);
}

static void pl__thread(void *arg) {
  pl_bus *b = arg;
  pthread_setname_np(pthread_self(), "pl-bus");
  pl__try_connect(&b->retry);
  uv_timer_start(&b->alive, pl__alive, 0, b->cfg.alive_ms);
  uv_timer_start(&b->sweep, pl__sweep, b->cfg.alive_ms / 4, b->cfg.alive_ms / 4);
  uv_run(&b->loop, UV_RUN_DEFAULT);
}

pl_err pl_bus_open(pl_bus **out, const pl_bus_config *cfg, const pl_bus_handlers *h) {
  *out = NULL;
  if (!cfg->urls || !cfg->urls[0] || !cfg->node || !cfg->node[0] || strlen(cfg->node) > PL_BUSMSG_MAX_NODE)
    return PL_ERR_CONFIG;
  pl_bus *b = pl_calloc(1, sizeof *b);
  b->cfg = *cfg;
  if (!b->cfg.alive_ms)
    b->cfg.alive_ms = 2000;
  if (!b->cfg.dead_ms)
    b->cfg.dead_ms = 3 * b->cfg.alive_ms;
  b->h = *h;
  snprintf(b->node, sizeof b->node, "%s", cfg->node);
  b->urls = pl__urls(cfg->urls);
  b->incarnation = pl__wall_ms();
  pthread_mutex_init(&b->mu, NULL);
  uv_loop_init(&b->loop);
  uv_async_init(&b->loop, &b->stop, pl__stop);
  b->stop.data = b;
  uv_timer_init(&b->loop, &b->alive);
  uv_timer_init(&b->loop, &b->sweep);
  uv_timer_init(&b->loop, &b->retry);
  b->alive.data = b->sweep.data = b->retry.data = b;
  if (pl__options(b) != NATS_OK) {
    pl_error("bus: bad NATS options for %s", b->urls);
    uv_close((uv_handle_t *)&b->stop, NULL);
    uv_close((uv_handle_t *)&b->alive, NULL);
    uv_close((uv_handle_t *)&b->sweep, NULL);
    uv_close((uv_handle_t *)&b->retry, NULL);
    uv_run(&b->loop, UV_RUN_NOWAIT);
    uv_loop_close(&b->loop);
    pthread_mutex_destroy(&b->mu);
    pl_free(b->urls);
    pl_free(b);
    return PL_ERR_CONFIG;
  }
  *out = b; /* before the thread: its first connect calls the handlers, which may publish */
  pl_info("bus: node %s joining %s", b->node, b->urls);
  uv_thread_create(&b->thread, pl__thread, b);
  return PL_OK;
}

pl_err pl_bus_publish(pl_bus *b, pl_busmsg *m) {
  uint8_t stack[4096], *buf = stack;
  m->node = b->node;
  m->node_len = (uint8_t)strlen(b->node);
  m->incarnation = b->incarnation;
  size_t need = pl_busmsg_size(m), n = 0;
  natsConnection *nc = atomic_load(&b->nc);
  pl_err e = PL_ERR_INVALID_ARGUMENT;
  if (!need || !nc)
    goto out;
  e = PL_ERR_SHUTTING_DOWN;
  if (atomic_load(&b->closing)) /* nc stays valid until pl_bus_close: closed, it refuses */
    goto out;
  if (need > sizeof stack)
    buf = pl_malloc(need);
  if ((e = pl_busmsg_encode(m, buf, need, &n)) != PL_OK)
    goto out;
  /* While disconnected libnats keeps what is published in its reconnect
   * buffer and sends it once back; past that it refuses (a lost hint). */
  e = natsConnection_Publish(nc, PL__SUBJECT, buf, (int)n) == NATS_OK ? PL_OK : PL_ERR_IO;
out:
  if (e == PL_OK) {
    atomic_fetch_add(&b->sent, 1);
    if (m->type == PL_BUSMSG_HINT || m->type == PL_BUSMSG_GHINT)
      atomic_fetch_add(&b->hints_sent, 1);
  } else {
    atomic_fetch_add(&b->send_errors, 1);
  }
  if (buf != stack)
    pl_free(buf);
  return e;
}

int pl_bus_connected(pl_bus *b) { return atomic_load(&b->connected); }
const char *pl_bus_node(const pl_bus *b) { return b->node; }

void pl_bus_get_stats(pl_bus *b, pl_bus_stats *st) {
  memset(st, 0, sizeof *st);
  st->connected = atomic_load(&b->connected);
  st->sent = atomic_load(&b->sent);
  st->received = atomic_load(&b->received);
  st->hints_sent = atomic_load(&b->hints_sent);
  st->hints_received = atomic_load(&b->hints_received);
  st->reconnects = atomic_load(&b->reconnects);
  st->dead_nodes = atomic_load(&b->dead_nodes);
  st->send_errors = atomic_load(&b->send_errors);
  st->bad = atomic_load(&b->bad);
  pthread_mutex_lock(&b->mu);
  for (int i = 0; i < b->nnodes; i++)
    st->nodes_alive += !b->nodes[i].dead;
  pthread_mutex_unlock(&b->mu);
}

void pl_bus_stop(pl_bus *b) {
  if (!b || atomic_exchange(&b->stopped, 1))
    return;
  atomic_store(&b->closing, 1);
  uv_async_send(&b->stop);
  uv_thread_join(&b->thread);
  /* libnats's delivery thread may be inside a handler still: let it leave
   * (one that starts now sees closing and touches nothing) */
  for (int i = 0; i < 2000 && atomic_load(&b->in_handler); i++)
    usleep(1000);
}

void pl_bus_close(pl_bus *b) {
  if (!b)
    return;
  pl_bus_stop(b);
  if (b->sub)
    natsSubscription_Destroy(b->sub);
  natsConnection_Destroy(atomic_load(&b->nc));
  natsOptions_Destroy(b->opts);
  uv_run(&b->loop, UV_RUN_NOWAIT);
  uv_loop_close(&b->loop);
  pthread_mutex_destroy(&b->mu);
  pl_free(b->urls);
  pl_free(b);
  nats_Close(); /* libnats's threads and globals: one bus per process */
}
