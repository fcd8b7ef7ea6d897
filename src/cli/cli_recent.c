/* cli_recent.c: see cli_recent.h. A linear scan of 256 entries per lookup:
 * lookups happen once per typed command, so an index would buy nothing. */
#include "cli_recent.h"

#include <stdio.h>
#include <string.h>

#include "common/pl_mem.h"
#include "parley/parley.h"

static void recent_clear(cli_recent_entry *x) {
  pl_free(x->text);
  pl_free(x->media);
  memset(x, 0, sizeof *x);
}

void cli_recent_put(cli_recent *r, uint64_t seq, const char *id, const void *text, size_t len, const char *media) {
  /* Copied before the oldest entry goes: text may be that entry's own. */
  char *copy = pl_strndup(text ? text : "", text ? len : 0);
  char *media_copy = media && *media ? pl_strdup(media) : NULL;
  cli_recent_entry *x = &r->e[r->next];
  r->next = (r->next + 1) % CLI_RECENT_N;
  recent_clear(x);
  x->seq = seq;
  if (id)
    snprintf(x->id, sizeof x->id, "%s", id);
  x->text = copy;
  x->len = text ? len : 0;
  x->media = media_copy;
}

void cli_recent_put_act(cli_recent *r, const char *id, int act, uint64_t seq, const void *text, size_t len) {
  cli_recent_put(r, 0, id, text, len, NULL);
  cli_recent_entry *x = &r->e[(r->next + CLI_RECENT_N - 1) % CLI_RECENT_N];
  x->act = act;
  x->target = seq;
}

void cli_recent_acked(cli_recent *r, const char *id, uint64_t seq) {
  for (size_t i = 0; i < CLI_RECENT_N; i++) {
    cli_recent_entry *x = &r->e[i];
    if (!x->text || x->seq || strcmp(x->id, id))
      continue;
    if (x->target) {
      if (x->act == PARLEY_ACT_EDIT)
        cli_recent_edit(r, x->target, x->text, x->len);
      else
        cli_recent_drop(r, x->target);
      recent_clear(x);
    } else {
      x->seq = seq;
    }
    return;
  }
}

static cli_recent_entry *recent_find(cli_recent *r, uint64_t seq) {
  if (!seq)
    return NULL;
  for (size_t i = 0; i < CLI_RECENT_N; i++)
    if (r->e[i].text && r->e[i].seq == seq)
      return &r->e[i];
  return NULL;
}

const cli_recent_entry *cli_recent_find(const cli_recent *r, uint64_t seq) {
  return recent_find((cli_recent *)r, seq);
}

void cli_recent_edit(cli_recent *r, uint64_t seq, const void *text, size_t len) {
  cli_recent_entry *x = recent_find(r, seq);
  if (!x)
    return;
  char *copy = pl_strndup(text ? text : "", text ? len : 0);
  pl_free(x->text);
  x->text = copy;
  x->len = text ? len : 0;
}

void cli_recent_drop(cli_recent *r, uint64_t seq) {
  cli_recent_entry *x = recent_find(r, seq);
  if (x)
    recent_clear(x);
}

void cli_recent_free(cli_recent *r) {
  for (size_t i = 0; i < CLI_RECENT_N; i++)
    recent_clear(&r->e[i]);
  r->next = 0;
}
