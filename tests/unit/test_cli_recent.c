/* cli_recent: what `parley chat` remembers of its last messages for /forward. */
#include <stdio.h>
#include <string.h>

#include "cli/cli_recent.h"
#include "parley/parley.h"
#include "testlib.h"

static const char *text_of(const cli_recent *r, uint64_t seq) {
  const cli_recent_entry *e = cli_recent_find(r, seq);
  return e ? e->text : NULL;
}

static void test_full_ring_forgets_the_oldest(void) {
  cli_recent r = {0};
  char t[32];
  for (uint64_t seq = 1; seq <= CLI_RECENT_N + 3; seq++) {
    snprintf(t, sizeof t, "m%llu", (unsigned long long)seq);
    cli_recent_put(&r, seq, NULL, t, strlen(t), NULL);
  }
  for (uint64_t seq = 1; seq <= 3; seq++)
    CHECK(!cli_recent_find(&r, seq));
  CHECK_STR(text_of(&r, 4), "m4");
  CHECK_STR(text_of(&r, CLI_RECENT_N + 3), "m259");
  CHECK(!cli_recent_find(&r, 0)); /* 0 is no message */
  cli_recent_free(&r);
}

/* A sent message has its seq only from its ack; an edit or delete this chat
 * sent changes its target only when acked (a refused one changes nothing). */
static void test_sent_ones_count_from_their_ack(void) {
  cli_recent r = {0};
  cli_recent_put(&r, 0, "id-1", "mine", 4, NULL);
  CHECK(!cli_recent_find(&r, 7));
  cli_recent_acked(&r, "id-1", 7);
  CHECK_STR(text_of(&r, 7), "mine");
  cli_recent_put_act(&r, "id-2", PARLEY_ACT_EDIT, 7, "mine!", 5);
  cli_recent_put_act(&r, "id-3", PARLEY_ACT_EDIT, 7, "refused", 7);
  CHECK_STR(text_of(&r, 7), "mine");
  cli_recent_acked(&r, "id-2", 8);
  CHECK_STR(text_of(&r, 7), "mine!");
  CHECK(!cli_recent_find(&r, 8)); /* the edit is no message of its own */
  cli_recent_put_act(&r, "id-4", PARLEY_ACT_DELETE, 7, "", 0);
  CHECK(cli_recent_find(&r, 7));
  cli_recent_acked(&r, "id-4", 9);
  CHECK(!cli_recent_find(&r, 7));
  cli_recent_free(&r);
}

/* The peer's edits and deletes, and an attachment kept by its id. */
static void test_received_edit_delete_media(void) {
  cli_recent r = {0};
  cli_recent_put(&r, 3, NULL, "a\0b", 3, "4ea1");
  const cli_recent_entry *e = cli_recent_find(&r, 3);
  CHECK_EQ_U(e->len, 3);
  CHECK(!memcmp(e->text, "a\0b", 3));
  CHECK_STR(e->media, "4ea1");
  cli_recent_edit(&r, 3, "caption", 7);
  CHECK_STR(text_of(&r, 3), "caption");
  CHECK_STR(cli_recent_find(&r, 3)->media, "4ea1");
  cli_recent_edit(&r, 99, "nothing", 7); /* unknown: no change, no entry */
  CHECK(!cli_recent_find(&r, 99));
  cli_recent_drop(&r, 3);
  CHECK(!cli_recent_find(&r, 3));
  cli_recent_free(&r);
}

/* Putting an entry's own text again while the ring is full (a forward to the
 * peer of the oldest message) copies it before the oldest slot is reused. */
static void test_reput_of_the_oldest_is_safe(void) {
  cli_recent r = {0};
  for (uint64_t seq = 1; seq <= CLI_RECENT_N; seq++)
    cli_recent_put(&r, seq, NULL, "old text", 8, seq == 1 ? "m1" : NULL);
  const cli_recent_entry *oldest = cli_recent_find(&r, 1);
  cli_recent_put(&r, 0, "fwd", oldest->text, oldest->len, oldest->media);
  cli_recent_acked(&r, "fwd", CLI_RECENT_N + 1);
  CHECK(!cli_recent_find(&r, 1));
  CHECK_STR(text_of(&r, CLI_RECENT_N + 1), "old text");
  CHECK_STR(cli_recent_find(&r, CLI_RECENT_N + 1)->media, "m1");
  cli_recent_free(&r);
}

int main(void) {
  RUN(test_full_ring_forgets_the_oldest);
  RUN(test_sent_ones_count_from_their_ack);
  RUN(test_received_edit_delete_media);
  RUN(test_reput_of_the_oldest_is_safe);
  return tl_summary();
}
