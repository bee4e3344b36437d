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

export type PhoenixFrame = [string | null, string | null, string, string, Record<string, unknown>];

/** A raw vsn 2.0.0 Phoenix client of the Supabase endpoint (frames as sent, no realtime-js), closed when `t` ends. */
export class RawPhoenix {
  readonly frames: PhoenixFrame[] = [];
  closed: { code: number } | null = null;
  private readonly waiters = new Waiters();
  private ref = 0;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, binary) => {
      if (!binary) this.frames.push(JSON.parse(data.toString()) as PhoenixFrame);
      this.waiters.notify();
    });
    ws.on('close', (code) => {
      this.closed = { code };
      this.waiters.notify();
    });
  }

  static async open(t: Test, port: number, apikey: string): Promise<RawPhoenix> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=${apikey}&vsn=2.0.0`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    t.teardown(() => ws.close());
    return new RawPhoenix(ws);
  }

  /** Sends a push; returns its ref. */
  push(topic: string, event: string, payload: unknown, joinRef: string | null = null): string {
    const ref = String(++this.ref);
    this.ws.send(JSON.stringify([joinRef, ref, topic, event, payload]));
    return ref;
  }

  /** The phx_reply to push `ref`. */
  reply(ref: string, timeoutMs = 10_000): Promise<{ status: string; response: Record<string, unknown> }> {
    return this.next((f) => f[3] === 'phx_reply' && f[1] === ref, timeoutMs).then((f) => f[4] as never);
  }

  next(pred: (f: PhoenixFrame) => boolean, timeoutMs = 10_000): Promise<PhoenixFrame> {
    return this.waiters.wait<PhoenixFrame>(
      (s) => {
        const f = this.frames.find(pred);
        if (!f) return false;
        s.resolve(f);
        return true;
      },
      timeoutMs,
      () => new Error(`no such frame; have ${JSON.stringify(this.frames.slice(-5))}`),
    );
  }

  /** A heartbeat answered: the connection is alive and in order. */
  async alive(): Promise<boolean> {
    return (await this.reply(this.push('phoenix', 'heartbeat', {}))).status === 'ok';
  }
}
