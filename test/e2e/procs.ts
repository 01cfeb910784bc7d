/**
 * Child processes for the end-to-end harness: every process is started by argument array
 * (never a shell string), its stdout is kept line by line with the arrival time (swaks reply
 * times and authban's JSON log are measured from it), and it is stopped by its own PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';

export interface Line {
  /** Date.now() when the line reached us. */
  readonly at: number;
  readonly text: string;
}

export interface ProcOptions {
  /** Where stderr (and stdout, when not kept) is appended, for post-mortems. */
  readonly logPath: string;
  readonly cwd?: string;
}

export class Proc {
  readonly lines: Line[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Exited and its output fully read (a short-lived command's transcript is then complete). */
  readonly finished: Promise<{ code: number | null }>;
  private readonly child: ChildProcess;
  private readonly log: WriteStream;
  private readonly waiters = new Set<() => void>();
  private done = false;

  constructor(readonly name: string, argv: readonly string[], opts: ProcOptions) {
    const [cmd, ...args] = argv;
    if (cmd === undefined) throw new Error('empty argv');
    this.log = createWriteStream(opts.logPath, { flags: 'a' });
    // Its own process group: saslauthd signals its whole group on SIGTERM, which would
    // otherwise include the test runner.
    this.child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...(opts.cwd ? { cwd: opts.cwd } : {}) });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.done = true;
        this.wake();
        resolve({ code, signal });
      });
    });
    this.finished = new Promise((resolve) => this.child.once('close', (code) => resolve({ code })));
    this.child.once('error', (err) => this.record(`spawn error: ${String(err)}\n`));
    // Output can still arrive after exit (a forked child keeps the pipe): never write past end.
    this.child.stderr?.on('data', (chunk: Buffer) => this.record(chunk));
    if (this.child.stdout) {
      createInterface({ input: this.child.stdout }).on('line', (text) => {
        this.lines.push({ at: Date.now(), text });
        this.record(`${text}\n`);
        this.wake();
      });
    }
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.name} did not start`);
    return this.child.pid;
  }

  get running(): boolean {
    return !this.done;
  }

  /** Resolves with the first kept line matching, or rejects after timeoutMs. */
  async waitForLine(match: (line: Line) => boolean, timeoutMs: number, from = 0): Promise<Line> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.slice(from).find(match);
      if (hit) return hit;
      if (this.done) throw new Error(`${this.name} exited before the expected output`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: no expected output within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(finish, left);
        this.waiters.add(finish);
        function finish(): void {
          clearTimeout(timer);
          resolve();
        }
      });
    }
  }

  /**
   * SIGKILL now to the process group it leads (its forked workers too: a killed saslauthd
   * master leaves them behind), without waiting, for a synchronous exit path.
   */
  kill(): void {
    if (this.done || this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // the group is already gone
    }
  }

  /** SIGTERM, then SIGKILL if the process is still there after graceMs. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.done || this.child.pid === undefined) return this.closeLog();
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.kill(), graceMs);
    await this.exited;
    clearTimeout(timer);
    this.closeLog();
  }

  private record(data: string | Buffer): void {
    if (!this.log.writableEnded) this.log.write(data);
  }

  private closeLog(): void {
    if (!this.log.writableEnded) this.log.end();
  }

  private wake(): void {
    const all = [...this.waiters];
    this.waiters.clear();
    for (const w of all) w();
  }
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly input?: string;
  readonly cwd?: string;
}

/** Runs a short command to completion, killed (by its PID) after timeoutMs. */
export function run(argv: readonly string[], timeoutMs: number, opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('empty argv');
  return new Promise((resolve, reject) => {
    const stdin = opts.input === undefined ? 'ignore' : 'pipe';
    const child = spawn(cmd, args, { stdio: [stdin, 'pipe', 'pipe'], ...(opts.cwd ? { cwd: opts.cwd } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // A command that exits without reading its input must not crash us with EPIPE.
    child.stdin?.on('error', () => undefined).end(opts.input);
  });
}

/** Runs and throws with the command's output when it does not exit 0. */
export async function runOk(argv: readonly string[], timeoutMs: number, opts: RunOptions = {}): Promise<string> {
  const r = await run(argv, timeoutMs, opts);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/** Polls check() until it returns a value other than undefined, at most timeoutMs. */
export async function pollUntil<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
