/**
 * Distinct ban keys failing against each user name within findtime: the signal of a
 * distributed guess against one account, which no per-address count sees. Only reported,
 * never a reason to ban. Bounded: an LRU of users, each with at most `addressCap` keys.
 */
import { LRUCache } from 'lru-cache';

export interface UserUnderAttack {
  readonly user: string;
  /** Distinct keys within findtime (at most the cap). */
  readonly addresses: number;
  /** True when the count hit the per-user cap: the real number may be higher. */
  readonly saturated: boolean;
}

export interface UserTrackerOptions {
  /** Seconds. */
  readonly findtime: number;
  readonly threshold: number;
  readonly maxUsers: number;
  readonly addressCap: number;
}

export class UserTracker {
  /** user -> (key -> last failure, ms). Map order is refresh order, so the oldest come first. */
  private readonly users: LRUCache<string, Map<string, number>>;

  constructor(private opts: UserTrackerOptions) {
    this.users = new LRUCache<string, Map<string, number>>({ max: opts.maxUsers });
  }

  /** On reload: the window and threshold may change; the caps stay as built. */
  setWindow(findtime: number, threshold: number): void {
    this.opts = { ...this.opts, findtime, threshold };
  }

  add(user: string, key: string, atMs: number): void {
    let keys = this.users.get(user);
    if (!keys) {
      keys = new Map();
      this.users.set(user, keys);
    }
    keys.delete(key);
    keys.set(key, atMs);
    if (keys.size > this.opts.addressCap) keys.delete(keys.keys().next().value!);
  }

  /** Users at or over the threshold at `nowMs`, most attacked first; drops stale entries. */
  underAttack(nowMs: number): UserUnderAttack[] {
    const out: UserUnderAttack[] = [];
    const horizon = nowMs - this.opts.findtime * 1000;
    const emptied: string[] = [];
    for (const [user, keys] of this.users.entries()) {
      for (const [key, at] of keys) if (at <= horizon) keys.delete(key);
      if (keys.size === 0) emptied.push(user);
      else if (keys.size >= this.opts.threshold) {
        out.push({ user, addresses: keys.size, saturated: keys.size >= this.opts.addressCap });
      }
    }
    for (const user of emptied) this.users.delete(user);
    return out.sort((a, b) => b.addresses - a.addresses || (a.user < b.user ? -1 : 1));
  }

  get size(): number {
    return this.users.size;
  }
}
