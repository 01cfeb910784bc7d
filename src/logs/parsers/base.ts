import { parseAddress } from '../../core/address.js';
import type { RecordBase } from '../records.js';
import type { SyslogHeader } from '../syslog-line.js';

/** A record under construction: the base fields, then the kind's own, in that order. */
export type Building<T> = { -readonly [K in keyof T]: T[K] };

/** The fields every record copies from its line's header, plus the kind: one object the parser completes. */
export function startRecord<T extends RecordBase & { kind: string }>(
  h: SyslogHeader, pattern: string, kind: T['kind'],
): Building<T> {
  const r = h.pid !== undefined
    ? { at: h.at, program: h.program, pid: h.pid, pattern, kind }
    : { at: h.at, program: h.program, pattern, kind };
  return r as Building<T>;
}

const ADDRESS_MEMO_MAX = 4096;
const addressMemo = new Map<string, string | null>();

/**
 * core/address parseAddress(text)?.text. The same few addresses fill a log (one attacker
 * fails many times), so the answers for recent texts are remembered; every text is still
 * validated by parseAddress the first time it is seen.
 */
export function canonicalAddress(text: string): string | null {
  const known = addressMemo.get(text);
  if (known !== undefined) return known;
  const parsed = parseAddress(text);
  const canonical = parsed ? parsed.text : null;
  if (addressMemo.size >= ADDRESS_MEMO_MAX) addressMemo.clear();
  addressMemo.set(text, canonical);
  return canonical;
}

/** JavaScript's `\s`: the ECMAScript white space and line terminator characters. */
export function isSpace(c: number): boolean {
  if (c <= 32) return c === 32 || (c >= 9 && c <= 13);
  if (c < 160) return false;
  return c === 160 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029
    || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

export function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

export function isAsciiLetter(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}
