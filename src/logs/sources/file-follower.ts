/**
 * Follows one log file like `tail -F`, keyed by inode and offset: survives rename-and-create
 * rotation (the old inode is drained to EOF before the new file is read, and kept open a
 * little longer for writers that reopen late), copytruncate (size below our offset means the
 * file was truncated: restart at 0), a file that does not exist yet, and a partial last line
 * (held until its newline). fs.watch on the directory wakes it; a bounded poll is the fallback.
 * A file renamed away and replaced twice before the follower looks (events lost and more
 * than one poll interval apart) is skipped in between: its rotated name is unknown here.
 */
import { watch, type FSWatcher } from 'node:fs';
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

/** A place in a followed file: which inode, and the offset after its last complete line. */
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

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
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
        this.deps.metrics?.sourceErrors.inc({ source: 'file' });
        this.deps.logger?.warn({ err, path: this.opts.path }, 'reading followed file failed');
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
      budget -= await this.drain(this.retired.file, budget);
      if (Date.now() >= this.retired.until) await this.retire(null);
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
      budget -= await this.drain(this.cur, Number.MAX_SAFE_INTEGER);
      this.deps.metrics?.rotations.inc({ kind: 'rename' });
      await this.retire(this.cur);
      this.cur = null;
    }
    if (!this.cur) {
      this.cur = await this.openCurrent();
      if (!this.cur) return false;
    }
    budget -= await this.drain(this.cur, budget);
    return budget <= 0;
  }

  private async openCurrent(): Promise<OpenFile | null> {
    let fh: FileHandle;
    try {
      fh = await open(this.opts.path, 'r');
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    const st = await fh.stat();
    // Only a file that already existed at start() may be skipped to its end; one that
    // appears later (late start, rotation) is new and read from its first byte.
    let offset = this.firstOpen && !this.opts.fromStart ? st.size : 0;
    const r = this.firstOpen ? this.opts.resume : null;
    if (r) offset = r.dev === st.dev && r.ino === st.ino && r.offset <= st.size ? r.offset : 0;
    this.firstOpen = false;
    const splitter = new LineSplitter(this.opts.maxLineBytes, (line, truncated) => this.emit(line, truncated));
    return { fh, dev: st.dev, ino: st.ino, offset, splitter };
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
