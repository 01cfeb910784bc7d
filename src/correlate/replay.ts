/**
 * `authban replay`: the offline twin of the live log path, like fail2ban-regex. Log files are
 * streamed in chunks, parsed by the same parsers, merged by timestamp and correlated by the
 * same join rules; the report tells what matched, what was attributed to whom and why, what
 * could not be, and which bans the policy would have made. No daemon, no firewall.
 */
import { isAscii } from 'node:buffer';
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { AuthFailure, Evidence } from '../core/auth-failure.js';
import { parseAddress } from '../core/address.js';
import { banSeconds, compileBanPolicy, exemptReason, keyOf, type BanPolicyOptions } from '../bans/policy.js';
import { parseLine, type ParseResult } from '../logs/parse-line.js';
import type { LogRecord } from '../logs/records.js';
import { DEFAULT_TIMESTAMP_OPTIONS, type TimestampOptions } from '../logs/timestamps.js';
import { Correlator, type CorrelatorOptions, type Unresolved } from './correlator.js';
import { SessionIndex } from './session-index.js';

export interface ReplayOptions {
  readonly correlate: Partial<CorrelatorOptions>;
  readonly policy: Partial<BanPolicyOptions>;
  readonly timestamps: TimestampOptions;
  /** Raw lines kept as evidence per address, and as samples of unresolved lines. */
  readonly evidencePerAddress: number;
  readonly samplesPerReason: number;
  /** Bytes read from a file at a time. */
  readonly chunkBytes: number;
  /** Longer lines are cut (a syslog line is at most a few KiB). */
  readonly maxLineLength: number;
  /** Called about every `progressEveryLines` lines (the CLI draws a progress line on a TTY). */
  readonly progress?: (linesRead: number, bytesRead: number) => void;
  readonly progressEveryLines: number;
}

export const DEFAULT_REPLAY_OPTIONS: ReplayOptions = {
  correlate: {},
  policy: {},
  timestamps: DEFAULT_TIMESTAMP_OPTIONS,
  evidencePerAddress: 3,
  samplesPerReason: 5,
  chunkBytes: 1 << 20,
  maxLineLength: 8192,
  progressEveryLines: 100_000,
};

export interface ReplayAddress {
  readonly address: string;
  failures: number;
  /** Distinct users tried (at most 10 kept). */
  readonly users: string[];
  readonly evidence: string[];
  /** Why the policy never bans it (loopback, ignore list), when so. */
  exempt?: string;
}

export interface ReplayBan {
  readonly key: string;
  /** ISO time of the failure that triggered it. */
  readonly at: string;
  readonly seconds: number;
  /** The nth ban of this key in the replay. */
  readonly nth: number;
}

export interface ReplayReport {
  readonly files: { readonly path: string; lines: number }[];
  linesRead: number;
  bytesRead: number;
  readonly matched: Record<string, number>;
  readonly missed: Record<string, number>;
  ignored: number;
  unparsable: number;
  failures: number;
  readonly failuresBySource: Record<string, number>;
  corroborated: number;
  ambiguous: number;
  readonly unattributed: Record<string, number>;
  addressMismatch: number;
  /** Sample lines per unresolved reason (ambiguous, no_session, …). */
  readonly samples: Record<string, string[]>;
  readonly addresses: ReplayAddress[];
  readonly bans: ReplayBan[];
  elapsedMs: number;
}

/** One file's matched records, read ahead in chunks. */
interface FileCursor {
  readonly path: string;
  readonly fileIndex: number;
  readonly reference: number;
  readonly fh: FileHandle;
  readonly buf: Buffer;
  rest: Buffer;
  eof: boolean;
  recs: LogRecord[];
  lines: string[];
  pos: number;
}

const MAX_USERS = 10;

/** One ban key's failures inside findtime, and its bans so far. */
interface BanCount {
  readonly key: string;
  readonly times: number[];
  bannedUntil: number;
  bans: number;
}

export async function runReplay(files: readonly string[], options: Partial<ReplayOptions> = {}): Promise<ReplayReport> {
  const opts: ReplayOptions = { ...DEFAULT_REPLAY_OPTIONS, ...options };
  const started = performance.now();
  const report: ReplayReport = {
    files: files.map((path) => ({ path, lines: 0 })),
    linesRead: 0, bytesRead: 0, matched: {}, missed: {}, ignored: 0, unparsable: 0,
    failures: 0, failuresBySource: {}, corroborated: 0, ambiguous: 0, unattributed: {}, addressMismatch: 0,
    samples: {}, addresses: [], bans: [], elapsedMs: 0,
  };
  const policy = compileBanPolicy(opts.policy);
  const addresses = new Map<string, ReplayAddress>();
  /** Per address: its report entry and, unless exempt, its ban key's window (computed once). */
  const states = new Map<string, { readonly a: ReplayAddress; readonly c: BanCount | undefined }>();
  const counts = new Map<string, BanCount>();

  const onFailure = (f: AuthFailure): void => {
    report.failures++;
    let st = states.get(f.address);
    if (!st) {
      const a: ReplayAddress = { address: f.address, failures: 0, users: [], evidence: [] };
      const parsed = parseAddress(f.address);
      const why = parsed ? exemptReason(policy, parsed) : 'unparsable';
      if (why) a.exempt = why;
      addresses.set(f.address, a);
      let c: BanCount | undefined;
      if (!why) {
        const key = keyOf(policy, parsed!);
        c = counts.get(key);
        if (!c) {
          c = { key, times: [], bannedUntil: 0, bans: 0 };
          counts.set(key, c);
        }
      }
      st = { a, c };
      states.set(f.address, st);
    }
    const a = st.a;
    a.failures++;
    if (f.user !== undefined && a.users.length < MAX_USERS && !a.users.includes(f.user)) a.users.push(f.user);
    if (a.evidence.length < opts.evidencePerAddress) {
      for (const e of f.evidence) if (e.kind === 'log' && a.evidence.length < opts.evidencePerAddress) a.evidence.push(e.line);
    }
    const c = st.c;
    if (!c) return; // exempt
    if (f.at < c.bannedUntil) return; // a banned client cannot connect to fail again
    const windowStart = f.at - policy.findtime * 1000;
    // Keep the failures inside the window, in place.
    const times = c.times;
    let kept = 0;
    for (let i = 0; i < times.length; i++) if (times[i]! > windowStart) times[kept++] = times[i]!;
    times.length = kept;
    times.push(f.at);
    if (times.length >= policy.maxretry) {
      c.bans++;
      const seconds = banSeconds(policy, c.bans);
      c.bannedUntil = f.at + seconds * 1000;
      times.length = 0;
      report.bans.push({ key: c.key, at: new Date(f.at).toISOString(), seconds, nth: c.bans });
    }
  };
  const onUnresolved = (why: Unresolved, evidence: readonly Evidence[]): void => {
    const list = (report.samples[why] ??= []);
    if (list.length >= opts.samplesPerReason) return;
    for (const e of evidence) if (e.kind === 'log') list.push(e.line);
  };
  const correlator = new Correlator({ index: new SessionIndex(), emit: onFailure, onUnresolved }, opts.correlate);

  const cursors: FileCursor[] = [];
  try {
    for (let i = 0; i < files.length; i++) {
      const path = files[i]!;
      // BSD timestamps carry no year: the file's last write dates them.
      const reference = (await stat(path)).mtimeMs;
      const fh = await open(path, 'r');
      cursors.push({ path, fileIndex: i, reference, fh, buf: Buffer.allocUnsafe(opts.chunkBytes), rest: Buffer.alloc(0), eof: false, recs: [], lines: [], pos: 0 });
    }
    let nextProgress = opts.progressEveryLines;
    for (;;) {
      // Each file keeps at least one parsed record ahead, so the merge sees every head.
      for (const c of cursors) {
        while (c.pos >= c.recs.length && !c.eof) await fill(c, report, opts);
      }
      let best: FileCursor | undefined;
      for (const c of cursors) {
        if (c.pos < c.recs.length && (!best || c.recs[c.pos]!.at < best.recs[best.pos]!.at)) best = c;
      }
      if (!best) break;
      // Take every record of this file up to the next head of another file: one comparison per run.
      let limit = Infinity;
      for (const c of cursors) if (c !== best && c.pos < c.recs.length) limit = Math.min(limit, c.recs[c.pos]!.at);
      const origin = best.path;
      while (best.pos < best.recs.length && best.recs[best.pos]!.at <= limit) {
        const rec = best.recs[best.pos]!;
        correlator.onRecord(rec, { line: best.lines[best.pos]!, origin, receivedAt: rec.at });
        best.pos++;
      }
      if (opts.progress && report.linesRead >= nextProgress) {
        opts.progress(report.linesRead, report.bytesRead);
        nextProgress = report.linesRead + opts.progressEveryLines;
      }
    }
    correlator.flush();
  } finally {
    for (const c of cursors) await c.fh.close();
  }

  const st = correlator.stats;
  Object.assign(report.failuresBySource, st.failures);
  report.corroborated = st.corroborated;
  report.ambiguous = st.ambiguous;
  Object.assign(report.unattributed, st.unattributed);
  report.addressMismatch = st.addressMismatch;
  report.addresses.push(...[...addresses.values()].sort((x, y) => y.failures - x.failures || (x.address < y.address ? -1 : 1)));
  report.elapsedMs = performance.now() - started;
  return report;
}

/** Reads one chunk of a file, splits whole lines, parses them and keeps the matched ones. */
async function fill(c: FileCursor, report: ReplayReport, opts: ReplayOptions): Promise<void> {
  const { bytesRead } = await c.fh.read(c.buf, 0, c.buf.length, null);
  report.bytesRead += bytesRead;
  const recs: LogRecord[] = [];
  const lines: string[] = [];
  c.recs = recs;
  c.lines = lines;
  c.pos = 0;
  if (bytesRead === 0) {
    c.eof = true;
    if (c.rest.length > 0) {
      // The last line had no line end.
      const n = parseText(decode(c.rest, 0, c.rest.length), c, report, opts, recs, lines);
      c.rest = Buffer.alloc(0);
      countLines(c, report, n);
    }
    return;
  }
  const chunk = c.buf.subarray(0, bytesRead);
  const lastNl = chunk.lastIndexOf(10);
  if (lastNl < 0) {
    c.rest = c.rest.length > 0 ? Buffer.concat([c.rest, chunk]) : Buffer.from(chunk);
    // A chunk with no line end: the line is longer than any syslog line; cut it.
    if (c.rest.length > opts.maxLineLength * 4) c.rest = c.rest.subarray(0, opts.maxLineLength);
    return;
  }
  let n = 0;
  let from = 0;
  if (c.rest.length > 0) {
    // The line begun in the previous chunk ends at this chunk's first line end. A line end is
    // an ASCII byte, so decoding line by line gives the same text as decoding the whole.
    const firstNl = chunk.indexOf(10);
    const head = Buffer.concat([c.rest, chunk.subarray(0, firstNl)]);
    n += parseText(decode(head, 0, head.length), c, report, opts, recs, lines);
    from = firstNl + 1;
  }
  if (lastNl > from) n += parseText(decode(chunk, from, lastNl), c, report, opts, recs, lines);
  // Copy the tail: the read buffer is reused for the next chunk.
  c.rest = Buffer.from(chunk.subarray(lastNl + 1));
  countLines(c, report, n);
}

/** Bytes to text as UTF-8 (pure ASCII, the usual log, is copied as is). */
function decode(buf: Buffer, start: number, end: number): string {
  return isAscii(buf.subarray(start, end)) ? buf.toString('latin1', start, end) : buf.toString('utf8', start, end);
}

function countLines(c: FileCursor, report: ReplayReport, n: number): void {
  report.linesRead += n;
  report.files[c.fileIndex]!.lines += n;
}

/** Parses the non-empty lines of `text` (no line end after the last); returns how many. */
function parseText(
  text: string, c: FileCursor, report: ReplayReport, opts: ReplayOptions, recs: LogRecord[], lines: string[],
): number {
  const len = text.length;
  const max = opts.maxLineLength;
  let start = 0;
  let n = 0;
  while (start < len) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = len;
    if (end > start) {
      const line = text.slice(start, end - start > max ? start + max : end);
      n++;
      count(parseLine(line, c.reference, opts.timestamps), report, recs, lines, line);
    }
    start = end + 1;
  }
  return n;
}

function count(r: ParseResult, report: ReplayReport, recs: LogRecord[], lines: string[], line: string): void {
  switch (r.outcome) {
    case 'matched':
      report.matched[r.record.pattern] = (report.matched[r.record.pattern] ?? 0) + 1;
      recs.push(r.record);
      lines.push(line);
      break;
    case 'missed':
      report.missed[r.family] = (report.missed[r.family] ?? 0) + 1;
      break;
    case 'ignored':
      report.ignored++;
      break;
    case 'unparsable':
      report.unparsable++;
      break;
  }
}

/** The report as text for a terminal, or as one JSON document. */
export function formatReplayReport(report: ReplayReport, { json }: { json: boolean }): string {
  if (json) return `${JSON.stringify(report, null, 2)}\n`;
  const out: string[] = [];
  const secs = report.elapsedMs / 1000;
  const rate = secs > 0 ? Math.round(report.linesRead / secs) : report.linesRead;
  const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
  const kv = (r: Record<string, number>): string =>
    Object.entries(r).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${v}`).join(' ') || '-';
  out.push('Files:');
  for (const f of report.files) out.push(`  ${f.path}: ${f.lines} lines`);
  out.push(`Lines: ${report.linesRead} read, ${sum(report.matched)} matched, ${sum(report.missed)} missed (known programs), ${report.ignored} other programs, ${report.unparsable} unparsable`);
  out.push(`Matched per pattern: ${kv(report.matched)}`);
  if (sum(report.missed) > 0) out.push(`Missed per program family: ${kv(report.missed)}`);
  out.push(`Failures attributed: ${report.failures} (first seen by: ${kv(report.failuresBySource)}); ${report.corroborated} more lines were the same attempts`);
  out.push(`Not attributed: ${report.ambiguous} ambiguous, ${sum(report.unattributed)} unattributed (${kv(report.unattributed)}), ${report.addressMismatch} address mismatches`);
  for (const [why, lines] of Object.entries(report.samples)) {
    out.push(`  e.g. ${why}:`);
    for (const l of lines) out.push(`    ${printable(l)}`);
  }
  out.push(`Addresses: ${report.addresses.length}`);
  for (const a of report.addresses.slice(0, 50)) {
    out.push(`  ${a.address}: ${a.failures} failures${a.exempt ? ` (never banned: ${a.exempt})` : ''}${a.users.length ? `, users ${printable(a.users.join(','))}` : ''}`);
    for (const l of a.evidence) out.push(`      ${printable(l)}`);
  }
  if (report.addresses.length > 50) out.push(`  … ${report.addresses.length - 50} more (use --json for all)`);
  out.push(`Bans the policy would make: ${report.bans.length}`);
  for (const b of report.bans.slice(0, 50)) out.push(`  ${b.at} ${b.key} for ${b.seconds}s (ban #${b.nth})`);
  if (report.bans.length > 50) out.push(`  … ${report.bans.length - 50} more (use --json for all)`);
  out.push(`Time: ${secs.toFixed(3)} s, ${rate} lines/s`);
  return `${out.join('\n')}\n`;
}

/** Log lines hold attacker text: no control characters reach the terminal. */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}
