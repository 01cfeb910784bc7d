/**
 * The log inputs the config asks for, started together: followed files, the syslog receiver,
 * the journal. Every line goes through the one parser; matched records go to `onRecord`.
 */
import type { Logger } from 'pino';
import type { LogsMetrics } from './metrics.js';
import { createLineParser } from './parse-line.js';
import type { LogRecord, SourceLine } from './records.js';
import { FileFollower } from './sources/file-follower.js';
import { JournalSource } from './sources/journal.js';
import { SyslogReceiver, type SyslogListen } from './sources/syslog-receiver.js';

export interface LogInputsConfig {
  readonly files: readonly { readonly path: string; readonly fromStart: boolean }[];
  readonly syslog: { readonly udp: string | null; readonly tcp: string | null; readonly unix: string | null };
  readonly journal: { readonly enabled: boolean; readonly identifiers: readonly string[] };
  readonly timezone: string;
}

export interface LogInputsDeps {
  readonly logger: Logger;
  readonly metrics?: LogsMetrics;
  readonly onRecord: (record: LogRecord, src: SourceLine) => void;
}

export interface LogInputs {
  stop(): Promise<void>;
  /** What is being read, for `authban status`. */
  describe(): { files: string[]; syslog: string[]; journal: boolean };
}

function hostPort(spec: string): { host: string; port: number } {
  const colon = spec.lastIndexOf(':');
  return { host: spec.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(spec.slice(colon + 1)) };
}

export async function startLogInputs(cfg: LogInputsConfig, deps: LogInputsDeps): Promise<LogInputs> {
  const parse = createLineParser({ timeZone: cfg.timezone === 'UTC' ? 'UTC' : cfg.timezone, futureToleranceSeconds: 7 * 86400 }, deps.metrics);
  const onLine = (src: SourceLine): void => {
    const r = parse(src);
    if (r.outcome === 'matched') deps.onRecord(r.record, src);
  };
  const sourceDeps = { logger: deps.logger, ...(deps.metrics ? { metrics: deps.metrics } : {}) };
  const stops: (() => Promise<void>)[] = [];
  const syslogListen: SyslogListen[] = [];
  if (cfg.syslog.udp) syslogListen.push({ kind: 'udp', ...hostPort(cfg.syslog.udp) });
  if (cfg.syslog.tcp) syslogListen.push({ kind: 'tcp', ...hostPort(cfg.syslog.tcp) });
  if (cfg.syslog.unix) syslogListen.push({ kind: 'unix', path: cfg.syslog.unix });
  let receiver: SyslogReceiver | null = null;
  try {
    for (const f of cfg.files) {
      const follower = new FileFollower({ path: f.path, fromStart: f.fromStart }, onLine, sourceDeps);
      await follower.start();
      stops.push(() => follower.stop());
    }
    if (syslogListen.length > 0) {
      const r = new SyslogReceiver({ listen: syslogListen }, onLine, sourceDeps);
      await r.start();
      receiver = r;
      stops.push(() => r.stop());
    }
    if (cfg.journal.enabled) {
      const j = new JournalSource({ identifiers: cfg.journal.identifiers }, onLine, sourceDeps);
      await j.start();
      stops.push(() => j.stop());
    }
  } catch (e) {
    await Promise.all(stops.map((s) => s()));
    throw e;
  }
  deps.logger.info({ event: 'listening', what: 'logs', files: cfg.files.map((f) => f.path), syslog: receiver?.listeners ?? [], journal: cfg.journal.enabled }, 'log inputs started');
  return {
    stop: async () => {
      await Promise.all(stops.map((s) => s()));
    },
    describe: () => ({
      files: cfg.files.map((f) => f.path),
      syslog: (receiver?.listeners ?? []).map((l) => (l.kind === 'unix' ? `unix:${l.path}` : `${l.kind}:${l.host}:${l.port}`)),
      journal: cfg.journal.enabled,
    }),
  };
}
