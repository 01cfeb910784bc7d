/**
 * The kernel side of enforcement as the daemon runs it: one backend, its batcher, and a start
 * that never takes the daemon down. A firewall that cannot be set up (a missing tool, a
 * kernel without the module, a lock held too long) is logged with its error, counted, and
 * retried with back-off; meanwhile the milter's tempfail keeps refusing banned addresses.
 *
 * Completeness: ban()/unban() are ignored until a start has succeeded. Each start installs a
 * snapshot of activeBans(); when it succeeds, activeBans() is read again and the difference
 * (bans added or changed, bans lifted) goes through the batcher, in the same synchronous step
 * that switches to `running`. So every change made while the backend was starting (which can
 * take seconds behind the xtables lock), failing, or retrying reaches the kernel, and every
 * change after that step arrives through ban()/unban().
 */
import type { Logger } from 'pino';
import type { BanEntry, FirewallBackend } from './backend.js';
import { DEFAULT_BATCHER_OPTIONS, FirewallBatcher } from './batcher.js';
import { createBackend } from './factory.js';
import { IPSET_MAX_TIMEOUT } from './ipset.js';
import type { EnforceMetrics } from './metrics.js';
import { NFT_MAX_TIMEOUT } from './nftables.js';
import type { FirewallOptions } from './options.js';

/** Longest kernel timeout (seconds) each backend with kernel timeouts can give an entry. */
const KERNEL_TIMEOUT_CAP: Readonly<Record<string, number>> = { nftables: NFT_MAX_TIMEOUT, ipset: IPSET_MAX_TIMEOUT };

export const DEFAULT_REFRESH_MS = 6 * 3600_000;

export interface FirewallDeps {
  readonly log: Logger;
  readonly metrics?: EnforceMetrics;
  /** The bans to install when the backend (re)starts. */
  readonly activeBans: () => readonly BanEntry[];
  /** First retry delay after a failed start; doubles up to maxRetryMs. */
  readonly retryMs?: number;
  readonly maxRetryMs?: number;
  /** How often bans longer than the kernel's timeout cap are re-written (ipset, nftables). */
  readonly refreshMs?: number;
  /** Clock for the refresh arithmetic; tests may pin it. */
  readonly now?: () => number;
  /** Runs fn every ms and returns a cancel function. Default: an unref'd setInterval. Tests: a manual tick. */
  readonly every?: (fn: () => void, ms: number) => () => void;
  /** Tests: a backend instead of the one the options name. */
  readonly backend?: FirewallBackend;
}

export type FirewallState = 'starting' | 'running' | 'failing' | 'stopped';

function everyInterval(fn: () => void, ms: number): () => void {
  const t = setInterval(fn, ms);
  t.unref();
  return () => clearInterval(t);
}

export class Firewall {
  private readonly backend: FirewallBackend;
  private readonly batcher: FirewallBatcher;
  private state: FirewallState = 'starting';
  private lastError: string | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private delay: number;
  /** The start attempt in progress, if any: stop() waits for it. */
  private attempt: Promise<void> | null = null;
  /** The backend has been started (so stop() must stop it), even if stop() came during the start. */
  private backendStarted = false;
  private cancelRefresh: (() => void) | null = null;
  private readonly now: () => number;

  constructor(
    opts: FirewallOptions,
    private readonly deps: FirewallDeps,
  ) {
    this.backend = deps.backend ?? createBackend(opts, { log: deps.log, ...(deps.metrics ? { metrics: deps.metrics } : {}) });
    this.batcher = new FirewallBatcher(this.backend, DEFAULT_BATCHER_OPTIONS, { log: deps.log, ...(deps.metrics ? { metrics: deps.metrics } : {}) });
    this.delay = deps.retryMs ?? 1000;
    this.now = deps.now ?? Date.now;
  }

  /** Resolves after the first attempt, successful or not; never rejects. */
  start(): Promise<void> {
    if (this.state === 'stopped') return Promise.resolve();
    const attempt = this.attemptStart().finally(() => {
      if (this.attempt === attempt) this.attempt = null;
    });
    this.attempt = attempt;
    return attempt;
  }

  private async attemptStart(): Promise<void> {
    this.retryTimer = null;
    let installed: readonly BanEntry[];
    try {
      installed = this.deps.activeBans();
      await this.backend.start(installed);
    } catch (e) {
      if (this.state === 'stopped') return;
      this.state = 'failing';
      this.lastError = (e as Error).message;
      this.deps.log.error({ event: 'firewall_start_failed', backend: this.backend.name, err: this.lastError, retryInMs: this.delay }, 'firewall could not be set up; bans are enforced by the milter only until it can');
      this.retryTimer = setTimeout(() => void this.start(), this.delay);
      this.retryTimer.unref();
      this.delay = Math.min(this.delay * 2, this.deps.maxRetryMs ?? 60_000);
      return;
    }
    this.backendStarted = true;
    // Stopped while starting: stop() is waiting for this attempt and takes it from here.
    if (this.state === 'stopped') return;
    // No await from here to `running`: nothing can change the bans in between.
    const changes = this.reconcile(installed);
    this.state = 'running';
    this.lastError = null;
    this.startRefresh();
    this.deps.log.info({ event: 'firewall_started', backend: this.backend.name, ...changes }, 'firewall ready');
  }

  /** Queues what changed in activeBans() since `installed` was read: new or changed bans, lifted bans. */
  private reconcile(installed: readonly BanEntry[]): { banned: number; unbanned: number } {
    const before = new Map(installed.map((b) => [b.target, b]));
    let banned = 0;
    let unbanned = 0;
    for (const b of this.deps.activeBans()) {
      const old = before.get(b.target);
      before.delete(b.target);
      if (old && old.expiresAt === b.expiresAt && old.family === b.family) continue;
      this.batcher.ban(b);
      banned++;
    }
    for (const gone of before.values()) {
      this.batcher.unban(gone);
      unbanned++;
    }
    return { banned, unbanned };
  }

  /**
   * ipset and nftables cap an element's timeout (NFT_MAX_TIMEOUT, IPSET_MAX_TIMEOUT), so the
   * kernel would end a longer ban early. Every refreshMs (P), each ban with more than cap - 2P
   * left is written again, which renews its kernel timeout. Why that is enough: a write at s
   * gives the kernel min(left, cap). If that is `left`, the kernel ends it on time. If not,
   * more than cap was left at s, the kernel keeps it until s + cap, and the next tick t, within
   * 2P of s even with a late timer, finds more than cap - 2P left and writes it again before
   * s + cap (cap >> 2P). Bans without end carry no kernel timeout and need nothing.
   */
  private startRefresh(): void {
    const cap = KERNEL_TIMEOUT_CAP[this.backend.name];
    if (cap === undefined || this.cancelRefresh) return;
    const period = this.deps.refreshMs ?? DEFAULT_REFRESH_MS;
    const threshold = cap * 1000 - 2 * period;
    this.cancelRefresh = (this.deps.every ?? everyInterval)(() => {
      if (this.state !== 'running') return;
      const now = this.now();
      let refreshed = 0;
      for (const b of this.deps.activeBans()) {
        if (b.expiresAt !== null && b.expiresAt - now > threshold) {
          this.batcher.ban(b);
          refreshed++;
        }
      }
      if (refreshed > 0) this.deps.log.info({ event: 'firewall_refresh', backend: this.backend.name, refreshed }, 'renewing kernel timeouts of long bans');
    }, period);
  }

  ban(entry: BanEntry): void {
    // Before a successful start there is nothing to add to: that start's reconcile covers it.
    if (this.state === 'running') this.batcher.ban(entry);
  }

  unban(entry: BanEntry): void {
    if (this.state === 'running') this.batcher.unban(entry);
  }

  status(): { backend: string; state: FirewallState; lastError: string | null } {
    return { backend: this.backend.name, state: this.state, lastError: this.lastError };
  }

  /**
   * Waits for a start in progress, so no old start can land after a reload's new one. `mode`
   * overrides onStop: a reload to another backend flushes, or the old rules would stay forever.
   */
  async stop(mode?: 'flush' | 'keep'): Promise<void> {
    this.state = 'stopped';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.cancelRefresh?.();
    this.cancelRefresh = null;
    await this.attempt;
    await this.batcher.close();
    const started = this.backendStarted;
    this.backendStarted = false;
    if (started) await this.backend.stop(mode);
  }
}
