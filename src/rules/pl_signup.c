#include "pl_signup.h"

#include <string.h>

static const char *const pl__modes[] = {"open", "invite", "closed"};

int pl_signup_parse(const char *s) {
  for (int i = 0; i < 3; i++)
    if (s && !strcmp(s, pl__modes[i]))
      return i;
  return -1;
}

const char *pl_signup_name(int mode) { return mode >= 0 && mode < 3 ? pl__modes[mode] : "?"; }

pl_err pl_signup_admit(int mode, int has_invite) {
  if (mode == PL_SIGNUP_CLOSED)
    return PL_ERR_REGISTRATION_CLOSED;
  if (mode == PL_SIGNUP_INVITE && !has_invite)
    return PL_ERR_INVITE_REQUIRED;
  return PL_OK;
}

int pl_signup_code_valid(const char *code) {
  size_t n = code ? strlen(code) : 0;
  if (n < 8 || n > 64)
    return 0;
  return strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}
