import type { BanEntry, FirewallBackend } from './backend.js';
import { CommandBackend, type BackendDeps } from './deps.js';
import { canonicalTarget, validEntries } from './entries.js';
import type { FirewallOp } from './metrics.js';
import type { FirewallOptions } from './options.js';
import { actionChain, removeFrame, restore, ruleScript, startFrame, XT } from './xtables.js';

/**
 * One iptables/ip6tables rule per banned address or network in authban's chain. iptables has
 * no timeouts, so this backend remembers what it installed and removes expired rules itself;
 * it also needs that memory because `-D` of a missing rule fails a whole restore batch.
 */
export class IptablesBackend extends CommandBackend implements FirewallBackend {
  readonly name = 'iptables';
  private readonly installed = new Map<string, BanEntry>();
  private tail: Promise<unknown> = Promise.resolve();
  private sweeper: NodeJS.Timeout | null = null;

  constructor(opts: FirewallOptions, deps: BackendDeps) {
    super('iptables', opts, deps);
  }

  start(restoreEntries: readonly BanEntry[]): Promise<void> {
    return this.serial(async () => {
      const now = this.now();
      const live = validEntries(restoreEntries, this.log, this.metrics).filter((e) => !expired(e, now));
      const byTarget = new Map(live.map((e) => [e.target, e]));
      await startFrame(this.runner, this.opts, (family) =>
        [...byTarget.values()].filter((e) => e.family === family).map((e) => this.rule('-A', e.target)),
      );
      this.installed.clear();
      for (const [t, e] of byTarget) this.installed.set(t, e);
      this.startSweeper();
    });
  }

  banMany(entries: readonly BanEntry[]): Promise<void> {
    return this.serial(async () => {
      const now = this.now();
      const fresh: BanEntry[] = [];
      for (const e of validEntries(entries, this.log, this.metrics)) {
        if (expired(e, now)) continue;
        // Already there: only the end of the ban moves; no second rule.
        if (!this.installed.has(e.target)) fresh.push(e);
        this.installed.set(e.target, e);
      }
      try {
        await this.apply('ban', fresh, '-A');
      } catch (err) {
        for (const e of fresh) this.installed.delete(e.target);
        throw err;
      }
    });
  }

  unbanMany(entries: readonly BanEntry[]): Promise<void> {
    return this.serial(() => this.remove('unban', entries));
  }

  list(): Promise<BanEntry[]> {
    return this.serial(async () => {
      const out: BanEntry[] = [];
      for (const family of [4, 6] as const) {
        const res = await this.runner.once('list', [XT[family].cmd, '-w', '-S', this.opts.chain]);
        if (res.code !== 0) continue;
        for (const target of parseChainTargets(res.stdout, this.opts.chain)) {
          out.push({ target, family, expiresAt: this.installed.get(target)?.expiresAt ?? null });
        }
      }
      return out;
    });
  }

  stop(mode: 'flush' | 'keep' = this.opts.onStop): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    return this.serial(async () => {
      if (mode === 'flush') {
        await removeFrame(this.runner, this.opts.chain);
        this.installed.clear();
      }
    });
  }

  private remove(op: FirewallOp, entries: readonly BanEntry[]): Promise<void> {
    const present = validEntries(entries, this.log, this.metrics).filter((e) => this.installed.has(e.target));
    return this.apply(op, present, '-D').then(() => {
      for (const e of present) this.installed.delete(e.target);
    });
  }

  private async apply(op: FirewallOp, entries: readonly BanEntry[], verb: '-A' | '-D'): Promise<void> {
    for (const family of [4, 6] as const) {
      const lines = entries.filter((e) => e.family === family).map((e) => this.rule(verb, e.target));
      if (lines.length > 0) await restore(this.runner, family, op, ruleScript(lines));
    }
  }

  private rule(verb: '-A' | '-D', target: string): string {
    return `${verb} ${this.opts.chain} -s ${target} -j ${actionChain(this.opts.chain)}`;
  }

  private startSweeper(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => {
      const now = this.now();
      const due = [...this.installed.values()].filter((e) => expired(e, now));
      if (due.length === 0) return;
      this.serial(() => this.remove('expire', due)).catch((err: unknown) =>
        this.log.error({ err, count: due.length }, 'iptables: removing expired bans failed; will retry'),
      );
    }, this.opts.expirySweepMs);
    this.sweeper.unref();
  }

  /** Commands of this backend run one at a time so `installed` matches the kernel. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }
}

function expired(e: BanEntry, now: number): boolean {
  return e.expiresAt !== null && e.expiresAt <= now;
}

/** Targets of `-A CHAIN -s X -j CHAIN-act` lines in `iptables -S CHAIN` output, canonical. */
export function parseChainTargets(listing: string, chain: string): string[] {
  const out: string[] = [];
  const prefix = `-A ${chain} -s `;
  for (const raw of listing.split('\n')) {
    const line = raw.trim();
    if (!line.startsWith(prefix)) continue;
    const c = canonicalTarget(line.slice(prefix.length).split(' ')[0] ?? '');
    if (c) out.push(c.target);
  }
  return out;
}
