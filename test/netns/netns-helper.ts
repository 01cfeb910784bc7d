/**
 * Two network namespaces joined by a veth pair: a server (198.51.100.1, 2001:db8::1) running
 * TCP listeners and a firewall backend, and a client (198.51.100.2-5, 2001:db8::2-3) that
 * probes it. Everything is torn down by PID and name in t.after, also when the test fails.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { isRoot, needsOrSkip } from '../helpers/require-root.js';

export const SRV4 = '198.51.100.1';
export const SRV6 = '2001:db8::1';
export const CLI4 = ['198.51.100.2', '198.51.100.3', '198.51.100.4', '198.51.100.5'] as const;
export const CLI6 = ['2001:db8::2', '2001:db8::3'] as const;
/** Ports the backends under test guard; OPEN_PORT is listened on but never guarded. */
export const GUARDED_PORT = 25;
export const OPEN_PORT = 2626;

export type ProbeResult = 'connected' | 'refused' | 'timeout' | 'error';

export interface Netns {
  readonly srv: string;
  readonly cli: string;
  /** `ip netns exec SRV`: the backend's command prefix. */
  readonly prefix: readonly string[];
  probe(host: string, port: number, local: string): Promise<ProbeResult>;
  /** Runs a command in the server namespace and returns its stdout. */
  inSrv(...argv: string[]): string;
}

let counter = 0;

export function haveTools(...tools: string[]): boolean {
  return tools.every((t) => spawnSync('sh', ['-c', 'command -v "$1"', 'sh', t]).status === 0);
}

/** Skips (loudly; fails under CI) without root and the tools; else builds the namespaces. */
export async function setupNetns(t: TestContext, tools: string[]): Promise<Netns | null> {
  if (!needsOrSkip(t, isRoot, 'needs root for network namespaces')) return null;
  if (!needsOrSkip(t, haveTools('ip', ...tools), `needs ${['ip', ...tools].join(', ')}`)) return null;
  const n = ++counter;
  const srv = `ab-${process.pid}-${n}-srv`;
  const cli = `ab-${process.pid}-${n}-cli`;
  const vs = `ab${process.pid}x${n}s`.slice(-15);
  const vc = `ab${process.pid}x${n}c`.slice(-15);
  const children: ChildProcess[] = [];
  t.after(() => {
    for (const c of children) if (c.pid && c.exitCode === null) process.kill(c.pid, 'SIGKILL');
    for (const ns of [srv, cli]) spawnSync('ip', ['netns', 'del', ns]);
  });
  const ip = (...a: string[]) => execFileSync('ip', a, { stdio: ['ignore', 'pipe', 'pipe'] });
  ip('netns', 'add', srv);
  ip('netns', 'add', cli);
  ip('link', 'add', vs, 'netns', srv, 'type', 'veth', 'peer', 'name', vc, 'netns', cli);
  ip('-n', srv, 'addr', 'add', `${SRV4}/24`, 'dev', vs);
  ip('-n', srv, 'addr', 'add', `${SRV6}/64`, 'dev', vs, 'nodad');
  for (const a of CLI4) ip('-n', cli, 'addr', 'add', `${a}/24`, 'dev', vc);
  for (const a of CLI6) ip('-n', cli, 'addr', 'add', `${a}/64`, 'dev', vc, 'nodad');
  for (const [ns, dev] of [[srv, vs], [cli, vc]] as const) {
    // DAD on the link-local address would hold neighbour discovery back for a second or two.
    ip('netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${dev}.accept_dad=0`);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'set', dev, 'up');
  }

  const listener = spawn('ip', ['netns', 'exec', srv, process.execPath, '-e', LISTENER, String(GUARDED_PORT), String(OPEN_PORT)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(listener);
  await firstLine(listener, 'listening', 5000);

  const prober = spawn('ip', ['netns', 'exec', cli, process.execPath, '-e', PROBER], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(prober);
  const waiting = new Map<number, (r: ProbeResult) => void>();
  createInterface({ input: prober.stdout! }).on('line', (line) => {
    const { id, result } = JSON.parse(line) as { id: number; result: ProbeResult };
    waiting.get(id)?.(result);
    waiting.delete(id);
  });
  let nextId = 0;

  const netns: Netns = {
    srv,
    cli,
    prefix: ['ip', 'netns', 'exec', srv],
    probe(host, port, local) {
      const id = ++nextId;
      return new Promise((resolve) => {
        waiting.set(id, resolve);
        prober.stdin!.write(`${JSON.stringify({ id, host, port, local })}\n`);
      });
    },
    inSrv(...argv) {
      return execFileSync('ip', ['netns', 'exec', srv, ...argv], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    },
  };
  // Ready when every client address reaches the server: neighbour caches are warm after this.
  for (const [host, locals] of [[SRV4, CLI4], [SRV6, CLI6]] as const) {
    for (const local of locals) {
      const ok = await waitFor(async () => (await netns.probe(host, OPEN_PORT, local)) === 'connected', 5000);
      if (ok === null) throw new Error(`namespace link not ready: ${local} -> ${host}`);
    }
  }
  return netns;
}

/** Polls `check` until it holds or `withinMs` passes; returns the elapsed ms or null. */
export async function waitFor(check: () => Promise<boolean>, withinMs: number, stepMs = 100): Promise<number | null> {
  const start = Date.now();
  for (let i = 0; i < Math.ceil(withinMs / stepMs) + 1; i++) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > withinMs) break;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return null;
}

function firstLine(child: ChildProcess, want: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${want}" from child within ${timeoutMs} ms`)), timeoutMs);
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      if (line.trim() === want) resolve();
      else reject(new Error(`unexpected child output: ${line}`));
    });
  });
}

// Dual-stack listeners that accept and close; they only need to complete the handshake.
const LISTENER = `
const net = require('node:net');
const ports = process.argv.slice(1).map(Number);
let up = 0;
for (const port of ports) {
  net.createServer((s) => s.end()).listen({ port, host: '::', ipv6Only: false }, () => {
    if (++up === ports.length) console.log('listening');
  });
}`;

// One long-lived prober: a JSON line in, a JSON line out; 700 ms is plenty on a veth.
const PROBER = `
const net = require('node:net');
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, host, port, local } = JSON.parse(line);
  let done = false;
  const finish = (result) => {
    if (done) return;
    done = true;
    sock.destroy();
    process.stdout.write(JSON.stringify({ id, result }) + '\\n');
  };
  const sock = net.connect({ host, port, localAddress: local });
  sock.setTimeout(700, () => finish('timeout'));
  sock.on('connect', () => finish('connected'));
  sock.on('error', (e) => finish(e.code === 'ECONNREFUSED' ? 'refused' : 'error'));
});`;
