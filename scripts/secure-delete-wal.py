#!/usr/bin/env python3
# What PRAGMA secure_delete costs when acked messages are deleted: WAL bytes
# and time per delete for ON (Debian's build default), FAST and OFF, and how
# many fragments of the bodies the database file still holds afterwards.
# Uses the system SQLite through python3's sqlite3 (docs/operations.md, "Disk full").

import os
import shutil
import sqlite3
import tempfile
import time

DIR = tempfile.mkdtemp(prefix="secure-delete-")


def run(mode, n, size, per_commit):
    p = os.path.join(DIR, f"t-{mode}.db")
    for s in ("", "-wal", "-shm"):
        if os.path.exists(p + s): os.remove(p + s)
    c = sqlite3.connect(p, isolation_level=None)
    c.execute("pragma journal_mode=wal"); c.execute("pragma synchronous=FULL")
    c.execute("pragma wal_autocheckpoint=0")
    c.execute(f"pragma secure_delete={mode}")
    c.execute("create table m(qid integer primary key autoincrement, body blob, expires int)")
    c.execute("create table q(dev int, qid int, primary key(dev, qid)) without rowid")
    body = (b"SECRET-BODY-" * (size // 12 + 1))[:size]
    c.execute("begin")
    for i in range(n):
        c.execute("insert into m(body, expires) values(?, 0)", (body,))
        c.execute("insert into q values(1, ?)", (i + 1,))
    c.execute("commit")
    c.execute("pragma wal_checkpoint(TRUNCATE)")
    t0 = time.perf_counter()
    for lo in range(0, n, per_commit):
        c.execute("begin")
        c.execute("delete from q where dev=1 and qid<=?", (lo + per_commit,))
        c.execute("delete from m where qid<=?", (lo + per_commit,))
        c.execute("commit")
    dt = time.perf_counter() - t0
    wal = os.path.getsize(p + "-wal")
    c.execute("pragma wal_checkpoint(TRUNCATE)")
    db = open(p, "rb").read()
    left = db.count(b"SECRET-BODY-SECRET") 
    c.close()
    return wal, dt, left
for size, n in ((30000, 500), (100, 5000)):
  for per in (64,):
    for mode in ("ON", "FAST", "OFF"):
        wal, dt, left = run(mode, n, size, per)
        print(f"{mode:5} {n} x {size} B, {per}/commit: WAL {wal/1e6:8.3f} MB = {wal/n:8.0f} B/delete, {dt*1e6/n:7.1f} us/delete, body fragments left in db: {left}")
shutil.rmtree(DIR)
