// What the web client's tests share: a free port, the real parleyd on it with
// a temp data dir, waiting for a condition with a deadline, a real PNG.
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Below the ephemeral range (32768+), so that the server's ports are not
// taken by Chromium's own connections while the server restarts.
export const freePort = () => new Promise((resolve) => {
  const port = 20000 + Math.floor(Math.random() * 12000);
  const s = createServer();
  s.once('error', () => resolve(freePort()));
  s.listen(port, '127.0.0.1', () => s.close(() => resolve(port)));
});

// Does process pid hold the listening socket of port? Another test's server
// may have taken the number between freePort() and our bind: then a connect
// succeeds, but to the wrong server.
export function listens(pid, port) {
  const inodes = new Set();
  for (const name of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = readFileSync(name, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const col = line.trim().split(/\s+/);
      if (col[3] === '0A' && parseInt(col[1].split(':').pop(), 16) === port) inodes.add(`socket:[${col[9]}]`);
    }
  }
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try { return inodes.has(readlinkSync(`/proc/${pid}/fd/${fd}`)); } catch { return false; }
    });
  } catch { return false; }
}

// Spawns parleyd with argsOf(ports) (nports free ports, or the given ones)
// until it holds a listener on each (30 s: a loaded machine, or the
// PostgreSQL wrapper creating its database, starts it slowly); new numbers
// when it exited first, unless the ports were given. Returns { proc, ports }.
export async function spawnListening(parleyd, nports, argsOf, log, given = null) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const ports = given || [];
    while (ports.length < nports) {
      const p = await freePort();
      if (!ports.includes(p)) ports.push(p);
    }
    const proc = spawn(parleyd, argsOf(ports), { stdio: ['ignore', 'ignore', log] });
    let exited = false;
    proc.once('exit', () => { exited = true; });
    for (const end = Date.now() + 30000; !exited && Date.now() < end;) {
      if (ports.every((p) => listens(proc.pid, p))) return { proc, ports };
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!exited) {
      proc.kill('SIGKILL');
      throw new Error(`parleyd did not listen on ${ports.join(', ')} within 30 s`);
    }
    if (given) break;
  }
  throw new Error('parleyd exited during start-up (see its log)');
}

// Starts $PARLEYD (again in old's data dir and ports, when old is given) and
// waits for /healthz; the log goes to <dir>.log. more: options of further
// listeners (['--mqtt']), each given a port of its own: srv.more['--mqtt'].
export async function startServer(parleyd, old, extra = [], more = []) {
  const dir = old ? old.dir : mkdtempSync(join(tmpdir(), 'parley-browser-'));
  const log = openSync(`${dir}.log`, 'a');
  const { proc, ports } = await spawnListening(parleyd, 2 + more.length, ([p, h, ...m]) => ['--data', dir,
    '--listen', `127.0.0.1:${p}`, '--http', `127.0.0.1:${h}`, '--threads', '2', '--argon2-mem', '8',
    '--argon2-ops', '1', '--presence-grace', '0', ...more.flatMap((o, i) => [o, `127.0.0.1:${m[i]}`]), ...extra],
  log, old ? [old.port, old.http, ...more.map((o) => old.more[o])] : null);
  const [port, http] = ports;
  for (let i = 0; i < 250; i++) {
    try { if ((await fetch(`http://127.0.0.1:${http}/healthz`)).ok) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { dir, port, http, base: `http://127.0.0.1:${http}/`, ws: `ws://127.0.0.1:${http}/ws`, proc,
    more: Object.fromEntries(more.map((o, i) => [o, ports[2 + i]])) };
}

// Resolves once cond() is truthy (polled), rejects naming what after ms.
export async function until(cond, what, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// A real w x h RGB PNG (a gradient), made here so the tests need no image tool.
export function png(w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => { let c = ~0; for (const b of buf) c = crcTable[(c ^ b) & 255] ^ (c >>> 8); return (~c) >>> 0; };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4); c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w * 3; x++) raw[y * (w * 3 + 1) + 1 + x] = (x * 4 + y * 3) & 255;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
