import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BanEvent, UnbanEvent } from '../../../src/bans/ban-engine.js';
import { join } from 'node:path';
import { StateStore } from '../../../src/bans/state-store.js';
import { testDir } from '../../helpers/temp-dir.js';
import { T0, capturingLogger, engine, failure, metricValue, silent } from './fixtures.js';

test('maxretry: 4 failures do not ban, the 5th does', () => {
  const { engine: e, clock } = engine();
  const bans: BanEvent[] = [];
  e.on('ban', (b) => bans.push(b));
  for (let i = 1; i <= 4; i++) {
    const r = e.report(failure('198.51.100.7', clock.now()));
    assert.deepEqual(r, { kind: 'counted', key: '198.51.100.7', failures: i });
    clock.advance(10);
  }
  assert.equal(e.isBanned('198.51.100.7'), false);
  const r = e.report(failure('198.51.100.7', clock.now()));
  assert.equal(r.kind, 'banned');
  assert.equal(e.isBanned('198.51.100.7'), true);
  assert.equal(e.isBanned('198.51.100.8'), false);
  assert.equal(bans.length, 1);
  assert.deepEqual(bans[0], { target: '198.51.100.7', family: 4, expiresAt: clock.now() + 600_000, reason: 'maxretry', count: 1, createdAt: clock.now() });
  assert.equal(e.list()[0]!.evidence.length, 5, 'the ban carries the five failures');
  assert.deepEqual(e.report(failure('198.51.100.7', clock.now())), { kind: 'ignored', reason: 'banned' });
});

test('window edge in the engine: failures spread just over findtime never ban', () => {
  const { engine: e, clock } = engine({ findtime: 600, maxretry: 3 });
  e.report(failure('198.51.100.9', clock.now()));
  clock.advance(300);
  e.report(failure('198.51.100.9', clock.now()));
  clock.advance(300); // exactly findtime after the first: it is out
  assert.deepEqual(e.report(failure('198.51.100.9', clock.now())), { kind: 'counted', key: '198.51.100.9', failures: 2 });
  clock.advance(299); // 599 s after the second: it is in
  assert.equal(e.report(failure('198.51.100.9', clock.now())).kind, 'banned');
});

test('stale failures (older than findtime when read) are not counted', () => {
  const { engine: e, clock, registry } = engine();
  assert.deepEqual(e.report(failure('198.51.100.7', clock.now() - 600_000)), { kind: 'ignored', reason: 'stale' });
  assert.deepEqual(e.report(failure('198.51.100.7', clock.now() - 599_000)), { kind: 'counted', key: '198.51.100.7', failures: 1 });
  return metricValue(registry, 'authban_bans_failures_ignored_total', { reason: 'stale' }).then((v) => assert.equal(v, 1));
});

test('repeat offender: the 2nd ban lasts twice as long, later ones are capped', () => {
  const { engine: e, clock } = engine({ maxretry: 2, bantime: 600, bantimeFactor: 2, bantimeMax: 1500 });
  const durations: number[] = [];
  e.on('ban', (b) => durations.push((b.expiresAt! - b.createdAt) / 1000));
  for (let round = 0; round < 3; round++) {
    e.report(failure('203.0.113.5', clock.now()));
    e.report(failure('203.0.113.5', clock.now()));
    assert.equal(e.isBanned('203.0.113.5'), true);
    clock.advance(durations[round]!);
    assert.equal(e.isBanned('203.0.113.5'), false, 'expired exactly at its end');
    e.tick();
  }
  assert.deepEqual(durations, [600, 1200, 1500]);
  assert.deepEqual(e.explain('203.0.113.5').history?.bans, 3);
});

test('repeat-offender memory ends offenderMemory seconds after the last ban ended', () => {
  const { engine: e, clock } = engine({ maxretry: 1, bantime: 100, offenderMemory: 1000 });
  const counts: number[] = [];
  e.on('ban', (b) => counts.push(b.count));
  e.report(failure('203.0.113.5', clock.now()));
  clock.advance(100 + 999);
  e.tick();
  e.report(failure('203.0.113.5', clock.now()));
  clock.advance(200 + 1000);
  e.tick();
  e.report(failure('203.0.113.5', clock.now()));
  assert.deepEqual(counts, [1, 2, 1]);
});

test('IPv6: one /64 adds up, a /64 ban covers its addresses only', () => {
  const { engine: e, clock } = engine({ maxretry: 4 });
  e.report(failure('2001:db8:1:2::1', clock.now()));
  e.report(failure('2001:db8:1:2::2', clock.now()));
  e.report(failure('2001:db8:1:2:aaaa::3', clock.now()));
  e.report(failure('2001:db8:1:3::1', clock.now()));
  assert.equal(e.isBanned('2001:db8:1:2::1'), false);
  const r = e.report(failure('2001:db8:1:2:ffff:ffff:ffff:ffff', clock.now()));
  assert.equal(r.kind, 'banned');
  assert.equal(r.kind === 'banned' && r.key, '2001:db8:1:2::/64');
  assert.equal(e.isBanned('2001:db8:1:2::1234'), true, 'another address of the banned /64');
  assert.equal(e.isBanned('2001:db8:1:3::1'), false, 'a different /64');
  assert.equal(e.explain('2001:db8:1:3::1').failuresInWindow, 1);
  assert.equal(e.stats().activeBans.v6, 1);
});

test('IPv6 prefix is configurable', () => {
  const { engine: e, clock } = engine({ maxretry: 2, ipv6Prefix: 48 });
  e.report(failure('2001:db8:1:2::1', clock.now()));
  e.report(failure('2001:db8:1:3::1', clock.now()));
  assert.equal(e.isBanned('2001:db8:1:ffff::1'), true);
  assert.equal(e.list()[0]!.target, '2001:db8:1::/48');
});

test('ignore list (v4 and v6 CIDR), loopback and own addresses are never counted nor banned', async () => {
  const { engine: e, clock } = engine({ maxretry: 1, ignore: ['198.51.100.0/25', '2001:db8:aa::/48'] }, { ownAddresses: ['203.0.113.25'] });
  assert.deepEqual(e.report(failure('198.51.100.100', clock.now())), { kind: 'ignored', reason: 'ignored' });
  assert.deepEqual(e.report(failure('2001:db8:aa:5::1', clock.now())), { kind: 'ignored', reason: 'ignored' });
  assert.deepEqual(e.report(failure('127.0.0.1', clock.now())), { kind: 'ignored', reason: 'loopback' });
  assert.deepEqual(e.report(failure('::1', clock.now())), { kind: 'ignored', reason: 'loopback' });
  assert.deepEqual(e.report(failure('203.0.113.25', clock.now())), { kind: 'ignored', reason: 'own' });
  assert.deepEqual(e.report(failure('not an address', clock.now())), { kind: 'ignored', reason: 'invalid' });
  assert.equal(e.report(failure('198.51.100.200', clock.now())).kind, 'banned', 'just outside the ignored /25');
  assert.equal(e.report(failure('2001:db8:ab::1', clock.now())).kind, 'banned');
  await assert.rejects(e.ban('203.0.113.25'), /own addresses/);
  await assert.rejects(e.ban('127.0.0.2'), /loopback/);
  await assert.rejects(e.ban('198.51.100.1'), /ignore list/);
  assert.equal(e.stats().activeBans.v4 + e.stats().activeBans.v6, 2);
});

test('a guesser in the /64 of an ignored address is banned alone; the ignored address and its other neighbours are not', async () => {
  const { engine: e, clock } = engine({ maxretry: 2, ignore: ['2001:db8:0:1::25'] });
  for (let i = 0; i < 2; i++) e.report(failure('2001:db8:0:1::bad', clock.now()));
  assert.equal(e.isBanned('2001:db8:0:1::bad'), true);
  assert.equal(e.isBanned('2001:db8:0:1::25'), false);
  assert.equal(e.isBanned('2001:db8:0:1::bae'), false);
  assert.deepEqual(e.list().map((b) => b.target), ['2001:db8:0:1::bad']);
  // A reload that lifts the ignore entry keys the /64 whole again.
  e.reconfigure({ maxretry: 2 });
  for (let i = 0; i < 2; i++) e.report(failure('2001:db8:0:1::cafe', clock.now()));
  assert.equal(e.isBanned('2001:db8:0:1::25'), true);
});

test('a ban no longer of a key\'s shape (ipv6Prefix changed since) can still be lifted by its own target', async (t) => {
  const file = join(testDir(t), 'state.json');
  const wide = engine({ ipv6Prefix: 48 }, { store: new StateStore({ file }, { log: silent }) }).engine;
  await wide.start();
  assert.equal((await wide.ban('2001:db8:7::1')).target, '2001:db8:7::/48');
  await wide.stop();
  // Restarted keyed per /64: the /48 ban is loaded, and `unban` of its target lifts it.
  const { engine: e } = engine({ ipv6Prefix: 64 }, { store: new StateStore({ file }, { log: silent }) });
  await e.start();
  t.after(() => e.stop());
  assert.deepEqual(e.list().map((b) => b.target), ['2001:db8:7::/48']);
  assert.equal(await e.unban('2001:db8:7::/48'), true);
  assert.equal(e.list().length, 0);
});

test('banLoopback: true lets loopback be banned', () => {
  const { engine: e, clock } = engine({ maxretry: 1, banLoopback: true });
  assert.equal(e.report(failure('127.0.0.3', clock.now())).kind, 'banned');
  assert.equal(e.isBanned('127.0.0.3'), true);
});

test('duplicate sources: one attempt seen by sendmail and saslauthd counts once, evidence merged', async () => {
  const { engine: e, clock, registry } = engine({ maxretry: 2 });
  const at = clock.now();
  const first = e.report(failure('198.51.100.7', at, { source: 'sendmail', attemptKey: 'a1', user: 'bob' }));
  assert.deepEqual(first, { kind: 'counted', key: '198.51.100.7', failures: 1 });
  const dup = e.report(failure('198.51.100.7', at + 5, { source: 'saslauthd', attemptKey: 'a1' }));
  assert.deepEqual(dup, { kind: 'duplicate', key: '198.51.100.7' });
  assert.equal(e.explain('198.51.100.7').failuresInWindow, 1);
  const [rec] = e.explain('198.51.100.7').recentFailures;
  assert.deepEqual(rec!.sources, ['sendmail', 'saslauthd']);
  assert.equal(rec!.evidence.length, 2);
  assert.equal(await metricValue(registry, 'authban_bans_duplicates_total', { source: 'saslauthd' }), 1);
  // A different attempt counts, and the same key much later is a new attempt.
  assert.equal(e.report(failure('198.51.100.8', at, { attemptKey: 'a2' })).kind, 'counted');
  clock.advance(700);
  assert.equal(e.report(failure('198.51.100.8', clock.now(), { attemptKey: 'a2' })).kind, 'counted');
  const ban = e.report(failure('198.51.100.7', clock.now() - 100_000, { attemptKey: 'a3' }));
  assert.equal(ban.kind, 'counted', 'a1 fell out of the window with the clock');
});

test('duplicate of the banning attempt merges into the ban evidence', () => {
  const { engine: e, clock } = engine({ maxretry: 1 });
  const r = e.report(failure('198.51.100.7', clock.now(), { source: 'sendmail', attemptKey: 'x' }));
  assert.equal(r.kind, 'banned');
  e.report(failure('198.51.100.7', clock.now(), { source: 'pam', attemptKey: 'x' }));
  assert.deepEqual(e.list()[0]!.evidence[0]!.sources, ['sendmail', 'pam']);
});

test('dry run logs "would ban" and changes nothing', async () => {
  const { log, lines } = capturingLogger();
  const { engine: e, clock, registry } = engine({ maxretry: 2, dryRun: true }, { log });
  let events = 0;
  e.on('ban', () => events++);
  e.report(failure('198.51.100.7', clock.now()));
  assert.deepEqual(e.report(failure('198.51.100.7', clock.now())), { kind: 'would-ban', key: '198.51.100.7', failures: 2 });
  assert.equal(e.isBanned('198.51.100.7'), false);
  assert.equal(events, 0);
  assert.equal(e.list().length, 0);
  assert.equal(await metricValue(registry, 'authban_bans_dry_run_would_ban_total'), 1);
  const line = lines.find((l) => l.event === 'would_ban');
  assert.ok(line);
  assert.equal(line.address, '198.51.100.7');
  assert.equal(line.duration, 600);
});

test('expiry: past its end the ban is gone, an unban event and log line follow', async () => {
  const { log, lines } = capturingLogger();
  const { engine: e, clock, registry } = engine({ maxretry: 1, bantime: 60 }, { log });
  const unbans: UnbanEvent[] = [];
  e.on('unban', (u) => unbans.push(u));
  e.report(failure('198.51.100.7', clock.now(), { source: 'saslauthd' }));
  clock.advance(59);
  e.tick();
  assert.equal(e.isBanned('198.51.100.7'), true);
  assert.equal(unbans.length, 0);
  clock.advance(1);
  assert.equal(e.isBanned('198.51.100.7'), false, 'isBanned is exact even before the tick');
  e.tick();
  assert.deepEqual(unbans, [{ target: '198.51.100.7', family: 4, expiresAt: clock.now(), reason: 'expired' }]);
  assert.equal(e.list().length, 0);
  assert.equal(await metricValue(registry, 'authban_bans_unbans_total', { reason: 'expired' }), 1);
  assert.equal(await metricValue(registry, 'authban_bans_active', { family: '4' }), 0);
  const ban = lines.find((l) => l.event === 'ban')!;
  assert.deepEqual([ban.address, ban.reason, ban.duration, ban.failures, ban.sources], ['198.51.100.7', 'maxretry', 60, 1, ['saslauthd']]);
  const unban = lines.find((l) => l.event === 'unban')!;
  assert.deepEqual([unban.address, unban.reason, unban.duration], ['198.51.100.7', 'expired', 60]);
});

test('the tracking cap evicts counted keys but never bans', async () => {
  const { engine: e, clock, registry } = engine({ maxTracked: 100, maxretry: 2 });
  e.report(failure('203.0.113.1', clock.now()));
  e.report(failure('203.0.113.1', clock.now()));
  e.report(failure('203.0.113.2', clock.now()));
  for (let i = 0; i < 1000; i++) e.report(failure(`198.51.${100 + (i >> 8)}.${i & 255}`, clock.now()));
  assert.equal(e.stats().trackedKeys, 100);
  assert.equal(await metricValue(registry, 'authban_bans_tracked_evictions_total'), 901);
  assert.equal(e.isBanned('203.0.113.1'), true, 'the ban survives the churn');
  assert.deepEqual(e.report(failure('203.0.113.2', clock.now())), { kind: 'counted', key: '203.0.113.2', failures: 1 }, 'its count was evicted');
});

test('manual ban and unban, with who/why, permanent bans and growth', async () => {
  const { engine: e, clock } = engine();
  const events: string[] = [];
  e.on('ban', (b) => events.push(`ban ${b.target} ${b.expiresAt}`));
  e.on('unban', (u) => events.push(`unban ${u.target} ${u.reason}`));
  const b = await e.ban('2001:db8:5::9', { reason: 'abuse report', by: 'root' });
  assert.deepEqual([b.target, b.reason, b.why, b.by, b.count, b.expiresAt], ['2001:db8:5::/64', 'manual', 'abuse report', 'root', 1, clock.now() + 600_000]);
  const p = await e.ban('198.51.100.1', { seconds: null });
  assert.equal(p.expiresAt, null);
  clock.advance(1000);
  e.tick();
  assert.equal(e.isBanned('198.51.100.1'), true, 'no end');
  assert.equal(e.isBanned('2001:db8:5::1'), false);
  assert.equal((await e.ban('2001:db8:5::1')).count, 2, 'history counts manual bans too');
  assert.equal(await e.unban('2001:db8:5::/64'), true);
  assert.equal(await e.unban('2001:db8:5::/64'), false);
  assert.equal(e.explain('2001:db8:5::1').history, null, 'an operator unban forgets the history');
  assert.equal(await e.unbanAll(), 1);
  assert.equal(e.isBanned('198.51.100.1'), false);
  await assert.rejects(e.ban('198.51.100.0/24'), /only single addresses/);
  await assert.rejects(e.ban('198.51.100.2', { seconds: -5 }), /whole number of seconds from 1/);
  // A length past any sane ban would become Infinity (no end) on the way: refused.
  await assert.rejects(e.ban('198.51.100.2', { seconds: 1e308 }), /whole number of seconds from 1 to 315360000/);
  assert.deepEqual(events, [
    `ban 2001:db8:5::/64 ${T0 + 600_000}`,
    'ban 198.51.100.1 null',
    'unban 2001:db8:5::/64 expired',
    `ban 2001:db8:5::/64 ${T0 + 1_000_000 + 1_200_000}`,
    'unban 2001:db8:5::/64 manual',
    'unban 198.51.100.1 manual',
  ]);
});

test('users under attack: distinct keys per user within findtime, never a ban', async () => {
  const { engine: e, clock, registry } = engine({ userThreshold: 3, maxretry: 100 });
  for (let i = 1; i <= 4; i++) e.report(failure(`198.51.100.${i}`, clock.now(), { user: 'info' }));
  e.report(failure('198.51.100.1', clock.now(), { user: 'info' }));
  e.report(failure('2001:db8:1::1', clock.now(), { user: 'admin' }));
  e.report(failure('2001:db8:1::2', clock.now(), { user: 'admin' }));
  e.report(failure('2001:db8:2::1', clock.now(), { user: 'admin' }));
  e.report(failure('2001:db8:3::1', clock.now(), { user: 'bob' }));
  assert.deepEqual(e.usersUnderAttack(), [{ user: 'info', addresses: 4, saturated: false }]);
  e.tick();
  assert.equal(await metricValue(registry, 'authban_bans_users_under_attack'), 1);
  assert.equal(await metricValue(registry, 'authban_bans_user_max_distinct_addresses'), 4);
  assert.equal(e.list().length, 0);
  clock.advance(600);
  assert.deepEqual(e.usersUnderAttack(), []);
});

test('isBanned accepts IPv4-mapped and sendmail-style IPv6 text', async () => {
  const { engine: e } = engine();
  await e.ban('198.51.100.44');
  await e.ban('2001:db8:7::1');
  assert.equal(e.isBanned('::ffff:198.51.100.44'), true);
  assert.equal(e.isBanned('IPv6:2001:0db8:0007:0000:0000:0000:0000:0099'), true);
  assert.equal(e.isBanned('garbage:'), false);
});

test('reconfigure: new policy applies at once, invalid options change nothing, table-shaping ones wait for restart', () => {
  const { log, lines } = capturingLogger();
  const { engine: e, clock } = engine({ maxretry: 5 }, { log });
  e.report(failure('198.51.100.7', clock.now()));
  e.report(failure('198.51.100.7', clock.now()));
  assert.throws(() => e.reconfigure({ maxretry: 0 }), /"maxretry" must be >= 1/);
  assert.equal(e.policy.maxretry, 5);
  e.reconfigure({ maxretry: 3, ipv6Prefix: 48, ignore: ['203.0.113.0/24'] }, ['198.51.100.250']);
  assert.equal(e.policy.ipv6Prefix, 64, 'kept until restart');
  assert.deepEqual(lines.find((l) => l.event === 'reconfigure_needs_restart')?.keys, ['ipv6Prefix']);
  assert.deepEqual(e.report(failure('203.0.113.1', clock.now())), { kind: 'ignored', reason: 'ignored' });
  assert.deepEqual(e.report(failure('198.51.100.250', clock.now())), { kind: 'ignored', reason: 'own' });
  assert.equal(e.report(failure('198.51.100.7', clock.now())).kind, 'banned', 'the third failure bans under maxretry 3');
  e.reconfigure({ maxretry: 1, dryRun: true });
  assert.equal(e.report(failure('198.51.100.8', clock.now())).kind, 'would-ban');
});
