/**
 * Milter benchmark (issue #2): authban's MilterServer against a no-op libmilter filter in C,
 * both in their own processes, driven by the same sendmail-like load (one milter connection
 * per SMTP session) at 1, 64 and 512 concurrent sessions, then an open-loop run at a fixed
 * rate. Run: `npm run bench -- milter` (or node --expose-gc --import tsx test/bench/milter-bench.ts).
 *
 * AUTHBAN_BENCH_SESSIONS (default 20000) sets the sessions per closed-loop run,
 * AUTHBAN_BENCH_RATE / AUTHBAN_BENCH_SECONDS (1000 / 10) the open-loop run.
 */
import { cpus } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildNoopMilter, noopBuildMissing } from './milter/build-noop.js';
import { closedLoop, openLoop, percentile, type LoadResult } from './milter/load.js';
import { cpuSeconds, startAuthbanChild, startNoopMilter, type RunningMilter } from './milter/servers.js';

const SESSIONS = Number(process.env.AUTHBAN_BENCH_SESSIONS ?? 20_000);
const RATE = Number(process.env.AUTHBAN_BENCH_RATE ?? 1000);
const SECONDS = Number(process.env.AUTHBAN_BENCH_SECONDS ?? 10);
const CONCURRENCY = [1, 64, 512];
const WARMUP = 1000;

interface Row {
  readonly milter: string;
  readonly concurrency: number | string;
  readonly result: LoadResult;
  /** Server CPU (all threads) per session, ms. */
  readonly serverCpuMs: number;
  /** Load generator CPU over wall time, %. */
  readonly clientCpuPct: number;
}

async function measure(
  name: string,
  m: RunningMilter,
  concurrency: number | string,
  run: () => Promise<LoadResult>,
): Promise<Row> {
  const cpu0 = cpuSeconds(m.pid);
  const client0 = process.cpuUsage();
  const result = await run();
  const client = process.cpuUsage(client0);
  const serverCpuMs = ((cpuSeconds(m.pid) - cpu0) * 1000) / Math.max(1, result.sessions);
  const clientCpuPct = ((client.user + client.system) / 1e6 / result.elapsedS) * 100;
  return { milter: name, concurrency, result, serverCpuMs, clientCpuPct };
}

const f = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : '-');

function printTable(rows: Row[]): void {
  const head = ['conc', 'milter', 'sessions', 'errors', 'sessions/s', 'connect p50 ms', 'connect p99 ms', 'session p50 ms', 'session p99 ms', 'srv CPU ms/sess', 'client CPU %'];
  const body = rows.map((r) => [
    String(r.concurrency),
    r.milter,
    String(r.result.sessions),
    String(r.result.errors),
    f(r.result.sessions / r.result.elapsedS, 0),
    f(percentile(r.result.connectMs, 50), 3),
    f(percentile(r.result.connectMs, 99), 3),
    f(percentile(r.result.sessionMs, 50), 3),
    f(percentile(r.result.sessionMs, 99), 3),
    f(r.serverCpuMs, 3),
    f(r.clientCpuPct, 0),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) console.log(line(b));
}

function printRatios(rows: Row[]): void {
  for (const conc of CONCURRENCY) {
    const a = rows.find((r) => r.milter === 'authban' && r.concurrency === conc);
    const c = rows.find((r) => r.milter === 'libmilter-c' && r.concurrency === conc);
    if (!a || !c) continue;
    const rate = (r: Row): number => r.result.sessions / r.result.elapsedS;
    console.log(
      `  conc ${String(conc).padStart(3)}: authban/C sessions/s ${f(rate(a) / rate(c))}, ` +
        `connect p99 ${f(percentile(a.result.connectMs, 99) / percentile(c.result.connectMs, 99))}x, ` +
        `server CPU per session ${f(a.serverCpuMs / c.serverCpuMs)}x`,
    );
  }
}

async function main(): Promise<number> {
  console.log(`milter benchmark: ${cpus().length} CPU(s) ${cpus()[0]?.model ?? ''}, node ${process.version}`);
  console.log(`load generator, authban and the C milter are three processes sharing these cores.`);
  const missing = noopBuildMissing();
  const dir = mkdtempSync(join(tmpdir(), 'authban-bench-'));
  const started: RunningMilter[] = [];
  try {
    const milters: { name: string; m: RunningMilter }[] = [];
    if (missing) console.log(`C baseline skipped: ${missing}`);
    else {
      const noop = await startNoopMilter(buildNoopMilter(dir));
      started.push(noop);
      milters.push({ name: 'libmilter-c', m: noop });
    }
    const authban = await startAuthbanChild('noop');
    started.push(authban);
    milters.push({ name: 'authban', m: authban });

    for (const { m } of milters) await closedLoop({ port: m.port }, 64, WARMUP);

    const rows: Row[] = [];
    for (const conc of CONCURRENCY) {
      const n = conc === 1 ? Math.min(SESSIONS, 5000) : SESSIONS;
      for (const { name, m } of milters) rows.push(await measure(name, m, conc, () => closedLoop({ port: m.port }, conc, n)));
    }
    console.log(`\nclosed loop: each of 1/64/512 concurrent sessions, ${SESSIONS} sessions (5000 at concurrency 1)`);
    printTable(rows);
    console.log('\nratios (authban / C):');
    printRatios(rows);

    const open: Row[] = [];
    for (const { name, m } of milters) open.push(await measure(name, m, `${RATE}/s`, () => openLoop({ port: m.port }, RATE, SECONDS)));
    console.log(`\nopen loop: ${RATE} sessions/s offered for ${SECONDS} s`);
    printTable(open);
    for (const r of open) {
      const o = r.result as Awaited<ReturnType<typeof openLoop>>;
      console.log(
        `  ${r.milter}: achieved ${f(o.achievedRate, 0)}/s, CONNECT reply p50 ${f(percentile(o.connectMs, 50), 3)} ms ` +
          `p99 ${f(percentile(o.connectMs, 99), 3)} ms p99.9 ${f(percentile(o.connectMs, 99.9), 3)} ms; ` +
          `scheduled start to CONNECT reply p99 ${f(percentile(o.scheduledToConnectMs, 99), 3)} ms`,
      );
    }

    const errors = [...rows, ...open].reduce((n, r) => n + r.result.errors, 0);
    for (const r of [...rows, ...open]) if (r.result.firstError) console.log(`  ${r.milter} @${r.concurrency}: first error: ${r.result.firstError}`);
    return errors === 0 ? 0 : 1;
  } finally {
    for (const m of started) await m.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

process.exitCode = await main();
