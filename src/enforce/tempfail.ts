import { Counter, type Registry } from 'prom-client';
import { CidrSet, parseAddress } from '../core/address.js';
import type { Verdict } from '../milter/handler.js';

export interface TempfailMetrics {
  readonly rejections: Counter<'reason'>;
}

export function createTempfailMetrics(registry: Registry): TempfailMetrics {
  return {
    rejections: new Counter({
      name: 'authban_tempfail_rejections_total',
      help: 'SMTP connections answered 421 at connect by the milter, by why (ban table or static refused list).',
      labelNames: ['reason'],
      registers: [registry],
    }),
  };
}

/**
 * The in-memory check the milter asks at every connect: an address in the ban table, or in
 * the admin's static refused list, gets the refusal verdict; anything else gets null.
 */
export class TempfailGate {
  private refused: CidrSet;

  constructor(
    private readonly isBanned: (address: string) => boolean,
    refused: readonly string[],
    private refusal: Verdict,
    private readonly metrics?: TempfailMetrics,
  ) {
    this.refused = CidrSet.parse(refused, 'refused list');
  }

  /** Applies a reloaded configuration. */
  update(refused: readonly string[], refusal: Verdict): void {
    this.refused = CidrSet.parse(refused, 'refused list');
    this.refusal = refusal;
  }

  check(address: string): Verdict | null {
    if (this.isBanned(address)) {
      this.metrics?.rejections.inc({ reason: 'banned' });
      return this.refusal;
    }
    if (this.refused.size > 0) {
      const parsed = parseAddress(address);
      if (parsed && this.refused.contains(parsed)) {
        this.metrics?.rejections.inc({ reason: 'refused_list' });
        return this.refusal;
      }
    }
    return null;
  }
}
