/**
 * What the milter server asks of whoever uses it. It knows nothing of bans: it reports
 * session events and sends back the verdict it is given.
 */

/** CONNECT family as the MTA sends it (`U` unknown, `L` unix socket, `4`, `6`). */
export type ConnectFamily = 'unknown' | 'unix' | 'inet' | 'inet6';

export interface ConnectInfo {
  /** Host name sendmail resolved for the client (or `[IP]` when it has none). */
  readonly hostname: string;
  readonly family: ConnectFamily;
  /** Canonical client address (IPv4-mapped and `IPv6:` forms normalised), when inet/inet6. */
  readonly address?: string;
  readonly port?: number;
  /** sendmail queue id `{i}` at connect, when sent. */
  readonly queueId?: string;
  /** The sendmail child pid: the digits after the queue id's first 8 characters. */
  readonly pid?: number;
}

export interface AuthMacros {
  readonly authType?: string;
  readonly authAuthen?: string;
  readonly authSsf?: string;
  readonly authAuthor?: string;
}

/** `idle`: authban closed a connection silent past its idle timeout. */
export type CloseReason = 'quit' | 'quit_nc' | 'abort_eof' | 'eof' | 'error' | 'shutdown' | 'idle';

/** A live milter session as handlers see it. `id` is unique for the process lifetime. */
export interface SessionView {
  readonly id: number;
  readonly connect?: ConnectInfo;
  readonly helo?: string;
  /** Latest queue id seen (`{i}` changes after RSET / second HELO; the pid stays). */
  readonly queueId?: string;
  readonly mailIssued: boolean;
  /** All macros currently defined, names normalised (`{x}` and `x` are one name: stored as `x`). */
  macro(name: string): string | undefined;
}

export type Verdict =
  | { readonly kind: 'continue' }
  | { readonly kind: 'accept' }
  | { readonly kind: 'reject' }
  | { readonly kind: 'tempfail' }
  /** SMFIR_REPLYCODE: `code` 4xx or 5xx, optional enhanced `xcode` (e.g. `4.7.1`), text. */
  | { readonly kind: 'replycode'; readonly code: string; readonly xcode?: string; readonly text: string };

type MaybeAsync<T> = T | Promise<T>;

export interface MilterHandler {
  onConnect?(session: SessionView, info: ConnectInfo): MaybeAsync<Verdict>;
  onHelo?(session: SessionView, helo: string): MaybeAsync<Verdict>;
  onMail?(session: SessionView, sender: string, args: readonly string[], auth: AuthMacros): MaybeAsync<Verdict>;
  onRcpt?(session: SessionView, recipient: string, args: readonly string[]): MaybeAsync<Verdict>;
  /** Notification only: no reply goes back for a close. */
  onClose?(session: SessionView, reason: CloseReason): void;
}
