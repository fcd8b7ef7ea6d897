// The MQTT gateway with MQTT.js (from npm): MQTT 5 over TCP with a
// persistent session, the client's message id in a user property, and
// MQTT 3.1.1 over WebSocket at /mqtt; the other side is a `parley` CLI user.
//
//   PARLEYD=build/parleyd PARLEY_CLI=build/parley node tests/mqtt/chat.mjs
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { startServer, until } from '../browser/lib.mjs';

const PARLEYD = process.env.PARLEYD, CLI = process.env.PARLEY_CLI;
assert.ok(PARLEYD && CLI, 'PARLEYD and PARLEY_CLI must be set');
const T = 10000;

const cli = (srv, user, ...args) => execFileSync(CLI, ['--server', `127.0.0.1:${srv.port}`, '--user', user,
  '--password', `${user}-password`, ...args], { encoding: 'utf8', timeout: T });
// alice's messages (acknowledged), receipts left out
const aliceGets = (srv) => cli(srv, 'alice', 'recv', '--wait', '1').split('\n').filter(Boolean)
  .map((l) => JSON.parse(l)).filter((m) => m.type === 'message').map((m) => [m.id, m.text]);

// Connects, recording what arrives from the start: queued messages may come
// in the same read as the CONNACK.
async function connect(url, opts) {
  const client = mqtt.connect(url, opts), got = [];
  client.on('message', (topic, payload) => got.push([topic, JSON.parse(payload.toString())]));
  await new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  return { client, got };
}

const srv = await startServer(PARLEYD, null, [], ['--mqtt']);
const mq = srv.more['--mqtt'];
let failed = false;
try {
  await until(async () => {
    try { cli(srv, 'alice', 'register'); return true; } catch { return false; }
  }, 'alice registered');
  cli(srv, 'bob', 'register');

  // MQTT 5 over TCP, a persistent session
  const opts = { clientId: 'bob-js', username: 'bob', password: 'bob-password', protocolVersion: 5, clean: false,
    properties: { sessionExpiryInterval: 3600 }, reconnectPeriod: 0 };
  let { client: bob, got } = await connect(`mqtt://127.0.0.1:${mq}`, opts);
  await bob.subscribeAsync('parley/in/#', { qos: 1 });
  cli(srv, 'alice', 'send', 'bob', 'hi from the cli');
  await until(() => got.some(([t, m]) => t === 'parley/in/msg/user/alice' && m.text === 'hi from the cli'),
    'bob gets alice\'s message', T);
  await bob.publishAsync('parley/send/user/alice', JSON.stringify({ id: 'js-1', text: 'hi from mqtt.js' }),
    { qos: 1 }); // resolves on the PUBACK: the commit
  await bob.publishAsync('parley/send/user/alice', 'id in a property',
    { qos: 1, properties: { userProperties: { id: 'js-2' } } });
  assert.deepEqual(aliceGets(srv), [['js-1', 'hi from mqtt.js'], ['js-2', 'id in a property']]);
  await until(() => got.some(([t, m]) => t === 'parley/in/receipt' && m.status === 'RECEIPT_DELIVERED'),
    'a delivered receipt', T);
  console.log('PASS mqtt.js tcp v5: chat both ways, receipts');

  await bob.endAsync();
  cli(srv, 'alice', 'send', 'bob', 'while you were away');
  ({ client: bob, got } = await connect(`mqtt://127.0.0.1:${mq}`, opts));
  await until(() => got.some(([, m]) => m.text === 'while you were away'), 'the missed message', T);
  await bob.endAsync();
  console.log('PASS mqtt.js tcp v5: the persistent session gets what it missed');

  // MQTT 3.1.1 over WebSocket
  const { client: ws, got: wgot } = await connect(`ws://127.0.0.1:${srv.http}/mqtt`, {
    clientId: 'bob-jsws', username: 'bob', password: 'bob-password', protocolVersion: 4, reconnectPeriod: 0 });
  await ws.publishAsync('parley/send/user/alice', JSON.stringify({ id: 'ws-js-1', text: 'over websocket' }),
    { qos: 1 });
  assert.deepEqual(aliceGets(srv), [['ws-js-1', 'over websocket']]);
  cli(srv, 'alice', 'send', 'bob', 'to the websocket');
  await until(() => wgot.some(([, m]) => m.text === 'to the websocket'), 'the message over WebSocket', T);
  await ws.endAsync();
  console.log('PASS mqtt.js websocket 3.1.1: chat both ways');
} catch (e) {
  failed = true;
  console.error('FAIL', e);
} finally {
  srv.proc.kill('SIGKILL');
}
process.exit(failed ? 1 : 0);
