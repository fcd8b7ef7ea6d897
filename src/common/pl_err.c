#include "pl_err.h"

#include <stddef.h>

const char *pl_err_name(pl_err e) {
  switch (e) {
#define PL__ERR_NAME(name, val, wire, msg) \
  case PL_ERR_##name: return #name;
    PL_ERR_MAP(PL__ERR_NAME)
#undef PL__ERR_NAME
  }
  return "UNKNOWN";
}

const char *pl_err_msg(pl_err e) {
  switch (e) {
#define PL__ERR_MSG(name, val, wire, msg) \
  case PL_ERR_##name: return msg;
    PL_ERR_MAP(PL__ERR_MSG)
#undef PL__ERR_MSG
  }
  return "unknown error";
}

unsigned pl_err_to_wire(pl_err e) {
  switch (e) {
#define PL__ERR_WIRE(name, val, wire, msg) \
  case PL_ERR_##name: return (wire) ? (unsigned)-(val) : 29u;
    PL_ERR_MAP(PL__ERR_WIRE)
#undef PL__ERR_WIRE
  }
  return 29u;
}

pl_err pl_err_from_wire(unsigned code) {
  /* Only protocol codes come from the wire: internal-only codes and success
   * have no wire number, so a peer can never make us read those. */
  static const struct {
    pl_err e;
    int wire;
  } table[] = {
#define PL__ERR_ROW(name, val, wire, msg) {PL_ERR_##name, (wire)},
      PL_ERR_MAP(PL__ERR_ROW)
#undef PL__ERR_ROW
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (table[i].wire && (unsigned)-(int)table[i].e == code)
      return table[i].e;
  return PL_ERR_INTERNAL;
}
