import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeCommand, MAX_MACRO_PAIRS } from '../../../src/milter/commands.js';
import { MilterProtocolError } from '../../../src/milter/frame-decoder.js';

/** A frame as the decoder hands it over: command letter and payload written in hex. */
const cmd = (letter: string, payloadHex = '') =>
  decodeCommand({ command: letter.charCodeAt(0), payload: Buffer.from(payloadHex.replace(/\s+/g, ''), 'hex') });
const ascii = (s: string): string => Buffer.from(s, 'latin1').toString('hex');

function rejects(letter: string, payloadHex: string, kind: string, message: RegExp): void {
  assert.throws(
    () => cmd(letter, payloadHex),
    (e: unknown) => e instanceof MilterProtocolError && e.kind === kind && message.test(e.message),
  );
}

describe('decodeCommand', () => {
  it('OPTNEG: version, actions, protocol as uint32 BE; extra bytes ignored', () => {
    assert.deepEqual(cmd('O', '00000006 000001ff 001fffff'), { type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff });
    assert.deepEqual(cmd('O', '00000002 00000003 0000007f ffff'), { type: 'optneg', version: 2, actions: 3, protocol: 0x7f });
    rejects('O', '00000006 000001ff 001fff', 'truncated', /optneg: 11 bytes, need 12/);
  });

  it('MACRO: command byte, then name/value pairs', () => {
    assert.deepEqual(cmd('D', ascii('Cj\0mx.test\0{client_addr}\x00198.51.100.7\0')), {
      type: 'macro',
      forCommand: 0x43,
      pairs: [
        ['j', 'mx.test'],
        ['{client_addr}', '198.51.100.7'],
      ],
    });
  });

  it('MACRO: an empty list and an empty value', () => {
    assert.deepEqual(cmd('D', ascii('H')), { type: 'macro', forCommand: 0x48, pairs: [] });
    assert.deepEqual(cmd('D', ascii('M{mail_host}\0\0')), { type: 'macro', forCommand: 0x4d, pairs: [['{mail_host}', '']] });
  });

  it('MACRO: an odd list drops the last name, which has no value', () => {
    assert.deepEqual(cmd('D', ascii('Ci\0Q1\0j\0')), { type: 'macro', forCommand: 0x43, pairs: [['i', 'Q1']] });
  });

  it('MACRO: pairs past the cap are counted, not decoded; a trailing lone name is no pair', () => {
    const list = (n: number, tail = ''): string => ascii(`C${Array.from({ length: n }, (_, i) => `m${i}\0v${i}\0`).join('')}${tail}`);
    const over = decodeCommand({ command: 0x44, payload: Buffer.from(list(MAX_MACRO_PAIRS + 44, 'lone\0'), 'hex') });
    assert.equal(over.type, 'macro');
    assert.equal(over.pairs.length, MAX_MACRO_PAIRS);
    assert.deepEqual(over.pairs.at(-1), [`m${MAX_MACRO_PAIRS - 1}`, `v${MAX_MACRO_PAIRS - 1}`]);
    assert.equal(over.ignoredPairs, 44);
    const at = decodeCommand({ command: 0x44, payload: Buffer.from(list(MAX_MACRO_PAIRS), 'hex') });
    assert.equal(at.type === 'macro' && at.pairs.length, MAX_MACRO_PAIRS);
    assert.equal('ignoredPairs' in at, false);
  });

  it('MACRO: malformed', () => {
    rejects('D', '', 'truncated', /macro: empty payload/);
    rejects('D', ascii('Ci\0Q1'), 'missing_nul', /macro: last string is not NUL-terminated/);
    rejects('D', ascii('zi\0Q1\0'), 'unknown_command', /macro: for unknown command byte 0x7a/);
  });

  it('CONNECT inet: hostname, family 4, port, address', () => {
    assert.deepEqual(cmd('C', `${ascii('mx.example\x004')} 3039 ${ascii('198.51.100.7\0')}`), {
      type: 'connect',
      hostname: 'mx.example',
      family: 'inet',
      rawAddress: '198.51.100.7',
      port: 12345,
      address: '198.51.100.7',
    });
  });

  it('CONNECT inet6: IPv6: prefix stripped, uncompressed and IPv4-mapped forms normalised', () => {
    const c6 = (addr: string) => cmd('C', `${ascii('[x]\x006')} 0019 ${ascii(`${addr}\0`)}`);
    assert.deepEqual(c6('IPv6:2001:db8::1'), {
      type: 'connect',
      hostname: '[x]',
      family: 'inet6',
      rawAddress: 'IPv6:2001:db8::1',
      port: 25,
      address: '2001:db8::1',
    });
    assert.equal((c6('IPv6:2001:0DB8:0000:0000:0000:0000:0000:00A1') as { address?: string }).address, '2001:db8::a1');
    assert.equal((c6('IPv6:::ffff:203.0.113.9') as { address?: string }).address, '203.0.113.9');
    assert.equal((c6('garbage') as { address?: string }).address, undefined, 'no address rather than a wrong one');
  });

  it('CONNECT unix and unknown families', () => {
    assert.deepEqual(cmd('C', `${ascii('localhost\0L')} 0000 ${ascii('/run/x.sock\0')}`), {
      type: 'connect',
      hostname: 'localhost',
      family: 'unix',
      rawAddress: '/run/x.sock',
    });
    assert.deepEqual(cmd('C', ascii('localhost\0U')), { type: 'connect', hostname: 'localhost', family: 'unknown' });
  });

  it('CONNECT malformed', () => {
    rejects('C', ascii('localhost'), 'missing_nul', /hostname is not NUL-terminated/);
    rejects('C', ascii('localhost\0'), 'truncated', /no family byte/);
    rejects('C', ascii('localhost\0X'), 'bad_value', /unknown family byte 0x58/);
    rejects('C', `${ascii('h\x004')} 30`, 'truncated', /no port and address/);
    rejects('C', `${ascii('h\x004')} 3039 ${ascii('1.2.3.4')}`, 'missing_nul', /address is not NUL-terminated/);
  });

  it('HELO, MAIL, RCPT, UNKNOWN', () => {
    assert.deepEqual(cmd('H', ascii('client.example\0')), { type: 'helo', helo: 'client.example' });
    assert.deepEqual(cmd('M', ascii('<a@b>\0SIZE=10\0BODY=8BITMIME\0')), { type: 'mail', sender: '<a@b>', args: ['SIZE=10', 'BODY=8BITMIME'] });
    assert.deepEqual(cmd('R', ascii('<c@d>\0')), { type: 'rcpt', recipient: '<c@d>', args: [] });
    assert.deepEqual(cmd('U', ascii('XYZZY foo\0')), { type: 'unknown', line: 'XYZZY foo' });
    assert.deepEqual(cmd('H', 'c3a900'), { type: 'helo', helo: 'é' }, 'UTF-8');
  });

  it('HELO, MAIL, RCPT, UNKNOWN malformed', () => {
    rejects('H', '', 'truncated', /helo: empty payload/);
    rejects('H', ascii('client'), 'missing_nul', /helo: last string is not NUL-terminated/);
    rejects('M', ascii('<a@b>\0SIZE'), 'missing_nul', /mail/);
    rejects('R', '', 'truncated', /rcpt/);
    rejects('U', ascii('XY'), 'missing_nul', /unknown/);
  });

  it('HEADER: name and value', () => {
    assert.deepEqual(cmd('L', ascii('Subject\0hi there\0')), { type: 'header', name: 'Subject', value: 'hi there' });
    rejects('L', ascii('Subject\0'), 'truncated', /header: name without value/);
    rejects('L', ascii('Subject\0hi'), 'missing_nul', /header/);
  });

  it('commands without arguments; BODY and BODYEOB report their length', () => {
    assert.deepEqual(cmd('T'), { type: 'data' });
    assert.deepEqual(cmd('N'), { type: 'eoh' });
    assert.deepEqual(cmd('A'), { type: 'abort' });
    assert.deepEqual(cmd('Q'), { type: 'quit' });
    assert.deepEqual(cmd('K'), { type: 'quit_nc' });
    assert.deepEqual(cmd('B', '0d0a2e2e'), { type: 'body', length: 4 });
    assert.deepEqual(cmd('E'), { type: 'eob', length: 0 });
  });

  it('unknown command bytes', () => {
    rejects('Z', '00', 'unknown_command', /unknown command byte 0x5a/);
    assert.throws(() => decodeCommand({ command: 0, payload: Buffer.alloc(0) }), /unknown command byte 0x00/);
  });
});
