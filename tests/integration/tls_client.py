"""TLS on parleyd's listeners, from the outside (docs/protocol.md §1, "TLS";
docs/operations.md, "TLS"): openssl s_client (TLS 1.3 accepted, 1.1 and 1.2
refused, the chain served), Python's ssl speaking the native protocol
(including a resumed session), python3-websockets over wss:// with the JSON
binding, a certificate swapped under SIGHUP while a client stays connected
(and a bad file that keeps the old one), a client stalling mid-handshake cut
by the deadline, and garbage instead of a ClientHello answered with a close
while the others carry on.

Run by test_tls.sh with Debian's /usr/bin/python3 (PARLEYD: the server binary)."""
import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

import websockets
from mediasrv import check, die_with_parent, free_port, wait_for
from tlsca import make_ca, make_leaf

HELLO, WELCOME, ERROR, REGISTER, AUTH_OK, SEND, SEND_ACK, MESSAGE, PING, PONG = 1, 2, 3, 4, 7, 10, 11, 12, 14, 15


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def frame(ftype, *fields):
    payload = b"".join(field(n, v) for n, v in fields)
    return struct.pack(">IB", 1 + len(payload), ftype) + payload


class Native:
    """One device over the native protocol on TLS (protocol.md §2)."""

    def __init__(self, port, ctx, session=None):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def recv(self, want):
        """The next frame of type want (others, such as presence, are skipped)."""
        while True:
            while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack(">I", self.buf[:4])[0]:
                chunk = self.s.recv(65536)
                check(chunk, f"connection closed while waiting for frame {want}")
                self.buf += chunk
            n = struct.unpack(">I", self.buf[:4])[0]
            ftype, payload = self.buf[4], self.buf[5 : 4 + n]
            self.buf = self.buf[4 + n :]
            check(ftype != ERROR or want == ERROR, f"Error frame {payload!r}")
            if ftype == want:
                return payload

    def hello_register(self, user):
        self.send(frame(HELLO, (1, 1), (2, 4), (3, "tls_client.py")))
        self.recv(WELCOME)
        self.send(frame(REGISTER, (1, user), (2, user + "-password"), (3, "bot")))
        self.recv(AUTH_OK)

    def ping(self):
        self.send(frame(PING, (1, int(time.time() * 1000))))
        self.recv(PONG)

    def close(self):
        self.s.close()


def s_client(port, *args, stdin=b""):
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                       input=stdin, capture_output=True, timeout=20)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def openssl_checks(port, root):
    rc, out = s_client(port, "-tls1_3", "-CAfile", root, "-verify_return_error", "-servername", "localhost",
                       "-showcerts")
    check(rc == 0 and "TLSv1.3" in out and "Verify return code: 0 (ok)" in out, f"TLS 1.3 accepted:\n{out}")
    check(out.count("BEGIN CERTIFICATE") == 2, f"the chain (leaf + intermediate) is served:\n{out}")
    check("Early data was not sent" in out or "Max Early Data: 0" in out or "Early data" not in out,
          "no early data offered")
    rc, out = s_client(port, "-tls1_2", "-CAfile", root)
    check(rc != 0 and "alert protocol version" in out, f"TLS 1.2 refused (--tls-min 1.3):\n{out}")
    rc, out = s_client(port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", root)
    check(rc != 0 and "alert protocol version" in out, f"TLS 1.1 refused:\n{out}")


def native_checks(port, ctx):
    alice, bob = Native(port, ctx), Native(port, ctx)
    check(alice.s.version() == "TLSv1.3", f"native over {alice.s.version()}")
    alice.hello_register("alice")
    bob.hello_register("bob")
    alice.send(frame(SEND, (1, "m1"), (2, "bob"), (3, "hi over tls"), (4, 1)))
    alice.recv(SEND_ACK)
    check(b"hi over tls" in bob.recv(MESSAGE), "bob gets alice's message")
    # a big frame spans many records both ways
    big = "x" * 60000
    alice.send(frame(SEND, (1, "m2"), (2, "bob"), (3, big), (4, 1)))
    alice.recv(SEND_ACK)
    check(big.encode() in bob.recv(MESSAGE), "a 60 KB message arrives whole")
    bob.ping()  # TLS 1.3 tickets come after the handshake: read them before taking the session
    session = bob.s.session
    alice.close()
    again = Native(port, ctx, session=session)
    check(again.s.session_reused, "a session resumed with the ticket")
    again.send(frame(HELLO, (1, 1), (2, 4)))
    again.recv(WELCOME)
    again.close()
    return bob


async def wss_checks(port, ctx):
    url = f"wss://localhost:{port}/ws"
    async with websockets.connect(url, ssl=ctx, subprotocols=["parley.json.v1"]) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "kind": "KIND_WEB"}))
        w = json.loads(await asyncio.wait_for(ws.recv(), 10))
        check(w["type"] == "welcome", f"welcome over wss: {w}")
        await ws.send(json.dumps({"type": "register", "user": "carol", "password": "carol-password",
                                  "device": "browser"}))
        ok = json.loads(await asyncio.wait_for(ws.recv(), 10))
        check(ok["type"] == "auth_ok" and ok["user"] == "carol", f"auth over wss: {ok}")
        await ws.send(json.dumps({"type": "send", "id": "c1", "to": "bob", "body": "aGkgZnJvbSB3c3M=",
                                  "client_ts": 1}))
        while True:
            f = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if f["type"] == "send_ack":
                break
            check(f["type"] in ("presence", "receipt"), f"send_ack over wss: {f}")


def https_checks(port, root):
    rc, out = s_client(port, "-CAfile", root, "-verify_return_error", "-quiet", "-servername", "localhost",
                       stdin=b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    check("HTTP/1.1 200 OK" in out and "\r\n\r\nok\n" in out, f"/healthz over https:\n{out}")
    rc, out = s_client(port, "-CAfile", root, "-quiet", stdin=b"GET / HTTP/1.1\r\nHost: localhost\r\n"
                       b"Connection: close\r\n\r\n")
    check("HTTP/1.1 200 OK" in out and "<html" in out.lower(), "the browser client over https")


def peer_cert(port, ctx):
    n = Native(port, ctx)
    der = n.s.getpeercert(binary_form=True)
    n.close()
    return der


def log_has(logpath, text):
    with open(logpath) as f:
        return text in f.read()


def reload_checks(srv, logpath, port, ctx, d, chain, key, bob):
    before = peer_cert(port, ctx)
    new_chain, new_key = make_leaf(d, "leaf2")
    shutil.copy(new_chain, chain)
    shutil.copy(new_key, key)
    srv.send_signal(signal.SIGHUP)
    wait_for(lambda: log_has(logpath, "reloaded"), "the reload is logged")
    wait_for(lambda: peer_cert(port, ctx) != before, "new connections get the new certificate")
    bob.ping()  # the connection opened before the swap carries on
    with open(chain, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    srv.send_signal(signal.SIGHUP)
    wait_for(lambda: log_has(logpath, "keeping the certificate in use"), "a bad file is refused, logged")
    current = peer_cert(port, ctx)
    check(current != before, "the good swapped certificate stays in use")
    bob.ping()


def recv_until_closed(sock, timeout):
    """Reads until the peer closes; returns the seconds it took (or fails)."""
    start = time.time()
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError(f"not closed within {timeout} s")
    return time.time() - start


def abuse_checks(port, bob, handshake_s):
    stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
    stalled.sendall(bytes.fromhex("16030100c8010000c40303"))  # the start of a ClientHello, then nothing
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)
    garbage = socket.create_connection(("127.0.0.1", port), timeout=10)
    garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(200))
    t = recv_until_closed(garbage, 5)
    check(t < 3, f"garbage closed at once ({t:.1f} s)")
    bob.ping()  # others carry on
    t = recv_until_closed(stalled, handshake_s + 5)
    check(t >= handshake_s - 0.5, f"a stalled handshake is cut by its deadline, not before ({t:.1f} s)")
    recv_until_closed(silent, 5)
    bob.ping()
    for s in (stalled, silent, garbage):
        s.close()


def main():
    parleyd = os.environ["PARLEYD"]
    tmp = tempfile.mkdtemp(prefix="parley-tls-")
    pki = os.path.join(tmp, "pki")
    root = make_ca(pki)
    chain, key = make_leaf(pki, "leaf1")
    live_chain, live_key = os.path.join(tmp, "server.pem"), os.path.join(tmp, "server.key")
    shutil.copy(chain, live_chain)
    shutil.copy(key, live_key)
    data, logpath = os.path.join(tmp, "data"), os.path.join(tmp, "parleyd.log")
    port, http, tport, hport = free_port(), free_port(), free_port(), free_port()
    handshake_s = 2
    log = open(logpath, "w")
    srv = subprocess.Popen([parleyd, "--data", data, "--listen", f"127.0.0.1:{port}", "--http",
                            f"127.0.0.1:{http}", "--listen-tls", f"127.0.0.1:{tport}", "--https",
                            f"127.0.0.1:{hport}", "--tls-cert", live_chain, "--tls-key", live_key,
                            "--tls-handshake-timeout", str(handshake_s * 1000), "--threads", "2",
                            "--argon2-mem", "8", "--argon2-ops", "1", "--disk-reserve", "0"],
                           stderr=log, preexec_fn=die_with_parent)
    rc = 1
    try:
        ctx = ssl.create_default_context(cafile=root)
        wait_for(lambda: srv.poll() is not None or log_has(logpath, "web: https://"), "parleyd starts", 30)
        check(srv.poll() is None, "parleyd runs")
        openssl_checks(tport, root)
        bob = native_checks(tport, ctx)
        asyncio.run(wss_checks(hport, ctx))
        check(b"hi from wss" in bob.recv(MESSAGE), "a wss client's message reaches a native TLS one")
        https_checks(hport, root)
        abuse_checks(tport, bob, handshake_s)
        reload_checks(srv, logpath, tport, ctx, pki, live_chain, live_key, bob)
        bob.close()
        rc = 0
    except Exception as e:  # noqa: BLE001 - report any failure with the server's log
        print(f"FAIL: {type(e).__name__}: {e}\n(server log: {logpath})", file=sys.stderr)
    finally:
        srv.terminate()
        code = srv.wait(30)
    if rc == 0 and code != 0:
        print(f"FAIL: parleyd exited with {code} (server log: {logpath})", file=sys.stderr)
        rc = 1
    if rc == 0:
        print("PASS tls_client: s_client, native over TLS, wss, SIGHUP reload, deadlines, garbage")
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
