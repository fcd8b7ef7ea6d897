/* The sensitive-word filter in the real parleyd (--filter-words): reject
 * answers ERR_FILTERED and stores nothing, mask delivers the masked text
 * (also Chinese and mixed), SIGHUP reloads the list without a restart, and
 * a bad list on reload keeps the old one. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rawcl.h"
#include "testlib.h"

#define T_MS 10000

static tl_server srv;
static char words[600];

static void write_words(const char *text) {
  FILE *fp = fopen(words, "w");
  CHECK(fp != NULL);
  fputs(text, fp);
  fclose(fp);
}

static int reg(const char *user) {
  char tok[128];
  int fd = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_MOBILE);
  CHECK_EQ_I(rc_auth(fd, PARLEY__FRAME_TYPE__FRAME_REGISTER, user, "secret-pass", "phone", tok), 0);
  return fd;
}

/* Sends body; returns 0 if stored, else the Error code. */
static int send_body(int fd, const char *id, const char *body) {
  int err = 0;
  uint64_t seq = rc_send_wait(fd, id, "bob", body, &err);
  return seq ? 0 : err;
}

static void expect_body(int fd, const char *want) {
  Parley__Message *m = tl_expect(fd, PARLEY__FRAME_TYPE__FRAME_MESSAGE, T_MS);
  if (!m)
    return;
  char got[512];
  snprintf(got, sizeof got, "%.*s", (int)m->body.len, (const char *)m->body.data);
  CHECK_STR(got, want);
  rc_ack(fd, m->qid);
  protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* SIGHUP, then waits until the reload is done: the server's main thread
 * logs "N entries" once the new list is in use, or, for a list it cannot
 * read, that it keeps the old one. */
static void hup(const char *said) {
  int before = tl_log_count(&srv, said);
  CHECK(before >= 0); /* (not under PARLEY_TEST_VERBOSE: the log is the terminal) */
  CHECK_EQ_I(kill(srv.pid, SIGHUP), 0);
  uint64_t until = tl_now_ms() + T_MS;
  while (tl_log_count(&srv, said) == before && tl_now_ms() < until)
    usleep(10 * 1000);
  CHECK(tl_log_count(&srv, said) > before);
}

static void test_filter_words(void) {
  char *dir = tl_tempdir(), args[800];
  snprintf(words, sizeof words, "%s/words.txt", dir);
  write_words("# the list\npills\nbadword\tmask\n敏感词\tmask\n");
  snprintf(args, sizeof args, "--threads 2 --argon2-mem 8 --argon2-ops 1 --filter-words %s", words);
  tl_server_start(&srv, args);
  int a = reg("alice"), b = reg("bob");
  CHECK_EQ_I(send_body(a, "1", "cheap PILLS here"), PARLEY__ERROR_CODE__ERR_FILTERED);
  CHECK_EQ_I(tl_metric(&srv, "parley_store_messages"), 0); /* nothing stored */
  CHECK_EQ_I(send_body(a, "2", "you are a BADword!"), 0);
  expect_body(b, "you are a *******!");
  CHECK_EQ_I(send_body(a, "3", "这是敏感词测试 ok"), 0);
  expect_body(b, "这是***测试 ok");
  CHECK_EQ_I(send_body(a, "4", "clean"), 0);
  expect_body(b, "clean");

  write_words("newword\n");
  hup(" entries");
  CHECK_EQ_I(send_body(a, "5", "pills are fine now"), 0);
  expect_body(b, "pills are fine now");
  CHECK_EQ_I(send_body(a, "6", "a NewWord"), PARLEY__ERROR_CODE__ERR_FILTERED);

  write_words("fine\nbroken\tmaskk\n");
  hup("keeping the list in use");
  CHECK_EQ_I(send_body(a, "7", "a newword again"), PARLEY__ERROR_CODE__ERR_FILTERED); /* old list kept */
  CHECK_EQ_I(send_body(a, "8", "fine"), 0);
  expect_body(b, "fine");
  close(a);
  close(b);
  tl_rmrf(dir);
  free(dir);
}

/* A bad list at start-up: parleyd refuses to start and says why. */
static void test_bad_list_at_start(void) {
  char *dir = tl_tempdir(), cmd[2000];
  snprintf(words, sizeof words, "%s/words.txt", dir);
  write_words("ok\nbad\tpolicy\n");
  snprintf(cmd, sizeof cmd, "%s --data %s/data --listen 127.0.0.1:0 --filter-words %s 2>%s/err.txt",
           getenv("PARLEYD"), dir, words, dir);
  int rc = system(cmd);
  CHECK(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) != 0);
  snprintf(cmd, sizeof cmd, "grep -q 'line 2: unknown policy' %s/err.txt", dir);
  CHECK_EQ_I(system(cmd), 0);
  tl_rmrf(dir);
  free(dir);
}

int main(void) {
  tl_run_server(&srv, "filter_words", test_filter_words);
  RUN(test_bad_list_at_start);
  return tl_summary();
}
