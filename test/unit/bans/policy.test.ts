import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAddress } from '../../../src/core/address.js';
import { DEFAULT_BAN_POLICY, banSeconds, compileBanPolicy, exemptReason, keyOf, targetKey } from '../../../src/bans/policy.js';

const addr = (s: string) => parseAddress(s)!;

test('defaults are the documented ones', () => {
  const p = compileBanPolicy();
  assert.equal(p.findtime, 600);
  assert.equal(p.maxretry, 5);
  assert.equal(p.bantime, 600);
  assert.equal(p.bantimeFactor, 2);
  assert.equal(p.bantimeMax, 604800);
  assert.equal(p.offenderMemory, 604800);
  assert.equal(p.ipv6Prefix, 64);
  assert.equal(p.maxTracked, 1_000_000);
  assert.equal(p.dryRun, false);
  assert.deepEqual(Object.keys(p).filter((k) => !(k in DEFAULT_BAN_POLICY)).sort(), ['ignoreSet', 'ownSet']);
});

test('validation names the offending key', () => {
  assert.throws(() => compileBanPolicy({ findtime: 0 }), /"findtime" must be >= 1/);
  assert.throws(() => compileBanPolicy({ maxretry: 2.5 }), /"maxretry" must be an integer/);
  assert.throws(() => compileBanPolicy({ ipv6Prefix: 129 }), /"ipv6Prefix" must be <= 128/);
  assert.throws(() => compileBanPolicy({ bantime: '600' as unknown as number }), /"bantime" must be a number/);
  assert.throws(() => compileBanPolicy({ bantime: 1000, bantimeMax: 999 }), /"bantimeMax"/);
  assert.throws(() => compileBanPolicy({ dryRun: 'yes' as unknown as boolean }), /"dryRun" must be true or false/);
  assert.throws(() => compileBanPolicy({ ignore: ['10.0.0.0/8', 'nonsense'] }), /ignore\[1\] is not an address or CIDR/);
  assert.throws(() => compileBanPolicy({ bogus: 1 } as never), /unknown option "bogus"/);
  assert.throws(() => compileBanPolicy({}, ['not-an-ip']), /own address \[0\]/);
});

test('ban length grows by the factor and is capped', () => {
  const p = { bantime: 600, bantimeFactor: 2, bantimeMax: 3000 };
  assert.deepEqual([1, 2, 3, 4, 5, 50].map((n) => banSeconds(p, n)), [600, 1200, 2400, 3000, 3000, 3000]);
});

test('exemptions: loopback unless banLoopback, own addresses, ignore list v4 and v6', () => {
  const p = compileBanPolicy({ ignore: ['198.51.100.0/24', '2001:db8:aa::/48'] }, ['203.0.113.9', '2001:db8:ffff::25']);
  assert.equal(exemptReason(p, addr('127.0.0.5')), 'loopback');
  assert.equal(exemptReason(p, addr('::1')), 'loopback');
  assert.equal(exemptReason(p, addr('203.0.113.9')), 'own');
  assert.equal(exemptReason(p, addr('2001:db8:ffff::25')), 'own');
  assert.equal(exemptReason(p, addr('2001:db8:ffff::26')), null);
  assert.equal(exemptReason(p, addr('198.51.100.200')), 'ignored');
  assert.equal(exemptReason(p, addr('2001:db8:aa:1::9')), 'ignored');
  assert.equal(exemptReason(p, addr('2001:db8:ab::9')), null);
  assert.equal(exemptReason(p, addr('203.0.113.10')), null);
  assert.equal(exemptReason(compileBanPolicy({ banLoopback: true }), addr('127.0.0.5')), null);
});

test('operator targets map to keys; only key-shaped networks are accepted', () => {
  const p = compileBanPolicy();
  assert.deepEqual(keyOnly(targetKey(p, '2001:db8:1:2::7')), '2001:db8:1:2::/64');
  assert.deepEqual(keyOnly(targetKey(p, '2001:db8:1:2:ffff::/64')), '2001:db8:1:2::/64');
  assert.deepEqual(keyOnly(targetKey(p, '198.51.100.7')), '198.51.100.7');
  assert.deepEqual(keyOnly(targetKey(p, '198.51.100.7/32')), '198.51.100.7');
  assert.deepEqual(keyOnly(targetKey(p, '::ffff:198.51.100.7')), '198.51.100.7');
  assert.match(errOnly(targetKey(p, '198.51.100.0/24')), /only single addresses/);
  assert.match(errOnly(targetKey(p, '2001:db8::/48')), /\/64 networks/);
  assert.match(errOnly(targetKey(p, 'mail.example')), /not an address/);
});

test('an IPv6 network that holds an ignored or own address is keyed per address, never banned whole', () => {
  const p = compileBanPolicy({ ignore: ['2001:db8:0:1::25', '2001:db8:aa:bb:cc::/80'] }, ['2001:db8:ffff::25']);
  assert.equal(keyOf(p, addr('2001:db8:0:1::bad')), '2001:db8:0:1::bad');
  assert.equal(keyOf(p, addr('2001:db8:aa:bb::1')), '2001:db8:aa:bb::1', 'the /64 holds an ignored /80');
  assert.equal(keyOf(p, addr('2001:db8:ffff::26')), '2001:db8:ffff::26', 'the /64 holds an own address');
  assert.equal(keyOf(p, addr('2001:db8:0:2::bad')), '2001:db8:0:2::/64');
  assert.equal(keyOf(p, addr('198.51.100.7')), '198.51.100.7');
  assert.match(errOnly(targetKey(p, '2001:db8:0:1::/64')), /holds an ignored or own address/);
  assert.equal(keyOnly(targetKey(p, '2001:db8:0:1::bad')), '2001:db8:0:1::bad');
});

function keyOnly(r: ReturnType<typeof targetKey>): string {
  assert.ok('key' in r, JSON.stringify(r));
  return r.key;
}
function errOnly(r: ReturnType<typeof targetKey>): string {
  assert.ok('error' in r);
  return r.error;
}
