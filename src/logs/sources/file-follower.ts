/**
 * Follows one log file like `tail -F`, keyed by inode and offset: survives rename-and-create
 * rotation (the old inode is drained to EOF before the new file is read, and kept open a
 * little longer for writers that reopen late), copytruncate (size below our offset means the
 * file was truncated: restart at 0), a file that does not exist yet, and a partial last line
 * (held until its newline). fs.watch on the directory wakes it; a bounded poll is the fallback.
 * A file renamed away and replaced twice before the follower looks (events lost and more
 * than one poll interval apart) is skipped in between: its rotated name is unknown here.
 * Only regular files are read: a FIFO, directory, socket or device at the path is refused
 * and waited out like a missing file.
 */
import { constants, watch, type FSWatcher, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import type { LogsMetrics } from '../metrics.js';
import type { SourceLine } from '../records.js';
import { LineSplitter } from './line-splitter.js';

export interface FileFollowerOptions {
  readonly path: string;
  /** Read the file from its start instead of its end when it exists at start(). */
  readonly fromStart: boolean;
  /** Fallback poll when no fs.watch event arrives (also catches missed events). */
  readonly pollIntervalMs: number;
  readonly maxLineBytes: number;
  readonly readChunkBytes: number;
  /** Bytes read per wake-up before yielding to the event loop. */
  readonly maxBytesPerTick: number;
  /** After a rename, how long the old file is still read (writers that reopen on HUP). */
  readonly rotateGraceMs: number;
  /**
   * Where a previous run stopped reading this path. The same inode is resumed at that offset,
   * so lines written while authban was down are read; a different inode (rotated meanwhile)
   * is new and read from its start. Wins over fromStart.
   */
  readonly resume?: FilePosition | null;
}

/**
 * A place in a followed file: which inode, and the offset after its last complete line (or,
 * inside a line too long to keep, the point reading had reached: a resume skips to its end).
 */
export interface FilePosition {
  readonly dev: number;
  readonly ino: number;
  readonly offset: number;
}

export const DEFAULT_FILE_FOLLOWER_OPTIONS: Omit<FileFollowerOptions, 'path'> = {
  fromStart: false,
  pollIntervalMs: 250,
  maxLineBytes: 16 * 1024,
  readChunkBytes: 64 * 1024,
  maxBytesPerTick: 8 * 1024 * 1024,
  rotateGraceMs: 2000,
};

export interface FileFollowerDeps {
  readonly logger?: Logger;
  readonly metrics?: LogsMetrics;
}

interface OpenFile {
  readonly fh: FileHandle;
  readonly dev: number;
  readonly ino: number;
  offset: number;
  readonly splitter: LineSplitter;
}

/**
 * How long an identical warning is held back: a path that stays broken is looked at every
 * poll, and a warning each time would bury the rest of the log.
 */
const WARN_REPEAT_MS = 60_000;

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}

function nonRegularKind(st: Stats): string {
  if (st.isFIFO()) return 'FIFO';
  if (st.isDirectory()) return 'directory';
  return st.isSocket() ? 'socket' : 'device';
}

export class FileFollower {
  private readonly opts: FileFollowerOptions;
  private cur: OpenFile | null = null;
  private retired: { file: OpenFile; until: number } | null = null;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = true;
  private firstOpen = true;
  private stoppedAt: FilePosition | null = null;
  /** The non-regular file last refused, so it is counted and reported once, not every poll. */
  private refused: string | null = null;
  /** Keyed by message and errno code, both from small fixed sets, so it stays small. */
  private readonly lastWarned = new Map<string, { at: number; suppressed: number }>();
  private readonly buf: Buffer;

  constructor(
    options: Partial<FileFollowerOptions> & { path: string },
    private readonly onLine: (line: SourceLine) => void,
    private readonly deps: FileFollowerDeps = {},
  ) {
    this.opts = { ...DEFAULT_FILE_FOLLOWER_OPTIONS, ...options };
    if (this.opts.pollIntervalMs < 10 || this.opts.pollIntervalMs > 60_000) {
      throw new Error('pollIntervalMs must be within 10..60000');
    }
    this.buf = Buffer.alloc(this.opts.readChunkBytes);
  }

  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    this.firstOpen = true;
    const name = basename(this.opts.path);
    try {
      this.watcher = watch(dirname(this.opts.path), { persistent: false }, (_event, file) => {
        if (file === null || file === name || String(file) === name) this.wake();
      });
      this.watcher.on('error', (err) => {
        this.deps.logger?.warn({ err, path: this.opts.path }, 'fs.watch failed; polling only');
        this.watcher?.close();
        this.watcher = null;
      });
    } catch (err) {
      // Directory missing or watch unsupported: polling still finds the file later.
      this.deps.logger?.debug({ err, path: this.opts.path }, 'fs.watch unavailable; polling');
    }
    this.timer = setInterval(() => this.wake(), this.opts.pollIntervalMs);
    this.timer.unref();
    await this.wake();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.watcher?.close();
    this.watcher = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
    await this.retired?.file.fh.close().catch(() => undefined);
    await this.cur?.fh.close().catch(() => undefined);
    this.stoppedAt = this.position();
    this.retired = null;
    this.cur = null;
  }

  /** Where reading stands (or stood when stopped): the inode and the offset after its last complete line. */
  position(): FilePosition | null {
    const c = this.cur;
    return c ? { dev: c.dev, ino: c.ino, offset: c.offset - c.splitter.heldBytes } : this.stoppedAt;
  }

  /** Runs a check now (or once more after the running one); resolves when it is done. */
  wake(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        for (let round = 0; round < 100; round++) {
          this.again = false;
          const more = await this.check();
          if (!this.again && !more) break;
          if (this.stopped) break;
        }
      } catch (err) {
        this.fail('reading followed file failed', err);
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  /** One pass; true when the byte budget ran out and there is more to read. */
  private async check(): Promise<boolean> {
    let budget = this.opts.maxBytesPerTick;
    if (this.retired) {
      const n = await this.drainOld(this.retired.file, budget);
      if (n === null) this.retired = null;
      else {
        budget -= n;
        if (Date.now() >= this.retired.until) await this.retire(null);
      }
    }
    let st;
    try {
      st = await stat(this.opts.path);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      // Renamed away and not yet recreated: keep reading the old inode.
      if (this.cur) budget -= await this.drain(this.cur, budget);
      this.firstOpen = false;
      return budget <= 0;
    }
    if (this.cur && (st.ino !== this.cur.ino || st.dev !== this.cur.dev)) {
      // Rename-and-create: finish the old inode before the first line of the new one.
      const n = await this.drainOld(this.cur, Number.MAX_SAFE_INTEGER);
      this.deps.metrics?.rotations.inc({ kind: 'rename' });
      if (n !== null) {
        budget -= n;
        await this.retire(this.cur);
      }
      this.cur = null;
    }
    if (!this.cur) {
      // Checked before opening too: opening a FIFO or device can disturb whoever is at the other end.
      if (!st.isFile()) {
        this.refuse(st);
        return false;
      }
      this.cur = await this.openCurrent();
      if (!this.cur) return false;
    }
    budget -= await this.drain(this.cur, budget);
    return budget <= 0;
  }

  private async openCurrent(): Promise<OpenFile | null> {
    let fh: FileHandle;
    try {
      // Non-blocking: the path may have become a FIFO since it was looked at, and a blocking
      // open of a FIFO waits for a writer in a threadpool thread that nothing can cancel.
      fh = await open(this.opts.path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    let st: Stats;
    try {
      st = await fh.stat();
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
    if (!st.isFile()) {
      await fh.close().catch(() => undefined);
      this.refuse(st);
      return null;
    }
    this.refused = null;
    // Only a file that already existed at start() may be skipped to its end; one that
    // appears later (late start, rotation) is new and read from its first byte.
    let offset = this.firstOpen && !this.opts.fromStart ? st.size : 0;
    const r = this.firstOpen ? this.opts.resume : null;
    if (r) offset = r.dev === st.dev && r.ino === st.ino && r.offset <= st.size ? r.offset : 0;
    this.firstOpen = false;
    const splitter = new LineSplitter(this.opts.maxLineBytes, (line, truncated) => this.emit(line, truncated));
    // A start inside a line (the tail of a line too long to keep when the position was saved,
    // or a line half written at start) would read its rest as a line of its own.
    if (offset > 0) {
      try {
        const { bytesRead } = await fh.read(this.buf, 0, 1, offset - 1);
        if (bytesRead === 1 && this.buf[0] !== 0x0a) splitter.skipToNewline();
      } catch (err) {
        await fh.close().catch(() => undefined);
        throw err;
      }
    }
    return { fh, dev: st.dev, ino: st.ino, offset, splitter };
  }

  private refuse(st: Stats): void {
    this.firstOpen = false;
    const kind = nonRegularKind(st);
    const id = `${st.dev}:${st.ino}:${kind}`;
    if (id === this.refused) return;
    this.refused = id;
    this.fail(`followed path is a ${kind}, not a regular file; waiting for a regular file there`);
  }

  /**
   * Drains a file the path no longer names. One that cannot be read is closed and dropped:
   * kept, it would fail again every poll and stand in the way of the file that replaced it.
   * Returns the bytes read, or null when the file was dropped.
   */
  private async drainOld(file: OpenFile, budget: number): Promise<number | null> {
    try {
      return await this.drain(file, budget);
    } catch (err) {
      await file.fh.close().catch(() => undefined);
      this.fail('reading the replaced file failed; dropped it', err);
      return null;
    }
  }

  /** Counts every failure; logs it unless the same one was logged less than WARN_REPEAT_MS ago. */
  private fail(msg: string, err?: unknown): void {
    this.deps.metrics?.sourceErrors.inc({ source: 'file' });
    const key = `${msg}\0${(err as NodeJS.ErrnoException | undefined)?.code ?? ''}`;
    const now = Date.now();
    const last = this.lastWarned.get(key);
    if (last && now - last.at < WARN_REPEAT_MS) {
      last.suppressed++;
      return;
    }
    this.lastWarned.set(key, { at: now, suppressed: 0 });
    this.deps.logger?.warn({ err, path: this.opts.path, suppressed: last?.suppressed }, msg);
  }

  private async retire(file: OpenFile | null): Promise<void> {
    if (this.retired) {
      this.retired.file.splitter.flush();
      await this.retired.file.fh.close().catch(() => undefined);
    }
    this.retired = file ? { file, until: Date.now() + this.opts.rotateGraceMs } : null;
  }

  /** Reads `file` from its offset to EOF (or `budget` bytes); returns bytes read. */
  private async drain(file: OpenFile, budget: number): Promise<number> {
    const st = await file.fh.stat();
    if (st.size < file.offset) {
      // copytruncate: the bytes after our offset are gone; start over on the same inode.
      file.splitter.flush();
      file.offset = 0;
      this.deps.metrics?.rotations.inc({ kind: 'truncate' });
    }
    let total = 0;
    while (total < budget && !this.stopped) {
      const want = Math.min(this.buf.length, budget - total);
      const { bytesRead } = await file.fh.read(this.buf, 0, want, file.offset);
      if (bytesRead === 0) break;
      file.offset += bytesRead;
      total += bytesRead;
      file.splitter.push(this.buf.subarray(0, bytesRead));
    }
    return total;
  }

  private emit(line: string, truncated: boolean): void {
    this.deps.metrics?.linesRead.inc({ source: 'file' });
    if (truncated) this.deps.metrics?.overlongLines.inc({ source: 'file' });
    this.onLine({ line, origin: this.opts.path, receivedAt: Date.now() });
  }
}
