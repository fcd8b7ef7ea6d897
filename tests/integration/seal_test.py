"""Encryption at rest (--key-file, docs/operations.md), one scenario per run:
`seal_test.py at_rest|rotate` against the real parleyd (PARLEYD, PARLEY_CLI).
Exits 0 when every check holds; raises on the first that does not."""
import json
import os
import signal
import subprocess
import sys
import tempfile

import mediasrv
import testimg
from mediasrv import PARLEYD, check, wait_for

TMP = tempfile.mkdtemp(prefix="parley-seal-")


def key(cmd, path, *args, ok=True):
    p = subprocess.run([PARLEYD, "key", cmd, path] + list(args), capture_output=True, text=True, timeout=30)
    if ok:
        check(p.returncode == 0, f"parleyd key {cmd}: {p.returncode} {p.stderr}")
    return p


def start(name, keyfile, *extra):
    os.makedirs(os.path.join(TMP, name), exist_ok=True)
    return mediasrv.Server(TMP, name, "--key-file", keyfile, "--media-files", "1", "--sweep-interval", "1",
                           "--login-rate", "0", "--log-level", os.environ.get("SEAL_LOG", "warn"), *extra).start()


def refused_start(data, *extra):
    """parleyd on data must exit non-zero at once; its stderr."""
    p = subprocess.run([PARLEYD, "--data", data, "--listen", f"127.0.0.1:{mediasrv.free_port()}", "--http",
                        f"127.0.0.1:{mediasrv.free_port()}", "--log-level", "warn"] + list(extra),
                       capture_output=True, text=True, timeout=60, preexec_fn=mediasrv.die_with_parent)
    check(p.returncode != 0, f"parleyd started on {data} with {extra}")
    return p.stderr


def files_holding(root, needles):
    """Every file under root (database, WAL, media, spool) holding one of needles."""
    hits = []
    for d, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                data = f.read()
            hits += [(os.path.join(d, n), x[:24]) for x in needles if x in data]
    return hits


def recv(s, user):
    return [json.loads(line) for line in s.cli(user, "recv").stdout.splitlines()]


def fetch(s, user, mid, thumb=False):
    out = os.path.join(TMP, f"got-{mid}-{int(thumb)}")
    if os.path.exists(out):
        os.remove(out)
    s.cli(user, "fetch", *(["--thumb"] if thumb else []), mid, out)
    with open(out, "rb") as f:
        return f.read()


def at_rest():
    """Queued messages, a group's history, an uploaded file (and its name) and
    an image with its thumbnail leave no plaintext in any file of the data
    dir; the offline device gets the exact text; the media come back byte-exact,
    ranges too; a start without the key or with another key fails clearly."""
    kf = os.path.join(TMP, "parleyd.key")
    key("new", kf)
    check(os.stat(kf).st_mode & 0o777 == 0o600, "the key file is 0600")
    mark = "SEALMARK-" + os.urandom(8).hex()
    fmark = ("FILEMARK-" + os.urandom(8).hex()).encode()
    name = "NAMEMARK" + os.urandom(4).hex() + ".bin"
    fpath = os.path.join(TMP, name)
    with open(fpath, "wb") as f:
        f.write(fmark * 5000)  # 100+ KiB: several chunks
    ipath = os.path.join(TMP, "pic.png")
    with open(ipath, "wb") as f:
        f.write(testimg.png(400, 300))
    s = start("at_rest", kf)
    try:
        s.register("alice")
        s.register("bob")
        texts = [f"{mark} one", f"{mark} two ünïcode", f"{mark} three"]
        for t in texts:
            s.cli("alice", "send", "bob", t)  # bob is offline: queued
        g = json.loads(s.cli("alice", "group", "create", "team", "bob").stdout)
        s.cli("alice", "send", "--group", str(g["group"]), f"{mark} to the group")
        s.cli("alice", "send", "--image", fpath, "bob", f"{mark} a file")
        s.cli("alice", "send", "--image", ipath, "bob", "a picture")
    finally:
        s.stop()  # a clean stop checkpoints the WAL into the database
    check(os.path.exists(os.path.join(s.data, "parley.db")), "the database exists")
    hits = files_holding(s.data, [mark.encode(), fmark, name.encode(), b"\x89PNG"])
    check(not hits, f"plaintext at rest: {hits}")
    s = start("at_rest", kf)
    try:
        got = recv(s, "bob")
        plain = [m["text"] for m in got if "group" not in m and "media" not in m]
        check(plain == texts, f"bob's queued texts: {plain}")
        check(any(m.get("text") == f"{mark} to the group" for m in got), f"the group's entry: {got}")
        media = [m for m in got if "media" in m]
        check(len(media) == 2 and media[0]["text"] == f"{mark} a file", f"media messages: {media}")
        check(media[0]["media"].get("name") == name, f"the file's name: {media[0]['media']}")
        with open(fpath, "rb") as f:
            check(fetch(s, "bob", media[0]["media"]["id"]) == f.read(), "the file downloads byte-exact")
        pic = fetch(s, "bob", media[1]["media"]["id"])
        thumb = fetch(s, "bob", media[1]["media"]["id"], thumb=True)
        check(pic.startswith(b"\x89PNG") and (thumb[:3] == b"\xff\xd8\xff" or thumb[:4] in (b"\x89PNG", b"RIFF")),
              f"image and thumbnail: {pic[:8]} {thumb[:8]}")
        tok = s.login("bob")
        st, h, part = s.req("GET", f"/media/{media[0]['media']['id']}", token=tok,
                            headers={"Range": "bytes=70000-70099"})
        with open(fpath, "rb") as f:
            check(st == 206 and part == f.read()[70000:70100], f"a range across chunks: {st} {h}")
    finally:
        s.stop()
    hits = files_holding(s.data, [mark.encode(), fmark, name.encode(), pic[:64], thumb[:64]])
    check(not hits, f"plaintext at rest after reading: {hits}")
    err = refused_start(s.data)
    check("encrypted" in err and "--key-file" in err, f"no key: {err}")
    other = os.path.join(TMP, "other.key")
    key("new", other)
    err = refused_start(s.data, "--key-file", other)
    check("does not open" in err, f"another key: {err}")
    os.chmod(kf, 0o644)
    err = refused_start(s.data, "--key-file", kf)
    check("0600" in err, f"a key file others may read: {err}")
    check(key("new", kf, ok=False).returncode != 0, "key new never overwrites a key file")


def rotate():
    """A key added and loaded by SIGHUP while serving: new records take it, the
    passes re-encrypt the old ones (/metrics), the old key can then go, and
    everything still reads after a restart with the new key alone."""
    kf = os.path.join(TMP, "rot.key")
    key("new", kf)
    mark = "ROTMARK-" + os.urandom(8).hex()
    fpath = os.path.join(TMP, "rot.bin")
    with open(fpath, "wb") as f:
        f.write(os.urandom(150000))
    s = start("rotate", kf)
    try:
        s.register("alice")
        s.register("bob")
        texts = [f"{mark} {i}" for i in range(30)]
        for t in texts[:20]:
            s.cli("alice", "send", "bob", t)
        s.cli("alice", "send", "--image", fpath, "bob", "file")
        wait_for(lambda: s.metric("parley_seal_store_passes_total") >= 1, "the first pass over the messages")
        key("add", kf)
        check(key("list", kf).stdout.split("\n")[:2] == ["1", "2 current"], "key list")
        passes = s.metric("parley_seal_store_passes_total")
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: s.metric("parley_seal_key_id") == 2, "key 2 in use")
        for t in texts[20:]:
            s.cli("alice", "send", "bob", t)
        wait_for(lambda: s.metric("parley_seal_store_passes_total") > passes
                 and not s.metric_or("parley_seal_store_running", 1)
                 and s.metric_or("parley_seal_store_rows{key=\"1\"}", 0) == 0
                 and s.metric_or("parley_seal_store_rows{key=\"2\"}", 0) >= 21, "messages re-encrypted", 60)
        wait_for(lambda: s.metric_or("parley_seal_media_files{key=\"1\"}", 0) == 0
                 and s.metric_or("parley_seal_media_files{key=\"2\"}", 0) == 1
                 and not s.metric_or("parley_seal_media_running", 1), "the blob re-encrypted", 60)
        key("remove", kf, "1")
        s.proc.send_signal(signal.SIGHUP)
        got = [m["text"] for m in recv(s, "bob") if "media" not in m]
        check(got == texts, f"every text reads with the old key gone: {got}")
    finally:
        s.stop()
    check(key("list", kf).stdout.strip() == "2 current", "key 1 removed")
    s = start("rotate", kf)  # key 2 alone: nothing needs key 1
    try:
        st, _, body = s.req("GET", "/metrics")
        check(st == 200, "metrics")
        s.cli("alice", "send", "bob", "after")
        got = recv(s, "bob")
        check([m["text"] for m in got] == ["after"], f"after restart: {got}")
        mid = json.loads(s.cli("alice", "send", "--image", fpath, "bob", "again").stdout)["media"]["id"]
        with open(fpath, "rb") as f:
            check(fetch(s, "bob", mid) == f.read(), "the re-encrypted blob downloads byte-exact")
    finally:
        s.stop()


def metric_or(self, name, default):
    import re
    _, _, body = self.req("GET", "/metrics", token=self.metrics_token)
    m = re.search(rf"^{re.escape(name)} (\d+)", body.decode(), re.M)
    return int(m.group(1)) if m else default


mediasrv.Server.metric_or = metric_or

if __name__ == "__main__":
    {"at_rest": at_rest, "rotate": rotate}[sys.argv[1]]()
    print("ok")
