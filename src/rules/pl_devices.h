/* pl_devices: a user's devices (docs/protocol.md 7.1, Devices): how many
 * may be signed in at once, and which ones a Devices request revokes.
 * Decisions only, over the device list a backend loads; no I/O. */
#ifndef PL_DEVICES_H
#define PL_DEVICES_H

#include <stddef.h>
#include <stdint.h>

#include "common/pl_err.h"
#include "store/pl_store.h" /* PL_DEVICES_* */

/* May a device sign in for a user with nsigned devices signed in, of at
 * most max (0: no limit)? One that is signed in already always may (its
 * token is rotated, the count does not grow). TOO_MANY_DEVICES or PL_OK. */
static inline pl_err pl_devices_may_sign_in(uint32_t max, size_t nsigned, int already_signed_in) {
  return max && nsigned >= max && !already_signed_in ? PL_ERR_TOO_MANY_DEVICES : PL_OK;
}

/* Does a Devices request of op (PL_DEVICES_*) from device asking, naming
 * name (for REVOKE), revoke the signed-in device dev called dev_name? Never
 * the asking device: Logout is for that. *named is set when dev is the one
 * named. */
int pl_devices_revokes(int op, const char *name, uint64_t asking, uint64_t dev, const char *dev_name,
                       int *named);

/* The answer to a Devices request that revoked nrevoked devices, found:
 * one had the name asked for. INVALID_ARGUMENT for a REVOKE of an unknown
 * name or of the asking device alone; else PL_OK. */
static inline pl_err pl_devices_revoke_status(int op, int found, size_t nrevoked) {
  return op == PL_DEVICES_REVOKE && (!found || !nrevoked) ? PL_ERR_INVALID_ARGUMENT : PL_OK;
}

#endif
