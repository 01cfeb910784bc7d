// Runs every test file under test/ (benchmarks excluded) with node's test runner and tsx.
// Two passes: unit + integration in parallel, then the tests that own the machine's network
// and processes (network namespaces, real sendmail) one at a time. Prints one closing line
// "N passed, N failed, N skipped" and exits non-zero when anything failed or nothing ran.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { join, relative } from 'node:path';
import { tmpdir } from 'node:os';

const root = new URL('..', import.meta.url).pathname;
const filter = process.argv.slice(2);

function findTests(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'bench') out.push(...findTests(p));
    } else if (entry.name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out.sort();
}

const all = findTests(join(root, 'test')).filter((f) => filter.length === 0 || filter.some((x) => f.includes(x)));
const serial = all.filter((f) => f.startsWith('test/e2e/') || f.startsWith('test/netns/'));
const parallel = all.filter((f) => !serial.includes(f));
const tapDir = mkdtempSync(join(tmpdir(), 'authban-tap-'));
const totals = { pass: 0, fail: 0, skipped: 0, cancelled: 0, todo: 0 };
let runnerFailed = false;

function run(files, concurrency, name) {
  if (files.length === 0) return;
  const tap = join(tapDir, `${name}.tap`);
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`,
      '--test-reporter=spec', '--test-reporter-destination=stdout',
      '--test-reporter=tap', `--test-reporter-destination=${tap}`, ...files],
    { cwd: root, stdio: 'inherit' },
  );
  if (r.status !== 0) runnerFailed = true;
  const text = readFileSync(tap, 'utf8');
  for (const key of Object.keys(totals)) {
    const m = text.match(new RegExp(`^# ${key} (\\d+)$`, 'm'));
    if (m) totals[key] += Number(m[1]);
  }
}

run(parallel, 2, 'parallel');
run(serial, 1, 'serial');
rmSync(tapDir, { recursive: true, force: true });

const failed = totals.fail + totals.cancelled;
console.log(`\n${totals.pass} passed, ${failed} failed, ${totals.skipped} skipped`);
if (failed > 0 || runnerFailed || totals.pass === 0) process.exit(1);
