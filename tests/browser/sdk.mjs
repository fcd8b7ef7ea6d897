// The JavaScript SDK (web/parley.mjs) under Node.js against the real parleyd:
// two clients chat (one on Node's global WebSocket, one on an injected
// WebSocket class), with receipts, typing and presence; one goes offline and
// gets what it missed once each, also when its first Acks were lost and the
// server sends the messages again; a Send whose SendAck was lost is resent
// under the same id and stored once; a group conversation, filtered and
// acknowledged per group (protocol 2); an upload; sign-in errors; sends
// refused for the rate sent again after the wait; a server gone silent
// given up after 1.5 heartbeats, and the session back when it answers again.
//
//   PARLEYD=build/parleyd node --experimental-websocket tests/browser/sdk.mjs
import { rmSync } from 'node:fs';
import assert from 'node:assert/strict';
import { Parley, ParleyError, memoryStorage, dmConv, actOf, reactionCounts } from '../../web/parley.mjs';
import { startServer, until, png } from './lib.mjs';

const PARLEYD = process.env.PARLEYD;
assert.ok(PARLEYD, 'PARLEYD must be set');
assert.equal(typeof WebSocket, 'function', 'run with a global WebSocket (node --experimental-websocket)');

// A WebSocket the test can interfere with: it records the frames each way and
// drops those that drop(frame, direction) names; it is also the injected
// implementation (the other clients use the global one).
class TapSocket extends WebSocket {
  static drop = () => false;
  static out = [];
  send(data) {
    const f = JSON.parse(data);
    TapSocket.out.push(f);
    if (!TapSocket.drop(f, 'out')) super.send(data);
  }
  set onmessage(fn) {
    super.onmessage = fn && ((e) => { if (!TapSocket.drop(JSON.parse(e.data), 'in')) fn(e); });
  }
  get onmessage() { return super.onmessage; }
}

// A client and what it saw: messages (by conversation), receipts, typing, presence.
function client(srv, opts = {}) {
  const p = new Parley({ url: srv.ws, storage: opts.storage || memoryStorage(), reconnectMinMs: 100,
    reconnectMaxMs: 400, ...opts });
  p.got = [];
  p.receipts = [];
  p.typings = [];
  p.presences = [];
  p.on('message', (m) => p.got.push(m));
  p.on('receipt', (r) => p.receipts.push(r));
  p.on('typing', (t) => p.typings.push(t));
  p.on('presence', (x) => p.presences.push(x));
  return p;
}
const texts = (p, conv) => p.got.filter((m) => m.conv === conv && !m.event).map((m) => m.text);

async function run() {
  const srv = await startServer(PARLEYD);
  const step = (s) => console.log(`  - ${s}`);
  const all = [];
  const mk = (opts) => { const p = client(srv, opts); all.push(p); return p; };
  let ok = false;
  try {
    step('sign-up and sign-in errors are ParleyErrors with the protocol\'s code');
    const alice = mk(), bobStore = memoryStorage();
    let bob = mk({ storage: bobStore, WebSocket: TapSocket });
    const a = await alice.register('alice', 'alice-password');
    assert.equal(a.user, 'alice');
    assert.equal(alice.state, 'online');
    await bob.register('bob', 'bob-password');
    const eve = mk();
    await assert.rejects(eve.login('bob', 'wrong-password'), (e) => e instanceof ParleyError && e.code === 'ERR_BAD_CREDENTIALS');
    await assert.rejects(eve.register('alice', 'whatever-pw'), (e) => e.code === 'ERR_USER_EXISTS');
    eve.close();

    step('alice writes to bob: the SendAck gives the seq, bob gets the text, the receipt says delivered');
    const conv = dmConv('alice', 'bob');
    const first = await alice.sendMessage({ to: 'bob', text: 'hello bob ✓' }).acked;
    assert.equal(first.conv, conv);
    assert.equal(first.seq, 1);
    await until(() => texts(bob, conv).length === 1, 'bob to get the message');
    assert.equal(bob.got[0].from, 'alice');
    assert.equal(bob.got[0].mine, false);
    await until(() => alice.receipts.some((r) => r.status === 'delivered' && r.seq === 1), 'the delivered receipt');
    assert.ok(TapSocket.out.some((f) => f.type === 'ack' && f.upto > 0), 'bob acknowledged his queue');

    step('bob reads: alice gets the read receipt; typing and presence reach alice');
    await bob.markRead(conv, 1);
    await until(() => alice.receipts.some((r) => r.status === 'read' && r.seq === 1), 'the read receipt');
    await alice.contacts('CONTACT_ADD', 'bob');
    await bob.contacts('CONTACT_ADD', 'alice');
    await alice.presenceSubscribe(['bob']);
    await until(() => alice.presences.some((x) => x.user === 'bob' && x.online), 'bob online');
    bob.typing(conv);
    await until(() => alice.typings.some((t) => t.from === 'bob' && t.conv === conv && t.typing), 'bob typing');

    step('bob goes offline; alice sends three; bob back gets each once, even when his first Acks are lost');
    bob.close();
    await until(() => alice.presences.some((x) => x.user === 'bob' && !x.online && x.last_seen > 0), 'bob offline');
    for (const t of ['one', 'two', 'three']) await alice.sendMessage({ to: 'bob', text: t }).acked;
    TapSocket.drop = (f, dir) => dir === 'out' && f.type === 'ack'; // nothing acknowledged: all comes again
    bob = mk({ storage: bobStore, WebSocket: TapSocket }); // the app restarted: same storage, same device
    await bob.resume();
    await until(() => texts(bob, conv).length === 3, 'the three');
    const qmark = bobStore.get('qid');
    assert.ok(qmark > 0, 'the queue mark is kept');
    bob.drop('test: a lost connection');
    TapSocket.drop = () => false;
    await until(() => bob.state === 'online' && TapSocket.out.filter((f) => f.type === 'ack').at(-1).upto >= qmark,
      'the redelivered ones acknowledged');
    await alice.sendMessage({ to: 'bob', text: 'four' }).acked;
    await until(() => texts(bob, conv).length >= 4, 'four');
    assert.deepEqual(texts(bob, conv), ['one', 'two', 'three', 'four'], 'each once, in order');
    assert.deepEqual(bob.got.map((m) => m.seq), [2, 3, 4, 5]);

    step('alice\'s SendAck is lost: the outbox sends the same id again, the server stores it once');
    const aliceStore = memoryStorage();
    const alice2 = mk({ storage: aliceStore, WebSocket: TapSocket, device: 'laptop' });
    await alice2.login('alice', 'alice-password');
    TapSocket.drop = (f, dir) => dir === 'in' && f.type === 'send_ack';
    const retried = alice2.sendMessage({ to: 'bob', text: 'sent once' });
    await until(() => texts(bob, conv).includes('sent once'), 'bob to get it');
    assert.equal(aliceStore.get('outbox').length, 1, 'unanswered, still in the outbox');
    TapSocket.drop = () => false;
    alice2.drop('test: the ack was lost');
    const again = await retried.acked;
    assert.equal(again.duplicate, true, 'the second Send was a duplicate');
    assert.equal(TapSocket.out.filter((f) => f.type === 'send' && f.id === retried.id).length, 2);
    await alice2.sendMessage({ to: 'bob', text: 'after it' }).acked;
    await until(() => texts(bob, conv).includes('after it'), 'the next one');
    assert.equal(texts(bob, conv).filter((t) => t === 'sent once').length, 1, 'stored and delivered once');
    assert.equal(bob.got.find((m) => m.text === 'sent once').seq, again.seq);
    assert.equal(aliceStore.get('outbox').length, 0);
    // alice's other device gets her own messages, marked as hers
    await until(() => alice.got.some((m) => m.text === 'sent once' && m.mine), 'alice\'s copy on her first device');

    step('a group: positions per group, acked per group; an offline member catches up once each');
    const carolStore = memoryStorage();
    let carol = mk({ storage: carolStore });
    await carol.register('carol', 'carol-password');
    const g = await alice.groupCreate('team', ['bob', 'carol']);
    assert.ok(/^\d+$/.test(g.group) && g.name === 'team');
    const gconv = `g:${g.group}`;
    await until(() => bob.got.some((m) => m.conv === gconv && m.event && m.event.type === 'GE_CREATED'), 'bob told of the group');
    carol.close();
    const s1 = await alice.sendMessage({ group: g.group, text: 'hi team' }).acked;
    const s2 = await alice.sendMessage({ conv: gconv, text: 'second' }).acked;
    assert.equal(s2.seq, s1.seq + 1);
    await until(() => texts(bob, gconv).length === 2, 'bob to get both');
    await until(() => TapSocket.out.some((f) => f.type === 'ack' && (f.groups || []).some((x) => x.group === g.group
      && x.upto_seq === s2.seq)), 'bob\'s ack of the group by seq');
    assert.equal(bobStore.get('gmarks')[g.group], s2.seq);
    await until(() => alice.got.some((m) => m.conv === gconv && m.text === 'hi team' && m.mine), 'alice gets her own');
    const carol1 = carol;
    carol = mk({ storage: carolStore, WebSocket: TapSocket });
    TapSocket.drop = (f, dir) => dir === 'out' && f.type === 'ack';
    await carol.resume();
    await until(() => texts(carol, gconv).length === 2, 'carol to catch up');
    carol.drop('test: acks lost');
    TapSocket.drop = () => false;
    await until(() => carol.state === 'online', 'carol back');
    await alice.sendMessage({ group: g.group, text: 'third' }).acked;
    await until(() => texts(carol, gconv).length >= 3, 'the third');
    assert.deepEqual(texts(carol, gconv), ['hi team', 'second', 'third'], 'each once, in order');
    const created = [...carol1.got, ...carol.got].filter((m) => m.conv === gconv && m.event && m.event.type === 'GE_CREATED');
    assert.equal(created.length, 1, 'the group\'s first entry once, on whichever connection got it first');

    step('message actions: a reply, a reaction changed, an edit, a delete; refused ones fail with their code');
    const base = await alice.sendMessage({ to: 'bob', text: 'act on me' }).acked;
    const rep = await bob.reply(conv, base.seq, 'a reply').acked;
    await bob.react(conv, base.seq, '👍').acked;
    await bob.react(conv, base.seq, '❤️').acked;
    await alice.edit(conv, base.seq, 'acted on').acked;
    await alice.deleteForEveryone(conv, rep.seq).acked.then(() => assert.fail('not hers'), (e) => assert.equal(e.code, 'ERR_NOT_AUTHOR'));
    await bob.deleteForEveryone(conv, rep.seq).acked;
    await bob.react(conv, rep.seq, '👍').acked.then(() => assert.fail('deleted'), (e) => assert.equal(e.code, 'ERR_NO_TARGET'));
    await until(() => alice.got.some((m) => actOf(m).kind === 'delete'), 'alice to get the delete');
    const acts = alice.got.filter((m) => m.conv === conv && m.seq > base.seq && !m.mine).map((m) => [actOf(m).kind, actOf(m).target || actOf(m).replyTo, m.text]);
    assert.deepEqual(acts, [[null, base.seq, 'a reply'], ['reaction', base.seq, '👍'], ['reaction', base.seq, '❤️'],
      ['delete', rep.seq, '']]);
    assert.deepEqual(reactionCounts({ bob: '❤️' }), [['❤️', 1]]);
    await until(() => bob.got.some((m) => actOf(m).kind === 'edit' && m.text === 'acted on'), 'bob to get the edit');

    step('a refused send fails for good, with the code; an unknown user is UNKNOWN_PEER');
    await assert.rejects(alice.sendMessage({ to: 'nobody', text: 'x' }).acked, (e) => e.code === 'ERR_UNKNOWN_PEER');
    await assert.rejects(alice.presenceGet('nobody'), (e) => e.code === 'ERR_UNKNOWN_PEER');
    assert.equal(alice.outbox.size, 0);

    step('an upload, sent as a photo, downloads byte for byte for the recipient');
    const media = await alice.upload(png(32, 20), { name: 'p.png' });
    assert.equal(media.type, 'image/png');
    await alice.sendMessage({ to: 'bob', text: 'a photo', media }).acked;
    await until(() => bob.got.some((m) => m.media && m.media.id === media.id), 'the photo message');
    const blob = await bob.download(media.id);
    assert.equal(blob.size, media.size);
    await assert.rejects(alice.upload(Buffer.from('not an image\n')), (e) => e.status === 415);

    step('bob forwards the photo to the group and a text to carol: each arrives marked forwarded, the photo by its id');
    const photoMsg = bob.got.find((m) => m.media && m.media.id === media.id);
    const fg = await bob.forward(gconv, photoMsg.text, photoMsg.media).acked;
    const fd = await bob.forward(dmConv('bob', 'carol'), 'act on me').acked;
    assert.deepEqual([fg.conv, actOf(fg).forwarded, fd.conv, actOf(fd).forwarded], [gconv, true, 'dm:bob:carol', true]);
    const carolGot = (f) => carol.got.find((m) => m.conv === f.conv && m.seq === f.seq);
    await until(() => carolGot(fg) && carolGot(fd), 'carol to get both forwards');
    const [cg, cd] = [carolGot(fg), carolGot(fd)];
    assert.deepEqual([cg.from, cg.text, cg.media.id, actOf(cg).kind, actOf(cg).forwarded], ['bob', 'a photo', media.id, null, true]);
    assert.deepEqual([cd.from, cd.text, cd.media, actOf(cd).forwarded, actOf(cd).replyTo], ['bob', 'act on me', undefined, true, 0]);
    assert.equal((await carol.download(media.id)).size, media.size, 'the forwarded photo downloads for carol');

    step('logout: the token stops working');
    const token = aliceStore.get('token');
    await alice2.logout();
    assert.equal(aliceStore.get('token'), null);
    const stale = mk({ storage: memoryStorage() });
    stale.store.set('token', token);
    await assert.rejects(stale.resume(), (e) => e.code === 'ERR_BAD_TOKEN');
    assert.equal(stale.state, 'signed-out');
    ok = true;
  } finally {
    for (const p of all) p.close();
    srv.proc.kill('SIGTERM');
  }
  const code = await new Promise((resolve) => srv.proc.on('exit', (c) => resolve(c)));
  assert.equal(code, 0, `parleyd exited with ${code} (log: ${srv.dir}.log)`);
  if (ok) rmSync(srv.dir, { recursive: true, force: true });
  await rateLimited();
  console.log('PASS sdk: the JavaScript SDK against parleyd');
}

// A server that takes 2 sends a second after a burst of 1: the outbox sends
// the refused ones again after retry_after_ms, same ids, and each is stored once.
async function rateLimited() {
  console.log('  - RATE_LIMITED sends are sent again after the wait, each stored once');
  const srv = await startServer(PARLEYD, null, ['--send-rate', '2', '--send-burst', '1', '--heartbeat-web', '2']);
  const a = client(srv), b = client(srv);
  let ok = false;
  try {
    await a.register('ann', 'ann-password');
    await b.register('ben', 'ben-password');
    const retries = [];
    a.on('send_retry', (r) => retries.push(r));
    const sent = ['r1', 'r2', 'r3', 'r4'].map((text) => a.sendMessage({ to: 'ben', text }));
    const acks = await Promise.all(sent.map((e) => e.acked));
    assert.ok(retries.some((r) => r.code === 'ERR_RATE_LIMITED'), 'some were refused for the rate');
    assert.deepEqual(acks.map((x) => x.seq).sort(), [1, 2, 3, 4]);
    await until(() => b.got.length >= 4, 'ben to get four');
    assert.deepEqual(b.got.map((m) => m.text).sort(), ['r1', 'r2', 'r3', 'r4'], 'each once');

    console.log('  - a server that stops answering is given up after 1.5 heartbeats; the client comes back');
    srv.proc.kill('SIGSTOP');
    await until(() => a.state === 'reconnecting', 'the silence noticed (3 s; TCP alone would not tell)', 15000);
    srv.proc.kill('SIGCONT');
    await until(() => a.state === 'online', 'back online', 30000);
    assert.equal((await a.sendMessage({ to: 'ben', text: 'r5' }).acked).seq, 5);
    ok = true;
  } finally {
    a.close();
    b.close();
    srv.proc.kill('SIGCONT');
    srv.proc.kill('SIGTERM');
  }
  const code = await new Promise((resolve) => srv.proc.on('exit', (c) => resolve(c)));
  assert.equal(code, 0, `parleyd exited with ${code} (log: ${srv.dir}.log)`);
  if (ok) rmSync(srv.dir, { recursive: true, force: true });
}

run().catch((e) => { console.error('FAIL', e); process.exit(1); });
