/* pl_filter: the sensitive-word filter's matching rules and list parser. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_mem.h"
#include "core/pl_filter.h"
#include "testlib.h"

static pl_filter *build(const char *list) {
  char why[200] = "";
  pl_filter *f = NULL;
  pl_err e = pl_filter_parse(list, strlen(list), &f, why, sizeof why);
  if (e != PL_OK)
    fprintf(stderr, "  parse: %s\n", why);
  CHECK_EQ_I(e, PL_OK);
  return f;
}

/* The result, and the masked text in *masked (static, "" if none). */
static int check(const pl_filter *f, const char *text, const char **masked) {
  static char buf[4096];
  uint8_t *out;
  size_t n;
  int r = pl_filter_check(f, (const uint8_t *)text, strlen(text), &out, &n);
  buf[0] = 0;
  if (out) {
    memcpy(buf, out, n);
    buf[n] = 0;
    pl_free(out);
  }
  if (masked)
    *masked = buf;
  return r;
}

static void parse_error(const char *list, const char *want) {
  char why[200] = "";
  pl_filter *f = NULL;
  CHECK_EQ_I(pl_filter_parse(list, strlen(list), &f, why, sizeof why), PL_ERR_CONFIG);
  CHECK(f == NULL);
  CHECK_STR(why, want);
}

static void test_case_insensitive_ascii_and_mask(void) {
  pl_filter *f = build("badword\tmask\n");
  const char *m;
  CHECK_EQ_I(check(f, "you are a BADword!", &m), PL_FILTER_MASKED);
  CHECK_STR(m, "you are a *******!");
  CHECK_EQ_I(check(f, "nothing here", &m), PL_FILTER_PASS);
  CHECK_STR(m, "");
  CHECK_EQ_I(check(f, "badwor", NULL), PL_FILTER_PASS);
  pl_filter_unref(f);
}

static void test_reject_is_the_default_and_wins(void) {
  pl_filter *f = build("# a comment\n\nspam\ncheap\tmask\n");
  CHECK_EQ_U(pl_filter_count(f), 2);
  CHECK_EQ_I(check(f, "cheap SPAM here", NULL), PL_FILTER_REJECT);
  CHECK_EQ_I(check(f, "cheap stuff", NULL), PL_FILTER_MASKED);
  pl_filter_unref(f);
}

static void test_chinese_and_mixed(void) {
  pl_filter *f = build("敏感词\tmask\n违禁\n");
  const char *m;
  CHECK_EQ_I(check(f, "这是敏感词测试", &m), PL_FILTER_MASKED);
  CHECK_STR(m, "这是***测试"); /* one '*' per character, the rest byte for byte */
  CHECK_EQ_I(check(f, "Hello 敏感词 and ÄÖ", &m), PL_FILTER_MASKED);
  CHECK_STR(m, "Hello *** and ÄÖ");
  CHECK_EQ_I(check(f, "有违禁品", NULL), PL_FILTER_REJECT);
  pl_filter_unref(f);
}

static void test_cyrillic_greek_latin_folding(void) {
  pl_filter *f = build("привет\tmask\nσοφία\tmask\nstraße\tmask\nÉcole\tmask\n");
  const char *m;
  CHECK_EQ_I(check(f, "ПРИВЕТ!", &m), PL_FILTER_MASKED);
  CHECK_STR(m, "******!");
  CHECK_EQ_I(check(f, "ΣΟΦΊΑ", &m), PL_FILTER_MASKED);
  CHECK_STR(m, "*****");
  CHECK_EQ_I(check(f, "STRAẞE", &m), PL_FILTER_MASKED); /* capital sharp s */
  CHECK_STR(m, "******");
  CHECK_EQ_I(check(f, "école", &m), PL_FILTER_MASKED);
  CHECK_STR(m, "*****");
  CHECK_EQ_U(pl_filter_fold(0x3C2), 0x3C3); /* final sigma */
  CHECK_EQ_U(pl_filter_fold('Z'), 'z');
  CHECK_EQ_U(pl_filter_fold(0x4E2D), 0x4E2D); /* 中 has no case */
  pl_filter_unref(f);
}

static void test_overlapping_and_substrings(void) {
  pl_filter *f = build("he\tmask\nshe\tmask\nhers\tmask\n");
  const char *m;
  CHECK_EQ_I(check(f, "ushers", &m), PL_FILTER_MASKED);
  CHECK_STR(m, "u*****");                                /* she + he + hers, all masked */
  CHECK_EQ_I(check(f, "the cat", &m), PL_FILTER_MASKED); /* substring matching */
  CHECK_STR(m, "t** cat");
  pl_filter_unref(f);
}

static void test_phrases_trim_and_crlf(void) {
  pl_filter *f = build("  free   money \t mask \r\nx\r\n");
  const char *m;
  CHECK_EQ_I(check(f, "get FREE   MONEY now", &m), PL_FILTER_MASKED);
  CHECK_STR(m, "get ************ now");
  CHECK_EQ_I(check(f, "free money", &m), PL_FILTER_PASS); /* inner spaces are kept */
  pl_filter_unref(f);
}

static void test_invalid_utf8_in_messages(void) {
  pl_filter *f = build("ab\tmask\n");
  const char *m;
  CHECK_EQ_I(check(f,
                   "a\xff"
                   "b ab \xc3",
                   &m),
             PL_FILTER_MASKED);
  CHECK_STR(m, "a\xff"
               "b ** \xc3");                              /* bad bytes kept, never part of a match */
  CHECK_EQ_I(check(f, "\xe4\xb8", NULL), PL_FILTER_PASS); /* truncated sequence */
  pl_filter_unref(f);
}

static void test_parse_errors(void) {
  parse_error("ok\nfine\tmask\nword\tmask2\n", "line 3: unknown policy (want reject or mask)");
  parse_error("a\n\tmask\n", "line 2: empty entry before the policy");
  parse_error("good\nbad \xff\n", "line 2: not valid UTF-8");
  char big[PL_FILTER_MAX_LINE + 10];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  parse_error(big, "line 1: line too long");
  pl_filter *f = build(""); /* an empty list passes everything */
  CHECK_EQ_U(pl_filter_count(f), 0);
  CHECK_EQ_I(check(f, "anything", NULL), PL_FILTER_PASS);
  pl_filter_unref(f);
}

static void test_load_file(void) {
  char *dir = tl_tempdir(), path[600], why[200] = "";
  snprintf(path, sizeof path, "%s/words.txt", dir);
  FILE *fp = fopen(path, "w");
  CHECK(fp != NULL);
  fputs("spam\n", fp);
  fclose(fp);
  pl_filter *f = NULL;
  CHECK_EQ_I(pl_filter_load(path, &f, why, sizeof why), PL_OK);
  CHECK_EQ_I(check(f, "SPAM", NULL), PL_FILTER_REJECT);
  pl_filter_unref(f);
  snprintf(path, sizeof path, "%s/missing.txt", dir);
  CHECK_EQ_I(pl_filter_load(path, &f, why, sizeof why), PL_ERR_CONFIG);
  CHECK(strstr(why, "cannot open") != NULL);
  tl_rmrf(dir);
  free(dir);
}

/* 100,000 entries: built, and every one found; correctness, not timing. */
static void test_large_list(void) {
  size_t n = 100000, len = 0;
  char *list = malloc(n * 16);
  for (size_t i = 0; i < n; i++)
    len += (size_t)sprintf(list + len, "w%zuz\tmask\n", i);
  char why[200];
  pl_filter *f = NULL;
  CHECK_EQ_I(pl_filter_parse(list, len, &f, why, sizeof why), PL_OK);
  CHECK_EQ_U(pl_filter_count(f), n);
  const char *m;
  CHECK_EQ_I(check(f, "say W99999Z now", &m), PL_FILTER_MASKED);
  CHECK_STR(m, "say ******* now");
  CHECK_EQ_I(check(f, "w100000z", NULL), PL_FILTER_PASS);
  pl_filter_unref(f);
  free(list);
}

static void test_refcount(void) {
  pl_filter *f = build("x\n");
  pl_filter *g = pl_filter_ref(f);
  pl_filter_unref(f);
  CHECK_EQ_I(check(g, "x", NULL), PL_FILTER_REJECT); /* still alive */
  pl_filter_unref(g);
}

int main(void) {
  RUN(test_case_insensitive_ascii_and_mask);
  RUN(test_reject_is_the_default_and_wins);
  RUN(test_chinese_and_mixed);
  RUN(test_cyrillic_greek_latin_folding);
  RUN(test_overlapping_and_substrings);
  RUN(test_phrases_trim_and_crlf);
  RUN(test_invalid_utf8_in_messages);
  RUN(test_parse_errors);
  RUN(test_load_file);
  RUN(test_large_list);
  RUN(test_refcount);
  return tl_summary();
}
