/**
 * The log inputs as a whole: a line two inputs both deliver counts once; a reload that cannot
 * bind its new syslog listeners keeps the old ones serving (whether or not the new config
 * reuses their addresses), and still applies the other inputs' changes. Real files and real
 * sockets on loopback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { appendFileSync, chmodSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createLogsMetrics } from '../../src/logs/metrics.js';
import { LogInputs, type LogInputsConfig } from '../../src/logs/inputs.js';
import { testDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';

const BASE: LogInputsConfig = {
  files: [],
  syslog: { udp: null, tcp: null, unix: null },
  journal: { enabled: false, identifiers: [], trustedUids: [] },
  timezone: 'UTC',
};

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A TCP listener holding a port, so that a syslog listener asked for it fails with EADDRINUSE. */
async function busyTcpPort(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as { port: number }).port };
}

/** A UDP socket holding a port. */
async function busyUdpPort(): Promise<{ close: () => Promise<void>; port: number }> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return { port: s.address().port, close: () => new Promise((r) => s.close(() => r())) };
}

function setup(t: { after: (fn: () => Promise<void> | void) => void }) {
  const addresses: string[] = [];
  const start = async (cfg: LogInputsConfig): Promise<LogInputs> => {
    const inputs = await LogInputs.start(cfg, {
      logger: pino({ level: 'silent' }),
      onRecord: (r) => {
        if ('address' in r && r.address !== undefined) addresses.push(r.address);
      },
    });
    t.after(() => inputs.stop());
    return inputs;
  };
  const send = async (port: number, n: number): Promise<void> => {
    const tx = createSocket('udp4');
    await new Promise<void>((r) => tx.send(`<22>Nov 26 10:00:00 mx sendmail[4100${n}]: NOQUEUE: connect from h [198.51.100.${n}]`, port, '127.0.0.1', () => r()));
    tx.close();
  };
  return { addresses, start, send };
}

test('reload: a new TCP listener on a busy port fails; the UDP listener it kept still serves', async (t) => {
  const { addresses, start, send } = setup(t);
  const udp = await freeUdpPort();
  const busy = await busyTcpPort();
  t.after(() => new Promise<void>((r) => busy.server.close(() => r())));
  const inputs = await start({ ...BASE, syslog: { udp: `127.0.0.1:${udp}`, tcp: null, unix: null } });
  await send(udp, 1);
  await waitFor(() => addresses.length === 1, 5000, 'the first datagram');

  await assert.rejects(inputs.reconfigure({ ...BASE, syslog: { udp: `127.0.0.1:${udp}`, tcp: `127.0.0.1:${busy.port}`, unix: null } }), /EADDRINUSE/);
  assert.deepEqual(inputs.describe().syslog, [`udp:127.0.0.1:${udp}`]);
  await send(udp, 2);
  await waitFor(() => addresses.length === 2, 5000, 'a datagram after the failed reload');
  assert.deepEqual(addresses, ['198.51.100.1', '198.51.100.2']);
});

test('reload: a move to a busy port fails; the old listener serves on; the journal change still applies', async (t) => {
  const { addresses, start, send } = setup(t);
  const udp = await freeUdpPort();
  const busy = await busyUdpPort();
  t.after(busy.close);
  const dir = testDir(t);
  // A journalctl stand-in that stays up printing nothing: enough to see the source started.
  const journalctl = join(dir, 'journalctl');
  writeFileSync(journalctl, '#!/bin/sh\nexec sleep 30\n');
  chmodSync(journalctl, 0o755);
  const inputs = await start({ ...BASE, syslog: { udp: `127.0.0.1:${udp}`, tcp: null, unix: null } });

  const next: LogInputsConfig = {
    ...BASE,
    syslog: { udp: `127.0.0.1:${busy.port}`, tcp: null, unix: null },
    journal: { enabled: true, identifiers: ['sm-mta'], trustedUids: [] },
  };
  const path = process.env.PATH;
  process.env.PATH = `${dir}:${path ?? ''}`;
  try {
    await assert.rejects(inputs.reconfigure(next), /EADDRINUSE/);
  } finally {
    process.env.PATH = path;
  }
  const now = inputs.describe();
  assert.deepEqual(now.syslog, [`udp:127.0.0.1:${udp}`]);
  assert.equal(now.journal, true, 'the journal change applied despite the syslog failure');
  await send(udp, 3);
  await waitFor(() => addresses.length === 1, 5000, 'a datagram on the old port');
  assert.deepEqual(addresses, ['198.51.100.3']);
});

test('a line both mail.log and syslog carry counts once; the same line twice in one input counts twice, even if the other input lost one', async (t) => {
  const dir = testDir(t);
  const mail = join(dir, 'mail.log');
  const syslog = join(dir, 'syslog');
  writeFileSync(mail, '');
  writeFileSync(syslog, '');
  const registry = new Registry();
  const metrics = createLogsMetrics(registry);
  const got: string[] = [];
  const inputs = await LogInputs.start(
    { ...BASE, files: [{ path: mail, fromStart: true }, { path: syslog, fromStart: true }] },
    { logger: pino({ level: 'silent' }), metrics, onRecord: (_r, src) => got.push(src.origin) },
  );
  t.after(() => inputs.stop());
  const fail = (pid: number): string => `Nov 26 10:00:00 mx sm-mta[${pid}]: 6AQA0000${String(pid).padStart(6, '0')}: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=admin, relay=[198.51.100.9]\n`;
  // Debian's rsyslog writes mail.* to both files; one client retrying fast gives two equal lines.
  for (const line of [fail(41001), fail(41002), fail(41002)]) {
    appendFileSync(mail, line);
    appendFileSync(syslog, line);
  }
  const duplicates = async (): Promise<number> => (await registry.getSingleMetric('authban_log_lines_duplicate_total')!.get()).values[0]?.value ?? 0;
  await waitFor(() => got.length >= 3, 5000, 'three lines');
  for (let i = 0; i < 100 && (await duplicates()) < 3; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await duplicates(), 3, 'each line of the second file dropped as a copy');
  assert.equal(got.length, 3);

  // Two equal events of which one input lost one: the other input's second copy is an event.
  appendFileSync(mail, fail(41003));
  appendFileSync(syslog, fail(41003));
  appendFileSync(syslog, fail(41003));
  await waitFor(() => got.length >= 5, 5000, 'both events of 41003');
  for (let i = 0; i < 100 && (await duplicates()) < 4; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(got.length, 5);
  assert.equal(await duplicates(), 4);
});
