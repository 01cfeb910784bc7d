import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineSplitter } from '../../../src/logs/sources/line-splitter.js';
import { StreamFramer } from '../../../src/logs/sources/syslog-receiver.js';
import { DEFAULT_JOURNAL_OPTIONS, journalArgs } from '../../../src/logs/sources/journal.js';

function split(max: number, chunks: string[]): Array<[string, boolean]> {
  const out: Array<[string, boolean]> = [];
  const s = new LineSplitter(max, (l, t) => out.push([l, t]));
  for (const c of chunks) s.push(Buffer.from(c));
  return out;
}

test('LineSplitter joins chunks, holds the partial line, strips CR', () => {
  assert.deepEqual(split(100, ['ab', 'c\nde', 'f\r\n', 'g']), [['abc', false], ['def', false]]);
});

test('LineSplitter keeps a held partial intact when the caller reuses its buffer', () => {
  const out: string[] = [];
  const s = new LineSplitter(100, (l) => out.push(l));
  const buf = Buffer.from('hello');
  s.push(buf);
  buf.write('XXXXX');
  s.push(Buffer.from(' world\n'));
  assert.deepEqual(out, ['hello world']);
});

test('LineSplitter cuts over-long lines once and drops their rest', () => {
  assert.deepEqual(split(4, ['abcdefgh', 'ij\nok\n']), [['abcd', true], ['ok', false]]);
  assert.deepEqual(split(4, ['abcdefgh\nxy\n']), [['abcd', true], ['xy', false]]);
});

test('LineSplitter splits multi-byte UTF-8 across chunks correctly', () => {
  const bytes = Buffer.from('é€\n');
  const out: string[] = [];
  const s = new LineSplitter(100, (l) => out.push(l));
  for (const b of bytes) s.push(Buffer.from([b]));
  assert.deepEqual(out, ['é€']);
});

function frame(max: number, chunks: Array<string | Buffer>): Array<[string, boolean]> {
  const out: Array<[string, boolean]> = [];
  const f = new StreamFramer(max, (m, t) => out.push([m, t]));
  for (const c of chunks) f.push(typeof c === 'string' ? Buffer.from(c) : c);
  return out;
}

test('StreamFramer: octet counting, byte by byte', () => {
  const text = '10 <13>hello\n11 <13>a b\nc d';
  const out: Array<[string, boolean]> = [];
  const f = new StreamFramer(100, (m, t) => out.push([m, t]));
  for (const b of Buffer.from(text)) f.push(Buffer.from([b]));
  // An octet-counted frame may itself contain LF.
  assert.deepEqual(out, [['<13>hello\n', false], ['<13>a b\nc d', false]]);
});

test('StreamFramer: LF and NUL framing, mixed with octet counting', () => {
  assert.deepEqual(frame(100, ['<13>a\n<13>b\0', '5 <13>c<13>d\n']), [
    ['<13>a', false], ['<13>b', false], ['<13>c', false], ['<13>d', false],
  ]);
});

test('StreamFramer: over-long frames are cut and the stream stays in sync', () => {
  assert.deepEqual(frame(5, ['10 0123456789', '<1>ok\n']), [['01234', true], ['<1>ok', false]]);
  assert.deepEqual(frame(5, ['<13>toolong', 'still\n<1>x\n']), [['<13>t', true], ['<1>x', false]]);
});

test('StreamFramer: an over-long LF-framed message is cut even when its LF comes in a later read', () => {
  assert.deepEqual(frame(5, ['<13>', 'toolong\n<1>x\n']), [['<13>t', true], ['<1>x', false]]);
});

test('StreamFramer.finish: a clean end delivers the unterminated remainder; a cut frame or a reset loses it', () => {
  const ended = (chunks: string[], clean: boolean): [Array<[string, boolean]>, boolean] => {
    const out: Array<[string, boolean]> = [];
    const f = new StreamFramer(5, (m, t) => out.push([m, t]));
    for (const c of chunks) f.push(Buffer.from(c));
    return [out, f.finish(clean)];
  };
  assert.deepEqual(ended(['<1>a\n<1>b'], true), [[['<1>a', false], ['<1>b', false]], false]);
  assert.deepEqual(ended(['42'], true), [[['42', false]], false]);
  assert.deepEqual(ended(['4 <1>'], true), [[], true]);
  assert.deepEqual(ended(['9 <1>abcde'], true), [[['<1>ab', true]], true]);
  assert.deepEqual(ended(['<1>a\n<1>b'], false), [[['<1>a', false]], true]);
  assert.deepEqual(ended(['<1>a\n'], false), [[['<1>a', false]], false]);
});

test('journalctl arguments: new entries only at first, then after the cursor; only trusted user ids', () => {
  assert.deepEqual(journalArgs(DEFAULT_JOURNAL_OPTIONS, null), [
    '--follow', '--output=json', '--no-pager', '--quiet', '--lines=0',
    'SYSLOG_IDENTIFIER=sendmail', 'SYSLOG_IDENTIFIER=sm-mta', 'SYSLOG_IDENTIFIER=saslauthd', '_UID=0',
    '+', 'SYSLOG_FACILITY=4', 'SYSLOG_FACILITY=10', '_UID=0',
  ]);
  const a = journalArgs({ ...DEFAULT_JOURNAL_OPTIONS, facilities: [], trustedUids: [] }, 's=1;i=2');
  assert.deepEqual(a.slice(4), ['--after-cursor=s=1;i=2', 'SYSLOG_IDENTIFIER=sendmail', 'SYSLOG_IDENTIFIER=sm-mta', 'SYSLOG_IDENTIFIER=saslauthd']);
});
