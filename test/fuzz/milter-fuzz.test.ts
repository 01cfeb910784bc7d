/**
 * Fuzzes a live authban milter server (in its own process) with random and mutated frames
 * over many connections. It must never crash, must close every connection whose peer is
 * done, must keep its heap bounded, and must still serve a valid session at the end.
 *
 * Reproduce a failure with AUTHBAN_FUZZ_SEED=<printed seed>. AUTHBAN_FUZZ_FRAMES and
 * AUTHBAN_FUZZ_SECONDS change the budget (defaults 100,000 frames, 60 s at most).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { SMFIC, SMFIR } from '../../src/milter/wire-constants.js';
import { encodeCommand, frame, MtaClient, replyName, replyText, type MacroStage, type MtaCommand } from '../helpers/mta-client.js';
import { startAuthbanChild, type AuthbanChild } from '../bench/milter/servers.js';
import { prng } from '../helpers/prng.js';

const FRAMES = Number(process.env.AUTHBAN_FUZZ_FRAMES ?? 100_000);
const MAX_SECONDS = Number(process.env.AUTHBAN_FUZZ_SECONDS ?? 60);
const SEED = Number(process.env.AUTHBAN_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32));
const PARALLEL = 32;
/** A done peer's connection must be closed by the server within this. */
const CLOSE_WITHIN_MS = 5000;

class Gen {
  constructor(readonly rnd: () => number) {}
  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  /** Mostly printable text, sometimes with NUL, CR/LF, `%`, high bytes. */
  text(max: number): string {
    const alphabet = 'abcXYZ019.-_@<>[]:{} %\r\n\0\u00e9\u00ff';
    let s = '';
    for (let i = this.int(max + 1); i > 0; i--) s += this.chance(0.9) ? this.pick('abcdefghijklmnop.0123456789'.split('')) : this.pick(alphabet.split(''));
    return s;
  }
  address(): string {
    return this.pick([
      `198.51.100.${this.int(256)}`,
      `203.0.113.${this.int(256)}`,
      `2001:db8::${this.int(0xffff).toString(16)}`,
      `IPv6:2001:0db8:0000:0000:0000:0000:0000:${this.int(0xffff).toString(16)}`,
      '::ffff:198.51.100.9',
      '999.1.1.1',
      this.text(20),
      '',
    ]);
  }
}

const STAGES: MacroStage[] = ['C', 'H', 'M', 'R', 'T', 'N', 'E', 'U'];
const MACRO_NAMES = ['j', '_', 'i', '{client_addr}', '{client_port}', '{daemon_name}', '{auth_type}', '{auth_authen}', 'client_addr', '{i}', '{', '}', ''];

/** A plausible session (sometimes out of order), each command encoded as one frame. */
function validSession(g: Gen): Buffer[] {
  const qid = `6APH${g.int(10000).toString().padStart(4, '0')}${(10000 + g.int(90000)).toString().padStart(6, '0')}`;
  const addr = g.address();
  const cmds: MtaCommand[] = [
    { cmd: 'optneg', version: g.pick([2, 3, 4, 6, 6, 6, 7, 0]), actions: g.pick([0x1ff, 0x3f, 0]), protocol: g.pick([0x1fffff, 0x7f, 0, g.int(2 ** 32)]) },
    { cmd: 'macro', stage: 'C', macros: { j: 'mx.fuzz.test', i: qid, '{client_addr}': addr, '{client_port}': String(g.int(70000)) } },
    { cmd: 'connect', hostname: g.text(30), family: g.pick(['4', '6', 'U', 'L'] as const), port: g.int(65536), address: addr },
    { cmd: 'macro', stage: 'H', macros: { i: qid } },
    { cmd: 'helo', name: g.text(40) },
    { cmd: 'macro', stage: 'M', macros: { '{auth_type}': 'LOGIN', '{auth_authen}': g.text(12) } },
    { cmd: 'mail', args: [`<${g.text(20)}>`, ...(g.chance(0.3) ? ['SIZE=1', 'AUTH=<>'] : [])] },
    { cmd: 'rcpt', args: [`<${g.text(20)}>`] },
    { cmd: 'data' },
    { cmd: 'header', name: g.text(10), value: g.text(40) },
    { cmd: 'eoh' },
    { cmd: 'body', chunk: g.bytes(g.int(200)) },
    { cmd: 'eom' },
    { cmd: 'unknown', line: g.text(30) },
    { cmd: 'abort' },
    { cmd: 'helo', name: g.text(10) },
    { cmd: g.pick(['quit', 'quit_nc', 'abort'] as const) },
  ];
  let frames = cmds.map(encodeCommand);
  if (g.chance(0.2)) frames = frames.slice(0, 1 + g.int(frames.length));
  if (g.chance(0.1)) frames.splice(g.int(frames.length), 0, frames[g.int(frames.length)]!);
  return frames;
}

function randomMacroFrame(g: Gen): Buffer {
  const parts: string[] = [];
  for (let i = g.int(60); i > 0; i--) parts.push(g.chance(0.7) ? g.pick(MACRO_NAMES) : g.text(8), g.text(30));
  if (g.chance(0.3)) parts.pop();
  const body = Buffer.from(parts.join('\0') + (g.chance(0.8) ? '\0' : ''), 'latin1');
  const stage = g.chance(0.8) ? Buffer.from(g.pick(STAGES), 'latin1') : g.bytes(1);
  return frame(SMFIC.MACRO, Buffer.concat([stage, body]));
}

/** Applies one mutation to a frame. */
function mutate(g: Gen, f: Buffer): Buffer {
  const b = Buffer.from(f);
  switch (g.int(7)) {
    case 0: // bit flips anywhere, header included
      for (let i = 1 + g.int(4); i > 0; i--) b[g.int(b.length)]! ^= 1 << g.int(8);
      return b;
    case 1: // truncate the payload, keeping the claimed length (the rest arrives as the next frame)
      return b.subarray(0, 5 + g.int(Math.max(1, b.length - 5)));
    case 2: // a bogus length: 0, 1, just past the cap, huge, or random
      b.writeUInt32BE(g.pick([0, 1, 2, 1024 * 1024, 1024 * 1024 + 1, 0x7fffffff, 0xffffffff, g.int(2 ** 32)]), 0);
      return b;
    case 3: // an unknown command byte
      b[4] = g.pick([0, 0x7f, 0xff, 'Z'.charCodeAt(0), 'o'.charCodeAt(0), g.int(256)]);
      return b;
    case 4: // payload dropped entirely
      return frame(b[4]!);
    case 5: // payload replaced with noise
      return frame(b[4]!, g.bytes(g.int(64)));
    default: // correct length, truncated payload: strings without NUL, short OPTNEG, …
      return frame(b[4]!, b.subarray(5, 5 + g.int(Math.max(1, b.length - 5))));
  }
}

/** One connection's worth of bytes and how many frames it holds. */
function connectionBytes(g: Gen): { chunks: Buffer[]; frames: number } {
  let frames: Buffer[];
  const kind = g.int(10);
  if (kind < 6) {
    frames = validSession(g);
    for (let i = 1 + g.int(3); i > 0; i--) {
      const at = g.int(frames.length);
      frames[at] = mutate(g, frames[at]!);
    }
  } else if (kind < 8) {
    frames = validSession(g).slice(0, 2);
    for (let i = g.int(20); i > 0; i--) frames.push(randomMacroFrame(g));
    frames.push(...validSession(g).slice(2));
  } else if (kind < 9) {
    frames = Array.from({ length: 1 + g.int(20) }, () => frame(g.int(256), g.bytes(g.int(100))));
  } else {
    frames = [g.bytes(1 + g.int(300))];
  }
  const all = Buffer.concat(frames);
  // Split the stream at random points, as TCP may.
  const chunks: Buffer[] = [];
  let off = 0;
  while (off < all.length) {
    const n = g.chance(0.5) ? all.length - off : 1 + g.int(all.length - off);
    chunks.push(all.subarray(off, off + n));
    off += n;
  }
  return { chunks, frames: frames.length };
}

/** Sends the bytes, half-closes, and waits for the server to close. Resolves false on a hang. */
function fuzzConnection(port: number, chunks: Buffer[]): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, CLOSE_WITHIN_MS);
    s.on('data', () => {});
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    s.on('connect', () => {
      for (const c of chunks) s.write(c);
      s.end();
    });
  });
}

async function validSessionWorks(port: number): Promise<void> {
  const c = await MtaClient.connect({ port });
  try {
    await c.negotiate();
    c.send({ cmd: 'macro', stage: 'C', macros: { i: '6APHQKMi010070', '{client_addr}': '198.51.100.7' } });
    const r = await c.request({ cmd: 'connect', hostname: 'ok.example', family: '4', port: 4000, address: '198.51.100.7' });
    assert.equal(r?.command, SMFIR.CONTINUE);
    // authban asks for no reply to these (SMFIP_NR_*); if it does reply, it must be CONTINUE.
    for (const cmd of [
      { cmd: 'helo', name: 'ok.example' },
      { cmd: 'mail', args: ['<a@example.org>'] },
      { cmd: 'rcpt', args: ['<b@example.org>'] },
    ] as const) {
      const r2 = await c.request(cmd);
      assert.ok(r2 === undefined || r2.command === SMFIR.CONTINUE, `${cmd.cmd} answered ${r2 && replyName(r2)}`);
    }
    await c.quit();
  } finally {
    c.destroy();
  }
}

async function refusedGets421(port: number): Promise<void> {
  const c = await MtaClient.connect({ port });
  try {
    await c.negotiate();
    const r = await c.request({ cmd: 'connect', hostname: 'bad.example', family: '4', port: 4000, address: '203.0.113.66' });
    assert.equal(r?.command, SMFIR.REPLYCODE);
    assert.match(replyText(r!), /^421 4\.7\.1 /);
    await c.quit();
  } finally {
    c.destroy();
  }
}

test(`milter server survives ${FRAMES} fuzzed frames (seed ${SEED})`, { timeout: (MAX_SECONDS + 60) * 1000 }, async (t) => {
  process.stderr.write(`milter fuzz seed ${SEED} (AUTHBAN_FUZZ_SEED=${SEED} reproduces)\n`);
  const server: AuthbanChild = await startAuthbanChild('fuzz');
  t.after(() => server.stop());
  let crashed: string | undefined;
  void server.exited.then(({ code, signal }) => {
    crashed = `server exited (code ${code}, signal ${signal}) during the fuzz; stderr:\n${server.stderr()}`;
  });

  for (let i = 0; i < 50; i++) await validSessionWorks(server.port);
  const before = await server.stats();

  const g = new Gen(prng(SEED));
  const deadline = Date.now() + MAX_SECONDS * 1000;
  let frames = 0;
  let connections = 0;
  let hung = 0;
  const fuzzUntil = async (limit: number): Promise<void> => {
    const lane = async (): Promise<void> => {
      while (frames < limit && Date.now() < deadline && !crashed) {
        const { chunks, frames: n } = connectionBytes(g);
        frames += n;
        connections++;
        if (!(await fuzzConnection(server.port, chunks))) hung++;
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, lane));
  };
  const started = Date.now();
  // The heap baseline is taken after a tenth of the fuzz, so it already holds what steady
  // state holds (JIT code, pools); the other nine tenths must not grow it much.
  await fuzzUntil(FRAMES / 10);
  const heapBefore = (await server.stats()).heapUsed;
  await fuzzUntil(FRAMES);
  const seconds = (Date.now() - started) / 1000;
  const calls = (await server.stats()).handlerCalls - before.handlerCalls;
  process.stderr.write(`milter fuzz: ${frames} frames over ${connections} connections in ${seconds.toFixed(1)} s, ${calls} handler calls\n`);

  assert.equal(crashed, undefined);
  assert.ok(frames >= FRAMES, `only ${frames} of ${FRAMES} frames in ${MAX_SECONDS} s (seed ${SEED})`);
  // Most streams start with a plausible session; if few reach the handler, the fuzz only
  // exercises the first frame's rejection and proves little.
  assert.ok(calls > connections / 2, `only ${calls} handler calls over ${connections} connections (seed ${SEED})`);
  assert.equal(hung, 0, `${hung} connections not closed by the server ${CLOSE_WITHIN_MS} ms after the client finished (seed ${SEED})`);

  await validSessionWorks(server.port);
  await refusedGets421(server.port);

  // The server sees the last close a moment after the client does: poll, bounded.
  let after = await server.stats();
  for (let i = 0; i < 20 && after.connections > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    after = await server.stats();
  }
  const heapAfter = after.heapUsed;
  assert.equal(after.connections, 0, 'the server still holds connections every client has closed');
  process.stderr.write(`milter fuzz: heap ${(heapBefore / 1e6).toFixed(1)} MB before, ${(heapAfter / 1e6).toFixed(1)} MB after\n`);
  assert.ok(heapAfter / heapBefore < 1.5, `heap grew from ${heapBefore} to ${heapAfter} bytes (seed ${SEED})`);
  assert.ok(heapAfter < 64 * 1024 * 1024, `heap ${heapAfter} bytes after the fuzz (seed ${SEED})`);
  assert.equal(crashed, undefined);
});

// Found by the fuzzer: when a valid command and a malformed frame arrive in one read, the
// server closed the connection without the valid command's reply (libmilter answers it).
test('a reply owed before a malformed frame in the same read is still sent', async (t) => {
  const server = await startAuthbanChild('fuzz');
  t.after(() => server.stop());
  const c = await MtaClient.connect({ port: server.port });
  try {
    c.writeRaw(Buffer.concat([encodeCommand({ cmd: 'optneg' }), Buffer.from([0, 0, 0, 0])]));
    const r = await c.expectReply(2000);
    assert.equal(r.command, SMFIR.OPTNEG, `got ${replyName(r)}`);
    await c.closedWithin(2000);
  } finally {
    c.destroy();
  }
});
