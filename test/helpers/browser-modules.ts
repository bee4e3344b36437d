// npm packages served to a browser page as they are, from node_modules, as native ES modules:
// each package's ESM entry (package.json `exports`, else `module`) under /<prefix>/<name>/, and
// an import map naming those entries for the bare specifiers the modules import. Nothing is
// bundled or rewritten; only an extensionless relative import (`./lib/constants`, as
// TypeScript's ESM output of realtime-js writes them) is answered with the `.js` file beside it,
// as a bundler would resolve it.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';
import type { TemplatedApp } from 'uWebSockets.js';
import { Responder, type Reply } from '../../src/dev/http.js';

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.map': 'application/json',
};

export interface BrowserModules {
  /** `{"imports": {name: url}}`, for a `<script type="importmap">`. */
  importMap: { imports: Record<string, string> };
  /** GET /<prefix>/<package name>/<file> on a uWS app. */
  routes(app: TemplatedApp): void;
}

/** Serves `packages` (installed in `nodeModules`) under `/${prefix}/`. */
export function browserModules(nodeModules: string, prefix: string, packages: readonly string[]): BrowserModules {
  const imports: Record<string, string> = {};
  for (const name of packages) imports[name] = `/${prefix}/${name}/${esmEntry(join(nodeModules, name))}`;
  return {
    importMap: { imports },
    routes(app) {
      app.get(`/${prefix}/*`, (res, req) => {
        const r = new Responder(res);
        const rest = decodeURIComponent(req.getUrl().slice(prefix.length + 2));
        const name = packages.find((p) => rest.startsWith(`${p}/`));
        const file = name ? resolveFile(join(nodeModules, name), rest.slice(name.length + 1)) : null;
        r.send(file ? serve(file) : { status: 404, body: `not served: ${rest}\n`, type: 'text/plain' });
      });
    },
  };
}

/** The ESM entry of the package in `dir`, relative to it: `exports` for import, else `module`. */
export function esmEntry(dir: string): string {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { exports?: unknown; module?: string; main?: string };
  const fromExports = pick(isObject(pkg.exports) && '.' in pkg.exports ? pkg.exports['.'] : pkg.exports);
  const entry = fromExports ?? pkg.module;
  if (!entry) throw new Error(`${dir}/package.json names no ES module entry`);
  return normalize(entry).split(sep).join('/');
}

/** The first target of an `exports` value under the conditions a browser's import would meet. */
function pick(e: unknown): string | undefined {
  if (typeof e === 'string') return e;
  if (!isObject(e)) return undefined;
  for (const condition of ['browser', 'module', 'import', 'default']) {
    const found = condition in e ? pick(e[condition]) : undefined;
    if (found) return found;
  }
  return undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `rel` inside `root` (never outside it), or `rel` + `.js` for an extensionless import. */
function resolveFile(root: string, rel: string): string | null {
  const path = normalize(join(root, rel));
  if (!path.startsWith(root + sep)) return null;
  for (const candidate of [path, `${path}.js`]) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  return null;
}

function serve(file: string): Reply {
  return { status: 200, body: readFileSync(file), type: TYPES[extname(file)] ?? 'application/octet-stream' };
}
