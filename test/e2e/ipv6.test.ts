/**
 * Real sendmail + saslauthd + authban over IPv6, sendmail LogLevel 9: sendmail also listens on
 * [::1], clients come from 2001:db8:: addresses on the namespace's lo. authban counts and bans
 * an IPv6 client by its /64 (bans.ipv6Prefix, 64 by default): a guesser's neighbour in the same
 * /64 is refused, a client of another /64 is not. sendmail writes these clients as
 * `[IPv6:2001:db8::10]`; the milter gets them as inet6 addresses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Stack, e2eIpv6Ready } from './harness.js';
import { pollUntil } from './procs.js';
import { Figures, covers, failedSessionsFromMailLog, guess, lastReply, listBans, sessionsFromMailLog, waitForBan, WRONG } from './scenario.js';

const GUESSER = '2001:db8::10';
/** Another address of the guesser's /64. */
const NEIGHBOUR = '2001:db8::11';
const NET = '2001:db8::/64';
/** A client of another /64: right password, never banned. */
const GOOD = '2001:db8:0:1::10';
const MAXRETRY = 3;
/**
 * How sendmail 8.17 writes a client address in its log (`relay=`, `host=`, `addr=`): tagged
 * `IPv6:` and uncompressed, not `[IPv6:2001:db8::10]`.
 */
const logged = (canonical: string): string => `IPv6:${expand(canonical)}`;

/** Eight groups, no leading zeros, no `::`. */
function expand(a: string): string {
  const [head = '', tail = ''] = a.split('::');
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  return [...h, ...Array<string>(8 - h.length - tl.length).fill('0'), ...tl].map((g) => g.replace(/^0+(?=.)/, '')).join(':');
}

const transcript = (r: { lines: readonly { text: string }[] }): string => r.lines.map((l) => l.text).join('\n');

test('IPv6 clients: a guesser banned by its /64, a neighbour refused, another /64 never', { timeout: 120_000 }, async (t) => {
  if (!e2eIpv6Ready(t)) return;
  const stack = await Stack.start({ logLevel: 9, timestamps: 'bsd', ipv6Clients: [GUESSER, NEIGHBOUR, GOOD] });
  t.after(() => stack.stop());
  // debug: authban logs each milter session's connect with the client address it was given.
  const authban = await stack.startAuthban({ bans: { maxretry: MAXRETRY }, logLevel: 'debug' });
  const figures = new Figures();

  await Promise.all([
    t.test(`${MAXRETRY} wrong passwords from ${GUESSER}: ${NET} banned`, async () => {
      const runs = await guess(stack, GUESSER, MAXRETRY);
      figures.latency((await waitForBan(authban, NET)) - lastReply(runs));
    }),
    t.test(`the right password from ${GOOD} (another /64) sends mail meanwhile`, async () => {
      for (const mech of ['LOGIN', 'PLAIN'] as const) {
        const r = await stack.swaks({ from: GOOD, mech });
        assert.equal(r.authReplyCode, 235, transcript(r));
        assert.equal(r.code, 0);
      }
    }),
  ]);

  await t.test(`the next connection from ${NEIGHBOUR} (same /64) gets 421`, async () => {
    const next = await stack.swaks({ from: NEIGHBOUR, password: WRONG, quitAfterAuth: true });
    assert.equal(next.bannerCode, 421, transcript(next));
    assert.equal(next.authReplyCode, undefined, 'a refused client never reaches AUTH');
  });

  await t.test(`${GOOD} still authenticates and delivers after the ban`, async () => {
    const r = await stack.swaks({ from: GOOD });
    assert.equal(r.bannerCode, 220, transcript(r));
    assert.equal(r.authReplyCode, 235, transcript(r));
    assert.equal(r.code, 0);
    await pollUntil('three deliveries', async () => (stack.delivered().length >= 3 ? true : undefined), 10_000);
  });

  await t.test('sendmail logged the clients as [IPv6:...]; the milter got them as inet6 addresses', () => {
    const log = readFileSync(stack.mailLog, 'utf8');
    assert.equal(logged(GUESSER), 'IPv6:2001:db8:0:0:0:0:0:10');
    const authFailures = log.split('\n').filter((l) => l.includes('AUTH failure') && l.includes(`relay=[${logged(GUESSER)}]`));
    assert.equal(authFailures.length, MAXRETRY, `AUTH failure lines with relay=[${logged(GUESSER)}]:\n${log}`);
    assert.ok(!log.includes(`[IPv6:${GUESSER}]`), 'sendmail does not compress IPv6 addresses');
    assert.ok(log.includes(`AUTH=server, relay=[${logged(GOOD)}]`), log);
    assert.ok(log.includes(`Milter: connect: host=[${logged(NEIGHBOUR)}], addr=${logged(NEIGHBOUR)}, shutdown`), `the refused session:\n${log}`);
    const connects = authban.logEvents().filter((e) => e.obj.msg === 'milter session connect');
    const clients = new Set(connects.map((e) => e.obj.client));
    for (const a of [GUESSER, NEIGHBOUR, GOOD]) assert.ok(clients.has(a), `milter connect for ${a}; got ${[...clients].join(', ')}`);
    const sample = connects.find((e) => e.obj.client === GUESSER);
    t.diagnostic(`milter connect as authban logs it: ${JSON.stringify(sample?.obj)}`);
    t.diagnostic(`sendmail: ${authFailures[0]?.replace(/^.*?sendmail\[/, 'sendmail[')}`);
  });

  await t.test(`exactly ${NET} is banned, with evidence of ${GUESSER}'s sessions`, async () => {
    const bans = await listBans(authban);
    figures.innocentBanned = bans.filter((b) => b.target !== NET).length + bans.filter((b) => covers(b.target, GOOD)).length;
    assert.deepEqual(bans.map((b) => b.target), [NET]);
    const [ban] = bans;
    assert.ok(ban);
    assert.ok(!covers(ban.target, GOOD));
    const truth = sessionsFromMailLog(stack.mailLog);
    const failed = failedSessionsFromMailLog(stack.mailLog);
    assert.deepEqual([...failed.keys()], [GUESSER], 'only the guesser failed AUTH');
    assert.equal(failed.get(GUESSER)?.size, MAXRETRY);
    assert.ok(ban.evidence.length >= MAXRETRY, `${ban.evidence.length} failures in evidence`);
    assert.ok(ban.evidence.every((f) => f.evidence.some((e) => e.kind === 'session')), 'every failure names its session');
    const evidenceText = JSON.stringify(ban.evidence);
    t.diagnostic(`evidence of one failure: ${JSON.stringify(ban.evidence[0])}`);
    assert.ok(evidenceText.includes(`relay=[${logged(GUESSER)}]`), `evidence shows sendmail's relay address: ${evidenceText.slice(0, 1500)}`);
    figures.checkBan(ban, failed.get(GUESSER) ?? new Set(), truth);
    for (const line of figures.report('IPv6, LogLevel 9')) t.diagnostic(line);
    assert.equal(figures.misattributed, 0);
    assert.equal(figures.attributed, figures.wrongSessions);
    assert.equal(figures.innocentBanned, 0);
  });
});
