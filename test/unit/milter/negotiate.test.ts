import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MilterProtocolError } from '../../../src/milter/frame-decoder.js';
import { DEFAULT_MACRO_LISTS, needsReply, negotiate, validateMacroLists } from '../../../src/milter/negotiate.js';
import { encodeOptneg } from '../../../src/milter/replies.js';
import { SMFIC, SMFIM, SMFIP } from '../../../src/milter/wire-constants.js';

const offer = (version: number, actions: number, protocol: number) => ({ type: 'optneg' as const, version, actions, protocol });

describe('negotiate', () => {
  it('v6 with sendmail 8.17 offer: no actions, skip bits and every NR bit but NR_CONN, macro lists', () => {
    const n = negotiate(offer(6, 0x1ff, 0x1fffff));
    assert.equal(n.reply.version, 6);
    assert.equal(n.reply.actions, 0);
    // NOBODY|NOHDRS|NOEOH|NR_HDR|NOUNKNOWN|NODATA and NR_HELO..NR_BODY.
    assert.equal(n.protocol, 0x000fe3f0);
    assert.equal(n.protocol & SMFIP.NR_CONN, 0);
    assert.equal(n.protocol & (SMFIP.NOCONNECT | SMFIP.NOHELO | SMFIP.NOMAIL | SMFIP.NORCPT), 0);
    const lists = new Map(n.reply.macros);
    for (const m of ['j', '_', '{daemon_name}', '{daemon_addr}', '{daemon_port}', '{client_addr}', '{client_port}', '{client_name}', '{client_ptr}', 'i']) {
      assert.ok(lists.get(SMFIM.CONNECT)?.includes(m), `connect list has ${m}`);
    }
    for (const stage of [SMFIM.HELO, SMFIM.ENVFROM]) {
      for (const m of ['i', '{auth_type}', '{auth_authen}', '{auth_ssf}', '{auth_author}']) assert.ok(lists.get(stage)?.includes(m));
    }
  });

  it('never asks for a bit the MTA did not offer', () => {
    const offered = SMFIP.NOBODY | SMFIP.NR_HELO | SMFIP.NR_CONN | SMFIP.SKIP;
    const n = negotiate(offer(6, 0x1ff, offered));
    assert.equal(n.protocol, SMFIP.NOBODY | SMFIP.NR_HELO);
    assert.equal(n.protocol & ~offered, 0);
    assert.equal(negotiate(offer(6, 0, 0)).protocol, 0);
  });

  it('v2: answers 2 with a 12-byte payload and no macro lists', () => {
    const n = negotiate(offer(2, 0x3f, 0x7f));
    assert.deepEqual(n.reply, { version: 2, actions: 0, protocol: SMFIP.NOBODY | SMFIP.NOHDRS | SMFIP.NOEOH });
    const wire = encodeOptneg(n.reply);
    assert.equal(wire.readUInt32BE(0), 13);
    assert.equal(wire.length, 17);
  });

  it('answers min(offered, 6) and refuses below 2', () => {
    assert.equal(negotiate(offer(4, 0, 0x3ff)).reply.version, 4);
    assert.equal(negotiate(offer(4, 0, 0x3ff)).reply.macros, undefined);
    assert.equal(negotiate(offer(9, 0, 0)).reply.version, 6);
    assert.throws(
      () => negotiate(offer(1, 0xf, 0x3f)),
      (e: unknown) => e instanceof MilterProtocolError && e.kind === 'negotiation' && /version 1, need at least 2/.test(e.message),
    );
  });

  it('needsReply follows the negotiated no-reply bits', () => {
    const p = negotiate(offer(6, 0x1ff, 0x1fffff)).protocol;
    assert.equal(needsReply(SMFIC.CONNECT, p), true);
    assert.equal(needsReply(SMFIC.HELO, p), false);
    assert.equal(needsReply(SMFIC.MAIL, p), false);
    assert.equal(needsReply(SMFIC.RCPT, p), false);
    assert.equal(needsReply(SMFIC.BODYEOB, p), true);
    for (const c of [SMFIC.MACRO, SMFIC.ABORT, SMFIC.QUIT, SMFIC.QUIT_NC]) assert.equal(needsReply(c, 0), false);
    const v2 = negotiate(offer(2, 0x3f, 0x7f)).protocol;
    assert.equal(needsReply(SMFIC.HELO, v2), true);
    assert.equal(needsReply(SMFIC.MAIL, v2), true);
  });

  it('validates macro lists as sendmail would take them', () => {
    validateMacroLists(DEFAULT_MACRO_LISTS);
    assert.throws(() => validateMacroLists([[0, Array.from({ length: 51 }, () => 'i')]]), /51 macros, at most 50/);
    assert.throws(() => validateMacroLists([[0, ['a b']]]), /bad macro name/);
    assert.throws(() => validateMacroLists([[8, ['i']]]), /out of range/);
  });
});
