/**
 * Load generator for the milter benchmark: plays sendmail against a milter, one new milter
 * connection per SMTP session (optneg, connect with sendmail's macros, helo, mail, rcpt, quit),
 * and records how long the CONNECT reply and the whole session took.
 */
import { performance } from 'node:perf_hooks';
import { SMFIR } from '../../../src/milter/wire-constants.js';
import { MtaClient, replyName, type MtaCommand, type Target } from '../../helpers/mta-client.js';

export interface LoadResult {
  readonly sessions: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly elapsedS: number;
  /** CONNECT written to its reply read, ms, sorted. */
  readonly connectMs: Float64Array;
  /** Whole session: TCP connect to the milter's close after QUIT, ms, sorted. */
  readonly sessionMs: Float64Array;
}

export interface OpenLoopResult extends LoadResult {
  /** From the session's scheduled start to its CONNECT reply (TCP connect + optneg + connect), ms, sorted. */
  readonly scheduledToConnectMs: Float64Array;
  readonly achievedRate: number;
}

/** Percentile of a sorted sample (nearest rank). */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

class Samples {
  private buf: Float64Array;
  private n = 0;
  constructor(capacity: number) {
    this.buf = new Float64Array(Math.max(16, capacity));
  }
  add(v: number): void {
    if (this.n === this.buf.length) {
      const bigger = new Float64Array(this.buf.length * 2);
      bigger.set(this.buf);
      this.buf = bigger;
    }
    this.buf[this.n++] = v;
  }
  sorted(): Float64Array {
    return this.buf.slice(0, this.n).sort();
  }
}

/** The commands of session n, with the macros sendmail 8.17 sends at each stage. */
function sessionCommands(n: number): { connect: MtaCommand[]; steps: MtaCommand[] } {
  const pid = 10000 + (n % 90000);
  const qid = `6APH${(n % 10000).toString().padStart(4, '0')}${pid.toString().padStart(6, '0')}`;
  const ip = `198.51.100.${1 + (n % 250)}`;
  const port = 1024 + (n % 60000);
  return {
    connect: [
      {
        cmd: 'macro',
        stage: 'C',
        macros: {
          j: 'mx.bench.test',
          _: `client${n}.example [${ip}]`,
          i: qid,
          '{daemon_name}': 'MTA',
          '{daemon_addr}': '127.0.0.1',
          '{daemon_port}': '25',
          '{if_name}': 'localhost',
          '{client_addr}': ip,
          '{client_port}': String(port),
          '{client_name}': `client${n}.example`,
          '{client_ptr}': `client${n}.example`,
          '{client_resolve}': 'OK',
          '{client_connections}': '1',
          '{client_rate}': '1',
          '{total_rate}': '1',
        },
      },
      { cmd: 'connect', hostname: `client${n}.example`, family: '4', port, address: ip },
    ],
    steps: [
      { cmd: 'macro', stage: 'H', macros: { i: qid } },
      { cmd: 'helo', name: `client${n}.example` },
      { cmd: 'macro', stage: 'M', macros: { i: qid, '{mail_mailer}': 'esmtp', '{mail_addr}': 'sender@example.org' } },
      { cmd: 'mail', args: ['<sender@example.org>', 'SIZE=100'] },
      { cmd: 'macro', stage: 'R', macros: { '{rcpt_mailer}': 'local', '{rcpt_addr}': 'user' } },
      { cmd: 'rcpt', args: ['<user@mx.bench.test>'] },
    ],
  };
}

/**
 * Session n's source address, spread over 127.77.0.0/16. Tens of thousands of sessions from
 * one address would cycle through its ephemeral ports while the milter side may still hold
 * earlier connections in TIME_WAIT; a SYN that meets one waits for a retransmit, which is
 * kernel noise, not milter time.
 */
function spread(target: Target, n: number): Target {
  if ('path' in target || target.host !== undefined) return target;
  return { ...target, localAddress: `127.77.${(n >> 8) % 250}.${1 + (n % 250)}` };
}

interface Recorder {
  readonly connect: Samples;
  readonly session: Samples;
  readonly onConnectReply?: (n: number, at: number) => void;
}

/**
 * One SMTP session's worth of milter traffic; throws on any unexpected reply. Both milters
 * negotiate a reply at CONNECT only, so HELO, MAIL and RCPT go out without a wait.
 */
async function runSession(target: Target, n: number, rec: Recorder): Promise<void> {
  const { connect, steps } = sessionCommands(n);
  const t0 = performance.now();
  const c = await MtaClient.connect(spread(target, n), { replyTimeoutMs: 30_000 });
  try {
    await c.negotiate();
    for (const cmd of connect.slice(0, -1)) c.send(cmd);
    const t = performance.now();
    const r = await c.request(connect[connect.length - 1]!);
    const at = performance.now();
    if (r && r.command !== SMFIR.CONTINUE) throw new Error(`connect answered ${replyName(r)}`);
    rec.connect.add(at - t);
    rec.onConnectReply?.(n, at);
    for (const cmd of steps) {
      const r2 = await c.request(cmd);
      if (r2 && r2.command !== SMFIR.CONTINUE) throw new Error(`${cmd.cmd} answered ${replyName(r2)}`);
    }
    // As sendmail does: QUIT, then close; the session ends when the milter has closed too.
    c.send({ cmd: 'quit' });
    c.socket.end();
    await c.closedWithin(30_000);
    rec.session.add(performance.now() - t0);
  } finally {
    c.destroy();
  }
}

/** Closed loop: `concurrency` sessions always in flight until `sessions` have run. */
export async function closedLoop(target: Target, concurrency: number, sessions: number): Promise<LoadResult> {
  const rec: Recorder = { connect: new Samples(sessions), session: new Samples(sessions) };
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const worker = async (): Promise<void> => {
    while (next < sessions) {
      const n = next++;
      try {
        await runSession(target, n, rec);
      } catch (e) {
        errors++;
        firstError ??= (e as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsedS = (performance.now() - start) / 1000;
  return { sessions, errors, firstError, elapsedS, connectMs: rec.connect.sorted(), sessionMs: rec.session.sorted() };
}

/**
 * Open loop: starts sessions at `rate` per second whatever the milter's pace, for `durationS`,
 * so a slow milter shows as latency instead of slowing the offered load. In-flight sessions
 * are capped so a stalled milter cannot exhaust the machine.
 */
export async function openLoop(target: Target, rate: number, durationS: number, maxInFlight = 4000): Promise<OpenLoopResult> {
  const total = Math.round(rate * durationS);
  const scheduled = new Float64Array(total);
  const sched = new Samples(total);
  const rec: Recorder = {
    connect: new Samples(total),
    session: new Samples(total),
    onConnectReply: (n, at) => sched.add(at - scheduled[n]!),
  };
  let started = 0;
  let inFlight = 0;
  let errors = 0;
  let firstError: string | undefined;
  const running: Promise<void>[] = [];
  const start = performance.now();
  const deadline = start + durationS * 1000 + 60_000;
  while (started < total && performance.now() < deadline) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
    while (started < due && inFlight < maxInFlight) {
      const n = started++;
      scheduled[n] = start + (n / rate) * 1000;
      inFlight++;
      running.push(
        runSession(target, n, rec)
          .catch((e: Error) => {
            errors++;
            firstError ??= e.message;
          })
          .finally(() => inFlight--),
      );
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(running);
  const elapsedS = (performance.now() - start) / 1000;
  return {
    sessions: started,
    errors,
    firstError,
    elapsedS,
    connectMs: rec.connect.sorted(),
    sessionMs: rec.session.sorted(),
    scheduledToConnectMs: sched.sorted(),
    achievedRate: started / durationS,
  };
}
