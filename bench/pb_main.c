/* parley-bench: a load generator for parleyd (see bench/README.md).
 *
 * main() only wires the steps: options, the server (ours or a running one),
 * the users (created once, tokens cached), the workers, the report. */
#include "common/pl_fs.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pb_opts.h"
#include "pb_prepare.h"
#include "pb_report.h"
#include "pb_scen.h"
#include "pb_server.h"
#include "pb_users.h"
#include "pb_worker.h"

#define PB__REGISTER_PARALLEL 16
/* While the bench creates its users, our parleyd hashes their passwords at
 * the cheapest Argon2id cost: nothing measured ever checks them (every run
 * resumes with tokens), and 19,000 users take seconds instead of ~20 minutes
 * of both cores. It is restarted with the caller's arguments before
 * anything is measured. */
#define PB__CHEAP_HASH "--argon2-ops 1 --argon2-mem 8"

/* Our parleyd, for the signal handler: on ^C or a TERM the server goes
 * first, so every wait of the bench ends (connections close, poll is
 * interrupted) and main cleans up the rest (workers, temp dir) as usual. */
static volatile pid_t pb__server_pid;

static void pb__on_signal(int sig) {
  (void)sig;
  if (pb__server_pid > 0)
    kill(pb__server_pid, SIGTERM);
}

static void pb__signals(void) {
  struct sigaction sa = {.sa_handler = pb__on_signal}; /* no SA_RESTART: waits return EINTR */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

static void pb__raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

typedef struct pb__paths {
  char tokens[700]; /* token cache */
  char tmpl[600];   /* template data dir (kept state only) */
} pb__paths;

/* With --state DIR our parleyd runs on DIR/data, a fresh copy of
 * DIR/template; the token cache DIR/bench-tokens belongs to the template. */
static int pb__state_dirs(const pb_opts *o, pb__paths *p, char *data, size_t n) {
  snprintf(p->tmpl, sizeof p->tmpl, "%s/template", o->state);
  snprintf(p->tokens, sizeof p->tokens, "%s/bench-tokens", o->state);
  snprintf(data, n, "%s/data", o->state);
  int had = pl_mkdirs(o->state) == 0 ? pb_server_fresh_data(p->tmpl, data) : -1;
  if (had < 0) {
    fprintf(stderr, "parley-bench: cannot prepare %s: %s\n", data, strerror(errno));
    return -1;
  }
  if (!had)
    unlink(p->tokens); /* tokens of a database we no longer have */
  return 0;
}

/* Our own parleyd (kept state or a temp dir), or the one at --server. */
static int pb__server(const pb_opts *o, pb_server *srv, pb__paths *p) {
  char data[600] = "";
  memset(srv, 0, sizeof *srv);
  memset(p, 0, sizeof *p);
  if (o->server[0]) {
    if (pb_server_parse(o->server, &srv->addr) != 0) {
      fprintf(stderr, "parley-bench: bad --server '%s' (want IPv4:PORT)\n", o->server);
      return -1;
    }
    srv->pid = (pid_t)o->server_pid;
    return 0;
  }
  if (pb_server_find_bin(srv->bin, sizeof srv->bin) != 0) {
    fprintf(stderr, "parley-bench: no parleyd next to parley-bench and $PARLEYD unset (or use --server)\n");
    return -1;
  }
  if (o->state[0] && pb__state_dirs(o, p, data, sizeof data) != 0)
    return -1;
  char args[sizeof o->parleyd_args + 64];
  snprintf(args, sizeof args, "%s %s", PB__CHEAP_HASH, o->parleyd_args);
  srv->tls = o->tls;
  if (pb_server_start(srv, data, args) != 0)
    return -1;
  if (!o->state[0])
    snprintf(p->tokens, sizeof p->tokens, "%s/bench-tokens", srv->dir);
  return 0;
}

/* A running server's token cache: in --state or ~/.cache/parley-bench. */
static int pb__tokens_path(const pb_opts *o, const pb_server *srv, char *out, size_t n) {
  char dir[600];
  const char *home = getenv("HOME");
  if (o->state[0])
    snprintf(dir, sizeof dir, "%s", o->state);
  else
    snprintf(dir, sizeof dir, "%s/.cache/parley-bench", home && *home ? home : "/tmp");
  if (pl_mkdirs(dir) != 0)
    return -1;
  char ip[32];
  uint32_t a = ntohl(srv->addr.sin_addr.s_addr);
  snprintf(ip, sizeof ip, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
  snprintf(out, n, "%s/tokens-%s-%u", dir, ip, ntohs(srv->addr.sin_port));
  return 0;
}

/* Creates missing users; restarts our server afterwards with the caller's
 * arguments, so that nothing of the creation is in the figures. */
static int pb__users(const pb_opts *o, pb_server *srv, const pb__paths *p, uint32_t n) {
  pb_users *u = pb_users_open(p->tokens, n);
  if (!u) {
    fprintf(stderr, "parley-bench: cannot open the token cache %s: %s\n", p->tokens, strerror(errno));
    return -1;
  }
  uint32_t created = 0;
  int rc = pb_prepare_users(o, &srv->addr, u, n, PB__REGISTER_PARALLEL, &created);
  pb_users_close(u);
  if (rc == 0 && srv->own) {
    snprintf(srv->args, sizeof srv->args, "%s", o->parleyd_args);
    rc = pb_server_restart(srv, created && p->tmpl[0] ? p->tmpl : NULL);
    pb__server_pid = srv->pid;
  }
  return rc;
}

static uint32_t pb__workers(const pb_scenario *sc, const pb_opts *o) {
  uint32_t cap = pb_worker_capacity(), need = (sc->conns(o) + cap - 1) / cap + (sc->solo_worker0 ? 1 : 0);
  uint32_t n = o->workers > need ? o->workers : need;
  if (n < 1 + (uint32_t)sc->solo_worker0)
    n = 1 + (uint32_t)sc->solo_worker0;
  if (sc->max_workers && n > sc->max_workers)
    n = sc->max_workers;
  return n;
}

static uint64_t pb__run_id(void) {
  uint64_t id = 0;
  if (getrandom(&id, sizeof id, 0) != sizeof id)
    id = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
  return id ? id : 1;
}

static int pb__run(const pb_scenario *sc, const pb_opts *o, pb_server *srv, const char *tokens) {
  pb_plan plan = {.sc = sc,
                  .o = o,
                  .server = srv->addr,
                  .tokens = tokens,
                  .nusers = sc->users(o),
                  .run_id = pb__run_id(),
                  .server_pid = srv->pid,
                  .nworkers = pb__workers(sc, o)};
  if ((plan.nworkers - (uint32_t)sc->solo_worker0) * pb_worker_capacity() < sc->conns(o)) {
    fprintf(stderr, "parley-bench: %s cannot open %u connections (at most %u)\n", sc->name, sc->conns(o),
            plan.nworkers * pb_worker_capacity());
    return 1;
  }
  pb_result *res = calloc(1, sizeof *res);
  pb_sample s[3];
  int rc = pb_workers_run(&plan, res, s);
  pb_report rep;
  pb_report_init(&rep, sc->name);
  sc->report(o, res, s, &rep);
  pb_report_common(&rep, o, res, s);
  pb_report_int(&rep, "workers", "worker processes", plan.nworkers);
  if (rc != 0)
    pb_report_note(&rep, "run FAILED: %s", res->why[0] ? res->why : "see above");
  if (!srv->pid)
    pb_report_note(&rep, "no server pid: no server CPU / RSS figures (use --server-pid)");
  pb_report_print(&rep, stdout, o->json);
  /* MQTT has no qids and the bench no reconnects there: any repeat is a bug */
  int bad = res->lost || res->dup_shown || res->qid_regress || res->misrouted ||
            (sc == &pb_scen_mqtt && (res->duplicated || res->stale));
  free(res);
  return rc != 0 ? 1 : bad ? 2 : 0;
}

/* mqtt-pairs: our parleyd gets an MQTT listener on a free port; a plain
 * broker (--broker plain) is neither started nor given users. Returns 1 if
 * the run needs no parleyd, 0 if it does, -1 on a usage error. */
static int pb__mqtt_opts(pb_opts *o) {
  if (!o->mqtt[0] && (o->broker_plain || o->server[0])) {
    fprintf(stderr, "parley-bench: mqtt-pairs needs --mqtt HOST:PORT with --broker plain or --server\n");
    return -1;
  }
  if (o->broker_plain)
    return 1;
  if (!o->mqtt[0] && !o->server[0]) {
    int port = pb_server_free_port();
    size_t n = strlen(o->parleyd_args);
    snprintf(o->mqtt, sizeof o->mqtt, "127.0.0.1:%d", port);
    snprintf(o->parleyd_args + n, sizeof o->parleyd_args - n, " --mqtt %s", o->mqtt);
  }
  return 0;
}

/* A plain MQTT broker: no parleyd, no users; CPU from --server-pid. */
static int pb__run_plain(const pb_scenario *sc, const pb_opts *o) {
  pb_server srv;
  memset(&srv, 0, sizeof srv);
  if (pb_server_parse(o->mqtt, &srv.addr) != 0) {
    fprintf(stderr, "parley-bench: bad --mqtt '%s' (want IPv4:PORT)\n", o->mqtt);
    return 64;
  }
  srv.pid = (pid_t)o->server_pid;
  return pb__run(sc, o, &srv, "/dev/null");
}

int main(int argc, char **argv) {
  pb_opts o;
  int rc = pb_opts_parse(&o, argc, argv);
  if (rc != 0)
    return rc > 0 ? 0 : 64;
  pb_users_mixed(o.names_mixed);
  const pb_scenario *sc = pb_scen_find(o.scenario);
  if (!sc) {
    fprintf(stderr, "parley-bench: unknown scenario '%s' (idle, pairs, drain, storm, group, mqtt-pairs)\n",
            o.scenario);
    return 64;
  }
  pb__signals();
  pb__raise_nofile();
  sc->defaults(&o);
  if (sc == &pb_scen_mqtt) {
    int plain = pb__mqtt_opts(&o);
    if (plain != 0)
      return plain < 0 ? 64 : pb__run_plain(sc, &o);
  }
  pb_server srv;
  pb__paths paths;
  if (pb__server(&o, &srv, &paths) != 0)
    return 1;
  pb__server_pid = srv.own ? srv.pid : 0;
  rc = 1;
  if (!srv.own && pb__tokens_path(&o, &srv, paths.tokens, sizeof paths.tokens) != 0)
    fprintf(stderr, "parley-bench: cannot create a directory for the token cache\n");
  else if (pb__users(&o, &srv, &paths, sc->users(&o)) == 0)
    rc = pb__run(sc, &o, &srv, paths.tokens);
  pb__server_pid = 0;
  pb_server_stop(&srv);
  return rc;
}
