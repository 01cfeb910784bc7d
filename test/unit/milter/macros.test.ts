import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MacroStore, normalizeMacroName } from '../../../src/milter/macros.js';
import { pidFromQueueId } from '../../../src/milter/queue-id.js';

const C = 0x43;
const H = 0x48;
const M = 0x4d;
const R = 0x52;

describe('MacroStore', () => {
  it('{x} and x are one name', () => {
    const s = new MacroStore();
    s.define(C, [['{client_addr}', '198.51.100.7'], ['i', 'Q1']]);
    assert.equal(s.get('client_addr'), '198.51.100.7');
    assert.equal(s.get('{client_addr}'), '198.51.100.7');
    assert.equal(s.get('{i}'), 'Q1');
    assert.equal(normalizeMacroName('{}'), '{}');
  });

  it('connection values survive transactions; a later stage shadows an earlier one', () => {
    const s = new MacroStore();
    s.define(C, [['i', 'AAAAAAAA000100'], ['j', 'mx']]);
    s.define(M, [['i', 'BBBBBBBB000100'], ['auth_authen', 'bob']]);
    assert.equal(s.get('i'), 'BBBBBBBB000100');
    s.clearMessage();
    assert.equal(s.get('i'), 'AAAAAAAA000100');
    assert.equal(s.get('auth_authen'), undefined);
    assert.equal(s.get('j'), 'mx');
  });

  it('defining a stage again clears it and the later ones', () => {
    const s = new MacroStore();
    s.define(C, [['j', 'mx']]);
    s.define(H, [['h1', 'x']]);
    s.define(M, [['m1', 'y']]);
    s.define(R, [['r1', 'z']]);
    s.define(R, [['r2', 'w']]);
    assert.equal(s.get('r1'), undefined);
    assert.equal(s.get('r2'), 'w');
    s.define(H, []);
    assert.equal(s.get('h1'), undefined);
    assert.equal(s.get('m1'), undefined);
    assert.equal(s.get('r2'), undefined);
    assert.equal(s.get('j'), 'mx');
  });

  it('macros for commands without a stage are not stored', () => {
    const s = new MacroStore();
    assert.equal(s.define(0x4c /* L */, [['x', '1']]), false);
    assert.equal(s.get('x'), undefined);
  });
});

describe('pidFromQueueId', () => {
  it('takes the digits after the first 8 characters', () => {
    assert.equal(pidFromQueueId('6APHZDNQ014179'), 14179);
    assert.equal(pidFromQueueId('s0QBU1Ir002370'), 2370);
    assert.equal(pidFromQueueId('6APHZDNQ1234567'), 1234567);
  });
  it('gives no pid for anything else', () => {
    for (const q of ['NOQUEUE', '6APHZDNQ', '6APHZDNQ01417x', '6APHZDNQ-14179', '6APHZDNQ000000', '6APHZDNQ99999999999']) {
      assert.equal(pidFromQueueId(q), undefined, q);
    }
  });
});
