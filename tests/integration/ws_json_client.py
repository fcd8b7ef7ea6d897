"""A third-party client of Parley's JSON binding, written from docs/protocol.md
(sections 1.1-1.3, 4, 9, 10) with python3-websockets and urllib (long-poll),
against the real parleyd.

Run by test_ws_json.sh with Debian's /usr/bin/python3 (PARLEYD: the server binary).
Exits 0 when every check holds; prints the failing check otherwise."""
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets
from mediasrv import die_with_parent
from testimg import png

PROTO = "parley.json.v1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Client:
    """One device: a WebSocket speaking JSON frames."""

    def __init__(self, ws):
        self.ws = ws

    async def send(self, **frame):
        await self.ws.send(json.dumps(frame))

    async def recv(self, want=None, timeout=5):
        """The next frame (of type `want`, skipping receipts and presence if it is another)."""
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
            check(isinstance(raw, str), "a text message, got binary")
            frame = json.loads(raw)
            if want is None or frame["type"] == want:
                return frame
            check(frame["type"] in ("receipt", "presence", "read_sync"),
                  f"expected {want}, got {frame}")


async def connect(url, proto=PROTO, version=1):
    ws = await websockets.connect(url, subprotocols=[proto], max_size=4 << 20)
    check(ws.subprotocol == proto, f"server chose {ws.subprotocol!r}")
    c = Client(ws)
    await c.send(type="hello", version=version, kind="KIND_WEB", client_name="ws_json_client.py")
    w = await c.recv("welcome")
    check(w["version"] == version and w["heartbeat_ms"] > 0 and w["max_frame"] > 0, f"welcome {w}")
    check(abs(w["server_ts"] - time.time() * 1000) < 60000, "server clock in Welcome")
    return c


def b64(s):
    return base64.b64encode(s.encode()).decode()


async def scenario(url):
    alice = await connect(url)
    await alice.send(type="register", user="alice", password="alice-password", device="browser")
    a_ok = await alice.recv("auth_ok")
    check(a_ok["user"] == "alice" and a_ok["token"] and int(a_ok["device_id"]) > 0 and a_ok["created"], str(a_ok))

    bob = await connect(url)
    await bob.send(type="register", user="bob", password="bob-password", device="laptop")
    await bob.recv("auth_ok")

    # a message with non-ASCII text, as base64 bytes
    now = int(time.time() * 1000)
    await alice.send(type="send", id="a1", to="bob", body=b64("héllo bob ✓"), client_ts=now)
    ack = await alice.recv("send_ack")
    check(ack["id"] == "a1" and ack["conv"] == "dm:alice:bob" and ack["seq"] == 1, str(ack))
    check("duplicate" not in ack, "zero fields are left out")

    m = await bob.recv("message")
    check(m["from"] == "alice" and m["from_device"] == "browser" and m["id"] == "a1", str(m))
    check(base64.b64decode(m["body"]).decode() == "héllo bob ✓", "body round trip")
    check(m["seq"] == 1 and m["client_ts"] == now and m["qid"] > 0, str(m))
    await bob.send(type="ack", upto=m["qid"])

    # the delivered tick reaches the sender
    while True:
        r = await alice.recv()
        if r["type"] == "receipt":
            break
    check(r["status"] == "RECEIPT_DELIVERED" and r["by"] == "bob" and r["seq"] == 1, str(r))

    # a retry of the same id is acknowledged again, same seq, marked duplicate; bob gets nothing new
    await alice.send(type="send", id="a1", to="bob", body=b64("héllo bob ✓"), client_ts=now)
    dup = await alice.recv("send_ack")
    check(dup["duplicate"] is True and dup["seq"] == 1, str(dup))

    # 64-bit numbers as strings are read too; a ping is answered with its client_ts
    await bob.send(type="ping", client_ts=str(now))
    pong = await bob.recv("pong")
    check(pong["client_ts"] == now, str(pong))

    # the token resumes the device on a new connection; the message was acked: nothing comes
    alice2 = await connect(url)
    await alice.ws.close()
    await alice2.send(type="resume", token=a_ok["token"])
    again = await alice2.recv("auth_ok")
    check(again["device_id"] == a_ok["device_id"], str(again))

    # a send to nobody: an Error with the Send's id as ref, the connection stays
    await alice2.send(type="send", id="a2", to="nobody", body=b64("x"), client_ts=now)
    e = await alice2.recv("error")
    check(e["code"] == "ERR_UNKNOWN_PEER" and e["ref"] == "a2", str(e))
    await alice2.send(type="ping", client_ts=1)
    await alice2.recv("pong")

    # an image (protocol.md 13): uploaded over HTTP with the token, sent as a reference
    base = url.replace("ws://", "http://").rsplit("/ws", 1)[0]
    req = urllib.request.Request(base + "/media?name=dot.png", data=png(3, 2), method="POST",
                                 headers={"Authorization": "Bearer " + a_ok["token"]})
    with urllib.request.urlopen(req, timeout=10) as r:
        media = json.loads(r.read())
        check(r.status == 201 and media["type"] == "image/png" and media["width"] == 3, str(media))
    await alice2.send(type="send", id="a3", to="bob", body=b64("a dot"), client_ts=now, media={"id": media["id"]})
    check((await alice2.recv("send_ack"))["seq"] == 2, "the image message's seq")
    m = await bob.recv("message")
    check(m["media"]["id"] == media["id"] and m["media"]["type"] == "image/png" and m["media"]["height"] == 2
          and m["media"]["thumb_width"] == 3 and base64.b64decode(m["body"]) == b"a dot", str(m))
    await alice2.send(type="send", id="a4", to="bob", body="", client_ts=now, media={"id": "0" * 32})
    e = await alice2.recv("error")
    check(e["code"] == "ERR_UNKNOWN_MEDIA" and e["ref"] == "a4", str(e))
    await alice2.ws.close()
    await bob.ws.close()


async def group_messages(c, n):
    """The next n Messages (group events and messages), skipping receipts."""
    return [await c.recv("message") for _ in range(n)]


async def answer(c, want):
    """The next frame of type want; a member's own group entries before it are passed over."""
    while True:
        f = await c.recv()
        if f["type"] == want:
            return f
        check(f["type"] in ("message", "receipt", "presence", "read_sync"), f"expected {want}, got {f}")


async def quiet(c, seconds=0.5):
    try:
        f = await c.recv(timeout=seconds)
        check(False, f"nothing more expected, got {f}")
    except asyncio.TimeoutError:
        pass


async def protocol2(url):
    """Protocol 2 (protocol.md 10.3-10.4): a group's entries are positioned by
    seq and acknowledged per group with Ack.groups; what was acked is not sent
    again, what was not comes again under the same seqs."""
    carol = await connect(url)
    await carol.send(type="register", user="carol", password="carol-password", device="web")
    await carol.recv("auth_ok")
    dave = await connect(url, version=2)
    await dave.send(type="register", user="dave", password="dave-password", device="web")
    d_ok = await dave.recv("auth_ok")
    await dave.ws.close()
    gids = []
    for ref in ("p1", "p2"):
        await carol.send(type="group_create", ref=ref, name="team " + ref, members=["dave"])
        gids.append((await answer(carol, "group_info"))["group"])
    for i, g in enumerate(gids):
        await carol.send(type="send", id=f"p{i}", group=g, body=b64("hi"), client_ts=1)
        check((await answer(carol, "send_ack"))["seq"] == 2, "a group message's seq")
    async def back():
        c = await connect(url, version=2)
        await c.send(type="resume", token=d_ok["token"])
        await c.recv("auth_ok")
        return c

    async def ack_and_leave(c, groups):
        await c.send(type="ack", groups=groups)
        await c.send(type="ping", client_ts=1)  # the ack is read before the pong is written
        await c.recv("pong")
        await c.ws.close()

    dave = await back()
    got = await group_messages(dave, 4)
    seqs = {g: [m["seq"] for m in got if m["group"] == g] for g in gids}
    check(all(seqs[g] == [1, 2] for g in gids), f"each group from seq 1, in order: {seqs}")
    await ack_and_leave(dave, [{"group": gids[0], "upto_seq": 2}])  # only the first group
    dave = await back()
    got = await group_messages(dave, 2)
    check([(m["group"], m["seq"]) for m in got] == [(gids[1], 1), (gids[1], 2)],
          f"only the group not acked comes again: {got}")
    await quiet(dave)
    await ack_and_leave(dave, [{"group": gids[1], "upto_seq": "2"}])
    dave = await back()
    await quiet(dave)
    await dave.ws.close()
    await carol.ws.close()


async def bad_input(url, text, code, what):
    c = await connect(url)
    await c.ws.send(text)
    e = await c.recv("error")
    check(e["code"] == code, f"{what}: {e}")
    try:
        await asyncio.wait_for(c.ws.recv(), 5)
        check(False, f"{what}: the server kept the connection open")
    except websockets.ConnectionClosed as closed:
        check(closed.rcvd is not None and closed.rcvd.code == 1000, f"{what}: close {closed.rcvd}")


async def refusals(url):
    await bad_input(url, "{not json", "ERR_BAD_FRAME", "not JSON")
    await bad_input(url, json.dumps({"type": "no_such_frame"}), "ERR_UNKNOWN_TYPE", "unknown type")
    await bad_input(url, json.dumps({"type": "ping", "client_ts": "soon"}), "ERR_BAD_FRAME", "wrong kind")
    await bad_input(url, json.dumps(["ping"]), "ERR_BAD_FRAME", "not an object")
    # binary on a JSON session: close 1003
    c = await connect(url)
    await c.ws.send(b"\x00\x00\x00\x01\x0e")
    try:
        await asyncio.wait_for(c.ws.recv(), 5)
        check(False, "binary on a JSON session was accepted")
    except websockets.ConnectionClosed as closed:
        check(closed.rcvd is not None and closed.rcvd.code == 1003, f"close {closed.rcvd}")


def http(method, url, body=None, timeout=70):
    """(status, parsed JSON or None) of one request; each its own connection."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


async def poll(base, sid, want, wait=5):
    """Frames from held GETs until one of type `want` comes (returns it, and all seen)."""
    seen = []
    for _ in range(10):
        st, frames = await asyncio.to_thread(http, "GET", f"{base}/lp/{sid}?wait={wait}")
        check(st == 200 and isinstance(frames, list), f"GET /lp: {st} {frames}")
        seen += frames
        for f in frames:
            if f["type"] == want:
                return f, seen
    raise AssertionError(f"no {want} in {seen}")


async def longpoll(base, url):
    # open a session with Hello + Register in the same request
    st, body = await asyncio.to_thread(http, "POST", f"{base}/lp", [
        {"type": "hello", "version": 1, "kind": "KIND_WEB", "client_name": "lp-client"},
        {"type": "register", "user": "lena", "password": "lena-password", "device": "lp"}])
    check(st == 200 and body["sid"], f"open: {st} {body}")
    sid = body["sid"]
    ok, seen = await poll(base, sid, "auth_ok")
    check(seen[0]["type"] == "welcome" and ok["user"] == "lena", str(seen))

    # an empty poll returns [] after its wait
    t0 = time.time()
    st, frames = await asyncio.to_thread(http, "GET", f"{base}/lp/{sid}?wait=1")
    check(st == 200 and frames == [] and time.time() - t0 >= 0.9, f"empty poll {st} {frames}")

    # a WebSocket user writes to the long-poll user: the held GET returns with it
    wendy = await connect(url)
    await wendy.send(type="register", user="wendy", password="wendy-password", device="ws")
    await wendy.recv("auth_ok")
    held = asyncio.create_task(poll(base, sid, "message", wait=20))
    await asyncio.sleep(0.3)
    t0 = time.time()
    await wendy.send(type="send", id="w1", to="lena", body=b64("over long-poll"), client_ts=1)
    await wendy.recv("send_ack")
    m, _ = await held
    check(time.time() - t0 < 3, "the held GET returned as soon as the message came")
    check(m["from"] == "wendy" and base64.b64decode(m["body"]).decode() == "over long-poll", str(m))

    # ack and answer through POST; the WebSocket user gets the answer and the delivered tick
    st, _ = await asyncio.to_thread(http, "POST", f"{base}/lp/{sid}", [
        {"type": "ack", "upto": m["qid"]},
        {"type": "send", "id": "l1", "to": "wendy", "body": b64("back over HTTP"), "client_ts": 2}])
    check(st == 204, f"POST frames: {st}")
    ack, _ = await poll(base, sid, "send_ack")
    check(ack["id"] == "l1" and ack["seq"] == 2, str(ack))
    got = await wendy.recv("message")
    check(got["from"] == "lena" and base64.b64decode(got["body"]).decode() == "back over HTTP", str(got))

    # message actions over long-poll (protocol.md 11.9): lena reacts to wendy's message and
    # edits hers; wendy gets both in order, as messages with their act; an edit of
    # someone else's message is refused with its code
    st, _ = await asyncio.to_thread(http, "POST", f"{base}/lp/{sid}", [
        {"type": "send", "id": "l2", "to": "wendy", "body": b64("\U0001F44D"), "act": {"kind": "ACT_REACTION", "target": 1}},
        {"type": "send", "id": "l3", "to": "wendy", "body": b64("back over HTTP!"), "act": {"kind": "ACT_EDIT", "target": 2}},
        {"type": "send", "id": "l4", "to": "wendy", "body": b64("mine?"), "act": {"kind": "ACT_EDIT", "target": 1}}])
    check(st == 204, f"POST actions: {st}")
    err, seen = await poll(base, sid, "error")
    check(err["code"] == "ERR_NOT_AUTHOR" and err["ref"] == "l4", str(err))
    check([f["seq"] for f in seen if f["type"] == "send_ack"] == [3, 4], str(seen))
    react = await wendy.recv("message")
    check(react["seq"] == 3 and react["act"] == {"kind": "ACT_REACTION", "target": 1}, str(react))
    edit = await wendy.recv("message")
    check(edit["act"] == {"kind": "ACT_EDIT", "target": 2}
          and base64.b64decode(edit["body"]).decode() == "back over HTTP!", str(edit))

    # bad JSON: 400 now, and the session ends with an Error the next GET gives
    st, body = await asyncio.to_thread(http, "POST", f"{base}/lp/{sid}", None)
    check(st == 204, f"an empty POST is fine: {st}")
    req = urllib.request.Request(f"{base}/lp/{sid}", data=b"[{\"type\":", method="POST")
    try:
        urllib.request.urlopen(req, timeout=10)
        check(False, "bad JSON accepted")
    except urllib.error.HTTPError as e:
        check(e.code == 400 and "not JSON" in json.loads(e.read())["error"], "400 for bad JSON")
    err, _ = await poll(base, sid, "error")
    check(err["code"] == "ERR_BAD_FRAME", str(err))
    st, body = await asyncio.to_thread(http, "GET", f"{base}/lp/{sid}?wait=1")
    check(st == 404, f"the session is gone: {st} {body}")

    # a session that is ended by DELETE; an unknown one
    st, body = await asyncio.to_thread(http, "POST", f"{base}/lp", [{"type": "hello", "version": 1}])
    sid2 = body["sid"]
    st, _ = await asyncio.to_thread(http, "DELETE", f"{base}/lp/{sid2}")
    check(st == 204, f"DELETE {st}")
    st, _ = await asyncio.to_thread(http, "POST", f"{base}/lp/{sid2}", [{"type": "ping"}])
    check(st == 404, f"POST after DELETE {st}")
    st, _ = await asyncio.to_thread(http, "GET", f"{base}/lp/0-{'0' * 32}?wait=1")
    check(st == 404, f"unknown session {st}")
    await wendy.ws.close()


async def rest(base, url):
    """Register and log in over plain HTTP, then use the token on a WebSocket."""
    st, ok = await asyncio.to_thread(http, "POST", f"{base}/api/register",
                                     {"user": "rita", "password": "rita-password", "device": "tablet"})
    check(st == 200 and ok["user"] == "rita" and ok["device"] == "tablet" and ok["token"] and ok["created"],
          f"register: {st} {ok}")
    st, e = await asyncio.to_thread(http, "POST", f"{base}/api/register",
                                    {"user": "rita", "password": "rita-password"})
    check(st == 409 and e["error"] == "ERR_USER_EXISTS", f"register twice: {st} {e}")
    st, e = await asyncio.to_thread(http, "POST", f"{base}/api/login", {"user": "rita", "password": "nope-nope-nope"})
    check(st == 401 and e["error"] == "ERR_BAD_CREDENTIALS", f"wrong password: {st} {e}")
    st, e = await asyncio.to_thread(http, "POST", f"{base}/api/login", {"user": "rita"})
    check(st == 400 and e["error"] == "ERR_INVALID_ARGUMENT", f"no password: {st} {e}")
    st, ok = await asyncio.to_thread(http, "POST", f"{base}/api/login",
                                     {"user": "rita", "password": "rita-password", "device": "tablet"})
    check(st == 200 and int(ok["device_id"]) > 0 and "created" not in ok, f"login: {st} {ok}")
    c = await connect(url)
    await c.send(type="resume", token=ok["token"])
    back = await c.recv("auth_ok")
    check(back["user"] == "rita" and back["device_id"] == ok["device_id"], str(back))
    await c.ws.close()


async def devices(url):
    """Devices over JSON (protocol.md 7.7): list, then revoke the other device."""
    a = await connect(url)
    await a.send(type="register", user="dora", password="dora-password", device="phone")
    await a.recv("auth_ok")
    b = await connect(url)
    await b.send(type="login", user="dora", password="dora-password", device="laptop")
    ok = await b.recv("auth_ok")
    await a.send(type="devices", ref="d1")
    dl = await a.recv("device_list")
    names = {d["name"]: d for d in dl["devices"]}
    check(dl["ref"] == "d1" and set(names) == {"phone", "laptop"}, str(dl))
    check(names["phone"].get("current") is True and names["laptop"].get("online") is True, str(dl))
    await a.send(type="devices", ref="d2", op="DEVICES_REVOKE", device="laptop")
    dl = await a.recv("device_list")
    check([d["name"] for d in dl["devices"]] == ["phone"] and dl["revoked"] == ["laptop"], str(dl))
    try:
        await asyncio.wait_for(b.ws.recv(), 5)  # nothing more: the connection closes
        check(False, "the revoked device's connection stays open")
    except websockets.ConnectionClosed:
        pass
    c = await connect(url)
    await c.send(type="resume", token=ok["token"])
    e = await c.recv("error")
    check(e["code"] == "ERR_BAD_TOKEN", str(e))
    for x in (a, c):
        await x.ws.close()


async def expect_invalid(c, message, ref=None):
    """The next frame is INVALID_ARGUMENT with this message (and ref), and the connection stays."""
    e = await c.recv("error")
    check(e["code"] == "ERR_INVALID_ARGUMENT" and e["message"] == message and e.get("ref") == ref,
          f"expected INVALID_ARGUMENT {message!r} ref {ref!r}, got {e}")
    await c.send(type="ping", client_ts=7)
    check((await c.recv("pong"))["client_ts"] == 7, "the connection stays after a bad string")


async def strings(url):
    """protocol.md 4, Strings: \\u0000 and lone surrogates are refused as a native client's NUL and
    invalid UTF-8 are, with the same INVALID_ARGUMENT naming the field, and nothing is made."""
    c = await connect(url)
    await c.send(type="register", user="sam\x00x", password="sam-password", device="web")
    await expect_invalid(c, "user: contains NUL")
    await c.send(type="register", user="sam", password="sam-password\x00tail", device="web")
    await expect_invalid(c, "password: contains NUL")
    await c.send(type="register", user="sam", password="sam-password", device="web\ud800")
    await expect_invalid(c, "device: not valid UTF-8")
    await c.send(type="register", user="sam", password="sam-password", device="\udc00x\ud83d\ude00")
    await expect_invalid(c, "device: not valid UTF-8")  # a lone low surrogate; the pair after it is fine
    await c.send(type="register", user="sam", password="sam-password", device="web \U0001F600")
    check((await c.recv("auth_ok"))["created"] is True, "sam is made only now")
    await c.send(type="send", id="same\x00one", to="sam", body=b64("first"))
    await expect_invalid(c, "id: contains NUL")  # the id itself is bad: no ref
    await c.send(type="send", id="same\x00two", to="sam", body=b64("second"))
    await expect_invalid(c, "id: contains NUL")
    await c.send(type="send", id="t1", to="sam", body=base64.b64encode(b"caf\xc3").decode())
    await expect_invalid(c, "body: not valid UTF-8", "t1")
    await c.send(type="send", id="t2", to="sam", body=b64("\x1b[2J"))
    await expect_invalid(c, "body: control character U+001B", "t2")
    await c.send(type="send", id="same", to="sam", body=b64("two\nlines"))
    check((await c.recv("send_ack"))["seq"] == 1, "nothing was stored before: the good send is seq 1")
    await c.send(type="group_create", ref="g1", name="two\nlines")
    await expect_invalid(c, "group name: control character U+000A", "g1")
    await c.send(type="group_create", ref="g2", name="\x1b[31mred")
    await expect_invalid(c, "group name: control character U+001B", "g2")
    await c.send(type="group_create", ref="g3", name="caf\u00e9", description="line\nline")
    ev = (await c.recv("message"))["event"]  # its history's first entry comes before the answer
    check(ev["type"] == "GE_CREATED" and ev["name"] == "café", f"enum names as protocol.md 1.2 writes them: {ev}")
    check((await c.recv("group_info"))["name"] == "café", "a good group")
    await c.ws.close()
    # a NUL cannot smuggle a frame type or an enum name past its end
    await bad_input(url, json.dumps({"type": "ping\x00x"}), "ERR_BAD_FRAME", "type with a NUL")
    await bad_input(url, json.dumps({"type": "settings", "last_seen": "LAST_SEEN_NOBODY\x00"}), "ERR_BAD_FRAME",
                    "enum name with a NUL")


async def uint64_strings(url):
    """protocol.md 1.2: a uint64 may be a string of 1 to 20 digits, up to 2^64 - 1; nothing else."""
    c = await connect(url)
    for v in ("18446744073709551615", "0", "00000000000000000042", "9007199254740993"):
        await c.send(type="ping", client_ts=v)
        pong = await c.recv("pong")
        check(int(pong["client_ts"] if "client_ts" in pong else 0) == int(v), f"{v}: {pong}")
    check(pong["client_ts"] == "9007199254740993", "above 2^53 - 1 the server writes a string")
    await c.ws.close()
    for bad in ("18446744073709551616", "99999999999999999999", "000000000000000000001", "", "+1", "-1", " 1",
                "1 ", "1e3", "0x10", "1\x002"):
        await bad_input(url, json.dumps({"type": "ping", "client_ts": bad}), "ERR_BAD_FRAME", f"uint64 {bad!r}")


async def rest_strings(base):
    """The REST calls refuse the same strings with 400 and the same message; nothing is made."""
    for body, message in (({"user": "rex\x00x", "password": "rex-password"}, "user: contains NUL"),
                          ({"user": "rex", "password": "rex-password\x00x"}, "password: contains NUL"),
                          ({"user": "rex", "password": "rex-password", "device": "\ud83d"},
                           "device: not valid UTF-8"),
                          ({"user": "rex", "password": "rex-password", "device": "a\u202egnp"},
                           "device: bidirectional control character U+202E")):
        st, e = await asyncio.to_thread(http, "POST", f"{base}/api/register", body)
        check(st == 400 and e["error"] == "ERR_INVALID_ARGUMENT" and e["message"] == message, f"{body}: {st} {e}")
    st, e = await asyncio.to_thread(http, "POST", f"{base}/api/login", {"user": "rex", "password": "rex-password"})
    check(st == 401, f"rex was not made: {st} {e}")
    st, ok = await asyncio.to_thread(http, "POST", f"{base}/api/register", {"user": "rex", "password": "rex-password"})
    check(st == 200 and ok["created"], f"rex now: {st} {ok}")
    st, e = await asyncio.to_thread(http, "POST", f"{base}/api/login",
                                    {"user": "rex", "password": "rex-password\x00anything"})
    check(st == 400 and e["message"] == "password: contains NUL", f"a password cut at its NUL: {st} {e}")


async def longpoll_strings(base):
    """Long-poll carries the same strings to the same answer: an Error the next GET gives, and the session goes on."""
    st, body = await asyncio.to_thread(http, "POST", f"{base}/lp", [
        {"type": "hello", "version": 1, "kind": "KIND_WEB", "client_name": "lp-strings"},
        {"type": "register", "user": "lou\x00x", "password": "lou-password", "device": "lp"},
        {"type": "register", "user": "lou", "password": "lou-password", "device": "l\ud800p"},
        {"type": "register", "user": "lou", "password": "lou-password", "device": "lp"}])
    check(st == 200 and body["sid"], f"open: {st} {body}")
    ok, seen = await poll(base, body["sid"], "auth_ok")
    errors = [(f["code"], f["message"]) for f in seen if f["type"] == "error"]
    check(errors == [("ERR_INVALID_ARGUMENT", "user: contains NUL"), ("ERR_INVALID_ARGUMENT", "device: not valid UTF-8")]
          and ok["user"] == "lou" and ok["device"] == "lp", f"long-poll: {seen}")


def main():
    parleyd = os.environ["PARLEYD"]
    data = tempfile.mkdtemp(prefix="parley-wsjson-")
    port, http_port = free_port(), free_port()
    log = open(data + ".log", "w")
    srv = subprocess.Popen([parleyd, "--data", data, "--listen", f"127.0.0.1:{port}",
                            "--http", f"127.0.0.1:{http_port}", "--threads", "2",
                            "--argon2-mem", "8", "--argon2-ops", "1"], stderr=log, preexec_fn=die_with_parent)
    try:
        deadline = time.time() + 30  # a loaded machine starts it slowly
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1) as r:
                    check(r.read() == b"ok\n", "healthz")
                    break
            except OSError:
                check(time.time() < deadline and srv.poll() is None, "parleyd starts listening")
                time.sleep(0.02)
        url = f"ws://127.0.0.1:{http_port}/ws"
        asyncio.run(scenario(url))
        asyncio.run(protocol2(url))
        asyncio.run(refusals(url))
        asyncio.run(longpoll(f"http://127.0.0.1:{http_port}", url))
        asyncio.run(rest(f"http://127.0.0.1:{http_port}", url))
        asyncio.run(devices(url))
        asyncio.run(strings(url))
        asyncio.run(uint64_strings(url))
        asyncio.run(rest_strings(f"http://127.0.0.1:{http_port}"))
        asyncio.run(longpoll_strings(f"http://127.0.0.1:{http_port}"))
    except Exception as e:  # noqa: BLE001 - report any failure with the server's log
        print(f"FAIL: {type(e).__name__}: {e}\n(server log: {data}.log)", file=sys.stderr)
        return 1
    finally:
        srv.terminate()
        rc = srv.wait(30)
    if rc != 0:  # a clean stop exits 0 (under ASan, a leak would not)
        print(f"FAIL: parleyd exited with {rc} (server log: {data}.log)", file=sys.stderr)
        return 1
    print("PASS ws_json_client: a third-party JSON client, from the protocol document")
    subprocess.run(["rm", "-rf", data])
    return 0


if __name__ == "__main__":
    sys.exit(main())
