// The capture's transition table (src/capture/state.ts): every listed change allowed, every
// other refused; and a Capture refusing a change the table does not list (logged, reported as
// 'fatal' with CaptureStateError, state unchanged or `failed`), without a server.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import t from 'tap';
import { Capture } from '../../src/capture/capture.js';
import { CAPTURE_STATES, canMove, isTerminal, TRANSITIONS } from '../../src/capture/state.js';
import type { CaptureState } from '../../src/capture/types.js';
import { CaptureStateError } from '../../src/errors.js';

const ALL: CaptureState[] = ['idle', 'connecting', 'streaming', 'backoff', 'stopping', 'stopped', 'failed'];

/** The table as the diagram in state.ts draws it, written out again by hand. */
const EXPECTED: Array<[CaptureState, CaptureState]> = [
  ['idle', 'connecting'],
  ['idle', 'stopping'],
  ['connecting', 'streaming'],
  ['connecting', 'backoff'],
  ['connecting', 'failed'],
  ['connecting', 'stopping'],
  ['streaming', 'backoff'],
  ['streaming', 'failed'],
  ['streaming', 'stopping'],
  ['backoff', 'connecting'],
  ['backoff', 'failed'],
  ['backoff', 'stopping'],
  ['stopping', 'stopped'],
];

t.test('the table covers every state of CaptureState', async (t) => {
  t.same([...CAPTURE_STATES].sort(), [...ALL].sort());
});

t.test('every listed change is allowed, every other refused', async (t) => {
  const listed = new Set(EXPECTED.map(([a, b]) => `${a}>${b}`));
  let allowed = 0;
  for (const from of ALL) {
    for (const to of ALL) {
      const want = listed.has(`${from}>${to}`);
      t.equal(canMove(from, to), want, `${from} → ${to} ${want ? 'allowed' : 'refused'}`);
      if (canMove(from, to)) allowed++;
    }
  }
  t.equal(allowed, EXPECTED.length, 'nothing allowed beyond the list');
  t.notOk(canMove('stopped', 'failed'), 'stopped → failed (the old fatal-at-start path) is refused');
});

t.test('stopped and failed are terminal, and only they', async (t) => {
  t.same(ALL.filter(isTerminal).sort(), ['failed', 'stopped']);
  for (const s of ALL) t.notOk(TRANSITIONS[s].includes(s), `${s} does not list itself`);
  // Every state is reachable from idle, and every non-terminal one can be stopped.
  const seen = new Set<CaptureState>(['idle']);
  for (const s of seen) for (const n of TRANSITIONS[s]) seen.add(n); // a Set iterates what is added meanwhile
  t.same([...seen].sort(), [...ALL].sort(), 'every state reachable from idle');
  for (const s of ALL) if (!isTerminal(s) && s !== 'stopping') t.ok(canMove(s, 'stopping'), `stop() from ${s}`);
});

/** A Capture that never connects (the URL is not used until start()), with its log lines. */
function idleCapture() {
  const lines: Array<{ level: number; msg: string; from?: string; to?: string }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  const capture = new Capture({ url: 'postgres://nobody@127.0.0.1:1/none', slot: 's', publication: 'walcast', logger: pino({ level: 'info' }, sink) });
  const states: CaptureState[] = [];
  const fatal: Error[] = [];
  capture.on('state', (s: CaptureState) => states.push(s));
  capture.on('fatal', (err: Error) => fatal.push(err));
  // The one door every change goes through; private, reached here to test its refusal.
  const setState = (s: CaptureState) => (capture as unknown as { setState(s: CaptureState): boolean }).setState(s);
  return { capture, lines, states, fatal, setState };
}

t.test('Capture refuses a change the table does not list: logged, fatal, state not moved there', async (t) => {
  const c = idleCapture();
  t.equal(c.setState('streaming'), false, 'idle → streaming refused');
  t.equal(c.capture.current, 'idle', 'idle cannot fail either: it stays idle');
  t.same(c.states, [], 'no state event');
  t.equal(c.fatal.length, 1, 'reported once as fatal');
  t.type(c.fatal[0], CaptureStateError);
  t.match(c.fatal[0], { code: 'capture_state', message: /idle to streaming/ });
  t.ok(c.lines.some((l) => l.level === 50 && l.from === 'idle' && l.to === 'streaming'), 'logged at error level');
  await c.capture.stop();
  t.same(c.states, ['stopping', 'stopped'], 'stop() still ends it in order');
});

t.test('a refused change from a live state ends in failed, released', async (t) => {
  const c = idleCapture();
  t.ok(c.setState('connecting'));
  t.ok(c.setState('connecting'), 'staying is not a change: accepted, no event');
  t.equal(c.setState('stopped'), false, 'connecting → stopped skips stopping: refused');
  t.equal(c.capture.current, 'failed');
  t.same(c.states, ['connecting', 'failed'], 'each emitted change is in the table');
  t.equal(c.fatal.length, 1);
  await c.capture.stop();
  t.equal(c.capture.current, 'failed', 'stop() after failed releases and keeps failed');
  t.same(c.states, ['connecting', 'failed']);
  t.equal(c.setState('stopping'), false, 'nothing leaves failed');
  t.equal(c.fatal.length, 2, 'that too is reported');
});

t.test('start() twice is a CaptureStateError', async (t) => {
  const c = idleCapture();
  await c.capture.stop();
  await t.rejects(c.capture.start(), CaptureStateError);
});
