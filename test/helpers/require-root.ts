import type { TestContext } from 'node:test';

/**
 * Tests that need root (network namespaces, firewall, a real sendmail) call this first.
 * Without what they need they skip with a loud reason, except under CI (CI=true), where a
 * skip would hide a missing install step: there they fail.
 */
export function needsOrSkip(t: TestContext, ok: boolean, reason: string): boolean {
  if (ok) return true;
  if (process.env.CI === 'true') throw new Error(`cannot run under CI: ${reason}`);
  process.stderr.write(`\n*** SKIPPED ${t.name}: ${reason} ***\n`);
  t.skip(reason);
  return false;
}

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
