/**
 * Operating the daemon: SIGHUP reload (applied, or refused while serving on), and /metrics
 * scraped over HTTP after scripted traffic, moved by exactly what happened.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { controlRequest } from '../../src/ops/control-client.js';
import { cli, removeDir, startDaemon, tempDir, testConfig } from '../helpers/daemon.js';
import { needsOrSkip } from '../helpers/require-root.js';
import { scrape, sample } from '../helpers/metrics.js';
import { appendLine, authFailureLine, openSession } from '../helpers/smtp-session.js';

/** A port nobody listens on right now (the kernel's pick), for a listener that must stay fixed. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

test('SIGHUP applies a new maxretry and milter settings; bans, listeners and open sessions are kept', async (t) => {
  const dir = tempDir();
  const maillog = join(dir, 'mail.log');
  writeFileSync(maillog, '');
  const port = await freePort();
  const cfg = testConfig(dir, {
    milter: { listen: [`inet:${port}@127.0.0.1`], refuseText: 'Try again later' },
    bans: { maxretry: 5, findtime: 60, bantime: 600 },
    logs: { files: [{ path: maillog, fromStart: false }] },
  });
  const d = await startDaemon(dir, cfg);
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });
  assert.equal(d.milterPort, port);
  assert.ok((await controlRequest(d.socket, { cmd: 'ban', args: { address: '198.51.100.50' } })).ok);
  const open = await openSession(d.milterPort, '198.51.100.60', 41000);
  assert.equal(open.verdict, "'c'");

  // Same listener, new milter settings and a new maxretry.
  writeFileSync(d.configFile, JSON.stringify({ ...cfg, milter: { listen: [`inet:${port}@127.0.0.1`], refuseText: 'Slow down', handlerTimeoutMs: 3000 }, bans: { maxretry: 2, findtime: 60, bantime: 600 } }));
  d.proc.kill('SIGHUP');
  await d.waitForLog((l) => l.event === 'reloaded');
  assert.equal(d.logs.filter((l) => l.event === 'reload-failed').length, 0);

  // The session opened before the reload goes on: its connection is still open and takes
  // more commands (HELO and MAIL are negotiated no-reply), then ends normally.
  assert.equal(open.client.closed, false);
  open.client.send({ cmd: 'helo', name: 'still-here.test' });
  open.client.send({ cmd: 'mail', args: ['<a@still-here.test>'] });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(open.client.closed, false);
  await open.client.quit();
  const refused = await openSession(d.milterPort, '198.51.100.50', 41001);
  assert.equal(refused.verdict, "'y'", 'the ban made before the reload still refuses');
  assert.match(refused.text, /^421 4\.7\.1 Slow down$/, 'the new refuse text applies');
  refused.client.destroy();

  for (let i = 0; i < 2; i++) {
    const s = await openSession(d.milterPort, '198.51.100.61', 41010 + i);
    appendLine(maillog, authFailureLine(s, '198.51.100.61'));
    await s.client.quit();
  }
  await d.waitForLog((l) => l.event === 'ban' && l.address === '198.51.100.61', 10000);
  const list = await controlRequest(d.socket, { cmd: 'list' });
  assert.ok(list.ok);
  assert.deepEqual((list.result as { target: string }[]).map((b) => b.target).sort(), ['198.51.100.50', '198.51.100.61']);
  const m = await scrape(d.metricsAddress!);
  assert.equal(sample(m, 'authban_config_reloads_total{result="applied"}'), 1);
});

test('an invalid file on SIGHUP is refused with its errors; the daemon keeps serving the old config', async (t) => {
  const dir = tempDir();
  const cfg = testConfig(dir, { bans: { maxretry: 4 } });
  const d = await startDaemon(dir, cfg);
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });
  writeFileSync(d.configFile, JSON.stringify({ ...cfg, bans: { maxretry: 'many', findtmie: 5 } }));
  d.proc.kill('SIGHUP');
  const rejected = await d.waitForLog((l) => l.event === 'reload-rejected');
  assert.match(String(rejected.err), /bans\.maxretry: expected a number, found the string "many"/);
  assert.match(String(rejected.err), /bans\.findtmie: unknown key; did you mean "findtime"\?/);
  const s = await openSession(d.milterPort, '198.51.100.70', 42000);
  assert.equal(s.verdict, "'c'");
  await s.client.quit();
  const st = await cli(['status', '--json', '--socket', d.socket]);
  assert.equal(st.code, 0);
  assert.equal(d.proc.exitCode, null);
  const m = await scrape(d.metricsAddress!);
  assert.equal(sample(m, 'authban_config_reloads_total{result="rejected"}'), 1);
  assert.equal(sample(m, 'authban_config_reloads_total{result="applied"}'), 0);
});

test('check-config and daemon start reject a bad file with every error and exit 2', async (t) => {
  const dir = tempDir();
  t.after(() => removeDir(dir));
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ milter: { listen: ['tcp:25'] }, bans: { maxretry: 0 }, enforce: { backend: 'pf' } }));
  const r = await cli(['check-config', bad]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /3 error\(s\)/);
  assert.match(r.stderr, /milter\.listen\[0\]: expected a sendmail socket spec/);
  assert.match(r.stderr, /bans\.maxretry: expected at least 1, found 0/);
  assert.match(r.stderr, /enforce\.backend: expected one of/);
  const run = await cli(['run', '--config', bad]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /bans\.maxretry/);
  const good = join(dir, 'good.json');
  writeFileSync(good, JSON.stringify({ bans: { maxretry: 3 } }));
  const ok = await cli(['check-config', good]);
  assert.equal(ok.code, 0);
  assert.match(ok.stdout, /OK/);
});

test('/metrics moves by exactly the scripted session and ban, and passes promtool', async (t) => {
  const dir = tempDir();
  const d = await startDaemon(dir, testConfig(dir));
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });
  const before = await scrape(d.metricsAddress!);

  // One whole session from an innocent address.
  const s = await openSession(d.milterPort, '198.51.100.80', 43000);
  assert.equal(s.verdict, "'c'");
  s.client.send({ cmd: 'helo', name: 'innocent.test' });
  s.client.send({ cmd: 'mail', args: ['<a@innocent.test>'] });
  s.client.send({ cmd: 'rcpt', args: ['<b@mx.test>'] });
  await s.client.quit();
  // One ban by hand, then a connect from that address.
  assert.ok((await controlRequest(d.socket, { cmd: 'ban', args: { address: '198.51.100.81' } })).ok);
  const refused = await openSession(d.milterPort, '198.51.100.81', 43001);
  assert.equal(refused.verdict, "'y'");
  refused.client.destroy();
  // Both sessions have ended once the active-session gauge is back to 0 (bounded wait).
  let after = await scrape(d.metricsAddress!);
  for (let i = 0; i < 50 && sample(after, 'authban_milter_sessions_active') !== 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    after = await scrape(d.metricsAddress!);
  }
  const delta = (series: string): number => sample(after, series) - sample(before, series);
  assert.equal(delta('authban_milter_connections_total'), 2);
  assert.equal(delta('authban_milter_commands_total{command="connect"}'), 2);
  assert.equal(delta('authban_milter_commands_total{command="helo"}'), 1);
  assert.equal(delta('authban_milter_commands_total{command="mail"}'), 1);
  assert.equal(delta('authban_milter_commands_total{command="rcpt"}'), 1);
  assert.equal(delta('authban_tempfail_rejections_total{reason="banned"}'), 1);
  assert.equal(delta('authban_bans_total{reason="manual"}'), 1);
  assert.equal(sample(after, 'authban_bans_active{family="4"}'), 1);
  const protocolErrors = (text: string): number =>
    text.split('\n').filter((l) => l.startsWith('authban_milter_protocol_errors_total{')).reduce((n, l) => n + Number(l.split(' ')[1]), 0);
  assert.equal(protocolErrors(after) - protocolErrors(before), 0, 'no protocol error of any kind');
  assert.ok(after.includes('authban_process_resident_memory_bytes'), 'default process metrics are exported');
  // No address or user name ever appears as a label value.
  assert.ok(!/198\.51\.100\./.test(after), 'no address in the metrics');

  const promtool = '/usr/bin/promtool';
  if (!needsOrSkip(t, existsSync(promtool), 'promtool (Debian package prometheus) is not installed')) return;
  const lint = await new Promise<{ code: number; out: string }>((resolve) => {
    const p = execFile(promtool, ['check', 'metrics'], (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr }));
    p.stdin!.end(after);
  });
  assert.equal(lint.code, 0, `promtool check metrics:\n${lint.out}`);
});

test('a log file dropped and added back by two reloads goes on where it was: no line read twice', async (t) => {
  const dir = tempDir();
  const maillog = join(dir, 'mail.log');
  writeFileSync(maillog, '');
  const withLog = testConfig(dir, { bans: { maxretry: 4, findtime: 600 }, logs: { files: [{ path: maillog, fromStart: false }] } });
  let d = await startDaemon(dir, withLog);
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });
  // A restart first, so that this run starts from saved positions.
  assert.equal(await d.stop(), 0);
  d = await startDaemon(dir, withLog);
  const fail = (i: number): void => appendLine(maillog, authFailureLine({ qid: `6AQRLD0${i}0${33000 + i}`, pid: 33000 + i }, '198.51.100.77'));
  const reloads = async (n: number): Promise<void> => {
    d.proc.kill('SIGHUP');
    for (let i = 0; i < 100 && d.logs.filter((l) => l.event === 'reloaded').length < n; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(d.logs.filter((l) => l.event === 'reloaded').length, n);
  };
  fail(1);
  fail(2);
  await new Promise((r) => setTimeout(r, 500));
  writeFileSync(d.configFile, JSON.stringify({ ...withLog, logs: { files: [] } }));
  await reloads(1);
  writeFileSync(d.configFile, JSON.stringify(withLog));
  await reloads(2);
  fail(3);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(d.logs.filter((l) => l.event === 'ban').length, 0, 'three failures, not five: nothing was read twice');
  fail(4);
  const ban = await d.waitForLog((l) => l.event === 'ban', 10000);
  assert.equal(ban.failures, 4);
});

test('the milter limits in the config reach the daemon: a client that never negotiates is closed and counted', async (t) => {
  const dir = tempDir();
  const d = await startDaemon(dir, testConfig(dir, { milter: { negotiationTimeoutMs: 1000 } }));
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });
  const sock = connect(d.milterPort, '127.0.0.1');
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 15_000);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    sock.on('error', () => undefined);
  });
  sock.destroy();
  assert.equal(closed, true, 'a silent milter connection is closed after negotiationTimeoutMs');
  assert.equal(sample(await scrape(d.metricsAddress!), 'authban_milter_connections_dropped_total{reason="negotiation_timeout"}'), 1);
});
