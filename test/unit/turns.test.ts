// The per-turn budget of client-message handling (src/server/turns.ts) on its own, with a fake
// clock and a fake setImmediate: messages run at once while the budget lasts and nothing of
// their connection waits; past it they wait and are drained on later turns, one per connection
// in turn, each connection's in order; a queue past its bound is closed and dropped.
import t from 'tap';
import { Turns, type TurnOwner, type TurnsOptions } from '../../src/server/turns.js';

interface Conn extends TurnOwner {
  name: string;
  closed: boolean;
}

function setup(over: Partial<TurnsOptions> = {}) {
  let clock = 0;
  const deferred: Array<() => void> = [];
  const overflows: string[] = [];
  const log: string[] = [];
  const turns = new Turns({
    budgetMs: 4,
    maxQueuedMessages: 100,
    maxQueuedBytes: 10_000,
    onOverflow: (o, why) => {
      overflows.push(`${(o as Conn).name}:${why}`);
      (o as Conn).closed = true;
    },
    now: () => clock,
    defer: (fn) => void deferred.push(fn),
    ...over,
  });
  const conn = (name: string): Conn => ({ name, closed: false, queued: null });
  /** A message of `c` costing `ms`: handled now if admitted, else queued. */
  const message = (c: Conn, label: string, ms = 1, bytes = 10): boolean => {
    const run = () => {
      log.push(label);
      clock += ms;
    };
    if (turns.admit(c)) {
      run();
      return true;
    }
    turns.queue(c, run, bytes);
    return false;
  };
  /** Runs the deferred callbacks of one turn (those scheduled before it started). */
  const turn = () => {
    for (const fn of deferred.splice(0)) fn();
  };
  return { turns, conn, message, turn, log, overflows, deferred, advance: (ms: number) => (clock += ms) };
}

t.test('within the budget messages run at once; past it they wait, in order', async (t) => {
  const s = setup();
  const a = s.conn('a');
  t.ok(s.message(a, 'a1'), 'first message of the turn: at once');
  t.equal(s.deferred.length, 1, 'the turn is counted: a drain is scheduled');
  t.ok(s.message(a, 'a2'));
  t.ok(s.message(a, 'a3'));
  t.ok(s.message(a, 'a4'), '3 ms spent: still within 4');
  t.notOk(s.message(a, 'a5'), '4 ms spent: queued');
  t.notOk(s.message(a, 'a6'));
  t.same(s.log, ['a1', 'a2', 'a3', 'a4']);
  t.equal(s.turns.waiting, 1);
  s.turn();
  t.same(s.log, ['a1', 'a2', 'a3', 'a4', 'a5', 'a6'], 'drained on the next turn');
  t.equal(a.queued, null, 'nothing waits');
  s.turn(); // the drain re-armed once; this turn finds nothing and stops
  t.equal(s.deferred.length, 0, 'no more turns scheduled');
  s.advance(100);
  t.ok(s.message(a, 'a7'), 'a new turn: at once again');
});

t.test("a connection with waiting messages queues even within the budget (its order is kept)", async (t) => {
  const s = setup();
  const a = s.conn('a');
  const b = s.conn('b');
  for (let i = 1; i <= 6; i++) s.message(a, `a${i}`);
  s.turn(); // drains a5 a6 (2 ms)
  t.same(s.log.slice(-2), ['a5', 'a6']);
  // A new turn of reads: the drain spent 2 ms of it.
  t.ok(s.message(b, 'b1'), 'b has nothing waiting and the budget lasts');
  t.ok(s.message(a, 'a7'), 'a has nothing waiting either');
  t.notOk(s.message(b, 'b2'), 'budget spent');
  t.notOk(s.message(a, 'a8'));
  s.advance(100);
  t.notOk(s.message(b, 'b3'), 'b still has b2 waiting: b3 waits behind it, whatever the clock');
  s.turn();
  t.same(s.log.slice(-3), ['b2', 'a8', 'b3'], 'in order per connection, round-robin across them');
});

t.test('round-robin: a flooding connection does not starve the others', async (t) => {
  const s = setup();
  const flood = s.conn('flood');
  const calm = s.conn('calm');
  for (let i = 0; i < 50; i++) s.message(flood, `f${i}`);
  t.equal(s.log.length, 4);
  s.message(calm, 'ping');
  t.notOk(s.log.includes('ping'), 'the budget is spent: the ping waits too');
  s.turn();
  const at = s.log.indexOf('ping');
  t.ok(at >= 0 && at <= 6, `the ping is handled in the first drain, right after one of the flood (at ${at})`);
  t.ok(s.log.length < 50, 'the flood is not all handled in that turn');
  while (s.deferred.length) s.turn();
  t.same(s.log.filter((l) => l !== 'ping'), Array.from({ length: 50 }, (_, i) => `f${i}`), 'every flood message, in order');
});

t.test('every drain makes progress, even when one message exceeds the budget', async (t) => {
  const s = setup();
  const a = s.conn('a');
  s.message(a, 'big', 10);
  s.message(a, 'next1', 10);
  s.message(a, 'next2', 10);
  t.same(s.log, ['big']);
  s.turn();
  t.same(s.log, ['big', 'next1']);
  s.turn();
  t.same(s.log, ['big', 'next1', 'next2']);
});

t.test('a queue past its bound: onOverflow once, the queue dropped', async (t) => {
  const s = setup({ maxQueuedMessages: 5 });
  const a = s.conn('a');
  const b = s.conn('b');
  s.message(a, 'a0', 4);
  for (let i = 1; i <= 5; i++) t.notOk(s.message(a, `a${i}`));
  t.equal(s.overflows.length, 0, '5 waiting: at the bound');
  s.message(b, 'b1');
  t.notOk(s.turns.queue(a, () => s.log.push('a6'), 1), 'one more: refused');
  t.same(s.overflows, ['a:messages']);
  t.equal(a.queued, null, 'its queue is dropped');
  t.notOk(s.turns.queue(a, () => s.log.push('a7'), 1), 'closed: nothing more is queued');
  s.turn();
  t.same(s.log, ['a0', 'b1'], "a's waiting messages never run; b's do");
});

t.test('the byte bound', async (t) => {
  const s = setup({ maxQueuedBytes: 100 });
  const a = s.conn('a');
  s.message(a, 'a0', 4);
  t.ok(s.turns.queue(a, () => {}, 60));
  t.ok(s.turns.queue(a, () => {}, 40), 'exactly at the bound');
  t.notOk(s.turns.queue(a, () => {}, 1));
  t.same(s.overflows, ['a:bytes']);
});

t.test('bytes are released as messages run', async (t) => {
  const s = setup({ maxQueuedBytes: 100 });
  const a = s.conn('a');
  s.message(a, 'a0', 4);
  s.message(a, 'a1', 1, 60);
  s.message(a, 'a2', 10, 40);
  s.turn(); // a1 (60 bytes) runs, a2's 10 ms then end the turn
  t.same(s.log, ['a0', 'a1', 'a2']);
  s.advance(100);
  s.message(a, 'a3', 4, 0);
  t.ok(s.turns.queue(a, () => {}, 100), 'the 100 bytes of a1 and a2 are free again');
});

t.test('a connection closed while it waits: its queue is skipped', async (t) => {
  const s = setup();
  const a = s.conn('a');
  const b = s.conn('b');
  s.message(a, 'a0', 4);
  s.message(a, 'a1');
  s.message(b, 'b1');
  a.closed = true;
  a.queued = null; // what Session.dispose does
  s.turn();
  t.same(s.log, ['a0', 'b1']);
});

t.test('a connection closed by its own message stops there', async (t) => {
  const s = setup();
  const a = s.conn('a');
  s.message(a, 'a0', 4);
  t.ok(s.turns.queue(a, () => {
    s.log.push('close');
    a.closed = true;
  }, 1));
  s.message(a, 'after');
  s.turn();
  t.same(s.log, ['a0', 'close']);
  t.equal(a.queued, null);
});

t.test('each drain runs inside `around` (replies flushed once per drain)', async (t) => {
  const marks: string[] = [];
  const s = setup({
    around: (drain) => {
      marks.push('open');
      drain();
      marks.push('flush');
    },
  });
  const a = s.conn('a');
  s.message(a, 'a0', 4);
  s.message(a, 'a1');
  s.message(a, 'a2');
  t.same(marks, [], 'messages handled at once are not wrapped');
  s.turn();
  t.same(marks, ['open', 'flush'], 'one wrap for the drain');
  t.same(s.log, ['a0', 'a1', 'a2']);
  s.turn();
  t.same(marks, ['open', 'flush'], 'a turn with nothing waiting drains nothing');
});
