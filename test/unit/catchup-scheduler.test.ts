// The catch-up scheduler on its own (issue 11, item 6): per-connection and per-user limits,
// waiting jobs started in the order they came as slots free up, and a per-turn budget shared
// round-robin. The counting here is the test's own, from the calls the scheduler makes.
import t from 'tap';
import { CatchUpScheduler, type CatchUpJob } from '../../src/hub/catchup-scheduler.js';

interface Job extends CatchUpJob {
  name: string;
  /** Units of work left. */
  left: number;
}

const conn = (name: string) => ({ name });
const job = (c: object, user: string | null, name: string, left = 100): Job => ({ conn: c, user, name, left });

t.test('limits per connection and per user; the rest wait and start in order', async (t) => {
  const s = new CatchUpScheduler<Job>({ budgetPerTurn: 1000, perConnection: 4, perUser: 6 });
  const a = conn('a');
  const b = conn('b');
  const ja = Array.from({ length: 10 }, (_, i) => job(a, 'u', `a${i}`));
  const jb = Array.from({ length: 10 }, (_, i) => job(b, 'u', `b${i}`));
  for (const j of ja) s.add(j);
  for (const j of jb) s.add(j);
  const running = () => [...ja, ...jb].filter((j) => s.isRunning(j)).map((j) => j.name);
  t.same(running(), ['a0', 'a1', 'a2', 'a3', 'b0', 'b1'], '4 of a, then b up to the user limit');
  t.equal(s.stats.waiting, 14);
  t.equal(s.size, 20);

  s.remove(ja[0]);
  t.same(running(), ['a1', 'a2', 'a3', 'a4', 'b0', 'b1'], "a's slot goes to a's oldest waiting job");
  s.remove(jb[0]);
  t.same(running(), ['a1', 'a2', 'a3', 'a4', 'b1', 'b2'], "b's slot to b's");
  s.remove(ja[9]);
  t.equal(s.stats.waiting, 11, 'a waiting job can leave the queue');
  // Another connection of the same user waits too: the user is at its limit.
  const c = conn('c');
  const jc = job(c, 'u', 'c0');
  t.notOk(s.add(jc), 'queued behind the user limit');
  s.remove(ja[1]);
  t.ok(s.isRunning(ja[5]), 'the freed slot (a and u) goes to the oldest fitting job: a5 came before c0');
  s.remove(jb[1]);
  t.ok(s.isRunning(jb[3]), 'b3 came before c0');
  // Drop all of a and b: c0 starts.
  for (const j of [...ja, ...jb]) s.remove(j);
  t.ok(s.isRunning(jc));
  t.equal(s.size, 1);
  t.equal(s.stats.maxRunningPerConnection, 4);
  t.equal(s.stats.maxRunningPerUser, 6);
});

t.test('without a user, only the connection limit applies', async (t) => {
  const s = new CatchUpScheduler<Job>({ budgetPerTurn: 1000, perConnection: 3, perUser: 2 });
  const jobs = [];
  for (let c = 0; c < 5; c++) {
    const cn = conn(`c${c}`);
    for (let i = 0; i < 5; i++) jobs.push(job(cn, null, `c${c}.${i}`));
  }
  for (const j of jobs) s.add(j);
  t.equal(s.stats.running, 15);
  t.equal(s.stats.waiting, 10);
});

t.test('a turn spends at most the budget, shared round-robin; finished jobs make room within the turn', async (t) => {
  const s = new CatchUpScheduler<Job>({ budgetPerTurn: 100, perConnection: 4, perUser: 100 });
  const jobs = Array.from({ length: 8 }, (_, i) => job(conn(`c${i % 2}`), `u${i % 2}`, `j${i}`, 60));
  for (const j of jobs) s.add(j);
  const got = new Map<string, number>();
  const step = (j: Job, units: number) => {
    const n = Math.min(units, j.left);
    j.left -= n;
    got.set(j.name, (got.get(j.name) ?? 0) + n);
    if (j.left === 0) s.remove(j);
    return n;
  };
  t.equal(s.runTurn(step), 100);
  // 8 running, quantum max(16, 100/8) = 16: six jobs get 16, one gets the last 4.
  t.same([...got.values()].sort((a, b) => b - a), [16, 16, 16, 16, 16, 16, 4], 'round robin in equal shares');
  let turns = 1;
  while (s.size > 0 && turns < 100) {
    t.ok(s.runTurn(step) <= 100, 'never over budget');
    turns++;
  }
  t.equal(s.size, 0, 'everyone finished');
  t.same([...got.values()], Array(8).fill(60), 'every job got all its work');
  t.equal(turns, Math.ceil((8 * 60) / 100), 'no turn wasted budget while work was left');
  t.equal(s.stats.maxTurnUnits, 100);
});

t.test('jobs that cannot go on (full sockets) do not spin the turn', async (t) => {
  const s = new CatchUpScheduler<Job>({ budgetPerTurn: 100, perConnection: 4, perUser: 4 });
  const j1 = job(conn('x'), 'u', 'x');
  s.add(j1);
  let calls = 0;
  t.equal(s.runTurn(() => (calls++, 0)), 0);
  t.equal(calls, 1, 'visited once');
  t.equal(s.stats.turns, 0, 'a turn without work is not counted');
});

t.test('a random workload: limits hold in every turn, every job finishes, each connection in order', async (t) => {
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const limits = { budgetPerTurn: 500, perConnection: 3, perUser: 5 };
  const s = new CatchUpScheduler<Job>(limits);
  const conns = Array.from({ length: 12 }, (_, i) => ({ c: conn(`c${i}`), user: i % 4 === 0 ? null : `u${i % 3}` }));
  const all: Job[] = [];
  const started = new Map<object, number[]>();
  const seen = new Set<Job>();
  const overBudget: number[] = [];
  const addSome = (n: number) => {
    for (let i = 0; i < n; i++) {
      const { c, user } = conns[Math.floor(rnd() * conns.length)];
      const j = job(c, user, `j${all.length}`, 1 + Math.floor(rnd() * 400));
      all.push(j);
      s.add(j);
    }
  };
  addSome(150);
  // Jobs that got work and have not finished, per connection and per user: what runs at once.
  const active = { conn: new Map<object, Set<Job>>(), user: new Map<string, Set<Job>>() };
  const worst = { conn: 0, user: 0 };
  for (let turn = 0; s.size > 0 && turn < 10_000; turn++) {
    const spent = s.runTurn((j, units) => {
      if (!seen.has(j)) {
        seen.add(j);
        started.set(j.conn, [...(started.get(j.conn) ?? []), all.indexOf(j)]);
      }
      const n = rnd() < 0.1 ? 0 : Math.min(units, j.left); // now and then a full socket
      if (n === 0) return 0;
      worst.conn = Math.max(worst.conn, add(active.conn, j.conn, j));
      if (j.user) worst.user = Math.max(worst.user, add(active.user, j.user, j));
      j.left -= n;
      if (j.left === 0) {
        active.conn.get(j.conn)?.delete(j);
        if (j.user) active.user.get(j.user)?.delete(j);
        s.remove(j);
      }
      return n;
    });
    if (spent > limits.budgetPerTurn) overBudget.push(spent);
    if (turn === 20) addSome(100);
  }
  t.same(overBudget, [], 'no turn over budget');
  t.equal(s.size, 0, 'every job finished');
  t.ok(all.every((j) => j.left === 0), 'with all its work');
  t.ok(worst.conn <= limits.perConnection, `at most ${limits.perConnection} of one connection worked in a turn (saw ${worst.conn})`);
  t.ok(worst.user <= limits.perUser, `at most ${limits.perUser} of one user worked in a turn (saw ${worst.user})`);
  t.equal(worst.conn, limits.perConnection, 'the connection limit was reached (the test can fail)');
  t.equal(worst.user, limits.perUser, 'so was the user limit');
  t.equal(s.stats.maxRunningPerConnection, limits.perConnection, "the scheduler's own counters");
  t.equal(s.stats.maxRunningPerUser, limits.perUser);
  for (const { c } of conns) {
    const order = started.get(c) ?? [];
    t.same(order, [...order].sort((a, b) => a - b), `${(c as { name: string }).name}: jobs started in the order they came`);
  }
});

function add<K>(m: Map<K, Set<Job>>, k: K, j: Job): number {
  let set = m.get(k);
  if (!set) m.set(k, (set = new Set()));
  set.add(j);
  return set.size;
}
