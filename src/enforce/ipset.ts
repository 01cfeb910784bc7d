import type { Family } from '../core/address.js';
import type { BanEntry, FirewallBackend } from './backend.js';
import { CommandBackend, type BackendDeps } from './deps.js';
import { canonicalTarget, remainingSeconds, validEntries } from './entries.js';
import type { FirewallOp } from './metrics.js';
import type { FirewallOptions } from './options.js';
import { actionChain, removeFrame, startFrame } from './xtables.js';

/** ipset refuses element timeouts above this many seconds (about 24.8 days). */
export const IPSET_MAX_TIMEOUT = 2_147_483;

/**
 * Two `hash:net` sets (one per family, so v4 and v6 hosts and prefixes all fit) with
 * per-element timeouts: the kernel ends bans even when authban is not running. One
 * iptables/ip6tables rule per family matches the set.
 */
export class IpsetBackend extends CommandBackend implements FirewallBackend {
  readonly name = 'ipset';

  constructor(opts: FirewallOptions, deps: BackendDeps) {
    super('ipset', opts, deps);
  }

  setName(family: Family): string {
    return `${this.opts.set}${family}`;
  }

  /**
   * Fills a fresh set and swaps it in, in one `ipset restore`: the live set (and the rule that
   * references it) never goes away, and afterwards it holds exactly the restored bans.
   */
  async start(restore: readonly BanEntry[]): Promise<void> {
    const now = this.now();
    const entries = validEntries(restore, this.log, this.metrics);
    const existing = new Set(await this.setNames('start'));
    const lines: string[] = [];
    for (const family of [4, 6] as const) {
      const live = this.setName(family);
      const tmp = `${live}.new`;
      const create = (name: string) =>
        `create ${name} hash:net family ${family === 4 ? 'inet' : 'inet6'} timeout 0 maxelem ${this.opts.maxelem}`;
      if (!existing.has(live)) lines.push(create(live));
      if (existing.has(tmp)) lines.push(`destroy ${tmp}`);
      lines.push(create(tmp));
      lines.push(...this.addLines(tmp, entries.filter((e) => e.family === family), now));
      lines.push(`swap ${live} ${tmp}`, `destroy ${tmp}`);
    }
    await this.restore('start', lines);
    await startFrame(this.runner, this.opts, (family) => [
      `-A ${this.opts.chain} -m set --match-set ${this.setName(family)} src -j ${actionChain(this.opts.chain)}`,
    ]);
  }

  /** A re-ban of a present entry updates its timeout (`-exist` re-adds). */
  async banMany(entries: readonly BanEntry[]): Promise<void> {
    const now = this.now();
    const valid = validEntries(entries, this.log, this.metrics);
    const lines = ([4, 6] as const).flatMap((f) => this.addLines(this.setName(f), valid.filter((e) => e.family === f), now));
    if (lines.length > 0) await this.restore('ban', lines);
  }

  /** Deleting an absent entry is not an error under `-exist` (the kernel may have expired it). */
  async unbanMany(entries: readonly BanEntry[]): Promise<void> {
    const lines = validEntries(entries, this.log, this.metrics).map((e) => `del ${this.setName(e.family)} ${e.target}`);
    if (lines.length > 0) await this.restore('unban', lines);
  }

  async list(): Promise<BanEntry[]> {
    const now = this.now();
    const out: BanEntry[] = [];
    for (const family of [4, 6] as const) {
      const res = await this.runner.once('list', ['ipset', 'save', this.setName(family)]);
      if (res.code === 0) out.push(...parseIpsetSave(res.stdout, this.setName(family), family, now));
    }
    return out;
  }

  async stop(mode: 'flush' | 'keep' = this.opts.onStop): Promise<void> {
    if (mode !== 'flush') return;
    await removeFrame(this.runner, this.opts.chain);
    const existing = new Set(await this.setNames('stop'));
    const lines = ([4, 6] as const).map((f) => this.setName(f)).filter((n) => existing.has(n)).map((n) => `destroy ${n}`);
    if (lines.length > 0) await this.restore('stop', lines);
  }

  private addLines(set: string, entries: readonly BanEntry[], now: number): string[] {
    const lines: string[] = [];
    for (const e of entries) {
      const secs = remainingSeconds(e, now, IPSET_MAX_TIMEOUT);
      if (secs !== null) lines.push(`add ${set} ${e.target} timeout ${secs}`);
    }
    return lines;
  }

  private async setNames(op: FirewallOp): Promise<string[]> {
    const res = await this.runner.run(op, ['ipset', 'list', '-n']);
    return res.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  }

  private async restore(op: FirewallOp, lines: readonly string[]): Promise<void> {
    await this.runner.run(op, ['ipset', 'restore', '-exist'], `${lines.join('\n')}\n`);
  }
}

/** Entries of `ipset save SET` output (`add SET TARGET timeout N`); timeout 0 is a ban without end. */
export function parseIpsetSave(text: string, set: string, family: Family, now: number): BanEntry[] {
  const out: BanEntry[] = [];
  for (const raw of text.split('\n')) {
    const f = raw.trim().split(/\s+/);
    if (f[0] !== 'add' || f[1] !== set || !f[2]) continue;
    const c = canonicalTarget(f[2]);
    if (!c || c.family !== family) continue;
    const ti = f.indexOf('timeout');
    const secs = ti > 0 ? Number(f[ti + 1]) : 0;
    out.push({ target: c.target, family, expiresAt: secs > 0 ? now + secs * 1000 : null });
  }
  return out;
}
