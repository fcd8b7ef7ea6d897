/* parleyd: wires the layers together and nothing else.
 *
 * Threads: N event loops (one per core by default) each accepting on its own
 * SO_REUSEPORT listener; one store thread doing group commits; libuv's
 * thread pool for Argon2id; media's own workers for uploads (pl_mpool). The
 * main thread only waits for signals. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "cluster/pl_router_cluster.h"
#include "common/pl_fs.h"
#include "common/pl_log.h"
#include "common/pl_mem.h"
#include "common/pl_time.h"
#include "core/pl_auth.h"
#include "core/pl_filter.h"
#include "core/pl_router.h"
#include "core/pl_session.h"
#include "media/pl_media.h"
#include "net/pl_http.h"
#include "net/pl_limits.h"
#include "net/pl_lp.h"
#include "net/pl_tcp.h"
#include "net/pl_tls.h"
#include "pl_admin.h"
#include "pl_admin_tok.h"
#include "pl_config.h"
#include "pl_keys.h"
#include "pl_web.h"
#include "push/pl_push.h"
#include "rules/pl_signup.h"
#include "store/pl_move.h"
#include "store/pl_shardmap.h"
#include "store/pl_store.h"

typedef struct pl__loop_task {
  pl_task task;
  struct pl_server *srv;
  int i;
  uv_timer_t *abort_timer;
} pl__loop_task;

typedef struct pl_server {
  pl_config cfg;
  int nloops;
  pl_loop **loops;
  pl_tcp_listener **listeners;
  pl_http_listener **https; /* NULL entries when --http off */
  pl_tcp_listener **tlss;   /* --listen-tls (NULL entries when none) */
  pl_http_listener **htlss; /* --https (NULL entries when none) */
  pl_tls *tls;              /* the certificate both use (NULL: no TLS) */
  pl_tcp_listener **mqtts;  /* --mqtt, --mqtt-tls: two per loop (NULL entries when none) */
  pl_lp **lps;              /* long-poll sessions per loop (with --http) */
  pl_web web;
  pl__loop_task *ticks; /* one per loop: what its tick sweeps */
  pl_core *core;
  pl_router *router; /* the core's; local now, a cluster's later */
  pl_store *store;
  pl_media *media;
  pl_push *push;         /* NULL: no provider configured */
  pl_limits *limits;     /* caps and budgets shared by every connection */
  pl_admin *admin;       /* /admin/ (docs/admin.md) */
  pl_seal_ref *seal;     /* --key-file's keys (NULL: stored plain) */
  pl_shardmap *shardmap; /* sharded: the buckets moved (pl_shardmap.h); NULL: not sharded */
  int lock_fd;
} pl_server;

/* One server per data dir: a second one would corrupt the queues' order. */
static int pl__lock_data(pl_server *srv) {
  char path[600];
  snprintf(path, sizeof path, "%s/LOCK", srv->cfg.data);
  srv->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (srv->lock_fd < 0 || flock(srv->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    pl_error("data dir %s is in use by another parleyd (or not writable)", srv->cfg.data);
    return -1;
  }
  return 0;
}

/* fn on loop i's MQTT listeners (plain and TLS), those there are. */
static void pl__mqtt_each(pl_server *srv, int i, void (*fn)(pl_tcp_listener *)) {
  for (int k = 2 * i; k < 2 * i + 2; k++)
    if (srv->mqtts[k])
      fn(srv->mqtts[k]);
}

/* The loop's once-a-second tick (ud: the loop's pl__loop_task). */
static void pl__tick(pl_loop *l, void *ud) {
  (void)l;
  const pl__loop_task *lt = ud;
  uint64_t now = pl_mono_ms();
  pl_tcp_sweep(lt->srv->listeners[lt->i], now);
  if (lt->srv->https[lt->i])
    pl_http_sweep(lt->srv->https[lt->i], now);
  if (lt->srv->tlss[lt->i])
    pl_tcp_sweep(lt->srv->tlss[lt->i], now);
  if (lt->srv->htlss[lt->i])
    pl_http_sweep(lt->srv->htlss[lt->i], now);
  if (lt->srv->lps[lt->i])
    pl_lp_sweep(lt->srv->lps[lt->i], now);
  for (int k = 2 * lt->i; k < 2 * lt->i + 2; k++)
    if (lt->srv->mqtts[k])
      pl_tcp_sweep(lt->srv->mqtts[k], now);
}

static void pl__stop_listen(pl_task *t) {
  pl__loop_task *lt = (pl__loop_task *)t;
  pl_tcp_listener_close(lt->srv->listeners[lt->i]);
  if (lt->srv->https[lt->i])
    pl_http_listener_close(lt->srv->https[lt->i]);
  if (lt->srv->tlss[lt->i])
    pl_tcp_listener_close(lt->srv->tlss[lt->i]);
  if (lt->srv->htlss[lt->i])
    pl_http_listener_close(lt->srv->htlss[lt->i]);
  pl__mqtt_each(lt->srv, lt->i, pl_tcp_listener_close);
  pl_free(lt);
}

static void pl__abort_cb(uv_timer_t *timer) {
  pl__loop_task *lt = timer->data;
  pl_warn("loop %d: cutting connections that did not close in time", lt->i);
  pl_tcp_abort_all(lt->srv->listeners[lt->i]);
  if (lt->srv->https[lt->i])
    pl_http_abort_all(lt->srv->https[lt->i]);
  if (lt->srv->tlss[lt->i])
    pl_tcp_abort_all(lt->srv->tlss[lt->i]);
  if (lt->srv->htlss[lt->i])
    pl_http_abort_all(lt->srv->htlss[lt->i]);
  pl__mqtt_each(lt->srv, lt->i, pl_tcp_abort_all);
}

static void pl__close_all(pl_task *t) {
  pl__loop_task *lt = (pl__loop_task *)t;
  pl_loop *l = lt->srv->loops[lt->i];
  pl_tcp_close_all(lt->srv->listeners[lt->i]);
  if (lt->srv->https[lt->i])
    pl_http_close_all(lt->srv->https[lt->i]);
  if (lt->srv->tlss[lt->i])
    pl_tcp_close_all(lt->srv->tlss[lt->i]);
  if (lt->srv->htlss[lt->i])
    pl_http_close_all(lt->srv->htlss[lt->i]);
  pl__mqtt_each(lt->srv, lt->i, pl_tcp_close_all);
  if (lt->srv->lps[lt->i])
    pl_lp_close_all(lt->srv->lps[lt->i]);
  /* Unreferenced: it cuts slow peers, but does not keep a finished loop up. */
  lt->abort_timer = pl_malloc(sizeof *lt->abort_timer);
  uv_timer_init(pl_loop_uv(l), lt->abort_timer);
  lt->abort_timer->data = lt;
  uv_timer_start(lt->abort_timer, pl__abort_cb, 3000, 0);
  uv_unref((uv_handle_t *)lt->abort_timer);
  pl_loop_release(l);
}

static void pl__post_all(pl_server *srv, void (*fn)(pl_task *), pl__loop_task **keep) {
  for (int i = 0; i < srv->nloops; i++) {
    pl__loop_task *lt = pl_calloc(1, sizeof *lt);
    lt->task.fn = fn;
    lt->srv = srv;
    lt->i = i;
    if (keep)
      keep[i] = lt;
    if (pl_loop_post(srv->loops[i], &lt->task) != PL_OK && !keep)
      pl_free(lt);
  }
}

/* Loads the word list into the core; on failure the old list stays. */
static int pl__load_filter(pl_server *srv) {
  char why[300] = "";
  pl_filter *f = NULL;
  if (!srv->cfg.filter_words[0])
    return 0;
  if (pl_filter_load(srv->cfg.filter_words, &f, why, sizeof why) != PL_OK) {
    pl_error("filter-words %s: %s", srv->cfg.filter_words, why);
    return -1;
  }
  size_t n = pl_filter_count(f);
  pl_core_set_filter(srv->core, f);
  /* said once it is in use: a reload is seen done by this line (test_filter_words) */
  pl_info("filter-words %s: %zu entries", srv->cfg.filter_words, n);
  return 0;
}

/* Maintenance (parleyctl drain on --close): every client session on this
 * loop is told SHUTTING_DOWN and closed; plain HTTP requests go on. */
static void pl__close_sessions(pl_task *t) {
  pl__loop_task *lt = (pl__loop_task *)t;
  pl_server *srv = lt->srv;
  pl_tcp_close_all(srv->listeners[lt->i]);
  if (srv->tlss[lt->i])
    pl_tcp_close_all(srv->tlss[lt->i]);
  if (srv->https[lt->i])
    pl_http_close_sessions(srv->https[lt->i]);
  if (srv->htlss[lt->i])
    pl_http_close_sessions(srv->htlss[lt->i]);
  if (srv->lps[lt->i])
    pl_lp_close_all(srv->lps[lt->i]);
  pl_free(lt);
}

static void pl__admin_close(void *ud) { pl__post_all(ud, pl__close_sessions, NULL); }

/* The admin API's reload (any loop thread): the list's entries, or -1. */
static long pl__admin_reload(void *ud, char *why, size_t n) {
  pl_server *srv = ud;
  pl_filter *f = NULL;
  if (!srv->cfg.filter_words[0]) {
    snprintf(why, n, "no --filter-words list is configured");
    return -1;
  }
  if (pl_filter_load(srv->cfg.filter_words, &f, why, n) != PL_OK)
    return -1;
  long count = (long)pl_filter_count(f);
  pl_core_set_filter(srv->core, f);
  pl_info("filter-words %s: %ld entries", srv->cfg.filter_words, count);
  return count;
}

static void pl__on_hup(uv_signal_t *h, int signum) {
  (void)signum;
  pl_server *srv = h->data;
  if (pl__load_filter(srv) != 0)
    pl_warn("filter-words: keeping the list in use");
  if (srv->tls) /* a renewed certificate; connections open stay as they are */
    pl_tls_reload(srv->tls);
  if (srv->seal) /* a rotated key file */
    pl_keys_reload(srv->cfg.key_file, srv->seal, srv->store, srv->media);
}

static void pl__on_signal(uv_signal_t *h, int signum) {
  pl_info("received %s: shutting down", strsignal(signum));
  uv_stop(h->loop);
}

/* The TLS listeners' configs from the plain ones: their own addresses,
 * the TLS connection type and the certificate. */
static pl_err pl__tls_config(pl_server *srv, pl_tcp_config *ttc, pl_http_config *htc) {
  const pl_config *c = &srv->cfg;
  if (!c->tls_host[0] && !c->https_host[0] && !c->mqtt_tls_host[0])
    return PL_OK;
  pl_tls_config tcfg = {
      .cert = c->tls_cert, .key = c->tls_key, .min_version = c->tls_min, .handshake_ms = c->tls_handshake_ms};
  pl_err e = pl_tls_new(&tcfg, &srv->tls);
  if (e != PL_OK)
    return e;
  ttc->host = c->tls_host;
  ttc->port = c->tls_port;
  ttc->type = htc->tcp.type = &pl_tls_type;
  ttc->type_arg = htc->tcp.type_arg = srv->tls;
  ttc->proxy = htc->tcp.proxy = c->proxy_protocol == 2;
  htc->tcp.host = c->https_host;
  htc->tcp.port = c->https_port;
  if (c->tls_host[0] && ttc->port && (e = pl_tcp_probe(ttc)) != PL_OK)
    return e;
  if (c->https_host[0] && htc->tcp.port && (e = pl_tcp_probe(&htc->tcp)) != PL_OK)
    return e;
  return PL_OK;
}

/* The MQTT listeners' configs (mq[0] plain, mq[1] TLS; host "" when
 * off), from the native ones: the same limits, the TLS of --listen-tls. */
static pl_err pl__mqtt_config(pl_server *srv, const pl_tcp_config *tc, const pl_tcp_config *ttc,
                              pl_tcp_config mq[2]) {
  const pl_config *c = &srv->cfg;
  pl_err e = PL_OK;
  mq[0] = *tc;
  mq[0].host = c->mqtt_host;
  mq[0].port = c->mqtt_port;
  mq[0].mqtt = 1;
  mq[1] = *ttc;
  mq[1].host = c->mqtt_tls_host;
  mq[1].port = c->mqtt_tls_port;
  mq[1].type = &pl_tls_type;
  mq[1].type_arg = srv->tls;
  mq[1].mqtt = 1;
  for (int k = 0; k < 2 && e == PL_OK; k++)
    if (mq[k].host[0] && mq[k].port)
      e = pl_tcp_probe(&mq[k]);
  return e;
}

/* The login throttle's policies (pl_throttle.h) from the options. */
static void pl__auth_config(const pl_config *c, pl_core_config *cc) {
  pl_auth_limits *l = &cc->auth;
  l->rate = c->login_rate;
  l->burst = c->login_burst;
  l->register_per_hour = c->register_rate;
  l->account_address = (pl_throttle_policy){c->login_free_failures, c->login_delay_ms, c->login_lockout_ms};
  /* over all addresses: a short cap, so it cannot lock the owner out for long */
  uint32_t acap = c->login_lockout_ms < 60000u ? c->login_lockout_ms : 60000u;
  l->account = (pl_throttle_policy){c->login_account_failures, c->login_delay_ms, acap};
  l->address = (pl_throttle_policy){c->login_address_failures, c->login_delay_ms, c->login_lockout_ms};
  cc->argon2_threads = c->argon2_threads < 256 ? c->argon2_threads : 256; /* a typo must not start millions */
  cc->argon2_per_address = c->argon2_per_address;
  cc->argon2_queue = c->argon2_queue;
}

static void pl__core_config(const pl_config *c, pl_core_config *cc) {
  pl_core_config_defaults(cc);
  cc->heartbeat_ms[0] = c->hb_bot_s * 1000u;
  cc->heartbeat_ms[1] = c->hb_mobile_s * 1000u;
  cc->heartbeat_ms[2] = c->hb_web_s * 1000u;
  cc->heartbeat_ms[3] = c->hb_iot_s * 1000u;
  cc->heartbeat_ms[4] = c->hb_bot_s * 1000u;
  cc->max_frame = c->max_frame;
  cc->max_message = c->max_message;
  cc->argon2_ops = c->argon2_ops;
  cc->argon2_mem_kib = c->argon2_mem_kib;
  cc->presence_grace_ms = c->presence_grace_ms;
  cc->send_rate = c->send_rate;
  cc->send_burst = c->send_burst;
  cc->max_queue = c->max_queue;
  cc->max_queue_share = c->max_queue_share;
  cc->auth_timeout_ms = c->auth_timeout_s * 1000u;
  cc->signup = c->registration;
  pl__auth_config(c, cc);
}

/* Descriptors kept out of --max-conns' default: the database, the loops'
 * own, and the reserve that serves /healthz and /metrics past the caps. */
#define PL__FD_RESERVE 128
#define PL__HTTP_RESERVE 32

/* The connection limits; NULL (and a reason logged) if they make no sense. */
static pl_limits *pl__limits(const pl_config *c, const pl_core_config *cc) {
  if (c->max_conn_output < 2 * cc->out_high) {
    pl_error("--max-conn-output must be at least %zu (twice the lag mark)", 2 * cc->out_high);
    return NULL;
  }
  uint32_t max = c->max_conns;
  struct rlimit rl;
  if (!max && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    max = rl.rlim_cur > 2 * PL__FD_RESERVE ? (uint32_t)(rl.rlim_cur - PL__FD_RESERVE)
                                           : (uint32_t)rl.rlim_cur / 2;
  pl_limits_config lc = {.max_conns = max,
                         .max_per_ip = c->max_conns_per_ip,
                         .reserve = PL__HTTP_RESERVE,
                         .max_output = c->max_conn_output,
                         .stuck_ms = c->slow_consumer_s * 1000u,
                         .max_memory = c->max_conn_memory};
  pl_info("connections: at most %u (%u per address), %llu bytes of unsent output each, %llu in all", max,
          c->max_conns_per_ip, (unsigned long long)c->max_conn_output,
          (unsigned long long)c->max_conn_memory);
  return pl_limits_new(&lc);
}

/* The push service, if a provider is configured. */
static pl_err pl__start_push(pl_server *srv) {
  const pl_config *c = &srv->cfg;
  pl_push_config pc = {
      .providers = {.webhook_url = c->push_webhook,
                    .fcm_credentials = c->fcm_credentials,
                    .fcm_endpoint = c->fcm_endpoint,
                    .apns_key = c->apns_key,
                    .apns_key_id = c->apns_key_id,
                    .apns_team_id = c->apns_team_id,
                    .apns_topic = c->apns_topic,
                    .apns_endpoint = c->apns_endpoint},
      .window_ms = c->push_window_ms,
      .backoff_ms = c->push_backoff_ms,
      .backoff_max_ms = c->push_backoff_max_ms,
      .max_attempts = c->push_attempts,
      .timeout_ms = c->push_timeout_ms,
      .max_inflight = c->push_inflight,
      .privacy = c->push_privacy,
      .store = srv->store,
      .online = pl_core_online,
      .online_ud = srv->core,
  };
  char why[600] = "";
  pl_err e = pl_push_open(&srv->push, &pc, why, sizeof why);
  if (e != PL_OK) {
    pl_error("push: %s", why[0] ? why : pl_err_msg(e));
    return e;
  }
  pl_core_set_push(srv->core, srv->push);
  if (srv->push)
    pl_info("push: on (%s%s%s)%s", pl_push_provider_on(srv->push, "webhook") ? " webhook" : "",
            pl_push_provider_on(srv->push, "fcm") ? " fcm" : "",
            pl_push_provider_on(srv->push, "apns") ? " apns" : "", c->push_privacy ? ", privacy mode" : "");
  return PL_OK;
}

/* Joins the cluster's bus as --node (default: host name ':' native port). */
static pl_err pl__join_bus(pl_server *srv, int port) {
  const pl_config *c = &srv->cfg;
  char node[PL_BUSMSG_MAX_NODE + 1], host[64] = "localhost";
  if (c->node[0]) {
    snprintf(node, sizeof node, "%s", c->node);
  } else {
    gethostname(host, sizeof host - 1);
    snprintf(node, sizeof node, "%.50s:%d", host, port);
  }
  pl_bus_config bc = {.urls = c->bus, .node = node, .alive_ms = c->bus_alive_ms, .dead_ms = c->bus_dead_ms};
  pl_err e = pl_router_cluster_start(srv->router, pl_core_presence(srv->core), srv->loops[0], &bc);
  if (e != PL_OK)
    pl_error("--bus %s --node %s: %s", c->bus, node, pl_err_msg(e));
  srv->web.bus = pl_router_cluster_bus(srv->router);
  return e;
}

/* The store: one, or with --store-shard one per shard, linked so that
 * srv->store routes every request to its shard (pl_store_link). */
static pl_err pl__store_open(pl_server *srv, const pl_store_backend *be, pl_store_config *sc,
                             const pl_store_hooks *hooks) {
  const pl_config *c = &srv->cfg;
  pl_store *stores[PL_CONFIG_SHARDS + 1] = {0};
  unsigned n = c->nshards + 1;
  pl_err e = PL_OK;
  const char *uris[PL_CONFIG_SHARDS + 1] = {c->store};
  for (unsigned i = 1; i < n; i++)
    uris[i] = c->shards[i - 1];
  sc->nshards = n;
  sc->shard_conninfo = n > 1 ? uris : NULL;
  for (unsigned i = 0; i < n && e == PL_OK; i++) {
    sc->shard = i;
    if (i)
      sc->conninfo = c->shards[i - 1];
    e = pl_store_open(&stores[i], be, sc, hooks);
  }
  if (e != PL_OK) {
    for (unsigned i = 0; i < n; i++)
      pl_store_close(stores[i]);
    return e;
  }
  if (n > 1)
    pl_info("store: %u shards (docs/scaling.md: messages, attachments, receipts, contacts, presence and"
            " groups cross shards; parleyd move-buckets moves buckets between them)",
            n);
  pl_store_link(stores, n);
  srv->store = stores[0];
  return PL_OK;
}
static pl_err pl__start(pl_server *srv) {
  const pl_config *c = &srv->cfg;
  if (pl_auth_init() != PL_OK || pl_mkdirs(c->data) != 0 || pl__lock_data(srv) != 0) {
    pl_error("cannot use data dir %s: %s", c->data, strerror(errno));
    return PL_ERR_CONFIG;
  }
  srv->nloops = c->threads > 0 ? c->threads : (int)uv_available_parallelism();
  pl_core_config cc;
  pl__core_config(c, &cc);
  cc.router = srv->router = pl_router_local_new(srv->nloops);
  if (c->bus[0]) /* a cluster: the local router, and the bus to the other nodes */
    cc.router = srv->router = pl_router_cluster_new(srv->router);
  srv->core = pl_core_new(&cc, srv->nloops);
  if (!(srv->limits = pl__limits(c, &cc)))
    return PL_ERR_CONFIG;
  if (pl__load_filter(srv) != 0)
    return PL_ERR_CONFIG;
  pl_store_config sc = {.dir = c->data,
                        .durable = c->durable,
                        .ttl_ms = c->ttl_s * 1000u,
                        .max_devices = c->max_devices,
                        .token_idle_ms = c->token_idle_ttl_s * 1000u,
                        .token_max_ms = c->token_max_ttl_s * 1000u,
                        .max_queue = c->max_queue,
                        .max_group = c->max_group,
                        .group_detail = c->group_detail,
                        .max_batch = c->commit_batch,
                        .page_cache_kib = c->db_cache_kib,
                        .sweep_ms = c->sweep_s * 1000u,
                        .commit_delay_us = c->commit_delay_us,
                        .media_ttl_ms = c->media_ttl_s * 1000u,
                        .disk_reserve = c->disk_reserve,
                        .acts = {.edit_ms = c->edit_window_s * 1000ull,
                                 .delete_ms = c->delete_window_s * 1000ull,
                                 .timer_test_ms = c->test_disappear_s * 1000ull}};
  pl_media_config mc = {.dir = c->data,
                        .max_upload = c->media_max_upload,
                        .quota = c->media_quota,
                        .blob_cache = c->media_cache,
                        .max_pending = c->media_max_unfinished,
                        .workers = c->media_workers,
                        .allow_files = c->media_files,
                        .thumb_px = c->media_thumb,
                        .limits = {.max_side = 16384, .max_frames = 1000, .max_pixels = c->media_max_pixels},
                        .link_ttl_s = c->media_link_ttl_s};
  pl_err e = c->key_file[0] ? pl_keys_load(c->key_file, &srv->seal) : PL_OK;
  if (e != PL_OK)
    return e;
  sc.seal = mc.seal = srv->seal;
  const pl_store_backend *be = pl_store_backend_for(c->store);
  if (be == &pl_store_pg) { /* the bytes where every node finds them */
    mc.blob_pg = c->store;
    mc.sharded = 1; /* named by their owner's bucket: the store may take shards later */
  }
  if (c->nshards && be != &pl_store_pg) {
    pl_error("--store-shard needs --store to be PostgreSQL (postgresql://...)");
    return PL_ERR_CONFIG;
  }
  const char *shard_uri[PL_CONFIG_SHARDS + 1] = {c->store};
  for (unsigned i = 0; i < c->nshards; i++)
    shard_uri[i + 1] = c->shards[i];
  if (c->nshards) { /* each user's uploads on its shard */
    srv->shardmap = pl_shardmap_new();
    mc.sharded = c->nshards + 1;
    mc.blob_shards = shard_uri;
    mc.shardmap = sc.shardmap = srv->shardmap;
  }
  e = pl_media_open(&srv->media, &mc);
  if (e != PL_OK) {
    pl_error("cannot open the media store in %s/media: %s", c->data, pl_err_msg(e));
    return e;
  }
  pl_media_store_hooks(srv->media, &sc);
  pl_store_hooks hooks;
  pl_core_store_hooks(srv->core, &hooks);
  if (be == &pl_store_pg) {
    sc.conninfo = c->store;
    sc.disk_reserve = 0; /* the database's disk is not ours to watch */
  }
  e = pl__store_open(srv, be, &sc, &hooks);
  if (e != PL_OK) {
    pl_error("cannot open the %s store%s%s: %s", be->name, be == &pl_store_pg ? "" : " in ",
             be == &pl_store_pg ? "" : c->data, pl_err_msg(e));
    return e;
  }
  pl_core_set_store(srv->core, srv->store);
  if (c->moderation_url[0]) { /* the strings live in srv->cfg, as long as the core */
    pl_hook_config hc = {.url = c->moderation_url,
                         .token = c->moderation_token,
                         .timeout_ms = c->moderation_timeout_ms,
                         .fail_closed = c->moderation_fail_closed};
    pl_core_set_moderation(srv->core, &hc, c->moderation_threads);
    pl_info("moderation: every Send's text goes to %s first (timeout %u ms, fail-%s)", c->moderation_url,
            c->moderation_timeout_ms, c->moderation_fail_closed ? "closed" : "open");
  }
  if ((e = pl_media_set_store(srv->media, srv->store)) != PL_OK)
    return e;
  if ((e = pl__start_push(srv)) != PL_OK)
    return e;
  srv->loops = pl_calloc((size_t)srv->nloops, sizeof *srv->loops);
  srv->listeners = pl_calloc((size_t)srv->nloops, sizeof *srv->listeners);
  srv->https = pl_calloc((size_t)srv->nloops, sizeof *srv->https);
  srv->tlss = pl_calloc((size_t)srv->nloops, sizeof *srv->tlss);
  srv->htlss = pl_calloc((size_t)srv->nloops, sizeof *srv->htlss);
  srv->mqtts = pl_calloc((size_t)srv->nloops * 2, sizeof *srv->mqtts);
  srv->ticks = pl_calloc((size_t)srv->nloops, sizeof *srv->ticks);
  srv->lps = pl_calloc((size_t)srv->nloops, sizeof *srv->lps);
  pl_admin_config ac = {.data = c->data,
                        .store = srv->store,
                        .core = srv->core,
                        .argon2_ops = c->argon2_ops,
                        .argon2_mem_kib = c->argon2_mem_kib,
                        .reload_filter = pl__admin_reload,
                        .close_sessions = pl__admin_close,
                        .ud = srv,
                        .version = PL_VERSION,
                        .started_ms = pl_now_ms(),
                        .signup = c->registration};
  srv->admin = pl_admin_new(&ac);
  srv->web = (pl_web){.core = srv->core,
                      .admin = srv->admin,
                      .started_ms = ac.started_ms,
                      .version = PL_VERSION,
                      .store = srv->store,
                      .media = srv->media,
                      .push = srv->push,
                      .metrics_token = c->metrics_token,
                      .limits = srv->limits,
                      .lp = {srv->lps, srv->nloops}};
  pl_web_init(&srv->web);
  pl_tcp_config tc = {.host = c->listen_host,
                      .port = c->listen_port,
                      .backlog = 4096,
                      .max_frame = c->max_frame,
                      .limits = srv->limits,
                      .proxy = c->proxy_protocol > 0};
  pl_http_config hc = {.tcp = {.host = c->http_host,
                               .port = c->http_port,
                               .backlog = 4096,
                               .max_frame = c->max_frame,
                               .limits = srv->limits,
                               .proxy = c->proxy_protocol > 0},
                       .route = pl_web_route,
                       .open = pl_web_open,
                       .route_ud = &srv->web};
  int http = c->http_host[0] != '\0';
  if (tc.port && (e = pl_tcp_probe(&tc)) != PL_OK)
    return e;
  if (http && hc.tcp.port && (e = pl_tcp_probe(&hc.tcp)) != PL_OK)
    return e;
  pl_tcp_config ttc = tc;
  pl_http_config htc = hc;
  if ((e = pl__tls_config(srv, &ttc, &htc)) != PL_OK)
    return e;
  int ntls = c->tls_host[0] != '\0', nhttps = c->https_host[0] != '\0';
  pl_tcp_config mq[2];
  if ((e = pl__mqtt_config(srv, &tc, &ttc, mq)) != PL_OK)
    return e;
  for (int i = 0; i < srv->nloops; i++) {
    srv->loops[i] = pl_loop_new(i);
    e = pl_tcp_listen(srv->loops[i], &tc, pl_core_handler(srv->core), &srv->listeners[i]);
    if (e == PL_OK && http)
      e = pl_http_listen(srv->loops[i], &hc, pl_core_handler(srv->core), &srv->https[i]);
    if (e == PL_OK && ntls)
      e = pl_tcp_listen(srv->loops[i], &ttc, pl_core_handler(srv->core), &srv->tlss[i]);
    if (e == PL_OK && nhttps)
      e = pl_http_listen(srv->loops[i], &htc, pl_core_handler(srv->core), &srv->htlss[i]);
    for (int k = 0; k < 2 && e == PL_OK; k++)
      if (mq[k].host[0] &&
          (e = pl_tcp_listen(srv->loops[i], &mq[k], pl_core_handler(srv->core), &srv->mqtts[2 * i + k])) ==
              PL_OK &&
          mq[k].port == 0)
        mq[k].port = pl_tcp_port(srv->mqtts[2 * i + k]);
    if (e == PL_OK && (http || nhttps))
      srv->lps[i] = pl_lp_new(srv->loops[i], i, pl_core_handler(srv->core), c->max_frame, srv->limits);
    if (e != PL_OK)
      return e;
    if (tc.port == 0) /* port 0: the others join the port the kernel picked */
      tc.port = pl_tcp_port(srv->listeners[i]);
    if (http && hc.tcp.port == 0)
      hc.tcp.port = pl_http_port(srv->https[i]);
    if (ntls && ttc.port == 0)
      ttc.port = pl_tcp_port(srv->tlss[i]);
    if (nhttps && htc.tcp.port == 0)
      htc.tcp.port = pl_http_port(srv->htlss[i]);
    srv->ticks[i] = (pl__loop_task){.srv = srv, .i = i};
    pl_loop_set_tick(srv->loops[i], 1000, pl__tick, &srv->ticks[i]);
  }
  if (c->bus[0] && (e = pl__join_bus(srv, tc.port)) != PL_OK)
    return e;
  for (int i = 0; i < srv->nloops; i++)
    pl_loop_start(srv->loops[i]);
  pl_info("parleyd %s listening on %s:%d (%d loops, data %s, durability %s, registration %s)", PL_VERSION,
          c->listen_host, tc.port, srv->nloops, c->data, c->durable ? "fsync" : "process",
          pl_signup_name(c->registration));
  if (http)
    pl_info("web: http://%s:%d/ (WebSocket at /ws, /healthz, /metrics)", c->http_host, hc.tcp.port);
  if (ntls)
    pl_info("tls: native protocol on %s:%d (TLS %s and later)", c->tls_host, ttc.port,
            c->tls_min == 12 ? "1.2" : "1.3");
  if (nhttps)
    pl_info("web: https://%s:%d/ (WebSocket at /ws)", c->https_host, htc.tcp.port);
  for (int k = 0; k < 2; k++)
    if (mq[k].host[0])
      pl_info("mqtt: MQTT 3.1.1 and 5.0 on %s:%d%s", mq[k].host, mq[k].port, k ? " (TLS)" : "");
  if (http && !c->metrics_token[0] && strcmp(c->http_host, "127.0.0.1") && strcmp(c->http_host, "::1"))
    pl_warn("/metrics is open to whoever reaches %s:%d: set --metrics-token (docs/operations.md 11)",
            c->http_host, hc.tcp.port);
  return PL_OK;
}

/* Stop accepting; let the store commit and answer everything queued; then
 * close connections (output flushed) and end the loops. */
static void pl__shutdown(pl_server *srv) {
  pl__post_all(srv, pl__stop_listen, NULL);
  /* Before the store: the rows of requests in flight are released in it.
   * The store's last commits still queue their notifications (their
   * hooks submit to the store while it drains). */
  pl_push_stop(srv->push);
  pl_store_stop(srv->store); /* loops may still submit: they get SHUTTING_DOWN */
  pl__loop_task **keep = pl_calloc((size_t)srv->nloops, sizeof *keep);
  pl__post_all(srv, pl__close_all, keep);
  for (int i = 0; i < srv->nloops; i++)
    pl_loop_join(srv->loops[i]);
  if (srv->cfg.bus[0]) /* after the loops (their goodbyes are published), before they are freed */
    pl_router_cluster_stop(srv->router);
  for (int i = 0; i < srv->nloops; i++) {
    pl_loop_free(srv->loops[i]);
    pl_tcp_listener_free(srv->listeners[i]);
    if (srv->https[i])
      pl_http_listener_free(srv->https[i]);
    if (srv->tlss[i])
      pl_tcp_listener_free(srv->tlss[i]);
    if (srv->htlss[i])
      pl_http_listener_free(srv->htlss[i]);
    pl__mqtt_each(srv, i, pl_tcp_listener_free);
    pl_lp_free(srv->lps[i]);
    if (keep[i])
      pl_free(keep[i]->abort_timer);
    pl_free(keep[i]);
  }
  pl_free(keep);
  pl_free(srv->loops);
  pl_free(srv->listeners);
  pl_free(srv->https);
  pl_free(srv->tlss);
  pl_free(srv->htlss);
  pl_free(srv->mqtts);
  pl_tls_free(srv->tls);
  pl_free(srv->lps);
  pl_free(srv->ticks);
  pl_store_close(srv->store);
  pl_web_close(&srv->web); /* its count, if any, was answered by the close */
  pl_media_close(srv->media);
  pl_push_free(srv->push);
  if (srv->core)
    pl_core_free(srv->core);
  if (srv->router) /* after the core: presence and sessions use it to the end */
    srv->router->ops->free(srv->router);
  pl_limits_free(srv->limits);
  pl_admin_free(srv->admin);
  pl_seal_ref_free(srv->seal); /* after the store and the media, which use it */
  pl_shardmap_free(srv->shardmap);
  if (srv->lock_fd > 0)
    close(srv->lock_fd);
}

int main(int argc, char **argv) {
  pl_server srv;
  /* the data dir and every file in it are the server's alone (0700/0600) */
  umask(077);
  if (argc > 1 && !strcmp(argv[1], "admin-token"))
    return pl_admin_tok_main(argc - 1, argv + 1);
  if (argc > 1 && !strcmp(argv[1], "key"))
    return pl_keys_main(argc - 1, argv + 1);
  if (argc > 1 && !strcmp(argv[1], "move-buckets"))
    return pl_move_main(argc - 1, argv + 1);
  memset(&srv, 0, sizeof srv);
  srv.lock_fd = -1;
  pl_config_defaults(&srv.cfg);
  int rc = pl_config_args(&srv.cfg, argc, argv);
  if (rc != 0)
    return rc > 0 ? 0 : 2;
  pl_log_set_level((pl_log_level)srv.cfg.log_level);
  signal(SIGPIPE, SIG_IGN);
  pl_tls_global_init();                 /* before libcurl, which uses OpenSSL too */
  if (pl_push_global_init() != PL_OK) { /* libcurl, before any thread */
    pl_error("cannot initialize libcurl");
    return 1;
  }

  uv_loop_t main_loop;
  uv_loop_init(&main_loop);
  uv_signal_t sigs[3];
  uv_signal_init(&main_loop, &sigs[0]);
  uv_signal_init(&main_loop, &sigs[1]);
  uv_signal_init(&main_loop, &sigs[2]);
  uv_signal_start(&sigs[0], pl__on_signal, SIGTERM);
  uv_signal_start(&sigs[1], pl__on_signal, SIGINT);
  sigs[2].data = &srv;
  uv_signal_start(&sigs[2], pl__on_hup, SIGHUP); /* reload the word list */

  if (pl__start(&srv) != PL_OK) {
    /* Nothing was served: close the store (it may hold no work) and leave. */
    if (srv.store)
      pl_store_stop(srv.store);
    pl_push_free(srv.push);
    if (srv.store)
      pl_store_close(srv.store);
    pl_media_close(srv.media);
    pl_seal_ref_free(srv.seal);
    pl_shardmap_free(srv.shardmap);
    pl_push_global_cleanup();
    return 1;
  }
  uv_run(&main_loop, UV_RUN_DEFAULT);
  pl__shutdown(&srv);
  uv_close((uv_handle_t *)&sigs[0], NULL);
  uv_close((uv_handle_t *)&sigs[1], NULL);
  uv_close((uv_handle_t *)&sigs[2], NULL);
  uv_run(&main_loop, UV_RUN_DEFAULT);
  uv_loop_close(&main_loop);
  pl_push_global_cleanup();
  pl_info("parleyd stopped");
  return 0;
}
