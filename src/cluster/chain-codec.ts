// The `Walcast-Chain` header (docs/dev/cluster-plan.md §6): `<epoch>;<inc>=<prevSeq>,<inc>=<prevSeq>,…`
// names every incarnation a stream message concerns and, for each, the seq of the previous message
// concerning it in this epoch (0: its chain starts at this message). Decimal integers without sign
// or leading zeros; inc tokens per CLUSTER_CHAIN.incPattern; at least one link; no inc twice.
// A message concerning nobody has no header.
import { CLUSTER_CHAIN } from '../constants.js';
import { ClusterMessageError } from '../errors.js';

/** The name of the header. */
export const CHAIN_HEADER = 'Walcast-Chain';

export interface Chain {
  epoch: number;
  /** inc → prevSeq. */
  links: Map<string, number>;
}

function bad(what: string): never {
  throw new ClusterMessageError(`malformed ${CHAIN_HEADER} header: ${what}`);
}

/** `s[from, to)` as a safe non-negative integer written plainly, or -1. */
function uint(s: string, from: number, to: number): number {
  const n = to - from;
  if (n < 1 || n > 16 || (n > 1 && s.charCodeAt(from) === 48)) return -1;
  let v = 0;
  for (let i = from; i < to; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    // Exact while below 2^53; past it the rounded value is still past it, which isSafeInteger refuses.
    v = v * 10 + d;
  }
  return Number.isSafeInteger(v) ? v : -1;
}

/** A seq or an epoch: a safe integer, not negative. */
export function safeUint(v: number): boolean {
  return Number.isSafeInteger(v) && v >= 0;
}

/** The header for `links` (inc → prevSeq). A caller's mistake (nothing to name, a bad value) throws RangeError. */
export function encodeChain(epoch: number, links: ReadonlyMap<string, number> | ReadonlyArray<readonly [string, number]>): string {
  if (!safeUint(epoch)) throw new RangeError(`${CHAIN_HEADER}: epoch ${epoch} is not a non-negative integer`);
  const seen = new Set<string>();
  let out = `${epoch};`;
  for (const [inc, prev] of links) {
    if (!CLUSTER_CHAIN.incPattern.test(inc)) throw new RangeError(`${CHAIN_HEADER}: bad inc ${JSON.stringify(inc)}`);
    if (!safeUint(prev)) throw new RangeError(`${CHAIN_HEADER}: prevSeq ${prev} of ${inc} is not a non-negative integer`);
    if (seen.has(inc)) throw new RangeError(`${CHAIN_HEADER}: ${inc} named twice`);
    out += `${seen.size === 0 ? '' : ','}${inc}=${prev}`;
    seen.add(inc);
  }
  if (seen.size === 0) throw new RangeError(`${CHAIN_HEADER}: no link (a message concerning nobody has no header)`);
  if (out.length > CLUSTER_CHAIN.maxHeaderLength) throw new RangeError(`${CHAIN_HEADER}: ${out.length} characters, over ${CLUSTER_CHAIN.maxHeaderLength}`);
  return out;
}

/** Where the links start (after `;`), once the length and the epoch are checked. */
function linksStart(header: string): number {
  if (typeof header !== 'string') bad('not a string');
  if (header.length > CLUSTER_CHAIN.maxHeaderLength) bad(`longer than ${CLUSTER_CHAIN.maxHeaderLength} characters`);
  const semi = header.indexOf(';');
  if (semi < 0) bad('no ";"');
  if (uint(header, 0, semi) < 0) bad('the epoch is not a non-negative integer');
  return semi + 1;
}

/** Decodes and validates a whole header. Throws only ClusterMessageError. */
export function parseChain(header: string): Chain {
  let i = linksStart(header);
  const epoch = uint(header, 0, i - 1);
  const links = new Map<string, number>();
  for (;;) {
    const eq = header.indexOf('=', i);
    if (eq < 0) bad(links.size === 0 ? 'no link' : 'a link without "="');
    const inc = header.slice(i, eq);
    if (!CLUSTER_CHAIN.incPattern.test(inc)) bad(`bad inc ${JSON.stringify(inc.slice(0, 32))}`);
    let end = header.indexOf(',', eq + 1);
    if (end < 0) end = header.length;
    const prev = uint(header, eq + 1, end);
    if (prev < 0) bad(`the prevSeq of ${inc} is not a non-negative integer`);
    if (links.has(inc)) bad(`${inc} named twice`);
    links.set(inc, prev);
    if (end === header.length) return { epoch, links };
    i = end + 1;
  }
}

/**
 * The prevSeq the header gives `inc`, or undefined when it does not name it: an edge reads only
 * its own link, without building a Map. Exact: only `<inc>=` right after `;` or `,` counts, so
 * `ab` does not match `abc=` nor `xab=`. Checks the length, the epoch, its own link's integer and
 * that it is named once, not the other links (parseChain does). Throws only ClusterMessageError.
 */
export function prevFor(header: string, inc: string): number | undefined {
  const start = linksStart(header);
  if (inc.length === 0) bad('looked up an empty inc');
  let found = -1;
  let from = start;
  for (;;) {
    const at = header.indexOf(inc, from);
    if (at < 0) break;
    const after = at + inc.length;
    if ((at === start || header.charCodeAt(at - 1) === 44) /* , */ && header.charCodeAt(after) === 61 /* = */) {
      if (found >= 0) bad(`${inc} named twice`);
      found = after + 1;
    }
    from = at + 1;
  }
  if (found < 0) return undefined;
  let end = header.indexOf(',', found);
  if (end < 0) end = header.length;
  const prev = uint(header, found, end);
  if (prev < 0) bad(`the prevSeq of ${inc} is not a non-negative integer`);
  return prev;
}
