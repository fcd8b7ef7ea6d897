#include "pgsrv.h"

#include <glob.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

const char *tl_pg_bindir(void) {
  static char dir[256];
  glob_t g;
  if (dir[0])
    return dir;
  if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0)
    return NULL;
  snprintf(dir, sizeof dir, "%.*s", (int)(strlen(g.gl_pathv[g.gl_pathc - 1]) - strlen("/initdb")),
           g.gl_pathv[g.gl_pathc - 1]); /* the newest */
  globfree(&g);
  return dir;
}

/* As root, what runs PostgreSQL's programs as "postgres" (its argv prefix). */
static int tl__as_postgres(char **argv, const char *dir) {
  struct passwd *pw = getuid() == 0 ? getpwnam("postgres") : NULL;
  if (!pw)
    return 0;
  if (chown(dir, pw->pw_uid, pw->pw_gid) != 0)
    tl__fail(__FILE__, __LINE__, "chown %s: postgres", dir);
  /* setpriv execs (runuser and su fork, and a SIGKILL would miss postgres) */
  argv[0] = "/usr/bin/setpriv";
  argv[1] = "--reuid=postgres";
  argv[2] = "--regid=postgres";
  argv[3] = "--init-groups";
  return 4;
}

/* A fresh dir (the postgres user's when root) and a port for pg. */
static void tl__pg_init(tl_pg *pg) {
  memset(pg, 0, sizeof *pg);
  if (!tl_pg_bindir())
    tl__fail(__FILE__, __LINE__, "PostgreSQL is not installed (scripts/deps.sh --test)");
  pg->dir = tl_tempdir();
  chmod(pg->dir, 0700);
  struct passwd *pw = getuid() == 0 ? getpwnam("postgres") : NULL;
  if (pw && chown(pg->dir, pw->pw_uid, pw->pw_gid) != 0)
    tl__fail(__FILE__, __LINE__, "chown %s: postgres", pg->dir);
  pg->port = tl_free_port();
  snprintf(pg->conninfo, sizeof pg->conninfo, "postgresql://parley@127.0.0.1:%d/postgres", pg->port);
}

/* Runs a PostgreSQL program to its end, as postgres when root; 0 on success. */
static int tl__pg_run(const tl_pg *pg, const char *what, const char *args) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s %s/%s %s >>'%s/%s.log' 2>&1",
           getuid() == 0 && getpwnam("postgres")
               ? "/usr/bin/setpriv --reuid=postgres --regid=postgres --init-groups"
               : "",
           tl_pg_bindir(), what, args, pg->dir, what);
  return system(cmd);
}

/* Starts postgres on pg's data dir (opts: more "-c name=value" settings,
 * NULL-terminated, or NULL) and waits until it takes connections. 0, or -1
 * if it exited first (its port taken meanwhile, as a rule). */
static int tl__pg_postgres_once(tl_pg *pg, const char *const *opts) {
  char data[600], log[600], postgres[300], port[16], cmd[700];
  snprintf(data, sizeof data, "%s/data", pg->dir);
  snprintf(log, sizeof log, "%s/postgres.log", pg->dir);
  snprintf(postgres, sizeof postgres, "%s/postgres", tl_pg_bindir());
  snprintf(port, sizeof port, "%d", pg->port);
  char *argv[40];
  int a = tl__as_postgres(argv, pg->dir);
  argv[a++] = postgres;
  argv[a++] = "-D";
  argv[a++] = data;
  argv[a++] = "-p";
  argv[a++] = port;
  argv[a++] = "-k";
  argv[a++] = pg->dir;
  argv[a++] = "-c";
  argv[a++] = "listen_addresses=127.0.0.1";
  argv[a++] = "-c";
  argv[a++] = "fsync=off";
  for (int i = 0; opts && opts[i] && a < 36; i++) {
    argv[a++] = "-c";
    argv[a++] = (char *)opts[i];
  }
  argv[a] = NULL;
  pg->pid = tl_spawn(argv, log, NULL);
  for (uint64_t until = tl_now_ms() + 30000;; usleep(50000)) {
    siginfo_t si;
    snprintf(cmd, sizeof cmd, "%s/pg_isready -q -h 127.0.0.1 -p %d", tl_pg_bindir(), pg->port);
    if (system(cmd) == 0)
      return 0;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pg->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pg->pid) {
      tl_spawn_kill(pg->pid, SIGKILL); /* reaps it, and the test forgets it */
      pg->pid = 0;
      return -1;
    }
    if (tl_now_ms() > until)
      tl__fail(__FILE__, __LINE__, "PostgreSQL did not start (see %s)", log);
  }
}

/* The first start: a port tl_free_port found free can be taken by a test
 * running beside before postgres binds it; then again on another port. */
static void tl__pg_postgres(tl_pg *pg, const char *const *opts) {
  for (int attempt = 0; tl__pg_postgres_once(pg, opts) != 0; attempt++) {
    if (attempt == 4)
      tl__fail(__FILE__, __LINE__, "PostgreSQL exited at start 5 times (see %s/postgres.log)", pg->dir);
    pg->port = tl_free_port();
    snprintf(pg->conninfo, sizeof pg->conninfo, "postgresql://parley@127.0.0.1:%d/postgres", pg->port);
  }
}

void tl_pg_start(tl_pg *pg) { tl_pg_start_opts(pg, NULL); }

void tl_pg_start_opts(tl_pg *pg, const char *const *opts) {
  char args[700];
  tl__pg_init(pg);
  snprintf(args, sizeof args, "-D '%s/data' -U parley --auth=trust -E UTF8", pg->dir);
  if (tl__pg_run(pg, "initdb", args) != 0)
    tl__fail(__FILE__, __LINE__, "initdb failed (see %s/initdb.log)", pg->dir);
  tl__pg_postgres(pg, opts);
}

void tl_pg_standby(tl_pg *st, const tl_pg *primary, const char *const *opts) {
  char args[700];
  tl__pg_init(st);
  /* -R: standby.signal and primary_conninfo; -X stream: the WAL meanwhile */
  snprintf(args, sizeof args, "-h 127.0.0.1 -p %d -U parley -D '%s/data' -R -X stream -c fast", primary->port,
           st->dir);
  if (tl__pg_run(st, "pg_basebackup", args) != 0)
    tl__fail(__FILE__, __LINE__, "pg_basebackup failed (see %s/pg_basebackup.log)", st->dir);
  tl__pg_postgres(st, opts);
}

void tl_pg_crash(tl_pg *pg) {
  siginfo_t si;
  kill(pg->pid, SIGQUIT); /* pg_ctl stop -m immediate: no checkpoint, backends quit at once */
  for (uint64_t until = tl_now_ms() + 20000; tl_now_ms() < until; usleep(20000)) {
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pg->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pg->pid)
      break;
  }
  tl_spawn_kill(pg->pid, SIGKILL); /* reaps it (or ends it if it hung) */
  pg->pid = 0;
}

void tl_pg_promote(tl_pg *pg) {
  char args[700];
  snprintf(args, sizeof args, "promote -w -t 30 -D '%s/data'", pg->dir);
  if (tl__pg_run(pg, "pg_ctl", args) != 0)
    tl__fail(__FILE__, __LINE__, "pg_ctl promote failed (see %s/pg_ctl.log)", pg->dir);
}

void tl_pg_stop(tl_pg *pg) {
  if (pg->pid > 0)
    tl_spawn_kill(pg->pid, SIGKILL);
  pg->pid = 0;
  if (pg->dir) {
    tl_rmrf(pg->dir);
    free(pg->dir);
    pg->dir = NULL;
  }
}

int tl_pg_query(const tl_pg *pg, const char *sql, char *out, size_t cap) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           "%s/psql -X -q -At -h 127.0.0.1 -p %d -U parley -d postgres -c \"%s\" 2>/dev/null", tl_pg_bindir(),
           pg->port, sql);
  FILE *f = popen(cmd, "r");
  if (!f)
    return -1;
  size_t n = cap ? fread(out, 1, cap - 1, f) : 0;
  if (cap) {
    out[n] = 0;
    out[strcspn(out, "\n")] = 0;
  }
  return pclose(f) == 0 ? 0 : -1;
}
