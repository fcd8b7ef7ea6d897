/* store_db: for the store's unit tests only (test_store*.c), which may look
 * inside the SQLite backend's file; nothing else opens it (integration tests
 * read /metrics: tl_metric). */
#ifndef STORE_DB_H
#define STORE_DB_H

#include <sqlite3.h>
#include <stdio.h>

/* Rows in a table of DIR/parley.db, read as a second connection (WAL allows
 * it while the store runs); -1 if it cannot be read. */
static inline long long db_count(const char *dir, const char *table) {
  char path[600], sql[256];
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  long long n = -1;
  snprintf(path, sizeof path, "%s/parley.db", dir);
  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table);
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

/* Runs sql on DIR/parley.db (the store closed); SQLITE_OK or its error. */
static inline int db_exec(const char *dir, const char *sql) {
  char path[600];
  sqlite3 *db = NULL;
  snprintf(path, sizeof path, "%s/parley.db", dir);
  int rc = sqlite3_open(path, &db);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  sqlite3_close(db);
  return rc;
}

/* Messages only, not queued receipts and read syncs. */
#define DB_MESSAGES "messages WHERE kind = 0"

#endif
