#include "pl_utf8.h"

size_t pl_utf8_seq(const uint8_t *p, size_t n, uint32_t *cp) {
  uint8_t c = p[0], lo = 0x80, hi = 0xBF;
  size_t len;
  uint32_t v;
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  /* RFC 3629 table 4: the second byte's range excludes overlongs (E0, F0),
   * surrogates (ED) and code points above U+10FFFF (F4). */
  if (c >= 0xC2 && c <= 0xDF)
    len = 2, v = c & 0x1Fu;
  else if (c >= 0xE0 && c <= 0xEF)
    len = 3, v = c & 0x0Fu, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4)
    len = 4, v = c & 0x07u, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else
    return 0;
  if (n < len || p[1] < lo || p[1] > hi)
    return 0;
  for (size_t k = 1; k < len; k++) {
    if (p[k] < 0x80 || p[k] > 0xBF)
      return 0;
    v = v << 6 | (p[k] & 0x3Fu);
  }
  *cp = v;
  return len;
}

static pl_utf8_fault pl__classify(uint32_t cp, pl_utf8_rule rule) {
  if (cp == 0)
    return PL_UTF8_NUL;
  if (rule == PL_UTF8_ANY)
    return PL_UTF8_OK;
  if (rule == PL_UTF8_TEXT && (cp == '\t' || cp == '\n'))
    return PL_UTF8_OK;
  if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
    return PL_UTF8_CONTROL;
  if (rule == PL_UTF8_TEXT)
    return PL_UTF8_OK;
  if (cp == 0x2028 || cp == 0x2029)
    return PL_UTF8_SEPARATOR;
  if ((cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069))
    return PL_UTF8_BIDI;
  return PL_UTF8_OK;
}

pl_utf8_fault pl_utf8_check(const uint8_t *p, size_t n, pl_utf8_rule rule, size_t *at, uint32_t *cp) {
  size_t i = 0;
  uint32_t v = 0;
  pl_utf8_fault f = PL_UTF8_OK;
  while (i < n) {
    size_t k = pl_utf8_seq(p + i, n - i, &v);
    if (!k) {
      f = PL_UTF8_INVALID;
      v = 0;
      break;
    }
    if ((f = pl__classify(v, rule)) != PL_UTF8_OK)
      break;
    i += k;
  }
  if (f != PL_UTF8_OK && at)
    *at = i;
  if (f != PL_UTF8_OK && cp)
    *cp = v;
  return f;
}

const char *pl_utf8_fault_msg(pl_utf8_fault f) {
  switch (f) {
  case PL_UTF8_OK: return "valid";
  case PL_UTF8_INVALID: return "not valid UTF-8";
  case PL_UTF8_NUL: return "contains NUL";
  case PL_UTF8_CONTROL: return "control character";
  case PL_UTF8_SEPARATOR: return "line separator";
  case PL_UTF8_BIDI: return "bidirectional control character";
  }
  return "invalid";
}
