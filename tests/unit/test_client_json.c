/* The CLI's rendering helpers: strict UTF-8 validation, JSON escaping, and
 * terminal-safe text. The .c is included to test it without a library. */
#include "../../src/cli/cli_json.c"

#include "testlib.h"

/* Renders with fn and returns a NUL-terminated copy in a static buffer. */
static const char *render(void (*fn)(pl_bytes *, const void *, size_t), const char *p, size_t n) {
  static char out[512];
  pl_bytes b = {0};
  fn(&b, p, n);
  size_t len = b.len < sizeof out - 1 ? b.len : sizeof out - 1;
  memcpy(out, b.p, len);
  out[len] = '\0';
  pl_bytes_free(&b);
  return out;
}

#define JSON(lit) render(cli_json_str, lit, sizeof lit - 1)
#define TEXT(lit) render(cli_text_safe, lit, sizeof lit - 1)

static void test_utf8_valid(void) {
  uint32_t cp;
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"A", 1, &cp), 1);
  CHECK_EQ_U(cp, 'A');
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xC3\xA9", 2, &cp), 2);
  CHECK_EQ_U(cp, 0xE9);
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xE2\x82\xAC", 3, &cp), 3);
  CHECK_EQ_U(cp, 0x20AC);
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xF0\x9F\x98\x80", 4, &cp), 4);
  CHECK_EQ_U(cp, 0x1F600);
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xF4\x8F\xBF\xBF", 4, &cp), 4); /* U+10FFFF */
  CHECK_EQ_U(cp, 0x10FFFF);
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\x00", 1, &cp), 1);
  CHECK_EQ_U(cp, 0);
}

static void test_utf8_invalid(void) {
  uint32_t cp;
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"", 0, &cp), 0);
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\x80", 1, &cp), 0);             /* lone continuation */
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xC0\xAF", 2, &cp), 0);         /* overlong '/' */
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xE0\x80\xAF", 3, &cp), 0);     /* overlong, 3 bytes */
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xF0\x80\x80\xAF", 4, &cp), 0); /* overlong, 4 bytes */
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xED\xA0\x80", 3, &cp), 0);     /* surrogate U+D800 */
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xF4\x90\x80\x80", 4, &cp), 0); /* U+110000 */
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xF5\x80\x80\x80", 4, &cp), 0);
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xFF", 1, &cp), 0);
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xC3", 1, &cp), 0);         /* truncated */
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xE2\x82", 2, &cp), 0);     /* truncated */
  CHECK_EQ_U(cli_utf8_next((const uint8_t *)"\xE2\x82\x41", 3, &cp), 0); /* bad continuation */
}

static void test_json_plain(void) {
  CHECK_STR(JSON(""), "\"\"");
  CHECK_STR(JSON("hello"), "\"hello\"");
  CHECK_STR(JSON("caf\xC3\xA9 \xF0\x9F\x98\x80"), "\"caf\xC3\xA9 \xF0\x9F\x98\x80\"");
  CHECK_STR(JSON("a\x7F"), "\"a\x7F\""); /* DEL is valid in JSON strings */
}

static void test_json_escapes(void) {
  CHECK_STR(JSON("say \"hi\""), "\"say \\\"hi\\\"\"");
  CHECK_STR(JSON("back\\slash"), "\"back\\\\slash\"");
  CHECK_STR(JSON("\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\"");
  CHECK_STR(JSON("\x01\x1F"), "\"\\u0001\\u001f\"");
  CHECK_STR(JSON("/"), "\"/\""); /* no need to escape the solidus */
}

static void test_json_nul_and_invalid(void) {
  CHECK_STR(JSON("a\0b"), "\"a\\u0000b\"");
  CHECK_STR(JSON("x\xFFy"), "\"x\\ufffdy\"");
  CHECK_STR(JSON("\xC0\xAF"), "\"\\ufffd\\ufffd\""); /* one replacement per bad byte */
  CHECK_STR(JSON("\xED\xA0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");
  CHECK_STR(JSON("ok\xE2\x82"), "\"ok\\ufffd\\ufffd\""); /* truncated at the end */
  CHECK_STR(JSON("\xE2\x82\xAC\x80"), "\"\xE2\x82\xAC\\ufffd\"");
}

static void test_json_cstr_null(void) {
  pl_bytes b = {0};
  cli_json_cstr(&b, NULL);
  CHECK_EQ_U(b.len, 2);
  CHECK(memcmp(b.p, "\"\"", 2) == 0);
  pl_bytes_free(&b);
}

static void test_text_safe(void) {
  CHECK_STR(TEXT("plain caf\xC3\xA9"), "plain caf\xC3\xA9");
  CHECK_STR(TEXT("a\tb"), "a\tb");
  CHECK_STR(TEXT("one\ntwo"), "one\n  two");
  CHECK_STR(TEXT("\x1B[31mred"), "\xEF\xBF\xBD[31mred"); /* ESC cannot reach the terminal */
  CHECK_STR(TEXT("\r\x7F"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK_STR(TEXT("\302\2332J"), "\357\277\2752J"); /* C1 CSI (U+009B) then "2J" */
  CHECK_STR(TEXT("x\xFFy"), "x\xEF\xBF\xBDy");
}

static void test_message_line(void) {
  static const uint8_t body[] = "hi \"there\"\n";
  parley_message m = {
      .qid = 7,
      .conv = "dm:alice:bob",
      .seq = 42,
      .from = "alice",
      .from_device = "phone",
      .id = "m1",
      .body = body,
      .body_len = sizeof body - 1,
      .client_ts = 1700000000000ull,
      .server_ts = 18446744073709551615ull,
  };
  pl_bytes b = {0};
  cli_json_message(&b, &m);
  const char *want =
      "{\"type\":\"message\",\"from\":\"alice\",\"conv\":\"dm:alice:bob\",\"seq\":42,\"id\":\"m1\","
      "\"text\":\"hi \\\"there\\\"\\n\",\"client_ts\":1700000000000,"
      "\"server_ts\":18446744073709551615}\n";
  CHECK_EQ_U(b.len, strlen(want));
  CHECK(memcmp(b.p, want, b.len) == 0);
  pl_bytes_free(&b);
}

static void test_message_empty_body(void) {
  parley_message m = {.conv = "c", .from = "f", .id = "i", .body = NULL, .body_len = 0};
  pl_bytes b = {0};
  cli_json_message(&b, &m);
  const char *want = "{\"type\":\"message\",\"from\":\"f\",\"conv\":\"c\",\"seq\":0,\"id\":\"i\",\"text\":"
                     "\"\",\"client_ts\":0,"
                     "\"server_ts\":0}\n";
  CHECK_EQ_U(b.len, strlen(want));
  CHECK(memcmp(b.p, want, b.len) == 0);
  pl_bytes_free(&b);
}

static void test_send_ack_line(void) {
  parley_send_ack a = {.id = "x\"1", .conv = "dm:a:b", .seq = 3, .server_ts = 99, .duplicate = 1};
  pl_bytes b = {0};
  cli_json_send_ack(&b, &a);
  const char *want = "{\"id\":\"x\\\"1\",\"conv\":\"dm:a:b\",\"seq\":3,\"server_ts\":99}\n";
  CHECK_EQ_U(b.len, strlen(want));
  CHECK(memcmp(b.p, want, b.len) == 0);
  pl_bytes_free(&b);
}

int main(void) {
  RUN(test_utf8_valid);
  RUN(test_utf8_invalid);
  RUN(test_json_plain);
  RUN(test_json_escapes);
  RUN(test_json_nul_and_invalid);
  RUN(test_json_cstr_null);
  RUN(test_text_safe);
  RUN(test_message_line);
  RUN(test_message_empty_body);
  RUN(test_send_ack_line);
  return tl_summary();
}
