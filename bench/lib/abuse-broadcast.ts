// Item 10, no broadcast rate limit: one member (mallory) broadcasts 32 KiB payloads (just
// under the payload cap) to room:2 as fast as its socket takes them (`ws`, at most 32 sends not
// yet written) for 10 s, while 10 listeners (bob) are joined to room:2 and read everything.
// Bytes the sender pushed, bytes that reached the listeners, listeners closed, error frames the
// sender got (a rate limit answers limit_exceeded).
import WebSocket from 'ws';
import { sleep } from './common.js';
import { addCounts, AttackConn, fmtCounts, openMany, tally } from './abuse-ws.js';
import type { AbuseContext, AttackResult, Scenario } from './abuse-types.js';
import { nowMs } from './rpc.js';
import { fmtInt, round } from './stats.js';

const CHANNEL = 'room:2';
const LISTENERS = 10;
const PAYLOAD_BYTES = 32 * 1024;
const IN_FLIGHT = 32;

export const broadcast: Scenario = {
  name: 'broadcast',
  item: 10,
  title: 'one member broadcasting 32 KiB payloads as fast as it can to 10 listeners',

  async run(ctx: AbuseContext): Promise<AttackResult> {
    const durationMs = ctx.floodMs(10);
    let joined = 0;
    const listeners = (
      await openMany(LISTENERS, LISTENERS, (i) => {
        const c = new AttackConn(ctx.rig.port, ctx.rig.tokens.bob, { frame: (_c, type) => type === 'joined' && joined++ }, i);
        void c.welcome.then(() => c.send({ type: 'join', channel: CHANNEL, ref: i }), () => {});
        return c;
      })
    ).filter((c): c is AttackConn => c !== null);
    for (let k = 0; k < 100 && joined < listeners.length; k++) await sleep(50);

    const frame = JSON.stringify({ type: 'broadcast', channel: CHANNEL, event: 'flood', payload: 'x'.repeat(PAYLOAD_BYTES - 8) });
    const senderErrors: Record<string, number> = {};
    let sent = 0;
    let senderClosed: string | null = null;
    let senderJoined = false;
    const ws = new WebSocket(`ws://127.0.0.1:${ctx.rig.port}/ws?token=${ctx.rig.tokens.mallory}`, { perMessageDeflate: false });
    ws.on('error', () => {});
    ws.on('close', (code, reason) => (senderClosed = `${code} ${reason.toString()}`.trim()));
    const ready = new Promise<void>((resolve) => {
      ws.on('message', (data: Buffer) => {
        let m: { type?: string; code?: string };
        try {
          m = JSON.parse(data.toString('utf8')) as typeof m;
        } catch {
          return;
        }
        if (m.type === 'joined') {
          senderJoined = true;
          resolve();
        } else if (m.type === 'error') senderErrors[m.code ?? '?'] = (senderErrors[m.code ?? '?'] ?? 0) + 1;
      });
      ws.on('open', () => ws.send(JSON.stringify({ type: 'join', channel: CHANNEL, ref: 'j' })));
      ws.on('close', () => resolve());
    });
    await Promise.race([ready, sleep(10_000)]);

    const received0 = listeners.reduce((a, c) => a + c.bytes, 0);
    const t0 = nowMs();
    const endAt = t0 + durationMs;
    if (senderJoined) {
      await new Promise<void>((resolve) => {
        let inFlight = 0;
        const pump = (): void => {
          while (inFlight < IN_FLIGHT && nowMs() < endAt && ws.readyState === WebSocket.OPEN) {
            inFlight++;
            sent++;
            ws.send(frame, () => {
              inFlight--;
              pump();
            });
          }
          if (inFlight === 0) resolve();
        };
        pump();
        // The deadline also when the socket stops draining.
        setTimeout(resolve, durationMs + 2_000);
      });
    }
    const ms = nowMs() - t0;
    await sleep(500); // the last deliveries
    const deliveries = listeners.reduce((a, c) => a + (c.types.broadcast ?? 0), 0);
    const bytes = listeners.reduce((a, c) => a + c.bytes, 0) - received0;
    const closes = tally(listeners.map((c) => c.closed));
    const listenerErrors: Record<string, number> = {};
    for (const c of listeners) addCounts(listenerErrors, c.errors);
    ws.terminate();
    for (const c of listeners) c.destroy();
    const mb = (b: number): string => fmtInt(b / 1048576);
    return {
      params: { listeners: LISTENERS, payloadBytes: PAYLOAD_BYTES, seconds: durationMs / 1000, inFlight: IN_FLIGHT },
      figures: {
        listenersJoined: joined,
        senderJoined,
        sent,
        bytesSent: sent * frame.length,
        sentPerSec: round(sent / (ms / 1000)),
        senderErrors,
        senderClosed,
        deliveries,
        bytesToListeners: bytes,
        listenersClosed: listeners.filter((c) => c.closed).length,
        closes,
        listenerErrors,
      },
      summary:
        `${fmtInt(sent)} broadcasts sent (${mb(sent * frame.length)} MiB in ${round(ms / 1000, 1)} s; sender errors ${fmtCounts(senderErrors)}${senderClosed ? `, sender closed ${senderClosed}` : ''}); ` +
        `${joined}/${LISTENERS} listeners got ${fmtInt(deliveries)} (${mb(bytes)} MiB), ${listeners.filter((c) => c.closed).length} closed (${fmtCounts(closes)})`,
    };
  },
};
