// Comments and docs point at files that are in the repository: no "DESIGN §n" (the design is not
// shipped here), and every docs/NAME.md a source, test, benchmark or migration names exists.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = fileURLToPath(new URL('../../', import.meta.url));
const DIRS = ['src', 'test', 'bench', 'sql', 'docs', 'examples', 'demo', 'bin'];

function* walk(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* walk(p);
    else if (/\.(ts|js|sql|md|html)$/.test(name)) yield p;
  }
}

const files = DIRS.filter((d) => existsSync(join(root, d))).flatMap((d) => [...walk(join(root, d))]);
const self = fileURLToPath(import.meta.url);

t.test('no reference to the design document, which is not in the repository', async (t) => {
  const cites = files.filter((f) => f !== self && /DESIGN §/.test(readFileSync(f, 'utf8'))).map((f) => relative(root, f));
  t.same(cites, []);
});

t.test('every docs/NAME.md named exists', async (t) => {
  const missing = new Set<string>();
  for (const f of files) {
    if (f === self) continue;
    for (const m of readFileSync(f, 'utf8').matchAll(/\bdocs\/([A-Za-z-]+\.md)/g)) {
      if (!existsSync(join(root, 'docs', m[1]!))) missing.add(`${relative(root, f)}: docs/${m[1]}`);
    }
  }
  t.same([...missing], []);
  t.ok(files.length > 100, `${files.length} files read`);
});
