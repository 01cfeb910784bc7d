/**
 * The ban engine: turns AuthFailures into bans under the policy, keeps the ban table and the
 * repeat-offender history, persists both, expires bans, and tells enforcement through `ban` /
 * `unban` events. All state changes happen synchronously in memory (so `isBanned` is right at
 * once); durability follows through the state store.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { parseAddress } from '../core/address.js';
import type { AuthFailure, FailureSource } from '../core/auth-failure.js';
import type { BanEntry } from '../enforce/backend.js';
import { canonicalTarget } from '../enforce/entries.js';
import { BanTable, type BanReason, type BanRecord } from './ban-table.js';
import { AttemptIndex, EvidenceStore, mergeInto, recordOf, type FailureRecord } from './evidence-store.js';
import { FailCounter } from './fail-counter.js';
import type { BansMetrics } from './metrics.js';
import { banLengthProblem, banSeconds, compileBanPolicy, exemptReason, keyOf, targetKey, type BanPolicy, type BanPolicyOptions, type ExemptReason } from './policy.js';
import type { BanState, JournalOp, OffenderRecord } from './state-codec.js';
import type { StateStore } from './state-store.js';
import { UserTracker, type UserUnderAttack } from './user-tracker.js';

export interface BanEvent extends BanEntry {
  readonly reason: BanReason;
  /** nth ban of this key. */
  readonly count: number;
  readonly createdAt: number;
}

export interface UnbanEvent extends BanEntry {
  readonly reason: 'expired' | 'manual';
}

export type BanEngineEvents = { ban: [BanEvent]; unban: [UnbanEvent] };

export type IgnoreReason = 'invalid' | 'stale' | 'banned' | ExemptReason;

export type ReportResult =
  | { readonly kind: 'counted'; readonly key: string; readonly failures: number }
  | { readonly kind: 'duplicate'; readonly key: string }
  | { readonly kind: 'would-ban'; readonly key: string; readonly failures: number }
  /** `durable` resolves true once journalled, false without a store or when the write failed (logged). */
  | { readonly kind: 'banned'; readonly key: string; readonly ban: BanRecord; readonly durable: Promise<boolean> }
  | { readonly kind: 'ignored'; readonly reason: IgnoreReason };

export interface ManualBanOptions {
  /** Length in seconds; null for no end; absent: the policy's length for this key's nth ban. */
  readonly seconds?: number | null;
  /** Free text kept with the ban. */
  readonly reason?: string;
  /** Who asked (the control client). */
  readonly by?: string;
}

export interface Explanation {
  readonly address: string;
  readonly key: string;
  readonly exempt: ExemptReason | null;
  readonly ban: BanRecord | null;
  readonly failuresInWindow: number;
  readonly recentFailures: readonly FailureRecord[];
  /** Ban history still remembered for the key: bans so far, when the last ended, when it is forgotten. */
  readonly history: { readonly bans: number; readonly lastEnd: number | null; readonly forgetAt: number | null } | null;
}

export interface BanEngineStats {
  readonly activeBans: { readonly v4: number; readonly v6: number };
  readonly trackedKeys: number;
  readonly trackedUsers: number;
  readonly offenders: number;
  readonly dryRun: boolean;
}

export interface BanEngineDeps {
  readonly log: Logger;
  readonly policy?: Partial<BanPolicyOptions>;
  /** The daemon's own listen addresses: never banned. */
  readonly ownAddresses?: readonly string[];
  readonly metrics?: BansMetrics;
  /** Without one, state lives in memory only. */
  readonly store?: StateStore;
  /** Milliseconds since the epoch. */
  readonly now?: () => number;
  /** Expiry timer period; 0 disables the timer (the caller then calls tick). */
  readonly tickMs?: number;
}

export const DEFAULT_TICK_MS = 1000;
/** Offender pruning and the users-under-attack gauges run at most this often. */
const HOUSEKEEPING_MS = 10_000;
/** Evidence kept with a ban beyond the maxretry failures that caused it. */
const EXTRA_EVIDENCE = 3;

/** Options that size or key the in-memory structures: a reload cannot change them. */
const RESTART_ONLY = ['ipv6Prefix', 'maxTracked', 'maxAttemptKeys', 'evidenceMaxBytes', 'maxTrackedUsers', 'userAddressCap'] as const;

export class BanEngine extends EventEmitter<BanEngineEvents> {
  private current: BanPolicy;
  private readonly log: Logger;
  private readonly metrics: BansMetrics | undefined;
  private readonly store: StateStore | undefined;
  private readonly now: () => number;
  private readonly tickMs: number;
  private readonly table: BanTable;
  private readonly counter: FailCounter;
  private readonly evidence: EvidenceStore;
  private readonly attempts: AttemptIndex;
  private readonly users: UserTracker;
  /** key -> ban history; Map order is last-ban order, so the cap drops the oldest. */
  private readonly offenders = new Map<string, OffenderRecord>();
  private timer: NodeJS.Timeout | null = null;
  private nextHousekeeping = 0;

  constructor(deps: BanEngineDeps) {
    super();
    this.current = compileBanPolicy(deps.policy, deps.ownAddresses);
    this.log = deps.log;
    this.metrics = deps.metrics;
    this.store = deps.store;
    this.now = deps.now ?? Date.now;
    this.tickMs = deps.tickMs ?? DEFAULT_TICK_MS;
    const p = this.policy;
    this.table = new BanTable((addr) => keyOf(this.policy, addr));
    const evictions = this.metrics?.evictions;
    this.counter = new FailCounter({ maxTracked: p.maxTracked, findtime: p.findtime, ...(evictions ? { onEvict: () => evictions.inc() } : {}) });
    this.evidence = new EvidenceStore(p.evidenceMaxBytes, p.maxretry + EXTRA_EVIDENCE);
    this.attempts = new AttemptIndex(p.maxAttemptKeys, p.findtime * 1000);
    this.users = new UserTracker({ findtime: p.findtime, threshold: p.userThreshold, maxUsers: p.maxTrackedUsers, addressCap: p.userAddressCap });
  }

  get policy(): BanPolicy {
    return this.current;
  }

  /**
   * Applies a new policy (config reload). Throws, changing nothing, when it is invalid. Options
   * that size or key the tables (RESTART_ONLY) keep their old value until restart, with a
   * warning. Existing bans keep their end, even for addresses now ignored.
   */
  reconfigure(options: Partial<BanPolicyOptions>, ownAddresses: readonly string[] = []): void {
    const next = compileBanPolicy(options, ownAddresses);
    const kept = RESTART_ONLY.filter((k) => next[k] !== this.current[k]);
    if (kept.length > 0) {
      this.log.warn({ event: 'reconfigure_needs_restart', keys: kept }, `ban options ${kept.join(', ')} change only on restart; keeping the running values`);
    }
    const fixed: Partial<BanPolicy> = {};
    for (const k of kept) Object.assign(fixed, { [k]: this.current[k] });
    this.current = { ...next, ...fixed };
    this.counter.findtime = this.current.findtime;
    this.attempts.ttlMs = this.current.findtime * 1000;
    this.evidence.perKey = this.current.maxretry + EXTRA_EVIDENCE;
    this.users.setWindow(this.current.findtime, this.current.userThreshold);
    this.table.clearKeyCache();
    this.log.info({ event: 'reconfigured', dryRun: this.current.dryRun, findtime: this.current.findtime, maxretry: this.current.maxretry }, 'ban policy reloaded');
  }

  /**
   * Loads persisted state (expired bans dropped), writes a fresh snapshot, starts the expiry
   * timer. Returns the active bans, for enforcement's `start(restore)`; no `ban` events for them.
   */
  async start(): Promise<BanEntry[]> {
    if (this.store) {
      const state = await this.store.load();
      const now = this.now();
      for (const [key, o] of state.offenders) if (!this.forgotten(o, now)) this.rememberOffender(key, o);
      for (const ban of state.bans.values()) if (ban.expiresAt === null || ban.expiresAt > now) this.table.set(ban);
      await this.store.open(() => this.snapshot());
      this.log.info({ event: 'state_loaded', file: this.store.file, bans: this.table.size, offenders: this.offenders.size }, 'ban state loaded');
    }
    this.updateActiveGauge();
    if (this.tickMs > 0) {
      this.timer = setInterval(() => this.tick(), this.tickMs);
      this.timer.unref();
    }
    return this.list().map(toEntry);
  }

  /** Stops the timer and waits for pending state writes. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.store?.close();
  }

  report(f: AuthFailure): ReportResult {
    this.metrics?.failures.inc({ source: f.source });
    const addr = parseAddress(f.address);
    if (!addr) return this.ignored('invalid');
    const exempt = exemptReason(this.policy, addr);
    if (exempt) return this.ignored(exempt);
    const now = this.now();
    if (f.at <= now - this.policy.findtime * 1000) return this.ignored('stale');
    const key = keyOf(this.policy, addr);

    if (f.attemptKey !== undefined) {
      const seen = this.attempts.find(f.attemptKey, f.at);
      if (seen) {
        // The first record may have left the evidence store under its byte cap: then only the count is kept.
        const first = this.findRecord(seen.key, f.attemptKey);
        if (first) mergeInto(first, f);
        this.metrics?.duplicates.inc({ source: f.source });
        return { kind: 'duplicate', key: seen.key };
      }
      this.attempts.remember(f.attemptKey, { key, at: f.at });
    }
    if (f.user) this.users.add(f.user, key, f.at);

    const active = this.table.get(key);
    if (active && (active.expiresAt === null || active.expiresAt > now)) return this.ignored('banned');

    this.evidence.add(key, recordOf(f));
    const failures = this.counter.add(key, f.at);
    if (failures < this.policy.maxretry) return { kind: 'counted', key, failures };

    this.counter.delete(key);
    const evidence = this.evidence.take(key);
    if (this.policy.dryRun) {
      this.metrics?.dryRunWouldBan.inc();
      this.log.info(
        { event: 'would_ban', address: key, reason: 'maxretry', duration: banSeconds(this.policy, this.nextCount(key, now)), failures, sources: sourcesOf(evidence) },
        `dry run: would ban ${key}`,
      );
      return { kind: 'would-ban', key, failures };
    }
    const ban = this.apply(key, addr.family, 'maxretry', evidence, undefined, {});
    const durable = this.store
      ? this.store.append({ op: 'ban', ban }).then(
          () => true,
          () => false,
        )
      : Promise.resolve(false);
    return { kind: 'banned', key, ban, durable };
  }

  /** Bans an address (its key) or a key-shaped network; resolves once the ban is durable. */
  async ban(target: string, opts: ManualBanOptions = {}): Promise<BanRecord> {
    const resolved = targetKey(this.policy, target);
    if ('error' in resolved) throw new Error(`cannot ban: ${resolved.error}`);
    const exempt = exemptReason(this.policy, resolved.addr);
    if (exempt) throw new Error(`cannot ban ${resolved.key}: it is ${EXEMPT_TEXT[exempt]}`);
    const badLength = opts.seconds === undefined ? null : banLengthProblem(opts.seconds);
    if (badLength) throw new Error(`cannot ban ${resolved.key}: ${badLength}`);
    const extra: { by?: string; why?: string } = {};
    if (opts.by !== undefined) extra.by = opts.by;
    if (opts.reason !== undefined) extra.why = opts.reason;
    const ban = this.apply(resolved.key, resolved.addr.family, 'manual', [], opts.seconds, extra);
    await this.persist({ op: 'ban', ban });
    return ban;
  }

  /**
   * Lifts the ban on an address (its key) and forgets the key's failures and ban history: an
   * operator's unban says "not an offender". Resolves to whether a ban was lifted, once durable.
   */
  async unban(target: string): Promise<boolean> {
    // A ban's own target is always accepted, even one no longer of a key's shape (a ban made
    // before ipv6Prefix or the ignore list changed), so every ban can be lifted.
    const exact = canonicalTarget(target)?.target;
    let key: string;
    if (exact !== undefined && this.table.get(exact)) key = exact;
    else {
      const resolved = targetKey(this.policy, target);
      if ('error' in resolved) throw new Error(`cannot unban: ${resolved.error}`);
      key = resolved.key;
    }
    const rec = this.table.delete(key);
    const hadHistory = this.offenders.delete(key);
    this.counter.delete(key);
    this.evidence.delete(key);
    if (!rec && !hadHistory) return false;
    if (rec) this.lifted(rec, 'manual');
    await this.persist({ op: 'unban', target: key, at: this.now() });
    return rec !== undefined;
  }

  /** Lifts every ban; resolves to how many, once all are durable (one group commit). */
  async unbanAll(): Promise<number> {
    const keys = [...this.table.values()].map((b) => b.target);
    const lifted = await Promise.all(keys.map((k) => this.unban(k)));
    return lifted.filter(Boolean).length;
  }

  /** Active bans, soonest expiry first (bans without end last). */
  list(): BanRecord[] {
    const now = this.now();
    return [...this.table.values()]
      .filter((b) => b.expiresAt === null || b.expiresAt > now)
      .sort((a, b) => (a.expiresAt ?? Infinity) - (b.expiresAt ?? Infinity));
  }

  /** The hot path: is this canonical client address (or its IPv6 prefix) banned right now? */
  isBanned(address: string): boolean {
    const rec = this.table.lookup(address);
    return rec !== undefined && (rec.expiresAt === null || rec.expiresAt > this.now());
  }

  explain(address: string): Explanation {
    const addr = parseAddress(address);
    if (!addr) throw new Error(`not an address: ${JSON.stringify(address)}`);
    const now = this.now();
    const key = keyOf(this.policy, addr);
    const ban = this.table.get(key);
    const o = this.offenders.get(key);
    const horizon = now - this.policy.findtime * 1000;
    return {
      address: addr.text,
      key,
      exempt: exemptReason(this.policy, addr),
      ban: ban && (ban.expiresAt === null || ban.expiresAt > now) ? ban : null,
      failuresInWindow: this.counter.count(key, now),
      recentFailures: this.evidence.peek(key).filter((r) => r.at > horizon),
      history: o && !this.forgotten(o, now) ? { bans: o.count, lastEnd: o.lastEnd, forgetAt: o.lastEnd === null ? null : o.lastEnd + this.policy.offenderMemory * 1000 } : null,
    };
  }

  usersUnderAttack(): UserUnderAttack[] {
    return this.users.underAttack(this.now());
  }

  stats(): BanEngineStats {
    return {
      activeBans: { v4: this.table.countByFamily(4), v6: this.table.countByFamily(6) },
      trackedKeys: this.counter.size,
      trackedUsers: this.users.size,
      offenders: this.offenders.size,
      dryRun: this.policy.dryRun,
    };
  }

  /** Expires due bans (emitting `unban`), and now and then prunes history and refreshes gauges. */
  tick(now: number = this.now()): void {
    const expired = this.table.expire(now);
    for (const rec of expired) this.lifted(rec, 'expired');
    if (expired.length > 0) this.updateActiveGauge();
    if (now < this.nextHousekeeping) return;
    this.nextHousekeeping = now + HOUSEKEEPING_MS;
    for (const [key, o] of this.offenders) if (this.forgotten(o, now)) this.offenders.delete(key);
    if (this.metrics) {
      const attacked = this.users.underAttack(now);
      this.metrics.usersUnderAttack.set(attacked.length);
      this.metrics.userMaxDistinctAddresses.set(attacked[0]?.addresses ?? 0);
      this.metrics.trackedKeys.set(this.counter.size);
    }
  }

  private apply(
    key: string,
    family: 4 | 6,
    reason: BanReason,
    evidence: FailureRecord[],
    seconds: number | null | undefined,
    extra: { by?: string; why?: string },
  ): BanRecord {
    const now = this.now();
    const active = this.table.get(key);
    // Re-banning an active ban changes its end, not how many times the key was banned.
    const count = active && (active.expiresAt === null || active.expiresAt > now) ? active.count : this.nextCount(key, now);
    const duration = seconds === undefined ? banSeconds(this.policy, count) : seconds;
    const ban: BanRecord = { target: key, family, reason, count, createdAt: now, expiresAt: duration === null ? null : now + duration * 1000, evidence, ...extra };
    this.table.set(ban);
    this.rememberOffender(key, { count, lastEnd: ban.expiresAt });
    this.counter.delete(key);
    this.metrics?.bans.inc({ reason });
    this.updateActiveGauge();
    this.log.info(
      { event: 'ban', address: key, reason, duration, count, failures: evidence.length, sources: sourcesOf(evidence), expiresAt: ban.expiresAt, ...extra },
      `banned ${key}`,
    );
    this.emit('ban', { target: key, family, expiresAt: ban.expiresAt, reason, count, createdAt: now });
    return ban;
  }

  private lifted(rec: BanRecord, reason: 'expired' | 'manual'): void {
    this.metrics?.unbans.inc({ reason });
    this.updateActiveGauge();
    this.log.info(
      { event: 'unban', address: rec.target, reason, duration: rec.expiresAt === null ? null : Math.round((rec.expiresAt - rec.createdAt) / 1000), failures: rec.evidence.length, sources: sourcesOf(rec.evidence) },
      `unbanned ${rec.target}`,
    );
    this.emit('unban', { target: rec.target, family: rec.family, expiresAt: rec.expiresAt, reason });
  }

  /** The record an attempt was counted as: in the key's recent evidence, or in its ban. */
  private findRecord(key: string, attemptKey: string): FailureRecord | undefined {
    const match = (r: FailureRecord): boolean => r.attemptKey === attemptKey;
    return this.evidence.peek(key).find(match) ?? this.table.get(key)?.evidence.find(match);
  }

  private nextCount(key: string, now: number): number {
    const o = this.offenders.get(key);
    return o && !this.forgotten(o, now) ? o.count + 1 : 1;
  }

  private forgotten(o: OffenderRecord, now: number): boolean {
    return o.lastEnd !== null && now >= o.lastEnd + this.policy.offenderMemory * 1000;
  }

  private rememberOffender(key: string, o: OffenderRecord): void {
    this.offenders.delete(key);
    this.offenders.set(key, o);
    if (this.offenders.size > this.policy.maxOffenders) this.offenders.delete(this.offenders.keys().next().value!);
  }

  private persist(op: JournalOp): Promise<void> {
    return this.store ? this.store.append(op) : Promise.resolve();
  }

  private snapshot(): BanState {
    return { bans: new Map([...this.table.values()].map((b) => [b.target, b])), offenders: this.offenders };
  }

  private ignored(reason: IgnoreReason): ReportResult {
    this.metrics?.failuresIgnored.inc({ reason });
    return { kind: 'ignored', reason };
  }

  private updateActiveGauge(): void {
    this.metrics?.activeBans.set({ family: '4' }, this.table.countByFamily(4));
    this.metrics?.activeBans.set({ family: '6' }, this.table.countByFamily(6));
  }
}

const EXEMPT_TEXT: Record<ExemptReason, string> = {
  loopback: 'a loopback address (set banLoopback to allow)',
  own: 'one of the daemon\'s own addresses',
  ignored: 'in the ignore list',
};

function toEntry(b: BanRecord): BanEntry {
  return { target: b.target, family: b.family, expiresAt: b.expiresAt };
}

function sourcesOf(records: readonly FailureRecord[]): FailureSource[] {
  return [...new Set(records.flatMap((r) => r.sources))];
}
