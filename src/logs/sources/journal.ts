/**
 * Follows the systemd journal through `journalctl -f -o json` (an argument array, never a
 * shell). If journalctl exits it is restarted with back-off, resuming after the last cursor
 * seen so no entry is read twice or skipped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import type { LogsMetrics } from '../metrics.js';
import type { SourceLine } from '../records.js';
import { LineSplitter } from './line-splitter.js';

export interface JournalOptions {
  readonly command: string;
  /** SYSLOG_IDENTIFIER values to follow. */
  readonly identifiers: readonly string[];
  /** SYSLOG_FACILITY numbers also followed (4 auth, 10 authpriv). */
  readonly facilities: readonly number[];
  /**
   * Only entries from these user ids (journald's `_UID`, which the logging process cannot
   * set) are read: any local user can log with `SYSLOG_IDENTIFIER=sendmail`. Empty: all.
   */
  readonly trustedUids: readonly number[];
  readonly restartMinMs: number;
  readonly restartMaxMs: number;
  readonly maxLineBytes: number;
  /** How long stop() waits after SIGTERM before SIGKILL. */
  readonly stopTimeoutMs: number;
}

export const DEFAULT_JOURNAL_OPTIONS: JournalOptions = {
  command: 'journalctl',
  identifiers: ['sendmail', 'sm-mta', 'saslauthd'],
  facilities: [4, 10],
  trustedUids: [0],
  restartMinMs: 1000,
  restartMaxMs: 60_000,
  maxLineBytes: 64 * 1024,
  stopTimeoutMs: 3000,
};

export interface JournalDeps {
  readonly logger?: Logger;
  readonly metrics?: LogsMetrics;
}

// journalctl prints cursors as plain `s=…;i=…;b=…` text: a value with escapes is not one of them.
const CURSOR_RE = /"__CURSOR"\s*:\s*"([^"\\]{1,512})"/;

/** journalctl arguments: new entries only (or those after `cursor`), matching either group. */
export function journalArgs(opts: JournalOptions, cursor: string | null): string[] {
  const args = ['--follow', '--output=json', '--no-pager', '--quiet'];
  args.push(cursor === null ? '--lines=0' : `--after-cursor=${cursor}`);
  const groups = [
    opts.identifiers.map((id) => `SYSLOG_IDENTIFIER=${id}`),
    opts.facilities.map((f) => `SYSLOG_FACILITY=${f}`),
  ].filter((g) => g.length > 0);
  // Matches on one field are ORed, on different fields ANDed; `+` ORs the groups.
  const uids = opts.trustedUids.map((u) => `_UID=${u}`);
  groups.forEach((g, i) => {
    if (i > 0) args.push('+');
    args.push(...g, ...uids);
  });
  return args;
}

export class JournalSource {
  private readonly opts: JournalOptions;
  private child: ChildProcess | null = null;
  private cursor: string | null = null;
  private delay: number;
  private restartTimer: NodeJS.Timeout | null = null;
  private stopped = true;
  /** Times journalctl was (re)started; for metrics and tests. */
  starts = 0;

  constructor(
    options: Partial<JournalOptions>,
    private readonly onLine: (line: SourceLine) => void,
    private readonly deps: JournalDeps = {},
  ) {
    this.opts = { ...DEFAULT_JOURNAL_OPTIONS, ...options };
    this.delay = this.opts.restartMinMs;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.spawnOnce();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), this.opts.stopTimeoutMs);
    await exited;
    clearTimeout(timer);
  }

  private spawnOnce(): void {
    this.starts++;
    const child = spawn(this.opts.command, journalArgs(this.opts, this.cursor), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const splitter = new LineSplitter(this.opts.maxLineBytes, (line, truncated) => this.line(line, truncated));
    child.stdout!.on('data', (chunk: Buffer) => splitter.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => {
      this.deps.logger?.warn({ stderr: chunk.toString('utf8').slice(0, 500) }, 'journalctl stderr');
    });
    let ended = false;
    const end = (info: Record<string, unknown>): void => {
      // A failed spawn emits 'error' and may or may not emit 'close': restart once.
      if (ended) return;
      ended = true;
      if (this.child === child) this.child = null;
      if (this.stopped) return;
      this.deps.metrics?.sourceErrors.inc({ source: 'journal' });
      this.deps.logger?.warn({ ...info, retryMs: this.delay }, 'journalctl ended; restarting');
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        if (!this.stopped) this.spawnOnce();
      }, this.delay);
      this.delay = Math.min(this.delay * 2, this.opts.restartMaxMs);
    };
    child.on('error', (err) => end({ err }));
    child.on('close', (code, signal) => end({ code, signal }));
  }

  private line(line: string, truncated: boolean): void {
    if (line === '') return;
    this.deps.metrics?.linesRead.inc({ source: 'journal' });
    if (truncated) {
      // A cut JSON object cannot be parsed; count it and move on.
      this.deps.metrics?.overlongLines.inc({ source: 'journal' });
      return;
    }
    const c = CURSOR_RE.exec(line);
    if (c) this.cursor = c[1]!;
    // journalctl is healthy again: the next failure starts the back-off over.
    this.delay = this.opts.restartMinMs;
    this.onLine({ line, origin: 'journal', receivedAt: Date.now() });
  }
}
