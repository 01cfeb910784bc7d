/**
 * A firewall that cannot be set up must not take the milter down: the daemon logs the failing
 * command with its stderr, counts it, keeps refusing banned addresses at connect, and retries.
 * The failing tool is a stand-in `nft` first on PATH, so no kernel state is touched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlRequest } from '../../src/ops/control-client.js';
import { removeDir, startDaemon, tempDir, testConfig } from '../helpers/daemon.js';
import { scrape, sample } from '../helpers/metrics.js';
import { openSession } from '../helpers/smtp-session.js';

test('nft failing: the daemon keeps serving, logs and counts the failure, the milter still refuses bans', async (t) => {
  const dir = tempDir();
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'nft'), '#!/bin/sh\necho "Error: Could not process rule: Operation not permitted" >&2\nexit 1\n');
  chmodSync(join(bin, 'nft'), 0o755);
  const d = await startDaemon(dir, testConfig(dir, { enforce: { backend: 'nftables' } }), { env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` } });
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });

  const failed = await d.waitForLog((l) => l.event === 'firewall_start_failed', 30000);
  assert.match(String(failed.err), /Operation not permitted/, 'the log carries the command\'s stderr');

  const status = await controlRequest(d.socket, { cmd: 'status' });
  assert.ok(status.ok);
  assert.deepEqual((status.result as { firewall: { backend: string; state: string } }).firewall.state, 'failing');

  assert.ok((await controlRequest(d.socket, { cmd: 'ban', args: { address: '198.51.100.66' } })).ok);
  const s = await openSession(d.milterPort, '198.51.100.66', 28000);
  assert.equal(s.verdict, "'y'", 'tempfail at connect works without the firewall');
  s.client.destroy();

  const metrics = await scrape(d.metricsAddress!);
  assert.ok(sample(metrics, 'authban_firewall_command_failures_total{backend="nftables",op="start"}') >= 1, 'the failure is counted');

  // It retries with back-off rather than giving up.
  await d.waitForLog((l) => l.event === 'firewall_start_failed' && l !== failed, 10000);
});
