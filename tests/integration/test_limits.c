/* What a connection may cost the server (security audit, findings 1 and 6),
 * against the real parleyd: clients that send and never read (Pings after
 * Hello, Hello again and again, WebSocket pings before Hello) are stopped
 * and cut with SLOW_CONSUMER while the server's memory stays bounded; a
 * connection that does not authenticate in time is closed; the cap per
 * address refuses with TOO_MANY_CONNECTIONS while /healthz and signed-in
 * users go on; unfinished big frames stay within --max-conn-memory. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/pl_frame.h"
#include "rawcl.h"
#include "testlib.h"

#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1"
/* Small budgets so that the cuts come quickly. */
#define LIMITS FAST " --max-conn-output 1048576 --slow-consumer-timeout 2"
#define T_MS 5000
#define MIB (1024.0 * 1024.0)

/* Under AddressSanitizer (make asan) the server's RSS says little: freed
 * memory waits in ASan's quarantine and every block has redzones. The
 * server's own count of what connections hold is checked either way. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif
#define RSS_CHECK(cond) CHECK(SANITIZED || (cond))

enum {
  HELLO = PARLEY__FRAME_TYPE__FRAME_HELLO,
  WELCOME = PARLEY__FRAME_TYPE__FRAME_WELCOME,
  ERROR = PARLEY__FRAME_TYPE__FRAME_ERROR,
  PING = PARLEY__FRAME_TYPE__FRAME_PING,
  PONG = PARLEY__FRAME_TYPE__FRAME_PONG,
  MESSAGE = PARLEY__FRAME_TYPE__FRAME_MESSAGE,
};

static tl_server srv;

/* ---- the server from outside ------------------------------------------- */

/* parleyd's resident memory, MiB (from /proc). */
static double rss_mib(void) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)srv.pid);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL);
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6))
      kb = atol(line + 6);
  fclose(f);
  CHECK(kb > 0);
  return (double)kb / 1024.0;
}

/* One request on the HTTP listener (body: NULL for none) answered within
 * wait_ms: the status, and the whole answer in buf. */
static int http_req_within(const char *method, const char *path, const char *body, char *buf, size_t cap,
                           int wait_ms) {
  int fd = tl_connect(srv.http_port);
  CHECK(fd >= 0);
  char req[512];
  int n = snprintf(req, sizeof req,
                   "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s", method,
                   path, body ? strlen(body) : 0, body ? body : "");
  CHECK(tl_write_all(fd, req, (size_t)n) == 0);
  tl_read_all(fd, buf, cap, wait_ms);
  close(fd);
  return strncmp(buf, "HTTP/1.1 ", 9) ? 0 : atoi(buf + 9);
}

static int http_req(const char *method, const char *path, const char *body, char *buf, size_t cap) {
  return http_req_within(method, path, body, buf, cap, T_MS);
}

static int http_get(const char *path, char *buf, size_t cap) { return http_req("GET", path, NULL, buf, cap); }

/* One value of /metrics. A loop answers an HTTP request (this one, or a
 * flooder's WebSocket upgrade) after its pass over what its other
 * connections sent; during a flood of 100 clients on a machine whose CPUs
 * are taken (make test beside stress-ng), one pass took over 5 s, so the
 * answer may take that long: what is checked is what the server holds, not
 * how fast it answers meanwhile. */
static unsigned long long metric(const char *name) {
  static char buf[1 << 17];
  CHECK_EQ_I(http_req_within("GET", "/metrics", NULL, buf, sizeof buf, 30000), 200);
  char key[128];
  snprintf(key, sizeof key, "\n%s ", name);
  const char *p = strstr(buf, key);
  CHECK(p != NULL);
  return strtoull(p + strlen(key), NULL, 10);
}

/* Waits until metric name reaches at least want. */
static void wait_metric(const char *name, unsigned long long want, int timeout_ms) {
  uint64_t until = tl_now_ms() + (uint64_t)timeout_ms;
  unsigned long long v;
  while ((v = metric(name)) < want && tl_now_ms() < until)
    usleep(100000);
  if (v < want)
    tl__fail(__FILE__, __LINE__, "%s stayed at %llu (waited for %llu)", name, v, want);
}

/* ---- clients that do not read ------------------------------------------- */

static size_t frame_bytes(uint8_t type, const ProtobufCMessage *m, uint8_t *out) {
  pl_buf *b = pl_frame_encode(type, m);
  size_t n = b->len;
  memcpy(out, b->data, n);
  pl_buf_unref(b);
  return n;
}

static size_t hello_bytes(uint8_t *out) {
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = 1;
  return frame_bytes(HELLO, &h.base, out);
}

static size_t ping_bytes(uint8_t *out) {
  Parley__Ping p = PARLEY__PING__INIT;
  p.client_ts = 1;
  return frame_bytes(PING, &p.base, out);
}

/* A masked WebSocket ping with 125 bytes (the most a control frame has);
 * a zero mask leaves the payload as it is. */
static size_t ws_ping_bytes(uint8_t *out) {
  out[0] = 0x89;
  out[1] = 0x80 | 125;
  memset(out + 2, 0, 4 + 125);
  return 2 + 4 + 125;
}

static int ws_connect(void) {
  int fd = tl_connect(srv.http_port);
  CHECK(fd >= 0);
  static const char req[] =
      "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  CHECK(tl_write_all(fd, req, sizeof req - 1) == 0);
  char head[1024];
  size_t n = 0;
  while (n + 1 < sizeof head && (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4))) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    /* byte by byte: nothing past the head; within 30 s, as metric() says why */
    CHECK(poll(&p, 1, 30000) == 1 && read(fd, head + n, 1) == 1);
    n++;
  }
  head[n] = '\0';
  CHECK(strncmp(head, "HTTP/1.1 101 ", 13) == 0);
  return fd;
}

/* A client that writes unit over and over and reads nothing. */
typedef struct flooder {
  int fd, kind; /* kind: 0 pings after Hello, 1 Hellos, 2 WebSocket pings */
  uint8_t unit[160];
  size_t n, off; /* the unit, and how much of the current one is written */
  uint64_t sent;
} flooder;

static void flooder_open(flooder *f, int kind) {
  memset(f, 0, sizeof *f);
  f->kind = kind;
  if (kind == 2) {
    f->fd = ws_connect();
    f->n = ws_ping_bytes(f->unit);
  } else {
    f->fd = tl_connect(srv.port);
    CHECK(f->fd >= 0);
    uint8_t hello[64];
    CHECK(tl_write_all(f->fd, hello, hello_bytes(hello)) == 0);
    f->n = kind == 1 ? hello_bytes(f->unit) : ping_bytes(f->unit);
  }
  fcntl(f->fd, F_SETFL, fcntl(f->fd, F_GETFL) | O_NONBLOCK);
}

/* Writes what the socket takes now; 0 if the server closed it. */
static int flooder_push(flooder *f) {
  uint8_t batch[64 * 160];
  size_t units = sizeof batch / f->n, len = units * f->n;
  for (size_t i = 0; i < units; i++)
    memcpy(batch + i * f->n, f->unit, f->n);
  for (int rounds = 0; rounds < 16; rounds++) {
    ssize_t w = send(f->fd, batch + f->off, len - f->off, MSG_NOSIGNAL);
    if (w < 0)
      return errno == EAGAIN || errno == EWOULDBLOCK;
    f->sent += (uint64_t)w;
    f->off = (f->off + (size_t)w) % f->n; /* the next write starts mid-unit, where this one stopped */
  }
  return 1;
}

/* Floods with every flooder for ms, reopening those the server closed.
 * Calls sample every 250 ms; returns the bytes the server took. */
static uint64_t flood(flooder *fs, int n, int ms, void (*sample)(void)) {
  uint64_t until = tl_now_ms() + (uint64_t)ms, next = 0, total = 0;
  struct pollfd *p = calloc((size_t)n, sizeof *p);
  while (tl_now_ms() < until) {
    for (int i = 0; i < n; i++)
      p[i] = (struct pollfd){.fd = fs[i].fd, .events = POLLOUT};
    poll(p, (nfds_t)n, 50);
    for (int i = 0; i < n; i++) {
      if (!(p[i].revents & (POLLOUT | POLLERR | POLLHUP)))
        continue;
      uint64_t before = fs[i].sent;
      int alive = flooder_push(&fs[i]);
      total += fs[i].sent - before;
      if (!alive) {
        close(fs[i].fd);
        flooder_open(&fs[i], fs[i].kind);
      }
    }
    if (sample && tl_now_ms() >= next) {
      sample();
      next = tl_now_ms() + 250;
    }
  }
  free(p);
  return total;
}

/* Everything the server sent until it closed, read in big pieces (a cut
 * connection's output waits only 5 s for its reader). */
static pl_bytes read_to_eof(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  pl_bytes all = {0};
  uint8_t buf[1 << 16];
  ssize_t r;
  struct pollfd p = {.fd = fd, .events = POLLIN};
  while (poll(&p, 1, T_MS) == 1 && (r = read(fd, buf, sizeof buf)) > 0)
    pl_bytes_append(&all, buf, (size_t)r);
  return all;
}

/* The code of the Error frame p[0..n) holds (n: its length, type byte included). */
static int error_code(const uint8_t *p, size_t n) {
  pl_frame f = {.type = ERROR, .payload = p + 1, .payload_len = (uint32_t)n - 1};
  Parley__Error *e = (Parley__Error *)pl_frame_unpack(&f);
  CHECK(e != NULL);
  int code = (int)e->code;
  protobuf_c_message_free_unpacked(&e->base, NULL);
  return code;
}

/* A native flooder's output, to the end: the last frame is Error SLOW_CONSUMER. */
static void expect_cut_native(int fd) {
  pl_bytes all = read_to_eof(fd);
  size_t off = 0, last = 0, len = 0;
  while (all.len - off >= 4) {
    len = (size_t)all.p[off] << 24 | (size_t)all.p[off + 1] << 16 | (size_t)all.p[off + 2] << 8 |
          all.p[off + 3];
    CHECK(len > 0 && off + 4 + len <= all.len);
    last = off + 4;
    off += 4 + len;
  }
  CHECK(off == all.len && len > 0);
  CHECK_EQ_I(all.p[last], ERROR);
  CHECK_EQ_I(error_code(all.p + last, len), PARLEY__ERROR_CODE__ERR_SLOW_CONSUMER);
  pl_bytes_free(&all);
}

/* A WebSocket flooder's: the last binary message is that Error, then a close. */
static void expect_cut_ws(int fd) {
  pl_bytes all = read_to_eof(fd);
  int last_code = -1, closed = 0;
  for (size_t off = 0; off + 2 <= all.len;) {
    const uint8_t *h = all.p + off;
    size_t len = h[1] & 0x7f, hl = len == 126 ? 4 : len == 127 ? 10 : 2;
    CHECK(off + hl <= all.len);
    if (hl == 4)
      len = (size_t)h[2] << 8 | h[3];
    CHECK(hl < 10 && off + hl + len <= all.len); /* the server sends nothing that long here */
    const uint8_t *p = h + hl;
    if ((h[0] & 0x0f) == 2 && len > 5 && p[4] == ERROR)
      last_code = error_code(p + 4, len - 4);
    closed |= (h[0] & 0x0f) == 8;
    off += hl + len;
  }
  pl_bytes_free(&all);
  CHECK_EQ_I(last_code, PARLEY__ERROR_CODE__ERR_SLOW_CONSUMER);
  CHECK(closed);
}

/* One client of a kind floods for a while; the server stops reading it,
 * stays small, cuts it once it has read nothing for the timeout, and tells
 * it why. */
static void flood_one(int kind) {
  double base = rss_mib();
  flooder f;
  flooder_open(&f, kind);
  struct pollfd p = {.fd = f.fd, .events = POLLOUT};
  uint64_t until = tl_now_ms() + 20000, stalled = 0;
  /* Write until the server has taken nothing for a second (it stopped
   * reading), which takes a few seconds, more when its CPUs are taken. */
  while (tl_now_ms() < until && (!stalled || tl_now_ms() - stalled < 1000)) {
    uint64_t before = f.sent;
    if (poll(&p, 1, 100) == 1)
      CHECK(flooder_push(&f));
    if (f.sent != before)
      stalled = 0;
    else if (!stalled)
      stalled = tl_now_ms();
  }
  double grown = rss_mib() - base;
  CHECK(stalled != 0);   /* the server stopped taking requests it could not answer */
  RSS_CHECK(grown < 16); /* one budget (1 MiB) and change, not hundreds of MiB */
  unsigned long long held = metric("parley_connection_memory_bytes");
  fprintf(stderr, "  kind %d: the server took %.1f MiB; its RSS grew %.1f MiB; connections hold %.2f MiB\n",
          kind, (double)f.sent / MIB, grown, (double)held / MIB);
  CHECK(held <= (1u << 20)); /* --max-conn-output here; in fact the 256 KiB mark and one read */
  wait_metric("parley_slow_consumers_total", 1, 10000);
  if (kind == 2)
    expect_cut_ws(f.fd);
  else
    expect_cut_native(f.fd);
  close(f.fd);
}

static void test_pings_without_reading_are_cut(void) { flood_one(0); }
static void test_hellos_without_reading_are_cut(void) { flood_one(1); }
static void test_ws_pings_without_reading_are_cut(void) { flood_one(2); }

/* ---- the audit's "done when": 100 clients for 30 s ------------------------ */

static double soak_base, soak_peak;
static unsigned long long soak_held;
static void soak_sample(void) {
  double r = rss_mib();
  if (r > soak_peak)
    soak_peak = r;
  unsigned long long h = metric("parley_connection_memory_bytes");
  if (h > soak_held)
    soak_held = h;
}

static void test_soak_100_clients_that_never_read(void) {
  enum { N = 100 };
  flooder fs[N];
  soak_base = soak_peak = rss_mib();
  for (int i = 0; i < N; i++)
    flooder_open(&fs[i], i % 3);
  uint64_t took = flood(fs, N, 30000, soak_sample);
  /* A cut needs a full output budget: on a machine whose CPUs are taken,
   * the server's loops may not have answered that much in 30 s. The flood
   * goes on until one is cut (the memory is sampled all along). */
  unsigned long long cuts;
  for (uint64_t until = tl_now_ms() + 60000;
       (cuts = metric("parley_slow_consumers_total")) == 0 && tl_now_ms() < until;)
    took += flood(fs, N, 1000, soak_sample);
  fprintf(stderr,
          "  30 s and more: the server took %.1f MiB; RSS %.1f -> peak %.1f MiB; connections held %.1f MiB "
          "at most; "
          "%llu slow consumers cut\n",
          (double)took / MIB, soak_base, soak_peak, (double)soak_held / MIB, cuts);
  /* operations.md §9: each holds at most --max-conn-output (1 MiB here) of
   * output and a 64 KiB read; in practice the lag mark (256 KiB) and one
   * read's answers. */
  CHECK(soak_held < N * (1u << 20));
  RSS_CHECK(soak_peak - soak_base < N * 1.0 + 32);
  CHECK(cuts > 0);
  for (int i = 0; i < N; i++)
    close(fs[i].fd);
}

/* ---- authentication deadline ------------------------------------------- */

static void test_auth_deadline_closes_idle_welcomed_connection(void) {
  int idle = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  int user = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  char token[128];
  CHECK_EQ_I(rc_auth(user, PARLEY__FRAME_TYPE__FRAME_REGISTER, "alice", "alice-secret", "d", token), 0);
  uint64_t t0 = tl_now_ms();
  /* Pings keep it from idling: only the deadline can end it. */
  Parley__Ping p = PARLEY__PING__INIT;
  int code = -1;
  while (tl_now_ms() - t0 < 8000 && code < 0) {
    CHECK(tl_send_frame(idle, PING, &p) == 0);
    void *m = NULL;
    int t = tl_recv_frame(idle, 500, &m);
    if (t == ERROR)
      code = (int)((Parley__Error *)m)->code;
    if (m)
      protobuf_c_message_free_unpacked(m, NULL);
  }
  CHECK_EQ_I(code, PARLEY__ERROR_CODE__ERR_AUTH_REQUIRED);
  CHECK(tl_wait_closed(idle, T_MS));
  close(idle);
  /* The signed-in connection is past the deadline too, and stays. */
  CHECK(tl_send_frame(user, PING, &p) == 0);
  protobuf_c_message_free_unpacked(rc_expect(user, PONG, T_MS), NULL);
  close(user);
}

/* ---- caps --------------------------------------------------------------- */

static void test_per_address_cap_keeps_healthz_and_users(void) {
  char token[128], buf[4096];
  int alice = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  int bob = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(alice, PARLEY__FRAME_TYPE__FRAME_REGISTER, "alice", "alice-secret", "d", token), 0);
  CHECK_EQ_I(rc_auth(bob, PARLEY__FRAME_TYPE__FRAME_REGISTER, "bob", "bob-secret", "d", token), 0);
  int more[6];
  for (int i = 0; i < 6; i++) /* 2 + 6 = the cap of 8 */
    more[i] = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  for (int i = 0; i < 3; i++) { /* past it: told, and closed */
    int fd = tl_connect(srv.port);
    CHECK(fd >= 0);
    tl_expect_error(fd, PARLEY__ERROR_CODE__ERR_TOO_MANY_CONNECTIONS, NULL, T_MS);
    CHECK(tl_wait_closed(fd, T_MS));
    close(fd);
  }
  CHECK(metric("parley_connections_refused_total") >= 3);
  CHECK_EQ_I(http_get("/healthz", buf, sizeof buf), 200);
  CHECK(strstr(buf, "\r\n\r\nok\n") != NULL);
  CHECK_EQ_I(http_get("/", buf, sizeof buf), 503); /* the reserve serves the probes only */
  CHECK(strstr(buf, "Retry-After: ") != NULL);
  int ws = tl_connect(srv.http_port);
  static const char up[] = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  CHECK(tl_write_all(ws, up, sizeof up - 1) == 0);
  CHECK(tl_read_n(ws, buf, 12, T_MS) && !memcmp(buf, "HTTP/1.1 503", 12));
  close(ws);
  /* Signed-in users go on. */
  int err = 0;
  CHECK(rc_send_wait(alice, "m1", "bob", "still here", &err) > 0);
  Parley__Message *msg = rc_expect(bob, MESSAGE, T_MS);
  CHECK(msg != NULL);
  CHECK(msg->body.len == 10 && !memcmp(msg->body.data, "still here", 10));
  protobuf_c_message_free_unpacked(&msg->base, NULL);
  /* A slot freed is a slot for the next one. */
  close(more[0]);
  uint64_t until = tl_now_ms() + T_MS;
  int fd = -1, t = 0;
  void *m = NULL;
  while (t != WELCOME && tl_now_ms() < until) {
    if (fd >= 0)
      close(fd);
    fd = tl_connect(srv.port);
    uint8_t hello[64];
    CHECK(fd >= 0 && tl_write_all(fd, hello, hello_bytes(hello)) == 0);
    t = tl_recv_frame(fd, T_MS, &m);
    if (m)
      protobuf_c_message_free_unpacked(m, NULL);
  }
  CHECK_EQ_I(t, WELCOME);
  close(fd);
  for (int i = 1; i < 6; i++)
    close(more[i]);
  close(alice);
  close(bob);
}

/* A native connection with its Welcome, once the server has seen earlier
 * closes (a slot is free only after the server has seen the close). */
static int open_when_free(void) {
  uint64_t until = tl_now_ms() + T_MS;
  uint8_t hello[64];
  size_t hn = hello_bytes(hello);
  for (;;) {
    int fd = tl_connect(srv.port);
    CHECK(fd >= 0 && tl_write_all(fd, hello, hn) == 0);
    void *m = NULL;
    int t = tl_recv_frame(fd, T_MS, &m);
    if (m)
      protobuf_c_message_free_unpacked(m, NULL);
    if (t == WELCOME)
      return fd;
    close(fd);
    CHECK(t == ERROR && tl_now_ms() < until);
    usleep(50000);
  }
}

/* POST /lp until the answer is not the one a connection past the cap gets
 * (503 Service Unavailable: the HTTP connection itself found no slot). */
static int post_lp(char *buf, size_t cap) {
  static const char hello[] = "[{\"type\":\"hello\",\"version\":1}]";
  uint64_t until = tl_now_ms() + T_MS;
  int st;
  while ((st = http_req("POST", "/lp", hello, buf, cap)) == 503 && strstr(buf, "Service Unavailable") &&
         tl_now_ms() < until)
    usleep(50000);
  return st;
}

/* Long-poll sessions hold no socket between requests, but count as
 * connections of their address all the same (cap: 4). */
static void test_long_poll_sessions_count_against_the_cap(void) {
  char buf[4096];
  for (int i = 0; i < 2; i++) {
    CHECK_EQ_I(post_lp(buf, sizeof buf), 200);
    CHECK(strstr(buf, "\"sid\":") != NULL);
  }
  int fd = open_when_free(); /* the third */
  /* The POST's own connection takes the fourth slot; the session it would
   * open finds none. */
  CHECK_EQ_I(post_lp(buf, sizeof buf), 503);
  CHECK(strstr(buf, "{\"error\":\"too many connections\",\"status\":503}") != NULL);
  CHECK(strstr(buf, "Retry-After: 5") != NULL);
  close(fd); /* two free: the connection and its session */
  uint64_t until = tl_now_ms() + T_MS;
  int st;
  while ((st = post_lp(buf, sizeof buf)) != 200 && tl_now_ms() < until)
    usleep(50000);
  CHECK_EQ_I(st, 200);
}

/* The audit's flood: connections from one address until the descriptors
 * would run out. Under an open-file limit of 300 the default cap is
 * 300 - 128 = 172: past it connections are refused with
 * TOO_MANY_CONNECTIONS, descriptors remain, and /healthz and a signed-in
 * pair go on. */
static void test_connection_flood_under_the_open_file_limit(void) {
  enum { N = 320 }; /* more than the server has descriptors */
  char token[128], buf[4096];
  int alice = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  int bob = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
  CHECK_EQ_I(rc_auth(alice, PARLEY__FRAME_TYPE__FRAME_REGISTER, "alice", "alice-secret", "d", token), 0);
  CHECK_EQ_I(rc_auth(bob, PARLEY__FRAME_TYPE__FRAME_REGISTER, "bob", "bob-secret", "d", token), 0);
  int fds[N], welcomed = 0, refused = 0;
  uint8_t hello[64];
  size_t hn = hello_bytes(hello);
  for (int i = 0; i < N; i++) { /* all at once, as a flood comes */
    fds[i] = tl_connect(srv.port);
    CHECK(fds[i] >= 0 && tl_write_all(fds[i], hello, hn) == 0);
  }
  for (int i = 0; i < N; i++) {
    void *m = NULL;
    int t = tl_recv_frame(fds[i], T_MS, &m);
    welcomed += t == WELCOME;
    refused += t == ERROR && ((Parley__Error *)m)->code == PARLEY__ERROR_CODE__ERR_TOO_MANY_CONNECTIONS;
    if (m)
      protobuf_c_message_free_unpacked(m, NULL);
  }
  fprintf(stderr, "  %d welcomed, %d refused\n", welcomed, refused);
  CHECK_EQ_I(welcomed + refused, N); /* every one told, none dropped for lack of descriptors */
  CHECK(welcomed <= 172 - 2 && refused >= N + 2 - 172);
  CHECK_EQ_I(http_get("/healthz", buf, sizeof buf), 200);
  int err = 0;
  CHECK(rc_send_wait(alice, "m1", "bob", "still here", &err) > 0);
  Parley__Message *msg = rc_expect(bob, MESSAGE, T_MS);
  CHECK(msg != NULL);
  protobuf_c_message_free_unpacked(&msg->base, NULL);
  for (int i = 0; i < N; i++)
    close(fds[i]);
  close(alice);
  close(bob);
}

/* ---- unfinished big frames ------------------------------------------------ */

static void test_unfinished_big_frames_stay_within_memory_bound(void) {
  enum { N = 60 };
  const size_t part = 900u << 10; /* of a 1 MiB frame that never ends */
  int fds[N];
  double base = rss_mib();
  uint8_t *body = calloc(1, part);
  body[0] = 0;
  body[1] = 0x10;
  body[2] = 0; /* a length prefix of 1 MiB, then a Ping's type byte and zeros */
  body[3] = 0;
  body[4] = PING;
  int cut = 0;
  for (int i = 0; i < N; i++) {
    fds[i] = rc_open(srv.port, PARLEY__CLIENT_KIND__KIND_BOT);
    fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    size_t off = 0;
    uint64_t until = tl_now_ms() + T_MS;
    while (off < part && tl_now_ms() < until) {
      ssize_t w = send(fds[i], body + off, part - off, MSG_NOSIGNAL);
      if (w > 0)
        off += (size_t)w;
      else if (w < 0 && errno != EAGAIN)
        break; /* cut already */
      else
        usleep(1000);
    }
  }
  free(body);
  /* 60 x 900 KiB arrived; what is kept is bounded (cut connections go
   * within the loop pass that cut them). */
  uint64_t until = tl_now_ms() + T_MS;
  double grown;
  while ((grown = rss_mib() - base) >= 40 && !SANITIZED && tl_now_ms() < until)
    usleep(100000);
  RSS_CHECK(grown < 40);
  unsigned long long mem = metric("parley_connection_memory_bytes");
  for (int i = 0; i < N; i++) {
    fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) & ~O_NONBLOCK);
    void *m = NULL;
    int t = tl_recv_frame(fds[i], 50, &m);
    if (t == ERROR && ((Parley__Error *)m)->code == PARLEY__ERROR_CODE__ERR_TOO_MANY_CONNECTIONS)
      cut++;
    if (m)
      protobuf_c_message_free_unpacked(m, NULL);
    close(fds[i]);
  }
  fprintf(stderr, "  %d of %d cut; connections hold %.1f MiB; RSS grew %.1f MiB\n", cut, N, (double)mem / MIB,
          grown);
  /* --max-conn-memory 8 MiB, and each connection past it by at most one read */
  CHECK(mem <= (8u << 20) + N * (128u << 10));
  CHECK(cut > 0);
}

/* Each test on a server of its own, with its options; "test_limits WORD"
 * runs only the tests whose name has WORD. */
static const char *only;
static void run(const char *args, const char *name, void (*fn)(void)) {
  if (only && !strstr(name, only))
    return;
  tl_server_start(&srv, args);
  tl_run_server(&srv, name, fn);
}
#define RUN_ON(args, fn) run(args, #fn, fn)

int main(int argc, char **argv) {
  only = argc > 1 ? argv[1] : NULL;
  RUN_ON(LIMITS, test_pings_without_reading_are_cut);
  RUN_ON(LIMITS, test_hellos_without_reading_are_cut);
  RUN_ON(LIMITS, test_ws_pings_without_reading_are_cut);
  RUN_ON(LIMITS " --max-conns-per-ip 1000", test_soak_100_clients_that_never_read);
  RUN_ON(FAST " --auth-timeout 2", test_auth_deadline_closes_idle_welcomed_connection);
  RUN_ON(FAST " --max-conns-per-ip 8", test_per_address_cap_keeps_healthz_and_users);
  RUN_ON(FAST " --max-conns-per-ip 4", test_long_poll_sessions_count_against_the_cap);
  RUN_ON(FAST " --max-conn-memory 8388608", test_unfinished_big_frames_stay_within_memory_bound);
  if (!only || strstr("test_connection_flood_under_the_open_file_limit", only)) {
    struct rlimit keep, low = {.rlim_cur = 300};
    getrlimit(RLIMIT_NOFILE, &keep);
    low.rlim_max = keep.rlim_max;
    setrlimit(RLIMIT_NOFILE, &low); /* for the server this starts; ours again right after */
    tl_server_start(&srv, FAST " --max-conns-per-ip 0 --auth-timeout 0");
    setrlimit(RLIMIT_NOFILE, &keep);
    tl_run_server(&srv, "test_connection_flood_under_the_open_file_limit",
                  test_connection_flood_under_the_open_file_limit);
  }
  return tl_summary();
}
