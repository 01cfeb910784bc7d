import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseBsdTimestamp,
  parseIsoTimestamp,
  parseRfc5424Timestamp,
  parseZoneOffset,
} from '../../../src/logs/timestamps.js';

const UTC = { timeZone: 'UTC', futureToleranceSeconds: 7 * 86400 };

test('BSD timestamp in UTC takes the reference year', () => {
  const ref = Date.UTC(2026, 10, 26, 0, 0, 0);
  assert.equal(parseBsdTimestamp('Nov 25 17:35:00', ref, UTC), Date.UTC(2026, 10, 25, 17, 35, 0));
  assert.equal(parseBsdTimestamp('Nov  5 07:05:09', ref, UTC), Date.UTC(2026, 10, 5, 7, 5, 9));
  assert.equal(parseBsdTimestamp('Nov 5 07:05:09', ref, UTC), Date.UTC(2026, 10, 5, 7, 5, 9));
});

test('New Year: December lines read in January land in the old year', () => {
  const ref = Date.UTC(2027, 0, 2, 10, 0, 0);
  assert.equal(parseBsdTimestamp('Dec 31 23:59:59', ref, UTC), Date.UTC(2026, 11, 31, 23, 59, 59));
  assert.equal(parseBsdTimestamp('Jan  2 09:00:00', ref, UTC), Date.UTC(2027, 0, 2, 9, 0, 0));
});

test('New Year: a January line read just before midnight (clock skew) lands in the new year', () => {
  const ref = Date.UTC(2026, 11, 31, 23, 59, 58);
  assert.equal(parseBsdTimestamp('Jan  1 00:00:03', ref, UTC), Date.UTC(2027, 0, 1, 0, 0, 3));
});

test('a date up to the tolerance in the future stays in this year, beyond it goes back a year', () => {
  const ref = Date.UTC(2026, 5, 1);
  assert.equal(parseBsdTimestamp('Jun  6 00:00:00', ref, UTC), Date.UTC(2026, 5, 6));
  assert.equal(parseBsdTimestamp('Jun 10 00:00:00', ref, UTC), Date.UTC(2025, 5, 10));
});

test('Feb 29 goes to the last leap year', () => {
  const ref = Date.UTC(2027, 2, 10);
  assert.equal(parseBsdTimestamp('Feb 29 12:00:00', ref, UTC), Date.UTC(2024, 1, 29, 12));
});

test('fixed offset and local zones', () => {
  const ref = Date.UTC(2026, 10, 26);
  assert.equal(
    parseBsdTimestamp('Nov 25 17:35:00', ref, { ...UTC, timeZone: '+01:00' }),
    Date.UTC(2026, 10, 25, 16, 35, 0),
  );
  assert.equal(
    parseBsdTimestamp('Nov 25 17:35:00', ref, { ...UTC, timeZone: '-0530' }),
    Date.UTC(2026, 10, 25, 23, 5, 0),
  );
  assert.equal(
    parseBsdTimestamp('Nov 25 17:35:00', ref, { ...UTC, timeZone: 'local' }),
    new Date(2026, 10, 25, 17, 35, 0).getTime(),
  );
  assert.throws(() => parseZoneOffset('Europe/Paris'));
  assert.throws(() => parseZoneOffset('+25:00'));
});

test('invalid BSD timestamps are refused', () => {
  const ref = Date.UTC(2026, 10, 26);
  for (const bad of ['Foo 25 17:35:00', 'Nov 32 17:35:00', 'Nov 25 24:00:00', 'Nov 25 17:60:00', 'Nov 25 17:35']) {
    assert.equal(parseBsdTimestamp(bad, ref, UTC), null, bad);
  }
});

test('ISO 8601 with fractions and offsets (rsyslog high precision)', () => {
  assert.equal(parseIsoTimestamp('2026-11-25T17:35:00.123456+01:00', UTC), Date.UTC(2026, 10, 25, 16, 35, 0, 123));
  assert.equal(parseIsoTimestamp('2026-11-25T17:35:00.5Z', UTC), Date.UTC(2026, 10, 25, 17, 35, 0, 500));
  assert.equal(parseIsoTimestamp('2026-11-25T17:35:00-0700', UTC), Date.UTC(2026, 10, 26, 0, 35, 0));
  assert.equal(parseIsoTimestamp('2026-11-25T17:35:00', { ...UTC, timeZone: '+02:00' }), Date.UTC(2026, 10, 25, 15, 35));
  assert.equal(parseIsoTimestamp('2026-11-25 17:35:00', UTC), Date.UTC(2026, 10, 25, 17, 35));
  assert.equal(parseIsoTimestamp('2026-02-30T00:00:00Z', UTC), null);
  assert.equal(parseIsoTimestamp('2026-13-01T00:00:00Z', UTC), null);
  assert.equal(parseIsoTimestamp('2026-11-25T17:35:00+99:00', UTC), null);
});

test('RFC 5424 timestamps need an offset; `-` is nil', () => {
  assert.equal(parseRfc5424Timestamp('2003-10-11T22:14:15.003Z'), Date.UTC(2003, 9, 11, 22, 14, 15, 3));
  assert.equal(parseRfc5424Timestamp('2003-08-24T05:14:15.000003-07:00'), Date.UTC(2003, 7, 24, 12, 14, 15, 0));
  assert.equal(parseRfc5424Timestamp('-'), 'nil');
  assert.equal(parseRfc5424Timestamp('2003-08-24T05:14:15'), null);
});
