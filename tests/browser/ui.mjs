// The browser client's screens in real headless Chromium against the real
// parleyd: a phone-sized page never scrolls sideways, even with a long link in
// a message (links are safe: http(s) only, rel=noopener); timestamps and day
// separators; the conversation list by last activity with previews and
// unread counts; a chat with a user who does not exist leaves nothing behind;
// a group's name shows for a member added later; group management (roles,
// rename, leave); the emoji picker; search in the cached history; reply,
// reaction, edit and delete from a message's menu, seen on the other page; a
// forward through the keyboard-usable picker, marked on both pages;
// disappearing messages gone from both pages after their (test) time; the dark
// theme; the favicon. With SCREENSHOTS=DIR it saves the main screens there at
// phone and desktop sizes (docs/screenshots/ holds the committed ones).
//
//   PARLEYD=build/parleyd node tests/browser/ui.mjs
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { startServer } from './lib.mjs';

const PARLEYD = process.env.PARLEYD;
assert.ok(PARLEYD, 'PARLEYD must be set');
const T = 10000;
const PHONE = { width: 360, height: 740 }, DESKTOP = { width: 1280, height: 760 };
const LONG_URL = `https://example.com/${'a-very-long-path-segment/'.repeat(8)}?q=${'x'.repeat(60)}`;

async function signUp(page, base, user) {
  await page.goto(base);
  await page.fill('#auth-user', user);
  await page.fill('#auth-password', `${user}-password`);
  await page.click('#sign-up');
  await page.locator('#status:text-is("online")').waitFor({ timeout: T });
}

async function openChat(page, peer) {
  await page.fill('#new-chat-user', peer);
  await page.click('#new-chat button');
}

async function say(page, text) {
  await page.fill('#composer-text', text);
  await page.click('#send');
  await page.locator('#messages li.mine .tick:not([data-status="pending"])').last().waitFor({ timeout: T });
}

const convButton = (page, title) => page.locator('#convs button', { has: page.locator(`.name:text-is("${title}")`) });
const convOrder = (page) => page.locator('#convs .name').allTextContents();
// The page is as wide as the viewport: nothing scrolls sideways.
const scrollWidth = (page) => page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);

async function run() {
  const srv = await startServer(PARLEYD, undefined, ['--test-disappear', '3']);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
  const shots = process.env.SCREENSHOTS;
  const shot = async (page, name) => { if (shots) await page.screenshot({ path: join(shots, `${name}.png`) }); };
  const step = (s) => console.log(`  - ${s}`);
  let ok = false;
  const pages = {};
  try {
    for (const u of ['alice', 'bob', 'carol', 'dave']) {
      const ctx = await browser.newContext({ viewport: u === 'alice' ? PHONE : DESKTOP });
      pages[u] = await ctx.newPage();
      pages[u].on('pageerror', (e) => { throw e; });
      pages[u].subscribes = 0; // PresenceSubscribe frames the page sent
      pages[u].on('websocket', (ws) => ws.on('framesent', (f) => {
        if (typeof f.payload === 'string' && f.payload.includes('"presence_subscribe"')) pages[u].subscribes++;
      }));
      await signUp(pages[u], srv.base, u);
    }
    const { alice, bob, carol, dave } = pages;

    step('a chat with a user who does not exist: a sentence, and no conversation left behind');
    await openChat(alice, 'nobody');
    await alice.locator('#new-chat-error:text-is("There is no user nobody.")').waitFor({ timeout: T });
    assert.equal(await alice.locator('#convs li').count(), 0);

    step('bob and carol write to alice; her list is by last activity, with previews and unread counts');
    await openChat(bob, 'alice');
    await say(bob, 'hi alice, see this:');
    await say(bob, `the plan ${LONG_URL} and javascript:alert(1) and ${'Donaudampfschifffahrt'.repeat(4)}`);
    await openChat(carol, 'alice');
    await say(carol, 'lunch?');
    await convButton(alice, 'carol').locator('.unread:text-is("1")').waitFor({ timeout: T });
    await convButton(alice, 'bob').locator('.unread:text-is("2")').waitFor({ timeout: T });
    assert.deepEqual(await convOrder(alice), ['carol', 'bob']);
    assert.equal(await convButton(alice, 'carol').locator('.preview').textContent(), 'lunch?');
    await say(bob, 'and one more');
    await alice.waitForFunction(() => document.querySelector('#convs .name').textContent === 'bob', null, { timeout: T });
    assert.equal(await convButton(alice, 'bob').locator('.unread').textContent(), '3');
    assert.equal(await convButton(alice, 'bob').locator('.preview').textContent(), 'and one more');
    assert.equal(await alice.locator('#announce[role="status"]').textContent(), 'bob: and one more', 'told to screen readers');
    assert.deepEqual(await scrollWidth(alice), [PHONE.width, PHONE.width]);
    await shot(alice, 'list-phone');

    step('on a phone the chat takes the screen; a long link wraps, the page does not scroll sideways');
    await convButton(alice, 'bob').click();
    const link = alice.locator('#messages li.theirs .text a');
    await link.waitFor({ timeout: T });
    assert.deepEqual(await scrollWidth(alice), [PHONE.width, PHONE.width]);
    assert.equal(await alice.locator('nav').isVisible(), false);
    assert.equal(await link.count(), 1, 'only the http(s) address is a link');
    assert.equal(await link.getAttribute('href'), LONG_URL);
    assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');
    assert.equal(await link.getAttribute('target'), '_blank');
    const box = await link.locator('xpath=ancestor::li[1]').boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= PHONE.width, `the message fits: ${JSON.stringify(box)}`);
    step('messages carry their time, under a day separator');
    assert.equal(await alice.locator('#messages li.day').first().textContent(), 'Today');
    assert.match(await alice.locator('#messages li.theirs time').first().textContent(), /\d/);
    await convButton(alice, 'bob').waitFor({ state: 'hidden', timeout: T });
    await shot(alice, 'chat-phone');
    await alice.click('#back');
    assert.equal(await convButton(alice, 'bob').locator('.unread').count(), 0, 'read');
    assert.equal(await convButton(alice, 'carol').locator('.unread').textContent(), '1');

    step('the emoji picker puts an emoji in the message, by keyboard too');
    await convButton(alice, 'carol').click();
    await alice.fill('#composer-text', 'yes ');
    await alice.click('#emoji');
    await alice.locator('#emoji-picker button').first().waitFor({ timeout: T });
    assert.equal(await alice.evaluate(() => document.activeElement.parentElement.id), 'emoji-picker');
    await alice.keyboard.press('Enter');
    assert.equal(await alice.inputValue('#composer-text'), 'yes 😀');
    assert.equal(await alice.locator('#emoji-picker').isHidden(), true);
    await alice.click('#send');
    await carol.locator('#messages li.theirs .text:text-is("yes 😀")').waitFor({ timeout: T });
    await alice.click('#back');

    step('search finds a message in the cached history and opens it');
    await alice.fill('#search', 'PLAN');
    const hit = alice.locator('#results button');
    await hit.first().waitFor({ timeout: T });
    assert.equal(await hit.count(), 1);
    assert.equal(await hit.locator('mark').textContent(), 'plan');
    await hit.click();
    await alice.locator('#messages li.found .text a').waitFor({ timeout: T });
    assert.equal(await alice.inputValue('#search'), '');
    await alice.click('#back');
    await alice.fill('#search', 'zebra');
    await alice.locator('#results .none:text-is("No message has “zebra”.")').waitFor({ timeout: T });
    await alice.fill('#search', '');

    step('reply, reaction, edit and delete from a message\'s menu, each seen on the other page');
    await convButton(alice, 'carol').click();
    const bubble = (page, cls, text) => page.locator(`#messages li.${cls}`, { has: page.locator(`.text:text-is("${text}")`) });
    const menu = async (li, label) => {
      await li.locator('button.more').click();
      await li.locator(`.msg-menu button[aria-label="${label}"], .msg-menu button:text-is("${label}")`).first().click();
    };
    await menu(bubble(alice, 'theirs', 'lunch?'), 'Reply');
    await alice.locator('#composer-context:not([hidden])').waitFor({ timeout: T });
    await alice.fill('#composer-text', 'sure, at noon');
    await alice.click('#send');
    const reply = bubble(carol, 'theirs', 'sure, at noon');
    await reply.locator('.quote:has-text("lunch?")').waitFor({ timeout: T });
    await menu(reply, 'React 👍');
    const mine = alice.locator('#messages li.mine', { has: alice.locator('.quote') });
    await mine.locator('.reaction:text-is("👍")').waitFor({ timeout: T });
    await menu(mine, 'Edit');
    assert.equal(await alice.inputValue('#composer-text'), 'sure, at noon');
    await alice.fill('#composer-text', 'sure, at one');
    await alice.click('#send');
    const edited = bubble(carol, 'theirs', 'sure, at one');
    await edited.locator('.edited:text-is("edited")').waitFor({ timeout: T });
    assert.equal(await edited.locator('.reaction').textContent(), '👍', 'the reaction stays on the edited message');
    await menu(bubble(alice, 'mine', 'yes 😀'), 'Delete for everyone');
    await carol.locator('#messages li.theirs .text.deleted:text-is("This message was deleted")').waitFor({ timeout: T });
    assert.equal(await carol.locator('#messages .text:text-is("yes 😀")').count(), 0);
    assert.equal(await alice.locator('#messages .text:text-is("yes 😀")').count(), 0);
    assert.deepEqual(await scrollWidth(alice), [PHONE.width, PHONE.width]);
    await shot(carol, 'actions-desktop');
    await menu(mine, 'Reply'); // the menu and the reply bar on a phone
    await shot(alice, 'actions-phone');
    await alice.click('#composer-cancel');

    step('disappearing messages: carol turns them on, both pages say so; a message is gone from both after its time');
    await carol.selectOption('#disappear', '86400');
    const notice = 'set disappearing messages to 24 hours';
    await alice.locator(`#messages li.event .text:text-is("carol ${notice}")`).waitFor({ timeout: T });
    await carol.locator(`#messages li.event .text:text-is("You ${notice}")`).waitFor({ timeout: T });
    assert.equal(await alice.inputValue('#disappear'), '86400');
    await say(carol, 'this will vanish');
    await bubble(alice, 'theirs', 'this will vanish').waitFor({ timeout: T });
    await bubble(alice, 'theirs', 'this will vanish').waitFor({ state: 'detached', timeout: T }); // --test-disappear 3
    await bubble(carol, 'mine', 'this will vanish').waitFor({ state: 'detached', timeout: T });
    await carol.selectOption('#disappear', '0');
    await alice.locator('#messages li.event .text:text-is("carol turned disappearing messages off")').waitFor({ timeout: T });

    step('forward: alice sends carol\'s message on to bob by keyboard from a labelled picker; both see it marked');
    await menu(bubble(alice, 'theirs', 'lunch?'), 'Forward…');
    const picker = alice.locator('#forward-dialog');
    await picker.waitFor({ timeout: T });
    assert.equal(await picker.getAttribute('aria-labelledby'), 'forward-title');
    assert.equal(await alice.locator('#forward-what').textContent(), 'carol\'s message: lunch?');
    assert.deepEqual(await picker.locator('#forward-list button').evaluateAll((bs) => bs.map((b) => b.getAttribute('aria-label'))),
      ['Forward to carol', 'Forward to bob'], 'the conversations, by last activity, each named');
    assert.equal(await alice.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Forward to carol');
    await alice.keyboard.press('Escape'); // closes it, and nothing is sent
    await picker.waitFor({ state: 'hidden', timeout: T });
    // Focus goes back to the message's menu button (on the dialog's close event, a task later).
    await alice.waitForFunction(() => document.activeElement.getAttribute('aria-label') === 'Message actions', null, { timeout: T });
    await menu(bubble(alice, 'theirs', 'lunch?'), 'Forward…');
    await picker.waitFor({ timeout: T });
    await alice.keyboard.press('Tab');
    assert.equal(await alice.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Forward to bob');
    await alice.keyboard.press('Enter');
    await picker.waitFor({ state: 'hidden', timeout: T });
    const sent = bubble(alice, 'mine', 'lunch?');
    await sent.locator('.tick:not([data-status="pending"])').waitFor({ timeout: T });
    assert.equal(await sent.locator('.fwd').textContent(), 'Forwarded');
    assert.equal(await alice.locator('#chat-title').textContent(), 'bob', 'the forward opens where it went');
    await convButton(bob, 'alice').click();
    const got = bubble(bob, 'theirs', 'lunch?');
    await got.waitFor({ timeout: T });
    assert.equal(await got.locator('.fwd').textContent(), 'Forwarded');
    assert.equal(await carol.locator('#messages .fwd').count(), 0, 'carol hears nothing of it');
    await alice.click('#back');

    step('an edit takes a seq but is no unread message');
    await convButton(alice, 'bob').click(); // carol's chat is not the one open
    await alice.click('#back');
    await menu(bubble(carol, 'mine', 'lunch?'), 'Edit');
    await carol.fill('#composer-text', 'lunch at one?');
    await carol.click('#send');
    await say(carol, 'see you');
    await convButton(alice, 'carol').locator('.preview:text-is("see you")').waitFor({ timeout: T });
    assert.equal(await convButton(alice, 'carol').locator('.unread').textContent(), '1', 'the message, not the edit');

    step('bob makes a group; dave, added later, sees its name, not its id');
    await bob.locator('#new-group-box').evaluate((d) => { d.open = true; });
    await bob.fill('#new-group-name', 'book club');
    await bob.fill('#new-group-members', 'alice, carol');
    await bob.click('#new-group button');
    await convButton(bob, 'book club').click();
    await say(bob, 'welcome to the club');
    await bob.click('#open-group');
    await bob.locator('#group-members li[data-user="carol"]').waitFor({ timeout: T });
    await bob.fill('#add-member-user', 'dave');
    await bob.click('#add-member button');
    await bob.locator('#group-members li[data-user="dave"]').waitFor({ timeout: T });
    await convButton(dave, 'book club').waitFor({ timeout: T });
    assert.equal(await dave.locator('#convs .name:text-matches("^(g:|New group)")').count(), 0);

    step('roles and rename: bob makes alice an admin; she renames the group; everyone sees it');
    await bob.locator('#group-members li[data-user="alice"] button:text-is("Make admin")').click();
    await bob.locator('#group-members li[data-user="alice"] .device-tag:text-is("Admin")').waitFor({ timeout: T });
    await bob.keyboard.press('Escape');
    await convButton(alice, 'book club').click();
    await alice.click('#open-group');
    await alice.locator('#group-members li[data-user="bob"] .device-tag:text-is("Owner")').waitFor({ timeout: T });
    assert.equal(await alice.locator('#group-members li[data-user="bob"] button').count(), 0, 'an admin cannot touch the owner');
    await alice.fill('#group-rename-name', 'readers');
    await alice.click('#group-rename button');
    await alice.locator('#group-dialog-title:text-is("readers")').waitFor({ timeout: T });
    assert.deepEqual(await scrollWidth(alice), [PHONE.width, PHONE.width]);
    await shot(alice, 'group-phone');
    await alice.keyboard.press('Escape');
    await convButton(dave, 'readers').waitFor({ timeout: T });
    await bob.locator('#messages li.event .text:text-is("alice renamed the group to readers")').waitFor({ timeout: T });

    step('carol, a member, may not add; she leaves, and the others see it');
    await convButton(carol, 'readers').click();
    await carol.click('#open-group');
    await carol.locator('#group-members li[data-user="bob"]').waitFor({ timeout: T });
    assert.equal(await carol.locator('#add-member').isHidden(), true);
    await carol.click('#group-leave');
    await carol.locator('#group-leave:text-is("Leave: click again to confirm")').waitFor({ timeout: T });
    await carol.click('#group-leave');
    await carol.locator('#group-dialog').waitFor({ state: 'hidden', timeout: T });
    assert.equal(await carol.locator('#composer').isHidden(), true, 'no composer in a group one left');
    await bob.locator('#messages li.event .text:text-is("carol left")').waitFor({ timeout: T });
    await shot(bob, 'chat-desktop');
    await bob.click('#open-group');
    await bob.locator('#group-members li[data-user="alice"]').waitFor({ timeout: T });
    await shot(bob, 'group-desktop');
    await bob.keyboard.press('Escape');

    step('alice signs out; dave signs in on the same page and sees only his conversations');
    await alice.click('#sign-out');
    await alice.locator('#auth:not([hidden])').waitFor({ timeout: T });
    await alice.fill('#auth-user', 'dave');
    await alice.fill('#auth-password', 'dave-password');
    await alice.click('#sign-in');
    await alice.locator('#status:text-is("online")').waitFor({ timeout: T });
    assert.equal(await alice.locator('#me').textContent(), 'dave');
    await convButton(alice, 'readers').waitFor({ timeout: T });
    assert.deepEqual(await convOrder(alice), ['readers']);

    step('presence subscriptions stay few (their answers once fed new ones until the server cut the page)');
    for (const [u, p] of Object.entries(pages)) assert.ok(p.subscribes > 0 && p.subscribes < 15, `${u}: ${p.subscribes}`);

    step('the dark theme follows the system; the favicon is served');
    const light = await bob.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await bob.emulateMedia({ colorScheme: 'dark' });
    const dark = await bob.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(light, 'rgb(244, 244, 242)');
    assert.equal(dark, 'rgb(17, 20, 23)');
    await shot(bob, 'chat-desktop-dark');
    const icon = await fetch(`${srv.base}favicon.svg`);
    assert.equal(icon.status, 200);
    assert.match(icon.headers.get('content-type'), /^image\/svg\+xml/);
    assert.equal(await bob.locator('link[rel="icon"]').getAttribute('href'), '/favicon.svg');
    ok = true;
    console.log('PASS browser ui');
  } finally {
    if (!ok && shots) for (const [u, p] of Object.entries(pages)) await p.screenshot({ path: join(shots, `fail-${u}.png`) }).catch(() => {});
    await browser.close();
    srv.proc.kill('SIGTERM');
  }
  const code = await new Promise((resolve) => srv.proc.on('exit', (c) => resolve(c)));
  assert.equal(code, 0, `parleyd exited with ${code} (log: ${srv.dir}.log)`);
  if (ok) rmSync(srv.dir, { recursive: true, force: true });
}

run().catch((e) => { console.error('FAIL', e); process.exit(1); });
