/**
 * The behaviour every kernel backend must show, run against real namespaces: what a client in
 * the other namespace can and cannot connect to, and what the firewall holds afterwards.
 */
import assert from 'node:assert/strict';
import test from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { BanEntry, FirewallBackend } from '../../src/enforce/backend.js';
import { createBackend } from '../../src/enforce/factory.js';
import { createEnforceMetrics } from '../../src/enforce/metrics.js';
import { DEFAULT_FIREWALL_OPTIONS, type FirewallOptions } from '../../src/enforce/options.js';
import { CLI4, CLI6, GUARDED_PORT, OPEN_PORT, SRV4, SRV6, setupNetns, waitFor, type Netns } from './netns-helper.js';

export interface BackendUnderTest {
  readonly backend: 'iptables' | 'ipset' | 'nftables';
  readonly tools: string[];
  /** How many of authban's objects exist (jumps, chains, sets, tables), to catch duplicates. */
  structure(ns: Netns): Record<string, number>;
}

const log = pino({ level: 'silent' });
const v4 = (target: string, expiresAt: number | null = null): BanEntry => ({ target, family: 4, expiresAt });
const v6 = (target: string, expiresAt: number | null = null): BanEntry => ({ target, family: 6, expiresAt });
const sortTargets = (l: BanEntry[]) => l.map((e) => e.target).sort();

function make(but: BackendUnderTest, ns: Netns, over: Partial<FirewallOptions> = {}): FirewallBackend {
  const opts: FirewallOptions = {
    ...DEFAULT_FIREWALL_OPTIONS,
    backend: but.backend,
    ports: [GUARDED_PORT],
    expirySweepMs: 200,
    ...over,
  };
  return createBackend(opts, { log, commandPrefix: ns.prefix, metrics: createEnforceMetrics(new Registry()) });
}

export function backendScenario(but: BackendUnderTest): void {
  test(`${but.backend}: bans a v4 address and a v6 prefix at the guarded port; unban restores`, { timeout: 30_000 }, async (t) => {
    const ns = await setupNetns(t, but.tools);
    if (!ns) return;
    const fw = make(but, ns);
    await fw.start([]);
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[0]), 'connected');
    assert.equal(await ns.probe(SRV6, GUARDED_PORT, CLI6[0]), 'connected');

    await fw.banMany([v4(CLI4[0], Date.now() + 600_000), v6('2001:db8::/64', null)]);
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[0]), 'refused', 'banned v4 source');
    assert.equal(await ns.probe(SRV6, GUARDED_PORT, CLI6[0]), 'refused', 'v6 source inside the banned /64');
    assert.equal(await ns.probe(SRV6, GUARDED_PORT, CLI6[1]), 'refused', 'another v6 source inside the /64');
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[1]), 'connected', 'an unbanned v4 neighbour');
    assert.equal(await ns.probe(SRV4, OPEN_PORT, CLI4[0]), 'connected', 'a port outside the configured list');
    assert.deepEqual(sortTargets(await fw.list()), [CLI4[0], '2001:db8::/64'].sort());

    // A second ban of the same target must not add a second rule or element.
    await fw.banMany([v4(CLI4[0], Date.now() + 900_000)]);
    assert.equal((await fw.list()).length, 2);

    await fw.unbanMany([v4(CLI4[0]), v6('2001:db8::/64')]);
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[0]), 'connected');
    assert.equal(await ns.probe(SRV6, GUARDED_PORT, CLI6[0]), 'connected');
    assert.deepEqual(await fw.list(), []);
    // Unbanning what is not there is not an error (the kernel may have expired it first).
    await fw.unbanMany([v4(CLI4[0]), v6('2001:db8::/64')]);
    await fw.stop();
  });

  test(`${but.backend}: a ban with a timeout ends by itself`, { timeout: 30_000 }, async (t) => {
    const ns = await setupNetns(t, but.tools);
    if (!ns) return;
    const fw = make(but, ns);
    t.after(() => fw.stop());
    await fw.start([]);
    const banned = Date.now();
    await fw.banMany([v4(CLI4[0], banned + 2000), v6(CLI6[0], banned + 2000), v4(CLI4[1], banned + 600_000)]);
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[0]), 'refused');
    assert.equal(await ns.probe(SRV6, GUARDED_PORT, CLI6[0]), 'refused');
    const after = await waitFor(async () => (await ns.probe(SRV4, GUARDED_PORT, CLI4[0])) === 'connected', 6000);
    assert.ok(after !== null, 'the 2 s ban never ended');
    const endedAt = Date.now() - banned;
    assert.ok(endedAt >= 1500, `ended too early: ${endedAt} ms`);
    // Both families expire, not necessarily in the same command.
    const v6After = await waitFor(async () => (await ns.probe(SRV6, GUARDED_PORT, CLI6[0])) === 'connected', 2000);
    assert.ok(v6After !== null, 'the 2 s v6 ban never ended');
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[1]), 'refused', 'the long ban is still there');
    assert.deepEqual(sortTargets(await fw.list()), [CLI4[1]]);
  });

  test(`${but.backend}: restart reconciles with restored bans and duplicates nothing`, { timeout: 30_000 }, async (t) => {
    const ns = await setupNetns(t, but.tools);
    if (!ns) return;
    const now = Date.now();
    const first = make(but, ns);
    await first.start([]);
    await first.banMany([v4(CLI4[1], now + 600_000), v4(CLI4[2], now + 600_000)]);
    await first.stop(); // onStop keep: the host stays protected while authban is down
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[1]), 'refused', 'kept across stop');

    // The persisted table says: CLI4[0] banned, CLI4[1] expired, a v6 /64 without end; CLI4[2] was unbanned meanwhile.
    const restore = [v4(CLI4[0], now + 600_000), v4(CLI4[1], now - 1000), v6('2001:db8::/64')];
    const second = make(but, ns);
    t.after(() => second.stop());
    await second.start(restore);
    assert.deepEqual(sortTargets(await second.list()), [CLI4[0], '2001:db8::/64'].sort());
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[0]), 'refused');
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[1]), 'connected', 'expired ban removed');
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[2]), 'connected', 'ban absent from restore removed');
    assert.equal(await ns.probe(SRV6, GUARDED_PORT, CLI6[1]), 'refused');
    const once = but.structure(ns);

    await second.start(restore);
    assert.deepEqual(but.structure(ns), once, 'a start over an existing setup duplicates nothing');
    const third = make(but, ns);
    await third.start(restore);
    assert.deepEqual(but.structure(ns), once, 'nor does one from a new process');
    assert.equal((await third.list()).length, 2);
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[0]), 'refused');
    await third.stop();
  });

  test(`${but.backend}: drop makes a banned client time out; onStop flush removes everything`, { timeout: 30_000 }, async (t) => {
    const ns = await setupNetns(t, but.tools);
    if (!ns) return;
    const fw = make(but, ns, { action: 'drop', onStop: 'flush', ports: [] });
    await fw.start([v4(CLI4[0]), v6(CLI6[0])]);
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[0]), 'timeout');
    assert.equal(await ns.probe(SRV4, OPEN_PORT, CLI4[0]), 'timeout', 'empty port list guards every port');
    assert.equal(await ns.probe(SRV6, OPEN_PORT, CLI6[0]), 'timeout');
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[1]), 'connected');
    await fw.stop();
    assert.equal(await ns.probe(SRV4, GUARDED_PORT, CLI4[0]), 'connected');
    assert.equal(await ns.probe(SRV6, GUARDED_PORT, CLI6[0]), 'connected');
    assert.ok(Object.values(but.structure(ns)).every((n) => n === 0), JSON.stringify(but.structure(ns)));
  });
}

/** Counts authban's jumps and chains in both families. */
export function xtStructure(ns: Netns, chain = 'authban'): Record<string, number> {
  const out: Record<string, number> = {};
  for (const cmd of ['iptables', 'ip6tables']) {
    const all = ns.inSrv(cmd, '-w', '-S').split('\n');
    out[`${cmd} jumps`] = all.filter((l) => l.startsWith('-A INPUT') && l.endsWith(`-j ${chain}`)).length;
    out[`${cmd} chains`] = all.filter((l) => l === `-N ${chain}` || l === `-N ${chain}-act`).length;
  }
  return out;
}
