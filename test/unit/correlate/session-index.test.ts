import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Correlator } from '../../../src/correlate/correlator.js';
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

test('AUTH phase: opened before, not closed and not authenticated before the interval', () => {
  const idx = new SessionIndex();
  idx.opened({ id: 1, address: '203.0.113.3', at: T0 });
  idx.opened({ id: 2, address: '203.0.113.4', at: T0 + 10_000 });
  idx.opened({ id: 3, address: '203.0.113.5', at: T0 });
  idx.authenticated(3, T0 + 3000);
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

test('sessions of unknown address (milter family unix / unknown) are indexed with address null', () => {
  const idx = new SessionIndex();
  const s = idx.opened({ id: 1, pid: 700, queueId: 'UUUUUUUU000700', at: T0 });
  assert.equal(s.address, null);
  assert.equal(idx.byQueue('UUUUUUUU000700'), s);
  assert.deepEqual(idx.authPhaseDuring(T0 + 2000, T0 + 2000, 1000, 0), [s]);
});

test('sessions from log lines and ticks alone (no SASL line ever) keep the index bounded', () => {
  const idx = new SessionIndex({ retainClosed: 60, maxOpen: 600 });
  const c = new Correlator({ index: idx, emit: () => assert.fail('nothing to emit') }, { startGraceMs: 0 });
  const at = (s: number): number => T0 + s * 1000;
  let id = 0;
  let maxSize = 0;
  let maxQueue = 0;
  let maxOpen = 0;
  // 2000 s at 10 sessions a second, each closed 2 s after it opened, except every 50th
  // whose close is missed: 20 000 sessions, 400 never closed.
  for (let t = 0; t < 2000; t++) {
    for (let k = 0; k < 10; k++) {
      id++;
      idx.opened({ id, address: `198.51.100.${(id % 200) + 1}`, pid: 10_000 + (id % 30_000), at: at(t) + k * 100 }, 'log');
      if (id > 20 && (id - 20) % 50 !== 0) idx.closed(id - 20, at(t) + k * 100, 'quit', 'log');
    }
    c.tick(at(t) + 999);
    maxSize = Math.max(maxSize, idx.size);
    maxQueue = Math.max(maxQueue, idx.closedQueueLength);
    maxOpen = Math.max(maxOpen, idx.openCount);
  }
  // Closed: ~60 s x 10/s retained; open: 20 live plus missed closes younger than maxOpen.
  assert.ok(maxOpen <= 20 + 600 / 5 + 2, `open sessions bounded by maxOpen (max ${maxOpen})`);
  assert.ok(maxSize <= 700 + 20 + 1200, `indexed sessions bounded (max ${maxSize})`);
  assert.ok(maxQueue <= 2 * 2000 + 1100, `closed queue bounded (max ${maxQueue})`);

  // No events any more, only the daemon's ticks: closed sessions go after retainClosed,
  // open ones (missed closes) are closed after maxOpen and then go too.
  const last = 2000;
  c.tick(at(last + 61));
  assert.ok(idx.openCount > 0);
  c.tick(at(last + 601));
  assert.equal(idx.openCount, 0, 'open sessions closed after maxOpen');
  c.tick(at(last + 601 + 61));
  assert.equal(idx.size, 0, 'and dropped retainClosed later');
  assert.ok(idx.closedQueueLength <= 1100, `closed queue compacted (${idx.closedQueueLength})`);
});

test('ticks alone: a closed session is dropped after retainClosed, an open log-made one closed after maxOpen, a milter one never', () => {
  const idx = new SessionIndex({ retainClosed: 60, maxOpen: 600 });
  const c = new Correlator({ index: idx, emit: () => assert.fail('nothing to emit') }, { startGraceMs: 0 });
  idx.opened({ id: 1, address: '203.0.113.7', pid: 801, queueId: 'AAAAAAAA000801', at: T0 });
  idx.opened({ id: 2, pid: 802, queueId: 'AAAAAAAA000802', at: T0 }, 'log');
  // The milter reports every close itself: its open session may be a long, slow one.
  idx.opened({ id: 3, address: '203.0.113.8', pid: 803, queueId: 'AAAAAAAA000803', at: T0 + 1000 });
  idx.closed(1, T0 + 2000, 'quit');
  c.tick(T0 + 61_000);
  assert.equal(idx.byQueue('AAAAAAAA000801')?.ref, 'milter:1', 'still within retainClosed');
  c.tick(T0 + 63_000);
  assert.equal(idx.byQueue('AAAAAAAA000801'), undefined);
  assert.equal(idx.byPidAt(801, T0 + 1000, 1000), undefined);
  assert.equal(idx.size, 2);
  assert.equal(idx.openCount, 2);
  c.tick(T0 + 601_000);
  assert.equal(idx.openCount, 1);
  assert.equal(idx.byQueue('AAAAAAAA000802')?.closeReason, 'expired');
  c.tick(T0 + 662_000);
  assert.equal(idx.size, 1);
  assert.equal(idx.byQueue('AAAAAAAA000802'), undefined);
  assert.equal(idx.byQueue('AAAAAAAA000803')?.closedAt, undefined, 'the milter session is still open');
});
