// `progress` for idle clients whose last position is behind the head. With many idle clients a
// sweep is that many writes, so it is spread over turns of the event loop rather than blocking
// it (bench/README.md, auth).
import { compareWalPositions, formatWalPosition } from '../protocol/position.js';
import type { HistoryRing } from '../history/ring.js';
import { progress } from '../protocol/frames.js';
import type { HubSubscription } from './subscriptions.js';
import type { Peer } from './types.js';

/** Peers one turn of the progress sweep writes to. */
const PROGRESS_SLICE = 256;

export class ProgressSweep {
  /** Peers of the sweep under way, and how far it got. */
  private sweep: Peer[] | null = null;
  private sweepAt = 0;

  constructor(
    private readonly ring: HistoryRing,
    private readonly peers: ReadonlyMap<Peer, ReadonlyMap<string, HubSubscription>>,
    /** Peers with frames waiting for this turn's flush: they get their position from those. */
    private readonly touched: ReadonlySet<Peer>,
  ) {}

  start(): void {
    if (this.sweep) return; // the last sweep is still going
    this.sweep = [...this.peers.keys()];
    this.sweepAt = 0;
    this.slice();
  }

  private readonly slice = (): void => {
    const peers = this.sweep;
    if (!peers) return;
    const head = this.ring.head;
    const frame = progress(formatWalPosition(head.lsn, head.index));
    const end = Math.min(peers.length, this.sweepAt + PROGRESS_SLICE);
    for (; this.sweepAt < end; this.sweepAt++) {
      const peer = peers[this.sweepAt];
      const subs = this.peers.get(peer);
      if (!subs || peer.closed || subs.size === 0 || this.touched.has(peer)) continue;
      if (peer.lastPos && compareWalPositions(peer.lastPos, head) >= 0) continue;
      let catching = false;
      for (const sub of subs.values()) if (sub.state === 'catching_up') catching = true;
      if (catching) continue;
      peer.lastPos = head;
      peer.push(frame);
      peer.flush();
    }
    if (this.sweepAt < peers.length) setImmediate(this.slice);
    else this.sweep = null;
  };
}
