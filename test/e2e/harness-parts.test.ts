/**
 * The pure parts of the end-to-end harness, checked without a running stack: what it makes
 * m4 generate, how it reads swaks transcripts and sendmail logs, the percentile it reports.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MILTER_SNIPPET, metricValue, parseSwaks, percentile } from './harness.js';
import { runOk } from './procs.js';
import { renderNamespaceSetup, renderSendmailMc } from './render.js';
import { canonicalAddress, covers, failedSessionsFromMailLog, sessionsFromMailLog } from './scenario.js';
import { needsOrSkip } from '../helpers/require-root.js';

test('the generated .mc builds a .cf with the shipped filter line, our LogLevel and a loopback-only daemon', async (t) => {
  if (!needsOrSkip(t, existsSync('/usr/share/sendmail/cf/m4/cf.m4') && existsSync('/usr/bin/m4'), 'needs m4 and sendmail-cf')) return;
  const mc = renderSendmailMc({ dir: '/srv/e2e', smtpPort: 2600, logLevel: 14, milterSnippet: MILTER_SNIPPET });
  const dir = mkdtempSync(join(tmpdir(), 'authban-mc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'test.mc'), mc);
  const cf = await runOk(['/usr/bin/m4', join(dir, 'test.mc')], 10_000);
  assert.match(cf, /^Xauthban, S=inet:8894@127\.0\.0\.1, F=T, T=C:5s;S:10s;R:10s;E:30s$/m);
  assert.match(cf, /^O InputMailFilters=authban$/m);
  assert.match(cf, /^O LogLevel=14$/m);
  assert.match(cf, /^O DaemonPortOptions=Port=2600, Addr=127\.0\.0\.1, Name=MTA-authban$/m);
  assert.match(cf, /^O AuthOptions=A$/m);
  assert.match(cf, /^O ServiceSwitchFile=\/srv\/e2e\/service\.switch$/m);
  assert.match(cf, /^Mlocal,\s+P=\/srv\/e2e\/local-mailer,/m);
  // no_default_msa: no second daemon on 587.
  assert.equal(cf.match(/^O DaemonPortOptions=/gm)?.length, 1);
});

test('with an IPv6 address the .mc adds a second, inet6 daemon; the namespace puts client addresses on lo', async (t) => {
  if (!needsOrSkip(t, existsSync('/usr/share/sendmail/cf/m4/cf.m4') && existsSync('/usr/bin/m4'), 'needs m4 and sendmail-cf')) return;
  const mc = renderSendmailMc({ dir: '/srv/e2e', smtpPort: 2600, logLevel: 9, milterSnippet: MILTER_SNIPPET, ipv6Addr: '::1' });
  const dir = mkdtempSync(join(tmpdir(), 'authban-mc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'test.mc'), mc);
  const cf = await runOk(['/usr/bin/m4', join(dir, 'test.mc')], 10_000);
  assert.deepEqual(cf.match(/^O DaemonPortOptions=.*$/gm), [
    'O DaemonPortOptions=Port=2600, Addr=127.0.0.1, Name=MTA-authban',
    'O DaemonPortOptions=Port=2600, Addr=::1, Family=inet6, Name=MTA-authban-v6',
  ]);
  assert.throws(() => renderSendmailMc({ dir: '/srv/e2e', smtpPort: 2600, logLevel: 9, milterSnippet: MILTER_SNIPPET, ipv6Addr: '::1; x' }));
  const setup = renderNamespaceSetup('/srv/e2e', 60, ['2001:db8::10', '2001:db8:0:1::10']);
  assert.match(setup, /^ip -6 addr add 2001:db8::10\/64 dev lo nodad\nip -6 addr add 2001:db8:0:1::10\/64 dev lo nodad\necho READY$/m);
  assert.ok(!renderNamespaceSetup('/srv/e2e', 60).includes('ip -6'));
  assert.throws(() => renderNamespaceSetup('/srv/e2e', 60, ['2001:db8::10/64']));
});

test('a swaks transcript: greeting code and the reply that ends AUTH', () => {
  const at = (text: string, n: number) => ({ at: n, text });
  const failed = parseSwaks([
    at('=== Connected to 127.0.0.1.', 1),
    at('<-  220 mx.authban.test ESMTP Sendmail 8.17.1.9/8.17.1.9; Thu, 26 Nov 2026 12:31:32 GMT', 2),
    at(' -> EHLO client2.example.test', 3),
    at('<-  250-AUTH LOGIN PLAIN', 4),
    at('<-  250 HELP', 5),
    at(' -> AUTH LOGIN', 6),
    at('<-  334 VXNlcm5hbWU6', 7),
    at(' -> YWJ0', 8),
    at('<-  334 UGFzc3dvcmQ6', 9),
    at(' -> d3Jvbmc=', 10),
    at('<** 535 5.7.0 authentication failed', 2011),
    at(' -> QUIT', 2012),
    at('<-  221 2.0.0 mx.authban.test closing connection', 2013),
  ]);
  assert.deepEqual(failed, { bannerCode: 220, authReplyAt: 2011, authReplyCode: 535 });
  const refused = parseSwaks([at('<** 421 4.7.0 mx.authban.test closing connection', 5)]);
  assert.deepEqual(refused, { bannerCode: 421 });
});

test('sendmail log: queue id to client, and which sessions failed AUTH', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'authban-log-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'mail.log');
  writeFileSync(
    log,
    [
      'Nov 26 12:31:55 mx sendmail[7525]: 6AQCVtPK007525: Milter (authban): to error state',
      'Nov 26 12:31:57 mx sendmail[7525]: 6AQCVtPK007525: AUTH failure (PLAIN): authentication failure (-13) SASL(-13): authentication failure: Password verification failed, user=abt1, relay=[127.0.0.4]',
      'Nov 26 12:31:57 mx sendmail[7525]: 6AQCVtPK007525: [127.0.0.4] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA-authban',
      '2026-11-26T12:31:55.123456+00:00 mx sendmail[7524]: AUTH=server, relay=[127.0.0.3], authid=abt1, mech=LOGIN, bits=0',
      '2026-11-26T12:31:55.200000+00:00 mx sendmail[7524]: 6AQCVtk0007524: from=<sender@mx.authban.test>, size=280, class=0, nrcpts=1, proto=ESMTPA, daemon=MTA-authban, relay=[127.0.0.3]',
      'Nov 26 12:32:01 mx sendmail[7600]: 6AQCW1aa007600: Milter: connect: host=[127.0.0.2], addr=127.0.0.2, shutdown',
    ].join('\n'),
  );
  assert.deepEqual(
    [...sessionsFromMailLog(log)],
    [
      ['6AQCVtPK007525', '127.0.0.4'],
      ['6AQCVtk0007524', '127.0.0.3'],
      ['6AQCW1aa007600', '127.0.0.2'],
    ],
  );
  assert.deepEqual([...failedSessionsFromMailLog(log)], [['127.0.0.4', new Set(['6AQCVtPK007525'])]]);
});

test('sendmail log over IPv6: uncompressed [IPv6:...] addresses read in canonical form; /64 targets cover their addresses', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'authban-log-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'mail.log');
  writeFileSync(
    log,
    [
      'Nov 26 13:08:44 mx sendmail[27192]: 6AQD8ht5027192: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=abt1, relay=[IPv6:2001:db8:0:0:0:0:0:10]',
      'Nov 26 13:08:44 mx sendmail[27192]: 6AQD8ht5027192: [IPv6:2001:db8:0:0:0:0:0:10] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA-authban-v6',
      'Nov 26 13:08:14 mx sendmail[26662]: 6AQD8D0T026662: from=<sender@mx.authban.test>, size=280, class=0, nrcpts=1, proto=ESMTPA, daemon=MTA-authban-v6, relay=[IPv6:2001:db8:0:1:0:0:0:10]',
      'Nov 26 13:08:14 mx sendmail[26670]: 6AQD8EDv026670: Milter: connect: host=[IPv6:2001:db8:0:0:0:0:0:11], addr=IPv6:2001:db8:0:0:0:0:0:11, shutdown',
    ].join('\n'),
  );
  assert.deepEqual(
    [...sessionsFromMailLog(log)],
    [
      ['6AQD8ht5027192', '2001:db8::10'],
      ['6AQD8D0T026662', '2001:db8:0:1::10'],
      ['6AQD8EDv026670', '2001:db8::11'],
    ],
  );
  assert.deepEqual([...failedSessionsFromMailLog(log)], [['2001:db8::10', new Set(['6AQD8ht5027192'])]]);
  assert.equal(canonicalAddress('IPv6:2001:0db8:0:0:0:0:0:0a'), '2001:db8::a');
  assert.equal(canonicalAddress('198.51.100.7'), '198.51.100.7');
  assert.ok(covers('2001:db8::/64', '2001:db8::11'));
  assert.ok(!covers('2001:db8::/64', '2001:db8:0:1::10'));
  assert.ok(covers('127.0.0.2', '127.0.0.2'));
  assert.ok(!covers('127.0.0.2', '127.0.0.20'));
  assert.ok(!covers('2001:db8::/64', undefined));
});

test('percentile is nearest-rank; metric values sum over matching label sets', () => {
  assert.equal(percentile([30, 10, 20], 50), 20);
  assert.equal(percentile([5, 1, 4, 2, 3], 99), 5);
  assert.equal(percentile([7], 50), 7);
  assert.throws(() => percentile([], 50));
  const text = '# HELP x\nauthban_x_total{reason="a"} 2\nauthban_x_total{reason="b"} 3\nauthban_x_total_other 9\nauthban_y 1';
  assert.equal(metricValue(text, 'authban_x_total'), 5);
  assert.equal(metricValue(text, 'authban_x_total', { reason: 'b' }), 3);
  assert.equal(metricValue(text, 'authban_z'), 0);
});
