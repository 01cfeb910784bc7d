// The file follower against a log path that turns into something other than a regular file
// (FIFO, directory, a file that cannot be read) and against resume points inside a line.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import {
  appendFileSync, closeSync, constants, existsSync, mkdirSync, openSync, renameSync, rmSync, rmdirSync,
  symlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { createLogsMetrics, type LogsMetrics } from '../../src/logs/metrics.js';
import { FileFollower } from '../../src/logs/sources/file-follower.js';
import { testDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';
import { capturingLogger } from '../unit/bans/fixtures.js';

const run = promisify(execFile);

async function fileErrors(metrics: LogsMetrics): Promise<number> {
  return (await metrics.sourceErrors.get()).values.find((v) => v.labels.source === 'file')?.value ?? 0;
}

/** Whether `p` settles within `ms`: a follower that hangs must fail the test, not stall it. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A follower that opened the FIFO blocking (the defect under test) holds a threadpool thread
 * until a writer shows up, and the test process could not exit; this is that writer.
 */
function releaseBlockedReaders(fifo: string): void {
  if (existsSync(fifo)) closeSync(openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK));
}

function setup(t: TestContext) {
  const dir = testDir(t, 'authban-follow-');
  const metrics = createLogsMetrics(new Registry());
  const { log, lines: logged } = capturingLogger();
  const seen: string[] = [];
  return { dir, path: join(dir, 'mail.log'), metrics, log, logged, seen };
}

test('follower: a FIFO at the path is refused at once, reported once, and waited out', async (t) => {
  const { path, metrics, log, logged, seen } = setup(t);
  await run('mkfifo', [path]);
  const f = new FileFollower({ path, pollIntervalMs: 20 }, (l) => seen.push(l.line), { logger: log, metrics });
  const started = await settlesWithin(f.start(), 2000);
  releaseBlockedReaders(path);
  assert.ok(started, 'start() on a FIFO returned');
  t.after(() => f.stop());
  await sleep(200);
  const warnings = logged.filter((l) => l.path === path && /FIFO, not a regular file/.test(String(l.msg)));
  assert.equal(warnings.length, 1);
  assert.equal(await fileErrors(metrics), 1);
  rmSync(path);
  writeFileSync(path, 'first\nsecond\n');
  // Like a file that appears late: read from its start.
  await waitFor(() => seen.length === 2, 5000, 'lines of the regular file');
  assert.deepEqual(seen, ['first', 'second']);
  assert.ok(await settlesWithin(f.stop(), 2000), 'stop() returned');
});

test('follower: a path flapping between a regular file and a FIFO never hangs start() or stop()', async (t) => {
  const { dir, path, log } = setup(t);
  const real = join(dir, 'real');
  const fifo = join(dir, 'fifo');
  writeFileSync(real, 'line\n');
  await run('mkfifo', [fifo]);
  // Another process swaps the two in, so a swap can land between the follower's stat and its open.
  const flapper = spawn('sh', ['-c', 'i=0; while [ $i -lt 3000 ]; do ln -f "$1" "$3"; ln -f "$2" "$3"; i=$((i+1)); done', 'sh', real, fifo, path], { stdio: 'ignore' });
  t.after(() => flapper.kill());
  const f = new FileFollower({ path, pollIntervalMs: 10 }, () => undefined, { logger: log });
  // A hang never settles; the bound only has to outlast a loaded machine.
  const outcome = async (what: string, p: Promise<unknown>): Promise<string> => {
    try {
      return (await settlesWithin(p, 5000)) ? 'ok' : `${what} hung`;
    } catch (e) {
      return `${what} failed: ${(e as Error).message}`;
    }
  };
  let bad: string | undefined;
  const until = Date.now() + 1500;
  while (bad === undefined && Date.now() < until) {
    for (const r of [await outcome('start()', f.start()), await outcome('stop()', f.stop())]) if (r !== 'ok') bad ??= r;
  }
  flapper.kill();
  releaseBlockedReaders(fifo);
  assert.equal(bad, undefined, bad);
});

test('follower: the path briefly a directory; the follower moves on to the file that replaces it', async (t) => {
  const { path, metrics, log, logged, seen } = setup(t);
  writeFileSync(path, 'before\n');
  const f = new FileFollower({ path, pollIntervalMs: 20, fromStart: true }, (l) => seen.push(l.line), { logger: log, metrics });
  t.after(() => f.stop());
  await f.start();
  await waitFor(() => seen.length === 1, 5000, 'first line');
  renameSync(path, `${path}.1`);
  mkdirSync(path);
  await sleep(200);
  rmdirSync(path);
  writeFileSync(path, 'after\n');
  await waitFor(() => seen.length === 2, 5000, 'line of the file after the directory');
  appendFileSync(path, 'more\n');
  await waitFor(() => seen.length === 3, 5000, 'appended line');
  assert.deepEqual(seen, ['before', 'after', 'more']);
  const warnings = logged.filter((l) => l.level === 40);
  assert.deepEqual(warnings.map((l) => [l.path, l.msg]), [[path, 'followed path is a directory, not a regular file; waiting for a regular file there']]);
  assert.equal(await fileErrors(metrics), 1);
});

test('follower: a replaced file that fails to read is dropped, not retried forever; repeats are logged once', async (t) => {
  const { dir, path, metrics, log, logged, seen } = setup(t);
  // A regular file whose every read fails (EIO at address 0), standing in for a failing disk.
  symlinkSync('/proc/self/mem', path);
  const f = new FileFollower({ path, pollIntervalMs: 20 }, (l) => seen.push(l.line), { logger: log, metrics });
  t.after(() => f.stop());
  await f.start();
  await waitFor(() => logged.length > 0, 5000, 'the read failure');
  // Each poll fails again and is counted, though logged once.
  for (let i = 0; i < 100 && (await fileErrors(metrics)) < 3; i++) await sleep(50);
  const failuresBefore = await fileErrors(metrics);
  assert.ok(failuresBefore >= 3, `failed reads counted each time (${failuresBefore})`);
  const next = join(dir, 'next');
  writeFileSync(next, 'after\n');
  renameSync(next, path);
  await waitFor(() => seen.length === 1, 5000, 'line of the replacing file');
  assert.deepEqual(seen, ['after']);
  await sleep(100);
  assert.deepEqual(logged.map((l) => [l.path, l.msg, (l.err as { code?: string } | undefined)?.code]), [
    [path, 'reading followed file failed', 'EIO'],
    [path, 'reading the replaced file failed; dropped it', 'EIO'],
  ]);
  // A poll may have failed once more before the rename; once dropped, the file fails no more.
  const after = await fileErrors(metrics);
  assert.ok(after >= failuresBefore + 1, `the drop is counted (${failuresBefore} -> ${after})`);
  await sleep(200);
  assert.equal(await fileErrors(metrics), after, 'no failure counted once the broken file is dropped');
});

test('follower: a position saved inside an over-long line resumes at the next line, not the tail', async (t) => {
  const { path, metrics, seen } = setup(t);
  writeFileSync(path, 'first\n' + 'A'.repeat(5000));
  const a = new FileFollower({ path, pollIntervalMs: 20, fromStart: true, maxLineBytes: 100 }, (l) => seen.push(l.line), { metrics });
  await a.start();
  await waitFor(() => seen.length === 2, 5000, 'first and the truncated line');
  await a.stop();
  const saved = a.position();
  appendFileSync(path, ' sendmail[1]: forged line from the tail\nnext\n');
  const b = new FileFollower({ path, pollIntervalMs: 20, resume: saved, maxLineBytes: 100 }, (l) => seen.push(l.line), { metrics });
  t.after(() => b.stop());
  await b.start();
  await waitFor(() => seen.length >= 3, 5000, 'line after the over-long one');
  await sleep(100);
  assert.deepEqual(seen, ['first', 'A'.repeat(100), 'next']);
  assert.equal((await metrics.overlongLines.get()).values[0]?.value, 1);
});

test('follower: started at the end of a half-written line, it skips the rest of that line', async (t) => {
  const { path, seen } = setup(t);
  writeFileSync(path, 'complete\nhalf a li');
  const f = new FileFollower({ path, pollIntervalMs: 20 }, (l) => seen.push(l.line));
  t.after(() => f.stop());
  await f.start();
  appendFileSync(path, 'ne\nnext\n');
  await waitFor(() => seen.length >= 1, 5000, 'next');
  await sleep(100);
  assert.deepEqual(seen, ['next']);
});
