import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildRefusal, DEFAULT_REFUSE_OPTIONS } from '../../../src/milter/refuse.js';
import { encodeVerdict } from '../../../src/milter/replies.js';

describe('buildRefusal', () => {
  it('builds a 421 4.7.1 replycode from the configured text', () => {
    assert.deepEqual(buildRefusal({ refuseText: ' Go away ' }), { kind: 'replycode', code: '421', xcode: '4.7.1', text: 'Go away' });
    const wire = encodeVerdict(buildRefusal());
    assert.equal(wire.subarray(5).toString('latin1'), `421 4.7.1 ${DEFAULT_REFUSE_OPTIONS.refuseText}\0`);
  });

  it('refuses empty, multi-line, non-ASCII or overlong text', () => {
    for (const refuseText of ['', '   ', 'a\r\nb', 'caf\u00e9', 'x'.repeat(201)]) {
      assert.throws(() => buildRefusal({ refuseText }), /refuseText must be/, JSON.stringify(refuseText));
    }
  });
});
