// Per-node chains (src/cluster/chain.ts, chain-codec.ts): the header's strict codec, capture's
// stamper, the edge's reducer case by case, and a randomized run: a stamper over ~2000 messages,
// one edge's share delivered over a lossy, duplicating, reordering channel, repaired by fetches,
// scans and heartbeats from the full log; processed = exactly the messages naming it, in order, once.
import t from 'tap';
import { CLUSTER_CHAIN } from '../../src/constants.js';
import { ClusterMessageError } from '../../src/errors.js';
import { encodeChain, parseChain, prevFor } from '../../src/cluster/chain-codec.js';
import { ChainFollower, type ChainMessage, type ChainOutcome } from '../../src/cluster/chain.js';
import { ChainStamper } from '../../src/cluster/chain-stamper.js';
import { Rng } from '../helpers/fuzz-gen.js';

t.test('codec: round trip, and prevFor reads one link exactly', async (t) => {
  const links = new Map([['k3f9x2ab', 0], ['ab', 17], ['abc', 9007199254740991]]);
  const h = encodeChain(42, links);
  t.equal(h, '42;k3f9x2ab=0,ab=17,abc=9007199254740991');
  t.same(parseChain(h), { epoch: 42, links });
  t.equal(encodeChain(0, [['z', 3]]), '0;z=3', 'an array of pairs too');
  for (const [inc, prev] of links) t.equal(prevFor(h, inc), prev, `prevFor ${inc}`);
  t.equal(prevFor(h, 'k3f9x2a'), undefined, 'a prefix of a named inc is not named');
  t.equal(prevFor(h, 'b'), undefined, 'a suffix of a named inc is not named');
  t.equal(prevFor(h, '17'), undefined, 'a prevSeq is not an inc');
});

t.test('codec: prefix and suffix confusion', async (t) => {
  t.equal(prevFor('5;abc=7', 'ab'), undefined);
  t.equal(prevFor('5;xab=7', 'ab'), undefined);
  t.equal(prevFor('5;abc=7,ab=3', 'ab'), 3);
  t.equal(prevFor('5;ab=3,abc=7', 'ab'), 3);
  t.equal(prevFor('5;ab=3,abc=7', 'abc'), 7);
  t.equal(prevFor('5;xab=1,abc=2,ab=3', 'ab'), 3);
  t.equal(prevFor('5;aaa=1,aa=2', 'aa'), 2, 'overlapping matches');
  t.same([...parseChain('5;abc=7,ab=3').links], [['abc', 7], ['ab', 3]]);
});

t.test('codec: every malformed header is refused with ClusterMessageError', async (t) => {
  const over = `1;${'ab=1,'.repeat(Math.ceil(CLUSTER_CHAIN.maxHeaderLength / 5))}ab=1`;
  const bad: Array<[string, string]> = [
    [over, 'oversize'],
    ['', 'empty'],
    ['12', 'no ;'],
    ['5;', 'no link'],
    [';a=1', 'no epoch'],
    ['-1;a=1', 'negative epoch'],
    ['01;a=1', 'leading zero'],
    ['+1;a=1', 'sign'],
    ['1.5;a=1', 'fraction'],
    ['1e3;a=1', 'exponent'],
    [' 1;a=1', 'space'],
    ['9007199254740992;a=1', 'epoch past 2^53 - 1'],
    ['99999999999999999;a=1', '17 digits'],
    ['1;a=', 'empty prevSeq'],
    ['1;a=-2', 'negative prevSeq'],
    ['1;a=007', 'leading zeros'],
    ['1;a=9007199254740992', 'prevSeq past 2^53 - 1'],
    ['1;a=1x', 'junk after prevSeq'],
    ['1;a=1;b=2', 'a second ;'],
    ['1;a=1,', 'trailing comma'],
    ['1;a=1,,b=2', 'empty link'],
    ['1;a', 'link without ='],
    ['1;=3', 'empty inc'],
    ['1;A=3', 'upper case'],
    ['1;a-b=3', 'dash'],
    [`1;${'a'.repeat(17)}=3`, '17-character inc'],
    ['1;a=1=2', 'two ='],
    ['1;ab=1,ab=2', 'duplicate inc'],
    ['1;ab=1,c=4,ab=1', 'duplicate inc, same value'],
  ];
  for (const [h, why] of bad) t.throws(() => parseChain(h), ClusterMessageError, `parseChain: ${why}`);
  // prevFor checks the length, the epoch and its own link.
  for (const [h, inc, why] of [
    [over, 'ab', 'oversize'],
    ['12', 'a', 'no ;'],
    ['01;a=1', 'a', 'bad epoch'],
    ['x;a=1', 'a', 'bad epoch'],
    ['1;a=', 'a', 'empty prevSeq'],
    ['1;a=01', 'a', 'leading zero'],
    ['1;a=1x', 'a', 'junk'],
    ['1;a=9007199254740992', 'a', 'unsafe'],
    ['1;ab=1,ab=2', 'ab', 'named twice'],
    ['1;ab=1', '', 'empty inc'],
  ] as const) t.throws(() => prevFor(h, inc), ClusterMessageError, `prevFor: ${why}`);
  t.equal(prevFor('1;ab=1,ab=2', 'c'), undefined, 'prevFor does not read the others’ links');
});

t.test('codec: encodeChain refuses what parseChain would', async (t) => {
  t.throws(() => encodeChain(1, []), RangeError, 'no link');
  t.throws(() => encodeChain(-1, [['a', 1]]), RangeError, 'negative epoch');
  t.throws(() => encodeChain(1.5, [['a', 1]]), RangeError, 'fractional epoch');
  t.throws(() => encodeChain(1, [['A', 1]]), RangeError, 'bad inc');
  t.throws(() => encodeChain(1, [['a', -1]]), RangeError, 'negative prevSeq');
  t.throws(() => encodeChain(1, [['a', 2 ** 53]]), RangeError, 'unsafe prevSeq');
  t.throws(() => encodeChain(1, [['a', 1], ['a', 2]]), RangeError, 'duplicate');
  const many = Array.from({ length: 2_000 }, (_, i): [string, number] => [`${'x'.repeat(12)}${i.toString().padStart(4, '0')}`, 2 ** 52 + i]);
  t.throws(() => encodeChain(1, many), RangeError, 'oversize');
});

t.test('stamper: chains per inc, across join, leave and epochs', async (t) => {
  const s = new ChainStamper();
  t.throws(() => s.stamp(1, []), RangeError, 'no stamp before the first epoch');
  t.equal(s.join('aaaaaaaa'), true);
  t.equal(s.join('bbbbbbbb'), true);
  t.equal(s.join('aaaaaaaa'), false, 'already known');
  t.throws(() => s.join('Bad'), RangeError);
  s.startEpoch(7, 10);
  t.same(s.lastSeqs(), { aaaaaaaa: 10, bbbbbbbb: 10 }, 'the marker starts every known chain');
  t.equal(s.stamp(11, ['aaaaaaaa']), '7;aaaaaaaa=10');
  t.equal(s.stamp(12, []), null, 'a message concerning nobody has no header');
  t.equal(s.stamp(13, ['bbbbbbbb', 'aaaaaaaa', 'bbbbbbbb']), '7;bbbbbbbb=10,aaaaaaaa=11', 'named twice counts once');
  t.throws(() => s.stamp(13, ['aaaaaaaa']), RangeError, 'seqs increase');
  t.throws(() => s.stamp(14, ['aaaaaaaa', 'cccccccc']), RangeError, 'an inc not joined');
  t.equal(s.stamp(14, ['aaaaaaaa']), '7;aaaaaaaa=13', 'a refused stamp changed nothing');
  s.join('cccccccc');
  t.equal(s.stamp(15, new Set(['cccccccc', 'aaaaaaaa'])), '7;cccccccc=0,aaaaaaaa=14', 'a new inc starts at 0');
  t.equal(s.leave('bbbbbbbb'), true);
  t.equal(s.leave('bbbbbbbb'), false);
  t.same(s.lastSeqs(), { aaaaaaaa: 15, cccccccc: 15 });
  s.join('bbbbbbbb');
  t.same(s.lastSeqs(), { aaaaaaaa: 15, cccccccc: 15, bbbbbbbb: 0 }, 'joined again: starts again');
  t.throws(() => s.startEpoch(7, 20), RangeError, 'epochs increase');
  t.throws(() => s.startEpoch(8, 15), RangeError, 'the marker follows the last seq');
  s.startEpoch(8, 16);
  t.equal(s.epoch, 8);
  t.equal(s.markerSeq, 16);
  t.same(s.lastSeqs(), { aaaaaaaa: 16, cccccccc: 16, bbbbbbbb: 16 });
  const h = s.stamp(17, ['cccccccc', 'bbbbbbbb']) as string;
  t.same(parseChain(h), { epoch: 8, links: new Map([['cccccccc', 16], ['bbbbbbbb', 16]]) }, 'what it writes parses');
});

t.test('stamper: at most maxIncs incarnations, so that a header stays under the bound', async (t) => {
  const s = new ChainStamper();
  const incs = Array.from({ length: CLUSTER_CHAIN.maxIncs }, (_, i) => `${'q'.repeat(12)}${i.toString().padStart(4, '0')}`);
  for (const inc of incs) s.join(inc);
  t.throws(() => s.join('onemore'), RangeError);
  s.startEpoch(2 ** 52, 2 ** 52);
  const h = s.stamp(2 ** 53 - 1, incs) as string;
  t.ok(h.length <= CLUSTER_CHAIN.maxHeaderLength, `${h.length} characters`);
  t.equal(parseChain(h).links.size, CLUSTER_CHAIN.maxIncs);
});

// ---- the follower, case by case

const ME = 'meme0001';
const msg = (seq: number, prev: number | undefined, epoch = 1): ChainMessage<string> => ({ seq, epoch, prev, payload: `m${seq}` });
const marker = (seq: number, epoch: number): ChainMessage<string> => ({ seq, epoch, prev: undefined, marker: true, payload: `e${epoch}` });
const view = (outs: Array<ChainOutcome<unknown>>) =>
  outs.map((o) => {
    switch (o.tag) {
      case 'process':
        return `${o.marker ? 'marker' : 'process'} ${o.seq}`;
      case 'fetch':
        return `fetch ${o.seq}`;
      case 'scan':
        return `scan ${o.from}-${o.to}`;
      case 'reset':
        return `reset ${o.reason} ${o.from}-${o.to}`;
    }
  });
const follower = (head = 10, epoch = 1, extra: { maxPending?: number; maxPendingBytes?: number; maxScanSeqs?: number } = {}) =>
  new ChainFollower<string>({ inc: ME, head, epoch, ...extra });

t.test('follower: in order, duplicates, not mine', async (t) => {
  const f = follower();
  t.same(view(f.offer(msg(12, 10))), ['process 12']);
  t.same(view(f.offer(msg(15, 12))), ['process 15']);
  t.same(view(f.offer(msg(15, 12))), [], 'a duplicate');
  t.same(view(f.offer(msg(9, 3))), [], 'below head');
  t.same(view(f.offer(msg(16, undefined))), [], 'not naming me');
  t.equal(f.head, 15);
  t.match(f.stats, { processed: 2, duplicates: 2, notMine: 1, fetchesRequested: 0, resets: 0, pending: 0 });
});

t.test('follower: a hole is fetched, recursively, and each seq asked once', async (t) => {
  const f = follower();
  t.same(view(f.offer(msg(20, 17))), ['fetch 17']);
  t.same(view(f.offer(msg(22, 20))), [], '20 is held: not fetched');
  t.same(view(f.offer(msg(25, 23))), ['fetch 23']);
  t.same(view(f.offer(msg(25, 23))), [], 'held: a duplicate, 23 not asked again');
  t.same(view(f.offer(msg(17, 14))), ['fetch 14'], 'the fetched one has a hole before it too');
  t.same(view(f.offer(msg(23, 22))), [], 'held behind 14');
  t.equal(f.stats.pending, 5);
  t.same(view(f.offer(msg(14, 10))), ['process 14', 'process 17', 'process 20', 'process 22', 'process 23', 'process 25'], 'in seq order');
  t.equal(f.head, 25);
  t.equal(f.stats.fetchesRequested, 3);
  t.equal(f.stats.pending, 0);
});

t.test('follower: prevSeq 0 starts a chain after expectStart, else it is a restart', async (t) => {
  const a = follower(10);
  a.expectStart();
  t.same(view(a.offer(msg(14, 0))), ['process 14']);
  t.same(view(a.offer(msg(16, 14))), ['process 16']);
  t.same(view(a.offer(msg(20, 0))), ['reset restart 17-19', 'process 20'], 'capture forgot me between: a reset');
  t.same(view(a.offer(msg(21, 0))), ['process 21'], 'nothing between: nothing lost');
  const b = follower(10);
  b.expectStart();
  t.same(view(b.offer(msg(16, 14))), ['fetch 14'], 'the start was lost');
  t.same(view(b.offer(msg(14, 0))), ['process 14', 'process 16']);
  t.equal(b.stats.resets, 0);
  const c = follower(10);
  t.same(view(c.offer(msg(18, 15))), ['fetch 15']);
  t.same(view(c.offer(msg(25, 0))), [], 'a restart waits for what comes before it');
  t.same(view(c.offer(msg(15, 10))), ['process 15', 'process 18', 'reset restart 19-24', 'process 25']);
});

t.test('follower: a heartbeat names a lost tail: fetched after the quiet time', async (t) => {
  const f = follower();
  t.same(view(f.offer(msg(12, 10))), ['process 12']);
  t.same(view(f.heartbeat({ epoch: 1, markerSeq: 1, last: 12 }, 1_000)), []);
  t.same(view(f.tick(5_000)), [], 'nothing past head');
  t.same(view(f.heartbeat({ epoch: 1, markerSeq: 1, last: 30 }, 10_000)), []);
  t.same(view(f.heartbeat({ epoch: 1, markerSeq: 1, last: 31 }, 10_200)), []);
  t.same(view(f.tick(10_299)), [], 'not yet');
  t.same(view(f.tick(10_300)), ['fetch 31'], 'the latest, 300 ms after the first heartbeat showing a tail');
  t.same(view(f.tick(20_000)), [], 'once');
  t.same(view(f.offer(msg(31, 30))), ['fetch 30']);
  t.same(view(f.offer(msg(30, 12))), ['process 30', 'process 31']);
  t.same(view(f.heartbeat({ epoch: 1, markerSeq: 1, last: 35 }, 30_000)), []);
  t.same(view(f.offer(msg(35, 31))), ['process 35']);
  t.same(view(f.tick(40_000)), [], 'it arrived: no fetch');
});

t.test('follower: a fetched seq gone from the stream is a reset up to it', async (t) => {
  const f = follower();
  t.same(view(f.offer(msg(40, 30))), ['fetch 30']);
  t.same(view(f.offer(msg(30, 20))), ['fetch 20']);
  t.same(view(f.offer(msg(45, 40))), []);
  t.same(view(f.missing(20)), ['reset missing 11-20', 'process 30', 'process 40', 'process 45']);
  t.equal(f.stats.resets, 1);
  const g = follower();
  t.same(view(g.offer(msg(40, 30))), ['fetch 30']);
  t.same(view(g.offer(msg(30, undefined))), ['reset missing 11-30', 'process 40'], 'a fetched seq not naming me breaks the chain too');
});

t.test('follower: too much held ahead of a hole is a reset, never unbounded', async (t) => {
  const f = follower(10, 1, { maxPending: 5 });
  t.same(view(f.offer(msg(13, 12))), ['fetch 12']);
  for (let s = 14; s <= 17; s++) t.same(view(f.offer(msg(s, s - 1))), []);
  t.equal(f.stats.pending, 5);
  t.same(view(f.offer(msg(18, 17))), ['reset overflow 11-18'], 'the sixth: everything held is given up');
  t.equal(f.stats.pending, 0);
  t.same(view(f.offer(msg(12, 10))), [], 'the late answer is a duplicate');
  t.same(view(f.offer(msg(19, 18))), ['process 19'], 'the chain goes on');
  const b = follower(10, 1, { maxPendingBytes: 10 });
  t.same(view(b.offer({ seq: 13, epoch: 1, prev: 12, payload: '123456' })), ['fetch 12']);
  t.same(view(b.offer({ seq: 14, epoch: 1, prev: 13, payload: '123456' })), ['reset overflow 11-14'], 'by bytes');
});

t.test('follower: a new epoch told by its marker: scan the old tail, then the marker, then the new chain', async (t) => {
  const f = follower(10, 1);
  t.same(view(f.offer(msg(12, 10))), ['process 12']);
  t.same(view(f.offer(marker(20, 2))), ['scan 13-19']);
  t.same(view(f.offer(msg(22, 20, 2))), [], 'held: the marker is held, the scan first');
  t.same(view(f.offer(msg(15, 12))), [], 'a late old-epoch message: held for the scan');
  t.same(view(f.offer(msg(17, 15))), []);
  t.same(view(f.scanned(16)), ['process 15'], 'a scan in parts');
  t.same(view(f.offer(msg(17, 15))), [], 'a duplicate while held');
  t.same(view(f.scanned(19)), ['process 17', 'marker 20', 'process 22']);
  t.equal(f.epoch, 2);
  t.same(view(f.scanned(19)), [], 'a late scanned() is a no-op');
  t.same(view(f.offer(msg(23, 22, 2))), ['process 23']);
});

t.test('follower: a new epoch found through the chain; the marker fetched', async (t) => {
  const f = follower(10, 1);
  t.same(view(f.offer(msg(25, 22, 2))), ['fetch 22']);
  t.same(view(f.offer(msg(22, 20, 2))), ['fetch 20']);
  t.same(view(f.offer(marker(20, 2))), ['scan 11-19'], 'the fetched marker tells the epoch');
  t.same(view(f.offer(msg(14, 10))), []);
  t.same(view(f.scanned(19)), ['process 14', 'marker 20', 'process 22', 'process 25']);
  const g = follower(10, 1);
  t.same(view(g.heartbeat({ epoch: 3, markerSeq: 11, last: 11 }, 0)), ['fetch 11'], 'a heartbeat tells the epoch: nothing to scan, the marker is fetched');
  t.same(view(g.offer(msg(13, 0, 3))), [], 'a chain start waits for the marker');
  t.same(view(g.offer(marker(11, 3))), ['marker 11', 'reset restart 12-12', 'process 13'], 'capture did not chain me from the marker');
});

t.test('follower: epochs in a row, a scan too long, a marker gone', async (t) => {
  const f = follower(10, 1);
  t.same(view(f.heartbeat({ epoch: 2, markerSeq: 20, last: 21 }, 0)), ['scan 11-19']);
  t.same(view(f.heartbeat({ epoch: 3, markerSeq: 30, last: 31 }, 0)), ['scan 20-29'], 'the next epoch: the scan goes on, over the first marker');
  t.same(view(f.offer(marker(20, 2))), [], 'held for the scan');
  t.same(view(f.scanned(19)), []);
  t.same(view(f.offer(msg(25, 20, 2))), []);
  t.same(view(f.scanned(29)), ['marker 20', 'process 25', 'fetch 30']);
  t.equal(f.epoch, 2);
  t.same(view(f.missing(30)), ['reset missing 30-30']);
  t.equal(f.epoch, 3, 'past the marker: in its epoch');
  const g = follower(10, 1, { maxScanSeqs: 100 });
  t.same(view(g.offer(marker(200, 2))), ['reset gap 11-199', 'marker 200']);
  t.equal(g.head, 200);
  t.equal(g.epoch, 2);
});

// ---- the randomized run

const X = 'xxxxxxxx';
const OTHERS = ['yyyyyyyy', 'zzzzzzzz'];

interface Logged {
  seq: number;
  epoch: number;
  header: string | null;
  marker: boolean;
}

interface RunOptions {
  seed: number;
  messages: number;
  /** The epoch changes (a new stamper, as after a takeover) at this step. */
  epochAt: number;
  /** Fetch answers come this many steps later at most. */
  fetchDelay: number;
  maxPending?: number;
}

function run(o: RunOptions) {
  const rng = new Rng(o.seed);
  const log = new Map<number, Logged>();
  const f = new ChainFollower<number>({ inc: X, head: 0, epoch: 0, maxPending: o.maxPending });
  const processed: Array<Extract<ChainOutcome<number>, { tag: 'process' }>> = [];
  const resets: Array<Extract<ChainOutcome<number>, { tag: 'reset' }>> = [];
  let scans = 0;
  let now = 0;
  let core: Array<{ at: number; seq: number }> = [];
  let work: Array<{ at: number; o: ChainOutcome<number> }> = [];
  const handle = (outs: Array<ChainOutcome<number>>) => {
    for (const out of outs) {
      if (out.tag === 'process') processed.push(out);
      else if (out.tag === 'reset') resets.push(out);
      else {
        if (out.tag === 'scan') scans++;
        work.push({ at: now + rng.int(0, o.fetchDelay), o: out });
      }
    }
  };
  const asMessage = (e: Logged): ChainMessage<number> => ({ seq: e.seq, epoch: e.epoch, prev: e.header === null ? undefined : prevFor(e.header, X), marker: e.marker, payload: e.seq });
  const send = (seq: number) => {
    if (rng.chance(0.15)) return; // lost
    core.push({ at: now + rng.int(0, 20), seq });
    if (rng.chance(0.05)) core.push({ at: now + rng.int(0, 40), seq }); // and again
  };
  const answer = (out: ChainOutcome<number>) => {
    if (out.tag === 'fetch') {
      const e = log.get(out.seq);
      handle(e ? f.offer(asMessage(e)) : f.missing(out.seq));
    } else if (out.tag === 'scan') {
      // In parts of 100, as an ordered consumer over headers would hand them.
      for (let from = out.from; from <= out.to; from += 100) {
        const to = Math.min(out.to, from + 99);
        for (let s = from; s <= to; s++) {
          const e = log.get(s);
          if (e && (e.marker || (e.header !== null && prevFor(e.header, X) !== undefined))) handle(f.offer(asMessage(e)));
        }
        handle(f.scanned(to));
      }
    }
  };
  const due = (all: boolean) => {
    const ready = core.filter((c) => all || c.at <= now);
    core = core.filter((c) => !(all || c.at <= now));
    for (let i = ready.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [ready[i], ready[j]] = [ready[j], ready[i]];
    }
    for (const c of ready) handle(f.offer(asMessage(log.get(c.seq) as Logged)));
    while (work.some((w) => all || w.at <= now)) {
      const next = work.filter((w) => all || w.at <= now);
      work = work.filter((w) => !(all || w.at <= now));
      for (const w of next) answer(w.o);
    }
  };

  let stamper = new ChainStamper();
  for (const inc of [X, ...OTHERS]) stamper.join(inc);
  let seq = 1;
  stamper.startEpoch(1, seq);
  log.set(seq, { seq, epoch: 1, header: null, marker: true });
  send(seq);
  const quietBefore = (step: number) => (step > o.epochAt - 50 && step <= o.epochAt) || step > o.messages - 30;
  let lostBeforeEpoch = 0;
  for (let step = 1; step <= o.messages; step++) {
    now += 1;
    seq++;
    if (step === o.epochAt) {
      // A takeover: a new stamper, the registry's incs joined before the marker.
      const epoch = stamper.epoch + 1;
      stamper = new ChainStamper();
      for (const inc of [X, ...OTHERS]) stamper.join(inc);
      stamper.startEpoch(epoch, seq);
      log.set(seq, { seq, epoch, header: null, marker: true });
      // The marker is lost: the edge finds it through the chain or a heartbeat.
    } else {
      if (step === 700) stamper.leave(OTHERS[1]);
      if (step === 900) stamper.join(OTHERS[1]);
      const incs = [X, ...OTHERS].filter((inc) => stamper.has(inc) && rng.chance(0.4));
      const header = stamper.stamp(seq, incs);
      log.set(seq, { seq, epoch: stamper.epoch, header, marker: false });
      if (incs.includes(X)) {
        if (step > o.epochAt - 20 && step < o.epochAt) lostBeforeEpoch++; // the old epoch's tail: only a scan finds it
        else if (step <= o.messages - 30) send(seq); // the run's tail: only a heartbeat tells it
      }
    }
    if (step % 25 === 0 && !quietBefore(step)) handle(f.heartbeat({ epoch: stamper.epoch, markerSeq: stamper.markerSeq, last: stamper.lastSeqs()[X] }, now));
    due(false);
    handle(f.tick(now));
  }
  due(true);
  const last = stamper.lastSeqs()[X];
  const headBefore = f.head;
  handle(f.heartbeat({ epoch: stamper.epoch, markerSeq: stamper.markerSeq, last }, now));
  const early = f.tick(now + CLUSTER_CHAIN.quietMs - 1);
  const late = f.tick(now + CLUSTER_CHAIN.quietMs);
  handle(late);
  due(true);
  const expected = [...log.values()].filter((e) => e.marker || (e.header !== null && prevFor(e.header, X) !== undefined)).map((e) => e.seq);
  return { f, log, processed, resets, scans, expected, last, headBefore, early, late, lostBeforeEpoch };
}

t.test('randomized: exactly the messages naming the edge, in seq order, once each', async (t) => {
  let fetches = 0;
  let duplicates = 0;
  for (let seed = 1; seed <= 25; seed++) {
    const r = run({ seed, messages: 2_000, epochAt: 1_000, fetchDelay: 5 });
    const got = r.processed.map((p) => p.seq);
    if (got.join() !== r.expected.join()) {
      t.same(got, r.expected, `seed ${seed}: processed`);
      return;
    }
    t.same(r.resets, [], `seed ${seed}: no reset`);
    t.same(r.processed.filter((p) => p.marker).map((p) => p.epoch), [1, 2], `seed ${seed}: both markers, in their epochs`);
    t.ok(r.processed.every((p) => p.payload === p.seq), `seed ${seed}: payloads carried`);
    if (r.lostBeforeEpoch > 0) t.ok(r.scans >= 1, `seed ${seed}: the old epoch's tail was scanned`);
    t.ok(r.headBefore < r.last, `seed ${seed}: the tail was lost (head ${r.headBefore} < ${r.last})`);
    t.same(view(r.early), [], `seed ${seed}: no fetch before the quiet time`);
    t.same(view(r.late), [`fetch ${r.last}`], `seed ${seed}: the tail fetched after it`);
    t.equal(r.f.head, r.last, `seed ${seed}: head at the last message naming the edge`);
    t.equal(r.f.stats.pending, 0, `seed ${seed}: nothing left held`);
    fetches += r.f.stats.fetchesRequested;
    duplicates += r.f.stats.duplicates;
  }
  t.ok(fetches > 0 && duplicates > 0, `the channel lost (${fetches} fetches) and duplicated (${duplicates} duplicates)`);
});

t.test('randomized, slow fetches and a small buffer: overflow resets, the rest exact and in order', async (t) => {
  let resets = 0;
  for (let seed = 100; seed < 110; seed++) {
    const r = run({ seed, messages: 2_000, epochAt: 1_000, fetchDelay: 200, maxPending: 20 });
    const inReset = (s: number) => r.resets.some((x) => x.from <= s && s <= x.to);
    const got = r.processed.map((p) => p.seq);
    t.ok(got.every((s, i) => i === 0 || s > got[i - 1]), `seed ${seed}: strictly increasing`);
    const expectedSet = new Set(r.expected);
    t.ok(got.every((s) => expectedSet.has(s) && !inReset(s)), `seed ${seed}: only messages naming the edge, none given up`);
    const processedSet = new Set(got);
    const lost = r.expected.filter((s) => !processedSet.has(s));
    t.same(lost.filter((s) => !inReset(s)), [], `seed ${seed}: every message not processed lies in a reset's range`);
    t.ok(r.resets.every((x) => x.reason === 'overflow'), `seed ${seed}: every reset an overflow (nothing is missing from the log)`);
    t.ok(r.resets.every((x, i) => x.from <= x.to && (i === 0 || x.from > r.resets[i - 1].to)), `seed ${seed}: reset ranges disjoint, in order`);
    t.ok(r.f.stats.pending <= 20, `seed ${seed}: the bound held`);
    resets += r.resets.filter((x) => x.reason === 'overflow').length;
  }
  t.ok(resets > 0, `overflow resets happened (${resets})`);
});
