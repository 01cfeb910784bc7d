/**
 * The layering README promises, checked on the source: facts flow left to right (milter,
 * logs → correlate → bans → enforce), ops serves everyone, and only main.ts / cli.ts wire layers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';

const SRC = new URL('../../src', import.meta.url).pathname;

/** Which layers each layer may import (besides itself). */
const ALLOWED: Record<string, readonly string[]> = {
  core: [],
  milter: ['core'],
  logs: ['core'],
  correlate: ['core', 'logs', 'bans'],
  bans: ['core', 'enforce'],
  enforce: ['core', 'milter'],
  ops: ['core', 'bans'],
};

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

test('every layer imports only the layers it may', () => {
  const violations: string[] = [];
  let checked = 0;
  for (const file of files(SRC)) {
    const rel = relative(SRC, file);
    const layer = rel.includes('/') ? rel.split('/')[0]! : null;
    if (layer === null) continue; // main.ts and cli.ts: the composition root wires everything
    const allowed = ALLOWED[layer];
    assert.ok(allowed, `unknown layer folder src/${layer}: add it to README and to this test`);
    for (const m of readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
      const target = relative(SRC, resolve(dirname(file), m[1]!));
      const to = target.split('/')[0]!;
      checked++;
      if (to !== layer && !allowed.includes(to)) violations.push(`${rel} imports ${target}`);
    }
  }
  assert.ok(checked > 100, `imports were found (${checked})`);
  assert.deepEqual(violations, []);
});
