/* pl_keys: parleyd's key file for encryption at rest (--key-file; pl_seal
 * holds the format and the crypto): the `parleyd key` command, the load at
 * start, and the reload on SIGHUP that rotates keys while serving
 * (docs/operations.md, "Encryption at rest"). */
#ifndef PL_KEYS_H
#define PL_KEYS_H

#include "common/pl_seal.h"
#include "media/pl_media.h"
#include "store/pl_store.h"

/* parleyd key new|add|remove|list FILE [ID]: argv[0] is "key". */
int pl_keys_main(int argc, char **argv);

/* The ring in path, shared (pl_seal_ref); logs why not. */
pl_err pl_keys_load(const char *path, pl_seal_ref **out);

/* SIGHUP: the key file again. A ring with a new key is published at once
 * (the store and the media then re-encrypt in the background); one that
 * drops a key is refused while anything may still be sealed with it. */
void pl_keys_reload(const char *path, pl_seal_ref *ref, pl_store *store, pl_media *media);

#endif
