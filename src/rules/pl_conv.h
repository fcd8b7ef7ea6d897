/* pl_conv: conversations (docs/protocol.md 11.1): their names, and which
 * devices a 1:1 message goes to. A 1:1 conversation is "dm:<lower>:<higher>"
 * (the two user names in byte order), one name for both sides and for a
 * note to self ("dm:a:a"); a group's is "g:<gid>". Pure functions. */
#ifndef PL_CONV_H
#define PL_CONV_H

#include <stddef.h>
#include <stdint.h>

/* The 1:1 conversation of users a and b (either order); pl_free it. */
char *pl_conv_dm(const char *a, const char *b);

/* Is user name one of the two sides of conv? 0 for a name that is not a
 * 1:1 conversation. */
int pl_conv_dm_has(const char *conv, const char *name);

/* The gid of a group conversation "g:<gid>"; 0 for any other name. */
uint64_t pl_conv_gid(const char *conv);

/* The devices a 1:1 message goes to, into out (room for np + nm): the
 * peer's signed-in devices peer[0..np), then the sender's own mine[0..nm)
 * but the one it came from (from_dev), so they show what was sent; none
 * twice, so for a note to self (self) only the latter. Returns how many. */
size_t pl_conv_dm_targets(const uint64_t *peer, size_t np, const uint64_t *mine, size_t nm, int self,
                          uint64_t from_dev, uint64_t *out);

#endif
