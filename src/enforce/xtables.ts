/**
 * The iptables/ip6tables frame shared by the iptables and ipset backends: authban's chain, an
 * action chain (`<chain>-act`) holding reject-or-drop once, and jumps from INPUT limited to the
 * configured ports. Everything is written as `iptables-restore --noflush` scripts so a change is
 * one atomic commit per family.
 */
import type { Family } from '../core/address.js';
import type { FirewallAction } from './options.js';
import type { CommandRunner } from './run-command.js';
import type { FirewallOp } from './metrics.js';

export const XT = {
  4: { cmd: 'iptables', restore: 'iptables-restore' },
  6: { cmd: 'ip6tables', restore: 'ip6tables-restore' },
} as const;

export interface XtFrame {
  readonly chain: string;
  readonly ports: readonly number[];
  readonly action: FirewallAction;
}

export const actionChain = (chain: string): string => `${chain}-act`;

// The multiport match takes at most 15 ports per rule.
const MULTIPORT_MAX = 15;

/** Rule specs (without `-A INPUT`) that send traffic to authban's chain. */
export function jumpSpecs(frame: XtFrame): string[] {
  if (frame.ports.length === 0) return [`-j ${frame.chain}`];
  const specs: string[] = [];
  for (let i = 0; i < frame.ports.length; i += MULTIPORT_MAX) {
    specs.push(`-p tcp -m multiport --dports ${frame.ports.slice(i, i + MULTIPORT_MAX).join(',')} -j ${frame.chain}`);
  }
  return specs;
}

/**
 * Action rules. `--reject-with tcp-reset` is only valid with `-p tcp`, so reject is a reset
 * for TCP and an ICMP port-unreachable for anything else (reachable when ports is empty).
 */
export function actionRules(frame: XtFrame): string[] {
  const act = actionChain(frame.chain);
  if (frame.action === 'drop') return [`-A ${act} -j DROP`];
  return [`-A ${act} -p tcp -j REJECT --reject-with tcp-reset`, `-A ${act} -j REJECT`];
}

/** INPUT rules (as `iptables -S` prints them, `-A INPUT …`) that jump to `chain`. */
export function existingJumps(inputListing: string, chain: string): string[] {
  const suffix = ` -j ${chain}`;
  return inputListing
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('-A INPUT ') && l.endsWith(suffix));
}

/**
 * A script that (re)creates both chains empty (declaring a chain under --noflush flushes it),
 * fills them, and replaces every old jump with the configured ones: a second start never
 * leaves a duplicate jump, and a changed port list takes effect.
 */
export function startScript(frame: XtFrame, oldJumps: readonly string[], chainRules: readonly string[]): string {
  const lines = ['*filter', `:${frame.chain} - [0:0]`, `:${actionChain(frame.chain)} - [0:0]`];
  lines.push(...actionRules(frame));
  lines.push(...chainRules);
  for (const j of oldJumps) lines.push(`-D INPUT ${j.slice('-A INPUT '.length)}`);
  // Inserted at the top so a host ACCEPT for port 25 earlier in INPUT cannot bypass the ban.
  for (const spec of jumpSpecs(frame).reverse()) lines.push(`-I INPUT 1 ${spec}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** Removes jumps and both chains. */
export function stopScript(chain: string, oldJumps: readonly string[]): string {
  const act = actionChain(chain);
  const lines = ['*filter'];
  for (const j of oldJumps) lines.push(`-D INPUT ${j.slice('-A INPUT '.length)}`);
  lines.push(`-F ${chain}`, `-F ${act}`, `-X ${chain}`, `-X ${act}`, 'COMMIT', '');
  return lines.join('\n');
}

export function ruleScript(lines: readonly string[]): string {
  return ['*filter', ...lines, 'COMMIT', ''].join('\n');
}

export async function listInput(runner: CommandRunner, family: Family, op: FirewallOp): Promise<string> {
  return (await runner.run(op, [XT[family].cmd, '-w', '-S', 'INPUT'])).stdout;
}

export async function chainExists(runner: CommandRunner, family: Family, chain: string, op: FirewallOp): Promise<boolean> {
  return (await runner.once(op, [XT[family].cmd, '-w', '-S', chain])).code === 0;
}

export async function restore(runner: CommandRunner, family: Family, op: FirewallOp, script: string): Promise<void> {
  await runner.run(op, [XT[family].restore, '--noflush', '-w'], script);
}

/**
 * Builds the frame for both families; `chainRules` gives the per-family rules of the chain, and
 * `committed` hears of each family whose restore succeeded (the other may still fail).
 */
export async function startFrame(
  runner: CommandRunner,
  frame: XtFrame,
  chainRules: (family: Family) => string[],
  committed?: (family: Family) => void,
): Promise<void> {
  for (const family of [4, 6] as const) {
    const old = existingJumps(await listInput(runner, family, 'start'), frame.chain);
    await restore(runner, family, 'start', startScript(frame, old, chainRules(family)));
    committed?.(family);
  }
}

export async function removeFrame(runner: CommandRunner, chain: string): Promise<void> {
  for (const family of [4, 6] as const) {
    if (!(await chainExists(runner, family, chain, 'stop'))) continue;
    const old = existingJumps(await listInput(runner, family, 'stop'), chain);
    await restore(runner, family, 'stop', stopScript(chain, old));
  }
}
