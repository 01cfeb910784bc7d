import type { BanEntry, FirewallBackend } from './backend.js';

/** Tempfail only: the milter's 421 at connect is the whole enforcement; the firewall is untouched. */
export class NoneBackend implements FirewallBackend {
  readonly name = 'none';
  async start(_restore: readonly BanEntry[]): Promise<void> {}
  async banMany(_entries: readonly BanEntry[]): Promise<void> {}
  async unbanMany(_entries: readonly BanEntry[]): Promise<void> {}
  async list(): Promise<BanEntry[]> {
    return [];
  }
  async stop(): Promise<void> {}
}
