/**
 * authban fed by rsyslog over UDP (config/sendmail/rsyslog-authban.conf as shipped, no log
 * file at all), and a ban that must outlive a restart of authban.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Stack, e2eReady, type AuthbanConfig } from './harness.js';
import { Figures, failedSessionsFromMailLog, guess, lastReply, listBans, sessionsFromMailLog, waitForBan } from './scenario.js';

const GUESSER = '127.0.0.30';
const GOOD = '127.0.0.31';
const MAXRETRY = 3;

test('syslog forwarding feeds authban; its ban survives a restart', { timeout: 120_000 }, async (t) => {
  if (!e2eReady(t)) return;
  const stack = await Stack.start({ logLevel: 9, forwardSyslog: true });
  t.after(() => stack.stop());
  const config: AuthbanConfig = { bans: { maxretry: MAXRETRY }, logFiles: [], syslogUdp: '127.0.0.1:5514' };
  let authban = await stack.startAuthban(config);
  const figures = new Figures();

  await t.test('failures arriving over syslog UDP ban the guesser', async () => {
    const runs = await guess(stack, GUESSER, MAXRETRY);
    figures.latency((await waitForBan(authban, GUESSER)) - lastReply(runs));
    const bans = await listBans(authban);
    assert.deepEqual(bans.map((b) => b.target), [GUESSER]);
    const [ban] = bans;
    assert.ok(ban);
    const origins = new Set(ban.evidence.flatMap((f) => f.evidence.flatMap((e) => (e.kind === 'log' && e.origin ? [e.origin] : []))));
    // No file is followed: lines can only have come over UDP (the milter never sees a failure).
    assert.ok(origins.size > 0 && [...origins].every((o) => !o.startsWith('/')), `origins: ${[...origins].join(', ')}`);
    figures.checkBan(ban, failedSessionsFromMailLog(stack.mailLog).get(GUESSER) ?? new Set(), sessionsFromMailLog(stack.mailLog));
    assert.equal(figures.misattributed, 0);
  });

  await t.test('after a restart the ban is still listed and still refuses the guesser', async () => {
    await authban.stop();
    authban = await stack.startAuthban(config);
    assert.deepEqual((await listBans(authban)).map((b) => b.target), [GUESSER]);
    const refused = await stack.swaks({ from: GUESSER });
    assert.equal(refused.bannerCode, 421, refused.lines.map((l) => l.text).join('\n'));
    const good = await stack.swaks({ from: GOOD });
    assert.equal(good.authReplyCode, 235);
    assert.equal(good.code, 0);
  });

  for (const line of figures.report('syslog UDP + restart')) t.diagnostic(line);
});
