import assert from 'node:assert/strict';
import test from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { BanEntry, FirewallBackend } from '../../../src/enforce/backend.js';
import { DEFAULT_BATCHER_OPTIONS, FirewallBatcher, type BatcherOptions } from '../../../src/enforce/batcher.js';
import { createEnforceMetrics } from '../../../src/enforce/metrics.js';
import { waitFor } from '../../helpers/wait-for.js';

const log = pino({ level: 'silent' });
const e = (target: string): BanEntry => ({ target, family: 4, expiresAt: null });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Records calls and keeps a set like a kernel would; can be told to fail the next N calls. */
class FakeBackend implements FirewallBackend {
  readonly name = 'fake';
  readonly calls: string[] = [];
  readonly banned = new Set<string>();
  failNext = 0;
  delayMs = 0;
  async start(): Promise<void> {}
  async banMany(entries: readonly BanEntry[]): Promise<void> {
    await this.step('ban', entries);
    for (const x of entries) this.banned.add(x.target);
  }
  async unbanMany(entries: readonly BanEntry[]): Promise<void> {
    await this.step('unban', entries);
    for (const x of entries) this.banned.delete(x.target);
  }
  async list(): Promise<BanEntry[]> {
    return [...this.banned].map(e);
  }
  async stop(): Promise<void> {}
  private async step(op: string, entries: readonly BanEntry[]): Promise<void> {
    if (this.delayMs) await sleep(this.delayMs);
    this.calls.push(`${op}:${entries.map((x) => x.target).join(',')}`);
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('iptables-restore: line 2 failed');
    }
  }
}

const opts = (over: Partial<BatcherOptions> = {}): BatcherOptions => ({ ...DEFAULT_BATCHER_OPTIONS, flushMs: 20, retryBaseMs: 20, retryMaxMs: 100, ...over });

test('a burst becomes one batch after flushMs; ban() never waits for the firewall', async () => {
  const fw = new FakeBackend();
  const b = new FirewallBatcher(fw, opts(), { log });
  for (let i = 1; i <= 100; i++) b.ban(e(`198.51.100.${i}`));
  assert.equal(fw.calls.length, 0, 'nothing written synchronously');
  assert.equal(b.size, 100);
  await waitFor(() => b.size === 0, 5000, 'the batch to be written');
  assert.equal(fw.calls.length, 1);
  assert.equal(fw.banned.size, 100);
  assert.equal(b.size, 0);
});

test('the latest request for a target wins within a batch', async () => {
  const fw = new FakeBackend();
  fw.banned.add('203.0.113.9');
  const b = new FirewallBatcher(fw, opts(), { log });
  b.ban(e('198.51.100.1'));
  b.unban(e('198.51.100.1'));
  b.unban(e('203.0.113.9'));
  b.ban(e('203.0.113.9'));
  b.ban(e('198.51.100.2'));
  await b.flush();
  assert.deepEqual([...fw.banned].sort(), ['198.51.100.2', '203.0.113.9']);
  assert.deepEqual(fw.calls, ['unban:198.51.100.1', 'ban:203.0.113.9,198.51.100.2']);
});

test('maxBatch requests flush at once and split larger bursts', async () => {
  const fw = new FakeBackend();
  const registry = new Registry();
  const metrics = createEnforceMetrics(registry);
  const b = new FirewallBatcher(fw, opts({ flushMs: 60_000, maxBatch: 10 }), { log, metrics });
  for (let i = 1; i <= 25; i++) b.ban(e(`198.51.100.${i}`));
  await sleep(30);
  await b.flush();
  assert.deepEqual(fw.calls.map((c) => c.split(',').length), [10, 10, 5]);
  const hist = await registry.getSingleMetric('authban_firewall_batch_size')!.get();
  assert.equal(hist.values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_sum'))?.value, 25);
});

test('a failed batch is retried after back-off; a newer request for a target is not overwritten', async () => {
  const fw = new FakeBackend();
  fw.delayMs = 10;
  fw.failNext = 1;
  const registry = new Registry();
  const metrics = createEnforceMetrics(registry);
  const b = new FirewallBatcher(fw, opts(), { log, metrics });
  b.ban(e('198.51.100.1'));
  b.ban(e('198.51.100.2'));
  const first = b.flush();
  // Arrives while the failing batch is in flight: must win over the retried ban.
  b.unban(e('198.51.100.2'));
  await first;
  assert.equal(fw.banned.size, 0, 'first attempt failed');
  assert.equal(b.size, 2);
  assert.equal((await registry.getSingleMetric('authban_firewall_entries_pending')!.get()).values[0]!.value, 2);
  // The retry runs on a back-off timer: wait for it to settle (nothing pending, nothing in flight).
  await waitFor(() => b.size === 0 && fw.calls.length >= 3, 5000, 'the retried batch');
  assert.deepEqual([...fw.banned], ['198.51.100.1']);
  assert.equal(b.size, 0);
  assert.equal(fw.calls.length, 3, 'failed ban, then unban + ban');
});

test('requests are given up after maxAttempts failed batches, and counted', async () => {
  const fw = new FakeBackend();
  fw.failNext = 1000;
  const registry = new Registry();
  const metrics = createEnforceMetrics(registry);
  const b = new FirewallBatcher(fw, opts({ maxAttempts: 3, retryBaseMs: 5, retryMaxMs: 10 }), { log, metrics });
  b.ban(e('198.51.100.1'));
  // Chained back-off timers; once the request is given up nothing is pending and no timer runs.
  await waitFor(() => b.size === 0 && fw.calls.length >= 3, 5000, 'the request to be given up');
  assert.equal(fw.calls.length, 3);
  assert.equal(b.size, 0);
  const dropped = await registry.getSingleMetric('authban_firewall_entries_dropped_total')!.get();
  assert.equal(dropped.values[0]!.value, 1);
});

test('close writes what is still queued', async () => {
  const fw = new FakeBackend();
  const b = new FirewallBatcher(fw, opts({ flushMs: 60_000 }), { log });
  b.ban(e('198.51.100.1'));
  await b.close();
  assert.deepEqual([...fw.banned], ['198.51.100.1']);
});
