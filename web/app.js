// Parley's browser client. The protocol (connection, sign-in, outbox, positions,
// acks, reconnects, uploads) is the SDK's, parley.mjs; this file keeps what
// the user sees: conversations and recent history in IndexedDB (shown before
// the socket is up), the screens, and the user's actions. No build step.
import { Parley, webStorage, dmConv, actOf, reactionCounts } from '/parley.mjs';
import { linkify, dayLabel, dayKey, timeLabel, listTime, sentence, eventText, roleName, EMOJI } from '/ui.mjs';

const $ = (id) => document.getElementById(id);
const KEEP = 200; // messages kept per conversation in the browser
const ls = webStorage(localStorage);
if (!ls.get('device')) ls.set('device', `web-${Math.random().toString(36).slice(2, 10)}`);
const sdk = new Parley({
  url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
  storage: ls,
  clientName: 'parley-web/2',
});

// ---- history in IndexedDB ----

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
function dbDel(store, key) {
  if (db) db.transaction(store, 'readwrite').objectStore(store).delete(key);
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

// ---- conversations ----

// conv -> { conv, title, peer, group, named, my_role, left, last_seq, read_seq,
//           peer_delivered, peer_read, last_ts, preview, msgs: Map key -> message }
const convs = new Map();
let current = null;
const me = () => sdk.user;

function conv(id, init = {}) {
  let c = convs.get(id);
  if (!c) {
    c = { conv: id, title: id, peer: null, group: null, last_seq: 0, read_seq: 0, peer_delivered: 0, peer_read: 0,
      last_ts: 0, preview: '', msgs: new Map() };
    if (id.startsWith('dm:')) {
      const [a, b] = id.slice(3).split(':');
      c.peer = a === me() ? b : a;
      c.title = c.peer;
    } else if (id.startsWith('g:')) {
      c.group = id.slice(2);
      c.title = 'New group'; // until its GroupInfo names it
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
function dropConv(c) {
  convs.delete(c.conv);
  dbDel('convs', c.conv);
  if (current === c.conv) current = null;
}

// A message's content in one line: its text, after what it carries.
const contentOf = (m) => (m.media ? `${m.media.type.startsWith('image/') ? '📷 Photo' : '📎 File'}${m.text ? `: ${m.text}` : ''}` : m.text);
function previewOf(c, m) {
  if (m.event) return m.text;
  const what = contentOf(m);
  if (m.mine) return `You: ${what}`;
  return c.group ? `${m.from}: ${what}` : what;
}

const msgKey = (c, m) => (m.seq ? `${c.conv}#${String(m.seq).padStart(12, '0')}` : `${c.conv}#~${m.id}`);
function addMsg(c, m) {
  const key = msgKey(c, m);
  if (m.seq && m.mine) c.msgs.delete(`${c.conv}#~${m.id}`); // the pending copy, now placed
  const stored = { ...m, key, conv: c.conv };
  c.msgs.set(key, stored);
  if (m.seq > c.last_seq) c.last_seq = m.seq;
  if (m.mine && m.seq > c.read_seq) c.read_seq = m.seq; // sending reads the conversation
  const ts = Number(m.server_ts) || Date.now();
  if (ts >= c.last_ts) { c.last_ts = ts; c.preview = previewOf(c, m); }
  if (m.seq) dbPut('messages', stored);
  while (c.msgs.size > KEEP) c.msgs.delete(c.msgs.keys().next().value);
}

// ---- what the SDK reports ----

sdk.on('state', (s) => {
  $('status').textContent = { connecting: 'connecting…', online: 'online', reconnecting: 'reconnecting…' }[s] || 'offline';
  renderComposer();
});

sdk.on('signed_out', (e) => { wipe(); showAuth(sentence(e)); });

sdk.on('auth', () => {
  showApp();
  sdk.unread().then(onUnread, () => {});
  sdk.contacts().then((l) => { contacts.clear(); for (const u of l.users || []) contacts.add(u); subscribe(); }, () => {});
  sdk.groupList().catch(() => {}); // each group comes as a 'group' event
  if ($('settings').open) loadSettings();
});

sdk.on('message', (m) => {
  const a = actOf(m);
  if (a.kind === 'delete_for_me') { hideForMe(a.targetConv, a.target); render(); return; }
  if (a.kind && a.kind !== 'timer') { onAct(conv(m.conv), m, a); return; }
  const c = conv(m.conv);
  if (m.group) c.group = m.group;
  if (m.event) onEvent(c, m.event);
  if (a.kind === 'timer') c.timer = a.timer;
  const text = m.event ? eventText(m.event) : a.kind === 'timer' ? timerText(m.from, a.timer) : m.text;
  addMsg(c, { mine: m.mine, from: m.from, id: m.id, seq: m.seq, text, media: m.media, event: !!m.event || a.kind === 'timer',
    server_ts: m.server_ts, replyTo: a.replyTo, forwarded: a.forwarded, vanishAt: a.vanishAt });
  saveConv(c);
  if (c.group && !c.named) nameGroup(c);
  if (c.conv === current && c.peer && !m.mine) sdk.presenceGet(c.peer).catch(() => {});
  // The list is redrawn whole, so it is no live region: new messages are told here.
  if (!m.mine) $('announce').textContent = m.event ? text : `${m.from}${c.group ? ` in ${c.title}` : ''}: ${text}`;
  markReadIfOpen(c);
  render();
});

// ---- message actions (protocol.md §11.9): each names an earlier message by seq ----

const TIMER_NAMES = { 0: 'off', 86400: '24 hours', 604800: '7 days', 7776000: '90 days' };
function timerText(from, s) {
  const who = from === me() ? 'You' : from;
  return s ? `${who} set disappearing messages to ${TIMER_NAMES[s] || `${s} s`}` : `${who} turned disappearing messages off`;
}
const targetOf = (c, seq) => c.msgs.get(msgKey(c, { seq }));

// Applies a reaction, edit or delete to its target (if this browser has it).
function applyAct(c, from, text, a, ts) {
  let t = targetOf(c, a.target);
  if (!t && a.kind === 'delete') { // a group's tombstone, or one deleted before it reached us
    addMsg(c, { from, seq: a.target, text: '', deleted: true, server_ts: ts, mine: from === me() });
    t = targetOf(c, a.target);
  }
  if (!t) return;
  if (a.kind === 'reaction') {
    t.reactions = { ...(t.reactions || {}) };
    if (text) t.reactions[from] = text; else delete t.reactions[from];
  } else if (a.kind === 'edit') {
    Object.assign(t, { text, edited: true });
  } else if (a.kind === 'delete') {
    Object.assign(t, { text: '', media: null, deleted: true, reactions: {}, edited: false });
  }
  if (t.seq) dbPut('messages', t);
}

function onAct(c, m, a) {
  applyAct(c, m.from, m.text, a, m.server_ts);
  const seq = Number(m.seq) || 0;
  c.last_seq = Math.max(c.last_seq, seq);
  if (m.mine) c.read_seq = Math.max(c.read_seq, seq);
  // Someone else's reaction, edit or delete takes a seq but is no new message: the unread
  // count leaves it out (the seqs kept are only those still unread).
  else if (seq > c.read_seq) c.actSeqs = [...(c.actSeqs || []).filter((s) => s > c.read_seq), seq].slice(-500);
  saveConv(c);
  markReadIfOpen(c);
  render();
}

function hideForMe(cid, seq) {
  const c = convs.get(cid), t = c && targetOf(c, seq);
  if (!t) return;
  c.msgs.delete(t.key);
  dbDel('messages', t.key);
}

// Disappearing messages leave every page at their vanish time.
function sweepVanished() {
  const now = sdk.serverNow();
  let gone = false;
  for (const c of convs.values()) {
    for (const m of [...c.msgs.values()]) {
      if (m.vanishAt && m.vanishAt <= now) { c.msgs.delete(m.key); dbDel('messages', m.key); gone = true; }
    }
  }
  if (gone) render();
}

// A membership change: names, and whether this user is still in the group.
function onEvent(c, e) {
  if ((e.type === 'GE_CREATED' || e.type === 'GE_RENAMED') && e.name) Object.assign(c, { title: e.name, named: true });
  if ((e.type === 'GE_REMOVED' || e.type === 'GE_LEFT') && e.user === me()) c.left = true;
  if (e.type === 'GE_ADDED' && e.user === me()) c.left = false;
  if ($('group-dialog').open && current === c.conv) loadGroup(c);
}

// Added to a group: its first entry names no one's group, so ask for its name.
const naming = new Set();
function nameGroup(c) {
  if (naming.has(c.group) || !sdk.authed) return;
  naming.add(c.group);
  sdk.groupUpdate(c.group, 'GROUP_INFO').catch(() => {}).finally(() => naming.delete(c.group));
}

sdk.on('group', (g) => {
  if (!g.group) return;
  const c = conv(`g:${g.group}`, { title: g.name || 'Group', named: true, my_role: g.my_role || 'ROLE_NONE' });
  c.left = c.my_role === 'ROLE_NONE';
  c.last_seq = Math.max(c.last_seq, Number(g.last_seq) || 0);
  if (!c.last_ts) c.last_ts = Date.now();
  saveConv(c);
  if (g.members && g.members.length && $('group-dialog').open && current === c.conv) renderMembers(c, g);
  render();
});

sdk.on('sent', (a) => {
  const c = conv(a.conv);
  const x = actOf(a);
  if (x.kind === 'delete_for_me') return;
  if (x.kind && x.kind !== 'timer') { // applied when it was sent
    c.last_seq = Math.max(c.last_seq, Number(a.seq) || 0);
    c.read_seq = Math.max(c.read_seq, Number(a.seq) || 0);
    saveConv(c);
    return;
  }
  if (x.kind === 'timer') c.timer = x.timer;
  addMsg(c, { mine: true, from: me(), id: a.id, seq: a.seq, text: x.kind === 'timer' ? timerText(me(), x.timer) : a.text,
    media: a.media, server_ts: a.server_ts, event: x.kind === 'timer', replyTo: x.replyTo, forwarded: x.forwarded,
    vanishAt: Number(a.vanish_at || 0) });
  saveConv(c);
  render();
});

sdk.on('send_failed', ({ id, conv: cid, error }) => {
  const c = convs.get(cid);
  if (!c) return;
  // A chat opened with someone who is not a user leaves nothing behind.
  if (error.code === 'ERR_UNKNOWN_PEER' && c.peer && ![...c.msgs.values()].some((m) => m.seq)) {
    dropConv(c);
    $('new-chat-error').textContent = sentence(error, [c.peer]);
    showList();
  } else {
    const m = c.msgs.get(`${cid}#~${id}`);
    if (m) m.failed = sentence(error);
    else $('composer-error').textContent = sentence(error); // an action: nothing of it was stored
  }
  render();
});

sdk.on('receipt', (r) => {
  const c = conv(r.conv);
  const seq = Number(r.seq) || 0;
  if (r.status === 'delivered') c.peer_delivered = Math.max(c.peer_delivered, seq);
  if (r.status === 'read') {
    c.peer_read = Math.max(c.peer_read, seq);
    c.peer_delivered = Math.max(c.peer_delivered, c.peer_read);
  }
  saveConv(c);
  render();
});

sdk.on('read_sync', (r) => {
  const c = conv(r.conv);
  c.read_seq = Math.max(c.read_seq, Number(r.seq) || 0);
  saveConv(c);
  render();
});

function onUnread(u) {
  for (const s of u.convs || []) {
    const c = conv(s.conv);
    c.last_seq = Math.max(c.last_seq, Number(s.last_seq) || 0);
    c.read_seq = Math.max(c.read_seq, Number(s.read_seq) || 0);
    c.peer_delivered = Math.max(c.peer_delivered, Number(s.peer_delivered) || 0);
    c.peer_read = Math.max(c.peer_read, Number(s.peer_read) || 0);
    saveConv(c);
  }
  render();
}

// ---- presence and typing ----

// Presence is shown to a user's contacts (protocol.md 11.6): the people you
// chat with become contacts, which lets both sides see each other.
const contacts = new Set();
const presence = new Map(); // user -> Presence
const followed = new Map(); // user -> visible when the subscription was made
const subRefs = new Set(); // refs of our PresenceSubscribes: their answers say what is followed
function subscribe() {
  const p = sdk.presenceSubscribe([...contacts]);
  subRefs.add(p.ref);
  p.catch(() => {});
}
function befriend(peer) {
  if (contacts.has(peer)) return;
  contacts.add(peer);
  sdk.contacts('CONTACT_ADD', peer).then(subscribe, () => {});
}
sdk.on('presence', (p) => {
  presence.set(p.user, p);
  if (subRefs.has(p.ref)) followed.set(p.user, !!p.visible);
  // Visibility is decided when subscribing (protocol.md 11.6): someone who has
  // just added us shows in a PresenceGet first; follow them again to get events.
  // Only a PresenceGet's answer may do so: were a subscription's own answers
  // to, two subscriptions in flight would keep making new ones.
  else if (p.ref && p.visible && contacts.has(p.user) && !followed.get(p.user)) subscribe();
  renderHead();
});

const typing = new Map(); // conv -> {from, until}
sdk.on('typing', (t) => {
  const ms = t.expires_ms || 6000;
  typing.set(t.conv, t.typing ? { from: t.from, until: Date.now() + ms } : null);
  renderHead();
  if (t.typing) setTimeout(renderHead, ms + 50);
});

function markReadIfOpen(c) {
  if (!c || !sdk.authed || current !== c.conv || document.hidden) return;
  const upto = c.last_seq;
  if (!upto || c.read_seq >= upto) return;
  c.read_seq = upto;
  saveConv(c);
  sdk.markRead(c.conv, upto).catch(() => {});
}

// ---- rendering ----

const unread = (c) => Math.max(0, c.last_seq - c.read_seq - (c.actSeqs || []).filter((s) => s > c.read_seq).length);
const byActivity = (a, b) => b.last_ts - a.last_ts || a.title.localeCompare(b.title);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render() {
  renderList();
  renderMessages();
  renderHead();
  renderComposer();
}

function renderList() {
  const ul = $('convs');
  ul.replaceChildren();
  for (const c of [...convs.values()].sort(byActivity)) {
    const b = el('button');
    b.type = 'button';
    b.dataset.conv = c.conv;
    b.setAttribute('aria-current', String(c.conv === current));
    const top = el('span', 'row1');
    top.append(el('span', 'name', c.title), el('span', 'when', listTime(c.last_ts)));
    const bottom = el('span', 'row2');
    bottom.append(el('span', 'preview', c.preview || ''));
    const n = unread(c);
    if (n && c.conv !== current) {
      const badge = el('span', 'unread', String(n));
      badge.setAttribute('aria-label', `${n} unread`);
      bottom.append(badge);
    }
    b.append(top, bottom);
    b.onclick = () => open(c.conv);
    const li = el('li');
    li.append(b);
    ul.append(li);
  }
}

function tick(c, m) {
  if (m.failed) return ['failed', '!'];
  if (!m.seq) return ['pending', '🕓'];
  if (c.group) return ['sent', '✓'];
  if (c.peer_read >= m.seq) return ['read', '✓✓'];
  if (c.peer_delivered >= m.seq) return ['delivered', '✓✓'];
  return ['sent', '✓'];
}

function quoteOf(c, m) {
  const t = targetOf(c, m.replyTo), q = el('blockquote', 'quote');
  q.append(el('span', 'from', t ? (t.mine ? 'You' : t.from) : ''),
    el('span', '', !t ? 'Message unavailable' : t.deleted ? 'This message was deleted' : (t.text || (t.media ? '📷 Photo' : '')).slice(0, 120)));
  return q;
}

function reactionsOf(m) {
  const box = el('span', 'reactions');
  for (const [r, n] of reactionCounts(m.reactions)) {
    const chip = el('span', 'reaction', n > 1 ? `${r} ${n}` : r);
    chip.setAttribute('aria-label', `${r} from ${n} ${n === 1 ? 'person' : 'people'}`);
    box.append(chip);
  }
  return box;
}

let menuFor = null; // the key of the message whose menu is open
let composing = null; // {mode: 'reply' | 'edit', seq, conv}
const QUICK = ['👍', '❤️', '😂', '😮', '😢', '🙏'];

function menuButton(label, fn, cls = '') {
  const b = el('button', `plain ${cls}`.trim(), label);
  b.type = 'button';
  b.onclick = () => { menuFor = null; fn(); render(); };
  return b;
}

// Reply, react, forward, edit, delete from a message's menu.
function messageMenu(c, m) {
  const menu = el('div', 'msg-menu');
  menu.setAttribute('role', 'group');
  menu.setAttribute('aria-label', 'Message actions');
  if (!m.deleted) {
    menu.append(menuButton('Reply', () => startComposing(c, 'reply', m)));
    for (const r of QUICK) {
      const mine = (m.reactions || {})[me()] === r;
      const b = menuButton(r, () => act(c, m, 'react', mine ? '' : r), 'react');
      b.setAttribute('aria-label', mine ? `Take back ${r}` : `React ${r}`);
      b.setAttribute('aria-pressed', String(mine));
      menu.append(b);
    }
    menu.append(menuButton('Forward…', () => openForward(c, m)));
    if (m.mine && !m.media) menu.append(menuButton('Edit', () => startComposing(c, 'edit', m)));
    if (m.mine || c.my_role === 'ROLE_ADMIN' || c.my_role === 'ROLE_OWNER') {
      menu.append(menuButton('Delete for everyone', () => act(c, m, 'delete'), 'danger'));
    }
  }
  menu.append(menuButton('Delete for me', () => act(c, m, 'delete_for_me')));
  return menu;
}

function messageItem(c, m) {
  const li = el('li', m.event ? 'event' : m.mine ? 'mine' : 'theirs');
  li.dataset.seq = m.seq || '';
  li.dataset.key = m.key;
  if (!m.mine && !m.event && c.group) li.append(el('span', 'from', m.from));
  if (m.forwarded && !m.deleted) li.append(el('span', 'fwd', 'Forwarded'));
  if (m.replyTo && !m.deleted) li.append(quoteOf(c, m));
  if (m.media && !m.deleted) li.append(mediaView(m.media));
  const text = el('span', m.deleted ? 'text deleted' : 'text');
  text.append(m.deleted ? 'This message was deleted' : linkify(m.text || ''));
  li.append(text);
  if (m.event) return li;
  if (m.reactions && Object.keys(m.reactions).length) li.append(reactionsOf(m));
  if (m.seq) {
    const more = el('button', 'plain more', '⋯');
    more.type = 'button';
    more.setAttribute('aria-label', 'Message actions');
    more.setAttribute('aria-expanded', String(menuFor === m.key));
    more.onclick = () => { menuFor = menuFor === m.key ? null : m.key; render(); };
    li.append(more);
    if (menuFor === m.key) li.append(messageMenu(c, m));
  }
  const meta = el('span', 'meta');
  if (m.edited && !m.deleted) meta.append(el('span', 'edited', 'edited'), ' ');
  const t = el('time', '', m.server_ts ? timeLabel(m.server_ts) : '');
  if (m.server_ts) t.dateTime = new Date(Number(m.server_ts)).toISOString();
  meta.append(t);
  if (m.mine) {
    const [status, mark] = tick(c, m);
    const k = el('span', 'tick', mark);
    k.dataset.status = status;
    k.setAttribute('aria-label', status);
    meta.append(' ', k);
  }
  li.append(meta);
  if (m.failed) li.append(el('span', 'failed', `Not sent: ${m.failed}`));
  return li;
}

function renderMessages() {
  const ol = $('messages');
  const c = current && convs.get(current);
  if (!c) { ol.replaceChildren(); return; }
  const atBottom = ol.scrollTop + ol.clientHeight >= ol.scrollHeight - 20;
  ol.replaceChildren();
  let day = null;
  for (const m of [...c.msgs.values()].sort((a, b) => a.key.localeCompare(b.key))) {
    const ts = m.server_ts || Date.now();
    if (dayKey(ts) !== day) {
      day = dayKey(ts);
      const sep = el('li', 'day');
      sep.setAttribute('role', 'separator');
      sep.append(el('span', '', dayLabel(ts)));
      ol.append(sep);
    }
    ol.append(messageItem(c, m));
  }
  if (atBottom) ol.scrollTop = ol.scrollHeight;
}

function renderHead() {
  const c = current && convs.get(current);
  $('chat-title').textContent = c ? c.title : 'Pick a conversation';
  let p = '';
  if (c && c.peer) {
    const s = presence.get(c.peer);
    if (s && s.visible) p = s.online ? 'online' : s.last_seen ? `last seen ${new Date(Number(s.last_seen)).toLocaleString()}` : '';
  }
  $('chat-presence').textContent = p;
  $('open-group').hidden = !(c && c.group);
  const t = c && typing.get(c.conv);
  $('chat-typing').textContent = t && t.until > Date.now() ? `${t.from} is typing…` : '';
}

function renderComposer() {
  const c = current && convs.get(current);
  $('composer').hidden = !c || !!c.left;
  const k = composing && c && composing.conv === c.conv ? composing : null;
  $('composer-context').hidden = !k;
  if (k) {
    const t = targetOf(c, k.seq);
    $('composer-context-text').textContent = `${k.mode === 'edit' ? 'Editing' : `Replying to ${t && !t.mine ? t.from : 'yourself'}`}: ${t ? t.text : ''}`;
  }
  $('disappear').hidden = !c || !!c.left;
  if (c) $('disappear').value = String(c.timer || 0);
}

function startComposing(c, mode, m) {
  composing = { mode, seq: m.seq, conv: c.conv };
  if (mode === 'edit') $('composer-text').value = m.text;
  $('composer-text').focus();
}

// A reaction, delete or delete-for-me from the menu: applied here at once (this
// device does not receive its own 1:1 actions); a refusal shows as an error.
function act(c, m, what, reaction = '') {
  $('composer-error').textContent = '';
  if (what === 'react') {
    sdk.react(c.conv, m.seq, reaction);
    applyAct(c, me(), reaction, { kind: 'reaction', target: m.seq });
  } else if (what === 'delete') {
    sdk.deleteForEveryone(c.conv, m.seq);
    applyAct(c, me(), '', { kind: 'delete', target: m.seq });
  } else {
    sdk.deleteForMe(c.conv, m.seq);
    hideForMe(c.conv, m.seq);
  }
}

// ---- forwarding (protocol.md §11.9): the text and the photo, sent on marked forwarded ----

let forwarding = null; // {c, m}: the message the forward dialog is about

function openForward(c, m) {
  forwarding = { c, m };
  $('forward-what').textContent = `${m.mine ? 'Your message' : `${m.from}'s message`}: ${contentOf(m).slice(0, 200)}`;
  const ul = $('forward-list');
  ul.replaceChildren();
  for (const t of [...convs.values()].filter((x) => !x.left).sort(byActivity)) {
    const b = el('button', '', t.title);
    b.type = 'button';
    b.dataset.conv = t.conv;
    b.setAttribute('aria-label', `Forward to ${t.title}${t.group ? ' (group)' : ''}`);
    b.onclick = () => forwardTo(t);
    const li = el('li');
    li.append(b);
    ul.append(li);
  }
  $('forward-dialog').showModal();
  (ul.querySelector('button') || $('forward-close')).focus();
}

// Sends the text (and the media, by the id this user may use) to t, shows it
// there at once, and opens t: the forward is seen where it went.
function forwardTo(t) {
  const { m } = forwarding;
  forwarding = null;
  $('forward-dialog').close();
  const media = m.media || undefined;
  const e = sdk.forward(t.conv, m.text || '', media);
  addMsg(t, { mine: true, from: me(), id: e.id, seq: 0, text: m.text || '', media, server_ts: Date.now(), forwarded: true });
  saveConv(t);
  open(t.conv);
}

function wireForward() {
  $('forward-close').onclick = () => $('forward-dialog').close();
  $('forward-dialog').addEventListener('close', () => {
    if (!forwarding) return; // closed by a choice: the target is open
    const { m } = forwarding;
    forwarding = null;
    const more = $('messages').querySelector(`li[data-key="${CSS.escape(m.key)}"] button.more`);
    (more || $('composer-text')).focus();
  });
}

// ---- moving around ----

function open(id) {
  current = id;
  const c = convs.get(id);
  $('app').dataset.view = 'chat';
  $('composer-error').textContent = '';
  if (c && c.peer) {
    befriend(c.peer);
    sdk.presenceGet(c.peer).catch(() => {});
  }
  render();
  markReadIfOpen(c);
  render();
  const ol = $('messages');
  ol.scrollTop = ol.scrollHeight;
  if (!$('composer').hidden) $('composer-text').focus();
}

function showList() {
  $('app').dataset.view = 'list';
  render();
}

function showAuth(msg) {
  for (const d of ['settings', 'group-dialog', 'forward-dialog']) if ($(d).open) $(d).close();
  $('auth').hidden = false;
  $('app').hidden = true;
  $('auth-error').textContent = msg || '';
}
function showApp() {
  $('auth').hidden = true;
  $('app').hidden = false;
  $('me').textContent = me() || '';
}

// Forgets this browser's copy of the account.
function wipe() {
  current = null;
  $('app').dataset.view = 'list';
  dbClear();
  convs.clear();
  contacts.clear();
  presence.clear();
}

// ---- search in the cached history ----

function search(q) {
  const res = $('results');
  $('convs').hidden = !!q;
  res.hidden = !q;
  res.replaceChildren();
  if (!q) return;
  const needle = q.toLowerCase();
  const hits = [];
  for (const c of convs.values()) {
    for (const m of c.msgs.values()) if (!m.event && (m.text || '').toLowerCase().includes(needle)) hits.push([c, m]);
  }
  hits.sort((a, b) => (b[1].server_ts || 0) - (a[1].server_ts || 0));
  if (!hits.length) res.append(el('li', 'none', `No message has “${q}”.`));
  for (const [c, m] of hits.slice(0, 50)) {
    const b = el('button');
    b.type = 'button';
    b.dataset.conv = c.conv;
    const top = el('span', 'row1');
    top.append(el('span', 'name', c.title), el('span', 'when', listTime(m.server_ts)));
    const i = m.text.toLowerCase().indexOf(needle);
    const snip = el('span', 'preview');
    snip.append(`${m.mine ? 'You: ' : ''}${m.text.slice(Math.max(0, i - 30), i)}`, el('mark', '', m.text.slice(i, i + q.length)),
      m.text.slice(i + q.length, i + q.length + 60));
    b.append(top, snip);
    b.onclick = () => {
      $('search').value = '';
      search('');
      open(c.conv);
      const li = $('messages').querySelector(`li[data-key="${CSS.escape(m.key)}"]`);
      if (li) { li.classList.add('found'); li.scrollIntoView({ block: 'center' }); }
    };
    const li = el('li');
    li.append(b);
    res.append(li);
  }
}

// ---- groups: members, roles, rename, leave ----

function openGroup() {
  const c = current && convs.get(current);
  if (!c || !c.group) return;
  $('group-dialog-title').textContent = c.title;
  $('group-rename-name').value = c.title;
  $('group-error').textContent = $('group-status').textContent = '';
  $('group-leave').textContent = 'Leave the group';
  delete $('group-leave').dataset.armed;
  $('group-members').replaceChildren();
  $('group-members').setAttribute('aria-busy', 'true');
  if (!$('group-dialog').open) $('group-dialog').showModal();
  loadGroup(c);
}

function loadGroup(c) {
  sdk.groupUpdate(c.group, 'GROUP_INFO').then((g) => renderMembers(c, g), groupFailed);
}

function groupFailed(e, who = []) { $('group-error').textContent = sentence(e, who); }

// What each member row offers depends on the asker's role (protocol.md 11.8).
function renderMembers(c, g) {
  const mine = g.my_role || 'ROLE_NONE', admin = mine === 'ROLE_ADMIN' || mine === 'ROLE_OWNER';
  $('group-dialog-title').textContent = g.name || c.title;
  $('group-rename').hidden = $('add-member').hidden = !admin;
  $('group-leave').hidden = mine === 'ROLE_NONE';
  const ul = $('group-members');
  ul.replaceChildren();
  ul.setAttribute('aria-busy', 'false');
  for (const m of g.members || []) {
    const li = el('li');
    li.dataset.user = m.user;
    li.append(el('span', 'member-name', m.user === me() ? `${m.user} (you)` : m.user), el('span', 'device-tag', roleName(m.role)));
    const act = (label, fn) => {
      const b = el('button', 'small', label);
      b.type = 'button';
      b.setAttribute('aria-label', `${label}: ${m.user}`);
      b.onclick = fn;
      li.append(b);
    };
    const role = m.role || 'ROLE_MEMBER';
    if (m.user !== me() && mine === 'ROLE_OWNER' && role !== 'ROLE_OWNER') {
      const to = role === 'ROLE_ADMIN' ? 'ROLE_MEMBER' : 'ROLE_ADMIN';
      act(to === 'ROLE_ADMIN' ? 'Make admin' : 'Make member', () => groupOp(c, 'GROUP_SET_ROLE', { user: m.user, role: to }, [m.user]));
    }
    if (m.user !== me() && (mine === 'ROLE_OWNER' || (mine === 'ROLE_ADMIN' && role === 'ROLE_MEMBER'))) {
      act('Remove', () => groupOp(c, 'GROUP_REMOVE', { user: m.user }, [m.user]));
    }
    ul.append(li);
  }
  $('group-status').textContent = `${g.member_count || (g.members || []).length} members`;
}

function groupOp(c, op, args, who) {
  $('group-error').textContent = '';
  return sdk.groupUpdate(c.group, op, args).then((g) => { renderMembers(c, g); return g; }, (e) => { groupFailed(e, who); return null; });
}

// ---- settings and devices (protocol.md 4: Settings, 7.7 Devices) ----

function loadSettings() {
  if (!sdk.authed) { // the next AuthOk loads them if the dialog is still open
    $('settings-status').textContent = 'Waiting for the connection…';
    $('devices-status').textContent = '';
    return;
  }
  $('settings-status').textContent = 'Loading…';
  sdk.settings().then((st) => { showSettings(st); $('settings-status').textContent = ''; },
    (e) => { $('settings-status').textContent = `Could not load the settings: ${sentence(e)}`; });
  loadDevices(sdk.devices(), 'Loading…');
}

function showSettings(st) {
  $('set-read-receipts').checked = !!st.read_receipts;
  $('set-last-seen').value = st.last_seen || 'LAST_SEEN_CONTACTS';
  $('set-group-add').value = st.group_add || 'GROUP_ADD_EVERYONE';
  $('privacy').disabled = false;
}

function saveSetting(change) {
  const s = $('settings-status');
  s.textContent = 'Saving…';
  sdk.settings(change).then((st) => { showSettings(st); s.textContent = 'Saved.'; }, (e) => {
    s.textContent = `Not saved: ${sentence(e)}`;
    sdk.settings().then(showSettings, () => {}); // show what is in force
  });
}

function loadDevices(req, note) {
  $('devices-status').textContent = note;
  $('devices').setAttribute('aria-busy', 'true');
  req.then(showDevices, (e) => {
    $('devices').setAttribute('aria-busy', 'false');
    for (const b of $('devices').querySelectorAll('button')) b.disabled = false; // nothing changed: try again
    $('devices-status').textContent = sentence(e);
  });
}

const when = (ms) => (ms ? new Date(Number(ms)).toLocaleString() : '—');

function showDevices(d) {
  const ul = $('devices');
  ul.replaceChildren();
  ul.setAttribute('aria-busy', 'false');
  const list = d.devices || [];
  for (const dev of list) {
    const li = el('li');
    li.dataset.device = dev.name;
    if (dev.current) li.classList.add('current');
    const head = el('div', 'device-head');
    const tag = el('span', 'device-tag', dev.current ? 'this device' : dev.online ? 'online' : 'offline');
    tag.dataset.state = dev.current ? 'this' : dev.online ? 'online' : 'offline';
    head.append(el('strong', 'device-name', dev.name), tag);
    li.append(head, el('span', 'device-meta', `signed in ${when(dev.created)} · last used ${when(dev.last_used)}`));
    if (!dev.current) {
      const b = el('button', 'revoke', 'Sign out');
      b.type = 'button';
      b.setAttribute('aria-label', `Sign out ${dev.name}`);
      b.onclick = () => { b.disabled = true; loadDevices(sdk.devices('DEVICES_REVOKE', dev.name), `Signing out ${dev.name}…`); };
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

// ---- photos (docs/protocol.md 13) ----

const blobs = new Map(); // 'ID' or 'ID/thumb' -> Promise of an object URL, for the page's life
function mediaUrl(id, thumb = false) {
  const key = thumb ? `${id}/thumb` : id;
  if (!blobs.has(key)) {
    blobs.set(key, sdk.download(id, { thumb }).then((b) => URL.createObjectURL(b))
      .catch((e) => { blobs.delete(key); throw e; }));
  }
  return blobs.get(key);
}

function mediaView(md) {
  if (!md.type.startsWith('image/')) { // a plain file: a download link
    const a = el('a', 'file', `📎 ${md.name || 'file'} (${Math.ceil(Number(md.size) / 1024)} KB)`);
    a.href = '#';
    a.onclick = async (e) => {
      e.preventDefault();
      a.href = await mediaUrl(md.id);
      a.download = md.name || 'file';
      a.onclick = null;
      a.click();
    };
    return a;
  }
  const img = el('img', 'thumb');
  img.alt = md.name || 'photo';
  img.width = md.thumb_width || 160; // the box keeps its size before the bytes come
  img.height = md.thumb_height || 120;
  img.dataset.media = md.id;
  img.tabIndex = 0;
  mediaUrl(md.id, true).then((u) => { img.src = u; }).catch(() => { img.alt = 'photo unavailable'; });
  img.onclick = () => openViewer(md);
  img.onkeydown = (e) => { if (e.key === 'Enter') openViewer(md); };
  return img;
}

async function openViewer(md) {
  const v = $('viewer'), img = $('viewer-img');
  img.removeAttribute('src');
  img.alt = md.name || 'photo';
  v.hidden = false;
  try { img.src = await mediaUrl(md.id); } catch { img.alt = 'photo unavailable'; }
}

async function sendImage(c, file, caption) {
  const err = $('composer-error');
  err.textContent = 'Uploading…';
  let media;
  try {
    media = await sdk.upload(file, { name: file.name });
  } catch (e) {
    err.textContent = `Not sent: ${e.message}`;
    return;
  }
  err.textContent = '';
  sendText(c, caption, media);
}

// ---- user actions ----

function sendText(c, text, media) {
  const k = composing && composing.conv === c.conv ? composing : null;
  composing = null;
  if (k && k.mode === 'edit') {
    sdk.edit(c.conv, k.seq, text);
    applyAct(c, me(), text, { kind: 'edit', target: k.seq });
    render();
    return;
  }
  const e = k ? sdk.reply(c.conv, k.seq, text, media) : sdk.sendMessage({ conv: c.conv, text, media });
  addMsg(c, { mine: true, from: me(), id: e.id, seq: 0, text, media, server_ts: Date.now(), replyTo: k ? k.seq : 0 });
  saveConv(c);
  render();
}

function emojiPicker() {
  const box = $('emoji-picker');
  for (const e of EMOJI) {
    const b = el('button', 'plain', e);
    b.type = 'button';
    b.setAttribute('aria-label', `Insert ${e}`);
    b.onclick = () => {
      const t = $('composer-text'), at = t.selectionStart ?? t.value.length;
      t.setRangeText(e, at, t.selectionEnd ?? at, 'end');
      toggleEmoji(false);
      t.focus();
    };
    box.append(b);
  }
}
function toggleEmoji(show = $('emoji-picker').hidden) {
  $('emoji-picker').hidden = !show;
  $('emoji').setAttribute('aria-expanded', String(show));
  if (show) $('emoji-picker').querySelector('button').focus();
}

async function newChat(e) {
  e.preventDefault();
  const peer = $('new-chat-user').value.trim().toLowerCase();
  const err = $('new-chat-error');
  err.textContent = '';
  if (!peer) return;
  const id = dmConv(me(), peer);
  if (!convs.has(id)) {
    try {
      await sdk.presenceGet(peer); // UNKNOWN_PEER for a name nobody has
    } catch (x) {
      err.textContent = sentence(x, [peer]);
      return;
    }
    saveConv(conv(id, { last_ts: Date.now() }));
  }
  $('new-chat-user').value = '';
  open(id);
}

function newGroup(e) {
  e.preventDefault();
  const members = $('new-group-members').value.split(/[\s,]+/).map((u) => u.toLowerCase()).filter((u) => u && u !== me());
  const name = $('new-group-name').value.trim();
  $('new-group-error').textContent = '';
  sdk.groupCreate(name, members).then(() => { $('new-group-box').open = false; }, (x) => {
    $('new-group-error').textContent = sentence(x, members);
    if (!$('new-group-name').value) { // give the form back to correct it
      $('new-group-name').value = name;
      $('new-group-members').value = members.join(', ');
    }
  });
  $('new-group-name').value = '';
  $('new-group-members').value = '';
}

function wireGroup() {
  $('open-group').onclick = openGroup;
  $('group-close').onclick = () => $('group-dialog').close();
  $('group-dialog').addEventListener('close', () => $('open-group').focus());
  $('add-member').onsubmit = (e) => {
    e.preventDefault();
    const c = current && convs.get(current), user = $('add-member-user').value.trim().toLowerCase();
    if (!c || !c.group || !user) return;
    groupOp(c, 'GROUP_ADD', { user }, [user]).then((g) => { if (g) $('add-member-user').value = ''; });
  };
  $('group-rename').onsubmit = (e) => {
    e.preventDefault();
    const c = current && convs.get(current), name = $('group-rename-name').value.trim();
    if (c && name) groupOp(c, 'GROUP_RENAME', { name }, []);
  };
  $('group-leave').onclick = () => { // twice: leaving is not undone by the leaver
    const b = $('group-leave'), c = current && convs.get(current);
    if (!b.dataset.armed) { b.dataset.armed = '1'; b.textContent = 'Leave: click again to confirm'; return; }
    groupOp(c, 'GROUP_LEAVE', {}, []).then((g) => { if (g) { c.left = true; saveConv(c); $('group-dialog').close(); render(); } });
  };
}

function wire() {
  $('auth-form').onsubmit = (e) => {
    e.preventDefault();
    const register = e.submitter && e.submitter.value === 'register';
    const user = $('auth-user').value.trim();
    $('auth-error').textContent = '';
    if (me() && me() !== user) wipe();
    const invite = $('auth-invite').value.trim();
    (register ? sdk.register(user, $('auth-password').value, invite) : sdk.login(user, $('auth-password').value))
      .catch((x) => { if (x.code !== 'ERR_CANCELLED') showAuth(sentence(x)); });
  };
  $('sign-out').onclick = () => { sdk.logout(); wipe(); showAuth(''); };
  $('new-chat').onsubmit = newChat;
  $('new-group').onsubmit = newGroup;
  $('search').oninput = () => search($('search').value.trim());
  $('back').onclick = showList;
  wireGroup();
  wireForward();
  $('open-settings').onclick = openSettings;
  $('settings-close').onclick = () => $('settings').close();
  $('settings').addEventListener('close', () => $('open-settings').focus());
  $('set-read-receipts').onchange = (e) => saveSetting({ read_receipts: e.target.checked ? 'TOGGLE_ON' : 'TOGGLE_OFF' });
  $('set-last-seen').onchange = (e) => saveSetting({ last_seen: e.target.value });
  $('set-group-add').onchange = (e) => saveSetting({ group_add: e.target.value });
  $('revoke-others').onclick = () => loadDevices(sdk.devices('DEVICES_REVOKE_OTHERS'), 'Signing out the other devices…');
  $('composer').onsubmit = (e) => {
    e.preventDefault();
    const c = current && convs.get(current);
    const text = $('composer-text').value;
    if (!c || !text) return;
    $('composer-text').value = '';
    sendText(c, text);
  };
  $('emoji').onclick = () => toggleEmoji();
  $('composer-cancel').onclick = () => { composing = null; $('composer-text').value = ''; render(); };
  $('disappear').onchange = (e) => {
    const c = current && convs.get(current);
    if (!c) return;
    $('composer-error').textContent = '';
    sdk.setDisappearing(c.conv, Number(e.target.value));
  };
  setInterval(sweepVanished, 500);
  $('attach').onclick = () => $('attach-input').click();
  $('attach-input').onchange = () => {
    const c = current && convs.get(current), f = $('attach-input').files[0];
    $('attach-input').value = '';
    if (!c || !f) return;
    const caption = $('composer-text').value;
    $('composer-text').value = '';
    sendImage(c, f, caption);
  };
  $('viewer').onclick = () => { $('viewer').hidden = true; };
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    $('viewer').hidden = true;
    if (!$('emoji-picker').hidden) { toggleEmoji(false); $('emoji').focus(); }
    if (menuFor) { menuFor = null; render(); }
    if (composing) { composing = null; render(); }
  });
  $('composer-text').oninput = () => { if (current && $('composer-text').value) sdk.typing(current); };
  document.addEventListener('visibilitychange', () => { markReadIfOpen(current && convs.get(current)); render(); });
}

async function main() {
  wire();
  emojiPicker();
  db = await openDb();
  if (sdk.token && me()) {
    // History first, from the cache; the socket catches up behind it.
    for (const c of await dbAll('convs')) convs.set(c.conv, { ...c, msgs: new Map() });
    for (const m of await dbAll('messages')) conv(m.conv).msgs.set(m.key, m);
    for (const e of sdk.outbox.values()) {
      const a = actOf(e.frame);
      if (!a.kind) {
        addMsg(conv(e.conv), { mine: true, from: me(), id: e.id, seq: 0, text: e.text, media: e.media, replyTo: a.replyTo,
          forwarded: a.forwarded });
      }
    }
    showApp();
    render();
    sdk.resume().catch(() => {}); // a refused token comes as 'signed_out'
  } else {
    showAuth('');
  }
}

main();
