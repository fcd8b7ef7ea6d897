/* pgsrv: a throwaway PostgreSQL for the tests that need a shared store.
 *
 * initdb in a temp dir (trust auth, user "parley"), postgres on a free
 * loopback port, fsync off: a test's database, not a durable one. As root
 * it runs as the "postgres" user (PostgreSQL refuses root). Started through
 * tl_spawn, so a failed test never leaves it running. */
#ifndef PGSRV_H
#define PGSRV_H

#include <sys/types.h>

typedef struct tl_pg {
  pid_t pid;
  int port;
  char *dir;
  char conninfo[160]; /* postgresql://parley@127.0.0.1:PORT/postgres */
} tl_pg;

/* The directory of PostgreSQL's programs (initdb, postgres), or NULL. */
const char *tl_pg_bindir(void);
/* Starts it and waits until it takes connections. */
void tl_pg_start(tl_pg *pg);
void tl_pg_stop(tl_pg *pg);

#endif
