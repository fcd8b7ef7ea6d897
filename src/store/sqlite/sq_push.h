/* pl_sq_push: the SQLite side of the push store ops
 * (PL_STORE_PUSH_*): device push tokens and pending notifications in
 * parley.db, with the claim rules pl_store.h states. Self-contained: its
 * own tables, statements and helpers; the backend calls open at start-up
 * (after its schema), exec for the PUSH_* ops inside its transaction, and
 * close before it closes the database. */
#ifndef PL_STORE_SQLITE_PUSH_H
#define PL_STORE_SQLITE_PUSH_H

#include <sqlite3.h>

#include "../pl_store.h"

typedef struct pl_sq_push pl_sq_push;

/* Creates the tables if missing, imports <dir>/push.db if one is left from
 * a server before schema 8 (then renames it push.db.imported) and prepares
 * the statements. Outside any transaction. */
pl_err pl_sq_push_open(pl_sq_push **out, sqlite3 *db, const char *dir);
/* Finalizes the statements (before sqlite3_close). NULL is fine. */
void pl_sq_push_close(pl_sq_push *sp);

/* Run a PUSH_* request inside the open transaction: like the backend's
 * exec, PL_OK unless the transaction is broken; r->status says the rest. */
pl_err pl_sq_push_token(pl_sq_push *sp, pl_store_req *r);
/* A device signed out: its token and its pending row go (in the caller's
 * transaction: the logout's). */
pl_err pl_sq_push_forget(pl_sq_push *sp, uint64_t device);
pl_err pl_sq_push_tokens(pl_sq_push *sp, pl_store_req *r);
pl_err pl_sq_push_enqueue(pl_sq_push *sp, pl_store_req *r);
pl_err pl_sq_push_claim(pl_sq_push *sp, pl_store_req *r);
pl_err pl_sq_push_done(pl_sq_push *sp, pl_store_req *r);

#endif
