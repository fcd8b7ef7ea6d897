#include "pl_privacy.h"

pl_privacy_view pl_privacy_view_of(int self, int contact, int blocked, int last_seen) {
  pl_privacy_view v;
  if (self)
    return (pl_privacy_view){1, 1}; /* one's own devices see everything */
  v.visible = contact && !blocked;
  /* EVERYONE still leaves out the users one blocked */
  v.seen_visible =
      !blocked && (last_seen == PL_LAST_SEEN_EVERYONE || (last_seen == PL_LAST_SEEN_CONTACTS && contact));
  return v;
}

pl_err pl_privacy_settings_apply(const pl_privacy_settings *cur, int read_receipts, int last_seen,
                                 int group_add, pl_privacy_settings *next, unsigned *changed) {
  *next = *cur;
  *changed = 0;
  if (group_add < 0 || group_add > PL_GROUP_ADD_NOBODY)
    return PL_ERR_INVALID_ARGUMENT;
  if (group_add) {
    next->group_add = group_add;
    *changed |= PL_PRIVACY_SET_GROUP_ADD;
  }
  /* the wire's enum: 0 unset, 1 ON, 2 OFF */
  if (read_receipts == 1 || read_receipts == 2) {
    next->read_receipts = read_receipts == 1;
    *changed |= PL_PRIVACY_SET_RECEIPTS;
  }
  /* a last_seen out of range leaves the setting as it is: not an error */
  if (last_seen >= PL_LAST_SEEN_EVERYONE && last_seen <= PL_LAST_SEEN_NOBODY) {
    next->last_seen = last_seen;
    *changed |= PL_PRIVACY_SET_LAST_SEEN;
  }
  return PL_OK;
}
