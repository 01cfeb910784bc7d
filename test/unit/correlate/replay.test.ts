import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatReplayReport, runReplay } from '../../../src/correlate/replay.js';
import { replayCommand } from '../../../src/correlate/replay-command.js';
import { CAPTURES, capturesAvailable } from '../../helpers/captures.js';

const CAP = CAPTURES;
capturesAvailable();
const MAIL = ['sendmail-LL8', 'sendmail-LL9', 'sendmail-LL10', 'sendmail-LL14'].map((d) => `${CAP}/${d}/mail.log`)
  .concat([`${CAP}/misc/many-auth-one-session-mail.log`, `${CAP}/misc/other-loopback-ip-mail.log`, `${CAP}/misc/milter-down-mail.log`]);
const AUTH = ['sendmail-LL8', 'sendmail-LL9', 'sendmail-LL10', 'sendmail-LL14'].map((d) => `${CAP}/${d}/auth.log`);

/**
 * The test's own reading of the files: each sendmail `AUTH failure` line is one attempt, and
 * its address is the bracketed text at the end of the line.
 */
function expectedFromFiles(files: string[]): { perAddress: Map<string, number>; times: Map<string, string[]> } {
  const perAddress = new Map<string, number>();
  const times = new Map<string, string[]>();
  for (const f of files) {
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      if (!line.includes(': AUTH failure (')) continue;
      const addr = line.slice(line.lastIndexOf('[') + 1, line.lastIndexOf(']'));
      perAddress.set(addr, (perAddress.get(addr) ?? 0) + 1);
      times.set(addr, [...(times.get(addr) ?? []), line.slice(0, 15)]);
    }
  }
  return { perAddress, times };
}

function saslFailureLines(files: string[]): number {
  let n = 0;
  for (const f of files) for (const line of readFileSync(f, 'utf8').split('\n')) if (line.includes(': auth failure: [user=')) n++;
  return n;
}

test('replay of each real capture: failures per address as the files show them', async () => {
  for (const dir of ['sendmail-LL8', 'sendmail-LL9', 'sendmail-LL10', 'sendmail-LL14']) {
    const files = [`${CAP}/${dir}/mail.log`, `${CAP}/${dir}/auth.log`];
    const expected = expectedFromFiles(files).perAddress;
    const report = await runReplay(files, { correlate: { startGraceMs: 0 } });
    const got = new Map(report.addresses.map((a) => [a.address, a.failures]));
    assert.deepEqual(got, expected, dir);
    assert.equal(report.linesRead, files.map((f) => readFileSync(f, 'utf8').split('\n').filter((l) => l !== '').length).reduce((a, b) => a + b), dir);
    const sasl = saslFailureLines(files);
    if (dir !== 'sendmail-LL8') {
      // sendmail reports each failed AUTH itself (LogLevel 9+): every saslauthd line is the
      // same attempt as one of those, counted once, with or without connect lines.
      assert.equal(report.corroborated, sasl, dir);
      assert.equal(report.ambiguous, 0, dir);
    } else {
      // LogLevel 8 logs neither the failure nor a connect line: saslauthd lines cannot be placed.
      assert.equal(report.unattributed.no_session, sasl, dir);
    }
    assert.equal(report.failures, expected.size === 0 ? 0 : [...expected.values()].reduce((a, b) => a + b), dir);
    assert.equal(report.addresses.every((a) => a.exempt === 'loopback'), true);
    assert.equal(report.bans.length, 0, 'loopback is never banned by default');
  }
});

test('replay of all captures at once (merged by time) with loopback bannable: the policy\'s bans', async () => {
  const files = [...MAIL, ...AUTH];
  const { perAddress, times } = expectedFromFiles(MAIL);
  const report = await runReplay(files, {
    correlate: { startGraceMs: 0 },
    policy: { banLoopback: true, maxretry: 5, findtime: 600, bantime: 600 },
    timestamps: { timeZone: 'UTC', futureToleranceSeconds: 7 * 86400 },
  });
  assert.equal(report.bans.length, 1);
  assert.deepEqual(new Map(report.addresses.map((a) => [a.address, a.failures])), perAddress);
  // Every failure happens within ~80 s, far less than findtime and bantime: each address with
  // at least 5 failures is banned once, at its 5th failure.
  const expectedBans = [...times].filter(([, t]) => t.length >= 5).map(([addr, t]) => [addr, t.sort()[4]]);
  assert.deepEqual(
    report.bans.map((b) => {
      const d = new Date(b.at).toUTCString(); // "Wed, 25 Nov 2026 17:35:50 GMT"
      return [b.key, `${d.slice(8, 11)} ${d.slice(5, 7)} ${b.at.slice(11, 19)}`];
    }),
    expectedBans,
  );
});

test('chunk boundaries do not change the result', async () => {
  const files = [`${CAP}/sendmail-LL14/mail.log`, `${CAP}/sendmail-LL14/auth.log`];
  const whole = await runReplay(files, { correlate: { startGraceMs: 0 } });
  const tiny = await runReplay(files, { correlate: { startGraceMs: 0 }, chunkBytes: 97 });
  for (const r of [whole, tiny]) r.elapsedMs = 0;
  assert.deepEqual(tiny, whole);
});

test('formatReplayReport: text and JSON', async () => {
  const report = await runReplay([`${CAP}/misc/many-auth-one-session-mail.log`], { policy: { banLoopback: true } });
  const text = formatReplayReport(report, { json: false });
  assert.match(text, /127\.0\.0\.1: 8 failures, users testuser/);
  assert.match(text, /Bans the policy would make: 1/);
  const parsed = JSON.parse(formatReplayReport(report, { json: true })) as { failures: number };
  assert.equal(parsed.failures, 8);
});

test('replayCommand: exit codes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'authban-replay-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'maillog');
  // A last line without its newline is still read.
  writeFileSync(file, 'Nov 25 17:35:00 vm sendmail[14021]: 6APHYwNB014021: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=u, relay=[203.0.113.50]');
  const writes: string[] = [];
  const errors: string[] = [];
  const io = {
    stdout: { write: (chunk: string | Uint8Array) => (writes.push(String(chunk)), true) },
    stderr: { write: (chunk: string | Uint8Array) => (errors.push(String(chunk)), true), isTTY: false },
  };
  const codes = [
    await replayCommand([file, '--json'], io),
    await replayCommand([join(dir, 'absent')], io),
    await replayCommand([], io),
    await replayCommand([file, '--maxretry', 'x'], io),
  ];
  assert.deepEqual(codes, [0, 1, 2, 2]);
  assert.equal(writes.length, 1);
  assert.equal((JSON.parse(writes[0]!) as { addresses: { address: string }[] }).addresses[0]!.address, '203.0.113.50');
  assert.match(errors.join(''), /absent: ENOENT/);
});

test('UTF-8 text across chunk boundaries, over-long lines and a last line without line end', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'authban-replay-utf8-'));
  try {
    const file = join(dir, 'mail.log');
    const lines: string[] = [];
    for (let i = 0; i < 40; i++) {
      const user = i % 3 === 0 ? `jürgen€${i}` : `user${i}`;
      lines.push(`Nov 25 17:${String(10 + (i % 40)).padStart(2, '0')}:00 vm sendmail[${1000 + i}]: 6APHYwNB00${1000 + i}: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=${user}, relay=[198.51.100.${i % 5}]`);
      if (i % 7 === 0) lines.push(`Nov 25 17:${String(10 + (i % 40)).padStart(2, '0')}:00 vm other[1]: ${'ü'.repeat(3000)}`);
      if (i % 11 === 0) lines.push('');
    }
    writeFileSync(file, lines.join('\n')); // no line end after the last line
    const opts = { correlate: { startGraceMs: 0 }, maxLineLength: 2500 };
    const whole = await runReplay([file], opts);
    assert.equal(whole.linesRead, lines.filter((l) => l !== '').length);
    assert.equal(whole.failures, 40);
    assert.ok(whole.addresses.some((a) => a.users.some((u) => u.startsWith('jürgen€'))));
    for (const chunkBytes of [1, 7, 97, 4096]) {
      const r = await runReplay([file], { ...opts, chunkBytes });
      for (const x of [r, whole]) x.elapsedMs = 0;
      assert.deepEqual(r, whole, `chunkBytes ${chunkBytes}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
