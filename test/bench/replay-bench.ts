/**
 * Replay benchmark: a seeded interleaved maillog + auth log (sendmail 8.17 LogLevel 9) of
 * BENCH_LINES lines (default 1,000,000) with known ground truth; authban's replay (in
 * process) against fail2ban-regex with Debian's sendmail-auth filter on the same maillog.
 * Prints lines/s (wall and CPU: other load on the machine skews wall time), the ratios,
 * failures found by each and authban's attribution accuracy per address, three floors (see
 * floor()) that show how much of the budget reading and bare parsing take, then
 * `TARGET MET` / `TARGET NOT MET` (50x fail2ban-regex's lines/s in CPU time). The exit status
 * is non-zero only when authban's result is wrong (lines lost, failures missing or misattributed).
 *
 *   BENCH_LINES=1000000 node --import tsx test/bench/replay-bench.ts
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runReplay, type ReplayReport } from '../../src/correlate/replay.js';
import { parseLine } from '../../src/logs/parse-line.js';
import { generate, type GenTruth } from './gen/maillog-gen.js';

const F2B_FILTER = '/etc/fail2ban/filter.d/sendmail-auth.conf';
/** authban replay must read the maillog at least this many times as fast as fail2ban-regex (CPU time). */
const TARGET_RATIO = 50;
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

/**
 * Where the time goes, as lower bounds on the same maillog: each floor does less than replay.
 * - read: read the file in 1 MiB chunks, decode, find every line end.
 * - bare scan: that, plus for sendmail `AUTH failure` lines the text between the last `[` and
 *   the closing `]` counted per "address" in a Map. No validation (hostile lines would fool
 *   it), no timestamps, no sessions, no evidence: no real parser can do less.
 * - parse: read plus authban's own parsers on every line (parseLine), no correlation.
 */
type FloorKind = 'read' | 'bare scan' | 'parse';

function floor(kind: FloorKind, path: string): Run {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  const perAddress = new Map<string, number>();
  const reference = Date.now();
  let lines = 0;
  let failures = 0;
  let rest = '';
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      const text = rest + buf.toString('latin1', 0, n);
      let start = 0;
      for (;;) {
        const end = text.indexOf('\n', start);
        if (end < 0) break;
        lines++;
        if (kind === 'parse') {
          const r = parseLine(text.slice(start, end), reference, UTC);
          if (r.outcome === 'matched' && r.record.kind === 'sendmail-auth-failure') failures++;
        } else if (kind === 'bare scan') {
          const at = text.indexOf(': AUTH failure (', start);
          if (at >= 0 && at < end) {
            const addr = text.slice(text.lastIndexOf('[', end) + 1, end - 1);
            perAddress.set(addr, (perAddress.get(addr) ?? 0) + 1);
            failures++;
          }
        }
        start = end + 1;
      }
      rest = text.slice(start);
    }
  } finally {
    closeSync(fd);
  }
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { name: `floor: ${kind} (maillog)`, lines, wallS, cpuS: (cpu.user + cpu.system) / 1e6, failures };
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

function truthTotal(truth: GenTruth): number {
  let n = 0;
  for (const v of truth.failures.values()) n += v;
  return n;
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
    const floors = (['read', 'bare scan', 'parse'] as const).map((k) => floor(k, maillog));
    const f2b = fail2ban(maillog);
    const runs: Run[] = [both.run, mailOnly.run, ...floors, ...(typeof f2b === 'string' ? [] : [f2b])];

    const out = (line: string): boolean => process.stdout.write(`${line}\n`);
    const cols: [string, number][] = [['run', 32], ['lines', 12], ['wall s', 9], ['cpu s', 9], ['lines/s wall', 14], ['lines/s cpu', 14], ['failures', 10]];
    const row = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(cols[i]![1]) : c.padStart(cols[i]![1]))).join(' ');
    const num = (x: number): string => Math.round(x).toLocaleString('en-US');
    out('');
    out(row(cols.map(([h]) => h)));
    for (const r of runs) {
      out(row([r.name, num(r.lines), r.wallS.toFixed(2), r.cpuS.toFixed(2), num(r.lines / r.wallS), num(r.lines / r.cpuS), num(r.failures)]));
    }
    out('');

    let targetMet = false;
    if (typeof f2b === 'string') out(`fail2ban-regex: not run: ${f2b}`);
    else {
      const m = mailOnly.run;
      const wallRatio = m.lines / m.wallS / (f2b.lines / f2b.wallS);
      const cpuRatio = m.lines / m.cpuS / (f2b.lines / f2b.cpuS);
      const bothCpu = both.run.lines / both.run.cpuS / (f2b.lines / f2b.cpuS);
      out(`speed ratio, same maillog (authban lines/s / fail2ban-regex lines/s): cpu ${cpuRatio.toFixed(1)}x, wall ${wallRatio.toFixed(1)}x (target ${TARGET_RATIO}x on cpu)`);
      out(`speed ratio, authban on maillog+auth vs fail2ban-regex on maillog: cpu ${bothCpu.toFixed(1)}x`);
      for (const f of floors) out(`  ${f.name}: cpu ${(f.lines / f.cpuS / (f2b.lines / f2b.cpuS)).toFixed(1)}x fail2ban-regex`);
      targetMet = cpuRatio >= TARGET_RATIO;
      out(`fail2ban-regex: ${num(f2b.failures)} matched lines (AUTH failure lines plus 'possible SMTP attack' summaries), ${num(f2b.failures - truthTotal(truth))} more than real attempts, no attribution`);
    }

    const total = truthTotal(truth);
    const acc = accuracy(both.report, truth);
    const accMail = accuracy(mailOnly.report, truth);
    out(`ground truth: ${num(total)} AUTH failures from ${truth.failures.size} addresses, ${num(truth.mailLines + truth.authLines)} lines`);
    for (const [name, a, r] of [['maillog+auth', acc, both.report], ['maillog', accMail, mailOnly.report]] as const) {
      out(`authban attribution (${name}): ${num(a.correct)} correct (${((100 * a.correct) / a.total).toFixed(2)}%), ${num(a.missing)} missing, ${num(a.extra)} wrongly attributed; ${r.ambiguous} ambiguous, unattributed ${JSON.stringify(r.unattributed)}, ${r.bans.length} bans`);
    }

    // Correctness decides the exit status; speed only the verdict line.
    const problems: string[] = [];
    if (both.run.lines !== truth.mailLines + truth.authLines) problems.push(`maillog+auth: read ${both.run.lines} lines, generated ${truth.mailLines + truth.authLines}`);
    if (mailOnly.run.lines !== truth.mailLines) problems.push(`maillog: read ${mailOnly.run.lines} lines, generated ${truth.mailLines}`);
    for (const [name, a] of [['maillog+auth', acc], ['maillog', accMail]] as const) {
      if (a.extra > 0) problems.push(`${name}: ${a.extra} failures attributed to the wrong address`);
      if (a.missing > 0) problems.push(`${name}: ${a.missing} failures not attributed`);
    }
    out('');
    out(typeof f2b === 'string' ? 'TARGET NOT MEASURED (fail2ban-regex not run)' : `TARGET ${targetMet ? 'MET' : 'NOT MET'}: ${TARGET_RATIO}x fail2ban-regex lines/s (cpu)`);
    if (problems.length > 0) {
      out(`CORRECTNESS FAILURE:\n  ${problems.join('\n  ')}`);
      process.exitCode = 1;
    } else out('correctness: OK');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
