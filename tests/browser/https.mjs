// The browser client over https:// and wss:// in real headless Chromium
// (Debian's, driven by playwright-core) against parleyd's own TLS
// (--https): a test CA and a server certificate for localhost are made with
// openssl at test time, and Chromium trusts exactly that server key
// (--ignore-certificate-errors-spki-list: Chromium's way to accept a test
// certificate without a CA store; every other certificate error still
// fails). Two users sign up over https, chat over wss, and the ticks come.
//
//   PARLEYD=build/parleyd node tests/browser/https.mjs
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, openSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { spawnListening } from './lib.mjs';

const PARLEYD = process.env.PARLEYD;
assert.ok(PARLEYD, 'PARLEYD must be set');
const T = 10000;

// A CA and a leaf for localhost it signs; returns the leaf's SPKI hash (base64 SHA-256).
function makePki(dir) {
  const ossl = (...a) => execFileSync('openssl', a, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key',
    '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Parley Browser Test CA');
  ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'srv.key', '-out',
    'srv.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  ossl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem',
    '-days', '2', '-extfile', 'ext.cnf');
  const pub = ossl('x509', '-in', 'srv.pem', '-pubkey', '-noout');
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: pub });
  return execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der }).toString('base64');
}

async function run() {
  const dir = mkdtempSync(join(tmpdir(), 'parley-https-'));
  const spki = makePki(dir);
  const { proc, ports: [, https] } = await spawnListening(PARLEYD, 2, ([port, tls]) => ['--data', join(dir, 'data'),
    '--listen', `127.0.0.1:${port}`, '--http', 'off', '--https', `127.0.0.1:${tls}`, '--tls-cert',
    join(dir, 'srv.pem'), '--tls-key', join(dir, 'srv.key'), '--threads', '2', '--argon2-mem', '8', '--argon2-ops',
    '1', '--presence-grace', '0'], openSync(join(dir, 'parleyd.log'), 'a'));
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage',
      `--ignore-certificate-errors-spki-list=${spki}`],
  });
  const step = (s) => console.log(`  - ${s}`);
  let ok = false;
  try {
    const base = `https://localhost:${https}/`;
    const ctxA = await browser.newContext(), ctxB = await browser.newContext();
    const alice = await ctxA.newPage(), bob = await ctxB.newPage();
    for (const p of [alice, bob]) p.on('pageerror', (e) => { throw e; });
    step('the page loads over https (parleyd listening, the certificate accepted)');
    for (let i = 0; ; i++) {
      try { await alice.goto(base); break; } catch (e) { if (i > 250) throw e; }
      await new Promise((r) => setTimeout(r, 40));
    }
    assert.equal(new URL(alice.url()).protocol, 'https:');
    for (const [page, user] of [[alice, 'alice'], [bob, 'bob']]) {
      step(`${user} signs up; the WebSocket is wss://`);
      await page.goto(base);
      await page.fill('#auth-user', user);
      await page.fill('#auth-password', `${user}-password`);
      await page.click('#sign-up');
      await page.waitForSelector('#app:not([hidden])', { timeout: T });
      await page.waitForFunction(() => document.getElementById('status').textContent === 'online', null, { timeout: T });
    }
    step('alice writes to bob over wss; the tick turns delivered, bob sees it');
    await alice.fill('#new-chat-user', 'bob');
    await alice.click('#new-chat button');
    await alice.fill('#composer-text', 'hello over tls');
    await alice.click('#send');
    await alice.locator('#messages li.mine', { has: alice.locator('.text:text-is("hello over tls")') })
      .locator('.tick[data-status="delivered"]').waitFor({ timeout: T });
    await bob.click('#convs button[data-conv="dm:alice:bob"]', { timeout: T });
    await bob.locator('#messages li.theirs .text:text-is("hello over tls")').waitFor({ timeout: T });
    ok = true;
  } finally {
    await browser.close();
    proc.kill('SIGTERM');
    if (ok) rmSync(dir, { recursive: true, force: true });
    else console.error(`server log: ${join(dir, 'parleyd.log')}`);
  }
  console.log('PASS browser https: the browser client over https and wss');
}

run().catch((e) => { console.error('FAIL', e); process.exit(1); });
