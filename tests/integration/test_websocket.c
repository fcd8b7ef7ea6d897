/* The HTTP listener and the WebSocket binding against the real parleyd, in raw
 * bytes: the opening handshake (RFC 6455 4.2) and its refusals; a session over
 * WebSocket talking to one over native TCP; and the RFC's failure cases, each
 * answered with the close code section 7.4.1 gives (the categories of the
 * Autobahn suite: masking, reserved bits and opcodes, control frames,
 * fragmentation, UTF-8, sizes, close codes). Also plain HTTP: keep-alive,
 * pipelining, limits, /healthz and /metrics. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/pl_frame.h"
#include "testlib.h"

#define FAST "--threads 2 --argon2-mem 8 --argon2-ops 1"
#define T_MS 5000

enum {
  HELLO = PARLEY__FRAME_TYPE__FRAME_HELLO,
  WELCOME = PARLEY__FRAME_TYPE__FRAME_WELCOME,
  REGISTER = PARLEY__FRAME_TYPE__FRAME_REGISTER,
  AUTH_OK = PARLEY__FRAME_TYPE__FRAME_AUTH_OK,
  SEND = PARLEY__FRAME_TYPE__FRAME_SEND,
  SEND_ACK = PARLEY__FRAME_TYPE__FRAME_SEND_ACK,
  MESSAGE = PARLEY__FRAME_TYPE__FRAME_MESSAGE,
  PING = PARLEY__FRAME_TYPE__FRAME_PING,
  PONG = PARLEY__FRAME_TYPE__FRAME_PONG,
  ERROR = PARLEY__FRAME_TYPE__FRAME_ERROR,
};
enum { OP_CONT = 0, OP_TEXT = 1, OP_BIN = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

static tl_server srv;

/* ---- raw HTTP ----------------------------------------------------------- */

/* Reads until the peer has sent a whole response head (and its body when it
 * gives a Content-Length), or closes, or timeout. Returns the bytes read. */
static size_t read_response(int fd, char *buf, size_t cap) {
  size_t n = 0;
  uint64_t until = tl_now_ms() + T_MS;
  while (n + 1 < cap && tl_now_ms() < until) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 100) <= 0)
      continue;
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r <= 0)
      break;
    n += (size_t)r;
    buf[n] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (!end)
      continue;
    const char *cl = strstr(buf, "Content-Length: ");
    size_t body = cl && cl < end ? (size_t)atol(cl + 16) : 0;
    if (n >= (size_t)(end + 4 - buf) + body)
      break;
  }
  buf[n] = '\0';
  return n;
}

static int http_request(int port, const char *req, char *resp, size_t cap) {
  int fd = tl_connect(port);
  CHECK(fd >= 0);
  CHECK(tl_write_all(fd, req, strlen(req)) == 0);
  read_response(fd, resp, cap);
  return fd;
}

#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="

/* Opens a WebSocket at /ws; the 101 must come. */
static int ws_open(int port) {
  char req[512], resp[2048];
  snprintf(req, sizeof req,
           "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Protocol: parley.proto.v1\r\n\r\n");
  int fd = http_request(port, req, resp, sizeof resp);
  CHECK(strncmp(resp, "HTTP/1.1 101 ", 13) == 0);
  return fd;
}

/* ---- raw WebSocket frames ------------------------------------------------ */

static void ws_frame(int fd, int fin, int rsv, int op, int masked, const void *p, size_t n) {
  uint8_t h[14], mask[4] = {0x12, 0x34, 0x56, 0x78};
  size_t hl = 0;
  h[hl++] = (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | op);
  uint8_t m = masked ? 0x80 : 0;
  if (n < 126) {
    h[hl++] = (uint8_t)(m | n);
  } else if (n < 65536) {
    h[hl++] = m | 126;
    h[hl++] = (uint8_t)(n >> 8);
    h[hl++] = (uint8_t)n;
  } else {
    h[hl++] = m | 127;
    for (int i = 7; i >= 0; i--)
      h[hl++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  if (masked) {
    memcpy(h + hl, mask, 4);
    hl += 4;
  }
  uint8_t *buf = malloc(hl + n + 1);
  memcpy(buf, h, hl);
  for (size_t i = 0; i < n; i++)
    buf[hl + i] = ((const uint8_t *)p)[i] ^ (masked ? mask[i % 4] : 0);
  CHECK(tl_write_all(fd, buf, hl + n) == 0);
  free(buf);
}

static int read_exact(int fd, uint8_t *p, size_t n, uint64_t until) {
  size_t got = 0;
  while (got < n) {
    int left = (int)(until > tl_now_ms() ? until - tl_now_ms() : 0);
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    if (left <= 0 || poll(&pf, 1, left) <= 0)
      return 0;
    ssize_t r = read(fd, p + got, n - got);
    if (r <= 0)
      return 0;
    got += (size_t)r;
  }
  return 1;
}

/* One frame from the server (which never masks): 1, or 0 on EOF/timeout. */
static int ws_read(int fd, int *op, pl_bytes *payload) {
  uint64_t until = tl_now_ms() + T_MS;
  uint8_t h[8];
  payload->len = 0;
  if (!read_exact(fd, h, 2, until))
    return 0;
  CHECK((h[0] & 0x80) != 0); /* the server sends no fragments */
  CHECK((h[1] & 0x80) == 0); /* nor masks */
  *op = h[0] & 0x0f;
  uint64_t n = h[1] & 0x7f;
  if (n == 126) {
    if (!read_exact(fd, h, 2, until))
      return 0;
    n = (uint64_t)h[0] << 8 | h[1];
  } else if (n == 127) {
    if (!read_exact(fd, h, 8, until))
      return 0;
    n = 0;
    for (int i = 0; i < 8; i++)
      n = n << 8 | h[i];
  }
  pl_bytes_reserve(payload, (size_t)n + 1);
  if (n && !read_exact(fd, payload->p, (size_t)n, until))
    return 0;
  payload->len = (size_t)n;
  return 1;
}

/* The server's close frame: its code (0 if it sent none, -1 if no close came). */
static int ws_close_code(int fd) {
  pl_bytes b = {0};
  int op, code = -1;
  while (ws_read(fd, &op, &b)) {
    if (op == OP_CLOSE) {
      code = b.len >= 2 ? b.p[0] << 8 | b.p[1] : 0;
      break;
    }
  }
  pl_bytes_free(&b);
  return code;
}

static void ws_send_native(int fd, int type, const void *msg) {
  pl_bytes b = {0};
  pl_frame_append(&b, (uint8_t)type, (const ProtobufCMessage *)msg);
  ws_frame(fd, 1, 0, OP_BIN, 1, b.p, b.len);
  pl_bytes_free(&b);
}

/* The next binary message must be one native frame of this type. */
static void *ws_expect_native(int fd, int type) {
  pl_bytes b = {0};
  int op = -1;
  void *msg = NULL;
  while (ws_read(fd, &op, &b) && op != OP_BIN)
    ;
  CHECK_EQ_I(op, OP_BIN);
  pl_frame f;
  size_t used = 0;
  CHECK_EQ_I(pl_frame_parse(b.p, b.len, 1u << 20, &f, &used), PL_OK);
  CHECK_EQ_U(used, b.len); /* one frame per message */
  if (f.type != type)
    fprintf(stderr, "     expected %s, got %s\n", tl_frame_name(type), tl_frame_name(f.type));
  CHECK_EQ_I(f.type, type);
  msg = pl_frame_unpack(&f);
  CHECK(msg != NULL);
  pl_bytes_free(&b);
  return msg;
}

static void ws_hello(int fd) {
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = 1;
  h.kind = PARLEY__CLIENT_KIND__KIND_WEB;
  h.client_name = "test_websocket";
  ws_send_native(fd, HELLO, &h);
  protobuf_c_message_free_unpacked(ws_expect_native(fd, WELCOME), NULL);
}

/* ---- the handshake ------------------------------------------------------- */

static void test_handshake_accept_and_subprotocol(void) {
  char resp[2048];
  int fd =
      http_request(srv.http_port,
                   "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
                   "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Protocol: chat, parley.proto.v1\r\n\r\n",
                   resp, sizeof resp);
  CHECK(strncmp(resp, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0);
  CHECK(strstr(resp, "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") !=
        NULL); /* RFC 6455 1.3 */
  CHECK(strstr(resp, "\r\nSec-WebSocket-Protocol: parley.proto.v1\r\n") != NULL);
  CHECK(strstr(resp, "\r\nUpgrade: websocket\r\n") != NULL);
  close(fd);
  /* No subprotocol asked: accepted, none named (binary is the default). */
  fd = http_request(srv.http_port,
                    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    resp, sizeof resp);
  CHECK(strncmp(resp, "HTTP/1.1 101 ", 13) == 0);
  CHECK(strstr(resp, "Sec-WebSocket-Protocol") == NULL);
  ws_hello(fd);
  close(fd);
}

static void refused(const char *what, const char *req, const char *status_line, const char *header) {
  char resp[2048];
  fprintf(stderr, "     case: %s\n", what);
  int fd = http_request(srv.http_port, req, resp, sizeof resp);
  CHECK(strncmp(resp, status_line, strlen(status_line)) == 0);
  if (header)
    CHECK(strstr(resp, header) != NULL);
  CHECK(strstr(resp, "\r\nConnection: close\r\n") != NULL);
  CHECK(tl_wait_closed(fd, T_MS));
  close(fd);
}

static void test_handshake_refusals(void) {
  refused("no key",
          "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Version: 13\r\n\r\n",
          "HTTP/1.1 400 ", NULL);
  refused("a key that is not 16 bytes of base64",
          "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: aGVsbG8=\r\nSec-WebSocket-Version: 13\r\n\r\n",
          "HTTP/1.1 400 ", NULL);
  refused("version 8",
          "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 8\r\n\r\n",
          "HTTP/1.1 426 ", "\r\nSec-WebSocket-Version: 13\r\n");
  refused("no Host",
          "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
          "HTTP/1.1 400 ", NULL);
  refused("POST",
          "POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n"
          "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
          "HTTP/1.1 400 ", NULL);
  refused("another path",
          "GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
          "HTTP/1.1 404 ", NULL);
}

/* ---- a session over WebSocket, a peer over TCP --------------------------- */

static void test_ws_session_talks_to_tcp_session(void) {
  int ws = ws_open(srv.http_port);
  ws_hello(ws);
  Parley__Register r = PARLEY__REGISTER__INIT;
  r.user = "wendy", r.password = "wendy-password", r.device = "browser";
  ws_send_native(ws, REGISTER, &r);
  protobuf_c_message_free_unpacked(ws_expect_native(ws, AUTH_OK), NULL);

  int tcp = tl_connect(srv.port);
  CHECK(tcp >= 0);
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = 1;
  h.kind = PARLEY__CLIENT_KIND__KIND_MOBILE;
  CHECK(tl_send_frame(tcp, HELLO, &h) == 0);
  protobuf_c_message_free_unpacked(tl_expect(tcp, WELCOME, T_MS), NULL);
  r.user = "tom", r.password = "tom-password", r.device = "phone";
  CHECK(tl_send_frame(tcp, REGISTER, &r) == 0);
  protobuf_c_message_free_unpacked(tl_expect(tcp, AUTH_OK, 10000), NULL);

  Parley__Send s = PARLEY__SEND__INIT;
  s.id = "t1", s.to = "wendy", s.body.data = (uint8_t *)"hi from tcp", s.body.len = 11;
  CHECK(tl_send_frame(tcp, SEND, &s) == 0);
  protobuf_c_message_free_unpacked(tl_expect(tcp, SEND_ACK, T_MS), NULL);
  Parley__Message *m = ws_expect_native(ws, MESSAGE);
  CHECK_STR(m->from, "tom");
  CHECK_EQ_U(m->body.len, 11);
  CHECK(memcmp(m->body.data, "hi from tcp", 11) == 0);
  protobuf_c_message_free_unpacked(&m->base, NULL);

  s.id = "w1", s.to = "tom", s.body.data = (uint8_t *)"hi from the web", s.body.len = 15;
  ws_send_native(ws, SEND, &s);
  Parley__SendAck *a = ws_expect_native(ws, SEND_ACK);
  CHECK_STR(a->id, "w1");
  protobuf_c_message_free_unpacked(&a->base, NULL);
  m = tl_expect(tcp, MESSAGE, T_MS);
  CHECK_STR(m->from, "wendy");
  CHECK_STR(m->from_device, "browser");
  CHECK(m->body.len == 15 && memcmp(m->body.data, "hi from the web", 15) == 0);
  protobuf_c_message_free_unpacked(&m->base, NULL);

  char resp[32768];
  int fd = http_request(srv.http_port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof resp);
  CHECK(strncmp(resp, "HTTP/1.1 200 ", 13) == 0);
  CHECK(strstr(resp, "\nparley_connections{transport=\"ws\"} 1\n") != NULL);
  CHECK(strstr(resp, "\nparley_connections{transport=\"tcp\"} 1\n") != NULL);
  CHECK(strstr(resp, "\nparley_connections{transport=\"lp\"} 0\n") != NULL);
  /* two live deliveries (one each way), each within 10 s of its commit */
  CHECK(strstr(resp, "\nparley_delivery_seconds_count 2\n") != NULL);
  CHECK(strstr(resp, "\nparley_delivery_seconds_bucket{le=\"10\"} 2\n") != NULL);
  static const char batch_count[] = "\nparley_store_batch_requests_count ";
  const char *batches = strstr(resp, batch_count);
  CHECK(batches && atoi(batches + sizeof batch_count - 1) >= 4); /* registers, sends, acks, ... */
  CHECK(strstr(resp, "\nparley_store_queue_depth 0\n") != NULL);
  close(fd);
  /* A WebSocket close is answered with a close, then the TCP close. */
  uint8_t bye[] = {0x03, 0xe8, 'b', 'y', 'e'};
  ws_frame(ws, 1, 0, OP_CLOSE, 1, bye, sizeof bye);
  CHECK_EQ_I(ws_close_code(ws), 1000);
  CHECK(tl_wait_closed(ws, T_MS));
  close(ws);
  close(tcp);
}

/* A native Ping in three fragments with a WebSocket ping between them. */
static void test_fragments_and_interleaved_ping(void) {
  int fd = ws_open(srv.http_port);
  ws_hello(fd);
  pl_bytes b = {0};
  Parley__Ping p = PARLEY__PING__INIT;
  p.client_ts = 424242;
  pl_frame_append(&b, PING, &p.base);
  CHECK(b.len >= 3);
  ws_frame(fd, 0, 0, OP_BIN, 1, b.p, 1);
  ws_frame(fd, 1, 0, OP_PING, 1, "hi", 2);
  ws_frame(fd, 0, 0, OP_CONT, 1, b.p + 1, 1);
  ws_frame(fd, 1, 0, OP_CONT, 1, b.p + 2, b.len - 2);
  pl_bytes_free(&b);
  int op;
  CHECK(ws_read(fd, &op, &b));
  CHECK_EQ_I(op, OP_PONG);
  CHECK(b.len == 2 && memcmp(b.p, "hi", 2) == 0);
  pl_bytes_free(&b);
  Parley__Pong *pong = ws_expect_native(fd, PONG);
  CHECK_EQ_U(pong->client_ts, 424242);
  protobuf_c_message_free_unpacked(&pong->base, NULL);
  close(fd);
}

/* ---- what the RFC says to fail ------------------------------------------- */

static void fails_with(const char *what, int code, void (*bad)(int fd)) {
  fprintf(stderr, "     case: %s -> %d\n", what, code);
  int fd = ws_open(srv.http_port);
  bad(fd);
  CHECK_EQ_I(ws_close_code(fd), code);
  CHECK(tl_wait_closed(fd, T_MS));
  close(fd);
}

static void bad_unmasked(int fd) { ws_frame(fd, 1, 0, OP_BIN, 0, "\0\0\0\1\1", 5); }
static void bad_rsv(int fd) { ws_frame(fd, 1, 2, OP_BIN, 1, "\0\0\0\1\1", 5); }
static void bad_opcode(int fd) { ws_frame(fd, 1, 0, 3, 1, "x", 1); }
static void bad_control_opcode(int fd) { ws_frame(fd, 1, 0, 11, 1, "x", 1); }
static void bad_long_ping(int fd) {
  char p[126];
  memset(p, 'p', sizeof p);
  ws_frame(fd, 1, 0, OP_PING, 1, p, sizeof p);
}
static void bad_fragmented_ping(int fd) { ws_frame(fd, 0, 0, OP_PING, 1, "x", 1); }
static void bad_lone_continuation(int fd) { ws_frame(fd, 1, 0, OP_CONT, 1, "x", 1); }
static void bad_data_inside_fragments(int fd) {
  ws_frame(fd, 0, 0, OP_BIN, 1, "\0\0", 2);
  ws_frame(fd, 1, 0, OP_BIN, 1, "\0\1\1", 3);
}
static void bad_utf8(int fd) { ws_frame(fd, 1, 0, OP_TEXT, 1, "ok \xc3\x28", 5); }
static void bad_utf8_split(int fd) { /* a valid start, then a surrogate in the second fragment */
  ws_frame(fd, 0, 0, OP_TEXT, 1, "caf\xc3\xa9 ", 6);
  ws_frame(fd, 1, 0, OP_CONT, 1, "\xed\xa0\x80", 3);
}
static void text_without_json(int fd) { ws_frame(fd, 1, 0, OP_TEXT, 1, "{\"type\":\"ping\"}", 15); }
static void too_big(int fd) {
  size_t n = 4096; /* the server runs with --max-frame 1024 */
  uint8_t *p = calloc(1, n);
  ws_frame(fd, 1, 0, OP_BIN, 1, p, n);
  free(p);
}
static void close_1005(int fd) { ws_frame(fd, 1, 0, OP_CLOSE, 1, "\x03\xed", 2); }
static void close_999(int fd) { ws_frame(fd, 1, 0, OP_CLOSE, 1, "\x03\xe7", 2); }
static void close_one_byte(int fd) { ws_frame(fd, 1, 0, OP_CLOSE, 1, "\x03", 1); }
static void close_bad_reason(int fd) { ws_frame(fd, 1, 0, OP_CLOSE, 1, "\x03\xe8\xff", 3); }
static void close_4000(int fd) { ws_frame(fd, 1, 0, OP_CLOSE, 1, "\x0f\xa0", 2); }
static void close_empty(int fd) { ws_frame(fd, 1, 0, OP_CLOSE, 1, "", 0); }

static void test_protocol_violations_get_rfc_close_codes(void) {
  fails_with("unmasked client frame", 1002, bad_unmasked);
  fails_with("reserved bit without an extension", 1002, bad_rsv);
  fails_with("reserved data opcode 3", 1002, bad_opcode);
  fails_with("reserved control opcode 11", 1002, bad_control_opcode);
  fails_with("ping with 126 bytes", 1002, bad_long_ping);
  fails_with("fragmented ping", 1002, bad_fragmented_ping);
  fails_with("continuation with nothing to continue", 1002, bad_lone_continuation);
  fails_with("a new message inside a fragmented one", 1002, bad_data_inside_fragments);
  fails_with("invalid UTF-8 in a text message", 1007, bad_utf8);
  fails_with("a surrogate in a text message's second fragment", 1007, bad_utf8_split);
  fails_with("text without the JSON subprotocol", 1003, text_without_json);
  fails_with("a message above the size limit", 1009, too_big);
  fails_with("close code 1005 (reserved)", 1002, close_1005);
  fails_with("close code 999", 1002, close_999);
  fails_with("close with a one-byte body", 1002, close_one_byte);
  fails_with("close reason that is not UTF-8", 1007, close_bad_reason);
  fails_with("close 4000 (private use) is echoed", 4000, close_4000);
  fails_with("close without a code is answered without one", 0, close_empty);
}

/* A binary message must hold exactly one native frame. */
static void test_binary_message_not_one_frame(void) {
  int fd = ws_open(srv.http_port);
  ws_hello(fd);
  pl_bytes b = {0};
  Parley__Ping p = PARLEY__PING__INIT;
  pl_frame_append(&b, PING, &p.base);
  pl_bytes_append(&b, "x", 1);
  ws_frame(fd, 1, 0, OP_BIN, 1, b.p, b.len);
  pl_bytes_free(&b);
  Parley__Error *e = ws_expect_native(fd, ERROR);
  CHECK_EQ_I(e->code, PARLEY__ERROR_CODE__ERR_BAD_FRAME);
  protobuf_c_message_free_unpacked(&e->base, NULL);
  CHECK_EQ_I(ws_close_code(fd), 1000);
  CHECK(tl_wait_closed(fd, T_MS));
  close(fd);
  char resp[32768];
  fd = http_request(srv.http_port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof resp);
  CHECK(strstr(resp, "\nparley_errors_total{code=\"ERR_BAD_FRAME\"} 1\n") != NULL);
  CHECK(strstr(resp, "\nparley_errors_total{code=\"ERR_UNKNOWN_PEER\"} 0\n") != NULL);
  close(fd);
}

/* ---- plain HTTP ------------------------------------------------------------ */

static void test_http_keepalive_pipelining_and_limits(void) {
  char resp[8192];
  /* two requests in one write: two answers, in order, on one connection */
  int fd = http_request(srv.http_port,
                        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n", resp,
                        sizeof resp);
  CHECK(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
  CHECK(strstr(resp, "\r\n\r\nok\n") != NULL);
  char *second = strstr(resp, "ok\n");
  if (!second || !strstr(second, "HTTP/1.1 404 "))
    read_response(fd, resp, sizeof resp), second = resp;
  CHECK(strstr(second, "HTTP/1.1 404 Not Found\r\n") != NULL);
  CHECK(strstr(second, "{\"error\":\"Not Found\",\"status\":404}") != NULL);
  /* still open: a third request on the same connection */
  CHECK(tl_write_all(fd, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 35) == 0);
  read_response(fd, resp, sizeof resp);
  CHECK(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
  close(fd);

  /* HTTP/1.0 without keep-alive: closed after the answer */
  fd = http_request(srv.http_port, "GET /healthz HTTP/1.0\r\n\r\n", resp, sizeof resp);
  CHECK(strncmp(resp, "HTTP/1.1 200 ", 13) == 0);
  CHECK(tl_wait_closed(fd, T_MS));
  close(fd);

  /* headers past 16 KiB */
  size_t n = 20000;
  char *big = malloc(n + 100);
  int off = sprintf(big, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ");
  memset(big + off, 'a', n);
  strcpy(big + off + n, "\r\n\r\n");
  fd = http_request(srv.http_port, big, resp, sizeof resp);
  CHECK(strncmp(resp, "HTTP/1.1 431 ", 13) == 0);
  close(fd);
  free(big);

  /* a body past 1 MiB, refused from its Content-Length alone */
  fd = http_request(srv.http_port, "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n", resp,
                    sizeof resp);
  CHECK(strncmp(resp, "HTTP/1.1 413 ", 13) == 0);
  close(fd);

  /* garbage */
  fd = http_request(srv.http_port, "HELLO THERE\r\n\r\n", resp, sizeof resp);
  CHECK(strncmp(resp, "HTTP/1.1 400 ", 13) == 0);
  CHECK(tl_wait_closed(fd, T_MS));
  close(fd);

  fd = http_request(srv.http_port, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", resp,
                    sizeof resp);
  CHECK(strncmp(resp, "HTTP/1.1 405 ", 13) == 0);
  CHECK(strstr(resp, "\r\nAllow: GET, HEAD\r\n") != NULL);
  close(fd);

  /* the native port is not HTTP, the HTTP port is not native */
  fd = http_request(srv.http_port, "\0\0\0\1\3", resp, sizeof resp);
  close(fd);
  fd = tl_connect(srv.port);
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = 1;
  CHECK(tl_send_frame(fd, HELLO, &h) == 0);
  protobuf_c_message_free_unpacked(tl_expect(fd, WELCOME, T_MS), NULL);
  close(fd);
}

static void run(const char *name, void (*fn)(void)) {
  tl_server_start(&srv, FAST " --max-frame 1024");
  int failed = tl_failures();
  tl__run(name, fn);
  if (tl_failures() > failed)
    tl_server_abandon(&srv);
  tl_server_stop(&srv);
}

int main(void) {
  run("test_handshake_accept_and_subprotocol", test_handshake_accept_and_subprotocol);
  run("test_handshake_refusals", test_handshake_refusals);
  run("test_ws_session_talks_to_tcp_session", test_ws_session_talks_to_tcp_session);
  run("test_fragments_and_interleaved_ping", test_fragments_and_interleaved_ping);
  run("test_protocol_violations_get_rfc_close_codes", test_protocol_violations_get_rfc_close_codes);
  run("test_binary_message_not_one_frame", test_binary_message_not_one_frame);
  run("test_http_keepalive_pipelining_and_limits", test_http_keepalive_pipelining_and_limits);
  return tl_summary();
}
