// The browser client's pure helpers: text to safe DOM (links), dates for the
// message list, errors as sentences, group events as sentences, the emoji set.
// No state and no protocol: app.js owns those (through parley.mjs).

// Only these schemes ever become links: never javascript:, data: or others.
const URL_RE = /\b(?:https?:\/\/|www\.)[^\s<>"]+/gi;
const TRAIL = /[.,:;!?'")\]}]+$/; // punctuation after a link belongs to the sentence

/** The text as nodes, with web addresses as links that open apart (rel=noopener). */
export function linkify(text) {
  const frag = document.createDocumentFragment();
  let at = 0;
  for (const m of text.matchAll(URL_RE)) {
    const raw = m[0].replace(TRAIL, '');
    let url;
    try { url = new URL(raw.startsWith('www.') ? `https://${raw}` : raw); } catch { continue; }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') continue;
    frag.append(text.slice(at, m.index));
    const a = document.createElement('a');
    a.href = url.href;
    a.textContent = raw;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    frag.append(a);
    at = m.index + raw.length;
  }
  frag.append(text.slice(at));
  return frag;
}

const sameDay = (a, b) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth()
  && a.getDate() === b.getDate();

/** "Today", "Yesterday", a weekday within a week, else the date. */
export function dayLabel(ms, now = new Date()) {
  const d = new Date(Number(ms));
  if (sameDay(d, now)) return 'Today';
  const y = new Date(now);
  y.setDate(now.getDate() - 1);
  if (sameDay(d, y)) return 'Yesterday';
  if (now - d < 6 * 86400000 && d < now) return d.toLocaleDateString(undefined, { weekday: 'long' });
  return d.toLocaleDateString(undefined, { day: 'numeric', month: 'long', year: 'numeric' });
}

export const dayKey = (ms) => { const d = new Date(Number(ms)); return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`; };
export const timeLabel = (ms) => new Date(Number(ms)).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });

/** For the conversation list: the time today, else the day. */
export function listTime(ms, now = new Date()) {
  if (!ms) return '';
  const d = new Date(Number(ms));
  return sameDay(d, now) ? timeLabel(ms) : d.toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
}

const wait = (e) => `try again in ${Math.ceil((e.retry_after_ms || 1000) / 1000)} s`;
const names = (list) => (list.length < 2 ? list.join('')
  : `${list.slice(0, -1).join(', ')} or ${list[list.length - 1]}`);

/** An error (a ParleyError or an Error frame) as a sentence; who: the users it was about. */
export function sentence(e, who = []) {
  const one = who.length === 1 ? who[0] : null;
  switch (e.code) {
    case 'ERR_UNKNOWN_PEER': return one ? `There is no user ${one}.` : `One of ${names(who)} is not a user you can add.`;
    case 'ERR_NOT_ALLOWED':
      return one ? `${one} does not allow being added to groups by you.`
        : `One of ${names(who)} does not allow being added to groups by you. Create the group without them, or ask them to add you to their contacts.`;
    case 'ERR_BLOCKED': return 'This person does not take messages from you.';
    case 'ERR_FILTERED': return 'The server refused this message because of a word in it.';
    case 'ERR_MESSAGE_TOO_LARGE': return 'The message is too long.';
    case 'ERR_NOT_MEMBER': return 'You are not a member of this group any more.';
    case 'ERR_FORBIDDEN': return 'Only the group\'s admins can do that.';
    case 'ERR_GROUP_FULL': return 'The group would have too many members.';
    case 'ERR_QUEUE_FULL': return 'The recipient has too many unread messages; it will be sent later.';
    case 'ERR_RATE_LIMITED': return `Too many requests: ${wait(e)}.`;
    case 'ERR_BAD_CREDENTIALS': return 'Wrong user name or password.';
    case 'ERR_USER_EXISTS': return 'That user name is taken: pick another one, or sign in.';
    case 'ERR_INVITE_REQUIRED': return 'This server signs up only with an invite code: enter yours and sign up again.';
    case 'ERR_INVITE_INVALID': return 'That invite code is unknown, used up or expired.';
    case 'ERR_REGISTRATION_CLOSED': return 'Sign-up is closed on this server: ask its operator for an account.';
    case 'ERR_ACCOUNT_DISABLED': return 'This account is disabled.';
    case 'ERR_MAINTENANCE': return 'The server is down for maintenance: try again in a moment.';
    case 'ERR_TOO_MANY_DEVICES': return 'Too many devices are signed in: sign one out first.';
    case 'ERR_BAD_TOKEN': return 'You were signed out: please sign in again.';
    case 'ERR_OFFLINE': return 'Not connected: try again when online.';
    case 'ERR_INTERNAL': case 'ERR_SHUTTING_DOWN': case 'ERR_STORAGE_FULL':
      return 'The server could not do it just now: try again in a moment.';
    case 'ERR_INVALID_ARGUMENT': return `The server refused it: ${e.message || 'invalid input'}.`;
    case 'ERR_UNKNOWN_MEDIA': return 'That photo or file is no longer on the server.';
    case 'ERR_NO_TARGET': return 'That message is no longer there.';
    case 'ERR_WINDOW_CLOSED': return 'It is too late to change that message.';
    case 'ERR_NOT_AUTHOR': return 'Only its sender can change that message.';
    default: return `Not done: ${e.message || e.code}.`;
  }
}

/** A group's membership change as a sentence. */
export function eventText(e) {
  const who = e.user || e.actor;
  switch (e.type) {
    case 'GE_CREATED': return `${e.actor} created the group ${e.name || ''}`.trim();
    case 'GE_ADDED': return `${e.actor} added ${e.user}`;
    case 'GE_REMOVED': return `${e.actor} removed ${e.user}`;
    case 'GE_LEFT': return `${who} left`;
    case 'GE_RENAMED': return `${e.actor} renamed the group to ${e.name}`;
    case 'GE_ROLE': return `${e.user} is now ${roleName(e.role).toLowerCase()}`;
    default: return `${who}: ${e.type}`;
  }
}

export const roleName = (r) => ({ ROLE_OWNER: 'Owner', ROLE_ADMIN: 'Admin', ROLE_MEMBER: 'Member' })[r] || 'Member';

export const EMOJI = ['😀', '😂', '😊', '😍', '😘', '😎', '🤔', '😮', '😢', '😡', '👍', '👎', '👏', '🙏', '💪',
  '👋', '🙌', '🤝', '❤️', '💔', '🔥', '✨', '🎉', '🎂', '☕', '🍕', '🍺', '⚽', '🚀', '✅', '❌', '⭐', '💯', '👀',
  '🙈', '😴', '🤗', '😅', '😉', '🥳'];
