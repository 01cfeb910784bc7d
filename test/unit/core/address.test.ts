import { test } from 'node:test';
import assert from 'node:assert/strict';
import { banKey, cidrContains, CidrSet, isLoopback, normalizeAddress, parseAddress, parseCidr, parseHostPort } from '../../../src/core/address.js';

test('IPv4 forms', () => {
  assert.equal(normalizeAddress('198.51.100.7'), '198.51.100.7');
  assert.equal(normalizeAddress('[198.51.100.7]'), '198.51.100.7');
  assert.equal(normalizeAddress(' 198.51.100.7 '), '198.51.100.7');
  for (const bad of ['198.51.100', '198.51.100.256', '1.2.3.4.5', '01x.2.3.4', '', 'localhost', '198.51.100.7]']) {
    assert.equal(normalizeAddress(bad), null, bad);
  }
});

test('IPv6 forms as sendmail and logs write them', () => {
  assert.equal(normalizeAddress('IPv6:2001:db8::1'), '2001:db8::1');
  assert.equal(normalizeAddress('IPv6:2001:0DB8:0000:0000:0000:0000:0000:0001'), '2001:db8::1');
  assert.equal(normalizeAddress('[IPv6:2001:db8:0:0:1:0:0:1]'), '2001:db8::1:0:0:1');
  assert.equal(normalizeAddress('2001:db8:0:1:0:0:0:0'), '2001:db8:0:1::');
  assert.equal(normalizeAddress('::1'), '::1');
  assert.equal(normalizeAddress('::'), '::');
  assert.equal(normalizeAddress('fe80::1%eth0'), 'fe80::1');
  // RFC 5952: a single zero group is not shortened, the first of equal runs is.
  assert.equal(normalizeAddress('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1');
  assert.equal(normalizeAddress('2001:0:0:1:0:0:1:1'), '2001::1:0:0:1:1');
});

test('IPv4-mapped IPv6 becomes IPv4', () => {
  assert.equal(normalizeAddress('::ffff:198.51.100.7'), '198.51.100.7');
  assert.equal(normalizeAddress('IPv6:::ffff:198.51.100.7'), '198.51.100.7');
  assert.equal(normalizeAddress('0:0:0:0:0:ffff:c633:6407'), '198.51.100.7');
  assert.equal(parseAddress('::ffff:198.51.100.7')?.family, 4);
});

test('CIDR parsing and containment', () => {
  const n = parseCidr('198.51.100.77/24');
  assert.equal(n?.text, '198.51.100.0/24');
  assert.ok(cidrContains(n!, parseAddress('198.51.100.200')!));
  assert.ok(!cidrContains(n!, parseAddress('198.51.101.1')!));
  assert.ok(!cidrContains(n!, parseAddress('2001:db8::1')!));
  const v6 = parseCidr('2001:db8:1:2:3::/48');
  assert.equal(v6?.text, '2001:db8:1::/48');
  assert.ok(cidrContains(v6!, parseAddress('2001:db8:1:ffff::9')!));
  assert.equal(parseCidr('2001:db8::1')?.prefix, 128);
  assert.equal(parseCidr('::ffff:198.51.100.0/120')?.text, '198.51.100.0/24');
  for (const bad of ['198.51.100.0/33', '2001:db8::/129', '198.51.100.0/', 'x/8', '198.51.100.0/-1']) assert.equal(parseCidr(bad), null, bad);
});

test('ban keys: IPv4 per address, IPv6 per prefix', () => {
  assert.equal(banKey(parseAddress('198.51.100.7')!, 64), '198.51.100.7');
  assert.equal(banKey(parseAddress('2001:db8:1:2:aaaa::1')!, 64), '2001:db8:1:2::/64');
  assert.equal(banKey(parseAddress('2001:db8:1:2:bbbb::9')!, 64), '2001:db8:1:2::/64');
  assert.equal(banKey(parseAddress('2001:db8:1:2::9')!, 128), '2001:db8:1:2::9');
  assert.equal(banKey(parseAddress('2001:db8:1:2::9')!, 48), '2001:db8:1::/48');
});

test('loopback and CidrSet', () => {
  assert.ok(isLoopback(parseAddress('127.0.0.3')!));
  assert.ok(isLoopback(parseAddress('::1')!));
  assert.ok(isLoopback(parseAddress('::ffff:127.0.0.1')!));
  assert.ok(!isLoopback(parseAddress('198.51.100.7')!));
  const set = new CidrSet([parseCidr('203.0.113.0/24')!, parseCidr('2001:db8:5::/48')!]);
  assert.ok(set.contains(parseAddress('203.0.113.9')!));
  assert.ok(set.contains(parseAddress('2001:db8:5:1::1')!));
  assert.ok(!set.contains(parseAddress('2001:db8:6::1')!));
  assert.equal(set.size, 2);
  // Overlap either way: a network inside an entry, an entry inside the network, or neither.
  assert.ok(set.overlaps(parseCidr('2001:db8:5:1::/64')!));
  assert.ok(set.overlaps(parseCidr('2001:db8::/32')!));
  assert.ok(set.overlaps(parseCidr('203.0.113.128/25')!));
  assert.ok(!set.overlaps(parseCidr('2001:db8:6::/64')!));
  assert.ok(!set.overlaps(parseCidr('198.51.100.0/24')!));
  assert.ok(!new CidrSet([parseCidr('2001:db8:5::1')!]).overlaps(parseCidr('203.0.113.0/24')!), 'families never overlap');
});

test('HOST:PORT as the config writes listeners', () => {
  assert.deepEqual(parseHostPort('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
  assert.deepEqual(parseHostPort('[::1]:5514'), { host: '::1', port: 5514 });
  assert.deepEqual(parseHostPort('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  for (const bad of ['127.0.0.1', '127.0.0.1:65536', ':25', '127.0.0.1:x', '127.0.0.1:123456']) assert.equal(parseHostPort(bad), null, bad);
});
