/**
 * The proof behind failures: recent failure records per ban key (bounded in bytes, LRU), and the
 * index of recent attempt keys that lets a second source's report of the same attempt be merged
 * into the first one instead of counted again.
 */
import { LRUCache } from 'lru-cache';
import type { Evidence, FailureSource } from '../core/auth-failure.js';

/** One counted failure and everything that was learnt about it. Mutable: duplicates merge in. */
export interface FailureRecord {
  /** Milliseconds since the epoch. */
  at: number;
  service: string;
  user?: string;
  sources: FailureSource[];
  evidence: Evidence[];
  /** The attempt this record is, when the source said (duplicates are matched on it). */
  attemptKey?: string;
}

/** A record's evidence stops growing here (a handful of sources can describe one attempt). */
const MAX_EVIDENCE_PER_RECORD = 8;

export function recordOf(f: { at: number; service: string; user?: string; source: FailureSource; attemptKey?: string; evidence: readonly Evidence[] }): FailureRecord {
  const rec: FailureRecord = { at: f.at, service: f.service, sources: [f.source], evidence: f.evidence.slice(0, MAX_EVIDENCE_PER_RECORD) };
  if (f.user !== undefined) rec.user = f.user;
  if (f.attemptKey !== undefined) rec.attemptKey = f.attemptKey;
  return rec;
}

/** Folds a duplicate report of the same attempt into its first record. */
export function mergeInto(rec: FailureRecord, f: { user?: string; source: FailureSource; evidence: readonly Evidence[] }): void {
  if (!rec.sources.includes(f.source)) rec.sources.push(f.source);
  if (rec.user === undefined && f.user !== undefined) rec.user = f.user;
  for (const e of f.evidence) {
    if (rec.evidence.length >= MAX_EVIDENCE_PER_RECORD) break;
    if (!rec.evidence.some((x) => sameEvidence(x, e))) rec.evidence.push(e);
  }
}

function sameEvidence(a: Evidence, b: Evidence): boolean {
  if (a.kind === 'log' && b.kind === 'log') return a.line === b.line && a.origin === b.origin;
  if (a.kind === 'session' && b.kind === 'session') return a.queueId === b.queueId && a.clientAddress === b.clientAddress && a.at === b.at;
  return false;
}

/** Retained size of a record as measured on V8 (objects, arrays, string headers), plus its text. */
function recordBytes(rec: FailureRecord): number {
  let n = 200 + (rec.user?.length ?? 0) + (rec.attemptKey?.length ?? 0);
  for (const e of rec.evidence) n += 80 + (e.kind === 'log' ? e.line.length : e.clientAddress.length + (e.queueId?.length ?? 0));
  return n;
}

export class EvidenceStore {
  private readonly lru: LRUCache<string, FailureRecord[]>;

  /** `perKey`: records kept per key (the newest); may change on reload. */
  constructor(maxBytes: number, public perKey: number) {
    this.lru = new LRUCache<string, FailureRecord[]>({
      maxSize: maxBytes,
      sizeCalculation: (list) => list.reduce((n, r) => n + recordBytes(r), 120),
    });
  }

  add(key: string, rec: FailureRecord): void {
    const list = this.lru.get(key) ?? [];
    list.push(rec);
    if (list.length > this.perKey) list.splice(0, list.length - this.perKey);
    this.lru.set(key, list);
  }

  /** The key's records, oldest first, without touching LRU order. */
  peek(key: string): readonly FailureRecord[] {
    return this.lru.peek(key) ?? [];
  }

  /** Removes and returns the key's records (they move into a ban). */
  take(key: string): FailureRecord[] {
    const list = this.lru.peek(key) ?? [];
    this.lru.delete(key);
    return list;
  }

  delete(key: string): void {
    this.lru.delete(key);
  }
}

/** Where an attempt was counted: its ban key and when. */
export interface AttemptRef {
  readonly key: string;
  readonly at: number;
}

/**
 * Recent attempt keys and where each was first counted. It holds only a small reference (the
 * record itself lives in the evidence store or a ban), so its cap costs little memory. Entries
 * older than `ttlMs` (findtime) count as absent: a reused key after that is a new attempt.
 */
export class AttemptIndex {
  private readonly lru: LRUCache<string, AttemptRef>;

  /** `ttlMs` may change on reload. */
  constructor(max: number, public ttlMs: number) {
    this.lru = new LRUCache<string, AttemptRef>({ max });
  }

  find(attemptKey: string, atMs: number): AttemptRef | undefined {
    const ref = this.lru.get(attemptKey);
    if (ref === undefined) return undefined;
    if (Math.abs(atMs - ref.at) >= this.ttlMs) {
      this.lru.delete(attemptKey);
      return undefined;
    }
    return ref;
  }

  remember(attemptKey: string, ref: AttemptRef): void {
    this.lru.set(attemptKey, ref);
  }
}
