/**
 * `authban replay FILE… [--json] [--maxretry N] [--findtime S] [--bantime S]
 * [--start-grace S] [--hold S] [--timezone ZONE]`: the CLI face of runReplay.
 */
import { parseArgs } from 'node:util';
import type { BanPolicyOptions } from '../bans/policy.js';
import { DEFAULT_TIMESTAMP_OPTIONS } from '../logs/timestamps.js';
import type { CorrelatorOptions } from './correlator.js';
import { formatReplayReport, runReplay } from './replay.js';

const USAGE = `usage: authban replay FILE... [--json] [--maxretry N] [--findtime SECONDS] [--bantime SECONDS]
                     [--start-grace SECONDS] [--hold SECONDS] [--timezone local|UTC|+HH:MM]
Reads maillog / auth log files (merged by time), joins failures to sessions as the daemon
would, and reports matches, attributed failures, unresolved lines and the bans it would make.
`;

export interface ReplayIo {
  readonly stdout: Pick<NodeJS.WriteStream, 'write'>;
  readonly stderr: Pick<NodeJS.WriteStream, 'write'> & { readonly isTTY?: boolean };
}

/** What the daemon's configuration says, for replay to judge by the same policy; flags override it. */
export interface ReplayBase {
  readonly policy?: Partial<BanPolicyOptions>;
  readonly correlate?: Partial<CorrelatorOptions>;
  readonly timeZone?: string;
}

/** Returns the process exit code: 0 done, 1 a file could not be read, 2 usage error. */
export async function replayCommand(argv: string[], io: ReplayIo = process, base: ReplayBase = {}): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        maxretry: { type: 'string' },
        findtime: { type: 'string' },
        bantime: { type: 'string' },
        'start-grace': { type: 'string' },
        hold: { type: 'string' },
        timezone: { type: 'string' },
      },
    });
  } catch (err) {
    io.stderr.write(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  if (positionals.length === 0) {
    io.stderr.write(USAGE);
    return 2;
  }
  const policy: { -readonly [K in keyof BanPolicyOptions]?: BanPolicyOptions[K] } = { ...base.policy };
  const correlate: { -readonly [K in keyof CorrelatorOptions]?: CorrelatorOptions[K] } = { ...base.correlate };
  const numbers: [string | undefined, string, (n: number) => void][] = [
    [values.maxretry, '--maxretry', (n) => (policy.maxretry = n)],
    [values.findtime, '--findtime', (n) => (policy.findtime = n)],
    [values.bantime, '--bantime', (n) => (policy.bantime = n)],
    [values['start-grace'], '--start-grace', (n) => (correlate.startGraceMs = n * 1000)],
    [values.hold, '--hold', (n) => (correlate.holdMs = n * 1000)],
  ];
  for (const [text, name, set] of numbers) {
    if (text === undefined) continue;
    const n = Number(text);
    if (!/^\d+(\.\d+)?$/.test(text) || !Number.isFinite(n)) {
      io.stderr.write(`${name}: expected a number, got ${JSON.stringify(text)}\n${USAGE}`);
      return 2;
    }
    set(n);
  }
  const tty = io.stderr.isTTY === true;
  const t0 = performance.now();
  try {
    const report = await runReplay(positionals, {
      policy,
      correlate,
      timestamps: { ...DEFAULT_TIMESTAMP_OPTIONS, ...(base.timeZone !== undefined ? { timeZone: base.timeZone } : {}), ...(values.timezone !== undefined ? { timeZone: values.timezone } : {}) },
      ...(tty
        ? {
            progress: (lines: number) => {
              const secs = (performance.now() - t0) / 1000;
              io.stderr.write(`\r${lines} lines, ${Math.round(lines / Math.max(secs, 0.001))} lines/s `);
            },
          }
        : {}),
    });
    if (tty) io.stderr.write('\r\x1b[K');
    io.stdout.write(formatReplayReport(report, { json: values.json === true }));
    return 0;
  } catch (err) {
    if (tty) io.stderr.write('\n');
    const e = err as NodeJS.ErrnoException;
    io.stderr.write(`authban replay: ${e.code === 'ENOENT' || e.code === 'EACCES' ? `${e.path}: ${e.code}` : e.message}\n`);
    return e.code !== undefined ? 1 : 2;
  }
}
