import { pino, type Logger } from 'pino';

/** authban's own log: JSON lines on stdout, one per event, with a stable `event` field where it matters. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { name: 'authban' }, timestamp: pino.stdTimeFunctions.isoTime });
}
