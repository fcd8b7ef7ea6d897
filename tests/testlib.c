#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "testlib.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "parley.pb-c.h"
#include "proto/pl_frame.h"

jmp_buf tl__jmp;
int tl__passed, tl__failed;
static const char *tl__current;

/* --- every parleyd this process started and has not reaped -------------- *
 * A failed CHECK longjmps out of the test, past the code that would stop
 * its servers, and the server struct may have been on the test's stack. So
 * the harness keeps its own list: a failed test's servers are killed when it
 * ends, the rest at exit or on a fatal signal, and each child also asks the
 * kernel to kill it if this process dies first (PR_SET_PDEATHSIG: SIGKILL,
 * a crash, a ctest timeout). A failing check never leaves a parleyd running. */
#define TL__MAX_SERVERS 64
static struct {
  pid_t pid;
  int test; /* the test it was started in (tl__tests when started; 0: outside any) */
  char dir[512];
} tl__servers[TL__MAX_SERVERS];
static int tl__tests; /* tests begun so far; the current one while tl__current is set */

static void tl__server_add(pid_t pid, const char *dir) {
  for (int i = 0; i < TL__MAX_SERVERS; i++)
    if (tl__servers[i].pid == 0) {
      tl__servers[i].pid = pid;
      tl__servers[i].test = tl__current ? tl__tests : 0;
      snprintf(tl__servers[i].dir, sizeof tl__servers[i].dir, "%s", dir);
      return;
    }
}

/* 1 if pid is a server of ours not yet reaped (then forgotten if forget). */
static int tl__server_known(pid_t pid, int forget) {
  for (int i = 0; pid > 0 && i < TL__MAX_SERVERS; i++)
    if (tl__servers[i].pid == pid) {
      if (forget)
        tl__servers[i].pid = 0;
      return 1;
    }
  return 0;
}

/* Kills (SIGKILL) and reaps the servers started in test (-1: all). Async-
 * signal-safe but for the data dir's removal, done only when rm is set. */
static void tl__servers_kill(int test, int rm) {
  for (int i = 0; i < TL__MAX_SERVERS; i++) {
    if (tl__servers[i].pid <= 0 || (test >= 0 && tl__servers[i].test != test))
      continue;
    kill(tl__servers[i].pid, SIGKILL);
    waitpid(tl__servers[i].pid, NULL, 0);
    tl__servers[i].pid = 0;
    if (rm && tl__servers[i].dir[0]) /* the log (DIR.log) stays for tl_server_abandon to show */
      tl_rmrf(tl__servers[i].dir);
  }
}

static void tl__at_exit(void) { tl__servers_kill(-1, 1); }

static void tl__on_signal(int sig) {
  tl__servers_kill(-1, 0);
  signal(sig, SIG_DFL);
  raise(sig);
}

static void tl__guard(void) {
  static int done;
  if (done)
    return;
  done = 1;
  atexit(tl__at_exit);
  int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGABRT, SIGSEGV, SIGBUS};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    signal(sigs[i], tl__on_signal);
}

void tl__fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "FAIL %s at %s:%d: ", tl__current ? tl__current : "?", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  longjmp(tl__jmp, 1);
}

static int tl__skipped;

/* Is name in PARLEY_TEST_SKIP (names separated by commas)? The pg copies
 * of the integration tests list there what the PostgreSQL backend does not
 * do yet (tests/CMakeLists.txt, docs/architecture.md 17). */
static int tl__skip(const char *name) {
  const char *list = getenv("PARLEY_TEST_SKIP");
  size_t n = strlen(name);
  for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
    if (!strncmp(p, name, n) && (p[n] == ',' || !p[n]))
      return 1;
  return 0;
}

void tl__run(const char *name, void (*fn)(void)) {
  tl__guard();
  if (tl__skip(name)) {
    tl__skipped++;
    fprintf(stderr, "SKIP %s (PARLEY_TEST_SKIP)\n", name);
    return;
  }
  tl__current = name;
  tl__tests++;
  fprintf(stderr, "RUN  %s\n", name);
  if (setjmp(tl__jmp) == 0) {
    fn();
    tl__passed++;
    fprintf(stderr, "PASS %s\n", name);
  } else {
    tl__failed++;
    tl__servers_kill(tl__tests, 1); /* what the failed test started and could not stop */
  }
  tl__current = NULL;
}

int tl_summary(void) {
  if (tl__skipped)
    printf("%d passed, %d failed, %d skipped\n", tl__passed, tl__failed, tl__skipped);
  else
    printf("%d passed, %d failed\n", tl__passed, tl__failed);
  return tl__failed ? 1 : 0;
}

char *tl_tempdir(void) {
  const char *t = getenv("TMPDIR");
  char tmpl[512];
  snprintf(tmpl, sizeof tmpl, "%s/parley-test-XXXXXX", t && *t ? t : "/tmp");
  if (!mkdtemp(tmpl))
    tl__fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
  return strdup(tmpl);
}

void tl_rmrf(const char *dir) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "warning: could not remove %s\n", dir);
}

/* A free port below the kernel's ephemeral range (32768 and up): a server
 * that restarts on its port must not find it taken by some client socket's
 * automatic port meanwhile (the browser and parallel tests make many). */
static int tl__free_port(void) {
  static unsigned seed;
  if (!seed)
    seed = (unsigned)getpid() ^ (unsigned)time(NULL);
  for (int tries = 0; tries < 1000; tries++) {
    int port = 20000 + (int)(rand_r(&seed) % 12000);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
      close(fd);
    if (ok)
      return port;
  }
  tl__fail(__FILE__, __LINE__, "free port: none found in 20000-31999");
  return -1;
}

int tl_free_port(void) { return tl__free_port(); }

pid_t tl_spawn(char *const argv[], const char *log, const char *dir) {
  tl__guard();
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
      _exit(127);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    close_range(3, ~0u, 0);
    execv(argv[0], argv);
    _exit(127);
  }
  if (pid < 0)
    tl__fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
  tl__server_add(pid, dir ? dir : "");
  return pid;
}

void tl_spawn_kill(pid_t pid, int sig) {
  if (pid <= 0 || !tl__server_known(pid, 0))
    return;
  kill(pid, sig);
  if (sig == SIGKILL || sig == SIGTERM) {
    waitpid(pid, NULL, 0);
    tl__server_known(pid, 1);
  }
}

void tl__sigstop(const char *file, int line, pid_t pid, int timeout_ms) {
  if (kill(pid, SIGSTOP) != 0)
    tl__fail(file, line, "SIGSTOP %d: %s", (int)pid, strerror(errno));
  char pat[64];
  snprintf(pat, sizeof pat, "/proc/%d/task/*/stat", (int)pid);
  for (uint64_t until = tl_now_ms() + (uint64_t)timeout_ms;; usleep(1000)) {
    glob_t g;
    int running = glob(pat, 0, NULL, &g) != 0;
    for (size_t i = 0; !running && i < g.gl_pathc; i++) {
      char buf[512] = "";
      FILE *f = fopen(g.gl_pathv[i], "r");
      size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
      if (f)
        fclose(f);
      buf[n] = 0;
      const char *st = strrchr(buf, ')'); /* "tid (comm) S ...": comm may hold spaces */
      running = st && st[1] == ' ' && st[2] != 'T' && st[2] != 't';
    }
    globfree(&g);
    if (!running)
      return;
    if (tl_now_ms() > until)
      tl__fail(file, line, "process %d did not stop within %d ms of SIGSTOP", (int)pid, timeout_ms);
  }
}

int tl_pid_listens(pid_t pid, int port) {
  unsigned long inodes[64];
  int n = 0;
  static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
  for (size_t t = 0; t < 2; t++) {
    FILE *f = fopen(tables[t], "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
      unsigned lport, st;
      unsigned long inode;
      /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
      if (sscanf(line, " %*u: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x %*x:%*x %*x:%*x %*x %*u %*u %lu", &lport,
                 &st, &inode) == 3 &&
          st == 0x0A /* LISTEN */ && (int)lport == port && n < 64)
        inodes[n++] = inode;
    }
    if (f)
      fclose(f);
  }
  char path[64], link[64], want[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
  DIR *d = n ? opendir(path) : NULL;
  int found = 0;
  for (struct dirent *e; d && !found && (e = readdir(d));) {
    char fdp[340];
    snprintf(fdp, sizeof fdp, "%s/%s", path, e->d_name);
    ssize_t len = readlink(fdp, link, sizeof link - 1);
    if (len <= 0)
      continue;
    link[len] = 0;
    for (int i = 0; i < n && !found; i++) {
      snprintf(want, sizeof want, "socket:[%lu]", inodes[i]);
      found = !strcmp(link, want);
    }
  }
  if (d)
    closedir(d);
  return found;
}

/* Starts parleyd on s's ports; 0 once it holds both listening sockets, 1
 * if it exited first (its log says why: a port another test's server took
 * meanwhile, say). A connect alone would not do: it succeeds as well when
 * another test's server holds the port, and the test would talk to that. */
static int tl__spawn_once(tl_server *s) {
  const char *bin = getenv("PARLEYD");
  if (!bin)
    tl__fail(__FILE__, __LINE__, "PARLEYD is not set");
  char *argv[64];
  int argc = 0;
  static char listen[64], http[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
  snprintf(http, sizeof http, "127.0.0.1:%d", s->http_port);
  argv[argc++] = (char *)bin;
  argv[argc++] = "--data";
  argv[argc++] = s->dir;
  argv[argc++] = "--listen";
  argv[argc++] = listen;
  argv[argc++] = "--http";
  argv[argc++] = http;
  char extra[sizeof s->extra];
  memcpy(extra, s->extra, sizeof extra);
  for (char *save = NULL, *t = strtok_r(extra, " ", &save); t && argc < 62; t = strtok_r(NULL, " ", &save))
    argv[argc++] = t;
  argv[argc] = NULL;
  tl__guard();
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    /* dies with the test, however the test dies (also SIGKILL) */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
      _exit(127);
    if (!getenv("PARLEY_TEST_VERBOSE")) {
      char logp[600];
      snprintf(logp, sizeof logp, "%s.log", s->dir);
      int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0)
        dup2(fd, 2);
    }
    /* Nothing of the test's but stdio: a socket a failed test left open
     * would count against the server's open-file limit (test_limits' flood
     * runs it under 300) and keep the test's connections alive. */
    close_range(3, ~0u, 0);
    execv(bin, argv);
    _exit(127);
  }
  s->pid = pid;
  tl__server_add(pid, s->dir);
  /* Until it holds both its listeners (30 s: a loaded machine starts it
   * slowly, the PostgreSQL wrapper first creates its database). */
  for (int i = 0; i < 1500; i++) {
    if (tl_pid_listens(pid, s->port) && tl_pid_listens(pid, s->http_port))
      return 0;
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      tl__server_known(pid, 1);
      s->pid = 0;
      return 1;
    }
    usleep(20000);
  }
  tl__fail(__FILE__, __LINE__, "parleyd did not start listening on %d and %d (see %s.log)", s->port,
           s->http_port, s->dir);
  return 1;
}

static void tl__pick_ports(tl_server *s) {
  s->port = tl__free_port();
  do
    s->http_port = tl__free_port();
  while (s->http_port == s->port);
  snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", s->port);
}

void tl_server_start(tl_server *s, const char *extra_args) {
  memset(s, 0, sizeof *s);
  s->dir = tl_tempdir();
  if (extra_args)
    snprintf(s->extra, sizeof s->extra, "%s", extra_args);
  /* New port numbers when it could not have them (another test's server
   * took one between tl_free_port and the bind). */
  for (int tries = 0; tries < 5; tries++) {
    tl__pick_ports(s);
    if (tl__spawn_once(s) == 0)
      return;
  }
  tl__fail(__FILE__, __LINE__, "parleyd exited during start-up, 5 times (see %s.log)", s->dir);
}

/* The same ports: the test knows them. */
void tl_server_restart(tl_server *s) {
  if (tl__spawn_once(s) != 0)
    tl__fail(__FILE__, __LINE__, "parleyd exited during start-up on %d and %d (see %s.log)", s->port,
             s->http_port, s->dir);
}

int tl_server_kill(tl_server *s, int sig) {
  int st = 0;
  /* not ours any more: a failed test's cleanup reaped it (the pid may be reused) */
  if (s->pid > 0 && tl__server_known(s->pid, 1)) {
    kill(s->pid, sig);
    waitpid(s->pid, &st, 0);
  }
  s->pid = 0;
  return st;
}

void tl_server_stop(tl_server *s) {
  if (s->pid > 0)
    tl_server_kill(s, SIGTERM);
  if (s->dir) {
    tl_rmrf(s->dir);
    char logp[600];
    snprintf(logp, sizeof logp, "%s.log", s->dir);
    if (!getenv("PARLEY_TEST_KEEP_LOGS"))
      unlink(logp);
    free(s->dir);
    s->dir = NULL;
  }
}

int tl_log_count(const tl_server *s, const char *needle) {
  char logp[600], line[1024];
  snprintf(logp, sizeof logp, "%s.log", s->dir);
  FILE *f = fopen(logp, "r");
  if (!f)
    return -1;
  int n = 0;
  while (fgets(line, sizeof line, f))
    n += strstr(line, needle) != NULL;
  fclose(f);
  return n;
}

int tl_connect_from(const char *src, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in from = {.sin_family = AF_INET};
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if ((src && (inet_pton(AF_INET, src, &from.sin_addr) != 1 ||
               bind(fd, (struct sockaddr *)&from, sizeof from) != 0)) ||
      connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int tl_connect(int port) { return tl_connect_from(NULL, port); }

size_t tl_read_all(int fd, char *buf, size_t cap, int timeout_ms) {
  size_t n = 0;
  for (uint64_t until = tl_now_ms() + (uint64_t)timeout_ms; n + 1 < cap && tl_now_ms() < until;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 100) != 1)
      continue;
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  return n;
}

int tl_write_all(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

int tl_send_frame(int fd, uint8_t type, const void *msg) {
  pl_buf *b = pl_frame_encode(type, (const ProtobufCMessage *)msg);
  int rc = tl_write_all(fd, b->data, b->len);
  pl_buf_unref(b);
  return rc;
}

static int tl__read_n(int fd, uint8_t *p, size_t n, int timeout_ms) {
  while (n) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r = poll(&pfd, 1, timeout_ms);
    if (r <= 0)
      return 0;
    ssize_t got = recv(fd, p, n, 0);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      return 0;
    p += got;
    n -= (size_t)got;
  }
  return 1;
}

static int tl__recv_one(int fd, int timeout_ms, void **out);

int tl_skip_events = 1;

int tl_recv_frame(int fd, int timeout_ms, void **out) {
  for (;;) {
    int t = tl__recv_one(fd, timeout_ms, out);
    if (!tl_skip_events ||
        (t != PARLEY__FRAME_TYPE__FRAME_RECEIPT && t != PARLEY__FRAME_TYPE__FRAME_READ_SYNC))
      return t;
    protobuf_c_message_free_unpacked(*out, NULL);
  }
}

static int tl__recv_one(int fd, int timeout_ms, void **out) {
  uint8_t hdr[PL_FRAME_HDR];
  *out = NULL;
  if (!tl__read_n(fd, hdr, sizeof hdr, timeout_ms))
    return 0;
  uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
  if (n == 0 || n > (64u << 20))
    return -1;
  uint8_t *payload = malloc(n);
  if (n > 1 && !tl__read_n(fd, payload, n - 1, timeout_ms)) {
    free(payload);
    return 0;
  }
  pl_frame f = {.type = hdr[4], .payload = payload, .payload_len = n - 1};
  *out = pl_frame_unpack(&f);
  free(payload);
  return *out ? hdr[4] : -1;
}

int tl_read_n(int fd, void *p, size_t n, int timeout_ms) { return tl__read_n(fd, p, n, timeout_ms); }

int tl_wait_closed(int fd, int timeout_ms) {
  uint8_t buf[4096];
  for (;;) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r = poll(&pfd, 1, timeout_ms);
    if (r <= 0)
      return 0;
    ssize_t got = recv(fd, buf, sizeof buf, 0);
    if (got <= 0)
      return 1;
  }
}

/* --- additions for the integration tests -------------------------------- */

uint64_t tl_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int tl_failures(void) { return tl__failed; }

int tl_server_kill_wait(tl_server *s, int sig, int timeout_ms, int *status) {
  if (s->pid <= 0 || !tl__server_known(s->pid, 0)) {
    s->pid = 0;
    return 0;
  }
  kill(s->pid, sig);
  for (int waited = 0;; waited += 10) {
    int st;
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
      tl__server_known(s->pid, 1);
      s->pid = 0;
      *status = st;
      return 1;
    }
    if (waited >= timeout_ms)
      break;
    usleep(10000);
  }
  tl_server_kill(s, SIGKILL);
  return 0;
}

void tl_server_abandon(tl_server *s) {
  if (!s->dir)
    return;
  char logp[600];
  snprintf(logp, sizeof logp, "%s.log", s->dir);
  fprintf(stderr, "  parleyd (pid %d, port %d) log kept: %s; its last lines:\n", (int)s->pid, s->port, logp);
  FILE *f = fopen(logp, "r");
  if (f) {
    static char lines[30][512];
    int n = 0;
    while (fgets(lines[n % 30], sizeof lines[0], f))
      n++;
    fclose(f);
    for (int i = n > 30 ? n - 30 : 0; i < n; i++)
      fprintf(stderr, "  | %s", lines[i % 30]);
  }
  tl_server_kill(s, SIGKILL);
  tl_rmrf(s->dir);
  free(s->dir);
  s->dir = NULL;
}

const char *tl_frame_name(int type) {
  static const char *names[] = {"None",     "Hello",         "Welcome",   "Error",
                                "Register", "Login",         "Resume",    "AuthOk",
                                "Logout",   "LogoutOk",      "Send",      "SendAck",
                                "Message",  "Ack",           "Ping",      "Pong",
                                "MarkRead", "Done",          "Receipt",   "ReadSync",
                                "Settings", "SettingsState", "UnreadGet", "Unread",
                                "Contacts", "ContactList",   "Block",     "PresenceSubscribe",
                                "Presence", "PresenceGet",   "Typing",    "TypingEvent"};
  static char other[32];
  if (type >= 0 && type < (int)(sizeof names / sizeof names[0]))
    return names[type];
  snprintf(other, sizeof other, "type %d", type);
  return other;
}

void tl_run_server(tl_server *srv, const char *name, void (*fn)(void)) {
  int failed = tl_failures();
  tl__run(name, fn);
  if (tl_failures() > failed)
    tl_server_abandon(srv);
  tl_server_stop(srv);
}

void tl__expect_nothing(const char *file, int line, int fd, int quiet_ms) {
  void *m = NULL;
  int t;
  while ((t = tl_recv_frame(fd, quiet_ms, &m)) == PARLEY__FRAME_TYPE__FRAME_PONG)
    protobuf_c_message_free_unpacked(m, NULL);
  if (t == 0)
    return;
  if (m)
    protobuf_c_message_free_unpacked(m, NULL);
  tl__fail(file, line, "expected nothing within %d ms, got %s", quiet_ms,
           t < 0 ? "a malformed frame" : tl_frame_name(t));
}

void *tl__expect(const char *file, int line, int fd, int type, int timeout_ms) {
  void *m = NULL;
  int t = tl_recv_frame(fd, timeout_ms, &m);
  if (t == type)
    return m;
  if (t == 0)
    tl__fail(file, line, "expected %s, got EOF or nothing within %d ms", tl_frame_name(type), timeout_ms);
  if (t < 0)
    tl__fail(file, line, "expected %s, got a malformed frame", tl_frame_name(type));
  char what[300];
  if (t == PARLEY__FRAME_TYPE__FRAME_ERROR) {
    const Parley__Error *e = m;
    snprintf(what, sizeof what, "Error code %d (%s) ref \"%s\"", (int)e->code, e->message, e->ref);
  } else {
    snprintf(what, sizeof what, "%s", tl_frame_name(t));
  }
  protobuf_c_message_free_unpacked(m, NULL);
  tl__fail(file, line, "expected %s, got %s", tl_frame_name(type), what);
  return NULL;
}

void tl__expect_error(const char *file, int line, int fd, int code, const char *ref, int timeout_ms) {
  Parley__Error *e = tl__expect(file, line, fd, PARLEY__FRAME_TYPE__FRAME_ERROR, timeout_ms);
  int got = (int)e->code;
  char gref[80];
  snprintf(gref, sizeof gref, "%s", e->ref);
  protobuf_c_message_free_unpacked(&e->base, NULL);
  if (got != code)
    tl__fail(file, line, "expected Error code %d, got code %d", code, got);
  if (ref && strcmp(ref, gref) != 0)
    tl__fail(file, line, "expected Error ref \"%s\", got \"%s\"", ref, gref);
}

/* --- /metrics -------------------------------------------------------------- */

/* One value of s's /metrics (its line "NAME VALUE"); -1 if it has none. */
static long long tl__metric_once(const tl_server *s, const char *name, long long *counted_at) {
  static const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  size_t cap = 1u << 20;
  char *buf = malloc(cap);
  long long v = -1;
  *counted_at = -1;
  int fd = tl_connect(s->http_port);
  if (!buf || fd < 0 || tl_write_all(fd, req, sizeof req - 1) != 0)
    goto out;
  tl_read_all(fd, buf, cap, 20000);
  if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0)
    goto out;
  const char *want[2] = {name, "parley_store_counted_at_ms"};
  long long *into[2] = {&v, counted_at};
  for (const char *l = strstr(buf, "\r\n\r\n"); l; l = strchr(l, '\n')) {
    l++;
    for (int i = 0; i < 2; i++)
      if (!strncmp(l, want[i], strlen(want[i])) && l[strlen(want[i])] == ' ')
        *into[i] = strtoll(l + strlen(want[i]) + 1, NULL, 10);
  }
out:
  if (fd >= 0)
    close(fd);
  free(buf);
  return v;
}

/* The server shows the store's counts as last counted and asks for new
 * ones at each scrape: asks again until they were counted after t0. */
long long tl_metric(const tl_server *s, const char *name) {
  uint64_t t0 = tl_now_ms();
  for (uint64_t until = t0 + 20000; tl_now_ms() < until; usleep(5000)) {
    long long at, v = tl__metric_once(s, name, &at);
    if (at > (long long)t0)
      return v;
  }
  return -1;
}

long long tl__wait_metric(const char *file, int line, const tl_server *s, const char *name, long long want,
                          int timeout_ms) {
  long long v = -1;
  for (uint64_t until = tl_now_ms() + (uint64_t)timeout_ms;;) {
    if ((v = tl_metric(s, name)) == want)
      return v;
    if (tl_now_ms() >= until)
      break;
    usleep(20000);
  }
  tl__fail(file, line, "%s: %lld, not %lld, after %d ms", name, v, want, timeout_ms);
  return v;
}
