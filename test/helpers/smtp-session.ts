/**
 * Scripted sendmail-side milter sessions and the maillog lines sendmail would write for them,
 * so integration tests drive the daemon exactly the way a real sendmail + syslog does.
 */
import { appendFileSync } from 'node:fs';
import { MtaClient, replyName, replyText } from './mta-client.js';

let seq = 0;

/** A queue id as sendmail makes it: 8 characters of time and sequence, then the pid (>= 6 digits). */
export function queueId(pid: number): string {
  const head = `6AQ${(seq++ % 100000).toString(36).toUpperCase().padStart(5, '0')}`.slice(0, 8);
  return `${head}${String(pid).padStart(6, '0')}`;
}

/** BSD syslog timestamp (local time, as rsyslog writes by default). */
export function bsdStamp(d = new Date()): string {
  const mon = d.toLocaleString('en-US', { month: 'short' });
  return `${mon} ${String(d.getDate()).padStart(2, ' ')} ${d.toTimeString().slice(0, 8)}`;
}

export interface OpenSession {
  readonly client: MtaClient;
  readonly qid: string;
  readonly pid: number;
  /** The CONNECT reply's name (`continue`, `replycode`, …) and text. */
  readonly verdict: string;
  readonly text: string;
}

/** OPTNEG, connect macros and CONNECT from `address`, as sendmail 8.17 sends them. */
export async function openSession(port: number, address: string, pid: number): Promise<OpenSession> {
  const client = await MtaClient.connect({ port });
  await client.negotiate();
  const qid = queueId(pid);
  const family = address.includes(':') ? '6' : '4';
  client.send({ cmd: 'macro', stage: 'C', macros: { j: 'mx.test', _: `client.test [${address}]`, i: qid, '{client_addr}': address, '{client_port}': '40000', '{daemon_name}': 'MTA' } });
  const reply = await client.request({ cmd: 'connect', hostname: 'client.test', family, port: 40000, address: family === '6' ? `IPv6:${address}` : address });
  if (!reply) throw new Error('no reply to CONNECT');
  return { client, qid, pid, verdict: replyName(reply), text: replyText(reply) };
}

/** sendmail's LogLevel 9 line for a failed AUTH in that session. */
export function authFailureLine(s: { qid: string; pid: number }, address: string, user = 'victim'): string {
  return `${bsdStamp()} mx sendmail[${s.pid}]: ${s.qid}: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=${user}, relay=client.test [${address}]\n`;
}

export function appendLine(file: string, line: string): void {
  appendFileSync(file, line);
}
