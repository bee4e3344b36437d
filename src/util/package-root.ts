// The package root, found by walking up from this file: the same answer from src/ under the
// tests' TypeScript loader and from dist/src/ when built.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | null = null;

export function packageRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'walcast') return (cached = dir);
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the walcast package root');
    dir = up;
  }
}
