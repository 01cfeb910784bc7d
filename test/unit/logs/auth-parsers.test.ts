import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLine } from '../../../src/logs/parse-line.js';
import type { LogRecord } from '../../../src/logs/records.js';

const UTC = { timeZone: 'UTC', futureToleranceSeconds: 7 * 86400 };
const REF = Date.UTC(2026, 10, 26);

function rec(line: string): LogRecord | null {
  const r = parseLine(line, REF, UTC);
  return r.outcome === 'matched' ? r.record : null;
}

// ---- saslauthd ----

test('saslauthd auth failure: blank, do_auth and absent function name', () => {
  for (const fn of ['                : ', 'do_auth         : ', '']) {
    const r = rec(`Nov 25 17:35:16 vm saslauthd[13724]: ${fn}auth failure: [user=testuser] [service=smtp] [realm=] [mech=pam] [reason=PAM auth error]`);
    assert.deepEqual(r, {
      at: Date.UTC(2026, 10, 25, 17, 35, 16), program: 'saslauthd', pid: 13724, pattern: 'saslauthd-failure',
      kind: 'saslauthd-failure', user: 'testuser', service: 'smtp', realm: '', mech: 'pam', reason: 'PAM auth error',
    }, JSON.stringify(fn));
  }
});

test('saslauthd hostile user names keep the real service/mech fields', () => {
  const u = 'x] [service=imap] [realm=evil] [mech=shadow] [reason=none';
  const r = rec(`Nov 25 17:35:16 vm saslauthd[1]: do_auth : auth failure: [user=${u}] [service=smtp] [realm=] [mech=pam] [reason=PAM auth error]`);
  if (r?.kind !== 'saslauthd-failure') return assert.fail('kind');
  assert.equal(r.user, u);
  assert.deepEqual([r.service, r.realm, r.mech, r.reason], ['smtp', '', 'pam', 'PAM auth error']);
});

test('saslauthd success and chatter are misses', () => {
  for (const m of [
    '                : auth success: [user=testuser] [service=smtp] [realm=] [mech=pam]',
    'DEBUG: auth_pam: pam_authenticate failed: Authentication failure',
    '                : acquired accept lock',
    '                : auth failure: [user=u] [service=smtp]',
  ]) {
    const r = parseLine(`Nov 25 17:35:16 vm saslauthd[1]: ${m}`, REF, UTC);
    assert.equal(r.outcome, 'missed', m);
  }
});

// ---- pam_unix ----

test('pam_unix failure in saslauthd line, empty rhost', () => {
  const r = rec('Nov 25 17:35:13 vm saslauthd[13724]: pam_unix(smtp:auth): authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=  user=testuser');
  assert.deepEqual(r, {
    at: Date.UTC(2026, 10, 25, 17, 35, 13), program: 'saslauthd', pid: 13724, pattern: 'pam-auth-failure',
    kind: 'pam-failure', service: 'smtp', user: 'testuser', unknownUser: false,
  });
});

test('pam_unix with an address or a host in rhost, in any program', () => {
  const a = rec('Nov 25 17:35:13 vm sshd[5]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.20  user=root');
  if (a?.kind !== 'pam-failure') return assert.fail('a');
  assert.deepEqual([a.service, a.user, a.address], ['sshd', 'root', '198.51.100.20']);
  const b = rec('Nov 25 17:35:13 vm sshd[5]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=host.example.net');
  if (b?.kind !== 'pam-failure') return assert.fail('b');
  assert.deepEqual([b.address, b.user], [undefined, undefined]);
  const c = rec('Nov 25 17:35:13 vm dovecot[5]: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=u rhost=2001:db8::0:1  user=u');
  assert.equal(c && 'address' in c ? c.address : undefined, '2001:db8::1');
});

test('pam_unix check pass; user unknown, and the old (pam_unix) form', () => {
  const a = rec('Nov 25 17:18:33 vm saslauthd[7696]: pam_unix(smtp:auth): check pass; user unknown');
  if (a?.kind !== 'pam-failure') return assert.fail('a');
  assert.deepEqual([a.unknownUser, a.service, a.pattern], [true, 'smtp', 'pam-user-unknown']);
  const b = rec('Feb  7 15:10:42 example sshd(pam_unix)[4137]: authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.4  user=root');
  if (b?.kind !== 'pam-failure') return assert.fail('b');
  assert.deepEqual([b.service, b.address, b.user, b.pid], ['sshd', '203.0.113.4', 'root', 4137]);
  const c = rec('Feb  7 15:10:42 example sshd(pam_unix)[4137]: check pass; user unknown');
  assert.equal(c?.kind === 'pam-failure' && c.unknownUser, true);
});

test('pam_unix hostile user and ruser never give their address', () => {
  const lines = [
    // user text carrying rhost= after the real (empty) rhost
    'pam_unix(smtp:auth): authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=  user=x rhost=192.0.2.1',
    // ruser carrying rhost= before the real one
    'pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=rhost=192.0.2.1 rhost=198.51.100.1',
    'pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=a rhost=192.0.2.1 rhost=198.51.100.1  user=u',
    'pam_unix(smtp:auth): authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=  user=[192.0.2.1]',
    'pam_unix(smtp:auth): authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=  user=rip=192.0.2.1',
  ];
  for (const l of lines) {
    const r = rec(`Nov 25 17:35:13 vm saslauthd[1]: ${l}`);
    assert.equal(r?.kind, 'pam-failure', l);
    assert.notEqual(r && 'address' in r ? r.address : undefined, '192.0.2.1', l);
  }
  // Even when the injected rhost= is empty, two rhost= fields mean the address is not trusted.
  const two = rec('Nov 25 17:35:13 vm x[1]: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=rhost= rhost=198.51.100.1');
  assert.equal(two?.kind, 'pam-failure');
  assert.equal(two?.kind === 'pam-failure' ? two.address : 'x', undefined);
});

test('other pam modules and session lines are not failures', () => {
  const a = parseLine('Nov 25 17:35:13 vm sshd[1]: pam_unix(sshd:session): session opened for user root', REF, UTC);
  assert.equal(a.outcome, 'missed');
  const b = parseLine('Nov 25 17:35:13 vm cron[1]: something else', REF, UTC);
  assert.equal(b.outcome, 'ignored');
});

// ---- dovecot ----

test('dovecot login process failures with rip=', () => {
  const a = rec('Jun 13 16:30:54 platypus dovecot: imap-login: Disconnected (auth failed, 3 attempts in 6 secs): user=<bob>, method=PLAIN, rip=198.51.100.30, lip=203.0.113.1, TLS, session=<abc>');
  assert.deepEqual(a, {
    at: Date.UTC(2026, 5, 13, 16, 30, 54), program: 'dovecot', pattern: 'dovecot-login-auth-failed',
    kind: 'dovecot-failure', user: 'bob', address: '198.51.100.30', service: 'imap',
  });
  const b = rec('Jul 02 13:49:31 h dovecot[442]: pop3-login: Info: Aborted login (auth failed, 1 attempts in 17 secs): method=PLAIN, rip=2001:db8::30, lip=2001:db8::1');
  if (b?.kind !== 'dovecot-failure') return assert.fail('b');
  assert.deepEqual([b.address, b.service, b.user, b.pid], ['2001:db8::30', 'pop3', undefined, 442]);
  const c = rec('Jul 02 13:49:31 h dovecot: imap-login: Login aborted: Connection closed (auth failed, 3 attempts in 10 secs) (auth_failed): user=<u>, rip=198.51.100.31, lip=203.0.113.1');
  assert.equal(c && 'address' in c ? c.address : undefined, '198.51.100.31');
});

test('dovecot login lines that are not password failures are misses', () => {
  for (const m of [
    'imap-login: Disconnected (no auth attempts in 2 secs): user=<>, rip=198.51.100.30, lip=203.0.113.1',
    'pop3-login: Aborted login (tried to use disabled plaintext auth): rip=198.51.100.30, lip=203.0.113.1',
    'imap-login: Login: user=<bob>, method=PLAIN, rip=198.51.100.30, lip=203.0.113.1',
  ]) {
    assert.equal(parseLine(`Jun 13 16:30:54 p dovecot: ${m}`, REF, UTC).outcome, 'missed', m);
  }
});

test('dovecot passdb failures with (user,IP[,<session>])', () => {
  const cases: Array<[string, string, string]> = [
    ['auth: pam(alice,198.51.100.40,<sess1>): pam_authenticate() failed: Authentication failure (password mismatch?)', 'alice', '198.51.100.40'],
    ['auth: passwd-file(bob,198.51.100.41): unknown user', 'bob', '198.51.100.41'],
    ['auth-worker(304): sql(c@example.com,2001:db8::41,<x+/Y>): Password mismatch', 'c@example.com', '2001:db8::41'],
    ['auth-worker(5787): conn unix:auth-worker (pid=27359,uid=97): auth-worker<55>: pam(webapps,198.51.100.42): unknown user', 'webapps', '198.51.100.42'],
  ];
  for (const [m, user, address] of cases) {
    const r = rec(`Jun 13 16:30:54 p dovecot: ${m}`);
    if (r?.kind !== 'dovecot-failure') return assert.fail(m);
    assert.deepEqual([r.user, r.address, r.service], [user, address, 'dovecot'], m);
  }
  assert.equal(parseLine('Jun 13 16:30:54 p dovecot: auth: pam(alice,198.51.100.40): lookup ok', REF, UTC).outcome, 'missed');
});

test('dovecot hostile user names', () => {
  // login: user text holding rip= before dovecot's own fields
  const a = rec('Jun 13 16:30:54 p dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<x>, method=PLAIN, rip=192.0.2.1, lip=1.1.1.1, session=<a>>, method=PLAIN, rip=198.51.100.50, lip=203.0.113.1, session=<b>');
  assert.equal(a && 'address' in a ? a.address : undefined, '198.51.100.50');
  // passdb: a user holding `,IP): ` makes two splits disagree: refused
  const b = parseLine('Jun 13 16:30:54 p dovecot: auth: pam(x,192.0.2.1): unknown user (,198.51.100.51): unknown user', REF, UTC);
  assert.equal(b.outcome, 'missed');
  // a hostile reason echo (verbose passwords) disagreeing with the real split: refused
  const c = parseLine('Jun 13 16:30:54 p dovecot: auth: ldap(u,198.51.100.52): Password mismatch (given password: x,192.0.2.1): )', REF, UTC);
  assert.equal(c.outcome, 'missed');
  // same address in every split: accepted
  const d = rec('Jun 13 16:30:54 p dovecot: auth: pam(x,198.51.100.53): y,198.51.100.53): unknown user');
  assert.equal(d && 'address' in d ? d.address : undefined, '198.51.100.53');
});
