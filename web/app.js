// Parley's browser client: the JSON binding of docs/protocol.md (1.2) over
// one WebSocket, with resume after the network drops, an outbox that resends
// unanswered messages under their ids, and recent history kept in IndexedDB
// so it shows before the socket is up. No build step, no dependencies.

const PROTO = 'parley.json.v1';
const $ = (id) => document.getElementById(id);
const enc = (s) => { let b = ''; for (const c of new TextEncoder().encode(s)) b += String.fromCharCode(c); return btoa(b); };
const dec = (b) => new TextDecoder().decode(Uint8Array.from(atob(b || ''), (c) => c.charCodeAt(0)));
const dmConv = (a, b) => (a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`);
const KEEP = 200; // messages kept per conversation in the browser

// ---- local state: localStorage for small things, IndexedDB for history ----

const ls = {
  get: (k, d = null) => { const v = localStorage.getItem('parley.' + k); return v === null ? d : JSON.parse(v); },
  set: (k, v) => localStorage.setItem('parley.' + k, JSON.stringify(v)),
  del: (k) => localStorage.removeItem('parley.' + k),
};

let db = null;
function openDb() {
  return new Promise((resolve) => {
    const req = indexedDB.open('parley', 1);
    req.onupgradeneeded = () => {
      const s = req.result.createObjectStore('messages', { keyPath: 'key' });
      s.createIndex('conv', 'conv');
      req.result.createObjectStore('convs', { keyPath: 'conv' });
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => resolve(null); // private mode: work without a cache
  });
}
function dbPut(store, value) {
  if (db) db.transaction(store, 'readwrite').objectStore(store).put(value);
}
function dbAll(store) {
  return new Promise((resolve) => {
    if (!db) return resolve([]);
    const r = db.transaction(store).objectStore(store).getAll();
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => resolve([]);
  });
}
function dbClear() {
  if (db) for (const s of ['messages', 'convs']) db.transaction(s, 'readwrite').objectStore(s).clear();
}

// conv -> { conv, title, peer, group, last_seq, read_seq, peer_delivered, peer_read, msgs: Map }
const convs = new Map();
let me = ls.get('user');
let current = null;
let outbox = new Map(Object.entries(ls.get('outbox', {}))); // id -> pending send
const saveOutbox = () => ls.set('outbox', Object.fromEntries(outbox));

function conv(id, init = {}) {
  let c = convs.get(id);
  if (!c) {
    c = { conv: id, title: id, peer: null, group: null, last_seq: 0, read_seq: 0, peer_delivered: 0, peer_read: 0, msgs: new Map() };
    if (id.startsWith('dm:') && me) {
      const [a, b] = id.slice(3).split(':');
      c.peer = a === me ? b : a;
      c.title = c.peer;
    } else if (id.startsWith('g:')) {
      c.group = id.slice(2);
    }
    convs.set(id, c);
  }
  Object.assign(c, init);
  return c;
}
function saveConv(c) {
  const { msgs, ...rest } = c;
  dbPut('convs', rest);
}
function addMsg(c, m) {
  const key = m.seq ? `${c.conv}#${String(m.seq).padStart(12, '0')}` : `${c.conv}#~${m.id}`;
  if (m.seq && m.mine) c.msgs.delete(`${c.conv}#~${m.id}`); // the pending copy, now placed
  c.msgs.set(key, { ...m, key, conv: c.conv });
  if (m.seq > c.last_seq) c.last_seq = m.seq;
  if (m.mine && m.seq > c.read_seq) c.read_seq = m.seq; // sending reads the conversation
  if (m.seq) dbPut('messages', { ...m, key, conv: c.conv });
  while (c.msgs.size > KEEP) c.msgs.delete(c.msgs.keys().next().value);
}

// ---- the connection ----

let ws = null, authed = false, heartbeat = null, retry = 0, typingUntil = 0, acking = 0;
let highwater = ls.get('qid', 0); // qids are per device: the highest one handled
let pendingAuth = null; // {type, user, password} from the form
let refs = 0;
const nextRef = () => `r${++refs}`;

function setStatus(s) { $('status').textContent = s; }
function send(frame) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame)); }

function connect() {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  ws = new WebSocket(url, PROTO);
  setStatus('connecting…');
  ws.onopen = () => send({ type: 'hello', version: 1, kind: 'KIND_WEB', client_name: 'parley-web/1' });
  ws.onmessage = (e) => onFrame(JSON.parse(e.data));
  ws.onclose = () => {
    clearInterval(heartbeat);
    dropRequests();
    const wasAuthed = authed;
    authed = false;
    ws = null;
    if (!ls.get('token') && !pendingAuth) return;
    setStatus('reconnecting…');
    const delay = Math.min(10000, 500 * 2 ** retry++) * (0.5 + Math.random() / 2);
    setTimeout(connect, wasAuthed ? delay : Math.max(delay, 1000));
  };
}

function onFrame(f) {
  switch (f.type) {
    case 'welcome': return onWelcome(f);
    case 'auth_ok': return onAuthOk(f);
    case 'error': return onError(f);
    case 'send_ack': return onSendAck(f);
    case 'message': return onMessage(f);
    case 'receipt': return onReceipt(f);
    case 'read_sync': return onReadSync(f);
    case 'unread': return onUnread(f);
    case 'contact_list':
      for (const u of f.users || []) contacts.add(u);
      return subscribe();
    case 'presence': return onPresence(f);
    case 'typing_event': return onTyping(f);
    case 'group_list': return (f.groups || []).forEach(onGroupInfo);
    case 'group_info': return onGroupInfo(f);
    case 'settings_state': return onSettingsState(f);
    case 'device_list': return onDeviceList(f);
    default: return undefined; // pong, done, ...
  }
}

function onWelcome(w) {
  const every = Math.max(1000, (w.heartbeat_ms || 15000) / 2);
  heartbeat = setInterval(() => send({ type: 'ping', client_ts: Date.now() }), every);
  let device = ls.get('device');
  if (!device) { device = 'web-' + Math.random().toString(36).slice(2, 10); ls.set('device', device); }
  if (pendingAuth) send({ type: pendingAuth.type, user: pendingAuth.user, password: pendingAuth.password, device });
  else if (ls.get('token')) send({ type: 'resume', token: ls.get('token') });
}

function onAuthOk(a) {
  if (me && me !== a.user) { dbClear(); convs.clear(); highwater = 0; ls.set('qid', 0); }
  me = a.user;
  ls.set('user', me);
  ls.set('token', a.token);
  pendingAuth = null;
  authed = true;
  retry = 0;
  setStatus('online');
  showApp();
  send({ type: 'unread_get', ref: nextRef() });
  send({ type: 'contacts', ref: nextRef(), op: 'CONTACT_LIST' });
  send({ type: 'group_list_get', ref: nextRef() });
  for (const m of outbox.values()) send(m.frame); // same ids: the server deduplicates
  if ($('settings').open) loadSettings();
}

// Requests other than Send whose Error is shown to the user: ref -> {fail(e), ok(answer)}.
const requests = new Map();
// Only after AuthOk: any other frame before it is AUTH_REQUIRED and a close (protocol.md 6).
function request(frame, fail, ok = () => {}) {
  if (!authed) { fail({ code: 'ERR_OFFLINE', message: 'not connected, try again when online' }); return null; }
  const ref = nextRef();
  requests.set(ref, { fail, ok });
  send({ ...frame, ref });
  return ref;
}
// A request whose connection went away gets no answer: say so.
function dropRequests() {
  const lost = [...requests.values()];
  requests.clear();
  for (const q of lost) q.fail({ code: 'ERR_OFFLINE', message: 'the connection was lost before the answer' });
}
const waitText = (e) => `try again in ${Math.ceil((e.retry_after_ms || 1000) / 1000)} s`;
const names = (list) => list.length < 2 ? list.join('') : `${list.slice(0, -1).join(', ')} or ${list[list.length - 1]}`;

// A refused group request, as a sentence (protocol.md 9, 11.8).
function groupError(e, users) {
  switch (e.code) {
    case 'ERR_NOT_ALLOWED':
      return users.length === 1
        ? `${users[0]} does not allow being added to groups by you.`
        : `One of ${names(users)} does not allow being added to groups by you. Create the group without them, or ask them to add you to their contacts.`;
    case 'ERR_UNKNOWN_PEER': return users.length === 1 ? `There is no user ${users[0]}.` : `One of ${names(users)} is not a user you can add.`;
    case 'ERR_GROUP_FULL': return 'The group would have too many members.';
    case 'ERR_RATE_LIMITED': return `Too many requests: ${waitText(e)}.`;
    default: return `Not done: ${e.message || e.code}.`;
  }
}

// Errors after which a Send is worth repeating with the same id (protocol.md §9).
const RETRYABLE = new Set(['ERR_RATE_LIMITED', 'ERR_STORAGE_FULL', 'ERR_INTERNAL', 'ERR_SHUTTING_DOWN']);

function onError(e) {
  if (!authed) {
    const wait = Math.ceil((e.retry_after_ms || 1000) / 1000);
    if (e.code === 'ERR_BAD_TOKEN') { ls.del('token'); showAuth(''); }
    else if (pendingAuth && e.code === 'ERR_RATE_LIMITED') { showAuth(`Too many attempts: try again in ${wait} s.`); pendingAuth = null; }
    else if (pendingAuth) { showAuth(e.message || e.code); pendingAuth = null; }
    else if (e.code === 'ERR_RATE_LIMITED') setTimeout(() => ws && ws.close(), wait * 1000); // resume again then
    return;
  }
  const q = e.ref && requests.get(e.ref);
  if (q) { requests.delete(e.ref); return q.fail(e); }
  const m = e.ref && outbox.get(e.ref);
  if (m && RETRYABLE.has(e.code)) { // nothing was stored: the same id again, later
    const wait = Math.max(e.retry_after_ms || 0, 1000);
    setTimeout(() => { if (authed && outbox.get(e.ref) === m) send(m.frame); }, wait);
    return;
  }
  if (m) { // refused for good: say so on the message
    outbox.delete(e.ref); saveOutbox();
    const c = conv(m.conv);
    const k = `${c.conv}#~${m.frame.id}`;
    const pm = c.msgs.get(k);
    if (pm) pm.failed = e.code;
    render();
  }
}

function onSendAck(a) {
  const m = outbox.get(a.id);
  if (!m) return;
  outbox.delete(a.id); saveOutbox();
  const c = conv(a.conv);
  addMsg(c, { mine: true, from: me, id: a.id, seq: a.seq, text: m.text, media: m.media, server_ts: a.server_ts });
  saveConv(c);
  render();
}

function scheduleAck(qid) {
  if (qid > highwater) { highwater = qid; ls.set('qid', qid); }
  if (!acking) acking = setTimeout(() => { acking = 0; send({ type: 'ack', upto: highwater }); }, 0);
}

function onMessage(m) {
  if (m.qid && m.qid <= highwater) return scheduleAck(m.qid); // seen before a reconnect
  const c = conv(m.conv);
  if (m.group) c.group = m.group;
  const mine = m.from === me;
  let text = m.body ? dec(m.body) : '';
  if (m.event) text = eventText(m.event);
  addMsg(c, { mine, from: m.from, id: m.id, seq: m.seq, text, media: m.media, event: !!m.event, server_ts: m.server_ts });
  saveConv(c);
  if (m.qid) scheduleAck(m.qid);
  if (c.conv === current && c.peer && !mine) send({ type: 'presence_get', ref: nextRef(), user: c.peer });
  markReadIfOpen(c);
  render();
}

function eventText(e) {
  const who = e.user || e.actor;
  switch (e.type) {
    case 'GE_CREATED': return `${e.actor} created the group ${e.name || ''}`;
    case 'GE_ADDED': return `${e.actor} added ${e.user}`;
    case 'GE_REMOVED': return `${e.actor} removed ${e.user}`;
    case 'GE_LEFT': return `${who} left`;
    case 'GE_RENAMED': return `${e.actor} renamed the group to ${e.name}`;
    default: return `${who}: ${e.type}`;
  }
}

function onReceipt(r) {
  const c = conv(r.conv);
  if (r.status === 'RECEIPT_DELIVERED') c.peer_delivered = Math.max(c.peer_delivered, r.seq || 0);
  if (r.status === 'RECEIPT_READ') {
    c.peer_read = Math.max(c.peer_read, r.seq || 0);
    c.peer_delivered = Math.max(c.peer_delivered, c.peer_read);
  }
  saveConv(c);
  if (r.qid) scheduleAck(r.qid);
  render();
}

function onReadSync(r) {
  const c = conv(r.conv);
  c.read_seq = Math.max(c.read_seq, r.seq || 0);
  saveConv(c);
  if (r.qid) scheduleAck(r.qid);
  render();
}

function onUnread(u) {
  for (const s of u.convs || []) {
    const c = conv(s.conv);
    c.last_seq = Math.max(c.last_seq, s.last_seq || 0);
    c.read_seq = Math.max(c.read_seq, s.read_seq || 0);
    c.peer_delivered = Math.max(c.peer_delivered, s.peer_delivered || 0);
    c.peer_read = Math.max(c.peer_read, s.peer_read || 0);
    saveConv(c);
  }
  render();
}

function onGroupInfo(g) {
  const q = g.ref && requests.get(g.ref);
  if (q) { requests.delete(g.ref); q.ok(g); }
  if (!g.group) return;
  const c = conv('g:' + g.group, { group: g.group, title: g.name || g.group });
  c.last_seq = Math.max(c.last_seq, g.last_seq || 0);
  saveConv(c);
  render();
}

const presence = new Map(); // user -> {online, last_seen}
const followed = new Map(); // user -> visible when the subscription was made
let subRef = null;
function subscribe() {
  subRef = nextRef();
  send({ type: 'presence_subscribe', ref: subRef, users: [...contacts] });
}
function onPresence(p) {
  presence.set(p.user, p);
  if (p.ref && p.ref === subRef) followed.set(p.user, !!p.visible);
  // Visibility is decided when subscribing (protocol.md 11.6): someone who has
  // just added us shows in a PresenceGet first; follow them again to get events.
  else if (p.ref && p.visible && contacts.has(p.user) && !followed.get(p.user)) subscribe();
  renderHead();
}

const typing = new Map(); // conv -> {from, until}
function onTyping(t) {
  typing.set(t.conv, t.typing ? { from: t.from, until: Date.now() + (t.expires_ms || 6000) } : null);
  renderHead();
  if (t.typing) setTimeout(renderHead, (t.expires_ms || 6000) + 50);
}

function markReadIfOpen(c) {
  if (!authed || current !== c.conv || document.hidden) return;
  const upto = c.last_seq;
  if (!upto || c.read_seq >= upto) return;
  c.read_seq = upto;
  saveConv(c);
  send({ type: 'mark_read', ref: nextRef(), ...(c.group ? { group: c.group } : { peer: c.peer }), seq: upto });
}

// ---- settings and devices (protocol.md 4: Settings, 7.7 Devices) ----

function loadSettings() {
  if (!authed) { // AuthOk loads them if the dialog is still open
    $('settings-status').textContent = 'Waiting for the connection…';
    $('devices-status').textContent = '';
    return;
  }
  $('settings-status').textContent = 'Loading…';
  request({ type: 'settings' }, (e) => { $('settings-status').textContent = `Could not load the settings: ${e.message || e.code}`; });
  loadDevices({ op: 'DEVICES_LIST' }, 'Loading…');
}

function onSettingsState(st) {
  const ref = st.ref;
  if (ref) requests.delete(ref);
  $('set-read-receipts').checked = !!st.read_receipts;
  $('set-last-seen').value = st.last_seen || 'LAST_SEEN_CONTACTS';
  $('set-group-add').value = st.group_add || 'GROUP_ADD_EVERYONE';
  $('privacy').disabled = false;
  const s = $('settings-status');
  if (s.dataset.saving === ref) { s.textContent = 'Saved.'; delete s.dataset.saving; }
  else if (!s.dataset.saving && s.textContent === 'Loading…') s.textContent = ''; // a "Not saved" stays
}

function saveSetting(change) {
  const s = $('settings-status');
  s.textContent = 'Saving…';
  const ref = request({ type: 'settings', ...change }, (e) => {
    s.textContent = e.code === 'ERR_RATE_LIMITED' ? `Not saved: ${waitText(e)}.` : `Not saved: ${e.message || e.code}.`;
    delete s.dataset.saving;
    request({ type: 'settings' }, () => {}); // show what is in force
  });
  if (ref) s.dataset.saving = ref;
}

function loadDevices(frame, note) {
  $('devices-status').textContent = note;
  $('devices').setAttribute('aria-busy', 'true');
  request({ type: 'devices', ...frame }, (e) => {
    $('devices').setAttribute('aria-busy', 'false');
    for (const b of $('devices').querySelectorAll('button')) b.disabled = false; // nothing changed: try again
    $('devices-status').textContent = e.code === 'ERR_RATE_LIMITED' ? `Too many requests: ${waitText(e)}.` : `Not done: ${e.message || e.code}`;
  });
}

const when = (ms) => (ms ? new Date(Number(ms)).toLocaleString() : '—');

function onDeviceList(d) {
  if (d.ref) requests.delete(d.ref);
  const ul = $('devices');
  ul.replaceChildren();
  ul.setAttribute('aria-busy', 'false');
  const list = d.devices || [];
  for (const dev of list) {
    const li = document.createElement('li');
    li.dataset.device = dev.name;
    if (dev.current) li.classList.add('current');
    const head = document.createElement('div');
    head.className = 'device-head';
    const name = document.createElement('strong');
    name.className = 'device-name';
    name.textContent = dev.name;
    head.append(name);
    const tag = document.createElement('span');
    tag.className = 'device-tag';
    tag.dataset.state = dev.current ? 'this' : dev.online ? 'online' : 'offline';
    tag.textContent = dev.current ? 'this device' : dev.online ? 'online' : 'offline';
    head.append(tag);
    li.append(head);
    const meta = document.createElement('span');
    meta.className = 'device-meta';
    meta.textContent = `signed in ${when(dev.created)} · last used ${when(dev.last_used)}`;
    li.append(meta);
    if (!dev.current) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'revoke';
      b.textContent = 'Sign out';
      b.setAttribute('aria-label', `Sign out ${dev.name}`);
      b.onclick = () => {
        b.disabled = true;
        loadDevices({ op: 'DEVICES_REVOKE', device: dev.name }, `Signing out ${dev.name}…`);
      };
      li.append(b);
    }
    ul.append(li);
  }
  const revoked = d.revoked || [];
  $('devices-status').textContent = revoked.length ? `Signed out: ${revoked.join(', ')}.` : '';
  $('revoke-others').disabled = !list.some((x) => !x.current);
  // Keep the keyboard focus in the dialog when the focused button went away.
  if (!document.activeElement || document.activeElement === document.body) $('settings-close').focus();
}

function openSettings() {
  const dlg = $('settings');
  if (!dlg.open) dlg.showModal();
  $('privacy').disabled = true;
  loadSettings();
  $('settings-close').focus();
}

// ---- rendering ----

function unread(c) { return Math.max(0, c.last_seq - c.read_seq); }

function render() {
  const ul = $('convs');
  ul.replaceChildren();
  const list = [...convs.values()].sort((a, b) => lastTs(b) - lastTs(a));
  for (const c of list) {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.conv = c.conv;
    b.setAttribute('aria-current', String(c.conv === current));
    const name = document.createElement('span');
    name.textContent = c.title;
    b.append(name);
    const n = unread(c);
    if (n && c.conv !== current) {
      const badge = document.createElement('span');
      badge.className = 'unread';
      badge.textContent = String(n);
      badge.setAttribute('aria-label', `${n} unread`);
      b.append(badge);
    }
    b.onclick = () => open(c.conv);
    li.append(b);
    ul.append(li);
  }
  renderMessages();
  renderHead();
}

function lastTs(c) {
  let t = 0;
  for (const m of c.msgs.values()) t = Math.max(t, m.server_ts || Date.now());
  return t;
}

function tick(c, m) {
  if (m.failed) return ['failed', `not sent (${m.failed})`];
  if (!m.seq) return ['pending', '🕓'];
  if (c.group) return ['sent', '✓'];
  if (c.peer_read >= m.seq) return ['read', '✓✓'];
  if (c.peer_delivered >= m.seq) return ['delivered', '✓✓'];
  return ['sent', '✓'];
}

function renderMessages() {
  const ol = $('messages');
  const c = current && convs.get(current);
  $('composer').hidden = !c;
  if (!c) { ol.replaceChildren(); return; }
  const atBottom = ol.scrollTop + ol.clientHeight >= ol.scrollHeight - 20;
  ol.replaceChildren();
  const msgs = [...c.msgs.values()].sort((a, b) => a.key.localeCompare(b.key));
  for (const m of msgs) {
    const li = document.createElement('li');
    li.className = m.event ? 'event' : m.mine ? 'mine' : 'theirs';
    li.dataset.seq = m.seq || '';
    if (!m.mine && !m.event && c.group) {
      const from = document.createElement('span');
      from.className = 'from';
      from.textContent = m.from;
      li.append(from);
    }
    if (m.media) li.append(mediaView(m.media));
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.text;
    li.append(text);
    if (m.mine) {
      const [status, mark] = tick(c, m);
      const t = document.createElement('span');
      t.className = 'meta tick';
      t.dataset.status = status;
      t.textContent = mark;
      t.setAttribute('aria-label', status);
      li.append(t);
    }
    ol.append(li);
  }
  if (atBottom) ol.scrollTop = ol.scrollHeight;
}

function renderHead() {
  const c = current && convs.get(current);
  $('chat-title').textContent = c ? c.title : 'Pick a conversation';
  let p = '';
  if (c && c.peer) {
    const s = presence.get(c.peer);
    if (s && s.visible) p = s.online ? 'online' : s.last_seen ? `last seen ${new Date(s.last_seen).toLocaleString()}` : '';
  }
  $('chat-presence').textContent = p;
  $('add-member').hidden = !(c && c.group);
  const t = c && typing.get(c.conv);
  $('chat-typing').textContent = t && t.until > Date.now() ? `${t.from} is typing…` : '';
}

// Presence is shown to a user's contacts (protocol.md 11.6): the people you
// chat with become contacts, which lets both sides see each other.
const contacts = new Set();
function befriend(peer) {
  if (contacts.has(peer)) return;
  contacts.add(peer);
  send({ type: 'contacts', ref: nextRef(), op: 'CONTACT_ADD', user: peer });
  send({ type: 'contacts', ref: nextRef(), op: 'CONTACT_LIST' }); // its answer renews the subscription
}

function open(id) {
  current = id;
  const c = convs.get(id);
  if (c && c.peer) {
    befriend(c.peer);
    send({ type: 'presence_get', ref: nextRef(), user: c.peer });
  }
  render();
  markReadIfOpen(c);
  render();
  $('composer-text').focus();
}

function showAuth(msg) {
  if ($('settings').open) $('settings').close();
  $('auth').hidden = false;
  $('app').hidden = true;
  $('auth-error').textContent = msg || '';
}
function showApp() {
  $('auth').hidden = true;
  $('app').hidden = false;
  $('me').textContent = me || '';
}

// ---- user actions ----

function sendText(c, text, media) {
  const id = crypto.randomUUID();
  const frame = { type: 'send', id, body: enc(text), client_ts: Date.now(), ...(c.group ? { group: c.group } : { to: c.peer }) };
  if (media) frame.media = { id: media.id };
  outbox.set(id, { conv: c.conv, text, media, frame });
  saveOutbox();
  addMsg(c, { mine: true, from: me, id, seq: 0, text, media, server_ts: Date.now() });
  send(frame);
  render();
}

// ---- images (docs/protocol.md 13) ----

const blobs = new Map(); // 'ID' or 'ID/thumb' -> Promise of an object URL, for the page's life
const authHeader = () => ({ Authorization: `Bearer ${ls.get('token')}` });

function mediaUrl(key) {
  if (!blobs.has(key)) {
    blobs.set(key, fetch(`/media/${key}`, { headers: authHeader() }).then((r) => {
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      return r.blob();
    }).then((b) => URL.createObjectURL(b)).catch((e) => { blobs.delete(key); throw e; }));
  }
  return blobs.get(key);
}

function mediaView(md) {
  if (!md.type.startsWith('image/')) { // a plain file: a download link
    const a = document.createElement('a');
    a.className = 'file';
    a.href = '#';
    a.textContent = `📎 ${md.name || 'file'} (${Math.ceil(Number(md.size) / 1024)} KB)`;
    a.onclick = async (e) => {
      e.preventDefault();
      a.href = await mediaUrl(md.id);
      a.download = md.name || 'file';
      a.onclick = null;
      a.click();
    };
    return a;
  }
  const img = document.createElement('img');
  img.className = 'thumb';
  img.alt = md.name || 'photo';
  img.width = md.thumb_width || 160; // the box keeps its size before the bytes come
  img.height = md.thumb_height || 120;
  img.dataset.media = md.id;
  mediaUrl(`${md.id}/thumb`).then((u) => { img.src = u; }).catch(() => { img.alt = 'photo unavailable'; });
  img.onclick = () => openViewer(md);
  return img;
}

async function openViewer(md) {
  const v = $('viewer'), img = $('viewer-img');
  img.removeAttribute('src');
  img.alt = md.name || 'photo';
  v.hidden = false;
  try { img.src = await mediaUrl(md.id); } catch { img.alt = 'photo unavailable'; }
}

function closeViewer() { $('viewer').hidden = true; }

async function sendImage(c, file, caption) {
  const err = $('composer-error');
  err.textContent = 'Uploading…';
  let r, body;
  try {
    r = await fetch(`/media?name=${encodeURIComponent(file.name)}`, { method: 'POST', headers: authHeader(), body: file });
    body = await r.json();
  } catch (e) {
    err.textContent = `Not sent: ${e.message}`;
    return;
  }
  if (r.status !== 201) {
    err.textContent = `Not sent: ${body.error || `HTTP ${r.status}`}`;
    return;
  }
  err.textContent = '';
  sendText(c, caption, body);
}

function wire() {
  $('auth-form').onsubmit = (e) => {
    e.preventDefault();
    const action = e.submitter && e.submitter.value === 'register' ? 'register' : 'login';
    pendingAuth = { type: action, user: $('auth-user').value.trim(), password: $('auth-password').value };
    $('auth-error').textContent = '';
    if (ws && ws.readyState === 1) ws.close(); // a fresh session for the new credentials
    else if (!ws) connect();
  };
  $('sign-out').onclick = () => {
    send({ type: 'logout' });
    ls.del('token'); ls.del('user'); ls.del('qid'); ls.del('outbox');
    outbox = new Map(); highwater = 0; me = null; current = null;
    dbClear(); convs.clear();
    showAuth('');
  };
  $('new-chat').onsubmit = (e) => {
    e.preventDefault();
    const peer = $('new-chat-user').value.trim().toLowerCase();
    if (!peer || peer === me) return;
    const c = conv(dmConv(me, peer));
    saveConv(c);
    $('new-chat-user').value = '';
    open(c.conv);
  };
  $('new-group').onsubmit = (e) => {
    e.preventDefault();
    const members = $('new-group-members').value.split(/[\s,]+/).map((u) => u.toLowerCase()).filter((u) => u && u !== me);
    const name = $('new-group-name').value.trim();
    $('new-group-error').textContent = '';
    request({ type: 'group_create', name, members }, (err) => {
      $('new-group-error').textContent = groupError(err, members);
      if (!$('new-group-name').value) { // give the form back to correct it
        $('new-group-name').value = name;
        $('new-group-members').value = members.join(', ');
      }
    }, () => { $('new-group-error').textContent = ''; });
    $('new-group-name').value = '';
    $('new-group-members').value = '';
  };
  $('add-member').onsubmit = (e) => {
    e.preventDefault();
    const c = current && convs.get(current), user = $('add-member-user').value.trim().toLowerCase();
    if (!c || !c.group || !user) return;
    $('composer-error').textContent = '';
    request({ type: 'group_update', group: c.group, op: 'GROUP_ADD', user }, (err) => {
      $('composer-error').textContent = err.code === 'ERR_FORBIDDEN' ? 'Only the group\'s admins can add members.' : groupError(err, [user]);
    }, () => { $('add-member-user').value = ''; });
  };
  $('open-settings').onclick = openSettings;
  $('settings-close').onclick = () => $('settings').close();
  $('settings').addEventListener('close', () => $('open-settings').focus());
  $('set-read-receipts').onchange = (e) => saveSetting({ read_receipts: e.target.checked ? 'TOGGLE_ON' : 'TOGGLE_OFF' });
  $('set-last-seen').onchange = (e) => saveSetting({ last_seen: e.target.value });
  $('set-group-add').onchange = (e) => saveSetting({ group_add: e.target.value });
  $('revoke-others').onclick = () => loadDevices({ op: 'DEVICES_REVOKE_OTHERS' }, 'Signing out the other devices…');
  $('composer').onsubmit = (e) => {
    e.preventDefault();
    const c = current && convs.get(current);
    const text = $('composer-text').value;
    if (!c || !text) return;
    $('composer-text').value = '';
    typingUntil = 0;
    sendText(c, text);
  };
  $('attach').onclick = () => $('attach-input').click();
  $('attach-input').onchange = () => {
    const c = current && convs.get(current), f = $('attach-input').files[0];
    $('attach-input').value = '';
    if (!c || !f) return;
    const caption = $('composer-text').value;
    $('composer-text').value = '';
    sendImage(c, f, caption);
  };
  $('viewer').onclick = closeViewer;
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeViewer(); });
  $('composer-text').oninput = () => {
    const c = current && convs.get(current);
    if (!c || Date.now() < typingUntil) return;
    typingUntil = Date.now() + 3000; // the server rate-limits typing; once per 3 s is plenty
    send({ type: 'typing', typing: true, ...(c.group ? { group: c.group } : { to: c.peer }) });
  };
  document.addEventListener('visibilitychange', () => { const c = current && convs.get(current); if (c) markReadIfOpen(c); render(); });
}

async function main() {
  wire();
  db = await openDb();
  if (ls.get('token') && me) {
    // History first, from the cache; the socket catches up behind it.
    for (const c of await dbAll('convs')) convs.set(c.conv, { ...c, msgs: new Map() });
    for (const m of await dbAll('messages')) conv(m.conv).msgs.set(m.key, m);
    for (const m of outbox.values()) addMsg(conv(m.conv), { mine: true, from: me, id: m.frame.id, seq: 0, text: m.text, media: m.media });
    showApp();
    render();
    connect();
  } else {
    showAuth('');
  }
}

main();
