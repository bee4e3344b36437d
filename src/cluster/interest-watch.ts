// Feeds an InterestTable from the interest bucket: a KV watch (each key's last value, then every
// change, in revision order). A watch that ends or fails is reopened from the revision after the
// last one applied: with history 1 the bucket still holds the newest entry of every key changed
// since (a delete stays as a delete marker), so nothing is missed and nothing is applied twice.
import type { KV } from '@nats-io/kv';
import { CLUSTER_INTEREST } from '../constants.js';
import type { Logger } from '../log.js';
import { RetryBackoff } from '../util/backoff.js';
import type { InterestTable } from './interest-table.js';

export interface InterestWatch {
  /** Resolves once the table holds everything the bucket held when the watch first opened. */
  readonly ready: Promise<void>;
  /** Times the watch was (re)opened. */
  readonly opened: number;
  stop(): Promise<void>;
}

export interface InterestWatchOptions {
  retryBaseMs?: number;
  retryCapMs?: number;
}

export function watchInterest(kv: Pick<KV, 'watch' | 'status'>, table: InterestTable, log: Logger, opts: InterestWatchOptions = {}): InterestWatch {
  const backoff = new RetryBackoff(opts.retryBaseMs ?? CLUSTER_INTEREST.watchRetryBaseMs, opts.retryCapMs ?? CLUSTER_INTEREST.watchRetryCapMs);
  let stopped = false;
  let stopIter: (() => void) | null = null;
  let wake: (() => void) | null = null;
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  let readyAt: number | null = null; // the bucket's last revision when the first watch opened
  const state = { opened: 0 };

  const checkReady = (): void => {
    if (readyAt !== null && table.appliedRevision >= readyAt) markReady();
  };

  const run = async (): Promise<void> => {
    while (!stopped) {
      try {
        if (readyAt === null) {
          // Every message at or below this revision is either some key's last value (the
          // watch's initial values) or superseded by one above it.
          readyAt = (await kv.status()).streamInfo.state.last_seq;
          checkReady();
        }
        const from = table.appliedRevision + 1;
        const iter = await kv.watch(from > 1 ? { resumeFromRevision: from } : {});
        stopIter = () => iter.stop();
        if (stopped) iter.stop();
        state.opened++;
        for await (const e of iter) {
          table.apply(e);
          if (e.isUpdate) markReady();
          else checkReady();
          backoff.reset();
        }
        if (!stopped) log.warn('the interest watch ended; reopening it');
      } catch (err) {
        if (stopped) break;
        log.warn({ err: (err as Error).message }, 'the interest watch failed; reopening it');
      }
      stopIter = null;
      if (stopped) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoff.next());
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
  };
  const running = run();
  return {
    ready,
    get opened() {
      return state.opened;
    },
    async stop() {
      stopped = true;
      stopIter?.();
      (wake as (() => void) | null)?.();
      await running;
    },
  };
}
