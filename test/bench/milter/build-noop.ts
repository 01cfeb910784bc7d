/**
 * Builds the C no-op milter (noop-milter.c) against Debian's libmilter into a directory the
 * caller owns, and says plainly what is missing when it cannot.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const SOURCE = new URL('./noop-milter.c', import.meta.url).pathname;

/** Why the C milter cannot be built here, or null when it can. */
export function noopBuildMissing(): string | null {
  if (!existsSync('/usr/include/libmilter/mfapi.h')) return 'libmilter-dev is not installed (apt-get install libmilter-dev)';
  try {
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'no C compiler (cc) on PATH';
  }
  return null;
}

/** Compiles the no-op milter into `dir` and returns the binary's path. */
export function buildNoopMilter(dir: string): string {
  const out = join(dir, 'noop-milter');
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', out, SOURCE, '-lmilter', '-lpthread'], { stdio: 'inherit' });
  return out;
}
