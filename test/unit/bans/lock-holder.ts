/**
 * Child process for the state-lock tests: opens a ban state store on the file it is given,
 * prints "ready <pid>", and holds it until SIGTERM, then closes the store (releasing the lock)
 * and exits 0.
 */
import { pino } from 'pino';
import { BanEngine } from '../../../src/bans/ban-engine.js';
import { StateStore } from '../../../src/bans/state-store.js';

const file = process.argv[2]!;
const log = pino({ level: 'silent' });
const engine = new BanEngine({ log, store: new StateStore({ file }, { log }), tickMs: 0 });
await engine.start();
await engine.ban('198.51.100.99');
const keepAlive = setInterval(() => undefined, 60_000);
process.once('SIGTERM', () => {
  clearInterval(keepAlive);
  void engine.stop().then(() => process.exit(0));
});
process.stdout.write(`ready ${process.pid}\n`);
