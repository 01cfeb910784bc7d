import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FailCounter } from '../../../src/bans/fail-counter.js';
import { T0 } from './fixtures.js';

test('window edge: a failure exactly findtime seconds older is out, one second less is in', () => {
  const c = new FailCounter({ maxTracked: 10, findtime: 600 });
  assert.equal(c.add('a', T0), 1);
  assert.equal(c.add('a', T0 + 599_000), 2, '599 s later: both in the window');
  assert.equal(c.add('a', T0 + 600_000), 2, '600 s later: the first is out, the 599 s one in');
  assert.equal(c.add('a', T0 + 1_199_000), 2);
  assert.equal(c.add('a', T0 + 1_800_000), 1, 'all older ones out');
});

test('count reads the window without adding', () => {
  const c = new FailCounter({ maxTracked: 10, findtime: 60 });
  c.add('k', T0);
  c.add('k', T0 + 10_000);
  assert.equal(c.count('k', T0 + 30_000), 2);
  assert.equal(c.count('k', T0 + 60_000), 1);
  assert.equal(c.count('k', T0 + 70_000), 0);
  assert.equal(c.count('other', T0), 0);
});

test('the cap evicts the least recently failing key and reports it', () => {
  let evicted = 0;
  const c = new FailCounter({ maxTracked: 3, findtime: 600, onEvict: () => evicted++ });
  c.add('a', T0);
  c.add('b', T0);
  c.add('c', T0);
  c.add('a', T0 + 1000);
  c.add('d', T0 + 2000);
  assert.equal(c.size, 3);
  assert.equal(evicted, 1);
  assert.equal(c.count('b', T0 + 2000), 0, 'b was the least recently used');
  assert.equal(c.count('a', T0 + 2000), 2);
  c.delete('a');
  assert.equal(evicted, 1, 'an explicit delete is not an eviction');
});
