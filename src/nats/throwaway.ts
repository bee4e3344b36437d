// Disposable NATS servers for tests: one, or a JetStream cluster of several, on free ports of
// 127.0.0.1 with their stores in a temp dir, removed by destroy(). Never the server on 4222.
// Servers are configured by file (https://docs.nats.io/running-a-nats-service/configuration):
// routes, cluster name and JetStream store need no flags that differ between versions.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NatsStartError } from '../errors.js';
import { freePort } from '../util/free-port.js';

const HOST = '127.0.0.1';
const READY_MS = 20_000;
const START_ATTEMPTS = 3;

export interface ThrowawayNatsOptions {
  /** how many servers; more than one forms a cluster with routes between all of them (default 1) */
  size?: number;
  /** JetStream on every server (default true) */
  jetstream?: boolean;
  /** extra top-level config lines, e.g. `max_payload: 8MB` */
  extraConfig?: string;
}

export interface ThrowawayNatsServer {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  /** the HTTP monitoring endpoint, e.g. `${monitorUrl}/connz` */
  readonly monitorUrl: string;
  readonly running: boolean;
  /** sends a signal: SIGKILL and SIGTERM end it (start() brings it back), SIGSTOP/SIGCONT pause it */
  signal(sig: NodeJS.Signals): void;
  /** stops it (SIGTERM, then SIGKILL after 5 s); its store is kept */
  stop(): Promise<void>;
  /** starts it again on the same ports with the same store */
  start(): Promise<void>;
  /** GET `${monitorUrl}/${endpoint}` as JSON, e.g. 'jsz', 'connz?subs=1' */
  monitor<T = Record<string, unknown>>(endpoint: string): Promise<T>;
  logTail(lines?: number): string;
}

export interface ThrowawayNats {
  readonly servers: readonly ThrowawayNatsServer[];
  /** every server's URL, comma-separated (what `--nats` takes) */
  readonly urls: string;
  readonly dir: string;
  /** kills every server and removes the directory; idempotent; never throws */
  destroy(): Promise<void>;
}

/** The nats-server binary: WALCAST_NATS_SERVER, Debian's /usr/sbin/nats-server, or one on PATH. */
export function findNatsServer(env: NodeJS.ProcessEnv = process.env): string {
  const candidates = [env.WALCAST_NATS_SERVER, '/usr/sbin/nats-server', ...(env.PATH ?? '').split(path.delimiter).map((d) => d && path.join(d, 'nats-server'))];
  for (const c of candidates) {
    if (c && fs.existsSync(c)) return c;
  }
  throw new NatsStartError('nats-server not found (WALCAST_NATS_SERVER, /usr/sbin/nats-server, PATH)', 'install nats-server (Debian: apt-get install nats-server) or set WALCAST_NATS_SERVER');
}

const tail = (text: string, lines = 20): string => text.trimEnd().split('\n').slice(-lines).join('\n');

interface Ports {
  client: number;
  cluster: number;
  http: number;
}

class Server implements ThrowawayNatsServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  readonly logFile: string;
  readonly confFile: string;

  constructor(
    private readonly bin: string,
    readonly name: string,
    readonly ports: Ports,
    dir: string,
  ) {
    this.logFile = path.join(dir, `${name}.log`);
    this.confFile = path.join(dir, `${name}.conf`);
  }

  get port(): number {
    return this.ports.client;
  }
  get url(): string {
    return `nats://${HOST}:${this.ports.client}`;
  }
  get monitorUrl(): string {
    return `http://${HOST}:${this.ports.http}`;
  }
  get running(): boolean {
    return this.child !== undefined;
  }

  async start(): Promise<void> {
    if (this.child) return;
    const log = fs.openSync(this.logFile, 'a');
    const child = spawn(this.bin, ['-c', this.confFile], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => {
      if (this.child === child) this.child = undefined;
      resolve();
    }));
    child.once('error', () => undefined); // a spawn failure shows as an exit; the log says why
  }

  signal(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGCONT'); // a paused server cannot act on SIGTERM
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(timer);
  }

  killSync(): void {
    this.child?.kill('SIGKILL');
  }

  async monitor<T>(endpoint: string): Promise<T> {
    const res = await fetch(`${this.monitorUrl}/${endpoint}`, { signal: AbortSignal.timeout(2_000) });
    if (!res.ok) throw new Error(`${endpoint}: HTTP ${res.status}`);
    return (await res.json()) as T;
  }

  logTail(lines = 20): string {
    try {
      return tail(fs.readFileSync(this.logFile, 'utf8'), lines);
    } catch {
      return '';
    }
  }
}

function config(s: Server, all: Server[], dir: string, o: Required<ThrowawayNatsOptions>): string {
  const lines = [`server_name: ${s.name}`, `listen: "${HOST}:${s.ports.client}"`, `http: "${HOST}:${s.ports.http}"`];
  if (o.jetstream) {
    lines.push(`jetstream { store_dir: ${JSON.stringify(path.join(dir, s.name))}, max_file_store: 1GB, max_memory_store: 256MB }`);
  }
  if (all.length > 1) {
    const routes = all.filter((r) => r !== s).map((r) => `"nats-route://${HOST}:${r.ports.cluster}"`);
    lines.push(`cluster { name: walcast-test, listen: "${HOST}:${s.ports.cluster}", routes: [${routes.join(', ')}] }`);
  }
  if (o.extraConfig) lines.push(o.extraConfig);
  return lines.join('\n') + '\n';
}

/** Ready: every server answers /healthz, and with JetStream in a cluster, all agree on a meta leader. */
async function ready(servers: Server[], jetstream: boolean): Promise<boolean> {
  for (const s of servers) {
    if (!s.running) return false;
    try {
      const jsz = await s.monitor<{ meta_cluster?: { leader?: string }; config?: unknown }>(jetstream ? 'jsz' : 'varz');
      if (jetstream && servers.length > 1 && !jsz.meta_cluster?.leader) return false;
      if (jetstream && !jsz.config) return false;
    } catch {
      return false;
    }
  }
  return true;
}

async function waitReady(servers: Server[], jetstream: boolean): Promise<void> {
  const until = Date.now() + READY_MS;
  while (Date.now() < until) {
    if (await ready(servers, jetstream)) return;
    if (servers.some((s) => !s.running)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const logs = servers.map((s) => `--- ${s.name}\n${s.logTail(10)}`).join('\n');
  throw new NatsStartError(`throwaway NATS (${servers.length} server(s)) not ready\n${logs}`, 'read the server log lines above');
}

class Cluster implements ThrowawayNats {
  private destroying: Promise<void> | undefined;
  constructor(readonly servers: Server[], readonly dir: string) {}

  get urls(): string {
    return this.servers.map((s) => s.url).join(',');
  }

  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      live.delete(this);
      await Promise.all(this.servers.map((s) => { s.killSync(); return s.stop(); }));
      fs.rmSync(this.dir, { recursive: true, force: true });
    })().catch(() => undefined);
    return this.destroying;
  }

  destroySync(): void {
    for (const s of this.servers) s.killSync();
    try {
      fs.rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // best effort at exit
    }
  }
}

// Live clusters are killed if the process exits without destroy(): a test that crashes must not
// leave servers behind on the machine.
const live = new Set<Cluster>();
process.on('exit', () => {
  for (const c of live) c.destroySync();
});

export async function startThrowawayNats(opts: ThrowawayNatsOptions = {}): Promise<ThrowawayNats> {
  const o: Required<ThrowawayNatsOptions> = { size: opts.size ?? 1, jetstream: opts.jetstream ?? true, extraConfig: opts.extraConfig ?? '' };
  if (!Number.isInteger(o.size) || o.size < 1 || o.size > 9) throw new NatsStartError(`bad size ${o.size}: 1 to 9 servers`);
  const bin = findNatsServer();
  let last: unknown;
  // Free ports can be taken between asking and binding: try again with new ones.
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'walcast-nats-'));
    const servers: Server[] = [];
    for (let i = 0; i < o.size; i++) {
      servers.push(new Server(bin, `n${i + 1}`, { client: await freePort(HOST), cluster: await freePort(HOST), http: await freePort(HOST) }, dir));
    }
    for (const s of servers) fs.writeFileSync(s.confFile, config(s, servers, dir, o));
    const cluster = new Cluster(servers, dir);
    live.add(cluster);
    try {
      await Promise.all(servers.map((s) => s.start()));
      await waitReady(servers, o.jetstream);
      return cluster;
    } catch (err) {
      last = err;
      await cluster.destroy();
    }
  }
  throw last;
}
