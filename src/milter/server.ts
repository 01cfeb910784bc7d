/**
 * The milter server: listeners as sendmail's S= equate names them, one MilterConnection per
 * accepted socket. A malformed frame closes only its own connection.
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { refusalWarner } from '../core/refusal-warner.js';
import { clearStaleSocket } from '../core/unix-socket.js';
import { DEFAULT_MAX_FRAME_BYTES } from './frame-decoder.js';
import type { MilterHandler, Verdict } from './handler.js';
import { formatListenSpec, parseListenSpec, type ListenSpec } from './listen-spec.js';
import type { MilterMetrics } from './metrics.js';
import { MilterConnection, type SessionOptions } from './session.js';

export interface MilterServerOptions {
  /** `inet:PORT@HOST`, `inet6:PORT@HOST`, `unix:/path` or `local:/path`; several at once. */
  readonly listen: readonly string[];
  /** Largest frame accepted (length field), bytes. Must hold a 65535-byte payload. */
  readonly maxFrameBytes: number;
  /** Deadline for one handler call; keep it below sendmail's 10 s read timeout (T=R:10s). */
  readonly handlerTimeoutMs: number;
  /** Verdict sent when the handler throws or misses its deadline. */
  readonly fallbackVerdict: 'continue' | 'tempfail';
  /** Mode of unix socket files. */
  readonly unixSocketMode: number;
  /** Connections open at once, per listener; node closes further ones as it accepts them. */
  readonly maxConnections: number;
  /**
   * A negotiated connection silent this long is closed. sendmail keeps one connection per SMTP
   * session and says nothing while its client is slow, so this outlasts any SMTP timeout.
   */
  readonly idleTimeoutMs: number;
  /** A connection without OPTNEG this long is closed: sendmail negotiates right after connecting. */
  readonly negotiationTimeoutMs: number;
  readonly logger: Logger;
  readonly handler: MilterHandler;
  readonly metrics?: MilterMetrics;
}

export const DEFAULT_MILTER_OPTIONS = {
  listen: ['inet:8894@127.0.0.1'],
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  handlerTimeoutMs: 5000,
  fallbackVerdict: 'continue',
  unixSocketMode: 0o660,
  maxConnections: 4096,
  idleTimeoutMs: 2 * 60 * 60 * 1000,
  negotiationTimeoutMs: 30_000,
} as const satisfies Omit<MilterServerOptions, 'logger' | 'handler' | 'metrics'>;

/** What `start` needs: the logger and handler, the rest defaults. */
export type MilterServerInit = Partial<MilterServerOptions> & Pick<MilterServerOptions, 'logger' | 'handler'>;

/** 65535-byte payload + command byte. */
const MIN_FRAME_CAP = 65536;
const MAX_FRAME_CAP = 64 * 1024 * 1024;
/**
 * Node's default backlog is 511; sendmail opens one milter connection per SMTP session, so a
 * burst of sessions can overflow it. libmilter uses SOMAXCONN; the kernel caps this anyway.
 */
const LISTEN_BACKLOG = 4096;
/** After a protocol error, how long the replies already written get to reach the MTA. */
const ABORT_FLUSH_MS = 1000;
/** Connections refused at maxConnections are counted each, but warned about at most this often. */
const DROP_WARNING_INTERVAL_MS = 60 * 1000;
/** setTimeout's largest delay. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export function validateMilterOptions(o: MilterServerOptions): void {
  if (o.listen.length === 0) throw new Error('milter: listen needs at least one address');
  for (const l of o.listen) parseListenSpec(l);
  if (!Number.isInteger(o.maxFrameBytes) || o.maxFrameBytes < MIN_FRAME_CAP || o.maxFrameBytes > MAX_FRAME_CAP) {
    throw new Error(`milter: maxFrameBytes must be an integer in ${MIN_FRAME_CAP}..${MAX_FRAME_CAP}`);
  }
  if (!Number.isInteger(o.handlerTimeoutMs) || o.handlerTimeoutMs < 1 || o.handlerTimeoutMs > 60_000) {
    throw new Error('milter: handlerTimeoutMs must be an integer in 1..60000');
  }
  if (o.fallbackVerdict !== 'continue' && o.fallbackVerdict !== 'tempfail') {
    throw new Error(`milter: fallbackVerdict must be continue or tempfail`);
  }
  if (!Number.isInteger(o.unixSocketMode) || o.unixSocketMode < 0 || o.unixSocketMode > 0o777) {
    throw new Error('milter: unixSocketMode must be a file mode (0..0o777)');
  }
  if (!Number.isInteger(o.maxConnections) || o.maxConnections < 1 || o.maxConnections > 1_000_000) {
    throw new Error('milter: maxConnections must be an integer in 1..1000000');
  }
  for (const key of ['idleTimeoutMs', 'negotiationTimeoutMs'] as const) {
    if (!Number.isInteger(o[key]) || o[key] < 1 || o[key] > MAX_TIMEOUT_MS) {
      throw new Error(`milter: ${key} must be an integer in 1..${MAX_TIMEOUT_MS}`);
    }
  }
}

interface Listener {
  readonly spec: ListenSpec;
  readonly server: Server;
  /** Unix listeners: the inode of the socket file this listener created. */
  readonly ino?: number;
}

function listen(server: Server, spec: ListenSpec): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const ready = (): void => {
      server.off('error', reject);
      resolve();
    };
    if (spec.kind === 'unix') server.listen({ path: spec.path, backlog: LISTEN_BACKLOG }, ready);
    else server.listen({ host: spec.host, port: spec.port, ipv6Only: spec.kind === 'inet6', backlog: LISTEN_BACKLOG }, ready);
  });
}

/** Stops accepting on one listener (its open connections go on); a unix socket file is removed. */
function closeListener({ spec, server, ino }: Listener): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // The file goes now (open connections do not need it), and only if it is still this
  // listener's own: a later listener may have been bound to the same path since.
  if (spec.kind === 'unix') {
    void lstat(spec.path)
      .then((st) => (st.ino === ino ? unlink(spec.path) : undefined))
      .catch(() => undefined);
  }
  return closed;
}

export class MilterServer {
  private readonly connections = new Map<MilterConnection, Socket>();
  private listeners: Listener[] = [];
  /** Given to each new connection; replaced (not mutated) on reconfigure. */
  private sessionOptions: SessionOptions;
  private closing: Promise<void> | undefined;
  private drained: (() => void) | undefined;
  /** Refusals over all listeners share one warning cadence. */
  private readonly warnRefused = refusalWarner(DROP_WARNING_INTERVAL_MS, (refused, spec: ListenSpec) => this.opts.logger.warn(
    { listen: formatListenSpec(spec), refused, maxConnections: this.opts.maxConnections },
    'milter listener at maxConnections: connections refused since the last warning',
  ));

  private constructor(private opts: MilterServerOptions) {
    this.sessionOptions = MilterServer.sessionOptionsOf(opts);
  }

  private static sessionOptionsOf(opts: MilterServerOptions): SessionOptions {
    const fallback: Verdict = { kind: opts.fallbackVerdict };
    return {
      handler: opts.handler,
      logger: opts.logger,
      handlerTimeoutMs: opts.handlerTimeoutMs,
      fallback,
      maxFrameBytes: opts.maxFrameBytes,
      optnegCache: new Map(),
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
    };
  }

  /**
   * Applies reloaded options without a restart. Listeners are compared by spec: unchanged
   * ones keep their socket (sendmail never finds the port closed), removed ones stop
   * accepting, new ones are bound. A new connection cap takes effect at once on every
   * listener; deadline, fallback, frame cap and timeouts apply to connections accepted from
   * now on, open sessions go on as they started.
   */
  async reconfigure(next: Omit<MilterServerInit, 'logger' | 'handler' | 'metrics'>): Promise<void> {
    const opts: MilterServerOptions = { ...this.opts, ...next };
    validateMilterOptions(opts);
    const wanted = new Map(opts.listen.map((l) => { const spec = parseListenSpec(l); return [formatListenSpec(spec), spec] as const; }));
    const keep: Listener[] = [];
    const removed: Listener[] = [];
    for (const l of this.listeners) (wanted.has(formatListenSpec(l.spec)) ? keep : removed).push(l);
    const kept = new Set(keep.map((l) => formatListenSpec(l.spec)));
    const previous = this.opts;
    this.opts = opts;
    // New listeners first: sendmail must never find authban gone. If one cannot be bound,
    // the ones just bound are closed again and the old set stays as it was.
    const added: Listener[] = [];
    try {
      for (const [text, spec] of wanted) if (!kept.has(text)) added.push(await this.bind(spec));
    } catch (err) {
      await Promise.all(added.map(closeListener));
      this.opts = previous;
      throw err;
    }
    for (const l of removed) void closeListener(l);
    for (const l of keep) l.server.maxConnections = opts.maxConnections;
    this.listeners = [...keep, ...added];
    this.sessionOptions = MilterServer.sessionOptionsOf(opts);
    opts.logger.info({ listen: this.addresses() }, 'milter server reconfigured');
  }

  /** Validates the options, binds every listener (all or none) and starts serving. */
  static async start(init: MilterServerInit): Promise<MilterServer> {
    const opts: MilterServerOptions = { ...DEFAULT_MILTER_OPTIONS, ...init };
    validateMilterOptions(opts);
    const srv = new MilterServer(opts);
    try {
      for (const l of opts.listen) srv.listeners.push(await srv.bind(parseListenSpec(l)));
    } catch (err) {
      await srv.close(0);
      throw err;
    }
    opts.logger.info({ listen: srv.addresses() }, 'milter server listening');
    return srv;
  }

  /** The bound listeners, in the listen order; port 0 shows the port actually bound. */
  addresses(): string[] {
    return this.listeners.map(({ spec, server }) => {
      const a = server.address();
      if (spec.kind === 'unix' || a === null || typeof a === 'string') return formatListenSpec(spec);
      return formatListenSpec({ ...spec, port: a.port });
    });
  }

  /** Number of milter connections currently open. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Stops accepting, lets open sessions end on their own for up to graceMs, then destroys
   * what is left (their sessions close with reason `shutdown`). Idempotent.
   */
  close(graceMs = 5000): Promise<void> {
    this.closing ??= this.doClose(graceMs);
    return this.closing;
  }

  private async doClose(graceMs: number): Promise<void> {
    const closed = this.listeners.map(closeListener);
    if (this.connections.size > 0 && graceMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.drained = undefined;
    }
    for (const [conn, socket] of this.connections) {
      conn.shutdown('shutdown');
      socket.destroy();
    }
    await Promise.all(closed);
    this.opts.logger.info('milter server closed');
  }

  private async bind(spec: ListenSpec): Promise<Listener> {
    if (spec.kind === 'unix') await clearStaleSocket(spec.path, 'milter');
    const server = createServer((socket) => this.accept(socket, spec));
    server.maxConnections = this.opts.maxConnections;
    server.on('drop', () => {
      this.opts.metrics?.connectionsDropped.labels('max_connections').inc();
      this.warnRefused(spec);
    });
    await listen(server, spec);
    server.on('error', (err) => this.opts.logger.error({ err, listen: formatListenSpec(spec) }, 'milter listener error'));
    if (spec.kind !== 'unix') return { spec, server };
    try {
      await chmod(spec.path, this.opts.unixSocketMode);
      return { spec, server, ino: (await lstat(spec.path)).ino };
    } catch (err) {
      server.close();
      throw err;
    }
  }

  private accept(socket: Socket, spec: ListenSpec): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const { idleTimeoutMs, negotiationTimeoutMs } = this.opts;
    socket.setTimeout(Math.min(negotiationTimeoutMs, idleTimeoutMs));
    let peer: string | undefined;
    let abortTimer: NodeJS.Timeout | undefined;
    const remote = (): string => (peer ??= spec.kind === 'unix' ? `unix:${spec.path}` : `${socket.remoteAddress}:${socket.remotePort}`);
    const conn = new MilterConnection(
      this.sessionOptions,
      {
        write: (frame) => {
          if (socket.writable) socket.write(frame);
        },
        end: () => socket.end(),
        abort: () => {
          // end() flushes replies already owed (written before the bad frame), then closes.
          socket.end();
          abortTimer = setTimeout(() => socket.destroy(), ABORT_FLUSH_MS);
        },
      },
      remote,
    );
    this.connections.set(conn, socket);
    const m = this.opts.metrics;
    m?.connections.inc();
    m?.sessionsActive.inc();
    let negotiated = false;
    socket.on('data', (chunk: Buffer) => {
      // Replies produced by one read go out in one write.
      socket.cork();
      conn.onData(chunk);
      socket.uncork();
      if (!negotiated && conn.hasNegotiated) {
        negotiated = true;
        socket.setTimeout(idleTimeoutMs);
      }
    });
    socket.on('timeout', () => {
      const reason = negotiated ? 'idle' : 'negotiation_timeout';
      m?.connectionsDropped.labels(reason).inc();
      this.opts.logger.debug({ remote: remote(), reason }, 'milter connection silent too long, closing');
      conn.shutdown('idle');
      socket.destroy();
    });
    socket.on('end', () => conn.onEnd());
    socket.on('error', (err) => {
      this.opts.logger.debug({ err, remote: remote() }, 'milter socket error');
      conn.shutdown('error');
    });
    socket.on('close', () => {
      clearTimeout(abortTimer);
      conn.onSocketClosed();
      this.connections.delete(conn);
      m?.sessionsActive.dec();
      if (this.connections.size === 0) this.drained?.();
    });
  }
}
