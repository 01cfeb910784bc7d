/**
 * dovecot authentication failures that name the client:
 * - login processes: `imap-login: Disconnected (auth failed, 3 attempts in 6 secs): user=<u>,
 *   method=PLAIN, rip=IP, lip=IP, …` (the reason comes first, `user=<…>` is the client's text,
 *   the fields after it are dovecot's, so the last `rip=` is the real one);
 * - passdb lookups: `auth: pam(user,IP[,<session>]): pam_authenticate() failed: …`,
 *   `passwd-file(user,IP): unknown user`, `sql(…): Password mismatch`. The user sits before
 *   the address; every `,ADDR[,<session>]): ` split is tried and the line is refused when the
 *   splits disagree on the address (default auth_username_chars forbids these characters, so
 *   a real line has one split).
 */
import type { DovecotFailure } from '../records.js';
import type { SyslogHeader } from '../syslog-line.js';
import { canonicalAddress, startRecord } from './base.js';

const LOGIN_PREFIX_RE = /^(imap|pop3|submission|managesieve)-login: /;
const LOGIN_PROGRAM_RE = /^(imap|pop3|submission|managesieve)-login$/;
const INFO = 'Info: ';

function loginFailure(h: SyslogHeader, service: string, body: string): DovecotFailure | null {
  const reasonEnd = body.indexOf('): ');
  if (reasonEnd < 0 || !body.slice(0, reasonEnd).includes('(auth failed, ')) return null;
  const fields = body.slice(reasonEnd + 3);
  const last = fields.lastIndexOf(', rip=');
  if (last < 0 && !fields.startsWith('rip=')) return null;
  const ripAt = last < 0 ? 0 : last + 2;
  const value = fields.slice(ripAt + 'rip='.length);
  const comma = value.indexOf(',');
  const address = canonicalAddress(comma < 0 ? value : value.slice(0, comma));
  if (address === null) return null;
  let user: string | undefined;
  if (fields.startsWith('user=<')) {
    const end = fields.lastIndexOf('>, ', ripAt);
    if (end >= 'user=<'.length) user = fields.slice('user=<'.length, end);
  }
  const r = startRecord<DovecotFailure>(h, 'dovecot-login-auth-failed', 'dovecot-failure');
  if (user !== undefined && user !== '') r.user = user;
  r.address = address;
  r.service = service;
  return r;
}

const DRIVER_RE =
  /(?:^|: )(pam|passwd|passwd-file|shadow|sql|ldap|bsdauth|checkpassword|static|lua|oauth2|dict|vpopmail|imap)\(/;
const SPLIT_TAIL_RE = /,([0-9A-Fa-f:.]{2,45})(?:,(?:<[^<>]{0,64}>)?)?$/;
const FAILURE_REASONS = ['unknown user', 'Password mismatch', 'pam_authenticate() failed', 'invalid credentials'];

function passdbFailure(h: SyslogHeader, body: string): DovecotFailure | null {
  const d = DRIVER_RE.exec(body);
  if (!d) return null;
  const open = d.index + d[0].length;
  let chosen: { user: string; address: string; reason: string } | undefined;
  let from = open;
  for (let guard = 0; guard < 64; guard++) {
    const close = body.indexOf('): ', from);
    if (close < 0) break;
    from = close + 1;
    const inside = body.slice(open, close);
    const t = SPLIT_TAIL_RE.exec(inside);
    const addr = t ? canonicalAddress(t[1]!) : null;
    if (!t || addr === null) continue;
    if (chosen && chosen.address !== addr) return null;
    // Splits agree on the address: the last one leaves dovecot's own reason text.
    chosen = { user: inside.slice(0, t.index), address: addr, reason: body.slice(close + 3) };
  }
  if (!chosen || !FAILURE_REASONS.some((r) => chosen!.reason.startsWith(r))) return null;
  const r = startRecord<DovecotFailure>(h, 'dovecot-passdb-failure', 'dovecot-failure');
  if (chosen.user !== '') r.user = chosen.user;
  r.address = chosen.address;
  r.service = 'dovecot';
  return r;
}

export function parseDovecot(h: SyslogHeader, message: string): DovecotFailure | null {
  let body = message;
  let loginService = LOGIN_PROGRAM_RE.exec(h.program)?.[1];
  const p = LOGIN_PREFIX_RE.exec(body);
  if (p) {
    loginService = p[1];
    body = body.slice(p[0].length);
  }
  if (body.startsWith(INFO)) body = body.slice(INFO.length);
  if (loginService !== undefined) return loginFailure(h, loginService, body);
  return passdbFailure(h, body);
}
