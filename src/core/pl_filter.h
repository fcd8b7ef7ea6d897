/* pl_filter: the sensitive-word filter, a pure multi-pattern matcher.
 *
 * A compiled list of words and phrases, each with a policy: reject the
 * message, or mask the match with one '*' per character. Matching is an
 * Aho-Corasick automaton over case-folded Unicode code points, so checking
 * a message costs O(its length + matches) whatever the length of the list,
 * and building costs O(total pattern length).
 *
 * Matching rules (docs/architecture.md, "Sensitive-word filter"):
 * - substring matching, as the peers do: "ass" matches inside "class";
 * - case-insensitive by simple case folding of ASCII, Latin-1, Latin
 *   Extended-A, Greek (final sigma folds to sigma) and Cyrillic; other
 *   scripts (Chinese, Japanese, ...) have no case and match exactly;
 * - folding is one code point to one code point, so a match always covers
 *   whole code points of the original text and masking keeps every byte
 *   that was not matched;
 * - bytes that are not valid UTF-8 match nothing (and are kept as they are).
 *
 * A filter is immutable once built and reference counted (atomically), so
 * a reload can swap in a new one while other threads still check with the
 * old: readers take a reference under the owner's lock, check, unref. */
#ifndef PL_FILTER_H
#define PL_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "../common/pl_err.h"

typedef struct pl_filter pl_filter;

typedef enum pl_filter_result {
  PL_FILTER_PASS = 0,
  PL_FILTER_MASKED = 1, /* *out holds the masked copy */
  PL_FILTER_REJECT = 2, /* a reject entry matched (it wins over mask) */
} pl_filter_result;

#define PL_FILTER_MAX_LINE 1024u       /* bytes per list line */
#define PL_FILTER_MAX_ENTRIES 1000000u /* entries per list */
#define PL_FILTER_MAX_FILE (64u << 20) /* bytes per list file */

/* Builds a filter from the text of a list file: one entry per line, a word
 * or phrase, optionally a tab and "reject" or "mask" (default reject);
 * blank lines and lines starting with '#' are skipped; a trailing CR is
 * ignored; spaces around the entry are trimmed. On a bad list, returns
 * PL_ERR_CONFIG and writes the reason with its line number into why. */
pl_err pl_filter_parse(const char *text, size_t len, pl_filter **out, char *why, size_t whylen);
/* pl_filter_parse of a file's contents. */
pl_err pl_filter_load(const char *path, pl_filter **out, char *why, size_t whylen);

/* Checks text. On PL_FILTER_MASKED, *out (pl_free it) and *out_len hold the
 * text with every matched character replaced by '*'. */
pl_filter_result pl_filter_check(const pl_filter *f, const uint8_t *text, size_t len, uint8_t **out,
                                 size_t *out_len);

size_t pl_filter_count(const pl_filter *f);
pl_filter *pl_filter_ref(pl_filter *f);
void pl_filter_unref(pl_filter *f);

/* The case folding used (exposed for tests). */
uint32_t pl_filter_fold(uint32_t cp);

#endif
