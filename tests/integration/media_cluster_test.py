"""Media across nodes on one PostgreSQL (issue 15, docs/architecture.md 17):
two real parleyd on one database, no shared directory. An image and a file
uploaded through node A download byte-identical through node B (thumbnails
too, ranges too, and links A signed), B never holds the bytes on its disk, the same bytes put
through both nodes at once are stored once, and an upload the sweep expires
is gone for both nodes, its blobs removed once although both nodes sweep.
A and B run without the media cache (--media-cache 0); a third node C runs
with it: a second download through C is served from its copy, byte-identical,
and the copies stay within the size given.

Run by test_media_cluster.sh in the pg label: PL_PG_DIR is the pg fixture's
directory (its conninfo), PARLEYD the real parleyd, PARLEY_CLI the CLI."""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

import mediasrv
from mediasrv import check, wait_for
from testimg import png

TMP = tempfile.mkdtemp(prefix="parley-media-cluster-")
with open(os.path.join(os.environ["PL_PG_DIR"], "conninfo")) as f:
    CONN = f.read().strip()
DB = "pmc_" + uuid.uuid4().hex[:16]


def psql(sql, db=DB):
    return subprocess.run(["psql", f"{CONN} dbname={db}", "-qAtc", sql], capture_output=True, text=True,
                          check=True).stdout.split()


class Node(mediasrv.Server):
    def __init__(self, name, *extra, cache="0"):
        super().__init__(TMP, name, "--store", f"{CONN} dbname={DB}", "--media-files", "1",
                         "--media-cache", cache, *extra)

    def blobs(self):
        return psql("SELECT key FROM blobs ORDER BY key")


def files_under(d):
    for root, _, names in os.walk(d):
        for n in names:
            yield os.path.join(root, n)


def never_on_disk(node, *contents):
    """No file under node's data directory holds any of contents, and its
    media directory has no blob files (the two-hex fan-out of the file store)."""
    for path in files_under(node.data):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        for c in contents:
            check(c not in data, f"{path} on {node.data} holds an upload's bytes")
    media = os.path.join(node.data, "media")
    check(not [s for s in os.listdir(media) if len(s) == 2], f"no blob files in {media}: {os.listdir(media)}")


def across(a, b):
    alice = a.register("alice")
    a.register("bob")
    # an image, through A
    img = png(200, 120)
    st, m = a.upload(alice, img, "pic.png")
    check(st == 201 and m["thumb_size"] > 0, f"image upload on A: {st} {m}")
    # a plain file of several chunks (1 MiB each), through A
    big = os.urandom(2500000)
    st, f = a.upload(alice, big, "data.bin")
    check(st == 201 and f["size"] == len(big), f"file upload on A: {st} {f}")
    # both through B, with a token of B's
    alice_b = b.login("alice")
    st, h, got = b.req("GET", f"/media/{f['id']}", token=alice_b)
    check(st == 200 and got == big, f"the file downloads byte-identical through B: {st} {len(got)}")
    _, _, on_a = a.req("GET", f"/media/{m['id']}", token=alice)
    st, _, on_b = b.req("GET", f"/media/{m['id']}", token=alice_b)
    check(st == 200 and on_b == on_a and on_b.startswith(b"\x89PNG"), f"the image through B as through A: {st}")
    _, _, th_a = a.req("GET", f"/media/{m['id']}/thumb", token=alice)
    st, h, th_b = b.req("GET", f"/media/{m['id']}/thumb", token=alice_b)
    check(st == 200 and th_b == th_a and th_b[:2] == b"\xff\xd8" and len(th_b) == m["thumb_size"],
          f"the thumbnail through B: {st} {len(th_b)}")
    st, h, part = b.req("GET", f"/media/{f['id']}", token=alice_b, headers={"Range": "bytes=1048570-1048585"})
    check(st == 206 and part == big[1048570:1048586], f"a range across a chunk boundary through B: {st}")
    st, _, data = b.req("GET", f"/media/{f['id']}", token=alice_b, headers={"If-None-Match": h["etag"]})
    check(st == 304 and data == b"", "revalidation through B: 304")
    # bob, sent the same image through A, fetches it through B with B's CLI
    sent = os.path.join(TMP, "sent.png")
    with open(sent, "wb") as out:
        out.write(img)
    ack = json.loads(a.cli("alice", "send", "--image", sent, "bob", "look").stdout)
    fetched = os.path.join(TMP, "fetched.png")
    b.cli("bob", "fetch", ack["media"]["id"], fetched)
    with open(fetched, "rb") as got_f:
        check(got_f.read() == on_a, "bob's fetch through B")
    # a link A signs opens through B (the link key is the database's)
    st, _, body = a.req("POST", f"/media/{m['id']}/link", b"", a.login("alice"))
    link = json.loads(body)
    check(st == 200, f"a signed link from A: {st} {body}")
    st, _, data = b.req("GET", link["url"])
    check(st == 200 and data == on_a, f"A's signed link through B: {st}")
    st, _, data = b.req("GET", link["thumb_url"])
    check(st == 200 and data == th_a, f"A's signed thumbnail link through B: {st}")
    never_on_disk(b, big, on_a, th_a)
    never_on_disk(a, big)  # A's spool is emptied too: the bytes are in the database only
    check(len(a.blobs()) == 3, f"one blob each: image, thumbnail, file: {a.blobs()}")

    # the same bytes through both nodes at once: both uploads succeed, one blob
    same = os.urandom(1500000)
    res = {}
    alice_b = b.login("alice")  # the CLI's logins above gave its device new tokens

    def up(node, tok, k):
        res[k] = node.upload(tok, same, "same.bin")

    ts = [threading.Thread(target=up, args=(a, alice, "a")), threading.Thread(target=up, args=(b, alice_b, "b"))]
    [t.start() for t in ts]
    [t.join() for t in ts]
    check(res["a"][0] == 201 and res["b"][0] == 201, f"concurrent uploads of the same bytes: {res}")
    check(len(a.blobs()) == 4, f"the same bytes are stored once: {a.blobs()}")
    check(psql("SELECT count(*) FROM blob_chunks WHERE key NOT IN (SELECT key FROM blobs)") == ["0"],
          "no chunk without its blob")
    image_key = a.req("GET", f"/media/{m['id']}", token=alice)[1]["etag"].strip('"')
    # the database drops every connection (a restart, a failover): the nodes
    # connect again, and B serves the file again, without a crash
    psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
         f" WHERE datname = '{DB}' AND pid <> pg_backend_pid()")
    wait_for(lambda: b.req("GET", f"/media/{f['id']}", token=alice_b)[:3:2] == (200, big),
             "B serves the file again after the database dropped its connections")
    check(a.proc.poll() is None and b.proc.poll() is None, "both nodes still run")
    return {"image_key": image_key, "sent": ack["media"]["id"]}


def cached(a):
    """Node C keeps a copy of what it serves (--media-cache 4000000: one copy
    at most 500,000 bytes): the first download through C reads the database,
    the second C's copy, byte-identical; an upload through C is kept as it
    goes in; a blob over an eighth of the size is served, never kept; the
    copies stay within the size (the least recently served go)."""
    c = Node("c", cache="4000000").start()
    try:
        alice_a = alice_c = c.login("alice")  # a token is the database's: good on every node
        data = os.urandom(300000)
        st, m = a.upload(alice_a, data, "cached.bin")
        check(st == 201, f"upload through A: {st} {m}")
        hits, misses = c.metric("parley_media_cache_hits_total"), c.metric("parley_media_cache_misses_total")
        for i in range(2):
            st, _, got = c.req("GET", f"/media/{m['id']}", token=alice_c)
            check(st == 200 and got == data, f"download {i + 1} through C: {st} {len(got)}")
        check(c.metric("parley_media_cache_misses_total") == misses + 1, "the first through C reads the database")
        check(c.metric("parley_media_cache_hits_total") == hits + 1, "the second is served from C's copy")
        never_on_disk(a, data)  # A runs without the cache
        mine = os.urandom(200000)
        st, m2 = c.upload(alice_c, mine, "mine.bin")
        check(st == 201, f"upload through C: {st} {m2}")
        st, _, got = c.req("GET", f"/media/{m2['id']}", token=alice_c)
        check(st == 200 and got == mine, f"C's own upload downloads: {st}")
        check(c.metric("parley_media_cache_hits_total") == hits + 2, "an upload through C is kept as it goes in")
        big = os.urandom(600000)
        st, m3 = a.upload(alice_a, big, "big.bin")
        for i in range(2):
            st, _, got = c.req("GET", f"/media/{m3['id']}", token=alice_c)
            check(st == 200 and got == big, f"a blob over an eighth through C: {st}")
        check(c.metric("parley_media_cache_misses_total") == misses + 3, "a blob over an eighth is never kept")
        # more than fits: the copies stay within 4,000,000 bytes, and every
        # blob still downloads whole (from the database when its copy went)
        many = [os.urandom(450000) for _ in range(12)]
        ids = [a.upload(alice_a, d, f"m{i}.bin")[1]["id"] for i, d in enumerate(many)]
        for _ in range(2):
            for mid, d in zip(ids, many):
                st, _, got = c.req("GET", f"/media/{mid}", token=alice_c)
                check(st == 200 and got == d, f"{mid} through C: {st}")
        check(c.metric("parley_media_cache_bytes") <= 4000000, "the copies stay within --media-cache")
        check(c.metric("parley_media_cache_evictions_total") > 0, "the oldest copies went")
        cache_dir = os.path.join(c.data, "media", "blobcache")
        on_disk = sum(os.path.getsize(p) for p in files_under(cache_dir))
        check(on_disk == c.metric("parley_media_cache_bytes"), f"the files are what the gauge says: {on_disk}")
    finally:
        c.stop()
    # a restart starts with no copies (one half written when the machine
    # stopped is never trusted)
    c = Node("c", cache="4000000").start()
    try:
        check(not list(files_under(os.path.join(c.data, "media", "blobcache"))), "a restart empties the cache")
    finally:
        c.stop()


def expiry(up, img):
    """Both nodes restarted with a TTL of a second and a sweep every second:
    uploads no stored message carries go, for both nodes, with the blobs no
    other upload names (removed once, though both nodes sweep); a blob
    another upload still names stays."""
    a = Node("a", "--media-ttl", "1", "--sweep-interval", "1").start()
    b = Node("b", "--media-ttl", "1", "--sweep-interval", "1").start()
    try:
        alice_a = alice_b = a.login("alice")  # a token is the database's: good on every node
        lone_a, lone_b = os.urandom(2200000), os.urandom(300000)
        ids = []
        for node, tok, data in ((a, alice_a, lone_a), (b, alice_b, lone_b), (a, alice_a, img)):
            st, m = node.upload(tok, data, "x")
            check(st == 201, f"upload: {st} {m}")
            ids.append(m["id"])
        for mid in ids:
            wait_for(lambda: a.req("GET", f"/media/{mid}", token=alice_a)[0] == 404, f"{mid} expired: 404 on A")
            check(b.req("GET", f"/media/{mid}", token=alice_b)[0] == 404, f"{mid}: 404 on B")
        blobs = a.blobs()
        for data in (lone_a, lone_b):  # a plain file's key is the SHA-256 of its bytes
            check(hashlib.sha256(data).hexdigest() not in blobs, f"an expired upload's blob is removed: {blobs}")
        # the image's bytes (and thumbnail) are also the first uploads' and the sent message's
        check(up["image_key"] in blobs and len(blobs) == 4, f"a blob an upload still names stays: {blobs}")
        bob_b = b.login("bob")
        st, _, data = b.req("GET", f"/media/{up['sent']}", token=bob_b)
        check(st == 200 and data.startswith(b"\x89PNG"), f"the sent image still downloads through B: {st}")
        check(psql("SELECT count(*) FROM blob_chunks WHERE key NOT IN (SELECT key FROM blobs)") == ["0"],
              "no chunk left without its blob")
    finally:
        a.stop()
        b.stop()


def main():
    psql(f"CREATE DATABASE {DB}", db="postgres")
    try:
        a = Node("a").start()
        # B was a node of its own before (its blobs in files): they move into the database
        old = os.urandom(5000)
        old_key = hashlib.sha256(old).hexdigest()
        os.makedirs(os.path.join(TMP, "b", "media", old_key[:2]))
        with open(os.path.join(TMP, "b", "media", old_key[:2], old_key), "wb") as f:
            f.write(old)
        b = Node("b").start()
        check(old_key in b.blobs(), "a file of the node's own file store is moved into the database")
        check(not os.path.exists(os.path.join(TMP, "b", "media", old_key[:2], old_key)), "and its file is gone")
        psql(f"DELETE FROM blob_chunks WHERE key = '{old_key}'; DELETE FROM blobs WHERE key = '{old_key}'")
        try:
            up = across(a, b)
        finally:
            a.stop()
            b.stop()
        expiry(up, png(200, 120))
        a = Node("a").start()
        try:
            cached(a)
        finally:
            a.stop()
    finally:
        subprocess.run(["psql", f"{CONN} dbname=postgres", "-qAtc", f"DROP DATABASE IF EXISTS {DB}"],
                       capture_output=True)
    print("media_cluster_test: all checks passed")


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
