/**
 * sendmail / sm-mta lines that matter for AUTH guessing (8.12 to 8.17 forms).
 *
 * Attackers control the AUTH user name, their PTR host name and (with ident) an ident user,
 * all of which sendmail writes into the same line. Fields are therefore located from the
 * parts sendmail itself writes: fixed texts searched from the right, and the client field
 * (`HOST [ADDR]`, `[ADDR]`, either followed by ` (may be forged)`) read from its end. Every
 * address goes through core/address parseAddress.
 */
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
import { canonicalAddress, isAsciiLetter, isDigit, isSpace, startRecord } from './base.js';

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
  let end = field.length;
  if (field.endsWith(FORGED)) end -= FORGED.length;
  if (end === 0 || field.charCodeAt(end - 1) !== 93) return null; // ]
  const open = field.lastIndexOf('[', end - 1);
  if (open < 0 || (open > 0 && field.charCodeAt(open - 1) !== 32)) return null;
  const address = canonicalAddress(field.slice(open + 1, end - 1));
  if (address === null) return null;
  return open > 1 ? { address, host: field.slice(0, open - 1) } : { address };
}

/**
 * Length of the queue id at the start of `body` (before its `: `), or 0: 8 characters of date
 * and sequence, then the SMTP child's pid in 6 to 12 digits (/^([A-Za-z0-9]{8}\d{6,12}): /).
 */
function queueIdLength(body: string): number {
  for (let i = 0; i < 8; i++) {
    const c = body.charCodeAt(i);
    if (!isAsciiLetter(c) && !isDigit(c)) return 0;
  }
  let j = 8;
  while (j < 21 && isDigit(body.charCodeAt(j))) j++;
  const digits = j - 8;
  if (digits < 6 || digits > 12) return 0;
  return body.charCodeAt(j) === 58 && body.charCodeAt(j + 1) === 32 ? j : 0;
}

const AUTH_FAILURE = 'AUTH failure (';

/**
 * `AUTH failure (MECH): REASON (N) …` as /^AUTH failure \(([^()\s]{1,40})\): ((?:[^(]|\((?!-?\d+\)))*?) \((-?\d+)\) /
 * reads it: the reason ends before the first `(` that opens `(N)` or `(-N)`, which must be
 * preceded and followed by a blank. Returns the end of the match, or -1; `out` gets the
 * mechanism's end and the reason's end.
 */
function authFailureHead(body: string, out: { mechEnd: number; reasonEnd: number }): number {
  const n = body.length;
  let i = AUTH_FAILURE.length;
  for (; i < n; i++) {
    const c = body.charCodeAt(i);
    if (c === 41) break; // )
    if (c === 40 || isSpace(c)) return -1;
  }
  const mechLen = i - AUTH_FAILURE.length;
  if (i === n || mechLen < 1 || mechLen > 40 || body.charCodeAt(i + 1) !== 58 || body.charCodeAt(i + 2) !== 32) return -1;
  out.mechEnd = i;
  const reasonStart = i + 3;
  let from = reasonStart;
  for (;;) {
    const k = body.indexOf('(', from);
    if (k < 0) return -1;
    from = k + 1;
    let j = k + 1;
    if (body.charCodeAt(j) === 45) j++; // -
    const digitsAt = j;
    while (isDigit(body.charCodeAt(j))) j++;
    if (j === digitsAt || body.charCodeAt(j) !== 41) continue; // not `(N)`: part of the reason
    // The first `(N)`: the reason cannot reach past it, so the match ends here or nowhere.
    if (k - 1 < reasonStart || body.charCodeAt(k - 1) !== 32 || body.charCodeAt(j + 1) !== 32) return -1;
    out.reasonEnd = k - 1;
    return j + 2;
  }
}

const headScratch = { mechEnd: 0, reasonEnd: 0 };
const RELAY = ', relay=';
const USER = ', user=';

function authFailure(h: SyslogHeader, qid: string | undefined, body: string): SendmailAuthFailure | null {
  const restAt = authFailureHead(body, headScratch);
  if (restAt < 0) return null;
  const mech = body.slice(AUTH_FAILURE.length, headScratch.mechEnd).toUpperCase();
  const reason = body.slice(headScratch.mechEnd + 3, headScratch.reasonEnd);
  const relayAt = body.lastIndexOf(RELAY);
  if (relayAt < restAt) {
    // 8.12: no relay= (and no user=); the session is found by queue id / pid.
    const r = startRecord<SendmailAuthFailure>(h, 'sendmail-auth-failure-no-relay', 'sendmail-auth-failure');
    r.mech = mech;
    r.reason = reason;
    if (qid !== undefined) r.queueId = qid;
    return r;
  }
  // 8.16+ AUTH_FAIL_LOG_USER: `, user=U` right before relay=; U is the attacker's text.
  const userAt = body.indexOf(USER, restAt);
  const user = userAt >= 0 && userAt < relayAt ? body.slice(userAt + USER.length, relayAt) : undefined;
  const relayStart = relayAt + RELAY.length;
  const client = body.length - relayStart < RELAY_FIELD_MAX ? parseSmtpClient(body.slice(relayStart)) : null;
  const r = startRecord<SendmailAuthFailure>(
    h, client ? 'sendmail-auth-failure' : 'sendmail-auth-failure-bad-relay', 'sendmail-auth-failure',
  );
  r.mech = mech;
  r.reason = reason;
  if (user !== undefined) r.user = user;
  if (client) {
    r.address = client.address;
    if (client.host !== undefined) r.relayHost = client.host;
  }
  if (qid !== undefined) r.queueId = qid;
  return r;
}

const NO_MAIL = ' did not issue MAIL/EXPN/VRFY/ETRN during connection to ';

function noMail(h: SyslogHeader, qid: string | undefined, body: string): SendmailNoMail | null {
  // Host text comes first and may repeat the phrase; the daemon name after it is the admin's.
  const at = body.lastIndexOf(NO_MAIL);
  if (at < 0) return null;
  const client = parseSmtpClient(body.slice(0, at));
  if (!client) return null;
  const r = startRecord<SendmailNoMail>(h, 'sendmail-no-mail', 'sendmail-no-mail');
  r.address = client.address;
  if (client.host !== undefined) r.host = client.host;
  if (qid !== undefined) r.queueId = qid;
  return r;
}

/**
 * The attack line ends with sendmail's own text; the client (and any host text) precedes it:
 * `: possible SMTP attack: command=([A-Za-z]{1,40}), count=(\d{1,9})$`. Only its last
 * occurrence can match (the tail holds no `:`). Returns where it starts, or -1.
 */
const ATTACK = ': possible SMTP attack: command=';
const COUNT = ', count=';

function attackAt(body: string): number {
  const at = body.lastIndexOf(ATTACK);
  if (at < 0) return -1;
  const n = body.length;
  let i = at + ATTACK.length;
  const cmd = i;
  while (i < n && isAsciiLetter(body.charCodeAt(i))) i++;
  if (i - cmd < 1 || i - cmd > 40 || !body.startsWith(COUNT, i)) return -1;
  i += COUNT.length;
  const num = i;
  while (i < n && isDigit(body.charCodeAt(i))) i++;
  return i === n && i - num >= 1 && i - num <= 9 ? at : -1;
}

function attack(h: SyslogHeader, qid: string | undefined, body: string, at: number): SendmailAttack | null {
  const client = parseSmtpClient(body.slice(0, at));
  if (!client) return null;
  const cmdAt = at + ATTACK.length;
  const countAt = body.indexOf(COUNT, cmdAt);
  const r = startRecord<SendmailAttack>(h, 'sendmail-attack', 'sendmail-attack');
  r.address = client.address;
  r.command = body.slice(cmdAt, countAt).toUpperCase();
  r.count = Number(body.slice(countAt + COUNT.length));
  if (qid !== undefined) r.queueId = qid;
  return r;
}

const CONNECT = 'connect from ';

function connect(h: SyslogHeader, body: string): SendmailConnect | null {
  const client = parseSmtpClient(body.slice(CONNECT.length));
  if (!client) return null;
  const r = startRecord<SendmailConnect>(h, 'sendmail-connect', 'sendmail-connect');
  r.address = client.address;
  if (client.host !== undefined) r.host = client.host;
  return r;
}

const LOST = 'lost input channel from ';

function lostInput(h: SyslogHeader, qid: string | undefined, body: string): SendmailLostInput | null {
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
  const r = startRecord<SendmailLostInput>(h, 'sendmail-lost-input', 'sendmail-lost-input');
  r.address = client.address;
  if (client.host !== undefined) r.host = client.host;
  if (qid !== undefined) r.queueId = qid;
  return r;
}

const AUTH_OK = 'AUTH=server, relay=';
const AUTH_OK_TAIL = /, authid=(.*), mech=([^\s,]{1,40}), bits=\d{1,6}$/;

function authSuccess(h: SyslogHeader, qid: string | undefined, body: string): SendmailAuthSuccess | null {
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
      const r = startRecord<SendmailAuthSuccess>(h, 'sendmail-auth-success', 'sendmail-auth-success');
      r.address = client.address;
      r.user = region.slice(at + ', authid='.length);
      r.mech = m[2]!.toUpperCase();
      if (qid !== undefined) r.queueId = qid;
      return r;
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
  const q = queueIdLength(message);
  if (q > 0) {
    qid = message.slice(0, q);
    body = message.slice(q + 2);
  } else if (message.startsWith(NOQUEUE)) {
    body = message.slice(NOQUEUE.length);
  }
  switch (body.charCodeAt(0)) {
    case 65: // A
      if (body.startsWith(AUTH_FAILURE)) return authFailure(h, qid, body);
      if (body.startsWith(AUTH_OK)) return authSuccess(h, qid, body);
      break;
    case 99: // c
      if (body.startsWith(CONNECT)) return connect(h, body);
      break;
    case 108: // l
      if (body.startsWith(LOST)) return lostInput(h, qid, body);
      break;
  }
  const at = attackAt(body);
  if (at >= 0) return attack(h, qid, body, at);
  if (body.includes(NO_MAIL)) return noMail(h, qid, body);
  return null;
}
