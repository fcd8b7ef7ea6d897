#!/usr/bin/env python3
"""A/B of a node's media cache (--media-cache, docs/benchmarks.md): one file
uploaded through a node on PostgreSQL, then downloaded N times (GET, whole),
by two nodes on the same database, one with --media-cache 0 and one with the
default, in alternation; per size, the median download time and the
PostgreSQL server's CPU (its processes' utime + stime from /proc) per
download.

    PARLEYD=build-rel/parleyd python3 bench/media-cache-ab.py [DOWNLOADS]

Starts its own PostgreSQL with tests/pg/pg_fixture.sh (fsync on, as
media-blob-ab.py)."""
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
SIZES = (100 * 1000, 1000 * 1000, 10 * 1000 * 1000)


def pg_cpu(pgdir):
    """Seconds of CPU of the fixture's PostgreSQL processes (all of them)."""
    pid = int(open(os.path.join(pgdir, "cluster", "postmaster.pid")).readline())
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            st = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(p) == pid or int(st[1]) == pid:  # the postmaster and its children
            total += int(st[11]) + int(st[12])
    return total / tick


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    tmp = tempfile.mkdtemp(prefix="parley-cache-ab-")
    os.chmod(tmp, 0o755)
    pgdir = os.path.join(tmp, "pg")
    subprocess.run(["bash", FIXTURE, "start", pgdir], check=True)
    try:
        conn = open(os.path.join(pgdir, "conninfo")).read().strip()
        for sql in ("ALTER SYSTEM SET fsync = on", "ALTER SYSTEM SET full_page_writes = on",
                    "SELECT pg_reload_conf()", "CREATE DATABASE cache_ab"):
            subprocess.run(["psql", f"{conn} dbname=postgres", "-qAtc", sql], check=True, capture_output=True)
        store = ("--media-files", "1", "--store", f"{conn} dbname=cache_ab")
        servers = {"no cache": mediasrv.Server(tmp, "off", *store, "--media-cache", "0"),
                   "cache": mediasrv.Server(tmp, "on", *store)}
        for s in servers.values():
            s.start()
        tok = servers["no cache"].register("bench")
        print(f"{n} downloads of each file per node, alternating; median ms per download,"
              " PostgreSQL CPU ms per download")
        for size in SIZES:
            data = os.urandom(size)
            st, m = servers["no cache"].upload(tok, data, "bench.bin")
            assert st == 201, (st, m)
            res = {k: ([], 0.0) for k in servers}
            for _ in range(n):
                for k, s in servers.items():
                    c0 = pg_cpu(pgdir)
                    t0 = time.perf_counter()
                    st, _, got = s.req("GET", f"/media/{m['id']}", token=tok)
                    t1 = time.perf_counter()
                    assert st == 200 and got == data
                    res[k][0].append(t1 - t0)
                    res[k] = (res[k][0], res[k][1] + pg_cpu(pgdir) - c0)
            for k, (ts, cpu) in res.items():
                print(f"{size / 1e6:5.1f} MB  {k:8s}  {statistics.median(ts) * 1e3:8.2f} ms"
                      f"  {cpu * 1e3 / n:8.2f} ms CPU")
        hits = servers["cache"].metric("parley_media_cache_hits_total")
        print(f"cache node: {hits} hits, {servers['cache'].metric('parley_media_cache_misses_total')} misses")
        for s in servers.values():
            s.stop()
    finally:
        subprocess.run(["bash", FIXTURE, "stop", pgdir])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
