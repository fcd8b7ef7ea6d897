"""The MQTT gateway end to end (run by test_mqtt.sh): Debian's paho-mqtt
(3.1.1 and 5.0, TCP and WebSocket) and raw sockets against the real
parleyd, a native user on the other side through the `parley` CLI.

Environment: PARLEYD, PARLEY_CLI, TMP (a temp dir this test owns; the PIDs
of the servers it starts go to TMP/pids for the shell's cleanup).
Every wait has a deadline; every check prints PASS or FAIL; the exit status
is the number of failures."""
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt

import tlsca

PARLEYD, CLI, TMP = os.environ["PARLEYD"], os.environ["PARLEY_CLI"], os.environ["TMP"]
HERE = os.path.dirname(os.path.abspath(__file__))
PASSWORD = "secret-pass"
failures = 0


def free_port():
    return int(subprocess.check_output([sys.executable, os.path.join(HERE, "free_port.py")]))


NATIVE, MQTT, HTTP, MQTT_TLS = free_port(), free_port(), free_port(), free_port()
server = None
ROOT = tlsca.make_ca(os.path.join(TMP, "pki"))
CERT, KEY = tlsca.make_leaf(os.path.join(TMP, "pki"), "server")


def check(name, ok, detail=""):
    global failures
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)), flush=True)
    if not ok:
        failures += 1
    return ok


def wait_for(cond, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    return cond()


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def start_server():
    global server
    log = open(os.path.join(TMP, "parleyd.log"), "a")
    server = subprocess.Popen(
        [PARLEYD, "--data", os.path.join(TMP, "data"), "--listen", f"127.0.0.1:{NATIVE}",
         "--http", f"127.0.0.1:{HTTP}", "--mqtt", f"127.0.0.1:{MQTT}", "--threads", "2",
         "--mqtt-tls", f"127.0.0.1:{MQTT_TLS}", "--tls-cert", CERT, "--tls-key", KEY,
         "--argon2-mem", "8", "--argon2-ops", "1", "--presence-grace", "0"], stderr=log)
    with open(os.path.join(TMP, "pids"), "a") as f:
        f.write(f"{server.pid}\n")
    if not wait_for(lambda: listening(MQTT) and listening(NATIVE) and listening(HTTP) and listening(MQTT_TLS), 30):
        raise SystemExit("parleyd did not start listening")


def cli(user, *args):
    r = subprocess.run([CLI, "--server", f"127.0.0.1:{NATIVE}", "--user", user, "--password", PASSWORD, *args],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout


def recv_all(user):
    """The messages the native user's device has, as dicts (acknowledged; receipts left out)."""
    rc, out = cli(user, "recv", "--wait", "1")
    return [m for m in (json.loads(line) for line in out.splitlines() if line.strip()) if m.get("type") == "message"]


class Client:
    """A paho client that records what arrives."""

    def __init__(self, cid, v5=False, clean=True, ws=False, tls=False):
        self.v5 = v5
        kw = {"protocol": mqtt.MQTTv5} if v5 else {"clean_session": clean, "protocol": mqtt.MQTTv311}
        self.c = mqtt.Client(client_id=cid, transport="websockets" if ws else "tcp", **kw)
        if ws:
            self.c.ws_set_options(path="/mqtt")
        self.c.username_pw_set("bob", PASSWORD)
        self.msgs, self.acks, self.subacks, self.lock = [], {}, {}, threading.Lock()
        self.connack, self.flags, self.disconnect = None, None, None
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.msgs.append((m.topic, m.payload.decode()))
        self.c.on_publish = lambda c, u, mid, *rest: self.acks.__setitem__(mid, True)
        self.c.on_subscribe = lambda c, u, mid, granted, *rest: self.subacks.__setitem__(mid, granted)
        self.c.on_disconnect = self._on_disconnect
        self.clean = clean
        self.port = HTTP if ws else MQTT_TLS if tls else MQTT
        if tls:
            self.c.tls_set(ca_certs=ROOT)  # the name checked: localhost

    def _on_connect(self, c, u, flags, rc, *props):
        self.connack, self.flags = rc, flags

    def _on_disconnect(self, c, u, rc, *props):
        self.disconnect = rc

    def connect(self, host="127.0.0.1"):
        if self.v5:
            self.c.connect(host, self.port, keepalive=30, clean_start=self.clean)
        else:
            self.c.connect(host, self.port, keepalive=30)
        self.c.loop_start()
        return wait_for(lambda: self.connack is not None)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()

    def texts(self, topic_prefix="parley/in/msg/"):
        return [json.loads(p).get("text") for t, p in self.msgs if t.startswith(topic_prefix)]

    def of(self, topic):
        return [json.loads(p) for t, p in self.msgs if t == topic]


# ---- raw MQTT, byte by byte ----

def rlen(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def mstr(s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(s)) + s


def packet(first, body):
    return bytes([first]) + rlen(len(body)) + body


def connect_pkt(cid, level=4, user="bob", props=b"", keepalive=30):
    body = mstr("MQTT") + bytes([level, 0xC0]) + struct.pack(">H", keepalive)
    if level == 5:
        body += rlen(len(props)) + props
    return packet(0x10, body + mstr(cid) + mstr(user) + mstr(PASSWORD))


def publish_pkt(topic, payload, pid, qos=1, dup=False, v5=False, retain=False):
    body = mstr(topic) + struct.pack(">H", pid) + (b"\x00" if v5 else b"") + payload
    return packet(0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0), body)


class Raw:
    def __init__(self, port=None):
        self.s = socket.create_connection(("127.0.0.1", port or MQTT), timeout=10)
        self.buf = b""

    def send(self, b):
        self.s.sendall(b)
        return self

    def read_packet(self, timeout=10):
        """(first byte, body), or None once the server closed."""
        self.s.settimeout(timeout)
        while True:
            if len(self.buf) >= 2:
                n, mul, i = 0, 1, 1
                while i < len(self.buf) and i <= 4:
                    n += (self.buf[i] & 0x7F) * mul
                    mul *= 128
                    if not self.buf[i] & 0x80:
                        break
                    i += 1
                if i < len(self.buf) and len(self.buf) >= i + 1 + n:
                    p, self.buf = (self.buf[0], self.buf[i + 1:i + 1 + n]), self.buf[i + 1 + n:]
                    return p
            try:
                d = self.s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return None
            if not d:
                return None
            self.buf += d

    def closed(self, timeout=10):
        """The server closes without saying more (what comes first is returned as a failure)."""
        p = self.read_packet(timeout)
        return p is None, p

    def close(self):
        self.s.close()


# ---- the scenarios ----

def sends(name, bob, mid, text, qos=1):
    """bob publishes text as message id mid: acked (PUBACK / PUBCOMP), and alice has it once."""
    info = bob.c.publish("parley/send/user/alice", json.dumps({"id": mid, "text": text}), qos=qos)
    check(name + "-acked", wait_for(lambda: bob.acks.get(info.mid)), bob.acks)
    got = recv_all("alice")
    check(name + "-alice-has-it-once", [(m["id"], m["text"]) for m in got] == [(mid, text)], got)


def chat_both_ways_311():
    """paho 3.1.1 as bob's device "bob-phone" and alice on the native protocol."""
    bob = Client("bob-phone")
    check("311-connack", bob.connect() and bob.connack == 0, bob.connack)
    bob.c.subscribe("parley/in/#", qos=1)
    check("311-suback", wait_for(lambda: bob.subacks.get(1)) == (1,), bob.subacks)
    rc, out = cli("alice", "send", "bob", "hi bob")
    check("311-alice-sends", rc == 0 and '"seq":1' in out, out)
    check("311-bob-receives", wait_for(lambda: "hi bob" in bob.texts()), bob.msgs)
    topic = bob.msgs[0][0] if bob.msgs else None
    check("311-topic-of-sender", topic == "parley/in/msg/user/alice", topic)
    info = bob.c.publish("parley/send/user/alice", json.dumps({"id": "bob-1", "text": "hi alice"}), qos=1)
    check("311-puback", wait_for(lambda: bob.acks.get(info.mid)), bob.acks)
    got = recv_all("alice")
    check("311-alice-receives", [(m["from"], m["text"], m["id"]) for m in got] == [("bob", "hi alice", "bob-1")], got)
    # alice's device took bob's message: bob's device is told (delivered), then read
    check("311-delivered-receipt", wait_for(lambda: any(r.get("status") == "RECEIPT_DELIVERED" and r["seq"] == 2
                                                       for r in bob.of("parley/in/receipt"))), bob.msgs)
    rc, _ = cli("alice", "read", "bob", "2")
    check("311-read-receipt", wait_for(lambda: any(r.get("status") == "RECEIPT_READ" and r["seq"] == 2
                                                  for r in bob.of("parley/in/receipt"))), bob.msgs)
    # the delivery's "text" is spliced into pl_json's text (not re-dumped): every escape JSON needs
    odd = 'a "quote" \\ back\nline\ttab é 👍 </x>'
    rc, out = cli("alice", "send", "bob", odd)
    check("311-odd-text-sent", rc == 0, out)
    check("311-odd-text-exact", wait_for(lambda: odd in bob.texts()), bob.msgs)
    last = next((m for m in (json.loads(p) for t, p in bob.msgs if t.startswith("parley/in/msg/"))
                 if m.get("text") == odd), {})
    check("311-odd-text-body", base64.b64decode(last.get("body", "")) == odd.encode(), last)
    # the same id again is the same message: acked, stored once
    info = bob.c.publish("parley/send/user/alice", json.dumps({"id": "bob-1", "text": "hi alice"}), qos=1)
    check("311-retry-acked", wait_for(lambda: bob.acks.get(info.mid)), bob.acks)
    check("311-retry-stored-once", recv_all("alice") == [], "a second copy")
    bob.close()


def acts_both_ways():
    """Message actions (protocol.md 11.9) ride in the send payload's "act", as in the
    JSON binding: bob reacts over MQTT to alice's message (seq 1 of their chat) and
    edits his own (seq 2); alice's device gets both, in order, with their acts."""
    bob = Client("bob-acts")
    check("acts-connack", bob.connect() and bob.connack == 0, bob.connack)
    bob.c.subscribe("parley/in/#", qos=1)
    wait_for(lambda: bob.subacks)
    info = bob.c.publish("parley/send/user/alice", json.dumps(
        {"id": "bob-react-1", "text": "\U0001F44D", "act": {"kind": "ACT_REACTION", "target": 1}}), qos=1)
    check("acts-reaction-acked", wait_for(lambda: bob.acks.get(info.mid)), bob.acks)
    info = bob.c.publish("parley/send/user/alice", json.dumps(
        {"id": "bob-edit-1", "text": "hi alice!", "act": {"kind": "ACT_EDIT", "target": 2}}), qos=1)
    check("acts-edit-acked", wait_for(lambda: bob.acks.get(info.mid)), bob.acks)
    got = [(m["id"], m.get("act", {}).get("kind"), m.get("act", {}).get("target")) for m in recv_all("alice")]
    check("acts-alice-has-them", got == [("bob-react-1", "reaction", 1), ("bob-edit-1", "edit", 2)], got)
    bob.close()


def qos2_and_v5():
    """MQTT 5: QoS 2 exactly as the spec says; reason codes for refusals."""
    bob = Client("bob-tab", v5=True)
    check("v5-connack", bob.connect() and bob.connack == 0, bob.connack)
    sends("v5-qos2", bob, "bob-q2", "exactly once", qos=2)
    bob.close()
    raw = Raw().send(connect_pkt("bob-raw5", level=5))
    p = raw.read_packet()
    check("v5-raw-connack", p and p[0] == 0x20 and p[1][1] == 0, p)
    raw.send(publish_pkt("parley/send/user/nobody-here", b'{"id":"x1","text":"t"}', 7, v5=True))
    p = raw.read_packet()
    check("v5-unknown-peer-puback-0x90", p and p[0] == 0x40 and p[1][:3] == b"\x00\x07\x90", p)
    raw.send(publish_pkt("sensors/kitchen", b"21.5", 8, v5=True))
    p = raw.read_packet()
    check("v5-outside-scheme-puback-0x90", p and p[0] == 0x40 and p[1][:3] == b"\x00\x08\x90", p)
    raw.send(publish_pkt("parley/send/user/alice", b"not json", 9, v5=True))
    p = raw.read_packet()
    check("v5-bad-payload-puback-0x99", p and p[0] == 0x40 and p[1][:3] == b"\x00\x09\x99", p)
    raw.send(packet(0x82, struct.pack(">H", 3) + b"\x00" + mstr("#") + b"\x01" + mstr("parley/in/#") + b"\x01"))
    p = raw.read_packet()
    check("v5-suback-wildcard-refused", p and p[0] == 0x90 and p[1][-2:] == b"\x87\x01", p)
    raw.send(publish_pkt("parley/send/user/alice", b'{"id":"r1","text":"t"}', 10, v5=True, retain=True))
    p = raw.read_packet()
    check("v5-retain-disconnect-0x9a", p and p[0] == 0xE0 and p[1][:1] == b"\x9a", p)
    check("v5-retain-closed", raw.closed()[0])
    check("v5-retained-not-stored", recv_all("alice") == [], "stored")
    raw.close()


def persistent_session():
    """clean session 0: what came while away arrives on reconnect, in order."""
    bob = Client("bob-persist", clean=False)
    check("persist-first-connect", bob.connect() and bob.connack == 0, bob.connack)
    bob.c.subscribe("parley/in/#", qos=1)
    wait_for(lambda: bob.subacks.get(1))
    bob.close()
    for t in ("while away 1", "while away 2"):
        rc, _ = cli("alice", "send", "bob", t)
    bob2 = Client("bob-persist", clean=False)
    check("persist-reconnect", bob2.connect() and bob2.flags.get("session present") == 1, bob2.flags)
    check("persist-missed-in-order", wait_for(lambda: bob2.texts()[-2:] == ["while away 1", "while away 2"]),
          bob2.texts())
    bob2.close()
    bob3 = Client("bob-persist", clean=False)
    bob3.connect()
    time.sleep(0.5)  # nothing may arrive: the PUBACKs were the Acks (a quiet period, not a wait)
    check("persist-acked-not-again", [t for t in bob3.texts() if t.startswith("while away")] == [], bob3.texts())
    bob3.close()


def takeover():
    """A client id that connects twice: the first connection ends (0x8E)."""
    a = Raw().send(connect_pkt("bob-twice", level=5))
    check("takeover-first", (a.read_packet() or (0,))[0] == 0x20)
    b = Raw().send(connect_pkt("bob-twice", level=5))
    check("takeover-second", (b.read_packet() or (0,))[0] == 0x20)
    p = a.read_packet()
    check("takeover-disconnect-0x8e", p and p[0] == 0xE0 and p[1][:1] == b"\x8e", p)
    check("takeover-first-closed", a.closed()[0])
    b.send(packet(0xC0, b""))
    check("takeover-second-lives", (b.read_packet() or (0,))[0] == 0xD0)
    a.close()
    b.close()


def keepalive():
    """Keep alive 1 s and then silence: cut after 1.5 s (MQTT 5: DISCONNECT 0x8D)."""
    r = Raw().send(connect_pkt("bob-quiet", level=5, keepalive=1))
    check("keepalive-connack", (r.read_packet() or (0,))[0] == 0x20)
    start = time.monotonic()
    p = r.read_packet(timeout=15)
    while p and p[0] & 0xF0 == 0x30:  # the Error it is published first (parley/in/error)
        p = r.read_packet(timeout=15)
    took = time.monotonic() - start
    check("keepalive-disconnect-0x8d", p and p[0] == 0xE0 and p[1][:1] == b"\x8d", p)
    check("keepalive-not-before-1.5s", took >= 1.4, took)
    check("keepalive-closed", r.closed()[0])
    r.close()


def kill9_retry():
    """A QoS 1 send in flight during kill -9 is stored once after the retry."""
    global server
    raw = Raw().send(connect_pkt("bob-crash"))
    check("kill9-connack", (raw.read_packet() or (0,))[0] == 0x20)
    pub = publish_pkt("parley/send/user/alice", b'{"id":"crash-1","text":"survives"}', 5)
    raw.send(pub)
    server.kill()  # SIGKILL, whether or not the commit happened
    server.wait()
    raw.close()
    start_server()
    raw = Raw().send(connect_pkt("bob-crash"))
    check("kill9-reconnect", (raw.read_packet() or (0,))[0] == 0x20)
    raw.send(publish_pkt("parley/send/user/alice", b'{"id":"crash-1","text":"survives"}', 5, dup=True))
    p = raw.read_packet()
    while p and p[0] & 0xF0 == 0x30:  # deliveries first (receipts): acknowledged
        raw.send(packet(0x40, p[1][2 + struct.unpack(">H", p[1][:2])[0]:][:2]))
        p = raw.read_packet()
    check("kill9-puback", p and p[0] == 0x40 and p[1] == b"\x00\x05", p)
    got = [m for m in recv_all("alice") if m["id"] == "crash-1"]
    check("kill9-stored-once", len(got) == 1 and got[0]["text"] == "survives", got)
    raw.close()


def malformed_catalogue():
    """Each bad input answered as the spec says; another client carries on."""
    watch = Client("bob-watch")
    check("bad-watcher-connects", watch.connect() and watch.connack == 0)
    cases = [
        # (name, bytes, version-5 session first?, what the server answers before it closes)
        ("bad-remaining-length", packet(0x10, b"")[:1] + b"\xff\xff\xff\xff\x01", None, None),
        ("packet-before-connect", packet(0xC0, b""), None, None),
        ("bad-utf8-client-id-311",
         packet(0x10, mstr("MQTT") + b"\x04\x02\x00\x1e" + mstr(b"a\xff")), None, None),
        ("bad-utf8-client-id-v5",
         packet(0x10, mstr("MQTT") + b"\x05\x02\x00\x1e\x00" + mstr(b"a\xc0\xaf")), None, (0x20, b"\x00\x81")),
        ("wrong-protocol-level", packet(0x10, mstr("MQTT") + b"\x06\x02\x00\x1e" + mstr("x")), None,
         (0x20, b"\x00\x01")),
        ("mqtt31-refused", packet(0x10, mstr("MQIsdp") + b"\x03\x02\x00\x1e" + mstr("x")), None,
         (0x20, b"\x00\x01")),
        ("bad-flags-pingreq", packet(0xC1, b""), 4, None),
        ("bad-flags-subscribe", packet(0x80, b"\x00\x01" + mstr("parley/in/#") + b"\x01"), 4, None),
        ("qos3-publish", packet(0x36, mstr("a") + b"\x00\x01"), 5, (0xE0, b"\x81")),
        ("oversize-publish", b"\x30\xff\xff\xff\x7f", 5, (0xE0, b"\x95")),
        ("outside-scheme-311", publish_pkt("sensors/kitchen", b"21", 3), 4, None),
        ("second-connect", connect_pkt("bob-bad2"), 5, (0xE0, b"\x82")),
    ]
    for name, data, session, answer in cases:
        r = Raw()
        if session:
            r.send(connect_pkt("bob-bad", level=session))
            p = r.read_packet()
            if not check(name + "-connected", p and p[0] == 0x20, p):
                continue
        r.send(data)
        if answer:
            p = r.read_packet()
            check(name + "-answer", p and p[0] == answer[0] and p[1][:len(answer[1])] == answer[1], p)
        closed, extra = r.closed()
        check(name + "-closed", closed, extra)
        r.close()
    rc, _ = cli("alice", "send", "bob", "after the bad ones")
    check("bad-watcher-carries-on", wait_for(lambda: "after the bad ones" in watch.texts()), watch.msgs)
    watch.close()


def websocket():
    """paho over WebSocket at /mqtt, subprotocol mqtt."""
    bob = Client("bob-ws", ws=True)
    check("ws-connack", bob.connect() and bob.connack == 0, bob.connack)
    sends("ws", bob, "ws-1", "over websocket")
    cli("alice", "send", "bob", "to the websocket")
    check("ws-bob-receives", wait_for(lambda: "to the websocket" in bob.texts()), bob.msgs)
    bob.close()


def mosquitto_clients():
    """mosquitto_sub reads what arrives as it is (JSON text); mosquitto_pub sends."""
    out = os.path.join(TMP, "sub.out")
    with open(out, "w") as f:
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(MQTT), "-i", "bob-mosq", "-u", "bob",
                                "-P", PASSWORD, "-q", "1", "-t", "parley/in/msg/#", "-C", "1", "-v", "-W", "30"],
                               stdout=f, stderr=subprocess.STDOUT)
    with open(os.path.join(TMP, "pids"), "a") as f:
        f.write(f"{sub.pid}\n")
    # subscribed once the device is online: then alice's message goes to it live
    wait_for(lambda: "bob-mosq" in open(os.path.join(TMP, "parleyd.log")).read())
    cli("alice", "send", "bob", "for mosquitto_sub")
    sub.wait(timeout=40)
    line = open(out).read().strip()
    topic, _, payload = line.partition(" ")
    check("mosquitto-sub-reads-json", topic == "parley/in/msg/user/alice" and
          json.loads(payload or "{}").get("text") == "for mosquitto_sub", line)
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(MQTT), "-i", "bob-mosq", "-u", "bob",
                        "-P", PASSWORD, "-q", "1", "-t", "parley/send/user/alice",
                        "-m", json.dumps({"id": "mosq-1", "text": "from mosquitto_pub"})],
                       capture_output=True, text=True, timeout=30)
    check("mosquitto-pub-exit", r.returncode == 0, r.stderr)
    check("mosquitto-pub-stored", [m["text"] for m in recv_all("alice")] == ["from mosquitto_pub"])


def over_tls():
    """--mqtt-tls: paho with the CA, the server's name checked."""
    bob = Client("bob-tls", v5=True, tls=True)
    check("tls-connack", bob.connect("localhost") and bob.connack == 0, bob.connack)
    sends("tls", bob, "tls-1", "over tls")
    bob.close()


def main():
    start_server()
    for u in ("alice", "bob"):
        rc, _ = cli(u, "register")
        check("register-" + u, rc == 0)
    for step in (chat_both_ways_311, acts_both_ways, mosquitto_clients, qos2_and_v5, persistent_session, takeover, websocket, over_tls, keepalive,
                 malformed_catalogue, kill9_retry):
        try:
            step()
        except Exception as e:  # a step that breaks is a failure, the others still run
            check(step.__name__, False, repr(e))
    # a graceful stop with MQTT clients connected: exit 0 (under ASan: no leak, no error)
    watch = Client("bob-at-stop", v5=True)
    watch.connect()
    server.terminate()
    try:
        rc = server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        rc = server.wait()
    check("graceful-stop-exit-0", rc == 0, rc)
    check("graceful-stop-told-v5", wait_for(lambda: watch.disconnect is not None, 10) and watch.disconnect != 0,
          watch.disconnect)
    watch.c.loop_stop()
    return failures


if __name__ == "__main__":
    sys.exit(min(main(), 100))
