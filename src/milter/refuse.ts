/**
 * The verdict for a client that is banned: 421 at connect. sendmail shows the client its own
 * 421 text, but logs and other MTAs may show ours, so it is a fixed, configured sentence that
 * says nothing about why (no address, no counts, no rule names).
 */
import type { Verdict } from './handler.js';
import { replyCodeLine } from './replies.js';

export interface RefuseOptions {
  /** Text after `421 4.7.1`. Printable ASCII, at most 200 characters. */
  readonly refuseText: string;
}

export const DEFAULT_REFUSE_OPTIONS: RefuseOptions = {
  refuseText: 'Too many failed authentication attempts, try again later',
};

const PRINTABLE = /^[\x20-\x7e]{1,200}$/;

export function buildRefusal(opts: RefuseOptions = DEFAULT_REFUSE_OPTIONS): Verdict {
  const text = opts.refuseText.trim();
  if (!PRINTABLE.test(text)) throw new Error('milter: refuseText must be 1-200 printable ASCII characters');
  const verdict = { kind: 'replycode', code: '421', xcode: '4.7.1', text } as const;
  // Fail at start-up, not at the first banned client.
  replyCodeLine(verdict.code, verdict.text, verdict.xcode);
  return verdict;
}
