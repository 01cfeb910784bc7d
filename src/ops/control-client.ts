import { connect } from 'node:net';
import type { ControlRequest, ControlResponse } from './control-server.js';

export class DaemonUnreachable extends Error {}

/** Sends one request to the daemon's control socket and waits for its one-line answer. */
export function controlRequest(socketPath: string, req: ControlRequest, timeoutMs = 10000): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new DaemonUnreachable(`no answer from the authban daemon on ${socketPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as ControlResponse);
      } catch {
        reject(new Error('the daemon sent an answer that is not JSON'));
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? 'is the daemon running?' : e.message;
      reject(new DaemonUnreachable(`cannot reach the authban daemon on ${socketPath}: ${why}`));
    });
  });
}
