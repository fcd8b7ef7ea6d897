#include "natsrv.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

const char *tl_nats_bin(void) {
  static const char *const paths[] = {"/usr/sbin/nats-server", "/usr/bin/nats-server",
                                      "/usr/local/bin/nats-server"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
    if (access(paths[i], X_OK) == 0)
      return paths[i];
  return NULL;
}

static void tl__nats_one(tl_nats *ns, int i) {
  char port[16], route[64], routes[256] = "", log[600];
  snprintf(port, sizeof port, "%d", ns->port[i]);
  snprintf(route, sizeof route, "nats://127.0.0.1:%d", ns->route[i]);
  for (int k = 0; k < ns->n; k++)
    if (k != i)
      snprintf(routes + strlen(routes), sizeof routes - strlen(routes), "%snats://127.0.0.1:%d",
               routes[0] ? "," : "", ns->route[k]);
  snprintf(log, sizeof log, "%s/nats%d.log", ns->dir, i);
  char *argv[16];
  int a = 0;
  argv[a++] = (char *)tl_nats_bin();
  argv[a++] = "-a";
  argv[a++] = "127.0.0.1";
  argv[a++] = "-p";
  argv[a++] = port;
  if (ns->n > 1) {
    argv[a++] = "--cluster_name";
    argv[a++] = "parley-test";
    argv[a++] = "--cluster";
    argv[a++] = route;
    argv[a++] = "--routes";
    argv[a++] = routes;
  }
  argv[a] = NULL;
  ns->pid[i] = tl_spawn(argv, log, NULL);
  snprintf(ns->url[i], sizeof ns->url[i], "nats://127.0.0.1:%d", ns->port[i]);
}

/* Waits (10 s) for every server to hold its ports in its own process (a
 * connect could reach another test's server that took the number first).
 * Returns the first one that did not, or -1. */
static int tl__nats_wait(const tl_nats *ns) {
  for (int i = 0; i < ns->n; i++) {
    int up = 0;
    for (uint64_t until = tl_now_ms() + 10000; !up && tl_now_ms() < until; usleep(20000))
      up =
          tl_pid_listens(ns->pid[i], ns->port[i]) && (ns->n == 1 || tl_pid_listens(ns->pid[i], ns->route[i]));
    if (!up)
      return i;
  }
  return -1;
}

/* A free port is free when asked, not when nats-server binds it: another
 * test running beside this one may take it between the two (CI saw "bind:
 * address already in use" for a route port under ctest -j2). So a set of
 * servers that does not come up is stopped and started again on new ports,
 * a few times, before the test fails. */
#define TL__NATS_TRIES 4

void tl_nats_start(tl_nats *ns, int n) {
  memset(ns, 0, sizeof *ns);
  if (!tl_nats_bin())
    tl__fail(__FILE__, __LINE__, "nats-server is not installed (scripts/deps.sh --test)");
  ns->n = n < 1 ? 1 : n > TL_NATS_MAX ? TL_NATS_MAX : n;
  ns->dir = tl_tempdir();
  int down = -1;
  for (int t = 0; t < TL__NATS_TRIES; t++) {
    for (int i = 0; i < ns->n; i++) {
      ns->port[i] = tl_free_port();
      ns->route[i] = tl_free_port();
    }
    for (int i = 0; i < ns->n; i++)
      tl__nats_one(ns, i);
    if ((down = tl__nats_wait(ns)) < 0)
      return;
    for (int i = 0; i < ns->n; i++)
      tl_nats_kill(ns, i);
  }
  tl__fail(__FILE__, __LINE__, "nats-server %d did not listen on %d and %d, %d times (see %s)", down,
           ns->port[down], ns->route[down], TL__NATS_TRIES, ns->dir);
}

void tl_nats_urls(const tl_nats *ns, int first, char *out, size_t cap) {
  out[0] = 0;
  for (int k = 0; k < ns->n; k++) {
    int i = (first + k) % ns->n;
    if (ns->pid[i] > 0)
      snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? "," : "", ns->url[i]);
  }
}

void tl_nats_kill(tl_nats *ns, int i) {
  tl_spawn_kill(ns->pid[i], SIGKILL);
  ns->pid[i] = 0;
}

void tl_nats_stop(tl_nats *ns) {
  for (int i = 0; i < ns->n; i++)
    if (ns->pid[i] > 0)
      tl_nats_kill(ns, i);
  if (ns->dir) {
    tl_rmrf(ns->dir);
    free(ns->dir);
    ns->dir = NULL;
  }
}

void tl_nats_node_start(tl_server *srv, const char *name, const char *url, const char *extra) {
  char args[1024];
  snprintf(args, sizeof args, "%s --bus %s --node %s", extra ? extra : "", url, name);
  tl_server_start(srv, args);
}

void tl_nats_nodes_up(tl_nats *ns, tl_server *a, tl_server *b, const char *extra) {
  tl_nats_start(ns, 3);
  tl_nats_node_start(a, "A", ns->url[0], extra);
  tl_nats_node_start(b, "B", ns->url[1], extra);
  tl_server *nodes[2] = {a, b};
  for (int i = 0; i < 2; i++) {
    tl_wait_metric(nodes[i], "parley_bus_connected", 1, 10000);
    tl_wait_metric(nodes[i], "parley_bus_nodes_alive", 1, 10000);
  }
}

void tl_nats_nodes_down(tl_nats *ns, tl_server *a, tl_server *b) {
  tl_server_stop(a);
  tl_server_stop(b);
  tl_nats_stop(ns);
}
