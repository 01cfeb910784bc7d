import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeOp, decodeSnapshot, STATE_VERSION } from '../../../src/bans/state-codec.js';

const ban = (target: string, family: 4 | 6): Record<string, unknown> => ({
  target, family, reason: 'manual', count: 1, createdAt: 1_795_000_000_000, expiresAt: null, evidence: [],
});

test('state file: only ban keys the engine could write are loaded; a network that would block everyone is refused', () => {
  const good = [ban('198.51.100.7', 4), ban('2001:db8:1:2::/64', 6), ban('2001:db8::1', 6), ban('2001:db8::/32', 6)];
  const bad: [Record<string, unknown>, RegExp][] = [
    [ban('0.0.0.0/0', 4), /IPv4 ban is one address/],
    [ban('10.0.0.0/8', 4), /IPv4 ban is one address/],
    [ban('::/0', 6), /IPv6 ban is at most a \/32/],
    [ban('2000::/16', 6), /IPv6 ban is at most a \/32/],
    [ban('198.51.100.7/32', 4), /canonical form/],
    [ban('2001:DB8::1', 6), /canonical form/],
    [ban('198.51.100.8', 6), /not an IPv6 address/],
    [ban('2001:db8::2', 4), /not an IPv4 address/],
  ];
  const text = JSON.stringify({ version: STATE_VERSION, bans: [...good, ...bad.map(([b]) => b)], offenders: [] });
  const { state, problems } = decodeSnapshot(text);
  assert.deepEqual([...state.bans.keys()].sort(), good.map((b) => b.target as string).sort());
  assert.equal(problems.length, bad.length);
  bad.forEach(([, re], i) => assert.match(problems[i]!, re));
  assert.throws(() => decodeOp(JSON.stringify({ op: 'ban', ban: ban('0.0.0.0/0', 4) })), /ban\.target: an IPv4 ban is one address/);
  assert.equal(decodeOp(JSON.stringify({ op: 'ban', ban: ban('198.51.100.9', 4) })).op, 'ban');
});
