/* testlib: a small harness for unit and integration tests.
 *
 * A test file defines test functions and lists them in main:
 *
 *   static void test_x(void) { CHECK(1 + 1 == 2); CHECK_EQ_U(seq, 3); }
 *   int main(void) { RUN(test_x); return tl_summary(); }
 *
 * tl_summary prints "N passed, N failed" and returns the exit status. A failed
 * CHECK records the failure with file:line and ends the current test.
 *
 * Server helpers start the real parleyd (path from $PARLEYD) on a free port
 * with a fresh temp data dir, so tests talk to it over real sockets. No
 * parleyd outlives its test: a failed test's servers are killed when it
 * ends, every other one at exit or on a fatal signal, and the kernel kills
 * them if the test process dies any other way (SIGKILL, a ctest timeout). */
#ifndef TESTLIB_H
#define TESTLIB_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

extern jmp_buf tl__jmp;
extern int tl__passed, tl__failed;
void tl__fail(const char *file, int line, const char *fmt, ...);

#define CHECK(cond)                                     \
  do {                                                  \
    if (!(cond))                                        \
      tl__fail(__FILE__, __LINE__, "CHECK(%s)", #cond); \
  } while (0)
#define CHECK_EQ_U(a, b)                                                               \
  do {                                                                                 \
    unsigned long long tl_a = (unsigned long long)(a), tl_b = (unsigned long long)(b); \
    if (tl_a != tl_b)                                                                  \
      tl__fail(__FILE__, __LINE__, "%s == %s (%llu != %llu)", #a, #b, tl_a, tl_b);     \
  } while (0)
#define CHECK_EQ_I(a, b)                                                           \
  do {                                                                             \
    long long tl_a = (long long)(a), tl_b = (long long)(b);                        \
    if (tl_a != tl_b)                                                              \
      tl__fail(__FILE__, __LINE__, "%s == %s (%lld != %lld)", #a, #b, tl_a, tl_b); \
  } while (0)
#define CHECK_STR(a, b)                                                                           \
  do {                                                                                            \
    const char *tl_a = (a), *tl_b = (b);                                                          \
    if (!tl_a || !tl_b || strcmp(tl_a, tl_b) != 0)                                                \
      tl__fail(__FILE__, __LINE__, "%s == %s (\"%s\" != \"%s\")", #a, #b, tl_a ? tl_a : "(null)", \
               tl_b ? tl_b : "(null)");                                                           \
  } while (0)

void tl__run(const char *name, void (*fn)(void));
#define RUN(fn) tl__run(#fn, fn)
int tl_summary(void);

/* --- temp dirs ---------------------------------------------------------- */
/* Creates a fresh directory under $TMPDIR (or /tmp); returns a static-free string to free(). */
char *tl_tempdir(void);
void tl_rmrf(const char *dir);

/* --- the real server ----------------------------------------------------- */
typedef struct tl_server {
  pid_t pid;
  int port;
  int http_port;   /* its HTTP listener (--http) */
  char *dir;       /* data dir (kept across restarts) */
  char addr[64];   /* "127.0.0.1:PORT" */
  char extra[512]; /* extra command-line arguments, space separated */
} tl_server;

/* Starts parleyd on a free port with a new temp data dir and waits until it
 * accepts connections. extra_args may be NULL. Aborts the test on failure. */
void tl_server_start(tl_server *s, const char *extra_args);
/* Starts it again on the same port and data dir (after a kill). */
void tl_server_restart(tl_server *s);
/* Sends sig (SIGKILL, SIGTERM) and waits for exit; returns the wait status. */
int tl_server_kill(tl_server *s, int sig);
/* Stops it (SIGTERM) and removes the data dir. */
void tl_server_stop(tl_server *s);
/* Lines of the server's log (DIR.log, its stderr) that hold needle; -1
 * without a log (PARLEY_TEST_VERBOSE sends it to the terminal). */
int tl_log_count(const tl_server *s, const char *needle);

/* --- other servers a test starts (nats-server, haproxy) -------------------- */
/* A free loopback port (below the ephemeral range). Free when asked: a
 * server started on it must still be checked to hold it (tl_pid_listens). */
int tl_free_port(void);
/* Does process pid hold a listening TCP socket on port (/proc/net/tcp*'s
 * inode among /proc/PID/fd's sockets)? Not just anyone answering there. */
int tl_pid_listens(pid_t pid, int port);
/* Starts argv[0] (a path) with stderr and stdout to log, killed with the
 * test like a parleyd (on failure, at exit, on a signal, and by the kernel
 * if the test dies); dir (may be NULL) is removed with it. Returns its pid. */
pid_t tl_spawn(char *const argv[], const char *log, const char *dir);
/* Sends sig to a pid from tl_spawn; for SIGKILL/SIGTERM also reaps it. */
void tl_spawn_kill(pid_t pid, int sig);
/* Sends SIGSTOP to pid and waits until every one of its threads has
 * stopped (state T in /proc/PID/task/N/stat); fails the test if they have
 * not within timeout_ms. kill returns before that: each thread stops when
 * it next runs, and on a loaded machine one may still do some work first
 * (a nats-server forward the very message the test meant it to lose). */
#define tl_sigstop(pid, timeout_ms) tl__sigstop(__FILE__, __LINE__, pid, timeout_ms)
void tl__sigstop(const char *file, int line, pid_t pid, int timeout_ms);

/* --- what the server reports on /metrics ---------------------------------- */
/* The value of an unlabelled metric (parley_store_messages ...) read from
 * GET /metrics on s's HTTP listener, from an answer whose store gauges
 * were counted after the call began (parley_store_counted_at_ms), so they
 * hold every request the store received before (docs/operations.md): how a
 * test sees what is stored without opening the database. -1 if it cannot
 * be read within 20 s. */
long long tl_metric(const tl_server *s, const char *name);
/* Polls the metric until it equals want; fails the test (naming the last
 * value) if it does not within timeout_ms. Returns it. For what becomes
 * true a little later (an Ack is committed after the server read it; the
 * sweep deletes). */
#define tl_wait_metric(s, name, want, timeout_ms) \
  tl__wait_metric(__FILE__, __LINE__, s, name, want, timeout_ms)
long long tl__wait_metric(const char *file, int line, const tl_server *s, const char *name, long long want,
                          int timeout_ms);

/* --- raw sockets -------------------------------------------------------- */
/* Connects a blocking TCP socket to 127.0.0.1:port; -1 on failure. */
int tl_connect(int port);
/* The same from source address src ("127.0.0.2": the server sees another
 * client address; NULL: any). */
int tl_connect_from(const char *src, int port);
/* Reads until the peer closes, cap - 1 bytes arrived, or timeout_ms passed;
 * NUL-terminates buf and returns the bytes read. */
size_t tl_read_all(int fd, char *buf, size_t cap, int timeout_ms);
/* Writes all of p; 0 on success. */
int tl_write_all(int fd, const void *p, size_t n);
/* Sends one frame: header + protobuf encoding of msg (a ProtobufCMessage *). */
int tl_send_frame(int fd, uint8_t type, const void *msg);
/* Reads one frame (waits up to timeout_ms). Returns its type and the unpacked
 * message in *out (free with protobuf_c_message_free_unpacked), 0 on EOF or
 * timeout, -1 on a malformed frame. */
int tl_recv_frame(int fd, int timeout_ms, void **out);
/* While set (the default), tl_recv_frame (and everything built on it) drops
 * Receipt and ReadSync frames: tests of message delivery see the stream of
 * messages they always saw. test_receipts clears it. */
extern int tl_skip_events;
/* Reads exactly n bytes (waiting up to timeout_ms for each piece): 1, or 0
 * on EOF or timeout. */
int tl_read_n(int fd, void *p, size_t n, int timeout_ms);
/* Waits up to timeout_ms for the peer to close: 1 if closed (EOF/reset), 0 if not. */
int tl_wait_closed(int fd, int timeout_ms);

/* --- additions for the integration tests -------------------------------- */
/* Wall clock, ms since the Unix epoch. */
uint64_t tl_now_ms(void);
/* Failed tests so far (compare before and after RUN to tell whether a test failed). */
int tl_failures(void);
/* Sends sig and waits up to timeout_ms for parleyd to exit. Returns 1 and
 * stores the wait status in *status if it exited in time; else 0, after
 * killing it with SIGKILL (and reaping it). */
int tl_server_kill_wait(tl_server *s, int sig, int timeout_ms, int *status);
/* For a test that failed: prints where the server's log is (and its last
 * lines) on stderr, kills the server (SIGKILL), removes the data dir and
 * keeps the log. Does nothing for a server already stopped. */
void tl_server_abandon(tl_server *s);

/* Reads the next frame, which must be of the given type (a FrameType) and
 * arrive within timeout_ms; otherwise the test fails, naming what came
 * instead (an Error's code and message, another type, EOF or silence).
 * Returns the unpacked message (free with protobuf_c_message_free_unpacked). */
#define tl_expect(fd, type, timeout_ms) tl__expect(__FILE__, __LINE__, fd, type, timeout_ms)
void *tl__expect(const char *file, int line, int fd, int type, int timeout_ms);
/* The next frame must be an Error with this code (an ErrorCode) and ref (NULL: any ref). */
#define tl_expect_error(fd, code, ref, timeout_ms) \
  tl__expect_error(__FILE__, __LINE__, fd, code, ref, timeout_ms)
void tl__expect_error(const char *file, int line, int fd, int code, const char *ref, int timeout_ms);
/* Runs test fn (tl__run) on a server it starts in srv; afterwards stops srv,
 * or keeps its log (tl_server_abandon) if the test failed. */
void tl_run_server(tl_server *srv, const char *name, void (*fn)(void));
/* Nothing (but Pongs and, while tl_skip_events, receipts) arrives on fd
 * within quiet_ms; otherwise the test fails naming what came. */
#define tl_expect_nothing(fd, quiet_ms) tl__expect_nothing(__FILE__, __LINE__, fd, quiet_ms)
void tl__expect_nothing(const char *file, int line, int fd, int quiet_ms);
/* A FrameType's name, for messages ("Welcome", "type 200"); static storage. */
const char *tl_frame_name(int type);

#endif
