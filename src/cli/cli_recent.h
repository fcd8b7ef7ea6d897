/* cli_recent.h: the texts of the last messages `parley chat` showed or sent
 * in its conversation, by seq, so that /forward #N can send one on. A fixed
 * ring: the oldest entry makes room for a new one, so a long chat uses a
 * bounded amount of memory and an old N is simply "not known any more".
 *
 * What this chat sends has no seq until the server's SendAck: a new message
 * is put in with seq 0 and its client id, and cli_recent_acked gives it its
 * seq; an edit or delete is kept the same way and applied to its target only
 * when the server took it (a refused one changes nothing). */
#ifndef CLI_RECENT_H
#define CLI_RECENT_H

#include <stddef.h>
#include <stdint.h>

#define CLI_RECENT_N 256

typedef struct cli_recent_entry {
  uint64_t seq;  /* 0: sent, not acked yet (then id names it) */
  uint64_t target; /* a pending edit or delete of this seq (an edit's text is the new one) */
  int act;         /* then: PARLEY_ACT_EDIT or PARLEY_ACT_DELETE */
  char id[65];  /* the client id of a message this chat sent ("" otherwise) */
  char *text;   /* owned; NUL-terminated copy of the body (may hold NULs before len) */
  size_t len;
  char *media; /* owned: the id of its attachment (then text is the caption), or NULL */
} cli_recent_entry;

typedef struct cli_recent {
  cli_recent_entry e[CLI_RECENT_N];
  size_t next; /* where the next entry goes (the oldest once the ring is full) */
} cli_recent;

/* Remembers text[0..len) (and the attachment media, an id, or NULL) as
 * message seq (or, with seq 0, the sent message id), replacing the oldest
 * entry when full. */
void cli_recent_put(cli_recent *r, uint64_t seq, const char *id, const void *text, size_t len, const char *media);
/* An edit (act PARLEY_ACT_EDIT, text the new one) or a delete for everyone
 * (PARLEY_ACT_DELETE) of seq that this chat sent as message id: applied by
 * its ack. */
void cli_recent_put_act(cli_recent *r, const char *id, int act, uint64_t seq, const void *text, size_t len);
/* The server took the sent message id as seq: a new message gets its seq,
 * an edit or delete is applied to its target. */
void cli_recent_acked(cli_recent *r, const char *id, uint64_t seq);
/* Message seq, or NULL if it is not (or no longer) known. */
const cli_recent_entry *cli_recent_find(const cli_recent *r, uint64_t seq);
/* An edit of seq: its text is now text[0..len) (nothing if unknown). */
void cli_recent_edit(cli_recent *r, uint64_t seq, const void *text, size_t len);
/* seq was deleted for everyone: forget it. */
void cli_recent_drop(cli_recent *r, uint64_t seq);
void cli_recent_free(cli_recent *r);

#endif
