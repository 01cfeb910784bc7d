import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatListenSpec, parseListenSpec } from '../../../src/milter/listen-spec.js';

describe('listen specs', () => {
  it('parses sendmail S= forms', () => {
    assert.deepEqual(parseListenSpec('inet:8894@127.0.0.1'), { kind: 'inet', host: '127.0.0.1', port: 8894 });
    assert.deepEqual(parseListenSpec('inet6:8894@::1'), { kind: 'inet6', host: '::1', port: 8894 });
    assert.deepEqual(parseListenSpec('inet6:0@[::1]'), { kind: 'inet6', host: '::1', port: 0 });
    assert.deepEqual(parseListenSpec('inet:25'), { kind: 'inet', host: '0.0.0.0', port: 25 });
    assert.deepEqual(parseListenSpec('unix:/run/authban/milter.sock'), { kind: 'unix', path: '/run/authban/milter.sock' });
    assert.deepEqual(parseListenSpec('local:/tmp/m.sock'), { kind: 'unix', path: '/tmp/m.sock' });
  });

  it('formats back', () => {
    for (const s of ['inet:8894@127.0.0.1', 'inet6:1@::1', 'unix:/x/y']) assert.equal(formatListenSpec(parseListenSpec(s)), s);
  });

  it('refuses names (no DNS), bad ports, relative paths, unknown schemes', () => {
    assert.throws(() => parseListenSpec('inet:8894@localhost'), /IPv4 address literal/);
    assert.throws(() => parseListenSpec('inet:8894@::1'), /IPv4 address literal/);
    assert.throws(() => parseListenSpec('inet6:8894@127.0.0.1'), /IPv6 address literal/);
    assert.throws(() => parseListenSpec('inet:65536@127.0.0.1'), /port must be/);
    assert.throws(() => parseListenSpec('inet:x@127.0.0.1'), /port must be/);
    assert.throws(() => parseListenSpec('unix:rel.sock'), /absolute/);
    assert.throws(() => parseListenSpec('tcp:1@127.0.0.1'), /unknown scheme tcp/);
    assert.throws(() => parseListenSpec('8894'), /expected inet/);
  });
});
