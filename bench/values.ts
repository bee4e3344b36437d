// Micro-benchmark of the per-value decoders: 1M text values per type through the decoder the
// TypeRegistry picks for that type OID (the hot-path shape: decoder chosen once, applied per
// value). Prints one JSON line ({"bench":"values","results":[{type,nsPerValue,...}]}) and then
// one readable line per type. Run: npm run build && node dist/bench/values.js [count]

import { TypeRegistry } from '../src/capture/types-registry.js';

const N = Number(process.argv[2] ?? 1_000_000);

function makeInputs(n: number, f: (i: number) => string): string[] {
  const out = new Array<string>(n);
  // Round-trip through a Buffer: wire values are flat strings decoded from the socket's bytes,
  // while template-literal results are cons strings that the first charCodeAt has to flatten.
  for (let i = 0; i < n; i++) out[i] = Buffer.from(f(i), 'latin1').toString('latin1');
  return out;
}

const pad = (v: number, w: number): string => String(v).padStart(w, '0');

const cases: Array<{ type: string; oid: number; inputs: string[] }> = [
  { type: 'int4', oid: 23, inputs: makeInputs(N, (i) => String((i * 7919) % 2_000_000_000 - 1_000_000_000)) },
  {
    type: 'int8',
    oid: 20,
    // 1 in 16 beyond the safe range (stays a string)
    inputs: makeInputs(N, (i) => (i % 16 === 0 ? '9223372036854' + pad(i % 1_000_000, 6) : String(i * 104729))),
  },
  { type: 'text', oid: 25, inputs: makeInputs(N, (i) => 'user-' + i) },
  {
    type: 'timestamptz',
    oid: 1184,
    inputs: makeInputs(N, (i) =>
      `2024-${pad((i % 12) + 1, 2)}-${pad((i % 28) + 1, 2)} ${pad(i % 24, 2)}:${pad(i % 60, 2)}:${pad((i * 7) % 60, 2)}.${pad(i % 1_000_000, 6)}+00`),
  },
  {
    type: 'numeric',
    oid: 1700,
    // money-like values, 1 in 16 with more digits than a double holds (stays a string)
    inputs: makeInputs(N, (i) => (i % 16 === 0 ? '1234567890123456789.' + pad(i % 100, 2) : `${i % 100000}.${pad(i % 100, 2)}`)),
  },
];

const registry = new TypeRegistry();
const results: Array<{ type: string; values: number; nsPerValue: number; numbers: number }> = [];

for (const { type, oid, inputs } of cases) {
  const decode = registry.decoder(oid);
  let numbers = 0;
  // warm-up so the timed loop runs optimised code
  for (let i = 0; i < Math.min(inputs.length, 100_000); i++) decode(inputs[i]!);
  const start = process.hrtime.bigint();
  for (let i = 0; i < inputs.length; i++) {
    if (typeof decode(inputs[i]!) === 'number') numbers++; // use the result so it is not dead code
  }
  const ns = Number(process.hrtime.bigint() - start);
  results.push({ type, values: inputs.length, nsPerValue: Math.round((ns / inputs.length) * 10) / 10, numbers });
}

console.log(JSON.stringify({ bench: 'values', node: process.version, results }));
for (const r of results) {
  console.log(
    `${r.type.padEnd(12)} ${String(r.nsPerValue).padStart(7)} ns/value  ` +
      `(${(1e3 / r.nsPerValue).toFixed(1)}M values/s, ${r.numbers} of ${r.values} as numbers)`,
  );
}
