/**
 * Splits one syslog line into its header fields and message, whatever shape it arrived in:
 * a BSD or ISO file line as rsyslog writes it, a `<PRI>` frame as received on a socket
 * (RFC 3164 or RFC 5424), or a journal JSON object.
 */
import {
  DEFAULT_TIMESTAMP_OPTIONS,
  bsdTimestampLength,
  leadingBsdTimestamp,
  leadingIsoTimestamp,
  parseRfc5424Timestamp,
  type TimestampOptions,
} from './timestamps.js';

/** Which parser family a program belongs to. */
export type ProgramFamily = 'sendmail' | 'saslauthd' | 'dovecot' | 'pam' | 'other';

export interface SyslogHeader {
  /** Ms since the epoch, from the line's timestamp (the reference time when it has none). */
  readonly at: number;
  readonly host?: string;
  /** Program as logged, path stripped (`sm-mta`, `saslauthd`, `sshd(pam_unix)`). */
  readonly program: string;
  readonly family: ProgramFamily;
  readonly pid?: number;
  readonly facility?: number;
  readonly severity?: number;
  readonly message: string;
}

const SENDMAIL_NAMES = new Set(['sendmail', 'sm-mta', 'sm-acceptingconnections', 'sm-msp-queue']);
// Dovecot processes that log under their own name when dovecot logs straight to syslog.
const DOVECOT_NAMES = /^(?:dovecot|auth|auth-worker|(?:imap|pop3|submission|managesieve|lmtp)-login)$/;

/** Strips a path, maps sendmail's aliases and dovecot's process names to one family. */
export function programFamily(program: string): ProgramFamily {
  if (SENDMAIL_NAMES.has(program)) return 'sendmail';
  if (program === 'saslauthd') return 'saslauthd';
  if (DOVECOT_NAMES.test(program)) return 'dovecot';
  // Old Linux-PAM logged as `SERVICE(pam_unix)[PID]`.
  if (program.endsWith('(pam_unix)')) return 'pam';
  return 'other';
}

function basename(program: string): string {
  const slash = program.lastIndexOf('/');
  return slash >= 0 ? program.slice(slash + 1) : program;
}

// TAG[PID]: or TAG: ; a tag has no blanks, colons or brackets (parentheses are allowed:
// `sshd(pam_unix)`, `auth-worker(304)`).
const TAG_RE = /^([^\s[\]:]+)(?:\[(\d{1,10})\])?:(?: |$)/;
const PAREN_PID_RE = /^(.+)\((\d{1,10})\)$/;

interface Tagged {
  program: string;
  pid?: number;
  host?: string;
  message: string;
}

interface Pri {
  readonly facility: number;
  readonly severity: number;
}

/** Builds the header; optional fields are present only when known (one shape per combination). */
function makeHeader(
  at: number, program: string, pid: number | undefined, host: string | undefined, message: string, pri?: Pri,
): SyslogHeader {
  const family = programFamily(program);
  let h: { -readonly [K in keyof SyslogHeader]: SyslogHeader[K] };
  if (host !== undefined) {
    h = pid !== undefined
      ? { at, program, family, message, host, pid }
      : { at, program, family, message, host };
  } else {
    h = pid !== undefined ? { at, program, family, message, pid } : { at, program, family, message };
  }
  if (pri) {
    h.facility = pri.facility;
    h.severity = pri.severity;
  }
  return h;
}

/**
 * The tag at `from` in `text`, as TAG_RE reads it, for the plain-ASCII case: returns the end
 * of `TAG[PID]:` / `TAG:` plus its blank (or the end), -1 when there is no tag there, and -2
 * when a character outside printable ASCII means TAG_RE must decide. `out` gets the tag's
 * end and the pid.
 */
function scanTag(text: string, from: number, out: { tagEnd: number; pid: number }): number {
  const n = text.length;
  let i = from;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 58 || c === 91 || c === 93 || c === 32) break; // : [ ] blank
    if (c < 33 || c > 126) return -2;
  }
  if (i === from || i === n) return -1;
  out.tagEnd = i;
  out.pid = -1;
  let c = text.charCodeAt(i);
  if (c === 91) {
    let pid = 0;
    let j = i + 1;
    while (j < n && j - i <= 11) {
      const d = text.charCodeAt(j);
      if (d < 48 || d > 57) break;
      pid = pid * 10 + d - 48;
      j++;
    }
    const digits = j - i - 1;
    if (digits < 1 || digits > 10 || text.charCodeAt(j) !== 93) return -1;
    out.pid = pid;
    i = j + 1;
    c = text.charCodeAt(i);
  }
  if (c !== 58) return -1;
  i++;
  if (i === n) return i;
  return text.charCodeAt(i) === 32 ? i + 1 : -1;
}

const scratch = { tagEnd: 0, pid: -1 };

/**
 * `[HOST ]TAG[PID]: MESSAGE` from `from` on. A first token that is a tag means no host.
 * Plain tags are read by index; anything unusual (non-ASCII, a path, a `(pid)` suffix) goes
 * through the regular expressions.
 */
function splitTaggedAt(text: string, from: number, at: number, pri?: Pri): SyslogHeader | null {
  let host: string | undefined;
  let start = from;
  let end = scanTag(text, from, scratch);
  if (end === -1) {
    const sp = text.indexOf(' ', from);
    if (sp <= from) return null;
    host = text.slice(from, sp);
    start = sp + 1;
    end = scanTag(text, start, scratch);
    if (end === -1) return null;
  }
  if (end === -2) return splitTaggedSlow(text.slice(from), at, pri);
  const tagEnd = scratch.tagEnd;
  const pid = scratch.pid;
  // A path or a parenthesised pid: the general reading.
  for (let i = start; i < tagEnd; i++) {
    const c = text.charCodeAt(i);
    if (c === 47 || c === 40 || c === 41) return splitTaggedSlow(text.slice(from), at, pri);
  }
  return makeHeader(at, text.slice(start, tagEnd), pid >= 0 ? pid : undefined, host, text.slice(end), pri);
}

function splitTaggedSlow(rest: string, at: number, pri?: Pri): SyslogHeader | null {
  const t = splitTagged(rest);
  return t ? makeHeader(at, t.program, t.pid, t.host, t.message, pri) : null;
}

/** `[HOST ]TAG[PID]: MESSAGE` after the timestamp. A first token that is a tag means no host. */
function splitTagged(rest: string): Tagged | null {
  let host: string | undefined;
  let body = rest;
  if (!TAG_RE.test(body)) {
    const sp = body.indexOf(' ');
    if (sp <= 0) return null;
    host = body.slice(0, sp);
    body = body.slice(sp + 1);
  }
  const m = TAG_RE.exec(body);
  if (!m) return null;
  let program = basename(m[1]!);
  let pid = m[2] !== undefined ? Number(m[2]) : undefined;
  const paren = PAREN_PID_RE.exec(program);
  if (paren && pid === undefined) {
    program = paren[1]!;
    pid = Number(paren[2]);
  }
  if (program === '') return null;
  const out: Tagged = { program, message: body.slice(m[0].length) };
  if (pid !== undefined) out.pid = pid;
  if (host !== undefined) out.host = host;
  return out;
}

function header(at: number, t: Tagged, pri?: Pri): SyslogHeader {
  return makeHeader(at, t.program, t.pid, t.host, t.message, pri);
}

/** `TIMESTAMP [HOST ]TAG: MSG` with a BSD or ISO timestamp. */
function splitTraditional(
  text: string, reference: number, options: TimestampOptions, pri?: Pri,
): SyslogHeader | null {
  let at: number | null;
  let restAt: number;
  const bsd = bsdTimestampLength(text);
  if (bsd > 0) {
    if (bsd === text.length) return null;
    at = leadingBsdTimestamp(text, bsd, reference, options);
    restAt = bsd + 1;
  } else {
    const sp = text.indexOf(' ');
    if (sp < 0) return null;
    at = leadingIsoTimestamp(text, sp, options);
    restAt = sp + 1;
  }
  if (at === null) return null;
  return splitTaggedAt(text, restAt, at, pri);
}

/** RFC 5424 STRUCTURED-DATA: `-` or `[id k="v" …]…` with `\"`, `\\`, `\]` escapes. Returns its length. */
function structuredDataLength(s: string): number | null {
  if (s.startsWith('-')) return 1;
  let i = 0;
  while (s[i] === '[') {
    let inQuote = false;
    i++;
    for (;;) {
      const c = s[i];
      if (c === undefined) return null;
      if (inQuote) {
        if (c === '\\') i++;
        else if (c === '"') inQuote = false;
      } else if (c === '"') inQuote = true;
      else if (c === ']') break;
      i++;
    }
    i++;
  }
  return i > 0 ? i : null;
}

/** `1 TIMESTAMP HOST APP PROCID MSGID SD [MSG]` after the PRI. */
function splitRfc5424(
  text: string, reference: number, pri: { facility: number; severity: number },
): SyslogHeader | null {
  const fields: string[] = [];
  let pos = 0;
  for (let n = 0; n < 6; n++) {
    const sp = text.indexOf(' ', pos);
    if (sp < 0) return null;
    fields.push(text.slice(pos, sp));
    pos = sp + 1;
  }
  const [, ts, host, app, procid] = fields as [string, string, string, string, string, string];
  const sdLen = structuredDataLength(text.slice(pos));
  if (sdLen === null) return null;
  let message = text.slice(pos + sdLen);
  if (message.startsWith(' ')) message = message.slice(1);
  if (message.startsWith('\uFEFF')) message = message.slice(1);
  // rsyslog's RFC 5424 templates forward a legacy message with the space that followed its
  // `tag:` still in front (`… - -  6APH…: AUTH failure`): that space is not part of the text.
  if (message.startsWith(' ')) message = message.slice(1);
  const at = parseRfc5424Timestamp(ts);
  if (at === null) return null;
  const t: Tagged = { program: app === '-' ? '' : basename(app), message };
  if (/^\d{1,10}$/.test(procid)) t.pid = Number(procid);
  if (host !== '-') t.host = host;
  return header(at === 'nil' ? reference : at, t, pri);
}

/**
 * One text line or socket frame. `reference` (when the line was read) dates BSD timestamps
 * and stands in for RFC 5424's nil timestamp.
 */
export function splitSyslogLine(
  line: string, reference: number, options: TimestampOptions = DEFAULT_TIMESTAMP_OPTIONS,
): SyslogHeader | null {
  let text = line;
  let last = text.charCodeAt(text.length - 1);
  if (last === 10) {
    text = text.slice(0, -1);
    last = text.charCodeAt(text.length - 1);
  }
  if (last === 13) text = text.slice(0, -1);
  const first = text.charCodeAt(0);
  if (first === 123) return parseJournalLine(text); // {
  if (first !== 60) return splitTraditional(text, reference, options); // not <
  const pri = /^<(\d{1,3})>/.exec(text);
  if (!pri) return splitTraditional(text, reference, options);
  const value = Number(pri[1]);
  if (value > 191) return null;
  const p = { facility: value >> 3, severity: value & 7 };
  text = text.slice(pri[0].length);
  if (text.startsWith('1 ')) return splitRfc5424(text, reference, p);
  return splitTraditional(text, reference, options, p);
}

function journalString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  // journald stores non-UTF-8 or binary fields as an array of byte values.
  if (Array.isArray(v) && v.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) {
    return Buffer.from(v as number[]).toString('utf8');
  }
  return null;
}

function journalInt(v: unknown): number | undefined {
  const s = journalString(v);
  return s !== null && /^\d{1,10}$/.test(s) ? Number(s) : undefined;
}

/** One `journalctl -o json` object. */
export function parseJournalEntry(entry: Record<string, unknown>): SyslogHeader | null {
  const message = journalString(entry.MESSAGE);
  const ident = journalString(entry.SYSLOG_IDENTIFIER) ?? journalString(entry._COMM);
  const realtime = journalString(entry.__REALTIME_TIMESTAMP);
  if (message === null || ident === null || realtime === null || !/^\d{1,20}$/.test(realtime)) return null;
  const t: Tagged = { program: basename(ident), message };
  const pid = journalInt(entry.SYSLOG_PID) ?? journalInt(entry._PID);
  if (pid !== undefined) t.pid = pid;
  const host = journalString(entry._HOSTNAME);
  if (host !== null) t.host = host;
  const facility = journalInt(entry.SYSLOG_FACILITY);
  const severity = journalInt(entry.PRIORITY);
  const h = header(Math.floor(Number(realtime) / 1000), t);
  return facility !== undefined || severity !== undefined
    ? { ...h, ...(facility !== undefined ? { facility } : {}), ...(severity !== undefined ? { severity } : {}) }
    : h;
}

function parseJournalLine(text: string): SyslogHeader | null {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    return null;
  }
  return obj !== null && typeof obj === 'object' && !Array.isArray(obj)
    ? parseJournalEntry(obj as Record<string, unknown>)
    : null;
}
