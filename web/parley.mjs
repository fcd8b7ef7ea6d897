// parley.mjs: Parley's JavaScript SDK. One ES module, no dependencies, no
// build step; runs in browsers and in Node.js (20 and later: its global
// WebSocket, or any WHATWG-style WebSocket class passed in as `WebSocket`).
//
// It speaks the JSON binding (docs/protocol.md §1.2) over one WebSocket, in
// protocol version 2, and does for an application what the protocol asks of
// every client (docs/protocol.md §15): Hello, Resume with the stored token,
// an outbox resent under the same ids until each SendAck, duplicate filtering
// by position (the queue by qid, each group by seq), batched Acks, heartbeats,
// the clock offset, and reconnecting with backoff. The API is in
// docs/sdk-js.md; libparley (src/client/) is the reference for the same rules.

export const SUBPROTOCOL = 'parley.json.v1';
export const VERSION = 2;

// Errors after which a Send is worth repeating under its id (protocol.md §9).
const RETRYABLE = new Set(['ERR_RATE_LIMITED', 'ERR_STORAGE_FULL', 'ERR_INTERNAL', 'ERR_SHUTTING_DOWN']);
// QUEUE_FULL clears only when the recipient reads: retry much later.
const QUEUE_FULL_WAIT_MS = 30000;
// Frames whose `ref` answers a request (every other frame with a ref is an Error or an event).
const ANSWERS = new Set(['done', 'group_info', 'contact_list', 'settings_state', 'device_list', 'unread',
  'presence', 'group_list', 'group_receipts']);

/** A refused request, send, upload or sign-in: `code` is the protocol's name (ERR_...). */
export class ParleyError extends Error {
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = 'ParleyError';
    this.code = code;
    Object.assign(this, extra); // retry_after_ms, status, ref
  }
}

/** The id of the 1:1 conversation of users a and b (protocol.md §11.1). */
export const dmConv = (a, b) => (a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`);

/** The disappearing-message settings (protocol.md §11.9), in seconds: off, 24 h, 7 d, 90 d. */
export const DISAPPEAR = [0, 86400, 604800, 7776000];

const ACT_KINDS = { ACT_REACTION: 'reaction', ACT_EDIT: 'edit', ACT_DELETE: 'delete', ACT_TIMER: 'timer',
  ACT_DELETE_FOR_ME: 'delete_for_me', 1: 'reaction', 2: 'edit', 3: 'delete', 4: 'timer', 5: 'delete_for_me' };

/**
 * What a received message does (protocol.md §11.9), read from its `act`:
 * {kind: null (a plain message) | 'reaction' | 'edit' | 'delete' | 'timer' | 'delete_for_me',
 *  target, replyTo, forwarded, timer (seconds), targetConv, vanishAt (ms; 0 never)}.
 */
export function actOf(m) {
  const a = m.act || {};
  return { kind: ACT_KINDS[a.kind] || null, target: Number(a.target || 0), replyTo: Number(a.reply_to || 0),
    forwarded: !!a.forwarded, timer: Number(a.timer_s || 0), targetConv: a.target_conv || '',
    vanishAt: Number(a.vanish_at || 0) };
}

/** Reaction counts from {user: reaction} (one per user): [[reaction, count], ...], most first. */
export function reactionCounts(byUser = {}) {
  const n = new Map();
  for (const r of Object.values(byUser)) if (r) n.set(r, (n.get(r) || 0) + 1);
  return [...n].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
}

/** A small synchronous key/value store held in memory (the default storage). */
export function memoryStorage() {
  const m = new Map();
  return { get: (k) => (m.has(k) ? m.get(k) : null), set: (k, v) => { m.set(k, v); }, del: (k) => { m.delete(k); } };
}

/** Storage over a Web Storage object (localStorage), values as JSON under prefix. */
export function webStorage(ws, prefix = 'parley.') {
  return {
    get: (k) => { const v = ws.getItem(prefix + k); return v === null ? null : JSON.parse(v); },
    set: (k, v) => ws.setItem(prefix + k, JSON.stringify(v)),
    del: (k) => ws.removeItem(prefix + k),
  };
}

const utf8 = new TextEncoder(), unutf8 = new TextDecoder();
function b64(text) {
  let s = '';
  for (const c of utf8.encode(text)) s += String.fromCharCode(c);
  return btoa(s);
}
const unb64 = (s) => unutf8.decode(Uint8Array.from(atob(s || ''), (c) => c.charCodeAt(0)));
const newId = () => (globalThis.crypto && crypto.randomUUID ? crypto.randomUUID()
  : Date.now().toString(36) + Math.random().toString(36).slice(2, 12));

export class Parley {
  /**
   * @param {object} o
   *   url: the WebSocket endpoint, e.g. 'wss://chat.example/ws' (required)
   *   httpUrl: the HTTP base for the media API (default: from url)
   *   WebSocket, fetch: implementations (default: the globals)
   *   storage: {get, set, del} kept across restarts (default: memoryStorage())
   *   kind: Hello.kind (default 'KIND_WEB'); clientName; device: this device's name
   *   reconnectMinMs, reconnectMaxMs: the backoff's bounds (500, 10000)
   */
  constructor(o) {
    if (!o || !o.url) throw new TypeError('Parley: url is required');
    this.url = o.url;
    this.httpUrl = o.httpUrl || o.url.replace(/^ws/, 'http').replace(/\/ws$/, '');
    this.WebSocket = o.WebSocket || globalThis.WebSocket;
    this.fetch = o.fetch || (globalThis.fetch && globalThis.fetch.bind(globalThis));
    if (!this.WebSocket) throw new TypeError('Parley: no WebSocket (pass one in as o.WebSocket)');
    this.store = o.storage || memoryStorage();
    this.kind = o.kind || 'KIND_WEB';
    this.clientName = o.clientName || 'parley-js/1';
    this.minMs = o.reconnectMinMs || 500;
    this.maxMs = o.reconnectMaxMs || 10000;
    this.window = 512; // unanswered Sends at most (libparley's PLC_WINDOW)
    this.device = o.device || this.store.get('device') || `js-${newId().slice(0, 8)}`;
    this.store.set('device', this.device);
    this.user = this.store.get('user');
    this.state = 'idle'; // connecting, online, reconnecting, signed-out, closed
    this.offset = 0; // server clock - local clock, ms (protocol.md §8.2)
    this.listeners = new Map();
    this.requests = new Map(); // ref -> {resolve, reject}
    this.refs = 0;
    this.pendingAuth = null; // {frame, resolve, reject}: Register or Login to send
    this.authWaiters = [];
    this.typingAt = new Map(); // conv -> when typing:true was last sent
    this.ws = null;
    this.retry = 0;
    this.inflight = 0; // outbox entries written and not yet answered
    this.qid = this.store.get('qid') || 0; // the queue's mark
    this.gmarks = this.store.get('gmarks') || {}; // group id -> seq mark
    this.outbox = new Map();
    for (const e of this.store.get('outbox') || []) this.outbox.set(e.id, this.entry(e));
  }

  // ---- events ----

  /** Calls fn(detail) for each event of this type; returns a function that stops it. */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  emit(type, detail) {
    for (const fn of this.listeners.get(type) || []) {
      // A throwing listener must not leave the session half-updated: report it apart.
      try { fn(detail); } catch (e) { queueMicrotask(() => { throw e; }); }
    }
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit('state', s);
  }

  // ---- signing in ----

  get token() { return this.store.get('token'); }

  /** Signs in with a password: resolves with the AuthOk frame, rejects with a ParleyError. */
  login(user, password) { return this.credentials('login', user, password); }

  /** Creates the account and signs in, as login(). invite: the code a server
   *  with --registration invite asks for (ERR_INVITE_REQUIRED without one). */
  register(user, password, invite) { return this.credentials('register', user, password, invite); }

  /** Connects with the stored token (if there is one): resolves with the AuthOk. */
  resume() {
    if (!this.token) return Promise.reject(new ParleyError('ERR_BAD_TOKEN', 'not signed in'));
    if (this.authed) return Promise.resolve(this.authOk);
    const p = this.waitAuth();
    if (!this.ws) this.connect();
    return p;
  }

  credentials(type, user, password, invite) {
    if (this.pendingAuth) this.pendingAuth.reject(new ParleyError('ERR_CANCELLED', 'replaced by a new sign-in'));
    return new Promise((resolve, reject) => {
      const frame = { type, user, password, device: this.device };
      if (invite) frame.invite = invite;
      this.pendingAuth = { frame, resolve, reject };
      if (this.welcomed && !this.authed && !this.stopped) { // the session waits in AUTH: try again on it
        this.send(this.pendingAuth.frame);
      } else if (!this.ws || this.authed || this.stopped) { // a fresh session for them
        if (this.ws) this.drop('new credentials');
        this.connect();
      } // else: connecting, the Welcome sends them
    });
  }

  waitAuth() {
    return new Promise((resolve, reject) => this.authWaiters.push({ resolve, reject }));
  }

  settleAuth(err, ok) {
    const w = this.authWaiters;
    this.authWaiters = [];
    for (const x of w) if (err) x.reject(err); else x.resolve(ok);
  }

  /** Logs this device out (protocol.md §7.3) and forgets its token, marks and outbox. */
  async logout() {
    this.stopped = true; // no reconnect once the server closes
    const ws = this.ws, authed = this.authed;
    this.forget(); // at once: a sign-in that follows must find nothing of this account
    if (authed) {
      const gone = new Promise((r) => { this.onGone = r; });
      this.send({ type: 'logout' });
      await Promise.race([gone, new Promise((r) => setTimeout(r, 2000))]);
    }
    if (this.ws === ws) this.close('signed-out'); // unless a new sign-in has its own socket by now
  }

  /** Forgets the account on this device: token, user, positions and outbox. */
  forget() {
    for (const k of ['token', 'user', 'device_id', 'qid', 'gmarks']) this.store.del(k);
    this.user = null;
    this.qid = 0;
    this.gmarks = {};
    this.dropOutbox();
  }

  dropOutbox() {
    for (const e of this.outbox.values()) {
      clearTimeout(e.timer);
      e.reject(new ParleyError('ERR_CANCELLED', 'signed out before it was sent'));
    }
    this.outbox.clear();
    this.inflight = 0;
    this.saveOutbox();
  }

  /** Closes the connection for good (until the next login/resume); the token is kept. */
  close(state = 'closed') {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    if (this.ws) this.drop('closed');
    this.setState(state);
  }

  // ---- the connection ----

  connect() {
    this.stopped = false;
    clearTimeout(this.reconnectTimer);
    const ws = new this.WebSocket(this.url, SUBPROTOCOL);
    this.ws = ws;
    this.welcomed = this.authed = false;
    this.connQ = 0; // highest qid received on this connection
    this.connG = {}; // group -> highest seq received on this connection
    this.ackQ = 0;
    this.ackG = {};
    this.setState(this.retry ? 'reconnecting' : 'connecting');
    ws.onopen = () => {
      this.helloAt = Date.now();
      this.send({ type: 'hello', version: VERSION, kind: this.kind, client_name: this.clientName });
    };
    ws.onmessage = (e) => this.onFrame(JSON.parse(e.data));
    ws.onclose = () => this.onClose(ws);
    ws.onerror = () => {}; // a close follows
    // A connection that hangs before Welcome (a black-holed network) is given up.
    clearTimeout(this.openTimer);
    this.openTimer = setTimeout(() => { if (ws === this.ws && !this.welcomed) this.drop('no Welcome'); }, 10000);
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    this.sentAt = Date.now();
    return true;
  }

  // Gives up this socket now (not waiting for its close handshake) and handles the loss.
  drop(why) {
    const ws = this.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try { ws.close(1000, why); } catch { /* already closing */ }
    this.onClose(ws);
  }

  onClose(ws) {
    if (ws !== this.ws) return;
    clearInterval(this.beat);
    clearTimeout(this.openTimer);
    this.ws = null;
    const wasAuthed = this.authed;
    this.welcomed = this.authed = false;
    clearTimeout(this.ackTimer);
    this.ackTimer = 0;
    const lost = [...this.requests.values()];
    this.requests.clear();
    for (const q of lost) q.reject(new ParleyError('ERR_OFFLINE', 'the connection was lost before the answer'));
    for (const e of this.outbox.values()) if (e.state === 'sent') e.state = 'queued';
    this.inflight = 0;
    if (this.onGone) { this.onGone(); this.onGone = null; }
    if (this.stopped) return;
    if (!this.token && !this.pendingAuth) { this.setState('signed-out'); return; }
    const wait = Math.min(this.maxMs, this.minMs * 2 ** this.retry++) * (0.5 + Math.random() / 2);
    // A session that never got in waits at least a second: its next try would likely fail alike.
    const delay = Math.max(wait, wasAuthed ? 0 : 1000, this.retryAfter || 0);
    this.retryAfter = 0;
    this.setState('reconnecting');
    this.reconnectTimer = setTimeout(() => { if (!this.ws && !this.stopped) this.connect(); }, delay);
  }

  onFrame(f) {
    this.heardAt = Date.now();
    if (f.ref && ANSWERS.has(f.type) && this.requests.has(f.ref)) {
      const q = this.requests.get(f.ref);
      this.requests.delete(f.ref);
      q.resolve(f);
    }
    switch (f.type) {
      case 'welcome': return this.onWelcome(f);
      case 'auth_ok': return this.onAuthOk(f);
      case 'error': return this.onError(f);
      case 'send_ack': return this.onSendAck(f);
      case 'message': return this.onMessage(f);
      case 'receipt':
        if (this.fresh(f)) this.emit('receipt', { ...f, status: f.status === 'RECEIPT_READ' ? 'read' : 'delivered' });
        return undefined;
      case 'read_sync': if (this.fresh(f)) this.emit('read_sync', f); return undefined;
      case 'pong':
        this.offset = Number(f.server_ts) - (Number(f.client_ts) + Date.now()) / 2;
        return undefined;
      case 'logout_ok': return undefined;
      case 'presence': return this.emit('presence', f);
      case 'typing_event': return this.emit('typing', f);
      case 'group_info': return this.emit('group', f);
      case 'group_list': for (const g of f.groups || []) this.emit('group', g); return undefined;
      default: return this.emit('frame', f); // answers, and frames this version does not know
    }
  }

  onWelcome(w) {
    this.welcomed = true;
    this.offset = Number(w.server_ts) - (this.helloAt + Date.now()) / 2;
    this.heartbeatMs = w.heartbeat_ms || 15000;
    this.maxMessage = w.max_message || 65536;
    this.heardAt = this.sentAt = Date.now();
    this.beat = setInterval(() => this.heartbeat(), Math.max(250, this.heartbeatMs / 4));
    if (this.pendingAuth) this.send(this.pendingAuth.frame);
    else if (this.token) this.send({ type: 'resume', token: this.token });
    else this.drop('nothing to sign in with');
  }

  // A Ping after half an interval of silence; a server silent for 1.5 intervals is gone (§8.1).
  heartbeat() {
    const now = Date.now();
    if (now - this.heardAt > 1.5 * this.heartbeatMs) return this.drop('the server stopped answering');
    if (now - this.sentAt >= this.heartbeatMs / 2) this.send({ type: 'ping', client_ts: now });
    return undefined;
  }

  onAuthOk(a) {
    // Positions belong to a device: a different one starts from nothing (protocol.md §10.6).
    if (this.store.get('device_id') !== a.device_id || this.user !== a.user) {
      if (this.user && this.user !== a.user) this.dropOutbox(); // another account's messages
      this.qid = 0;
      this.gmarks = {};
      this.store.set('qid', 0);
      this.store.set('gmarks', {});
    }
    this.user = a.user;
    this.store.set('user', a.user);
    this.store.set('token', a.token);
    this.store.set('device_id', a.device_id);
    this.authed = true;
    this.authOk = a;
    this.retry = 0;
    const p = this.pendingAuth;
    this.pendingAuth = null;
    if (p) p.resolve(a);
    this.settleAuth(null, a);
    this.setState('online');
    this.emit('auth', a);
    this.pump(); // every unanswered Send again, same ids (§10.1)
  }

  onAuthError(e) {
    const err = new ParleyError(e.code, e.message, { retry_after_ms: e.retry_after_ms || 0 });
    const p = this.pendingAuth;
    if (p) { // the connection stays open in AUTH: the application may try again
      this.pendingAuth = null;
      p.reject(err);
      this.settleAuth(err);
      return;
    }
    if (e.code === 'ERR_BAD_TOKEN') { // revoked, rotated or expired: sign in again
      this.store.del('token');
      this.settleAuth(err);
      this.emit('signed_out', err);
      this.close('signed-out');
      return;
    }
    this.retryAfter = e.retry_after_ms || 0; // throttled or failing: Resume again later
    this.drop(e.code);
  }

  onError(e) {
    if (!this.authed && this.welcomed) return this.onAuthError(e);
    const q = e.ref && this.requests.get(e.ref);
    if (q) {
      this.requests.delete(e.ref);
      return q.reject(new ParleyError(e.code, e.message, { retry_after_ms: e.retry_after_ms || 0, ref: e.ref }));
    }
    const m = e.ref && this.outbox.get(e.ref);
    if (m && m.state === 'sent') return this.onSendError(m, e);
    return this.emit('error', new ParleyError(e.code, e.message, { retry_after_ms: e.retry_after_ms || 0 }));
  }

  // ---- requests ----

  /** Sends a request frame with a fresh ref: resolves with its answer, rejects with a ParleyError. */
  request(frame) {
    if (!this.authed) return Promise.reject(new ParleyError('ERR_OFFLINE', 'not connected'));
    const ref = `r${++this.refs}`;
    const p = new Promise((resolve, reject) => {
      this.requests.set(ref, { resolve, reject });
      this.send({ ...frame, ref });
    });
    p.ref = ref; // the answers' ref (PresenceSubscribe's Presence frames carry it too)
    return p;
  }

  /** The conversation's addressing fields: {to} for a 1:1, {group} for a group. */
  target(conv) {
    if (conv.startsWith('g:')) return { group: conv.slice(2) };
    const [a, b] = conv.slice(3).split(':');
    return { to: a === this.user ? b : a };
  }

  markRead(conv, seq) {
    const t = this.target(conv); // MarkRead names the other user `peer` where Send says `to`
    return this.request({ type: 'mark_read', ...(t.group ? t : { peer: t.to }), seq });
  }
  unread() { return this.request({ type: 'unread_get' }); }
  contacts(op = 'CONTACT_LIST', user) { return this.request({ type: 'contacts', op, ...(user ? { user } : {}) }); }
  block(user, blocked = true) { return this.request({ type: 'block', user, blocked }); }
  presenceGet(user) { return this.request({ type: 'presence_get', user }); }
  presenceSubscribe(users) { return this.request({ type: 'presence_subscribe', users }); }
  settings(change = {}) { return this.request({ type: 'settings', ...change }); }
  devices(op = 'DEVICES_LIST', device) { return this.request({ type: 'devices', op, ...(device ? { device } : {}) }); }
  groupCreate(name, members = [], description) {
    return this.request({ type: 'group_create', name, members, ...(description ? { description } : {}) });
  }
  /** op: GROUP_INFO, GROUP_ADD, GROUP_REMOVE, GROUP_LEAVE, GROUP_RENAME, GROUP_SET_ROLE; args: user, name, role. */
  groupUpdate(group, op, args = {}) { return this.request({ type: 'group_update', group, op, ...args }); }
  groupList() { return this.request({ type: 'group_list_get' }); }
  groupReceipts(group, seq) { return this.request({ type: 'group_receipts_get', group, seq }); }

  /** Tells the conversation's other side(s) that the user types (at most once per 3 s) or stopped. */
  typing(conv, on = true) {
    const now = Date.now();
    if (on && now - (this.typingAt.get(conv) || 0) < 3000) return;
    this.typingAt.set(conv, on ? now : 0);
    if (this.authed) this.send({ type: 'typing', typing: on, ...this.target(conv) });
  }

  /** The server's clock now, estimated (protocol.md §8.2). */
  serverNow() { return Math.round(Date.now() + this.offset); }

  // ---- sending: the outbox ----

  entry(e) {
    const x = { ...e, state: 'queued', timer: 0 };
    x.acked = new Promise((resolve, reject) => { x.resolve = resolve; x.reject = reject; });
    x.acked.catch(() => {}); // nobody need wait for it: events report the outcome too
    return x;
  }

  saveOutbox() {
    this.store.set('outbox', [...this.outbox.values()].map(({ id, conv, text, media, frame }) => ({ id, conv, text, media, frame })));
  }

  /**
   * Queues a message: {conv} (or {to} / {group}), text, media (an upload's answer or {id}),
   * fields (more Send fields, for protocol additions). Returns the outbox entry
   * {id, conv, text, media, acked}; acked resolves with the SendAck or rejects with a final error.
   */
  sendMessage({ conv, to, group, text = '', media, fields = {} }) {
    if (!this.user) throw new ParleyError('ERR_AUTH_REQUIRED', 'sign in before sending');
    if (!conv) conv = group ? `g:${group}` : dmConv(this.user, to);
    const id = newId();
    const frame = { type: 'send', id, body: b64(text), client_ts: this.serverNow(), ...this.target(conv), ...fields };
    if (media) frame.media = { id: media.id };
    const e = this.entry({ id, conv, text, media, frame });
    this.outbox.set(id, e);
    this.saveOutbox();
    this.pump();
    return e;
  }

  // ---- message actions (protocol.md §11.9): each is a message of its own ----

  act(conv, act, text = '', media) {
    return this.sendMessage({ conv, text, media, fields: { act } });
  }
  /** Replies to message `seq` of conv (quoting it). */
  reply(conv, seq, text, media) { return this.act(conv, { kind: 'ACT_NONE', reply_to: seq }, text, media); }
  /** Sends text (and media: the original's {id}) to another conversation, marked forwarded. */
  forward(conv, text, media) { return this.act(conv, { kind: 'ACT_NONE', forwarded: true }, text, media); }
  /** Reacts to message `seq` (one reaction per user: a new one replaces mine; '' takes it back). */
  react(conv, seq, reaction = '') { return this.act(conv, { kind: 'ACT_REACTION', target: seq }, reaction); }
  /** Edits my message `seq` (within the server's edit window: else ERR_WINDOW_CLOSED). */
  edit(conv, seq, text) { return this.act(conv, { kind: 'ACT_EDIT', target: seq }, text); }
  /** Deletes message `seq` for everyone (mine, or any as a group admin; within the delete window). */
  deleteForEveryone(conv, seq) { return this.act(conv, { kind: 'ACT_DELETE', target: seq }); }
  /** Hides message `seq` of conv on my other devices (sent to myself; the other side never knows). */
  deleteForMe(conv, seq) {
    return this.act(dmConv(this.user, this.user), { kind: 'ACT_DELETE_FOR_ME', target: seq, target_conv: conv });
  }
  /** Sets the conversation's disappearing messages: one of DISAPPEAR (seconds; 0 off). */
  setDisappearing(conv, seconds) { return this.act(conv, { kind: 'ACT_TIMER', timer_s: seconds }); }

  pump() {
    if (!this.authed) return;
    for (const e of this.outbox.values()) {
      if (this.inflight >= this.window) break;
      if (e.state !== 'queued') continue;
      e.state = 'sent';
      this.inflight++;
      this.send(e.frame);
    }
  }

  settle(e) {
    if (e.state === 'sent') this.inflight--;
    clearTimeout(e.timer);
    this.outbox.delete(e.id);
    this.saveOutbox();
  }

  onSendAck(a) {
    const e = this.outbox.get(a.id);
    if (!e) return;
    this.settle(e);
    const ack = { ...a, text: e.text, media: e.media, act: e.frame.act };
    e.resolve(ack);
    this.emit('sent', ack);
    this.pump();
  }

  onSendError(e, err) {
    if (RETRYABLE.has(err.code) || err.code === 'ERR_QUEUE_FULL') { // nothing stored: same id, later
      this.inflight--;
      e.state = 'waiting';
      const wait = err.code === 'ERR_QUEUE_FULL' ? QUEUE_FULL_WAIT_MS : Math.max(err.retry_after_ms || 0, 1000);
      e.timer = setTimeout(() => { if (e.state === 'waiting') { e.state = 'queued'; this.pump(); } }, wait);
      this.emit('send_retry', { id: e.id, conv: e.conv, code: err.code, wait_ms: wait });
      return;
    }
    this.settle(e);
    const x = new ParleyError(err.code, err.message, { ref: e.id });
    e.reject(x);
    this.emit('send_failed', { id: e.id, conv: e.conv, text: e.text, media: e.media, error: x });
    this.pump();
  }

  // ---- receiving: positions, duplicates, acks ----

  // Is this queued entry new? Raises its stream's mark (version 2: a group
  // entry's stream is its group, by seq; the rest is the queue, by qid).
  fresh(f) {
    const qid = Number(f.qid || 0), seq = Number(f.seq || 0);
    if (f.type === 'message' && f.group) {
      const g = f.group;
      this.connG[g] = Math.max(this.connG[g] || 0, seq);
      this.scheduleAck();
      if (seq <= (this.gmarks[g] || 0)) return false;
      this.gmarks[g] = seq;
      this.store.set('gmarks', this.gmarks);
      return true;
    }
    if (!qid) return true; // live, not queued: nothing to filter or acknowledge
    this.connQ = Math.max(this.connQ, qid);
    this.scheduleAck();
    if (qid <= this.qid) return false;
    this.qid = qid;
    this.store.set('qid', qid);
    return true;
  }

  onMessage(m) {
    if (!this.fresh(m)) return; // redelivered after a reconnect: the application has it
    const text = m.event ? '' : unb64(m.body);
    this.emit('message', { ...m, text, mine: m.from === this.user });
  }

  // One Ack per burst, after the handlers ran: every position received on this
  // connection (the server ignores the others, §10.4).
  scheduleAck() {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = 0;
      const groups = [];
      for (const [group, s] of Object.entries(this.connG)) {
        if (s > (this.ackG[group] || 0)) { groups.push({ group, upto_seq: s }); this.ackG[group] = s; }
      }
      if (this.connQ <= this.ackQ && !groups.length) return;
      this.ackQ = Math.max(this.ackQ, this.connQ);
      this.send({ type: 'ack', upto: this.ackQ, ...(groups.length ? { groups } : {}) });
    }, 0);
  }

  // ---- media (protocol.md §13) ----

  authHeader() { return { Authorization: `Bearer ${this.token}` }; }

  /** Uploads a photo or file (Blob, ArrayBuffer, Uint8Array): resolves with the Media JSON to send. */
  async upload(data, { name } = {}) {
    const q = name ? `?name=${encodeURIComponent(name)}` : '';
    let r, body;
    try {
      r = await this.fetch(`${this.httpUrl}/media${q}`, { method: 'POST', headers: this.authHeader(), body: data });
      body = await r.json().catch(() => ({}));
    } catch (e) {
      throw new ParleyError('ERR_OFFLINE', `the upload did not reach the server (${e.message})`);
    }
    if (r.status !== 201) throw new ParleyError('ERR_UPLOAD', body.error || `HTTP ${r.status}`, { status: r.status });
    return body;
  }

  /** Downloads a media file (or its thumbnail): resolves with a Blob. */
  async download(id, { thumb = false } = {}) {
    const r = await this.fetch(`${this.httpUrl}/media/${id}${thumb ? '/thumb' : ''}`, { headers: this.authHeader() });
    if (!r.ok) throw new ParleyError('ERR_DOWNLOAD', `HTTP ${r.status}`, { status: r.status });
    return r.blob();
  }
}
