/**
 * The one event that crosses the middle of authban: everything that observes SMTP sessions
 * or reads logs produces these; the ban engine consumes them.
 */

/** Where a failure was learnt. */
export type FailureSource = 'milter' | 'sendmail' | 'saslauthd' | 'pam' | 'dovecot' | 'manual';

/** One piece of proof behind a failure: a session seen live, or a log line. */
export type Evidence =
  | {
      readonly kind: 'session';
      /** sendmail queue id of the session (`{i}`), when known. */
      readonly queueId?: string;
      readonly pid?: number;
      readonly clientAddress: string;
      readonly clientPort?: number;
      readonly at: number;
    }
  | {
      readonly kind: 'log';
      readonly source: FailureSource;
      /** The raw line as read (bounded in length by the reader). */
      readonly line: string;
      /** Where it came from: a file path, `syslog`, `journal`, … */
      readonly origin: string;
      readonly at: number;
    };

export interface AuthFailure {
  /** Canonical client address (see core/address normalizeAddress). */
  readonly address: string;
  readonly user?: string;
  /** Service the failure was against: `smtp`, `imap`, … */
  readonly service: string;
  /** Milliseconds since the epoch, when the failure happened (not when it was read). */
  readonly at: number;
  readonly source: FailureSource;
  /**
   * Identity of the one authentication attempt this failure describes. Several sources that
   * saw the same attempt (sendmail's line, saslauthd's line, pam_unix's line) give the same
   * key, and the engine counts it once. Absent: every event is a new attempt.
   */
  readonly attemptKey?: string;
  readonly evidence: readonly Evidence[];
}
