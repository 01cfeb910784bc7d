import assert from 'node:assert/strict';
import test from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { BanEntry } from '../../../src/enforce/backend.js';
import { canonicalTarget, remainingSeconds, validEntries } from '../../../src/enforce/entries.js';
import { createEnforceMetrics } from '../../../src/enforce/metrics.js';

const log = pino({ level: 'silent' });

test('canonicalTarget: hosts lose their /32 or /128, networks are masked and canonical', () => {
  assert.deepEqual(canonicalTarget('198.51.100.7/32'), { target: '198.51.100.7', family: 4 });
  assert.deepEqual(canonicalTarget('2001:0DB8:0:0::1/128'), { target: '2001:db8::1', family: 6 });
  assert.deepEqual(canonicalTarget('2001:db8:1:2:3::/64'), { target: '2001:db8:1:2::/64', family: 6 });
  assert.deepEqual(canonicalTarget('203.0.113.9/24'), { target: '203.0.113.0/24', family: 4 });
  assert.equal(canonicalTarget('not-an-ip'), null);
  assert.equal(canonicalTarget('1.2.3.4/33'), null);
});

test('validEntries keeps only canonical targets of the stated family, counting the rest', async () => {
  const registry = new Registry();
  const metrics = createEnforceMetrics(registry);
  const good: BanEntry[] = [
    { target: '198.51.100.7', family: 4, expiresAt: null },
    { target: '2001:db8::/64', family: 6, expiresAt: 5 },
  ];
  const bad: BanEntry[] = [
    { target: '198.51.100.7\nflush authban4', family: 4, expiresAt: null },
    { target: '198.51.100.7 -j ACCEPT', family: 4, expiresAt: null },
    { target: '2001:DB8::1', family: 6, expiresAt: null }, // not canonical
    { target: '198.51.100.7', family: 6, expiresAt: null }, // wrong family
    { target: '198.51.100.7/32', family: 4, expiresAt: null }, // host written as a network
    { target: '198.51.100.8', family: 4, expiresAt: Number.NaN },
  ];
  assert.deepEqual(validEntries([...bad, ...good], log, metrics), good);
  const rejected = await registry.getSingleMetric('authban_firewall_entries_rejected_total')!.get();
  assert.equal(rejected.values[0]!.value, bad.length);
});

test('remainingSeconds: rounds up, caps, 0 for no end, null once expired', () => {
  const e = (expiresAt: number | null): BanEntry => ({ target: '198.51.100.7', family: 4, expiresAt });
  assert.equal(remainingSeconds(e(null), 1000, 100), 0);
  assert.equal(remainingSeconds(e(1000 + 1), 1000, 100), 1);
  assert.equal(remainingSeconds(e(1000 + 2500), 1000, 100), 3);
  assert.equal(remainingSeconds(e(1000 + 500_000), 1000, 100), 100);
  assert.equal(remainingSeconds(e(1000), 1000, 100), null);
  assert.equal(remainingSeconds(e(10), 1000, 100), null);
});
