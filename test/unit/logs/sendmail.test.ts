import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLine } from '../../../src/logs/parse-line.js';
import type { LogRecord } from '../../../src/logs/records.js';
import { parseSmtpClient } from '../../../src/logs/parsers/sendmail.js';

const UTC = { timeZone: 'UTC', futureToleranceSeconds: 7 * 86400 };
const REF = Date.UTC(2026, 10, 26);
const PFX = 'Nov 25 17:35:00 vm sendmail[14021]: ';

function rec(message: string, prefix = PFX): LogRecord | null {
  const r = parseLine(prefix + message, REF, UTC);
  return r.outcome === 'matched' ? r.record : null;
}

function addressOf(message: string): string | undefined {
  const r = rec(message);
  return r && 'address' in r ? r.address : undefined;
}

test('8.16+ AUTH failure with user= and relay=, pid and queue id', () => {
  const r = rec('6APHYwNB014021: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=testuser, relay=localhost [127.0.0.1]');
  assert.deepEqual(r, {
    at: Date.UTC(2026, 10, 25, 17, 35), program: 'sendmail', pid: 14021, pattern: 'sendmail-auth-failure',
    kind: 'sendmail-auth-failure', mech: 'LOGIN', reason: 'authentication failure', user: 'testuser',
    address: '127.0.0.1', relayHost: 'localhost', queueId: '6APHYwNB014021',
  });
});

test('8.13-8.15 AUTH failure: relay= without user=, (may be forged)', () => {
  const r = rec('k1GNXHYB005133: AUTH failure (CRAM-MD5): authentication failure (-13) SASL(-13): authentication failure: incorrect digest response, relay=dsl.example.net [198.51.100.7] (may be forged)');
  assert.equal(r?.kind, 'sendmail-auth-failure');
  if (r?.kind !== 'sendmail-auth-failure') return;
  assert.equal(r.address, '198.51.100.7');
  assert.equal(r.relayHost, 'dsl.example.net');
  assert.equal(r.user, undefined);
  assert.equal(r.mech, 'CRAM-MD5');
});

test('8.12 AUTH failure without relay=: no address, found later by queue id', () => {
  const r = rec('h2PHZDNQ014179: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed');
  assert.equal(r?.pattern, 'sendmail-auth-failure-no-relay');
  if (r?.kind !== 'sendmail-auth-failure') return assert.fail('kind');
  assert.equal(r.address, undefined);
  assert.equal(r.queueId, 'h2PHZDNQ014179');
  assert.equal(r.pid, 14021);
});

test('user not found reason, bare [IP] relay, lower-case mech', () => {
  const r = rec('14NNwaRl065696: AUTH failure (digest-md5): user not found (-20) SASL(-13): user not found: unable to canonify user and get auxprops, user=scanner, relay=[203.0.113.5]');
  if (r?.kind !== 'sendmail-auth-failure') return assert.fail('kind');
  assert.equal(r.reason, 'user not found');
  assert.equal(r.mech, 'DIGEST-MD5');
  assert.equal(r.address, '203.0.113.5');
  assert.equal(r.relayHost, undefined);
  assert.equal(r.user, 'scanner');
});

test('IPv6 relay, compressed and uncompressed, canonicalised', () => {
  assert.equal(addressOf('x1PHZDNQ014179: AUTH failure (PLAIN): authentication failure (-13) SASL(-13): authentication failure: Password verification failed, user=u, relay=h.example [IPv6:2001:db8::7]'), '2001:db8::7');
  assert.equal(addressOf('x1PHZDNQ014179: AUTH failure (PLAIN): authentication failure (-13) SASL(-13): x, user=u, relay=[IPv6:2001:0DB8:0000:0000:0000:0000:0000:0007]'), '2001:db8::7');
  assert.equal(addressOf('x1PHZDNQ014179: [IPv6:2001:db8::8]: possible SMTP attack: command=AUTH, count=5'), '2001:db8::8');
  assert.equal(addressOf('NOQUEUE: connect from h [IPv6:::ffff:198.51.100.9]'), '198.51.100.9');
});

test('did not issue, possible SMTP attack, connect, lost input channel', () => {
  const a = rec('6APHYwNB014021: localhost [127.0.0.1] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA-harness');
  assert.equal(a?.kind, 'sendmail-no-mail');
  assert.equal(a && 'host' in a ? a.host : undefined, 'localhost');
  const b = rec('6APHZgF8014524: h.example [198.51.100.3] (may be forged): possible SMTP attack: command=AUTH, count=6');
  if (b?.kind !== 'sendmail-attack') return assert.fail('attack');
  assert.deepEqual([b.address, b.command, b.count, b.queueId], ['198.51.100.3', 'AUTH', 6, '6APHZgF8014524']);
  const c = rec('NOQUEUE: connect from [127.0.0.23]');
  if (c?.kind !== 'sendmail-connect') return assert.fail('connect');
  assert.equal(c.address, '127.0.0.23');
  assert.equal(c.host, undefined);
  const d = rec('6APHZgF8014524: lost input channel from h.example [198.51.100.4] (may be forged) to MTA after auth');
  if (d?.kind !== 'sendmail-lost-input') return assert.fail('lost');
  assert.deepEqual([d.address, d.host], ['198.51.100.4', 'h.example']);
  const e = rec('6APHZgF8014524: lost input channel from [203.0.113.9] to MTA-v4 after ehlo');
  assert.equal(e && 'address' in e ? e.address : undefined, '203.0.113.9');
});

test('AUTH=server success line', () => {
  const r = rec('AUTH=server, relay=localhost [127.0.0.1], authid=testuser, mech=LOGIN, bits=0');
  if (r?.kind !== 'sendmail-auth-success') return assert.fail('kind');
  assert.deepEqual([r.address, r.user, r.mech, r.queueId], ['127.0.0.1', 'testuser', 'LOGIN', undefined]);
});

test('other sendmail lines are misses, not records', () => {
  for (const m of [
    '6APHZDNQ014179: Milter: connect to filters',
    '6APHaI6f014607: SMTP AUTH command (LOGIN) from localhost [127.0.0.1] tempfailed (due to previous checks)',
    'AUTH: available mech=DIGEST-MD5 CRAM-MD5 LOGIN PLAIN, allowed mech=LOGIN PLAIN',
  ]) {
    const r = parseLine(PFX + m, REF, UTC);
    assert.equal(r.outcome, 'missed', m);
    assert.equal(r.outcome === 'missed' ? r.family : '', 'sendmail');
  }
});

// ---- hostile input: attacker text must never produce the address it contains ----

const HOSTILE_USERS = [
  'x, relay=evil [192.0.2.1]',
  'x, relay=[192.0.2.1]',
  'a] [192.0.2.1]',
  'rhost=192.0.2.1 user=root',
  'rip=192.0.2.1, lip=192.0.2.1',
  'x, relay=[192.0.2.1], relay=[192.0.2.1]',
  '[192.0.2.1]',
  'x, relay=localhost [192.0.2.1] (may be forged)',
];

test('hostile AUTH user names never yield their address (real relay is the last one)', () => {
  for (const u of HOSTILE_USERS) {
    const r = rec(`6APHYwNB014021: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=${u}, relay=attacker.example [198.51.100.66]`);
    if (r?.kind !== 'sendmail-auth-failure') return assert.fail(u);
    assert.equal(r.address, '198.51.100.66', u);
    assert.equal(r.relayHost, 'attacker.example', u);
  }
});

test('hostile AUTH user with a relay= when the real relay is missing or broken gives no address', () => {
  // Real relay without a bracketed address (cannot happen from sendmail, but never trust the user's one).
  const a = rec('6APHYwNB014021: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): x, user=u, relay=[192.0.2.1], relay=broken');
  if (a?.kind !== 'sendmail-auth-failure') return assert.fail('a');
  assert.equal(a.address, undefined);
  assert.equal(a.pattern, 'sendmail-auth-failure-bad-relay');
  // A relay field that fills sendmail's %.100s limit may be truncated host text: not trusted.
  const host = 'a'.repeat(80) + ' [192.0.2.1]';
  const longRelay = `${host} [198.51.100.1]`.slice(0, 100);
  assert.equal(longRelay.length, 100);
  const b = rec(`6APHYwNB014021: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): x, user=u, relay=${longRelay}`);
  if (b?.kind !== 'sendmail-auth-failure') return assert.fail('b');
  assert.equal(b.address, undefined);
});

test('hostile PTR host names in every sendmail form', () => {
  const ptrs = [
    'evil [192.0.2.1]',
    'evil [192.0.2.1] did not issue MAIL/EXPN/VRFY/ETRN during connection to x',
    'evil [192.0.2.1]: possible SMTP attack: command=AUTH, count=9',
    'evil, relay=[192.0.2.1]',
    'evil [192.0.2.1] to MTA after auth',
    'evil [192.0.2.1], authid=root',
  ];
  for (const p of ptrs) {
    assert.equal(addressOf(`6APHYwNB014021: ${p} [198.51.100.5] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA`), '198.51.100.5', p);
    assert.equal(addressOf(`6APHYwNB014021: ${p} [198.51.100.5]: possible SMTP attack: command=AUTH, count=5`), '198.51.100.5', p);
    assert.equal(addressOf(`NOQUEUE: connect from ${p} [198.51.100.5]`), '198.51.100.5', p);
    assert.equal(addressOf(`6APHYwNB014021: lost input channel from ${p} [198.51.100.5] to MTA after auth`), '198.51.100.5', p);
    assert.equal(addressOf(`6APHYwNB014021: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): x, user=u, relay=${p} [198.51.100.5]`), '198.51.100.5', p);
    assert.equal(addressOf(`AUTH=server, relay=${p} [198.51.100.5], authid=u, mech=PLAIN, bits=0`), '198.51.100.5', p);
  }
});

test('a host name ending in a bracket (no space before it) or an invalid address yields nothing', () => {
  for (const m of [
    '6APHYwNB014021: evil[192.0.2.1] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA',
    '6APHYwNB014021: [192.0.2.300] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA',
    '6APHYwNB014021: [999.0.2.1]: possible SMTP attack: command=AUTH, count=5',
    'NOQUEUE: connect from [192.0.2.1',
    'NOQUEUE: connect from [IPv6:2001:db8::1::2]',
    'NOQUEUE: connect from evil [192.0.2.1] x',
    '6APHYwNB014021: [192.0.2.1]]: possible SMTP attack: command=AUTH, count=5',
  ]) {
    assert.equal(addressOf(m), undefined, m);
  }
});

test('parseSmtpClient reads only the bracket at the very end', () => {
  assert.deepEqual(parseSmtpClient('a [192.0.2.1] b [198.51.100.1] (may be forged)'), { address: '198.51.100.1', host: 'a [192.0.2.1] b' });
  assert.equal(parseSmtpClient('[198.51.100.1] (may be forged) x'), null);
  assert.equal(parseSmtpClient(''), null);
  assert.equal(parseSmtpClient('[]'), null);
});

test('a hostile authid cannot move the success address; a hostile PTR neither', () => {
  const r = rec('AUTH=server, relay=evil, authid=x [192.0.2.1] [198.51.100.8], authid=bob, mech=PLAIN, bits=0');
  if (r?.kind !== 'sendmail-auth-success') return assert.fail('kind');
  assert.equal(r.address, '198.51.100.8');
});
