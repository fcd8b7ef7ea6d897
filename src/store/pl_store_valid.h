/* pl_store_valid: what a request of each op must carry, whatever the
 * backend. Every backend asks it before running a request and answers one
 * that fails with INVALID_ARGUMENT, so a malformed request changes nothing
 * on SQLite and PostgreSQL alike. */
#ifndef PL_STORE_VALID_H
#define PL_STORE_VALID_H

#include "pl_store.h"

/* 1 if r carries what its op needs (an op without a check: 1). */
int pl_store_req_valid(const pl_store_req *r);

#endif
