/**
 * The on-disk shapes of ban state (snapshot and journal lines), their validation, and the
 * reducer that replays journal operations. Pure: no I/O. Operations carry absolute values, so
 * replaying one twice (a crash between snapshot and journal truncation) changes nothing.
 */
import { parseCidr } from '../core/address.js';
import { canonicalTarget } from '../enforce/entries.js';
import { MIN_V6_KEY_PREFIX } from './policy.js';
import type { BanReason, BanRecord } from './ban-table.js';
import type { FailureRecord } from './evidence-store.js';

export const STATE_VERSION = 1;

/** A key's ban history: how many bans, and when the last one ended (null: it has no end). */
export interface OffenderRecord {
  readonly count: number;
  readonly lastEnd: number | null;
}

export interface BanState {
  readonly bans: Map<string, BanRecord>;
  readonly offenders: Map<string, OffenderRecord>;
}

export type JournalOp =
  | { readonly op: 'ban'; readonly ban: BanRecord }
  /** Manual unban: the ban and the key's history are forgotten. */
  | { readonly op: 'unban'; readonly target: string; readonly at: number };

export function emptyState(): BanState {
  return { bans: new Map(), offenders: new Map() };
}

export function applyOp(state: BanState, op: JournalOp): void {
  if (op.op === 'ban') {
    state.bans.set(op.ban.target, op.ban);
    state.offenders.set(op.ban.target, { count: op.ban.count, lastEnd: op.ban.expiresAt });
  } else {
    state.bans.delete(op.target);
    state.offenders.delete(op.target);
  }
}

export function encodeOp(op: JournalOp): string {
  return JSON.stringify(op) + '\n';
}

export function encodeSnapshot(state: BanState, savedAt: number): string {
  return JSON.stringify({
    version: STATE_VERSION,
    savedAt,
    bans: [...state.bans.values()],
    offenders: [...state.offenders].map(([key, o]) => [key, o.count, o.lastEnd]),
  }) + '\n';
}

/** Thrown with a path-like location (`bans[3].expiresAt`) and what was wrong there. */
export class ShapeError extends Error {}

/**
 * Decodes a snapshot. Throws ShapeError when the whole file is unusable; entries that are bad
 * on their own are skipped and described in `problems`.
 */
export function decodeSnapshot(text: string): { state: BanState; problems: string[] } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ShapeError(`not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(doc)) throw new ShapeError('top level is not an object');
  if (doc.version !== STATE_VERSION) throw new ShapeError(`unsupported version ${JSON.stringify(doc.version)} (expected ${STATE_VERSION})`);
  if (!Array.isArray(doc.bans)) throw new ShapeError('"bans" is not a list');
  if (!Array.isArray(doc.offenders)) throw new ShapeError('"offenders" is not a list');
  const state = emptyState();
  const problems: string[] = [];
  doc.bans.forEach((b, i) => {
    try {
      const ban = checkBan(b, `bans[${i}]`);
      state.bans.set(ban.target, ban);
    } catch (e) {
      problems.push((e as Error).message);
    }
  });
  doc.offenders.forEach((o, i) => {
    const where = `offenders[${i}]`;
    if (!Array.isArray(o) || o.length !== 3 || typeof o[0] !== 'string' || !isCount(o[1]) || !isTimeOrNull(o[2])) {
      problems.push(`${where}: expected [key, count, lastEnd]`);
      return;
    }
    state.offenders.set(o[0], { count: o[1], lastEnd: o[2] });
  });
  return { state, problems };
}

/** Decodes one journal line; throws ShapeError saying what is wrong with it. */
export function decodeOp(line: string): JournalOp {
  let doc: unknown;
  try {
    doc = JSON.parse(line);
  } catch (e) {
    throw new ShapeError(`not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(doc)) throw new ShapeError('not an object');
  if (doc.op === 'ban') return { op: 'ban', ban: checkBan(doc.ban, 'ban') };
  if (doc.op === 'unban') {
    if (!isTarget(doc.target)) throw new ShapeError(`target: not an address or network: ${JSON.stringify(doc.target)}`);
    if (!isTime(doc.at)) throw new ShapeError('at: expected a time in ms');
    return { op: 'unban', target: doc.target, at: doc.at };
  }
  throw new ShapeError(`unknown op ${JSON.stringify(doc.op)}`);
}

const REASONS: readonly BanReason[] = ['maxretry', 'manual'];

function checkBan(b: unknown, where: string): BanRecord {
  if (!isObject(b)) throw new ShapeError(`${where}: not an object`);
  if (!isTarget(b.target)) throw new ShapeError(`${where}.target: not an address or network: ${JSON.stringify(b.target)}`);
  if (b.family !== 4 && b.family !== 6) throw new ShapeError(`${where}.family: expected 4 or 6`);
  const keyProblem = banKeyProblem(b.target, b.family);
  if (keyProblem) throw new ShapeError(`${where}.target: ${keyProblem}: ${JSON.stringify(b.target)}`);
  if (!REASONS.includes(b.reason as BanReason)) throw new ShapeError(`${where}.reason: expected one of ${REASONS.join(', ')}`);
  if (!isCount(b.count)) throw new ShapeError(`${where}.count: expected a positive integer`);
  if (!isTime(b.createdAt)) throw new ShapeError(`${where}.createdAt: expected a time in ms`);
  if (!isTimeOrNull(b.expiresAt)) throw new ShapeError(`${where}.expiresAt: expected a time in ms or null`);
  if (!Array.isArray(b.evidence) || !b.evidence.every(isFailureRecord)) throw new ShapeError(`${where}.evidence: expected a list of failure records`);
  if (b.by !== undefined && typeof b.by !== 'string') throw new ShapeError(`${where}.by: expected text`);
  if (b.why !== undefined && typeof b.why !== 'string') throw new ShapeError(`${where}.why: expected text`);
  return b as unknown as BanRecord;
}

function isFailureRecord(r: unknown): r is FailureRecord {
  return (
    isObject(r) &&
    isTime(r.at) &&
    typeof r.service === 'string' &&
    (r.user === undefined || typeof r.user === 'string') &&
    Array.isArray(r.sources) &&
    r.sources.every((s) => typeof s === 'string') &&
    Array.isArray(r.evidence) &&
    r.evidence.every((e) => isObject(e) && (e.kind === 'log' || e.kind === 'session') && isTime(e.at))
  );
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Why `target` is not a ban key the engine could have written, or null: a key is canonical
 * text of its family, a single IPv4 address, or an IPv6 address or network no wider than
 * MIN_V6_KEY_PREFIX. A state file is not trusted to be that: a `0.0.0.0/0` in it would reach
 * the firewall and block every client.
 */
function banKeyProblem(target: string, family: 4 | 6): string | null {
  const c = canonicalTarget(target);
  if (!c || c.target !== target) return 'not in canonical form';
  if (c.family !== family) return `not an IPv${family} address or network`;
  const slash = target.indexOf('/');
  if (slash < 0) return null;
  if (family === 4) return 'an IPv4 ban is one address, not a network';
  return Number(target.slice(slash + 1)) < MIN_V6_KEY_PREFIX ? `an IPv6 ban is at most a /${MIN_V6_KEY_PREFIX}` : null;
}

function isTarget(v: unknown): v is string {
  return typeof v === 'string' && parseCidr(v) !== null;
}

function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}

function isTimeOrNull(v: unknown): v is number | null {
  return v === null || isTime(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1;
}
