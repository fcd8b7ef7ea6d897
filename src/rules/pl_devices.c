#include "pl_devices.h"

#include <string.h>

int pl_devices_revokes(int op, const char *name, uint64_t asking, uint64_t dev, const char *dev_name,
                       int *named) {
  *named = op == PL_DEVICES_REVOKE && name && !strcmp(dev_name, name);
  return (*named || op == PL_DEVICES_REVOKE_OTHERS) && dev != asking;
}
