import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import {
  appendFileSync, chmodSync, closeSync, copyFileSync, openSync, readFileSync, renameSync,
  truncateSync, writeFileSync, writeSync,
} from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { createLogsMetrics } from '../../src/logs/metrics.js';
import { parseLine } from '../../src/logs/parse-line.js';
import type { SourceLine } from '../../src/logs/records.js';
import { FileFollower } from '../../src/logs/sources/file-follower.js';
import { JournalSource } from '../../src/logs/sources/journal.js';
import { SyslogReceiver } from '../../src/logs/sources/syslog-receiver.js';
import { needsOrSkip } from '../helpers/require-root.js';
import { waitFor } from '../helpers/wait-for.js';
import { testDir } from '../helpers/temp-dir.js';

const tempDir = (t: TestContext): string => testDir(t, 'authban-logs-');

function lineNo(i: number): string {
  return `Nov 25 17:35:00 vm sendmail[${1000 + i}]: line ${i} ${'x'.repeat(i % 37)}`;
}

const TOTAL = 3000;
const BURST = 25;
const ROTATE_EVERY = 500;

test('follower: rename-and-create while a writer appends; every line once, in order', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'mail.log');
  writeFileSync(path, 'old line before start\n');
  const seen: string[] = [];
  const metrics = createLogsMetrics(new Registry());
  const f = new FileFollower({ path, pollIntervalMs: 50 }, (l) => seen.push(l.line), { metrics });
  t.after(() => f.stop());
  await f.start();
  const expected: string[] = [];
  let rotations = 0;
  for (let i = 0; i < TOTAL; ) {
    // A burst written without yielding: the follower has not read it when the rename comes.
    for (let b = 0; b < BURST && i < TOTAL; b++, i++) {
      appendFileSync(path, lineNo(i) + '\n');
      expected.push(lineNo(i));
    }
    if (i % ROTATE_EVERY === 0 && i < TOTAL) {
      // Rotations are far apart in life: the follower has found the current file (seen its
      // first line) before it is rotated again. The burst just written is still unread.
      const first = lineNo(i - ROTATE_EVERY);
      await waitFor(() => seen.includes(first), 5000, 'follower on the current file');
      renameSync(path, `${path}.${++rotations}`);
    }
    await sleep(1);
  }
  await waitFor(() => seen.length >= expected.length, 5000, 'all lines');
  await sleep(100);
  assert.equal(seen.length, expected.length);
  assert.deepEqual(seen, expected);
  assert.ok(rotations >= 5);
  assert.equal((await metrics.rotations.get()).values.find((v) => v.labels.kind === 'rename')?.value, rotations);
});

test('follower: a writer that keeps its descriptor after the rename (rsyslog before HUP)', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'mail.log');
  writeFileSync(path, '');
  const seen: string[] = [];
  const f = new FileFollower({ path, pollIntervalMs: 50, rotateGraceMs: 2000 }, (l) => seen.push(l.line));
  t.after(() => f.stop());
  await f.start();
  const expected: string[] = [];
  let fd = openSync(path, 'a');
  t.after(() => closeSync(fd));
  let firstOfFile = lineNo(0);
  for (let i = 0; i < 1200; i++) {
    writeSync(fd, lineNo(i) + '\n');
    expected.push(lineNo(i));
    if (i % 300 === 299) {
      await waitFor(() => seen.includes(firstOfFile), 5000, 'follower on the current file');
      renameSync(path, `${path}.${i}`);
      // Keep writing to the renamed file for a while, then reopen.
      for (let k = 0; k < 10; k++) {
        i++;
        writeSync(fd, lineNo(i) + '\n');
        expected.push(lineNo(i));
        await sleep(2);
      }
      closeSync(fd);
      fd = openSync(path, 'a');
      firstOfFile = lineNo(i + 1);
    }
    if (i % BURST === 0) await sleep(1);
  }
  await waitFor(() => seen.length >= expected.length, 5000, 'all lines');
  await sleep(100);
  assert.deepEqual(seen, expected);
});

test('follower: copytruncate while a writer appends', async (t) => {
  // copytruncate itself loses lines written between the copy and the truncate, for any
  // reader; the rotator here does what logrotate does at a quiet moment: it waits until the
  // follower has read what was written, then copies and truncates while the writer resumes.
  const dir = tempDir(t);
  const path = join(dir, 'mail.log');
  writeFileSync(path, '');
  const seen: string[] = [];
  const metrics = createLogsMetrics(new Registry());
  const f = new FileFollower({ path, pollIntervalMs: 50 }, (l) => seen.push(l.line), { metrics });
  t.after(() => f.stop());
  await f.start();
  const expected: string[] = [];
  let truncations = 0;
  for (let i = 0; i < TOTAL; ) {
    for (let b = 0; b < BURST && i < TOTAL; b++, i++) {
      appendFileSync(path, lineNo(i) + '\n');
      expected.push(lineNo(i));
    }
    if (i % ROTATE_EVERY === 0) {
      await waitFor(() => seen.length === expected.length, 5000, 'follower caught up');
      copyFileSync(path, `${path}.${++truncations}`);
      truncateSync(path, 0);
    }
    await sleep(1);
  }
  await waitFor(() => seen.length >= expected.length, 5000, 'all lines');
  await sleep(100);
  assert.deepEqual(seen, expected);
  const truncs = (await metrics.rotations.get()).values.find((v) => v.labels.kind === 'truncate')?.value;
  assert.equal(truncs, truncations);
});

test('follower: starts at the end by default, or at the start when asked', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'a.log');
  writeFileSync(path, 'one\ntwo\n');
  const tail: string[] = [];
  const head: string[] = [];
  const a = new FileFollower({ path, pollIntervalMs: 20 }, (l) => tail.push(l.line));
  const b = new FileFollower({ path, pollIntervalMs: 20, fromStart: true }, (l) => head.push(l.line));
  t.after(() => a.stop());
  t.after(() => b.stop());
  await a.start();
  await b.start();
  appendFileSync(path, 'three\n');
  await waitFor(() => tail.length === 1 && head.length === 3, 5000, 'three');
  assert.deepEqual(tail, ['three']);
  assert.deepEqual(head, ['one', 'two', 'three']);
});

test('follower: a partial last line is held until its newline', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'p.log');
  writeFileSync(path, '');
  const seen: SourceLine[] = [];
  const f = new FileFollower({ path, pollIntervalMs: 20 }, (l) => seen.push(l));
  t.after(() => f.stop());
  await f.start();
  appendFileSync(path, 'Nov 25 17:35:00 vm sendmail[1]: par');
  await sleep(150);
  await f.wake();
  assert.equal(seen.length, 0);
  appendFileSync(path, 'tial\r\nnext');
  await waitFor(() => seen.length === 1, 5000, 'joined line');
  assert.equal(seen[0]!.line, 'Nov 25 17:35:00 vm sendmail[1]: partial');
  assert.equal(seen[0]!.origin, path);
  appendFileSync(path, '\n');
  await waitFor(() => seen.length === 2, 5000, 'next');
  assert.equal(seen[1]!.line, 'next');
});

test('follower: waits for a file that appears late, reads it from its start', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'late.log');
  const seen: string[] = [];
  const f = new FileFollower({ path, pollIntervalMs: 30 }, (l) => seen.push(l.line));
  t.after(() => f.stop());
  await f.start();
  await sleep(100);
  writeFileSync(path, 'first\nsecond\n');
  await waitFor(() => seen.length === 2, 5000, 'late lines');
  assert.deepEqual(seen, ['first', 'second']);
});

test('follower: over-long lines are truncated and counted', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'long.log');
  writeFileSync(path, '');
  const seen: string[] = [];
  const metrics = createLogsMetrics(new Registry());
  const f = new FileFollower({ path, pollIntervalMs: 20, maxLineBytes: 100 }, (l) => seen.push(l.line), { metrics });
  t.after(() => f.stop());
  await f.start();
  appendFileSync(path, 'a'.repeat(5000) + '\nshort\n');
  await waitFor(() => seen.length === 2, 5000, 'lines');
  assert.deepEqual(seen, ['a'.repeat(100), 'short']);
  assert.equal((await metrics.overlongLines.get()).values[0]?.value, 1);
});

// ---- syslog receiver ----

const AUTH_LINE_MSG = '6APHYwNB014021: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=testuser, relay=h [198.51.100.7]';

function addressOf(l: SourceLine): string | undefined {
  const r = parseLine(l.line, l.receivedAt);
  return r.outcome === 'matched' && 'address' in r.record ? r.record.address : undefined;
}

test('syslog receiver: UDP datagrams from node dgram, RFC 3164 and RFC 5424', async (t) => {
  const got: SourceLine[] = [];
  const rx = new SyslogReceiver({ listen: [{ kind: 'udp', host: '127.0.0.1', port: 0 }, { kind: 'udp', host: '::1', port: 0 }] }, (l) => got.push(l));
  t.after(() => rx.stop());
  await rx.start();
  const ports = rx.listeners.map((l) => (l.kind === 'unix' ? 0 : l.port));
  const [v4, v6] = ports;
  const s4 = createSocket('udp4');
  const s6 = createSocket('udp6');
  t.after(() => s4.close());
  t.after(() => s6.close());
  s4.send(`<22>Nov 25 17:35:00 vm sendmail[14021]: ${AUTH_LINE_MSG}\n`, v4!, '127.0.0.1');
  s6.send(`<22>1 2026-11-25T17:35:00.123456+01:00 vm sm-mta 14021 - [meta x="1\\]"] ${AUTH_LINE_MSG}`, v6!, '::1');
  await waitFor(() => got.length === 2, 5000, 'two datagrams');
  assert.deepEqual(got.map(addressOf), ['198.51.100.7', '198.51.100.7']);
  assert.ok(got.every((l) => l.origin === 'syslog:udp' && !l.line.endsWith('\n')));
});

test('syslog receiver: TCP with octet counting and LF framing, unix stream with NUL', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'log.sock');
  const got: SourceLine[] = [];
  const rx = new SyslogReceiver({ listen: [{ kind: 'tcp', host: '127.0.0.1', port: 0 }, { kind: 'unix', path: sock }] }, (l) => got.push(l));
  t.after(() => rx.stop());
  await rx.start();
  const tcp = rx.listeners.find((l) => l.kind === 'tcp') as { port: number };
  const m1 = `<22>1 2026-11-25T17:35:00Z vm sendmail 1 - - ${AUTH_LINE_MSG}`;
  const m2 = `<22>Nov 25 17:35:00 vm sendmail[2]: ${AUTH_LINE_MSG}`;
  const payload = Buffer.concat([
    Buffer.from(`${Buffer.byteLength(m1)} ${m1}`), Buffer.from(`${m2}\n`),
  ]);
  await new Promise<void>((resolve, reject) => {
    const c = connect(tcp.port, '127.0.0.1', () => {
      // Split the frames at an awkward byte to exercise reassembly.
      c.write(payload.subarray(0, 7));
      setTimeout(() => c.end(payload.subarray(7)), 20);
    });
    c.on('error', reject);
    c.on('close', () => resolve());
  });
  await new Promise<void>((resolve, reject) => {
    const c = connect(sock, () => c.end(`<38>Nov 25 17:35:01 saslauthd[3]: x\0<38>Nov 25 17:35:02 saslauthd[3]: y\0`));
    c.on('error', reject);
    c.on('close', () => resolve());
  });
  await waitFor(() => got.length === 4, 5000, 'four messages');
  assert.deepEqual(got.slice(0, 2).map(addressOf), ['198.51.100.7', '198.51.100.7']);
  assert.deepEqual(got.slice(2).map((l) => [l.origin, l.line]), [
    ['syslog:unix', '<38>Nov 25 17:35:01 saslauthd[3]: x'],
    ['syslog:unix', '<38>Nov 25 17:35:02 saslauthd[3]: y'],
  ]);
});

test('syslog receiver refuses a non-loopback bind unless allowed', () => {
  assert.throws(() => new SyslogReceiver({ listen: [{ kind: 'udp', host: '0.0.0.0', port: 0 }] }, () => undefined));
  assert.throws(() => new SyslogReceiver({ listen: [{ kind: 'udp', host: 'localhost', port: 0 }] }, () => undefined));
});

const hasLogger = spawnSync('logger', ['--version']).status === 0;

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 5000 }, (err) => (err ? reject(err) : resolve()));
  });
}

test('syslog receiver: real datagrams and streams from util-linux logger', async (t) => {
  if (!needsOrSkip(t, hasLogger, 'logger (bsdutils) not installed')) return;
  const dir = tempDir(t);
  const sock = join(dir, 'stream.sock');
  const got: SourceLine[] = [];
  const rx = new SyslogReceiver({
    listen: [{ kind: 'udp', host: '127.0.0.1', port: 0 }, { kind: 'tcp', host: '127.0.0.1', port: 0 }, { kind: 'unix', path: sock }],
  }, (l) => got.push(l));
  t.after(() => rx.stop());
  await rx.start();
  const udp = rx.listeners.find((l) => l.kind === 'udp') as { port: number };
  const tcp = rx.listeners.find((l) => l.kind === 'tcp') as { port: number };
  const P = String(udp.port);
  // nohost: logger then never looks its own name up.
  await run('logger', ['-n', '127.0.0.1', '-P', P, '-d', '--rfc5424=nohost', '-t', 'sendmail', '--id=14021', AUTH_LINE_MSG]);
  await run('logger', ['-n', '127.0.0.1', '-P', P, '-d', '--rfc3164', '-t', 'sm-mta', '--id=14022', AUTH_LINE_MSG]);
  await run('logger', ['-n', '127.0.0.1', '-P', String(tcp.port), '-T', '--octet-count', '--rfc5424=nohost', '-t', 'sendmail', AUTH_LINE_MSG]);
  await run('logger', ['-u', sock, '-T', '-t', 'sendmail', AUTH_LINE_MSG]);
  await waitFor(() => got.length === 4, 5000, 'four messages');
  const byOrigin = got.map((l) => l.origin).sort();
  assert.deepEqual(byOrigin, ['syslog:tcp', 'syslog:udp', 'syslog:udp', 'syslog:unix']);
  for (const l of got) assert.equal(addressOf(l), '198.51.100.7', l.line);
  const pids = got.filter((l) => l.origin === 'syslog:udp').map((l) => {
    const r = parseLine(l.line, l.receivedAt);
    return r.outcome === 'matched' ? r.record.pid : undefined;
  }).sort();
  assert.deepEqual(pids, [14021, 14022]);
});

// ---- journal ----

/**
 * A journalctl stand-in that appends its arguments to `args` and then runs `body`, followed
 * by a JournalSource on it that restarts quickly; the test stops it.
 */
function fakeJournal(t: TestContext, body: string): { j: JournalSource; got: SourceLine[]; runs: () => string[] } {
  const dir = tempDir(t);
  const script = join(dir, 'fake-journalctl');
  const argsLog = join(dir, 'args');
  writeFileSync(script, `#!/bin/sh\necho "$*" >> '${argsLog}'\n${body}\n`);
  chmodSync(script, 0o755);
  const got: SourceLine[] = [];
  const j = new JournalSource({ command: script, restartMinMs: 20, restartMaxMs: 80 }, (l) => got.push(l));
  t.after(() => j.stop());
  return { j, got, runs: () => readFileSync(argsLog, 'utf8').trim().split('\n') };
}

test('journal: parses journalctl JSON lines and restarts after the last cursor', async (t) => {
  // Prints one entry, numbered by its run, and exits.
  const { j, got, runs } = fakeJournal(t, `n=$(wc -l < "$(dirname "$0")/args")
printf '%s\\n' "{\\"__CURSOR\\":\\"s=abc;i=$n\\",\\"__REALTIME_TIMESTAMP\\":\\"1795628113000000\\",\\"SYSLOG_IDENTIFIER\\":\\"sm-mta\\",\\"_PID\\":\\"14021\\",\\"MESSAGE\\":\\"NOQUEUE: connect from h [198.51.100.$n]\\"}"`);
  j.start();
  await waitFor(() => got.length >= 3, 5000, 'three runs');
  await j.stop();
  const [first, second, third] = runs();
  assert.ok(first!.includes('--lines=0'));
  assert.ok(first!.includes('SYSLOG_IDENTIFIER=sendmail SYSLOG_IDENTIFIER=sm-mta SYSLOG_IDENTIFIER=saslauthd _UID=0 + SYSLOG_FACILITY=4 SYSLOG_FACILITY=10 _UID=0'));
  assert.ok(second!.includes('--after-cursor=s=abc;i=1'), second);
  assert.ok(third!.includes('--after-cursor=s=abc;i=2'), third);
  assert.deepEqual(got.slice(0, 3).map(addressOf), ['198.51.100.1', '198.51.100.2', '198.51.100.3']);
  assert.ok(got.every((l) => l.origin === 'journal'));
});

test('journal: a malformed cursor is no crash; the last good cursor is kept', async (t) => {
  // A good entry, then one whose cursor holds an escape journalctl never prints, then exit.
  const { j, got, runs } = fakeJournal(t, `printf '%s\\n' '{"__CURSOR":"s=abc;i=1","__REALTIME_TIMESTAMP":"1795628113000000","SYSLOG_IDENTIFIER":"sm-mta","MESSAGE":"one"}'
printf '%s\\n' '{"__CURSOR":"s=abc\\q","__REALTIME_TIMESTAMP":"1795628113000000","SYSLOG_IDENTIFIER":"sm-mta","MESSAGE":"two"}'`);
  j.start();
  await waitFor(() => j.starts >= 2 && got.length >= 4, 5000, 'a restart after the malformed line');
  await j.stop();
  assert.ok(runs()[1]!.includes('--after-cursor=s=abc;i=1'), runs()[1]);
});

test('journal: a missing journalctl is retried, not fatal', async (t) => {
  const j = new JournalSource({ command: '/nonexistent/journalctl', restartMinMs: 10, restartMaxMs: 20 }, () => undefined);
  t.after(() => j.stop());
  j.start();
  await waitFor(() => j.starts >= 3, 5000, 'retries');
  await j.stop();
  const n = j.starts;
  await sleep(60);
  assert.equal(j.starts, n, 'no restart after stop');
});

test('follower: resumes a saved position on the same inode (partial line included), reads a new inode from its start', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'mail.log');
  writeFileSync(path, 'a1\na2\n');
  const seen: string[] = [];
  const first = new FileFollower({ path, pollIntervalMs: 50, fromStart: true }, (l) => seen.push(l.line));
  await first.start();
  await waitFor(() => seen.length === 2, 5000, 'first lines');
  appendFileSync(path, 'a3\npart');
  await first.wake();
  await waitFor(() => seen.length === 3, 5000, 'a3');
  await first.stop();
  const pos = first.position();
  assert.ok(pos);
  assert.equal(pos.offset, 'a1\na2\na3\n'.length, 'the held partial line is not counted as read');

  appendFileSync(path, 'ial\na4\n');
  const again: string[] = [];
  const second = new FileFollower({ path, pollIntervalMs: 50, resume: pos }, (l) => again.push(l.line));
  t.after(() => second.stop());
  await second.start();
  await waitFor(() => again.length === 2, 5000, 'lines after the saved position');
  assert.deepEqual(again, ['partial', 'a4']);

  // Rotated while stopped: the saved inode is gone, the new file is read from its start.
  await second.stop();
  renameSync(path, `${path}.1`);
  writeFileSync(path, 'b1\n');
  const third: string[] = [];
  const f3 = new FileFollower({ path, pollIntervalMs: 50, resume: second.position() }, (l) => third.push(l.line));
  t.after(() => f3.stop());
  await f3.start();
  await waitFor(() => third.length === 1, 5000, 'new inode from its start');
  assert.deepEqual(third, ['b1']);
});
