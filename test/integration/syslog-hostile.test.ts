/**
 * The syslog receiver against senders that misbehave or a configuration that points it at
 * someone else's socket: real sockets on loopback and in a temp dir, the real receiver.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { Registry, type Counter } from 'prom-client';
import { createLogsMetrics, type LogsMetrics, type SourceKind } from '../../src/logs/metrics.js';
import { SyslogReceiver, type SyslogReceiverOptions } from '../../src/logs/sources/syslog-receiver.js';
import { testDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';

interface Rig {
  readonly rx: SyslogReceiver;
  readonly lines: string[];
  readonly logs: Array<Record<string, unknown>>;
  readonly metrics: LogsMetrics;
}

async function startReceiver(t: TestContext, options: Partial<SyslogReceiverOptions>): Promise<Rig> {
  const lines: string[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const metrics = createLogsMetrics(new Registry());
  const logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s) as Record<string, unknown>) });
  const rx = new SyslogReceiver(options, (l) => lines.push(l.line), { logger, metrics });
  t.after(() => rx.stop());
  await rx.start();
  return { rx, lines, logs, metrics };
}

async function count(counter: Counter<'source'>, source: SourceKind): Promise<number> {
  return (await counter.get()).values.find((v) => v.labels.source === source)?.value ?? 0;
}

function tcpPort(rx: SyslogReceiver): number {
  const l = rx.listeners.find((x) => x.kind === 'tcp');
  assert.ok(l && l.kind === 'tcp');
  return l.port;
}

/** Connects, writes the payload, half-closes, and resolves when the receiver has closed too. */
function sendAndEnd(target: { port: number } | { path: string }, payload: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = 'port' in target ? connect(target.port, '127.0.0.1') : connect(target.path);
    c.on('connect', () => c.end(payload));
    c.on('error', reject);
    c.on('close', () => resolve());
  });
}

function opened(c: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    c.once('connect', resolve);
    c.once('error', reject);
  });
}

test('syslog unix listener refuses a path a live socket is served on, and leaves it alone', async (t) => {
  const path = join(testDir(t, 'authban-syslog-'), 'milter.sock');
  // The receiver's probe hangs up at once; the live server must survive writing to it.
  const live = createServer((c) => c.on('error', () => undefined).end('still here\n'));
  await new Promise<void>((resolve) => live.listen(path, resolve));
  t.after(() => live.close());
  const rx = new SyslogReceiver({ listen: [{ kind: 'unix', path }] }, () => undefined);
  t.after(() => rx.stop());
  await assert.rejects(rx.start(), /syslog unix listener: .*milter\.sock is in use/);
  const answer = await new Promise<string>((resolve, reject) => {
    let got = '';
    const c = connect(path);
    c.on('data', (d) => (got += d.toString()));
    c.on('error', reject);
    c.on('close', () => resolve(got));
  });
  assert.equal(answer, 'still here\n');
});

test('syslog receiver: connections beyond maxConnections are counted, and warned about once a minute', async (t) => {
  const { rx, lines, logs, metrics } = await startReceiver(t, { listen: [{ kind: 'tcp', host: '127.0.0.1', port: 0 }], maxConnections: 2 });
  const port = tcpPort(rx);
  const held: Socket[] = [];
  t.after(() => held.forEach((c) => c.destroy()));
  for (let i = 0; i < 2; i++) {
    const c = connect(port, '127.0.0.1');
    held.push(c);
    await opened(c);
    c.write(`<13>Nov 25 17:35:00 vm sendmail[1]: held ${i}\n`);
  }
  // Both are accepted once their messages are through; only then is the limit reached.
  await waitFor(() => lines.length === 2, 5000, 'the held connections accepted');
  const extra = [0, 1, 2].map(() => new Promise<void>((resolve) => {
    const c = connect(port, '127.0.0.1');
    c.on('error', () => undefined);
    c.on('close', () => resolve());
  }));
  await Promise.all(extra);
  await waitFor(() => logs.some((l) => l.refused !== undefined), 5000, 'the warning');
  assert.equal(await count(metrics.sourceErrors, 'syslog-tcp'), 3);
  const warnings = logs.filter((l) => l.refused !== undefined);
  assert.equal(warnings.length, 1, 'three refusals inside a minute give one warning');
  assert.equal(warnings[0]!.refused, 1);
  assert.equal(warnings[0]!.maxConnections, 2);
  assert.match(String(warnings[0]!.msg), /maxConnections/);
});

test('syslog receiver: a connection that sends no whole message is closed early; one that did is kept', async (t) => {
  const { rx, lines, metrics } = await startReceiver(t, {
    listen: [{ kind: 'tcp', host: '127.0.0.1', port: 0 }], firstMessageTimeoutMs: 500, idleTimeoutMs: 60_000,
  });
  const port = tcpPort(rx);
  const talker = connect(port, '127.0.0.1');
  const silent = connect(port, '127.0.0.1');
  t.after(() => talker.destroy());
  t.after(() => silent.destroy());
  let talkerClosed = false;
  let silentClosed = false;
  talker.on('close', () => (talkerClosed = true));
  silent.on('close', () => (silentClosed = true));
  await Promise.all([opened(talker), opened(silent)]);
  talker.write('<13>Nov 25 17:35:00 vm sendmail[1]: hello\n');
  silent.write('<13>Nov 25 17:35:00 vm sendmail[1]: never fini');
  await waitFor(() => silentClosed, 5000, 'the silent connection closed');
  // The talker's idle timeout is a minute; three first-message timeouts later it is still open.
  await sleep(1500);
  assert.equal(talkerClosed, false);
  talker.write('<13>Nov 25 17:35:01 vm sendmail[1]: again\n');
  await waitFor(() => lines.length === 2, 5000, 'second message');
  assert.deepEqual(lines, ['<13>Nov 25 17:35:00 vm sendmail[1]: hello', '<13>Nov 25 17:35:01 vm sendmail[1]: again']);
  assert.equal(await count(metrics.sourceErrors, 'syslog-tcp'), 1, 'the unfinished message is counted as lost');
});

test('syslog receiver: the last message without its terminator is delivered at end; a cut octet-counted frame is counted', async (t) => {
  const path = join(testDir(t, 'authban-syslog-'), 'log.sock');
  const { rx, lines, logs, metrics } = await startReceiver(t, {
    listen: [{ kind: 'tcp', host: '127.0.0.1', port: 0 }, { kind: 'unix', path }],
  });
  const port = tcpPort(rx);
  await sendAndEnd({ port }, '<13>Nov 25 17:35:00 vm sendmail[1]: first\n<13>Nov 25 17:35:00 vm sendmail[1]: last without LF');
  await sendAndEnd({ path }, '<13>Nov 25 17:35:00 vm sendmail[2]: first\0<13>Nov 25 17:35:00 vm sendmail[2]: last without NUL');
  await sendAndEnd({ port }, '100 <13>Nov 25 17:35:00 vm sendmail[3]: promised 100 bytes');
  await waitFor(() => lines.length === 4, 5000, 'four messages');
  await waitFor(() => logs.some((l) => l.source === 'syslog-tcp' && l.cleanEnd === true), 5000, 'the loss logged');
  assert.deepEqual(lines, [
    '<13>Nov 25 17:35:00 vm sendmail[1]: first',
    '<13>Nov 25 17:35:00 vm sendmail[1]: last without LF',
    '<13>Nov 25 17:35:00 vm sendmail[2]: first',
    '<13>Nov 25 17:35:00 vm sendmail[2]: last without NUL',
  ]);
  assert.equal(await count(metrics.sourceErrors, 'syslog-tcp'), 1);
  assert.equal(await count(metrics.sourceErrors, 'syslog-unix'), 0);
});

test('syslog receiver: an over-long message is cut at maxMessageBytes and counted, whatever its framing', async (t) => {
  const path = join(testDir(t, 'authban-syslog-'), 'log.sock');
  const { rx, lines, metrics } = await startReceiver(t, {
    listen: [{ kind: 'tcp', host: '127.0.0.1', port: 0 }, { kind: 'unix', path }], maxMessageBytes: 100,
  });
  const port = tcpPort(rx);
  const long = '<13>' + 'A'.repeat(300);
  // Below the limit in the first write, over it once the terminator arrives.
  await new Promise<void>((resolve, reject) => {
    const c = connect(port, '127.0.0.1', () => {
      c.write(long.slice(0, 60));
      setTimeout(() => c.end(`${long.slice(60)}\n<13>short\n`), 50);
    });
    c.on('error', reject);
    c.on('close', () => resolve());
  });
  await sendAndEnd({ path }, `${long}\0<13>short\0`);
  await sendAndEnd({ port }, `${Buffer.byteLength(long)} ${long}9 <13>short`);
  await waitFor(() => lines.length === 6, 5000, 'six messages');
  const cut = long.slice(0, 100);
  assert.deepEqual(lines, [cut, '<13>short', cut, '<13>short', cut, '<13>short']);
  assert.equal(await count(metrics.overlongLines, 'syslog-tcp'), 2);
  assert.equal(await count(metrics.overlongLines, 'syslog-unix'), 1);
});
