// The operator and protocol docs name every code walcast can produce: each `code` of the error
// classes in src/errors.ts, each close code of CLOSE in src/constants.ts and each `resync`
// reason appear in docs/errors.md; each metric of src/server/metrics.ts in docs/OPERATIONS.md;
// each code the client SDK makes up in docs/CLIENT.md. A new code without its line fails here.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CLOSE } from '../../src/constants.js';
import * as errors from '../../src/errors.js';
import { packageRoot } from '../../src/util/package-root.js';

const root = packageRoot();
const read = (rel: string): string => readFileSync(join(root, rel), 'utf8');
const errorsMd = read('docs/errors.md');
const operationsMd = read('docs/OPERATIONS.md');
const clientMd = read('docs/CLIENT.md');

/** The rows of the markdown tables of `doc` whose first cell is exactly `cell`. */
function tableRows(doc: string, cell: string): string[] {
  return doc.split('\n').filter((line) => line.startsWith(`| ${cell} |`));
}

/** Every concrete DaemonError subclass exported by src/errors.ts, with its code. */
function errorCodes(): Array<{ name: string; code: string }> {
  const out: Array<{ name: string; code: string }> = [];
  for (const [name, value] of Object.entries(errors)) {
    if (typeof value !== 'function' || !(value.prototype instanceof errors.DaemonError)) continue;
    // Abstract classes (WireError) have no code of their own; TypeScript's `abstract` does not
    // exist at run time, so instantiate and look.
    const code = (new (value as unknown as new (m: string) => errors.DaemonError)('probe')).code as string | undefined;
    if (code !== undefined) out.push({ name, code });
  }
  return out;
}

t.test('every error code of src/errors.ts has a row in docs/errors.md', async (t) => {
  const codes = errorCodes();
  t.ok(codes.length >= 25, `found the error classes (${codes.length})`);
  t.same(codes.filter((c, i) => codes.findIndex((d) => d.code === c.code) !== i), [], 'codes are unique');
  for (const { name, code } of codes) {
    t.equal(tableRows(errorsMd, `\`${code}\``).length, 1, `${name}: \`${code}\` has one row`);
  }
});

t.test('every close code of CLOSE has a row in docs/errors.md and PROTOCOL.md', async (t) => {
  const protocolMd = read('docs/PROTOCOL.md');
  for (const [name, code] of Object.entries(CLOSE)) {
    t.equal(tableRows(errorsMd, String(code)).length, 1, `CLOSE.${name} (${code}) in errors.md`);
    t.equal(tableRows(protocolMd, String(code)).length, 1, `CLOSE.${name} (${code}) in PROTOCOL.md §8`);
  }
});

t.test('every resync reason has a row in docs/errors.md', async (t) => {
  const types = read('src/protocol/types.ts');
  const decl = /export type ResyncReason\s*=([^;]+);/.exec(types);
  t.ok(decl, 'ResyncReason is declared');
  const reasons = [...(decl?.[1] ?? '').matchAll(/'([a-z_]+)'/g)].map((m) => m[1]);
  t.ok(reasons.length >= 2, `reasons: ${reasons.join(', ')}`);
  for (const r of reasons) t.equal(tableRows(errorsMd, `\`${r}\``).length, 1, `\`${r}\``);
});

t.test('every metric of src/server/metrics.ts is in the table of docs/OPERATIONS.md', async (t) => {
  const src = read('src/server/metrics.ts');
  const names = [...src.matchAll(/\b(?:gauge|counter|labelled)\(\s*'(walcast_[a-z0-9_]+)'/g)].map((m) => m[1]);
  t.ok(names.length >= 10, `found the metrics (${names.length})`);
  t.match(src, /prefix: 'walcast_process_'/, 'process metrics under walcast_process_');
  t.equal(tableRows(operationsMd, '`walcast_process_*`').length, 1, 'walcast_process_* has a row');
  for (const n of names) t.equal(tableRows(operationsMd, `\`${n}\``).length, 1, n);
  const documented = [...operationsMd.matchAll(/^\| `(walcast_[a-z0-9_]+)` \|/gm)].map((m) => m[1]);
  t.same(documented.filter((n) => !names.includes(n)), [], 'no documented metric that does not exist');
});

t.test('every code the client SDK makes up is in docs/CLIENT.md', async (t) => {
  const dir = join(root, 'src/client');
  const codes = new Set<string>();
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    for (const m of readFileSync(join(dir, f), 'utf8').matchAll(/new WalcastError\(\s*'([a-z_]+)'/g)) codes.add(m[1]);
  }
  t.ok(codes.size >= 5, `found the client codes (${[...codes].join(', ')})`);
  for (const c of codes) t.match(clientMd, `\`${c}\``, `\`${c}\``);
});

t.test('the docs link each other', async (t) => {
  t.match(operationsMd, '(errors.md)', 'OPERATIONS.md links errors.md');
  t.match(errorsMd, '(OPERATIONS.md)', 'errors.md links OPERATIONS.md');
  t.match(read('README.md'), '(docs/OPERATIONS.md)', 'README.md links OPERATIONS.md');
});
