#include "pgsrv.h"

#include <glob.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

void tl_pg_start(tl_pg *pg) {
  memset(pg, 0, sizeof *pg);
  const char *bin = tl_pg_bindir();
  if (!bin)
    tl__fail(__FILE__, __LINE__, "PostgreSQL is not installed (scripts/deps.sh --test)");
  pg->dir = tl_tempdir();
  chmod(pg->dir, 0700);
  pg->port = tl_free_port();
  char data[600], log[600], initdb[300], postgres[300], port[16], cmd[2048];
  snprintf(data, sizeof data, "%s/data", pg->dir);
  snprintf(log, sizeof log, "%s/postgres.log", pg->dir);
  snprintf(initdb, sizeof initdb, "%s/initdb", bin);
  snprintf(postgres, sizeof postgres, "%s/postgres", bin);
  snprintf(port, sizeof port, "%d", pg->port);
  char *argv[24];
  int a = tl__as_postgres(argv, pg->dir);
  /* initdb runs to its end first */
  snprintf(cmd, sizeof cmd, "%s %s -D '%s' -U parley --auth=trust -E UTF8 >'%s/initdb.log' 2>&1",
           a ? "/usr/bin/setpriv --reuid=postgres --regid=postgres --init-groups" : "", initdb, data,
           pg->dir);
  if (system(cmd) != 0)
    tl__fail(__FILE__, __LINE__, "initdb failed (see %s/initdb.log)", pg->dir);
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
  argv[a] = NULL;
  pg->pid = tl_spawn(argv, log, NULL);
  snprintf(pg->conninfo, sizeof pg->conninfo, "postgresql://parley@127.0.0.1:%d/postgres", pg->port);
  for (uint64_t until = tl_now_ms() + 30000;; usleep(50000)) {
    snprintf(cmd, sizeof cmd, "%s/pg_isready -q -h 127.0.0.1 -p %d", bin, pg->port);
    if (system(cmd) == 0)
      return;
    if (tl_now_ms() > until)
      tl__fail(__FILE__, __LINE__, "PostgreSQL did not start (see %s)", log);
  }
}

void tl_pg_stop(tl_pg *pg) {
  tl_spawn_kill(pg->pid, SIGKILL);
  pg->pid = 0;
  if (pg->dir) {
    tl_rmrf(pg->dir);
    free(pg->dir);
    pg->dir = NULL;
  }
}
