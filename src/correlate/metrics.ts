import { Counter, Gauge, type Registry } from 'prom-client';

/** Why a failure line could not be tied to an address (a bounded set). */
export type UnattributedReason =
  /** No session was in its AUTH phase then (or sessions are not known: LogLevel 9 without a milter). */
  | 'no_session'
  /** A SASL service that is not an SMTP session (imap via saslauthd, …). */
  | 'other_service'
  /** An 8.12-style `AUTH failure` whose session never showed its address. */
  | 'no_address'
  /** The session's client address is unknown (milter CONNECT of family unix / unknown): never attributed. */
  | 'unknown_address'
  /** Right after start sessions opened earlier are unknown, so the set of candidates is not complete. */
  | 'start_grace'
  /** Too many lines waiting for a decision. */
  | 'overflow'
  /** An open session was dropped for the index's size cap lately: it may be the one, unseen. */
  | 'index_overflow';

export interface CorrelateMetrics {
  readonly failures: Counter<'source'>;
  readonly corroborated: Counter<'source'>;
  readonly ambiguous: Counter<string>;
  readonly unattributed: Counter<'reason'>;
  readonly held: Gauge<string>;
  readonly addressMismatch: Counter<string>;
}

export function createCorrelateMetrics(registry: Registry): CorrelateMetrics {
  return {
    failures: new Counter({
      name: 'authban_correlate_failures_total',
      help: 'Authentication failures attributed to an address, by the source of the first line of the attempt.',
      labelNames: ['source'],
      registers: [registry],
    }),
    corroborated: new Counter({
      name: 'authban_correlate_corroborated_total',
      help: 'Lines joined to an attempt already counted (the same attempt seen by another source).',
      labelNames: ['source'],
      registers: [registry],
    }),
    ambiguous: new Counter({
      name: 'authban_correlate_ambiguous_total',
      help: 'Failure lines two or more sessions could explain and no later line decided: not attributed.',
      registers: [registry],
    }),
    unattributed: new Counter({
      name: 'authban_correlate_unattributed_total',
      help: 'Failure lines not tied to any address, by reason.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    held: new Gauge({
      name: 'authban_correlate_held_lines',
      help: 'Lines waiting for a later line or event to decide their session.',
      registers: [registry],
    }),
    addressMismatch: new Counter({
      name: 'authban_correlate_address_mismatch_total',
      help: 'sendmail lines whose address differs from the session they join by queue id or pid: dropped.',
      registers: [registry],
    }),
  };
}
