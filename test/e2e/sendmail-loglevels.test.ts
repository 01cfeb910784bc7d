/**
 * Real sendmail + saslauthd + authban, both log files and the milter, at sendmail LogLevel 9
 * (BSD timestamps) and 14 (RFC 3339 timestamps, many more lines). All scenarios of one
 * LogLevel run at once against one stack, each from its own loopback address.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Stack, e2eReady, metricValue } from './harness.js';
import { pollUntil } from './procs.js';
import { Figures, failedSessionsFromMailLog, guess, lastReply, listBans, sessionsFromMailLog, waitForBan, WRONG } from './scenario.js';

const BANNED = '127.0.0.2';
const GOOD = '127.0.0.3';
const INTERLEAVED = ['127.0.0.5', '127.0.0.6'] as const;
const QUIET = '127.0.0.7';
const IGNORED = '127.0.0.9';
const MAXRETRY = 3;

for (const logLevel of [9, 14]) {
  test(`sendmail LogLevel ${logLevel}: guessers banned, everyone else never`, { timeout: 120_000, concurrency: true }, async (t) => {
    if (!e2eReady(t)) return;
    const stack = await Stack.start({ logLevel, timestamps: logLevel === 9 ? 'bsd' : 'iso' });
    t.after(() => stack.stop());
    const authban = await stack.startAuthban({ bans: { maxretry: MAXRETRY, ignore: [IGNORED] } });
    const figures = new Figures();

    await Promise.all([
      t.test(`${MAXRETRY} wrong passwords from one address: that address banned, its next connection gets 421`, async () => {
        const runs = await guess(stack, BANNED, MAXRETRY);
        figures.latency((await waitForBan(authban, BANNED)) - lastReply(runs));
        const next = await stack.swaks({ from: BANNED, password: WRONG, quitAfterAuth: true });
        assert.equal(next.bannerCode, 421, next.lines.map((l) => l.text).join('\n'));
        assert.equal(next.authReplyCode, undefined, 'a refused client never reaches AUTH');
      }),
      t.test('the right password sends mail', async () => {
        for (let i = 0; i < 2; i++) {
          const r = await stack.swaks({ from: GOOD, mech: i === 0 ? 'LOGIN' : 'PLAIN' });
          assert.equal(r.authReplyCode, 235, r.lines.map((l) => l.text).join('\n'));
          assert.equal(r.code, 0);
        }
        await pollUntil('two deliveries', async () => (stack.delivered().length >= 2 ? true : undefined), 10_000);
      }),
      t.test('an address on the ignore list guesses past maxretry', async () => {
        await guess(stack, IGNORED, MAXRETRY + 1, 'PLAIN');
        // Sync point: the engine has seen (and ignored) every one of them.
        await pollUntil('ignored failures counted', async () => (metricValue(await authban.metrics(), 'authban_bans_failures_ignored_total') >= MAXRETRY + 1 ? true : undefined), 20_000, 250);
      }),
      t.test('two addresses guessing interleaved, a third only connecting', async () => {
        const [a, b] = await Promise.all([
          guess(stack, INTERLEAVED[0], MAXRETRY),
          guess(stack, INTERLEAVED[1], MAXRETRY),
          stack.swaks({ from: QUIET, noAuth: true }).then((r) => assert.equal(r.code, 0)),
        ]);
        figures.latency((await waitForBan(authban, INTERLEAVED[0])) - lastReply(a));
        figures.latency((await waitForBan(authban, INTERLEAVED[1])) - lastReply(b));
      }),
    ]);

    await t.test('exactly the guessers are banned, each with evidence of its own sessions', async () => {
      const bans = await listBans(authban);
      const expected = [BANNED, ...INTERLEAVED].sort();
      figures.innocentBanned = bans.filter((b) => !expected.includes(b.target)).length;
      assert.deepEqual(bans.map((b) => b.target).sort(), expected);
      const truth = sessionsFromMailLog(stack.mailLog);
      const failed = failedSessionsFromMailLog(stack.mailLog);
      assert.equal(failed.get(IGNORED)?.size, MAXRETRY + 1, 'the ignored address really failed');
      for (const ban of bans) {
        assert.ok(ban.evidence.length >= MAXRETRY, `${ban.target}: ${ban.evidence.length} failures in evidence`);
        assert.ok(ban.evidence.every((f) => f.evidence.some((e) => e.kind === 'session')), `${ban.target}: every failure names its session`);
        figures.checkBan(ban, failed.get(ban.target) ?? new Set(), truth);
      }
      for (const line of figures.report(`LogLevel ${logLevel}`)) t.diagnostic(line);
      assert.equal(figures.misattributed, 0);
      assert.equal(figures.attributed, figures.wrongSessions);
    });
  });
}
