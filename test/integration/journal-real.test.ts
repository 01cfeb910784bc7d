/**
 * The journal source against the real thing: systemd-journald and journalctl (Debian's
 * systemd package), not a stand-in. The test makes a private mount namespace with its own
 * /run (so journald's sockets and its volatile journal are the test's alone, and nothing is
 * written to this machine's journal), runs journald and the daemon inside it, and writes
 * sendmail entries with `logger --journald`, the native journal protocol.
 *
 * Shown: entries become bans after maxretry; a hostile user name holding an address does
 * not ban that address; entries another user logs under sendmail's name are not read; when journalctl dies, the entries written while it was down are read
 * after the restart, each exactly once (resumed from the last cursor).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readlinkSync } from 'node:fs';
import { promisify } from 'node:util';
import { controlRequest } from '../../src/ops/control-client.js';
import { removeDir, startDaemon, tempDir, testConfig } from '../helpers/daemon.js';
import { sample, scrape } from '../helpers/metrics.js';
import { isRoot, needsOrSkip } from '../helpers/require-root.js';
import { waitFor } from '../helpers/wait-for.js';

const run = promisify(execFile);
const ROOT = new URL('../..', import.meta.url).pathname;
const JOURNALD = ['/lib/systemd/systemd-journald', '/usr/lib/systemd/systemd-journald'].find((p) => existsSync(p));
const TOOLS = ['/usr/bin/unshare', '/usr/bin/nsenter', '/usr/bin/setpriv', '/usr/bin/logger', '/usr/bin/journalctl', '/usr/bin/pgrep'];

// Inside the namespace only: a private /run for journald's sockets and runtime journal, a
// drop-in keeping the journal volatile, and /var/log/journal covered in case it exists.
const SETUP = [
  'set -e',
  'mount -t tmpfs -o mode=0755 authban-test /run',
  'mkdir -p /run/systemd/journal /run/log/journal /run/systemd/journald.conf.d',
  'printf "[Journal]\\nStorage=volatile\\nForwardToSyslog=no\\nForwardToWall=no\\nReadKMsg=no\\n" > /run/systemd/journald.conf.d/authban-test.conf',
  'if [ -d /var/log/journal ]; then mount -t tmpfs authban-test /var/log/journal; fi',
].join('\n');

function stop(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    p.once('exit', () => resolve());
    p.kill('SIGKILL');
  });
}

test('journal: real journald + journalctl entries ban; a journalctl restart loses and repeats nothing', { timeout: 90_000 }, async (t) => {
  if (!needsOrSkip(t, isRoot, 'needs root for a mount namespace')) return;
  const missing = [...TOOLS.filter((p) => !existsSync(p)), ...(JOURNALD ? [] : ['systemd-journald'])];
  if (!needsOrSkip(t, missing.length === 0, `missing ${missing.join(', ')} (Debian packages systemd, util-linux, bsdutils, procps)`)) return;

  const dir = tempDir();
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sleep', '300'], { stdio: 'ignore' });
  let journald: ChildProcess | undefined;
  let daemonKill: (() => Promise<void>) | undefined;
  t.after(async () => {
    await daemonKill?.();
    await stop(journald);
    await stop(holder);
    removeDir(dir);
  });
  const ns = String(holder.pid);
  // Nothing may be mounted before the holder is really in its own namespace (else /run here).
  await waitFor(() => {
    try {
      return readlinkSync(`/proc/${ns}/ns/mnt`) !== readlinkSync('/proc/self/ns/mnt');
    } catch {
      return false;
    }
  }, 5000, 'the mount namespace');
  // nsenter would start in the namespace's root directory; the daemon resolves tsx from the project.
  const inNs = (args: string[]): string[] => ['nsenter', '-t', ns, '-m', `--wd=${ROOT}`, ...args];
  await run('nsenter', inNs(['sh', '-c', SETUP]).slice(1));
  journald = spawn('nsenter', inNs([JOURNALD!]).slice(1), { stdio: 'ignore' });
  for (let i = 0; ; i++) {
    const r = await run('nsenter', inNs(['sh', '-c', 'test -S /run/systemd/journal/socket && echo up || echo down']).slice(1));
    if (r.stdout.trim() === 'up') break;
    assert.ok(i < 50, 'journald did not open its socket within 5 s');
    await new Promise((r2) => setTimeout(r2, 100));
  }

  // One native journal entry, as sendmail (sm-mta on Debian) would log it, by root or by `asUid`.
  const write = async (pid: number, message: string, asUid?: number): Promise<void> => {
    const as = asUid === undefined ? [] : ['setpriv', `--reuid=${asUid}`, `--regid=${asUid}`, '--clear-groups'];
    const child = execFile('nsenter', inNs([...as, 'logger', '--journald']).slice(1));
    const done = new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`logger --journald exited ${code}`))));
    });
    child.stdin!.end(`MESSAGE=${message}\nSYSLOG_IDENTIFIER=sm-mta\nSYSLOG_PID=${pid}\nSYSLOG_FACILITY=2\nPRIORITY=5\n`);
    await done;
  };
  const failure = (pid: number, user: string, address: string, asUid?: number): Promise<void> =>
    write(pid, `6AQJRN0${pid % 10}0${pid}: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=${user}, relay=client.test [${address}]`, asUid);

  const d = await startDaemon(dir, testConfig(dir, { logs: { journal: { enabled: true } }, bans: { maxretry: 3, findtime: 600 } }), { prefix: inNs([]) });
  daemonKill = () => d.kill();
  const read = async (): Promise<number> => sample(await scrape(d.metricsAddress!), 'authban_log_lines_read_total{source="journal"}');
  // Probes are no failures: counting matched failure lines leaves late probes out.
  const failureLines = async (): Promise<number> => sample(await scrape(d.metricsAddress!), 'authban_log_lines_matched_total{pattern="sendmail-auth-failure"}');
  const banned = async (address: string): Promise<boolean> => {
    const r = await controlRequest(d.socket, { cmd: 'explain', args: { address } });
    assert.ok(r.ok, JSON.stringify(r));
    return (r.result as { ban: unknown }).ban !== null;
  };
  const until = async (cond: () => Promise<boolean>, what: string): Promise<void> => {
    for (let i = 0; !(await cond()); i++) {
      assert.ok(i < 100, `timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  // journalctl starts at the end of the journal: write a line that is not a failure until it is read.
  let probes = 0;
  await until(async () => {
    await write(20000 + probes++, 'STARTTLS=client, relay=mx.example.net., version=TLSv1.3, verify=OK, cipher=TLS_AES_256_GCM_SHA384, bits=256/256');
    return (await read()) > 0;
  }, 'journalctl to follow');
  assert.equal(await failureLines(), 0);

  for (let i = 0; i < 3; i++) await failure(21000 + i, 'admin', '198.51.100.71');
  // The user name is the client's text: it must never name the address banned.
  for (let i = 0; i < 3; i++) await failure(22000 + i, 'x, relay=evil [198.51.100.99]', '198.51.100.72');
  // Any local user can log as sm-mta: only root's entries (journald's _UID) are read.
  for (let i = 0; i < 3; i++) await failure(24000 + i, 'admin', '198.51.100.74', 65534);
  await until(() => banned('198.51.100.71'), 'the ban of 198.51.100.71');
  await until(() => banned('198.51.100.72'), 'the ban of 198.51.100.72');
  assert.equal(await banned('198.51.100.99'), false, 'an address in a user name is never banned');

  // journalctl dies; what is written before its restart is read after it, once.
  const { stdout } = await run('pgrep', ['-P', String(d.proc.pid), '-x', 'journalctl']);
  const jpid = Number(stdout.trim().split('\n')[0]);
  assert.ok(jpid > 0, 'journalctl runs as the daemon\'s child');
  process.kill(jpid, 'SIGKILL');
  await d.waitForLog((l) => l.msg === 'journalctl ended; restarting', 10_000);
  for (let i = 0; i < 3; i++) await failure(23000 + i, 'info', '198.51.100.73');
  await until(() => banned('198.51.100.73'), 'the ban of 198.51.100.73 after the restart');
  await until(async () => (await failureLines()) >= 9, 'all nine failure entries read');
  await new Promise((r) => setTimeout(r, 500)); // room for a duplicate to show up, if one were coming
  assert.equal(await failureLines(), 9, 'each entry read exactly once across the restart, none of another user');
  assert.equal(await banned('198.51.100.74'), false, 'entries of another user than root are not read');
  const m = await scrape(d.metricsAddress!);
  assert.equal(sample(m, 'authban_bans_failures_total{source="sendmail"}'), 9);
  assert.ok(sample(m, 'authban_log_source_errors_total{source="journal"}') >= 1, 'the restart is counted');
});
