import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import type { EnforceMetrics, FirewallOp } from './metrics.js';

export interface CommandResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly result: CommandResult,
  ) {
    const why = result.timedOut ? 'timed out' : result.signal ? `killed by ${result.signal}` : `exit ${result.code}`;
    super(`${argv.join(' ')}: ${why}: ${result.stderr.trim().slice(0, 500)}`);
    this.name = 'CommandError';
  }
}

// `nft -j list` of a full set is a few MB; anything far beyond is a runaway.
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/** Runs one process from an argument array (never a shell), feeding `stdin` if given. */
export function execArgv(argv: readonly string[], stdin: string | undefined, timeoutMs: number): Promise<CommandResult> {
  return new Promise((resolve) => {
    const [file, ...args] = argv;
    if (!file) throw new Error('empty command');
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], shell: false, timeout: timeoutMs, killSignal: 'SIGKILL' });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    let spawnError: Error | null = null;
    const collect = (into: Buffer[]) => (b: Buffer) => {
      size += b.length;
      if (size > MAX_OUTPUT_BYTES) child.kill('SIGKILL');
      else into.push(b);
    };
    child.stdout.on('data', collect(out));
    child.stderr.on('data', collect(err));
    child.on('error', (e) => {
      spawnError = e;
    });
    // A child that exits before reading all of stdin makes the pipe fail: its exit code tells.
    child.stdin.on('error', () => {});
    child.stdin.end(stdin ?? '');
    child.on('close', (code, signal) => {
      const stderr = Buffer.concat(err).toString('utf8') + (spawnError ? String(spawnError.message) : '');
      resolve({
        code: spawnError ? null : code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr,
        // spawn's timeout kills with killSignal; no other path here sends SIGKILL except the output cap.
        timedOut: signal === 'SIGKILL' && size <= MAX_OUTPUT_BYTES,
      });
    });
  });
}

export interface CommandRunnerOptions {
  readonly timeoutMs: number;
  readonly attempts: number;
  readonly retryBaseMs: number;
}

export interface CommandRunnerDeps {
  readonly backend: string;
  readonly log: Logger;
  readonly metrics?: EnforceMetrics;
  /** Prepended to every command, e.g. `ip netns exec NAME` in tests; empty in production. */
  readonly prefix?: readonly string[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs a backend's commands with metrics, logging of stderr, and bounded retries. */
export class CommandRunner {
  private readonly prefix: readonly string[];

  constructor(
    private readonly opts: CommandRunnerOptions,
    private readonly deps: CommandRunnerDeps,
  ) {
    this.prefix = deps.prefix ?? [];
  }

  /** One attempt; a non-zero exit is returned, not thrown (for probes such as "does it exist?"). */
  async once(op: FirewallOp, argv: readonly string[], stdin?: string): Promise<CommandResult> {
    const { backend, metrics } = this.deps;
    const full = [...this.prefix, ...argv];
    const started = process.hrtime.bigint();
    const res = await execArgv(full, stdin, this.opts.timeoutMs);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    metrics?.commands.inc({ backend, op });
    metrics?.commandDuration.observe({ backend, op }, seconds);
    if (res.code !== 0) metrics?.commandFailures.inc({ backend, op });
    return res;
  }

  /** Retries with exponential back-off; throws CommandError after the last attempt fails. */
  async run(op: FirewallOp, argv: readonly string[], stdin?: string): Promise<CommandResult> {
    let last: CommandResult | null = null;
    for (let attempt = 1; attempt <= this.opts.attempts; attempt++) {
      last = await this.once(op, argv, stdin);
      if (last.code === 0) return last;
      this.deps.log.warn(
        { backend: this.deps.backend, op, cmd: argv.join(' '), attempt, code: last.code, stderr: last.stderr.trim().slice(0, 1000) },
        'firewall command failed',
      );
      if (attempt < this.opts.attempts) await sleep(this.opts.retryBaseMs * 2 ** (attempt - 1));
    }
    throw new CommandError(argv, last!);
  }
}
