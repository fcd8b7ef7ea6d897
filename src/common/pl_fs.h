/* pl_fs: small file-system helpers. */
#ifndef PL_FS_H
#define PL_FS_H

#include <stddef.h>

/* mkdir -p with mode 0700; 0 on success (or if it exists), -1 with errno. */
int pl_mkdirs(const char *dir);

/* A whole file of at most max bytes, NUL-terminated (pl_free it), its
 * length in *len; NULL if it cannot be read or is longer. */
char *pl_read_file(const char *path, size_t max, size_t *len);

/* All n bytes of p to fd (short writes and EINTR resumed); 0, or -1 with errno. */
int pl_write_full(int fd, const void *p, size_t n);

#endif
