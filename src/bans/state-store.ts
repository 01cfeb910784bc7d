/**
 * Durable ban state: a snapshot (`file`) written atomically, plus an append-only journal
 * (`file.journal`, one JSON line per change, fsync'd). Concurrent appends are group-committed:
 * one write + one fsync per batch, and each append's promise resolves only once its line is on
 * disk. The journal is folded into a new snapshot at start and whenever it grows past
 * `compactAfterBytes`.
 *
 * A failed journal write (disk full mid-line, a failed fsync) must not leave a broken partial line
 * for the next batch to be appended onto: the store remembers the journal's committed length and
 * cuts the journal back to it before anything else is written. If that truncation fails, it
 * compacts onto a fresh journal file instead; if that fails too, the journal is marked broken and
 * every append is refused (rejected with an error naming the file; `state_write_error` logged,
 * `authban_bans_state_write_errors_total` counted) until a repair, retried before each batch,
 * succeeds. Nothing is acknowledged that a replay could lose.
 *
 * The engine applies a change in memory before journalling it and keeps it when the write fails,
 * so after a failed (or refused) batch the disk is behind memory. Once the journal is repaired the
 * store brings the disk up to memory: a snapshot from `source()` onto a fresh, empty journal
 * (`state_resynced` logged). While that fails it is retried before each later batch, every
 * `retryAfterMs` when no batch comes, and at `close()`; so a ban or unban made while the disk was
 * full (its promise rejected) is still there after a restart once the disk works again.
 *
 * One store per state file: `load()` takes `<file>.lock` (created with O_EXCL), a JSON object
 * with the holder's pid, the boot id (`/proc/sys/kernel/random/boot_id`) and the process start
 * time (field 22 of `/proc/<pid>/stat`), the last two when readable. A lock held by another live
 * process refuses with StateLockedError; a lock is stale, taken over and logged, when its boot id
 * is not the current one (written before a reboot), its pid is dead (kill -9), or its pid now
 * runs a process that started at another time (the pid was reused). Without /proc only the pid's
 * liveness is checked. A lock holding a bare pid (older versions) is judged by liveness alone.
 * `close()` releases it.
 */
import { constants as fsConstants } from 'node:fs';
import { copyFile, mkdir, open, readFile, rename, rm, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { BansMetrics } from './metrics.js';
import { ShapeError, applyOp, decodeOp, decodeSnapshot, emptyState, encodeOp, encodeSnapshot, type BanState, type JournalOp } from './state-codec.js';

export interface StateStoreOptions {
  /** Snapshot path; the journal is this path plus `.journal`. */
  readonly file: string;
  /** Fold the journal into a new snapshot once it is this large, bytes. */
  readonly compactAfterBytes?: number;
  /** After a failed write, how often to retry bringing the disk up to memory when no batch comes, ms. */
  readonly retryAfterMs?: number;
}

export const DEFAULT_STATE_STORE: Required<Omit<StateStoreOptions, 'file'>> = {
  compactAfterBytes: 4 * 1024 * 1024,
  retryAfterMs: 30_000,
};

export interface StateStoreDeps {
  readonly log: Logger;
  readonly metrics?: BansMetrics;
  /** Clock for the names of set-aside files. */
  readonly now?: () => number;
  /** Opens the journal for appending (a seam for tests that inject write failures). */
  readonly openJournal?: (file: string) => Promise<FileHandle>;
  /** Writes the snapshot atomically (a seam for tests that inject write failures). */
  readonly writeSnapshot?: (file: string, data: string) => Promise<void>;
}

/**
 * Another live process holds the state file's lock: two daemons on one state directory would
 * truncate each other's journal. `lockFile` and `pid` name the holder.
 */
export class StateLockedError extends Error {
  override readonly name = 'StateLockedError';
  constructor(
    readonly lockFile: string,
    readonly pid: number,
  ) {
    super(`ban state is in use by another authban process: ${lockFile} is held by pid ${pid}; stop that process first (or remove the lock file if pid ${pid} is not authban)`);
  }
}

/** Lock files this process holds, and the store holding each (a store's close releases only its own). */
const heldLocks = new Map<string, StateStore>();

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
  private readonly openJournal: (file: string) => Promise<FileHandle>;
  private readonly writeSnapshot: (file: string, data: string) => Promise<void>;
  private readonly retryAfterMs: number;
  readonly lockFile: string;
  private journal: FileHandle | null = null;
  /** Journal length up to the end of the last fsync'd batch; everything past it is unacknowledged. */
  private committedBytes = 0;
  /** A write failed and the journal may end in a partial line that is not yet cut off. */
  private needsRepair = false;
  /** A batch failed or was refused: memory holds changes the disk does not, until a compaction. */
  private needsResync = false;
  private retryTimer: NodeJS.Timeout | null = null;
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
    this.openJournal = deps.openJournal ?? ((f) => open(f, 'a', 0o600));
    this.writeSnapshot = deps.writeSnapshot ?? writeAtomic;
    this.retryAfterMs = opts.retryAfterMs ?? DEFAULT_STATE_STORE.retryAfterMs;
    this.lockFile = `${opts.file}.lock`;
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
    const locked = heldLocks.get(this.lockFile) === this;
    if (!locked) await this.lock();
    try {
      return await this.read();
    } catch (e) {
      if (!locked) await this.unlock();
      throw e;
    }
  }

  /**
   * Creates the lock file exclusively. An existing one held by a live process other than this one
   * refuses; a stale one (see `staleReason`), or one naming this process (a pid reused after a
   * restart, e.g. pid 1 in a container, or a store of this process that was never closed), is
   * taken over.
   */
  private async lock(): Promise<void> {
    const mine = await ownLockRecord();
    for (let attempt = 0; ; attempt++) {
      try {
        const fh = await open(this.lockFile, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644);
        try {
          await fh.writeFile(`${JSON.stringify(mine)}\n`);
          await fh.sync();
        } finally {
          await fh.close();
        }
        heldLocks.set(this.lockFile, this);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 5) throw e;
      }
      const seen = await readLockIfExists(this.lockFile);
      if (seen === null) continue; // released meanwhile
      let held = parseLock(seen);
      if (held === null) {
        // Created but not written yet by a process starting right now, or left empty by a crash.
        await new Promise((r) => setTimeout(r, 100));
        const again = await readLockIfExists(this.lockFile);
        if (again !== seen) continue;
        held = parseLock(again);
      }
      const pid = held?.pid ?? null;
      const own = pid === process.pid && (held!.bootId === undefined || mine.bootId === undefined || held!.bootId === mine.bootId);
      const stale = held === null || own ? null : await staleReason(held, mine);
      if (held !== null && !own && stale === null) throw new StateLockedError(this.lockFile, held.pid);
      // Stale: move it aside (atomic; of two processes taking over, one wins the rename), check it
      // is still the lock we judged, and try again.
      const aside = `${this.lockFile}.stale-${process.pid}`;
      try {
        await rename(this.lockFile, aside);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
      const moved = await readLockIfExists(aside);
      await rm(aside, { force: true });
      if (moved !== seen) {
        // Another process took the stale lock over between our read and rename: give it back.
        if (moved !== null) await writeFile(this.lockFile, moved, { flag: 'wx', mode: 0o644 }).catch(() => undefined);
        continue;
      }
      this.log.warn(
        { event: 'state_lock_stale', file: this.lockFile, pid, reason: own ? 'own' : (stale ?? 'unreadable') },
        own
          ? `ban state lock ${this.lockFile} names this process (pid ${pid}); taking it over`
          : stale === 'reboot'
            ? `ban state lock ${this.lockFile} was left by pid ${pid} before the last reboot (another boot id); taking it over`
            : stale === 'pid-reused'
              ? `ban state lock ${this.lockFile} was left by pid ${pid}, which now runs another process (another start time; the pid was reused); taking it over`
              : `ban state lock ${this.lockFile} was left by pid ${pid ?? '(unreadable)'}, which is not running (killed?); taking it over`,
      );
      heldLocks.delete(this.lockFile);
    }
  }

  private async unlock(): Promise<void> {
    if (heldLocks.get(this.lockFile) !== this) return;
    heldLocks.delete(this.lockFile);
    try {
      await unlink(this.lockFile);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ event: 'state_unlock_error', file: this.lockFile, err: e }, `cannot remove ban state lock ${this.lockFile}: ${(e as Error).message}`);
    }
  }

  private async read(): Promise<BanState> {
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
    this.journal = await this.openJournal(this.journalFile);
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
      // Runs once even with nothing pending: a retry of the repair / resync (retryTimer).
      do {
        const batch = this.pending;
        this.pending = [];
        // Never append after a partial line: cut the journal back first, or refuse the batch.
        const broken = this.needsRepair ? await this.repair() : null;
        if (broken) {
          // Refused, but the engine keeps these changes in memory: the disk must catch up later.
          this.needsResync = true;
          for (const p of batch) p.reject(broken);
          continue;
        }
        // The journal ends at a committed line again; bring the disk up to memory if it is behind.
        // If that fails, the batch is still journalled (its lines replay onto the old snapshot).
        if (this.needsResync) await this.resync();
        if (batch.length === 0) continue;
        const data = batch.map((p) => p.line).join('');
        const endTimer = this.metrics?.stateCommitSeconds.startTimer();
        try {
          await this.journal!.appendFile(data);
          await this.journal!.datasync();
          this.committedBytes += Buffer.byteLength(data);
          endTimer?.();
          for (const p of batch) p.resolve();
        } catch (e) {
          this.writeFailed(e as Error, this.journalFile);
          // Part of the batch may be on disk: cut it off before rejecting, so that a crash before
          // the next batch leaves no partial line either. The engine keeps the batch's changes in
          // memory, so then write them (all of memory) as a snapshot, or a restart would lose them.
          this.needsRepair = true;
          this.needsResync = true;
          if ((await this.repair()) === null && this.needsResync) await this.resync();
          for (const p of batch) p.reject(e as Error);
          continue;
        }
        if (this.committedBytes >= this.compactAfterBytes) {
          try {
            await this.compact();
          } catch (e) {
            // The journal still holds everything; the next batch tries again.
            this.writeFailed(e as Error, this.opts.file);
          }
        }
      } while (this.pending.length > 0);
    } finally {
      this.flushing = null;
      this.scheduleRetry();
    }
  }

  /** While the journal is broken or the disk is behind memory, retries even if no batch comes. */
  private scheduleRetry(): void {
    if (this.closed || this.retryTimer || !(this.needsRepair || this.needsResync)) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.closed) this.flushing ??= this.flushLoop();
    }, this.retryAfterMs);
    this.retryTimer.unref();
  }

  /**
   * Writes the in-memory state (which holds every change whose write failed) as the snapshot, onto
   * a fresh empty journal. Returns whether the disk now matches memory; a failure is logged, and
   * the caller tries again later.
   */
  private async resync(): Promise<boolean> {
    try {
      await this.compactOntoFreshJournal();
    } catch (e) {
      this.writeFailed(e as Error, this.opts.file);
      return false;
    }
    this.log.warn(
      { event: 'state_resynced', file: this.opts.file },
      `ban state ${this.opts.file} rewritten from memory after a failed write: changes whose write failed are on disk now`,
    );
    return true;
  }

  /**
   * After a failed write: truncates the journal back to its committed length. If that fails,
   * writes a snapshot and starts a fresh journal file (renamed into place, then reopened). Returns
   * null once the journal ends at a committed line again, else the error to refuse appends with.
   */
  private async repair(): Promise<Error | null> {
    try {
      await this.journal!.truncate(this.committedBytes);
      await this.journal!.datasync();
      this.needsRepair = false;
      this.log.warn(
        { event: 'state_journal_repaired', file: this.journalFile, bytes: this.committedBytes },
        `ban journal ${this.journalFile} cut back to its last committed line (${this.committedBytes} bytes) after a failed write`,
      );
      return null;
    } catch (e) {
      this.writeFailed(e as Error, this.journalFile);
    }
    try {
      await this.compactOntoFreshJournal();
      this.needsRepair = false;
      this.log.warn(
        { event: 'state_journal_repaired', file: this.journalFile, bytes: 0, compacted: true },
        `ban journal ${this.journalFile} replaced by a fresh one after a snapshot, as it could not be cut back after a failed write`,
      );
      return null;
    } catch (e) {
      this.writeFailed(e as Error, this.opts.file);
      return new Error(
        `ban journal ${this.journalFile} may end in a partial line after a failed write and could not be repaired (${(e as Error).message}); refusing to journal changes until it can be`,
      );
    }
  }

  /**
   * Snapshot of the in-memory state (a superset of everything journalled), then an empty journal
   * renamed into place. Until that rename the old journal (and handle) stay in use, so a failure
   * at any step leaves things as they were.
   */
  private async compactOntoFreshJournal(): Promise<void> {
    await this.writeSnapshot(this.opts.file, encodeSnapshot(this.source!(), this.now()));
    const tmp = `${this.journalFile}.tmp-${process.pid}`;
    await rm(tmp, { force: true });
    let fresh: FileHandle | undefined;
    try {
      fresh = await this.openJournal(tmp);
      await fresh.sync();
      await rename(tmp, this.journalFile);
    } catch (e) {
      await fresh?.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw e;
    }
    const old = this.journal;
    this.journal = fresh;
    this.committedBytes = 0;
    this.needsResync = false;
    await old?.close().catch(() => undefined);
    await syncDir(dirname(this.journalFile));
  }

  private writeFailed(e: Error, file: string): void {
    this.metrics?.stateWriteErrors.inc();
    this.log.error({ event: 'state_write_error', file, err: e }, `cannot write ban state ${file}: ${e.message}`);
  }

  /** Snapshot first (atomic), then truncate: a crash in between only replays lines already in it. */
  private async compact(): Promise<void> {
    await this.writeSnapshot(this.opts.file, encodeSnapshot(this.source!(), this.now()));
    await this.journal!.truncate(0);
    this.committedBytes = 0;
    await this.journal!.sync();
    this.needsResync = false;
  }

  /** Waits for pending writes, closes the journal and releases the lock. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    try {
      while (this.flushing) await this.flushing;
      // A last chance for the disk to catch up with memory (it may work again by now).
      if (this.needsRepair && this.journal) await this.repair();
      if (this.needsResync && this.journal && !this.needsRepair) await this.resync();
      await this.journal?.close();
      this.journal = null;
    } finally {
      await this.unlock();
    }
  }

  private stamp(): string {
    return new Date(this.now()).toISOString().replace(/[:.]/g, '-');
  }
}

async function readLockIfExists(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** What a lock file records about its holder; `bootId` and `startTime` only when /proc told. */
interface LockRecord {
  readonly pid: number;
  readonly bootId?: string;
  readonly startTime?: string;
}

/** JSON `{pid, bootId?, startTime?}`, or a bare pid (locks of older versions); null when neither. */
function parseLock(text: string): LockRecord | null {
  const t = text.trim();
  if (/^[1-9]\d*$/.test(t)) return validPid(Number(t)) ? { pid: Number(t) } : null;
  let v: unknown;
  try {
    v = JSON.parse(t);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  if (typeof o['pid'] !== 'number' || !validPid(o['pid'])) return null;
  return {
    pid: o['pid'],
    ...(typeof o['bootId'] === 'string' && o['bootId'] !== '' ? { bootId: o['bootId'] } : {}),
    ...(typeof o['startTime'] === 'string' && /^\d+$/.test(o['startTime']) ? { startTime: o['startTime'] } : {}),
  };
}

function validPid(pid: number): boolean {
  return Number.isSafeInteger(pid) && pid > 0;
}

/**
 * Why a lock held by another pid is stale, or null when its holder may still be running: another
 * boot id (the lock survived a reboot; its pid means nothing now), a dead pid, or a live pid whose
 * start time is not the recorded one (reused by another process). What /proc cannot tell (no
 * /proc, hidepid, a lock of an older version) is not taken as stale: liveness alone decides.
 */
async function staleReason(held: LockRecord, mine: LockRecord): Promise<'reboot' | 'dead' | 'pid-reused' | null> {
  if (held.bootId !== undefined && mine.bootId !== undefined && held.bootId !== mine.bootId) return 'reboot';
  if (!isAlive(held.pid)) return 'dead';
  if (held.startTime !== undefined) {
    const now = await processStartTime(held.pid);
    if (now !== undefined && now !== held.startTime) return 'pid-reused';
  }
  return null;
}

let ownRecord: Promise<LockRecord> | null = null;

/** This process's lock record (read once: neither the boot id nor the start time changes). */
function ownLockRecord(): Promise<LockRecord> {
  ownRecord ??= (async () => {
    const [bootId, startTime] = await Promise.all([readBootId(), processStartTime(process.pid)]);
    return { pid: process.pid, ...(bootId !== undefined ? { bootId } : {}), ...(startTime !== undefined ? { startTime } : {}) };
  })();
  return ownRecord;
}

async function readBootId(): Promise<string | undefined> {
  try {
    const id = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    return id === '' ? undefined : id;
  } catch {
    return undefined;
  }
}

/**
 * Field 22 of /proc/<pid>/stat (start time after boot, clock ticks), or undefined when unreadable.
 * The command name (field 2) may hold spaces and parentheses: fields are counted after its last `)`.
 */
async function processStartTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 1).trim().split(/\s+/);
    const start = fields[22 - 3]; // fields[0] is field 3 (state)
    return start !== undefined && /^\d+$/.test(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

/** Signal 0 checks existence only; EPERM means it exists but belongs to another user. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
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
  await syncDir(dirname(file));
}

async function syncDir(path: string): Promise<void> {
  const dir = await open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
