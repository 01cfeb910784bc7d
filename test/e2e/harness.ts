/**
 * A real sendmail + saslauthd (PAM) + rsyslogd stack for end-to-end tests, with authban as its
 * milter. Everything runs inside one network + mount + UTS namespace the harness creates:
 * its only interface is lo (so no DNS query or any other packet can leave the machine, and
 * clients can come from 127.0.0.2, 127.0.0.3, ..., and with StackOptions.ipv6Clients from
 * 2001:db8:: addresses put on lo), its /dev/log belongs to the harness's own
 * rsyslogd, and its resolver files say "files only". The test process stays outside and talks
 * to authban through its control socket, a path on the shared filesystem.
 * See SENDMAIL.md (/work/shared) for the traps each step avoids.
 */
import { accessSync, chmodSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { BlockList, isIPv6 } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { isRoot, needsOrSkip } from '../helpers/require-root.js';
import { Proc, pollUntil, run, runOk, type Line } from './procs.js';
import {
  MTA_DOMAIN,
  renderLocalMailer,
  renderNamespaceFiles,
  renderNamespaceSetup,
  renderRsyslogConf,
  renderSendmailMc,
} from './render.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const MILTER_SNIPPET = join(REPO_ROOT, 'config/sendmail/authban.mc.snippet');
export const RSYSLOG_SNIPPET = join(REPO_ROOT, 'config/sendmail/rsyslog-authban.conf');
const CF_M4 = '/usr/share/sendmail/cf/m4/cf.m4';
const SMTP_PORT = 2525;
/** sendmail's IPv6 listen address, when StackOptions.ipv6 asks for one. */
export const SMTP_ADDR_V6 = '::1';
/** authban's milter port as written in the shipped snippet; the namespace has it to itself. */
export const MILTER_PORT = 8894;
/** Upper bound on one test file's use of the namespace; its anchor process exits after it. */
const NAMESPACE_LIFETIME_S = 900;
const SEARCH_PATH = ['/usr/libexec/sendmail', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const TOOLS = ['sendmail', 'saslauthd', 'swaks', 'rsyslogd', 'm4', 'unshare', 'nsenter', 'ip', 'ss', 'useradd', 'chpasswd', 'userdel'];

/** The only IPv6 space the namespace may use (RFC 3849 documentation prefix). */
const DOC_V6 = new BlockList();
DOC_V6.addSubnet('2001:db8::', 32, 'ipv6');

function findTool(name: string): string | undefined {
  for (const dir of SEARCH_PATH) {
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** The real sendmail binary (Debian's /usr/sbin/sendmail is an alternatives link to it). */
function tool(name: string): string {
  const p = findTool(name);
  if (!p) throw new Error(`${name} not found`);
  return p;
}

/** Skips (fails under CI) unless root and every program the stack runs are present. */
export function e2eReady(t: TestContext): boolean {
  const missing = TOOLS.filter((n) => !findTool(n));
  if (!existsSync(CF_M4)) missing.push(CF_M4);
  const why = [isRoot ? '' : 'root', missing.length ? `packages providing ${missing.join(', ')} (sendmail-bin sendmail-cf m4 sasl2-bin swaks rsyslog iproute2)` : '']
    .filter(Boolean)
    .join(' and ');
  return needsOrSkip(t, why === '', `needs ${why}`);
}

/**
 * e2eReady, and swaks can speak IPv6: it needs Perl's IO::Socket::INET6 (Debian package
 * libio-socket-inet6-perl, not a dependency of swaks) and otherwise exits 10 at once.
 */
export function e2eIpv6Ready(t: TestContext): boolean {
  if (!e2eReady(t)) return false;
  const perl = findTool('perl');
  const ok = perl !== undefined && spawnSync(perl, ['-MIO::Socket::INET6', '-e', '1'], { timeout: 10_000 }).status === 0;
  return needsOrSkip(t, ok, 'needs libio-socket-inet6-perl (swaks speaks IPv6 only with IO::Socket::INET6)');
}

/** The namespace anchor and the way into it. */
class Namespace {
  private constructor(private readonly anchor: Proc) {}

  static async create(dir: string, ipv6Addresses: readonly string[]): Promise<Namespace> {
    const files = renderNamespaceFiles();
    mkdirSync(join(dir, 'etc'));
    writeFileSync(join(dir, 'etc/hosts'), files.hosts);
    writeFileSync(join(dir, 'etc/resolv.conf'), files.resolvConf);
    writeFileSync(join(dir, 'etc/nsswitch.conf'), files.nsswitch);
    writeFileSync(join(dir, 'service.switch'), files.serviceSwitch);
    writeFileSync(join(dir, 'ns-setup.sh'), renderNamespaceSetup(dir, NAMESPACE_LIFETIME_S, ipv6Addresses));
    const anchor = new Proc('namespace', [tool('unshare'), '--net', '--mount', '--uts', '--propagation', 'private', '/bin/sh', join(dir, 'ns-setup.sh')], {
      logPath: join(dir, 'namespace.log'),
    });
    try {
      await anchor.waitForLine((l) => l.text === 'READY', 10_000);
    } catch (err) {
      await anchor.stop();
      throw err;
    }
    return new Namespace(anchor);
  }

  /** argv prefix running a command inside (nsenter execs it: the PID we get is the program's). */
  enter(wd = '/'): string[] {
    return [tool('nsenter'), '-t', String(this.anchor.pid), '-n', '-m', '-u', `--wd=${wd}`, '--'];
  }

  /** Listening TCP sockets on `port`, e.g. `127.0.0.1:2525` and `[::1]:2525`. */
  async listeners(port: number): Promise<string[]> {
    const out = await runOk([...this.enter(), tool('ss'), '-Hltn', `sport = :${port}`], 5000);
    return out
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[3])
      .filter((a): a is string => a !== undefined && a !== '');
  }

  async listening(port: number): Promise<boolean> {
    return (await this.listeners(port)).length > 0;
  }

  stop(): Promise<void> {
    return this.anchor.stop(1000);
  }

  kill(): void {
    this.anchor.kill();
  }
}

export interface TestUser {
  readonly name: string;
  readonly password: string;
}

/** A throw-away local account for PAM; useradd can briefly fail on the passwd lock, so retry. */
async function createUser(): Promise<TestUser> {
  const name = `abt${randomBytes(4).toString('hex')}`;
  const password = `Right-${randomBytes(6).toString('base64url')}`;
  await pollUntil('useradd', async () => ((await run([tool('useradd'), '-M', '-s', '/usr/sbin/nologin', name], 10_000)).code === 0 ? true : undefined), 10_000, 300);
  await runOk([tool('chpasswd')], 10_000, { input: `${name}:${password}\n` });
  return { name, password };
}

async function removeUser(name: string): Promise<void> {
  await pollUntil('userdel', async () => ((await run([tool('userdel'), name], 10_000)).code === 0 ? true : undefined), 10_000, 300);
}

export interface StackOptions {
  /** sendmail confLOG_LEVEL. */
  readonly logLevel: number;
  readonly timestamps?: 'bsd' | 'iso';
  /** Include config/sendmail/rsyslog-authban.conf: forward mail and auth lines to authban over UDP. */
  readonly forwardSyslog?: boolean;
  /**
   * IPv6 too: these client addresses (2001:db8::/32 only) go on the namespace's lo, each with
   * its /64, and sendmail also listens on [::1] (a second daemon, MTA-authban-v6).
   */
  readonly ipv6Clients?: readonly string[];
}

export interface SwaksOptions {
  /** Client source address, 127.0.0.N, or one of StackOptions.ipv6Clients (then over IPv6 to [::1]). */
  readonly from: string;
  /** Defaults to the test user's right password. */
  readonly password?: string;
  readonly mech?: 'LOGIN' | 'PLAIN';
  /** Stop after AUTH (a guesser) rather than sending a message. */
  readonly quitAfterAuth?: boolean;
  /** Connect and QUIT without AUTH. */
  readonly noAuth?: boolean;
}

export interface SwaksResult {
  readonly code: number | null;
  readonly lines: readonly Line[];
  /** Arrival time of the server's reply to AUTH (235 or 535), when AUTH was answered. */
  readonly authReplyAt?: number;
  readonly authReplyCode?: number;
  /** The greeting's reply code (220, or 421 when authban refused the connection). */
  readonly bannerCode?: number;
}

/** Reads a swaks transcript: `<-  220 ...` or `<** 535 ...` are server replies. */
export function parseSwaks(lines: readonly Line[]): Omit<SwaksResult, 'code' | 'lines'> {
  let bannerCode: number | undefined;
  let authReply: Line | undefined;
  let sawAuth = false;
  for (const l of lines) {
    const reply = /^<(?:-|\*\*)\s+(\d{3})[ -]/.exec(l.text);
    if (l.text.startsWith(' -> AUTH')) sawAuth = true;
    if (!reply) continue;
    const code = Number(reply[1]);
    if (bannerCode === undefined) bannerCode = code;
    // LOGIN answers 334 to each step; the last reply is the verdict.
    if (sawAuth && code !== 334 && authReply === undefined) authReply = { at: l.at, text: String(code) };
  }
  return {
    ...(bannerCode !== undefined ? { bannerCode } : {}),
    ...(authReply ? { authReplyAt: authReply.at, authReplyCode: Number(authReply.text) } : {}),
  };
}

/** Stacks not yet stopped: killed on the way out if a test file ends without stop(). */
const live = new Set<Stack>();
process.once('exit', () => {
  for (const s of live) s.killNow();
});

export class Stack {
  readonly mailLog: string;
  readonly authLog: string;
  readonly controlSocket: string;
  private readonly procs: Proc[] = [];
  private swaksCount = 0;
  private user?: TestUser;
  private ns?: Namespace;
  authban?: Authban;

  private constructor(readonly dir: string, readonly opts: StackOptions) {
    this.mailLog = join(dir, 'mail.log');
    this.authLog = join(dir, 'auth.log');
    this.controlSocket = join(dir, 'control.sock');
  }

  /** Brings up namespace, rsyslogd, saslauthd, the test user and sendmail; stops all on error. */
  static async start(opts: StackOptions): Promise<Stack> {
    // Not under /tmp: sendmail refuses class and alias files below a world-writable directory.
    const dir = mkdtempSync('/run/authban-e2e-');
    chmodSync(dir, 0o755);
    const stack = new Stack(dir, opts);
    live.add(stack);
    try {
      await stack.bringUp();
    } catch (err) {
      await stack.stop();
      throw err;
    }
    return stack;
  }

  get testUser(): TestUser {
    if (!this.user) throw new Error('stack not started');
    return this.user;
  }

  private get namespace(): Namespace {
    if (!this.ns) throw new Error('stack not started');
    return this.ns;
  }

  private async bringUp(): Promise<void> {
    const d = this.dir;
    for (const sub of ['queue', 'mbox', 'saslauthd', 'rsyslog']) mkdirSync(join(d, sub));
    chmodSync(join(d, 'queue'), 0o700);
    writeFileSync(join(d, 'statistics'), '');
    writeFileSync(join(d, 'aliases'), 'postmaster: root\nMAILER-DAEMON: postmaster\n');
    writeFileSync(join(d, 'local-host-names'), `${MTA_DOMAIN}\nlocalhost\n`);
    writeFileSync(join(d, 'local-mailer'), renderLocalMailer(join(d, 'mbox')), { mode: 0o755 });
    writeFileSync(join(d, 'mail.log'), '');
    writeFileSync(join(d, 'auth.log'), '');
    const v6 = this.opts.ipv6Clients ?? [];
    for (const a of v6) {
      if (!isIPv6(a) || !DOC_V6.check(a, 'ipv6')) throw new Error(`ipv6Clients: ${a} is not in 2001:db8::/32`);
    }
    const mc = renderSendmailMc({
      dir: d,
      smtpPort: SMTP_PORT,
      logLevel: this.opts.logLevel,
      milterSnippet: MILTER_SNIPPET,
      ...(this.opts.ipv6Clients ? { ipv6Addr: SMTP_ADDR_V6 } : {}),
    });
    writeFileSync(join(d, 'sendmail.mc'), mc);
    writeFileSync(join(d, 'sendmail.cf'), await runOk([tool('m4'), join(d, 'sendmail.mc')], 10_000));
    writeFileSync(
      join(d, 'rsyslog.conf'),
      renderRsyslogConf({
        dir: join(d, 'rsyslog'),
        mailLog: this.mailLog,
        authLog: this.authLog,
        timestamps: this.opts.timestamps ?? 'bsd',
        ...(this.opts.forwardSyslog ? { forwardSnippet: RSYSLOG_SNIPPET } : {}),
      }),
    );

    this.ns = await Namespace.create(d, v6);
    const ns = this.ns;
    this.spawn('rsyslogd', [...ns.enter(), tool('rsyslogd'), '-n', '-f', join(d, 'rsyslog.conf'), '-i', join(d, 'rsyslogd.pid')]);
    await pollUntil('/dev/log in the namespace', async () => ((await run([...ns.enter(), '/usr/bin/test', '-S', '/dev/log'], 5000)).code === 0 ? true : undefined), 10_000);
    // -d keeps saslauthd in the foreground (and still logs to syslog); 16 pre-forked workers, so
    // parallel wrong passwords do not queue behind PAM's 2 s fail delay.
    this.spawn('saslauthd', [...ns.enter(), tool('saslauthd'), '-d', '-a', 'pam', '-n', '16', '-m', join(d, 'saslauthd')]);
    await pollUntil('saslauthd mux', async () => (existsSync(join(d, 'saslauthd/mux')) ? true : undefined), 10_000);
    this.user = await createUser();
    this.spawn('sendmail', [...ns.enter(), tool('sendmail'), '-bD', '-C', join(d, 'sendmail.cf')]);
    // Readiness by listening socket: a probe connection would be a real SMTP + milter session.
    const daemons = this.opts.ipv6Clients ? 2 : 1;
    await pollUntil('sendmail listening', async () => ((await ns.listeners(SMTP_PORT)).length >= daemons ? true : undefined), 20_000, 200);
  }

  private spawn(name: string, argv: string[], cwd?: string): Proc {
    const p = new Proc(name, argv, { logPath: join(this.dir, `${name}.out`), ...(cwd ? { cwd } : {}) });
    this.procs.push(p);
    return p;
  }

  /** Starts authban inside the namespace with the harness's paths over `config`, waits until it serves. */
  async startAuthban(config: AuthbanConfig): Promise<Authban> {
    if (this.authban?.proc.running) throw new Error('authban already running');
    const n = readdirSync(this.dir).filter((f) => f.startsWith('authban-')).length;
    const file = join(this.dir, `authban-${n}.json`);
    writeFileSync(file, JSON.stringify(this.authbanConfig(config), null, 2));
    const ns = this.namespace;
    rmSync(this.controlSocket, { force: true });
    const proc = this.spawn(`authban-${n}`, [...ns.enter(REPO_ROOT), process.execPath, '--import', 'tsx', 'src/cli.ts', 'run', '--config', file]);
    this.authban = new Authban(proc, this.controlSocket, ns);
    await pollUntil('authban milter listening and control socket', async () => {
      if (!proc.running) throw new Error(`authban exited:\n${readFileSync(join(this.dir, `authban-${n}.out`), 'utf8').slice(-2000)}`);
      return existsSync(this.controlSocket) && (await ns.listening(MILTER_PORT)) ? true : undefined;
    }, 30_000, 200);
    return this.authban;
  }

  private authbanConfig(c: AuthbanConfig): object {
    const files = c.logFiles ?? ['mail', 'auth'];
    return {
      milter: { listen: [`inet:${MILTER_PORT}@127.0.0.1`] },
      bans: { findtime: 600, bantime: 600, banLoopback: true, ...c.bans },
      state: { dir: join(this.dir, 'state') },
      logs: {
        files: files.map((f) => ({ path: f === 'mail' ? this.mailLog : this.authLog, fromStart: false })),
        ...(c.syslogUdp ? { syslog: { udp: c.syslogUdp } } : {}),
      },
      correlate: c.correlate ?? {},
      enforce: { backend: 'none' },
      control: { socket: this.controlSocket },
      metrics: { listen: '127.0.0.1:9464' },
      log: { level: c.logLevel ?? 'info' },
    };
  }

  /** One SMTP session with swaks inside the namespace; at most 60 s. */
  async swaks(o: SwaksOptions): Promise<SwaksResult> {
    const user = this.testUser;
    const n = ++this.swaksCount;
    const v6 = isIPv6(o.from);
    const argv = [
      ...this.namespace.enter(),
      tool('swaks'),
      // A bare IPv6 literal is taken whole by swaks (the port comes from --port).
      ...(v6 ? ['-6', '--server', SMTP_ADDR_V6] : ['--server', '127.0.0.1']),
      '--port', String(SMTP_PORT),
      '--local-interface', o.from,
      '--helo', `client${n}.example.test`,
      '--from', `sender@${MTA_DOMAIN}`,
      '--to', `${user.name}@${MTA_DOMAIN}`,
      '--timeout', '30',
    ];
    if (o.noAuth) argv.push('--quit-after', 'EHLO');
    else {
      argv.push('--auth', o.mech ?? 'LOGIN', '--auth-user', user.name, '--auth-password', o.password ?? user.password);
      if (o.quitAfterAuth) argv.push('--quit-after', 'AUTH');
    }
    const p = this.spawn(`swaks-${n}`, argv);
    const timer = setTimeout(() => void p.stop(1000), 60_000);
    const { code } = await p.finished;
    clearTimeout(timer);
    return { code, lines: p.lines, ...parseSwaks(p.lines) };
  }

  /**
   * One scripted SMTP session (test/e2e/smtp-steps.mjs) inside the namespace: `steps` are
   * commands, or pauses. Resolves with the replies, in order; at most 120 s.
   */
  async smtpSteps(from: string, steps: readonly (string | { readonly sleepMs: number })[]): Promise<string[]> {
    const n = ++this.swaksCount;
    const spec = JSON.stringify({ host: '127.0.0.1', port: SMTP_PORT, from, steps });
    const p = this.spawn(`smtp-steps-${n}`, [...this.namespace.enter(REPO_ROOT), process.execPath, 'test/e2e/smtp-steps.mjs', spec]);
    const timer = setTimeout(() => void p.stop(1000), 120_000);
    await p.finished;
    clearTimeout(timer);
    return p.lines.map((l) => l.text).filter((t) => t.startsWith('S: ')).map((t) => t.slice(3));
  }

  /** AUTH PLAIN with the test user and a given password, as one command line. */
  authPlain(password: string): string {
    return `AUTH PLAIN ${Buffer.from(`\0${this.testUser.name}\0${password}`).toString('base64')}`;
  }

  /** Files the local mailer wrote: one per delivered message. */
  delivered(): string[] {
    return readdirSync(join(this.dir, 'mbox'));
  }

  /** Synchronous last resort (process exit): SIGKILL by PID, remove the user and the files. */
  killNow(): void {
    for (const p of [...this.procs].reverse()) p.kill();
    this.ns?.kill();
    if (this.user) spawnSync(tool('userdel'), [this.user.name], { timeout: 10_000 });
    this.removeDir();
  }

  async stop(): Promise<void> {
    live.delete(this);
    // Reverse start order: sendmail before the milter it uses, the namespace anchor last.
    for (const p of [...this.procs].reverse()) await p.stop();
    await this.ns?.stop();
    if (this.user) await removeUser(this.user.name);
    this.removeDir();
  }

  private removeDir(): void {
    if (process.env.AUTHBAN_E2E_KEEP === '1') process.stderr.write(`e2e: kept ${this.dir}\n`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface AuthbanConfig {
  readonly bans?: Record<string, unknown>;
  /** Which of the stack's log files authban follows (default both). */
  readonly logFiles?: readonly ('mail' | 'auth')[];
  readonly syslogUdp?: string;
  readonly correlate?: Record<string, unknown>;
  /** authban's own log level (default info; debug logs each milter session's connect). */
  readonly logLevel?: 'info' | 'debug';
}

/** The running daemon: its JSON log (stdout) and its control CLI. */
export class Authban {
  constructor(readonly proc: Proc, private readonly socket: string, private readonly ns: Namespace) {}

  /** Every JSON object the daemon logged, with the time the line reached us. */
  logEvents(): { at: number; obj: Record<string, unknown> }[] {
    const out: { at: number; obj: Record<string, unknown> }[] = [];
    for (const l of this.proc.lines) {
      try {
        const obj: unknown = JSON.parse(l.text);
        if (obj && typeof obj === 'object') out.push({ at: l.at, obj: obj as Record<string, unknown> });
      } catch {
        // not a JSON log line
      }
    }
    return out;
  }

  /** Runs `authban <args> --json --socket SOCK` and parses its output. */
  async cli(args: readonly string[]): Promise<unknown> {
    const out = await runOk([process.execPath, '--import', 'tsx', 'src/cli.ts', ...args, '--json', '--socket', this.socket], 20_000, { cwd: REPO_ROOT });
    return JSON.parse(out);
  }

  /** The Prometheus text exposition, fetched from inside the namespace. */
  async metrics(): Promise<string> {
    const js = "fetch('http://127.0.0.1:9464/metrics').then(r=>r.text()).then(t=>process.stdout.write(t))";
    return runOk([...this.ns.enter(), process.execPath, '-e', js], 20_000);
  }

  stop(): Promise<void> {
    return this.proc.stop();
  }
}

/** Value of one sample line of a Prometheus exposition (sum over label sets when unlabelled match). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => have.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

/** Nearest-rank percentile (p in 0..100) of a non-empty sample. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error('no samples');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}
