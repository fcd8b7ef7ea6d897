/* pl_utf8: what a string from a client may contain, a pure check over
 * (pointer, length).
 *
 * Every string must be well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF) without U+0000: a NUL cuts a C string
 * short (two ids would collide, a name would lose its tail), and invalid
 * UTF-8 makes a frame that standard protobuf libraries refuse to decode.
 * Strings a person reads are stricter (protocol.md 4, "Strings"):
 *
 *   PL_UTF8_ANY   well-formed, no NUL (ids, tokens, passwords, refs)
 *   PL_UTF8_TEXT  also no control characters (C0, DEL, C1) except TAB and
 *                 LF: message text and group descriptions, which may have
 *                 lines and tabs but no ESC sequences or carriage returns
 *   PL_UTF8_NAME  also no TAB or LF, no line or paragraph separator
 *                 (U+2028, U+2029) and no bidirectional embedding, override
 *                 or isolate (U+202A-U+202E, U+2066-U+2069): one line that
 *                 reads the way it is stored (device and group names) */
#ifndef PL_UTF8_H
#define PL_UTF8_H

#include <stddef.h>
#include <stdint.h>

typedef enum pl_utf8_rule { PL_UTF8_ANY, PL_UTF8_TEXT, PL_UTF8_NAME } pl_utf8_rule;

typedef enum pl_utf8_fault {
  PL_UTF8_OK = 0,
  PL_UTF8_INVALID,   /* not well-formed UTF-8 */
  PL_UTF8_NUL,       /* U+0000 */
  PL_UTF8_CONTROL,   /* C0 (but TAB, LF in text), DEL, C1 */
  PL_UTF8_SEPARATOR, /* U+2028, U+2029 in a name */
  PL_UTF8_BIDI,      /* a bidirectional embedding, override or isolate in a name */
} pl_utf8_fault;

/* Length of the well-formed sequence at p[0..n) and its code point in *cp;
 * 0 if p does not start with one (n must be at least 1). */
size_t pl_utf8_seq(const uint8_t *p, size_t n, uint32_t *cp);

/* The first fault of p[0..n) under rule; its byte offset in *at and, but for
 * PL_UTF8_INVALID, its code point in *cp (either may be NULL). */
pl_utf8_fault pl_utf8_check(const uint8_t *p, size_t n, pl_utf8_rule rule, size_t *at, uint32_t *cp);

/* "not valid UTF-8", "contains NUL", "control character", ... */
const char *pl_utf8_fault_msg(pl_utf8_fault f);

#endif
