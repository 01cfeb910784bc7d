/**
 * One raw line to one typed record (or none), dispatched by program family, with the outcome
 * the metrics need: which pattern matched, or which known family missed.
 */
import type { LogRecord, SourceLine } from './records.js';
import type { LogsMetrics } from './metrics.js';
import { parseDovecot } from './parsers/dovecot.js';
import { parsePam } from './parsers/pam.js';
import { parseSaslauthd } from './parsers/saslauthd.js';
import { parseSendmail } from './parsers/sendmail.js';
import { splitSyslogLine, type ProgramFamily, type SyslogHeader } from './syslog-line.js';
import { DEFAULT_TIMESTAMP_OPTIONS, type TimestampOptions } from './timestamps.js';

export type ParseResult =
  | { readonly outcome: 'matched'; readonly header: SyslogHeader; readonly record: LogRecord }
  /** A line from a family authban knows that matched none of its patterns. */
  | { readonly outcome: 'missed'; readonly header: SyslogHeader; readonly family: Exclude<ProgramFamily, 'other'> }
  /** A line from a program authban does not read. */
  | { readonly outcome: 'ignored'; readonly header: SyslogHeader }
  /** No syslog header could be split off. */
  | { readonly outcome: 'unparsable' };

const PAM_MARK = /pam_unix/;

/** Parses a header already split (e.g. from a journal entry). */
export function parseHeader(h: SyslogHeader): ParseResult {
  const m = h.message;
  let record: LogRecord | null;
  let family: ProgramFamily = h.family;
  switch (h.family) {
    case 'sendmail':
      record = parseSendmail(h, m);
      break;
    case 'saslauthd':
      record = parseSaslauthd(h, m) ?? parsePam(h, m);
      break;
    case 'dovecot':
      record = parseDovecot(h, m) ?? parsePam(h, m);
      break;
    case 'pam':
      record = parsePam(h, m);
      break;
    case 'other':
      if (!PAM_MARK.test(m)) return { outcome: 'ignored', header: h };
      family = 'pam';
      record = parsePam(h, m);
      break;
  }
  if (record) return { outcome: 'matched', header: h, record };
  return { outcome: 'missed', header: h, family: family as Exclude<ProgramFamily, 'other'> };
}

/** `reference` dates year-less BSD timestamps: when the line was read. */
export function parseLine(
  line: string, reference: number, options: TimestampOptions = DEFAULT_TIMESTAMP_OPTIONS,
): ParseResult {
  const h = splitSyslogLine(line, reference, options);
  return h ? parseHeader(h) : { outcome: 'unparsable' };
}

/** parseLine over a source's line, counting outcomes in the logs metrics when given. */
export function createLineParser(
  options: TimestampOptions = DEFAULT_TIMESTAMP_OPTIONS,
  metrics?: LogsMetrics,
): (src: SourceLine) => ParseResult {
  return (src) => {
    const r = parseLine(src.line, src.receivedAt, options);
    if (metrics) {
      if (r.outcome === 'matched') metrics.matched.inc({ pattern: r.record.pattern });
      else if (r.outcome === 'missed') metrics.missed.inc({ family: r.family });
      else if (r.outcome === 'unparsable') metrics.unparsable.inc();
    }
    return r;
  };
}
