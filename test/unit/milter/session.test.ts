import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { CloseReason, MilterHandler, SessionView, Verdict } from '../../../src/milter/handler.js';
import { MAX_MACRO_PAIRS } from '../../../src/milter/commands.js';
import { createMilterMetrics } from '../../../src/milter/metrics.js';
import { MilterConnection, type Transport } from '../../../src/milter/session.js';

const log = pino({ level: 'silent' });

function f(letter: string, payload: string | Buffer = ''): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
  const out = Buffer.alloc(5 + p.length);
  out.writeUInt32BE(p.length + 1, 0);
  out[4] = letter.charCodeAt(0);
  p.copy(out, 5);
  return out;
}
function optneg(version: number, actions: number, protocol: number): Buffer {
  const p = Buffer.alloc(12);
  p.writeUInt32BE(version, 0);
  p.writeUInt32BE(actions, 4);
  p.writeUInt32BE(protocol, 8);
  return f('O', p);
}
const connect = (addr: string, port = 12345) => {
  const pb = Buffer.alloc(2);
  pb.writeUInt16BE(port);
  return f('C', Buffer.concat([Buffer.from('client.example\x004', 'latin1'), pb, Buffer.from(`${addr}\0`, 'latin1')]));
};

class FakeTransport implements Transport {
  readonly writes: Buffer[] = [];
  ended = 0;
  aborted = 0;
  write(b: Buffer): void {
    this.writes.push(b);
  }
  end(): void {
    this.ended++;
  }
  abort(): void {
    this.aborted++;
  }
  /** Reply letters after the OPTNEG reply. */
  letters(): string {
    return this.writes
      .filter((w) => w[4] !== 0x4f)
      .map((w) => String.fromCharCode(w[4]!))
      .join('');
  }
}

function setup(handler: MilterHandler, extra: { handlerTimeoutMs?: number; fallback?: Verdict } = {}) {
  const registry = new Registry();
  const metrics = createMilterMetrics(registry);
  const t = new FakeTransport();
  const conn = new MilterConnection(
    { handler, logger: log, handlerTimeoutMs: extra.handlerTimeoutMs ?? 1000, fallback: extra.fallback ?? { kind: 'continue' }, maxFrameBytes: 1 << 20, metrics },
    t,
    () => 'test',
  );
  return { t, conn, registry };
}

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, want]) => x.labels[k] === want));
  return v?.value ?? 0;
}

describe('MilterConnection', () => {
  it('a whole sendmail-like v6 session: replies only where owed, handler sees macros, pid and auth', async () => {
    const seen: string[] = [];
    const closes: [number, CloseReason][] = [];
    let mailAuth: unknown;
    let view: SessionView | undefined;
    const { t, conn, registry } = setup({
      onConnect: (s, info) => {
        view = s;
        seen.push(`connect ${info.address}:${info.port} ${info.queueId} ${info.pid} ${s.macro('{daemon_port}')}`);
        return { kind: 'continue' };
      },
      onHelo: (s, h) => {
        seen.push(`helo ${h} ${s.helo}`);
        return { kind: 'reject' };
      },
      onMail: (s, from, args, auth) => {
        mailAuth = auth;
        seen.push(`mail ${from} ${args.join(',')} ${s.mailIssued}`);
        return { kind: 'continue' };
      },
      onClose: (s, r) => closes.push([s.id, r]),
    });
    conn.onData(optneg(6, 0x1ff, 0x1fffff));
    assert.equal(t.writes.length, 1);
    assert.equal(t.writes[0]!.subarray(4, 9).toString('hex'), '4f00000006');
    conn.onData(
      Buffer.concat([
        f('D', 'Ci\x006APHZDNQ014179\0{daemon_port}\x002525\0'),
        connect('IPv6:::ffff:198.51.100.7'),
      ]),
    );
    // A synchronous handler is answered within the same read.
    assert.equal(t.letters(), 'c');
    conn.onData(
      Buffer.concat([
        f('D', 'H'),
        f('H', 'client.example.test\0'),
        f('D', 'M{auth_type}\0LOGIN\0{auth_authen}\0bob\0'),
        f('M', '<a@b>\0SIZE=9\0'),
        f('R', '<c@d>\0'),
        f('E'),
        f('Q'),
      ]),
    );
    assert.equal(t.letters(), 'cc', 'HELO/MAIL/RCPT are no-reply; end of message gets CONTINUE');
    assert.deepEqual(seen, [
      'connect 198.51.100.7:12345 6APHZDNQ014179 14179 2525',
      'helo client.example.test client.example.test',
      'mail <a@b> SIZE=9 true',
    ]);
    assert.deepEqual(mailAuth, { authType: 'LOGIN', authAuthen: 'bob' });
    assert.equal(view?.queueId, '6APHZDNQ014179');
    assert.deepEqual(closes, [[view!.id, 'quit']]);
    assert.equal(t.ended, 1);
    assert.equal(await metric(registry, 'authban_milter_replies_total', { verdict: 'continue' }), 2);
    assert.equal(await metric(registry, 'authban_milter_commands_total', { command: 'macro' }), 3);
  });

  it('v2 MTA without no-reply bits: CONTINUE for HELO and MAIL whatever the handler says', () => {
    const { t, conn } = setup({ onHelo: () => ({ kind: 'reject' }), onMail: () => ({ kind: 'tempfail' }) });
    conn.onData(optneg(2, 0x3f, 0x7f));
    assert.equal(t.writes[0]!.readUInt32BE(0), 13);
    conn.onData(Buffer.concat([connect('198.51.100.7'), f('H', 'x\0'), f('M', '<a@b>\0'), f('R', '<c@d>\0'), f('A')]));
    assert.equal(t.letters(), 'cccc');
  });

  it('CONNECT is answered with the handler verdict, a bad verdict or a throw with the fallback', async () => {
    const verdicts: (() => Verdict)[] = [
      () => ({ kind: 'replycode', code: '421', xcode: '4.7.1', text: 'go away' }),
      () => ({ kind: 'replycode', code: '250', text: 'bogus' }),
      () => {
        throw new Error('boom');
      },
    ];
    const { t, conn, registry } = setup({ onConnect: () => verdicts.shift()!() }, { fallback: { kind: 'tempfail' } });
    conn.onData(optneg(6, 0x1ff, 0x1fffff));
    for (let i = 0; i < 3; i++) conn.onData(Buffer.concat([connect('198.51.100.7'), f('K')]));
    assert.equal(t.letters(), 'ytt');
    assert.equal(t.writes[1]!.subarray(5).toString('latin1'), '421 4.7.1 go away\0');
    assert.equal(await metric(registry, 'authban_milter_handler_errors_total'), 2);
  });

  it('QUIT_NC ends the session; the next CONNECT gets a new id and no old macros', () => {
    const views: SessionView[] = [];
    const closes: string[] = [];
    const { t, conn } = setup({
      onConnect: (s) => {
        views.push(s);
        return { kind: 'continue' };
      },
      onClose: (s, r) => closes.push(`${s.id}:${r}`),
    });
    conn.onData(optneg(6, 0x1ff, 0x1fffff));
    conn.onData(Buffer.concat([f('D', 'Ci\0AAAAAAAA000001\0j\0mx\0'), connect('198.51.100.7'), f('K')]));
    conn.onData(Buffer.concat([f('D', 'Ci\0BBBBBBBB000002\0'), connect('203.0.113.5')]));
    assert.equal(views.length, 2);
    assert.notEqual(views[0]!.id, views[1]!.id);
    assert.equal(views[1]!.connect?.address, '203.0.113.5');
    assert.equal(views[1]!.macro('j'), undefined);
    assert.equal(views[1]!.queueId, 'BBBBBBBB000002');
    assert.deepEqual(closes, [`${views[0]!.id}:quit_nc`]);
    assert.equal(t.letters(), 'cc');
    conn.onData(f('Q'));
    assert.deepEqual(closes, [`${views[0]!.id}:quit_nc`, `${views[1]!.id}:quit`]);
  });

  it('EOF after ABORT reports abort_eof; plain EOF reports eof', () => {
    const reasons: CloseReason[] = [];
    for (const tail of [f('A'), f('H', 'x\0')]) {
      const { conn } = setup({ onClose: (_s, r) => reasons.push(r) });
      conn.onData(Buffer.concat([optneg(6, 0x1ff, 0x1fffff), connect('198.51.100.7'), tail]));
      conn.onEnd();
    }
    assert.deepEqual(reasons, ['abort_eof', 'eof']);
  });

  it('a command before negotiation, or a second negotiation, is a protocol error', async () => {
    for (const bytes of [connect('198.51.100.7'), Buffer.concat([optneg(6, 0, 0), optneg(6, 0, 0)])]) {
      const { t, conn, registry } = setup({});
      conn.onData(bytes);
      assert.equal(t.aborted, 1);
      assert.equal(await metric(registry, 'authban_milter_protocol_errors_total', { kind: 'sequence' }), 1);
    }
  });

  it('frames before a malformed one are served, then the connection is closed once', async () => {
    const closes: CloseReason[] = [];
    const { t, conn, registry } = setup({ onClose: (_s, r) => closes.push(r) });
    conn.onData(Buffer.concat([optneg(6, 0x1ff, 0x1fffff), connect('198.51.100.7'), f('H', 'no-nul')]));
    assert.equal(t.letters(), 'c');
    assert.equal(t.aborted, 1);
    assert.deepEqual(closes, ['error']);
    conn.onData(f('Q'));
    conn.onEnd();
    assert.deepEqual(closes, ['error']);
    assert.equal(await metric(registry, 'authban_milter_protocol_errors_total', { kind: 'missing_nul' }), 1);
  });

  it('a MACRO command over the pair cap keeps the first pairs, counts the rest, warns once and goes on', async () => {
    const warnings: string[] = [];
    const registry = new Registry();
    const t = new FakeTransport();
    const seen: (string | undefined)[] = [];
    const conn = new MilterConnection(
      {
        handler: { onConnect: (s) => (seen.push(s.macro('m0'), s.macro('m999')), { kind: 'continue' }) },
        logger: pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line).msg) }),
        handlerTimeoutMs: 1000,
        fallback: { kind: 'continue' },
        maxFrameBytes: 1 << 20,
        metrics: createMilterMetrics(registry),
      },
      t,
      () => 'test',
    );
    const many = f('D', `C${Array.from({ length: 1000 }, (_, i) => `m${i}\0v${i}\0`).join('')}`);
    conn.onData(Buffer.concat([optneg(6, 0x1ff, 0x1fffff), many, many, connect('198.51.100.7')]));
    assert.equal(t.letters(), 'c');
    assert.equal(t.aborted, 0);
    assert.deepEqual(seen, ['v0', undefined]);
    assert.equal(await metric(registry, 'authban_milter_macro_pairs_ignored_total'), 2 * (1000 - MAX_MACRO_PAIRS));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /pair cap/);
  });

  it('a milter offered version 1 closes the connection', async () => {
    const { t, conn, registry } = setup({});
    conn.onData(optneg(1, 0xf, 0x3f));
    assert.equal(t.writes.length, 0);
    assert.equal(t.aborted, 1);
    assert.equal(await metric(registry, 'authban_milter_protocol_errors_total', { kind: 'negotiation' }), 1);
  });
});
