#include "pl_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static atomic_int pl__level = PL_LOG_INFO;
static const char *const pl__names[] = {"debug", "info", "warn", "error", "off"};

void pl_log_set_level(pl_log_level lvl) { atomic_store(&pl__level, (int)lvl); }
pl_log_level pl_log_get_level(void) { return (pl_log_level)atomic_load(&pl__level); }

int pl_log_parse_level(const char *s) {
  for (int i = 0; i <= PL_LOG_OFF; i++)
    if (strcmp(s, pl__names[i]) == 0)
      return i;
  return -1;
}

void pl_log(pl_log_level lvl, const char *fmt, ...) {
  if ((int)lvl < atomic_load(&pl__level))
    return;
  char line[1024];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                   pl__names[lvl]);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", line);
}
