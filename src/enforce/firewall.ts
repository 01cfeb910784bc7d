/**
 * The kernel side of enforcement as the daemon runs it: one backend, its batcher, and a start
 * that never takes the daemon down. A firewall that cannot be set up (a missing tool, a
 * kernel without the module, a lock held too long) is logged with its error, counted, and
 * retried with back-off; meanwhile the milter's tempfail keeps refusing banned addresses, and
 * the first successful start installs every ban active at that moment.
 */
import type { Logger } from 'pino';
import type { BanEntry, FirewallBackend } from './backend.js';
import { DEFAULT_BATCHER_OPTIONS, FirewallBatcher } from './batcher.js';
import { createBackend } from './factory.js';
import type { EnforceMetrics } from './metrics.js';
import type { FirewallOptions } from './options.js';

export interface FirewallDeps {
  readonly log: Logger;
  readonly metrics?: EnforceMetrics;
  /** The bans to install when the backend (re)starts. */
  readonly activeBans: () => readonly BanEntry[];
  /** First retry delay after a failed start; doubles up to maxRetryMs. */
  readonly retryMs?: number;
  readonly maxRetryMs?: number;
}

export type FirewallState = 'starting' | 'running' | 'failing' | 'stopped';

export class Firewall {
  private readonly backend: FirewallBackend;
  private readonly batcher: FirewallBatcher;
  private state: FirewallState = 'starting';
  private lastError: string | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private delay: number;

  constructor(
    opts: FirewallOptions,
    private readonly deps: FirewallDeps,
  ) {
    this.backend = createBackend(opts, { log: deps.log, ...(deps.metrics ? { metrics: deps.metrics } : {}) });
    this.batcher = new FirewallBatcher(this.backend, DEFAULT_BATCHER_OPTIONS, { log: deps.log, ...(deps.metrics ? { metrics: deps.metrics } : {}) });
    this.delay = deps.retryMs ?? 1000;
  }

  /** Resolves after the first attempt, successful or not; never rejects. */
  async start(): Promise<void> {
    try {
      await this.backend.start(this.deps.activeBans());
      this.state = 'running';
      this.lastError = null;
      this.deps.log.info({ event: 'firewall_started', backend: this.backend.name }, 'firewall ready');
    } catch (e) {
      if (this.state === 'stopped') return;
      this.state = 'failing';
      this.lastError = (e as Error).message;
      this.deps.log.error({ event: 'firewall_start_failed', backend: this.backend.name, err: this.lastError, retryInMs: this.delay }, 'firewall could not be set up; bans are enforced by the milter only until it can');
      this.retryTimer = setTimeout(() => void this.start(), this.delay);
      this.retryTimer.unref();
      this.delay = Math.min(this.delay * 2, this.deps.maxRetryMs ?? 60_000);
    }
  }

  ban(entry: BanEntry): void {
    // Before a successful start there is nothing to add to: that start installs every active ban.
    if (this.state === 'running') this.batcher.ban(entry);
  }

  unban(entry: BanEntry): void {
    if (this.state === 'running') this.batcher.unban(entry);
  }

  status(): { backend: string; state: FirewallState; lastError: string | null } {
    return { backend: this.backend.name, state: this.state, lastError: this.lastError };
  }

  async stop(): Promise<void> {
    const wasRunning = this.state === 'running';
    this.state = 'stopped';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.batcher.close();
    if (wasRunning) await this.backend.stop();
  }
}
