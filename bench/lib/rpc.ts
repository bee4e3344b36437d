// Request/response over a forked child's IPC channel, for the benchmark's helper processes
// (load clients, baseline servers), plus /proc readers for a process's memory and CPU time.
// Children are forked with `serialization: 'advanced'`, so typed arrays pass as they are.
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

interface Request {
  rpc: number;
  cmd: string;
  args: unknown;
}
interface Response {
  rpc: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}
interface Event {
  event: string;
  data: unknown;
}

/** Parent side: a forked helper process answering commands. */
export class Helper {
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly waiters = new Map<string, Array<(data: unknown) => void>>();
  private exited: string | null = null;
  readonly exit: Promise<void>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    child.on('message', (m: Response | Event) => {
      if ('event' in m) {
        const ws = this.waiters.get(m.event) ?? [];
        this.waiters.delete(m.event);
        for (const w of ws) w(m.data);
        return;
      }
      const p = this.pending.get(m.rpc);
      if (!p) return;
      this.pending.delete(m.rpc);
      clearTimeout(p.timer);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(`${name}: ${m.error}`));
    });
    this.exit = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exited = `exited (${signal ?? code})`;
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(new Error(`${name} ${this.exited}`));
        }
        this.pending.clear();
        resolve();
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  static fork(name: string, script: string, args: string[] = [], execArgv: string[] = []): Helper {
    const child = fork(script, args, { execArgv, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    return new Helper(name, child);
  }

  call<T>(cmd: string, args: unknown = {}, timeoutMs = 60_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.name} ${this.exited}`));
    const rpc = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rpc);
        reject(new Error(`${this.name}: ${cmd} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(rpc, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.child.send({ rpc, cmd, args } satisfies Request);
    });
  }

  /** The next event of this name sent by the child with emit(). */
  next<T>(event: string, timeoutMs = 30_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no "${event}" within ${timeoutMs} ms`)), timeoutMs);
      const list = this.waiters.get(event) ?? [];
      list.push((d) => {
        clearTimeout(timer);
        resolve(d as T);
      });
      this.waiters.set(event, list);
      void this.exit.then(() => {
        clearTimeout(timer);
        reject(new Error(`${this.name} ${this.exited} before "${event}"`));
      });
    });
  }

  /** Asks it to exit; kills it if it has not within `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.exited) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exit;
    clearTimeout(t);
  }
}

/** Child side: answers the parent's commands. Exits on SIGTERM or when the parent goes away. */
export function serveCommands(handlers: Record<string, (args: never) => unknown>): void {
  process.on('message', (m: Request) => {
    const h = handlers[m.cmd];
    const reply = (r: Omit<Response, 'rpc'>): void => {
      if (process.connected) process.send?.({ rpc: m.rpc, ...r });
    };
    if (!h) {
      reply({ ok: false, error: `unknown command ${m.cmd}` });
      return;
    }
    Promise.resolve()
      .then(() => h(m.args as never))
      .then(
        (result) => reply({ ok: true, result }),
        (err: unknown) => reply({ ok: false, error: err instanceof Error ? err.message : String(err) }),
      );
  });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

export function emit(event: string, data: unknown = null): void {
  process.send?.({ event, data } satisfies Event);
}

/** Forces full collections when run under --expose-gc; false otherwise. */
export function fullGc(): boolean {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return false;
  gc();
  gc();
  return true;
}

// ── /proc (Linux) ─────────────────────────────────────────────────────────────────────────

/** Resident set size of a process, bytes (VmRSS). */
export function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** User + system CPU time of a process so far (all threads), ms. */
export function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // from field 3 (state) on
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}

const CLOCK_TICKS = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Wall-clock time in ms with sub-millisecond resolution, comparable across processes of one machine. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}
