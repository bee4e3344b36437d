// Database load of walcast processes: walsenders (pg_stat_replication) and backends
// (pg_stat_activity), each attributed to the walcast process holding its client socket (the
// backend's client_port is a local port of that process: /proc/<pid>/fd and /proc/net/tcp*,
// Linux only). The socket tells them apart (written before walcast named its connections `walcast <node-id>`).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type pg from 'pg';

/** The bench's own connections say so, and are left out. */
export const BENCH_APP = 'walcast-bench';

export interface ProcessLoad {
  walsenders: number;
  /** Ordinary backends (pool connections): backend_type 'client backend'. */
  backends: number;
}

export interface DbLoad {
  /** Rows of pg_stat_replication. */
  walsenders: number;
  /** Logical slots, and how many are active. */
  slots: number;
  activeSlots: number;
  /** By walcast process id (node id); `other` for connections of no walcast process seen. */
  byNode: Record<string, ProcessLoad>;
  /** application_name / usename pairs of the walcast connections, counted. */
  names: Record<string, number>;
}

/** Local TCP ports of a process's sockets. */
function localPorts(pid: number): Set<number> {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]);
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    return new Set();
  }
  const ports = new Set<number>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 9 && inodes.has(cols[9])) ports.add(parseInt(cols[1].split(':')[1], 16));
    }
  }
  return ports;
}

/** The load now, for the walcast processes given as (id, pid). */
export async function dbLoad(db: pg.Client, procs: ReadonlyArray<{ id: string; pid: number }>): Promise<DbLoad> {
  const owner = new Map<number, string>();
  for (const p of procs) for (const port of localPorts(p.pid)) owner.set(port, p.id);
  const { rows } = await db.query<{ backend_type: string; application_name: string; usename: string; client_port: number | null }>(
    `select backend_type, application_name, usename, client_port from pg_stat_activity
      where pid <> pg_backend_pid() and backend_type in ('client backend', 'walsender') and application_name <> $1`,
    [BENCH_APP],
  );
  const { rows: rep } = await db.query<{ n: number }>('select count(*)::int as n from pg_stat_replication');
  const { rows: slots } = await db.query<{ n: number; active: number }>(
    "select count(*)::int as n, count(*) filter (where active)::int as active from pg_replication_slots where slot_type = 'logical'",
  );
  const byNode: Record<string, ProcessLoad> = {};
  const names: Record<string, number> = {};
  for (const r of rows) {
    const who = (r.client_port !== null && owner.get(r.client_port)) || 'other';
    const l = (byNode[who] ??= { walsenders: 0, backends: 0 });
    if (r.backend_type === 'walsender') l.walsenders++;
    else l.backends++;
    if (who !== 'other') {
      const k = `${r.backend_type}: application_name=${JSON.stringify(r.application_name)} usename=${r.usename}`;
      names[k] = (names[k] ?? 0) + 1;
    }
  }
  return { walsenders: rep[0].n, slots: slots[0].n, activeSlots: slots[0].active, byNode, names };
}

/** Sums of the walcast processes' connections (not `other`). */
export function walcastTotals(l: DbLoad): ProcessLoad {
  let walsenders = 0;
  let backends = 0;
  for (const [who, v] of Object.entries(l.byNode)) {
    if (who === 'other') continue;
    walsenders += v.walsenders;
    backends += v.backends;
  }
  return { walsenders, backends };
}

/** Samples dbLoad every `everyMs` until stopped; the highest walcast totals seen (per process too). */
export function sampleDbLoad(db: pg.Client, procs: () => ReadonlyArray<{ id: string; pid: number }>, everyMs = 500): { stop(): Promise<{ peak: ProcessLoad; byNode: Record<string, ProcessLoad>; samples: number }> } {
  let stopped = false;
  const peak: ProcessLoad = { walsenders: 0, backends: 0 };
  const byNode: Record<string, ProcessLoad> = {};
  let samples = 0;
  const loop = (async () => {
    while (!stopped) {
      const l = await dbLoad(db, procs());
      samples++;
      const t = walcastTotals(l);
      peak.walsenders = Math.max(peak.walsenders, t.walsenders);
      peak.backends = Math.max(peak.backends, t.backends);
      for (const [who, v] of Object.entries(l.byNode)) {
        if (who === 'other') continue;
        const p = (byNode[who] ??= { walsenders: 0, backends: 0 });
        p.walsenders = Math.max(p.walsenders, v.walsenders);
        p.backends = Math.max(p.backends, v.backends);
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return { peak, byNode, samples };
    },
  };
}
