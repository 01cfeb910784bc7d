/**
 * pam_unix authentication failures, in any program's lines (saslauthd, sshd, dovecot, …):
 * `pam_unix(SERVICE:auth): authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=  user=U`,
 * `pam_unix(SERVICE:auth): check pass; user unknown`, and the old `SERVICE(pam_unix)[PID]:` form.
 *
 * `user=` is the client's text and `ruser=` may be too; both sit next to `rhost=`. An address
 * is reported only when exactly one `rhost=` field exists and it holds a valid address.
 */
import { parseAddress } from '../../core/address.js';
import type { PamFailure } from '../records.js';
import type { SyslogHeader } from '../syslog-line.js';
import { recordBase } from './base.js';

const MODERN_RE = /^pam_unix\(([^():\s]{1,64}):auth\): /;
const OLD_PROGRAM_RE = /^([^():\s]{1,64})\(pam_unix\)$/;
const FAILURE = 'authentication failure; ';
const UNKNOWN = 'check pass; user unknown';
const FIXED_RE = /^logname=\S* uid=\d{1,10} euid=\d{1,10} tty=\S* ruser=/;

export function parsePam(h: SyslogHeader, message: string): PamFailure | null {
  let service: string | undefined;
  let body: string;
  const modern = MODERN_RE.exec(message);
  if (modern) {
    service = modern[1];
    body = message.slice(modern[0].length);
  } else {
    const old = OLD_PROGRAM_RE.exec(h.program);
    if (!old) return null;
    service = old[1];
    body = message;
  }
  const svc = service !== undefined ? { service } : {};
  if (body.trimEnd() === UNKNOWN) {
    return { ...recordBase(h, 'pam-user-unknown'), kind: 'pam-failure', ...svc, unknownUser: true };
  }
  if (!body.startsWith(FAILURE)) return null;
  const fields = body.slice(FAILURE.length);
  const fixed = FIXED_RE.exec(fields);
  if (!fixed) return null;
  const rest = fields.slice(fixed[0].length);
  const rhostAt = rest.indexOf(' rhost=');
  if (rhostAt < 0) return null;
  const afterRhost = rest.slice(rhostAt + ' rhost='.length);
  const sp = afterRhost.indexOf(' ');
  const rhost = sp < 0 ? afterRhost : afterRhost.slice(0, sp);
  const tail = sp < 0 ? '' : afterRhost.slice(sp);
  const userAt = tail.indexOf(' user=');
  const user = userAt >= 0 ? tail.slice(userAt + ' user='.length) : undefined;
  const single = rest.indexOf('rhost=') === rhostAt + 1 && rest.indexOf('rhost=', rhostAt + 2) < 0;
  const addr = single && rhost !== '' ? parseAddress(rhost) : null;
  return {
    ...recordBase(h, 'pam-auth-failure'),
    kind: 'pam-failure',
    ...svc,
    ...(user !== undefined && user !== '' ? { user } : {}),
    ...(addr ? { address: addr.text } : {}),
    unknownUser: false,
  };
}
