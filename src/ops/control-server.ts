import { createServer, type Server, type Socket } from 'node:net';
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { refusalWarner } from '../core/refusal-warner.js';
import { clearStaleSocket } from '../core/unix-socket.js';

/** One request on the control socket: a JSON object on one line. */
export interface ControlRequest {
  readonly cmd: string;
  readonly args?: Record<string, unknown>;
}

/** A command's answer; `error` is the message the CLI prints. */
export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: string };

export type ControlDispatch = (req: ControlRequest) => Promise<unknown>;

/** Raised by a command for a bad request (a bad address, say): the CLI exits 2 with its message. */
export class ControlUsageError extends Error {}

const MAX_REQUEST_BYTES = 64 * 1024;
/** Refused connections are warned about at most once a second, with the count since the last warning. */
const REFUSAL_WARNING_INTERVAL_MS = 1000;

export interface ControlServerOptions {
  /** A connection silent this long (no request, no answer going out) is closed. */
  readonly idleTimeoutMs: number;
  /** Connections at once; node closes further ones as it accepts them. */
  readonly maxConnections: number;
}

export const DEFAULT_CONTROL_SERVER_OPTIONS: ControlServerOptions = { idleTimeoutMs: 60_000, maxConnections: 64 };

export interface ControlServer {
  close(): Promise<void>;
}

/**
 * A unix socket, mode 0600, speaking newline-delimited JSON, one request per line; answers
 * come in request order on each connection.
 */
export async function startControlServer(
  path: string, dispatch: ControlDispatch, logger: Logger, options: Partial<ControlServerOptions> = {},
): Promise<ControlServer> {
  const opts = { ...DEFAULT_CONTROL_SERVER_OPTIONS, ...options };
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  await clearStaleSocket(path, 'control socket');
  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    sock.setTimeout(opts.idleTimeoutMs, () => sock.destroy());
    let buf = '';
    // Requests of one connection run one after another, so answers cannot overtake each other.
    let queue: Promise<void> = Promise.resolve();
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST_BYTES) {
        sock.end(`${JSON.stringify({ ok: false, error: 'request too large' })}\n`);
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        queue = queue.then(async () => {
          const resp = await answer(line);
          if (!sock.destroyed) sock.write(`${JSON.stringify(resp)}\n`);
        });
      }
    });
  });

  async function answer(line: string): Promise<ControlResponse> {
    let req: ControlRequest;
    try {
      const parsed = JSON.parse(line) as unknown;
      if (typeof parsed !== 'object' || parsed === null || typeof (parsed as ControlRequest).cmd !== 'string') throw new Error('expected {"cmd": …}');
      req = parsed as ControlRequest;
    } catch (e) {
      return { ok: false, error: `bad request: ${(e as Error).message}` };
    }
    try {
      return { ok: true, result: await dispatch(req) };
    } catch (e) {
      if (!(e instanceof ControlUsageError)) logger.error({ err: e, cmd: req.cmd }, 'control command failed');
      return { ok: false, error: (e as Error).message };
    }
  }

  server.maxConnections = opts.maxConnections;
  const warnRefused = refusalWarner(REFUSAL_WARNING_INTERVAL_MS, (count) => logger.warn(
    { event: 'control_connections_refused', count, max: opts.maxConnections },
    `control socket: ${count} connections refused (at most ${opts.maxConnections} at once)`,
  ));
  server.on('drop', () => warnRefused(undefined));
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
  } finally {
    process.umask(oldMask);
  }
  chmodSync(path, 0o600);
  logger.info({ event: 'listening', what: 'control', path }, 'control socket listening');
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
