import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface MilterMetrics {
  readonly connections: Counter;
  readonly sessionsActive: Gauge;
  /** label `reason`: max_connections (refused as accepted), negotiation_timeout, idle. */
  readonly connectionsDropped: Counter<'reason'>;
  /** label `command`: optneg, macro, connect, helo, … (bounded by the protocol). */
  readonly commands: Counter<'command'>;
  /** label `verdict`: continue, accept, reject, tempfail, replycode. */
  readonly replies: Counter<'verdict'>;
  /** label `kind`: a ProtocolErrorKind. */
  readonly protocolErrors: Counter<'kind'>;
  /** Macro name/value pairs past the per-command cap, not stored. */
  readonly macroPairsIgnored: Counter;
  readonly handlerTimeouts: Counter;
  readonly handlerErrors: Counter;
  /** From a command's arrival to its reply being written. */
  readonly replyLatency: Histogram;
}

export function createMilterMetrics(registry: Registry): MilterMetrics {
  const registers = [registry];
  return {
    connections: new Counter({ name: 'authban_milter_connections_total', help: 'Milter connections accepted from the MTA.', registers }),
    sessionsActive: new Gauge({ name: 'authban_milter_sessions_active', help: 'Milter connections currently open.', registers }),
    connectionsDropped: new Counter({
      name: 'authban_milter_connections_dropped_total',
      help: 'Milter connections authban refused or closed on its own, by reason: max_connections, negotiation_timeout, idle.',
      labelNames: ['reason'],
      registers,
    }),
    commands: new Counter({
      name: 'authban_milter_commands_total',
      help: 'Milter commands received, by command.',
      labelNames: ['command'],
      registers,
    }),
    replies: new Counter({ name: 'authban_milter_replies_total', help: 'Replies sent to the MTA, by verdict.', labelNames: ['verdict'], registers }),
    protocolErrors: new Counter({
      name: 'authban_milter_protocol_errors_total',
      help: 'Connections closed for a protocol error, by kind.',
      labelNames: ['kind'],
      registers,
    }),
    macroPairsIgnored: new Counter({
      name: 'authban_milter_macro_pairs_ignored_total',
      help: 'Macro name/value pairs ignored because one MACRO command carried more than the cap.',
      registers,
    }),
    handlerTimeouts: new Counter({
      name: 'authban_milter_handler_timeouts_total',
      help: 'Handler calls that missed their deadline (the fallback verdict was sent).',
      registers,
    }),
    handlerErrors: new Counter({
      name: 'authban_milter_handler_errors_total',
      help: 'Handler calls that threw or returned an invalid verdict (the fallback verdict was sent).',
      registers,
    }),
    replyLatency: new Histogram({
      name: 'authban_milter_reply_latency_seconds',
      help: 'Time from a command arriving to its reply being written.',
      buckets: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5, 10],
      registers,
    }),
  };
}
