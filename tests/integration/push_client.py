"""Push notifications (docs/protocol.md 13, docs/operations.md) end to end:
the real parleyd, clients over the JSON WebSocket binding and the CLI, and
a local HTTP endpoint standing in for the webhook, FCM (its OAuth2 token
endpoint too) and APNs. Each check can fail: the endpoint records every
request, and the checks count them. What the server keeps is observed
through /metrics (parley_push_pending, parley_push_tokens) and the
requests, never by opening its files.

Run by test_push.sh (PARLEYD, PARLEY_CLI). Exits 0 when every check holds."""
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import websockets
from testimg import png
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = "parley.json.v1"
WINDOW_MS = 400


def skipped(part):
    """A part the run leaves out: PARLEY_TEST_SKIP names them, separated by
    commas (the PostgreSQL copy of this test, tests/CMakeLists.txt)."""
    if part in os.environ.get("PARLEY_TEST_SKIP", "").split(","):
        print(f"SKIP {part} (PARLEY_TEST_SKIP)", file=sys.stderr)
        return True
    return False


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def free_port():
    return int(subprocess.run([sys.executable, os.path.join(HERE, "free_port.py")],
                              capture_output=True, text=True, check=True).stdout)


def b64(s):
    return base64.b64encode(s.encode()).decode()


# ---- the endpoint -----------------------------------------------------------

class Hook:
    """Records every POST; answers per token from a script of statuses
    (then 200), after an optional delay."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reqs = []
        self.script = {}  # token -> [status, ...]
        self.delay = {}  # token -> seconds
        hook = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.handle(self, raw)

        self.srv = ThreadingHTTPServer(("127.0.0.1", free_port()), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def token_of(self, path, body):
        if path == "/token":
            return None
        if path.startswith("/3/device/"):
            return path[len("/3/device/"):]
        try:
            j = json.loads(body)
        except ValueError:
            return None
        return j.get("token") or j.get("message", {}).get("token")

    def handle(self, h, raw):
        body = raw.decode("utf-8", "replace")
        tok = self.token_of(h.path, body)
        r = {"path": h.path, "headers": {k.lower(): v for k, v in h.headers.items()}, "raw": body,
             "token": tok, "t": time.time()}
        try:
            r["json"] = json.loads(body)
        except ValueError:
            r["json"] = None
        with self.lock:
            script = self.script.get(tok) or []
            status = script.pop(0) if script else 200
            delay = self.delay.get(tok, 0)
            r["status"] = status
            self.reqs.append(r)
        if delay:
            time.sleep(delay)
        out = b"{}"
        if h.path == "/token":
            out = json.dumps({"access_token": "at-1", "expires_in": 3600, "token_type": "Bearer"}).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(out)))
        h.end_headers()
        h.wfile.write(out)

    def of(self, token):
        with self.lock:
            return [r for r in self.reqs if r["token"] == token]

    def count(self):
        with self.lock:
            return len(self.reqs)

    def wait_for(self, token, n, timeout=5.0):
        end = time.time() + timeout
        while time.time() < end:
            got = self.of(token)
            if len(got) >= n:
                return got
            time.sleep(0.02)
        return self.of(token)


# ---- parleyd ------------------------------------------------------------------

class Server:
    def __init__(self, data, hook, extra):
        self.data, self.hook, self.extra = data, hook, extra
        self.port, self.http = free_port(), free_port()
        self.proc = None

    def start(self):
        log = open(self.data + ".log", "a")
        self.proc = subprocess.Popen(
            [os.environ["PARLEYD"], "--data", self.data, "--listen", f"127.0.0.1:{self.port}",
             "--http", f"127.0.0.1:{self.http}", "--threads", "2", "--argon2-mem", "8", "--argon2-ops", "1",
             "--push-window", str(WINDOW_MS), "--push-backoff", "100", "--push-timeout", "8000",
             "--log-level", "debug"] + self.extra, stderr=log)
        for _ in range(500):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("parleyd did not start")

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        rc = self.proc.wait(30)
        if sig == signal.SIGTERM:  # a clean stop exits 0 (under ASan, a leak would not)
            check(rc == 0, f"parleyd exited with {rc}")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5) as r:
            out = {}
            for line in r.read().decode().splitlines():
                if line.startswith("parley_push_"):
                    k, v = line.split()
                    out[k] = int(float(v))
            return out

    def wait_metric(self, name, pred, timeout=20.0):
        """The metric's value once pred holds, or the last value seen."""
        end = time.time() + timeout
        while True:
            v = self.metrics()[name]
            if pred(v) or time.time() > end:
                return v
            time.sleep(0.02)

    def url(self):
        return f"ws://127.0.0.1:{self.http}/ws"


class Client:
    def __init__(self, ws, ok):
        self.ws, self.ok, self.n = ws, ok, 0

    async def send(self, **frame):
        await self.ws.send(json.dumps(frame))

    async def recv(self, want, timeout=5):
        while True:
            f = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if f["type"] == want:
                return f
            check(f["type"] in ("receipt", "presence", "read_sync", "message", "send_ack", "done"),
                  f"expected {want}, got {f}")

    async def request(self, want="done", **frame):
        self.n += 1
        ref = f"r{self.n}"
        await self.send(ref=ref, **frame)
        while True:
            f = json.loads(await asyncio.wait_for(self.ws.recv(), 5))
            if f.get("ref") == ref and f["type"] in (want, "error"):
                return f

    async def text(self, to, text, group=None):
        self.n += 1
        kw = {"group": group} if group else {"to": to}
        await self.send(type="send", id=f"m{self.n}-{time.time()}", body=b64(text),
                        client_ts=int(time.time() * 1000), **kw)
        return await self.recv("send_ack")

    async def close(self):
        await self.ws.close()


async def login(srv, user, device="phone", register=False):
    ws = await websockets.connect(srv.url(), subprotocols=[PROTO])
    c = Client(ws, None)
    await c.send(type="hello", version=1, kind="KIND_MOBILE", client_name="push_client.py")
    await c.recv("welcome")
    await c.send(type="register" if register else "login", user=user, password=user + "-password",
                 device=device)
    ok = await c.recv("auth_ok")
    c.ok = ok
    return c


async def offline(srv, *clients):
    """Closes the clients and waits until the server has detached them."""
    for c in clients:
        await c.close()
    await asyncio.sleep(0.3)


def quiet(hook, token, n, wait=WINDOW_MS / 1000 + 0.8):
    """After the window (and some), token got exactly n requests."""
    time.sleep(wait)
    got = hook.of(token)
    check(len(got) == n, f"{token}: {len(got)} requests, expected {n}: {[r['raw'] for r in got]}")
    return got


# ---- scenarios ----------------------------------------------------------------

async def webhook(srv, hook):
    alice = await login(srv, "alice", register=True)
    bob = await login(srv, "bob", register=True)
    carol = await login(srv, "carol", register=True)
    dave = await login(srv, "dave", register=True)

    # registration: done; a provider that is off, a bad or too long token: ERR_INVALID_ARGUMENT
    check((await bob.request(type="push_register", provider="webhook", token="tok-bob"))["type"] == "done",
          "push_register answered done")
    for prov, tok in (("fcm", "x"), ("nope", "x"), ("webhook", "a" * 4097), ("webhook", "a/b")):
        e = await bob.request(type="push_register", provider=prov, token=tok)
        check(e["type"] == "error" and e["code"] == "ERR_INVALID_ARGUMENT", f"{prov} {tok[:8]}: {e}")
    check((await alice.request(type="push_register", provider="webhook", token="tok-alice"))["type"] == "done",
          "alice's token")
    check((await dave.request(type="push_register", provider="webhook", token="tok-dave"))["type"] == "done",
          "dave's token")

    # 1. online: no push
    await alice.text("bob", "are you there?")
    m = await bob.recv("message")
    check((await bob.request(type="mark_read", peer="alice", seq=m["seq"]))["type"] == "done", "mark read")
    quiet(hook, "tok-bob", 0)

    # 2. offline: three quick messages, one notification after the window
    await offline(srv, bob, carol, dave)
    t0 = time.time()
    for text in ("one", "two", "three"):
        await alice.text("bob", text)
    got = hook.wait_for("tok-bob", 1)
    check(got and got[0]["t"] - t0 >= WINDOW_MS / 1000 * 0.9, "sent after the window, not before")
    got = quiet(hook, "tok-bob", 1)
    j = got[0]["json"]
    check(got[0]["path"] == "/hook" and got[0]["headers"]["content-type"] == "application/json", str(got[0]))
    check(j == {"provider": "webhook", "token": "tok-bob", "user": "bob", "device": bob.ok["device_id"],
                "badge": 3, "count": 3, "conv": "dm:alice:bob", "from": "alice", "text": "three"}, str(j))
    check(not hook.of("tok-alice"), "the sender's own device is never pushed")

    # 3. a device without a token gets nothing
    before = hook.count()
    await alice.text("carol", "hi carol")
    time.sleep(WINDOW_MS / 1000 + 0.8)
    check(hook.count() == before, "no request for a device without a token")

    # 4. 500 twice, then 200: delivered on the third attempt, exactly once
    hook.script["tok-bob"] = [500, 500]
    m0 = srv.metrics()
    await alice.text("bob", "retry me")
    got = hook.wait_for("tok-bob", 4)
    got = quiet(hook, "tok-bob", 4, wait=1.0)
    check([r["status"] for r in got[1:]] == [500, 500, 200], str([r["status"] for r in got]))
    check(all(r["json"]["count"] == 1 and r["json"]["badge"] == 4 for r in got[1:]), str([r["json"] for r in got]))
    m1 = srv.metrics()
    check(m1["parley_push_retried_total"] - m0["parley_push_retried_total"] == 2, f"{m0} {m1}")
    check(m1["parley_push_sent_total"] - m0["parley_push_sent_total"] == 1, f"{m0} {m1}")

    # 5. a token answered 410 is forgotten: nothing more goes to it
    hook.script["tok-dave"] = [410]
    tokens = srv.metrics()["parley_push_tokens"]
    await alice.text("dave", "hello dave")
    check(len(hook.wait_for("tok-dave", 1)) == 1, "dave pushed once")
    check(srv.wait_metric("parley_push_invalid_tokens_total", lambda v: v == 1) == 1, "invalid token counted")
    check(srv.metrics()["parley_push_tokens"] == tokens - 1, "dave's token is forgotten")
    await alice.text("dave", "hello again")
    quiet(hook, "tok-dave", 1)

    # 6. a group message pushes its offline members (not the sender)
    if not skipped("webhook.group"):
        g = await alice.request(want="group_info", type="group_create", name="team", members=["bob", "carol"])
        check(g["type"] == "group_info", str(g))
        n = len(hook.of("tok-bob"))
        await alice.text(None, "to the team", group=g["group"])
        got = quiet(hook, "tok-bob", n + 1)
        j = got[-1]["json"]
        check(j["conv"] == "g:" + g["group"] and j["text"] == "to the team" and j["count"] == 1, str(j))

    # 6b. an image message reads as a photo with its caption (protocol.md 14.2)
    if not skipped("webhook.media"):
        req = urllib.request.Request(f"http://127.0.0.1:{srv.http}/media", data=png(3, 2), method="POST",
                                     headers={"Authorization": "Bearer " + alice.ok["token"]})
        with urllib.request.urlopen(req, timeout=10) as r:
            media = json.loads(r.read())
        n = len(hook.of("tok-bob"))
        await alice.send(type="send", id="photo-1", to="bob", body=b64("at the beach"), client_ts=1,
                         media={"id": media["id"]})
        await alice.recv("send_ack")
        got = quiet(hook, "tok-bob", n + 1)
        check(got[-1]["json"]["text"] == "\U0001f4f7 Photo: at the beach", str(got[-1]["json"]))

    # 7. a slow endpoint (5 s) does not slow delivery to an online device
    hook.delay["tok-bob"] = 5
    carol = await login(srv, "carol")
    await asyncio.sleep(0.5)  # what was queued while she was away (a message, the group's)
    while True:
        try:
            await carol.recv("message", timeout=0.3)
        except asyncio.TimeoutError:
            break
    n = len(hook.of("tok-bob"))
    await alice.text("bob", "slow push")
    hook.wait_for("tok-bob", n + 1)  # the slow request is out now
    t0 = time.time()
    await alice.text("carol", "fast")
    m = await carol.recv("message")
    check(time.time() - t0 < 1.0, f"delivery took {time.time() - t0:.2f}s while a push hung")
    check(base64.b64decode(m["body"]) == b"fast", str(m))
    hook.delay.pop("tok-bob")

    # 8. the CLI registers its device
    cli = os.environ.get("PARLEY_CLI")
    if cli:
        env = dict(os.environ, PARLEY_SERVER=f"127.0.0.1:{srv.port}", PARLEY_USER="frank",
                   PARLEY_PASSWORD="frank-password", PARLEY_DEVICE="laptop")
        subprocess.run([cli, "register"], env=env, check=True, capture_output=True)
        r = subprocess.run([cli, "push", "register", "webhook", "tok-frank"], env=env, capture_output=True,
                           text=True)
        check(r.returncode == 0 and r.stdout.strip() == '{"ok":true}', f"parley push register: {r}")
        r = subprocess.run([cli, "push", "register", "fcm", "x"], env=env, capture_output=True, text=True)
        check(r.returncode != 0 and "invalid argument" in r.stderr, f"a provider that is off is refused: {r}")
        await alice.text("frank", "hi frank")
        got = quiet(hook, "tok-frank", 1)
        check(got[0]["json"]["user"] == "frank", str(got[0]))
        subprocess.run([cli, "push", "unregister"], env=env, check=True, capture_output=True)
        await alice.text("frank", "hi again")
        quiet(hook, "tok-frank", 1)
    await carol.close()
    await alice.close()


async def send_one(srv, text):
    alice = await login(srv, "alice")
    await alice.text("bob", text)
    await alice.close()


def restarts(srv, hook):
    """A pending notification survives SIGTERM, and kill -9 once committed."""
    check(not os.path.exists(os.path.join(srv.data, "push.db")), "no push.db: the store keeps it all")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        # what earlier steps left (the slow push abandoned by the last stop is sent again after
        # a start) goes out first, so that the count below is this step's own
        check(srv.wait_metric("parley_push_pending", lambda v: v == 0) == 0, "nothing pending before")
        time.sleep(0.3)
        n = len(hook.of("tok-bob"))
        asyncio.run(send_one(srv, f"survive {sig}"))
        # the gauge comes from a claim, which reads only what is committed
        check(srv.wait_metric("parley_push_pending", lambda v: v == 1, timeout=5) == 1,
              "the pending row is committed")
        srv.stop(sig)
        check(len(hook.of("tok-bob")) == n, f"nothing sent before the stop ({sig})")
        srv.start()
        got = hook.wait_for("tok-bob", n + 1, timeout=15)
        check(len(got) == n + 1 and got[-1]["json"]["text"] == f"survive {sig}", f"after restart ({sig}): {got}")
        check(srv.wait_metric("parley_push_pending", lambda v: v == 0, timeout=5) == 0, "nothing left pending")


def crash_mid_send(srv, hook):
    """kill -9 while a notification is out: after its lease (2 x --push-timeout + 1 s) it is
    sent again, once (at least once to the provider; the phone's collapse id shows it once)."""
    n = len(hook.of("tok-bob"))
    hook.delay["tok-bob"] = 1.5  # the request is still out when the server dies
    asyncio.run(send_one(srv, "mid-send"))
    got = hook.wait_for("tok-bob", n + 1)
    check(len(got) == n + 1 and got[-1]["json"]["text"] == "mid-send", f"first attempt: {got[n:]}")
    srv.stop(signal.SIGKILL)
    hook.delay.pop("tok-bob")
    srv.start()
    got = hook.wait_for("tok-bob", n + 2, timeout=20)
    check(len(got) == n + 2 and got[-1]["json"]["text"] == "mid-send" and got[-1]["json"]["count"] == 1,
          f"sent again after the lease: {[r['raw'] for r in got[n:]]}")
    check(got[-1]["t"] - got[-2]["t"] >= 2.5, f"not before the lease ended: {got[-1]['t'] - got[-2]['t']:.2f}s")
    check(srv.wait_metric("parley_push_pending", lambda v: v == 0, timeout=5) == 0, "nothing left pending")
    quiet(hook, "tok-bob", n + 2)


async def privacy(srv, hook):
    n = len(hook.of("tok-bob"))
    alice = await login(srv, "alice")
    await alice.text("bob", "the secret plan")
    got = quiet(hook, "tok-bob", n + 1)
    j = got[-1]["json"]
    check(set(j) == {"provider", "token", "user", "device", "badge", "count"}, f"privacy payload {j}")
    check("secret" not in got[-1]["raw"] and "alice" not in got[-1]["raw"], got[-1]["raw"])
    await alice.close()


# ---- FCM and APNs -------------------------------------------------------------

def jwt_parts(jwt):
    def dec(s):
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    h, c, s = jwt.split(".")
    return json.loads(dec(h)), json.loads(dec(c)), dec(s), f"{h}.{c}".encode()


def keys(tmp, hook):
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                    f"{tmp}/fcm.pem"], check=True, capture_output=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                    f"{tmp}/apns.p8"], check=True, capture_output=True)
    sa = {"type": "service_account", "project_id": "proj-1", "client_email": "push@proj-1.example",
          "private_key": open(f"{tmp}/fcm.pem").read(), "token_uri": f"http://127.0.0.1:{hook.port}/token"}
    with open(f"{tmp}/sa.json", "w") as f:
        json.dump(sa, f)
    load = serialization.load_pem_private_key
    return (load(open(f"{tmp}/fcm.pem", "rb").read(), None).public_key(),
            load(open(f"{tmp}/apns.p8", "rb").read(), None).public_key())


async def fcm_apns(srv, hook, rsa_pub, ec_pub):
    bob = await login(srv, "bob")
    check((await bob.request(type="push_register", provider="fcm", token="fcm-tok"))["type"] == "done", "fcm")
    await offline(srv, bob)
    alice = await login(srv, "alice")
    await alice.text("bob", "via fcm")
    got = quiet(hook, "fcm-tok", 1)
    r = got[0]
    check(r["path"] == "/v1/projects/proj-1/messages:send", r["path"])
    check(r["headers"]["authorization"] == "Bearer at-1", str(r["headers"]))
    m = r["json"]["message"]
    check(m["token"] == "fcm-tok" and m["notification"] == {"title": "alice", "body": "via fcm"}, str(m))
    check(m["android"]["collapse_key"] == "parley" and m["apns"]["payload"]["aps"]["badge"] >= 1, str(m))
    check(m["android"]["notification"]["notification_count"] == m["apns"]["payload"]["aps"]["badge"], str(m))
    tok = [x for x in hook.reqs if x["path"] == "/token"]
    check(len(tok) == 1, f"one access token request, got {len(tok)}")
    form = urllib.parse.parse_qs(tok[0]["raw"])
    check(form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"], str(form))
    h, c, sig, signed = jwt_parts(form["assertion"][0])
    check(h == {"alg": "RS256", "typ": "JWT"}, str(h))
    check(c["iss"] == "push@proj-1.example" and c["aud"] == f"http://127.0.0.1:{hook.port}/token" and
          c["scope"] == "https://www.googleapis.com/auth/firebase.messaging" and c["exp"] == c["iat"] + 3600, str(c))
    check(abs(c["iat"] - time.time()) < 60, "iat is now")
    rsa_pub.verify(sig, signed, padding.PKCS1v15(), hashes.SHA256())  # raises if the signature is bad

    # a second notification reuses the access token
    await alice.text("bob", "again via fcm")
    quiet(hook, "fcm-tok", 2)
    check(len([x for x in hook.reqs if x["path"] == "/token"]) == 1, "the access token is cached")

    # FCM's UNREGISTERED (404) forgets the token
    hook.script["fcm-tok"] = [404]
    await alice.text("bob", "gone")
    quiet(hook, "fcm-tok", 3)
    await alice.text("bob", "gone again")
    quiet(hook, "fcm-tok", 3)

    # APNs
    bob = await login(srv, "bob")
    check((await bob.request(type="push_register", provider="apns", token="abcdef0123"))["type"] == "done", "apns")
    await offline(srv, bob)
    await alice.text("bob", "via apns")
    got = quiet(hook, "abcdef0123", 1)
    r = got[0]
    check(r["path"] == "/3/device/abcdef0123", r["path"])
    hd = r["headers"]
    check(hd["apns-topic"] == "com.example.parley" and hd["apns-push-type"] == "alert" and
          hd["apns-collapse-id"] == "parley" and hd["apns-priority"] == "10", str(hd))
    aps = r["json"]["aps"]
    check(aps["alert"] == {"title": "alice", "body": "via apns"} and aps["badge"] >= 1 and aps["sound"] == "default",
          str(aps))
    check(hd["authorization"].startswith("bearer "), hd["authorization"])
    h, c, sig, signed = jwt_parts(hd["authorization"][7:])
    check(h == {"alg": "ES256", "kid": "KEY1234567"} and c["iss"] == "TEAM123456", f"{h} {c}")
    check(len(sig) == 64, "ES256 signature is raw r||s")
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    ec_pub.verify(der, signed, ec.ECDSA(hashes.SHA256()))

    # APNs' 400 BadDeviceToken forgets the token
    hook.script["abcdef0123"] = [400]
    tokens = srv.metrics()["parley_push_tokens"]
    await alice.text("bob", "bad token")
    quiet(hook, "abcdef0123", 2)  # 400 without a reason is a plain failure: the token stays
    check(srv.metrics()["parley_push_tokens"] == tokens, "token kept on plain 400")
    await alice.text("bob", "still there")
    got = quiet(hook, "abcdef0123", 3)
    check(got[-1]["json"]["aps"]["alert"]["body"] == "still there", "the kept token is still pushed to")
    await alice.close()


def main():
    tmp = tempfile.mkdtemp(prefix="parley-push-")
    hook = Hook()
    hookurl = f"http://127.0.0.1:{hook.port}/hook"
    data = os.path.join(tmp, "data")
    srv = Server(data, hook, ["--push-webhook", hookurl])
    step = "start"
    try:
        srv.start()
        step = "webhook"
        asyncio.run(webhook(srv, hook))
        step = "restarts"
        srv.stop()
        # a window longer than a stop and a start take, even on a loaded machine
        srv.extra = ["--push-webhook", hookurl, "--push-window", "6000"]
        srv.start()
        restarts(srv, hook)
        step = "crash mid-send"
        srv.stop()
        srv.extra = ["--push-webhook", hookurl, "--push-timeout", "1500"]  # a lease of 4 s
        srv.start()
        crash_mid_send(srv, hook)
        step = "privacy"
        srv.stop()
        srv.extra = ["--push-webhook", hookurl, "--push-privacy", "1"]
        srv.start()
        asyncio.run(privacy(srv, hook))
        step = "fcm/apns"
        srv.stop()
        rsa_pub, ec_pub = keys(tmp, hook)
        srv.extra = ["--fcm-credentials", f"{tmp}/sa.json", "--fcm-endpoint", f"http://127.0.0.1:{hook.port}",
                     "--apns-key", f"{tmp}/apns.p8", "--apns-key-id", "KEY1234567", "--apns-team-id", "TEAM123456",
                     "--apns-topic", "com.example.parley", "--apns-endpoint", f"http://127.0.0.1:{hook.port}"]
        srv.start()
        asyncio.run(fcm_apns(srv, hook, rsa_pub, ec_pub))
        step = "stop"
        srv.stop()
    except Exception as e:  # noqa: BLE001 - report any failure with the server's log
        print(f"FAIL ({step}): {type(e).__name__}: {e}\n(server log: {data}.log)", file=sys.stderr)
        if srv.proc and srv.proc.poll() is None:
            srv.proc.kill()
        return 1
    print("PASS push_client: webhook, collapse, retries, invalid tokens, restarts, a crash mid-send, groups, "
          "privacy, FCM, APNs")
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
