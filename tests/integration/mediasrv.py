"""A real parleyd for the Python media tests (media_test.py, media_sec_test.py):
start, stop, HTTP requests, the `parley` CLI, /metrics. PARLEYD and PARLEY_CLI
name the binaries."""
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import time

PARLEYD = os.environ["PARLEYD"]
CLI = os.environ.get("PARLEY_CLI", "")


def die_with_parent():
    """Popen's preexec_fn: the kernel kills parleyd when this test process goes,
    however it goes (a failed check, SIGTERM or SIGKILL from a ctest timeout)."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def wait_for(cond, what, timeout=20.0):
    """Polls cond until it is true, or fails after timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {what}")


def free_port():
    for _ in range(1000):
        port = random.randint(20000, 31999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    raise SystemExit("no free port")


class Server:
    def __init__(self, tmp, name, *extra):
        self.data = os.path.join(tmp, name)
        self.port, self.http = free_port(), free_port()
        self.extra = list(extra)
        self.proc = None
        self.metrics_token = None  # sent with /metrics when the server asks for one

    def _listens(self, port):
        """Does our parleyd hold the listening socket of port? Another test's
        server may have taken the number between free_port() and our bind:
        then a connect succeeds, but to the wrong server."""
        inodes = set()
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(name) as f:
                    for line in f.readlines()[1:]:
                        col = line.split()
                        if col[3] == "0A" and int(col[1].rsplit(":", 1)[1], 16) == port:
                            inodes.add(col[9])
            except OSError:
                pass
        fds = f"/proc/{self.proc.pid}/fd"
        try:
            return any(os.readlink(f"{fds}/{fd}") in {f"socket:[{i}]" for i in inodes} for fd in os.listdir(fds))
        except OSError:
            return False

    def start(self):
        for _ in range(5):  # new port numbers when another server had ours
            self.proc = subprocess.Popen(
                [PARLEYD, "--data", self.data, "--listen", f"127.0.0.1:{self.port}", "--http",
                 f"127.0.0.1:{self.http}", "--argon2-mem", "8", "--argon2-ops", "1", "--log-level", "warn"]
                + self.extra, preexec_fn=die_with_parent)
            deadline = time.time() + 30  # a loaded machine starts it slowly
            while time.time() < deadline and self.proc.poll() is None:
                if self._listens(self.http) and self._listens(self.port):
                    return self
                time.sleep(0.05)
            if self.proc.poll() is None:
                break
            self.proc.wait()
            self.port, self.http = free_port(), free_port()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        raise AssertionError(f"parleyd did not start (exit {self.proc.returncode})")

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            check(self.proc.wait(60) == 0, "parleyd exits 0 on SIGTERM")
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("parleyd did not stop within 60 s of SIGTERM")

    def req(self, method, path, body=None, token=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.http, timeout=30)
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def register(self, user):
        st, _, body = self.req("POST", "/api/register",
                               json.dumps({"user": user, "password": "password-" + user}))
        check(st == 200, f"register {user}: {st} {body}")
        self.cli(user, "recv")  # the CLI's device exists from now on (a later one gets only later messages)
        return json.loads(body)["token"]

    def login(self, user):
        """A token of the CLI's device (each login gives that device a new one)."""
        st, _, body = self.req("POST", "/api/login", json.dumps(
            {"user": user, "password": "password-" + user, "device": "cli"}))
        check(st == 200, f"login {user}: {st} {body}")
        return json.loads(body)["token"]

    def upload(self, token, data, name=None):
        path = "/media" + (f"?name={name}" if name else "")
        st, _, body = self.req("POST", path, data, token)
        return st, json.loads(body)

    def cli(self, user, *args, ok=True):
        p = subprocess.run([CLI, "--server", f"127.0.0.1:{self.port}", "--http", f"127.0.0.1:{self.http}",
                            "--user", user, "--password", "password-" + user, "--device", "cli"] + list(args),
                           capture_output=True, text=True, timeout=60)
        if ok:
            check(p.returncode == 0, f"parley {' '.join(args)}: {p.returncode} {p.stderr}")
        return p

    def metric(self, name):
        _, _, body = self.req("GET", "/metrics", token=self.metrics_token)
        m = re.search(rf"^{name} (\d+)", body.decode(), re.M)
        return int(m.group(1))

    def blobs(self):
        """The blob keys stored: files under the data directory, or, on PostgreSQL
        (the pg label's wrapper, tests/pg/parleyd_pg.sh: one database per --data),
        the blobs table, where a PostgreSQL store keeps them."""
        pg = os.environ.get("PL_PG_DIR")
        if pg:
            import hashlib
            with open(os.path.join(pg, "conninfo")) as f:
                conn = f.read().strip()
            db = "p_" + hashlib.md5(self.data.encode()).hexdigest()[:20]
            out = subprocess.run(["psql", f"{conn} dbname={db}", "-qAtc", "SELECT key FROM blobs ORDER BY key"],
                                 capture_output=True, text=True, check=True).stdout
            return out.split()
        d = os.path.join(self.data, "media")
        return sorted(f for sub in os.listdir(d) if len(sub) == 2
                      for f in os.listdir(os.path.join(d, sub)))
