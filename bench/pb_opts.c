#include "pb_opts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void pb_opts_usage(FILE *out) {
  fprintf(
      out,
      "usage: parley-bench [--server HOST:PORT] [--server-pid PID] SCENARIO [--conns N] [--rate R]\n"
      "                    [--messages M] [--duration S] [--json] [more options]\n"
      "\n"
      "Scenarios:\n"
      "  idle    N connections, heartbeats only: server RSS per connection (default N 1000)\n"
      "  pairs   N sender->receiver pairs; --rate R total msg/s open loop, else max speed (N 100)\n"
      "  drain   M messages queue for an offline device, then it connects (M 10000, N senders 4)\n"
      "  storm   N devices reconnect at once with tokens, bystander pairs meanwhile (N 1000)\n"
      "  group   one sender, a group of --members users of which N are online; M group messages at\n"
      "          --rate R/s (default 10: each fan-out alone) or, with --rate 0, --window in flight\n"
      "          (N 10000, M 200): deliveries/s, each message's last delivery, the group's memory\n"
      "  mqtt-pairs  N MQTT publisher->subscriber pairs at QoS 1 against --mqtt HOST:PORT, parleyd's\n"
      "          topics or (--broker plain) any broker's; --rate R total msg/s, else max speed (N 50)\n"
      "\n"
      "Options:\n"
      "  --server HOST:PORT     use a running parleyd (default: start build/parleyd or $PARLEYD)\n"
      "  --server-pid PID       its pid, for server CPU and RSS figures\n"
      "  --parleyd-args \"...\"   extra arguments for the parleyd the bench starts\n"
      "  --state DIR            keep state between runs: our parleyd's data dir, or (with --server)\n"
      "                         where the token cache lives (default: a temp dir / ~/.cache/parley-bench)\n"
      "  --conns N              connections, pairs or devices (per scenario, see above)\n"
      "  --rate R               offered messages/s in total (pairs; storm bystanders, default 200)\n"
      "  --messages M           messages (pairs: stop after M; drain: M queued)\n"
      "  --duration S           seconds of the measured phase (pairs 10, idle 5)\n"
      "  --size BYTES           message body size (default 100)\n"
      "  --window W             max-speed sends in flight per sender (default 64)\n"
      "  --bystanders B         storm: bystander pairs (default 5)\n"
      "  --members N            group: members (default --conns; those past --conns stay offline)\n"
      "  --workers N            at least N worker processes (default: as the open-file limit needs)\n"
      "  --per-addr N           connections per source address (default 10000)\n"
      "  --src ADDR|none        first source address (default 127.0.0.2; then .3, .4, ...)\n"
      "  --handshakes N         connections authenticating at once in set-up (default 256)\n"
      "  --ack-batch N          receivers Ack after N messages (default 64) ...\n"
      "  --ack-delay MS         ... or MS ms after the first unacknowledged one (default 5)\n"
      "  --timeout S            longest any phase may take (default 300)\n"
      "  --json                 print one JSON object instead of the table\n"
      "  --quiet                no progress lines on stderr\n"
      "  --names seq|mixed      bench users pb<i> (default), or pb<i>x<hash of i>: names that differ\n"
      "                         in every byte, so that a sharded store's users spread over its shards\n"
      "                         (sequential names share their home bucket's high bits)\n"
      "  --mqtt HOST:PORT       mqtt-pairs: the broker (default: our parleyd, given --mqtt on a free port)\n"
      "  --broker parley|plain  mqtt-pairs: parleyd's topic scheme with bench users (default), or any\n"
      "                         broker: topics bench/<i>, no login, no users (give --server-pid for CPU)\n"
      "  --mqtt-persist         mqtt-pairs: clean session 0 (the broker keeps the sessions)\n"
      "  --tls                  clients connect over TLS: our parleyd gets a throw-away certificate and\n"
      "                         --listen-tls (with --server, HOST:PORT must be a --listen-tls listener)\n");
}

static void pb__defaults(pb_opts *o) {
  memset(o, 0, sizeof *o);
  o->rate = -1;
  o->duration = -1;
  o->window = 64;
  o->size = 100;
  o->bystanders = 5;
  o->per_addr = 10000;
  o->src_base = 0x7f000002u;
  o->handshakes = 256;
  o->ack_batch = 64;
  o->ack_delay_ms = 5;
  o->timeout = 300;
}

static int pb__u32(const char *v, uint32_t *out) {
  char *end;
  errno = 0;
  unsigned long n = strtoul(v, &end, 10);
  if (errno || end == v || *end || *v == '-' || n > 0xffffffffu)
    return -1;
  *out = (uint32_t)n;
  return 0;
}

static int pb__num(const char *v, double *out) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (errno || end == v || *end || d < 0)
    return -1;
  *out = d;
  return 0;
}

static int pb__src(pb_opts *o, const char *v) {
  struct in_addr a;
  if (strcmp(v, "none") == 0) {
    o->src_base = 0;
    return 0;
  }
  if (inet_pton(AF_INET, v, &a) != 1)
    return -1;
  o->src_base = ntohl(a.s_addr);
  return 0;
}

static int pb__str(char *dst, size_t n, const char *v) {
  if (strlen(v) >= n)
    return -1;
  memcpy(dst, v, strlen(v) + 1);
  return 0;
}

/* Applies one --name value; -1 if the value is bad, -2 if name is unknown. */
static int pb__apply(pb_opts *o, const char *k, const char *v) {
  double d;
  uint32_t u;
  if (!strcmp(k, "server"))
    return pb__str(o->server, sizeof o->server, v);
  if (!strcmp(k, "server-pid"))
    return pb__u32(v, &u) ? -1 : (o->server_pid = (long)u, 0);
  if (!strcmp(k, "parleyd-args"))
    return pb__str(o->parleyd_args, sizeof o->parleyd_args, v);
  if (!strcmp(k, "state"))
    return pb__str(o->state, sizeof o->state, v);
  if (!strcmp(k, "conns"))
    return pb__u32(v, &o->conns);
  if (!strcmp(k, "rate"))
    return pb__num(v, &o->rate);
  if (!strcmp(k, "messages"))
    return pb__u32(v, &u) ? -1 : (o->messages = u, 0);
  if (!strcmp(k, "duration"))
    return pb__num(v, &o->duration);
  if (!strcmp(k, "size"))
    return pb__u32(v, &o->size);
  if (!strcmp(k, "window"))
    return pb__u32(v, &o->window) || !o->window ? -1 : 0;
  if (!strcmp(k, "bystanders"))
    return pb__u32(v, &o->bystanders);
  if (!strcmp(k, "members"))
    return pb__u32(v, &o->members);
  if (!strcmp(k, "workers"))
    return pb__u32(v, &o->workers);
  if (!strcmp(k, "per-addr"))
    return pb__u32(v, &o->per_addr) || !o->per_addr ? -1 : 0;
  if (!strcmp(k, "src"))
    return pb__src(o, v);
  if (!strcmp(k, "handshakes"))
    return pb__u32(v, &o->handshakes);
  if (!strcmp(k, "ack-batch"))
    return pb__u32(v, &o->ack_batch) || !o->ack_batch ? -1 : 0;
  if (!strcmp(k, "ack-delay"))
    return pb__u32(v, &o->ack_delay_ms) || o->ack_delay_ms > 60000 ? -1 : 0;
  if (!strcmp(k, "mqtt"))
    return pb__str(o->mqtt, sizeof o->mqtt, v);
  if (!strcmp(k, "broker"))
    return !strcmp(v, "plain")    ? (o->broker_plain = 1, 0)
           : !strcmp(v, "parley") ? (o->broker_plain = 0, 0)
                                  : -1;
  if (!strcmp(k, "names"))
    return !strcmp(v, "mixed") ? (o->names_mixed = 1, 0) : !strcmp(v, "seq") ? (o->names_mixed = 0, 0) : -1;
  if (!strcmp(k, "timeout"))
    return pb__num(v, &d) || d <= 0 ? -1 : (o->timeout = d, 0);
  return -2;
}

static int pb__flag(pb_opts *o, const char *k) {
  if (!strcmp(k, "json"))
    return o->json = 1;
  if (!strcmp(k, "quiet"))
    return o->quiet = 1;
  if (!strcmp(k, "tls"))
    return o->tls = 1;
  if (!strcmp(k, "mqtt-persist"))
    return o->mqtt_persist = 1;
  return 0;
}

int pb_opts_parse(pb_opts *o, int argc, char **argv) {
  pb__defaults(o);
  o->argv0 = argv[0];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      pb_opts_usage(stdout);
      return 1;
    }
    if (strncmp(a, "--", 2) != 0) {
      if (o->scenario) {
        fprintf(stderr, "parley-bench: unexpected argument '%s'\n", a);
        return -1;
      }
      o->scenario = a;
      continue;
    }
    if (pb__flag(o, a + 2))
      continue;
    if (i + 1 >= argc) {
      fprintf(stderr, "parley-bench: %s needs a value (see --help)\n", a);
      return -1;
    }
    int rc = pb__apply(o, a + 2, argv[++i]);
    if (rc == -2 || rc == -1) {
      fprintf(stderr, "parley-bench: %s '%s' (see --help)\n", rc == -2 ? "unknown option" : "bad value for",
              rc == -2 ? a : argv[i]);
      return -1;
    }
  }
  if (!o->scenario) {
    pb_opts_usage(stderr);
    return -1;
  }
  return 0;
}
