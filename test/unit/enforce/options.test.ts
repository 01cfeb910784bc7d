import assert from 'node:assert/strict';
import test from 'node:test';
import pino from 'pino';
import { createBackend } from '../../../src/enforce/factory.js';
import { DEFAULT_FIREWALL_OPTIONS, validateFirewallOptions } from '../../../src/enforce/options.js';

test('defaults are valid and name the documented values', () => {
  assert.equal(validateFirewallOptions(DEFAULT_FIREWALL_OPTIONS), DEFAULT_FIREWALL_OPTIONS);
  assert.deepEqual(DEFAULT_FIREWALL_OPTIONS.ports, [25, 465, 587]);
  assert.equal(DEFAULT_FIREWALL_OPTIONS.onStop, 'keep');
});

test('names that could break a script, fail2ban chains and bad numbers are refused', () => {
  const bad = [
    { chain: 'f2b-sendmail' },
    { chain: 'auth ban' },
    { chain: 'a'.repeat(25) },
    { set: 'x;flush' },
    { table: '' },
    { ports: [0] },
    { ports: [70000] },
    { maxelem: 0 },
    { commandAttempts: 0 },
  ];
  for (const over of bad) {
    assert.throws(() => validateFirewallOptions({ ...DEFAULT_FIREWALL_OPTIONS, ...over }), /invalid firewall options/, JSON.stringify(over));
  }
});

test('createBackend builds the configured backend', () => {
  const log = pino({ level: 'silent' });
  for (const backend of ['none', 'iptables', 'ipset', 'nftables'] as const) {
    assert.equal(createBackend({ ...DEFAULT_FIREWALL_OPTIONS, backend }, { log }).name, backend);
  }
  assert.throws(() => createBackend({ ...DEFAULT_FIREWALL_OPTIONS, backend: 'iptables', chain: 'f2b-x' }, { log }));
});
