#!/usr/bin/env python3
"""A/B of the media blob stores (docs/benchmarks.md): a 10 MB file uploaded
(POST /media, until the 201) and downloaded (GET, whole) through parleyd with
blobs in files (SQLite store, --data/media) and in PostgreSQL (--store, the
blobs table: pl_blob_pg), runs in alternation, medians.

    PARLEYD=build/parleyd python3 bench/media-blob-ab.py [RUNS]

Starts its own PostgreSQL with tests/pg/pg_fixture.sh, with fsync and
full_page_writes turned back on (the fixture turns them off for tests), so
both stores make their bytes durable before the answer."""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import mediasrv  # noqa: E402

FIXTURE = os.path.join(HERE, "..", "tests", "pg", "pg_fixture.sh")
SIZE = 10 * 1000 * 1000


def once(s, tok, data):
    t0 = time.perf_counter()
    st, m = s.upload(tok, data, "bench.bin")
    t1 = time.perf_counter()
    assert st == 201, (st, m)
    st, _, got = s.req("GET", f"/media/{m['id']}", token=tok)
    t2 = time.perf_counter()
    assert st == 200 and got == data
    return t1 - t0, t2 - t1


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    tmp = tempfile.mkdtemp(prefix="parley-blob-ab-")
    os.chmod(tmp, 0o755)  # the fixture runs PostgreSQL as its own user
    pgdir = os.path.join(tmp, "pg")
    subprocess.run(["bash", FIXTURE, "start", pgdir], check=True)
    try:
        conn = open(os.path.join(pgdir, "conninfo")).read().strip()
        for sql in ("ALTER SYSTEM SET fsync = on", "ALTER SYSTEM SET full_page_writes = on",
                    "SELECT pg_reload_conf()", "CREATE DATABASE blob_ab"):
            subprocess.run(["psql", f"{conn} dbname=postgres", "-qAtc", sql], check=True, capture_output=True)
        servers = {"files": mediasrv.Server(tmp, "files", "--media-files", "1"),
                   "postgresql": mediasrv.Server(tmp, "pg", "--media-files", "1", "--store",
                                                 f"{conn} dbname=blob_ab")}
        res = {k: ([], []) for k in servers}
        toks = {}
        for k, s in servers.items():
            s.start()
            toks[k] = s.register("bench")
        for _ in range(runs):
            for k, s in servers.items():  # in alternation
                up, down = once(s, toks[k], os.urandom(SIZE))
                res[k][0].append(up)
                res[k][1].append(down)
        for s in servers.values():
            s.stop()
        print(f"{SIZE / 1e6:.0f} MB file, {runs} runs each, alternating; MB/s (median; runs)")
        for k, (ups, downs) in res.items():
            mbs = lambda xs: [SIZE / 1e6 / x for x in xs]
            print(f"{k:11s} upload {statistics.median(mbs(ups)):6.1f} ({', '.join(f'{v:.0f}' for v in mbs(ups))})"
                  f"   download {statistics.median(mbs(downs)):6.1f} ({', '.join(f'{v:.0f}' for v in mbs(downs))})")
    finally:
        subprocess.run(["bash", FIXTURE, "stop", pgdir])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
