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
import { unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { isLoopback, parseAddress } from '../../core/address.js';
import { refusalWarner } from '../../core/refusal-warner.js';
import { clearStaleSocket } from '../../core/unix-socket.js';
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
  /**
   * A stream connection that has not sent one whole message this long is closed: senders
   * connect when they have something to log, so such a connection only holds a slot.
   */
  readonly firstMessageTimeoutMs: number;
  /** Permit binding to non-loopback addresses. */
  readonly allowRemote: boolean;
}

export const DEFAULT_SYSLOG_RECEIVER_OPTIONS: SyslogReceiverOptions = {
  listen: [{ kind: 'udp', host: '127.0.0.1', port: 5514 }],
  maxMessageBytes: 16 * 1024,
  maxConnections: 64,
  idleTimeoutMs: 15 * 60 * 1000,
  firstMessageTimeoutMs: 30 * 1000,
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

/** Connections refused at maxConnections are counted each, but warned about at most this often. */
const DROP_WARNING_INTERVAL_MS = 60 * 1000;

/**
 * RFC 6587 framing on a stream: a frame starting `DIGITS SP` is octet-counted, anything else
 * ends at LF or NUL. Pure; every message is cut at maxBytes (and flagged truncated), whatever
 * its framing or however its bytes were split across reads.
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
      if (!this.discardingLine) {
        const frame = this.octetFrame();
        if (frame === 'wait') return;
        if (frame) {
          const kept = Math.min(frame.len, this.maxBytes);
          if (this.buf.length < frame.start + kept) return;
          this.emit(frame.start, frame.len);
          this.buf = this.buf.subarray(frame.start + kept);
          this.skip = frame.len - kept;
          continue;
        }
      }
      const lf = this.buf.indexOf(LF);
      const nul = this.buf.indexOf(NUL);
      const end = lf < 0 ? nul : nul < 0 ? lf : Math.min(lf, nul);
      if (end < 0) {
        if (this.buf.length > this.maxBytes && !this.discardingLine) {
          this.emit(0, this.buf.length);
          this.discardingLine = true;
        }
        if (this.discardingLine) this.buf = Buffer.alloc(0);
        return;
      }
      if (this.discardingLine) this.discardingLine = false;
      else if (end > 0) this.emit(0, end);
      this.buf = this.buf.subarray(end + 1);
    }
  }

  /**
   * The stream is over. After a clean end the held LF/NUL-framed remainder is a whole message:
   * senders may leave out the last terminator. Returns true when bytes were lost: an
   * octet-counted frame the sender promised but did not finish, or anything held when the
   * stream did not end cleanly (reset, timeout), where the remainder may be a cut line.
   */
  finish(cleanEnd: boolean): boolean {
    let lost = this.skip > 0;
    if (!lost && this.buf.length > 0 && !this.discardingLine) {
      const frame = this.octetFrame();
      if (cleanEnd && (frame === null || frame === 'wait')) this.emit(0, this.buf.length);
      else lost = true;
    }
    this.buf = Buffer.alloc(0);
    this.skip = 0;
    this.discardingLine = false;
    return lost;
  }

  /** An octet-counted frame's header at the start of buf; 'wait' while its digits may still be one. */
  private octetFrame(): { start: number; len: number } | 'wait' | null {
    if (this.buf[0]! < 0x31 || this.buf[0]! > 0x39) return null;
    const sp = this.buf.subarray(0, 11).indexOf(SP);
    if (sp < 0) return this.buf.length <= 10 && /^\d+$/.test(this.buf.toString('latin1')) ? 'wait' : null;
    const digits = this.buf.subarray(0, sp).toString('latin1');
    return /^\d+$/.test(digits) ? { start: sp + 1, len: Number(digits) } : null;
  }

  /** Delivers the len bytes at start, cut at maxBytes. */
  private emit(start: number, len: number): void {
    const kept = Math.min(len, this.maxBytes);
    this.onMessage(this.buf.subarray(start, start + kept).toString('utf8'), len > this.maxBytes);
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
    // A socket left by a previous run blocks listen(); a live one (the milter's, say) is refused.
    if (l.kind === 'unix') await clearStaleSocket(l.path, 'syslog unix listener');
    const server = createServer((conn) => this.accept(conn, kind));
    server.maxConnections = this.opts.maxConnections;
    const warnRefused = refusalWarner(DROP_WARNING_INTERVAL_MS, (refused) => this.deps.logger?.warn(
      { source: kind, refused, maxConnections: this.opts.maxConnections },
      'syslog stream listener at maxConnections: connections refused since the last warning',
    ));
    server.on('drop', () => {
      this.deps.metrics?.sourceErrors.inc({ source: kind });
      warnRefused(undefined);
    });
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
    let heard = false;
    const framer = new StreamFramer(this.opts.maxMessageBytes, (msg, truncated) => {
      if (!heard) conn.setTimeout(this.opts.idleTimeoutMs);
      heard = true;
      if (msg !== '') this.deliver(kind, msg, truncated);
    });
    conn.setTimeout(Math.min(this.opts.firstMessageTimeoutMs, this.opts.idleTimeoutMs));
    conn.on('timeout', () => conn.destroy());
    conn.on('data', (chunk) => framer.push(chunk));
    conn.on('error', () => this.deps.metrics?.sourceErrors.inc({ source: kind }));
    let finished = false;
    const finish = (cleanEnd: boolean, errorCounted: boolean): void => {
      if (finished) return;
      finished = true;
      if (!framer.finish(cleanEnd)) return;
      // After a reset the 'error' listener has counted the connection; the loss is that event.
      if (!errorCounted) this.deps.metrics?.sourceErrors.inc({ source: kind });
      this.deps.logger?.debug({ source: kind, cleanEnd }, 'syslog stream closed inside a message; its bytes are dropped');
    };
    conn.on('end', () => finish(true, false));
    conn.on('close', (hadError) => {
      finish(false, hadError);
      this.conns.delete(conn);
    });
  }
}
