/**
 * Receives syslog messages (RFC 3164 or RFC 5424 frames) on loopback.
 *
 * Node has no AF_UNIX SOCK_DGRAM sockets (node:dgram is udp4/udp6 only), so rsyslog's
 * omuxsock and /dev/log-style datagram sockets cannot be served. What works with node alone:
 * - UDP (rsyslog `omfwd protocol="udp" target="127.0.0.1"`, `logger -d -n 127.0.0.1 -P PORT`);
 * - TCP (rsyslog `omfwd protocol="tcp"`, RFC 6587 octet counting or LF framing; `logger -T`);
 * - a unix STREAM socket with the same framing (glibc syslog(3) falls back to SOCK_STREAM,
 *   `logger -u PATH --socket-type stream`, which ends each message with NUL or LF).
 * Anyone who can send here can forge log lines, so binding beyond loopback needs allowRemote.
 */
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { lstat, unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { isLoopback, parseAddress } from '../../core/address.js';
import type { LogsMetrics, SourceKind } from '../metrics.js';
import type { SourceLine } from '../records.js';

export type SyslogListen =
  | { readonly kind: 'udp'; readonly host: string; readonly port: number }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

export interface SyslogReceiverOptions {
  readonly listen: readonly SyslogListen[];
  /** Longer messages are truncated (and counted). */
  readonly maxMessageBytes: number;
  readonly maxConnections: number;
  /** A stream connection silent this long is closed. */
  readonly idleTimeoutMs: number;
  /** Permit binding to non-loopback addresses. */
  readonly allowRemote: boolean;
}

export const DEFAULT_SYSLOG_RECEIVER_OPTIONS: SyslogReceiverOptions = {
  listen: [{ kind: 'udp', host: '127.0.0.1', port: 5514 }],
  maxMessageBytes: 16 * 1024,
  maxConnections: 64,
  idleTimeoutMs: 15 * 60 * 1000,
  allowRemote: false,
};

export interface SyslogReceiverDeps {
  readonly logger?: Logger;
  readonly metrics?: LogsMetrics;
}

/** Where a listener ended up (port 0 picks a free port). */
export type BoundListener =
  | { readonly kind: 'udp' | 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

const LF = 0x0a;
const NUL = 0x00;
const SP = 0x20;

/**
 * RFC 6587 framing on a stream: a frame starting `DIGITS SP` is octet-counted, anything else
 * ends at LF or NUL. Pure; bounded by maxBytes per message.
 */
export class StreamFramer {
  private buf: Buffer = Buffer.alloc(0);
  /** Bytes of an over-long octet-counted frame still to skip. */
  private skip = 0;
  private discardingLine = false;

  constructor(
    private readonly maxBytes: number,
    private readonly onMessage: (msg: string, truncated: boolean) => void,
  ) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (let guard = 0; guard < 1_000_000 && this.buf.length > 0; guard++) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, this.buf.length);
        this.skip -= n;
        this.buf = this.buf.subarray(n);
        continue;
      }
      if (!this.discardingLine && this.buf[0]! >= 0x31 && this.buf[0]! <= 0x39) {
        const sp = this.buf.indexOf(SP);
        const digits = sp > 0 ? this.buf.subarray(0, sp).toString('latin1') : '';
        if (sp > 0 && sp <= 10 && /^\d+$/.test(digits)) {
          const len = Number(digits);
          if (len > this.maxBytes) {
            if (this.buf.length - sp - 1 < this.maxBytes) return;
            this.onMessage(this.buf.subarray(sp + 1, sp + 1 + this.maxBytes).toString('utf8'), true);
            this.skip = len;
            this.buf = this.buf.subarray(sp + 1);
            continue;
          }
          if (this.buf.length < sp + 1 + len) return;
          this.onMessage(this.buf.subarray(sp + 1, sp + 1 + len).toString('utf8'), false);
          this.buf = this.buf.subarray(sp + 1 + len);
          continue;
        }
        if (sp < 0 && this.buf.length <= 10 && /^\d+$/.test(this.buf.toString('latin1'))) return;
      }
      const lf = this.buf.indexOf(LF);
      const nul = this.buf.indexOf(NUL);
      const end = lf < 0 ? nul : nul < 0 ? lf : Math.min(lf, nul);
      if (end < 0) {
        if (this.buf.length > this.maxBytes && !this.discardingLine) {
          this.onMessage(this.buf.subarray(0, this.maxBytes).toString('utf8'), true);
          this.discardingLine = true;
        }
        if (this.discardingLine) this.buf = Buffer.alloc(0);
        return;
      }
      if (this.discardingLine) this.discardingLine = false;
      else if (end > 0) this.onMessage(this.buf.subarray(0, end).toString('utf8'), false);
      this.buf = this.buf.subarray(end + 1);
    }
  }
}

function stripDatagram(msg: Buffer, max: number): { text: string; truncated: boolean } {
  let end = msg.length;
  while (end > 0 && (msg[end - 1] === LF || msg[end - 1] === NUL)) end--;
  const truncated = end > max;
  return { text: msg.subarray(0, Math.min(end, max)).toString('utf8'), truncated };
}

export class SyslogReceiver {
  private readonly opts: SyslogReceiverOptions;
  private readonly udp: DgramSocket[] = [];
  private readonly servers: Array<{ server: Server; path?: string }> = [];
  private readonly conns = new Set<Socket>();
  private readonly bound: BoundListener[] = [];

  constructor(
    options: Partial<SyslogReceiverOptions>,
    private readonly onLine: (line: SourceLine) => void,
    private readonly deps: SyslogReceiverDeps = {},
  ) {
    this.opts = { ...DEFAULT_SYSLOG_RECEIVER_OPTIONS, ...options };
    for (const l of this.opts.listen) {
      if (l.kind === 'unix') continue;
      const addr = parseAddress(l.host);
      if (!addr) throw new Error(`syslog listen host is not an address: ${l.host}`);
      if (!isLoopback(addr) && !this.opts.allowRemote) {
        throw new Error(`syslog listen host ${l.host} is not loopback (set allowRemote to permit)`);
      }
    }
  }

  /** Listeners as bound (with the real port when 0 was asked for). */
  get listeners(): readonly BoundListener[] {
    return this.bound;
  }

  async start(): Promise<void> {
    try {
      for (const l of this.opts.listen) {
        if (l.kind === 'udp') await this.startUdp(l.host, l.port);
        else await this.startStream(l);
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    for (const s of this.udp.splice(0)) await new Promise<void>((r) => s.close(() => r()));
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    for (const { server, path } of this.servers.splice(0)) {
      await new Promise<void>((r) => server.close(() => r()));
      if (path) await unlink(path).catch(() => undefined);
    }
    this.bound.length = 0;
  }

  private deliver(kind: SourceKind, text: string, truncated: boolean): void {
    this.deps.metrics?.linesRead.inc({ source: kind });
    if (truncated) this.deps.metrics?.overlongLines.inc({ source: kind });
    this.onLine({ line: text, origin: kind.replace('-', ':'), receivedAt: Date.now() });
  }

  private async startUdp(host: string, port: number): Promise<void> {
    const family = parseAddress(host)!.family;
    const sock = createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
    sock.on('message', (msg) => {
      const { text, truncated } = stripDatagram(msg, this.opts.maxMessageBytes);
      if (text !== '') this.deliver('syslog-udp', text, truncated);
    });
    sock.on('error', (err) => {
      this.deps.metrics?.sourceErrors.inc({ source: 'syslog-udp' });
      this.deps.logger?.warn({ err }, 'syslog UDP socket error');
    });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, host, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    this.udp.push(sock);
    const a = sock.address();
    this.bound.push({ kind: 'udp', host: a.address, port: a.port });
  }

  private async startStream(l: Extract<SyslogListen, { kind: 'tcp' | 'unix' }>): Promise<void> {
    const kind: SourceKind = l.kind === 'tcp' ? 'syslog-tcp' : 'syslog-unix';
    if (l.kind === 'unix') {
      // A socket left by a previous run blocks listen(); never remove anything else.
      const st = await lstat(l.path).catch(() => null);
      if (st?.isSocket()) await unlink(l.path);
    }
    const server = createServer((conn) => this.accept(conn, kind));
    server.maxConnections = this.opts.maxConnections;
    server.on('error', (err) => {
      this.deps.metrics?.sourceErrors.inc({ source: kind });
      this.deps.logger?.warn({ err }, 'syslog stream listener error');
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const done = (): void => {
        server.off('error', reject);
        resolve();
      };
      if (l.kind === 'tcp') server.listen(l.port, l.host, done);
      else server.listen(l.path, done);
    });
    if (l.kind === 'unix') {
      this.servers.push({ server, path: l.path });
      this.bound.push({ kind: 'unix', path: l.path });
    } else {
      this.servers.push({ server });
      const a = server.address();
      if (a && typeof a === 'object') this.bound.push({ kind: 'tcp', host: a.address, port: a.port });
    }
  }

  private accept(conn: Socket, kind: SourceKind): void {
    this.conns.add(conn);
    const framer = new StreamFramer(this.opts.maxMessageBytes, (msg, truncated) => {
      if (msg !== '') this.deliver(kind, msg, truncated);
    });
    conn.setTimeout(this.opts.idleTimeoutMs, () => conn.destroy());
    conn.on('data', (chunk) => framer.push(chunk));
    conn.on('error', () => this.deps.metrics?.sourceErrors.inc({ source: kind }));
    conn.on('close', () => this.conns.delete(conn));
  }
}
