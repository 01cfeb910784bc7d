/** Firewall enforcement options, as the config file's `firewall` section carries them. */

export type FirewallBackendName = 'none' | 'iptables' | 'ipset' | 'nftables';
export type FirewallAction = 'reject' | 'drop';

export interface FirewallOptions {
  readonly backend: FirewallBackendName;
  /** Destination TCP ports the ban applies to; empty means every port and protocol. */
  readonly ports: readonly number[];
  /** reject answers TCP with a reset (the client gives up at once); drop leaves it to time out. */
  readonly action: FirewallAction;
  /** iptables/ipset: authban's own chain; `<chain>-act` holds the action. Never `f2b-*`. */
  readonly chain: string;
  /** ipset: sets `<set>4` and `<set>6`; nftables: set names inside the table. */
  readonly set: string;
  /** nftables: the `inet` table authban owns. */
  readonly table: string;
  /** ipset: largest number of entries a set holds. */
  readonly maxelem: number;
  /**
   * nftables: input hook priority. One below `filter` (0) so a banned packet is dropped before
   * the host's own filter chains spend conntrack/logging work on it; an accept elsewhere can
   * never undo a drop here, so this is about cost and log noise, not correctness.
   */
  readonly nftPriority: number;
  /** keep leaves the rules in place so the host stays protected while authban restarts. */
  readonly onStop: 'flush' | 'keep';
  /** iptables only (no kernel timeouts): how often expired rules are removed. */
  readonly expirySweepMs: number;
  readonly commandTimeoutMs: number;
  /** Attempts per command, including the first; back-off doubles from retryBaseMs. */
  readonly commandAttempts: number;
  readonly retryBaseMs: number;
}

export const DEFAULT_FIREWALL_OPTIONS: FirewallOptions = {
  backend: 'none',
  ports: [25, 465, 587],
  action: 'reject',
  chain: 'authban',
  set: 'authban',
  table: 'authban',
  maxelem: 65536,
  nftPriority: -1,
  onStop: 'keep',
  expirySweepMs: 1000,
  commandTimeoutMs: 10_000,
  commandAttempts: 3,
  retryBaseMs: 200,
};

// Names end up as command arguments and in restore scripts: keep them to plain identifiers.
const NAME_RE = /^[A-Za-z][A-Za-z0-9_-]*$/;

/** Throws with every problem found, so a bad config fails at load, not at the first ban. */
export function validateFirewallOptions(o: FirewallOptions): FirewallOptions {
  const problems: string[] = [];
  // xtables chain names hold 28 characters; `-act` is appended for the action chain.
  if (!NAME_RE.test(o.chain) || o.chain.length > 24) problems.push(`chain "${o.chain}": 1-24 chars [A-Za-z0-9_-]`);
  if (/^f2b-/i.test(o.chain)) problems.push(`chain "${o.chain}": f2b-* belongs to fail2ban`);
  // ipset names hold 31 characters; `4`/`6` and `.new` are appended.
  if (!NAME_RE.test(o.set) || o.set.length > 26) problems.push(`set "${o.set}": 1-26 chars [A-Za-z0-9_-]`);
  if (!NAME_RE.test(o.table) || o.table.length > 64) problems.push(`table "${o.table}": 1-64 chars [A-Za-z0-9_-]`);
  for (const p of o.ports) if (!Number.isInteger(p) || p < 1 || p > 65535) problems.push(`port ${p}`);
  if (!Number.isInteger(o.maxelem) || o.maxelem < 1) problems.push(`maxelem ${o.maxelem}`);
  if (!Number.isInteger(o.nftPriority) || Math.abs(o.nftPriority) > 1000) problems.push(`nftPriority ${o.nftPriority}`);
  if (!Number.isInteger(o.commandAttempts) || o.commandAttempts < 1 || o.commandAttempts > 10) {
    problems.push(`commandAttempts ${o.commandAttempts}: 1-10`);
  }
  if (!(o.expirySweepMs >= 100)) problems.push(`expirySweepMs ${o.expirySweepMs}: >= 100`);
  if (!(o.commandTimeoutMs >= 100)) problems.push(`commandTimeoutMs ${o.commandTimeoutMs}: >= 100`);
  if (!(o.retryBaseMs >= 1)) problems.push(`retryBaseMs ${o.retryBaseMs}: >= 1`);
  if (problems.length > 0) throw new Error(`invalid firewall options: ${problems.join('; ')}`);
  return o;
}
