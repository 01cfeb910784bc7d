import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeOptneg, encodeVerdict, ReplyError } from '../../../src/milter/replies.js';

const hex = (b: Buffer): string => b.toString('hex');
const ascii = (s: string): string => Buffer.from(s, 'latin1').toString('hex');

describe('reply encoders', () => {
  it('single-byte verdicts are length 1 plus the reply byte', () => {
    assert.equal(hex(encodeVerdict({ kind: 'continue' })), '0000000163');
    assert.equal(hex(encodeVerdict({ kind: 'accept' })), '0000000161');
    assert.equal(hex(encodeVerdict({ kind: 'reject' })), '0000000172');
    assert.equal(hex(encodeVerdict({ kind: 'tempfail' })), '0000000174');
  });

  it('REPLYCODE: code, enhanced code, text, NUL', () => {
    const text = '421 4.7.1 Too many failed logins\0';
    assert.equal(
      hex(encodeVerdict({ kind: 'replycode', code: '421', xcode: '4.7.1', text: 'Too many failed logins' })),
      `${(text.length + 1).toString(16).padStart(8, '0')}79${ascii(text)}`,
    );
    assert.equal(hex(encodeVerdict({ kind: 'replycode', code: '550', text: 'no' })), `0000000879${ascii('550 no\0')}`);
  });

  it('REPLYCODE escapes % as %%', () => {
    const b = encodeVerdict({ kind: 'replycode', code: '451', xcode: '4.3.0', text: '100% busy %s' });
    assert.equal(b.subarray(5).toString('latin1'), '451 4.3.0 100%% busy %%s\0');
    assert.equal(b.readUInt32BE(0), b.length - 4);
  });

  it('REPLYCODE validation', () => {
    const bad = (v: { code: string; xcode?: string; text: string }, re: RegExp) =>
      assert.throws(() => encodeVerdict({ kind: 'replycode', ...v }), (e: unknown) => e instanceof ReplyError && re.test(e.message));
    bad({ code: '250', text: 'ok' }, /not 4xx or 5xx/);
    bad({ code: '42', text: 'x' }, /not 4xx or 5xx/);
    bad({ code: '4211', text: 'x' }, /not 4xx or 5xx/);
    bad({ code: '421', xcode: '5.7.1', text: 'x' }, /does not match the class of 421/);
    bad({ code: '421', xcode: '4.7', text: 'x' }, /not X\.Y\.Z/);
    bad({ code: '421', text: 'a\r\n250 ok' }, /control characters/);
    bad({ code: '421', text: 'a\nb' }, /control characters/);
    bad({ code: '421', text: 'a\0b' }, /control characters/);
  });

  it('an unknown verdict kind is refused', () => {
    assert.throws(() => encodeVerdict({ kind: 'discard' } as never), ReplyError);
  });

  it('OPTNEG reply without macro lists is 12 bytes of payload', () => {
    const b = encodeOptneg({ version: 2, actions: 0, protocol: 0x70 });
    assert.equal(hex(b), '0000000d4f' + '00000002' + '00000000' + '00000070');
  });

  it('OPTNEG reply with macro lists: uint32 stage then space-separated names and NUL', () => {
    const b = encodeOptneg({ version: 6, actions: 0, protocol: 1, macros: [[0, ['j', '{client_addr}']], [2, ['i']]] });
    const payload = '00000006' + '00000000' + '00000001' + '00000000' + ascii('j {client_addr}\0') + '00000002' + ascii('i\0');
    assert.equal(hex(b), (payload.length / 2 + 1).toString(16).padStart(8, '0') + '4f' + payload);
    assert.throws(() => encodeOptneg({ version: 6, actions: 0, protocol: 0, macros: [[7, ['i']]] }), /stage 7 out of range/);
  });
});
