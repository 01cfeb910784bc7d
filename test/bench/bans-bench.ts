/**
 * Ban engine memory and throughput. Feeds distinct failing IPv4 addresses (maxretry high, so
 * they are tracked, not banned), with users, attempt keys and a log line of evidence each, and
 * prints RSS and heap per tracked key at checkpoints, then 500k more past the 1M cap to show
 * memory flat once the cap is reached. Then times isBanned on the hot path.
 *
 *   node --import tsx test/bench/bans-bench.ts [total=1500000] [cap=1000000]
 *
 * It re-runs itself in a child node with --expose-gc, so figures are after a full GC and 1.5 s
 * of idle (V8 returns freed pages in the background; measured at once, RSS reads up to ~100 MB
 * higher). Set BANS_BENCH_POLICY='{"evidenceMaxBytes":...}' to try other options.
 */
import { spawnSync } from 'node:child_process';
import { getHeapSpaceStatistics } from 'node:v8';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { AuthFailure } from '../../src/core/auth-failure.js';
import { BanEngine } from '../../src/bans/ban-engine.js';
import { createBansMetrics } from '../../src/bans/metrics.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  const self = fileURLToPath(import.meta.url);
  // Compiled (dist/), it runs as plain JS: the figures then lack tsx's own ~40 MB.
  const loader = self.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const r = spawnSync(process.execPath, ['--expose-gc', ...loader, self, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const total = Number(process.argv[2] ?? 1_500_000);
const cap = Number(process.argv[3] ?? 1_000_000);
const checkpoints = new Set([100_000, 250_000, 500_000, 1_000_000, 1_250_000, 1_500_000, 2_000_000, 2_500_000, 3_000_000].filter((c) => c < total).concat(total));
const MB = 1024 * 1024;
const users = Array.from({ length: 50 }, (_, i) => `user${i}`);
const now = Date.UTC(2026, 0, 15, 12);

/** After a full GC and a short idle, when V8 has handed freed pages back: the steady-state figure. */
async function measure(): Promise<{ rss: number; heap: number; heapTotal: number; old: number; large: number }> {
  gc!();
  gc!();
  await new Promise((r) => setTimeout(r, 1500));
  const m = process.memoryUsage();
  const spaces = Object.fromEntries(getHeapSpaceStatistics().map((x) => [x.space_name, x.space_size]));
  return { rss: m.rss, heap: m.heapUsed, heapTotal: m.heapTotal, old: spaces.old_space ?? 0, large: spaces.large_object_space ?? 0 };
}

/** 11.0.0.0 + i: distinct, valid, never sent anywhere. */
function address(i: number): string {
  const n = 0x0b000000 + i;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function failureOf(i: number): AuthFailure {
  const address_ = address(i);
  const line = `Jan 15 12:00:00 mx sendmail[${10000 + (i % 50000)}]: 6APHZDNQ0${i % 100000}: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=${users[i % 50]}, relay=[${address_}]`;
  return {
    address: address_,
    user: users[i % users.length]!,
    service: 'smtp',
    at: now,
    source: 'sendmail',
    attemptKey: `6APHZDNQ0${i}:1`,
    evidence: [{ kind: 'log', source: 'sendmail', line, origin: '/var/log/mail.log', at: now }],
  };
}

const engine = new BanEngine({
  log: pino({ level: 'silent' }),
  metrics: createBansMetrics(new Registry()),
  policy: { maxretry: 1000, maxTracked: cap, ...(JSON.parse(process.env.BANS_BENCH_POLICY ?? '{}') as object) },
  now: () => now,
  tickMs: 0,
});
await engine.start();
const base = await measure();
console.log(`baseline: rss ${(base.rss / MB).toFixed(1)} MB, heap ${(base.heap / MB).toFixed(1)} MB; cap ${cap}`);
console.log('fed\ttracked\trss MB\theap MB\theapTotal MB\told MB\tlarge MB\trss B/key\theap B/key\tfailures/s');
let fed = 0;
let busyMs = 0;
while (fed < total) {
  const start = performance.now();
  const next = Math.min(total, [...checkpoints].filter((c) => c > fed).sort((a, b) => a - b)[0]!);
  for (; fed < next; fed++) engine.report(failureOf(fed));
  const ms = performance.now() - start;
  busyMs += ms;
  const m = await measure();
  const tracked = engine.stats().trackedKeys;
  const rate = Math.round(fed / (busyMs / 1000));
  console.log(
    [fed, tracked, (m.rss / MB).toFixed(1), (m.heap / MB).toFixed(1), (m.heapTotal / MB).toFixed(1), (m.old / MB).toFixed(1), (m.large / MB).toFixed(1), Math.round((m.rss - base.rss) / tracked), Math.round((m.heap - base.heap) / tracked), rate].join('\t'),
  );
}

// The hot path: isBanned with 10k v4 and 10k v6 bans in the table.
for (let i = 0; i < 10_000; i++) {
  await engine.ban(`198.51.${100 + (i >> 8)}.${i & 255}`, { seconds: 3600 });
  await engine.ban(`2001:db8:${i.toString(16)}::1`, { seconds: 3600 });
}
const probes: [string, string[], number][] = [
  ['v4 hit', Array.from({ length: 1000 }, (_, i) => `198.51.${100 + (i >> 8)}.${i & 255}`), 1000],
  ['v4 miss', Array.from({ length: 1000 }, (_, i) => `203.0.113.${i & 255}`), 1000],
  ['v6 hit, returning client', Array.from({ length: 1000 }, (_, i) => `2001:db8:${i.toString(16)}::${(i * 7).toString(16)}`), 1000],
  ['v6 miss, returning client', Array.from({ length: 1000 }, (_, i) => `2001:db9:${i.toString(16)}::1`), 1000],
  ['v6, every address new', Array.from({ length: 200_000 }, (_, i) => `2001:db8:${(i % 20000).toString(16)}::${i.toString(16)}`), 1],
];
for (const [name, list, rounds] of probes) {
  let hits = 0;
  const start = performance.now();
  for (let r = 0; r < rounds; r++) for (const a of list) if (engine.isBanned(a)) hits++;
  const s = (performance.now() - start) / 1000;
  console.log(`isBanned ${name}: ${Math.round((rounds * list.length) / s).toLocaleString('en')} lookups/s (hits ${hits} of ${rounds * list.length})`);
}
await engine.stop();
