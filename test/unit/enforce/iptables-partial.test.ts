/**
 * The iptables backend against a stand-in kernel (xtables-standin.mjs) that fails or slows down
 * one tool on demand: IPv4 and IPv6 are separate restore commits, so one can succeed while the
 * other fails, and the backend's memory of what is installed must follow each family exactly.
 * No root needed; nothing touches the machine's firewall.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import pino from 'pino';
import type { BanEntry } from '../../../src/enforce/backend.js';
import { IptablesBackend } from '../../../src/enforce/iptables.js';
import { DEFAULT_FIREWALL_OPTIONS, type FirewallOptions } from '../../../src/enforce/options.js';

const log = pino({ level: 'silent' });
const STANDIN = new URL('./xtables-standin.mjs', import.meta.url).pathname;
const NOW = 1_700_000_000_000;
const HOUR = 3600_000;

const v4 = (target: string, expiresAt: number | null = NOW + HOUR): BanEntry => ({ target, family: 4, expiresAt });
const v6 = (target: string, expiresAt: number | null = NOW + HOUR): BanEntry => ({ target, family: 6, expiresAt });

function kernel(t: TestContext, over: Partial<FirewallOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'authban-xt-'));
  const clock = { now: NOW };
  const fw = new IptablesBackend(
    { ...DEFAULT_FIREWALL_OPTIONS, backend: 'iptables', commandAttempts: 1, ...over },
    { log, now: () => clock.now, commandPrefix: [process.execPath, STANDIN, dir] },
  );
  t.after(async () => {
    for (const f of ['fail-iptables-restore', 'fail-ip6tables-restore', 'slow-iptables-restore']) rmSync(join(dir, f), { force: true });
    await fw.stop('keep');
    rmSync(dir, { recursive: true, force: true });
  });
  const control = (file: string, content: string | null) =>
    content === null ? rmSync(join(dir, file), { force: true }) : writeFileSync(join(dir, file), content);
  /** The authban chain's rules of one family, as `-s TARGET` sources in order. */
  const rules = (family: 4 | 6): string[] => {
    const file = join(dir, `kernel${family}.json`);
    const chains = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, string[]>) : {};
    return (chains.authban ?? []).map((r) => r.split(' ')[1]!);
  };
  const calls = (): { argv: string[]; stdin: string }[] => {
    const file = join(dir, 'calls');
    return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l)) : [];
  };
  return { fw, clock, control, rules, calls };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

test('a ban whose IPv6 commit failed is retried for IPv6 only: one IPv4 rule, which one unban removes', async (t) => {
  const { fw, control, rules } = kernel(t);
  await fw.start([]);
  const a = v4('198.51.100.7');
  const b = v6('2001:db8::1');
  control('fail-ip6tables-restore', '');
  await assert.rejects(fw.banMany([a, b]));
  assert.deepEqual(rules(4), ['198.51.100.7'], 'IPv4 committed');
  control('fail-ip6tables-restore', null);
  await fw.banMany([a, b]); // the batcher's retry of the same batch
  assert.deepEqual(rules(4), ['198.51.100.7'], 'no second IPv4 rule');
  assert.deepEqual(rules(6), ['2001:db8::1']);
  await fw.unbanMany([a, b]);
  assert.deepEqual([rules(4), rules(6)], [[], []]);
});

test('an unban whose IPv6 commit failed: later removals of both families still go through', async (t) => {
  const { fw, control, rules } = kernel(t);
  await fw.start([]);
  const x = v4('198.51.100.7');
  const y = v6('2001:db8::1');
  await fw.banMany([x, y]);
  control('fail-ip6tables-restore', '');
  await assert.rejects(fw.unbanMany([x, y]));
  assert.deepEqual([rules(4), rules(6)], [[], ['2001:db8::1']]);
  control('fail-ip6tables-restore', null);
  const c = v4('198.51.100.8');
  await fw.banMany([c]);
  // A `-D` of the IPv4 rule already gone would fail the whole IPv4 commit, this one and every later one.
  await fw.unbanMany([x, y, c]);
  assert.deepEqual([rules(4), rules(6)], [[], []]);
});

test('a failing IPv4 commit does not hold back IPv6, and the retry adds only what is missing', async (t) => {
  const { fw, control, rules } = kernel(t);
  await fw.start([]);
  const a = v4('198.51.100.7');
  const b = v6('2001:db8::1');
  control('fail-iptables-restore', '');
  await assert.rejects(fw.banMany([a, b]));
  assert.deepEqual([rules(4), rules(6)], [[], ['2001:db8::1']]);
  control('fail-iptables-restore', null);
  await fw.banMany([a, b]);
  assert.deepEqual([rules(4), rules(6)], [['198.51.100.7'], ['2001:db8::1']]);
});

test('a start that committed IPv4 only: the restored IPv4 bans count as installed', async (t) => {
  const { fw, control, rules } = kernel(t);
  const a = v4('198.51.100.7');
  control('fail-ip6tables-restore', '');
  await assert.rejects(fw.start([a, v6('2001:db8::1')]));
  assert.deepEqual(rules(4), ['198.51.100.7']);
  control('fail-ip6tables-restore', null);
  await fw.banMany([a]);
  assert.deepEqual(rules(4), ['198.51.100.7'], 'no second rule');
  await fw.unbanMany([a]);
  assert.deepEqual(rules(4), []);
});

test('expiry sweeps do not pile up behind a slowly failing command: a new ban waits for one at most', async (t) => {
  const { fw, clock, control, rules, calls } = kernel(t, { expirySweepMs: 100, commandTimeoutMs: 5000 });
  await fw.start([]);
  await fw.banMany([v4('198.51.100.7', NOW + 1000)]);
  // Each sweep's IPv4 restore takes 300 ms and fails: three sweep intervals per attempt.
  control('slow-iptables-restore', '300');
  control('fail-iptables-restore', '');
  clock.now = NOW + 2000;
  const sweeps = () => calls().filter((c) => c.stdin.includes('-D authban -s 198.51.100.7 ')).length;
  await waitFor('three failed sweeps', () => sweeps() >= 3);
  const before = sweeps();
  await within(fw.banMany([v6('2001:db8::1')]), 5000, 'the IPv6 ban');
  assert.deepEqual(rules(6), ['2001:db8::1']);
  assert.ok(sweeps() - before <= 1, `the ban waited for ${sweeps() - before} sweeps`);
});

test('a sweep decides what is due when it runs: a re-ban queued ahead of it keeps the rule', async (t) => {
  const { fw, clock, control, rules, calls } = kernel(t, { expirySweepMs: 100 });
  // Installed by the start, which also starts the sweeper: its first tick is a full interval away.
  await fw.start([v4('198.51.100.7', NOW + 1000)]);
  // The first ban holds the queue for several sweep intervals; the re-ban waits behind it, and
  // every sweep queued meanwhile waits behind both. All those ticks see the old end as passed.
  control('slow-iptables-restore', '600');
  const held = fw.banMany([v4('198.51.100.8')]);
  const reban = fw.banMany([v4('198.51.100.7', NOW + HOUR)]);
  clock.now = NOW + 2000;
  await within(Promise.all([held, reban]), 5000, 'the bans');
  control('slow-iptables-restore', null);
  // Queued behind whatever sweeps were waiting, so they have all run when it returns.
  const listed = await within(fw.list(), 5000, 'list');
  assert.deepEqual(listed.map((e) => e.target).sort(), ['198.51.100.7', '198.51.100.8']);
  assert.deepEqual(rules(4).sort(), ['198.51.100.7', '198.51.100.8']);
  assert.ok(!calls().some((c) => c.stdin.includes('-D authban -s 198.51.100.7 ')), 'the re-banned rule was never removed');
});
