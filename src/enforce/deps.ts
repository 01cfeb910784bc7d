import type { Logger } from 'pino';
import type { EnforceMetrics } from './metrics.js';
import type { FirewallOptions } from './options.js';
import { CommandRunner } from './run-command.js';

/** What every backend is built with besides its options. */
export interface BackendDeps {
  readonly log: Logger;
  readonly metrics?: EnforceMetrics;
  /** Prepended to every command (tests: `ip netns exec NAME`); production leaves it out. */
  readonly commandPrefix?: readonly string[];
  /** Clock for expiry arithmetic; tests may pin it. */
  readonly now?: () => number;
}

/** What the command-running backends (iptables, ipset, nftables) share: their runner, log, metrics and clock. */
export abstract class CommandBackend {
  protected readonly runner: CommandRunner;
  protected readonly log: Logger;
  protected readonly metrics: EnforceMetrics | undefined;
  protected readonly now: () => number;

  constructor(
    backend: string,
    protected readonly opts: FirewallOptions,
    deps: BackendDeps,
  ) {
    this.runner = new CommandRunner(
      { timeoutMs: opts.commandTimeoutMs, attempts: opts.commandAttempts, retryBaseMs: opts.retryBaseMs },
      { backend, log: deps.log, metrics: deps.metrics, prefix: deps.commandPrefix },
    );
    this.log = deps.log;
    this.metrics = deps.metrics;
    this.now = deps.now ?? Date.now;
  }
}
