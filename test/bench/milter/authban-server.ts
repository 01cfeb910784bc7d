/**
 * An authban MilterServer in a process of its own, for the benchmark and the fuzzer.
 * argv[2] picks the handler: `noop` answers CONTINUE everywhere (what the C baseline does);
 * `fuzz` also refuses 203.0.113.0/24 with a 421 at connect and answers some steps
 * asynchronously, so the fuzzer reaches every reply path.
 * Talks over IPC: sends {type:'ready', port}; answers {type:'stats'} with the heap in use
 * after a forced GC (run with --expose-gc), the number of open milter connections and of
 * handler calls.
 */
import pino from 'pino';
import { MilterServer } from '../../../src/milter/server.js';
import type { MilterHandler, Verdict } from '../../../src/milter/handler.js';
import { parseListenSpec } from '../../../src/milter/listen-spec.js';

const CONTINUE: Verdict = { kind: 'continue' };
const REFUSE: Verdict = { kind: 'replycode', code: '421', xcode: '4.7.1', text: 'Too many failed logins from your address' };

/** Handler calls so far (fuzz handler only): proof that fuzzed streams get past the decoder. */
let calls = 0;
const counted = <T>(v: T): T => {
  calls++;
  return v;
};

const handlers: Record<string, MilterHandler> = {
  noop: {
    onConnect: () => CONTINUE,
    onHelo: () => CONTINUE,
    onMail: () => CONTINUE,
    onRcpt: () => CONTINUE,
  },
  fuzz: {
    onConnect: (_s, info) => counted(info.address?.startsWith('203.0.113.') ? REFUSE : CONTINUE),
    onHelo: () => counted(Promise.resolve(CONTINUE)),
    onMail: (s) => counted(s.macro('auth_authen') === 'boom' ? Promise.reject(new Error('handler failure on purpose')) : CONTINUE),
    onRcpt: () => counted(new Promise((resolve) => setImmediate(() => resolve(CONTINUE)))),
    onClose: () => void counted(undefined),
  },
};

const handler = handlers[process.argv[2] ?? 'noop'];
if (!handler || !process.send) {
  process.stderr.write('usage: fork authban-server.ts noop|fuzz (with an IPC channel)\n');
  process.exit(2);
}

const server = await MilterServer.start({
  listen: ['inet:0@127.0.0.1'],
  handler,
  logger: pino({ level: 'silent' }),
});
const spec = parseListenSpec(server.addresses()[0]!);
if (spec.kind === 'unix') throw new Error('expected an inet listener');

process.on('message', (m: { type: string }) => {
  if (m.type !== 'stats') return;
  (globalThis as { gc?: () => void }).gc?.();
  process.send!({ type: 'stats', heapUsed: process.memoryUsage().heapUsed, connections: server.connectionCount, handlerCalls: calls });
});
process.on('SIGTERM', () => {
  void server.close(1000).then(() => process.exit(0));
});
process.send({ type: 'ready', port: spec.port });
