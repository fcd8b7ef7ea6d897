"""A JSON WebSocket client (protocol.md 1.1-1.2) for the shard tests
(shards.sh, grow.sh), run with Debian's python3 (python3-websockets).

ws_client.py login HPORT USER PASSWORD DEVICE TOKENFILE: sign in, keep the
token; ws_client.py resume HPORT TOKENFILE TO TEXT: a new connection resumes
with the kept token and sends TEXT to TO;
ws_client.py unread HPORT USER PASSWORD CONV: signs in (device "unread") and
prints CONV's state from UnreadGet (last_seq read_seq peer_delivered peer_read);
ws_client.py act HPORT USER PASSWORD TO KIND TARGET TEXT: signs in (device
"act") and sends TEXT to TO with act {kind: KIND, target: TARGET}, prints the
ack; ws_client.py fwd HPORT USER PASSWORD TO MEDIA_ID TEXT: the same with the
upload MEDIA_ID attached (a forward; TO "group:N": to group N), prints the ack
or the error's code;
ws_client.py stay HPORT USER PASSWORD DEVICE TEXT OUTFILE: one connection that
stays, pinging, until TEXT comes (below).
Prints one JSON line; exits non-zero (with the reason) otherwise."""
import asyncio, base64, json, sys, time
import websockets

async def frame(ws, want, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            sys.exit(f"no {want} frame within {timeout} s")
        f = json.loads(await asyncio.wait_for(ws.recv(), left))
        if f.get("type") == "error":
            sys.exit("error frame: " + json.dumps(f))
        if f.get("type") == want:
            return f

async def main():
    mode, hport = sys.argv[1], sys.argv[2]
    async with websockets.connect(f"ws://127.0.0.1:{hport}/ws", subprotocols=["parley.json.v1"],
                                  open_timeout=20, max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 2, "kind": "KIND_BOT",
                                  "client_name": "pg-shards-test/1"}))
        await frame(ws, "welcome")
        if mode == "act":
            user, password, to, kind, target, text = sys.argv[3:9]
            await ws.send(json.dumps({"type": "login", "user": user, "password": password, "device": "act"}))
            await frame(ws, "auth_ok")
            await ws.send(json.dumps({"type": "send", "id": "act-%d" % time.time_ns(), "to": to,
                                      "body": base64.b64encode(text.encode()).decode(),
                                      "client_ts": int(time.time() * 1000),
                                      "act": {"kind": kind, "target": int(target)}}))
            ack = await frame(ws, "send_ack")
            print(json.dumps({"seq": int(ack.get("seq", 0))}))
            return
        if mode == "fwd":
            user, password, to, media_id, text = sys.argv[3:8]
            await ws.send(json.dumps({"type": "login", "user": user, "password": password, "device": "act"}))
            await frame(ws, "auth_ok")
            dest = {"group": to[6:]} if to.startswith("group:") else {"to": to}
            await ws.send(json.dumps({"type": "send", "id": "fwd-%d" % time.time_ns(), **dest,
                                      "body": base64.b64encode(text.encode()).decode(),
                                      "client_ts": int(time.time() * 1000), "media": {"id": media_id}}))
            while True:
                f = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if f.get("type") in ("send_ack", "error"):
                    break
            if f["type"] == "error":
                print(json.dumps({"error": f.get("code")}))
                sys.exit(5)
            print(json.dumps({"seq": int(f.get("seq", 0))}))
            return
        if mode == "unread":
            user, password, conv = sys.argv[3:6]
            await ws.send(json.dumps({"type": "login", "user": user, "password": password, "device": "unread"}))
            await frame(ws, "auth_ok")
            await ws.send(json.dumps({"type": "unread_get", "ref": "u1"}))
            got = await frame(ws, "unread")
            for c in got.get("convs", []):
                if c.get("conv") == conv:
                    print(" ".join(str(int(c.get(k, 0))) for k in ("last_seq", "read_seq", "peer_delivered", "peer_read")))
                    return
            sys.exit(f"no {conv} in {json.dumps(got)}")
        if mode == "stay":
            # stay USER PASSWORD DEVICE TEXT OUTFILE: one connection that
            # pings every 0.3 s and never reconnects; writes "ready" once
            # signed in, then each message's text as it comes; exits 0 once
            # TEXT came (and 2 s more passed without it again), 3 if it came
            # twice, 4 if not within 45 s
            user, password, device, want, outf = sys.argv[3:8]
            await ws.send(json.dumps({"type": "login", "user": user, "password": password, "device": device}))
            await frame(ws, "auth_ok")
            out = open(outf, "a")
            print("ready", file=out, flush=True)
            start, ping, seen, until = time.monotonic(), 0.0, 0, None
            while time.monotonic() - start < 45 and (until is None or time.monotonic() < until):
                if time.monotonic() - ping > 0.3:
                    await ws.send(json.dumps({"type": "ping", "client_ts": int(time.time() * 1000)}))
                    ping = time.monotonic()
                try:
                    f = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
                except asyncio.TimeoutError:
                    continue
                if f.get("type") == "message":
                    text = base64.b64decode(f.get("body", "")).decode(errors="replace")
                    print(text, file=out, flush=True)
                    if text == want:
                        seen += 1
                        until = time.monotonic() + 2
            sys.exit(0 if seen == 1 else 3 if seen > 1 else 4)
        if mode == "login":
            user, password, device, tokfile = sys.argv[3:7]
            await ws.send(json.dumps({"type": "login", "user": user, "password": password, "device": device}))
            ok = await frame(ws, "auth_ok")
            with open(tokfile, "w") as f:
                f.write(ok["token"])
            print(json.dumps({"user": ok["user"], "device": ok["device"], "device_id": int(ok["device_id"])}))
        else:
            tokfile, to, text = sys.argv[3:6]
            with open(tokfile) as f:
                token = f.read().strip()
            await ws.send(json.dumps({"type": "resume", "token": token}))
            ok = await frame(ws, "auth_ok")
            cid = "resume-%d" % time.time_ns()
            await ws.send(json.dumps({"type": "send", "id": cid, "to": to,
                                      "body": base64.b64encode(text.encode()).decode(),
                                      "client_ts": int(time.time() * 1000)}))
            ack = await frame(ws, "send_ack")
            print(json.dumps({"user": ok["user"], "device": ok["device"], "device_id": int(ok["device_id"]),
                              "id": ack.get("id"), "seq": int(ack.get("seq", 0))}))

asyncio.run(main())
