// A flood of client messages against a running daemon (src/server/turns.ts): one connection
// pipelines thousands of messages that are all answered, in order, each with its ref, while
// another connection's ping is answered before the flood's last reply (the flood is handled a
// few milliseconds per turn, round-robin, not in one stretch); a connection whose waiting
// messages pass the bound is closed with 1013.

import t from 'tap';
import { resolveServeConfig } from '../../src/config.js';
import { CLOSE } from '../../src/constants.js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { migrate } from '../../src/sql/migrate.js';
import { withPostgres } from '../helpers/pg.js';
import { connectWs, type Msg } from '../helpers/ws.js';

const db = await withPostgres(t);
await migrate(db.url);
const daemon = await startDaemon(resolveServeConfig({ db: db.url, port: '0', auth: false }, {}), silentLogger);
t.teardown(() => daemon.stop());
const wsUrl = `ws://127.0.0.1:${daemon.port}/ws`;

const FLOOD = 5_000;

/** Message i of a flood: an unsubscribe of an unknown id, a malformed message or a ping. */
function floodFrame(i: number): string {
  switch (i % 3) {
    case 0:
      return JSON.stringify({ type: 'unsubscribe', id: `nope-${i}`, ref: i });
    case 1:
      return JSON.stringify({ type: 'subscribe', ref: i }); // no id, no table: bad_request
    default:
      return JSON.stringify({ type: 'ping', ref: i });
  }
}

t.test('a pipelined flood is answered in order; another connection is answered meanwhile', async (t) => {
  const flood = await connectWs(t, wsUrl);
  const calm = await connectWs(t, wsUrl);
  // One counter over both connections: the order in which replies arrived.
  let seq = 0;
  const floodAt: number[] = [];
  let pongAt = -1;
  flood.onMessage((m) => {
    if (typeof m.ref === 'number') floodAt[m.ref] = seq++;
  });
  calm.onMessage((m) => {
    if (m.type === 'pong' && m.ref === 'calm') pongAt = seq++;
  });
  for (let i = 0; i < FLOOD; i++) flood.sendRaw(floodFrame(i));
  // Sent once the flood is being answered: it arrives while most of the flood waits.
  await flood.next((m) => m.ref === 0, 10_000);
  calm.send({ type: 'ping', ref: 'calm' });
  await flood.waitFor(() => floodAt[FLOOD - 1] !== undefined, 60_000, 'the last reply of the flood');
  await calm.waitFor(() => pongAt >= 0, 10_000, 'the pong');

  const replies = flood.messages.filter((m: Msg) => typeof m.ref === 'number');
  t.equal(replies.length, FLOOD, 'one reply per message');
  const refs = replies.map((m) => m.ref as number);
  const outOfOrder = refs.findIndex((r, i) => r !== i);
  t.equal(outOfOrder, -1, 'replies in the order of the messages, each with its ref');
  const wrong = replies.filter((m) => {
    const i = m.ref as number;
    return i % 3 === 0 ? m.code !== 'unknown_subscription' : i % 3 === 1 ? m.code !== 'bad_request' : m.type !== 'pong';
  });
  t.same(wrong.slice(0, 3), [], 'each reply is the answer to its message');
  t.ok(pongAt < floodAt[FLOOD - 1], `the other connection's pong (reply #${pongAt}) came before the flood's last reply (#${floodAt[FLOOD - 1]})`);
  t.ok(flood.isOpen, 'the flooding connection stays open');
});

t.test('past the queue bound: closed with 1013', async (t) => {
  const db2 = await withPostgres(t);
  await migrate(db2.url);
  const small = await startDaemon(resolveServeConfig({ db: db2.url, port: '0', auth: false }, {}), silentLogger, {
    turns: { maxQueuedMessages: 50, budgetMs: 0 },
  });
  t.teardown(() => small.stop());
  const url = `ws://127.0.0.1:${small.port}/ws`;
  const c = await connectWs(t, url);
  const bystander = await connectWs(t, url);
  for (let i = 0; i < FLOOD; i++) c.sendRaw(floodFrame(i));
  const close = await c.waitClose(10_000);
  t.equal(close.code, CLOSE.tryAgainLater, `closed with 1013 (${close.reason})`);
  t.match(close.reason, /more than 50 messages waiting/);
  const pong = await bystander.request({ type: 'ping' });
  t.equal(pong.type, 'pong', 'the other connection is served');
});
