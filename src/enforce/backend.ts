/**
 * The enforcement interface every firewall backend implements. Entries are already validated
 * and canonical (core/address); backends never see raw text from logs or clients.
 */

export interface BanEntry {
  /** Canonical address (`198.51.100.7`, `2001:db8::1`) or network (`2001:db8:1::/64`). */
  readonly target: string;
  readonly family: 4 | 6;
  /** Milliseconds since the epoch; null for a ban without end. */
  readonly expiresAt: number | null;
}

export interface FirewallBackend {
  readonly name: string;
  /** Idempotent: reuses an existing chain/set/table; installs `restore` in one batch, drops stale entries. */
  start(restore: readonly BanEntry[]): Promise<void>;
  banMany(entries: readonly BanEntry[]): Promise<void>;
  unbanMany(entries: readonly BanEntry[]): Promise<void>;
  list(): Promise<BanEntry[]>;
  /** Flushes or leaves the rules: as configured (onStop), unless `mode` says otherwise. */
  stop(mode?: 'flush' | 'keep'): Promise<void>;
}
