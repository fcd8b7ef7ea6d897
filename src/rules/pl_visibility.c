#include "pl_visibility.h"

#include "pl_conv.h"
#include "store/pl_store.h" /* PL_ROLE_NONE */

int pl_visibility_in_conv(const char *conv, const char *name, int group_role) {
  if (pl_conv_gid(conv))
    return group_role != PL_ROLE_NONE;
  return pl_conv_dm_has(conv, name);
}
