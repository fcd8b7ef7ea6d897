#include "pl_err.h"

const char *pl_err_name(pl_err e) {
  switch (e) {
#define PL__ERR_NAME(name, val, wire, msg) \
  case PL_ERR_##name:                      \
    return #name;
    PL_ERR_MAP(PL__ERR_NAME)
#undef PL__ERR_NAME
  }
  return "UNKNOWN";
}

const char *pl_err_msg(pl_err e) {
  switch (e) {
#define PL__ERR_MSG(name, val, wire, msg) \
  case PL_ERR_##name:                     \
    return msg;
    PL_ERR_MAP(PL__ERR_MSG)
#undef PL__ERR_MSG
  }
  return "unknown error";
}

unsigned pl_err_to_wire(pl_err e) {
  switch (e) {
#define PL__ERR_WIRE(name, val, wire, msg) \
  case PL_ERR_##name:                      \
    return (wire) ? (unsigned)-(val) : 29u;
    PL_ERR_MAP(PL__ERR_WIRE)
#undef PL__ERR_WIRE
  }
  return 29u;
}

pl_err pl_err_from_wire(unsigned code) {
  switch (code) {
#define PL__ERR_FROM(name, val, wire, msg) \
  case (wire) ? (unsigned)-(val) : 100000u + (unsigned)-(val): \
    return PL_ERR_##name;
    PL_ERR_MAP(PL__ERR_FROM)
#undef PL__ERR_FROM
  }
  return PL_ERR_INTERNAL;
}
