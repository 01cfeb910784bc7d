import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createEnforceMetrics } from '../../../src/enforce/metrics.js';
import { CommandError, CommandRunner, execArgv } from '../../../src/enforce/run-command.js';

const node = process.execPath;
const log = pino({ level: 'silent' });

test('execArgv feeds stdin and returns stdout, stderr and the exit code', async () => {
  const res = await execArgv(
    [node, '-e', 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{process.stdout.write(s.toUpperCase());console.error("warn");process.exit(3)})'],
    'add authban4 198.51.100.2\n',
    5000,
  );
  assert.equal(res.stdout, 'ADD AUTHBAN4 198.51.100.2\n');
  assert.equal(res.stderr.trim(), 'warn');
  assert.equal(res.code, 3);
  assert.equal(res.timedOut, false);
});

test('arguments reach the program verbatim: no shell interprets them', async () => {
  const tricky = '198.51.100.2; touch /tmp/authban-pwned $(id) `id` | cat';
  const res = await execArgv([node, '-e', 'process.stdout.write(process.argv[1])', tricky], undefined, 5000);
  assert.equal(res.stdout, tricky);
});

test('execArgv kills a command that outlives its timeout', async () => {
  const started = Date.now();
  const res = await execArgv([node, '-e', 'setTimeout(()=>{}, 10000)'], undefined, 300);
  assert.equal(res.timedOut, true);
  assert.ok(Date.now() - started < 3000);
});

test('a missing program is a failure, not a crash', async () => {
  const res = await execArgv(['/nonexistent/authban-no-such-binary'], 'x', 1000);
  assert.equal(res.code, null);
  assert.match(res.stderr, /ENOENT/);
});

test('CommandRunner retries with back-off, logs stderr, counts attempts and failures', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'authban-run-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const counter = join(dir, 'n');
  // Fails twice, then succeeds: the attempt number lives in a file.
  const flaky = `const fs=require('fs');const f=process.argv[1];let n=0;try{n=+fs.readFileSync(f,'utf8')}catch{}fs.writeFileSync(f,String(n+1));if(n<2){console.error('xtables lock busy '+n);process.exit(4)}`;
  const registry = new Registry();
  const metrics = createEnforceMetrics(registry);
  const warnings: unknown[] = [];
  const spyLog = pino({ level: 'warn' }, { write: (line: string) => warnings.push(JSON.parse(line)) });
  const runner = new CommandRunner({ timeoutMs: 5000, attempts: 3, retryBaseMs: 50 }, { backend: 'ipset', log: spyLog, metrics });
  const started = Date.now();
  const res = await runner.run('ban', [node, '-e', flaky, counter]);
  assert.equal(res.code, 0);
  assert.equal(readFileSync(counter, 'utf8'), '3');
  assert.ok(Date.now() - started >= 50 + 100, 'back-off waited 50 then 100 ms');
  assert.equal(warnings.length, 2);
  assert.match(JSON.stringify(warnings[0]), /xtables lock busy 0/);
  const value = async (name: string) => (await registry.getSingleMetric(name)!.get()).values.find((v) => v.labels.op === 'ban')?.value;
  assert.equal(await value('authban_firewall_commands_total'), 3);
  assert.equal(await value('authban_firewall_command_failures_total'), 2);
  const hist = await registry.getSingleMetric('authban_firewall_command_duration_seconds')!.get();
  assert.equal(hist.values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_count'))?.value, 3);
});

test('CommandRunner gives up after the last attempt with the stderr in the error', async () => {
  const runner = new CommandRunner({ timeoutMs: 5000, attempts: 2, retryBaseMs: 1 }, { backend: 'nftables', log });
  await assert.rejects(runner.run('start', [node, '-e', 'console.error("Error: No such file or directory");process.exit(1)']), (e: unknown) => {
    assert.ok(e instanceof CommandError);
    assert.match(e.message, /exit 1: Error: No such file or directory/);
    return true;
  });
});

test('the prefix is prepended to every command', async () => {
  const runner = new CommandRunner({ timeoutMs: 5000, attempts: 1, retryBaseMs: 1 }, { backend: 'nftables', log, prefix: [node, '-e', 'process.stdout.write(process.argv.slice(1).join("|"))'] });
  const res = await runner.once('list', ['nft', '-j', 'list']);
  assert.equal(res.stdout, 'nft|-j|list');
});
