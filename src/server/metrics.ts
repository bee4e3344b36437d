// Prometheus metrics (prom-client). Hot-path counters are plain numbers in the hub, read at
// scrape time, so a delivery costs an increment, not a registry lookup.
import client from 'prom-client';
import type { Capture } from '../capture/capture.js';
import type { Hub } from '../hub/hub.js';
import type { PolicyAuthorizer } from '../auth/authorizer.js';

export interface MetricsSources {
  hub: Hub;
  capture: Capture;
  clients: () => number;
  slowCloses: () => number;
  /** Absent under --no-auth. */
  auth?: PolicyAuthorizer | null;
}

export function createMetrics(src: MetricsSources): client.Registry {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'walcast_process_' });
  const gauge = (name: string, help: string, read: () => number) =>
    new client.Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  const counter = (name: string, help: string, read: () => number) => {
    let reported = 0;
    return new client.Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const now = read();
        if (now > reported) this.inc(now - reported);
        reported = now;
      },
    });
  };
  const { hub, capture } = src;
  gauge('walcast_clients', 'Connected WebSocket clients', src.clients);
  gauge('walcast_subscriptions', 'Active subscriptions (live and catching up)', () => hub.subscriptionCount);
  counter('walcast_transactions_in_total', 'Committed transactions received from the slot', () => hub.counters.transactionsIn);
  counter('walcast_changes_in_total', 'Row changes received from the slot', () => hub.counters.changesIn);
  counter('walcast_deliveries_total', 'Changes sent to subscriptions', () => hub.counters.deliveries);
  counter('walcast_resyncs_total', 'resync messages sent', () => hub.counters.resyncs);
  counter('walcast_oversized_transactions_total', 'Transactions past --max-transaction-bytes, skipped with resync transaction_too_large', () => hub.counters.oversized);
  counter('walcast_window_shrinks_total', 'Times the slot lag bound dropped the oldest part of the history window', () => hub.counters.windowShrinks);
  counter('walcast_slow_closes_total', 'Sockets closed with 4008 for backpressure', src.slowCloses);
  gauge('walcast_replication_up', '1 while the replication stream is streaming', () => (capture.current === 'streaming' ? 1 : 0));
  gauge('walcast_slot_lag_bytes', 'WAL bytes between the furthest position seen and the slot acknowledgement', () => {
    const l = capture.lsns;
    return Number(l.received > l.acked ? l.received - l.acked : 0n);
  });
  gauge('walcast_history_bytes', 'Estimated bytes held by the history window', () => hub.ring.stats().bytes);
  gauge('walcast_history_entries', 'Transactions and marks in the history window', () => hub.ring.stats().entries);
  gauge('walcast_history_transactions', 'Transactions in the history window', () => hub.ring.stats().transactions);
  gauge('walcast_history_age_seconds', 'Age of the oldest entry of the history window', () => {
    const t = hub.ring.stats().oldestTime;
    return t === null ? 0 : Math.max(0, (Date.now() - t) / 1000);
  });
  const auth = src.auth;
  if (auth) {
    gauge('walcast_policy_rules', 'Policy rules (p) in force', () => auth.ruleCount);
    gauge('walcast_policy_links', 'Role and relation links (g, g2, ...) held in memory, with their history in the window', () => auth.linkTotal);
    gauge('walcast_policy_ready', '1 once policies and relations are loaded (0: every decision is deny)', () => (auth.ready ? 1 : 0));
  }
  return registry;
}
