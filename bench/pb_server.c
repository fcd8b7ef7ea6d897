#include "pb_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "pb_loop.h"

#define PB__MAX_ARGS 64

int pb_server_parse(const char *hostport, struct sockaddr_in *out) {
  char host[128];
  const char *colon = strrchr(hostport, ':');
  if (!colon || (size_t)(colon - hostport) >= sizeof host)
    return -1;
  memcpy(host, hostport, (size_t)(colon - hostport));
  host[colon - hostport] = '\0';
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port <= 0 || port > 65535)
    return -1;
  memset(out, 0, sizeof *out);
  out->sin_family = AF_INET;
  out->sin_port = htons((uint16_t)port);
  if (!strcmp(host, "localhost"))
    snprintf(host, sizeof host, "127.0.0.1");
  return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

int pb_server_find_bin(char *out, size_t n) {
  const char *env = getenv("PARLEYD");
  if (env && *env) {
    snprintf(out, n, "%s", env);
    return access(out, X_OK);
  }
  char self[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0)
    return -1;
  self[len] = '\0';
  char *slash = strrchr(self, '/');
  if (!slash)
    return -1;
  *slash = '\0';
  snprintf(out, n, "%s/parleyd", self);
  return access(out, X_OK);
}

/* A port nobody listens on now (the kernel's pick; a tiny race is accepted). */
int pb_server_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

static int pb__can_connect(const struct sockaddr_in *a) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  int ok = connect(fd, (const struct sockaddr *)a, sizeof *a) == 0;
  close(fd);
  return ok;
}

/* Splits args on blanks into argv (no quoting). */
static int pb__split(char *args, char **argv, int max) {
  int n = 0;
  for (char *tok = strtok(args, " \t\n"); tok && n < max; tok = strtok(NULL, " \t\n"))
    argv[n++] = tok;
  return n;
}

static void pb__exec(const pb_server *s) {
  char listen[64], log[600], args[sizeof s->args + 1200], bin[sizeof s->bin], dir[sizeof s->dir];
  snprintf(bin, sizeof bin, "%s", s->bin);
  snprintf(dir, sizeof dir, "%s", s->dir);
  snprintf(listen, sizeof listen, "127.0.0.1:%d", s->tls ? s->plain_port : ntohs(s->addr.sin_port));
  snprintf(log, sizeof log, "%s/parleyd.log", s->dir);
  if (s->tls) /* the clients' listener; the certificate pb__tls_cert made */
    snprintf(args, sizeof args,
             "--listen-tls 127.0.0.1:%d --tls-cert %s/bench-cert.pem --tls-key %s/bench-key.pem %s",
             ntohs(s->addr.sin_port), s->dir, s->dir, s->args);
  else
    snprintf(args, sizeof args, "%s", s->args);
  /* The bench's clients come from a few source addresses (127.0.0.x), up to
   * --per-addr each, and send as fast as the server takes it: the per-address
   * connection cap, the per-user send rate and the per-address login limits
   * (register, login and resume rates, hashes at once) would throttle the
   * bench itself, so they are off (the caller's arguments may set them). */
  char *argv[PB__MAX_ARGS + 32] = {bin,    "--data",          dir,        "--listen",
                                   listen, "--http",          "off",      "--log-level",
                                   "warn", "--max-queue",     "10000000", "--max-conns-per-ip",
                                   "0",    "--send-rate",     "0",        "--login-rate",
                                   "0",    "--register-rate", "0",        "--argon2-per-address",
                                   "1024", "--argon2-queue",  "100000"};
  int n = 23;
  n += pb__split(args, argv + n, PB__MAX_ARGS);
  argv[n] = NULL;
  int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600), null = open("/dev/null", O_RDONLY);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
  }
  if (null >= 0)
    dup2(null, 0);
  /* Nothing of ours or our caller's stays open in the server: a pipe it kept
   * would make `out=$(parley-bench ...)` wait for the server to exit. */
  close_range(3, ~0u, 0);
  setpgid(0, 0);                    /* a ^C to the bench does not hit the server mid-measurement */
  prctl(PR_SET_PDEATHSIG, SIGTERM); /* but a bench that dies takes its server along */
  execv(bin, argv);
  fprintf(stderr, "parley-bench: cannot run %s: %s\n", bin, strerror(errno));
  _exit(127);
}

static void pb__print_log_tail(const pb_server *s) {
  char path[600], line[512];
  snprintf(path, sizeof path, "%s/parleyd.log", s->dir);
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  while (fgets(line, sizeof line, f))
    fprintf(stderr, "  parleyd: %s", line);
  fclose(f);
}

/* Forks parleyd and waits up to 15 s for it to accept connections. */
static int pb__spawn(pb_server *s) {
  fflush(NULL);
  s->pid = fork();
  if (s->pid < 0)
    return -1;
  if (s->pid == 0)
    pb__exec(s);
  uint64_t deadline = pb_now_us() + 15000000u;
  while (pb_now_us() < deadline) {
    int st;
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
      fprintf(stderr, "parley-bench: parleyd exited at start-up (status %d); its log:\n", st);
      pb__print_log_tail(s);
      s->pid = 0;
      return -1;
    }
    if (pb__can_connect(&s->addr))
      return 0;
    usleep(20000);
  }
  fprintf(stderr, "parley-bench: parleyd did not start listening within 15 s\n");
  return -1;
}

/* A throw-away P-256 key and self-signed certificate in the data dir's
 * parent (the clients do not verify it: the bench measures the cost). */
static int pb__tls_cert(const pb_server *s) {
  char cp[600], kp[600];
  snprintf(cp, sizeof cp, "%s/bench-cert.pem", s->dir);
  snprintf(kp, sizeof kp, "%s/bench-key.pem", s->dir);
  EVP_PKEY *k = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  FILE *c = fopen(cp, "w"), *kf = fopen(kp, "w");
  int ok = k && x && c && kf;
  if (ok) {
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, nm);
    ok = X509_sign(x, k, EVP_sha256()) > 0 && PEM_write_X509(c, x) &&
         PEM_write_PrivateKey(kf, k, NULL, NULL, 0, NULL, NULL);
  }
  if (c)
    fclose(c);
  if (kf)
    fclose(kf);
  X509_free(x);
  EVP_PKEY_free(k);
  if (!ok)
    fprintf(stderr, "parley-bench: cannot make a TLS certificate in %s\n", s->dir);
  return ok ? 0 : -1;
}

int pb_server_start(pb_server *s, const char *dir, const char *args) {
  s->own = 1;
  snprintf(s->args, sizeof s->args, "%s", args ? args : "");
  if (dir && *dir) {
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    if (mkdir(s->dir, 0700) != 0 && errno != EEXIST) {
      fprintf(stderr, "parley-bench: cannot create %s: %s\n", s->dir, strerror(errno));
      return -1;
    }
  } else {
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof s->dir, "%s/parley-bench.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(s->dir))
      return -1;
    s->tmp = 1;
  }
  int port = pb_server_free_port();
  if (port < 0)
    return -1;
  if (s->tls && ((s->plain_port = pb_server_free_port()) < 0 || pb__tls_cert(s) != 0))
    return -1;
  memset(&s->addr, 0, sizeof s->addr);
  s->addr.sin_family = AF_INET;
  s->addr.sin_port = htons((uint16_t)port);
  s->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return pb__spawn(s);
}

static void pb__kill_wait(pb_server *s) {
  if (s->pid <= 0)
    return;
  kill(s->pid, SIGTERM);
  for (int i = 0; i < 1500; i++) {
    if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
      s->pid = 0;
      return;
    }
    usleep(10000);
  }
  fprintf(stderr, "parley-bench: parleyd did not stop within 15 s; killing it\n");
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  s->pid = 0;
}

static int pb__save_template(const pb_server *s, const char *tmpl);

int pb_server_restart(pb_server *s, const char *save_template) {
  pb__kill_wait(s);
  if (save_template && pb__save_template(s, save_template) != 0)
    fprintf(stderr, "parley-bench: cannot save %s: %s\n", save_template, strerror(errno));
  return pb__spawn(s);
}

static int pb__rm(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* ---- template data dir ---------------------------------------------------- */

static int pb__copy_file(const char *from, const char *to) {
  char buf[65536];
  int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
  if (in < 0 || (out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
    goto out;
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n == 0)
      break;
    if (n < 0 || write(out, buf, (size_t)n) != n)
      goto out;
  }
  rc = fsync(out);
out:
  if (in >= 0)
    close(in);
  if (out >= 0)
    close(out);
  return rc;
}

/* Copies the regular files of `from` (not the lock, not the log) into `to`. */
static int pb__copy_dir(const char *from, const char *to) {
  DIR *d = opendir(from);
  if (!d || (mkdir(to, 0700) != 0 && errno != EEXIST)) {
    if (d)
      closedir(d);
    return -1;
  }
  int rc = 0;
  for (struct dirent *e; rc == 0 && (e = readdir(d));) {
    char a[1200], b[1200];
    if (e->d_type != DT_REG || !strcmp(e->d_name, "LOCK") || !strcmp(e->d_name, "parleyd.log"))
      continue;
    snprintf(a, sizeof a, "%s/%s", from, e->d_name);
    snprintf(b, sizeof b, "%s/%s", to, e->d_name);
    rc = pb__copy_file(a, b);
  }
  closedir(d);
  return rc;
}

static void pb__rmrf(const char *dir) { nftw(dir, pb__rm, 16, FTW_DEPTH | FTW_PHYS); }

int pb_server_fresh_data(const char *tmpl, const char *data) {
  struct stat st;
  pb__rmrf(data);
  if (stat(tmpl, &st) != 0)
    return mkdir(data, 0700) == 0 ? 0 : -1;
  return pb__copy_dir(tmpl, data) == 0 ? 1 : -1;
}

static int pb__save_template(const pb_server *s, const char *tmpl) {
  char next[600];
  snprintf(next, sizeof next, "%s.new", tmpl);
  pb__rmrf(next);
  if (pb__copy_dir(s->dir, next) != 0)
    return -1;
  pb__rmrf(tmpl);
  return rename(next, tmpl);
}

void pb_server_stop(pb_server *s) {
  if (!s->own)
    return;
  pb__kill_wait(s);
  if (s->tmp)
    nftw(s->dir, pb__rm, 16, FTW_DEPTH | FTW_PHYS);
  s->own = 0;
}

static int pb__read_file(const char *path, char *buf, size_t n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t r = read(fd, buf, n - 1);
  close(fd);
  if (r <= 0)
    return -1;
  buf[r] = '\0';
  return 0;
}

/* utime + stime (fields 14 and 15, after the parenthesised command). */
static int pb__cpu(pid_t pid, uint64_t *us) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  if (pb__read_file(path, buf, sizeof buf))
    return -1;
  char *p = strrchr(buf, ')');
  unsigned long long ut, st;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  long hz = sysconf(_SC_CLK_TCK);
  *us = (ut + st) * 1000000ull / (unsigned long long)(hz > 0 ? hz : 100);
  return 0;
}

static int pb__rss(pid_t pid, uint64_t *bytes) {
  char path[64], buf[8192];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  if (pb__read_file(path, buf, sizeof buf))
    return -1;
  char *p = strstr(buf, "VmRSS:");
  unsigned long long kb;
  if (!p || sscanf(p + 6, "%llu", &kb) != 1)
    return -1;
  *bytes = kb * 1024u;
  return 0;
}

pb_sample pb_server_sample(pid_t pid) {
  pb_sample s = {.t_us = pb_now_us()};
  if (pid > 0 && pb__cpu(pid, &s.cpu_us) == 0 && pb__rss(pid, &s.rss_bytes) == 0)
    s.ok = 1;
  return s;
}
