/* pgsrv: a throwaway PostgreSQL for the tests that need a shared store.
 *
 * initdb in a temp dir (trust auth, user "parley"), postgres on a free
 * loopback port, fsync off: a test's database, not a durable one. As root
 * it runs as the "postgres" user (PostgreSQL refuses root). Started through
 * tl_spawn, so a failed test never leaves it running. */
#ifndef PGSRV_H
#define PGSRV_H

#include <stddef.h>
#include <sys/types.h>

typedef struct tl_pg {
  pid_t pid;
  int port;
  char *dir;
  char conninfo[160]; /* postgresql://parley@127.0.0.1:PORT/postgres */
} tl_pg;

/* The directory of PostgreSQL's programs (initdb, postgres), or NULL. */
const char *tl_pg_bindir(void);
/* Starts it (initdb, then postgres) and waits until it takes connections. */
void tl_pg_start(tl_pg *pg);
/* The same with more settings: opts is a NULL-terminated list of
 * "name=value" (each passed as -c), or NULL. */
void tl_pg_start_opts(tl_pg *pg, const char *const *opts);
/* A streaming standby of primary (pg_basebackup -R) in a dir and on a port
 * of its own, with opts as above; waits until it takes connections. */
void tl_pg_standby(tl_pg *st, const tl_pg *primary, const char *const *opts);
/* Stops it as a crash would (immediate shutdown: SIGQUIT, no checkpoint)
 * and waits for it; its dir stays until tl_pg_stop. */
void tl_pg_crash(tl_pg *pg);
/* Promotes a standby to primary (pg_ctl promote) and waits until it is. */
void tl_pg_promote(tl_pg *pg);
void tl_pg_stop(tl_pg *pg);
/* Runs sql (no double quotes) with psql; the first line of its answer in
 * out. 0, or -1 if psql failed. */
int tl_pg_query(const tl_pg *pg, const char *sql, char *out, size_t cap);

#endif
