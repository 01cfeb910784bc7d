/**
 * What the scenarios share: guessing from an address, waiting for authban's ban, reading the
 * ground truth (which queue id was which client) from sendmail's own log, and the figures the
 * scenarios report: attribution, innocent bans, failed-AUTH-reply-to-ban latency.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BlockList, isIPv6 } from 'node:net';
import type { Authban, Stack, SwaksResult } from './harness.js';
import { percentile } from './harness.js';

/** The one wrong password every guesser uses. */
export const WRONG = 'not-the-password';

/** n sessions from `from`, each one wrong AUTH then QUIT, all at once; each must get 535. */
export async function guess(stack: Stack, from: string, n: number, mech: 'LOGIN' | 'PLAIN' = 'LOGIN'): Promise<SwaksResult[]> {
  const runs = await Promise.all(Array.from({ length: n }, () => stack.swaks({ from, password: WRONG, quitAfterAuth: true, mech })));
  for (const r of runs) {
    assert.equal(r.authReplyCode, 535, `${from}: expected 535 to a wrong password\n${r.lines.map((l) => l.text).join('\n')}`);
    assert.equal(r.code, 28, 'swaks exits 28 on AUTH failure');
  }
  return runs;
}

/** The same, one session after the other. */
export async function guessInTurn(stack: Stack, from: string, n: number): Promise<SwaksResult[]> {
  const out: SwaksResult[] = [];
  for (let i = 0; i < n; i++) out.push(...(await guess(stack, from, 1)));
  return out;
}

interface BanEvent {
  readonly at: number;
  readonly address: string;
}

/** authban's `event: "ban"` log lines so far. */
export function banEvents(authban: Authban): BanEvent[] {
  return authban
    .logEvents()
    .filter((e) => e.obj.event === 'ban' && typeof e.obj.address === 'string')
    .map((e) => ({ at: e.at, address: e.obj.address as string }));
}

/** Waits for authban to log the ban of `address`; returns when the line reached us. */
export async function waitForBan(authban: Authban, address: string, timeoutMs = 15_000): Promise<number> {
  const line = await authban.proc.waitForLine((l) => {
    try {
      const o = JSON.parse(l.text) as Record<string, unknown>;
      return o.event === 'ban' && o.address === address;
    } catch {
      return false;
    }
  }, timeoutMs);
  return line.at;
}

/** One active ban as `authban list --json` gives it (the fields the scenarios check). */
export interface ListedBan {
  readonly target: string;
  readonly evidence: readonly {
    readonly sources: readonly string[];
    readonly evidence: readonly { kind: string; queueId?: string; clientAddress?: string; origin?: string }[];
  }[];
}

export async function listBans(authban: Authban): Promise<ListedBan[]> {
  const out = await authban.cli(['list']);
  // The list is either the array itself or wrapped as { bans: [...] }.
  const arr = Array.isArray(out) ? out : (out as { bans?: unknown }).bans;
  assert.ok(Array.isArray(arr), `list --json: expected an array of bans, got ${JSON.stringify(out).slice(0, 200)}`);
  return arr as ListedBan[];
}

/** Queue ids named in a ban's evidence (the sessions its failures were attributed to). */
export function evidenceQueueIds(ban: ListedBan): string[] {
  return ban.evidence.flatMap((f) => f.evidence.filter((e) => e.kind === 'session' && e.queueId).map((e) => e.queueId as string));
}

/** A client address as sendmail writes it in brackets: `[198.51.100.7]` or `[IPv6:2001:db8:0:0:0:0:0:7]`. */
const BRACKETED_ADDR = String.raw`\[(?:IPv6:)?(\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]*:[0-9A-Fa-f:.]+)\]`;

/**
 * The canonical text of a logged client address. sendmail writes IPv6 uncompressed
 * (`IPv6:2001:db8:0:0:0:0:0:10`); authban (and this harness) use the RFC 5952 form
 * (`2001:db8::10`), which the WHATWG URL parser produces.
 */
export function canonicalAddress(logged: string): string {
  const a = logged.replace(/^IPv6:/i, '');
  return isIPv6(a) ? new URL(`http://[${a}]/`).hostname.slice(1, -1) : a;
}

/** Whether a ban target (an address, or a network such as `2001:db8::/64`) covers `address`. */
export function covers(target: string, address: string | undefined): boolean {
  if (address === undefined) return false;
  const slash = target.indexOf('/');
  if (slash < 0) return target === address;
  const family = isIPv6(address) ? 'ipv6' : 'ipv4';
  const net = new BlockList();
  net.addSubnet(target.slice(0, slash), Number(target.slice(slash + 1)), family);
  return net.check(address, family);
}

/**
 * Ground truth from sendmail's own log: queue id -> client address. Every session line that
 * names the client (`relay=[IP]`, `[IP] did not issue ...`, `host=[IP]`) counts; an IPv6
 * client (`[IPv6:2001:db8:0:0:0:0:0:7]`) is given in canonical form (`2001:db8::7`).
 */
export function sessionsFromMailLog(path: string): Map<string, string> {
  const map = new Map<string, string>();
  const re = new RegExp(String.raw`sendmail\[\d+\]: ([0-9A-Za-z]{14}): .*?` + BRACKETED_ADDR);
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = re.exec(line);
    if (m) map.set(m[1] as string, canonicalAddress(m[2] as string));
  }
  return map;
}

/** Queue ids of the sessions whose AUTH failed, per client address, from sendmail's log (LogLevel >= 9). */
export function failedSessionsFromMailLog(path: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const re = new RegExp(String.raw`sendmail\[\d+\]: ([0-9A-Za-z]{14}): AUTH failure .*relay=.*` + BRACKETED_ADDR);
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = re.exec(line);
    if (!m) continue;
    const addr = canonicalAddress(m[2] as string);
    const set = out.get(addr) ?? new Set<string>();
    set.add(m[1] as string);
    out.set(addr, set);
  }
  return out;
}

/** Latest failed-AUTH reply among a guesser's sessions: the reply after which a ban is due. */
export function lastReply(runs: readonly SwaksResult[]): number {
  return Math.max(...runs.map((r) => r.authReplyAt ?? Number.NaN));
}

/** Figures accumulated over one test file's scenarios. */
export class Figures {
  private readonly latencies: number[] = [];
  attributed = 0;
  wrongSessions = 0;
  misattributed = 0;
  ambiguousRefused = 0;
  innocentBanned = 0;

  latency(ms: number): void {
    this.latencies.push(ms);
  }

  /**
   * Checks one ban's evidence against the ground truth: every session it cites was a session
   * of that address (or of an address in the banned network), and counts how many of the
   * address's failed sessions it cites.
   */
  checkBan(ban: ListedBan, failedQueueIds: ReadonlySet<string>, truth: ReadonlyMap<string, string>): void {
    const cited = new Set(evidenceQueueIds(ban));
    for (const q of cited) {
      if (!covers(ban.target, truth.get(q))) this.misattributed++;
    }
    this.wrongSessions += failedQueueIds.size;
    for (const q of failedQueueIds) if (cited.has(q)) this.attributed++;
  }

  /** Lines for t.diagnostic (one each: the reporters do not keep newlines). */
  report(title: string): string[] {
    const lat = this.latencies.length
      ? `p50 ${percentile(this.latencies, 50)} ms, p99 ${percentile(this.latencies, 99)} ms over ${this.latencies.length} bans`
      : 'no bans timed';
    return [
      `e2e figures, ${title}:`,
      `  wrong-password sessions attributed correctly: ${this.attributed}/${this.wrongSessions}`,
      `  failures attributed to the wrong address: ${this.misattributed}`,
      `  failures refused as ambiguous: ${this.ambiguousRefused}`,
      `  innocent addresses banned: ${this.innocentBanned}`,
      `  failed-AUTH reply -> ban: ${lat}`,
    ];
  }
}
