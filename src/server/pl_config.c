#include "pl_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_log.h"
#include "rules/pl_acts.h"
#include "rules/pl_signup.h"

typedef enum {
  T_STR,
  T_INT,
  T_U32,
  T_U32Z,
  T_U64,
  T_U64Z,
  T_BOOL,
  T_LISTEN,
  T_HTTP,
  T_LISTEN_TLS,
  T_HTTPS,
  T_MQTT,
  T_MQTT_TLS,
  T_TLS_MIN,
  T_PROXY,
  T_DURABILITY,
  T_LOG,
  T_SIGNUP,
  T_SHARD, /* appended to shards[] */
  T_SECRET /* T_STR of 16 or more printable ASCII characters, no spaces or '#' (never echoed) */
} pl__type;

typedef struct pl__opt {
  const char *name, *arg, *help;
  pl__type type;
  size_t off;
  size_t size; /* for T_STR */
} pl__opt;

#define OFF(f) offsetof(pl_config, f)
static const pl__opt pl__opts[] = {
    {"data", "DIR", "data directory (created if missing; default ./data)", T_STR, OFF(data), 512},
    {"store", "URL",
     "where the durable state lives: a PostgreSQL connection string (postgresql://user@host/db, several "
     "hosts with target_session_attrs=read-write for failover, or key=value form); default: SQLite in "
     "--data",
     T_STR, OFF(store), 1024},
    {"store-shard", "URL",
     "another PostgreSQL database as the next shard (repeat for more; --store is shard 0; the same order "
     "on every node, always). Sharding steps 1-5 (docs/scaling.md): messages, attachments, actions, "
     "receipts, contacts, blocks, presence and groups cross shards; parleyd move-buckets moves buckets "
     "between shards; not for production",
     T_SHARD, 0, 0},
    {"filter-words", "FILE",
     "sensitive-word list: one word or phrase per line, optionally TAB reject|mask; reloaded on SIGHUP",
     T_STR, OFF(filter_words), 512},
    {"listen", "HOST:PORT", "native protocol listener (default 127.0.0.1:7700)", T_LISTEN, 0, 0},
    {"http", "HOST:PORT|off",
     "HTTP listener: WebSocket at /ws, /healthz, /metrics (default 127.0.0.1:7780; off: none)", T_HTTP, 0, 0},
    {"listen-tls", "HOST:PORT", "native protocol over TLS (default: none; needs --tls-cert and --tls-key)",
     T_LISTEN_TLS, 0, 0},
    {"https", "HOST:PORT",
     "HTTP over TLS: the browser client, WebSocket at /ws, long-poll, uploads (default: none; needs "
     "--tls-cert and --tls-key)",
     T_HTTPS, 0, 0},
    {"mqtt", "HOST:PORT", "MQTT 3.1.1 and 5.0 listener (default: none; protocol.md, \"MQTT\")", T_MQTT, 0, 0},
    {"mqtt-tls", "HOST:PORT", "MQTT over TLS (default: none; needs --tls-cert and --tls-key)", T_MQTT_TLS, 0,
     0},
    {"tls-cert", "FILE", "PEM certificate, followed by its chain; reloaded on SIGHUP", T_STR, OFF(tls_cert),
     512},
    {"tls-key", "FILE", "PEM private key of --tls-cert; reloaded on SIGHUP", T_STR, OFF(tls_key), 512},
    {"tls-min", "1.2|1.3", "oldest TLS version accepted (default 1.3)", T_TLS_MIN, 0, 0},
    {"tls-handshake-timeout", "MS",
     "a TLS handshake not finished this long after connecting is cut (default "
     "10000)",
     T_U32, OFF(tls_handshake_ms), 0},
    {"proxy-protocol", "off|plain|all",
     "connections open with a PROXY v2 header (haproxy send-proxy-v2) naming the client: on the plain "
     "listeners (--listen, --http), or on all of them (default off)",
     T_PROXY, 0, 0},
    {"moderation-url", "URL",
     "before-send webhook: each Send's text, sender and conversation are POSTed here as JSON and it answers "
     "allow, reject or mask (default: none)",
     T_STR, OFF(moderation_url), 512},
    {"moderation-token", "TOKEN", "sent to --moderation-url as \"Authorization: Bearer TOKEN\"", T_SECRET,
     OFF(moderation_token), 256},
    {"moderation-timeout", "MS", "the webhook's answer must come within this (default 2000)", T_U32,
     OFF(moderation_timeout_ms), 0},
    {"moderation-fail-closed", "0|1",
     "without an answer in time (or a bad one): 0 stores the message (fail-open, default), 1 refuses it "
     "with FILTERED (fail-closed)",
     T_BOOL, OFF(moderation_fail_closed), 0},
    {"moderation-threads", "N",
     "webhook calls at once, all connections (default 4; one per connection at a time)", T_U32,
     OFF(moderation_threads), 0},
    {"registration", "open|invite|closed",
     "who may sign up: anyone (default), only with an invite code made by parleyctl invite, or nobody (the "
     "operator creates users with parleyctl user create)",
     T_SIGNUP, 0, 0},
    {"threads", "N", "event-loop threads (default: number of CPUs)", T_INT, OFF(threads), 0},
    {"durability", "fsync|process",
     "fsync: ack after the group commit reached the disk (default); process: ack after the write, "
     "survives a crash of parleyd but not of the machine",
     T_DURABILITY, 0, 0},
    {"ttl", "SECONDS", "message time-to-live (default 259200 = 72 h)", T_U64, OFF(ttl_s), 0},
    {"edit-window", "SECONDS", "a message may be edited this long after it was sent (default 900)", T_U32,
     OFF(edit_window_s), 0},
    {"delete-window", "SECONDS",
     "a message may be deleted for everyone this long after it was sent (default 172800 = 48 h; at most "
     "--ttl counts)",
     T_U32, OFF(delete_window_s), 0},
    {"test-disappear", "SECONDS",
     "for tests: every disappearing-message setting but off lasts SECONDS instead (default 0: as named)",
     T_U32Z, OFF(test_disappear_s), 0},
    {"heartbeat-mobile", "SECONDS", "heartbeat interval asked of mobile clients (default 30)", T_U32,
     OFF(hb_mobile_s), 0},
    {"heartbeat-web", "SECONDS", "heartbeat interval asked of web clients (default 15)", T_U32, OFF(hb_web_s),
     0},
    {"heartbeat-iot", "SECONDS", "heartbeat interval asked of iot clients (default 60)", T_U32, OFF(hb_iot_s),
     0},
    {"heartbeat-bot", "SECONDS", "heartbeat interval asked of bots and others (default 30)", T_U32,
     OFF(hb_bot_s), 0},
    {"max-frame", "BYTES", "largest frame accepted (default 1048576)", T_U32, OFF(max_frame), 0},
    {"max-message", "BYTES", "largest message body accepted (default 65536)", T_U32, OFF(max_message), 0},
    {"max-devices", "N", "devices per user (default 16)", T_U32, OFF(max_devices), 0},
    {"max-queue", "N", "messages queued per device before sends to it fail (default 100000)", T_U32,
     OFF(max_queue), 0},
    {"max-queue-share", "PERCENT",
     "of a device's queue, one sender (a user, or a group's history) may hold this much; more from that "
     "sender fails with QUEUE_FULL while others can still send (default 50; 100 = no share limit)",
     T_U32, OFF(max_queue_share), 0},
    {"send-rate", "N", "messages a user may send per second, sustained (default 50; 0 = no limit)", T_U32Z,
     OFF(send_rate), 0},
    {"send-burst", "N", "messages a user may send at once before --send-rate applies (default 500)", T_U32,
     OFF(send_burst), 0},
    {"sweep-interval", "SECONDS",
     "how often expired messages and group history every member has are deleted (default 10)", T_U32,
     OFF(sweep_s), 0},
    {"max-group-members", "N", "members per group (default 100000)", T_U32, OFF(max_group), 0},
    {"group-detail", "N",
     "groups up to N members get named receipts, live receipt updates and typing (default 256)", T_U32Z,
     OFF(group_detail), 0},
    {"db-cache", "KIB",
     "SQLite page cache in KiB (default 2048); the OS caches the rest of the file. It is a fixed "
     "amount: it must not grow with the connections that read their users' rows",
     T_U32, OFF(db_cache_kib), 0},
    {"commit-batch", "N", "most requests in one storage transaction (default 4096)", T_U32, OFF(commit_batch),
     0},
    {"disk-reserve", "BYTES",
     "disk space held in DATA/reserve and given back when the disk fills, so acks and logins still work "
     "while new messages are refused (default 67108864 = 64 MiB; 0 = none)",
     T_U64Z, OFF(disk_reserve), 0},
    {"commit-delay", "MICROSECONDS",
     "under load, start a commit at most this often, so each carries more (default 250; 0 = off)", T_U32Z,
     OFF(commit_delay_us), 0},
    {"presence-grace", "MS",
     "a user offline this long before followers are told; a reconnect meanwhile shows nothing (default 5000)",
     T_U32Z, OFF(presence_grace_ms), 0},
    {"max-conns", "N",
     "connections at once, all transports (default 0: the open-file limit minus 128, which stay for "
     "the database, /healthz and /metrics; half the limit if it is below 256)",
     T_U32Z, OFF(max_conns), 0},
    {"max-conns-per-ip", "N",
     "connections at once from one address, an IPv6 /64 counting as one (default 256; 0 = no cap)", T_U32Z,
     OFF(max_conns_per_ip), 0},
    {"auth-timeout", "SECONDS",
     "a connection not authenticated this long after connecting gets AUTH_REQUIRED and is closed "
     "(default 30; 0 = none)",
     T_U32Z, OFF(auth_timeout_s), 0},
    {"max-conn-output", "BYTES",
     "unsent output one connection may hold; a write past it cuts the connection with SLOW_CONSUMER "
     "(default 4194304; at least 524288)",
     T_U64, OFF(max_conn_output), 0},
    {"slow-consumer-timeout", "SECONDS",
     "a connection whose reading is stopped for its unsent output, and that reads nothing of it for this "
     "long, is cut with SLOW_CONSUMER (default 30; 0 = never)",
     T_U32Z, OFF(slow_consumer_s), 0},
    {"max-conn-memory", "BYTES",
     "input and output buffers of all connections together; past it, connections over their lag mark or "
     "growing a big frame are cut (default 536870912 = 512 MiB; 0 = no bound)",
     T_U64Z, OFF(max_conn_memory), 0},
    {"media-max-upload", "BYTES", "largest upload accepted at POST /media (default 67108864 = 64 MiB)", T_U64,
     OFF(media_max_upload), 0},
    {"media-quota", "BYTES",
     "bytes of uploads a user may keep at once (default 1073741824 = 1 GiB; 0 = no limit)", T_U64Z,
     OFF(media_quota), 0},
    {"media-cache", "BYTES",
     "on a PostgreSQL store: bytes of uploads this node keeps a copy of on its own disk "
     "(DATA/media/blobcache), "
     "the least recently served going first, so repeated downloads skip the database (default 268435456 = "
     "256 MiB; 0 = none)",
     T_U64Z, OFF(media_cache), 0},
    {"media-max-unfinished", "N",
     "unfinished resumable uploads a user may have at once (default 16; 0 = no limit)", T_U32Z,
     OFF(media_max_unfinished), 0},
    {"media-workers", "N",
     "threads that check uploaded images and make thumbnails, apart from the password-hashing pool "
     "(default 2; at most 1024)",
     T_INT, OFF(media_workers), 0},
    {"media-ttl", "SECONDS",
     "an upload is deleted this long after its last message was sent, once no stored message carries it "
     "(default: --ttl)",
     T_U64Z, OFF(media_ttl_s), 0},
    {"media-files", "0|1", "accept uploads that are not JPEG, PNG, WebP or GIF, as plain files (default 0)",
     T_BOOL, OFF(media_files), 0},
    {"media-max-pixels", "N", "largest width x height an image may claim (default 50000000)", T_U64,
     OFF(media_max_pixels), 0},
    {"media-thumb", "PIXELS", "thumbnails fit this square (default 320)", T_U32, OFF(media_thumb), 0},
    {"media-link-ttl", "SECONDS", "signed media links last this long (default 3600)", T_U32,
     OFF(media_link_ttl_s), 0},
    {"argon2-ops", "N", "Argon2id passes for new password hashes (default 2)", T_U32, OFF(argon2_ops), 0},
    {"argon2-mem", "KIB", "Argon2id memory for new password hashes, KiB (default 65536; min 8)", T_U32,
     OFF(argon2_mem_kib), 0},
    {"bus", "nats://HOST:PORT[,HOST:PORT...]",
     "join a cluster: the NATS servers that carry hints, presence, typing and takeovers between the nodes "
     "(default: none, a single node)",
     T_STR, OFF(bus), 512},
    {"node", "NAME", "this node's name on the bus (default: host name ':' native port)", T_STR, OFF(node),
     64},
    {"bus-alive", "MS", "how often this node tells the bus it is alive (default 2000)", T_U32,
     OFF(bus_alive_ms), 0},
    {"bus-dead", "MS",
     "a node silent this long is declared dead and its users offline (default 6000; more than --bus-alive)",
     T_U32, OFF(bus_dead_ms), 0},
    {"key-file", "FILE",
     "encrypt message bodies and media at rest with the keys in FILE (0600; made by `parleyd key new FILE`;"
     " reloaded on SIGHUP for key rotation; SQLite store only; default: none, stored plain)",
     T_STR, OFF(key_file), 512},
    {"metrics-token", "TOKEN",
     "/metrics answers only with \"Authorization: Bearer TOKEN\" (16 to 255 printable characters, no '#'; "
     "default: none, /metrics is open)",
     T_SECRET, OFF(metrics_token), 256},
    {"login-free-failures", "N",
     "wrong passwords for one account from one address before each further one locks that pair out "
     "(default 5)",
     T_U32Z, OFF(login_free_failures), 0},
    {"login-delay", "MS", "the first login lockout; each further failure doubles it (default 1000)", T_U32,
     OFF(login_delay_ms), 0},
    {"login-lockout", "MS",
     "the longest login lockout, and how long failures are remembered (default 900000 = 15 min)", T_U32,
     OFF(login_lockout_ms), 0},
    {"login-account-failures", "N",
     "wrong passwords for one account from all addresses before its logins are delayed, at most 60 s "
     "(default 50)",
     T_U32Z, OFF(login_account_failures), 0},
    {"login-address-failures", "N",
     "failed logins and resumes from one address, any account, before that address is locked out "
     "(default 30)",
     T_U32Z, OFF(login_address_failures), 0},
    {"login-rate", "N", "register, login and resume attempts a second per address (default 10; 0 = no limit)",
     T_U32Z, OFF(login_rate), 0},
    {"login-burst", "N", "attempts an address may make at once before login-rate applies (default 20)", T_U32,
     OFF(login_burst), 0},
    {"register-rate", "N", "registrations an hour per address (default 20; 0 = no limit)", T_U32Z,
     OFF(register_rate), 0},
    {"argon2-threads", "N",
     "threads that hash passwords, apart from every other work (default 2; at most 256)", T_U32,
     OFF(argon2_threads), 0},
    {"argon2-per-address", "N", "password hashes running or waiting at once per address (default 2)", T_U32,
     OFF(argon2_per_address), 0},
    {"argon2-queue", "N", "password hashes waiting for a thread, all addresses (default 64)", T_U32,
     OFF(argon2_queue), 0},
    {"token-idle-ttl", "SECONDS",
     "a session token unused this long stops working (default 2592000 = 30 days; 0 = never)", T_U64Z,
     OFF(token_idle_ttl_s), 0},
    {"token-max-ttl", "SECONDS",
     "a session token stops working this long after the login that issued it (default 15552000 = 180 days; "
     "0 = never)",
     T_U64Z, OFF(token_max_ttl_s), 0},
    {"log-level", "LEVEL", "debug, info, warn, error or off (default info)", T_LOG, 0, 0},
    {"push-webhook", "URL", "push notifications as JSON POSTed to URL (provider \"webhook\")", T_STR,
     OFF(push_webhook), 512},
    {"fcm-credentials", "FILE", "Firebase service-account JSON: enables provider \"fcm\" (FCM HTTP v1)",
     T_STR, OFF(fcm_credentials), 512},
    {"fcm-endpoint", "URL", "FCM API base URL (default https://fcm.googleapis.com)", T_STR, OFF(fcm_endpoint),
     256},
    {"apns-key", "FILE", "APNs auth key (.p8): enables provider \"apns\" with the three below", T_STR,
     OFF(apns_key), 512},
    {"apns-key-id", "ID", "the APNs key's Key ID", T_STR, OFF(apns_key_id), 32},
    {"apns-team-id", "ID", "the Apple developer Team ID", T_STR, OFF(apns_team_id), 32},
    {"apns-topic", "BUNDLE", "the app's bundle id (apns-topic)", T_STR, OFF(apns_topic), 256},
    {"apns-endpoint", "URL",
     "APNs base URL (default https://api.push.apple.com; development: https://api.sandbox.push.apple.com)",
     T_STR, OFF(apns_endpoint), 256},
    {"push-window", "MS",
     "messages to an offline device within MS collapse into one notification (default 2000)", T_U32Z,
     OFF(push_window_ms), 0},
    {"push-privacy", "0|1", "1: notifications say only \"New message\" and the badge (default 0)", T_BOOL,
     OFF(push_privacy), 0},
    {"push-backoff", "MS", "first retry of a failed notification after about MS, doubling (default 1000)",
     T_U32, OFF(push_backoff_ms), 0},
    {"push-backoff-max", "MS", "longest retry delay (default 300000)", T_U32, OFF(push_backoff_max_ms), 0},
    {"push-attempts", "N", "attempts before a notification is dropped (default 8)", T_U32, OFF(push_attempts),
     0},
    {"push-timeout", "MS", "per provider request (default 10000)", T_U32, OFF(push_timeout_ms), 0},
    {"push-inflight", "N", "provider requests at once (default 64)", T_U32, OFF(push_inflight), 0},
};
#define PL__NOPTS (sizeof pl__opts / sizeof pl__opts[0])

void pl_config_defaults(pl_config *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->data, sizeof c->data, "data");
  snprintf(c->listen_host, sizeof c->listen_host, "127.0.0.1");
  c->listen_port = 7700;
  snprintf(c->http_host, sizeof c->http_host, "127.0.0.1");
  c->http_port = 7780;
  c->tls_min = 13;
  c->tls_handshake_ms = 10000;
  c->bus_alive_ms = 2000;
  c->bus_dead_ms = 6000;
  c->durable = 1;
  c->ttl_s = 72u * 3600u;
  c->edit_window_s = PL_ACTS_EDIT_WINDOW_S;
  c->delete_window_s = PL_ACTS_DELETE_WINDOW_S;
  c->hb_mobile_s = 30;
  c->hb_web_s = 15;
  c->hb_iot_s = 60;
  c->hb_bot_s = 30;
  c->max_frame = 1u << 20;
  c->max_message = 64u * 1024u;
  c->max_devices = 16;
  c->max_queue = 100000;
  c->max_queue_share = 50;
  c->send_rate = 50;
  c->send_burst = 500;
  c->max_group = 100000;
  c->group_detail = 256;
  c->sweep_s = 10;
  c->commit_batch = 4096;
  c->db_cache_kib = 2048;
  c->commit_delay_us = 250;
  c->presence_grace_ms = 5000;
  c->max_conns_per_ip = 256;
  c->auth_timeout_s = 30;
  c->max_conn_output = 4u << 20;
  c->slow_consumer_s = 30;
  c->max_conn_memory = 512u << 20;
  c->disk_reserve = 64u << 20;
  c->media_max_upload = 64u << 20;
  c->media_quota = 1ull << 30;
  c->media_cache = 256ull << 20;
  c->media_max_unfinished = 16;
  c->media_workers = 2;
  c->media_max_pixels = 50000000;
  c->media_thumb = 320;
  c->media_link_ttl_s = 3600;
  c->login_free_failures = 5;
  c->login_delay_ms = 1000;
  c->login_lockout_ms = 900000;
  c->login_account_failures = 50;
  c->login_address_failures = 30;
  c->login_rate = 10;
  c->login_burst = 20;
  c->register_rate = 20;
  c->argon2_threads = 2;
  c->argon2_per_address = 2;
  c->argon2_queue = 64;
  c->token_idle_ttl_s = 30u * 86400u;
  c->token_max_ttl_s = 180u * 86400u;
  c->log_level = PL_LOG_INFO;
  c->push_window_ms = 2000;
  c->push_backoff_ms = 1000;
  c->push_backoff_max_ms = 300000;
  c->push_attempts = 8;
  c->push_timeout_ms = 10000;
  c->push_inflight = 64;
  c->moderation_timeout_ms = 2000;
  c->moderation_threads = 4;
}

static int pl__num(const char *v, unsigned long long max, unsigned long long *out) {
  char *end;
  errno = 0;
  if (!*v || *v == '-')
    return -1;
  unsigned long long n = strtoull(v, &end, 10);
  if (errno || *end || n > max)
    return -1;
  *out = n;
  return 0;
}

/* HOST:PORT into host (64 bytes) and *port_out. */
static int pl__hostport(const char *v, char *host, int *port_out) {
  const char *colon = strrchr(v, ':');
  unsigned long long port;
  if (!colon || colon == v || (size_t)(colon - v) >= 64 || pl__num(colon + 1, 65535, &port))
    return -1;
  const char *h = v;
  size_t n = (size_t)(colon - v);
  if (h[0] == '[' && n >= 2 && h[n - 1] == ']') { /* [::1]:7700 */
    h++;
    n -= 2;
  }
  memcpy(host, h, n);
  host[n] = '\0';
  *port_out = (int)port;
  return 0;
}

/* A secret worth the name, that survives a config file (no '#', no spaces). */
static int pl__secret_ok(const char *v) {
  size_t n = 0;
  for (; v[n]; n++)
    if (v[n] <= ' ' || v[n] > '~' || v[n] == '#')
      return 0;
  return n >= 16;
}

static int pl__apply(pl_config *c, const pl__opt *o, const char *v) {
  char *base = (char *)c;
  unsigned long long n;
  switch (o->type) {
  case T_SECRET:
  case T_STR:
    if (strlen(v) >= o->size || !*v || (o->type == T_SECRET && !pl__secret_ok(v)))
      return -1;
    snprintf(base + o->off, o->size, "%s", v);
    return 0;
  case T_INT:
    if (pl__num(v, 1024, &n))
      return -1;
    *(int *)(base + o->off) = (int)n;
    return 0;
  case T_U32:
  case T_U32Z: /* the same, but 0 (off) is allowed */
    if (pl__num(v, 0xffffffffu, &n) || (n == 0 && o->type == T_U32))
      return -1;
    *(uint32_t *)(base + o->off) = (uint32_t)n;
    return 0;
  case T_U64:
  case T_U64Z:
    if (pl__num(v, 1ull << 40, &n) || (n == 0 && o->type == T_U64))
      return -1;
    *(uint64_t *)(base + o->off) = n;
    return 0;
  case T_BOOL:
    if (pl__num(v, 1, &n))
      return -1;
    *(int *)(base + o->off) = (int)n;
    return 0;
  case T_LISTEN: return pl__hostport(v, c->listen_host, &c->listen_port);
  case T_HTTP:
    if (!strcmp(v, "off")) {
      c->http_host[0] = '\0';
      return 0;
    }
    return pl__hostport(v, c->http_host, &c->http_port);
  case T_LISTEN_TLS: return pl__hostport(v, c->tls_host, &c->tls_port);
  case T_HTTPS: return pl__hostport(v, c->https_host, &c->https_port);
  case T_MQTT: return pl__hostport(v, c->mqtt_host, &c->mqtt_port);
  case T_MQTT_TLS: return pl__hostport(v, c->mqtt_tls_host, &c->mqtt_tls_port);
  case T_PROXY:
    if (!strcmp(v, "off"))
      c->proxy_protocol = 0;
    else if (!strcmp(v, "plain"))
      c->proxy_protocol = 1;
    else if (!strcmp(v, "all"))
      c->proxy_protocol = 2;
    else
      return -1;
    return 0;
  case T_TLS_MIN:
    if (!strcmp(v, "1.2"))
      c->tls_min = 12;
    else if (!strcmp(v, "1.3"))
      c->tls_min = 13;
    else
      return -1;
    return 0;
  case T_DURABILITY:
    if (strcmp(v, "fsync") == 0)
      c->durable = 1;
    else if (strcmp(v, "process") == 0)
      c->durable = 0;
    else
      return -1;
    return 0;
  case T_SIGNUP: {
    int m = pl_signup_parse(v);
    if (m < 0)
      return -1;
    c->registration = m;
    return 0;
  }
  case T_SHARD:
    if (!*v || strlen(v) >= sizeof c->shards[0] || c->nshards >= PL_CONFIG_SHARDS)
      return -1;
    snprintf(c->shards[c->nshards++], sizeof c->shards[0], "%s", v);
    return 0;
  case T_LOG: {
    int l = pl_log_parse_level(v);
    if (l < 0)
      return -1;
    c->log_level = l;
    return 0;
  }
  }
  return -1;
}

int pl_config_set(pl_config *c, const char *key, const char *value, char *err, size_t errlen) {
  for (size_t i = 0; i < PL__NOPTS; i++) {
    if (strcmp(pl__opts[i].name, key) != 0)
      continue;
    if (pl__apply(c, &pl__opts[i], value) == 0)
      return 0;
    snprintf(err, errlen, "bad value '%s' for %s (expected %s)",
             pl__opts[i].type == T_SECRET ? "(not shown)" : value, key, pl__opts[i].arg);
    return -1;
  }
  snprintf(err, errlen, "unknown option '%s'", key);
  return -1;
}

static char *pl__trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  char *e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
    *--e = '\0';
  return s;
}

int pl_config_load(pl_config *c, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot open config %s: %s", path, strerror(errno));
    return -1;
  }
  char line[1024], why[256];
  int lineno = 0, rc = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    char *hash = strchr(line, '#');
    if (hash)
      *hash = '\0';
    char *l = pl__trim(line);
    if (!*l)
      continue;
    char *eq = strchr(l, '=');
    if (!eq) {
      snprintf(err, errlen, "%s:%d: expected key = value", path, lineno);
      rc = -1;
      break;
    }
    *eq = '\0';
    if (pl_config_set(c, pl__trim(l), pl__trim(eq + 1), why, sizeof why) != 0) {
      snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
      rc = -1;
      break;
    }
  }
  fclose(f);
  return rc;
}

void pl_config_usage(FILE *out) {
  fprintf(out,
          "usage: parleyd [OPTIONS]\n"
          "       parleyd admin-token create NAME | list | revoke NAME [--data DIR | --config FILE]\n"
          "       parleyd key new|add|list FILE | remove FILE ID   (the --key-file)\n"
          "       parleyd move-buckets LO[-HI] --to SHARD --store URI --store-shard URI ... [--grace S]\n"
          "                (buckets to another shard while the nodes run: docs/operations.md 16.2)\n"
          "                (tokens for the admin API and parleyctl: docs/admin.md)\n\n"
          "Parley messaging server. Options may also be given in a config file\n"
          "(--config FILE) as 'name = value' lines; the command line wins.\n\n"
          "  --config FILE            read options from FILE first\n");
  for (size_t i = 0; i < PL__NOPTS; i++) {
    char left[64];
    snprintf(left, sizeof left, "--%s %s", pl__opts[i].name, pl__opts[i].arg);
    fprintf(out, "  %-24s %s\n", left, pl__opts[i].help);
  }
  fprintf(out, "  --help                   this text\n  --version                print the version\n");
}

/* A listener's host given as a name (localhost, a host name) becomes its
 * first address (IPv4 first): the listeners bind numeric addresses only.
 * "" (a listener that is off) and numeric ones stay. */
static int pl__resolve(const char *opt, char host[64], char *err, size_t errlen) {
  struct in6_addr a6;
  if (!host[0] || inet_pton(AF_INET, host, &a6) == 1 || inet_pton(AF_INET6, host, &a6) == 1)
    return 0;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
  int rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc != 0 || !res) {
    snprintf(err, errlen, "--%s: cannot resolve host '%s': %s (give an address such as 127.0.0.1)", opt, host,
             rc ? gai_strerror(rc) : "no address");
    return -1;
  }
  const struct addrinfo *pick = res;
  for (const struct addrinfo *i = res; i; i = i->ai_next)
    if (i->ai_family == AF_INET) {
      pick = i;
      break;
    }
  const void *addr = pick->ai_family == AF_INET
                         ? (const void *)&((struct sockaddr_in *)pick->ai_addr)->sin_addr
                         : (const void *)&((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr;
  char out[INET6_ADDRSTRLEN];
  inet_ntop(pick->ai_family, addr, out, sizeof out);
  freeaddrinfo(res);
  snprintf(host, 64, "%s", out);
  return 0;
}

int pl_config_resolve(pl_config *c, char *err, size_t errlen) {
  if (pl__resolve("listen", c->listen_host, err, errlen) || pl__resolve("http", c->http_host, err, errlen) ||
      pl__resolve("listen-tls", c->tls_host, err, errlen) || pl__resolve("https", c->https_host, err, errlen))
    return -1;
  return 0;
}

int pl_config_args(pl_config *c, int argc, char **argv) {
  char err[512];
  int shards_given = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      pl_config_usage(stdout);
      return 1;
    }
    if (strcmp(argv[i], "--version") == 0) {
      printf("parleyd " PL_VERSION " (protocols 1 and 2)\n");
      return 1;
    }
    const char *file = NULL;
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
      file = argv[++i];
    else if (strncmp(argv[i], "--config=", 9) == 0)
      file = argv[i] + 9;
    if (file && pl_config_load(c, file, err, sizeof err) != 0) {
      fprintf(stderr, "parleyd: %s\n", err);
      return -1;
    }
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "parleyd: unexpected argument '%s' (see --help)\n", a);
      return -1;
    }
    char key[64];
    const char *val, *eq = strchr(a + 2, '=');
    if (eq) { /* --name=value */
      snprintf(key, sizeof key, "%.*s", (int)(eq - a - 2), a + 2);
      val = eq + 1;
    } else {
      snprintf(key, sizeof key, "%s", a + 2);
      if (i + 1 >= argc) {
        fprintf(stderr, "parleyd: option --%s needs a value (see --help)\n", key);
        return -1;
      }
      val = argv[++i];
    }
    if (strcmp(key, "config") == 0)
      continue;
    /* a list too: the command line's replaces the config files' */
    if (strcmp(key, "store-shard") == 0 && !shards_given++)
      c->nshards = 0;
    if (pl_config_set(c, key, val, err, sizeof err) != 0) {
      fprintf(stderr, "parleyd: %s (see --help)\n", err);
      return -1;
    }
  }
  if (c->bus[0] && (c->bus_dead_ms <= c->bus_alive_ms || c->bus_alive_ms < 100)) {
    fprintf(stderr, "parleyd: --bus-dead must be more than --bus-alive, which is at least 100\n");
    return -1;
  }
  if ((c->tls_host[0] || c->https_host[0] || c->mqtt_tls_host[0]) && (!c->tls_cert[0] || !c->tls_key[0])) {
    fprintf(stderr, "parleyd: --listen-tls, --https and --mqtt-tls need --tls-cert and --tls-key\n");
    return -1;
  }
  if (pl_config_resolve(c, err, sizeof err) != 0) {
    fprintf(stderr, "parleyd: %s\n", err);
    return -1;
  }
  return 0;
}
