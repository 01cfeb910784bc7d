/**
 * Typed records the log parsers produce. A parser turns one line into one of these or
 * nothing; it never decides whether anyone is banned.
 */

/** What every record carries about the line it came from. */
export interface RecordBase {
  /** Milliseconds since the epoch, from the line's own timestamp. */
  readonly at: number;
  /** Program name as logged (`sendmail`, `sm-mta`, `saslauthd`, `dovecot`, …). */
  readonly program: string;
  /** The pid in `program[PID]:`, when the line has one. */
  readonly pid?: number;
  /** Name of the pattern that matched, for per-pattern metrics (bounded set of names). */
  readonly pattern: string;
}

/** sendmail `QID: AUTH failure (MECH): REASON, user=U, relay=HOST [IP]`. */
export interface SendmailAuthFailure extends RecordBase {
  readonly kind: 'sendmail-auth-failure';
  readonly queueId?: string;
  readonly mech: string;
  readonly reason: string;
  readonly user?: string;
  /** Canonical address from sendmail's own (last) `relay=`; absent on 8.12-style lines. */
  readonly address?: string;
  readonly relayHost?: string;
}

/** sendmail `QID: HOST [IP] did not issue MAIL/EXPN/VRFY/ETRN during connection to DAEMON`. */
export interface SendmailNoMail extends RecordBase {
  readonly kind: 'sendmail-no-mail';
  readonly queueId?: string;
  readonly address: string;
  readonly host?: string;
}

/** sendmail `QID: HOST [IP]: possible SMTP attack: command=AUTH, count=N`. */
export interface SendmailAttack extends RecordBase {
  readonly kind: 'sendmail-attack';
  readonly queueId?: string;
  readonly address: string;
  readonly command: string;
  readonly count: number;
}

/** sendmail `NOQUEUE: connect from HOST [IP]` (LogLevel 10+). */
export interface SendmailConnect extends RecordBase {
  readonly kind: 'sendmail-connect';
  readonly address: string;
  readonly host?: string;
}

/** sendmail `QID: lost input channel from HOST [IP] to DAEMON after CMD`. */
export interface SendmailLostInput extends RecordBase {
  readonly kind: 'sendmail-lost-input';
  readonly queueId?: string;
  readonly address: string;
  readonly host?: string;
}

/** sendmail `AUTH=server, relay=HOST [IP], authid=U, mech=M, bits=N`: a successful AUTH. */
export interface SendmailAuthSuccess extends RecordBase {
  readonly kind: 'sendmail-auth-success';
  readonly queueId?: string;
  readonly address?: string;
  readonly user?: string;
  readonly mech?: string;
}

/** saslauthd `[do_auth] : auth failure: [user=U] [service=S] [realm=R] [mech=M] [reason=…]`. */
export interface SaslauthdFailure extends RecordBase {
  readonly kind: 'saslauthd-failure';
  readonly user: string;
  readonly service: string;
  readonly realm: string;
  readonly mech: string;
  readonly reason: string;
}

/** pam_unix `pam_unix(SERVICE:auth): authentication failure; … rhost=… user=U`, `check pass; user unknown`. */
export interface PamFailure extends RecordBase {
  readonly kind: 'pam-failure';
  /** PAM service (`smtp`, `imap`, `sshd`, …), when the line names it. */
  readonly service?: string;
  readonly user?: string;
  /** Canonical address when rhost= holds an address; saslauthd leaves it empty. */
  readonly address?: string;
  readonly unknownUser: boolean;
}

/** dovecot `auth: … (user,IP)` / `… rip=IP …` authentication failures. */
export interface DovecotFailure extends RecordBase {
  readonly kind: 'dovecot-failure';
  readonly user?: string;
  readonly address: string;
  readonly service: string;
}

export type LogRecord =
  | SendmailAuthFailure
  | SendmailNoMail
  | SendmailAttack
  | SendmailConnect
  | SendmailLostInput
  | SendmailAuthSuccess
  | SaslauthdFailure
  | PamFailure
  | DovecotFailure;

/** A raw line as a source delivers it. */
export interface SourceLine {
  readonly line: string;
  /** File path, `syslog:unix`, `syslog:udp`, `journal`, … */
  readonly origin: string;
  /** When authban read it (ms since epoch). */
  readonly receivedAt: number;
}
