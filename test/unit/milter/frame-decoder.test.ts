import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FrameDecoder, MilterProtocolError } from '../../../src/milter/frame-decoder.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const view = (frames: { command: number; payload: Buffer }[]) =>
  frames.map((f) => [String.fromCharCode(f.command), f.payload.toString('hex')]);

// QUIT (no payload), HELO "a\0", then OPTNEG 6/0x1ff/0x1fffff.
const STREAM = hex('00000001 51  00000003 48 6100  0000000d 4f 00000006 000001ff 001fffff');
const EXPECTED = [
  ['Q', ''],
  ['H', '6100'],
  ['O', '00000006000001ff001fffff'],
];

describe('FrameDecoder', () => {
  it('decodes several frames merged into one read', () => {
    const d = new FrameDecoder();
    assert.deepEqual(view(d.push(STREAM)), EXPECTED);
    assert.equal(d.failure, null);
    assert.equal(d.midFrame, false);
  });

  it('decodes the same stream fed byte by byte', () => {
    const d = new FrameDecoder();
    const out: { command: number; payload: Buffer }[] = [];
    for (let i = 0; i < STREAM.length; i++) out.push(...d.push(STREAM.subarray(i, i + 1)));
    assert.deepEqual(view(out), EXPECTED);
    assert.equal(d.midFrame, false);
  });

  it('decodes at every possible split point of two reads', () => {
    for (let cut = 0; cut <= STREAM.length; cut++) {
      const d = new FrameDecoder();
      const out = [...d.push(STREAM.subarray(0, cut)), ...d.push(STREAM.subarray(cut))];
      assert.deepEqual(view(out), EXPECTED, `split at ${cut}`);
    }
  });

  it('reports a frame still open', () => {
    const d = new FrameDecoder();
    assert.deepEqual(d.push(hex('00000003 48')), []);
    assert.equal(d.midFrame, true);
    assert.deepEqual(view(d.push(hex('6100'))), [['H', '6100']]);
  });

  it('accepts a 65535-byte payload under the default cap', () => {
    const d = new FrameDecoder();
    const big = Buffer.alloc(4 + 1 + 65535, 0x78);
    big.writeUInt32BE(65536, 0);
    big[4] = 0x42;
    const halves = [...d.push(big.subarray(0, 30000)), ...d.push(big.subarray(30000))];
    assert.equal(halves.length, 1);
    assert.equal(halves[0]!.payload.length, 65535);
  });

  it('decodes a large frame fed in reads of every size, one byte up', () => {
    const d = new FrameDecoder();
    const payload = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));
    const whole = Buffer.concat([Buffer.alloc(5), payload]);
    whole.writeUInt32BE(payload.length + 1, 0);
    whole[4] = 0x42;
    const out: { command: number; payload: Buffer }[] = [];
    for (let off = 0, n = 1; off < whole.length; off += n, n = (n * 3 + 1) % 9001) out.push(...d.push(whole.subarray(off, off + n)));
    assert.equal(out.length, 1);
    assert.equal(out[0]!.command, 0x42);
    assert.ok(out[0]!.payload.equals(payload));
    assert.equal(d.midFrame, false);
  });

  it('holds memory for the bytes received, not for the length a header claims', () => {
    // Each decoder is told of a 1 MiB frame and gets 1 byte of it. Reserving the claimed
    // length would take 64 MiB; the threshold leaves room for whatever else the process does.
    const before = process.memoryUsage().arrayBuffers;
    const decoders = Array.from({ length: 64 }, () => {
      const d = new FrameDecoder();
      d.push(hex('00100000 41'));
      return d;
    });
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(decoders.every((d) => d.midFrame && d.failure === null));
    assert.ok(grown < 8 * 1024 * 1024, `arrayBuffers grew by ${grown} bytes`);
  });

  it('refuses a zero length with a clear reason', () => {
    const d = new FrameDecoder();
    assert.deepEqual(view(d.push(hex('00000001 51  00000000 51'))), [['Q', '']]);
    assert.ok(d.failure instanceof MilterProtocolError);
    assert.equal(d.failure.kind, 'frame_length');
    assert.match(d.failure.message, /frame length 0/);
    assert.deepEqual(d.push(hex('00000001 51')), [], 'input after a failure is ignored');
  });

  it('refuses a length above the cap before allocating, also when the header is split', () => {
    const d = new FrameDecoder(1000);
    d.push(hex('0000'));
    assert.deepEqual(d.push(hex('03e9 41')), []);
    assert.equal(d.failure?.kind, 'frame_length');
    assert.match(d.failure!.message, /1001 exceeds the limit of 1000/);
    assert.equal(d.failure!.sample?.toString('hex'), '000003e9');

    const absurd = new FrameDecoder();
    absurd.push(hex('ffffffff 41'));
    assert.match(absurd.failure!.message, /4294967295 exceeds the limit of 1048576/);
  });
});
