/**
 * The ban engine through the real daemon: log lines and milter sessions in, 421 at connect
 * out; the CLI against a live daemon; durability across SIGKILL; a corrupt state file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { controlRequest } from '../../src/ops/control-client.js';
import { cli, removeDir, startDaemon, tempDir, testConfig } from '../helpers/daemon.js';
import { appendLine, authFailureLine, bsdStamp, openSession } from '../helpers/smtp-session.js';

const ATTACKER = '198.51.100.7';
const BYSTANDER = '198.51.100.8';

test('an address driven over maxretry gets 421 at its next connect, and a normal session after expiry', async (t) => {
  const dir = tempDir();
  const maillog = join(dir, 'mail.log');
  writeFileSync(maillog, '');
  const d = await startDaemon(dir, testConfig(dir, { bans: { maxretry: 3, bantime: 3, findtime: 60 }, logs: { files: [{ path: maillog, fromStart: false }] } }));
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });

  for (let i = 0; i < 3; i++) {
    const s = await openSession(d.milterPort, ATTACKER, 20000 + i);
    assert.equal(s.verdict, "'c'", `session ${i} is served before the ban`);
    appendLine(maillog, authFailureLine(s, ATTACKER));
    if (i < 2) {
      // Not yet banned: the bystander and the attacker are still served.
      await new Promise((r) => setTimeout(r, 300));
    }
    await s.client.quit();
  }
  const ban = await d.waitForLog((l) => l.event === 'ban', 10000);
  assert.equal(ban.address, ATTACKER);

  const refused = await openSession(d.milterPort, ATTACKER, 20010);
  assert.equal(refused.verdict, "'y'");
  assert.match(refused.text, /^421 4\.7\.1 /);
  refused.client.destroy();
  const other = await openSession(d.milterPort, BYSTANDER, 20011);
  assert.equal(other.verdict, "'c'", 'another address is not refused');
  other.client.destroy();

  await d.waitForLog((l) => l.event === 'unban' && l.address === ATTACKER, 10000);
  const after = await openSession(d.milterPort, ATTACKER, 20012);
  assert.equal(after.verdict, "'c'", 'served again after expiry');
  after.client.destroy();
});

test('the authban CLI against a live daemon, with its error cases', async (t) => {
  const dir = tempDir();
  const d = await startDaemon(dir, testConfig(dir));
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });
  const sock = ['--socket', d.socket];

  let r = await cli(['list', ...sock]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /no active bans/);

  r = await cli(['ban', '198.51.100.20', '--time', '600', ...sock]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /banned 198\.51\.100\.20 until /);
  r = await cli(['ban', '2001:db8:1:2::5', ...sock]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /banned 2001:db8:1:2::\/64/);

  r = await cli(['list', '--json', ...sock]);
  assert.equal(r.code, 0);
  const bans = JSON.parse(r.stdout) as { target: string; reason: string; expiresAt: number }[];
  assert.deepEqual(bans.map((b) => b.target).sort(), ['198.51.100.20', '2001:db8:1:2::/64']);
  const v4 = bans.find((b) => b.target === '198.51.100.20')!;
  assert.equal(v4.reason, 'manual');
  assert.ok(Math.abs(v4.expiresAt - (Date.now() + 600_000)) < 30_000);

  r = await cli(['list', ...sock]);
  assert.match(r.stdout, /198\.51\.100\.20\s+manual/);

  r = await cli(['explain', '198.51.100.20', ...sock]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /BANNED \(manual/);
  r = await cli(['explain', '198.51.100.21', '--json', ...sock]);
  assert.equal(r.code, 0);
  assert.equal((JSON.parse(r.stdout) as { ban: unknown }).ban, null);

  r = await cli(['status', '--json', ...sock]);
  assert.equal(r.code, 0);
  const status = JSON.parse(r.stdout) as { bans: { activeBans: { v4: number; v6: number } }; pid: number };
  assert.deepEqual(status.bans.activeBans, { v4: 1, v6: 1 });
  assert.equal(status.pid, d.proc.pid);

  r = await cli(['unban', '198.51.100.20', ...sock]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /unbanned 1/);
  r = await cli(['unban', '198.51.100.20', ...sock]);
  assert.match(r.stdout, /no such ban/);
  r = await cli(['unban', '--all', ...sock]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /unbanned 1/);

  // Error cases: a clear message and exit status 2.
  r = await cli(['ban', '198.51.100.999', ...sock]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /"198\.51\.100\.999" is not an IPv4\/IPv6 address or network/);
  r = await cli(['ban', 'user=[192.0.2.1]', ...sock]);
  assert.equal(r.code, 2);
  r = await cli(['ban', '198.51.100.30', '--time', 'soon', ...sock]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--time: a ban length is a whole number of seconds/);
  r = await cli(['ban', '198.51.100.30', '--time', '9'.repeat(400), ...sock]);
  assert.equal(r.code, 2, 'a length that would overflow to Infinity (no end) is refused');
  assert.match(r.stderr, /--time: a ban length is a whole number of seconds from 1 to 315360000/);
  r = await cli(['list', '--config', '']);
  assert.equal(r.code, 2, 'an empty --config is not the built-in defaults');
  assert.match(r.stderr, /--config needs a file path/);
  r = await cli(['ban', '127.0.0.1', ...sock]);
  assert.equal(r.code, 2, 'loopback is never banned by default');
  assert.match(r.stderr, /cannot ban 127\.0\.0\.1/);
  r = await cli(['frobnicate', ...sock]);
  assert.equal(r.code, 2);
  r = await cli(['list', '--socket', join(dir, 'nobody-here.sock')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /cannot reach the authban daemon .*is the daemon running\?/);
});

test('every acknowledged ban survives SIGKILL in the middle of a burst; hand unbans stay unbanned', async (t) => {
  const dir = tempDir();
  const cfg = testConfig(dir);
  let d = await startDaemon(dir, cfg);
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });
  await controlRequest(d.socket, { cmd: 'ban', args: { address: '203.0.113.250' } });
  await controlRequest(d.socket, { cmd: 'unban', args: { address: '203.0.113.250' } });

  const acknowledged: string[] = [];
  const burst: Promise<void>[] = [];
  // Twenty waves of ten concurrent bans; the daemon is killed while the eleventh is in flight.
  for (let wave = 0; wave < 20; wave++) {
    const inWave: Promise<void>[] = [];
    for (let i = 1; i <= 10; i++) {
      const address = `203.0.113.${wave * 10 + i}`;
      inWave.push(
        controlRequest(d.socket, { cmd: 'ban', args: { address, seconds: 3600 } }, 5000).then(
          (resp) => {
            if (resp.ok) acknowledged.push(address);
          },
          () => undefined,
        ),
      );
    }
    burst.push(...inWave);
    if (wave === 10) {
      await new Promise((r) => setTimeout(r, 2));
      d.proc.kill('SIGKILL');
    }
    if (wave <= 10) await Promise.all(inWave);
  }
  await Promise.all(burst);
  await d.kill();
  assert.ok(acknowledged.length >= 100, `some bans were acknowledged before the kill (${acknowledged.length})`);
  assert.ok(acknowledged.length < 200, 'the kill landed inside the burst');

  d = await startDaemon(dir, cfg);
  const resp = await controlRequest(d.socket, { cmd: 'list' });
  assert.ok(resp.ok);
  const present = new Set((resp.result as { target: string }[]).map((b) => b.target));
  const lost = acknowledged.filter((a) => !present.has(a));
  assert.deepEqual(lost, [], 'no acknowledged ban is lost');
  assert.ok(!present.has('203.0.113.250'), 'a hand-unbanned address stays unbanned');
});

test('a corrupt state file is set aside and reported; the daemon starts and serves', async (t) => {
  const dir = tempDir();
  const cfg = testConfig(dir);
  mkdirSync(join(dir, 'state'), { recursive: true });
  writeFileSync(join(dir, 'state', 'state.json'), '{"version":1,"bans":[{"target":"198.51.100.1",');
  const d = await startDaemon(dir, cfg);
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });
  const err = await d.waitForLog((l) => l.level >= 50 && JSON.stringify(l).includes(join(dir, 'state', 'state.json')), 5000);
  assert.ok(err);
  const aside = readdirSync(join(dir, 'state')).filter((f) => f.startsWith('state.json.corrupt-'));
  assert.equal(aside.length, 1, 'the bad file is kept under a new name');
  assert.ok(existsSync(join(dir, 'state', aside[0]!)));
  const s = await openSession(d.milterPort, ATTACKER, 30001);
  assert.equal(s.verdict, "'c'");
  s.client.destroy();
  const r = await cli(['ban', '198.51.100.40', '--socket', d.socket]);
  assert.equal(r.code, 0, r.stderr);
});

test('the syslog receiver feeds a running daemon that bans after maxretry', async (t) => {
  const { createSocket } = await import('node:dgram');
  const dir = tempDir();
  const d = await startDaemon(dir, testConfig(dir, { bans: { maxretry: 2, findtime: 60 }, logs: { syslog: { udp: '127.0.0.1:0' } } }));
  const sender = createSocket('udp4');
  t.after(async () => {
    sender.close();
    await d.kill();
    removeDir(dir);
  });
  const inputs = await d.waitForLog((l) => l.what === 'logs');
  const port = Number(/^udp:127\.0\.0\.1:(\d+)$/.exec((inputs.syslog as string[])[0]!)![1]);
  for (let i = 0; i < 2; i++) {
    const s = await openSession(d.milterPort, ATTACKER, 25000 + i);
    // As rsyslog forwards it: <PRI> (mail.info = 22) and an RFC 3164 header.
    const line = `<22>${authFailureLine(s, ATTACKER).trimEnd()}`;
    await new Promise<void>((resolve, reject) => sender.send(line, port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
    await s.client.quit();
  }
  const ban = await d.waitForLog((l) => l.event === 'ban', 10000);
  assert.equal(ban.address, ATTACKER);
  assert.deepEqual(ban.sources, ['sendmail']);
});

test('SIGTERM: stops accepting, lets an open session finish, persists, exits 0', async (t) => {
  const dir = tempDir();
  const cfg = testConfig(dir, { milter: { listen: ['inet:0@127.0.0.1'], shutdownGraceMs: 5000 } });
  const d = await startDaemon(dir, cfg);
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });
  assert.ok((await controlRequest(d.socket, { cmd: 'ban', args: { address: '198.51.100.90' } })).ok);
  const open = await openSession(d.milterPort, BYSTANDER, 26000);
  const exit = d.stop();
  await d.waitForLog((l) => l.event === 'stopping');
  // New connections are refused while the open session is still served.
  await assert.rejects(openSession(d.milterPort, BYSTANDER, 26001));
  open.client.send({ cmd: 'helo', name: 'finishing.test' });
  await open.client.quit();
  assert.equal(await exit, 0);
  const again = await startDaemon(dir, cfg);
  t.after(() => again.kill());
  const list = await controlRequest(again.socket, { cmd: 'list' });
  assert.ok(list.ok);
  assert.deepEqual((list.result as { target: string }[]).map((b) => b.target), ['198.51.100.90']);
});

test('many addresses failing against one user: reported as under attack, nobody banned for it', async (t) => {
  const dir = tempDir();
  const maillog = join(dir, 'mail.log');
  writeFileSync(maillog, '');
  const d = await startDaemon(dir, testConfig(dir, { bans: { maxretry: 5, userThreshold: 3 }, logs: { files: [{ path: maillog, fromStart: false }] } }));
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });
  for (let i = 0; i < 3; i++) {
    const address = `198.51.100.${120 + i}`;
    const s = await openSession(d.milterPort, address, 27000 + i);
    appendLine(maillog, authFailureLine(s, address, 'postmaster'));
    await s.client.quit();
  }
  let status: { usersUnderAttack: { user: string; addresses: number }[]; bans: { activeBans: { v4: number } } } | undefined;
  for (let i = 0; i < 50; i++) {
    const r = await cli(['status', '--json', '--socket', d.socket]);
    status = JSON.parse(r.stdout) as typeof status;
    if (status!.usersUnderAttack.length > 0) break;
    await new Promise((r2) => setTimeout(r2, 100));
  }
  assert.deepEqual(status!.usersUnderAttack.map((u) => [u.user, u.addresses]), [['postmaster', 3]]);
  assert.equal(status!.bans.activeBans.v4, 0, 'no ban on the per-user signal alone');
  const human = await cli(['status', '--socket', d.socket]);
  assert.match(human.stdout, /usersUnderAttack:\n  - user=postmaster addresses=3/);
});

test('a second daemon on the same state directory is refused with a clear message, exit 2', async (t) => {
  const dir = tempDir();
  const cfg = testConfig(dir);
  const d = await startDaemon(dir, cfg);
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });
  const second = join(dir, 'second.json');
  writeFileSync(second, JSON.stringify({ ...cfg, control: { socket: join(dir, 'second.sock') }, milter: { listen: ['inet:0@127.0.0.1'] } }));
  const r = await cli(['run', '--config', second]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /state\.json\.lock/);
  assert.match(r.stderr, new RegExp(String(d.proc.pid)));
  // The first one is untouched and still serving.
  const s = await openSession(d.milterPort, BYSTANDER, 29000);
  assert.equal(s.verdict, "'c'");
  s.client.destroy();
  assert.ok((await controlRequest(d.socket, { cmd: 'status' })).ok);
});

test('lines written to a followed file while the daemon was stopped are read after its restart', async (t) => {
  const dir = tempDir();
  const maillog = join(dir, 'mail.log');
  writeFileSync(maillog, `${bsdStamp()} mx sendmail[1]: old line read before the first start\n`);
  const cfg = testConfig(dir, { bans: { maxretry: 3, findtime: 600 }, logs: { files: [{ path: maillog, fromStart: false }] } });
  let d = await startDaemon(dir, cfg);
  t.after(async () => {
    await d.kill();
    removeDir(dir);
  });
  assert.equal(await d.stop(), 0);
  // authban is down: sendmail goes on logging (no milter session: LogLevel 9 lines stand alone).
  for (let i = 0; i < 3; i++) {
    appendLine(maillog, authFailureLine({ qid: `6AQDOWN${i}0${32000 + i}`, pid: 32000 + i }, ATTACKER));
  }
  d = await startDaemon(dir, cfg);
  const ban = await d.waitForLog((l) => l.event === 'ban', 10000);
  assert.equal(ban.address, ATTACKER);
  assert.equal(ban.failures, 3, 'each line read once, the old one not at all');
});

test('a start-up that fails part way (milter port taken) releases what it took: no lock left behind', async (t) => {
  const { createServer } = await import('node:net');
  const dir = tempDir();
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    blocker.close();
    removeDir(dir);
  });
  const port = (blocker.address() as { port: number }).port;
  const cfgFile = join(dir, 'taken.json');
  writeFileSync(cfgFile, JSON.stringify(testConfig(dir, { milter: { listen: [`inet:${port}@127.0.0.1`] } })));
  const r = await cli(['run', '--config', cfgFile]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /EADDRINUSE/);
  assert.ok(!existsSync(join(dir, 'state', 'state.json.lock')), 'the state lock was released');
  assert.ok(!existsSync(join(dir, 'control.sock')), 'no control socket left');
});
