// Small pure parts of the client: reading a JWT's exp without verifying it (src/client/jwt.ts),
// when to refresh, and the full-jitter backoff (src/client/backoff.ts).
import t from 'tap';
import { Backoff } from '../../src/client/backoff.js';
import { refreshDelay, tokenExpiry } from '../../src/client/jwt.js';
import { hsToken } from '../helpers/tokens.js';

const b64url = (o: unknown) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64url');

t.test('tokenExpiry reads exp from the payload', async (t) => {
  const real = await hsToken({ sub: 'ann' }, { exp: 1_900_000_000 });
  t.equal(tokenExpiry(real), 1_900_000_000, 'a token signed with jose');
  t.equal(tokenExpiry(await hsToken({ sub: 'ann' }, { exp: null })), null, 'no exp');
  t.equal(tokenExpiry(`${b64url({ alg: 'none' })}.${b64url({ sub: 'zoë 🙂', exp: 42 })}.`), 42, 'base64url with non-ASCII claims');
  t.equal(tokenExpiry(`x.${b64url({ exp: '42' })}.y`), null, 'exp must be a number');
  t.equal(tokenExpiry(`x.${b64url('not json')}.y`), null, 'payload not JSON');
  t.equal(tokenExpiry(`x.${b64url('null')}.y`), null, 'payload null');
  t.equal(tokenExpiry('x.%%%.y'), null, 'not base64');
  t.equal(tokenExpiry('opaque-token'), null, 'not a JWT');
});

t.test('refreshDelay: lead before exp, at most a third of the remaining life', async (t) => {
  const now = 1_000_000;
  t.equal(refreshDelay(now + 3_600_000, now, 30_000), 3_570_000, '1 h token: 30 s before');
  t.equal(refreshDelay(now + 3_000, now, 30_000), 2_000, '3 s token: after 2 s');
  t.equal(refreshDelay(now + 90_000, now, 30_000), 60_000, '90 s: 30 s before');
  t.equal(refreshDelay(now - 5, now, 30_000), 0, 'already expired: now');
});

t.test('Backoff: full jitter below a doubling ceiling, capped; reset', async (t) => {
  const top = new Backoff({ baseMs: 100, capMs: 1_000 }, () => 0.999999);
  t.same([1, 2, 3, 4, 5, 6].map(() => top.next()), [99, 199, 399, 799, 999, 999], 'ceilings 100, 200, 400, 800, then the cap');
  top.reset();
  t.equal(top.next(), 99, 'reset: from the base again');
  const bottom = new Backoff({ baseMs: 100, capMs: 1_000 }, () => 0);
  t.equal(bottom.next(), 0, 'full jitter reaches 0');
  const real = new Backoff({ baseMs: 50, capMs: 400 });
  for (let i = 0; i < 200; i++) {
    const d = real.next();
    if (d < 0 || d >= 400) t.fail(`delay ${d} outside [0, 400)`);
  }
  t.equal(real.attempts, 200);
  t.equal(new Backoff({ baseMs: 10_000, capMs: 5 }, () => 0.5).next(), 5_000, 'a cap below the base is raised to it');
});
