"""Media security regressions (security audit, issue 13), one scenario per
run: `media_sec_test.py SCENARIO` against the real parleyd (PARLEYD,
PARLEY_CLI). Run by the test_media_*.sh and test_metrics_token.sh wrappers.
Exits 0 when every check holds; raises on the first that does not."""
import json
import os
import shutil
import socket
import sys
import tempfile
import time

import mediasrv
from mediasrv import check, wait_for

TMP = tempfile.mkdtemp(prefix="parley-media-sec-")


def raw_request(port, head, body, timeout=20.0):
    """Sends head + body on a socket of its own and returns the status line
    (b"" if the server closed or reset the connection without one). The
    body goes out from a thread while the answer is read, so a refusal the
    server sends early is seen even when it stops reading."""
    import threading
    c = socket.create_connection(("127.0.0.1", port), timeout)

    def send():
        try:
            c.sendall(head + body)
        except OSError:
            pass  # refused and closed early: what is left is not read

    t = threading.Thread(target=send)
    t.start()
    answer = b""
    try:
        while b"\r\n" not in answer:
            piece = c.recv(4096)
            if not piece:
                break
            answer += piece
    except OSError:
        pass
    c.close()
    t.join(timeout)
    return answer.split(b"\r\n", 1)[0]


def upload_auth():
    """Finding 2: a PATCH with a made-up token or another user's token must
    not write one byte into someone's resumable upload."""
    s = mediasrv.Server(TMP, "auth", "--media-files", "1").start()
    try:
        alice, bob = s.register("alice"), s.register("bob")
        data = os.urandom(400_000)
        st, h, body = s.req("POST", "/media/uploads?name=a.bin", b"", alice, {"Upload-Length": str(len(data))})
        check(st == 201, f"create: {st} {body}")
        loc = h["location"]
        st, h, _ = s.req("PATCH", loc, data[:1000], alice, {"Upload-Offset": "0"})
        check(st == 204 and h["upload-offset"] == "1000", f"alice's first piece: {st} {h}")
        evil = b"EVIL" * 750  # 3000 bytes, one read of the server's
        for token, want in (("made-up-token-000000000000000000000", 401), (bob, 404)):
            st, _, body = s.req("PATCH", loc, evil, token, {"Upload-Offset": "1000"})
            check(st == want, f"a PATCH with {'bob' if token == bob else 'a made-up'} token: {st} {body}")
            st, h, _ = s.req("HEAD", loc, token=alice)
            check(st == 200 and h["upload-offset"] == "1000", f"the refused PATCH wrote nothing: {st} {h}")
        # a refused body larger than the server's write buffer (256 KiB), in many reads
        big = b"EVIL" * (300_000 // 4)
        for token in ("made-up-token-000000000000000000000", bob):
            head = (f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                    f"Upload-Offset: 1000\r\nContent-Length: {len(big)}\r\n\r\n").encode()
            line = raw_request(s.http, head, big)
            check(line in (b"", b"HTTP/1.1 401 Unauthorized", b"HTTP/1.1 404 Not Found"), f"big refused PATCH: {line}")
            st, h, _ = s.req("HEAD", loc, token=alice)
            check(st == 200 and h["upload-offset"] == "1000", f"a big refused PATCH wrote nothing: {st} {h}")
        # the owner finishes it: her own bytes, exactly
        st, h, body = s.req("PATCH", loc, data[1000:], alice, {"Upload-Offset": "1000"})
        check(st == 201, f"alice's last piece: {st} {body}")
        m = json.loads(body)
        st, _, got = s.req("GET", f"/media/{m['id']}", token=alice)
        check(st == 200 and got == data, "the stored file is alice's bytes, exactly")
        # a one-shot upload with a made-up token leaves no spool file behind
        st, _, _ = s.req("POST", "/media", evil, "made-up-token-000000000000000000000")
        check(st == 401, f"POST /media with a made-up token: {st}")
        tmp = os.path.join(s.data, "media", "tmp")
        check(not [f for f in os.listdir(tmp) if f.startswith("up-")], f"no spool file: {os.listdir(tmp)}")
    finally:
        s.stop()


def create_upload(s, token, length):
    st, h, body = s.req("POST", "/media/uploads", b"", token, {"Upload-Length": str(length)})
    return st, h.get("location"), json.loads(body)


def quota_reserved():
    """Finding 8: unfinished uploads count against --media-quota with their
    declared length, from creation until finished, deleted or expired, also
    across a restart; and a user may have only so many of them."""
    s = mediasrv.Server(TMP, "quota", "--media-files", "1", "--media-quota", "1000000",
                        "--media-max-unfinished", "3").start()
    try:
        alice, bob = s.register("alice"), s.register("bob")
        st, first, _ = create_upload(s, alice, 899_999)
        check(st == 201, f"first unfinished upload: {st}")
        st, _, e = create_upload(s, alice, 899_999)
        check(st == 413 and e["error"] == "quota exceeded", f"a second one while the first is pending: {st} {e}")
        st, _, _ = s.req("POST", "/media", os.urandom(200_000), alice)
        check(st == 413, f"a one-shot upload past what is reserved: {st}")
        st, _, _ = s.req("DELETE", first, token=bob)
        check(st == 404, f"bob cannot delete alice's upload: {st}")
        st, h, _ = s.req("DELETE", first, token=alice)
        check(st == 204, f"alice deletes hers: {st} {h}")
        st, _, _ = s.req("HEAD", first, token=alice)
        check(st == 404, f"a deleted upload is gone: {st}")
        check(not [f for f in os.listdir(os.path.join(s.data, "media", "tmp")) if f.startswith("rs-")],
              "its files are gone")
        st, second, _ = create_upload(s, alice, 899_999)
        check(st == 201, f"allowed once the first is deleted: {st}")
        data = os.urandom(899_999)
        st, _, body = s.req("PATCH", second, data, alice, {"Upload-Offset": "0"})
        check(st == 201, f"finished: {st} {body}")
        st, _, _ = create_upload(s, alice, 100_001)
        check(st == 201, f"stored 899,999 + 100,001 reserved fits exactly: {st}")
        st, _, _ = create_upload(s, alice, 1)
        check(st == 413, f"one byte more does not: {st}")
        s.stop()
        s.start()  # reservations are kept with the uploads' side files
        st, _, _ = create_upload(s, alice, 1)
        check(st == 413, f"after a restart the reservation still counts: {st}")
        for i in range(3):
            st, _, _ = create_upload(s, bob, 10)
            check(st == 201, f"bob's unfinished upload {i}: {st}")
        st, _, e = create_upload(s, bob, 10)
        check(st == 429 and e["error"] == "too many unfinished uploads", f"past --media-max-unfinished: {st} {e}")
    finally:
        s.stop()


def metrics_token():
    """Finding 12: with --metrics-token, /metrics answers only with the
    token; /healthz stays open. Given on the command line or in a config
    file; a weak token stops parleyd at start-up."""
    import subprocess
    token = "metrics-secret-0123456789abcdef"
    conf = os.path.join(TMP, "parleyd.conf")
    with open(conf, "w") as f:
        f.write(f"metrics-token = {token}\n")
    for how in (["--metrics-token", token], ["--config", conf]):
        s = mediasrv.Server(TMP, "metrics" + how[0], *how).start()
        try:
            st, h, body = s.req("GET", "/metrics")
            check(st == 401 and h.get("www-authenticate", "").startswith("Bearer"), f"no token: {st} {h}")
            check(b"parley_" not in body, "no metrics without the token")
            for wrong in ("x", token[:-1], token + "0", token.upper()):
                st, _, body = s.req("GET", "/metrics", token=wrong)
                check(st == 401 and b"parley_" not in body, f"a wrong token ({wrong}): {st}")
            st, h, body = s.req("GET", "/metrics", token=token)
            check(st == 200 and b"\nparley_connections_total " in body, f"with the token ({how[0]}): {st} {body[:80]}")
            s.metrics_token = token
            check(s.metric("parley_media_uploads_total") == 0, "metrics read with the token")
            st, _, body = s.req("GET", "/healthz")
            check(st == 200 and body == b"ok\n", f"/healthz needs no token: {st}")
        finally:
            s.stop()
    p = subprocess.run([mediasrv.PARLEYD, "--data", os.path.join(TMP, "weak"), "--metrics-token", "short"],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 2 and "metrics-token" in p.stderr and "short" not in p.stderr,
          f"a weak token is refused, and not echoed: {p.returncode} {p.stderr}")
    # without the option, /metrics stays open (the documented default)
    s = mediasrv.Server(TMP, "open").start()
    try:
        st, _, body = s.req("GET", "/metrics")
        check(st == 200 and b"parley_connections_total" in body, f"open by default: {st}")
    finally:
        s.stop()


def workers():
    """Finding 5: image uploads run on media's own workers, not on libuv's
    pool where Argon2id runs. N logins with wrong passwords (each an Argon2id
    run of 64 MiB, from its own address, so a per-address bound on hashing
    does not stop them) fill that pool; an upload started behind them must
    be answered before most of them, not after all of them."""
    import http.client
    import threading
    from testimg import png
    n = 16
    s = mediasrv.Server(TMP, "workers").start()
    lock = threading.Lock()
    stop = threading.Event()
    current = {}  # login thread -> the number of its request in flight
    answered = {}  # (thread, number) -> HTTP status
    errors = []

    def logins(i):
        k = 0
        while not stop.is_set():
            c = http.client.HTTPConnection("127.0.0.1", s.http, timeout=120, source_address=(f"127.0.0.{10 + i}", 0))
            try:
                with lock:
                    current[i] = k
                c.request("POST", "/api/login", json.dumps({"user": f"ghost{i}", "password": "not-the-password"}))
                r = c.getresponse()
                r.read()
                with lock:
                    answered[(i, k)] = r.status
            except OSError as e:
                errors.append(repr(e))
                return
            finally:
                c.close()
            k += 1

    threads = [threading.Thread(target=logins, args=(i,), daemon=True) for i in range(n)]
    try:
        alice = s.register("alice")
        img = png(800, 600)
        st, _ = s.upload(alice, img)
        check(st == 201, f"an upload on an idle server: {st}")
        for t in threads:
            t.start()
        # every login has gone out, and the first hashes are done: the rest wait in libuv's pool
        wait_for(lambda: len(current) == n and len(answered) >= 4, "the logins under way", 120)
        with lock:
            ahead = {(i, k) for i, k in current.items() if (i, k) not in answered}
        check(len(ahead) >= n // 2, f"the pool is full of hashing: {len(ahead)} logins waiting")
        t0 = time.time()
        st, m = s.upload(alice, img)
        took = time.time() - t0
        with lock:
            done = [answered[x] for x in ahead if x in answered]
        check(st == 201, f"the upload under hashing load: {st} {m}")
        check(all(x == 401 for x in done), f"the logins ahead were refused by hashing: {done}")
        # before the fix it waited for all of them; leave room for a slow disk or a busy machine
        check(len(done) < len(ahead) * 3 // 4,
              f"the upload ({took:.2f} s) waited for the password hashing: {len(done)} of the {len(ahead)} "
              "logins queued before it were answered first")
        check(not errors, f"login errors: {errors}")
        print(f"workers: upload in {took:.2f} s while {len(ahead) - len(done)} of {len(ahead)} logins still hashed")
    finally:
        stop.set()
        deadline = time.time() + 120  # each finishes the login it has out
        for t in threads:
            if t.ident:
                t.join(max(0.1, deadline - time.time()))
        s.stop()


SCENARIOS = {"upload_auth": upload_auth, "quota_reserved": quota_reserved, "metrics_token": metrics_token,
             "workers": workers}

if __name__ == "__main__":
    try:
        SCENARIOS[sys.argv[1]]()
        print(f"media_sec_test {sys.argv[1]}: all checks passed")
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
