/**
 * The saslauthd / pam_unix path alone: authban follows only the auth log (no sendmail lines,
 * so no client address in any line it reads) and must take the address from the one milter
 * session in its AUTH phase, or refuse when two could have made the attempt.
 * sendmail still writes its own log, which serves as the ground truth here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Stack, e2eReady, metricValue } from './harness.js';
import { MTA_DOMAIN } from './render.js';
import { pollUntil } from './procs.js';
import { Figures, WRONG, failedSessionsFromMailLog, guess, guessInTurn, lastReply, listBans, sessionsFromMailLog, waitForBan } from './scenario.js';

const SOLO = '127.0.0.20';
const PAIR = ['127.0.0.21', '127.0.0.22'] as const;
const HIDER = '127.0.0.23';
const WAITER = '127.0.0.24';
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

  await t.test('MAIL then RSET does not hide a guesser: while another session waits in AUTH, its failures are ambiguous; alone, it is banned', async () => {
    const ambiguous = async (): Promise<number> => metricValue(await authban.metrics(), 'authban_correlate_ambiguous_total');
    const before = await ambiguous();
    const bad = stack.authPlain(WRONG);
    const hide = ['EHLO hider.example.test', `MAIL FROM:<x@${MTA_DOMAIN}>`, 'RSET'];
    // V sits in its AUTH phase (EHLO, no MAIL) while A, past MAIL and RSET, guesses twice.
    const waiter = stack.smtpSteps(WAITER, ['EHLO waiter.example.test', { sleepMs: 12_000 }, 'QUIT']);
    await new Promise((r) => setTimeout(r, 500));
    const first = await stack.smtpSteps(HIDER, [...hide, bad, bad, 'QUIT']);
    assert.equal(first.filter((l) => /^535 /.test(l)).length, 2, `two failed AUTHs after RSET:\n${first.join('\n')}`);
    await waiter;
    // sendmail tells the milter nothing of the RSET: MAIL must not have ended A's AUTH phase.
    await pollUntil('the hider\'s failures refused as ambiguous', async () => ((await ambiguous()) - before >= 2 ? true : undefined), 30_000, 500).catch(async (e) => {
      const explained = JSON.stringify(await authban.cli(['explain', WAITER])).slice(0, 2000);
      throw new Error(`${(e as Error).message}; the waiter: ${explained}`);
    });
    assert.equal((await listBans(authban)).some((b) => b.target === WAITER), false, 'the waiting session must never be banned');
    // Alone now, A's failures after MAIL and RSET are its own.
    const second = await stack.smtpSteps(HIDER, [...hide, bad, bad, bad, 'QUIT']);
    assert.equal(second.filter((l) => /^535 /.test(l)).length, 3, second.join('\n'));
    await waitForBan(authban, HIDER);
    const bans = await listBans(authban);
    figures.innocentBanned += bans.filter((b) => b.target === WAITER).length;
    assert.deepEqual(bans.map((b) => b.target).sort(), [HIDER, SOLO].sort());
  });

  for (const line of figures.report('saslauthd/PAM only')) t.diagnostic(line);
});
