/**
 * The scripts each backend writes, captured by a recording process put in front of the real
 * command (the same hook the netns tests use for `ip netns exec`). No root needed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import pino from 'pino';
import type { BanEntry } from '../../../src/enforce/backend.js';
import { createBackend } from '../../../src/enforce/factory.js';
import { DEFAULT_FIREWALL_OPTIONS, type FirewallOptions } from '../../../src/enforce/options.js';

const log = pino({ level: 'silent' });
const RECORDER = `const fs=require('fs');let s='';process.stdin.on('data',d=>s+=d).on('end',()=>fs.appendFileSync(process.argv[1],JSON.stringify({argv:process.argv.slice(2),stdin:s})+'\\n'))`;
const NOW = 1_700_000_000_000;

interface Call {
  argv: string[];
  stdin: string;
}

function recorded(t: TestContext, over: Partial<FirewallOptions>) {
  const dir = mkdtempSync(join(tmpdir(), 'authban-fw-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'calls');
  const fw = createBackend({ ...DEFAULT_FIREWALL_OPTIONS, ...over }, { log, now: () => NOW, commandPrefix: [process.execPath, '-e', RECORDER, file] });
  const calls = (): Call[] => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Call) : []);
  return { fw, calls };
}

const entries: BanEntry[] = [
  { target: '198.51.100.2', family: 4, expiresAt: NOW + 90_500 },
  { target: '2001:db8::/64', family: 6, expiresAt: null },
  { target: '198.51.100.3', family: 4, expiresAt: NOW - 1 }, // expired: never installed
  { target: '198.51.100.4\nflush', family: 4, expiresAt: null }, // refused before any command
];

test('nftables: one transaction for start with the restored elements and timeouts', async (t) => {
  const { fw, calls } = recorded(t, { backend: 'nftables', nftPriority: -1, ports: [25, 587] });
  await fw.start(entries);
  const [c] = calls();
  assert.deepEqual(c!.argv, ['nft', '-f', '-']);
  const s = c!.stdin;
  assert.ok(s.startsWith('add table inet authban\ndelete table inet authban\ntable inet authban {'));
  assert.match(s, /type filter hook input priority -1; policy accept;/);
  assert.match(s, /ip saddr @authban4 tcp dport \{ 25, 587 \} reject with tcp reset/);
  assert.match(s, /ip6 saddr @authban6 tcp dport \{ 25, 587 \} reject with tcp reset/);
  assert.match(s, /add element inet authban authban4 \{ 198\.51\.100\.2 timeout 91s \}/);
  assert.match(s, /set authban4 \{ type ipv4_addr; flags timeout; \}/);
  assert.match(s, /set authban6_64 \{ type ipv6_addr; flags timeout; \}/);
  assert.match(s, /ip6 saddr & ffff:ffff:ffff:ffff:0:0:0:0 @authban6_64 tcp dport \{ 25, 587 \} reject with tcp reset/);
  assert.match(s, /add element inet authban authban6_64 \{ 2001:db8:: \}/);
  assert.doesNotMatch(s, /interval/);
  assert.doesNotMatch(s, /198\.51\.100\.[34]/);
  assert.equal(calls().length, 1);
});

test('nftables: a ban refreshes the timeout via add, delete, add; an unban via add, delete', async (t) => {
  const { fw, calls } = recorded(t, { backend: 'nftables' });
  await fw.banMany([entries[0]!]);
  await fw.unbanMany([entries[1]!]);
  assert.deepEqual(calls()[0]!.stdin.trim().split('\n'), [
    'add element inet authban authban4 { 198.51.100.2 }',
    'delete element inet authban authban4 { 198.51.100.2 }',
    'add element inet authban authban4 { 198.51.100.2 timeout 91s }',
  ]);
  assert.equal(calls().length, 1, 'no /64 set exists yet, so there is nothing to unban');
  await fw.banMany([{ target: '203.0.113.0/24', family: 4, expiresAt: null }]);
  assert.deepEqual(calls()[1]!.stdin.trim().split('\n'), [
    'add set inet authban authban4_24 { type ipv4_addr; flags timeout; }',
    'add rule inet authban input ip saddr & 255.255.255.0 @authban4_24 tcp dport { 25, 465, 587 } reject with tcp reset',
    'add element inet authban authban4_24 { 203.0.113.0 }',
    'delete element inet authban authban4_24 { 203.0.113.0 }',
    'add element inet authban authban4_24 { 203.0.113.0 }',
  ]);
  await fw.banMany([{ target: '203.0.113.0/24', family: 4, expiresAt: NOW + 5000 }]);
  assert.doesNotMatch(calls()[2]!.stdin, /add (set|rule)/, 'the /24 set and rule are made once');
  await fw.unbanMany([{ target: '203.0.113.0/24', family: 4, expiresAt: null }]);
  assert.deepEqual(calls()[3]!.stdin.trim().split('\n'), [
    'add element inet authban authban4_24 { 203.0.113.0 }',
    'delete element inet authban authban4_24 { 203.0.113.0 }',
  ]);
});

test('ipset: start swaps in a freshly filled set; bans are one restore with -exist', async (t) => {
  const { fw, calls } = recorded(t, { backend: 'ipset', maxelem: 5000 });
  await fw.start(entries);
  const restore = calls().find((c) => c.argv.join(' ') === 'ipset restore -exist')!;
  const lines = restore.stdin.trim().split('\n');
  // The recorder lists no sets, so both live sets are created first.
  assert.equal(lines[0], 'create authban4 hash:net family inet timeout 0 maxelem 5000');
  assert.ok(lines.includes('add authban4.new 198.51.100.2 timeout 91'));
  assert.ok(lines.includes('add authban6.new 2001:db8::/64 timeout 0'));
  assert.ok(lines.indexOf('swap authban4 authban4.new') < lines.indexOf('destroy authban4.new'));
  assert.ok(!restore.stdin.includes('198.51.100.3') && !restore.stdin.includes('198.51.100.4'));
  const xt = calls().filter((c) => c.argv[0] === 'iptables-restore' || c.argv[0] === 'ip6tables-restore');
  assert.equal(xt.length, 2);
  assert.match(xt[0]!.stdin, /-A authban -m set --match-set authban4 src -j authban-act/);
  assert.match(xt[1]!.stdin, /-A authban -m set --match-set authban6 src -j authban-act/);

  await fw.banMany([entries[0]!, { ...entries[0]!, target: '198.51.100.9', expiresAt: NOW + 10_000_000_000 }]);
  const last = calls().at(-1)!;
  assert.deepEqual(last.argv, ['ipset', 'restore', '-exist']);
  assert.deepEqual(last.stdin.trim().split('\n'), ['add authban4 198.51.100.2 timeout 91', 'add authban4 198.51.100.9 timeout 2147483']);
});

test('iptables: one rule per target, no second rule on a re-ban, unban only of what is there', async (t) => {
  const { fw, calls } = recorded(t, { backend: 'iptables' });
  await fw.start([]);
  const n = calls().length;
  await fw.banMany([entries[0]!, entries[1]!]);
  await fw.banMany([entries[0]!]);
  await fw.unbanMany([entries[0]!, { target: '203.0.113.5', family: 4, expiresAt: null }]);
  const after = calls().slice(n);
  assert.deepEqual(
    after.map((c) => [c.argv.join(' '), c.stdin.trim().split('\n').slice(1, -1)]),
    [
      ['iptables-restore --noflush -w', ['-A authban -s 198.51.100.2 -j authban-act']],
      ['ip6tables-restore --noflush -w', ['-A authban -s 2001:db8::/64 -j authban-act']],
      ['iptables-restore --noflush -w', ['-D authban -s 198.51.100.2 -j authban-act']],
    ],
  );
  await fw.stop();
});

test('none touches nothing', async (t) => {
  const { fw, calls } = recorded(t, { backend: 'none' });
  await fw.start(entries);
  await fw.banMany(entries);
  assert.deepEqual(await fw.list(), []);
  assert.equal(calls().length, 0);
});
