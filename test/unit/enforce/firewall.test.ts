/**
 * Firewall (the daemon's wrapper around one backend): bans and unbans made while a start is
 * in flight reach the kernel once it succeeds, and bans longer than the kernel's timeout cap
 * are re-written before the kernel would end them. A fake backend stands in for the kernel.
 */
import assert from 'node:assert/strict';
import test from 'node:test';
import pino from 'pino';
import type { BanEntry, FirewallBackend } from '../../../src/enforce/backend.js';
import { Firewall, type FirewallDeps } from '../../../src/enforce/firewall.js';
import { IPSET_MAX_TIMEOUT } from '../../../src/enforce/ipset.js';
import { NFT_MAX_TIMEOUT } from '../../../src/enforce/nftables.js';
import { DEFAULT_FIREWALL_OPTIONS } from '../../../src/enforce/options.js';
import { waitFor } from '../../helpers/wait-for.js';

const log = pino({ level: 'silent' });
const NOW = 1_700_000_000_000;
const DAY = 86_400_000;

/** A kernel stand-in: start() installs its snapshot and resolves (or fails) only when told to. */
class FakeBackend implements FirewallBackend {
  readonly kernel = new Map<string, BanEntry>();
  readonly calls: string[] = [];
  starts = 0;
  stops = 0;
  private gates: { resolve: () => void; reject: (e: Error) => void }[] = [];
  constructor(readonly name = 'fake') {}
  /** Start attempts waiting for release()/fail(). */
  get waiting(): number {
    return this.gates.length;
  }
  release(): void {
    this.gates.shift()!.resolve();
  }
  fail(msg = 'xtables lock held'): void {
    this.gates.shift()!.reject(new Error(msg));
  }
  async start(restore: readonly BanEntry[]): Promise<void> {
    this.starts++;
    const snapshot = [...restore];
    await new Promise<void>((resolve, reject) => this.gates.push({ resolve, reject }));
    this.kernel.clear();
    for (const b of snapshot) this.kernel.set(b.target, b);
    this.calls.push(`start:${snapshot.map((b) => b.target).join(',')}`);
  }
  async banMany(entries: readonly BanEntry[]): Promise<void> {
    this.calls.push(`ban:${entries.map((b) => b.target).join(',')}`);
    for (const b of entries) this.kernel.set(b.target, b);
  }
  async unbanMany(entries: readonly BanEntry[]): Promise<void> {
    this.calls.push(`unban:${entries.map((b) => b.target).join(',')}`);
    for (const b of entries) this.kernel.delete(b.target);
  }
  async list(): Promise<BanEntry[]> {
    return [...this.kernel.values()];
  }
  async stop(): Promise<void> {
    this.stops++;
  }
}

/** The engine's side: the active bans, and ban/unban wired to the firewall like main.ts does. */
function engine() {
  const active = new Map<string, BanEntry>();
  let fw: Firewall | null = null;
  return {
    active,
    activeBans: () => [...active.values()],
    attach(f: Firewall) {
      fw = f;
    },
    ban(target: string, expiresAt: number | null = null) {
      const b: BanEntry = { target, family: target.includes(':') ? 6 : 4, expiresAt };
      active.set(target, b);
      fw?.ban(b);
    },
    unban(target: string) {
      const b = active.get(target);
      active.delete(target);
      if (b) fw?.unban(b);
    },
  };
}

function firewall(backend: FakeBackend, eng: ReturnType<typeof engine>, over: Partial<FirewallDeps> = {}): Firewall {
  const fw = new Firewall(DEFAULT_FIREWALL_OPTIONS, { log, activeBans: eng.activeBans, backend, retryMs: 1, maxRetryMs: 5, ...over });
  eng.attach(fw);
  return fw;
}

const kernelTargets = (b: FakeBackend) => [...b.kernel.keys()].sort();
const activeTargets = (eng: ReturnType<typeof engine>) => [...eng.active.keys()].sort();
const sameAsEngine = (b: FakeBackend, eng: ReturnType<typeof engine>) => kernelTargets(b).join() === activeTargets(eng).join();

test('bans and unbans made during the initial start reach the kernel once it succeeds', async (t) => {
  const backend = new FakeBackend();
  const eng = engine();
  const fw = firewall(backend, eng);
  t.after(() => fw.stop());
  eng.ban('198.51.100.1');
  eng.ban('198.51.100.2');
  eng.ban('2001:db8::/64');
  const started = fw.start();
  await waitFor(() => backend.waiting === 1);
  // While the backend is starting (the xtables lock can hold it for seconds):
  eng.ban('198.51.100.3');
  eng.unban('198.51.100.2');
  eng.ban('198.51.100.4');
  eng.unban('198.51.100.4'); // banned and lifted within the start: never reaches the kernel
  eng.ban('198.51.100.1', NOW + DAY); // re-banned with another end: written again
  assert.equal(fw.status().state, 'starting');
  backend.release();
  await started;
  assert.equal(fw.status().state, 'running');
  assert.deepEqual(backend.calls, ['start:198.51.100.1,198.51.100.2,2001:db8::/64'], 'the start installed its snapshot');
  await waitFor(() => sameAsEngine(backend, eng), 5000, 'the kernel to match the engine');
  assert.deepEqual(kernelTargets(backend), ['198.51.100.1', '198.51.100.3', '2001:db8::/64']);
  assert.equal(backend.kernel.get('198.51.100.1')!.expiresAt, NOW + DAY);
  assert.deepEqual(backend.calls.slice(1), ['unban:198.51.100.2', 'ban:198.51.100.1,198.51.100.3'], 'one batch, only the difference');

  // After the start, ban()/unban() go straight to the batcher.
  eng.ban('198.51.100.5');
  eng.unban('198.51.100.3');
  await waitFor(() => sameAsEngine(backend, eng), 5000, 'later changes');
  assert.deepEqual(kernelTargets(backend), ['198.51.100.1', '198.51.100.5', '2001:db8::/64']);
});

test('nothing changed during the start: no batch after it', async () => {
  const backend = new FakeBackend();
  const eng = engine();
  const fw = firewall(backend, eng);
  eng.ban('198.51.100.1');
  const started = fw.start();
  await waitFor(() => backend.waiting === 1);
  backend.release();
  await started;
  await fw.stop(); // flushes the batcher
  assert.deepEqual(backend.calls, ['start:198.51.100.1']);
  assert.equal(backend.stops, 1);
});

test('bans and unbans made while failing and during the retry reach the kernel', async (t) => {
  const backend = new FakeBackend();
  const eng = engine();
  const fw = firewall(backend, eng);
  t.after(() => fw.stop());
  eng.ban('198.51.100.1');
  eng.ban('198.51.100.2');
  const started = fw.start();
  await waitFor(() => backend.waiting === 1);
  eng.ban('198.51.100.3');
  backend.fail();
  await started;
  assert.equal(fw.status().state, 'failing');
  assert.match(String(fw.status().lastError), /xtables lock/);
  eng.ban('198.51.100.4'); // while failing
  eng.unban('198.51.100.1');
  await waitFor(() => backend.waiting === 1, 5000, 'the retry');
  assert.equal(backend.starts, 2);
  eng.ban('198.51.100.5'); // during the retry
  eng.unban('198.51.100.3');
  backend.release();
  await waitFor(() => fw.status().state === 'running', 5000, 'the retry to succeed');
  assert.equal(fw.status().lastError, null);
  assert.deepEqual(backend.calls[0], 'start:198.51.100.2,198.51.100.3,198.51.100.4');
  await waitFor(() => sameAsEngine(backend, eng), 5000, 'the kernel to match the engine');
  assert.deepEqual(kernelTargets(backend), ['198.51.100.2', '198.51.100.4', '198.51.100.5']);
});

test('reload: stop waits for the old start, so it cannot land after the new one; changes in between are not lost', async () => {
  const oldBackend = new FakeBackend();
  const eng = engine();
  let fw = firewall(oldBackend, eng);
  eng.ban('198.51.100.1');
  void fw.start();
  await waitFor(() => oldBackend.waiting === 1);
  // Reload while the old start waits on its lock:
  const stopped = fw.stop();
  eng.ban('198.51.100.2'); // the old firewall ignores it; the new one's snapshot has it
  let done = false;
  void stopped.then(() => (done = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(done, false, 'stop waits for the start in flight');
  oldBackend.release();
  await stopped;
  assert.equal(fw.status().state, 'stopped', 'a start that ends after stop does not go running');
  assert.equal(oldBackend.stops, 1, 'the backend it did start is stopped');

  const newBackend = new FakeBackend();
  fw = firewall(newBackend, eng);
  const started = fw.start();
  await waitFor(() => newBackend.waiting === 1);
  eng.ban('198.51.100.3'); // during the new start
  newBackend.release();
  await started;
  await waitFor(() => sameAsEngine(newBackend, eng), 5000, 'the kernel to match the engine');
  assert.deepEqual(kernelTargets(newBackend), ['198.51.100.1', '198.51.100.2', '198.51.100.3']);
  await fw.stop();
  assert.deepEqual(oldBackend.calls, ['start:198.51.100.1'], 'the stopped firewall wrote nothing more');
});

/** A manual timer seam: records what was scheduled, runs it on tick(). */
function manualTimer() {
  const timers: { fn: () => void; ms: number; cancelled: boolean }[] = [];
  return {
    timers,
    every: (fn: () => void, ms: number) => {
      const t = { fn, ms, cancelled: false };
      timers.push(t);
      return () => {
        t.cancelled = true;
      };
    },
    tick() {
      for (const t of timers) if (!t.cancelled) t.fn();
    },
  };
}

for (const [name, cap] of [
  ['nftables', NFT_MAX_TIMEOUT],
  ['ipset', IPSET_MAX_TIMEOUT],
] as const) {
  test(`${name}: bans longer than the kernel timeout cap are re-written every refresh period`, async () => {
    const backend = new FakeBackend(name);
    const eng = engine();
    const timer = manualTimer();
    let now = NOW;
    const period = 6 * 3600_000;
    const fw = firewall(backend, eng, { refreshMs: period, now: () => now, every: timer.every });
    const capMs = cap * 1000;
    eng.ban('198.51.100.1', null); // no end: no kernel timeout, nothing to renew
    eng.ban('198.51.100.2', NOW + 3600_000); // short: the kernel has its real end
    eng.ban('198.51.100.3', NOW + 365 * DAY); // a year: the kernel would end it after cap
    eng.ban('198.51.100.4', NOW + capMs - 2 * period - 1000); // far enough below the cap
    eng.ban('198.51.100.5', NOW + capMs - 2 * period + 1000); // may outlive a cap written one period ago
    eng.ban('2001:db8::/64', NOW + capMs + 1000);
    const started = fw.start();
    assert.equal(timer.timers.length, 0, 'no refresh before the backend runs');
    await waitFor(() => backend.waiting === 1);
    backend.release();
    await started;
    assert.equal(timer.timers.length, 1);
    assert.equal(timer.timers[0]!.ms, period);

    timer.tick();
    await waitFor(() => backend.calls.length === 2, 5000, 'the refresh batch');
    assert.deepEqual(backend.calls[1], 'ban:198.51.100.3,198.51.100.5,2001:db8::/64');

    // A period later: the clock moved, the ban just over the threshold is now under it.
    now += period;
    eng.unban('198.51.100.3');
    await waitFor(() => backend.calls.length === 3);
    timer.tick();
    await waitFor(() => backend.calls.length === 4, 5000, 'the second refresh batch');
    assert.deepEqual(backend.calls.slice(2), ['unban:198.51.100.3', 'ban:2001:db8::/64']);

    await fw.stop();
    assert.equal(timer.timers[0]!.cancelled, true, 'stop cancels the refresh');
  });
}

test('a backend without kernel timeouts (iptables, none, others) schedules no refresh', async () => {
  for (const name of ['iptables', 'none', 'fake']) {
    const backend = new FakeBackend(name);
    const eng = engine();
    const timer = manualTimer();
    const fw = firewall(backend, eng, { every: timer.every });
    eng.ban('198.51.100.1', NOW + 365 * DAY);
    const started = fw.start();
    await waitFor(() => backend.waiting === 1);
    backend.release();
    await started;
    assert.equal(fw.status().state, 'running');
    assert.equal(timer.timers.length, 0, name);
    await fw.stop();
  }
});

test('the default refresh is an unref\'d interval that does not keep the process alive', async () => {
  const backend = new FakeBackend('nftables');
  const eng = engine();
  const fw = firewall(backend, eng, { refreshMs: 10, now: () => NOW });
  eng.ban('198.51.100.9', NOW + 365 * DAY);
  const started = fw.start();
  await waitFor(() => backend.waiting === 1);
  backend.release();
  await started;
  await waitFor(() => backend.calls.filter((c) => c === 'ban:198.51.100.9').length >= 2, 5000, 'two refreshes');
  await fw.stop();
  const n = backend.calls.length;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(backend.calls.length, n, 'nothing after stop');
});
