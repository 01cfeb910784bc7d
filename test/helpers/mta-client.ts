/**
 * The MTA side of the milter protocol, over a real socket: what sendmail does to a filter.
 * Tests, the fuzzer and the benchmark drive milters with it, so the encoders are pure
 * (a fuzzer mutates their output) and the reader does no more copying than it must.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { FrameDecoder, type Frame } from '../../src/milter/frame-decoder.js';
import { needsReply } from '../../src/milter/negotiate.js';
import { SMFIC, SMFIR } from '../../src/milter/wire-constants.js';

/** What sendmail 8.17 offers (see SENDMAIL.md): version 6, every action, every protocol step. */
export const SENDMAIL_OFFER = { version: 6, actions: 0x1ff, protocol: 0x1fffff } as const;

export type MacroStage = 'C' | 'H' | 'M' | 'R' | 'T' | 'N' | 'E' | 'U';
export type Family = '4' | '6' | 'U' | 'L';

export type MtaCommand =
  | { readonly cmd: 'optneg'; readonly version?: number; readonly actions?: number; readonly protocol?: number }
  | { readonly cmd: 'macro'; readonly stage: MacroStage; readonly macros: Readonly<Record<string, string>> | readonly (readonly [string, string])[] }
  | { readonly cmd: 'connect'; readonly hostname: string; readonly family: Family; readonly port?: number; readonly address?: string }
  | { readonly cmd: 'helo'; readonly name: string }
  | { readonly cmd: 'mail' | 'rcpt'; readonly args: readonly string[] }
  | { readonly cmd: 'header'; readonly name: string; readonly value: string }
  | { readonly cmd: 'body'; readonly chunk: Buffer | string }
  | { readonly cmd: 'unknown'; readonly line: string }
  | { readonly cmd: 'data' | 'eoh' | 'eom' | 'abort' | 'quit' | 'quit_nc' };

const EMPTY = Buffer.alloc(0);

/** One frame: 4-byte length of what follows, command byte, data. */
export function frame(command: number, data: Buffer = EMPTY): Buffer {
  const out = Buffer.allocUnsafe(5 + data.length);
  out.writeUInt32BE(1 + data.length, 0);
  out[4] = command;
  data.copy(out, 5);
  return out;
}

/** NUL-terminated strings, the milter protocol's only string form. */
function cstrings(parts: readonly string[]): Buffer {
  return Buffer.from(parts.map((p) => `${p}\0`).join(''), 'latin1');
}

/** The command byte of each MtaCommand. */
const CODE: Record<MtaCommand['cmd'], number> = {
  optneg: SMFIC.OPTNEG,
  macro: SMFIC.MACRO,
  connect: SMFIC.CONNECT,
  helo: SMFIC.HELO,
  mail: SMFIC.MAIL,
  rcpt: SMFIC.RCPT,
  header: SMFIC.HEADER,
  body: SMFIC.BODY,
  unknown: SMFIC.UNKNOWN,
  data: SMFIC.DATA,
  eoh: SMFIC.EOH,
  eom: SMFIC.BODYEOB,
  abort: SMFIC.ABORT,
  quit: SMFIC.QUIT,
  quit_nc: SMFIC.QUIT_NC,
};

export function encodeCommand(c: MtaCommand): Buffer {
  return frame(CODE[c.cmd], commandData(c));
}

function commandData(c: MtaCommand): Buffer | undefined {
  switch (c.cmd) {
    case 'optneg': {
      const d = Buffer.allocUnsafe(12);
      d.writeUInt32BE(c.version ?? SENDMAIL_OFFER.version, 0);
      d.writeUInt32BE(c.actions ?? SENDMAIL_OFFER.actions, 4);
      d.writeUInt32BE(c.protocol ?? SENDMAIL_OFFER.protocol, 8);
      return d;
    }
    case 'macro': {
      const pairs = Array.isArray(c.macros) ? c.macros : Object.entries(c.macros);
      return Buffer.concat([Buffer.from(c.stage, 'latin1'), cstrings(pairs.flat())]);
    }
    case 'connect': {
      const host = cstrings([c.hostname]);
      const fam = Buffer.from(c.family, 'latin1');
      if (c.family === 'U') return Buffer.concat([host, fam]);
      const port = Buffer.allocUnsafe(2);
      port.writeUInt16BE(c.port ?? 0, 0);
      return Buffer.concat([host, fam, port, cstrings([c.address ?? ''])]);
    }
    case 'helo':
      return cstrings([c.name]);
    case 'mail':
    case 'rcpt':
      return cstrings(c.args);
    case 'header':
      return cstrings([c.name, c.value]);
    case 'body':
      return typeof c.chunk === 'string' ? Buffer.from(c.chunk, 'latin1') : c.chunk;
    case 'unknown':
      return cstrings([c.line]);
    default:
      return undefined;
  }
}

/** A milter reply: `command` is an SMFIR_* code. */
export type MilterReply = Frame;

export interface OptnegReply {
  readonly version: number;
  readonly actions: number;
  readonly protocol: number;
  /** Macro names the milter asked for, by stage index (0 connect, 1 helo, 2 mail, …). */
  readonly macros: ReadonlyMap<number, readonly string[]>;
}

export function decodeOptneg(data: Buffer): OptnegReply {
  if (data.length < 12) throw new Error(`OPTNEG reply too short: ${data.length} bytes`);
  const macros = new Map<number, string[]>();
  let off = 12;
  while (off + 4 < data.length) {
    const stage = data.readUInt32BE(off);
    const end = data.indexOf(0, off + 4);
    const stop = end < 0 ? data.length : end;
    macros.set(stage, data.toString('latin1', off + 4, stop).split(' ').filter(Boolean));
    off = stop + 1;
  }
  return { version: data.readUInt32BE(0), actions: data.readUInt32BE(4), protocol: data.readUInt32BE(8), macros };
}

/** The reply code as a character, for messages: `c`, `y`, `O`. */
export function replyName(r: MilterReply): string {
  return `'${String.fromCharCode(r.command)}'`;
}

/** The text of a REPLYCODE reply (`421 4.7.1 go away`), without its NUL. */
export function replyText(r: MilterReply): string {
  const end = r.payload.indexOf(0);
  return r.payload.toString('latin1', 0, end < 0 ? r.payload.length : end);
}

/** A TCP milter (optionally from a chosen loopback source address) or a unix socket. */
export type Target = { readonly port: number; readonly host?: string; readonly localAddress?: string } | { readonly path: string };

export interface ClientOptions {
  /** How long expectReply waits before failing. */
  readonly replyTimeoutMs?: number;
}

/** Raised by expectReply when the milter closed the connection instead of replying. */
export class ConnectionClosed extends Error {}

/**
 * One milter connection, MTA side. Replies queue up as they arrive; expectReply takes them
 * in order. Negotiation records the milter's no-reply bits so `request` knows when to wait.
 */
export class MtaClient {
  private readonly reader = new FrameDecoder();
  private readonly replies: MilterReply[] = [];
  private waiter: { resolve: (r: MilterReply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | undefined;
  private ended: Error | undefined;
  /** Protocol bits in force: until negotiation, every stage is answered. */
  private protocol = 0;
  /** The milter's OPTNEG answer, once negotiated. */
  negotiated: OptnegReply | undefined;

  private constructor(
    readonly socket: Socket,
    private readonly replyTimeoutMs: number,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      for (const f of this.reader.push(chunk)) this.deliver(f);
      if (this.reader.failure) {
        this.fail(this.reader.failure);
        socket.destroy();
      }
    });
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new ConnectionClosed('milter closed the connection')));
  }

  static connect(target: Target, opts: ClientOptions = {}): Promise<MtaClient> {
    return new Promise((resolve, reject) => {
      const s =
        'path' in target
          ? netConnect(target.path)
          : netConnect({ port: target.port, host: target.host ?? '127.0.0.1', ...(target.localAddress ? { localAddress: target.localAddress } : {}) });
      const onError = (e: Error): void => reject(e);
      s.once('error', onError);
      s.once('connect', () => {
        s.off('error', onError);
        resolve(new MtaClient(s, opts.replyTimeoutMs ?? 5000));
      });
    });
  }

  /** True once the milter closed or the socket failed. */
  get closed(): boolean {
    return this.ended !== undefined;
  }

  send(c: MtaCommand): void {
    this.writeRaw(encodeCommand(c));
  }

  writeRaw(buf: Buffer): void {
    if (!this.ended) this.socket.write(buf);
  }

  expectReply(timeoutMs = this.replyTimeoutMs): Promise<MilterReply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.ended) return Promise.reject(this.ended);
    if (this.waiter) return Promise.reject(new Error('expectReply already pending'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no milter reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = { resolve, reject, timer };
    });
  }

  /**
   * Sends a command and returns the milter's final answer to it, skipping PROGRESS; returns
   * undefined for commands that get no reply (macros, quit, abort, negotiated no-reply stages).
   * Negotiate with `negotiate()`, not here.
   */
  async request(c: MtaCommand): Promise<MilterReply | undefined> {
    this.send(c);
    if (!needsReply(CODE[c.cmd], this.protocol)) return undefined;
    for (let i = 0; i < 1000; i++) {
      const r = await this.expectReply();
      if (r.command !== SMFIR.PROGRESS) return r;
    }
    throw new Error('milter sent 1000 PROGRESS replies in a row');
  }

  /** OPTNEG with sendmail's offer unless told otherwise; the reply must be an OPTNEG. */
  async negotiate(offer: Partial<Omit<Extract<MtaCommand, { cmd: 'optneg' }>, 'cmd'>> = {}): Promise<OptnegReply> {
    this.send({ cmd: 'optneg', ...offer });
    const r = await this.expectReply();
    if (r.command !== SMFIR.OPTNEG) throw new Error(`expected OPTNEG reply, got ${replyName(r)}`);
    this.negotiated = decodeOptneg(r.payload);
    this.protocol = this.negotiated.protocol;
    return this.negotiated;
  }

  /** Sends QUIT and waits for the milter to close its side. */
  async quit(timeoutMs = 2000): Promise<void> {
    this.send({ cmd: 'quit' });
    this.socket.end();
    await this.closedWithin(timeoutMs);
  }

  /** Resolves when the socket is closed; rejects if that takes longer than timeoutMs. */
  closedWithin(timeoutMs: number): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private deliver(f: MilterReply): void {
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      clearTimeout(w.timer);
      w.resolve(f);
    } else this.replies.push(f);
  }

  private fail(e: Error): void {
    this.ended ??= e;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      clearTimeout(w.timer);
      w.reject(this.ended);
    }
  }
}
