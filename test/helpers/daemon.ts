/**
 * Runs the real daemon (`authban run`) as a child process for integration tests, and the real
 * CLI against it. Ports are chosen by the kernel (port 0) and read back from the JSON log.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';

const ROOT = new URL('../..', import.meta.url).pathname;
const CLI = join(ROOT, 'src/cli.ts');

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly event?: string;
  readonly [k: string]: unknown;
}

export interface RunningDaemon {
  readonly proc: ChildProcess;
  readonly dir: string;
  readonly configFile: string;
  readonly socket: string;
  readonly milterPort: number;
  readonly metricsAddress: string | null;
  readonly logs: LogLine[];
  /** Resolves with the first log line (already seen or still to come) that matches. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** SIGTERM and wait for the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
  kill(): Promise<void>;
}

export function tempDir(prefix = 'authban-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Config for a test daemon: everything on free loopback ports and in `dir`, then `overrides` on top. */
export function testConfig(dir: string, overrides: Record<string, Record<string, unknown>> = {}): Record<string, unknown> {
  const base: Record<string, Record<string, unknown>> = {
    milter: { listen: ['inet:0@127.0.0.1'], shutdownGraceMs: 2000 },
    state: { dir: join(dir, 'state') },
    control: { socket: join(dir, 'control.sock') },
    metrics: { listen: '127.0.0.1:0' },
    log: { level: 'debug' },
  };
  for (const [k, v] of Object.entries(overrides)) base[k] = { ...(base[k] ?? {}), ...v };
  return base;
}

export interface StartOptions {
  /** Command the daemon runs under, e.g. `ip netns exec NS` to run it inside a test namespace. */
  readonly prefix?: readonly string[];
  readonly timeoutMs?: number;
  /** Environment of the daemon (default: the test's own). */
  readonly env?: NodeJS.ProcessEnv;
}

export async function startDaemon(dir: string, config: Record<string, unknown>, opts: StartOptions = {}): Promise<RunningDaemon> {
  const timeoutMs = opts.timeoutMs ?? 20000;
  const configFile = join(dir, 'authban.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const argv = [...(opts.prefix ?? []), process.execPath, '--import', 'tsx', CLI, 'run', '--config', configFile];
  const proc = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  const logs: LogLine[] = [];
  const waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  createInterface({ input: proc.stdout! }).on('line', (text) => {
    let l: LogLine;
    try {
      l = JSON.parse(text) as LogLine;
    } catch {
      return;
    }
    logs.push(l);
    for (const w of [...waiters]) {
      if (w.pred(l)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const waitForLog = (pred: (l: LogLine) => boolean, ms = 10000): Promise<LogLine> => {
    const seen = logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching daemon log line within ${ms} ms; stderr: ${stderr.slice(-2000)}`)), ms);
      const w = { pred, resolve: (l: LogLine) => { clearTimeout(timer); resolve(l); } };
      waiters.push(w);
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`daemon exited (${code}) before the expected log line; stderr: ${stderr.slice(-2000)}`));
      });
    });
  };
  const milterLine = await waitForLog((l) => l.msg === 'milter server listening', timeoutMs);
  const control = await waitForLog((l) => l.event === 'listening' && l.what === 'control', timeoutMs);
  const metrics = (config.metrics as { listen?: string | null } | undefined)?.listen === null ? null : await waitForLog((l) => l.event === 'listening' && l.what === 'metrics', timeoutMs);
  const listen = (milterLine.listen as string[])[0]!;
  // With a prefix (ip netns exec) the child is the prefix's process, which execs node: the
  // signals below still reach the daemon itself.
  return {
    proc,
    dir,
    configFile,
    socket: control.path as string,
    milterPort: Number(/^inet6?:(\d+)/.exec(listen)?.[1] ?? 0),
    metricsAddress: metrics ? (metrics.address as string) : null,
    logs,
    waitForLog,
    async stop(ms = 15000) {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), ms);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await exited;
      }
    },
  };
}

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The real `authban` command line, as a child process. */
export function cli(args: readonly string[], timeoutMs = 20000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? ((err as unknown as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
