/* pl_log: one line per event on stderr, with a level and a UTC timestamp.
 * Thread safe (one fprintf per line; stdio locks the stream). */
#ifndef PL_LOG_H
#define PL_LOG_H

typedef enum { PL_LOG_DEBUG = 0, PL_LOG_INFO, PL_LOG_WARN, PL_LOG_ERROR, PL_LOG_OFF } pl_log_level;

void pl_log_set_level(pl_log_level lvl);
pl_log_level pl_log_get_level(void);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 if unknown. */
int pl_log_parse_level(const char *s);

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void pl_log(pl_log_level lvl, const char *fmt, ...);

#define pl_debug(...) pl_log(PL_LOG_DEBUG, __VA_ARGS__)
#define pl_info(...) pl_log(PL_LOG_INFO, __VA_ARGS__)
#define pl_warn(...) pl_log(PL_LOG_WARN, __VA_ARGS__)
#define pl_error(...) pl_log(PL_LOG_ERROR, __VA_ARGS__)

#endif
