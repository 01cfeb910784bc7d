import type { Logger } from 'pino';
import { parseCidr } from '../core/address.js';
import type { BanEntry } from './backend.js';
import type { EnforceMetrics } from './metrics.js';

/**
 * Canonical target text for what the firewall holds: a bare address for a host (/32, /128),
 * `network/len` otherwise. Null when the text is not an address or network.
 */
export function canonicalTarget(text: string): { target: string; family: 4 | 6 } | null {
  const net = parseCidr(text);
  if (!net) return null;
  const host = net.prefix === (net.family === 4 ? 32 : 128);
  return { target: host ? net.text.slice(0, net.text.indexOf('/')) : net.text, family: net.family };
}

/**
 * Checks entries again right before they are written into a command: only canonical text of
 * the stated family passes, so nothing from a log or a client can smuggle arguments or script
 * lines into iptables-restore / ipset restore / nft. The rest is logged, counted and skipped.
 */
export function validEntries(
  entries: readonly BanEntry[],
  log: Logger,
  metrics?: EnforceMetrics,
): BanEntry[] {
  const out: BanEntry[] = [];
  for (const e of entries) {
    const c = typeof e.target === 'string' ? canonicalTarget(e.target) : null;
    const okExpiry = e.expiresAt === null || Number.isFinite(e.expiresAt);
    if (c && c.target === e.target && c.family === e.family && okExpiry) {
      out.push(e);
    } else {
      metrics?.rejectedEntries.inc();
      log.error({ target: String(e.target).slice(0, 100), family: e.family }, 'firewall: refusing invalid ban entry');
    }
  }
  return out;
}

/**
 * Seconds left of a ban, rounded up, capped at `cap`; 0 means no end (null expiry), and null
 * means already expired. A ban longer than the cap ends early in the kernel rather than never:
 * the kernel timeout is the safety net for when authban is gone, and the engine re-installs
 * persisted bans at its next start.
 */
export function remainingSeconds(e: BanEntry, now: number, cap: number): number | null {
  if (e.expiresAt === null) return 0;
  const left = Math.ceil((e.expiresAt - now) / 1000);
  if (left <= 0) return null;
  return Math.min(left, cap);
}
