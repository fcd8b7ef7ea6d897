/* pl_reserve: the disk space the store holds back for a full disk. The
 * full disk itself is tested for real by test_disk_full.sh (a tmpfs). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/pl_reserve.h"
#include "testlib.h"

static char dir[] = "/tmp/pl-reserve-XXXXXX";

/* Bytes the file has allocated (not its length: a sparse file would not do). */
static long long allocated(const pl_reserve *r) {
  struct stat st;
  return stat(r->path, &st) == 0 ? (long long)st.st_blocks * 512 : -1;
}

static void test_hold_allocates_and_release_gives_back(void) {
  pl_reserve r;
  pl_reserve_init(&r, dir, 1u << 20);
  CHECK_EQ_I(pl_reserve_hold(&r), PL_OK);
  CHECK(r.held);
  CHECK(allocated(&r) >= 1 << 20);
  CHECK_EQ_I(pl_reserve_hold(&r), PL_OK); /* held already: nothing to do */
  pl_reserve_release(&r);
  CHECK(!r.held);
  CHECK_EQ_I(allocated(&r), 0); /* the file stays, empty */
  CHECK_EQ_I(pl_reserve_hold(&r), PL_OK);
  CHECK(allocated(&r) >= 1 << 20);
  pl_reserve_free(&r);
}

static void test_a_smaller_reserve_shrinks_the_file(void) {
  pl_reserve r;
  pl_reserve_init(&r, dir, 2u << 20);
  CHECK_EQ_I(pl_reserve_hold(&r), PL_OK);
  pl_reserve_free(&r);
  pl_reserve_init(&r, dir, 256u << 10); /* a restart with a smaller --disk-reserve */
  CHECK_EQ_I(pl_reserve_hold(&r), PL_OK);
  CHECK(allocated(&r) >= 256 << 10 && allocated(&r) < 1 << 20);
  pl_reserve_free(&r);
}

static void test_none_and_what_is_awaited(void) {
  pl_reserve r;
  pl_reserve_init(&r, dir, 0);
  unlink(r.path);
  CHECK_EQ_I(pl_reserve_hold(&r), PL_OK);
  CHECK(access(r.path, F_OK) != 0); /* no reserve: no file */
  CHECK_EQ_U(pl_reserve_needed(&r), 1u << 20);
  CHECK(pl_reserve_avail(&r) > 0);
  pl_reserve_free(&r);
  pl_reserve_init(&r, dir, 64u << 20);
  CHECK_EQ_U(pl_reserve_needed(&r), 128u << 20); /* the reserve and as much again */
  pl_reserve_free(&r);
}

int main(void) {
  if (!mkdtemp(dir))
    return 1;
  RUN(test_hold_allocates_and_release_gives_back);
  RUN(test_a_smaller_reserve_shrinks_the_file);
  RUN(test_none_and_what_is_awaited);
  char rm[64];
  snprintf(rm, sizeof rm, "rm -rf %s", dir);
  if (system(rm) != 0)
    fprintf(stderr, "cannot remove %s\n", dir);
  return tl_summary();
}
