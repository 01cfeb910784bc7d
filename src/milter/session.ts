/**
 * One milter connection: decodes frames, keeps session state, calls the handler and writes
 * exactly one reply per event that needs one, in order.
 *
 * Events go through one queue per connection and the handler sees them one at a time, in
 * order, even when it is async: an event is not processed before the previous one's handler
 * settled or timed out. A handler that returns synchronously costs no extra tick.
 *
 * Replies: CONNECT is answered with the handler's verdict (use `continue`, not `accept`:
 * `accept` at connect makes sendmail drop the filter for the rest of the session). HELO,
 * MAIL and RCPT are notifications: authban negotiates no reply for them, and when the MTA
 * cannot do without one it gets CONTINUE, whatever the handler returned. End of message
 * always gets CONTINUE. MACRO, ABORT, QUIT and QUIT_NC get none.
 *
 * Session ids: each SMTP session gets a new id, also after QUIT_NC on the same socket.
 * `onClose` fires once per session to which at least one event was delivered.
 */
import type { Logger } from 'pino';
import type { AuthMacros, CloseReason, ConnectInfo, MilterHandler, SessionView, Verdict } from './handler.js';
import type { ConnectCommand, MtaCommand, OptnegCommand } from './commands.js';
import { decodeCommand, MAX_MACRO_PAIRS } from './commands.js';
import { FrameDecoder, MilterProtocolError } from './frame-decoder.js';
import { MacroStore } from './macros.js';
import type { MilterMetrics } from './metrics.js';
import { DEFAULT_MACRO_LISTS, type MacroLists, needsReply, negotiate } from './negotiate.js';
import { pidFromQueueId } from './queue-id.js';
import { CONTINUE_FRAME, encodeOptneg, encodeVerdict } from './replies.js';
import { COMMAND_NAMES, SMFIC } from './wire-constants.js';

export interface SessionOptions {
  readonly handler: MilterHandler;
  readonly logger: Logger;
  readonly handlerTimeoutMs: number;
  /** Sent when the handler throws, times out or returns an invalid verdict. */
  readonly fallback: Verdict;
  readonly maxFrameBytes: number;
  readonly macroLists?: MacroLists;
  readonly metrics?: MilterMetrics;
  /** Shared by the connections of one server: encoded OPTNEG answers by offer. */
  optnegCache?: Map<string, { readonly protocol: number; readonly frame: Buffer }>;
}

/** What a connection needs from its socket. */
export interface Transport {
  write(frame: Buffer): void;
  /** Graceful end after QUIT. */
  end(): void;
  /** Close after a protocol error: replies already written still go out, nothing more is read. */
  abort(): void;
}

let lastSessionId = 0;
const SAMPLE_BYTES = 32;
/** Distinct MTA offers remembered; more than a few means something odd is connecting. */
const OPTNEG_CACHE_MAX = 16;

class SessionState implements SessionView {
  readonly id = ++lastSessionId;
  connect?: ConnectInfo;
  helo?: string;
  queueId?: string;
  mailIssued = false;
  readonly macros = new MacroStore();
  /** An event reached the handler, so onClose is owed. */
  delivered = false;
  closed = false;

  macro(name: string): string | undefined {
    return this.macros.get(name);
  }
}

interface Queued {
  readonly cmd: MtaCommand;
  readonly code: number;
  /** performance.now() when the bytes arrived. */
  readonly at: number;
}

function isThenable(v: unknown): v is PromiseLike<Verdict> {
  return typeof (v as { then?: unknown } | null)?.then === 'function';
}

function connectInfo(cmd: ConnectCommand, macros: MacroStore): ConnectInfo {
  const queueId = macros.get('i');
  const pid = queueId === undefined ? undefined : pidFromQueueId(queueId);
  return {
    hostname: cmd.hostname,
    family: cmd.family,
    ...(cmd.address !== undefined ? { address: cmd.address } : {}),
    ...(cmd.port !== undefined ? { port: cmd.port } : {}),
    ...(queueId !== undefined ? { queueId } : {}),
    ...(pid !== undefined ? { pid } : {}),
  };
}

function authMacros(m: MacroStore): AuthMacros {
  const out: { authType?: string; authAuthen?: string; authSsf?: string; authAuthor?: string } = {};
  const type = m.get('auth_type');
  const authen = m.get('auth_authen');
  const ssf = m.get('auth_ssf');
  const author = m.get('auth_author');
  if (type !== undefined) out.authType = type;
  if (authen !== undefined) out.authAuthen = authen;
  if (ssf !== undefined) out.authSsf = ssf;
  if (author !== undefined) out.authAuthor = author;
  return out;
}

export class MilterConnection {
  private readonly decoder: FrameDecoder;
  private state = new SessionState();
  /** Negotiated protocol bits; -1 until OPTNEG. */
  private protocol = -1;
  private readonly queue: Queued[] = [];
  private head = 0;
  private busy = false;
  private pendingTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private eof = false;
  private lastCode = 0;
  private macroCapWarned = false;

  constructor(
    private readonly opts: SessionOptions,
    private readonly transport: Transport,
    /** For log lines: `127.0.0.1:4567` or `unix:/path`. A function: only logging pays for it. */
    private readonly describeRemote: () => string,
  ) {
    this.decoder = new FrameDecoder(opts.maxFrameBytes);
  }

  /** OPTNEG has been answered: from now on the MTA may stay silent for a whole SMTP command. */
  get hasNegotiated(): boolean {
    return this.protocol >= 0;
  }

  /** No handler call pending and nothing queued. */
  private get idle(): boolean {
    return !this.busy && this.head >= this.queue.length;
  }

  onData(chunk: Buffer): void {
    if (this.closed) return;
    const at = performance.now();
    const frames = this.decoder.push(chunk);
    const metrics = this.opts.metrics;
    for (const f of frames) {
      let cmd: MtaCommand;
      try {
        cmd = decodeCommand(f);
      } catch (err) {
        // Frames before the bad one are served first, and replies they owe go out when the
        // handler answers at once; one still pending from an async handler is dropped, since
        // the connection is closing. The connection ends after them.
        this.drain();
        this.fail(err as MilterProtocolError, Buffer.concat([Buffer.of(f.command), f.payload.subarray(0, SAMPLE_BYTES - 1)]));
        return;
      }
      metrics?.commands.labels(cmd.type).inc();
      this.queue.push({ cmd, code: f.command, at });
    }
    this.drain();
    if (this.decoder.failure) this.fail(this.decoder.failure);
  }

  /** The MTA closed its side: finish what is queued, then report the close. */
  onEnd(): void {
    if (this.closed) return;
    this.eof = true;
    if (this.decoder.midFrame) this.opts.logger.debug({ remote: this.describeRemote() }, 'milter: EOF inside a frame');
    if (this.idle) this.shutdown(this.eofReason());
  }

  /** The socket is gone. After an EOF the queue may still be finishing (bounded by the deadline). */
  onSocketClosed(): void {
    if (this.closed || (this.eof && !this.idle)) return;
    this.shutdown(this.eof ? this.eofReason() : 'error');
  }

  /** Socket gone (error, destroy, server shutdown): report once, drop pending work. */
  shutdown(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pendingTimer) clearTimeout(this.pendingTimer);
    this.pendingTimer = undefined;
    this.endSession(reason);
  }

  private eofReason(): CloseReason {
    return this.lastCode === SMFIC.ABORT ? 'abort_eof' : 'eof';
  }

  /** One warn line (reason, remote, the offending bytes in hex), then a hard close. */
  private fail(err: MilterProtocolError, frameStart?: Buffer): void {
    if (this.closed) return;
    this.opts.metrics?.protocolErrors.labels(err.kind).inc();
    const bytes = err.sample ?? frameStart;
    this.opts.logger.warn(
      { reason: err.message, remote: this.describeRemote(), ...(bytes ? { bytes: bytes.toString('hex') } : {}) },
      'milter protocol error, closing connection',
    );
    this.transport.abort();
    this.shutdown('error');
  }

  private drain(): void {
    while (!this.busy && !this.closed && this.head < this.queue.length) {
      const item = this.queue[this.head++]!;
      try {
        this.process(item);
      } catch (err) {
        if (!(err instanceof MilterProtocolError)) throw err;
        this.fail(err);
        return;
      }
    }
    if (this.head >= this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
      if (this.eof && !this.busy) this.shutdown(this.eofReason());
    }
  }

  private process(item: Queued): void {
    const { cmd } = item;
    if (cmd.type !== 'optneg' && this.protocol < 0) {
      throw new MilterProtocolError('sequence', `${cmd.type} before option negotiation`);
    }
    this.lastCode = item.code;
    const s = this.state;
    const h = this.opts.handler;
    switch (cmd.type) {
      case 'optneg': {
        if (this.protocol >= 0) throw new MilterProtocolError('sequence', 'second option negotiation on one connection');
        const n = this.negotiated(cmd);
        this.protocol = n.protocol;
        this.transport.write(n.frame);
        return;
      }
      case 'macro': {
        if (cmd.ignoredPairs !== undefined) this.macrosCapped(cmd.forCommand, cmd.ignoredPairs);
        if (s.macros.define(cmd.forCommand, cmd.pairs)) {
          const qid = s.macros.get('i');
          if (qid !== undefined) s.queueId = qid;
        }
        return;
      }
      case 'connect': {
        const info = connectInfo(cmd, s.macros);
        s.connect = info;
        if (this.opts.logger.isLevelEnabled('debug')) {
          this.opts.logger.debug({ session: s.id, remote: this.describeRemote(), client: info.address, queueId: info.queueId }, 'milter session connect');
        }
        this.call(item, h.onConnect && (() => h.onConnect!(s, info)));
        return;
      }
      case 'helo': {
        s.helo = cmd.helo;
        this.call(item, h.onHelo && (() => h.onHelo!(s, cmd.helo)));
        return;
      }
      case 'mail': {
        s.mailIssued = true;
        const auth = authMacros(s.macros);
        this.call(item, h.onMail && (() => h.onMail!(s, cmd.sender, cmd.args, auth)));
        return;
      }
      case 'rcpt':
        this.call(item, h.onRcpt && (() => h.onRcpt!(s, cmd.recipient, cmd.args)));
        return;
      case 'abort':
        s.macros.clearMessage();
        return;
      case 'quit':
        this.shutdown('quit');
        this.transport.end();
        return;
      case 'quit_nc':
        this.endSession('quit_nc');
        this.state = new SessionState();
        return;
      default:
        // data, header, eoh, body, eob, unknown: nothing for authban to decide.
        if (needsReply(item.code, this.protocol)) this.send(CONTINUE_FRAME, 'continue', item.at);
    }
  }

  /**
   * No sendmail sends this many macros, so a peer doing it is misconfigured or hostile: warned
   * about once per connection (the macros it wanted may be among those ignored), always counted.
   */
  private macrosCapped(forCommand: number, ignored: number): void {
    this.opts.metrics?.macroPairsIgnored.inc(ignored);
    if (this.macroCapWarned) return;
    this.macroCapWarned = true;
    this.opts.logger.warn(
      { remote: this.describeRemote(), event: COMMAND_NAMES.get(forCommand), ignored, kept: MAX_MACRO_PAIRS },
      'milter: MACRO command over the pair cap, the rest ignored',
    );
  }

  /** An MTA makes the same offer every time: its answer is encoded once. */
  private negotiated(offer: OptnegCommand): { protocol: number; frame: Buffer } {
    const cache = (this.opts.optnegCache ??= new Map());
    const key = `${offer.version}:${offer.protocol}`;
    let hit = cache.get(key);
    if (!hit) {
      const n = negotiate(offer, this.opts.macroLists ?? DEFAULT_MACRO_LISTS);
      hit = { protocol: n.protocol, frame: encodeOptneg(n.reply) };
      if (cache.size < OPTNEG_CACHE_MAX) cache.set(key, hit);
    }
    return hit;
  }

  /** Calls a handler, bounded by the deadline; replies when the MTA waits for one. */
  private call(item: Queued, fn: (() => Verdict | PromiseLike<Verdict>) | undefined): void {
    this.state.delivered = true;
    const reply = needsReply(item.code, this.protocol);
    if (!fn) {
      if (reply) this.send(CONTINUE_FRAME, 'continue', item.at);
      return;
    }
    let result: Verdict | PromiseLike<Verdict>;
    try {
      result = fn();
    } catch (err) {
      this.handlerFailed(err, item);
      result = this.opts.fallback;
    }
    if (!isThenable(result)) {
      this.finish(result, item, reply);
      return;
    }
    this.busy = true;
    const sessionId = this.state.id;
    let settled = false;
    const settle = (v: Verdict): void => {
      if (settled) return;
      settled = true;
      if (this.pendingTimer) clearTimeout(this.pendingTimer);
      this.pendingTimer = undefined;
      this.busy = false;
      if (this.closed) return;
      this.finish(v, item, reply);
      this.drain();
    };
    this.pendingTimer = setTimeout(() => {
      if (settled) return;
      this.opts.metrics?.handlerTimeouts.inc();
      this.opts.logger.warn(
        { session: sessionId, event: COMMAND_NAMES.get(item.code), timeoutMs: this.opts.handlerTimeoutMs },
        'milter handler missed its deadline, sending the fallback verdict',
      );
      settle(this.opts.fallback);
    }, this.opts.handlerTimeoutMs);
    result.then(settle, (err: unknown) => {
      if (settled) return;
      this.handlerFailed(err, item);
      settle(this.opts.fallback);
    });
  }

  private finish(v: Verdict, item: Queued, reply: boolean): void {
    if (!reply) return;
    if (item.code !== SMFIC.CONNECT) {
      this.send(CONTINUE_FRAME, 'continue', item.at);
      return;
    }
    let frame: Buffer;
    let kind = v?.kind;
    try {
      frame = encodeVerdict(v);
    } catch (err) {
      this.handlerFailed(err, item);
      frame = encodeVerdict(this.opts.fallback);
      kind = this.opts.fallback.kind;
    }
    this.send(frame, kind, item.at);
  }

  private send(frame: Buffer, verdict: string, at: number): void {
    this.transport.write(frame);
    const m = this.opts.metrics;
    if (m) {
      m.replies.labels(verdict).inc();
      m.replyLatency.observe((performance.now() - at) / 1000);
    }
  }

  private handlerFailed(err: unknown, item: Queued): void {
    this.opts.metrics?.handlerErrors.inc();
    this.opts.logger.error(
      { session: this.state.id, event: COMMAND_NAMES.get(item.code), err },
      'milter handler failed, sending the fallback verdict',
    );
  }

  private endSession(reason: CloseReason): void {
    const s = this.state;
    if (s.closed) return;
    s.closed = true;
    if (this.opts.logger.isLevelEnabled('debug')) {
      this.opts.logger.debug({ session: s.id, remote: this.describeRemote(), reason }, 'milter session end');
    }
    if (!s.delivered || !this.opts.handler.onClose) return;
    try {
      this.opts.handler.onClose(s, reason);
    } catch (err) {
      this.opts.metrics?.handlerErrors.inc();
      this.opts.logger.error({ session: s.id, err }, 'milter onClose handler failed');
    }
  }
}
