/* pl_config: parleyd's settings, from defaults, a config file and the
 * command line (in that order; later wins). One table lists every option
 * with its help text, so --help, the file parser and docs/operations.md
 * cannot drift apart. */
#ifndef PL_CONFIG_H
#define PL_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PL_CONFIG_SHARDS 15 /* --store-shard given at most this often */

typedef struct pl_config {
  char data[512];
  /* --store: a libpq connection string or URI selects the PostgreSQL
   * backend (pl_store_backend_for); "" or anything else: SQLite in data */
  char store[1024];
  /* --store-shard (repeated): PostgreSQL shards 1, 2, ... after --store's
   * shard 0, in the order given (docs/scaling.md; step 1: islands) */
  char shards[PL_CONFIG_SHARDS][1024];
  unsigned nshards;
  char filter_words[512]; /* sensitive-word list file; "" = none */
  char listen_host[64];
  int listen_port;
  char http_host[64]; /* "" = no HTTP listener */
  int http_port;
  /* TLS (docs/operations.md, "TLS"): the native protocol and HTTP over TLS */
  char tls_host[64]; /* --listen-tls; "" = none */
  int tls_port;
  char https_host[64]; /* --https; "" = none */
  int https_port;
  char tls_cert[512], tls_key[512];
  int tls_min; /* 12 or 13 */
  uint32_t tls_handshake_ms;
  int proxy_protocol; /* 0 off, 1 the plain listeners, 2 every listener */
  /* MQTT 3.1.1 / 5.0 (protocol.md, "MQTT"): plain and over TLS; "" = none */
  char mqtt_host[64], mqtt_tls_host[64];
  int mqtt_port, mqtt_tls_port;
  int threads;
  int durable; /* 1: fsync each group commit; 0: survive process crash only */
  uint64_t ttl_s;
  uint32_t edit_window_s, delete_window_s, test_disappear_s; /* message actions (protocol.md 11.9) */
  uint32_t hb_mobile_s, hb_web_s, hb_iot_s, hb_bot_s;
  uint32_t db_cache_kib; /* SQLite's page cache */
  uint32_t max_frame, max_message, max_devices, max_queue, max_group, group_detail, sweep_s, commit_batch,
      commit_delay_us;
  uint32_t presence_grace_ms;
  /* abuse limits (protocol.md 10.7): sends per user, a sender's share of a device queue */
  uint32_t send_rate, send_burst, max_queue_share;
  /* connections (docs/operations.md, "Limits") */
  uint32_t max_conns, max_conns_per_ip, auth_timeout_s, slow_consumer_s;
  uint64_t max_conn_output, max_conn_memory;
  uint64_t disk_reserve; /* bytes held back for a full disk (docs/operations.md, "Disk full") */
  uint64_t media_max_upload, media_quota, media_ttl_s, media_max_pixels;
  uint64_t media_cache; /* --media-cache: bytes of blobs a node on PostgreSQL keeps a copy of */
  uint32_t media_thumb, media_link_ttl_s, media_max_unfinished;
  int media_files;
  int media_workers;
  uint32_t argon2_ops, argon2_mem_kib;
  /* login throttling and hashing (docs/operations.md, "Login throttling") */
  uint32_t login_free_failures, login_delay_ms, login_lockout_ms, login_account_failures,
      login_address_failures, login_rate, login_burst, register_rate;
  uint32_t argon2_threads, argon2_per_address, argon2_queue;
  uint64_t token_idle_ttl_s, token_max_ttl_s;
  int log_level;
  char metrics_token[256]; /* "" = /metrics open to whoever reaches --http */
  char key_file[512];      /* encryption at rest (pl_keys.c); "" = stored plain */
  /* push notifications (docs/operations.md, "Push notifications") */
  char push_webhook[512], fcm_credentials[512], fcm_endpoint[256];
  char apns_key[512], apns_key_id[32], apns_team_id[32], apns_topic[256], apns_endpoint[256];
  uint32_t push_window_ms, push_backoff_ms, push_backoff_max_ms, push_attempts, push_timeout_ms,
      push_inflight;
  int push_privacy;
  int registration; /* pl_signup_mode: open, invite, closed (docs/admin.md) */
  /* the before-send webhook (docs/operations.md, "Moderation webhook") */
  char moderation_url[512], moderation_token[256];
  uint32_t moderation_timeout_ms, moderation_threads;
  int moderation_fail_closed;
  /* a cluster (docs/operations.md, "Running a cluster") */
  char bus[512]; /* --bus nats://h:p[,h:p...]; "" = a single node */
  char node[64]; /* --node; "" = host name ':' native port */
  uint32_t bus_alive_ms, bus_dead_ms;
} pl_config;

/* parleyd's version, as --version prints it and the log says at start. */
#define PL_VERSION "0.2.0"

void pl_config_defaults(pl_config *c);
/* Applies key=value (key is the long option name without dashes). Returns 0,
 * or -1 and writes a reason to err. */
int pl_config_set(pl_config *c, const char *key, const char *value, char *err, size_t errlen);
/* Reads a file of "key = value" lines ('#' starts a comment). */
int pl_config_load(pl_config *c, const char *path, char *err, size_t errlen);
/* Parses argv (handles --config first, then every other option). Returns 0 to
 * run, 1 if --help/--version was printed, -1 on error (printed). */
int pl_config_args(pl_config *c, int argc, char **argv);
void pl_config_usage(FILE *out);
/* Listener hosts given as names become addresses (pl_config_args does it);
 * -1 and a reason if one does not resolve. */
int pl_config_resolve(pl_config *c, char *err, size_t errlen);

#endif
