"""parleyd behind a proxy that speaks the PROXY protocol v2
(docs/operations.md §14, "Behind a proxy"), with --proxy-protocol all and
--max-conns-per-ip 1: each header's client address is counted on its own
(two clients through one proxy address are both let in, a second connection
of one client is refused with TOO_MANY_CONNECTIONS), the log names the
client, a LOCAL header (the proxy's health check) keeps the proxy's address,
the native protocol over TLS works behind a header, HTTP too, and a
connection without a header is cut.

Run by test_proxy.sh with Debian's /usr/bin/python3 (PARLEYD: the server binary)."""
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

from mediasrv import check, die_with_parent, free_port, wait_for
from tlsca import make_ca, make_leaf
from tls_client import ERROR, HELLO, PING, PONG, WELCOME, frame, log_has

SIG = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])


def header(src, sport, local=False):
    if local:
        return SIG + bytes([0x20, 0x00, 0, 0])
    body = socket.inet_aton(src) + socket.inet_aton("192.0.2.1") + struct.pack(">HH", sport, 7700)
    return SIG + bytes([0x21, 0x11]) + struct.pack(">H", len(body)) + body


class Conn:
    def __init__(self, port, hdr, ctx=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if hdr:
            self.s.sendall(hdr)
        if ctx:
            self.s = ctx.wrap_socket(self.s, server_hostname="localhost")
        self.buf = b""

    def frame(self):
        """The next frame: (type, payload), or None once the server closed."""
        while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack(">I", self.buf[:4])[0]:
            try:
                chunk = self.s.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        n = struct.unpack(">I", self.buf[:4])[0]
        f = (self.buf[4], self.buf[5 : 4 + n])
        self.buf = self.buf[4 + n :]
        return f

    def hello(self):
        self.s.sendall(frame(HELLO, (1, 1), (2, 4)))
        return self.frame()


def closed(c, timeout):
    c.s.settimeout(timeout)
    try:
        while c.frame() is not None:
            pass
        return True
    except socket.timeout:
        return False


def main():
    parleyd = os.environ["PARLEYD"]
    tmp = tempfile.mkdtemp(prefix="parley-proxy-")
    pki = os.path.join(tmp, "pki")
    root = make_ca(pki)
    chain, key = make_leaf(pki, "leaf")
    logpath = os.path.join(tmp, "parleyd.log")
    port, http, tport = free_port(), free_port(), free_port()
    srv = subprocess.Popen([parleyd, "--data", os.path.join(tmp, "data"), "--listen", f"127.0.0.1:{port}",
                            "--http", f"127.0.0.1:{http}", "--listen-tls", f"127.0.0.1:{tport}",
                            "--tls-cert", chain, "--tls-key", key, "--proxy-protocol", "all",
                            "--max-conns-per-ip", "1", "--threads", "2", "--argon2-mem", "8",
                            "--argon2-ops", "1", "--disk-reserve", "0", "--log-level", "debug"],
                           stderr=open(logpath, "w"), preexec_fn=die_with_parent)
    rc = 1
    try:
        wait_for(lambda: srv.poll() is not None or log_has(logpath, "tls: native protocol on"), "parleyd starts", 30)
        check(srv.poll() is None, "parleyd runs")
        a = Conn(port, header("203.0.113.7", 40001))
        check(a.hello()[0] == WELCOME, "a client through the proxy gets Welcome")
        b = Conn(port, header("203.0.113.8", 40002))
        check(b.hello()[0] == WELCOME, "another client through the same proxy address is let in")
        a2 = Conn(port, header("203.0.113.7", 40003))
        f = a2.frame()
        check(f is not None and f[0] == ERROR and b"\x08\x25" in f[1][:2],
              f"a second connection of one client is over its cap: {f}")
        wait_for(lambda: log_has(logpath, "203.0.113.7:40001"), "the log names the client")
        t = Conn(tport, header("198.51.100.9", 40004), ssl.create_default_context(cafile=root))
        check(t.hello()[0] == WELCOME, "native over TLS behind a header")
        h = socket.create_connection(("127.0.0.1", http), timeout=10)
        h.sendall(header("198.51.100.10", 40005) + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = b""
        while True:
            chunk = h.recv(4096)
            if not chunk:
                break
            got += chunk
        check(got.startswith(b"HTTP/1.1 200") and got.endswith(b"ok\n"), f"HTTP behind a header: {got!r}")
        hc = Conn(port, header("", 0, local=True))
        check(hc.hello()[0] == WELCOME, "a LOCAL header (health check) keeps the proxy's own address")
        bare = Conn(port, None)
        bare.s.sendall(frame(HELLO, (1, 1), (2, 4)))
        check(closed(bare, 5), "a connection without the header is cut")
        a.s.sendall(frame(PING, (1, 1)))
        check(a.frame()[0] == PONG, "the first client carries on")
        for c in (a, b, a2, t, hc, bare):
            c.s.close()
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
        print("PASS proxy_client: PROXY v2 on the native, TLS and HTTP listeners")
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
