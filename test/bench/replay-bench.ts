/**
 * Replay benchmark: a seeded interleaved maillog + auth log (sendmail 8.17 LogLevel 9) of
 * BENCH_LINES lines (default 1,000,000) with known ground truth; authban's replay (in
 * process) against fail2ban-regex with Debian's sendmail-auth filter on the same maillog.
 * Prints lines/s (wall and CPU: other load on the machine skews wall time), the ratios,
 * failures found by each and authban's attribution accuracy per address.
 *
 *   node --import tsx test/bench/replay-bench.ts
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runReplay, type ReplayReport } from '../../src/correlate/replay.js';
import { generate, type GenTruth } from './gen/maillog-gen.js';

const F2B_FILTER = '/etc/fail2ban/filter.d/sendmail-auth.conf';
const UTC = { timeZone: 'UTC', futureToleranceSeconds: 7 * 86400 };

interface Run {
  readonly name: string;
  readonly lines: number;
  readonly wallS: number;
  readonly cpuS: number;
  readonly failures: number;
}

async function authban(files: string[]): Promise<{ run: Run; report: ReplayReport }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const report = await runReplay(files, { timestamps: UTC });
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    run: { name: `authban replay (${files.length === 1 ? 'maillog' : 'maillog+auth'})`, lines: report.linesRead, wallS, cpuS: (cpu.user + cpu.system) / 1e6, failures: report.failures },
    report,
  };
}

function fail2ban(maillog: string): Run | string {
  if (!existsSync('/usr/bin/fail2ban-regex') || !existsSync(F2B_FILTER)) return 'fail2ban-regex or its sendmail-auth filter is not installed (Debian package fail2ban)';
  // /usr/bin/time gives the child's CPU time; fail2ban-regex does no DNS for <IP4>/<IP6> tags.
  const r = spawnSync('/usr/bin/time', ['-f', 'AUTHBAN_TIME %e %U %S', 'fail2ban-regex', maillog, F2B_FILTER], {
    encoding: 'utf8', maxBuffer: 64 << 20, timeout: 1_800_000,
  });
  const out = `${r.stdout}\n${r.stderr}`;
  const t = /AUTHBAN_TIME ([\d.]+) ([\d.]+) ([\d.]+)/.exec(out);
  const lines = /Lines: (\d+) lines, \d+ ignored, (\d+) matched/.exec(out);
  if (!t || !lines) return `fail2ban-regex failed (status ${r.status}): ${out.slice(0, 500)}`;
  return { name: 'fail2ban-regex (maillog)', lines: Number(lines[1]), wallS: Number(t[1]), cpuS: Number(t[2]) + Number(t[3]), failures: Number(lines[2]) };
}

function accuracy(report: ReplayReport, truth: GenTruth): { correct: number; missing: number; extra: number; total: number } {
  const got = new Map(report.addresses.map((a) => [a.address, a.failures]));
  let correct = 0;
  let missing = 0;
  let extra = 0;
  let total = 0;
  for (const [addr, n] of truth.failures) {
    const g = got.get(addr) ?? 0;
    total += n;
    correct += Math.min(n, g);
    missing += Math.max(0, n - g);
  }
  for (const [addr, g] of got) extra += Math.max(0, g - (truth.failures.get(addr) ?? 0));
  return { correct, missing, extra, total };
}

async function main(): Promise<void> {
  const target = Number(process.env.BENCH_LINES ?? 1_000_000);
  const dir = mkdtempSync(join(tmpdir(), 'authban-bench-'));
  try {
    const maillog = join(dir, 'maillog');
    const authlog = join(dir, 'auth.log');
    const tg = performance.now();
    const truth = await generate(maillog, authlog, { targetLines: target });
    process.stderr.write(`generated ${truth.mailLines} maillog + ${truth.authLines} auth lines, ${truth.sessions} sessions in ${((performance.now() - tg) / 1000).toFixed(1)} s\n`);

    const both = await authban([maillog, authlog]);
    const mailOnly = await authban([maillog]);
    const f2b = fail2ban(maillog);
    const runs: Run[] = [both.run, mailOnly.run, ...(typeof f2b === 'string' ? [] : [f2b])];

    const pad = (s: string, n: number): string => s.padEnd(n);
    const num = (x: number): string => Math.round(x).toLocaleString('en-US');
    process.stdout.write(`\n${pad('run', 34)}${pad('lines', 12)}${pad('wall s', 9)}${pad('cpu s', 9)}${pad('lines/s wall', 15)}${pad('lines/s cpu', 14)}failures\n`);
    for (const r of runs) {
      process.stdout.write(`${pad(r.name, 34)}${pad(num(r.lines), 12)}${pad(r.wallS.toFixed(2), 9)}${pad(r.cpuS.toFixed(2), 9)}${pad(num(r.lines / r.wallS), 15)}${pad(num(r.lines / r.cpuS), 14)}${num(r.failures)}\n`);
    }
    if (typeof f2b === 'string') process.stdout.write(`fail2ban-regex: not run: ${f2b}\n`);
    else {
      const m = mailOnly.run;
      process.stdout.write(`\nratio on the same maillog (authban / fail2ban-regex): wall ${(m.lines / m.wallS / (f2b.lines / f2b.wallS)).toFixed(1)}x, cpu ${(m.lines / m.cpuS / (f2b.lines / f2b.cpuS)).toFixed(1)}x (target 50x)\n`);
    }
    const truthTotal = [...truth.failures.values()].reduce((a, b) => a + b, 0);
    const acc = accuracy(both.report, truth);
    process.stdout.write(`ground truth: ${num(truthTotal)} AUTH failures from ${truth.failures.size} addresses\n`);
    process.stdout.write(`authban attribution: ${num(acc.correct)} correct (${((100 * acc.correct) / acc.total).toFixed(2)}%), ${num(acc.missing)} missing, ${num(acc.extra)} wrongly attributed; ${both.report.ambiguous} ambiguous, unattributed ${JSON.stringify(both.report.unattributed)}, ${both.report.bans.length} bans\n`);
    if (typeof f2b !== 'string') {
      process.stdout.write(`fail2ban-regex: ${num(f2b.failures)} matched lines (AUTH failure lines plus 'possible SMTP attack' summaries), i.e. ${num(f2b.failures - truthTotal)} more than real attempts\n`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
