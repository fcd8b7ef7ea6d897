#include "pb_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/pl_mem.h"

#define PB__RESERVE_FDS 64

typedef struct pb__ctl {
  pb_io io; /* first */
  pb_ctx *c;
} pb__ctl;

typedef struct pb__child {
  pid_t pid;
  int ctl, res; /* parent's ends: commands out, status and result in */
} pb__child;

/* ---- the context scenarios use --------------------------------------------- */

int pb_ctx_fail(pb_ctx *c, const char *fmt, ...) {
  if (c->res->failed)
    return -1;
  c->res->failed = 1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->res->why, sizeof c->res->why, fmt, ap);
  va_end(ap);
  return -1;
}

typedef struct pb__wait {
  pb_ctx *c;
  pb_cond done;
  void *arg;
} pb__wait;

static int pb__wait_cond(void *arg) {
  pb__wait *w = arg;
  return w->c->quit || (w->done && w->done(w->arg));
}

int pb_ctx_run(pb_ctx *c, pb_cond done, void *arg, double seconds) {
  pb__wait w = {c, done, arg};
  uint64_t deadline = pb_now_us() + (uint64_t)(seconds * 1e6);
  if (pb_loop_run(c->loop, pb__wait_cond, &w, deadline) != 0)
    return -1;
  return c->quit && !(done && done(arg)) ? -1 : 0;
}

void pb_ctx_sleep(pb_ctx *c, double seconds) { pb_ctx_run(c, NULL, NULL, seconds); }

void pb_ctx_say(const pb_ctx *c, const char *fmt, ...) {
  if (c->o->quiet)
    return;
  char line[512];
  int n = c->nw > 1 ? snprintf(line, sizeof line, "parley-bench[%u]: ", c->w)
                    : snprintf(line, sizeof line, "parley-bench: ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", line); /* one write: workers' lines do not interleave */
}

/* ---- the worker process -------------------------------------------------------- */

uint32_t pb_worker_capacity(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
    return 20000 - PB__RESERVE_FDS;
  return rl.rlim_cur > 2 * PB__RESERVE_FDS ? (uint32_t)rl.rlim_cur - PB__RESERVE_FDS : PB__RESERVE_FDS;
}

static void pb__ctl_cb(pb_io *io, uint32_t ev) {
  (void)ev;
  pb__ctl *ctl = (pb__ctl *)io;
  char cmd[16];
  ssize_t n = read(io->fd, cmd, sizeof cmd);
  if (n <= 0 && !(n < 0 && errno == EINTR)) {
    ctl->c->quit = 1; /* the parent is gone */
    pb_io_del(ctl->c->loop, io);
    io->fd = -1;
    return;
  }
  for (ssize_t i = 0; i < n; i++) {
    ctl->c->go |= cmd[i] == 'G';
    ctl->c->quit |= cmd[i] == 'Q';
    ctl->c->barriers += cmd[i] == 'B';
  }
}

static int pb__write_all(int fd, const void *p, size_t n) {
  const char *b = p;
  while (n) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

static uint64_t pb__cpu_self_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
         (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int pb__flag_go(void *arg) { return ((pb_ctx *)arg)->go; }

typedef struct pb__barrier {
  pb_ctx *c;
  uint32_t passed;
} pb__barrier;

static int pb__barrier_passed(void *arg) {
  pb__barrier *b = arg;
  return b->c->barriers > b->passed;
}

int pb_ctx_barrier(pb_ctx *c, double seconds) {
  pb__barrier b = {c, c->barriers};
  if (pb__write_all(c->res_fd, "D", 1) != 0)
    return -1;
  return pb_ctx_run(c, pb__barrier_passed, &b, seconds);
}

/* setup -> R/F -> GO -> run -> result -> QUIT -> teardown. */
static void pb__phases(pb_ctx *c, int res_fd) {
  const pb_scenario *sc = c->state;
  c->state = NULL;
  int ok = sc->setup(c) == 0 && !c->res->failed;
  if (pb__write_all(res_fd, ok ? "R" : "F", 1) != 0)
    return;
  pb_loop_run(c->loop, pb__flag_go, c, 0);
  if (ok && !c->quit) {
    uint64_t cpu0 = pb__cpu_self_us();
    sc->run(c);
    c->res->bench_cpu_us = pb__cpu_self_us() - cpu0;
  }
  c->res->conns = c->net.ready;
  c->res->conn_failed = c->net.failed;
  c->res->retries = c->net.retries;
  c->res->relogins = c->net.relogins;
  c->res->registered = c->net.registered;
  if (pb__write_all(res_fd, "X", 1) != 0 || pb__write_all(res_fd, c->res, sizeof *c->res) != 0)
    return;
  pb_ctx_run(c, NULL, NULL, 1e9); /* hold the connections until QUIT */
  sc->teardown(c);
}

static void pb__net_options(pb_net *n, const pb_opts *o) {
  n->src_base = o->src_base;
  n->per_addr = o->per_addr;
  n->ack_batch = o->ack_batch;
  n->ack_delay_us = o->ack_delay_ms * 1000u;
  n->max_handshakes = o->handshakes;
  if (o->tls)
    pb_net_tls(n);
}

static void pb__worker_main(const pb_plan *p, uint32_t w, int ctl_fd, int res_fd) {
  pb_users *u = pb_users_open(p->tokens, p->nusers);
  pb_loop *l = pb_loop_new();
  if (!u || !l) {
    fprintf(stderr, "parley-bench: worker %u: cannot open %s or epoll\n", w, p->tokens);
    _exit(1);
  }
  pb_ctx c = {.o = p->o,
              .w = w,
              .nw = p->nworkers,
              .loop = l,
              .run_id = p->run_id,
              .server_pid = p->server_pid,
              .res_fd = res_fd};
  c.res = pl_calloc(1, sizeof *c.res);
  pb_net_init(&c.net, l, &p->server, u);
  pb__net_options(&c.net, p->o);
  pb__ctl ctl = {.io = {.fd = ctl_fd, .cb = pb__ctl_cb}, .c = &c};
  pb_io_add(l, &ctl.io, EPOLLIN);
  c.state = (void *)p->sc;
  pb__phases(&c, res_fd);
  pb_net_free(&c.net);
  pb_loop_free(l);
  pb_users_close(u);
  _exit(0);
}

/* ---- the parent ------------------------------------------------------------------ */

static int pb__fork(const pb_plan *p, pb__child *ch, uint32_t w) {
  int cp[2], rp[2];
  if (pipe2(cp, O_CLOEXEC) != 0 || pipe2(rp, O_CLOEXEC) != 0)
    return -1;
  fflush(NULL);
  ch[w].pid = fork();
  if (ch[w].pid < 0)
    return -1;
  if (ch[w].pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (uint32_t i = 0; i < w; i++) { /* so each worker sees its parent's end close */
      close(ch[i].ctl);
      close(ch[i].res);
    }
    close(cp[1]);
    close(rp[0]);
    pb__worker_main(p, w, cp[0], rp[1]);
  }
  close(cp[0]);
  close(rp[1]);
  ch[w].ctl = cp[1];
  ch[w].res = rp[0];
  return 0;
}

/* Reads exactly n bytes, waiting at most timeout_ms in total. */
static int pb__read_all(int fd, void *buf, size_t n, int timeout_ms) {
  char *b = buf;
  uint64_t deadline = pb_now_us() + (uint64_t)timeout_ms * 1000u;
  while (n) {
    uint64_t now = pb_now_us();
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (now >= deadline || poll(&pfd, 1, (int)((deadline - now) / 1000u) + 1) <= 0)
      return -1;
    ssize_t r = read(fd, b, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    b += r;
    n -= (size_t)r;
  }
  return 0;
}

static void pb__tell_all(pb__child *ch, uint32_t n, char cmd) {
  for (uint32_t i = 0; i < n; i++)
    if (ch[i].ctl >= 0 && write(ch[i].ctl, &cmd, 1) != 1)
      fprintf(stderr, "parley-bench: worker %u is gone\n", i);
}

static void pb__reap(pb__child *ch, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    if (ch[i].ctl >= 0)
      close(ch[i].ctl);
    if (ch[i].res >= 0)
      close(ch[i].res);
  }
  for (uint32_t i = 0; i < n; i++) {
    if (ch[i].pid <= 0)
      continue;
    int st = 0;
    for (int t = 0; t < 3000 && waitpid(ch[i].pid, &st, WNOHANG) == 0; t++)
      usleep(10000);
    if (kill(ch[i].pid, 0) == 0) {
      kill(ch[i].pid, SIGKILL);
      waitpid(ch[i].pid, &st, 0);
    }
  }
}

/* Waits for every worker's status byte; -1 if any failed or timed out. */
static int pb__await_ready(pb__child *ch, uint32_t n, int timeout_ms, pb_result *res) {
  int rc = 0;
  for (uint32_t i = 0; i < n; i++) {
    char st = 0;
    if (pb__read_all(ch[i].res, &st, 1, timeout_ms) != 0) {
      snprintf(res->why, sizeof res->why, "worker %u died or hung in set-up", i);
      return -1;
    }
    if (st != 'R')
      rc = -1;
  }
  return rc;
}

/* Reads one worker's message: 'D' (at a barrier) or 'X' + its result. */
static int pb__collect_one(pb__child *ch, int timeout_ms, pb_result *res, pb_result *one, uint32_t *barrier,
                           uint32_t *results) {
  char type;
  if (pb__read_all(ch->res, &type, 1, timeout_ms) != 0)
    return -1;
  if (type == 'D') {
    (*barrier)++;
    return 0;
  }
  if (type != 'X' || pb__read_all(ch->res, one, sizeof *one, timeout_ms) != 0)
    return -1;
  pb_result_merge(res, one);
  close(ch->res);
  ch->res = -1;
  (*results)++;
  return 0;
}

/* Collects every worker's result; in the meantime, lets workers through a
 * barrier once all that have not finished are waiting at it. */
static int pb__collect(pb__child *ch, uint32_t n, int timeout_ms, pb_result *res) {
  pb_result *one = pl_malloc(sizeof *one);
  struct pollfd *pfd = pl_calloc(n, sizeof *pfd);
  uint32_t barrier = 0, results = 0;
  int rc = 0;
  while (rc == 0 && results < n) {
    for (uint32_t i = 0; i < n; i++)
      pfd[i] = (struct pollfd){.fd = ch[i].res, .events = POLLIN};
    int pr = poll(pfd, n, timeout_ms);
    if (pr <= 0) {
      snprintf(res->why, sizeof res->why, "%s", pr < 0 && errno == EINTR ? "interrupted" : "timed out");
      rc = -1;
      break;
    }
    for (uint32_t i = 0; i < n && rc == 0; i++)
      if (pfd[i].fd >= 0 && pfd[i].revents)
        rc = pb__collect_one(&ch[i], timeout_ms, res, one, &barrier, &results);
    if (rc == 0 && barrier && barrier + results >= n) {
      pb__tell_all(ch, n, 'B');
      barrier = 0;
    }
  }
  if (rc != 0 && !res->why[0])
    snprintf(res->why, sizeof res->why, "a worker died or hung");
  pl_free(pfd);
  pl_free(one);
  return rc;
}

int pb_workers_run(const pb_plan *p, pb_result *res, pb_sample s[3]) {
  pb__child *ch = pl_calloc(p->nworkers, sizeof *ch);
  int timeout_ms = (int)(p->o->timeout * 3 * 1000) + 60000, rc = -1;
  pb_result_init(res);
  s[0] = pb_server_sample(p->server_pid);
  for (uint32_t w = 0; w < p->nworkers; w++) {
    ch[w].ctl = ch[w].res = -1;
    if (pb__fork(p, ch, w) != 0) {
      snprintf(res->why, sizeof res->why, "fork: %s", strerror(errno));
      goto out;
    }
  }
  int ready = pb__await_ready(ch, p->nworkers, timeout_ms, res);
  s[1] = pb_server_sample(p->server_pid);
  pb__tell_all(ch, p->nworkers, 'G'); /* failed workers report why in their result */
  if (pb__collect(ch, p->nworkers, timeout_ms, res) != 0)
    goto out;
  s[2] = pb_server_sample(p->server_pid);
  rc = ready == 0 && !res->failed ? 0 : -1;
out:
  pb__tell_all(ch, p->nworkers, 'Q');
  pb__reap(ch, p->nworkers);
  pl_free(ch);
  if (rc != 0)
    res->failed = 1;
  return rc;
}
