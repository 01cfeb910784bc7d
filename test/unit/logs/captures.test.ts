import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLine, type ParseResult } from '../../../src/logs/parse-line.js';
import type { LogRecord } from '../../../src/logs/records.js';
import { CAPTURES, capturesAvailable } from '../../helpers/captures.js';

const UTC = { timeZone: 'UTC', futureToleranceSeconds: 7 * 86400 };
// Read in January: the November capture lines must land in the previous year.
const REF = Date.UTC(2027, 0, 10);

function lines(file: string): string[] {
  return readFileSync(join(CAPTURES, file), 'utf8').split('\n').filter((l) => l !== '');
}

function parseAll(file: string): Array<{ line: string; r: ParseResult }> {
  return lines(file).map((line) => ({ line, r: parseLine(line, REF, UTC) }));
}

function records(file: string): LogRecord[] {
  return parseAll(file).flatMap(({ r }) => (r.outcome === 'matched' ? [r.record] : []));
}

const available = capturesAvailable();

test('every captured line splits, and lands in November 2026', { skip: !available && 'no captures' }, () => {
  const files = readdirSync(CAPTURES, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.log'));
  assert.ok(files.length >= 10);
  for (const f of files) {
    for (const { line, r } of parseAll(f)) {
      assert.notEqual(r.outcome, 'unparsable', line);
      if (r.outcome === 'unparsable') continue;
      const d = new Date(r.header.at);
      assert.deepEqual([d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()], [2026, 10, 25], line);
    }
  }
});

for (const level of ['LL9', 'LL10', 'LL14']) {
  test(`sendmail ${level}: every AUTH failure line gives address, user, queue id matching the pid`, { skip: !available && 'no captures' }, () => {
    const file = `sendmail-${level}/mail.log`;
    let failures = 0;
    for (const { line, r } of parseAll(file)) {
      if (!line.includes('AUTH failure (')) continue;
      failures++;
      assert.equal(r.outcome, 'matched', line);
      if (r.outcome !== 'matched' || r.record.kind !== 'sendmail-auth-failure') return assert.fail(line);
      const rec = r.record;
      assert.equal(rec.address, '127.0.0.1');
      assert.equal(rec.relayHost, 'localhost');
      assert.equal(rec.user, 'testuser');
      assert.ok(rec.mech === 'LOGIN' || rec.mech === 'PLAIN');
      assert.equal(Number(rec.queueId?.slice(8)), rec.pid, line);
    }
    assert.ok(failures >= 4, `${file} has AUTH failures`);
    const recs = records(file);
    assert.ok(recs.some((x) => x.kind === 'sendmail-auth-success' && x.user === 'testuser' && x.address === '127.0.0.1'));
    const noMail = recs.filter((x) => x.kind === 'sendmail-no-mail');
    assert.equal(noMail.length, lines(file).filter((l) => l.includes(' did not issue ')).length);
    const connects = recs.filter((x) => x.kind === 'sendmail-connect').length;
    if (level === 'LL9') assert.equal(connects, 0);
    else assert.equal(connects, lines(file).filter((l) => l.includes('NOQUEUE: connect from')).length);
  });
}

test('sendmail LL8: no AUTH records at all, only did-not-issue', { skip: !available && 'no captures' }, () => {
  const recs = records('sendmail-LL8/mail.log');
  assert.ok(recs.length > 0);
  assert.ok(recs.every((r) => r.kind === 'sendmail-no-mail'));
});

test('auth logs at every level: saslauthd and pam_unix failures, never an address', { skip: !available && 'no captures' }, () => {
  for (const level of ['LL8', 'LL9', 'LL10', 'LL14']) {
    const file = `sendmail-${level}/auth.log`;
    const recs = records(file);
    const sasl = recs.filter((r) => r.kind === 'saslauthd-failure');
    const pam = recs.filter((r) => r.kind === 'pam-failure');
    assert.equal(sasl.length, lines(file).filter((l) => l.includes(': auth failure: [user=')).length);
    assert.equal(pam.length, lines(file).filter((l) => l.includes('pam_unix(smtp:auth): authentication failure')).length);
    assert.ok(sasl.length >= 4);
    for (const r of [...sasl, ...pam]) {
      assert.equal('address' in r ? r.address : undefined, undefined);
      assert.equal(r.program, 'saslauthd');
    }
    for (const r of sasl) assert.deepEqual([r.user, r.service, r.mech, r.reason], ['testuser', 'smtp', 'pam', 'PAM auth error']);
  }
});

test('misc: the 5th AUTH of one session logs the attack line', { skip: !available && 'no captures' }, () => {
  const recs = records('misc/many-auth-one-session-mail.log');
  const attack = recs.filter((r) => r.kind === 'sendmail-attack');
  assert.equal(attack.length, 1);
  assert.deepEqual(attack[0], {
    at: Date.UTC(2026, 10, 25, 17, 35, 50), program: 'sendmail', pid: 14524, pattern: 'sendmail-attack',
    kind: 'sendmail-attack', queueId: '6APHZgF8014524', address: '127.0.0.1', command: 'AUTH', count: 5,
  });
  assert.equal(recs.filter((r) => r.kind === 'sendmail-auth-failure').length, 8);
});

test('misc: client from another loopback address, no host name', { skip: !available && 'no captures' }, () => {
  const recs = records('misc/other-loopback-ip-mail.log');
  const f = recs.find((r) => r.kind === 'sendmail-auth-failure');
  assert.ok(f && f.kind === 'sendmail-auth-failure');
  assert.equal(f.address, '127.0.0.23');
  assert.equal(f.relayHost, undefined);
  assert.ok(recs.some((r) => r.kind === 'sendmail-connect' && r.address === '127.0.0.23'));
});

test('misc: milter down gives no AUTH failure record', { skip: !available && 'no captures' }, () => {
  const recs = records('misc/milter-down-mail.log');
  assert.equal(recs.filter((r) => r.kind === 'sendmail-auth-failure').length, 0);
});

test('misc: unknown user through saslauthd and pam_unix', { skip: !available && 'no captures' }, () => {
  const recs = records('misc/step3-testsaslauthd-auth.log');
  assert.ok(recs.some((r) => r.kind === 'pam-failure' && r.unknownUser && r.service === 'smtp'));
  assert.ok(recs.some((r) => r.kind === 'saslauthd-failure' && r.user === 'nosuchuser'));
  // `rhost= ` with no user at all
  assert.ok(recs.some((r) => r.kind === 'pam-failure' && !r.unknownUser && r.user === undefined));
  // auth success is not a failure
  assert.equal(recs.filter((r) => r.kind === 'saslauthd-failure').length, 3);
});
