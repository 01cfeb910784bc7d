/**
 * Child process for the kill -9 test: bans /64 networks as fast as it can, in concurrent
 * bursts, and prints "acked <target>" once each ban's promise resolved (durable). The parent
 * kills it with SIGKILL mid-stream.
 */
import { pino } from 'pino';
import { BanEngine } from '../../../src/bans/ban-engine.js';
import { StateStore } from '../../../src/bans/state-store.js';

const file = process.argv[2]!;
const log = pino({ level: 'silent' });
const engine = new BanEngine({ log, store: new StateStore({ file, compactAfterBytes: 64 * 1024 }, { log }), tickMs: 0 });
await engine.start();
process.stdout.write('ready\n');
// Bounded: the parent kills us long before this ends.
for (let burst = 0; burst < 4000; burst++) {
  await Promise.all(
    Array.from({ length: 16 }, async (_, i) => {
      const n = burst * 16 + i;
      const target = `2001:db8:${(n >> 16).toString(16)}:${(n & 0xffff).toString(16)}::/64`;
      const ban = await engine.ban(target, { reason: 'kill -9 test', seconds: 3600 });
      process.stdout.write(`acked ${ban.target}\n`);
    }),
  );
}
