import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { parseHostPort } from '../core/address.js';

export interface MetricsHttp {
  /** `host:port` actually bound (port 0 in the config gives a free one). */
  readonly address: string;
  close(): Promise<void>;
}

/** Serves the registry at `path` over HTTP; every other path is 404. */
export async function startMetricsHttp(registry: Registry, listen: string, path: string, logger: Logger): Promise<MetricsHttp> {
  const hp = parseHostPort(listen);
  if (!hp) throw new Error(`metrics: "${listen}" is not HOST:PORT`);
  const { host, port } = hp;
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== path) {
      res.writeHead(404).end('not found\n');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (err: Error) => {
        logger.error({ err }, 'metrics collection failed');
        res.writeHead(500).end('metrics collection failed\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const address = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  logger.info({ event: 'listening', what: 'metrics', address, path }, 'metrics endpoint listening');
  return {
    address,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}
