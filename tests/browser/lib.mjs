// What the web client's tests share: a free port, the real parleyd on it with
// a temp data dir, waiting for a condition with a deadline, a real PNG.
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync } from 'node:fs';
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

// Starts $PARLEYD (again in old's data dir and ports, when old is given) and
// waits for /healthz; the log goes to <dir>.log.
export async function startServer(parleyd, old, extra = []) {
  const dir = old ? old.dir : mkdtempSync(join(tmpdir(), 'parley-browser-'));
  const port = old ? old.port : await freePort(), http = old ? old.http : await freePort();
  const log = openSync(`${dir}.log`, 'a');
  const proc = spawn(parleyd, ['--data', dir, '--listen', `127.0.0.1:${port}`, '--http', `127.0.0.1:${http}`,
    '--threads', '2', '--argon2-mem', '8', '--argon2-ops', '1', '--presence-grace', '0', ...extra],
  { stdio: ['ignore', 'ignore', log] });
  for (let i = 0; i < 250; i++) {
    try { if ((await fetch(`http://127.0.0.1:${http}/healthz`)).ok) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { dir, port, http, base: `http://127.0.0.1:${http}/`, ws: `ws://127.0.0.1:${http}/ws`, proc };
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
