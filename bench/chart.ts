// Draws the chart of a soak run again from its samples file (bench/out/soak-<time>.json,
// written by bench/soak.ts after every sample, so an interrupted run can be drawn too).
// Run: npm run bench:chart -- FILE.json [--out FILE.png]   (default: FILE with .png)
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { soakChart, writeChartPng, type SoakFile } from './lib/chart.js';
import { runMain } from './lib/common.js';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { out: { type: 'string' }, help: { type: 'boolean', default: false } },
});

function usage(msg: string): never {
  process.stderr.write(`${msg ? msg + '\n' : ''}usage: node dist/bench/chart.js SAMPLES.json [--out CHART.png]\n`);
  process.exit(msg ? 2 : 0);
}

async function main(): Promise<void> {
  if (args.help) usage('');
  if (positionals.length !== 1) usage('one samples file (bench/out/soak-<time>.json) is needed');
  const input = positionals[0];
  let data: SoakFile;
  try {
    data = JSON.parse(readFileSync(input, 'utf8')) as SoakFile;
  } catch (err) {
    usage(`cannot read ${input}: ${(err as Error).message}`);
  }
  if (data.bench !== 'soak' || !Array.isArray(data.samples)) usage(`${input} is not a soak samples file ("bench":"soak" with "samples")`);
  if (data.samples.length === 0) usage(`${input} has no samples yet`);
  const out = args.out ?? input.replace(/\.json$/i, '') + '.png';
  writeChartPng(soakChart(data), out);
  process.stdout.write(`${out}: ${data.samples.length} samples, ${(data.samples[data.samples.length - 1].t / 60).toFixed(1)} min\n`);
}

runMain(main);
