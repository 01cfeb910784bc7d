import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLine } from '../../../src/logs/parse-line.js';
import { parseJournalEntry, programFamily, splitSyslogLine } from '../../../src/logs/syslog-line.js';

const UTC = { timeZone: 'UTC', futureToleranceSeconds: 7 * 86400 };
const REF = Date.UTC(2026, 10, 26);

test('BSD file line', () => {
  const h = splitSyslogLine('Nov 25 17:35:00 vm sendmail[14021]: 6APHYwNB014021: hello', REF, UTC);
  assert.deepEqual(h, {
    at: Date.UTC(2026, 10, 25, 17, 35), host: 'vm', program: 'sendmail', family: 'sendmail', pid: 14021,
    message: '6APHYwNB014021: hello',
  });
});

test('saslauthd blank function name keeps the message as written', () => {
  const h = splitSyslogLine('Nov 25 17:35:16 vm saslauthd[13724]:                 : auth failure: [user=a]', REF, UTC);
  assert.equal(h?.program, 'saslauthd');
  assert.equal(h?.message, '                : auth failure: [user=a]');
});

test('ISO file line (rsyslog high precision) with CRLF and trailing newline', () => {
  const h = splitSyslogLine('2026-11-25T17:35:00.123456+01:00 mx /usr/sbin/sendmail[7]: x\r\n', REF, UTC);
  assert.equal(h?.at, Date.UTC(2026, 10, 25, 16, 35, 0, 123));
  assert.equal(h?.program, 'sendmail');
  assert.equal(h?.host, 'mx');
  assert.equal(h?.message, 'x');
});

test('line without host name, and a host that is an IPv6 address', () => {
  const a = splitSyslogLine('Jan 29 09:33:58 pop3-login: Info: x', Date.UTC(2026, 1, 1), UTC);
  assert.equal(a?.host, undefined);
  assert.equal(a?.program, 'pop3-login');
  assert.equal(a?.family, 'dovecot');
  const b = splitSyslogLine('Nov 25 17:35:00 2001:db8::1 sm-mta[5]: y', REF, UTC);
  assert.equal(b?.host, '2001:db8::1');
  assert.equal(b?.family, 'sendmail');
});

test('sendmail aliases map to one family, path stripped', () => {
  for (const p of ['sendmail', 'sm-mta', 'sm-acceptingconnections', 'sm-msp-queue']) assert.equal(programFamily(p), 'sendmail');
  assert.equal(programFamily('postfix'), 'other');
  const h = splitSyslogLine('Nov 25 17:35:00 vm /usr/lib/sm.bin/sm-mta[9]: z', REF, UTC);
  assert.equal(h?.program, 'sm-mta');
  assert.equal(h?.family, 'sendmail');
});

test('old pam tag and dovecot process tags with (pid)', () => {
  const a = splitSyslogLine('Feb  7 15:10:42 ex sshd(pam_unix)[4137]: authentication failure; x', REF, UTC);
  assert.equal(a?.program, 'sshd(pam_unix)');
  assert.equal(a?.pid, 4137);
  assert.equal(a?.family, 'pam');
  const b = splitSyslogLine('Jan 29 05:32:50 mail auth-worker(304): pam(u,1.2.3.4): unknown user', REF, UTC);
  assert.equal(b?.program, 'auth-worker');
  assert.equal(b?.pid, 304);
});

test('RFC 3164 frame with and without host, PRI decoded', () => {
  const a = splitSyslogLine('<34>Nov 25 17:35:00 vm sendmail[1]: m', REF, UTC);
  assert.equal(a?.facility, 4);
  assert.equal(a?.severity, 2);
  assert.equal(a?.host, 'vm');
  const b = splitSyslogLine('<38>Nov 25 17:35:00 saslauthd[2]: m2', REF, UTC);
  assert.equal(b?.host, undefined);
  assert.equal(b?.program, 'saslauthd');
  assert.equal(b?.pid, 2);
  assert.equal(splitSyslogLine('<192>Nov 25 17:35:00 vm x: m', REF, UTC), null);
});

test('RFC 5424 frame: structured data with escapes, nil values, BOM', () => {
  const a = splitSyslogLine(
    '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com sendmail 8710 ID47 [exampleSDID@32473 iut="3" eventSource="Appl\\]ication"][b x="\\"q"] \uFEFFAUTH failure here',
    REF, UTC,
  );
  assert.equal(a?.at, Date.UTC(2003, 9, 11, 22, 14, 15, 3));
  assert.equal(a?.host, 'mymachine.example.com');
  assert.equal(a?.program, 'sendmail');
  assert.equal(a?.pid, 8710);
  assert.equal(a?.message, 'AUTH failure here');
  const b = splitSyslogLine('<13>1 - - saslauthd - - - msg text', REF, UTC);
  assert.equal(b?.at, REF);
  assert.equal(b?.host, undefined);
  assert.equal(b?.pid, undefined);
  assert.equal(b?.message, 'msg text');
  assert.equal(splitSyslogLine('<13>1 2003-10-11T22:14:15Z h app - - [unterminated', REF, UTC), null);
});

test('RFC 5424 as rsyslog forwards a legacy line: the space after the tag is not message text', () => {
  const line = '<22>1 2026-11-26T13:10:00.123456+00:00 mx sendmail 14021 - -  6APHYwNB014021: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=u, relay=h [198.51.100.7]';
  const h = splitSyslogLine(line, REF, UTC);
  assert.equal(h?.program, 'sendmail');
  assert.equal(h?.pid, 14021);
  assert.ok(h?.message.startsWith('6APHYwNB014021: AUTH failure'), h?.message);
  const r = parseLine(line, REF, UTC);
  assert.equal(r.outcome, 'matched');
  assert.equal(r.outcome === 'matched' && r.record.kind === 'sendmail-auth-failure' ? r.record.address : null, '198.51.100.7');
});

test('journal JSON: string and byte-array MESSAGE, realtime in microseconds', () => {
  const entry = {
    __REALTIME_TIMESTAMP: '1795628113123456', SYSLOG_IDENTIFIER: 'sm-mta', _PID: '14179', _HOSTNAME: 'vm',
    MESSAGE: [...Buffer.from('NOQUEUE: connect from [127.0.0.1]\xff', 'latin1')], SYSLOG_FACILITY: '2',
  };
  const h = parseJournalEntry(entry);
  assert.equal(h?.at, 1795628113123);
  assert.equal(h?.program, 'sm-mta');
  assert.equal(h?.pid, 14179);
  assert.equal(h?.facility, 2);
  assert.ok(h?.message.startsWith('NOQUEUE: connect from [127.0.0.1]'));
  const line = JSON.stringify({ ...entry, MESSAGE: 'plain' });
  assert.equal(splitSyslogLine(line, REF, UTC)?.message, 'plain');
  assert.equal(parseJournalEntry({ MESSAGE: 'x' }), null);
  assert.equal(splitSyslogLine('{not json', REF, UTC), null);
});

test('garbage is refused', () => {
  for (const bad of ['', 'hello world', 'Nov 25 17:35:00', 'Nov 25 17:35:00 vm', '<abc>x']) {
    assert.equal(splitSyslogLine(bad, REF, UTC), null, JSON.stringify(bad));
  }
});
