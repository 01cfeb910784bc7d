/**
 * Seeded generator of an interleaved sendmail 8.17 (LogLevel 9) maillog and saslauthd/pam
 * auth log, with the ground truth: how many AUTH failures each address really made.
 *
 * Many sessions overlap; attackers fail AUTH 1-8 times per session (pam_unix line, then
 * saslauthd's and sendmail's 2 s later, `possible SMTP attack` at the 5th), innocent users
 * authenticate (sometimes after a typo), MX clients deliver without AUTH, and other
 * programs add noise. Pids wrap at 32768, so pids are reused.
 */
import { createWriteStream } from 'node:fs';
import { prng } from '../../helpers/prng.js';

export interface GenOptions {
  readonly seed: number;
  /** Stop once this many lines (both files together) exist. */
  readonly targetLines: number;
  /** Start of the log, ms since the epoch (UTC wall time is written). */
  readonly start: number;
  /** Mean gap between new sessions, ms. */
  readonly meanGapMs: number;
}

export const DEFAULT_GEN_OPTIONS: GenOptions = {
  seed: 20261126,
  targetLines: 1_000_000,
  start: Date.UTC(2026, 10, 20, 0, 0, 0),
  meanGapMs: 150,
};

export interface GenTruth {
  /** Real AUTH failures per canonical address. */
  readonly failures: Map<string, number>;
  readonly sessions: number;
  readonly mailLines: number;
  readonly authLines: number;
}

const QCHARS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwx';
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n));

function stamp(at: number): string {
  const d = new Date(at);
  const day = d.getUTCDate();
  return `${MONTHS[d.getUTCMonth()]} ${day < 10 ? ` ${day}` : day} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`;
}

function queueId(at: number, seq: number, pid: number): string {
  const d = new Date(at);
  const c = (n: number): string => QCHARS[n % 60]!;
  return `${c(d.getUTCFullYear() - 1900)}${c(d.getUTCMonth())}${c(d.getUTCDate())}${c(d.getUTCHours())}${c(d.getUTCMinutes())}${c(d.getUTCSeconds())}${c(seq)}${c(seq >> 6)}${String(pid).padStart(6, '0')}`;
}

type Line = [at: number, seq: number, file: 0 | 1, text: string];

/** Writes MAILLOG and AUTHLOG and returns the ground truth. */
export async function generate(maillog: string, authlog: string, options: Partial<GenOptions> = {}): Promise<GenTruth> {
  const o = { ...DEFAULT_GEN_OPTIONS, ...options };
  const rnd = prng(o.seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const attackers: string[] = [];
  for (let i = 0; i < 400; i++) {
    if (i % 10 === 9) attackers.push(`2001:db8:${(i * 7).toString(16)}::${(i + 1).toString(16)}`);
    else attackers.push(i < 250 ? `203.0.113.${i + 1}` : `198.51.100.${i - 249}`);
  }
  const users = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank'];
  const guesses = ['admin', 'test', 'info', 'sales', 'root', 'postmaster', 'alice', 'webmaster'];
  const lines: Line[] = [];
  const failures = new Map<string, number>();
  let seq = 0;
  let pid = 20000;
  let qseq = 0;
  let at = o.start;
  let sessions = 0;
  const workers = [7001, 7002, 7003, 7004, 7005];
  const host = 'mx';
  const push = (t: number, file: 0 | 1, text: string): void => {
    lines.push([t, seq++, file, `${stamp(t)} ${host} ${text}`]);
  };
  const relay = (addr: string): string => (addr.includes(':') ? `[IPv6:${addr}]` : pick([`[${addr}]`, `host-${addr.replace(/[.:]/g, '-')}.example [${addr}]`]));
  let total = 0;
  while (total < o.targetLines) {
    at += Math.max(1, Math.round(-Math.log(1 - rnd()) * o.meanGapMs));
    pid += 1 + int(6);
    if (pid > 32767) pid = 300 + int(100);
    sessions++;
    const q = queueId(at, qseq++, pid);
    const sm = `sendmail[${pid}]: ${q}:`;
    const before = lines.length;
    const kind = rnd();
    let t = at + 200 + int(1500);
    if (kind < 0.35) {
      // Attacker: 1-8 failed AUTH, then quits.
      const addr = pick(attackers);
      const r = relay(addr);
      const n = 1 + int(8);
      for (let k = 1; k <= n; k++) {
        const user = pick(guesses);
        const w = pick(workers);
        push(t, 1, `saslauthd[${w}]: pam_unix(smtp:auth): authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=  user=${user}`);
        t += 2000 + int(300);
        push(t, 1, `saslauthd[${w}]: DEBUG: auth_pam: pam_authenticate failed: Authentication failure`);
        push(t, 1, `saslauthd[${w}]:                 : auth failure: [user=${user}] [service=smtp] [realm=] [mech=pam] [reason=PAM auth error]`);
        const mech = rnd() < 0.5 ? 'LOGIN' : 'PLAIN';
        const why = mech === 'LOGIN' ? 'checkpass failed' : 'Password verification failed';
        push(t + int(200), 0, `${sm} AUTH failure (${mech}): authentication failure (-13) SASL(-13): authentication failure: ${why}, user=${user}, relay=${r}`);
        failures.set(addr, (failures.get(addr) ?? 0) + 1);
        if (k === 5) push(t + 300, 0, `${sm} ${r}: possible SMTP attack: command=AUTH, count=5`);
        t += 300 + int(400) + (k >= 5 ? 1000 * (k - 4) : 0);
      }
      push(t, 0, `${sm} ${r} did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA`);
    } else if (kind < 0.6) {
      // A user submitting mail, sometimes after one typo.
      const addr = `198.51.100.${200 + int(50)}`;
      const r = relay(addr);
      const user = pick(users);
      if (rnd() < 0.1) {
        const w = pick(workers);
        push(t, 1, `saslauthd[${w}]: pam_unix(smtp:auth): authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=  user=${user}`);
        t += 2000 + int(300);
        push(t, 1, `saslauthd[${w}]:                 : auth failure: [user=${user}] [service=smtp] [realm=] [mech=pam] [reason=PAM auth error]`);
        push(t + int(200), 0, `${sm} AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=${user}, relay=${r}`);
        failures.set(addr, (failures.get(addr) ?? 0) + 1);
        t += 500;
      }
      push(t, 0, `sendmail[${pid}]: STARTTLS=server, relay=${r}, version=TLSv1.3, verify=NO, cipher=TLS_AES_256_GCM_SHA384, bits=256/256`);
      push(t + 50, 0, `sendmail[${pid}]: AUTH=server, relay=${r}, authid=${user}, mech=LOGIN, bits=0`);
      t += 300 + int(500);
      push(t, 0, `${sm} from=<${user}@example.org>, size=${1000 + int(50000)}, class=0, nrcpts=1, msgid=<${q}.${seq}@client.example>, proto=ESMTPA, daemon=MTA, relay=${r}`);
      const child = pid + 1;
      push(t + 400, 0, `sendmail[${child}]: ${q}: to=<friend${int(100)}@example.net>, delay=00:00:01, xdelay=00:00:01, mailer=esmtp, pri=${30000 + int(9000)}, relay=mx.example.net. [198.51.100.254], dsn=2.0.0, stat=Sent (ok)`);
    } else if (kind < 0.9) {
      // MX traffic: delivery without AUTH, or a probe that leaves.
      const addr = `198.51.100.${100 + int(100)}`;
      const r = relay(addr);
      if (rnd() < 0.7) {
        push(t, 0, `${sm} from=<news${int(1000)}@lists.example>, size=${2000 + int(90000)}, class=0, nrcpts=1, msgid=<${seq}@lists.example>, proto=ESMTP, daemon=MTA, relay=${r}`);
        push(t + 300, 0, `sendmail[${pid + 1}]: ${q}: to=<alice@mx.example>, delay=00:00:00, xdelay=00:00:00, mailer=local, pri=${30000 + int(9000)}, dsn=2.0.0, stat=Sent`);
      } else {
        push(t, 0, `${sm} ${r} did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA`);
      }
    } else {
      // Other programs.
      const noise = [
        `sm-msp-queue[${pid}]: runqueue: Skipping queue run -- load average too high`,
        `CRON[${pid}]: (root) CMD (test -x /usr/sbin/sendmail && /usr/share/sendmail/sendmail cron-msp)`,
        `kernel: [${int(999999)}.${int(999999)}] nf_conntrack: table full, dropping packet`,
        `systemd[1]: Started session ${int(9999)} of user root.`,
        `dovecot: imap-login: Login: user=<carol>, method=PLAIN, rip=198.51.100.210, lip=198.51.100.1, mpid=${pid}, TLS`,
      ];
      push(t, rnd() < 0.5 ? 0 : 1, pick(noise));
    }
    total += lines.length - before;
  }
  lines.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const outs = [createWriteStream(maillog), createWriteStream(authlog)];
  const bufs: string[][] = [[], []];
  let mailLines = 0;
  let authLines = 0;
  for (const [, , file, text] of lines) {
    bufs[file]!.push(text);
    if (file === 0) mailLines++;
    else authLines++;
    if (bufs[file]!.length >= 4096) {
      const ok = outs[file]!.write(`${bufs[file]!.join('\n')}\n`);
      bufs[file] = [];
      if (!ok) await new Promise<void>((r) => outs[file]!.once('drain', () => r()));
    }
  }
  for (const f of [0, 1] as const) {
    if (bufs[f]!.length > 0) outs[f]!.write(`${bufs[f]!.join('\n')}\n`);
    await new Promise<void>((resolve, reject) => outs[f]!.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
  return { failures, sessions, mailLines, authLines };
}
