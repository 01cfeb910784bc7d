/**
 * pam_unix authentication failures, in any program's lines (saslauthd, sshd, dovecot, …):
 * `pam_unix(SERVICE:auth): authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=  user=U`,
 * `pam_unix(SERVICE:auth): check pass; user unknown`, and the old `SERVICE(pam_unix)[PID]:` form.
 *
 * `user=` is the client's text and `ruser=` may be too; both sit next to `rhost=`. An address
 * is reported only when exactly one `rhost=` field exists and it holds a valid address.
 */
import type { PamFailure } from '../records.js';
import type { SyslogHeader } from '../syslog-line.js';
import { canonicalAddress, isDigit, isSpace, startRecord } from './base.js';

const MODERN = 'pam_unix(';
const MODERN_END = ':auth): ';
const OLD_PROGRAM_RE = /^([^():\s]{1,64})\(pam_unix\)$/;
const FAILURE = 'authentication failure; ';
const UNKNOWN = 'check pass; user unknown';

/** End of /^pam_unix\(([^():\s]{1,64}):auth\): / in `message`, or -1; the service ends at MODERN_END. */
function modernLength(message: string): number {
  if (!message.startsWith(MODERN)) return -1;
  const n = message.length;
  let i = MODERN.length;
  for (; i < n; i++) {
    const c = message.charCodeAt(i);
    if (c === 58) break;
    if (c === 40 || c === 41 || isSpace(c)) return -1;
  }
  const len = i - MODERN.length;
  if (i === n || len < 1 || len > 64 || !message.startsWith(MODERN_END, i)) return -1;
  return i + MODERN_END.length;
}

function skipNonSpace(s: string, i: number): number {
  while (i < s.length && !isSpace(s.charCodeAt(i))) i++;
  return i;
}

/** After `label` at `i`, 1 to 10 digits: their end, or -1. */
function digitsAfter(s: string, i: number, label: string): number {
  if (!s.startsWith(label, i)) return -1;
  const from = i + label.length;
  let j = from;
  while (j < s.length && isDigit(s.charCodeAt(j))) j++;
  return j > from && j - from <= 10 ? j : -1;
}

/** End of /^logname=\S* uid=\d{1,10} euid=\d{1,10} tty=\S* ruser=/ read from `at`, or -1. */
function fixedEnd(s: string, at: number): number {
  if (!s.startsWith('logname=', at)) return -1;
  let i = skipNonSpace(s, at + 'logname='.length);
  i = digitsAfter(s, i, ' uid=');
  if (i < 0) return -1;
  i = digitsAfter(s, i, ' euid=');
  if (i < 0 || !s.startsWith(' tty=', i)) return -1;
  i = skipNonSpace(s, i + ' tty='.length);
  return s.startsWith(' ruser=', i) ? i + ' ruser='.length : -1;
}

function onlySpaceFrom(s: string, i: number): boolean {
  for (; i < s.length; i++) if (!isSpace(s.charCodeAt(i))) return false;
  return true;
}

export function parsePam(h: SyslogHeader, message: string): PamFailure | null {
  let service: string;
  let bodyAt: number;
  const modern = modernLength(message);
  if (modern >= 0) {
    service = message.slice(MODERN.length, modern - MODERN_END.length);
    bodyAt = modern;
  } else {
    const old = OLD_PROGRAM_RE.exec(h.program);
    if (!old) return null;
    service = old[1]!;
    bodyAt = 0;
  }
  if (message.startsWith(UNKNOWN, bodyAt) && onlySpaceFrom(message, bodyAt + UNKNOWN.length)) {
    const r = startRecord<PamFailure>(h, 'pam-user-unknown', 'pam-failure');
    r.service = service;
    r.unknownUser = true;
    return r;
  }
  if (!message.startsWith(FAILURE, bodyAt)) return null;
  const fixed = fixedEnd(message, bodyAt + FAILURE.length);
  if (fixed < 0) return null;
  const rest = message.slice(fixed);
  const rhostAt = rest.indexOf(' rhost=');
  if (rhostAt < 0) return null;
  const afterRhost = rest.slice(rhostAt + ' rhost='.length);
  const sp = afterRhost.indexOf(' ');
  const rhost = sp < 0 ? afterRhost : afterRhost.slice(0, sp);
  const tail = sp < 0 ? '' : afterRhost.slice(sp);
  const userAt = tail.indexOf(' user=');
  const user = userAt >= 0 ? tail.slice(userAt + ' user='.length) : undefined;
  const single = rest.indexOf('rhost=') === rhostAt + 1 && rest.indexOf('rhost=', rhostAt + 2) < 0;
  const address = single && rhost !== '' ? canonicalAddress(rhost) : null;
  const r = startRecord<PamFailure>(h, 'pam-auth-failure', 'pam-failure');
  r.service = service;
  if (user !== undefined && user !== '') r.user = user;
  if (address !== null) r.address = address;
  r.unknownUser = false;
  return r;
}
