import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The real sendmail / saslauthd recordings the team keeps in `shared/captures`, beside the
 * repository (as on the developers' machines and in CI). AUTHBAN_CAPTURES overrides the place.
 */
export const CAPTURES = process.env.AUTHBAN_CAPTURES ?? join(new URL('../../..', import.meta.url).pathname, 'shared', 'captures');

/** Whether they are there; under CI their absence is an error, not a reason to skip. */
export function capturesAvailable(): boolean {
  const ok = existsSync(CAPTURES);
  if (!ok && process.env.CI === 'true') throw new Error(`the captures are missing at ${CAPTURES}`);
  return ok;
}
