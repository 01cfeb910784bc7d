import assert from 'node:assert/strict';
import test from 'node:test';
import { parseChainTargets } from '../../../src/enforce/iptables.js';
import { parseIpsetSave } from '../../../src/enforce/ipset.js';
import { maskText, parseNftSets } from '../../../src/enforce/nftables.js';

// Outputs recorded from ipset 7.17, nft 1.0.6 and iptables 1.8.9 (nf_tables) on this machine.
const NOW = 1_700_000_000_000;

test('ipset save: hosts and networks, timeout 0 is a ban without end', () => {
  const text = [
    'create authban4 hash:net family inet hashsize 1024 maxelem 2000 timeout 0 bucketsize 12 initval 0x46839201',
    'add authban4 198.51.100.2 timeout 49',
    'add authban4 203.0.113.0/24 timeout 0',
    'add other 198.51.100.9 timeout 5',
  ].join('\n');
  assert.deepEqual(parseIpsetSave(text, 'authban4', 4, NOW), [
    { target: '198.51.100.2', family: 4, expiresAt: NOW + 49_000 },
    { target: '203.0.113.0/24', family: 4, expiresAt: null },
  ]);
  const v6 = 'add authban6 2001:db8::/64 timeout 4\nadd authban6 2001:db8::5 timeout 0\n';
  assert.deepEqual(parseIpsetSave(v6, 'authban6', 6, NOW), [
    { target: '2001:db8::/64', family: 6, expiresAt: NOW + 4000 },
    { target: '2001:db8::5', family: 6, expiresAt: null },
  ]);
});

test('nft -j list: sets with plain, prefix and timed elements', () => {
  const text =
    '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "authban", "handle": 1}}, {"set": {"family": "inet", "name": "authban4", "table": "authban", "type": "ipv4_addr", "handle": 2, "flags": ["timeout"], "elem": [{"elem": {"val": "198.51.100.2", "timeout": 50, "expires": 49}}, {"prefix": {"addr": "203.0.113.0", "len": 24}}, "198.51.100.9"]}}, {"set": {"family": "inet", "name": "authban6_64", "table": "authban", "type": "ipv6_addr", "handle": 3, "flags": ["timeout"], "elem": [{"elem": {"val": "2001:db8::", "timeout": 3600, "expires": 3599}}]}}, {"set": {"family": "inet", "name": "authban6", "table": "authban", "type": "ipv6_addr", "handle": 4, "flags": ["timeout"]}}, {"chain": {"family": "inet", "table": "authban", "name": "input", "handle": 1}}]}';
  assert.deepEqual(parseNftSets(text), [
    {
      name: 'authban4',
      elems: [
        { value: '198.51.100.2', expires: 49 },
        { value: '203.0.113.0/24', expires: null },
        { value: '198.51.100.9', expires: null },
      ],
    },
    { name: 'authban6_64', elems: [{ value: '2001:db8::', expires: 3599 }] },
    { name: 'authban6', elems: [] },
  ]);
  assert.deepEqual(parseNftSets('garbage'), []);
});

test('nft netmasks', () => {
  assert.equal(maskText(4, 24), '255.255.255.0');
  assert.equal(maskText(4, 20), '255.255.240.0');
  assert.equal(maskText(6, 64), 'ffff:ffff:ffff:ffff:0:0:0:0');
  assert.equal(maskText(6, 56), 'ffff:ffff:ffff:ff00:0:0:0:0');
});

test('iptables -S CHAIN: per-address rules, canonical targets', () => {
  const text = [
    '-N authban',
    '-A authban -s 198.51.100.2/32 -j authban-act',
    '-A authban -s 203.0.113.0/24 -j authban-act',
    '-A authban -m set --match-set authban4 src -j authban-act',
  ].join('\n');
  assert.deepEqual(parseChainTargets(text, 'authban'), ['198.51.100.2', '203.0.113.0/24']);
  assert.deepEqual(parseChainTargets('-A authban -s 2001:db8::/64 -j authban-act\n-A authban -s 2001:db8::2/128 -j authban-act', 'authban'), [
    '2001:db8::/64',
    '2001:db8::2',
  ]);
});
