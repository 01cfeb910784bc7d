import { Counter, type Registry } from 'prom-client';

/** Kind of log source; a closed set so labels stay bounded (never a path). */
export type SourceKind = 'file' | 'syslog-udp' | 'syslog-tcp' | 'syslog-unix' | 'journal';

export interface LogsMetrics {
  readonly linesRead: Counter<'source'>;
  /** Lines a parser turned into a record, by pattern name (a fixed set of names). */
  readonly matched: Counter<'pattern'>;
  /** Lines from a known program family that matched no pattern. */
  readonly missed: Counter<'family'>;
  /** Lines whose syslog header could not be split. */
  readonly unparsable: Counter;
  readonly overlongLines: Counter<'source'>;
  readonly rotations: Counter<'kind'>;
  readonly sourceErrors: Counter<'source'>;
  /** Matched lines already read from another input (the same line in two files, or a file and syslog). */
  readonly duplicates: Counter;
}

export function createLogsMetrics(registry: Registry): LogsMetrics {
  const registers = [registry];
  return {
    linesRead: new Counter({
      name: 'authban_log_lines_read_total',
      help: 'Log lines read, by source kind',
      labelNames: ['source'],
      registers,
    }),
    matched: new Counter({
      name: 'authban_log_lines_matched_total',
      help: 'Log lines turned into a record, by parser pattern',
      labelNames: ['pattern'],
      registers,
    }),
    missed: new Counter({
      name: 'authban_log_lines_missed_total',
      help: 'Lines from a known program (sendmail, saslauthd, dovecot, pam) that matched no pattern',
      labelNames: ['family'],
      registers,
    }),
    unparsable: new Counter({
      name: 'authban_log_lines_unparsable_total',
      help: 'Lines whose syslog header (timestamp, program) could not be read',
      registers,
    }),
    overlongLines: new Counter({
      name: 'authban_log_lines_overlong_total',
      help: 'Lines longer than the configured limit, truncated',
      labelNames: ['source'],
      registers,
    }),
    rotations: new Counter({
      name: 'authban_log_rotations_total',
      help: 'Followed files replaced (rename) or truncated (copytruncate)',
      labelNames: ['kind'],
      registers,
    }),
    duplicates: new Counter({
      name: 'authban_log_lines_duplicate_total',
      help: 'Matched lines dropped because another input had delivered the same line (e.g. sendmail lines in both mail.log and syslog)',
      registers,
    }),
    sourceErrors: new Counter({
      name: 'authban_log_source_errors_total',
      help: 'I/O errors and restarts of log sources, by source kind',
      labelNames: ['source'],
      registers,
    }),
  };
}
