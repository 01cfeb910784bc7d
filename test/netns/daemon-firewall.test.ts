/**
 * The whole path into the kernel: the real daemon, run inside a test network namespace with
 * the nftables backend, bans from its log input and from the CLI; a client namespace finds
 * the banned address blocked at the guarded port, an innocent one served; the rules stay when
 * the daemon stops (onStop: keep).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, removeDir, startDaemon, tempDir, testConfig } from '../helpers/daemon.js';
import { bsdStamp } from '../helpers/smtp-session.js';
import { CLI4, GUARDED_PORT, OPEN_PORT, SRV4, setupNetns, waitFor } from './netns-helper.js';

test('daemon + nftables in a namespace: log-driven and manual bans block at the kernel, and stay after stop', async (t) => {
  const ns = await setupNetns(t, ['nft']);
  if (!ns) return;
  const dir = tempDir();
  t.after(() => removeDir(dir));
  const maillog = join(dir, 'mail.log');
  writeFileSync(maillog, '');
  const cfg = testConfig(dir, {
    milter: { listen: [`unix:${join(dir, 'milter.sock')}`] },
    metrics: { listen: null },
    bans: { maxretry: 3, findtime: 60, bantime: 600 },
    logs: { files: [{ path: maillog, fromStart: false }] },
    enforce: { backend: 'nftables', ports: [GUARDED_PORT], action: 'reject', onStop: 'keep' },
  });
  const d = await startDaemon(dir, cfg, { prefix: ns.prefix });
  t.after(() => d.kill());

  const [attacker, innocent, manual] = [CLI4[0], CLI4[1], CLI4[2]];
  assert.equal(await ns.probe(SRV4, GUARDED_PORT, attacker), 'connected');

  // Three AUTH failures as sendmail logs them (LogLevel 9, no milter session: the line's own relay=).
  for (let i = 0; i < 3; i++) {
    appendFileSync(maillog, `${bsdStamp()} mx sendmail[${31000 + i}]: 6AQZZZ0${i}0${31000 + i}: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=admin, relay=bot.example [${attacker}]\n`);
  }
  await d.waitForLog((l) => l.event === 'ban' && l.address === attacker, 10000);
  const blocked = await waitFor(async () => (await ns.probe(SRV4, GUARDED_PORT, attacker)) !== 'connected', 5000);
  assert.notEqual(blocked, null, 'the banned address is blocked at the guarded port');
  assert.equal(await ns.probe(SRV4, OPEN_PORT, attacker), 'connected', 'other ports stay open');
  assert.equal(await ns.probe(SRV4, GUARDED_PORT, innocent), 'connected', 'an innocent address is served');

  const r = await cli(['ban', manual, '--socket', d.socket]);
  assert.equal(r.code, 0, r.stderr);
  assert.notEqual(await waitFor(async () => (await ns.probe(SRV4, GUARDED_PORT, manual)) !== 'connected', 5000), null);
  const u = await cli(['unban', manual, '--socket', d.socket]);
  assert.equal(u.code, 0, u.stderr);
  assert.notEqual(await waitFor(async () => (await ns.probe(SRV4, GUARDED_PORT, manual)) === 'connected', 5000), null, 'unban restores access');

  assert.equal(await d.stop(), 0);
  assert.notEqual(await ns.probe(SRV4, GUARDED_PORT, attacker), 'connected', 'the kernel keeps refusing after authban stopped');
  assert.match(ns.inSrv('nft', 'list', 'table', 'inet', 'authban'), new RegExp(attacker.replace(/\./g, '\\.')));
});
