/* ledger: what the clients of a fault test saw, and the checks a user relies on.
 *
 * Pure bookkeeping, no I/O: the test's clients tell it every Send they tried,
 * every SendAck they got, and every Message each device was shown (with its
 * qid); lg_check then proves, whatever happened to the servers meanwhile:
 *
 *   - 0 acked lost: every acked message reached every device that expects
 *     its conversation (lg_expect);
 *   - 0 shown twice after qid filtering: a redelivered qid (the same
 *     message again after a reconnect, before its Ack was stored) is
 *     dropped, as a client drops it; what remains holds no (conv, seq) and
 *     no (sender, client id) twice, and a qid never names two messages;
 *   - order: per device the shown qids rise, and per conversation the seqs;
 *   - per-conversation seqs gap-free: what was acked and shown together
 *     covers 1..max of each conversation, each seq one message;
 *   - retried ids stored once: an id sent several times has one seq.
 *
 * Linear scans: a test's few thousand entries check in milliseconds. */
#ifndef LEDGER_H
#define LEDGER_H

#include <stddef.h>
#include <stdint.h>

typedef struct lg_ledger lg_ledger;

lg_ledger *lg_new(void);
void lg_free(lg_ledger *lg);

/* sender (a user name) sent (or sent again) client id. */
void lg_tried(lg_ledger *lg, const char *sender, const char *id);
/* ... and it was acked: stored in conv at seq. */
void lg_acked(lg_ledger *lg, const char *sender, const char *id, const char *conv, uint64_t seq);
/* device (any name unique in the test) was shown a Message. */
void lg_shown(lg_ledger *lg, const char *device, const char *conv, uint64_t seq, const char *from,
              const char *id, uint64_t qid);
/* device must receive every acked message of conv not sent by user not_from. */
void lg_expect(lg_ledger *lg, const char *device, const char *conv, const char *not_from);

/* Acked messages some expecting device has not been shown yet (after qid
 * filtering): a test drains its receivers until this is 0 or a deadline. */
size_t lg_missing(const lg_ledger *lg);
/* Counts for the test's report. */
size_t lg_acked_count(const lg_ledger *lg);
size_t lg_retried_count(const lg_ledger *lg);     /* ids sent more than once */
size_t lg_redelivered_count(const lg_ledger *lg); /* Messages dropped by the qid filter */

/* Runs every check; returns the number of violations and describes the
 * first few in report (NUL-terminated). */
size_t lg_check(const lg_ledger *lg, char *report, size_t cap);

#endif
