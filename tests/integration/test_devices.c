/* Token lifetimes and the device list (security audit, finding 11), against
 * the real parleyd. (A data dir from before token lifetimes:
 * tests/unit/test_store_data.c.) */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "rawcl.h"

#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1 --login-rate 0"

static tl_server srv;

static int login_on(const char *dev, char tok[128]) {
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(fd, PARLEY__FRAME_TYPE__FRAME_LOGIN, "alice", "alice-secret", dev, tok), 0);
  return fd;
}

/* Resume on a new connection; returns 0 or the Error's code. */
static int resume(const char *tok) {
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  int code = rc_resume(fd, tok);
  close(fd);
  return code;
}

static void sleep_until(uint64_t t) {
  uint64_t now = tl_now_ms();
  if (now < t)
    usleep((useconds_t)(t - now) * 1000u);
}

/* --token-idle-ttl 4 --token-max-ttl 6: a token unused for 4 s stops
 * working; one used every 2 s works until 6 s after its login, then stops. */
static void test_tokens_expire(void) {
  char a[128], b[128];
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(fd, PARLEY__FRAME_TYPE__FRAME_REGISTER, "alice", "alice-secret", "a", a), 0);
  close(fd);
  close(login_on("b", b));
  /* Lifetimes are the clock's: these waits are for time to pass. t0 is
   * taken once b's login has answered, so b was issued (and a last used)
   * before it however slow the login was on a loaded machine. */
  uint64_t t0 = tl_now_ms();
  sleep_until(t0 + 2000);
  CHECK_EQ_I(resume(b), 0);
  sleep_until(t0 + 4000);
  CHECK_EQ_I(resume(b), 0); /* used 2 s ago: still good */
  sleep_until(t0 + 4500);
  CHECK_EQ_I(resume(a), PARLEY__ERROR_CODE__ERR_BAD_TOKEN); /* unused for 4.5 s */
  sleep_until(t0 + 6500);
  CHECK_EQ_I(resume(b), PARLEY__ERROR_CODE__ERR_BAD_TOKEN); /* used 2.5 s ago, but issued 6.5 s ago */
  /* a login issues a fresh one */
  close(login_on("b", b));
  CHECK_EQ_I(resume(b), 0);
}

static void send_devices(int fd, int op, const char *device, const char *ref) {
  Parley__Devices d = PARLEY__DEVICES__INIT;
  d.op = (Parley__DevicesOp)op;
  d.device = (char *)device;
  d.ref = (char *)ref;
  CHECK(tl_send_frame(fd, PARLEY__FRAME_TYPE__FRAME_DEVICES, &d) == 0);
}

static Parley__DeviceList *devices(int fd, int op, const char *device, const char *ref) {
  send_devices(fd, op, device, ref);
  Parley__DeviceList *dl = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_DEVICE_LIST, 10000);
  CHECK_STR(dl->ref, ref);
  return dl;
}

static const Parley__DeviceInfo *find(const Parley__DeviceList *dl, const char *name) {
  for (size_t i = 0; i < dl->n_devices; i++)
    if (!strcmp(dl->devices[i]->name, name))
      return dl->devices[i];
  return NULL;
}

/* alice on two devices: she lists them, revokes the other; its connection
 * closes and its token no longer resumes; mistakes change nothing. */
static void test_list_and_revoke(void) {
  char tp[128], tl[128], tt[128], tw[128];
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(fd, PARLEY__FRAME_TYPE__FRAME_REGISTER, "alice", "alice-secret", "phone", tp), 0);
  int laptop = login_on("laptop", tl);
  Parley__DeviceList *dl = devices(fd, PARLEY__DEVICES_OP__DEVICES_LIST, "", "l1");
  CHECK_EQ_U(dl->n_devices, 2);
  const Parley__DeviceInfo *p = find(dl, "phone"), *l = find(dl, "laptop");
  CHECK(p && l);
  CHECK(p->current && !l->current);
  CHECK(p->online && l->online);
  CHECK(p->created > 0 && l->last_used >= l->created);
  CHECK_EQ_U(dl->n_revoked, 0);
  protobuf_c_message_free_unpacked(&dl->base, NULL);

  /* mistakes: an unknown name, this device's own name */
  send_devices(fd, PARLEY__DEVICES_OP__DEVICES_REVOKE, "toaster", "bad1");
  tl_expect_error(fd, PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT, "bad1", 10000);
  send_devices(fd, PARLEY__DEVICES_OP__DEVICES_REVOKE, "phone", "bad2");
  tl_expect_error(fd, PARLEY__ERROR_CODE__ERR_INVALID_ARGUMENT, "bad2", 10000);
  CHECK_EQ_I(resume(tl), 0);
  close(laptop);
  laptop = login_on("laptop", tl);

  dl = devices(fd, PARLEY__DEVICES_OP__DEVICES_REVOKE, "laptop", "r1");
  CHECK_EQ_U(dl->n_devices, 1);
  CHECK(find(dl, "phone") != NULL);
  CHECK_EQ_U(dl->n_revoked, 1);
  CHECK_STR(dl->revoked[0], "laptop");
  protobuf_c_message_free_unpacked(&dl->base, NULL);
  CHECK(tl_wait_closed(laptop, 10000));
  close(laptop);
  CHECK_EQ_I(resume(tl), PARLEY__ERROR_CODE__ERR_BAD_TOKEN);

  /* all the others at once */
  close(login_on("tablet", tt));
  close(login_on("watch", tw));
  dl = devices(fd, PARLEY__DEVICES_OP__DEVICES_REVOKE_OTHERS, "", "r2");
  CHECK_EQ_U(dl->n_devices, 1);
  CHECK_EQ_U(dl->n_revoked, 2);
  protobuf_c_message_free_unpacked(&dl->base, NULL);
  CHECK_EQ_I(resume(tt), PARLEY__ERROR_CODE__ERR_BAD_TOKEN);
  CHECK_EQ_I(resume(tw), PARLEY__ERROR_CODE__ERR_BAD_TOKEN);
  close(fd);
  CHECK_EQ_I(resume(tp), 0); /* the asking device is untouched */
}

int main(void) {
  tl_server_start(&srv, FAST " --token-idle-ttl 4 --token-max-ttl 6");
  tl_run_server(&srv, "test_tokens_expire", test_tokens_expire);
  tl_server_start(&srv, FAST);
  tl_run_server(&srv, "test_list_and_revoke", test_list_and_revoke);
  return tl_summary();
}
