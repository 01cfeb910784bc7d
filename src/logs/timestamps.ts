/**
 * Timestamps as syslog writes them: BSD `Nov 25 17:35:00` (no year, no zone), ISO 8601 /
 * RFC 3339 as rsyslog's high-precision format and RFC 5424 headers write them.
 */

/** 'local' (this process's zone), 'UTC', or a fixed offset such as '+01:00' / '-0530'. */
export type TimeZoneSetting = string;

export interface TimestampOptions {
  /** Zone of BSD timestamps (and of ISO timestamps that carry no offset). */
  readonly timeZone: TimeZoneSetting;
  /**
   * A BSD date more than this far after the reference time belongs to the previous year
   * (December lines read in January). Seconds.
   */
  readonly futureToleranceSeconds: number;
}

export const DEFAULT_TIMESTAMP_OPTIONS: TimestampOptions = {
  timeZone: 'local',
  futureToleranceSeconds: 7 * 24 * 3600,
};

const MONTHS: Readonly<Record<string, number>> = {
  jan: 0, feb: 1, mar: 2, apr: 3, may: 4, jun: 5, jul: 6, aug: 7, sep: 8, oct: 9, nov: 10, dec: 11,
};

const ZONE_RE = /^([+-])(\d{2}):?(\d{2})$/;
/** Settings seen so far: a configured zone is one of a handful of strings. */
const zoneCache = new Map<string, number | null>();

/** Offset in minutes east of UTC for a fixed-offset setting, null for 'local', throws if invalid. */
export function parseZoneOffset(zone: TimeZoneSetting): number | null {
  const known = zoneCache.get(zone);
  if (known !== undefined) return known;
  let offset: number | null;
  if (zone === 'local') offset = null;
  else if (zone === 'UTC' || zone === 'Z') offset = 0;
  else {
    const m = ZONE_RE.exec(zone);
    if (!m) throw new Error(`invalid time zone setting: ${zone}`);
    const mins = Number(m[2]) * 60 + Number(m[3]);
    if (mins > 18 * 60 || Number(m[3]) > 59) throw new Error(`invalid time zone offset: ${zone}`);
    offset = m[1] === '-' ? -mins : mins;
  }
  if (zoneCache.size < 64) zoneCache.set(zone, offset);
  return offset;
}

/** Wall-clock fields to epoch ms in the given zone; null when the fields do not form a real date. */
function wallToEpoch(
  year: number, month: number, day: number, h: number, mi: number, s: number, ms: number,
  offsetMinutes: number | null,
): number | null {
  if (h > 23 || mi > 59 || s > 60 || day < 1 || day > 31) return null;
  const sec = Math.min(s, 59); // a leap second reads as :59
  let at: number;
  if (offsetMinutes === null) {
    const d = new Date(year, month, day, h, mi, sec, ms);
    at = d.getTime();
    if (d.getFullYear() !== year || d.getMonth() !== month || d.getDate() !== day) return null;
  } else {
    at = Date.UTC(year, month, day, h, mi, sec, ms);
    const check = new Date(at);
    if (check.getUTCFullYear() !== year || check.getUTCMonth() !== month || check.getUTCDate() !== day) {
      return null;
    }
    at -= offsetMinutes * 60_000;
  }
  return Number.isFinite(at) ? at : null;
}

const BSD_RE = /^([A-Za-z]{3}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})$/;

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isLetter(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

/**
 * Length of the BSD timestamp at the start of `text`, or 0 when there is none: three letters,
 * one or two blanks, a day of one or two digits, `HH:MM:SS`, then a blank or the end.
 */
export function bsdTimestampLength(text: string): number {
  if (!isLetter(text.charCodeAt(0)) || !isLetter(text.charCodeAt(1)) || !isLetter(text.charCodeAt(2))) return 0;
  if (text.charCodeAt(3) !== 32) return 0;
  let i = text.charCodeAt(4) === 32 ? 5 : 4;
  if (!isDigit(text.charCodeAt(i))) return 0;
  i++;
  if (isDigit(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== 32) return 0;
  const t = i + 1;
  if (
    !isDigit(text.charCodeAt(t)) || !isDigit(text.charCodeAt(t + 1)) || text.charCodeAt(t + 2) !== 58
    || !isDigit(text.charCodeAt(t + 3)) || !isDigit(text.charCodeAt(t + 4)) || text.charCodeAt(t + 5) !== 58
    || !isDigit(text.charCodeAt(t + 6)) || !isDigit(text.charCodeAt(t + 7))
  ) return 0;
  const end = t + 8;
  return end === text.length || text.charCodeAt(end) === 32 ? end : 0;
}

/**
 * `Nov 25 17:35:00` (also `Nov  5 …`). The year is the one that puts the date at or before
 * `reference` + tolerance, trying next year, this year and last year in that order, so a line
 * written a moment after New Year by a clock slightly ahead still lands in the new year.
 */
export function parseBsdTimestamp(
  text: string,
  reference: number,
  options: TimestampOptions = DEFAULT_TIMESTAMP_OPTIONS,
): number | null {
  const m = BSD_RE.exec(text);
  if (!m) return null;
  const month = MONTHS[m[1]!.toLowerCase()];
  if (month === undefined) return null;
  const offset = parseZoneOffset(options.timeZone);
  const refYear = offset === null
    ? new Date(reference).getFullYear()
    : new Date(reference + offset * 60_000).getUTCFullYear();
  const limit = reference + options.futureToleranceSeconds * 1000;
  for (let back = -1; back <= 4; back++) {
    // Going back up to 4 years finds the last Feb 29.
    const at = wallToEpoch(refYear - back, month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]), 0, offset);
    if (at !== null && at <= limit) return at;
  }
  return null;
}

/**
 * The BSD timestamp that `line` starts with (of `length` characters, from bsdTimestampLength),
 * dated as parseBsdTimestamp does. Consecutive lines mostly share their second: the last
 * timestamp text and its value are remembered, with the reference and options that dated it.
 */
export function leadingBsdTimestamp(
  line: string, length: number, reference: number, options: TimestampOptions,
): number | null {
  const c = bsdCache;
  if (
    length === c.text.length && c.reference === reference && c.timeZone === options.timeZone
    && c.tolerance === options.futureToleranceSeconds && line.startsWith(c.text)
  ) return c.at;
  const text = line.slice(0, length);
  const at = parseBsdTimestamp(text, reference, options);
  bsdCache = { text, reference, timeZone: options.timeZone, tolerance: options.futureToleranceSeconds, at };
  return at;
}

interface BsdCache {
  readonly text: string;
  readonly reference: number;
  readonly timeZone: string;
  readonly tolerance: number;
  readonly at: number | null;
}

let bsdCache: BsdCache = { text: '', reference: NaN, timeZone: '', tolerance: NaN, at: null };

const ISO_RE =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?([Zz]|[+-]\d{2}:?\d{2})?$/;

/**
 * ISO 8601 / RFC 3339 / RFC 5424 `2026-11-25T17:35:00.123456+01:00`. Fractions beyond
 * milliseconds are truncated. Without an offset the configured zone applies.
 */
export function parseIsoTimestamp(
  text: string,
  options: TimestampOptions = DEFAULT_TIMESTAMP_OPTIONS,
): number | null {
  const m = ISO_RE.exec(text);
  if (!m) return null;
  const ms = m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0;
  const offset = isoOffset(m[8], options);
  if (offset === undefined) return null;
  return wallToEpoch(
    Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), ms, offset,
  );
}

/** The offset an ISO timestamp's zone text stands for; undefined when it is no valid offset. */
function isoOffset(zone: string | undefined, options: TimestampOptions): number | null | undefined {
  if (zone === undefined) return parseZoneOffset(options.timeZone);
  if (zone === 'Z' || zone === 'z') return 0;
  try {
    return parseZoneOffset(zone);
  } catch {
    return undefined;
  }
}

function digits2(s: string, i: number): number {
  return (s.charCodeAt(i) - 48) * 10 + s.charCodeAt(i + 1) - 48;
}

interface IsoCache {
  /** `YYYY-MM-DDTHH:MM` */
  readonly minute: string;
  /** The zone text after the seconds and fraction (`Z`, `+01:00`, `` …). */
  readonly zone: string;
  readonly timeZone: string;
  /** Epoch ms of second 0 of that minute; seconds and fractions add linearly within it. */
  readonly at: number;
}

let isoCache: IsoCache = { minute: '', zone: '', timeZone: '', at: NaN };

/**
 * parseIsoTimestamp of `line.slice(0, end)`, without slicing when the line's minute and zone
 * are those of the last call: the value is that minute's start plus seconds and fraction.
 */
export function leadingIsoTimestamp(line: string, end: number, options: TimestampOptions): number | null {
  // Fixed layout up to the seconds: YYYY-MM-DDTHH:MM:SS (T or t; a blank ends the token).
  if (end < 19 || line.charCodeAt(16) !== 58) return parseIsoTimestamp(line.slice(0, end), options);
  for (const i of ISO_DIGITS) if (!isDigit(line.charCodeAt(i))) return null;
  let p = 19;
  let ms = 0;
  const sep = line.charCodeAt(p);
  if (sep === 46 || sep === 44) {
    // [.,] then 1 to 9 digits; milliseconds are the first three, padded.
    const from = ++p;
    while (p < end && isDigit(line.charCodeAt(p))) p++;
    const n = p - from;
    if (n < 1 || n > 9) return null;
    for (let k = 0; k < 3; k++) ms = ms * 10 + (k < n ? line.charCodeAt(from + k) - 48 : 0);
  }
  const zoneLen = end - p;
  const c = isoCache;
  if (
    c.timeZone === options.timeZone && zoneLen === c.zone.length && line.startsWith(c.minute)
    && (zoneLen === 0 || line.startsWith(c.zone, p))
  ) {
    const s = digits2(line, 17);
    if (s > 60) return null;
    return c.at + Math.min(s, 59) * 1000 + ms;
  }
  // Not the cached minute: validate the whole token as parseIsoTimestamp does.
  const token = line.slice(0, end);
  const full = parseIsoTimestamp(token, options);
  if (full === null) return null;
  const zone = line.slice(p, end);
  const offset = isoOffset(zone === '' ? undefined : zone, options);
  if (offset === undefined) return full;
  const y = Number(token.slice(0, 4));
  const mo = digits2(line, 5) - 1;
  const d = digits2(line, 8);
  const h = digits2(line, 11);
  const mi = digits2(line, 14);
  const at0 = wallToEpoch(y, mo, d, h, mi, 0, 0, offset);
  const at59 = wallToEpoch(y, mo, d, h, mi, 59, 0, offset);
  // Remember the minute only when it is linear (no zone transition inside it).
  if (at0 !== null && at59 !== null && at59 - at0 === 59_000 && line.charCodeAt(10) !== 32) {
    isoCache = { minute: line.slice(0, 16), zone, timeZone: options.timeZone, at: at0 };
  }
  return full;
}

const ISO_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];

/** RFC 5424 TIMESTAMP field: RFC 3339 with a mandatory offset, or the nil value `-`. */
export function parseRfc5424Timestamp(text: string): number | null | 'nil' {
  if (text === '-') return 'nil';
  if (!/(?:[Zz]|[+-]\d{2}:\d{2})$/.test(text)) return null;
  return parseIsoTimestamp(text, { timeZone: 'UTC', futureToleranceSeconds: 0 });
}
