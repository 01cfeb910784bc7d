/**
 * The saslauthd / pam_unix path alone: authban follows only the auth log (no sendmail lines,
 * so no client address in any line it reads) and must take the address from the one milter
 * session in its AUTH phase, or refuse when two could have made the attempt.
 * sendmail still writes its own log, which serves as the ground truth here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Stack, e2eReady, metricValue } from './harness.js';
import { pollUntil } from './procs.js';
import { Figures, failedSessionsFromMailLog, guess, guessInTurn, lastReply, listBans, sessionsFromMailLog, waitForBan } from './scenario.js';

const SOLO = '127.0.0.20';
const PAIR = ['127.0.0.21', '127.0.0.22'] as const;
const MAXRETRY = 3;

test('saslauthd/PAM lines only, client address from the milter session', { timeout: 120_000 }, async (t) => {
  if (!e2eReady(t)) return;
  // Sub-second timestamps: with second-resolution (BSD) ones, a guesser's back-to-back
  // sessions overlap a line's time window and its failures were at times refused as ambiguous.
  const stack = await Stack.start({ logLevel: 9, timestamps: 'iso' });
  t.after(() => stack.stop());
  // No grace: this authban saw every session of this sendmail from its first one.
  const authban = await stack.startAuthban({ bans: { maxretry: MAXRETRY }, logFiles: ['auth'], correlate: { startGraceMs: 0 } });
  const figures = new Figures();

  await t.test('one session in AUTH phase at a time: each failure attributed, address banned', async () => {
    const runs = await guessInTurn(stack, SOLO, MAXRETRY);
    figures.latency((await waitForBan(authban, SOLO)) - lastReply(runs));
    const [ban, ...others] = await listBans(authban);
    assert.equal(others.length, 0);
    assert.equal(ban?.target, SOLO);
    const sources = new Set(ban.evidence.flatMap((f) => f.sources));
    assert.ok(!sources.has('sendmail'), `no sendmail line was given to authban, yet sources are ${[...sources].join(',')}`);
    figures.checkBan(ban, failedSessionsFromMailLog(stack.mailLog).get(SOLO) ?? new Set(), sessionsFromMailLog(stack.mailLog));
    assert.equal(figures.misattributed, 0);
    assert.equal(figures.attributed, MAXRETRY);
    const next = await stack.swaks({ from: SOLO });
    assert.equal(next.bannerCode, 421);
  });

  await t.test('two sessions in AUTH phase at once: refused as ambiguous, nobody banned', async () => {
    const ambiguous = async (): Promise<number> => metricValue(await authban.metrics(), 'authban_correlate_ambiguous_total');
    const before = await ambiguous();
    // Each guesses maxretry times, in pairs of simultaneous attempts.
    for (let i = 0; i < MAXRETRY; i++) await Promise.all(PAIR.map((a) => guess(stack, a, 1)));
    const total = MAXRETRY * PAIR.length;
    // A held line is decided after correlate.holdMs (10 s by default).
    await pollUntil('ambiguous failures counted', async () => ((await ambiguous()) - before >= total ? true : undefined), 30_000, 500);
    figures.ambiguousRefused = (await ambiguous()) - before;
    const bans = await listBans(authban);
    figures.innocentBanned = bans.filter((b) => b.target !== SOLO).length;
    assert.deepEqual(bans.map((b) => b.target), [SOLO]);
  });

  for (const line of figures.report('saslauthd/PAM only')) t.diagnostic(line);
});
