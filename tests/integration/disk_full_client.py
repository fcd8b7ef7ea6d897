"""Disk full, for real (issue 14), run by test_disk_full.sh with the data dir
on a 28 MiB tmpfs (argv[1]; the pid of parleyd goes to argv[1] + ".pid"),
--disk-reserve 4 MiB.

Alice sends 30 KB messages to Bob, who is offline, until the disk is full:
Sends are refused with ERR_STORAGE_FULL (retry_after_ms set), uploads with
503, /healthz answers 503, parley_store_disk_full is 1. Then twice:
1. Bob logs in (a write), reads every acked message and acks 50 of them
   with one Ack (written while the disk is full: they do not come again);
   /healthz stays 503 until the test deletes the filler file it made, then
   answers 200 without a restart; the reserve is held again, the refused
   Send (same id) is acked.
2. Full again; Bob reads the rest and acks it all with one Ack: one
   transaction deleting ~20 MB of bodies (it failed with secure_delete=ON).
   The room it leaves inside the database is enough: /healthz 200 with no
   file deleted, Sends acked.
Nothing acked is lost; no id is stored twice. Exits 0 when every check holds."""
import asyncio
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import websockets

PROTO = "parley.json.v1"
BODY = base64.b64encode(b"x" * 30000).decode()
RESERVE = 4 << 20
FILLER = 8 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok - {what}")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def upload(base, token):
    req = urllib.request.Request(base + "/media?name=a.png", data=b"\x89PNG" + b"x" * 4096, method="POST",
                                 headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def upload_start(base, token, total, first):
    """An upload of total bytes whose first bytes are sent now; the rest waits."""
    host, port = base[len("http://"):].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.putrequest("POST", "/media?name=big.bin")
    c.putheader("Authorization", "Bearer " + token)
    c.putheader("Content-Length", str(total))
    c.endheaders()
    c.send(b"x" * first)
    return c


def upload_finish(c, rest):
    """Sends the rest of the body; the answer's status (or what went wrong)."""
    try:
        c.send(b"x" * rest)
    except OSError:
        pass  # the server answered and stopped reading: its answer is still there
    try:
        return c.getresponse().status
    except (OSError, http.client.HTTPException) as e:
        return repr(e)
    finally:
        c.close()


def metric(base, name):
    for line in get(base + "/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    return None


async def wait_for(what, cond, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await asyncio.to_thread(cond):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {what}")


class Client:
    def __init__(self, ws):
        self.ws = ws

    async def send(self, **frame):
        await self.ws.send(json.dumps(frame))

    async def recv(self, want=None, timeout=10):
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if want is None or frame["type"] in want:
                return frame


async def connect(url, auth):
    c = Client(await websockets.connect(url, subprotocols=[PROTO], max_size=8 << 20))
    await c.send(type="hello", version=1, kind="KIND_WEB", client_name="disk_full_client.py")
    await c.recv(("welcome",))
    await c.send(**auth)
    ok = await c.recv(("auth_ok", "error"))
    check(ok["type"] == "auth_ok", f"{auth['type']} of {auth['user']}")
    c.token = ok["token"]
    return c


def auth(kind, user):
    return {"type": kind, "user": user, "password": user + "-password", "device": "d"}


async def fill(alice, prefix):
    """Sends 8 at a time until one is refused; returns (acked ids, the refusal)."""
    acked, refused, n, inflight = [], None, 0, 0
    while refused is None and n < 3000:
        while inflight < 8 and refused is None:
            n += 1
            inflight += 1
            await alice.send(type="send", id=f"{prefix}{n}", to="bob", body=BODY, client_ts=1)
        f = await alice.recv(("send_ack", "error"))
        inflight -= 1
        if f["type"] == "send_ack":
            acked.append(f["id"])
        else:
            refused = f
    while inflight:  # the ones already written
        f = await alice.recv(("send_ack", "error"))
        inflight -= 1
        if f["type"] == "send_ack":
            acked.append(f["id"])
        else:
            check(f["code"] == "ERR_STORAGE_FULL", f"every refusal is STORAGE_FULL: {f}")
    return acked, refused


async def drain(url, qids, expect, ack=None):
    """Bob logs in (password: a write) and reads the expect messages queued
    (and any more that come within half a second); an id seen before must
    come under the same qid (stored once). Then one Ack up to the ack-th
    message (all of them if None): one transaction deletes them all, the
    worst case for the WAL (secure_delete=ON needed about the bodies' size).
    Returns the ids in order."""
    bob = await connect(url, auth("login", "bob"))
    got = []
    while True:
        try:
            m = await bob.recv(("message",), timeout=10 if len(got) < expect else 0.5)
        except asyncio.TimeoutError:
            break
        if qids.setdefault(m["id"], m["qid"]) != m["qid"]:
            raise AssertionError(f"{m['id']} stored twice: qids {qids[m['id']]} and {m['qid']}")
        got.append(m)
    upto = got[-1 if ack is None else ack - 1]["qid"] if got and ack != 0 else 0
    if upto:
        await bob.send(type="ack", upto=upto)
    await bob.send(type="ping", client_ts=1)  # the ack is read before the pong is written
    await bob.recv(("pong",))
    await bob.ws.close()
    return [m["id"] for m in got]


async def full_now(alice, base, acked, prefix):
    """Fills the disk; checks the refusals, /healthz and the gauges. Returns the refused id."""
    more, refused = await fill(alice, prefix)
    acked += more
    check(refused is not None, f"a Send is refused once the disk is full ({len(more)} acked)")
    check(refused["code"] == "ERR_STORAGE_FULL" and int(refused.get("retry_after_ms", 0)) > 0,
          "refused with STORAGE_FULL and retry_after_ms")
    check(len(more) > 100, f"{len(more)} messages of 30 KB were stored first")
    st, body = await asyncio.to_thread(get, base + "/healthz")
    check(st == 503 and "disk full" in body, f"/healthz while full: {st} {body.strip()}")
    check(await asyncio.to_thread(metric, base, "parley_store_disk_full") == 1, "parley_store_disk_full 1")
    check(await asyncio.to_thread(metric, base, "parley_store_disk_reserve_held") == 0, "the reserve is given back")
    check(await asyncio.to_thread(upload, base, alice.token) == 503, "an upload is refused (503) while full")
    return refused["ref"]


async def send_ok(alice, ids, acked):
    for i in ids:
        await alice.send(type="send", id=i, to="bob", body=BODY, client_ts=1)
        f = await alice.recv(("send_ack", "error"))
        check(f["type"] == "send_ack" and not f.get("duplicate"), f"Send {i} acked after recovery")
        acked.append(i)


async def stays_503(base, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        st, _ = await asyncio.to_thread(get, base + "/healthz")
        if st != 503:
            return False
        await asyncio.sleep(0.2)
    return True


async def scenario(url, base, mnt):
    alice = await connect(url, auth("register", "alice"))
    bob = await connect(url, auth("register", "bob"))
    await bob.ws.close()  # offline: Alice's messages stay queued
    filler = os.path.join(mnt, "filler")
    with open(filler, "wb") as f:
        f.write(b"\0" * FILLER)
    acked, qids = [], {}

    # 1. The operator frees disk space. An upload under way when the disk
    # fills is cut: the room the store gives back is for acks. (Its first
    # 200 KiB stay in memory, under the 256 KiB write size: a spooled piece
    # deleted at the refusal would free room the checks below count on.)
    big = await asyncio.to_thread(upload_start, base, alice.token, 4 << 20, 200 << 10)
    refused = await full_now(alice, base, acked, "a")
    st = await asyncio.to_thread(upload_finish, big, (4 << 20) - (200 << 10))
    check(st == 503, f"an upload that was under way when the disk filled is refused (503): {st}")
    await alice.send(type="send", id="again", to="bob", body=BODY, client_ts=1)
    f = await alice.recv(("send_ack", "error"))
    check(f["type"] == "error" and f["code"] == "ERR_STORAGE_FULL", "still refused while full")
    got = await drain(url, qids, len(acked), ack=50)  # 1.5 MB: less than the 8 MiB awaited
    check(got == acked, f"Bob logged in while full and got every acked message, in order ({len(got)})")
    again = await drain(url, qids, len(acked) - 50, ack=0)
    check(again[0] == acked[50], "the Ack of 50 was written while the disk was full (the 51st comes first)")
    check(await stays_503(base, 2.5), "the disk is still full: /healthz stays 503")
    os.unlink(filler)
    await wait_for("/healthz 200 after the filler is deleted", lambda: get(base + "/healthz") == (200, "ok\n"))
    check(True, "/healthz 200 again, without a restart")
    check(await asyncio.to_thread(metric, base, "parley_store_disk_full") == 0, "parley_store_disk_full 0")
    check(await asyncio.to_thread(metric, base, "parley_store_disk_reserve_held") == 1, "the reserve is held again")
    await send_ok(alice, [refused, "again"], acked)

    # 2. The clients' acks free room inside the database; no file is deleted.
    await full_now(alice, base, acked, "b")
    got = await drain(url, qids, len(acked) - 50)
    check(got == acked[50:], f"every message not acked yet, in order ({len(got)}), acked with one Ack")
    await wait_for("/healthz 200 once the acks freed room inside the database",
                   lambda: get(base + "/healthz") == (200, "ok\n"))
    check(True, "/healthz 200 again: acks made room, nothing deleted, no restart")
    check(await asyncio.to_thread(metric, base, "parley_store_disk_reserve_held") == 0,
          "running on the database's free pages, the reserve still given back")
    check(await asyncio.to_thread(metric, base, "parley_store_disk_full_total") == 2, "two disk-full episodes")
    last = ["after1", "after2", "after3"]
    await send_ok(alice, last, acked)
    check(await drain(url, qids, len(last)) == last, "the new messages delivered")
    check(set(acked) <= set(qids), f"nothing acked was lost ({len(acked)} messages)")
    await alice.ws.close()


def main():
    mnt = sys.argv[1]
    parleyd = os.environ["PARLEYD"]
    logdir = tempfile.mkdtemp(prefix="parley-diskfull-log-")  # off the full disk
    log = open(os.path.join(logdir, "parleyd.log"), "w")
    port, http_port = free_port(), free_port()
    srv = subprocess.Popen([parleyd, "--data", os.path.join(mnt, "data"), "--listen", f"127.0.0.1:{port}",
                            "--http", f"127.0.0.1:{http_port}", "--threads", "2", "--argon2-mem", "8",
                            "--argon2-ops", "1", "--send-rate", "0", "--max-queue-share", "100",
                            "--disk-reserve", str(RESERVE), "--durability", "process"], stderr=log)
    with open(mnt + ".pid", "w") as f:
        f.write(str(srv.pid))
    base = f"http://127.0.0.1:{http_port}"
    rc = 1
    try:
        for _ in range(250):
            try:
                if get(base + "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.02)
        asyncio.run(scenario(f"ws://127.0.0.1:{http_port}/ws", base, mnt))
        rc = 0
    except Exception as e:  # noqa: BLE001 - any failure, with the server's log
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        srv.terminate()
        try:
            code = srv.wait(30)
        except subprocess.TimeoutExpired:
            srv.kill()
            code = srv.wait()
        os.unlink(mnt + ".pid")
    if code != 0:
        print(f"FAIL: parleyd exited with {code}", file=sys.stderr)
        rc = 1
    if rc:
        print("---- parleyd log (last 40 lines)", file=sys.stderr)
        with open(os.path.join(logdir, "parleyd.log")) as f:
            sys.stderr.write("".join(f.readlines()[-40:]))
    else:
        print("PASS disk_full_client: refused sends, working acks and logins, healthz, recovery")
    subprocess.run(["rm", "-rf", logdir])
    return rc


if __name__ == "__main__":
    sys.exit(main())
