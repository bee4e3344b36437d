// Per-test throwaway clusters: each test (file) gets its own, removed when the test ends.

import type { Test } from 'tap';
import { startThrowawayPostgres, type ThrowawayOptions, type ThrowawayPostgres } from '../../src/pg/throwaway.js';

/** starts a cluster for this test (file) and registers t.teardown(destroy) */
export async function withPostgres(t: Test, opts?: ThrowawayOptions): Promise<ThrowawayPostgres> {
  const pg = await startThrowawayPostgres(opts);
  t.teardown(() => pg.destroy());
  return pg;
}
