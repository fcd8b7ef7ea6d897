/* pl_visibility: who may see an upload (docs/protocol.md 13.3, 13.5): its
 * uploader, or a user who takes part now in a conversation that a message
 * carrying it went to (a member who left a group no longer sees that
 * group's media). Sending media (forwarding) needs the same right. How much
 * a user may upload is pl_quota's rule. Decisions only: the backend loads
 * the upload's owner, the conversations it was sent to, and the user's role
 * in a group. */
#ifndef PL_VISIBILITY_H
#define PL_VISIBILITY_H

#include <stdint.h>

#include "common/pl_err.h"

/* Did uid upload it? Then nothing else needs loading. */
static inline int pl_visibility_owner(uint64_t owner, uint64_t uid) { return owner == uid; }

/* May uid see an upload of owner, in_granted: uid takes part in one of the
 * conversations it was sent to (pl_visibility_in_conv)? */
static inline int pl_visibility_media(uint64_t owner, uint64_t uid, int in_granted) {
  return pl_visibility_owner(owner, uid) || in_granted;
}

/* The answer to a download (GET /media/<id>): NOT_FOUND when there is no
 * such upload, FORBIDDEN when the user may not see it, else PL_OK. */
static inline pl_err pl_visibility_download(int found, int visible) {
  return !found ? PL_ERR_NOT_FOUND : !visible ? PL_ERR_FORBIDDEN : PL_OK;
}

/* The answer to a Send carrying a media id: UNKNOWN_MEDIA for one the
 * sender may not see, as for one that does not exist (a sender learns
 * nothing of others' uploads), else PL_OK. */
static inline pl_err pl_visibility_attach(int found, int visible) {
  return found && visible ? PL_OK : PL_ERR_UNKNOWN_MEDIA;
}

/* Does the user name take part in conv now: one of the two sides of a 1:1
 * conversation, or a member of a group (group_role: its PL_ROLE_* in the
 * group pl_conv_gid(conv) names, which the backend loads; ignored for a 1:1
 * conversation)? */
int pl_visibility_in_conv(const char *conv, const char *name, int group_role);

#endif
