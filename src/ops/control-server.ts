import { createServer, type Server, type Socket } from 'node:net';
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
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

export interface ControlServer {
  close(): Promise<void>;
}

/** A unix socket, mode 0600, speaking newline-delimited JSON, one request per line. */
export async function startControlServer(path: string, dispatch: ControlDispatch, logger: Logger): Promise<ControlServer> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  await clearStaleSocket(path, 'control socket');
  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = '';
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
        void answer(line).then((resp) => {
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
