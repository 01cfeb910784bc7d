/**
 * sendmail / sm-mta lines that matter for AUTH guessing (8.12 to 8.17 forms).
 *
 * Attackers control the AUTH user name, their PTR host name and (with ident) an ident user,
 * all of which sendmail writes into the same line. Fields are therefore located from the
 * parts sendmail itself writes: fixed texts searched from the right, and the client field
 * (`HOST [ADDR]`, `[ADDR]`, either followed by ` (may be forged)`) read from its end. Every
 * address goes through core/address parseAddress.
 */
import { parseAddress } from '../../core/address.js';
import type {
  LogRecord,
  SendmailAttack,
  SendmailAuthFailure,
  SendmailAuthSuccess,
  SendmailConnect,
  SendmailLostInput,
  SendmailNoMail,
} from '../records.js';
import type { SyslogHeader } from '../syslog-line.js';
import { recordBase } from './base.js';

/** 8 characters of date and sequence, then the SMTP child's pid in at least 6 digits. */
const QID_RE = /^([A-Za-z0-9]{8}\d{6,12}): /;
const NOQUEUE = 'NOQUEUE: ';
const FORGED = ' (may be forged)';
/** sendmail prints the client field with `%.100s` in AUTH failure lines. */
const RELAY_FIELD_MAX = 100;

export interface SmtpClient {
  readonly address: string;
  readonly host?: string;
}

/**
 * sendmail's client field (`CurSmtpClient`): `[ADDR]` or `HOST [ADDR]`, optionally followed by
 * ` (may be forged)`. The address is the bracketed text at the very end; everything before
 * it is host text and never searched for addresses.
 */
export function parseSmtpClient(field: string): SmtpClient | null {
  let s = field;
  if (s.endsWith(FORGED)) s = s.slice(0, -FORGED.length);
  if (!s.endsWith(']')) return null;
  const open = s.lastIndexOf('[');
  if (open < 0 || (open > 0 && s[open - 1] !== ' ')) return null;
  const addr = parseAddress(s.slice(open + 1, -1));
  if (!addr) return null;
  const host = open > 0 ? s.slice(0, open - 1) : '';
  return host === '' ? { address: addr.text } : { address: addr.text, host };
}

function withQid<T extends object>(rec: T, qid: string | undefined): T & { queueId?: string } {
  return qid !== undefined ? { ...rec, queueId: qid } : rec;
}

const AUTH_FAILURE_RE = /^AUTH failure \(([^()\s]{1,40})\): ((?:[^(]|\((?!-?\d+\)))*?) \((-?\d+)\) /;

function authFailure(h: SyslogHeader, qid: string | undefined, body: string): SendmailAuthFailure | null {
  const m = AUTH_FAILURE_RE.exec(body);
  if (!m) return null;
  const rest = body.slice(m[0].length);
  const relayAt = rest.lastIndexOf(', relay=');
  const common = { kind: 'sendmail-auth-failure' as const, mech: m[1]!.toUpperCase(), reason: m[2]! };
  if (relayAt < 0) {
    // 8.12: no relay= (and no user=); the session is found by queue id / pid.
    return withQid({ ...recordBase(h, 'sendmail-auth-failure-no-relay'), ...common }, qid);
  }
  const before = rest.slice(0, relayAt);
  const relay = rest.slice(relayAt + ', relay='.length);
  // 8.16+ AUTH_FAIL_LOG_USER: `, user=U` right before relay=; U is the attacker's text.
  const userAt = before.indexOf(', user=');
  const user = userAt >= 0 ? before.slice(userAt + ', user='.length) : undefined;
  const client = relay.length < RELAY_FIELD_MAX ? parseSmtpClient(relay) : null;
  const rec: SendmailAuthFailure = {
    ...recordBase(h, client ? 'sendmail-auth-failure' : 'sendmail-auth-failure-bad-relay'),
    ...common,
    ...(user !== undefined ? { user } : {}),
    ...(client ? { address: client.address } : {}),
    ...(client?.host !== undefined ? { relayHost: client.host } : {}),
  };
  return withQid(rec, qid);
}

const NO_MAIL = ' did not issue MAIL/EXPN/VRFY/ETRN during connection to ';

function noMail(h: SyslogHeader, qid: string | undefined, body: string): SendmailNoMail | null {
  // Host text comes first and may repeat the phrase; the daemon name after it is the admin's.
  const at = body.lastIndexOf(NO_MAIL);
  if (at < 0) return null;
  const client = parseSmtpClient(body.slice(0, at));
  if (!client) return null;
  return withQid({ ...recordBase(h, 'sendmail-no-mail'), kind: 'sendmail-no-mail' as const, ...client }, qid);
}

/** The attack line ends with sendmail's own text; the client (and any host text) precedes it. */
const ATTACK_TAIL_RE = /: possible SMTP attack: command=([A-Za-z]{1,40}), count=(\d{1,9})$/;

function attack(h: SyslogHeader, qid: string | undefined, body: string): SendmailAttack | null {
  const m = ATTACK_TAIL_RE.exec(body);
  if (!m) return null;
  const client = parseSmtpClient(body.slice(0, m.index));
  if (!client) return null;
  return withQid({
    ...recordBase(h, 'sendmail-attack'),
    kind: 'sendmail-attack' as const,
    address: client.address,
    command: m[1]!.toUpperCase(),
    count: Number(m[2]),
  }, qid);
}

const CONNECT = 'connect from ';

function connect(h: SyslogHeader, body: string): SendmailConnect | null {
  if (!body.startsWith(CONNECT)) return null;
  const client = parseSmtpClient(body.slice(CONNECT.length));
  if (!client) return null;
  return { ...recordBase(h, 'sendmail-connect'), kind: 'sendmail-connect', ...client };
}

const LOST = 'lost input channel from ';

function lostInput(h: SyslogHeader, qid: string | undefined, body: string): SendmailLostInput | null {
  if (!body.startsWith(LOST)) return null;
  // `CLIENT to DAEMON after CMD`: the client ends at the last `] to ` / `] (may be forged) to `
  // before the last ` after ` (daemon name and command are sendmail's / the admin's).
  const afterAt = body.lastIndexOf(' after ');
  if (afterAt < 0) return null;
  const head = body.slice(LOST.length, afterAt);
  const cut = Math.max(head.lastIndexOf('] to '), head.lastIndexOf(`]${FORGED} to `));
  if (cut < 0) return null;
  const end = head.startsWith(FORGED, cut + 1) ? cut + 1 + FORGED.length : cut + 1;
  const client = parseSmtpClient(head.slice(0, end));
  if (!client) return null;
  return withQid({ ...recordBase(h, 'sendmail-lost-input'), kind: 'sendmail-lost-input' as const, ...client }, qid);
}

const AUTH_OK = 'AUTH=server, relay=';
const AUTH_OK_TAIL = /, authid=(.*), mech=([^\s,]{1,40}), bits=\d{1,6}$/;

function authSuccess(h: SyslogHeader, qid: string | undefined, body: string): SendmailAuthSuccess | null {
  if (!body.startsWith(AUTH_OK)) return null;
  const m = AUTH_OK_TAIL.exec(body);
  if (!m) return null;
  // The relay (which may hold a hostile PTR name) comes before authid (a user who just proved
  // their password): take the last `, authid=` whose left side is a well-formed client field.
  const region = body.slice(AUTH_OK.length, m.index + ', authid='.length + m[1]!.length);
  let from = region.length;
  for (let guard = 0; guard < 64; guard++) {
    const at = region.lastIndexOf(', authid=', from);
    if (at < 0) break;
    const client = parseSmtpClient(region.slice(0, at));
    if (client) {
      const rec: SendmailAuthSuccess = {
        ...recordBase(h, 'sendmail-auth-success'),
        kind: 'sendmail-auth-success',
        address: client.address,
        user: region.slice(at + ', authid='.length),
        mech: m[2]!.toUpperCase(),
      };
      return withQid(rec, qid);
    }
    from = at - 1;
    if (from < 0) break;
  }
  return null;
}

/** `(header, message) => record | null` for the sendmail family. */
export function parseSendmail(h: SyslogHeader, message: string): LogRecord | null {
  let qid: string | undefined;
  let body = message;
  const q = QID_RE.exec(body);
  if (q) {
    qid = q[1];
    body = body.slice(q[0].length);
  } else if (body.startsWith(NOQUEUE)) {
    body = body.slice(NOQUEUE.length);
  }
  if (body.startsWith('AUTH failure (')) return authFailure(h, qid, body);
  if (body.startsWith(AUTH_OK)) return authSuccess(h, qid, body);
  if (body.startsWith(CONNECT)) return connect(h, body);
  if (body.startsWith(LOST)) return lostInput(h, qid, body);
  if (ATTACK_TAIL_RE.test(body)) return attack(h, qid, body);
  if (body.includes(NO_MAIL)) return noMail(h, qid, body);
  return null;
}
