// src/client must load in a browser as plain ES modules (dist/src/client/*.js, served as they
// are): relative imports only, no Node built-ins or globals. Checked by type-checking it for a
// browser (lib DOM, no @types/node) and by reading its imports.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import ts from 'typescript';

const dir = join(import.meta.dirname, '../../src/client');
const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));

t.test('type-checks for a browser: lib DOM, no Node types', async (t) => {
  const program = ts.createProgram(
    files.map((f) => join(dir, f)),
    {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ES2022,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      lib: ['lib.es2023.d.ts', 'lib.dom.d.ts'],
      types: [],
      strict: true,
      noImplicitOverride: true,
      noEmit: true,
    },
  );
  const diags = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  t.same(diags, [], 'no errors without @types/node');
  const sources = program.getSourceFiles().map((s) => s.fileName).filter((f) => !f.includes('/typescript/lib/'));
  t.ok(sources.every((f) => f.includes('/src/client/')), `only src/client is compiled: ${sources.filter((f) => !f.includes('/src/client/'))}`);
});

t.test('imports are relative .js files of src/client; no Node globals', async (t) => {
  for (const f of files) {
    const text = readFileSync(join(dir, f), 'utf8');
    const specs = [...text.matchAll(/\b(?:import|export)\b[^'";]*?\bfrom\s+'([^']+)'/g)].map((m) => m[1]);
    for (const s of specs) t.match(s, /^\.\/[a-z-]+\.js$/, `${f}: ${s}`);
    const code = text.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '').replace(/'[^'\n]*'|`[^`]*`|"[^"\n]*"/g, "''");
    for (const g of ['process', 'Buffer', 'require', '__dirname', 'global', 'module']) {
      t.notMatch(code, new RegExp(`\\b${g}\\b(?!:)`), `${f} does not use ${g}`);
    }
  }
});
