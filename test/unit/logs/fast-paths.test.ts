/**
 * The index-based readers and the caches must answer exactly as the regular expressions and
 * the uncached functions they replace: each case is checked against that reference.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLine } from '../../../src/logs/parse-line.js';
import { splitSyslogLine } from '../../../src/logs/syslog-line.js';
import {
  bsdTimestampLength,
  leadingBsdTimestamp,
  leadingIsoTimestamp,
  parseBsdTimestamp,
  parseIsoTimestamp,
} from '../../../src/logs/timestamps.js';

const UTC = { timeZone: 'UTC', futureToleranceSeconds: 7 * 86400 };
const REF = Date.UTC(2026, 10, 26);

test('bsdTimestampLength reads what the BSD prefix pattern reads', () => {
  const re = /^[A-Za-z]{3} {1,2}\d{1,2} \d{2}:\d{2}:\d{2}(?= |$)/;
  for (const s of [
    'Nov 25 17:35:00', 'Nov 25 17:35:00 x', 'Nov  5 17:35:00 x', 'Nov 5 17:35:00', 'Nov  25 17:35:00 x', 'Nov   5 17:35:00',
    'Nov 123 17:35:00', 'Nov 25 17:35:000', 'Nov 25 17:35:0', 'No 25 17:35:00', 'N0v 25 17:35:00', 'Nov 25 17:35:00\tx',
    'Nov 25 1:35:00 x', '', 'Nov', 'Nov 25', 'nov 25 17:35:00 x', 'Foo 25 17:35:00 x',
  ]) {
    assert.equal(bsdTimestampLength(s), re.exec(s)?.[0].length ?? 0, JSON.stringify(s));
  }
});

test('the BSD timestamp cache answers as parseBsdTimestamp for any reference and options', () => {
  const line = 'Dec 31 23:59:59 mx sendmail[1]: x';
  const cases: [number, typeof UTC][] = [
    [REF, UTC], [REF, UTC], [Date.UTC(2027, 0, 1), UTC], [REF, { ...UTC, timeZone: '+01:00' }],
    [REF, { ...UTC, timeZone: 'local' }], [Date.UTC(2026, 0, 5), { ...UTC, futureToleranceSeconds: 0 }], [REF, UTC],
  ];
  for (const [ref, o] of cases) {
    assert.equal(leadingBsdTimestamp(line, 15, ref, o), parseBsdTimestamp('Dec 31 23:59:59', ref, o));
  }
  // Same length, other text; and an invalid one that is remembered as invalid.
  assert.equal(leadingBsdTimestamp('Dec 31 23:59:58 x', 15, REF, UTC), parseBsdTimestamp('Dec 31 23:59:58', REF, UTC));
  assert.equal(leadingBsdTimestamp('Foo 31 23:59:58 x', 15, REF, UTC), null);
  assert.equal(leadingBsdTimestamp('Foo 31 23:59:58 y', 15, REF, UTC), null);
  assert.equal(leadingBsdTimestamp('Nov 25 24:00:00 y', 15, REF, UTC), null);
});

test('the ISO minute cache answers as parseIsoTimestamp', () => {
  const tokens = [
    '2026-11-25T17:35:00.123456+01:00', '2026-11-25T17:35:01.5+01:00', '2026-11-25T17:35:59,999+01:00', '2026-11-25T17:35:60+01:00',
    '2026-11-25T17:35:61+01:00', '2026-11-25T17:35:07+0100', '2026-11-25T17:35:07Z', '2026-11-25T17:35:07z', '2026-11-25T17:35:07',
    '2026-11-25t17:35:08', '2026-11-25T17:35:0a', '2026-11-25T17:35:09.', '2026-11-25T17:35:09.1234567890Z', '2026-11-25T17:35:09.Z',
    '2026-11-25T17:36:00Z', '2026-11-25T17:35:02+99:00', '2026-11-25T17:35:02+18:00', '2026-02-30T00:00:00Z', '2026-02-30T00:00:01Z',
    '0050-01-01T00:00:00Z', '2026-11-25T17:35', '2026-11-25T17:35:02+01:00x', '2026-11-25T17:35:03+01:0',
  ];
  for (const o of [UTC, { ...UTC, timeZone: '-05:30' }, { ...UTC, timeZone: 'local' }]) {
    for (let round = 0; round < 2; round++) {
      for (const t of tokens) {
        assert.equal(leadingIsoTimestamp(`${t} host prog: m`, t.length, o), parseIsoTimestamp(t, o), `${t} ${o.timeZone}`);
      }
    }
  }
});

test('plain tags are read by index, unusual ones as before', () => {
  const cases: [string, unknown][] = [
    ['Nov 25 17:35:00 h a[12345678901]: x', null],
    ['Nov 25 17:35:00 h a[]: x', null],
    ['Nov 25 17:35:00 a[1]:x', { program: 'a[1]:x', host: undefined }],
    ['Nov 25 17:35:00 a[1]:', { program: 'a', pid: 1, message: '' }],
    ['Nov 25 17:35:00 a[1]: ', { program: 'a', pid: 1, message: '' }],
    ['Nov 25 17:35:00 h a[0042]: m', { program: 'a', pid: 42, host: 'h', message: 'm' }],
    ['Nov 25 17:35:00 h é[1]: m', { program: 'é', pid: 1, host: 'h', message: 'm' }],
    ['Nov 25 17:35:00 hé a[1]: m', { program: 'a', pid: 1, host: 'hé', message: 'm' }],
    ['Nov 25 17:35:00  a[1]: m', null],
    ['Nov 25 17:35:00 h  a: m', null],
    ['Nov 25 17:35:00 h]x a: m', { program: 'a', host: 'h]x', message: 'm' }],
    ['Nov 25 17:35:00 h /: m', null],
    ['Nov 25 17:35:00 h x(7): m', { program: 'x', pid: 7, host: 'h', message: 'm' }],
    ['Nov 25 17:35:00', null],
    ['Nov 25 17:35:00 ', null],
  ];
  for (const [line, want] of cases) {
    const h = splitSyslogLine(line, REF, UTC);
    if (want === null) {
      assert.equal(h, null, line);
      continue;
    }
    const w = want as Record<string, unknown>;
    if (w.program === 'a[1]:x') {
      assert.equal(h, null, line); // `a[1]:x` is neither a tag nor a host followed by one
      continue;
    }
    for (const [k, v] of Object.entries(w)) assert.equal((h as unknown as Record<string, unknown>)?.[k], v, `${line} ${k}`);
  }
});

const SASL_PREFIX_RE = /^\s*(?:[A-Za-z_]\w{0,40}\s*)?(?::\s)?\s*auth failure: \[user=/;

test('saslauthd: the prefix reader accepts what its pattern accepts', () => {
  const tail = 'auth failure: [user=u] [service=smtp] [realm=] [mech=pam] [reason=PAM auth error]';
  for (const pre of [
    '', 'do_auth : ', '                 : ', 'do_auth: ', 'do_auth', 'do_auth ', ':\t', ': ', ':', '1x: ', 'a b: ', '\u3000: ',
    `${'x'.repeat(41)} : `, `${'x'.repeat(42)} : `, '_x9 :  ', 'do_auth :x', 'auth failure: [user=', 'do-auth: ', '  x  ',
  ]) {
    const m = pre + tail;
    const r = parseLine(`Nov 25 17:35:16 vm saslauthd[1]: ${m}`, REF, UTC);
    const expected = SASL_PREFIX_RE.test(m) && m.slice(SASL_PREFIX_RE.exec(m)![0].length).includes('] [service=');
    assert.equal(r.outcome === 'matched', expected, JSON.stringify(pre));
  }
  const odd = parseLine('Nov 25 17:35:16 vm saslauthd[1]: : auth failure: [user=a] b] [service=smtp] [realm=r] [mech=pam] [reason=x y] \t ', REF, UTC);
  assert.ok(odd.outcome === 'matched' && odd.record.kind === 'saslauthd-failure');
  if (odd.outcome === 'matched' && odd.record.kind === 'saslauthd-failure') {
    assert.deepEqual([odd.record.user, odd.record.realm, odd.record.reason], ['a] b', 'r', 'x y']);
  }
  for (const bad of ['[reason=x] y', '[reason=x', '[reason=x]]']) {
    const r = parseLine(`Nov 25 17:35:16 vm saslauthd[1]: : auth failure: [user=a] [service=smtp] [realm=] [mech=pam] ${bad}`, REF, UTC);
    assert.equal(r.outcome, 'missed', bad);
  }
});

const AUTH_FAILURE_RE = /^AUTH failure \(([^()\s]{1,40})\): ((?:[^(]|\((?!-?\d+\)))*?) \((-?\d+)\) /;

test('sendmail AUTH failure: mechanism and reason read as the pattern reads them', () => {
  for (const body of [
    'AUTH failure (LOGIN): authentication failure (-13) SASL(-13): x, relay=[192.0.2.9]',
    'AUTH failure (LOGIN): a (b (-1x) (13) c (-13) SASL, user=u, relay=[192.0.2.9]',
    'AUTH failure (LOGIN):  (13) x, relay=[192.0.2.9]',
    'AUTH failure (LOGIN): (13) x, relay=[192.0.2.9]',
    'AUTH failure (LOG IN): x (13) y, relay=[192.0.2.9]',
    'AUTH failure (LOGIN): x(13) (14) y, relay=[192.0.2.9]',
    'AUTH failure (LOGIN): x (13)y (14) z, relay=[192.0.2.9]',
    'AUTH failure (): x (13) y, relay=[192.0.2.9]',
    `AUTH failure (${'M'.repeat(40)}): x (13) y, relay=[192.0.2.9]`,
    `AUTH failure (${'M'.repeat(41)}): x (13) y, relay=[192.0.2.9]`,
    'AUTH failure (LOGIN):x (13) y, relay=[192.0.2.9]',
    'AUTH failure (LOGIN): x (-) (13) y, relay=[192.0.2.9]',
    'AUTH failure (LOGIN): x\u00a0(13) y (13) z, relay=[192.0.2.9]',
  ]) {
    const r = parseLine(`Nov 25 17:35:00 vm sendmail[14021]: 6APHYwNB014021: ${body}`, REF, UTC);
    const m = AUTH_FAILURE_RE.exec(body);
    if (!m) {
      assert.equal(r.outcome, 'missed', body);
      continue;
    }
    assert.ok(r.outcome === 'matched' && r.record.kind === 'sendmail-auth-failure', body);
    if (r.outcome === 'matched' && r.record.kind === 'sendmail-auth-failure') {
      assert.deepEqual([r.record.mech, r.record.reason, r.record.address], [m[1]!.toUpperCase(), m[2], '192.0.2.9'], body);
    }
  }
});

test('sendmail queue ids and the attack tail read as their patterns', () => {
  const qid = (m: string): string | undefined => {
    const r = parseLine(`Nov 25 17:35:00 vm sendmail[1]: ${m}: [192.0.2.3]: possible SMTP attack: command=AUTH, count=5`, REF, UTC);
    return r.outcome === 'matched' && r.record.kind === 'sendmail-attack' ? r.record.queueId : 'none';
  };
  assert.equal(qid('6APHYwNB014021'), '6APHYwNB014021');
  assert.equal(qid('6APHYwNB014021123456'), '6APHYwNB014021123456');
  // Not queue ids: the text stays in front of the client field, read as host text.
  assert.equal(qid('6APHYwNB0140211234567'), undefined);
  assert.equal(qid('6APHYwNB01402'), undefined);
  assert.equal(qid('6APH-wNB014021'), undefined);
  const attack = (tail: string): boolean =>
    parseLine(`Nov 25 17:35:00 vm sendmail[1]: q: [192.0.2.3]${tail}`, REF, UTC).outcome === 'matched';
  assert.equal(attack(': possible SMTP attack: command=AUTH, count=5'), true);
  assert.equal(attack(': possible SMTP attack: command=AUTH, count=5: possible SMTP attack: command=AUTH, count=6'), false);
  assert.equal(attack(': possible SMTP attack: command=, count=5'), false);
  assert.equal(attack(': possible SMTP attack: command=AUTH, count=1234567890'), false);
  assert.equal(attack(': possible SMTP attack: command=AUTH, count=5 '), false);
  assert.equal(attack(`: possible SMTP attack: command=${'A'.repeat(41)}, count=5`), false);
});

test('pam_unix fixed fields read as their pattern', () => {
  const rec = (m: string): string => {
    const r = parseLine(`Nov 25 17:35:13 vm saslauthd[1]: ${m}`, REF, UTC);
    return r.outcome === 'matched' && r.record.kind === 'pam-failure' ? `${r.record.pattern}:${r.record.user ?? ''}:${r.record.address ?? ''}` : r.outcome;
  };
  const ok = 'pam_unix(smtp:auth): authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=192.0.2.4  user=a';
  assert.equal(rec(ok), 'pam-auth-failure:a:192.0.2.4');
  assert.equal(rec(ok.replace('logname=', 'logname=x\ty')), 'missed');
  assert.equal(rec(ok.replace('uid=0 ', 'uid=12345678901 ')), 'missed');
  assert.equal(rec(ok.replace(' uid=0', ' uid=')), 'missed');
  assert.equal(rec(ok.replace('tty=', 'tty=/dev/pts/1')), 'pam-auth-failure:a:192.0.2.4');
  assert.equal(rec(ok.replace('smtp:auth', 'sm tp:auth')), 'missed');
  assert.equal(rec(ok.replace('smtp:auth', ':auth')), 'missed');
  assert.equal(rec(ok.replace('smtp:auth', `${'s'.repeat(65)}:auth`)), 'missed');
  assert.equal(rec('pam_unix(smtp:auth): check pass; user unknown \u3000 '), 'pam-user-unknown::');
  assert.equal(rec('pam_unix(smtp:auth): check pass; user unknown x'), 'missed');
});
