/**
 * Active bans by key. The milter asks it at every connect, so a lookup is one Map probe for
 * IPv4; IPv6 needs a parse and a mask, which a small address -> key cache spares the clients
 * that come back (a banned host retrying).
 */
import { parseAddress, type ParsedAddress } from '../core/address.js';
import type { FailureRecord } from './evidence-store.js';

export type BanReason = 'maxretry' | 'manual';

export interface BanRecord {
  /** The ban key: an IPv4 address, or an IPv6 network `x::/prefix` (an address at /128). */
  readonly target: string;
  readonly family: 4 | 6;
  readonly reason: BanReason;
  /** This is the key's nth ban (within offender memory). */
  readonly count: number;
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
  /** Milliseconds since the epoch; null for a ban without end. */
  readonly expiresAt: number | null;
  /** The failures that caused it, oldest first (bounded). */
  readonly evidence: FailureRecord[];
  /** Manual bans: who asked and why. */
  readonly by?: string;
  readonly why?: string;
}

/** Entries of the IPv6 address -> key cache; emptied when full or when the keying changes. */
const V6_KEY_CACHE_SIZE = 16_384;

export class BanTable {
  private readonly bans = new Map<string, BanRecord>();
  private readonly v6Keys = new Map<string, string>();
  private readonly perFamily = { 4: 0, 6: 0 };
  /** Earliest expiry among the bans (Infinity when none): lets expiry skip the scan until then. */
  private nextExpiry = Infinity;

  /** `keyOf` maps a client address to its ban key (the policy's: it may change on reload, see clearKeyCache). */
  constructor(private readonly keyOf: (addr: ParsedAddress) => string) {}

  /** The policy's keying changed (ignore list, own addresses): cached keys may be stale. */
  clearKeyCache(): void {
    this.v6Keys.clear();
  }

  set(rec: BanRecord): void {
    const old = this.bans.get(rec.target);
    if (old) this.perFamily[old.family]--;
    this.bans.set(rec.target, rec);
    this.perFamily[rec.family]++;
    if (rec.expiresAt !== null && rec.expiresAt < this.nextExpiry) this.nextExpiry = rec.expiresAt;
  }

  get(key: string): BanRecord | undefined {
    return this.bans.get(key);
  }

  delete(key: string): BanRecord | undefined {
    const old = this.bans.get(key);
    if (!old) return undefined;
    this.bans.delete(key);
    this.perFamily[old.family]--;
    return old;
  }

  /**
   * The ban covering a canonical client address (as ConnectInfo.address carries it), expired or
   * not. IPv4 text is its own key; only IPv6 pays for a parse.
   */
  lookup(address: string): BanRecord | undefined {
    if (this.bans.size === 0) return undefined;
    if (!address.includes(':')) return this.bans.get(address);
    let key = this.v6Keys.get(address);
    if (key === undefined) {
      const addr = parseAddress(address);
      if (!addr) return undefined;
      key = this.keyOf(addr);
      if (this.v6Keys.size >= V6_KEY_CACHE_SIZE) this.v6Keys.clear();
      this.v6Keys.set(address, key);
    }
    return this.bans.get(key);
  }

  /** Removes and returns the bans whose end is at or before `nowMs`. */
  expire(nowMs: number): BanRecord[] {
    if (nowMs < this.nextExpiry) return [];
    const out: BanRecord[] = [];
    let next = Infinity;
    for (const rec of this.bans.values()) {
      if (rec.expiresAt === null) continue;
      if (rec.expiresAt <= nowMs) out.push(rec);
      else if (rec.expiresAt < next) next = rec.expiresAt;
    }
    for (const rec of out) this.delete(rec.target);
    this.nextExpiry = next;
    return out;
  }

  values(): IterableIterator<BanRecord> {
    return this.bans.values();
  }

  get size(): number {
    return this.bans.size;
  }

  countByFamily(family: 4 | 6): number {
    return this.perFamily[family];
  }
}
