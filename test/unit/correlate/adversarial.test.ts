/**
 * An attacker A hiding its SASL failures behind an innocent session V. Each scenario was
 * found by review with the real correlator, index and log parser; these pin the outcome we
 * want: V is never blamed, and A's own sendmail lines still count once each for A.
 *
 * The lines are real log text through parseLine (not hand-built records) because the
 * pairing rules depend on how sendmail and saslauthd spell the user. correlator.test.ts has
 * record builders, but it exports none and they skip the parser: the builders here are local.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthFailure } from '../../../src/core/auth-failure.js';
import { parseLine } from '../../../src/logs/parse-line.js';
import { Correlator, type CorrelatorOptions } from '../../../src/correlate/correlator.js';
import { SessionIndex, type SessionIndexOptions } from '../../../src/correlate/session-index.js';

const T0 = Date.UTC(2026, 10, 25, 17, 0, 0);
const A = '198.51.100.66';
const V = '203.0.113.10';
const A_PID = 12345;
const V_PID = 12399;
const SASL_WORKER = 900;
const qidOf = (pid: number): string => `44ABCDEF${String(pid).padStart(6, '0')}`;

// ---- log lines as sendmail and saslauthd write them ------------------------------------

const stamp = (ms: number): string => new Date(ms - (ms % 1000)).toISOString().replace('.000Z', '+00:00');
const saslLine = (user: string): string =>
  `saslauthd[${SASL_WORKER}]: do_auth         : auth failure: [user=${user}] [service=smtp] [realm=] [mech=pam] [reason=PAM auth error]`;
const smFailLine = (pid: number, user: string, address: string): string =>
  `sendmail[${pid}]: ${qidOf(pid)}: AUTH failure (PLAIN): authentication failure (-13) SASL(-13): authentication failure: Password verification failed, user=${user}, relay=[${address}]`;
const connectLine = (pid: number, address: string): string =>
  `sendmail[${pid}]: NOQUEUE: connect from mail.example.org [${address}]`;
const noMailLine = (pid: number, address: string): string =>
  `sendmail[${pid}]: ${qidOf(pid)}: [${address}] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA`;

// ---- the rig ------------------------------------------------------------------------------

function rig(indexOptions: Partial<SessionIndexOptions> = {}, options: Partial<CorrelatorOptions> = {}) {
  const index = new SessionIndex(indexOptions);
  const out: AuthFailure[] = [];
  // The start grace is s3's subject; anywhere else it would settle the line before the rule under test.
  const c = new Correlator(
    { index, emit: (f) => out.push(f) },
    { startGraceMs: 0, ...options },
  );
  const feed = (at: number, text: string): void => {
    const line = `${stamp(at)} mx ${text}`;
    const r = parseLine(line, at);
    if (r.outcome !== 'matched') assert.fail(`test line not parsed (${r.outcome}): ${line}`);
    c.onRecord(r.record, { line, origin: 'test', receivedAt: at });
  };
  // The milter's events, straight into the index as main.ts wires them.
  const open = (id: number, pid: number, address: string, at: number): void => {
    index.opened({ id, pid, address, queueId: qidOf(pid), at });
  };
  const blamed = (address: string): string[] =>
    out.filter((f) => f.address === address).map((f) => `${f.source} ${f.user ?? '-'} @${(f.at - T0) / 1000}s`);
  return { index, c, out, feed, open, blamed };
}

type Rig = ReturnType<typeof rig>;

/** A's session opens at t, then 60 connect-and-quit sessions: past a 50-session cap they push A's out. */
function withAPushedOut(): { r: Rig; t: number } {
  const r = rig({ maxSessions: 50 });
  r.c.tick(T0);
  const t = T0 + 400_000;
  r.open(1, A_PID, A, t);
  for (let i = 0; i < 60; i++) {
    const at = t + 1000 + i * 100;
    r.index.opened({ id: 100 + i, address: `198.51.100.${i + 1}`, pid: 20_000 + i, at });
    r.index.closed(100 + i, at + 5, 'quit');
  }
  assert.equal(r.index.byQueue(qidOf(A_PID)), undefined, 'precondition: the flood pushed A\'s session out');
  return { r, t };
}

/** The grace the s3 findings were made with: (b) guesses just after it. */
const GRACE: Partial<CorrelatorOptions> = { startGraceMs: 300_000 };

/** One A guess as both daemons log it: saslauthd's line and sendmail's, same second. */
function guess(r: Rig, at: number, user: string, saslFirst = true): void {
  if (saslFirst) r.feed(at, saslLine(user));
  r.feed(at, smFailLine(A_PID, user, A));
  if (!saslFirst) r.feed(at, saslLine(user));
}

/** With sendmail lines present, the saslauthd line must join A's attempt, not land on V. */
function assertPairedWithA(r: Rig, guesses: number): void {
  r.c.flush();
  assert.deepEqual(r.blamed(V), [], 'V must never be blamed for A\'s SASL failures');
  const a = r.out.filter((f) => f.address === A);
  assert.equal(a.length, guesses, 'each of A\'s sendmail AUTH failure lines must count exactly once for A');
  assert.equal(new Set(a.map((f) => f.attemptKey)).size, guesses, 'A\'s attempts must never share an attempt key');
  assert.ok(a.every((f) => f.source === 'sendmail'), 'A\'s failures must never be recounted from the saslauthd lines');
  assert.equal(r.c.stats.corroborated, guesses,
    'each saslauthd line must pair with A\'s same-user sendmail attempt, never become a failure of its own');
}

// ---- with sendmail's AUTH failure lines -----------------------------------------------

test('s1: A hides its AUTH phase behind MAIL then RSET; its SASL lines pair with its own sendmail lines, not V', () => {
  const r = rig();
  r.c.tick(T0);
  const t = T0 + 400_000;
  r.open(1, A_PID, A, t - 5000);
  // A sent MAIL, then RSET (which the milter never sees), and guesses.
  r.open(2, V_PID, V, t + 100);
  for (let i = 0; i < 5; i++) {
    const at = t + 200 + i * 3000;
    guess(r, at, `guess${i}`);
    r.c.tick(at + 2500);
  }
  r.c.tick(t + 30_000);
  assertPairedWithA(r, 5);
});

test('s2: A\'s session outlives maxOpen (NOOPs make no milter event); its SASL line still pairs with A', () => {
  const r = rig({ maxOpen: 600 });
  r.c.tick(T0);
  r.open(1, A_PID, A, T0 + 1000);
  for (let s = 0; s <= 700; s += 60) r.c.tick(T0 + s * 1000);
  const t = T0 + 700_000;
  r.open(2, V_PID, V, t);
  guess(r, t + 300, 'admin');
  r.c.tick(t + 2500);
  r.c.tick(t + 20_000);
  assertPairedWithA(r, 1);
});

test('s3: A\'s session predates the start (catch-up backlog, or past startGraceMs); its SASL line pairs with A\'s detached failure', () => {
  // (a) A backlog line dates the index's first event 10 min before the start.
  {
    const r = rig({}, GRACE);
    const start = T0 + 600_000;
    r.feed(T0, noMailLine(777, '203.0.113.5'));
    r.c.tick(start);
    r.open(1, V_PID, V, start + 10_000);
    guess(r, start + 10_300, 'admin');
    r.c.tick(start + 14_000);
    assertPairedWithA(r, 1);
  }
  // (b) No backlog: A connected before the start and guesses after the grace.
  {
    const r = rig({}, GRACE);
    r.c.tick(T0);
    const t = T0 + 301_000;
    r.open(1, V_PID, V, t);
    guess(r, t + 300, 'admin', false);
    r.c.tick(t + 4000);
    assertPairedWithA(r, 1);
  }
});

test('s4: a connection flood evicts A\'s quiet session from the size-capped index; its SASL line still pairs with A', () => {
  const { r, t } = withAPushedOut();
  const u = t + 8000;
  r.open(2, V_PID, V, u);
  guess(r, u + 300, 'admin');
  r.c.tick(u + 3000);
  assertPairedWithA(r, 1);
});

test('s5: V\'s late `connect from` line after its milter close; a later SASL line of A pairs with A, not V', () => {
  const r = rig();
  r.c.tick(T0);
  const t = T0 + 400_000;
  r.open(1, V_PID, V, t + 100);
  r.index.closed(1, t + 400, 'quit');
  r.feed(t + 100, connectLine(V_PID, V)); // logged at connect, read after the close
  const u = t + 1_200_000;
  r.open(2, A_PID, A, u - 5000);
  guess(r, u, 'root');
  r.c.tick(u + 3000);
  assertPairedWithA(r, 1);
});

// ---- saslauthd / pam_unix lines only: nothing names A ---------------------------------

test('PAM-only s1: A sent MAIL then RSET (the milter sees MAIL only): A stays a candidate beside V, never V alone', () => {
  const r = rig();
  r.c.tick(T0);
  const t = T0 + 400_000;
  r.open(1, A_PID, A, t - 5000);
  r.open(2, V_PID, V, t + 100);
  for (let i = 0; i < 5; i++) {
    r.feed(t + 200 + i * 3000, saslLine(`guess${i}`));
    r.c.tick(t + 2700 + i * 3000);
  }
  r.c.flush();
  assert.deepEqual(r.blamed(V), [], 'a SASL line two sessions could explain must never be pinned on V');
  assert.equal(r.c.stats.ambiguous, 5, 'lines A or V could have caused must end ambiguous, not attributed');
});

test('PAM-only s2: a milter session open longer than maxOpen is still a candidate: never V', () => {
  const r = rig({ maxOpen: 600 });
  r.c.tick(T0);
  r.open(1, A_PID, A, T0 + 1000);
  for (let s = 0; s <= 700; s += 60) r.c.tick(T0 + s * 1000);
  const t = T0 + 700_000;
  assert.ok(r.index.authPhaseDuring(t, t, 1000, 500).some((s) => s.address === A),
    'a milter session must never be closed by maxOpen: only the milter knows it ended');
  r.open(2, V_PID, V, t);
  r.feed(t + 300, saslLine('admin'));
  r.c.tick(t + 2500);
  r.c.flush();
  assert.deepEqual(r.blamed(V), [], 'V must never be blamed while A\'s long session could have failed');
});

test('PAM-only s3: with `since` set to the start, catch-up lines and lines inside the grace blame nobody', () => {
  const start = T0 + 600_000;
  const r = rig({ since: start }, GRACE);
  // The followers resume at saved positions: the first lines read are 10 min old.
  r.feed(T0, noMailLine(777, '203.0.113.5'));
  r.feed(T0 + 5000, saslLine('admin'));
  r.c.tick(start);
  r.open(1, V_PID, V, start + 10_000);
  r.feed(start + 10_300, saslLine('admin'));
  r.c.tick(start + 14_000);
  r.c.flush();
  assert.deepEqual(r.blamed(V), [], 'a line within startGraceMs of the start must never be attributed by time');
  assert.deepEqual(r.out, [], 'catch-up lines must never be attributed by time');
  assert.ok((r.c.stats.unattributed['start_grace'] ?? 0) >= 1, `the in-grace line must count as start_grace (stats ${JSON.stringify(r.c.stats)})`);
});

test('PAM-only s5: a `connect from` line of a pid the milter already tracks opens no second session: never V', () => {
  const r = rig();
  r.c.tick(T0);
  const t = T0 + 400_000;
  r.open(1, V_PID, V, t + 100);
  r.index.closed(1, t + 400, 'quit');
  r.feed(t + 100, connectLine(V_PID, V));
  assert.equal(r.index.openByPid(V_PID), undefined,
    'a late connect line must never reopen, as a log session, a milter session that has closed');
  const u = t + 1_200_000;
  r.open(2, A_PID, A, u - 5000);
  r.feed(u, saslLine('root'));
  r.c.tick(u + 3000);
  r.c.flush();
  assert.deepEqual(r.blamed(V), [], 'V, gone 20 minutes ago, must never be blamed');
});

// ---- pairing: which sendmail report a SASL line is ---------------------------------------

const saslRealmLine = (user: string, realm: string, worker: number): string =>
  `saslauthd[${worker}]: do_auth         : auth failure: [user=${user}] [service=smtp] [realm=${realm}] [mech=pam] [reason=PAM auth error]`;
const unknownUserLine = (worker: number): string => `saslauthd[${worker}]: pam_unix(smtp:auth): check pass; user unknown`;
const pamFailLine = (user: string, worker: number): string =>
  `saslauthd[${worker}]: pam_unix(smtp:auth): authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=  user=${user}`;

test('pairing: a SASL line takes the sendmail report naming its user exactly, so V\'s one typo counts once', () => {
  const r = rig();
  r.c.tick(T0);
  const t = T0 + 400_000;
  r.open(2, V_PID, V, t - 30_000);
  // A fails as bob@evil and leaves; a second later V mistypes its password as bob.
  r.open(1, A_PID, A, t + 50);
  r.feed(t + 100, saslRealmLine('bob', 'evil', 900));
  r.feed(t + 120, smFailLine(A_PID, 'bob@evil', A));
  r.index.closed(1, t + 200, 'quit');
  r.feed(t + 1100, saslRealmLine('bob', 'mx.example.org', 901));
  r.feed(t + 1120, smFailLine(V_PID, 'bob', V));
  r.c.tick(t + 20_000);
  r.c.flush();
  assert.equal(r.blamed(V).length, 1, 'V\'s one failed AUTH must count once, never twice');
  assert.equal(r.blamed(A).length, 1);
  assert.equal(r.c.stats.corroborated, 2);
});

test('pairing: a line naming no user takes none of several reports, so it cannot leave V\'s own line unpaired', () => {
  const r = rig();
  r.c.tick(T0);
  const t = T0 + 400_000;
  r.open(2, V_PID, V, t - 30_000);
  r.open(1, A_PID, A, t + 50);
  r.feed(t + 100, unknownUserLine(900));
  r.feed(t + 120, smFailLine(A_PID, 'nosuch', A));
  r.index.closed(1, t + 200, 'quit');
  r.feed(t + 1100, pamFailLine('bob', 901));
  r.feed(t + 1120, smFailLine(V_PID, 'bob', V));
  for (let k = 2; k < 20; k++) r.c.tick(t + k * 1000);
  r.c.flush();
  assert.equal(r.blamed(V).length, 1, 'V\'s one failed AUTH must count once, never twice');
  assert.equal(r.blamed(A).length, 1);
});

test('pairing: a sendmail line delivered late and out of order does not hide the report a SASL line is', () => {
  const r = rig();
  r.c.tick(T0);
  const t = T0 + 400_000;
  r.open(2, V_PID, V, t - 30_000);
  // A's session is unknown to the index; its sendmail line stands alone but names A.
  r.feed(t + 100, smFailLine(A_PID, 'admin', A));
  r.feed(t - 15_000, smFailLine(22222, 'other', '198.51.100.7'));
  r.feed(t + 100, saslLine('admin'));
  r.c.tick(t + 3000);
  r.c.flush();
  assert.deepEqual(r.blamed(V), [], 'V must never be blamed for A\'s SASL failure');
  assert.equal(r.c.stats.corroborated, 1);
});

// ---- PAM-only: authenticated sessions and the lost-session refusal ------------------------------------------

test('PAM-only: a session seen authenticated is never a candidate afterwards', () => {
  const r = rig();
  r.c.tick(T0);
  const t = T0 + 400_000;
  // V authenticated ({auth_authen} at MAIL); whatever it does next, it can fail no AUTH.
  r.open(2, V_PID, V, t);
  r.index.authenticated(2, t + 500);
  for (let i = 0; i < 3; i++) {
    r.feed(t + 1_200_000 + i * 3000, saslLine(`guess${i}`));
    r.c.tick(t + 1_202_500 + i * 3000);
  }
  r.c.flush();
  assert.deepEqual(r.blamed(V), [], 'a session that authenticated must never be blamed for a later SASL failure');
});

test('PAM-only: an open session lost to the index cap refuses attribution by time until its close is known', () => {
  const { r, t } = withAPushedOut();
  // Two hours on (past maxOpen, which no longer ends milter sessions) A guesses.
  const u = t + 7_200_000;
  for (let s = t; s < u; s += 60_000) r.c.tick(s);
  r.open(2, V_PID, V, u);
  r.feed(u + 300, saslLine('admin'));
  r.c.tick(u + 3000);
  assert.deepEqual(r.blamed(V), [], 'V must never be blamed while a lost session may be the one');
  assert.equal(r.c.stats.unattributed.index_overflow, 1);
  // The milter reports A's close: the index is whole again, and time placement resumes.
  r.index.closed(1, u + 4000, 'quit');
  r.feed(u + 5000, saslLine('admin'));
  r.c.tick(u + 8000);
  r.c.flush();
  assert.equal(r.blamed(V).length, 1, 'with the index whole, V alone was in its AUTH phase');
});
