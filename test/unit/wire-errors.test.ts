// Errors answered to clients carry no stack trace (capturing one was a large part of the cost of
// a refused request in a flood); operator-facing errors keep theirs, and the global limit is
// left as it was.
import t from 'tap';
import { ConfigError, ForbiddenError, LimitExceededError } from '../../src/errors.js';

t.test('wire errors skip the stack, others keep it', async (t) => {
  const before = Error.stackTraceLimit;
  const wire = new ForbiddenError('no policy allows u1 to join ' + 'x'.repeat(255));
  t.notMatch(wire.stack ?? '', /\n\s+at /, 'no frames in a wire error');
  t.equal(wire.code, 'forbidden');
  t.equal(new LimitExceededError('too many').code, 'limit_exceeded');
  t.match(new ConfigError('bad').stack ?? '', /\n\s+at /, 'an operator-facing error keeps its frames');
  t.equal(Error.stackTraceLimit, before, 'the global limit is restored');
});
