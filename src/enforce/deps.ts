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

export function makeRunner(backend: string, opts: FirewallOptions, deps: BackendDeps): CommandRunner {
  return new CommandRunner(
    { timeoutMs: opts.commandTimeoutMs, attempts: opts.commandAttempts, retryBaseMs: opts.retryBaseMs },
    { backend, log: deps.log, metrics: deps.metrics, prefix: deps.commandPrefix },
  );
}
