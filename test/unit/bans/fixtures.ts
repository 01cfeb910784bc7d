/** Shared builders for the ban tests. */
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import type { AuthFailure, FailureSource } from '../../../src/core/auth-failure.js';
import { BanEngine, type BanEngineDeps } from '../../../src/bans/ban-engine.js';
import { createBansMetrics, type BansMetrics } from '../../../src/bans/metrics.js';
import type { BanPolicyOptions } from '../../../src/bans/policy.js';

export const T0 = Date.UTC(2026, 0, 15, 12, 0, 0);

/** A clock the test moves by hand. */
export class Clock {
  constructor(public ms = T0) {}
  readonly now = (): number => this.ms;
  advance(seconds: number): void {
    this.ms += seconds * 1000;
  }
}

export const silent: Logger = pino({ level: 'silent' });

/** A logger whose JSON lines the test can read back. */
export function capturingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

export function failure(address: string, at: number, extra: Partial<AuthFailure> & { source?: FailureSource } = {}): AuthFailure {
  const source = extra.source ?? 'sendmail';
  return {
    address,
    service: 'smtp',
    at,
    source,
    evidence: [{ kind: 'log', source, line: `${source} line for ${address} at ${at}`, origin: '/var/log/mail.log', at }],
    ...extra,
  };
}

export function engine(
  policy: Partial<BanPolicyOptions> = {},
  more: Partial<BanEngineDeps> = {},
): { engine: BanEngine; clock: Clock; metrics: BansMetrics; registry: Registry } {
  const clock = new Clock();
  const registry = new Registry();
  const metrics = createBansMetrics(registry);
  const e = new BanEngine({ log: silent, policy, metrics, now: clock.now, tickMs: 0, ...more });
  return { engine: e, clock, metrics, registry };
}

export async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => String((x.labels as Record<string, unknown>)[k]) === val));
  return v?.value ?? 0;
}
