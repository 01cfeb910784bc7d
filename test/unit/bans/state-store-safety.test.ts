/**
 * State store safety: a failed journal write never costs a later acknowledged change, and two
 * processes never share one state file.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdir, mkdtemp, open as fsOpen, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { BanEngine } from '../../../src/bans/ban-engine.js';
import { createBansMetrics } from '../../../src/bans/metrics.js';
import { StateLockedError, StateStore, type StateStoreDeps } from '../../../src/bans/state-store.js';
import { Clock, capturingLogger, metricValue } from './fixtures.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'authban-bans-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function open(file: string, clock: Clock, more: Partial<StateStoreDeps> = {}) {
  const { log, lines } = capturingLogger();
  const registry = new Registry();
  const metrics = createBansMetrics(registry);
  const store = new StateStore({ file }, { log, metrics, now: clock.now, ...more });
  const engine = new BanEngine({ log, metrics, store, now: clock.now, tickMs: 0 });
  return { engine, store, lines, registry };
}

function enospc(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
}

/**
 * Journal handles whose failures the test switches on: `partialWrite` writes the first half of the
 * next append for real (a partial line on disk) and then fails like a full disk; `truncate` and
 * `open` fail while set.
 */
function faults() {
  const f = { partialWrite: false, truncate: false, open: false, opened: 0 };
  const openJournal = async (file: string): Promise<FileHandle> => {
    if (f.open) throw Object.assign(new Error(`EIO: i/o error, open '${file}'`), { code: 'EIO' });
    f.opened++;
    const fh = await fsOpen(file, 'a', 0o600);
    return new Proxy(fh, {
      get(target, prop) {
        if (prop === 'appendFile' && f.partialWrite) {
          return async (data: string) => {
            f.partialWrite = false;
            await target.write(data.slice(0, Math.floor(data.length / 2)));
            throw enospc();
          };
        }
        if (prop === 'truncate' && f.truncate) return async () => Promise.reject(Object.assign(new Error('EIO: i/o error, ftruncate'), { code: 'EIO' }));
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  };
  return { f, openJournal };
}

async function reload(file: string, clock: Clock) {
  const b = open(file, clock);
  await b.engine.start();
  const targets = b.engine.list().map((x) => x.target);
  const bad = b.lines.filter((l) => l.event === 'state_corrupt' || l.event === 'state_torn_tail');
  await b.engine.stop();
  return { targets, bad };
}

test('disk full mid-write: the partial line is cut off, and later acknowledged bans survive a reload', async (t) => {
  const file = join(await tempDir(t), 'state.json');
  const clock = new Clock();
  const { f, openJournal } = faults();
  const a = open(file, clock, { openJournal });
  await a.engine.start();
  await a.engine.ban('198.51.100.1');
  const committed = (await readFile(a.store.journalFile)).length;

  f.partialWrite = true;
  await assert.rejects(a.engine.ban('198.51.100.2'), /ENOSPC/);
  assert.equal((await readFile(a.store.journalFile)).length, committed, 'journal cut back to its committed length');
  assert.equal(await metricValue(a.registry, 'authban_bans_state_write_errors_total'), 1);
  assert.ok(a.lines.some((l) => l.event === 'state_journal_repaired'));

  await a.engine.ban('198.51.100.3');
  await Promise.all([a.engine.ban('198.51.100.4'), a.engine.unban('198.51.100.1')]);
  await a.engine.stop(); // close does not compact: the reload replays the journal

  const { targets, bad } = await reload(file, clock);
  assert.deepEqual(targets.sort(), ['198.51.100.3', '198.51.100.4']);
  assert.deepEqual(bad, [], 'no corrupt or torn journal line');
});

test('disk full and the truncation fails too: compacted onto a fresh journal, later acknowledged bans survive', async (t) => {
  const file = join(await tempDir(t), 'state.json');
  const clock = new Clock();
  const { f, openJournal } = faults();
  const a = open(file, clock, { openJournal });
  await a.engine.start();
  await a.engine.ban('198.51.100.1');

  f.partialWrite = true;
  f.truncate = true;
  await assert.rejects(a.engine.ban('198.51.100.2'), /ENOSPC/);
  assert.equal(await readFile(a.store.journalFile, 'utf8'), '', 'a fresh, empty journal');
  const snap = JSON.parse(await readFile(file, 'utf8')) as { bans: { target: string }[] };
  assert.ok(snap.bans.some((b) => b.target === '198.51.100.1'), 'the snapshot holds what the old journal did');

  await a.engine.ban('198.51.100.3'); // onto the fresh handle: its truncate is not reached
  await a.engine.stop();
  const { targets, bad } = await reload(file, clock);
  assert.ok(targets.includes('198.51.100.1') && targets.includes('198.51.100.3'), targets.join(' '));
  assert.deepEqual(bad, []);
});

test('a journal that cannot be repaired refuses further acks with a clear error, until it can be', async (t) => {
  const file = join(await tempDir(t), 'state.json');
  const clock = new Clock();
  const { f, openJournal } = faults();
  const a = open(file, clock, { openJournal });
  await a.engine.start();
  await a.engine.ban('198.51.100.1');

  f.partialWrite = true;
  f.truncate = true;
  f.open = true;
  await assert.rejects(a.engine.ban('198.51.100.2'), /ENOSPC/);
  await assert.rejects(a.engine.ban('198.51.100.3'), (e: Error) => {
    assert.match(e.message, /state\.json\.journal may end in a partial line after a failed write and could not be repaired .*refusing/);
    return true;
  });
  assert.ok((await metricValue(a.registry, 'authban_bans_state_write_errors_total')) >= 4, 'each failed write and repair is counted');
  assert.ok(a.lines.some((l) => l.event === 'state_write_error' && String(l.msg).includes('state.json.journal')));

  f.truncate = false;
  f.open = false;
  await a.engine.ban('198.51.100.4');
  await a.engine.stop();
  const { targets, bad } = await reload(file, clock);
  assert.ok(targets.includes('198.51.100.1') && targets.includes('198.51.100.4'), targets.join(' '));
  assert.deepEqual(bad, []);
});

function spawnHolder(t: TestContext, file: string): Promise<{ child: ChildProcess; pid: number }> {
  const script = fileURLToPath(new URL('./lock-holder.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('lock holder too slow')), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /^ready (\d+)$/m.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve({ child, pid: Number(m[1]) });
      }
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`lock holder exited early: ${code} ${sig}`));
    });
  });
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
}

test('a second store on the same state file is refused while the first holds it; close releases the lock', async (t) => {
  const file = join(await tempDir(t), 'state.json');
  const clock = new Clock();
  const { child, pid } = await spawnHolder(t, file);
  assert.equal((await readFile(`${file}.lock`, 'utf8')).trim(), String(pid));
  const journalBefore = await readFile(`${file}.journal`, 'utf8');

  const b = open(file, clock);
  await assert.rejects(b.engine.start(), (e: unknown) => {
    assert.ok(e instanceof StateLockedError, String(e));
    assert.equal(e.name, 'StateLockedError');
    assert.equal(e.lockFile, `${file}.lock`);
    assert.equal(e.pid, pid);
    assert.match(e.message, new RegExp(`state\\.json\\.lock is held by pid ${pid}`));
    return true;
  });
  assert.equal(await readFile(`${file}.journal`, 'utf8'), journalBefore, "the holder's journal was not touched");
  assert.equal((await readFile(`${file}.lock`, 'utf8')).trim(), String(pid), "the holder's lock was not touched");

  child.kill('SIGTERM');
  assert.deepEqual(await exited(child), { code: 0, signal: null });
  await assert.rejects(access(`${file}.lock`), { code: 'ENOENT' }, 'close released the lock');

  const c = open(file, clock);
  await c.engine.start();
  assert.deepEqual(c.engine.list().map((x) => x.target), ['198.51.100.99']);
  assert.equal((await readFile(`${file}.lock`, 'utf8')).trim(), String(process.pid));
  assert.equal(c.lines.some((l) => l.event === 'state_lock_stale'), false);
  await c.engine.stop();
  await assert.rejects(access(`${file}.lock`), { code: 'ENOENT' });
});

test('a stale lock (holder killed with kill -9) is taken over and logged', async (t) => {
  const file = join(await tempDir(t), 'state.json');
  const clock = new Clock();
  const { child, pid } = await spawnHolder(t, file);
  child.kill('SIGKILL');
  assert.equal((await exited(child)).signal, 'SIGKILL');
  assert.equal((await readFile(`${file}.lock`, 'utf8')).trim(), String(pid), 'kill -9 leaves the lock behind');

  const b = open(file, clock);
  await b.engine.start();
  assert.deepEqual(b.engine.list().map((x) => x.target), ['198.51.100.99']);
  const warn = b.lines.find((l) => l.event === 'state_lock_stale')!;
  assert.ok(warn, 'the takeover is logged');
  assert.equal(warn.pid, pid);
  assert.equal(warn.file, `${file}.lock`);
  assert.match(warn.msg as string, new RegExp(`left by pid ${pid}, which is not running`));
  assert.equal((await readFile(`${file}.lock`, 'utf8')).trim(), String(process.pid));
  await b.engine.stop();
  await assert.rejects(access(`${file}.lock`), { code: 'ENOENT' });
});

test('a lock file with garbage in it is taken over; a failed load releases the lock it took', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'state.json');
  const clock = new Clock();
  await writeFile(`${file}.lock`, 'not a pid');
  const b = open(file, clock);
  await b.engine.start();
  assert.ok(b.lines.some((l) => l.event === 'state_lock_stale'));
  await b.engine.stop();

  // A snapshot path that cannot be read (a directory): load fails, the lock is not left behind.
  const bad = join(dir, 'sub');
  await mkdir(bad);
  const c = open(bad, clock);
  await assert.rejects(c.engine.start(), /cannot read ban state/);
  await assert.rejects(access(`${bad}.lock`), { code: 'ENOENT' });
});
