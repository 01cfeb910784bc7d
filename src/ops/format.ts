/** Human-readable renderings of the control answers; `--json` prints the answers as they are. */
import type { BanRecord } from '../bans/ban-table.js';
import type { Explanation } from '../bans/ban-engine.js';
import type { FailureRecord } from '../bans/evidence-store.js';

function when(ms: number | null): string {
  return ms === null ? 'never' : new Date(ms).toISOString().replace('.000Z', 'Z');
}

function remaining(expiresAt: number | null, now: number): string {
  if (expiresAt === null) return 'no end';
  const s = Math.max(0, Math.round((expiresAt - now) / 1000));
  if (s >= 86400) return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h left`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m left`;
  if (s >= 60) return `${Math.floor(s / 60)}m${s % 60}s left`;
  return `${s}s left`;
}

export function formatBanList(bans: readonly BanRecord[], now = Date.now()): string {
  if (bans.length === 0) return 'no active bans';
  const rows = bans.map((b) => [b.target, b.reason, `#${b.count}`, `until ${when(b.expiresAt)}`, remaining(b.expiresAt, now), `${b.evidence.length} failure(s)`]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

function formatFailure(f: FailureRecord): string[] {
  const head = `  ${when(f.at)}  ${f.service}${f.user !== undefined ? ` user=${JSON.stringify(f.user)}` : ''}  seen by ${f.sources.join('+')}`;
  const ev = f.evidence.map((e) =>
    e.kind === 'session'
      ? `      session ${e.queueId ?? '-'} pid ${e.pid ?? '-'} from ${e.clientAddress}${e.clientPort !== undefined ? `:${e.clientPort}` : ''}`
      : `      ${e.origin}: ${e.line}`,
  );
  return [head, ...ev];
}

export function formatExplain(x: Explanation, now = Date.now()): string {
  const out: string[] = [`${x.address} (counted as ${x.key})`];
  if (x.exempt) out.push(`  never banned: ${x.exempt}`);
  if (x.ban) {
    out.push(`  BANNED (${x.ban.reason}, ban #${x.ban.count}) since ${when(x.ban.createdAt)} until ${when(x.ban.expiresAt)}, ${remaining(x.ban.expiresAt, now)}`);
    if (x.ban.by || x.ban.why) out.push(`  by ${x.ban.by ?? '?'}: ${x.ban.why ?? ''}`);
    if (x.ban.evidence.length > 0) out.push('  evidence:');
    for (const f of x.ban.evidence) out.push(...formatFailure(f));
  } else out.push('  not banned');
  out.push(`  failures in the current window: ${x.failuresInWindow}`);
  if (x.recentFailures.length > 0 && !x.ban) {
    out.push('  recent failures:');
    for (const f of x.recentFailures) out.push(...formatFailure(f));
  }
  if (x.history) out.push(`  history: ${x.history.bans} ban(s), last ended ${when(x.history.lastEnd)}, forgotten ${when(x.history.forgetAt)}`);
  return out.join('\n');
}

export function formatStatus(s: Record<string, unknown>): string {
  const lines: string[] = [];
  const walk = (v: unknown, indent: string, key: string): void => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      lines.push(`${indent}${key}:`);
      for (const [k, x] of Object.entries(v)) walk(x, `${indent}  `, k);
    } else if (Array.isArray(v) && v.some((x) => x !== null && typeof x === 'object')) {
      lines.push(`${indent}${key}:${v.length === 0 ? ' none' : ''}`);
      for (const x of v) lines.push(`${indent}  - ${Object.entries(x as object).map(([k, y]) => `${k}=${String(y)}`).join(' ')}`);
    } else lines.push(`${indent}${key}: ${Array.isArray(v) ? v.join(', ') : String(v)}`);
  };
  for (const [k, v] of Object.entries(s)) walk(v, '', k);
  return lines.join('\n');
}
