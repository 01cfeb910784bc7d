/**
 * `authban replay` as an admin runs it: the real command line over the real captures, judged
 * by the policy of a config file when one is named.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, removeDir, tempDir } from '../helpers/daemon.js';
import { CAPTURES, capturesAvailable } from '../helpers/captures.js';

test('replay over the LogLevel 9 capture: defaults never ban loopback, a config that allows it does', { skip: !capturesAvailable() && 'no captures' }, async (t) => {
  const dir = tempDir();
  t.after(() => removeDir(dir));
  const files = [join(CAPTURES, 'sendmail-LL9/mail.log'), join(CAPTURES, 'sendmail-LL9/auth.log')];

  const plain = await cli(['replay', ...files, '--json']);
  assert.equal(plain.code, 0, plain.stderr);
  const a = JSON.parse(plain.stdout) as { bans: unknown[]; failures: number };
  assert.equal(a.bans.length, 0, 'loopback is never banned by default');

  const cfg = join(dir, 'authban.json');
  writeFileSync(cfg, JSON.stringify({ bans: { banLoopback: true, maxretry: 3, findtime: 600 }, logs: { timezone: 'UTC' } }));
  const judged = await cli(['replay', '--config', cfg, ...files, '--json']);
  assert.equal(judged.code, 0, judged.stderr);
  const b = JSON.parse(judged.stdout) as { bans: { key: string; nth: number }[] };
  assert.deepEqual(b.bans.map((x) => [x.key, x.nth]), [['127.0.0.1', 1]]);

  const human = await cli(['replay', '--config', cfg, ...files]);
  assert.match(human.stdout, /Bans the policy would make: 1/);

  const bad = await cli(['replay', '--config', join(dir, 'missing.json'), ...files]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /cannot read/);
});
