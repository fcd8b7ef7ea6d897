/* pl_fs: small file-system helpers. */
#ifndef PL_FS_H
#define PL_FS_H

/* mkdir -p with mode 0700; 0 on success (or if it exists), -1 with errno. */
int pl_mkdirs(const char *dir);

#endif
