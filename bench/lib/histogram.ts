// A log-bucketed latency histogram (ms) for runs too long to keep every sample: a soak at
// tens of thousands of deliveries a second for 30 minutes would be tens of millions of samples.
// Buckets grow by 1% from 1 µs, so a percentile read from it is within 0.5% of the exact
// nearest-rank value; count, sum, min and max are exact. Histograms merge by adding counts,
// and travel over IPC as their counts (a Float64Array) plus four numbers.
import { round, type Spread } from './stats.js';

const MIN_MS = 0.001;
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
/** 1 µs … about 20 minutes; anything beyond lands in the last bucket (max stays exact). */
const BUCKETS = Math.ceil(Math.log(1.2e6 / MIN_MS) / LOG_GROWTH) + 2;

/** A histogram as it crosses a process boundary. */
export interface HistogramData {
  counts: Float64Array;
  n: number;
  sum: number;
  min: number;
  max: number;
}

export class Histogram {
  counts = new Float64Array(BUCKETS);
  n = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  /** One sample, ms. NaN is ignored (a frame without a stamp is counted elsewhere). */
  add(ms: number): void {
    if (!(ms === ms)) return;
    this.counts[bucketOf(ms)]++;
    this.n++;
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
  }

  merge(o: HistogramData): this {
    if (o.n === 0) return this;
    for (let i = 0; i < BUCKETS; i++) this.counts[i] += o.counts[i];
    this.n += o.n;
    this.sum += o.sum;
    this.min = Math.min(this.min, o.min);
    this.max = Math.max(this.max, o.max);
    return this;
  }

  static from(parts: readonly HistogramData[]): Histogram {
    const h = new Histogram();
    for (const p of parts) h.merge(p);
    return h;
  }

  /** What to send over IPC; this histogram is left as it was. */
  data(): HistogramData {
    return { counts: this.counts, n: this.n, sum: this.sum, min: this.min, max: this.max };
  }

  /** The data so far, and an empty histogram from now on. */
  take(): HistogramData {
    const d = this.data();
    this.counts = new Float64Array(BUCKETS);
    this.n = this.sum = 0;
    this.min = Infinity;
    this.max = -Infinity;
    return d;
  }

  /** Nearest-rank percentile (0 < p ≤ 100), within 0.5%; clamped to [min, max]; NaN when empty. */
  percentile(p: number): number {
    if (this.n === 0) return Number.NaN;
    const rank = Math.min(this.n, Math.max(1, Math.ceil((p / 100) * this.n)));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, valueOf(i)));
    }
    return this.max;
  }

  /** The same shape as stats.ts spread() (ms, two decimals; NaN when empty). */
  spread(): Spread {
    const empty = this.n === 0;
    return {
      p50: round(this.percentile(50), 2),
      p90: round(this.percentile(90), 2),
      p99: round(this.percentile(99), 2),
      p999: round(this.percentile(99.9), 2),
      max: empty ? Number.NaN : round(this.max, 2),
      mean: empty ? Number.NaN : round(this.sum / this.n, 2),
    };
  }
}

function bucketOf(ms: number): number {
  if (ms <= MIN_MS) return 0;
  return Math.min(BUCKETS - 1, 1 + Math.floor(Math.log(ms / MIN_MS) / LOG_GROWTH));
}

/** The middle (geometric) of bucket i. */
function valueOf(i: number): number {
  if (i === 0) return MIN_MS;
  return MIN_MS * GROWTH ** (i - 0.5);
}
