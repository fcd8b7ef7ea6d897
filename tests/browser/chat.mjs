// The browser client end to end in real headless Chromium (Debian's, driven by
// playwright-core) against the real parleyd: two users in two browser
// contexts chat and see the sent, delivered and read ticks, unread counts and
// typing; one goes away and catches up on return (history from the browser's
// cache first); a browser user and a `parley` CLI user talk to each other;
// a photo goes from one page to the other (thumbnail, full view, after a
// reload too), is forwarded to a group and arrives there marked, and a file
// that is no image is refused with the server's reason;
// the settings dialog: who may add me to groups (a refused group shows a
// sentence), and the list of signed-in devices, one of which is signed out.
// With SCREENSHOTS=DIR it saves the settings dialog at 1280 and 360 px there.
//
//   PARLEYD=build/parleyd PARLEY_CLI=build/parley node tests/browser/chat.mjs
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { startServer as start, png } from './lib.mjs';

const PARLEYD = process.env.PARLEYD, CLI = process.env.PARLEY_CLI;
assert.ok(PARLEYD && CLI, 'PARLEYD and PARLEY_CLI must be set');
const T = 10000;
const startServer = (old) => start(PARLEYD, old);

function cli(srv, user, ...args) {
  return execFileSync(CLI, ['--server', `127.0.0.1:${srv.port}`, '--user', user, '--password', `${user}-password`,
    ...args], { encoding: 'utf8', timeout: T });
}

async function signUp(page, base, user, button = '#sign-up') {
  await page.goto(base);
  await page.fill('#auth-user', user);
  await page.fill('#auth-password', `${user}-password`);
  await page.click(button);
  await page.waitForSelector('#app:not([hidden])', { timeout: T });
  await page.waitForFunction(() => document.getElementById('status').textContent === 'online', null, { timeout: T });
}

// Opens the chat with peer and waits until it is the open one: a new chat opens
// after a presence round trip, and a message typed before that went to the chat
// open until then (seen under ASan: "hi carol" waited in alice's chat with bob).
async function openChat(page, peer) {
  await page.fill('#new-chat-user', peer);
  await page.click('#new-chat button');
  await page.locator(`#convs button[aria-current="true"][data-conv^="dm:${peer}:"],`
    + ` #convs button[aria-current="true"][data-conv$=":${peer}"]`).waitFor({ timeout: T });
}

// The new-group form sits in a <details>: open it (whether or not it is).
const newGroupForm = (page) => page.locator('#new-group-box').evaluate((d) => { d.open = true; });

async function say(page, text) {
  await page.fill('#composer-text', text);
  await page.click('#send');
}

const mine = (page, text) => page.locator('#messages li.mine', { has: page.locator(`.text:text-is("${text}")`) });
async function tickIs(page, text, status) {
  await mine(page, text).locator(`.tick[data-status="${status}"]`).waitFor({ timeout: T });
}

// Waits until the image at sel has loaded (and, with width, is that wide). A
// function, not a string: the page's CSP forbids eval.
const imgLoaded = (page, sel, width = 0) => page.waitForFunction(([s, w]) => {
  const i = document.querySelector(s);
  return !!i && !i.closest('[hidden]') && i.complete && (w ? i.naturalWidth === w : i.naturalWidth > 0);
}, [sel, width], { timeout: T });

async function run() {
  const srv = await startServer();
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
  const step = (s) => console.log(`  - ${s}`);
  try {
    const ctxA = await browser.newContext(), ctxB = await browser.newContext();
    const alice = await ctxA.newPage();
    let bob = await ctxB.newPage();
    for (const p of [alice, bob]) p.on('pageerror', (e) => { throw e; });

    step('two users sign up in two browser contexts');
    await signUp(alice, srv.base, 'alice');
    await signUp(bob, srv.base, 'bob');

    step('alice writes; the tick goes sent -> delivered while bob is online');
    await openChat(alice, 'bob');
    await say(alice, 'hello bob');
    await tickIs(alice, 'hello bob', 'delivered');

    step('bob sees one unread; opening the chat turns alice\'s tick to read');
    const badge = bob.locator('#convs button[data-conv="dm:alice:bob"] .unread');
    await badge.waitFor({ timeout: T });
    assert.equal(await badge.textContent(), '1');
    await bob.click('#convs button[data-conv="dm:alice:bob"]');
    await bob.locator('#messages li.theirs .text:text-is("hello bob")').waitFor({ timeout: T });
    await tickIs(alice, 'hello bob', 'read');
    assert.equal(await badge.count(), 0);

    step('typing shows on the other side, and the reply arrives');
    await bob.type('#composer-text', 'hi al');
    await alice.locator('#chat-typing:text-is("bob is typing…")').waitFor({ timeout: T });
    await bob.fill('#composer-text', 'hi alice');
    await bob.click('#send');
    await alice.locator('#messages li.theirs .text:text-is("hi alice")').waitFor({ timeout: T });
    await tickIs(bob, 'hi alice', 'read'); // alice has the chat open
    await alice.locator('#chat-presence:text-is("online")').waitFor({ timeout: T });

    step('bob goes away; alice\'s messages wait at one tick, and she sees him offline');
    await bob.close();
    await alice.locator('#chat-presence:text-matches("^last seen")').waitFor({ timeout: T });
    await say(alice, 'are you there?');
    await say(alice, 'second one');
    await tickIs(alice, 'second one', 'sent');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await mine(alice, 'are you there?').locator('.tick').getAttribute('data-status'), 'sent');

    step('with the server unreachable, bob\'s history still shows, from the browser\'s cache');
    const cached = await ctxB.newPage();
    await cached.routeWebSocket(/\/ws$/, () => { /* never answers: no server behind it */ });
    await cached.goto(srv.base);
    await cached.waitForSelector('#app:not([hidden])', { timeout: T });
    await cached.click('#convs button[data-conv="dm:alice:bob"]');
    await cached.locator('#messages li .text:text-is("hi alice")').waitFor({ timeout: T });
    assert.deepEqual(await cached.locator('#messages li .text').allTextContents(), ['hello bob', 'hi alice']);
    assert.notEqual(await cached.locator('#status').textContent(), 'online');
    await cached.close();

    step('bob comes back: what he missed arrives, in order, after his history');
    bob = await ctxB.newPage();
    bob.on('pageerror', (e) => { throw e; });
    await bob.goto(srv.base);
    await bob.waitForSelector('#app:not([hidden])', { timeout: T });
    await bob.click('#convs button[data-conv="dm:alice:bob"]');
    await bob.locator('#messages li .text:text-is("second one")').waitFor({ timeout: T });
    const texts = await bob.locator('#messages li .text').allTextContents();
    assert.deepEqual(texts, ['hello bob', 'hi alice', 'are you there?', 'second one']);
    await tickIs(alice, 'second one', 'read');
    await tickIs(alice, 'are you there?', 'read');

    step('a browser user and a CLI user talk');
    cli(srv, 'carol', 'register');
    await openChat(alice, 'carol');
    await say(alice, 'hi carol, from the browser');
    await tickIs(alice, 'hi carol, from the browser', 'sent');
    const got = cli(srv, 'carol', 'recv', '--wait', '2');
    assert.match(got, /"from":"alice".*"text":"hi carol, from the browser"/);
    await tickIs(alice, 'hi carol, from the browser', 'delivered');
    cli(srv, 'carol', 'send', 'alice', 'hello from the cli ✓');
    await alice.locator('#messages li.theirs .text:text-is("hello from the cli ✓")').waitFor({ timeout: T });

    step('a group: created in the browser, seen by its members, one message to all');
    await newGroupForm(alice);
    await alice.fill('#new-group-name', 'team');
    await alice.fill('#new-group-members', 'bob, carol');
    await alice.click('#new-group button');
    const groupBtn = (p) => p.locator('#convs button', { has: p.locator('span:text-is("team")') });
    await groupBtn(alice).waitFor({ timeout: T });
    await groupBtn(alice).click();
    await alice.locator('#messages li.event .text:text-matches("alice created the group")').waitFor({ timeout: T });
    await say(alice, 'hello team');
    await tickIs(alice, 'hello team', 'sent');
    await bob.locator('#convs button[data-conv^="g:"]').waitFor({ timeout: T });
    await bob.click('#convs button[data-conv^="g:"]');
    const teamMsg = bob.locator('#messages li.theirs', { has: bob.locator('.text:text-is("hello team")') });
    await teamMsg.waitFor({ timeout: T });
    assert.equal(await teamMsg.locator('.from').textContent(), 'alice');
    const carolGot = cli(srv, 'carol', 'recv', '--wait', '2');
    assert.match(carolGot, /"group":"[^"]+".*"text":"hello team"/s);

    step('alice opens the settings and lets nobody add her to groups');
    await alice.click('#open-settings');
    await alice.locator('#settings').waitFor({ state: 'visible', timeout: T });
    await alice.locator('#privacy:not([disabled])').waitFor({ timeout: T }); // the state has come
    assert.equal(await alice.inputValue('#set-group-add'), 'GROUP_ADD_EVERYONE');
    assert.equal(await alice.inputValue('#set-last-seen'), 'LAST_SEEN_CONTACTS');
    assert.equal(await alice.isChecked('#set-read-receipts'), true);
    await alice.selectOption('#set-group-add', 'GROUP_ADD_NOBODY');
    await alice.locator('#settings-status:text-is("Saved.")').waitFor({ timeout: T });
    const thisDevice = alice.locator('#devices li.current');
    await thisDevice.waitFor({ timeout: T });
    assert.equal(await thisDevice.locator('.device-tag').textContent(), 'this device');
    assert.equal(await thisDevice.locator('button').count(), 0, 'no sign-out button for this device');
    await alice.keyboard.press('Escape');
    await alice.locator('#settings').waitFor({ state: 'hidden', timeout: T });
    assert.equal(await alice.evaluate(() => document.activeElement.id), 'open-settings');

    step('bob tries to make a group with alice: refused, in a sentence');
    await newGroupForm(bob);
    await bob.fill('#new-group-name', 'with alice');
    await bob.fill('#new-group-members', 'alice');
    await bob.click('#new-group button');
    await bob.locator('#new-group-error:text-is("alice does not allow being added to groups by you.")').waitFor({ timeout: T });
    assert.equal(await bob.locator('#convs button', { has: bob.locator('span:text-is("with alice")') }).count(), 0);

    step('a second browser of alice signs in; from the first she signs it out and it leaves the list');
    const ctxA2 = await browser.newContext();
    const alice2 = await ctxA2.newPage();
    alice2.on('pageerror', (e) => { throw e; });
    await signUp(alice2, srv.base, 'alice', '#sign-in');
    const other = await alice2.evaluate(() => JSON.parse(localStorage.getItem('parley.device')));
    await alice.click('#open-settings');
    await alice.locator('#privacy:not([disabled])').waitFor({ timeout: T });
    assert.equal(await alice.inputValue('#set-group-add'), 'GROUP_ADD_NOBODY', 'the setting is read back');
    const otherRow = alice.locator(`#devices li[data-device="${other}"]`);
    await otherRow.locator('.device-tag:text-is("online")').waitFor({ timeout: T });
    assert.equal(await alice.locator('#devices li').count(), 2);
    if (process.env.SCREENSHOTS) {
      await alice.screenshot({ path: join(process.env.SCREENSHOTS, 'settings-wide.png') });
      await alice.setViewportSize({ width: 360, height: 740 });
      await alice.screenshot({ path: join(process.env.SCREENSHOTS, 'settings-360.png') });
      await alice.setViewportSize({ width: 1280, height: 720 });
    }
    await otherRow.locator('button.revoke').click();
    await otherRow.waitFor({ state: 'detached', timeout: T });
    await alice.locator(`#devices-status:text-is("Signed out: ${other}.")`).waitFor({ timeout: T });
    assert.equal(await alice.locator('#devices li').count(), 1);
    await alice2.locator('#auth:not([hidden])').waitFor({ timeout: T }); // its token no longer works
    await ctxA2.close();
    await alice.click('#settings-close');
    await alice.locator('#settings').waitFor({ state: 'hidden', timeout: T });

    step('alice signs in with the CLI too, then signs out all her other devices from the browser');
    cli(srv, 'alice', 'contacts');
    await alice.click('#open-settings');
    await alice.locator('#devices li:not(.current)').waitFor({ timeout: T });
    await alice.click('#revoke-others');
    await alice.locator('#devices-status:text-matches("^Signed out: ")').waitFor({ timeout: T });
    assert.equal(await alice.locator('#devices li').count(), 1);
    assert.equal(await alice.isDisabled('#revoke-others'), true);
    await alice.click('#settings-close');
    await alice.locator('#settings').waitFor({ state: 'hidden', timeout: T });

    step('alice sends a photo: bob sees the thumbnail, opens the full image; a file that is no image is refused');
    const imgDir = mkdtempSync(join(tmpdir(), 'parley-img-'));
    const photo = join(imgDir, 'photo.png');
    writeFileSync(photo, png(64, 40));
    await alice.click('#convs button[data-conv="dm:alice:bob"]');
    await bob.click('#convs button[data-conv="dm:alice:bob"]');
    await alice.fill('#composer-text', 'a photo');
    await alice.setInputFiles('#attach-input', photo);
    await tickIs(alice, 'a photo', 'read'); // bob has the chat open
    const bobPhoto = '#messages li.theirs img.thumb';
    await imgLoaded(bob, bobPhoto);
    assert.match(await bob.locator(bobPhoto).getAttribute('src'), /^blob:/);
    assert.equal(await bob.locator('#messages li.theirs', { has: bob.locator('img.thumb') }).locator('.text').textContent(), 'a photo');
    await imgLoaded(alice, '#messages li.mine img.thumb');
    await bob.click(bobPhoto);
    await imgLoaded(bob, '#viewer-img', 64);
    await bob.keyboard.press('Escape');
    assert.equal(await bob.locator('#viewer').isHidden(), true);
    const bobCount = await bob.locator('#messages li').count();
    await alice.setInputFiles('#attach-input', { name: 'x.png', mimeType: 'image/png', buffer: Buffer.from('not an image at all\n') });
    await alice.locator('#composer-error:text-matches("^Not sent: only JPEG, PNG, WebP and GIF")').waitFor({ timeout: T });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await bob.locator('#messages li').count(), bobCount, 'nothing reached bob');
    await bob.reload();
    await bob.waitForSelector('#app:not([hidden])', { timeout: T });
    await bob.click('#convs button[data-conv="dm:alice:bob"]');
    await imgLoaded(bob, bobPhoto); // history from IndexedDB, bytes fetched again

    step('bob forwards the photo to the group: alice sees it there, marked, with its thumbnail and caption');
    const photoLi = bob.locator('#messages li.theirs', { has: bob.locator('img.thumb') });
    const photoId = await bob.locator(bobPhoto).getAttribute('data-media');
    await photoLi.locator('button.more').click();
    await photoLi.locator('.msg-menu button:text-is("Forward…")').click();
    await bob.click('#forward-list button[data-conv^="g:"]');
    const bobFwd = bob.locator('#messages li.mine', { has: bob.locator('img.thumb') });
    await bobFwd.locator('.tick:not([data-status="pending"])').waitFor({ timeout: T });
    assert.equal(await bobFwd.locator('.fwd').textContent(), 'Forwarded');
    assert.equal(await bobFwd.locator('.text').textContent(), 'a photo');
    await alice.click('#convs button[data-conv^="g:"]');
    const aliceFwd = '#messages li.theirs:has(.fwd) img.thumb';
    await imgLoaded(alice, aliceFwd);
    const aliceFwdLi = alice.locator('#messages li.theirs', { has: alice.locator('.fwd') });
    assert.equal(await aliceFwdLi.locator('.fwd').textContent(), 'Forwarded');
    assert.equal(await aliceFwdLi.locator('.from').textContent(), 'bob');
    assert.equal(await aliceFwdLi.locator('.text').textContent(), 'a photo');
    assert.equal(await alice.locator(aliceFwd).getAttribute('data-media'), photoId, 'the same stored photo, by its id');
    const carolFwd = cli(srv, 'carol', 'recv', '--wait', '2');
    assert.match(carolFwd, /"group":"[^"]+".*"text":"a photo".*"media":\{.*"act":\{"forwarded":true\}/);
    await bob.click('#convs button[data-conv^="g:"]'); // back where the next step expects him
    rmSync(imgDir, { recursive: true, force: true });

    step('the server goes down and comes back: the page reconnects, resumes, and sends what waited');
    srv.proc.kill('SIGKILL');
    await new Promise((resolve) => srv.proc.on('exit', resolve));
    await alice.locator('#status:text-is("reconnecting…")').waitFor({ timeout: T });
    await alice.click('#convs button[data-conv="dm:alice:bob"]');
    await say(alice, 'sent while the server was down');
    await tickIs(alice, 'sent while the server was down', 'pending');
    Object.assign(srv, await startServer(srv));
    await alice.locator('#status:text-is("online")').waitFor({ timeout: 20000 });
    await bob.locator('#status:text-is("online")').waitFor({ timeout: 20000 });
    await tickIs(alice, 'sent while the server was down', 'delivered');
    await bob.click('#convs button[data-conv="dm:alice:bob"]');
    await bob.locator('#messages li .text:text-is("sent while the server was down")').waitFor({ timeout: T });
    assert.equal(await bob.locator('#messages li .text:text-is("sent while the server was down")').count(), 1);
    await tickIs(alice, 'sent while the server was down', 'read');

    step('bob makes a group with carol, then tries to add alice to it: refused, in a sentence');
    await newGroupForm(bob);
    await bob.fill('#new-group-name', 'bobs');
    await bob.fill('#new-group-members', 'carol');
    await bob.click('#new-group button');
    const bobs = bob.locator('#convs button', { has: bob.locator('span:text-is("bobs")') });
    await bobs.waitFor({ timeout: T });
    assert.equal(await bob.locator('#new-group-error').textContent(), '');
    await bobs.click();
    await bob.click('#open-group');
    await bob.fill('#add-member-user', 'alice');
    await bob.click('#add-member button');
    await bob.locator('#group-error:text-is("alice does not allow being added to groups by you.")').waitFor({ timeout: T });
    await bob.keyboard.press('Escape');

    step('the client is served with revalidation headers');
    const r = await fetch(srv.base);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('cache-control'), 'no-cache');
    const etag = r.headers.get('etag');
    const again = await fetch(srv.base, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304);
    console.log('PASS browser chat');
  } finally {
    await browser.close();
    srv.proc.kill('SIGTERM');
  }
  const code = await new Promise((resolve) => srv.proc.on('exit', (c) => resolve(c)));
  assert.equal(code, 0, `parleyd exited with ${code} (log: ${srv.dir}.log)`); // a leak under ASan would not be 0
  rmSync(srv.dir, { recursive: true, force: true });
}

run().catch((e) => { console.error('FAIL', e); process.exit(1); });
