// What `npm pack` ships: the files list of package.json, read by npm itself. Scripts are not run
// (--ignore-scripts: prepack would rebuild dist/src under the other tests' feet), so this checks
// the selection against whatever the last build left in dist/, tests and benches included.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import t from 'tap';

const root = new URL('../../', import.meta.url);
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
  exports: Record<string, string | { types: string; import: string }>;
  bin: Record<string, string>;
};
const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
const files = (JSON.parse(out) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);

t.test('no compiled test, benchmark or source map is packed', async (t) => {
  t.same(files.filter((f) => /^(dist\/(test|bench)|test|bench|examples)\//.test(f)), []);
  t.same(files.filter((f) => f.endsWith('.map')), []);
  // A bound on what the source tree compiles to (about 310 files with the cluster modules): a
  // directory packed by mistake shows here.
  t.ok(files.length < 400, `${files.length} files`);
});

t.test('every export, the bin and the runtime assets are packed', async (t) => {
  for (const [name, target] of Object.entries(pkg.exports)) {
    const paths = typeof target === 'string' ? [target] : [target.types, target.import];
    for (const p of paths) t.ok(files.includes(p.replace(/^\.\//, '')), `${name}: ${p}`);
  }
  for (const p of Object.values(pkg.bin)) t.ok(files.includes(p), p);
  t.ok(files.some((f) => f.startsWith('sql/') && f.endsWith('.sql')), 'migrations');
  t.ok(files.includes('models/default.conf'), 'default model');
  t.ok(files.includes('demo/index.html'), 'demo page');
  t.ok(files.includes('dist/src/cli/index.js'), 'the CLI the bin launches');
});
