/**
 * Durable ban state: a snapshot (`file`) written atomically, plus an append-only journal
 * (`file.journal`, one JSON line per change, fsync'd). Concurrent appends are group-committed:
 * one write + one fsync per batch, and each append's promise resolves only once its line is on
 * disk. The journal is folded into a new snapshot at start and whenever it grows past
 * `compactAfterBytes`.
 */
import { copyFile, mkdir, open, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { BansMetrics } from './metrics.js';
import { ShapeError, applyOp, decodeOp, decodeSnapshot, emptyState, encodeOp, encodeSnapshot, type BanState, type JournalOp } from './state-codec.js';

export interface StateStoreOptions {
  /** Snapshot path; the journal is this path plus `.journal`. */
  readonly file: string;
  /** Fold the journal into a new snapshot once it is this large, bytes. */
  readonly compactAfterBytes?: number;
}

export const DEFAULT_STATE_STORE: Required<Omit<StateStoreOptions, 'file'>> = {
  compactAfterBytes: 4 * 1024 * 1024,
};

export interface StateStoreDeps {
  readonly log: Logger;
  readonly metrics?: BansMetrics;
  /** Clock for the names of set-aside files. */
  readonly now?: () => number;
}

interface Pending {
  readonly line: string;
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

/** Problems are listed in logs up to this many per file; the count says how many more. */
const MAX_LISTED_PROBLEMS = 20;

export class StateStore {
  readonly journalFile: string;
  private readonly compactAfterBytes: number;
  private readonly log: Logger;
  private readonly metrics: BansMetrics | undefined;
  private readonly now: () => number;
  private journal: FileHandle | null = null;
  private journalBytes = 0;
  private source: (() => BanState) | null = null;
  private pending: Pending[] = [];
  private flushing: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly opts: StateStoreOptions, deps: StateStoreDeps) {
    this.journalFile = `${opts.file}.journal`;
    this.compactAfterBytes = opts.compactAfterBytes ?? DEFAULT_STATE_STORE.compactAfterBytes;
    this.log = deps.log;
    this.metrics = deps.metrics;
    this.now = deps.now ?? Date.now;
  }

  get file(): string {
    return this.opts.file;
  }

  /**
   * Reads the snapshot and replays the journal. A corrupt file is reported (file, line, what was
   * wrong), copied aside as `<name>.corrupt-<time>`, and whatever could be read is kept. A torn
   * last journal line (a write cut by a crash) is normal: everything before it is kept and the
   * torn bytes are saved as `<journal>.torn-<time>`.
   */
  async load(): Promise<BanState> {
    await mkdir(dirname(this.opts.file), { recursive: true });
    const state = emptyState();
    const snapText = await readIfExists(this.opts.file);
    if (snapText !== null) {
      try {
        const { state: snap, problems } = decodeSnapshot(snapText);
        for (const [k, v] of snap.bans) state.bans.set(k, v);
        for (const [k, v] of snap.offenders) state.offenders.set(k, v);
        if (problems.length > 0) await this.corrupt('snapshot', this.opts.file, problems);
      } catch (e) {
        if (!(e instanceof ShapeError)) throw e;
        await this.corrupt('snapshot', this.opts.file, [e.message]);
      }
    }
    const journalText = await readIfExists(this.journalFile);
    if (journalText !== null) await this.replay(journalText, state);
    return state;
  }

  private async replay(text: string, state: BanState): Promise<void> {
    const lines = text.split('\n');
    // Without a final newline the last segment is an unfinished write, unless it happens to parse.
    const tail = lines.pop() ?? '';
    const problems: string[] = [];
    lines.forEach((line, i) => {
      if (line.trim() === '') return;
      try {
        applyOp(state, decodeOp(line));
      } catch (e) {
        if (!(e instanceof ShapeError)) throw e;
        problems.push(`line ${i + 1}: ${e.message}`);
      }
    });
    if (tail !== '') {
      try {
        applyOp(state, decodeOp(tail));
      } catch (e) {
        if (!(e instanceof ShapeError)) throw e;
        const aside = `${this.journalFile}.torn-${this.stamp()}`;
        await writeFile(aside, tail, { mode: 0o600 });
        this.metrics?.stateTornTails.inc();
        this.log.warn(
          { event: 'state_torn_tail', file: this.journalFile, line: lines.length + 1, bytes: Buffer.byteLength(tail), savedAs: aside },
          'ban journal ends in an unfinished line (interrupted write); kept everything before it',
        );
      }
    }
    if (problems.length > 0) await this.corrupt('journal', this.journalFile, problems);
  }

  private async corrupt(kind: 'snapshot' | 'journal', file: string, problems: string[]): Promise<void> {
    const aside = `${file}.corrupt-${this.stamp()}`;
    await copyFile(file, aside);
    this.metrics?.stateCorruptFiles.inc({ file: kind });
    this.log.error(
      {
        event: 'state_corrupt',
        file,
        problems: problems.slice(0, MAX_LISTED_PROBLEMS),
        moreProblems: Math.max(0, problems.length - MAX_LISTED_PROBLEMS),
        savedAs: aside,
      },
      `ban state file ${file} is corrupt: ${problems[0]}; kept what could be read, original copied to ${aside}`,
    );
  }

  /**
   * Writes the current state as the new snapshot, empties the journal and starts accepting
   * appends. `source` gives the state again at each later compaction.
   */
  async open(source: () => BanState): Promise<void> {
    this.source = source;
    this.journal = await open(this.journalFile, 'a', 0o600);
    await this.compact();
  }

  /** Journals one change; resolves once it is on disk. */
  append(op: JournalOp): Promise<void> {
    if (!this.journal || this.closed) return Promise.reject(new Error(`ban state ${this.journalFile} is not open`));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ line: encodeOp(op), resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  private async flushLoop(): Promise<void> {
    try {
      // Let the rest of this turn's appends (a burst of bans) join the first batch.
      await new Promise<void>((r) => setImmediate(r));
      while (this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        const data = batch.map((p) => p.line).join('');
        const endTimer = this.metrics?.stateCommitSeconds.startTimer();
        try {
          await this.journal!.appendFile(data);
          await this.journal!.datasync();
          this.journalBytes += Buffer.byteLength(data);
          endTimer?.();
          for (const p of batch) p.resolve();
        } catch (e) {
          this.writeFailed(e as Error, this.journalFile);
          for (const p of batch) p.reject(e as Error);
          continue;
        }
        if (this.journalBytes >= this.compactAfterBytes) {
          try {
            await this.compact();
          } catch (e) {
            // The journal still holds everything; the next batch tries again.
            this.writeFailed(e as Error, this.opts.file);
          }
        }
      }
    } finally {
      this.flushing = null;
    }
  }

  private writeFailed(e: Error, file: string): void {
    this.metrics?.stateWriteErrors.inc();
    this.log.error({ event: 'state_write_error', file, err: e }, `cannot write ban state ${file}: ${e.message}`);
  }

  /** Snapshot first (atomic), then truncate: a crash in between only replays lines already in it. */
  private async compact(): Promise<void> {
    await writeAtomic(this.opts.file, encodeSnapshot(this.source!(), this.now()));
    await this.journal!.truncate(0);
    await this.journal!.sync();
    this.journalBytes = 0;
  }

  /** Waits for pending writes, then closes the journal. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.flushing) await this.flushing;
    await this.journal?.close();
    this.journal = null;
  }

  private stamp(): string {
    return new Date(this.now()).toISOString().replace(/[:.]/g, '-');
  }
}

async function readIfExists(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`cannot read ban state ${file}: ${(e as Error).message}`);
  }
}

/** tmp + fsync + rename + directory fsync: the file is either the old or the new one, never half. */
async function writeAtomic(file: string, data: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  const dir = await open(dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
