/**
 * saslauthd `do_auth : auth failure: [user=U] [service=S] [realm=R] [mech=M] [reason=…]`.
 * The function name may be `do_auth`, blank (Debian's build pads it with spaces) or absent.
 * The user name is the client's text and comes first, so the other fields are read from the
 * right and the user is whatever lies between `[user=` and sendmail's service field.
 */
import type { SaslauthdFailure } from '../records.js';
import type { SyslogHeader } from '../syslog-line.js';
import { isSpace, startRecord } from './base.js';

const AUTH_FAILURE = 'auth failure: [user=';

function isWordChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

/**
 * Whether `message.slice(0, end)` is what /^\s*(?:[A-Za-z_]\w{0,40}\s*)?(?::\s)?\s*$/ accepts:
 * blanks, an optional function name (and blanks), an optional `:` with a blank, blanks.
 */
function prefixOk(message: string, end: number): boolean {
  let i = 0;
  while (i < end && isSpace(message.charCodeAt(i))) i++;
  const c = message.charCodeAt(i);
  if (i < end && (c === 95 || (c >= 65 && c <= 90) || (c >= 97 && c <= 122))) {
    const start = i;
    while (i < end && isWordChar(message.charCodeAt(i))) i++;
    if (i - start > 41) return false;
    while (i < end && isSpace(message.charCodeAt(i))) i++;
  }
  if (i < end && message.charCodeAt(i) === 58) {
    if (i + 1 >= end || !isSpace(message.charCodeAt(i + 1))) return false;
    i += 2;
    while (i < end && isSpace(message.charCodeAt(i))) i++;
  }
  return i === end;
}

const LABELS = ['] [service=', '] [realm=', '] [mech=', '] [reason='] as const;

/**
 * The four bracketed fields from `at` to the end, as
 * /\] \[service=([^\]]*)\] \[realm=([^\]]*)\] \[mech=([^\]]*)\] \[reason=([^\]]*)\]\s*$/ reads them.
 */
function tailFields(message: string, at: number): string[] | null {
  const values: string[] = [];
  let i = at;
  for (const label of LABELS) {
    if (!message.startsWith(label, i)) return null;
    i += label.length;
    const end = message.indexOf(']', i);
    if (end < 0) return null;
    values.push(message.slice(i, end));
    i = end;
  }
  for (i++; i < message.length; i++) if (!isSpace(message.charCodeAt(i))) return null;
  return values;
}

export function parseSaslauthd(h: SyslogHeader, message: string): SaslauthdFailure | null {
  // `auth failure: [user=` holds `[`, which the prefix cannot: only its first occurrence can start the line's text.
  const p = message.indexOf(AUTH_FAILURE);
  if (p < 0 || !prefixOk(message, p)) return null;
  const restAt = p + AUTH_FAILURE.length;
  // The last `] [service=` is saslauthd's own: everything after the user is its text.
  const at = message.lastIndexOf('] [service=');
  if (at < restAt) return null;
  const t = tailFields(message, at);
  if (!t) return null;
  const r = startRecord<SaslauthdFailure>(h, 'saslauthd-failure', 'saslauthd-failure');
  r.user = message.slice(restAt, at);
  r.service = t[0]!;
  r.realm = t[1]!;
  r.mech = t[2]!;
  r.reason = t[3]!;
  return r;
}
