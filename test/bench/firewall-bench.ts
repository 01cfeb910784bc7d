/**
 * 10,000 bans as one batch (authban's way) versus one process per ban (fail2ban's way), on the
 * same backend in the same run, inside a network namespace of its own (root needed).
 *
 *   node --import tsx test/bench/firewall-bench.ts [--per-process-sample 1000] [--backends ipset,nftables,iptables]
 *
 * The per-process side runs a sample (default 1,000 bans) and is extrapolated linearly to
 * 10,000; the whole benchmark re-executes itself inside the namespace so neither side pays for
 * `ip netns exec`.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import pino from 'pino';
import type { BanEntry } from '../../src/enforce/backend.js';
import { createBackend } from '../../src/enforce/factory.js';
import { DEFAULT_FIREWALL_OPTIONS, type FirewallBackendName } from '../../src/enforce/options.js';

const run = promisify(execFile);
const BATCH = 10_000;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

/** Distinct addresses in 100.64.0.0/10: set elements only, no packet is ever sent to them. */
function addresses(count: number, block: number): string[] {
  return Array.from({ length: count }, (_, i) => `100.${64 + block}.${(i >> 8) & 0xff}.${i & 0xff}`);
}

/** The command fail2ban's actions run once per ban. */
function perBanCommand(backend: FirewallBackendName, addr: string): string[] {
  switch (backend) {
    case 'ipset':
      return ['ipset', 'add', 'authban4', addr, 'timeout', '600', '-exist'];
    case 'nftables':
      return ['nft', 'add', 'element', 'inet', 'authban', 'authban4', `{ ${addr} timeout 600s }`];
    default:
      return ['iptables', '-w', '-A', 'authban', '-s', addr, '-j', 'authban-act'];
  }
}

async function benchBackend(backend: FirewallBackendName, sample: number) {
  const fw = createBackend({ ...DEFAULT_FIREWALL_OPTIONS, backend, maxelem: 65536 }, { log: pino({ level: 'warn' }) });
  const expiresAt = Date.now() + 600_000;
  const entries: BanEntry[] = addresses(BATCH, 0).map((target) => ({ target, family: 4, expiresAt }));

  await fw.start([]);
  let t0 = performance.now();
  await fw.banMany(entries);
  const batchMs = performance.now() - t0;
  const listed = (await fw.list()).length;
  if (listed !== BATCH) throw new Error(`${backend}: ${listed} bans listed after the batch, want ${BATCH}`);

  t0 = performance.now();
  await fw.start(entries);
  const startMs = performance.now() - t0;

  // Same backend, fresh and empty, then one process per ban as fail2ban does it.
  await fw.start([]);
  const sampleAddrs = addresses(sample, 1);
  t0 = performance.now();
  for (const a of sampleAddrs) {
    const [file, ...args] = perBanCommand(backend, a);
    await run(file!, args);
  }
  const sampleMs = performance.now() - t0;
  const perProcessMs = (sampleMs / sample) * BATCH;
  const after = (await fw.list()).length;
  if (after !== sample) throw new Error(`${backend}: ${after} bans after the per-process sample, want ${sample}`);
  await fw.stop();
  return { backend, batchMs, startMs, sample, sampleMs, perProcessMs, ratio: perProcessMs / batchMs };
}

async function inner(): Promise<void> {
  const sample = Number(arg('--per-process-sample', '1000'));
  const backends = arg('--backends', 'ipset,nftables,iptables').split(',') as FirewallBackendName[];
  const rows = [];
  for (const b of backends) rows.push(await benchBackend(b, sample));
  console.log(`10,000 IPv4 bans; per-process side timed on ${sample} bans and extrapolated x${BATCH / sample}`);
  console.log('backend    batch(10k)  start(10k restore)  per-process(10k, extrap.)  ratio');
  for (const r of rows) {
    console.log(
      `${r.backend.padEnd(10)} ${r.batchMs.toFixed(0).padStart(7)} ms  ${r.startMs.toFixed(0).padStart(14)} ms  ${(r.perProcessMs / 1000).toFixed(1).padStart(19)} s        ${r.ratio.toFixed(0)}x`,
    );
  }
  console.log(JSON.stringify(rows.map((r) => ({ ...r, batchMs: Math.round(r.batchMs), startMs: Math.round(r.startMs), sampleMs: Math.round(r.sampleMs), perProcessMs: Math.round(r.perProcessMs), ratio: Math.round(r.ratio) }))));
  const failed = rows.filter((r) => r.ratio < 100 || r.batchMs >= 1000);
  if (failed.length > 0) {
    console.error(`targets missed (>= 100x and < 1 s): ${failed.map((r) => r.backend).join(', ')}`);
    process.exitCode = 1;
  }
}

function outer(): void {
  if (process.getuid?.() !== 0) {
    console.error('firewall-bench needs root (network namespace); skipped');
    process.exit(process.env.CI === 'true' ? 1 : 0);
  }
  const ns = `ab-${process.pid}-bench`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    const res = spawnSync('ip', ['netns', 'exec', ns, process.execPath, ...process.execArgv, ...process.argv.slice(1), '--inner'], {
      stdio: 'inherit',
      timeout: 600_000,
    });
    process.exitCode = res.status ?? 1;
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

if (process.argv.includes('--inner')) await inner();
else outer();
