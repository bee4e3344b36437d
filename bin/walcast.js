#!/usr/bin/env node
// Thin launcher: the CLI is compiled to dist/ by `npm run build`.
import { main } from '../dist/src/cli/index.js';

main(process.argv).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  () => { process.exitCode = 1; },
);
