/**
 * Peers that are not sendmail: ones that claim big frames and send nothing, open connections
 * and stay silent, open too many, or send huge macro lists. Each must cost authban memory in
 * proportion to what it sent, and a bounded number of sockets, for a bounded time.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { CloseReason } from '../../src/milter/handler.js';
import { createMilterMetrics } from '../../src/milter/metrics.js';
import { MilterServer, type MilterServerInit } from '../../src/milter/server.js';
import { SMFIC, SMFIR } from '../../src/milter/wire-constants.js';
import { startAuthbanChild } from '../bench/milter/servers.js';
import { encodeCommand, frame, MtaClient, replyName } from '../helpers/mta-client.js';
import { waitFor } from '../helpers/wait-for.js';

/** A server logging at debug into `lines`; closed when the test ends. */
async function startServer(t: TestContext, extra: Partial<MilterServerInit> = {}) {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  const registry = new Registry();
  const closes: CloseReason[] = [];
  const server = await MilterServer.start({
    listen: ['inet:0@127.0.0.1'],
    logger,
    handler: { onConnect: () => ({ kind: 'continue' }), onClose: (_s, r) => void closes.push(r) },
    metrics: createMilterMetrics(registry),
    ...extra,
  });
  t.after(() => server.close(0));
  const port = Number(/^inet:(\d+)@/.exec(server.addresses()[0]!)?.[1]);
  return { server, port, lines, registry, closes };
}

async function client(t: TestContext, port: number): Promise<MtaClient> {
  const c = await MtaClient.connect({ port }, { replyTimeoutMs: 5000 });
  t.after(() => c.destroy());
  return c;
}

async function dropped(registry: Registry, reason: string): Promise<number> {
  const m = await registry.getSingleMetric('authban_milter_connections_dropped_total')!.get();
  return m.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

const WARN = 40;
const DEBUG = 20;

describe('milter server against hostile peers', () => {
  it('a frame header claiming 1 MiB costs nothing until its bytes arrive', async (t) => {
    const { port } = await startServer(t);
    const claim = Buffer.alloc(4);
    claim.writeUInt32BE(1024 * 1024, 0);
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 100; i++) {
      const c = await client(t, port);
      // One write: the OPTNEG reply proves the server has read the header behind it.
      c.writeRaw(Buffer.concat([encodeCommand({ cmd: 'optneg' }), claim]));
      const r = await c.expectReply();
      assert.equal(r.command, SMFIR.OPTNEG, replyName(r));
    }
    // Reserving each claimed length would take 100 MiB; the rest of this process needs far less.
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(grown < 16 * 1024 * 1024, `arrayBuffers grew by ${grown} bytes for 100 four-byte headers`);
  });

  it('refuses connections past maxConnections, counts each, warns once, and frees the slot on close', async (t) => {
    const { server, port, lines, registry } = await startServer(t, { maxConnections: 2 });
    const held = [await client(t, port), await client(t, port)];
    for (const c of held) await c.negotiate();
    for (let i = 0; i < 3; i++) {
      const extra = await client(t, port);
      await extra.closedWithin(2000);
    }
    assert.equal(await dropped(registry, 'max_connections'), 3);
    const warnings = lines.filter((l) => l.level === WARN && /maxConnections/.test(l.msg));
    assert.equal(warnings.length, 1, 'one warning for a burst of refusals');
    assert.equal(warnings[0]!.refused, 1);

    await held[0]!.quit();
    await waitFor(() => server.connectionCount === 1, 2000, 'the quit connection to be gone');
    const next = await client(t, port);
    assert.equal((await next.negotiate()).version, 6);
    assert.equal(await dropped(registry, 'max_connections'), 3);
  });

  it('closes a connection silent before OPTNEG early, and a negotiated one only after the idle timeout', async (t) => {
    const { server, port, lines, registry, closes } = await startServer(t, { negotiationTimeoutMs: 1000, idleTimeoutMs: 3000 });
    const silent = await client(t, port);
    const talker = await client(t, port);
    await talker.negotiate();
    await silent.closedWithin(6000);
    assert.equal(await dropped(registry, 'negotiation_timeout'), 1);

    // Past the negotiation timeout, the negotiated connection still answers.
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal((await talker.request({ cmd: 'connect', hostname: 'c.example', family: '4', port: 1, address: '198.51.100.7' }))?.command, SMFIR.CONTINUE);
    const quietSince = Date.now();
    await talker.closedWithin(10_000);
    const quietFor = Date.now() - quietSince;
    assert.ok(quietFor >= 2000, `closed after ${quietFor} ms of silence, idle timeout is 3000 ms`);
    assert.equal(await dropped(registry, 'idle'), 1);
    await waitFor(() => server.connectionCount === 0, 2000, 'the server to let go of both connections');
    assert.deepEqual(closes, ['idle']);
    assert.equal(lines.filter((l) => l.level === DEBUG && /silent too long/.test(l.msg)).length, 2);
  });

  it('huge MACRO lists keep a bounded heap and the session goes on', { timeout: 60_000 }, async (t) => {
    const server = await startAuthbanChild('noop');
    t.after(() => server.stop());
    const c = await client(t, server.port);
    await c.negotiate();
    const before = (await server.stats()).heapUsed;
    // Seven stages of nearly 1 MiB each, every pair a few bytes: ~130,000 pairs per frame.
    for (const [k, stage] of ['C', 'H', 'M', 'R', 'T', 'N', 'E'].entries()) {
      const parts: string[] = [];
      for (let i = 0, len = 1; len < 1024 * 1024 - 64; i++) {
        const name = `${k}x${i.toString(36)}`;
        parts.push(name, '');
        len += name.length + 2;
      }
      c.writeRaw(frame(SMFIC.MACRO, Buffer.from(`${stage}${parts.join('\0')}\0`, 'latin1')));
    }
    // Processed in order: the CONNECT reply comes after every MACRO frame was stored.
    const r = await c.request({ cmd: 'connect', hostname: 'c.example', family: '4', port: 1, address: '198.51.100.7' });
    assert.equal(r?.command, SMFIR.CONTINUE);
    const after = await server.stats();
    assert.equal(after.connections, 1, 'the connection stays open');
    // Storing every pair takes ~70 MB; the capped lists take well under a megabyte.
    assert.ok(after.heapUsed - before < 16 * 1024 * 1024, `heap grew from ${before} to ${after.heapUsed} bytes`);
    await c.quit();
  });
});
