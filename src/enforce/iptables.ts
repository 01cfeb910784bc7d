import type { Family } from '../core/address.js';
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
  /**
   * Per family, because each family is its own iptables-restore commit: after one commits and
   * the other fails, this must still say exactly what each kernel table holds.
   */
  private readonly installed: Record<Family, Map<string, BanEntry>> = { 4: new Map(), 6: new Map() };
  private tail: Promise<unknown> = Promise.resolve();
  private sweeper: NodeJS.Timeout | null = null;
  /** An expiry sweep is queued or running: ticks meanwhile are skipped, so sweeps cannot pile up behind a slow command. */
  private sweeping = false;

  constructor(opts: FirewallOptions, deps: BackendDeps) {
    super('iptables', opts, deps);
  }

  start(restoreEntries: readonly BanEntry[]): Promise<void> {
    return this.serial(async () => {
      const now = this.now();
      const live = validEntries(restoreEntries, this.log, this.metrics).filter((e) => !expired(e, now));
      const byTarget = new Map(live.map((e) => [e.target, e]));
      const ofFamily = (family: Family) => [...byTarget.values()].filter((e) => e.family === family);
      await startFrame(
        this.runner,
        this.opts,
        (family) => ofFamily(family).map((e) => this.rule('-A', e.target)),
        (family) => {
          // Declaring the chain flushed it: it now holds exactly this family's restored bans.
          this.installed[family] = new Map(ofFamily(family).map((e) => [e.target, e]));
        },
      );
      this.startSweeper();
    });
  }

  banMany(entries: readonly BanEntry[]): Promise<void> {
    return this.serial(async () => {
      const now = this.now();
      const fresh = new Map<string, BanEntry>();
      for (const e of validEntries(entries, this.log, this.metrics)) {
        if (expired(e, now)) continue;
        const installed = this.installed[e.family];
        // Already there: only the end of the ban moves; no second rule.
        if (installed.has(e.target)) installed.set(e.target, e);
        else fresh.set(e.target, e);
      }
      await this.apply('ban', [...fresh.values()], '-A', (e) => this.installed[e.family].set(e.target, e));
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
          out.push({ target, family, expiresAt: this.installed[family].get(target)?.expiresAt ?? null });
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
        for (const family of [4, 6] as const) this.installed[family].clear();
      }
    });
  }

  private remove(op: FirewallOp, entries: readonly BanEntry[]): Promise<void> {
    // Only what is installed: one `-D` of a missing rule fails its family's whole commit.
    const present = validEntries(entries, this.log, this.metrics).filter((e) => this.installed[e.family].has(e.target));
    return this.apply(op, present, '-D', (e) => this.installed[e.family].delete(e.target));
  }

  /**
   * One restore per family; `committed` records each entry once its family's restore succeeded.
   * A failing family does not hold back the other (a broken ip6tables must not stop IPv4 bans
   * or their expiry); the first error is thrown after both were tried, and the caller's retry
   * redoes only what `installed` says is missing.
   */
  private async apply(
    op: FirewallOp,
    entries: readonly BanEntry[],
    verb: '-A' | '-D',
    committed: (e: BanEntry) => void,
  ): Promise<void> {
    const errors: unknown[] = [];
    for (const family of [4, 6] as const) {
      const part = entries.filter((e) => e.family === family);
      if (part.length === 0) continue;
      try {
        await restore(this.runner, family, op, ruleScript(part.map((e) => this.rule(verb, e.target))));
        part.forEach(committed);
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw errors[0];
  }

  private rule(verb: '-A' | '-D', target: string): string {
    return `${verb} ${this.opts.chain} -s ${target} -j ${actionChain(this.opts.chain)}`;
  }

  private startSweeper(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => {
      if (this.sweeping) return;
      this.sweeping = true;
      void this.serial(async () => {
        // Decided when the sweep runs, not when it was queued: a re-ban queued before it may
        // have moved the end of a ban that looked due at the tick.
        const now = this.now();
        const due = ([4, 6] as const).flatMap((f) => [...this.installed[f].values()]).filter((e) => expired(e, now));
        try {
          await this.remove('expire', due);
        } catch (err) {
          this.log.error({ err, count: due.length }, 'iptables: removing expired bans failed; will retry');
        }
      }).finally(() => {
        this.sweeping = false;
      });
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
