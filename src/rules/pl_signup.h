/* pl_signup: who may create an account (--registration) and when an invite
 * code still admits one (docs/admin.md, "Sign-up"). Decisions only; the
 * store keeps the invites, the session asks these before any work. */
#ifndef PL_SIGNUP_H
#define PL_SIGNUP_H

#include <stdint.h>

#include "common/pl_err.h"

typedef enum pl_signup_mode {
  PL_SIGNUP_OPEN = 0,   /* anyone may register */
  PL_SIGNUP_INVITE = 1, /* Register must carry a valid invite code */
  PL_SIGNUP_CLOSED = 2, /* only the operator creates users (admin API) */
} pl_signup_mode;

/* "open", "invite" or "closed" -> the mode; -1 if none of them. */
int pl_signup_parse(const char *s);
const char *pl_signup_name(int mode);

/* May a Register (with or without an invite code) go on to the store?
 * REGISTRATION_CLOSED, INVITE_REQUIRED or PL_OK (the code itself is checked
 * in the store's transaction, where it is used up). */
pl_err pl_signup_admit(int mode, int has_invite);

/* An invite with uses_left registrations left, expiring at expires (ms
 * since the epoch; 0 never): does it admit one more at now? */
static inline int pl_signup_invite_ok(uint64_t uses_left, uint64_t expires, uint64_t now) {
  return uses_left > 0 && (expires == 0 || now < expires);
}

/* An invite code as the operator gives it: 8..64 of [A-Za-z0-9_-]. */
int pl_signup_code_valid(const char *code);

#endif
