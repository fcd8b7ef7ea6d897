/* pl_devices: how many devices may be signed in, and which ones a Devices
 * request revokes, without a store. */
#include "rules/pl_devices.h"
#include "testlib.h"

static void test_the_device_limit(void) {
  CHECK_EQ_I(pl_devices_may_sign_in(2, 1, 0), PL_OK);
  CHECK_EQ_I(pl_devices_may_sign_in(2, 2, 0), PL_ERR_TOO_MANY_DEVICES);
  CHECK_EQ_I(pl_devices_may_sign_in(2, 2, 1), PL_OK);    /* signed in already: a new token */
  CHECK_EQ_I(pl_devices_may_sign_in(0, 1000, 0), PL_OK); /* no limit */
}

static void test_revoke_by_name_never_the_asking_device(void) {
  int named;
  CHECK(pl_devices_revokes(PL_DEVICES_REVOKE, "phone", 1, 2, "phone", &named));
  CHECK(named);
  CHECK(!pl_devices_revokes(PL_DEVICES_REVOKE, "phone", 1, 3, "laptop", &named));
  CHECK(!named);
  CHECK(!pl_devices_revokes(PL_DEVICES_REVOKE, "phone", 2, 2, "phone", &named)); /* itself: Logout */
  CHECK(named);
  CHECK_EQ_I(pl_devices_revoke_status(PL_DEVICES_REVOKE, 1, 0), PL_ERR_INVALID_ARGUMENT);
  CHECK_EQ_I(pl_devices_revoke_status(PL_DEVICES_REVOKE, 0, 0), PL_ERR_INVALID_ARGUMENT); /* unknown */
  CHECK_EQ_I(pl_devices_revoke_status(PL_DEVICES_REVOKE, 1, 1), PL_OK);
}

static void test_revoke_others_and_list(void) {
  int named;
  CHECK(pl_devices_revokes(PL_DEVICES_REVOKE_OTHERS, NULL, 1, 2, "phone", &named));
  CHECK(!pl_devices_revokes(PL_DEVICES_REVOKE_OTHERS, NULL, 1, 1, "laptop", &named));
  CHECK(!pl_devices_revokes(PL_DEVICES_LIST, NULL, 1, 2, "phone", &named));
  CHECK_EQ_I(pl_devices_revoke_status(PL_DEVICES_REVOKE_OTHERS, 0, 0), PL_OK); /* alone: nothing to do */
  CHECK_EQ_I(pl_devices_revoke_status(PL_DEVICES_LIST, 0, 0), PL_OK);
}

int main(void) {
  RUN(test_the_device_limit);
  RUN(test_revoke_by_name_never_the_asking_device);
  RUN(test_revoke_others_and_list);
  return tl_summary();
}
