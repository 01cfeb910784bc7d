import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ConfigError, configFromObject, defaultConfig, loadConfig } from '../../../src/ops/config.js';

function errorsOf(value: unknown): string[] {
  try {
    configFromObject(value, 'test.json');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.errors.map((x) => `${x.path}: ${x.message}`);
  }
  assert.fail('expected a ConfigError');
}

test('built-in defaults need no file', () => {
  const c = loadConfig(undefined);
  assert.deepEqual(c.milter.listen, ['inet:8894@127.0.0.1']);
  assert.equal(c.bans.maxretry, 5);
  assert.equal(c.bans.ipv6Prefix, 64);
  assert.deepEqual(c, defaultConfig());
});

test('a partial file is merged over the defaults', () => {
  const c = configFromObject({ bans: { maxretry: 3 } });
  assert.equal(c.bans.maxretry, 3);
  assert.equal(c.bans.findtime, 600);
  assert.equal(c.metrics.listen, '127.0.0.1:9464');
});

test('every validation error form names the key, what was expected and what was found', () => {
  assert.deepEqual(errorsOf({ bans: { maxretry: 'five' } }), ['bans.maxretry: expected a number, found the string "five"']);
  assert.deepEqual(errorsOf({ bans: { maxretry: 0 } }), ['bans.maxretry: expected at least 1, found 0']);
  assert.deepEqual(errorsOf({ bans: { maxretry: 2.5 } }), ['bans.maxretry: expected a whole number, found 2.5']);
  assert.deepEqual(errorsOf({ bans: { maxretyr: 3 } }), ['bans.maxretyr: unknown key; did you mean "maxretry"?']);
  assert.deepEqual(errorsOf({ bans: { dryRun: 'yes' } }), ['bans.dryRun: expected true or false, found the string "yes"']);
  assert.deepEqual(errorsOf({ bans: { ignore: ['198.51.100.0/24', 'nonsense'] } }), ['bans.ignore[1]: expected an IPv4/IPv6 address or CIDR network, found the string "nonsense"']);
  assert.deepEqual(errorsOf({ bans: { ignore: '198.51.100.0/24' } }), ['bans.ignore: expected an array, found the string "198.51.100.0/24"']);
  assert.deepEqual(errorsOf({ enforce: { backend: 'pf' } }), ['enforce.backend: expected one of "none", "iptables", "ipset", "nftables", found the string "pf"']);
  assert.deepEqual(errorsOf({ milter: { listen: ['tcp:25'] } }), ['milter.listen[0]: expected a sendmail socket spec: inet:PORT@HOST, inet6:PORT@HOST or unix:/path, found the string "tcp:25"']);
  assert.deepEqual(errorsOf({ metrics: 5 }), ['metrics: expected an object, found number 5']);
  assert.deepEqual(errorsOf([]), ['(top level): expected an object, found an array']);
  assert.deepEqual(errorsOf({ bans: { bantime: 100, bantimeMax: 50 } }), ['bans.bantimeMax: expected at least bans.bantime (100), found 50']);
  assert.equal(errorsOf({ bans: { maxretry: 0, findtime: -1 }, log: { level: 'loud' } }).length, 3);
});

test('file errors: unreadable and not JSON', () => {
  const dir = mkdtempSync(join(tmpdir(), 'authban-cfg-'));
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{ "bans": { "maxretry": 3, } }');
  assert.throws(() => loadConfig(bad), (e: unknown) => e instanceof ConfigError && /not valid JSON/.test(e.message) && e.message.includes(bad));
  assert.throws(() => loadConfig(join(dir, 'missing.json')), /cannot read/);
});

test('config/authban.json is complete and valid', () => {
  const path = new URL('../../../config/authban.json', import.meta.url).pathname;
  const text = JSON.parse(readFileSync(path, 'utf8')) as unknown;
  const c = configFromObject(text, path);
  // Complete: every knob of the defaults is written out in the example.
  const keys = (o: unknown, p = ''): string[] =>
    typeof o === 'object' && o !== null && !Array.isArray(o)
      ? Object.entries(o).flatMap(([k, v]) => keys(v, p ? `${p}.${k}` : k))
      : [p];
  assert.deepEqual(keys(text).sort(), keys(defaultConfig()).sort());
  assert.ok(c);
});

test('config/README.md documents every knob', () => {
  const doc = readFileSync(new URL('../../../config/README.md', import.meta.url), 'utf8');
  const paths: string[] = [];
  const walk = (o: unknown, p: string): void => {
    if (typeof o === 'object' && o !== null && !Array.isArray(o)) for (const [k, v] of Object.entries(o)) walk(v, p ? `${p}.${k}` : k);
    else paths.push(p);
  };
  walk(defaultConfig(), '');
  const missing = paths.filter((p) => !doc.includes(`\`${p}\``));
  assert.deepEqual(missing, []);
  assert.ok(doc.includes('`logs.files[].path`'));
});

test('one unix socket path used by two listeners is refused, naming both keys', () => {
  assert.deepEqual(errorsOf({ milter: { listen: ['inet:8894@127.0.0.1', 'unix:/run/authban/milter.sock'] }, logs: { syslog: { unix: '/run/authban//milter.sock' } } }), [
    'logs.syslog.unix: expected a socket path no other listener uses, found the string "/run/authban//milter.sock", already used by milter.listen[1]',
  ]);
  assert.deepEqual(errorsOf({ milter: { listen: ['local:/run/authban/control.sock'] } }), [
    'control.socket: expected a socket path no other listener uses, found the string "/run/authban/control.sock", already used by milter.listen[0]',
  ]);
  assert.deepEqual(errorsOf({ milter: { listen: ['unix:/run/m.sock', 'local:/run/m.sock'] } }), [
    'milter.listen[1]: expected a socket path no other listener uses, found the string "/run/m.sock", already used by milter.listen[0]',
  ]);
  assert.ok(configFromObject({ milter: { listen: ['unix:/run/m.sock'] }, logs: { syslog: { unix: '/run/log.sock' } } }));
});
