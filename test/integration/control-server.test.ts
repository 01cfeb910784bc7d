/**
 * The control socket under clients that misbehave: requests pipelined on one connection are
 * answered in order even when the first is the slow one; a silent connection is closed; past
 * the connection cap, further connections are closed and the refusal is logged. Real unix
 * sockets in a temporary directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { startControlServer, type ControlRequest } from '../../src/ops/control-server.js';
import { testDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';

const silent = pino({ level: 'silent' });

function open(path: string): Promise<{ sock: Socket; lines: string[]; closed: () => boolean }> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const lines: string[] = [];
    let closed = false;
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    sock.on('close', () => {
      closed = true;
    });
    sock.once('error', reject);
    sock.once('connect', () => resolve({ sock, lines, closed: () => closed }));
  });
}

test('control: pipelined requests are answered in request order', async (t) => {
  const path = join(testDir(t), 'control.sock');
  // The first request is the slow one: without ordering, the second's answer would overtake it.
  const dispatch = async (req: ControlRequest): Promise<unknown> => {
    const n = Number(req.args?.n);
    await new Promise((r) => setTimeout(r, n === 1 ? 100 : 0));
    return n;
  };
  const server = await startControlServer(path, dispatch, silent);
  t.after(() => server.close());
  const c = await open(path);
  t.after(() => c.sock.destroy());
  c.sock.write(`${[1, 2, 3].map((n) => JSON.stringify({ cmd: 'x', args: { n } })).join('\n')}\n`);
  await waitFor(() => c.lines.length === 3, 5000, 'three answers');
  assert.deepEqual(c.lines.map((l) => (JSON.parse(l) as { result: number }).result), [1, 2, 3]);
});

test('control: a silent connection is closed; connections past the cap are closed and logged', async (t) => {
  const path = join(testDir(t), 'control.sock');
  const warnings: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (s: string) => warnings.push((JSON.parse(s) as { msg: string }).msg) });
  const quick = await startControlServer(`${path}.idle`, async () => 'ok', logger, { idleTimeoutMs: 200 });
  t.after(() => quick.close());
  const idle = await open(`${path}.idle`);
  t.after(() => idle.sock.destroy());
  await waitFor(idle.closed, 5000, 'the idle connection to be closed');

  const server = await startControlServer(path, async () => 'ok', logger, { maxConnections: 2 });
  t.after(() => server.close());
  const a = await open(path);
  const b = await open(path);
  t.after(() => {
    a.sock.destroy();
    b.sock.destroy();
  });
  const third = await open(path);
  t.after(() => third.sock.destroy());
  await waitFor(third.closed, 5000, 'the connection past the cap to be closed');
  await waitFor(() => warnings.some((w) => /1 connections refused \(at most 2 at once\)/.test(w)), 5000, 'the refusal warning');
  // The two within the cap are still served.
  a.sock.write('{"cmd":"x"}\n');
  await waitFor(() => a.lines.length === 1, 5000, 'an answer within the cap');
  assert.deepEqual(JSON.parse(a.lines[0]!), { ok: true, result: 'ok' });
});
