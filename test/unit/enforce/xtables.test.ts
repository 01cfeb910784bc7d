import assert from 'node:assert/strict';
import test from 'node:test';
import { actionRules, existingJumps, jumpSpecs, startScript, stopScript } from '../../../src/enforce/xtables.js';

const frame = { chain: 'authban', ports: [25, 465, 587], action: 'reject' as const };

test('jumps are limited to the ports, at most 15 per multiport rule; no ports means all traffic', () => {
  assert.deepEqual(jumpSpecs(frame), ['-p tcp -m multiport --dports 25,465,587 -j authban']);
  const many = Array.from({ length: 20 }, (_, i) => 1000 + i);
  const specs = jumpSpecs({ ...frame, ports: many });
  assert.equal(specs.length, 2);
  assert.ok(specs[0]!.includes(many.slice(0, 15).join(',')));
  assert.ok(specs[1]!.endsWith(`--dports ${many.slice(15).join(',')} -j authban`));
  assert.deepEqual(jumpSpecs({ ...frame, ports: [] }), ['-j authban']);
});

test('a tcp-reset reject always comes with -p tcp; drop is one rule', () => {
  const reject = actionRules(frame);
  for (const r of reject.filter((l) => l.includes('tcp-reset'))) assert.match(r, /-p tcp .*--reject-with tcp-reset/);
  assert.ok(reject.includes('-A authban-act -j REJECT'), 'non-TCP traffic is rejected too');
  assert.deepEqual(actionRules({ ...frame, action: 'drop' }), ['-A authban-act -j DROP']);
});

test('existingJumps finds only rules jumping to our chain', () => {
  const listing = [
    '-P INPUT ACCEPT',
    '-A INPUT -p tcp -m multiport --dports 25 -j authban',
    '-A INPUT -j authban-act',
    '-A INPUT -p tcp -j f2b-sshd',
    '-A INPUT -j authban',
    '-A authban -s 198.51.100.2/32 -j authban-act',
  ].join('\n');
  assert.deepEqual(existingJumps(listing, 'authban'), ['-A INPUT -p tcp -m multiport --dports 25 -j authban', '-A INPUT -j authban']);
});

test('startScript declares (so flushes) both chains, replaces old jumps and inserts the new at the top', () => {
  const script = startScript(frame, ['-A INPUT -j authban'], ['-A authban -s 198.51.100.2 -j authban-act']);
  const lines = script.trim().split('\n');
  assert.equal(lines[0], '*filter');
  assert.equal(lines.at(-1), 'COMMIT');
  assert.ok(lines.includes(':authban - [0:0]') && lines.includes(':authban-act - [0:0]'));
  assert.ok(lines.includes('-D INPUT -j authban'));
  assert.ok(lines.includes('-I INPUT 1 -p tcp -m multiport --dports 25,465,587 -j authban'));
  assert.ok(lines.indexOf('-D INPUT -j authban') < lines.indexOf('-I INPUT 1 -p tcp -m multiport --dports 25,465,587 -j authban'));
  assert.ok(lines.includes('-A authban -s 198.51.100.2 -j authban-act'));
});

test('stopScript removes jumps before the chains', () => {
  const lines = stopScript('authban', ['-A INPUT -j authban']).trim().split('\n');
  assert.ok(lines.indexOf('-D INPUT -j authban') < lines.indexOf('-X authban'));
  assert.ok(lines.includes('-X authban-act'));
});
