/**
 * Interop with an MTA side authban did not write: Debian's miltertest (from OpenDKIM) runs
 * the Lua scripts beside this file against a real MilterServer, and the test checks what the
 * handler saw.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import pino from 'pino';
import { parseAddress, parseCidr, CidrSet } from '../../src/core/address.js';
import type { CloseReason, ConnectInfo, MilterHandler, SessionView, Verdict } from '../../src/milter/handler.js';
import { parseListenSpec } from '../../src/milter/listen-spec.js';
import { MilterServer } from '../../src/milter/server.js';
import { needsOrSkip } from '../helpers/require-root.js';

const MILTERTEST = '/usr/bin/miltertest';
const dir = new URL('.', import.meta.url).pathname;
const REFUSED = new CidrSet([parseCidr('203.0.113.0/24')!, parseCidr('2001:db8:bad::/48')!]);

interface Seen {
  connect?: { info: ConnectInfo; daemonName?: string; j?: string };
  helo?: string;
  mail?: { sender: string; args: readonly string[]; authType?: string; authAuthen?: string };
  rcpt?: string;
  close?: CloseReason;
}

/** A handler that records every event per session and refuses REFUSED with a 421. */
function recorder(): { handler: MilterHandler; sessions: Map<number, Seen>; closed: Promise<void>[] } {
  const sessions = new Map<number, Seen>();
  const closers = new Map<number, () => void>();
  const closed: Promise<void>[] = [];
  const seen = (s: SessionView): Seen => {
    let v = sessions.get(s.id);
    if (!v) {
      v = {};
      sessions.set(s.id, v);
      closed.push(new Promise((resolve) => closers.set(s.id, resolve)));
    }
    return v;
  };
  const cont: Verdict = { kind: 'continue' };
  const handler: MilterHandler = {
    onConnect(s, info) {
      seen(s).connect = { info, daemonName: s.macro('daemon_name'), j: s.macro('j') };
      const addr = info.address ? parseAddress(info.address) : null;
      if (addr && REFUSED.contains(addr)) return { kind: 'replycode', code: '421', xcode: '4.7.1', text: 'Too many failed logins' };
      return cont;
    },
    onHelo(s, helo) {
      seen(s).helo = helo;
      return cont;
    },
    onMail(s, sender, args, auth) {
      seen(s).mail = { sender, args, authType: auth.authType, authAuthen: auth.authAuthen };
      return cont;
    },
    onRcpt(s, recipient) {
      seen(s).rcpt = recipient;
      return cont;
    },
    onClose(s, reason) {
      seen(s).close = reason;
      closers.get(s.id)?.();
    },
  };
  return { handler, sessions, closed };
}

async function startServer(t: TestContext): Promise<{ port: number; rec: ReturnType<typeof recorder> }> {
  const rec = recorder();
  const server = await MilterServer.start({ listen: ['inet:0@127.0.0.1'], handler: rec.handler, logger: pino({ level: 'silent' }) });
  t.after(() => server.close(0));
  const spec = parseListenSpec(server.addresses()[0]!);
  assert.equal(spec.kind, 'inet');
  return { port: spec.kind === 'inet' ? spec.port : 0, rec };
}

function miltertest(script: string, defs: Record<string, string | number>): Promise<{ code: number; out: string }> {
  const args = Object.entries(defs).flatMap(([k, v]) => ['-D', `${k}=${v}`]);
  return new Promise((resolve) => {
    execFile(MILTERTEST, [...args, '-s', `${dir}${script}`], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

/** Waits (bounded) for every session the handler saw to be closed. */
async function allClosed(rec: ReturnType<typeof recorder>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('sessions not closed within 5 s')), 5000);
  });
  try {
    await Promise.race([Promise.all(rec.closed), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function only(rec: ReturnType<typeof recorder>): Seen {
  assert.equal(rec.sessions.size, 1, 'exactly one session reached the handler');
  return [...rec.sessions.values()][0]!;
}

for (const version of [6, 2]) {
  test(`miltertest: whole session, protocol v${version}, macros reach the handler`, async (t) => {
    if (!needsOrSkip(t, existsSync(MILTERTEST), `${MILTERTEST} missing (apt-get install miltertest)`)) return;
    const { port, rec } = await startServer(t);
    const r = await miltertest('session.lua', { port, version });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, new RegExp(`session v${version} ok`));
    await allClosed(rec);

    const s = only(rec);
    assert.equal(s.connect?.info.hostname, 'client.example.test');
    assert.equal(s.connect?.info.family, 'inet');
    assert.equal(s.connect?.info.address, '198.51.100.7');
    assert.equal(s.connect?.info.queueId, '6APHQKMi010070');
    assert.equal(s.connect?.info.pid, 10070);
    assert.equal(s.connect?.daemonName, 'MTA-interop');
    assert.equal(s.connect?.j, 'mx.interop.test');
    assert.equal(s.helo, 'client.example.test');
    assert.equal(s.mail?.sender, '<sender@example.org>');
    assert.deepEqual(s.mail?.args, ['SIZE=100']);
    assert.equal(s.mail?.authType, 'LOGIN');
    assert.equal(s.mail?.authAuthen, 'testuser');
    assert.equal(s.rcpt, '<user@mx.interop.test>');
    assert.equal(s.close, 'quit');
  });
}

for (const addr of ['203.0.113.9', '2001:db8:bad::66']) {
  test(`miltertest: refused ${addr} gets SMFIR_REPLYCODE at connect`, async (t) => {
    if (!needsOrSkip(t, existsSync(MILTERTEST), `${MILTERTEST} missing (apt-get install miltertest)`)) return;
    const { port, rec } = await startServer(t);
    const r = await miltertest('refused.lua', { port, addr });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /refused .* ok/);
    await allClosed(rec);
    const s = only(rec);
    assert.equal(s.connect?.info.address, parseAddress(addr)!.text);
    assert.equal(s.helo, undefined);
  });
}

test('miltertest: an address the handler accepts does not get SMFIR_REPLYCODE', async (t) => {
  if (!needsOrSkip(t, existsSync(MILTERTEST), `${MILTERTEST} missing (apt-get install miltertest)`)) return;
  const { port } = await startServer(t);
  const r = await miltertest('refused.lua', { port, addr: '198.51.100.7' });
  assert.notEqual(r.code, 0);
  assert.match(r.out, /wanted SMFIR_REPLYCODE/);
});
