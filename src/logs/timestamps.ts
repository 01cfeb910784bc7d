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

/** Offset in minutes east of UTC for a fixed-offset setting, null for 'local', throws if invalid. */
export function parseZoneOffset(zone: TimeZoneSetting): number | null {
  if (zone === 'local') return null;
  if (zone === 'UTC' || zone === 'Z') return 0;
  const m = /^([+-])(\d{2}):?(\d{2})$/.exec(zone);
  if (!m) throw new Error(`invalid time zone setting: ${zone}`);
  const mins = Number(m[2]) * 60 + Number(m[3]);
  if (mins > 18 * 60 || Number(m[3]) > 59) throw new Error(`invalid time zone offset: ${zone}`);
  return m[1] === '-' ? -mins : mins;
}

/** Wall-clock fields to epoch ms in the given zone; null when the fields do not form a real date. */
function wallToEpoch(
  year: number, month: number, day: number, h: number, mi: number, s: number, ms: number,
  offsetMinutes: number | null,
): number | null {
  if (h > 23 || mi > 59 || s > 60 || day < 1 || day > 31) return null;
  const sec = Math.min(s, 59); // a leap second reads as :59
  let at: number;
  let check: Date;
  if (offsetMinutes === null) {
    const d = new Date(year, month, day, h, mi, sec, ms);
    check = d;
    at = d.getTime();
    if (d.getFullYear() !== year || d.getMonth() !== month || d.getDate() !== day) return null;
  } else {
    at = Date.UTC(year, month, day, h, mi, sec, ms);
    check = new Date(at);
    if (check.getUTCFullYear() !== year || check.getUTCMonth() !== month || check.getUTCDate() !== day) {
      return null;
    }
    at -= offsetMinutes * 60_000;
  }
  return Number.isFinite(at) ? at : null;
}

const BSD_RE = /^([A-Za-z]{3}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})$/;

const BSD_PREFIX_RE = /^[A-Za-z]{3} {1,2}\d{1,2} \d{2}:\d{2}:\d{2}(?= |$)/;

/** Length of the BSD timestamp at the start of `text`, or 0 when there is none. */
export function bsdTimestampLength(text: string): number {
  return BSD_PREFIX_RE.exec(text)?.[0].length ?? 0;
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
  for (const year of [refYear + 1, refYear, refYear - 1, refYear - 2, refYear - 3, refYear - 4]) {
    // Going back up to 4 years finds the last Feb 29.
    const at = wallToEpoch(year, month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]), 0, offset);
    if (at !== null && at <= limit) return at;
  }
  return null;
}

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
  let offset: number | null;
  if (m[8] === undefined) offset = parseZoneOffset(options.timeZone);
  else if (m[8] === 'Z' || m[8] === 'z') offset = 0;
  else {
    try {
      offset = parseZoneOffset(m[8]);
    } catch {
      return null;
    }
  }
  return wallToEpoch(
    Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), ms, offset,
  );
}

/** RFC 5424 TIMESTAMP field: RFC 3339 with a mandatory offset, or the nil value `-`. */
export function parseRfc5424Timestamp(text: string): number | null | 'nil' {
  if (text === '-') return 'nil';
  if (!/(?:[Zz]|[+-]\d{2}:\d{2})$/.test(text)) return null;
  return parseIsoTimestamp(text, { timeZone: 'UTC', futureToleranceSeconds: 0 });
}
