// The demo chat of `walcast dev`: plain ES modules, no build step, the SDK loaded as the browser
// gets it (dist/src/client/*.js, served under /client/).
//
// - Messages: a live collection of public.messages with filter room_id=eq.N, starting from a
//   snapshot of the latest 50 (order id.desc, limit 50): the snapshot and the changes after it
//   come through the same subscription, so nothing falls between loading and following. Rows
//   reach members only (policy on the row's room_id). Sending is POST /dev/messages; its reply
//   and the change it causes are merged by id.
// - Who is online: presence on channel room:N, each tab tracking {name}; the keys are user ids
//   the server took from the tokens.
// - Who is typing: broadcast "typing" on room:N; the server stamps each client broadcast with
//   its sender's user id (`from`, from the token), so a name never comes from a payload.
// - Friends online: channel user:NAME, tracked by its owner, joinable by the owner's friends.
import { createClient } from '/client/index.js';

/** The latest messages a room opens with. */
const HISTORY = 50;
const TYPING_SHOW_MS = 3000;
const TYPING_SEND_EVERY_MS = 1000;

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};

const params = new URLSearchParams(location.search);
/** Everything of the signed-in user; replaced on every sign-in. */
let me = null;

async function api(path, init) {
  const res = await fetch(path, init);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(body.error || `${res.status} ${res.statusText}`), { status: res.status });
  return body;
}

function showError(message) {
  $('error').textContent = message || '';
}

function setParams(next) {
  for (const [k, v] of Object.entries(next)) {
    if (v == null) params.delete(k);
    else params.set(k, String(v));
  }
  history.replaceState(null, '', `${location.pathname}?${params}`);
}

// ── users ─────────────────────────────────────────────────────────────────────────────────

async function start() {
  const { users } = await api('/dev/users');
  $('users').replaceChildren(
    ...users.map((name) => {
      const button = el('button', { type: 'button', textContent: name, onclick: () => signIn(name, null) });
      button.dataset.user = name;
      return button;
    }),
  );
  const user = params.get('user');
  if (user) await signIn(user, params.get('room'));
}

async function signIn(user, room) {
  if (me) await signOut();
  setParams({ user, room });
  for (const b of $('users').children) b.setAttribute('aria-pressed', String(b.dataset.user === user));
  const session = { user, token: null, expiresAt: 0, room: null, friendOffs: [] };
  me = session;
  // Called by the SDK on every connect and before the token expires; the page's own requests
  // reuse the last token.
  session.getToken = async () => {
    if (session.token && session.expiresAt - Date.now() > 60_000) return session.token;
    const t = await api(`/dev/token?user=${encodeURIComponent(user)}`);
    session.token = t.token;
    session.expiresAt = Date.parse(t.expires_at);
    return t.token;
  };
  try {
    await session.getToken();
  } catch (err) {
    showError(`cannot sign in as ${user}: ${err.message}`);
    me = null;
    return;
  }
  session.client = createClient({ url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`, token: session.getToken });
  session.client.on('state', (state) => {
    $('connection').dataset.state = state;
    $('connection').textContent = state === 'open' ? `online as ${user}` : state;
  });
  session.client.on('error', (err) => console.warn('walcast:', err.code, err.message));
  // Memberships of this user, live: when one is added or removed, the rooms list and the open
  // room follow (the policies already do: rows and the channel are allowed from that commit).
  session.client.subscribe(
    { table: 'public.room_members', filter: `user_id=eq.${user}` },
    { onChange: () => me === session && loadRooms(session, true), onResync: () => me === session && loadRooms(session, true) },
  );
  await loadRooms(session, false);
  if (me !== session) return;
  joinFriends(session);
  const wanted = Number(room) || session.rooms.find((r) => r.member)?.id || session.rooms[0]?.id;
  if (wanted) openRoom(session, wanted);
}

async function signOut() {
  const session = me;
  me = null;
  closeRoom(session);
  for (const off of session.friendOffs) off();
  await session.client?.close();
  $('rooms').replaceChildren();
  $('friends').replaceChildren();
  $('connection').dataset.state = 'closed';
  $('connection').textContent = 'offline';
}

// ── rooms ─────────────────────────────────────────────────────────────────────────────────

async function loadRooms(session, reopen) {
  let data;
  try {
    data = await api('/dev/rooms', { headers: { authorization: `Bearer ${await session.getToken()}` } });
  } catch (err) {
    showError(`cannot load rooms: ${err.message}`);
    return;
  }
  if (me !== session) return;
  const before = session.rooms?.find((r) => r.id === session.room?.id)?.member;
  session.rooms = data.rooms;
  session.friends = data.friends;
  renderRooms(session);
  const now = session.rooms.find((r) => r.id === session.room?.id)?.member;
  if (reopen && session.room && before !== now) openRoom(session, session.room.id);
}

function renderRooms(session) {
  $('rooms').replaceChildren(
    ...session.rooms.map((r) => {
      const button = el('button', { type: 'button', onclick: () => openRoom(session, r.id) }, `#${r.name}`);
      if (!r.member) button.append(el('small', { textContent: ' not a member' }));
      button.dataset.room = r.id;
      button.dataset.member = r.member;
      if (session.room?.id === r.id) button.setAttribute('aria-current', 'true');
      return el('li', {}, button);
    }),
  );
}

function closeRoom(session) {
  const room = session?.room;
  if (!room) return;
  session.room = null;
  room.closed = true;
  for (const off of room.offs) off();
  void room.messages.close();
  void room.channel.leave();
  clearTimeout(room.typingTimer);
  for (const t of room.typing.values()) clearTimeout(t);
}

function openRoom(session, id) {
  closeRoom(session);
  setParams({ room: id });
  const info = session.rooms.find((r) => r.id === id) || { id, name: `room ${id}`, member: false };
  const room = { id, offs: [], shown: new Map(), typing: new Map(), lastTypingSent: 0, closed: false };
  session.room = room;
  renderRooms(session);
  $('room-name').textContent = `#${info.name}`;
  setAccess('', 'joining…');
  $('messages').replaceChildren();
  $('messages').dataset.live = 'false';
  $('online').replaceChildren();
  $('typing').textContent = '';
  showError('');
  setComposer(false);

  // The SDK keeps the rows (by id) and shows a new snapshot only once it is complete: after a
  // reconnect it resumes, after a resync it loads a fresh snapshot by itself.
  room.messages = session.client.collection({
    table: 'public.messages',
    filter: `room_id=eq.${id}`,
    events: ['insert'],
    snapshot: { order: 'id.desc', limit: HISTORY },
  });
  room.offs.push(
    room.messages.on('change', (messages, change) => {
      if (room.closed) return;
      if (change?.op === 'insert' || change?.op === 'update') addMessage(room, change.new);
      else renderMessages(room, messages.rows); // a (new) snapshot, or a row gone
      $('messages').dataset.live = 'true';
    }),
    room.messages.on('error', (err) => !room.closed && showError(`messages: ${err.message}`)),
  );

  room.channel = session.client.channel(`room:${id}`);
  room.offs.push(
    room.channel.onPresence((state) => renderOnline(room, state)),
    room.channel.onBroadcast('typing', (_payload, message) => showTyping(room, message.from)),
    // forbidden: refused, or removed because the membership was taken away.
    room.channel.onError((err) => {
      if (room.closed) return;
      if (err.code !== 'forbidden') return showError(`room: ${err.message}`);
      setAccess('forbidden', `${session.user} is not a member: join refused`);
      setComposer(false);
    }),
  );
  room.channel.track({ name: session.user });
  room.channel.join().then(
    () => {
      if (room.closed) return;
      setAccess('member', 'member');
      setComposer(true);
    },
    () => {}, // reported by the error listener above
  );
}

function setAccess(access, text) {
  $('room-status').dataset.access = access;
  $('room-status').textContent = text;
}

function setComposer(enabled) {
  $('message-input').disabled = !enabled;
  $('send').disabled = !enabled;
}

// ── messages ──────────────────────────────────────────────────────────────────────────────

/** Shows exactly `rows` (the collection's), oldest first. */
function renderMessages(room, rows) {
  room.shown.clear();
  $('messages').replaceChildren();
  for (const m of [...rows.values()].sort((a, b) => Number(a.id) - Number(b.id))) addMessage(room, m);
}

function addMessage(room, m) {
  if (room.closed || !m || room.shown.has(String(m.id))) return;
  room.shown.set(String(m.id), m);
  const time = new Date(m.created_at);
  const item = el(
    'li',
    {},
    el('span', { className: 'author', textContent: m.author }),
    el('time', { dateTime: m.created_at, textContent: time.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) }),
    el('p', { className: 'body', textContent: m.body }),
  );
  item.dataset.testid = 'message';
  item.dataset.id = m.id;
  item.dataset.author = m.author;
  // In id order: a sent message's reply and the changes may come in any order.
  const list = $('messages');
  const after = [...list.children].find((li) => Number(li.dataset.id) > Number(m.id));
  list.insertBefore(item, after || null);
  if (!after) list.scrollTop = list.scrollHeight;
  stopTyping(room, m.author);
}

$('composer').addEventListener('submit', async (event) => {
  event.preventDefault();
  const session = me;
  const room = session?.room;
  const input = $('message-input');
  const body = input.value.trim();
  if (!room || !body) return;
  try {
    const { message } = await api('/dev/messages', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: await session.getToken(), room_id: room.id, body }),
    });
    input.value = '';
    addMessage(room, message); // the change will come too; shown once
    showError('');
  } catch (err) {
    showError(`not sent: ${err.message}`);
  }
});

// ── presence and typing ───────────────────────────────────────────────────────────────────

function renderOnline(room, state) {
  if (room.closed) return;
  $('online').replaceChildren(
    ...Object.keys(state)
      .sort()
      .map((name) => {
        const li = el('li', { textContent: name });
        li.dataset.user = name;
        return li;
      }),
  );
  for (const name of room.typing.keys()) if (!(name in state)) stopTyping(room, name);
}

$('message-input').addEventListener('input', () => {
  const room = me?.room;
  if (!room || !room.channel.joined || Date.now() - room.lastTypingSent < TYPING_SEND_EVERY_MS) return;
  room.lastTypingSent = Date.now();
  room.channel.send('typing', null);
});

function showTyping(room, name) {
  if (typeof name !== 'string' || room.closed) return;
  clearTimeout(room.typing.get(name));
  room.typing.set(name, setTimeout(() => stopTyping(room, name), TYPING_SHOW_MS));
  renderTyping(room);
}

function stopTyping(room, name) {
  if (!room.typing.has(name)) return;
  clearTimeout(room.typing.get(name));
  room.typing.delete(name);
  renderTyping(room);
}

function renderTyping(room) {
  if (room.closed) return;
  const names = [...room.typing.keys()].sort();
  $('typing').textContent = names.length === 0 ? '' : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`;
}

// ── friends ───────────────────────────────────────────────────────────────────────────────

function joinFriends(session) {
  // The own channel: tracked here, so that friends see this user online.
  const own = session.client.channel(`user:${session.user}`);
  own.track({ name: session.user });
  own.join().catch((err) => console.warn('own channel:', err.message));
  session.friendOffs.push(() => void own.leave());
  const friends = session.friends || [];
  const items = new Map();
  $('friends').replaceChildren(
    ...friends.map((name) => {
      const li = el('li', { textContent: name });
      li.dataset.user = name;
      li.dataset.online = 'false';
      items.set(name, li);
      return li;
    }),
  );
  for (const name of friends) {
    const channel = session.client.channel(`user:${name}`);
    const off = channel.onPresence((state) => (items.get(name).dataset.online = String(name in state)));
    channel.join().catch((err) => console.warn(`user:${name}:`, err.message));
    session.friendOffs.push(off, () => void channel.leave());
  }
}

start().catch((err) => showError(err.message));
