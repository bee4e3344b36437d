// Per-test throwaway NATS servers: each test (file) gets its own, removed when the test ends.
import type { Test } from 'tap';
import { startThrowawayNats, type ThrowawayNats, type ThrowawayNatsOptions } from '../../src/nats/throwaway.js';

/** starts NATS servers for this test (file) and registers t.teardown(destroy) */
export async function withNats(t: Test, opts?: ThrowawayNatsOptions): Promise<ThrowawayNats> {
  const nats = await startThrowawayNats(opts);
  t.teardown(() => nats.destroy());
  return nats;
}
