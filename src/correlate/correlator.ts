/**
 * The join rules: turn parsed log lines and the session index into AuthFailures, one per
 * authentication attempt, each with the session and the lines that prove it.
 *
 * - sendmail lines carry the session's pid and queue id: they join by key.
 * - saslauthd / pam_unix lines carry no address. One that sendmail also reported is that
 *   report's attempt. Otherwise it is attributed to the one session in its AUTH phase during
 *   the attempt (connected and not yet seen authenticated: MAIL ends nothing, since an RSET
 *   the milter never sees lets the client AUTH again), or, when several could match, held
 *   until a later line decides (that session's own sendmail `AUTH failure` line, a close that
 *   leaves one candidate), else counted as ambiguous. Never the nearest line, never a
 *   line-count window.
 * - One attempt seen by several sources (sendmail, saslauthd, pam_unix) gives one failure:
 *   lines of a session are paired by time and user into attempts, and each attempt has the
 *   key `SESSION#n`.
 */
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { AuthFailure, Evidence, FailureSource } from '../core/auth-failure.js';
import type { LogRecord, PamFailure, SaslauthdFailure, SourceLine } from '../logs/records.js';
import type { CorrelateMetrics, UnattributedReason } from './metrics.js';
import { SessionIndex, type Session } from './session-index.js';

export interface CorrelatorOptions {
  /** How long a line several sessions could explain waits for a later line to decide it. */
  readonly holdMs: number;
  /** How long after a line's own time its candidates are judged, so other sources catch up. */
  readonly settleMs: number;
  /** Two lines of one attempt (sendmail's, saslauthd's) lie at most this far apart. */
  readonly pairMs: number;
  /** Longest gap between pam_unix's line and the same saslauthd worker's line (PAM fail delay). */
  readonly pamDelayMs: number;
  /** Log timestamps are truncated to the second: a session opened up to this much after a line's time may still precede it. */
  readonly openSlackMs: number;
  /** Allowed difference between the clocks of the milter events and of the log timestamps. */
  readonly skewMs: number;
  /** After the first session event, how long before attribution by time is trusted (sessions opened earlier are unknown). */
  readonly startGraceMs: number;
  /** SASL / PAM service names that are SMTP AUTH against sendmail. */
  readonly smtpServices: readonly string[];
  /** Upper bound on lines held at once (all kinds together). */
  readonly maxHeld: number;
  /** Attempts remembered per session for pairing (sendmail slows a client after 5). */
  readonly maxAttemptsPerSession: number;
}

export const DEFAULT_CORRELATOR_OPTIONS: CorrelatorOptions = {
  holdMs: 10_000,
  settleMs: 2_000,
  pairMs: 1_000,
  pamDelayMs: 5_000,
  openSlackMs: 1_000,
  skewMs: 500,
  startGraceMs: 3_600_000,
  smtpServices: ['smtp'],
  maxHeld: 10_000,
  maxAttemptsPerSession: 64,
};

/** Plain totals, for replay reports and tests (the metrics carry the same for live use). */
export interface CorrelatorStats {
  failures: Record<string, number>;
  corroborated: number;
  ambiguous: number;
  unattributed: Record<string, number>;
  addressMismatch: number;
}

export type Unresolved = 'ambiguous' | UnattributedReason;

export interface CorrelatorDeps {
  readonly index: SessionIndex;
  readonly emit: (failure: AuthFailure) => void;
  readonly logger?: Logger;
  readonly metrics?: CorrelateMetrics;
  /** Told about every line that ends up attributed to nobody, with its evidence. */
  readonly onUnresolved?: (why: Unresolved, evidence: readonly Evidence[]) => void;
}

type SourceClass = 'sendmail' | 'sasl';

/** What one or more lines say about one attempt. */
interface Observation {
  readonly cls: SourceClass;
  readonly source: FailureSource;
  /** The attempt happened within [from, to]. */
  readonly from: number;
  readonly to: number;
  readonly user?: string;
  readonly service: string;
  readonly lines: Evidence[];
}

interface Attempt {
  readonly n: number;
  readonly from: number;
  readonly to: number;
  readonly user?: string;
  readonly classes: Set<SourceClass>;
}

interface SessionState {
  attempts: Attempt[];
  count: number;
}

interface HeldSasl {
  readonly obs: Observation;
  readonly due: number;
  readonly expires: number;
}

/** pam_unix lines of one saslauthd worker waiting for that worker's `auth failure` line. */
interface PendingPam {
  readonly at: number;
  user?: string;
  readonly service: string;
  readonly lines: Evidence[];
}

/** An 8.12-style `AUTH failure` (no relay=) waiting for its pid's line with the address. */
interface HeldNoAddress {
  readonly obs: Observation;
  readonly queueId?: string;
  readonly expires: number;
}

type SendmailRecord = Extract<LogRecord, { kind: `sendmail-${string}` }>;

export class Correlator {
  readonly stats: CorrelatorStats = { failures: {}, corroborated: 0, ambiguous: 0, unattributed: {}, addressMismatch: 0 };
  private opts: CorrelatorOptions;
  private readonly index: SessionIndex;
  private readonly deps: CorrelatorDeps;
  private readonly sessions = new WeakMap<Session, SessionState>();
  /** Attempt ordinals of sendmail failures with no known session, by queue id (or pid). */
  private readonly detached: LRUCache<string, number>;
  private readonly smtp: ReadonlySet<string>;
  /** saslauthd lines not yet due, in arrival order (close to time order). */
  private queue: HeldSasl[] = [];
  private queueHead = 0;
  /** Due lines with several candidates, waiting for a deciding line until they expire. */
  private waiting: HeldSasl[] = [];
  private readonly pendingPam = new Map<string, PendingPam>();
  /**
   * sendmail-class attempts of the last moments, of any session or none, oldest first: a SASL
   * line that one of them reports is that attempt, whichever sessions time alone would suggest.
   */
  private recentSendmail: Attempt[] = [];
  private recentHead = 0;
  /** The same attempts by userKey: a SASL line looks only at its own user's, and at those naming none. */
  private readonly recentByUser = new Map<string, Set<Attempt>>();
  private readonly noAddress = new Map<number, HeldNoAddress[]>();
  private noAddressCount = 0;
  private now = 0;

  constructor(deps: CorrelatorDeps, options: Partial<CorrelatorOptions> = {}) {
    this.deps = deps;
    this.index = deps.index;
    this.opts = { ...DEFAULT_CORRELATOR_OPTIONS, ...options };
    this.smtp = new Set(this.opts.smtpServices);
    this.detached = new LRUCache({ max: this.opts.maxHeld });
  }

  /** Applies reloaded options; lines already held keep the deadlines they were given. */
  reconfigure(options: Partial<CorrelatorOptions>): void {
    this.opts = { ...this.opts, ...options };
  }

  /** Lines currently held (all kinds). */
  get heldCount(): number {
    return this.queue.length - this.queueHead + this.waiting.length + this.pendingPam.size + this.noAddressCount;
  }

  /** One parsed log line. */
  onRecord(rec: LogRecord, src: SourceLine): void {
    this.advance(rec.at);
    const ev: Evidence = { kind: 'log', source: sourceOf(rec), line: src.line, origin: src.origin, at: rec.at };
    switch (rec.kind) {
      case 'saslauthd-failure':
        this.onSaslauthd(rec, ev);
        break;
      case 'pam-failure':
        this.onPam(rec, ev);
        break;
      case 'dovecot-failure':
        this.emit({
          address: rec.address,
          ...(rec.user !== undefined ? { user: rec.user } : {}),
          service: rec.service,
          at: rec.at,
          source: 'dovecot',
          evidence: [ev],
        });
        break;
      default:
        this.onSendmail(rec, ev);
    }
    this.step();
  }

  /** Moves time forward (wall clock in live use, record time in replay) and decides what is due. */
  tick(now: number): void {
    this.advance(now);
    this.step();
  }

  /** End of input (replay): decide or give up every held line now. */
  flush(): void {
    // Only the correlator's clock jumps: the index keeps the sessions the held lines need.
    this.now = Number.MAX_SAFE_INTEGER / 2;
    this.step();
  }

  private advance(at: number): void {
    if (at > this.now) this.now = at;
    this.index.advance(at);
  }

  // ---- sendmail -------------------------------------------------------------------------

  private onSendmail(rec: SendmailRecord, ev: Evidence): void {
    if (rec.kind === 'sendmail-connect') {
      this.onConnect(rec);
      return;
    }
    const s = this.sessionOf(rec);
    const address = 'address' in rec ? rec.address : undefined;
    // A session of unknown address cannot be checked against the line: its lines are joined
    // to it (so that they count nowhere else) and never emitted.
    if (s && s.address !== null && address !== undefined && address !== s.address) {
      this.mismatch(rec, s);
      return;
    }
    switch (rec.kind) {
      case 'sendmail-auth-failure': {
        const obs: Observation = {
          cls: 'sendmail',
          source: 'sendmail',
          from: rec.at,
          to: rec.at,
          service: 'smtp',
          lines: [ev],
          ...(rec.user !== undefined ? { user: rec.user } : {}),
        };
        if (s) {
          this.attach(s, obs);
          this.decideWaiting();
        } else if (address !== undefined) this.attachDetached(address, rec.queueId ?? `${rec.pid ?? 'nopid'}@${Math.floor(rec.at / 1000)}`, obs);
        else this.holdNoAddress(rec, obs);
        break;
      }
      case 'sendmail-no-mail':
      case 'sendmail-lost-input':
        if (s?.origin === 'log') this.index.close(s, rec.at, rec.kind);
        if (rec.pid !== undefined) this.releaseNoAddress(rec.pid, rec.queueId, rec.address, rec.at);
        this.decideWaiting();
        break;
      case 'sendmail-auth-success':
        if (s) this.index.authSucceeded(s, rec.at);
        break;
      case 'sendmail-attack':
        // sendmail's own summary of failures already counted one by one.
        break;
    }
  }

  private onConnect(rec: Extract<LogRecord, { kind: 'sendmail-connect' }>): void {
    if (rec.pid === undefined) return;
    // The milter's session of this pid, still open or closed by now (the line can come late):
    // a second, log-made session would never see its close and stay a candidate for long.
    const known = this.index.byPidAt(rec.pid, rec.at, this.opts.openSlackMs + this.opts.skewMs);
    if (known?.origin === 'milter') {
      if (known.address !== null && known.address !== rec.address) this.mismatch(rec, known);
      return;
    }
    this.index.opened({ id: `${rec.pid}@${rec.at}`, address: rec.address, pid: rec.pid, at: rec.at }, 'log');
  }

  /** The session a sendmail line belongs to: by queue id, else by pid at the line's time. */
  private sessionOf(rec: SendmailRecord): Session | undefined {
    const qid = 'queueId' in rec ? rec.queueId : undefined;
    if (qid !== undefined) {
      const s = this.index.byQueue(qid);
      if (s) return s;
    }
    if (rec.pid === undefined) return undefined;
    return this.index.byPidAt(rec.pid, rec.at, this.opts.openSlackMs + this.opts.skewMs);
  }

  private mismatch(rec: SendmailRecord, s: Session): void {
    this.stats.addressMismatch++;
    this.deps.metrics?.addressMismatch.inc();
    this.deps.logger?.warn({ pid: rec.pid, pattern: rec.pattern, session: s.key }, 'sendmail line address differs from its session: dropped');
  }

  private holdNoAddress(rec: Extract<LogRecord, { kind: 'sendmail-auth-failure' }>, obs: Observation): void {
    if (rec.pid === undefined) {
      this.unresolved('no_address', obs.lines);
      return;
    }
    if (this.heldCount >= this.opts.maxHeld) {
      this.unresolved('overflow', obs.lines);
      return;
    }
    const list = this.noAddress.get(rec.pid) ?? [];
    list.push({ obs, expires: rec.at + this.opts.holdMs, ...(rec.queueId !== undefined ? { queueId: rec.queueId } : {}) });
    this.noAddress.set(rec.pid, list);
    this.noAddressCount++;
  }

  private releaseNoAddress(pid: number, queueId: string | undefined, address: string, at: number): void {
    const list = this.noAddress.get(pid);
    if (!list) return;
    // A held line of another queue id is another session of a reused pid: it stays held.
    const other = (h: HeldNoAddress): boolean => h.queueId !== undefined && queueId !== undefined && h.queueId !== queueId;
    const mine = list.filter((h) => !other(h));
    const rest = list.filter(other);
    if (rest.length > 0) this.noAddress.set(pid, rest);
    else this.noAddress.delete(pid);
    this.noAddressCount -= mine.length;
    for (const h of mine) {
      if (h.obs.to < at - this.opts.holdMs) this.unresolved('no_address', h.obs.lines);
      else this.attachDetached(address, h.queueId ?? `${pid}@${Math.floor(h.obs.to / 1000)}`, h.obs);
    }
  }

  // ---- saslauthd / pam_unix -------------------------------------------------------------

  private onPam(rec: PamFailure, ev: Evidence): void {
    if (rec.service !== undefined && !this.smtp.has(rec.service)) {
      this.unresolved('other_service', [ev]);
      return;
    }
    if (rec.pid === undefined) {
      this.queueSasl({ cls: 'sasl', source: 'pam', from: rec.at, to: rec.at, service: rec.service ?? 'smtp', lines: [ev], ...(rec.user !== undefined ? { user: rec.user } : {}) });
      return;
    }
    // The same worker logs `check pass; user unknown`, then `authentication failure`, then
    // (after the PAM fail delay) saslauthd's own line: one attempt.
    const key = `${rec.program}[${rec.pid}]`;
    const p = this.pendingPam.get(key);
    // `user unknown` and `authentication failure` of one attempt share their second.
    if (p && rec.at - p.at <= this.opts.openSlackMs) {
      p.lines.push(ev);
      if (p.user === undefined && rec.user !== undefined) p.user = rec.user;
      return;
    }
    if (p) this.pamAlone(key, p);
    if (this.heldCount >= this.opts.maxHeld) {
      this.unresolved('overflow', [ev]);
      return;
    }
    this.pendingPam.set(key, { at: rec.at, service: rec.service ?? 'smtp', lines: [ev], ...(rec.user !== undefined ? { user: rec.user } : {}) });
  }

  private onSaslauthd(rec: SaslauthdFailure, ev: Evidence): void {
    const key = rec.pid !== undefined ? `${rec.program}[${rec.pid}]` : undefined;
    const p = key !== undefined ? this.pendingPam.get(key) : undefined;
    let from = rec.at;
    const lines: Evidence[] = [];
    if (p && key !== undefined && rec.at - p.at <= this.opts.pamDelayMs && sameUser(p.user, rec.user)) {
      this.pendingPam.delete(key);
      from = p.at;
      lines.push(...p.lines);
    }
    lines.push(ev);
    if (!this.smtp.has(rec.service)) {
      this.unresolved('other_service', lines);
      return;
    }
    this.queueSasl({ cls: 'sasl', source: 'saslauthd', from, to: rec.at, user: userAt(rec.user, rec.realm), service: rec.service, lines });
  }

  /** A pam_unix line whose saslauthd line never came: an attempt of its own. */
  private pamAlone(key: string, p: PendingPam): void {
    this.pendingPam.delete(key);
    this.queueSasl({ cls: 'sasl', source: 'pam', from: p.at, to: p.at, service: p.service, lines: p.lines, ...(p.user !== undefined ? { user: p.user } : {}) });
  }

  private queueSasl(obs: Observation): void {
    if (this.heldCount >= this.opts.maxHeld) {
      this.unresolved('overflow', obs.lines);
      return;
    }
    this.queue.push({ obs, due: obs.to + this.opts.settleMs, expires: obs.to + this.opts.holdMs });
  }

  /** Decides every line whose time has come. */
  private step(): void {
    for (const [key, p] of this.pendingPam) {
      if (this.now - p.at > this.opts.pamDelayMs) this.pamAlone(key, p);
    }
    for (const [pid, list] of this.noAddress) {
      const keep = list.filter((h) => h.expires > this.now);
      if (keep.length === list.length) continue;
      for (const h of list) if (h.expires <= this.now) this.unresolved('no_address', h.obs.lines);
      this.noAddressCount -= list.length - keep.length;
      if (keep.length > 0) this.noAddress.set(pid, keep);
      else this.noAddress.delete(pid);
    }
    while (this.queueHead < this.queue.length && this.queue[this.queueHead]!.due <= this.now) {
      const h = this.queue[this.queueHead++]!;
      if (!this.decide(h, false)) this.waiting.push(h);
    }
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
    // A SASL line is decided at most holdMs after its time: older sendmail attempts pair with nothing.
    const horizon = this.now - this.opts.holdMs - this.opts.settleMs - this.opts.pairMs;
    while (this.recentHead < this.recentSendmail.length && this.recentSendmail[this.recentHead]!.to < horizon) this.dropOldestSendmail();
    if (this.recentHead > 1024 && this.recentHead * 2 > this.recentSendmail.length) {
      this.recentSendmail = this.recentSendmail.slice(this.recentHead);
      this.recentHead = 0;
    }
    this.decideWaiting();
    this.deps.metrics?.held.set(this.heldCount);
  }

  private decideWaiting(): void {
    if (this.waiting.length === 0) return;
    this.waiting = this.waiting.filter((h) => !this.decide(h, h.expires <= this.now));
  }

  /** Attributes a due line if exactly one session explains it; true when it is settled. */
  private decide(h: HeldSasl, final: boolean): boolean {
    const { obs } = h;
    // sendmail's own line for this attempt names its session (by queue id, pid and address):
    // that beats any reading of who was connected when.
    const reported = this.reportedBySendmail(obs);
    if (reported) {
      // 'one of several': counted already, whichever it was; taking one would leave another's own line unpaired.
      this.corroborate(reported === 'one of several' ? undefined : reported, obs);
      return true;
    }
    const candidates = this.index.authPhaseDuring(obs.from, obs.to, this.opts.openSlackMs, this.opts.skewMs);
    if (candidates.length === 0) {
      this.unresolved('no_session', obs.lines);
      return true;
    }
    const since = this.index.since;
    if (since === undefined || obs.from < since + this.opts.startGraceMs) {
      this.unresolved('start_grace', obs.lines);
      return true;
    }
    if (this.index.lostOpenSessions > 0) {
      this.unresolved('index_overflow', obs.lines);
      return true;
    }
    let chosen = candidates.length === 1 ? candidates[0] : undefined;
    if (!chosen) {
      // A later line decides: the one candidate whose own sendmail line tells of an attempt
      // at that time, by the same user, not yet paired with a SASL line.
      const explained = candidates.filter((s) => this.findAttempt(s, obs) !== undefined);
      if (explained.length === 1) chosen = explained[0];
    }
    if (chosen) {
      this.attach(chosen, obs);
      return true;
    }
    if (!final) return false;
    // No line decided between the sessions, but if they all came from one known address the
    // address is certain all the same (one guesser's back-to-back sessions): count it once,
    // under the earliest session. Waiting until now let sendmail's own line pair it instead.
    // A session of unknown address among them could be anyone: that stays ambiguous.
    const first = candidates[0]!;
    if (first.address !== null && candidates.every((s) => s.address === first.address)) {
      this.attach(candidates.reduce((a, b) => (b.openedAt < a.openedAt ? b : a)), obs);
      return true;
    }
    this.stats.ambiguous++;
    this.deps.metrics?.ambiguous.inc();
    this.deps.onUnresolved?.('ambiguous', obs.lines);
    return true;
  }

  // ---- attempts -------------------------------------------------------------------------

  /** An attempt of `s` another source already reported that `obs` can be the same as. */
  private findAttempt(s: Session, obs: Observation): Attempt | undefined {
    const st = this.sessions.get(s);
    if (!st) return undefined;
    const pair = this.opts.pairMs;
    for (const a of st.attempts) {
      if (a.classes.has(obs.cls)) continue;
      if (obs.from > a.to + pair || a.from > obs.to + pair) continue;
      if (!sameUser(a.user, obs.user)) continue;
      return a;
    }
    return undefined;
  }

  /** `obs` is another source's report of attempt `a` (or of one of several): counted once, already. */
  private corroborate(a: Attempt | undefined, obs: Observation): void {
    a?.classes.add(obs.cls);
    this.stats.corroborated++;
    this.deps.metrics?.corroborated.inc({ source: obs.source });
  }

  /**
   * The sendmail attempt of the last moments, not yet paired with a SASL line, that `obs` is
   * another report of: the one naming the user exactly before one naming it with or without a
   * realm, then the nearest in time. A line naming no user (`check pass; user unknown`) fits any
   * of them: with several, it is 'one of several'.
   */
  private reportedBySendmail(obs: Observation): Attempt | 'one of several' | undefined {
    const pair = this.opts.pairMs;
    let best: Attempt | undefined;
    let bestExact = false;
    let bestGap = Infinity;
    let fits = 0;
    const consider = (a: Attempt): void => {
      if (a.classes.has('sasl') || obs.from > a.to + pair || a.from > obs.to + pair || !sameUser(a.user, obs.user)) return;
      fits++;
      const exact = a.user !== undefined && a.user === obs.user;
      const gap = Math.abs(a.to - obs.to);
      if ((exact && !bestExact) || (exact === bestExact && gap < bestGap)) {
        best = a;
        bestExact = exact;
        bestGap = gap;
      }
    };
    // Every attempt kept (bounded by time and count), not only the newest: inputs can deliver
    // lines out of order. A named user can only be one of its own name's, or of none.
    if (obs.user === undefined) {
      for (let i = this.recentHead; i < this.recentSendmail.length; i++) consider(this.recentSendmail[i]!);
    } else {
      for (const key of [userKey(obs.user), userKey(undefined)]) this.recentByUser.get(key)?.forEach(consider);
    }
    return obs.user === undefined && fits > 1 ? 'one of several' : best;
  }

  private rememberSendmail(a: Attempt): void {
    this.recentSendmail.push(a);
    const key = userKey(a.user);
    const bucket = this.recentByUser.get(key);
    if (bucket) bucket.add(a);
    else this.recentByUser.set(key, new Set([a]));
    // Bounded by time (step() drops what no line can pair with any more) and by count.
    if (this.recentSendmail.length - this.recentHead > this.opts.maxHeld) this.dropOldestSendmail();
  }

  private dropOldestSendmail(): void {
    const a = this.recentSendmail[this.recentHead++]!;
    const key = userKey(a.user);
    const bucket = this.recentByUser.get(key);
    bucket?.delete(a);
    if (bucket?.size === 0) this.recentByUser.delete(key);
  }

  private attach(s: Session, obs: Observation): void {
    const same = this.findAttempt(s, obs);
    if (same) {
      this.corroborate(same, obs);
      return;
    }
    let st = this.sessions.get(s);
    if (!st) {
      st = { attempts: [], count: 0 };
      this.sessions.set(s, st);
    }
    const a = attemptOf(++st.count, obs);
    st.attempts.push(a);
    if (obs.cls === 'sendmail') this.rememberSendmail(a);
    if (st.attempts.length > this.opts.maxAttemptsPerSession) st.attempts.shift();
    if (s.address === null) {
      // The attempt is remembered (so another source's line of it pairs here, not elsewhere)
      // but, with no address to hold to account, never emitted.
      this.unresolved('unknown_address', obs.lines);
      return;
    }
    const session: Evidence = {
      kind: 'session',
      clientAddress: s.address,
      at: s.openedAt,
      ...(s.queueIds[0] !== undefined ? { queueId: s.queueIds[0] } : {}),
      ...(s.pid !== undefined ? { pid: s.pid } : {}),
      ...(s.port !== undefined ? { clientPort: s.port } : {}),
    };
    this.emit({
      address: s.address,
      ...(obs.user !== undefined ? { user: obs.user } : {}),
      service: obs.service,
      at: obs.to,
      source: obs.source,
      attemptKey: `${s.key}#${a.n}`,
      evidence: [session, ...obs.lines],
    });
  }

  /** A sendmail failure that names its address but no session is known (no milter, no connect line). */
  private attachDetached(address: string, base: string, obs: Observation): void {
    // Keys of a queue id only matter while that session lasts: the LRU keeps the map small.
    const n = (this.detached.get(base) ?? 0) + 1;
    this.detached.set(base, n);
    this.rememberSendmail(attemptOf(n, obs));
    this.emit({
      address,
      ...(obs.user !== undefined ? { user: obs.user } : {}),
      service: obs.service,
      at: obs.to,
      source: obs.source,
      attemptKey: `${base}#${n}`,
      evidence: obs.lines,
    });
  }

  private emit(f: AuthFailure): void {
    this.stats.failures[f.source] = (this.stats.failures[f.source] ?? 0) + 1;
    this.deps.metrics?.failures.inc({ source: f.source });
    this.deps.emit(f);
  }

  private unresolved(reason: UnattributedReason, lines: readonly Evidence[]): void {
    this.stats.unattributed[reason] = (this.stats.unattributed[reason] ?? 0) + 1;
    this.deps.metrics?.unattributed.inc({ reason });
    this.deps.onUnresolved?.(reason, lines);
  }
}

function sourceOf(rec: LogRecord): FailureSource {
  switch (rec.kind) {
    case 'saslauthd-failure':
      return 'saslauthd';
    case 'pam-failure':
      return 'pam';
    case 'dovecot-failure':
      return 'dovecot';
    default:
      return 'sendmail';
  }
}

/** saslauthd splits `user@realm`; sendmail logs the authid as the client sent it. */
function userAt(user: string, realm: string): string {
  return realm === '' || user.includes('@') ? user : `${user}@${realm}`;
}

/** A user name without its realm. */
function localPart(user: string): string {
  const i = user.indexOf('@');
  return i < 0 ? user : user.slice(0, i);
}

/** Attempts whose users sameUser() could match share this key ('' for an attempt naming none). */
function userKey(user: string | undefined): string {
  return user === undefined ? '' : localPart(user);
}

/** A new attempt, the nth of its session (or queue id), as `obs` reports it. */
function attemptOf(n: number, obs: Observation): Attempt {
  return { n, from: obs.from, to: obs.to, classes: new Set([obs.cls]), ...(obs.user !== undefined ? { user: obs.user } : {}) };
}

function sameUser(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined || a === b) return true;
  // One side may carry the realm and the other not.
  return (a.includes('@') !== b.includes('@')) && localPart(a) === localPart(b);
}
