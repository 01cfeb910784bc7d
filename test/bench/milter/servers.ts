/**
 * Starts the milters under test as child processes (so a load generator or fuzzer never
 * shares their event loop or heap) and stops them by pid. Readiness is a real negotiation.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { MtaClient } from '../../helpers/mta-client.js';

export interface RunningMilter {
  readonly pid: number;
  readonly port: number;
  /** Exit code / signal once the process has ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** What the process wrote on stderr so far. */
  stderr(): string;
  stop(): Promise<void>;
}

/** What the child reports on request (see authban-server.ts). */
export interface ChildStats {
  /** Heap in use after a forced GC, bytes. */
  readonly heapUsed: number;
  /** Milter connections the server holds open. */
  readonly connections: number;
  /** Calls the `fuzz` handler has had. */
  readonly handlerCalls: number;
}

export interface AuthbanChild extends RunningMilter {
  stats(): Promise<ChildStats>;
}

/** A port free on 127.0.0.1 right now (for servers that cannot listen on port 0 and tell). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Waits until an OPTNEG on `port` gets its answer, up to `timeoutMs`. */
export async function waitNegotiates(port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (let i = 0; i < 200 && Date.now() < deadline && alive(); i++) {
    try {
      const c = await MtaClient.connect({ port }, { replyTimeoutMs: 1000 });
      try {
        await c.negotiate();
        return;
      } finally {
        c.send({ cmd: 'quit' });
        c.destroy();
      }
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`milter on port ${port} not ready: ${String(last)}`);
}

function track(child: ChildProcess): Pick<RunningMilter, 'exited' | 'stderr' | 'stop'> {
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (err.length < 64 * 1024) err += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  return { exited, stderr: () => err, stop };
}

/** Starts the compiled C no-op milter on a free loopback port. */
export async function startNoopMilter(binary: string): Promise<RunningMilter> {
  const port = await freePort();
  const child = spawn(binary, [`inet:${port}@127.0.0.1`], { stdio: ['ignore', 'ignore', 'pipe'] });
  const t = track(child);
  try {
    await waitNegotiates(port, 10_000, () => child.exitCode === null);
  } catch (e) {
    await t.stop();
    throw new Error(`${(e as Error).message}; stderr: ${t.stderr()}`);
  }
  return { pid: child.pid!, port, ...t };
}

export type ChildHandler = 'noop' | 'fuzz';

const CHILD = new URL('./authban-server.ts', import.meta.url).pathname;

/** Starts an authban MilterServer in its own node process (see authban-server.ts). */
export async function startAuthbanChild(handler: ChildHandler): Promise<AuthbanChild> {
  const child = fork(CHILD, [handler], {
    execArgv: ['--import', 'tsx', '--expose-gc'],
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
  });
  const t = track(child);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`authban child not ready in 20 s; stderr: ${t.stderr()}`)), 20_000);
    child.once('message', (m: { type: string; port: number }) => {
      clearTimeout(timer);
      if (m.type === 'ready') resolve(m.port);
      else reject(new Error(`unexpected first message ${JSON.stringify(m)}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`authban child exited (${code}) before ready; stderr: ${t.stderr()}`));
    });
  }).catch(async (e: Error) => {
    await t.stop();
    throw e;
  });
  const stats = (): Promise<ChildStats> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no stats from the child in 10 s')), 10_000);
      const onMsg = (m: ChildStats & { type: string }): void => {
        if (m.type !== 'stats') return;
        clearTimeout(timer);
        child.off('message', onMsg);
        resolve({ heapUsed: m.heapUsed, connections: m.connections, handlerCalls: m.handlerCalls });
      };
      child.on('message', onMsg);
      child.send({ type: 'stats' });
    });
  return { pid: child.pid!, port, ...t, stats };
}

const CLOCK_TICKS = 100;

/** User + system CPU seconds a process (all its threads) has used so far, from /proc. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
