/**
 * saslauthd `do_auth : auth failure: [user=U] [service=S] [realm=R] [mech=M] [reason=…]`.
 * The function name may be `do_auth`, blank (Debian's build pads it with spaces) or absent.
 * The user name is the client's text and comes first, so the other fields are read from the
 * right and the user is whatever lies between `[user=` and sendmail's service field.
 */
import type { SaslauthdFailure } from '../records.js';
import type { SyslogHeader } from '../syslog-line.js';
import { recordBase } from './base.js';

const PREFIX_RE = /^\s*(?:[A-Za-z_]\w{0,40}\s*)?(?::\s)?\s*auth failure: \[user=/;
const TAIL_RE = /\] \[service=([^\]]*)\] \[realm=([^\]]*)\] \[mech=([^\]]*)\] \[reason=([^\]]*)\]\s*$/;

export function parseSaslauthd(h: SyslogHeader, message: string): SaslauthdFailure | null {
  const p = PREFIX_RE.exec(message);
  if (!p) return null;
  const rest = message.slice(p[0].length);
  // The last `] [service=` is saslauthd's own: everything after the user is its text.
  const at = rest.lastIndexOf('] [service=');
  if (at < 0) return null;
  const t = TAIL_RE.exec(rest.slice(at));
  if (!t || t.index !== 0) return null;
  return {
    ...recordBase(h, 'saslauthd-failure'),
    kind: 'saslauthd-failure',
    user: rest.slice(0, at),
    service: t[1]!,
    realm: t[2]!,
    mech: t[3]!,
    reason: t[4]!,
  };
}
