/* pl_limits: the caps and counts connections share, without sockets. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "net/pl_limits.h"
#include "testlib.h"

static uint64_t key4(const char *ip) {
  struct sockaddr_in a = {.sin_family = AF_INET};
  inet_pton(AF_INET, ip, &a.sin_addr);
  return pl_limits_key((struct sockaddr *)&a);
}

static uint64_t key6(const char *ip) {
  struct sockaddr_in6 a = {.sin6_family = AF_INET6};
  inet_pton(AF_INET6, ip, &a.sin6_addr);
  return pl_limits_key((struct sockaddr *)&a);
}

static void test_keys(void) {
  CHECK(key4("10.0.0.1") != 0);
  CHECK(key4("10.0.0.1") != key4("10.0.0.2"));
  CHECK_EQ_U(key6("::ffff:10.0.0.1"), key4("10.0.0.1"));             /* mapped IPv4 is that IPv4 */
  CHECK_EQ_U(key6("2001:db8:1:2::1"), key6("2001:db8:1:2:ffff::9")); /* one /64 */
  CHECK(key6("2001:db8:1:2::1") != key6("2001:db8:1:3::1"));
  CHECK(key6("::1") != 0);
}

static void test_per_address_and_total_caps(void) {
  pl_limits_config cfg = {.max_conns = 5, .max_per_ip = 3, .reserve = 1};
  pl_limits *l = pl_limits_new(&cfg);
  uint64_t a = key4("10.0.0.1"), b = key4("10.0.0.2");
  for (int i = 0; i < 3; i++)
    CHECK_EQ_I(pl_limits_admit(l, a), PL_OK);
  CHECK_EQ_I(pl_limits_admit(l, a), PL_ERR_TOO_MANY_CONNECTIONS); /* its own cap */
  CHECK_EQ_I(pl_limits_admit(l, b), PL_OK);
  CHECK_EQ_I(pl_limits_admit(l, b), PL_OK);
  CHECK_EQ_I(pl_limits_admit(l, b), PL_ERR_TOO_MANY_CONNECTIONS); /* the total */
  CHECK_EQ_I(pl_limits_spare(l), 1);                              /* the reserve: one */
  CHECK_EQ_I(pl_limits_spare(l), 0);
  pl_limits_spare_done(l);
  pl_limits_leave(l, a);
  CHECK_EQ_I(pl_limits_admit(l, a), PL_OK); /* a slot freed is a slot again */
  pl_limits_stats st;
  pl_limits_get_stats(l, &st);
  CHECK_EQ_U(st.conns, 5);
  CHECK_EQ_U(st.refused, 2);
  pl_limits_free(l);
}

static void test_memory_account(void) {
  pl_limits_config cfg = {.max_memory = 1000};
  pl_limits *l = pl_limits_new(&cfg);
  size_t c1 = 0, c2 = 0;
  pl_limits_account(l, &c1, 600);
  CHECK(!pl_limits_memory_over(l));
  pl_limits_account(l, &c2, 500);
  CHECK(pl_limits_memory_over(l));
  pl_limits_account(l, &c1, 100); /* it shrank */
  CHECK(!pl_limits_memory_over(l));
  pl_limits_account(l, &c1, 0);
  pl_limits_account(l, &c2, 0);
  pl_limits_stats st;
  pl_limits_get_stats(l, &st);
  CHECK_EQ_U(st.memory, 0);
  pl_limits_count_cut(l, PL_ERR_SLOW_CONSUMER);
  pl_limits_count_cut(l, PL_ERR_TOO_MANY_CONNECTIONS);
  pl_limits_get_stats(l, &st);
  CHECK_EQ_U(st.slow_consumers, 1);
  CHECK_EQ_U(st.memory_cuts, 1);
  pl_limits_free(l);
}

int main(void) {
  RUN(test_keys);
  RUN(test_per_address_and_total_caps);
  RUN(test_memory_account);
  return tl_summary();
}
