import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { CloseReason, MilterHandler, Verdict } from '../../src/milter/handler.js';
import { createMilterMetrics } from '../../src/milter/metrics.js';
import { MilterServer, type MilterServerInit } from '../../src/milter/server.js';
import { MtaClient, replyText, type MtaCommand } from '../helpers/mta-client.js';
import { testDir } from '../helpers/temp-dir.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const letter = (r: { command: number } | undefined) => (r ? String.fromCharCode(r.command) : 'none');

const tempDir = (t: TestContext): string => testDir(t, 'authban-milter-');

/** A server with captured warn lines; closed when the test ends, whatever happens. */
async function startServer(t: TestContext, handler: MilterHandler, extra: Partial<MilterServerInit> = {}) {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  const registry = new Registry();
  const server = await MilterServer.start({ listen: ['inet:0@127.0.0.1'], logger, handler, metrics: createMilterMetrics(registry), ...extra });
  t.after(() => server.close(0));
  const port = Number(/^inet:(\d+)@/.exec(server.addresses()[0]!)?.[1]);
  return { server, port, lines, registry };
}

async function client(t: TestContext, target: { port: number } | { path: string }): Promise<MtaClient> {
  const c = await MtaClient.connect(target, { replyTimeoutMs: 3000 });
  t.after(() => c.destroy());
  return c;
}

const CONNECT_MACROS: MtaCommand = {
  cmd: 'macro',
  stage: 'C',
  macros: { j: 'mx.harness.test', i: '6APHZDNQ014179', '{client_addr}': '198.51.100.7', '{daemon_port}': '2525' },
};

describe('MilterServer', () => {
  it('serves a whole session over TCP and over a unix socket at once', async (t) => {
    const dir = tempDir(t);
    const sock = join(dir, 'milter.sock');
    const events: string[] = [];
    const { server } = await startServer(
      t,
      {
        onConnect: (s, info) => {
          events.push(`connect ${info.address} ${info.pid} ${s.macro('daemon_port')}`);
          return info.address === '203.0.113.66' ? { kind: 'replycode', code: '421', xcode: '4.7.1', text: 'busy 100%' } : { kind: 'continue' };
        },
        onHelo: (_s, h) => {
          events.push(`helo ${h}`);
          return { kind: 'continue' };
        },
        onMail: (_s, from, _a, auth) => {
          events.push(`mail ${from} ${auth.authAuthen}`);
          return { kind: 'continue' };
        },
        onClose: (_s, r) => void events.push(`close ${r}`),
      },
      { listen: ['inet:0@127.0.0.1', `unix:${sock}`] },
    );
    const addrs = server.addresses();
    assert.match(addrs[0]!, /^inet:[1-9]\d*@127\.0\.0\.1$/);
    assert.equal(addrs[1], `unix:${sock}`);
    assert.equal(statSync(sock).mode & 0o777, 0o660);
    const port = Number(/^inet:(\d+)@/.exec(addrs[0]!)![1]);

    for (const target of [{ port }, { path: sock }]) {
      events.length = 0;
      const c = await client(t, target);
      const neg = await c.negotiate();
      assert.equal(neg.version, 6);
      assert.equal(neg.actions, 0);
      assert.ok(neg.macros.get(0)?.includes('{client_addr}'));
      assert.equal(await c.request(CONNECT_MACROS), undefined);
      assert.equal(letter(await c.request({ cmd: 'connect', hostname: 'h', family: '4', port: 4000, address: '198.51.100.7' })), 'c');
      assert.equal(await c.request({ cmd: 'helo', name: 'client.example' }), undefined);
      c.send({ cmd: 'macro', stage: 'M', macros: { '{auth_authen}': 'bob' } });
      assert.equal(await c.request({ cmd: 'mail', args: ['<a@b>'] }), undefined);
      assert.equal(letter(await c.request({ cmd: 'eom' })), 'c');
      c.send({ cmd: 'quit_nc' });
      const refused = await c.request({ cmd: 'connect', hostname: 'h', family: '6', port: 1, address: 'IPv6:::ffff:203.0.113.66' });
      assert.equal(letter(refused), 'y');
      assert.equal(replyText(refused!), '421 4.7.1 busy 100%%');
      await c.quit();
      assert.deepEqual(events, [
        'connect 198.51.100.7 14179 2525',
        'helo client.example',
        'mail <a@b> bob',
        'close quit_nc',
        'connect 203.0.113.66 undefined undefined',
        'close quit',
      ]);
    }
  });

  it('replies in order with an async handler whose calls would resolve out of order', async (t) => {
    const order: string[] = [];
    let running = 0;
    const delays = [80, 0, 30];
    const verdicts: Verdict[] = [{ kind: 'replycode', code: '421', text: 'first' }, { kind: 'tempfail' }, { kind: 'continue' }];
    const { port } = await startServer(t, {
      onConnect: async (_s, info) => {
        const i = Number(info.port);
        running++;
        assert.equal(running, 1, 'handler calls never overlap on one connection');
        order.push(`start ${i}`);
        await sleep(delays[i]!);
        order.push(`end ${i}`);
        running--;
        return verdicts[i]!;
      },
    });
    const c = await client(t, { port });
    await c.negotiate();
    // Everything at once, as a pipelining MTA could: three SMTP sessions on one milter socket.
    for (let i = 0; i < 3; i++) {
      c.send({ cmd: 'connect', hostname: 'h', family: '4', port: i, address: '198.51.100.7' });
      if (i < 2) c.send({ cmd: 'quit_nc' });
    }
    const got = [await c.expectReply(), await c.expectReply(), await c.expectReply()].map(letter);
    assert.deepEqual(got, ['y', 't', 'c']);
    assert.deepEqual(order, ['start 0', 'end 0', 'start 1', 'end 1', 'start 2', 'end 2']);
    await c.quit();
  });

  it('a handler that misses its deadline gets the fallback verdict, and the session goes on', async (t) => {
    const reasons: CloseReason[] = [];
    let calls = 0;
    const { port, lines, registry } = await startServer(
      t,
      {
        onConnect: () => (++calls === 1 ? new Promise<Verdict>(() => undefined) : { kind: 'continue' }),
        onClose: (_s, r) => void reasons.push(r),
      },
      { handlerTimeoutMs: 100, fallbackVerdict: 'tempfail' },
    );
    const c = await client(t, { port });
    await c.negotiate();
    const t0 = performance.now();
    assert.equal(letter(await c.request({ cmd: 'connect', hostname: 'h', family: '4', port: 1, address: '198.51.100.7' })), 't');
    const waited = performance.now() - t0;
    assert.ok(waited >= 90 && waited < 1000, `fallback after ${waited} ms`);
    c.send({ cmd: 'quit_nc' });
    assert.equal(letter(await c.request({ cmd: 'connect', hostname: 'h', family: '4', port: 2, address: '198.51.100.7' })), 'c');
    await c.quit();
    assert.deepEqual(reasons, ['quit_nc', 'quit']);
    assert.ok(lines.some((l) => /missed its deadline/.test(String(l.msg))));
    const m = await registry.getSingleMetric('authban_milter_handler_timeouts_total')!.get();
    assert.equal(m.values[0]!.value, 1);
  });

  it('a malformed frame closes only its own connection, with one warn line', async (t) => {
    const { port, lines } = await startServer(t, { onConnect: () => ({ kind: 'continue' }) });
    const good = await client(t, { port });
    const bad = await client(t, { port });
    await good.negotiate();
    await bad.negotiate();
    bad.writeRaw(Buffer.from('ffffffff41', 'hex'));
    await bad.closedWithin(2000);
    assert.equal(letter(await good.request({ cmd: 'connect', hostname: 'h', family: '4', port: 1, address: '198.51.100.7' })), 'c');
    await good.quit();
    const warns = lines.filter((l) => l.level === 40);
    assert.equal(warns.length, 1);
    assert.match(String(warns[0]!.reason), /4294967295 exceeds the limit/);
    assert.match(String(warns[0]!.remote), /^127\.0\.0\.1:\d+$/);
    assert.equal(warns[0]!.bytes, 'ffffffff41');
  });

  it('close waits for open sessions within the grace time, then destroys the rest', async (t) => {
    const reasons: CloseReason[] = [];
    const { server, port } = await startServer(t, { onConnect: () => ({ kind: 'continue' }), onClose: (_s, r) => void reasons.push(r) });
    const polite = await client(t, { port });
    const stuck = await client(t, { port });
    for (const c of [polite, stuck]) {
      await c.negotiate();
      await c.request({ cmd: 'connect', hostname: 'h', family: '4', port: 1, address: '198.51.100.7' });
    }
    const t0 = performance.now();
    const closing = server.close(300);
    await sleep(20);
    // No new connections once closing.
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = netConnect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(undefined);
        });
        s.once('error', reject);
      }),
    );
    await polite.quit();
    await closing;
    const took = performance.now() - t0;
    assert.ok(took >= 280 && took < 2000, `closed after ${took} ms`);
    await stuck.closedWithin(1000);
    assert.deepEqual(reasons.sort(), ['quit', 'shutdown']);
  });

  it('close returns at once when no session is open', async (t) => {
    const { server } = await startServer(t, {});
    const t0 = performance.now();
    await server.close(5000);
    assert.ok(performance.now() - t0 < 500);
  });

  it('replaces a stale unix socket file but not a live one or a regular file', async (t) => {
    const dir = tempDir(t);
    const stale = join(dir, 'stale.sock');
    const py = spawnSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', stale]);
    assert.equal(py.status, 0, String(py.stderr));
    assert.ok(statSync(stale).isSocket());
    const { server } = await startServer(t, {}, { listen: [`unix:${stale}`], unixSocketMode: 0o600 });
    assert.equal(statSync(stale).mode & 0o777, 0o600);
    await assert.rejects(startServer(t, {}, { listen: [`unix:${stale}`] }), /in use by a running process/);
    await server.close(0);

    const file = join(dir, 'file.sock');
    writeFileSync(file, 'keep me');
    await assert.rejects(startServer(t, {}, { listen: [`unix:${file}`] }), /exists and is not a socket/);
  });

  it('reconfigure: keeps unchanged listeners, binds new ones, stops removed ones; open sessions go on', async (t) => {
    const dir = tempDir(t);
    const sock = join(dir, 'milter.sock');
    const { server, port } = await startServer(t, { onConnect: () => ({ kind: 'continue' }) });
    const old = await client(t, { port });
    await old.negotiate();
    assert.equal(letter(await old.request({ cmd: 'connect', hostname: 'a', family: '4', port: 1, address: '198.51.100.1' })), 'c');

    // Add a unix listener, keep the TCP one.
    await server.reconfigure({ listen: [`inet:0@127.0.0.1`, `unix:${sock}`], handlerTimeoutMs: 2000 });
    assert.equal(server.addresses().length, 2);
    assert.equal(server.addresses()[0], `inet:${port}@127.0.0.1`, 'the unchanged listener keeps its port');
    const viaUnix = await client(t, { path: sock });
    await viaUnix.negotiate();
    assert.equal(letter(await viaUnix.request({ cmd: 'connect', hostname: 'b', family: '4', port: 2, address: '198.51.100.2' })), 'c');

    // Drop the TCP listener: new TCP connections are refused, the open one is still served.
    await server.reconfigure({ listen: [`unix:${sock}`] });
    await assert.rejects(MtaClient.connect({ port }, { replyTimeoutMs: 1000 }));
    old.send({ cmd: 'quit_nc' });
    assert.equal(letter(await old.request({ cmd: 'connect', hostname: 'c', family: '4', port: 3, address: '198.51.100.3' })), 'c');
    assert.deepEqual(server.addresses(), [`unix:${sock}`]);

    await assert.rejects(server.reconfigure({ listen: ['tcp:25'] }), /listen|spec/i);

    // A unix path removed while a session on it is open, then added back: the old session's
    // end must not take the new socket file with it.
    await server.reconfigure({ listen: ['inet:0@127.0.0.1'] });
    await server.reconfigure({ listen: ['inet:0@127.0.0.1', `unix:${sock}`] });
    await viaUnix.quit();
    await sleep(100);
    const fresh = await client(t, { path: sock });
    await fresh.negotiate();
    assert.equal(letter(await fresh.request({ cmd: 'connect', hostname: 'd', family: '4', port: 4, address: '198.51.100.4' })), 'c');
  });

  it('reconfigure: a listener that cannot be bound leaves the old ones serving', async (t) => {
    const { server, port } = await startServer(t, { onConnect: () => ({ kind: 'continue' }) });
    const blocker = await MilterServer.start({ listen: ['inet:0@127.0.0.1'], logger: pino({ level: 'silent' }), handler: {} });
    t.after(() => blocker.close(0));
    const taken = Number(/^inet:(\d+)@/.exec(blocker.addresses()[0]!)?.[1]);
    await assert.rejects(server.reconfigure({ listen: [`inet:${taken}@127.0.0.1`] }), /EADDRINUSE/);
    assert.deepEqual(server.addresses(), [`inet:${port}@127.0.0.1`]);
    const c = await client(t, { port });
    await c.negotiate();
    assert.equal(letter(await c.request({ cmd: 'connect', hostname: 'e', family: '4', port: 5, address: '198.51.100.5' })), 'c');
  });
});

