import type { Family } from '../core/address.js';
import type { BanEntry, FirewallBackend } from './backend.js';
import { CommandBackend, type BackendDeps } from './deps.js';
import { canonicalTarget, remainingSeconds, validEntries } from './entries.js';
import type { FirewallOp } from './metrics.js';
import type { FirewallOptions } from './options.js';

/** Kernels that keep set timeouts in 32-bit milliseconds cap them here (about 49.7 days). */
export const NFT_MAX_TIMEOUT = 4_294_967;

/** Which set a target lives in: hosts in one per family, networks in one per family and length. */
interface SetKey {
  readonly family: Family;
  readonly len: number;
}

const hostLen = (f: Family) => (f === 4 ? 32 : 128);

function keyOf(e: BanEntry): SetKey {
  const slash = e.target.indexOf('/');
  return { family: e.family, len: slash < 0 ? hostLen(e.family) : Number(e.target.slice(slash + 1)) };
}

/** The set element: the address, or the network address of a prefix. */
function elementOf(e: BanEntry): string {
  const slash = e.target.indexOf('/');
  return slash < 0 ? e.target : e.target.slice(0, slash);
}

/** Netmask text nft accepts: dotted quad, or eight uncompressed hex groups. */
export function maskText(family: Family, len: number): string {
  const bits = (i: number, width: number) => Math.max(0, Math.min(width, len - i * width));
  if (family === 4) return [0, 1, 2, 3].map((i) => (0xff << (8 - bits(i, 8))) & 0xff).join('.');
  return Array.from({ length: 8 }, (_, i) => ((0xffff << (16 - bits(i, 16))) & 0xffff).toString(16)).join(':');
}

/**
 * An `inet` table of authban's own, sets with `flags timeout` (the kernel ends each ban) and one
 * rule per set in an input-hook chain; every change is one `nft -f -` transaction on stdin.
 *
 * No `interval` sets: nft 1.0.6 deletes interval elements in quadratic time (10,000 deletions
 * took 88 s here, 2,000 took 2.4 s), and refreshing a timeout needs a delete. Networks go
 * instead into plain hash sets of network addresses, one per family and prefix length, looked
 * up with the source masked (`ip6 saddr & ffff:ffff:ffff:ffff:: @authban6_64`): with the
 * engine's single IPv6 ban prefix that is one extra set and rule per family.
 */
export class NftablesBackend extends CommandBackend implements FirewallBackend {
  readonly name = 'nftables';
  /** Network sets (and their rules) present in the table since start. */
  private readonly netSets = new Set<string>();

  constructor(opts: FirewallOptions, deps: BackendDeps) {
    super('nftables', opts, deps);
  }

  setName(k: SetKey): string {
    return k.len === hostLen(k.family) ? `${this.opts.set}${k.family}` : `${this.opts.set}${k.family}_${k.len}`;
  }

  /**
   * `add table` + `delete table` + the full table, in one transaction: whatever was there (an
   * older layout, stale or expired elements) is replaced atomically, with no unprotected gap
   * and no duplicate, and a missing table is no error.
   */
  async start(restore: readonly BanEntry[]): Promise<void> {
    const now = this.now();
    const groups = this.group(validEntries(restore, this.log, this.metrics));
    const keys: SetKey[] = [{ family: 4, len: 32 }, { family: 6, len: 128 }];
    for (const k of groups.values()) if (k.key.len !== hostLen(k.key.family)) keys.push(k.key);
    const t = this.opts.table;
    const lines = [
      `add table inet ${t}`,
      `delete table inet ${t}`,
      `table inet ${t} {`,
      ...keys.map((k) => `  set ${this.setName(k)} { type ipv${k.family}_addr; flags timeout; }`),
      `  chain input {`,
      `    type filter hook input priority ${this.opts.nftPriority}; policy accept;`,
      ...keys.flatMap((k) => this.rules(k)).map((r) => `    ${r}`),
      `  }`,
      `}`,
    ];
    for (const [name, g] of groups) {
      const elems = this.elements(g.entries, now, true);
      if (elems.length > 0) lines.push(`add element inet ${t} ${name} { ${elems.join(', ')} }`);
    }
    await this.apply('start', lines);
    this.netSets.clear();
    for (const k of keys) if (k.len !== hostLen(k.family)) this.netSets.add(this.setName(k));
  }

  /**
   * nft 1.0.6 has no "add or replace": add (a no-op if present), delete, add again, in one
   * transaction, so a re-ban refreshes the timeout and nothing fails on a missing element.
   * A prefix length not seen before gets its set and rule in the same transaction.
   */
  async banMany(entries: readonly BanEntry[]): Promise<void> {
    const now = this.now();
    const lines: string[] = [];
    const created: string[] = [];
    for (const [name, g] of this.group(validEntries(entries, this.log, this.metrics))) {
      const timed = this.elements(g.entries, now, true);
      if (timed.length === 0) continue;
      const set = `inet ${this.opts.table} ${name}`;
      if (g.key.len !== hostLen(g.key.family) && !this.netSets.has(name)) {
        lines.push(`add set ${set} { type ipv${g.key.family}_addr; flags timeout; }`);
        lines.push(...this.rules(g.key).map((r) => `add rule inet ${this.opts.table} input ${r}`));
        created.push(name);
      }
      const bare = this.elements(g.entries, now, false).join(', ');
      lines.push(`add element ${set} { ${bare} }`, `delete element ${set} { ${bare} }`, `add element ${set} { ${timed.join(', ')} }`);
    }
    if (lines.length === 0) return;
    await this.apply('ban', lines);
    for (const name of created) this.netSets.add(name);
  }

  /** Add-then-delete: the kernel may already have expired the element. */
  async unbanMany(entries: readonly BanEntry[]): Promise<void> {
    const lines: string[] = [];
    for (const [name, g] of this.group(validEntries(entries, this.log, this.metrics))) {
      // No set for that prefix length: nothing of it can be banned.
      if (g.key.len !== hostLen(g.key.family) && !this.netSets.has(name)) continue;
      const set = `inet ${this.opts.table} ${name}`;
      const list = g.entries.map(elementOf).join(', ');
      lines.push(`add element ${set} { ${list} }`, `delete element ${set} { ${list} }`);
    }
    if (lines.length > 0) await this.apply('unban', lines);
  }

  async list(): Promise<BanEntry[]> {
    const now = this.now();
    const res = await this.runner.once('list', ['nft', '-j', 'list', 'table', 'inet', this.opts.table]);
    if (res.code !== 0) return [];
    const names = new RegExp(`^${this.opts.set}([46])(?:_(\\d+))?$`);
    const out: BanEntry[] = [];
    for (const set of parseNftSets(res.stdout)) {
      const m = names.exec(set.name);
      if (!m) continue;
      const family = m[1] === '4' ? 4 : 6;
      for (const el of set.elems) {
        const c = canonicalTarget(m[2] ? `${el.value}/${m[2]}` : el.value);
        if (!c || c.family !== family) continue;
        out.push({ target: c.target, family, expiresAt: el.expires !== null ? now + el.expires * 1000 : null });
      }
    }
    return out;
  }

  async stop(mode: 'flush' | 'keep' = this.opts.onStop): Promise<void> {
    if (mode !== 'flush') return;
    await this.apply('stop', [`add table inet ${this.opts.table}`, `delete table inet ${this.opts.table}`]);
    this.netSets.clear();
  }

  private group(entries: readonly BanEntry[]): Map<string, { key: SetKey; entries: BanEntry[] }> {
    const out = new Map<string, { key: SetKey; entries: BanEntry[] }>();
    for (const e of entries) {
      const key = keyOf(e);
      const name = this.setName(key);
      const g = out.get(name) ?? { key, entries: [] };
      g.entries.push(e);
      out.set(name, g);
    }
    return out;
  }

  private rules(k: SetKey): string[] {
    const proto = k.family === 4 ? 'ip' : 'ip6';
    const mask = k.len === hostLen(k.family) ? '' : ` & ${maskText(k.family, k.len)}`;
    const match = `${proto} saddr${mask} @${this.setName(k)}`;
    const ports = this.opts.ports;
    if (ports.length > 0) {
      const verdict = this.opts.action === 'drop' ? 'drop' : 'reject with tcp reset';
      return [`${match} tcp dport { ${ports.join(', ')} } ${verdict}`];
    }
    if (this.opts.action === 'drop') return [`${match} drop`];
    // A TCP reset only exists for TCP; other protocols get ICMP port unreachable.
    return [`${match} meta l4proto tcp reject with tcp reset`, `${match} reject`];
  }

  private elements(entries: readonly BanEntry[], now: number, withTimeout: boolean): string[] {
    const out: string[] = [];
    for (const e of entries) {
      const secs = remainingSeconds(e, now, NFT_MAX_TIMEOUT);
      if (secs === null) continue;
      out.push(withTimeout && secs > 0 ? `${elementOf(e)} timeout ${secs}s` : elementOf(e));
    }
    return out;
  }

  private async apply(op: FirewallOp, lines: readonly string[]): Promise<void> {
    await this.runner.run(op, ['nft', '-f', '-'], `${lines.join('\n')}\n`);
  }
}

type NftVal = string | { prefix?: { addr?: unknown; len?: unknown } };
interface NftElem {
  elem?: { val?: NftVal; expires?: unknown };
}

export interface NftSetDump {
  readonly name: string;
  /** Element text (address, or `addr/len` for a prefix) and seconds left, null without timeout. */
  readonly elems: { value: string; expires: number | null }[];
}

/** The sets and their elements in `nft -j list table|set …` output. */
export function parseNftSets(text: string): NftSetDump[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return [];
  }
  const items = (doc as { nftables?: unknown[] }).nftables;
  if (!Array.isArray(items)) return [];
  const out: NftSetDump[] = [];
  for (const item of items) {
    const set = (item as { set?: { name?: unknown; elem?: unknown[] } }).set;
    if (!set || typeof set.name !== 'string') continue;
    const elems: NftSetDump['elems'] = [];
    for (const raw of (Array.isArray(set.elem) ? set.elem : []) as (NftVal & NftElem)[]) {
      const wrapped = typeof raw === 'object' && raw !== null && 'elem' in raw ? raw.elem : undefined;
      const val = wrapped ? wrapped.val : (raw as NftVal);
      const value = typeof val === 'string' ? val : val?.prefix ? `${String(val.prefix.addr)}/${String(val.prefix.len)}` : null;
      if (value === null) continue;
      elems.push({ value, expires: typeof wrapped?.expires === 'number' ? wrapped.expires : null });
    }
    out.push({ name: set.name, elems });
  }
  return out;
}
