#include "pl_acts.h"

#include <string.h>

/* A reaction is one short "word": an emoji (several code points with
 * joiners and modifiers) or a few letters, never text with spaces. */
static int pl__reaction_ok(const uint8_t *b, size_t n) {
  if (n > PL_ACTS_REACTION_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (b[i] <= 0x20 || b[i] == 0x7f)
      return 0;
  return 1;
}

static int pl__timer_ok(uint32_t s) { return s == 0 || s == 86400u || s == 604800u || s == 7776000u; }

/* Fields of the other kinds must be unset: a client that fills them is
 * confused about what it sends, and an error says so at once. */
static int pl__only(const pl_act *a, int target, int timer, int tconv) {
  if (!target && a->target)
    return 0;
  if (target && !a->target)
    return 0;
  if (!timer && a->timer_s)
    return 0;
  int has_tconv = a->target_conv && *a->target_conv;
  return tconv == has_tconv;
}

pl_err pl_acts_check(const pl_act *a, const uint8_t *body, size_t body_len, int has_media, int self) {
  int plain = a->kind == PL_ACT_NONE;
  if (!plain && (has_media || a->reply_to || a->forwarded))
    return PL_ERR_INVALID_ARGUMENT;
  switch (a->kind) {
  case PL_ACT_NONE: return pl__only(a, 0, 0, 0) ? PL_OK : PL_ERR_INVALID_ARGUMENT;
  case PL_ACT_REACTION:
    return pl__only(a, 1, 0, 0) && pl__reaction_ok(body, body_len) ? PL_OK : PL_ERR_INVALID_ARGUMENT;
  case PL_ACT_EDIT: return pl__only(a, 1, 0, 0) && body_len ? PL_OK : PL_ERR_INVALID_ARGUMENT;
  case PL_ACT_DELETE: return pl__only(a, 1, 0, 0) && !body_len ? PL_OK : PL_ERR_INVALID_ARGUMENT;
  case PL_ACT_TIMER:
    return pl__only(a, 0, 1, 0) && !body_len && pl__timer_ok(a->timer_s) ? PL_OK : PL_ERR_INVALID_ARGUMENT;
  case PL_ACT_DELETE_FOR_ME:
    return self && pl__only(a, 1, 0, 1) && !body_len ? PL_OK : PL_ERR_INVALID_ARGUMENT;
  default: return PL_ERR_INVALID_ARGUMENT;
  }
}

pl_err pl_acts_may(const pl_acts_cfg *c, const pl_act *a, const pl_act_target *t, uint64_t me, int admin,
                   uint64_t now) {
  if (!t->found || t->deleted)
    return PL_ERR_NO_TARGET;
  if (a->kind == PL_ACT_REACTION)
    return PL_OK; /* anyone in the conversation, any time the target lives */
  int mine = t->sender == me;
  if (a->kind == PL_ACT_EDIT && !mine)
    return PL_ERR_NOT_AUTHOR;
  if (a->kind == PL_ACT_DELETE && !mine && !admin)
    return PL_ERR_NOT_AUTHOR;
  uint64_t window = a->kind == PL_ACT_EDIT ? c->edit_ms : c->delete_ms;
  if (now > t->server_ts && now - t->server_ts > window)
    return PL_ERR_WINDOW_CLOSED;
  return PL_OK;
}

uint64_t pl_acts_timer_ms(const pl_acts_cfg *c, uint32_t timer_s) {
  if (!timer_s)
    return 0;
  return c->timer_test_ms ? c->timer_test_ms : (uint64_t)timer_s * 1000u;
}
