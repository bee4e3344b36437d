// Supabase's own client, @supabase/realtime-js, against a walcast daemon (Node: `transport: ws`),
// and a collector for what its callbacks receive.

import type { Test } from 'tap';
import WebSocket from 'ws';
import { RealtimeClient, type RealtimeChannel } from '@supabase/realtime-js';
import { Waiters } from './waiters.js';

export interface SupabaseClientOptions {
  /** The `apikey` (an anon key, or any JWT the daemon accepts). */
  apikey: string;
  /** A user's token, sent as `access_token` (setAuth). */
  token?: string;
  vsn?: '1.0.0' | '2.0.0';
  /** Log realtime-js's own traces to stderr (debugging). */
  trace?: boolean;
}

/** A RealtimeClient for the daemon on `port`, disconnected when `t` ends. */
export async function supabaseClient(t: Test, port: number, o: SupabaseClientOptions): Promise<RealtimeClient> {
  const client = new RealtimeClient(`ws://127.0.0.1:${port}/realtime/v1`, {
    params: { apikey: o.apikey },
    transport: WebSocket as never,
    vsn: o.vsn ?? '2.0.0',
    heartbeatIntervalMs: 5_000,
    ...(o.trace ? { logger: (kind: string, msg: string, data: unknown) => console.error(kind, msg, JSON.stringify(data)) } : {}),
  });
  if (o.token) await client.setAuth(o.token);
  t.teardown(() => client.disconnect());
  return client;
}

export interface Status {
  status: string;
  err?: Error;
}

/** Subscribes and resolves with the first status that is not CLOSED (SUBSCRIBED, CHANNEL_ERROR, TIMED_OUT). */
export function subscribed(ch: RealtimeChannel, onStatus?: (s: string) => void): Promise<Status> {
  return new Promise((resolve) => {
    let done = false;
    ch.subscribe((status, err) => {
      onStatus?.(status);
      if (done || status === 'CLOSED') return;
      done = true;
      resolve({ status, err });
    });
  });
}

/** What a callback received, in order, with waits for the next match. */
export class Inbox<T> {
  readonly items: T[] = [];
  private readonly waiters = new Waiters();

  readonly push = (item: T): void => {
    this.items.push(item);
    this.waiters.notify();
  };

  /** The first item (from the start) matching `pred`; rejects after `timeoutMs`. */
  find(pred: (item: T) => boolean, timeoutMs = 10_000, what = 'an item'): Promise<T> {
    return this.waiters.wait<T>(
      (s) => {
        const hit = this.items.find(pred);
        if (hit === undefined) return false;
        s.resolve(hit);
        return true;
      },
      timeoutMs,
      () => new Error(`timed out waiting for ${what}; have ${JSON.stringify(this.items).slice(0, 2000)}`),
    );
  }
}
