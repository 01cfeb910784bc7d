/**
 * Failure counts per ban key over a sliding window, for up to `maxTracked` keys (LRU).
 *
 * Memory is what matters here (a million scanning addresses must fit in a few hundred MB), so a
 * key's value is the bare timestamp while it has one failure (a small integer: no allocation)
 * and a plain array of small integers once it has more; never an object per failure.
 */
import { LRUCache } from 'lru-cache';

/** Stored stamps are seconds since this instant, so they stay small integers (V8 SMIs). */
const STAMP_BASE_S = 1_600_000_000;

type Stamps = number | number[];

export interface FailCounterOptions {
  readonly maxTracked: number;
  /** Seconds. */
  readonly findtime: number;
  /** Called when the cap pushes out a key that still had failures in its window. */
  readonly onEvict?: () => void;
}

export class FailCounter {
  private readonly lru: LRUCache<string, Stamps>;
  /** Seconds; may change on reload. */
  findtime: number;

  constructor(opts: FailCounterOptions) {
    this.findtime = opts.findtime;
    const onEvict = opts.onEvict;
    this.lru = new LRUCache<string, Stamps>({
      max: opts.maxTracked,
      ...(onEvict ? { dispose: (_v: Stamps, _k: string, reason: LRUCache.DisposeReason) => { if (reason === 'evict') onEvict(); } } : {}),
    });
  }

  /**
   * Records a failure of `key` at `atMs` and returns how many failures the key has in the
   * window ending at that failure: those less than findtime seconds older (one-second resolution;
   * a failure exactly findtime seconds older is out).
   */
  add(key: string, atMs: number): number {
    const t = toStamp(atMs);
    const cur = this.lru.get(key);
    if (cur === undefined) {
      this.lru.set(key, t);
      return 1;
    }
    const list = typeof cur === 'number' ? [cur] : cur;
    list.push(t);
    const kept = prune(list, t, this.findtime);
    // A pruned-down list goes back to the bare-number form to release its array.
    this.lru.set(key, kept.length === 1 ? kept[0]! : kept);
    return kept.length;
  }

  /** Failures of `key` within the window ending at `nowMs`, without touching LRU order. */
  count(key: string, nowMs: number): number {
    const cur = this.lru.peek(key);
    if (cur === undefined) return 0;
    const t = toStamp(nowMs);
    const list = typeof cur === 'number' ? [cur] : cur;
    return list.filter((s) => t - s < this.findtime).length;
  }

  delete(key: string): void {
    this.lru.delete(key);
  }

  get size(): number {
    return this.lru.size;
  }
}

function toStamp(ms: number): number {
  return Math.floor(ms / 1000) - STAMP_BASE_S;
}

/** Keeps the stamps inside the window ending at `t`, in place, in arrival order. */
function prune(list: number[], t: number, findtime: number): number[] {
  let w = 0;
  for (let r = 0; r < list.length; r++) {
    const s = list[r]!;
    if (t - s < findtime) list[w++] = s;
  }
  list.length = w;
  return list;
}
