// A daemon over a throwaway database set up by the test's SQL (schema, rows, policies), and
// clients connecting to it as a user: the set-up of the integration tests of channels and
// policies.

import type { Test } from 'tap';
import type WebSocket from 'ws';
import { resolveServeConfig, type ServeFlags } from '../../src/config.js';
import { startDaemon, type Daemon, type DaemonExtras } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import type { ThrowawayPostgres } from '../../src/pg/throwaway.js';
import { migrate } from '../../src/sql/migrate.js';
import { query, waitUntil } from './capture.js';
import { withPostgres } from './pg.js';
import { hsToken, SECRET } from './tokens.js';
import { WsClient } from './ws.js';

export interface TestDaemon {
  db: ThrowawayPostgres;
  /** The superuser's URL (db.url). */
  url: string;
  daemon: Daemon;
  /** A client of the daemon with a token of `user` (sub), closed when the test ends. */
  as(user: string, ws?: WebSocket.ClientOptions): Promise<WsClient>;
  /**
   * Runs `sql`, a change of policies or declared relations, and waits until the daemon has
   * applied it (its authorizer's epoch moved): what follows is judged by the new state.
   */
  applied(sql: string, params?: unknown[]): Promise<void>;
}

/**
 * A throwaway cluster with walcast installed, then `sql` run as the superuser, then a daemon on a
 * free port verifying tokens signed with SECRET, with `flags` (--relation and the like) and
 * `extras`; all stopped when `t` ends.
 */
export async function startTestDaemon(t: Test, sql: string, flags: ServeFlags = {}, extras?: DaemonExtras): Promise<TestDaemon> {
  const db = await withPostgres(t);
  await migrate(db.url);
  const url = db.url;
  await query(url, sql);
  const daemon = await startDaemon(resolveServeConfig({ db: url, port: '0', jwtSecret: SECRET, ...flags }, {}), silentLogger, extras);
  t.teardown(() => daemon.stop());
  const as = async (user: string, ws?: WebSocket.ClientOptions): Promise<WsClient> => {
    const c = await WsClient.connect(`ws://127.0.0.1:${daemon.port}/ws?token=${await hsToken({ sub: user })}`, { ws });
    t.teardown(() => c.close());
    return c;
  };
  const applied = async (sql: string, params: unknown[] = []): Promise<void> => {
    const auth = daemon.hub.auth;
    if (!auth) throw new Error('applied(): the daemon runs without authorization');
    const before = auth.epoch;
    await query(url, sql, params);
    await waitUntil(() => auth.epoch !== before, 10_000, () => `the daemon to apply: ${sql}`);
  };
  return { db, url, daemon, as, applied };
}
