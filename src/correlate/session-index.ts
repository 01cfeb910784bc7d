/**
 * The live index of SMTP sessions: who was connected, from where, under which sendmail pid
 * and queue ids, and when each session could have been authenticating. Fed by the milter
 * (the lead wires its events here) or, without a milter, by sendmail's own log lines.
 *
 * Only time matters: a session is found by key (queue id, pid) or by the interval it was in
 * its AUTH phase, never by how many lines lie between two events.
 */
import { LRUCache } from 'lru-cache';

export type SessionOrigin = 'milter' | 'log';

export interface SessionOpenEvent {
  /** Unique per origin for the process lifetime (the milter's session id). */
  readonly id: number | string;
  /**
   * Canonical client address; absent when the MTA gave none (milter CONNECT family unix or
   * unknown). Such a session is still indexed: it may be the one authenticating.
   */
  readonly address?: string;
  readonly port?: number;
  readonly queueId?: string;
  readonly pid?: number;
  /** Milliseconds since the epoch. */
  readonly at: number;
}

export interface Session {
  /** `origin:id`, unique in the index. */
  readonly ref: string;
  readonly origin: SessionOrigin;
  /** Prefix of the attempt keys of this session's failures; stable for its life. */
  readonly key: string;
  /**
   * Canonical client address, or null when unknown (milter CONNECT family unix / unknown).
   * A session of unknown address is never attributed a failure, and being a candidate it
   * makes attribution by time ambiguous.
   */
  readonly address: string | null;
  readonly port?: number;
  readonly pid?: number;
  readonly openedAt: number;
  queueIds: string[];
  /**
   * When the client was seen authenticated ({auth_authen} at MAIL, or sendmail's AUTH success
   * line): no AUTH can fail in this session after it. MAIL alone ends nothing: after an RSET
   * (which the milter never sees) or a finished message the client may try AUTH again.
   */
  authEndedAt?: number;
  closedAt?: number;
  closeReason?: string;
}

export interface SessionIndexOptions {
  /** How long a closed session stays findable for late log lines, seconds. */
  readonly retainClosed: number;
  /** A session read from logs with no close after this long is treated as gone (a missed close), seconds. */
  readonly maxOpen: number;
  /** Upper bound on sessions remembered (open and recently closed). */
  readonly maxSessions: number;
  /**
   * When session tracking began (the daemon's start): sessions opened before it are unknown,
   * whatever the times of the lines read since (a restart catches up on old lines). Absent:
   * the first event's time (replay).
   */
  readonly since?: number;
}

export const DEFAULT_SESSION_INDEX_OPTIONS: SessionIndexOptions = {
  retainClosed: 120,
  maxOpen: 3600,
  maxSessions: 100_000,
};

/** A sendmail session keeps at most this many queue ids (RSET / HELO give new ones). */
const MAX_QUEUE_IDS = 16;

/** How often (index clock) expiry runs on its own, without a query. */
const EXPIRE_EVERY_MS = 1000;

export class SessionIndex {
  private readonly opts: SessionIndexOptions;
  private readonly byRef: LRUCache<string, Session>;
  private readonly byQueueId: LRUCache<string, Session>;
  /** Sessions per pid, oldest first; a pid seen again after its close is a new session. */
  private readonly byPid = new Map<number, Session[]>();
  /** Open sessions, for "who could have been authenticating at T". */
  private readonly open = new Set<Session>();
  /** Closed sessions still queryable, in close order. */
  private closedQueue: Session[] = [];
  private closedHead = 0;
  /** Latest event time seen: the index's notion of now. */
  private clock = 0;
  private first: number | undefined;
  private lastOpenSweep = 0;
  /**
   * Open sessions pushed out by the size cap, until their close is known (milter) or they
   * would have been taken as gone (log): while any is left, someone unseen may be authenticating.
   */
  private readonly evictedOpen = new Map<string, { readonly origin: SessionOrigin; readonly openedAt: number }>();

  constructor(options: Partial<SessionIndexOptions> = {}) {
    this.opts = { ...DEFAULT_SESSION_INDEX_OPTIONS, ...options };
    this.first = this.opts.since;
    this.byRef = new LRUCache<string, Session>({
      max: this.opts.maxSessions,
      dispose: (s, _ref, reason) => {
        if (reason === 'set') return;
        // An open session pushed out by the cap may still be authenticating, unseen.
        if (reason === 'evict' && s.closedAt === undefined) {
          this.evictedOpen.set(s.ref, { origin: s.origin, openedAt: s.openedAt });
          // Bounded like the index; dropping the oldest still leaves the refusal in force.
          if (this.evictedOpen.size > this.opts.maxSessions) this.evictedOpen.delete(this.evictedOpen.keys().next().value!);
        }
        this.forget(s);
      },
    });
    this.byQueueId = new LRUCache<string, Session>({ max: this.opts.maxSessions * 2 });
  }

  /** Number of sessions currently open. */
  get openCount(): number {
    return this.open.size;
  }

  opened(ev: SessionOpenEvent, origin: SessionOrigin = 'milter'): Session {
    this.advance(ev.at);
    const ref = `${origin}:${ev.id}`;
    const prior = this.byRef.get(ref);
    if (prior) return prior;
    if (ev.pid !== undefined) {
      // One process serves one session: whatever that pid served before has ended.
      const still = this.openByPid(ev.pid);
      if (still) this.close(still, ev.at, 'pid-reused');
    }
    const s: Session = {
      ref,
      origin,
      key: ev.queueId ?? (ev.pid !== undefined ? `${ev.pid}@${Math.floor(ev.at / 1000)}` : ref),
      address: ev.address ?? null,
      openedAt: ev.at,
      queueIds: [],
      ...(ev.port !== undefined ? { port: ev.port } : {}),
      ...(ev.pid !== undefined ? { pid: ev.pid } : {}),
    };
    this.byRef.set(ref, s);
    this.open.add(s);
    if (ev.queueId) this.addQueueId(s, ev.queueId);
    if (ev.pid !== undefined) {
      const list = this.byPid.get(ev.pid);
      if (list) list.push(s);
      else this.byPid.set(ev.pid, [s]);
    }
    return s;
  }

  queueIdChanged(id: number | string, queueId: string, origin: SessionOrigin = 'milter'): void {
    const s = this.byRef.get(`${origin}:${id}`);
    if (s) this.addQueueId(s, queueId);
  }

  /** The client is seen authenticated (the milter's {auth_authen}): its AUTH phase is over. */
  authenticated(id: number | string, at: number, origin: SessionOrigin = 'milter'): void {
    const s = this.byRef.get(`${origin}:${id}`);
    if (s) this.authSucceeded(s, at);
  }

  closed(id: number | string, at: number, reason: string, origin: SessionOrigin = 'milter'): Session | undefined {
    const ref = `${origin}:${id}`;
    const s = this.byRef.get(ref);
    if (s) this.close(s, at, reason);
    else this.evictedOpen.delete(ref);
    return s;
  }

  /** The session's AUTH succeeded (milter or sendmail's log line): its AUTH phase is over. */
  authSucceeded(s: Session, at: number): void {
    this.advance(at);
    if (s.authEndedAt === undefined || at < s.authEndedAt) s.authEndedAt = at;
  }

  close(s: Session, at: number, reason: string): void {
    this.advance(at);
    if (s.closedAt !== undefined) return;
    s.closedAt = at;
    s.closeReason = reason;
    this.open.delete(s);
    this.closedQueue.push(s);
  }

  byQueue(queueId: string): Session | undefined {
    return this.byQueueId.get(queueId);
  }

  /**
   * The session of `pid` whose life covers time `at` (`slackMs` either side, for log
   * timestamps truncated to the second and lines written just after the close).
   */
  byPidAt(pid: number, at: number, slackMs: number): Session | undefined {
    const list = this.byPid.get(pid);
    if (!list) return undefined;
    for (let i = list.length - 1; i >= 0; i--) {
      const s = list[i]!;
      if (s.openedAt > at + slackMs) continue;
      if (s.closedAt !== undefined && s.closedAt < at - slackMs) return undefined;
      return s;
    }
    return undefined;
  }

  openByPid(pid: number): Session | undefined {
    const list = this.byPid.get(pid);
    const last = list?.[list.length - 1];
    return last && last.closedAt === undefined ? last : undefined;
  }

  /**
   * Sessions that were surely connected and not past their AUTH phase during the whole of
   * [from, to]. `openSlackMs` widens the open bound (log times are truncated to the second),
   * `skewMs` allows for the clocks of two sources differing slightly.
   */
  authPhaseDuring(from: number, to: number, openSlackMs: number, skewMs: number): Session[] {
    this.expire();
    const out: Session[] = [];
    const test = (s: Session): void => {
      if (s.openedAt > from + openSlackMs + skewMs) return;
      if (s.closedAt !== undefined && s.closedAt < to - skewMs) return;
      if (s.authEndedAt !== undefined && s.authEndedAt < to - skewMs) return;
      out.push(s);
    };
    for (const s of this.open) test(s);
    for (let i = this.closedHead; i < this.closedQueue.length; i++) {
      const s = this.closedQueue[i]!;
      if (this.byRef.peek(s.ref) === s) test(s);
    }
    return out;
  }

  /** Sessions the index holds (open and closed, still findable). */
  get size(): number {
    return this.byRef.size;
  }

  /** Entries of the closed-session queue, including dropped ones awaiting compaction. */
  get closedQueueLength(): number {
    return this.closedQueue.length;
  }

  /**
   * Moves the index's clock forward (event times from milter or logs, or wall time) and,
   * at most once a second of that clock, expires what is due: the correlator's tick and
   * the milter's events keep the index bounded even when no SASL line ever queries it.
   */
  advance(at: number): void {
    if (this.first === undefined) this.first = at;
    if (at > this.clock) this.clock = at;
    if (this.clock - this.lastOpenSweep >= EXPIRE_EVERY_MS) this.expire();
  }

  /** When tracking began (the `since` option, else the first event): earlier sessions are unknown. */
  get since(): number | undefined {
    return this.first;
  }

  /** Open sessions dropped for the size cap and not known to be over: someone unseen may be authenticating. */
  get lostOpenSessions(): number {
    return this.evictedOpen.size;
  }

  /** Drops closed sessions past retention and closes log-made sessions open beyond maxOpen. */
  expire(): void {
    const retainMs = this.opts.retainClosed * 1000;
    while (this.closedHead < this.closedQueue.length) {
      const s = this.closedQueue[this.closedHead]!;
      if (s.closedAt! >= this.clock - retainMs) break;
      this.closedHead++;
      this.byRef.delete(s.ref);
    }
    if (this.closedHead > 1024 && this.closedHead * 2 > this.closedQueue.length) {
      this.closedQueue = this.closedQueue.slice(this.closedHead);
      this.closedHead = 0;
    }
    // Sessions outlive seconds, so looking for missed closes once a second is enough.
    // (close() below calls advance() with an earlier time: lastOpenSweep is set first, so
    // that does not re-enter.)
    if (this.clock - this.lastOpenSweep < EXPIRE_EVERY_MS) return;
    this.lastOpenSweep = this.clock;
    // Only sessions read from logs can miss their close; the milter reports every close itself.
    const maxOpenMs = this.opts.maxOpen * 1000;
    for (const [ref, e] of this.evictedOpen) {
      if (e.origin === 'log' && e.openedAt < this.clock - maxOpenMs) this.evictedOpen.delete(ref);
    }
    for (const s of this.open) {
      if (s.origin === 'log' && s.openedAt < this.clock - maxOpenMs) this.close(s, s.openedAt + maxOpenMs, 'expired');
    }
  }

  private addQueueId(s: Session, queueId: string): void {
    if (s.queueIds.includes(queueId)) return;
    s.queueIds.push(queueId);
    if (s.queueIds.length > MAX_QUEUE_IDS) s.queueIds.shift();
    this.byQueueId.set(queueId, s);
  }

  /** Removes every secondary reference to a session leaving the index. */
  private forget(s: Session): void {
    this.open.delete(s);
    for (const q of s.queueIds) if (this.byQueueId.peek(q) === s) this.byQueueId.delete(q);
    if (s.pid !== undefined) {
      const list = this.byPid.get(s.pid);
      if (list) {
        const rest = list.filter((x) => x !== s);
        if (rest.length > 0) this.byPid.set(s.pid, rest);
        else this.byPid.delete(s.pid);
      }
    }
  }
}
