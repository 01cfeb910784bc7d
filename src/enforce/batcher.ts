import type { Logger } from 'pino';
import type { BanEntry, FirewallBackend } from './backend.js';
import type { EnforceMetrics } from './metrics.js';

export interface BatcherOptions {
  /** How long a request waits for company before its batch is written. */
  readonly flushMs: number;
  /** A batch is written at once when this many requests wait; also the largest batch. */
  readonly maxBatch: number;
  /** Batch attempts per request before it is given up (logged and counted). */
  readonly maxAttempts: number;
  /** Back-off after a failed batch doubles from this, up to retryMaxMs. */
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
}

export const DEFAULT_BATCHER_OPTIONS: BatcherOptions = {
  flushMs: 50,
  maxBatch: 10_000,
  maxAttempts: 6,
  retryBaseMs: 1000,
  retryMaxMs: 60_000,
};

export interface BatcherDeps {
  readonly log: Logger;
  readonly metrics?: EnforceMetrics;
}

type Op = 'ban' | 'unban';
interface Request {
  readonly op: Op;
  readonly entry: BanEntry;
  readonly attempts: number;
}

/**
 * Coalesces bursts of ban/unban requests into backend batches, one batch in flight at a time.
 * Requests are keyed by target and the latest wins, so a ban then an unban of the same target
 * before a flush ends as the unban. Callers never wait on the firewall: the in-memory tempfail
 * table keeps refusing the address while a batch is pending or being retried.
 */
export class FirewallBatcher {
  private readonly pending = new Map<string, Request>();
  private inflight = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = 0;
  private loop: Promise<void> | null = null;
  private failures = 0;
  private backoffUntil = 0;
  private closed = false;

  constructor(
    private readonly backend: FirewallBackend,
    private readonly opts: BatcherOptions,
    private readonly deps: BatcherDeps,
  ) {}

  ban(entry: BanEntry): void {
    this.enqueue('ban', entry);
  }

  unban(entry: BanEntry): void {
    this.enqueue('unban', entry);
  }

  /** Requests queued or being written. */
  get size(): number {
    return this.pending.size + this.inflight;
  }

  /** Writes what is queued now (ignoring back-off); resolves when the queue is empty or a batch failed. */
  flush(): Promise<void> {
    this.clearTimer();
    this.loop ??= this.drain().finally(() => {
      this.loop = null;
      // Requests that arrived as the loop was finishing still get their flush.
      if (this.pending.size > 0) this.schedule(Math.max(this.opts.flushMs, this.backoffUntil - Date.now()));
    });
    return this.loop;
  }

  /** A last flush; nothing is scheduled afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    await this.loop;
    await this.flush();
    this.clearTimer();
  }

  private enqueue(op: Op, entry: BanEntry): void {
    // Delete first so the target moves to the end: batches keep request order.
    this.pending.delete(entry.target);
    this.pending.set(entry.target, { op, entry, attempts: 0 });
    this.gauge();
    if (this.loop) return; // the running loop takes it after its current batch
    const delay = this.pending.size >= this.opts.maxBatch ? 0 : this.opts.flushMs;
    this.schedule(Math.max(delay, this.backoffUntil - Date.now()));
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    const at = Date.now() + delayMs;
    if (this.timer && this.timerAt <= at) return;
    this.clearTimer();
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, delayMs);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private async drain(): Promise<void> {
    while (this.pending.size > 0) {
      const batch: Request[] = [];
      for (const [key, req] of this.pending) {
        if (batch.length >= this.opts.maxBatch) break;
        batch.push(req);
        this.pending.delete(key);
      }
      this.inflight = batch.length;
      this.deps.metrics?.batchSize.observe({ backend: this.backend.name }, batch.length);
      const failed: Request[] = [];
      for (const op of ['unban', 'ban'] as const) {
        const part = batch.filter((r) => r.op === op);
        if (part.length === 0) continue;
        const entries = part.map((r) => r.entry);
        try {
          await (op === 'ban' ? this.backend.banMany(entries) : this.backend.unbanMany(entries));
        } catch (err) {
          this.deps.log.error({ err, backend: this.backend.name, op, count: part.length }, 'firewall batch failed');
          failed.push(...part);
        }
      }
      this.inflight = 0;
      if (failed.length > 0) {
        this.requeue(failed);
        this.failures++;
        const wait = Math.min(this.opts.retryMaxMs, this.opts.retryBaseMs * 2 ** (this.failures - 1));
        this.backoffUntil = Date.now() + wait;
        if (this.pending.size > 0) this.schedule(wait);
        this.gauge();
        return;
      }
      this.failures = 0;
      this.backoffUntil = 0;
      this.gauge();
    }
  }

  /** A failed request goes back unless a newer request for its target arrived meanwhile. */
  private requeue(failed: readonly Request[]): void {
    let dropped = 0;
    for (const r of failed) {
      if (this.pending.has(r.entry.target)) continue;
      if (r.attempts + 1 >= this.opts.maxAttempts) {
        dropped++;
        continue;
      }
      this.pending.set(r.entry.target, { ...r, attempts: r.attempts + 1 });
    }
    if (dropped > 0) {
      this.deps.metrics?.droppedEntries.inc({ backend: this.backend.name }, dropped);
      this.deps.log.error({ backend: this.backend.name, dropped }, 'firewall: giving up on requests after repeated batch failures');
    }
  }

  private gauge(): void {
    this.deps.metrics?.pending.set(this.size);
  }
}
