// The module structure of src/: no import cycles, between files or between top-level modules
// (the folders of src/, and its files of their own); the client SDK stands alone, and the rest
// takes from it only pure, dependency-free modules; the wire protocol depends on no layer above
// it. Every relative import counts: `import`, `import type`, `export ... from`, `import('...')`.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve, dirname, sep } from 'node:path';
import t from 'tap';
import ts from 'typescript';

const SRC = resolve(import.meta.dirname, '../../src');

/** Modules of src/client/ that the rest of src/ may import: pure, importing nothing. */
const CLIENT_SHARED = ['client/jitter.ts'];

/** What src/protocol/ may import besides itself. */
const PROTOCOL_MAY_IMPORT = ['errors.ts', 'constants.ts'];

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** The relative module specifiers a file imports, by any form of import or re-export. */
function specifiers(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push(node.moduleSpecifier.text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      out.push(node.argument.literal.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteralLike(arg)) out.push(arg.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out.filter((s) => s.startsWith('.'));
}

/** file → the files it imports, all as paths relative to src/ with '/' ('hub/hub.ts'). */
function importGraph(): Map<string, string[]> {
  const rel = (abs: string) => relative(SRC, abs).split(sep).join('/');
  const graph = new Map<string, string[]>();
  for (const file of tsFiles(SRC)) {
    const deps = specifiers(file).map((s) => rel(resolve(dirname(file), s.replace(/\.js$/, '.ts'))));
    graph.set(rel(file), [...new Set(deps)]);
  }
  return graph;
}

/** A cycle as a path (first node repeated at the end), or null. Depth-first, in sorted order. */
function findCycle(graph: ReadonlyMap<string, readonly string[]>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (node: string): string[] | null => {
    state.set(node, 'open');
    path.push(node);
    for (const next of [...(graph.get(node) ?? [])].sort()) {
      if (!graph.has(next)) continue;
      if (state.get(next) === 'open') return [...path.slice(path.indexOf(next)), next];
      if (state.get(next) === undefined) {
        const found = visit(next);
        if (found) return found;
      }
    }
    path.pop();
    state.set(node, 'done');
    return null;
  };
  for (const node of [...graph.keys()].sort()) {
    if (state.get(node) === undefined) {
      const found = visit(node);
      if (found) return found;
    }
  }
  return null;
}

/** The top-level module of a file: its folder under src/ ('hub/'), or the file itself ('errors.ts'). */
const topLevel = (file: string): string => (file.includes('/') ? file.slice(0, file.indexOf('/') + 1) : file);

const graph = importGraph();

t.test('the import graph was read', async (t) => {
  t.ok(graph.size >= 50, `${graph.size} files`);
  t.ok(graph.get('server/server.ts')?.some((d) => d.startsWith('hub/')), 'server/server.ts imports the hub');
  for (const [file, deps] of graph) {
    for (const d of deps) t.ok(graph.has(d), `${file} imports ${d}, a file of src/`, { diagnostic: false });
  }
});

t.test('no import cycle between files', async (t) => {
  const cycle = findCycle(graph);
  t.equal(cycle, null, cycle ? `import cycle: ${cycle.join(' → ')}` : 'no cycle');
});

t.test('no import cycle between the top-level modules of src/', async (t) => {
  const modules = new Map<string, Set<string>>();
  const why = new Map<string, string>();
  for (const [file, deps] of graph) {
    const from = topLevel(file);
    if (!modules.has(from)) modules.set(from, new Set());
    for (const d of deps) {
      const to = topLevel(d);
      if (to === from) continue;
      modules.get(from)!.add(to);
      if (!why.has(`${from} ${to}`)) why.set(`${from} ${to}`, `${file} imports ${d}`);
    }
  }
  const cycle = findCycle(new Map([...modules].map(([m, ds]) => [m, [...ds]])));
  const edges = cycle?.slice(1).map((to, i) => why.get(`${cycle[i]} ${to}`));
  t.equal(cycle, null, cycle ? `module cycle: ${cycle.join(' → ')} (${edges!.join('; ')})` : 'no cycle');
});

t.test('src/client/ imports only src/client/', async (t) => {
  for (const [file, deps] of graph) {
    if (!file.startsWith('client/')) continue;
    for (const d of deps) t.ok(d.startsWith('client/'), `${file} imports ${d}`);
  }
});

t.test('the rest of src/ takes from src/client/ only its pure shared modules', async (t) => {
  for (const shared of CLIENT_SHARED) {
    t.ok(graph.has(shared), `${shared} exists`);
    t.same(graph.get(shared), [], `${shared} imports nothing`);
  }
  for (const [file, deps] of graph) {
    if (file.startsWith('client/')) continue;
    for (const d of deps) {
      if (d.startsWith('client/')) t.ok(CLIENT_SHARED.includes(d), `${file} imports ${d}: not one of ${CLIENT_SHARED.join(', ')}`);
    }
  }
});

t.test('src/protocol/ depends on no layer above it (server/, hub/, capture/, ...)', async (t) => {
  const files = [...graph.keys()].filter((f) => f.startsWith('protocol/'));
  t.ok(files.length > 0, 'src/protocol/ exists');
  for (const file of files) {
    for (const d of graph.get(file)!) {
      t.ok(d.startsWith('protocol/') || PROTOCOL_MAY_IMPORT.includes(d), `${file} imports ${d}`);
    }
  }
});
