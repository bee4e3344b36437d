// Starting and stopping a walcast daemon (`node … bin/walcast.js serve`) for a benchmark: its
// port from the "serving ws://…" line, the lines a preloaded hook marks for the orchestrator,
// and the last lines of its stderr for when it fails.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { log, sleep } from './common.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..'); // from dist/bench/lib

export interface WalcastOptions {
  /** Node flags (e.g. --import of a hook, --expose-gc). */
  nodeArgs: string[];
  /** Written to the daemon's CPU profile directory when set (--cpu-prof). */
  profileDir: string | null;
  /** Put the --cpu-prof flags before nodeArgs rather than after. */
  profileFirst?: boolean;
  /** The arguments after `serve`. */
  serveArgs: string[];
  /** Environment additions; the auth variables of this process are not passed on. */
  env?: Record<string, string>;
  /** stderr lines starting with a mark are handed to its handler (the rest of the line), not kept. */
  marks?: Record<string, (rest: string) => void>;
  startTimeoutMs?: number;
  stopTimeoutMs?: number;
}

export interface Walcast {
  child: ChildProcess;
  pid: number;
  port: number;
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after stopTimeoutMs; logs a non-zero exit with the stderr tail. */
  stop(): Promise<void>;
}

/** Daemons running, for reapDaemonsOnExit(). */
const live = new Set<ChildProcess>();

/** Whatever happens to this process (an error, Ctrl-C), no daemon is left behind, paused or not. */
export function reapDaemonsOnExit(): void {
  const reap = (): void => {
    for (const c of live) {
      c.kill('SIGCONT');
      c.kill('SIGKILL');
    }
  };
  process.on('exit', reap);
  // With a listener of ours, the throwaway cluster's own handler (which runs first and removes the
  // cluster) leaves the exit to us.
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(sig, () => {
      reap();
      process.exit(code);
    });
  }
}

export async function startWalcast(o: WalcastOptions): Promise<Walcast> {
  const nodeArgs = [...o.nodeArgs];
  const prof = o.profileDir ? ['--cpu-prof', '--cpu-prof-dir', o.profileDir] : [];
  if (o.profileFirst) nodeArgs.unshift(...prof);
  else nodeArgs.push(...prof);
  const argv = [...nodeArgs, path.join(ROOT, 'bin', 'walcast.js'), 'serve', ...o.serveArgs];
  const env = { ...process.env };
  delete env.WALCAST_NO_AUTH;
  delete env.WALCAST_JWT_SECRET;
  delete env.WALCAST_JWKS;
  delete env.WALCAST_RELATIONS;
  Object.assign(env, o.env ?? {}); // secrets here, not in flags: flags show in ps
  const child: ChildProcess = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'], env });
  const tail: string[] = [];
  let portFound: (port: number) => void = () => {};
  live.add(child);
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      live.delete(child);
      resolve(code);
    }),
  );
  const marks = Object.entries(o.marks ?? {});
  let buf = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    lines: while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      for (const [mark, handle] of marks) {
        if (line.startsWith(mark)) {
          handle(line.slice(mark.length));
          continue lines;
        }
      }
      const p = /serving ws:\/\/[^:]+:(\d+)\//.exec(line);
      if (p) portFound(Number(p[1]));
      tail.push(line);
      if (tail.length > 30) tail.shift();
    }
  });
  const startS = (o.startTimeoutMs ?? 60_000) / 1000;
  const port = await Promise.race([
    new Promise<number>((resolve) => (portFound = resolve)),
    exited.then((code) => Promise.reject(new Error(`walcast exited (${code}) before serving:\n${tail.join('\n')}`))),
    sleep(startS * 1000).then(() => Promise.reject(new Error(`walcast did not start within ${startS} s:\n${tail.join('\n')}`))),
  ]);
  const stopMs = o.stopTimeoutMs ?? 20_000;
  return {
    child,
    pid: child.pid ?? 0,
    port,
    exited,
    async stop() {
      child.kill('SIGTERM');
      const code = await Promise.race([exited, sleep(stopMs).then(() => 'timeout' as const)]);
      if (code === 'timeout') {
        log(`walcast did not exit within ${stopMs / 1000} s of SIGTERM: killed`);
        child.kill('SIGKILL');
        await exited;
      } else if (code !== 0) log(`walcast exited with ${code}:\n${tail.join('\n')}`);
    },
  };
}
