/* cli_json: how the parley CLI renders messages, as JSON lines for scripts
 * and as plain text for a terminal. Pure functions that append to a
 * pl_bytes; no I/O.
 *
 * Message bodies are bytes: text is UTF-8 by convention, but nothing
 * enforces it. Both renderings therefore validate UTF-8 strictly (no
 * overlong forms, no surrogates, nothing above U+10FFFF) and replace each
 * byte that does not belong to a valid sequence with U+FFFD, so the output
 * is always valid UTF-8 and the JSON always parses. The same applies to
 * every string the server sends (names, ids, conversation ids). */
#ifndef CLI_JSON_H
#define CLI_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "common/pl_buf.h"
#include "parley/parley.h"

/* Length (1..4) of the valid UTF-8 sequence at p[0..n), with its code point
 * in *cp; 0 if p does not start a valid sequence (or n is 0). */
size_t cli_utf8_next(const uint8_t *p, size_t n, uint32_t *cp);

/* Appends p[0..n) as a JSON string literal, quotes included: '"' and '\'
 * are escaped, control characters U+0000..U+001F become \b \f \n \r \t or
 * \u00XX, invalid UTF-8 bytes become \ufffd; everything else is copied. */
void cli_json_str(pl_bytes *out, const void *p, size_t n);
/* The same for a NUL-terminated string (NULL renders as ""). */
void cli_json_cstr(pl_bytes *out, const char *s);

/* Appends p[0..n) for display on a terminal: a newline becomes a newline
 * and a two-space indent (so continuation lines stand out), a tab stays,
 * every other control character (C0, DEL, C1: they could drive the
 * terminal) and every invalid UTF-8 byte becomes U+FFFD. */
void cli_text_safe(pl_bytes *out, const void *p, size_t n);

/* One line, newline included:
 * {"type":"message","from":..,"conv":..,"seq":N,"id":..,"text":..,"client_ts":MS,"server_ts":MS}
 * with "group":ID after "type" for a group message; a group's membership event is
 * {"type":"group_event","group":..,"conv":..,"seq":N,"event":"created"|"added"|"removed"|
 *  "left"|"renamed"|"role","actor":..,"user":..,"name":..,"role":..,"server_ts":MS} */
void cli_json_message(pl_bytes *out, const parley_message *m);
/* A group as one JSON object (no newline): {"group":ID,"name":..,"description":..,
 * "role":..,"member_count":N,"last_seq":N[,"members":[{"user":..,"role":..},..]]} */
void cli_json_group(pl_bytes *out, const parley_group *g, int with_members);
/* "none", "member", "admin" or "owner". */
const char *cli_role_name(int role);
/* One line, newline included: {"id":..,"conv":..,"seq":N,"server_ts":MS} */
void cli_json_send_ack(pl_bytes *out, const parley_send_ack *a);
/* A receipt, read sync, presence or typing event as one JSON line:
 * {"type":"receipt","status":"delivered"|"read","conv":..,"by":..,"seq":N}
 * {"type":"read_sync","conv":..,"seq":N,"unread":N}
 * {"type":"presence","user":..,"online":B,"last_seen":MS|null}
 * {"type":"typing","user":..,"conv":..,"typing":B} */
void cli_json_event(pl_bytes *out, const parley_event *e);
/* {"user":..,"online":B,"last_seen":MS|null} (last_seen null when unknown or hidden). */
void cli_json_presence(pl_bytes *out, const char *user, int online, uint64_t last_seen);

/* An Act kind's name in JSON and chat ("reaction", ...; "" for a plain message). */
const char *cli_act_name(int kind);

#endif
