import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionIndex } from '../../../src/correlate/session-index.js';

const T0 = Date.UTC(2026, 10, 25, 17, 0, 0);

test('lookup by queue id (also after RSET gives a new one) and by pid at a time', () => {
  const idx = new SessionIndex();
  idx.opened({ id: 1, address: '203.0.113.1', pid: 14021, queueId: '6APHYwNB014021', at: T0 });
  idx.queueIdChanged(1, '6APHYxAA014021');
  assert.equal(idx.byQueue('6APHYwNB014021')?.address, '203.0.113.1');
  assert.equal(idx.byQueue('6APHYxAA014021')?.address, '203.0.113.1');
  assert.equal(idx.byPidAt(14021, T0 + 5000, 1000)?.address, '203.0.113.1');
  assert.equal(idx.byPidAt(14021, T0 - 5000, 1000), undefined, 'before the session opened');
});

test('closed sessions stay findable for retainClosed, then are gone', () => {
  const idx = new SessionIndex({ retainClosed: 60 });
  idx.opened({ id: 1, address: '203.0.113.2', pid: 500, queueId: 'AAAAAAAA000500', at: T0 });
  idx.closed(1, T0 + 2000, 'quit');
  idx.advance(T0 + 30_000);
  assert.equal(idx.byQueue('AAAAAAAA000500')?.closedAt, T0 + 2000);
  assert.equal(idx.authPhaseDuring(T0 + 1000, T0 + 1000, 1000, 0).length, 1);
  idx.advance(T0 + 63_000);
  assert.equal(idx.authPhaseDuring(T0 + 1000, T0 + 1000, 1000, 0).length, 0);
  assert.equal(idx.byQueue('AAAAAAAA000500'), undefined);
  assert.equal(idx.byPidAt(500, T0 + 1000, 1000), undefined);
});

test('AUTH phase: opened before, not closed and no MAIL before the interval', () => {
  const idx = new SessionIndex();
  idx.opened({ id: 1, address: '203.0.113.3', at: T0 });
  idx.opened({ id: 2, address: '203.0.113.4', at: T0 + 10_000 });
  idx.opened({ id: 3, address: '203.0.113.5', at: T0 });
  idx.mailIssued(3, T0 + 3000);
  const at = (from: number, to: number) => idx.authPhaseDuring(T0 + from, T0 + to, 1000, 0).map((s) => s.address).sort();
  assert.deepEqual(at(2000, 2000), ['203.0.113.3', '203.0.113.5']);
  assert.deepEqual(at(5000, 5000), ['203.0.113.3']);
  assert.deepEqual(at(10_500, 12_000), ['203.0.113.3', '203.0.113.4']);
  assert.deepEqual(at(8500, 12_000), ['203.0.113.3'], 'opened during the attempt: not its session');
});

test('memory is bounded: the oldest sessions are evicted with their keys', () => {
  const idx = new SessionIndex({ maxSessions: 100 });
  for (let i = 0; i < 1000; i++) idx.opened({ id: i, address: '203.0.113.6', pid: 1000 + i, queueId: `QQQQQQQQ${String(1000 + i).padStart(6, '0')}`, at: T0 + i });
  assert.equal(idx.openCount, 100);
  assert.equal(idx.byQueue('QQQQQQQQ001000'), undefined);
  assert.equal(idx.openByPid(1000), undefined);
  assert.equal(idx.openByPid(1999)?.address, '203.0.113.6');
});
