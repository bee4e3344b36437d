// The connection caps' defaults and checks (config.ts), the open-files limit as read from
// /proc/self/limits, and Admission's counting (issue #11 item 9).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { resolveConnectionCaps, resolveServeConfig } from '../../src/config.js';
import { Admission } from '../../src/server/admission.js';
import { openFilesSoftLimit } from '../../src/util/fd-limit.js';

t.test('defaults: min(10000, soft limit - 256); pending 1000, at most the cap', async (t) => {
  t.same(resolveConnectionCaps(undefined, undefined, 1024), { maxConnections: 768, maxPendingAuth: 768 });
  t.same(resolveConnectionCaps(undefined, undefined, 65536), { maxConnections: 10000, maxPendingAuth: 1000 });
  t.same(resolveConnectionCaps(undefined, undefined, null), { maxConnections: 10000, maxPendingAuth: 1000 }, 'unknown limit');
  t.same(resolveConnectionCaps('50', '20', 1024), { maxConnections: 50, maxPendingAuth: 20 });
  t.same(resolveConnectionCaps('768', undefined, 1024), { maxConnections: 768, maxPendingAuth: 768 }, 'exactly the room');
  t.same(resolveConnectionCaps('50000', undefined, null), { maxConnections: 50000, maxPendingAuth: 1000 }, 'anything where the limit is unknown');
});

t.test('above what the limit allows: bad_config naming the limit and the fix', async (t) => {
  t.throws(() => resolveConnectionCaps('769', undefined, 1024), { code: 'bad_config', message: /--max-connections 769 is more than the open-files limit allows \(1024 - 256 .* = 768\)/, hint: /ulimit -n.*--max-connections 768 or less/ });
  t.throws(() => resolveConnectionCaps(undefined, undefined, 200), { code: 'bad_config', message: /open-files limit \(200\) leaves no room/ });
  for (const bad of ['0', '-1', '1.5', 'lots', '']) {
    t.throws(() => resolveConnectionCaps(bad, undefined, null), { code: 'bad_config' }, `--max-connections ${JSON.stringify(bad)}`);
    t.throws(() => resolveConnectionCaps(undefined, bad, null), { code: 'bad_config' }, `--max-pending-auth ${JSON.stringify(bad)}`);
  }
});

t.test('flags, environment, metrics listener', async (t) => {
  const base = { db: 'postgres://u@h/d', auth: false };
  const c = resolveServeConfig({ ...base, maxConnections: '40', maxPendingAuth: '10', metricsPort: '9464' }, {});
  t.match(c, { maxConnections: 40, maxPendingAuth: 10, metricsPort: 9464, metricsHost: '127.0.0.1', reusePort: false });
  const e = resolveServeConfig(base, { WALCAST_MAX_CONNECTIONS: '30', WALCAST_MAX_PENDING_AUTH: '5', WALCAST_METRICS_PORT: '0', WALCAST_METRICS_HOST: '::1', WALCAST_REUSE_PORT: '1', WALCAST_HOST: '0.0.0.0' });
  t.match(e, { maxConnections: 30, maxPendingAuth: 5, metricsPort: 0, metricsHost: '::1', reusePort: true, host: '0.0.0.0' });
  t.match(resolveServeConfig({ ...base, host: '0.0.0.0', metricsPort: '1' }, {}), { metricsHost: '0.0.0.0' }, 'the metrics host defaults to --host');
  t.equal(resolveServeConfig(base, {}).metricsPort, null, 'no metrics listener by default');
  t.throws(() => resolveServeConfig({ ...base, metricsHost: '127.0.0.1' }, {}), { code: 'bad_config', message: /--metrics-host was given without --metrics-port/ });
  t.throws(() => resolveServeConfig({ ...base, metricsPort: '70000' }, {}), { code: 'bad_config' });
});

t.test('the soft limit from /proc/self/limits', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'walcast-limits-'));
  const file = (text: string) => {
    const f = join(dir, `l${Math.random()}`);
    writeFileSync(f, text);
    return f;
  };
  const head = 'Limit                     Soft Limit           Hard Limit           Units     \n';
  t.equal(openFilesSoftLimit(file(`${head}Max open files            1024                 524288               files     \n`)), 1024);
  t.equal(openFilesSoftLimit(file(`${head}Max open files            unlimited            unlimited            files     \n`)), null);
  t.equal(openFilesSoftLimit(join(dir, 'absent')), null);
  if (process.platform === 'linux') t.ok((openFilesSoftLimit() ?? 0) > 0, `this process: ${openFilesSoftLimit()}`);
});

t.test('Admission counts', async (t) => {
  const a = new Admission({ maxConnections: 3, maxPendingAuth: 1, authRequired: true });
  t.equal(a.check(false), null);
  t.equal(a.opened(false), true, 'without a token: pending');
  t.equal(a.check(false), 'max_pending_auth', 'a second one without a token');
  t.equal(a.check(true), null, 'with a token: only the connection cap');
  t.equal(a.opened(true), false);
  a.authenticated();
  t.equal(a.check(false), null, 'the pending one authenticated');
  a.opened(false);
  t.equal(a.check(true), 'max_connections');
  a.closed(true);
  t.same({ open: a.open, pending: a.pending }, { open: 2, pending: 0 });
  t.same(a.refused, { max_connections: 1, max_pending_auth: 1 });
  const noAuth = new Admission({ maxConnections: 2, maxPendingAuth: 1, authRequired: false });
  t.equal(noAuth.opened(false), false, 'nobody pends under --no-auth');
  t.equal(noAuth.check(false), null);
});
