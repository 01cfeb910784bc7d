import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { BanEngine } from '../../../src/bans/ban-engine.js';
import { createBansMetrics } from '../../../src/bans/metrics.js';
import type { BanPolicyOptions } from '../../../src/bans/policy.js';
import { StateStore, type StateStoreOptions } from '../../../src/bans/state-store.js';
import { Clock, capturingLogger, failure, metricValue } from './fixtures.js';
import { testDir } from '../../helpers/temp-dir.js';

const tempDir = (t: TestContext): string => testDir(t, 'authban-bans-');

function open(file: string, clock: Clock, opts: { policy?: Partial<BanPolicyOptions>; store?: Partial<StateStoreOptions> } = {}) {
  const { log, lines } = capturingLogger();
  const registry = new Registry();
  const metrics = createBansMetrics(registry);
  const store = new StateStore({ file, ...opts.store }, { log, metrics, now: clock.now });
  const engine = new BanEngine({ log, metrics, store, now: clock.now, tickMs: 0, policy: opts.policy ?? {} });
  return { engine, store, lines, registry };
}

test('round trip: bans, evidence and repeat-offender history survive a restart', async (t) => {
  const file = join(tempDir(t), 'state.json');
  const clock = new Clock();
  const a = open(file, clock, { policy: { maxretry: 2 } });
  assert.deepEqual(await a.engine.start(), []);
  a.engine.report(failure('198.51.100.7', clock.now(), { user: 'bob' }));
  const r = a.engine.report(failure('198.51.100.7', clock.now(), { user: 'bob' }));
  assert.equal(r.kind, 'banned');
  assert.equal(r.kind === 'banned' && (await r.durable), true);
  await a.engine.ban('2001:db8:9::1', { seconds: null, reason: 'manual test', by: 'ops' });
  await a.engine.ban('203.0.113.1', { seconds: 10 });
  const before = a.engine.list();
  await a.engine.stop();

  clock.advance(10); // 203.0.113.1 has just expired
  const b = open(file, clock, { policy: { maxretry: 2 } });
  const restored = await b.engine.start();
  assert.deepEqual(restored, [
    { target: '198.51.100.7', family: 4, expiresAt: clock.now() - 10_000 + 600_000 },
    { target: '2001:db8:9::/64', family: 6, expiresAt: null },
  ]);
  assert.deepEqual(b.engine.list(), before.filter((x) => x.target !== '203.0.113.1'));
  assert.equal(b.engine.list()[0]!.evidence[0]!.user, 'bob');
  assert.equal(b.engine.isBanned('2001:db8:9::abcd'), true);
  assert.equal(b.engine.isBanned('203.0.113.1'), false);
  // History came back too: 203.0.113.1's next ban is its second.
  assert.equal((await b.engine.ban('203.0.113.1')).count, 2);
  await b.engine.stop();
});

test('a manual unban stays unbanned after restart, also without a clean stop', async (t) => {
  const file = join(tempDir(t), 'state.json');
  const clock = new Clock();
  const a = open(file, clock);
  await a.engine.start();
  await a.engine.ban('198.51.100.20');
  await a.engine.ban('198.51.100.21');
  assert.equal(await a.engine.unban('198.51.100.20'), true);
  // No stop(): the process "dies" here with both lines only in the journal.
  const b = open(file, clock);
  await b.engine.start();
  assert.deepEqual(b.engine.list().map((x) => x.target), ['198.51.100.21']);
  assert.equal(b.engine.explain('198.51.100.20').history, null);
  await b.engine.stop();
  await a.engine.stop();
});

test('group commit: a burst of bans shares fsyncs, and every ban is durable when acknowledged', async (t) => {
  const file = join(tempDir(t), 'state.json');
  const clock = new Clock();
  const a = open(file, clock);
  await a.engine.start();
  const n = 300;
  await Promise.all(Array.from({ length: n }, (_, i) => a.engine.ban(`198.51.${100 + (i >> 8)}.${i & 255}`)));
  const commits = (await a.registry.getSingleMetric('authban_bans_state_commit_seconds')!.get()).values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_count'))!.value;
  assert.ok(commits >= 1 && commits <= 3, `expected a few group commits for ${n} bans, got ${commits}`);
  const journal = (await readFile(a.store.journalFile, 'utf8')).trim().split('\n');
  assert.equal(journal.length, n, 'all lines are on disk as the promises resolved');
  await a.engine.stop();
});

test('the journal is compacted into the snapshot when it grows', async (t) => {
  const file = join(tempDir(t), 'state.json');
  const clock = new Clock();
  const a = open(file, clock, { store: { compactAfterBytes: 4096 } });
  await a.engine.start();
  for (let i = 0; i < 60; i++) await a.engine.ban(`203.0.113.${i}`);
  assert.ok((await stat(a.store.journalFile)).size < 4096 + 1024);
  const snap = JSON.parse(await readFile(file, 'utf8')) as { bans: unknown[] };
  assert.ok(snap.bans.length >= 40, `snapshot holds the compacted bans (${snap.bans.length})`);
  await a.engine.stop();
  const b = open(file, clock);
  await b.engine.start();
  assert.equal(b.engine.list().length, 60);
  await b.engine.stop();
});

test('torn last journal line (kill -9 during a write): everything before it is kept, the tail set aside', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'state.json');
  const clock = new Clock();
  const a = open(file, clock);
  await a.engine.start();
  await a.engine.ban('198.51.100.1');
  await a.engine.ban('198.51.100.2');
  await a.engine.stop();
  const torn = '{"op":"ban","ban":{"target":"198.51.100.3","fam';
  await appendFile(a.store.journalFile, torn);

  const b = open(file, clock);
  await b.engine.start();
  assert.deepEqual(b.engine.list().map((x) => x.target), ['198.51.100.1', '198.51.100.2']);
  const warn = b.lines.find((l) => l.event === 'state_torn_tail')!;
  assert.equal(warn.file, a.store.journalFile);
  assert.equal(warn.line, 3);
  assert.equal(await readFile(warn.savedAs as string, 'utf8'), torn);
  assert.equal(await metricValue(b.registry, 'authban_bans_state_torn_tails_total'), 1);
  assert.equal(b.lines.some((l) => l.event === 'state_corrupt'), false, 'a torn tail is not corruption');
  assert.equal((await stat(b.store.journalFile)).size, 0, 'compacted at start');
  await b.engine.stop();
});

test('a corrupt journal line: reported with its line number, file copied aside, the rest kept', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'state.json');
  const clock = new Clock();
  const a = open(file, clock);
  await a.engine.start();
  await a.engine.stop();
  const good = (target: string) => JSON.stringify({ op: 'ban', ban: { target, family: 4, reason: 'manual', count: 1, createdAt: clock.now(), expiresAt: null, evidence: [] } });
  const text = [good('198.51.100.1'), 'garbage{', good('198.51.100.2'), '{"op":"ban","ban":{"target":"nope"}}', ''].join('\n');
  await writeFile(a.store.journalFile, text);

  const b = open(file, clock);
  await b.engine.start();
  assert.deepEqual(b.engine.list().map((x) => x.target).sort(), ['198.51.100.1', '198.51.100.2']);
  const err = b.lines.find((l) => l.event === 'state_corrupt')!;
  assert.equal(err.file, b.store.journalFile);
  assert.match((err.problems as string[])[0]!, /^line 2: not valid JSON/);
  assert.match((err.problems as string[])[1]!, /^line 4: ban\.target: not an address/);
  assert.match(err.msg as string, /state\.json\.journal is corrupt/);
  assert.equal(await readFile(err.savedAs as string, 'utf8'), text);
  assert.match(err.savedAs as string, /state\.json\.journal\.corrupt-\d{4}-/);
  assert.equal(await metricValue(b.registry, 'authban_bans_state_corrupt_files_total', { file: 'journal' }), 1);
  await b.engine.stop();
});

test('a corrupt snapshot: reported, set aside as state.json.corrupt-<time>, the journal still applies', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'state.json');
  const clock = new Clock();
  const a = open(file, clock);
  await a.engine.start();
  await a.engine.ban('198.51.100.1');
  // Die without stop; then the snapshot gets mangled on disk.
  await writeFile(file, '{"version":1,"bans":[{"target"');
  const b = open(file, clock);
  await b.engine.start();
  assert.deepEqual(b.engine.list().map((x) => x.target), ['198.51.100.1']);
  const err = b.lines.find((l) => l.event === 'state_corrupt')!;
  assert.equal(err.file, file);
  assert.match((err.problems as string[])[0]!, /not valid JSON/);
  const names = await readdir(dir);
  const aside = names.find((n) => n.startsWith('state.json.corrupt-'));
  assert.ok(aside, names.join(' '));
  assert.equal(await readFile(join(dir, aside), 'utf8'), '{"version":1,"bans":[{"target"');
  assert.equal(JSON.parse(await readFile(file, 'utf8')).bans.length, 1, 'a fresh snapshot replaced it');
  await b.engine.stop();
  await a.engine.stop();
});

test('a snapshot with one bad entry keeps the others', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'state.json');
  const clock = new Clock();
  const ok = { target: '198.51.100.1', family: 4, reason: 'manual', count: 1, createdAt: clock.now(), expiresAt: null, evidence: [] };
  await writeFile(file, JSON.stringify({ version: 1, savedAt: 0, bans: [ok, { ...ok, target: '198.51.100.2', expiresAt: 'soon' }], offenders: [] }));
  const b = open(file, clock);
  await b.engine.start();
  assert.deepEqual(b.engine.list().map((x) => x.target), ['198.51.100.1']);
  assert.match(((b.lines.find((l) => l.event === 'state_corrupt')!.problems) as string[])[0]!, /bans\[1\]\.expiresAt/);
  await b.engine.stop();
});

test('kill -9 of a real process mid-burst: every acknowledged ban is there after restart', async (t) => {
  const file = join(tempDir(t), 'state.json');
  const script = fileURLToPath(new URL('./ban-writer.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const acked: string[] = [];
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child too slow: ${acked.length} acks`)), 20_000);
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) if (l.startsWith('acked ')) acked.push(l.slice(6));
      if (acked.length >= 2000 && child.signalCode === null) {
        clearTimeout(timer);
        child.kill('SIGKILL');
        resolve();
      }
    });
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      if (sig !== 'SIGKILL') reject(new Error(`child exited early: ${code} ${sig}`));
    });
  });
  await new Promise((r) => (child.exitCode === null && child.signalCode === null ? child.once('exit', r) : r(null)));
  const clock = new Clock(Date.now());
  const b = open(file, clock);
  await b.engine.start();
  const have = new Set(b.engine.list().map((x) => x.target));
  const missing = acked.filter((x) => !have.has(x));
  assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged bans lost`);
  assert.ok(have.size >= acked.length);
  await b.engine.stop();
});
