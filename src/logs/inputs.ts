/**
 * The log inputs the config asks for: followed files, the syslog receiver, the journal. Every
 * line goes through the one parser; matched records go to `onRecord`. A reload changes only
 * what changed: an unchanged file keeps its follower (and its position), so no line is lost
 * or read twice across a reload.
 */
import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { parseHostPort } from '../core/address.js';
import type { LogsMetrics } from './metrics.js';
import { createLineParser, type ParseResult } from './parse-line.js';
import type { LogRecord, SourceLine } from './records.js';
import { FileFollower, type FilePosition } from './sources/file-follower.js';
import { JournalSource } from './sources/journal.js';
import { SyslogReceiver, type BoundListener, type SyslogListen } from './sources/syslog-receiver.js';

export interface LogInputsConfig {
  readonly files: readonly { readonly path: string; readonly fromStart: boolean }[];
  readonly syslog: { readonly udp: string | null; readonly tcp: string | null; readonly unix: string | null };
  readonly journal: { readonly enabled: boolean; readonly identifiers: readonly string[]; readonly trustedUids: readonly number[] };
  readonly timezone: string;
}

export interface LogInputsDeps {
  readonly logger: Logger;
  readonly metrics?: LogsMetrics;
  readonly onRecord: (record: LogRecord, src: SourceLine) => void;
  /**
   * Where followed files' positions are kept across restarts (written every few seconds and at
   * stop), so lines written while authban was down are still read. Absent: start at the end.
   */
  readonly positionsFile?: string;
}

const SAVE_POSITIONS_MS = 2000;
/** Matched lines remembered to drop a second input's copy, and for how long (inputs lag each other by seconds at most). */
const RECENT_LINES = 10_000;
const RECENT_LINES_MS = 120_000;

/** Positions saved by an earlier run; a missing or unreadable file means none (logged). */
function loadPositions(file: string, logger: Logger): Map<string, FilePosition> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return new Map();
  }
  try {
    const raw = JSON.parse(text) as Record<string, FilePosition>;
    const ok = (p: FilePosition): boolean => [p.dev, p.ino, p.offset].every((n) => Number.isSafeInteger(n) && n >= 0);
    return new Map(Object.entries(raw).filter(([, p]) => typeof p === 'object' && p !== null && ok(p)));
  } catch (e) {
    logger.warn({ event: 'positions_unreadable', file, err: (e as Error).message }, 'saved log positions unreadable; followed files start at their end');
    return new Map();
  }
}

function hostPort(spec: string): { host: string; port: number } {
  const hp = parseHostPort(spec);
  if (!hp) throw new Error(`syslog: "${spec}" is not HOST:PORT`);
  return hp;
}

function syslogListen(cfg: LogInputsConfig['syslog']): SyslogListen[] {
  const out: SyslogListen[] = [];
  if (cfg.udp) out.push({ kind: 'udp', ...hostPort(cfg.udp) });
  if (cfg.tcp) out.push({ kind: 'tcp', ...hostPort(cfg.tcp) });
  if (cfg.unix) out.push({ kind: 'unix', path: cfg.unix });
  return out;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

const listenKey = (l: SyslogListen | BoundListener): string => (l.kind === 'unix' ? `unix:${l.path}` : `${l.kind}:${l.host}:${l.port}`);

export class LogInputs {
  private cfg: LogInputsConfig = { files: [], syslog: { udp: null, tcp: null, unix: null }, journal: { enabled: false, identifiers: [], trustedUids: [] }, timezone: 'local' };
  private parse: (src: SourceLine) => ParseResult;
  private readonly followers = new Map<string, { follower: FileFollower; fromStart: boolean }>();
  private receiver: SyslogReceiver | null = null;
  private journal: JournalSource | null = null;
  private readonly saved: Map<string, FilePosition>;
  private saver: NodeJS.Timeout | null = null;
  /** Saves run one after another: two writers of one file could leave it half written. */
  private saving: Promise<void> = Promise.resolve();
  /**
   * Matched lines of the last minutes, by what they say (program, pid, time, message), with how
   * often each input delivered them: Debian's rsyslog writes mail lines to both mail.log and
   * syslog, and a file plus a syslog listener can carry the same line too. Counted twice, one
   * attempt would ban early. An input's nth copy is dropped when another input has delivered
   * n already; so the same line twice from one input (two events) counts twice, even when
   * another input lost one of them.
   */
  private readonly recent = new LRUCache<string, Map<string, number>>({ max: RECENT_LINES, ttl: RECENT_LINES_MS });
  private readonly onLine = (src: SourceLine): void => {
    const r = this.parse(src);
    if (r.outcome !== 'matched') return;
    const h = r.header;
    // Whole seconds: one input may carry fractions (RFC 5424) where the other has none (BSD).
    const key = `${h.program}[${h.pid ?? ''}]${Math.floor(h.at / 1000)} ${h.message}`;
    const copies = this.recent.get(key) ?? new Map<string, number>();
    const mine = (copies.get(src.origin) ?? 0) + 1;
    copies.set(src.origin, mine);
    this.recent.set(key, copies);
    for (const [origin, n] of copies) {
      if (origin !== src.origin && n >= mine) {
        this.deps.metrics?.duplicates.inc();
        return;
      }
    }
    this.deps.onRecord(r.record, src);
  };

  private constructor(private readonly deps: LogInputsDeps) {
    this.parse = this.parserFor('local');
    this.saved = deps.positionsFile ? loadPositions(deps.positionsFile, deps.logger) : new Map();
    if (deps.positionsFile) {
      this.saver = setInterval(() => void this.savePositions(), SAVE_POSITIONS_MS);
      this.saver.unref();
    }
  }

  /** Writes the followers' positions (atomically: a reader never sees half a file). */
  private savePositions(): Promise<void> {
    this.saving = this.saving.then(() => this.writePositions());
    return this.saving;
  }

  private async writePositions(): Promise<void> {
    const file = this.deps.positionsFile;
    if (!file) return;
    const out: Record<string, FilePosition> = {};
    for (const [path, { follower }] of this.followers) {
      const p = follower.position() ?? this.saved.get(path);
      if (p) out[path] = p;
    }
    try {
      await writeFile(`${file}.tmp`, JSON.stringify(out));
      await rename(`${file}.tmp`, file);
    } catch (e) {
      this.deps.logger.warn({ event: 'positions_write_failed', file, err: (e as Error).message }, 'could not save log positions');
    }
  }

  static async start(cfg: LogInputsConfig, deps: LogInputsDeps): Promise<LogInputs> {
    const inputs = new LogInputs(deps);
    try {
      await inputs.reconfigure(cfg);
    } catch (e) {
      await inputs.stop();
      throw e;
    }
    return inputs;
  }

  private parserFor(timezone: string): (src: SourceLine) => ParseResult {
    return createLineParser({ timeZone: timezone, futureToleranceSeconds: 7 * 86400 }, this.deps.metrics);
  }

  private sourceDeps() {
    return { logger: this.deps.logger, ...(this.deps.metrics ? { metrics: this.deps.metrics } : {}) };
  }

  /** Brings the running inputs to `next`, touching only what differs. */
  async reconfigure(next: LogInputsConfig): Promise<void> {
    if (next.timezone !== this.cfg.timezone) this.parse = this.parserFor(next.timezone);
    const wanted = new Map(next.files.map((f) => [f.path, f.fromStart]));
    for (const [path, f] of this.followers) {
      if (wanted.get(path) !== f.fromStart) {
        await f.follower.stop();
        // Should the path come back later, it goes on from here, not from where we started.
        const p = f.follower.position();
        if (p) this.saved.set(path, p);
        this.followers.delete(path);
      }
    }
    for (const [path, fromStart] of wanted) {
      if (this.followers.has(path)) continue;
      const follower = new FileFollower({ path, fromStart, resume: this.saved.get(path) ?? null }, this.onLine, this.sourceDeps());
      await follower.start();
      this.followers.set(path, { follower, fromStart });
    }
    this.cfg = { ...this.cfg, files: next.files, timezone: next.timezone };
    // The syslog receiver and the journal change independently: one failing leaves the other's
    // change applied, and itself as it was, serving.
    let syslogFailure: unknown;
    if (!same(next.syslog, this.cfg.syslog)) {
      try {
        this.receiver = await this.replaceReceiver(next.syslog);
        this.cfg = { ...this.cfg, syslog: next.syslog };
      } catch (e) {
        syslogFailure = e;
      }
    }
    if (!same(next.journal, this.cfg.journal)) {
      await this.journal?.stop();
      this.journal = null;
      if (next.journal.enabled) {
        const j = new JournalSource({ identifiers: next.journal.identifiers, trustedUids: next.journal.trustedUids }, this.onLine, this.sourceDeps());
        await j.start();
        this.journal = j;
      }
      this.cfg = { ...this.cfg, journal: next.journal };
    }
    if (syslogFailure !== undefined) throw syslogFailure;
    this.deps.logger.info({ event: 'listening', what: 'logs', ...this.describe() }, 'log inputs ready');
  }

  /**
   * A receiver for `next`, the old one stopped. New listeners are bound before the old ones
   * close, so a failure leaves the old ones serving. Where the new config asks for an address
   * the old receiver holds, the old one lets go first and, should the new one fail, comes back.
   */
  private async replaceReceiver(next: LogInputsConfig['syslog']): Promise<SyslogReceiver | null> {
    const receiverFor = (cfg: LogInputsConfig['syslog']): SyslogReceiver | null => {
      const listen = syslogListen(cfg);
      return listen.length > 0 ? new SyslogReceiver({ listen }, this.onLine, this.sourceDeps()) : null;
    };
    const old = this.receiver;
    const held = new Set(syslogListen(this.cfg.syslog).filter((l) => l.kind === 'unix' || l.port !== 0).map(listenKey));
    const clash = old !== null && syslogListen(next).some((l) => held.has(listenKey(l)));
    if (clash) {
      await old.stop();
      this.receiver = null;
    }
    const fresh = receiverFor(next);
    try {
      await fresh?.start();
    } catch (e) {
      if (clash) {
        const back = receiverFor(this.cfg.syslog)!;
        await back.start();
        this.receiver = back;
      }
      throw e;
    }
    if (!clash) await old?.stop();
    return fresh;
  }

  async stop(): Promise<void> {
    if (this.saver) clearInterval(this.saver);
    this.saver = null;
    await Promise.all([...this.followers.values()].map((f) => f.follower.stop()));
    await this.savePositions();
    this.followers.clear();
    await this.receiver?.stop();
    await this.journal?.stop();
    this.receiver = null;
    this.journal = null;
  }

  /** What is being read, for `authban status`. */
  describe(): { files: string[]; syslog: string[]; journal: boolean } {
    return {
      files: [...this.followers.keys()],
      syslog: (this.receiver?.listeners ?? []).map(listenKey),
      journal: this.journal !== null,
    };
  }
}
