import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthFailure } from '../../../src/core/auth-failure.js';
import type { LogRecord } from '../../../src/logs/records.js';
import { Correlator, type CorrelatorOptions, type Unresolved } from '../../../src/correlate/correlator.js';
import { SessionIndex } from '../../../src/correlate/session-index.js';

const T0 = Date.UTC(2026, 10, 25, 17, 0, 0);
const sec = (s: number): number => T0 + s * 1000;
const qidOf = (pid: number): string => `6APHZ0aa${String(pid).padStart(6, '0')}`;

function setup(options: Partial<CorrelatorOptions> = {}) {
  const index = new SessionIndex();
  const out: AuthFailure[] = [];
  const unresolved: Unresolved[] = [];
  const c = new Correlator(
    { index, emit: (f) => out.push(f), onUnresolved: (why) => unresolved.push(why) },
    { startGraceMs: 0, ...options },
  );
  // The milter's events as the lead wires them: straight into the index.
  const open = (id: number, pid: number, address: string, at: number) =>
    index.opened({ id, pid, address, queueId: qidOf(pid), port: 40000 + id, at });
  const feed = (rec: LogRecord) => c.onRecord(rec, { line: JSON.stringify(rec), origin: 'test', receivedAt: rec.at });
  return { index, c, out, unresolved, open, feed };
}

function smFail(pid: number, at: number, address: string | undefined, user = 'alice', withQid = true): LogRecord {
  return {
    kind: 'sendmail-auth-failure', at, program: 'sendmail', pid, pattern: 'sendmail-auth-failure', mech: 'LOGIN',
    reason: 'authentication failure', user,
    ...(withQid ? { queueId: qidOf(pid) } : {}),
    ...(address !== undefined ? { address } : {}),
  };
}
function sasl(worker: number, at: number, user = 'alice'): LogRecord {
  return {
    kind: 'saslauthd-failure', at, program: 'saslauthd', pid: worker, pattern: 'saslauthd-failure',
    user, service: 'smtp', realm: '', mech: 'pam', reason: 'PAM auth error',
  };
}
/** `user` null: the line names no user (`check pass; user unknown` and the line after it). */
function pam(worker: number, at: number, user: string | null = 'alice', unknownUser = false): LogRecord {
  return {
    kind: 'pam-failure', at, program: 'saslauthd', pid: worker, pattern: 'pam-failure', service: 'smtp',
    unknownUser, ...(user !== null ? { user } : {}),
  };
}
function connect(pid: number, at: number, address: string): LogRecord {
  return { kind: 'sendmail-connect', at, program: 'sendmail', pid, pattern: 'sendmail-connect', address };
}
function noMail(pid: number, at: number, address: string): LogRecord {
  return { kind: 'sendmail-no-mail', at, program: 'sendmail', pid, pattern: 'sendmail-no-mail', queueId: qidOf(pid), address };
}

test('many interleaved sessions: each sendmail line joins its own session by queue id or pid', () => {
  const { c, out, open, index, feed } = setup();
  const n = 40;
  for (let i = 0; i < n; i++) open(i, 20000 + i, `198.51.100.${i + 1}`, sec(i % 5));
  // Lines of all sessions mixed: far apart in the input, close in time.
  const recs: LogRecord[] = [];
  for (let round = 0; round < 3; round++) {
    for (let i = n - 1; i >= 0; i--) recs.push(smFail(20000 + i, sec(10 + round * 3 + (i % 3)), `198.51.100.${i + 1}`, 'alice', i % 2 === 0));
  }
  recs.sort((a, b) => a.at - b.at);
  for (const r of recs) feed(r);
  for (let i = 0; i < n; i++) index.closed(i, sec(30), 'quit');
  c.flush();
  assert.equal(out.length, 3 * n);
  const perAddress = new Map<string, Set<string>>();
  for (const f of out) {
    const pid = Number((f.evidence[0] as { pid?: number }).pid);
    assert.equal(f.address, `198.51.100.${pid - 20000 + 1}`, 'joined to the session of its own pid');
    const keys = perAddress.get(f.address) ?? new Set();
    keys.add(f.attemptKey!);
    perAddress.set(f.address, keys);
  }
  for (const keys of perAddress.values()) assert.deepEqual([...keys].sort(), [1, 2, 3].map((k) => `${[...keys][0]!.split('#')[0]}#${k}`));
});

test('a SASL line far in time from any session is not joined', () => {
  const { c, out, open, index, feed, unresolved } = setup();
  open(1, 30001, '198.51.100.9', sec(0));
  index.closed(1, sec(5), 'quit');
  feed(pam(700, sec(58)));
  feed(sasl(700, sec(60)));
  c.flush();
  assert.equal(out.length, 0);
  assert.deepEqual(unresolved, ['no_session']);
});

test('a sendmail line of a pid whose session ended long before does not join it', () => {
  const { c, out, open, index, feed, unresolved } = setup();
  open(1, 30002, '198.51.100.10', sec(0));
  index.closed(1, sec(5), 'quit');
  // 8.12 style: no relay=, no queue id; nothing names the address, so nothing is emitted.
  feed(smFail(30002, sec(300), undefined, 'alice', false));
  c.flush();
  assert.equal(out.length, 0);
  assert.deepEqual(unresolved, ['no_address']);
});

test('two candidate sessions: the SASL line is refused, then decided by one session\'s own sendmail line', () => {
  const { c, out, open, feed, index, unresolved } = setup();
  open(1, 41001, '203.0.113.5', sec(0));
  open(2, 41002, '198.51.100.20', sec(1));
  feed(sasl(800, sec(4), 'bob'));
  c.tick(sec(7)); // past settle: both sessions were authenticating at 4 s
  assert.equal(out.length, 0, 'not attributed while two sessions could match');
  assert.equal(c.heldCount, 1);
  feed(smFail(41002, sec(4), '198.51.100.20', 'bob'));
  assert.equal(c.heldCount, 0);
  assert.equal(out.length, 1);
  assert.equal(out[0]!.address, '198.51.100.20');
  assert.equal(c.stats.corroborated, 1, 'the SASL line joined the same attempt');
  index.closed(1, sec(20), 'quit');
  index.closed(2, sec(20), 'quit');
  c.flush();
  assert.equal(out.length, 1);
  assert.deepEqual(unresolved, []);
});

test('two candidate sessions and nothing decides: counted as ambiguous after holdMs, never attributed', () => {
  const { c, out, open, feed, unresolved } = setup({ holdMs: 10_000 });
  open(1, 41001, '203.0.113.5', sec(0));
  open(2, 41002, '198.51.100.20', sec(1));
  feed(sasl(800, sec(4), 'bob'));
  c.tick(sec(13));
  assert.equal(c.heldCount, 1, 'still held within holdMs');
  c.tick(sec(14));
  assert.equal(c.heldCount, 0);
  assert.equal(out.length, 0);
  assert.equal(c.stats.ambiguous, 1);
  assert.deepEqual(unresolved, ['ambiguous']);
});

test('two candidate sessions from one address: attributed to that address once, after holdMs', () => {
  const { c, out, open, feed, unresolved } = setup({ holdMs: 10_000 });
  open(1, 41011, '198.51.100.44', sec(0));
  open(2, 41012, '198.51.100.44', sec(1));
  feed(sasl(801, sec(4), 'bob'));
  c.tick(sec(13));
  assert.equal(out.length, 0, 'waits for a deciding line first');
  c.tick(sec(14));
  assert.equal(out.length, 1);
  assert.equal(out[0]!.address, '198.51.100.44');
  assert.equal(c.stats.ambiguous, 0);
  assert.deepEqual(unresolved, []);
  // The same with one candidate from another address stays ambiguous (the test above).
});

test('log-only sessions: a late close line leaves one candidate and decides the held line', () => {
  const { c, out, feed } = setup();
  feed(connect(51001, sec(0), '203.0.113.7'));
  feed(connect(51002, sec(1), '198.51.100.30'));
  feed(sasl(900, sec(10), 'carol'));
  c.tick(sec(13));
  assert.equal(out.length, 0);
  // The maillog reader was behind: 51002 had already gone at 6 s.
  feed(noMail(51002, sec(6), '198.51.100.30'));
  assert.equal(out.length, 1);
  assert.equal(out[0]!.address, '203.0.113.7');
  assert.equal(out[0]!.source, 'saslauthd');
});

test('the PAM line narrows the attempt: a session opened during the fail delay is no candidate', () => {
  const { c, out, open, index, feed } = setup();
  open(1, 14021, '203.0.113.8', sec(0));
  feed(pam(13726, sec(0)));
  index.closed(1, sec(2) + 300, 'quit');
  open(2, 14029, '198.51.100.40', sec(2) + 400);
  feed(sasl(13726, sec(2)));
  c.tick(sec(5));
  assert.equal(out.length, 1);
  assert.equal(out[0]!.address, '203.0.113.8');
  assert.equal(out[0]!.evidence.length, 3, 'session, pam_unix line, saslauthd line');
});

test('sendmail, saslauthd and pam_unix lines of one attempt count once; the next attempt counts again', () => {
  const { c, out, open, index, feed } = setup();
  open(1, 14524, '203.0.113.9', sec(0));
  // Attempt 1 (unknown user: pam_unix logs two lines), attempt 2 (known user).
  feed(pam(13726, sec(3), null, true));
  feed(pam(13726, sec(3), null, false));
  feed(sasl(13726, sec(5), 'ghost'));
  feed(smFail(14524, sec(5), '203.0.113.9', 'ghost'));
  feed(pam(13724, sec(6)));
  feed(smFail(14524, sec(8), '203.0.113.9', 'alice'));
  feed(sasl(13724, sec(8), 'alice'));
  index.closed(1, sec(9), 'quit');
  c.flush();
  assert.equal(out.length, 2);
  assert.deepEqual(out.map((f) => f.attemptKey), [`${qidOf(14524)}#1`, `${qidOf(14524)}#2`]);
  assert.deepEqual(out.map((f) => f.user), ['ghost', 'alice']);
  assert.equal(c.stats.corroborated, 2);
});

test('pid reuse: a pid seen again after its session closed is a new session', () => {
  const { c, out, index, feed } = setup();
  index.opened({ id: 1, pid: 7777, address: '203.0.113.10', at: sec(0) });
  index.closed(1, sec(3), 'quit');
  index.opened({ id: 2, pid: 7777, address: '198.51.100.50', at: sec(40) });
  feed(smFail(7777, sec(42), undefined, 'alice', false));
  feed(smFail(7777, sec(2), undefined, 'alice', false));
  index.closed(2, sec(45), 'quit');
  c.flush();
  assert.deepEqual(out.map((f) => f.address), ['198.51.100.50', '203.0.113.10']);
  assert.notEqual(out[0]!.attemptKey!.split('#')[0], out[1]!.attemptKey!.split('#')[0]);
});

test('pid reuse in log-only mode: a new connect line ends the old session', () => {
  const { index, feed } = setup();
  feed(connect(6000, sec(0), '203.0.113.11'));
  feed(connect(6000, sec(30), '198.51.100.60'));
  assert.equal(index.openByPid(6000)?.address, '198.51.100.60');
  assert.equal(index.openCount, 1);
});

test('address mismatch between a sendmail line and its session: counted and dropped', () => {
  const { c, out, open, feed } = setup();
  open(1, 42001, '203.0.113.12', sec(0));
  feed(smFail(42001, sec(3), '198.51.100.70'));
  c.flush();
  assert.equal(out.length, 0);
  assert.equal(c.stats.addressMismatch, 1);
});

test('without sessions (LogLevel 9, no milter): sendmail lines stand alone; a SASL line is the attempt sendmail reported', () => {
  const { c, out, feed, unresolved } = setup();
  feed(pam(100, sec(0)));
  feed(sasl(100, sec(2)));
  feed(smFail(14021, sec(2), '203.0.113.13'));
  feed(smFail(14021, sec(4), '203.0.113.13'));
  c.flush();
  assert.deepEqual(out.map((f) => [f.address, f.attemptKey]), [
    ['203.0.113.13', `${qidOf(14021)}#1`],
    ['203.0.113.13', `${qidOf(14021)}#2`],
  ]);
  assert.deepEqual(unresolved, []);
  assert.equal(c.stats.corroborated, 1, 'the pam + saslauthd attempt pairs with sendmail\'s first line, counted once');
});

test('8.12 style AUTH failure without relay= waits for its pid\'s line that names the address', () => {
  const { c, out, feed } = setup();
  feed(smFail(9100, sec(0), undefined, 'alice', false));
  assert.equal(out.length, 0);
  feed(noMail(9100, sec(1), '203.0.113.14'));
  c.flush();
  assert.equal(out.length, 1);
  assert.equal(out[0]!.address, '203.0.113.14');
});

test('right after start, SASL lines are not attributed by time (earlier sessions are unknown)', () => {
  const { c, out, open, index, feed, unresolved } = setup({ startGraceMs: 60_000 });
  c.tick(sec(0));
  open(1, 43001, '203.0.113.15', sec(1));
  feed(sasl(1, sec(5)));
  index.closed(1, sec(8), 'quit');
  c.tick(sec(61));
  open(2, 43002, '203.0.113.16', sec(62));
  feed(sasl(1, sec(65)));
  c.flush();
  assert.deepEqual(unresolved, ['start_grace']);
  assert.deepEqual(out.map((f) => f.address), ['203.0.113.16']);
});

test('dovecot failures carry their own address and pass through', () => {
  const { c, out, feed } = setup();
  feed({ kind: 'dovecot-failure', at: sec(0), program: 'dovecot', pattern: 'dovecot-auth', address: '2001:db8::5', service: 'imap', user: 'u' });
  c.flush();
  assert.equal(out.length, 1);
  assert.deepEqual([out[0]!.address, out[0]!.source, out[0]!.service], ['2001:db8::5', 'dovecot', 'imap']);
});

test('a session seen authenticated is no candidate; a SASL failure for another service is not SMTP', () => {
  const { c, out, open, index, feed, unresolved } = setup();
  open(1, 44001, '203.0.113.17', sec(0));
  open(2, 44002, '198.51.100.80', sec(0));
  index.authenticated(2, sec(2));
  feed(sasl(5, sec(6)));
  feed({ ...(sasl(5, sec(7)) as Extract<LogRecord, { kind: 'saslauthd-failure' }>), service: 'imap' });
  c.flush();
  assert.deepEqual(out.map((f) => f.address), ['203.0.113.17']);
  assert.deepEqual(unresolved, ['other_service']);
});

/** A milter session whose CONNECT gave no address (family unix / unknown). */
const openUnknown = (index: SessionIndex, id: number, pid: number, at: number) =>
  index.opened({ id, pid, queueId: qidOf(pid), at });

test('two candidates, one of unknown address: ambiguous, never attributed to the known one', () => {
  const { c, out, open, index, feed, unresolved } = setup({ holdMs: 10_000 });
  open(1, 45001, '203.0.113.21', sec(0));
  openUnknown(index, 2, 45002, sec(1));
  feed(sasl(810, sec(4), 'bob'));
  c.tick(sec(13));
  assert.equal(c.heldCount, 1, 'held within holdMs');
  c.tick(sec(14));
  assert.equal(c.heldCount, 0);
  assert.equal(out.length, 0);
  assert.equal(c.stats.ambiguous, 1);
  assert.deepEqual(unresolved, ['ambiguous']);
});

test('two candidates, both of unknown address: ambiguous (not "one address")', () => {
  const { c, out, index, feed, unresolved } = setup({ holdMs: 10_000 });
  openUnknown(index, 1, 45011, sec(0));
  openUnknown(index, 2, 45012, sec(1));
  feed(sasl(811, sec(4), 'bob'));
  c.tick(sec(14));
  assert.equal(out.length, 0);
  assert.deepEqual(unresolved, ['ambiguous']);
});

test('the one candidate is of unknown address: not emitted, counted unattributed', () => {
  const { c, out, index, feed, unresolved } = setup();
  openUnknown(index, 1, 45021, sec(0));
  feed(sasl(812, sec(4), 'bob'));
  c.tick(sec(7));
  assert.equal(out.length, 0);
  assert.deepEqual(unresolved, ['unknown_address']);
  assert.equal(c.stats.unattributed.unknown_address, 1);
});

test('a sendmail line joined by queue id to a session of unknown address is not emitted', () => {
  const { c, out, index, feed, unresolved } = setup();
  openUnknown(index, 1, 45031, sec(0));
  feed(smFail(45031, sec(3), '203.0.113.22', 'bob'));
  assert.equal(out.length, 0);
  assert.deepEqual(unresolved, ['unknown_address']);
  assert.equal(c.stats.addressMismatch, 0);
  // saslauthd's line of the same attempt pairs with it: still nothing, and counted once.
  feed(sasl(813, sec(3), 'bob'));
  index.closed(1, sec(20), 'quit');
  c.flush();
  assert.equal(out.length, 0);
  assert.deepEqual(unresolved, ['unknown_address']);
  assert.equal(c.stats.corroborated, 1);
});
