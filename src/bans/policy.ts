/**
 * Ban policy: options, their validation, and the pure decisions the engine asks of them
 * (which key an address counts under, whether it may be banned at all, how long the nth ban lasts).
 */
import { CidrSet, banKey, isLoopback, parseAddress, parseCidr, type ParsedAddress } from '../core/address.js';

export interface BanPolicyOptions {
  /** Sliding window for counting failures, seconds. */
  readonly findtime: number;
  /** The maxretry-th failure inside findtime bans. */
  readonly maxretry: number;
  /** Length of a first ban, seconds. */
  readonly bantime: number;
  /** The nth ban of a key lasts bantime * bantimeFactor^(n-1) ... */
  readonly bantimeFactor: number;
  /** ... capped at this many seconds. */
  readonly bantimeMax: number;
  /** How long after its last ban ended a key's ban count is remembered, seconds. */
  readonly offenderMemory: number;
  /** IPv6 clients are counted and banned by their enclosing /ipv6Prefix network. */
  readonly ipv6Prefix: number;
  /** Addresses or CIDRs (v4 and v6) never counted nor banned. */
  readonly ignore: readonly string[];
  /** Loopback clients are never banned unless this is true. */
  readonly banLoopback: boolean;
  /** Log "would ban" and change nothing (automatic bans only; manual bans still apply). */
  readonly dryRun: boolean;
  /** Cap on keys with failures being counted (LRU); banned keys do not count against it. */
  readonly maxTracked: number;
  /** Cap on remembered attempt keys for duplicate-source suppression. */
  readonly maxAttemptKeys: number;
  /** Byte budget (approximate) for the recent-failure evidence kept for not-yet-banned keys. */
  readonly evidenceMaxBytes: number;
  /** A user failed against from this many distinct keys within findtime is "under attack". */
  readonly userThreshold: number;
  /** Cap on user names tracked for the under-attack signal (LRU). */
  readonly maxTrackedUsers: number;
  /** Cap on distinct keys remembered per user; counts saturate there. */
  readonly userAddressCap: number;
  /** Cap on keys whose ban history is remembered. */
  readonly maxOffenders: number;
}

export const DEFAULT_BAN_POLICY: BanPolicyOptions = {
  findtime: 600,
  maxretry: 5,
  bantime: 600,
  bantimeFactor: 2,
  bantimeMax: 604_800,
  offenderMemory: 7 * 86_400,
  ipv6Prefix: 64,
  ignore: [],
  banLoopback: false,
  dryRun: false,
  maxTracked: 1_000_000,
  maxAttemptKeys: 50_000,
  evidenceMaxBytes: 4 * 1024 * 1024,
  userThreshold: 10,
  maxTrackedUsers: 5_000,
  userAddressCap: 100,
  maxOffenders: 1_000_000,
};

/** Validated options plus the parsed network sets the checks need. */
export interface BanPolicy extends BanPolicyOptions {
  readonly ignoreSet: CidrSet;
  readonly ownSet: CidrSet;
}

export type ExemptReason = 'ignored' | 'loopback' | 'own';

/** The widest IPv6 network a ban key can be (the lower bound of ipv6Prefix). */
export const MIN_V6_KEY_PREFIX = 32;

type NumberRule = { readonly min: number; readonly max?: number; readonly integer: boolean };

const NUMBER_RULES: Record<string, NumberRule> = {
  findtime: { min: 1, integer: true },
  maxretry: { min: 1, integer: true },
  bantime: { min: 1, integer: true },
  bantimeFactor: { min: 1, integer: false },
  bantimeMax: { min: 1, integer: true },
  offenderMemory: { min: 0, integer: true },
  ipv6Prefix: { min: MIN_V6_KEY_PREFIX, max: 128, integer: true },
  maxTracked: { min: 1, integer: true },
  maxAttemptKeys: { min: 1, integer: true },
  evidenceMaxBytes: { min: 1024, integer: true },
  userThreshold: { min: 1, integer: true },
  maxTrackedUsers: { min: 1, integer: true },
  userAddressCap: { min: 1, integer: true },
  maxOffenders: { min: 1, integer: true },
};

/**
 * Merges `options` over the defaults and validates every key; throws an Error naming the
 * offending key. `ownAddresses` are the daemon's own listen addresses: never banned.
 */
export function compileBanPolicy(options: Partial<BanPolicyOptions> = {}, ownAddresses: readonly string[] = []): BanPolicy {
  for (const key of Object.keys(options)) {
    if (!(key in DEFAULT_BAN_POLICY)) throw new Error(`ban policy: unknown option "${key}"`);
  }
  const merged: BanPolicyOptions = { ...DEFAULT_BAN_POLICY, ...options };
  for (const [key, rule] of Object.entries(NUMBER_RULES)) {
    const v = (merged as unknown as Record<string, unknown>)[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`ban policy: "${key}" must be a number, got ${JSON.stringify(v)}`);
    if (rule.integer && !Number.isInteger(v)) throw new Error(`ban policy: "${key}" must be an integer, got ${v}`);
    if (v < rule.min) throw new Error(`ban policy: "${key}" must be >= ${rule.min}, got ${v}`);
    if (rule.max !== undefined && v > rule.max) throw new Error(`ban policy: "${key}" must be <= ${rule.max}, got ${v}`);
  }
  if (merged.bantimeMax < merged.bantime) {
    throw new Error(`ban policy: "bantimeMax" (${merged.bantimeMax}) must be >= "bantime" (${merged.bantime})`);
  }
  for (const key of ['banLoopback', 'dryRun'] as const) {
    if (typeof merged[key] !== 'boolean') throw new Error(`ban policy: "${key}" must be true or false`);
  }
  if (!Array.isArray(merged.ignore)) throw new Error('ban policy: "ignore" must be a list of addresses or CIDRs');
  const ignoreSet = CidrSet.parse(merged.ignore, 'ban policy: ignore');
  const ownSet = CidrSet.parse(ownAddresses, 'ban policy: own address ');
  return { ...merged, ignore: [...merged.ignore], ignoreSet, ownSet };
}

/** Why an address must never be counted or banned, or null when it may be. */
export function exemptReason(policy: BanPolicy, addr: ParsedAddress): ExemptReason | null {
  if (!policy.banLoopback && isLoopback(addr)) return 'loopback';
  if (policy.ownSet.size > 0 && policy.ownSet.contains(addr)) return 'own';
  if (policy.ignoreSet.size > 0 && policy.ignoreSet.contains(addr)) return 'ignored';
  return null;
}

/**
 * The key `addr` is counted and banned under: its /ipv6Prefix network for IPv6, except where
 * that network holds an ignored or own address, which a ban of the network would cover: there
 * each address counts on its own.
 */
export function keyOf(policy: BanPolicy, addr: ParsedAddress): string {
  const key = banKey(addr, policy.ipv6Prefix);
  if (addr.family === 4 || policy.ipv6Prefix >= 128 || (policy.ignoreSet.size === 0 && policy.ownSet.size === 0)) return key;
  const net = parseCidr(key)!;
  return policy.ignoreSet.overlaps(net) || policy.ownSet.overlaps(net) ? banKey(addr, 128) : key;
}

/**
 * Resolves what an operator typed (`ban 2001:db8::7`, `unban 2001:db8::/64`) to a ban key:
 * an address maps to its key; a network is accepted only when it is exactly a key's shape.
 */
export function targetKey(policy: BanPolicy, target: string): { key: string; addr: ParsedAddress } | { error: string } {
  const text = target.trim();
  if (!text.includes('/')) {
    const addr = parseAddress(text);
    return addr ? { key: keyOf(policy, addr), addr } : { error: `not an address: ${JSON.stringify(target)}` };
  }
  const net = parseCidr(text);
  if (!net) return { error: `not an address or CIDR: ${JSON.stringify(target)}` };
  const wanted = net.family === 4 ? 32 : policy.ipv6Prefix;
  if (net.prefix !== wanted) {
    return { error: `only single addresses${net.family === 6 ? ` or /${wanted} networks` : ''} can be banned, got ${net.text}` };
  }
  const addr = parseAddress(net.text.slice(0, net.text.indexOf('/')))!;
  const key = keyOf(policy, addr);
  if (net.family === 6 && net.prefix < 128 && key !== net.text) return { error: `${net.text} holds an ignored or own address (bans.ignore, milter.listen): ban single addresses in it` };
  return { key, addr };
}

/** The longest ban an operator can ask for (and the ceiling of bantimeMax in the config). */
export const MAX_BAN_SECONDS = 10 * 365 * 86_400;

/** Why `seconds` is not a ban length an operator may ask for, or null (null itself: no end). */
export function banLengthProblem(seconds: unknown): string | null {
  if (seconds === null) return null;
  return Number.isSafeInteger(seconds) && (seconds as number) > 0 && (seconds as number) <= MAX_BAN_SECONDS
    ? null
    : `a ban length is a whole number of seconds from 1 to ${MAX_BAN_SECONDS} (10 years)`;
}

/** Seconds the nth (1-based) ban of a key lasts: bantime * factor^(n-1), capped at bantimeMax. */
export function banSeconds(policy: Pick<BanPolicyOptions, 'bantime' | 'bantimeFactor' | 'bantimeMax'>, n: number): number {
  const raw = policy.bantime * Math.pow(policy.bantimeFactor, Math.max(0, n - 1));
  return Math.min(Math.round(raw), policy.bantimeMax);
}
