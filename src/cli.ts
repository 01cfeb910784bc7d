#!/usr/bin/env node
/**
 * The `authban` command: `run` starts the daemon; the other commands talk to a running one
 * over its control socket, or (replay, check-config) work offline.
 * Exit status: 0 done, 1 failed, 2 bad usage / bad address / daemon not reachable / bad config.
 */
import { parseCidr } from './core/address.js';
import { ConfigError, defaultConfig, loadConfig, type Config } from './ops/config.js';
import { controlRequest, DaemonUnreachable } from './ops/control-client.js';
import { createLogger } from './ops/logger.js';
import { formatBanList, formatExplain, formatStatus } from './ops/format.js';
import { replayCommand } from './correlate/replay-command.js';
import { startDaemon } from './main.js';
import { banLengthProblem } from './bans/policy.js';
import { StateLockedError } from './bans/state-store.js';

const USAGE = `usage: authban COMMAND [options]
  run [--config FILE]                 start the daemon (built-in defaults without a file)
  check-config FILE                   validate a config file and exit
  status [--json]                     the running daemon's state
  list [--json]                       active bans
  ban ADDRESS [--time SECONDS]        ban an address or network by hand
  unban ADDRESS | --all               lift a ban, or all of them
  explain ADDRESS [--json]            why an address is (or is not) banned: its evidence
  replay FILE... [--config FILE] [--json] [--maxretry N] [--findtime S] [--bantime S] [--timezone Z]
                                      run the parsers and join rules over log files, offline
Options for the control commands: --socket PATH, or --config FILE to read its control.socket.
The config file may also be named by the AUTHBAN_CONFIG environment variable.`;

class UsageError extends Error {}

interface Parsed {
  readonly positional: string[];
  readonly flags: Map<string, string | true>;
}

const VALUE_FLAGS = new Set(['--config', '--socket', '--time']);
const BOOL_FLAGS = new Set(['--json', '--all', '--help', '-h']);

function parseArgs(argv: readonly string[]): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const name = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    if (VALUE_FLAGS.has(name)) {
      const v = eq > 0 && a.startsWith('--') ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new UsageError(`${name} needs a value`);
      flags.set(name, v);
    } else if (BOOL_FLAGS.has(a)) flags.set(a, true);
    else if (a.startsWith('-') && a !== '-') throw new UsageError(`unknown option ${a}`);
    else positional.push(a);
  }
  return { positional, flags };
}

function configPath(p: Parsed): string | undefined {
  const f = p.flags.get('--config');
  // `--config "$UNSET"` must not quietly mean the built-in defaults.
  if (f === '') throw new UsageError('--config needs a file path');
  return typeof f === 'string' ? f : process.env.AUTHBAN_CONFIG || undefined;
}

function controlSocket(p: Parsed): string {
  const s = p.flags.get('--socket');
  if (typeof s === 'string') return s;
  const path = configPath(p);
  return (path ? loadConfig(path) : defaultConfig()).control.socket;
}

function oneTarget(p: Parsed, cmd: string): string {
  if (p.positional.length !== 1) throw new UsageError(`${cmd} takes exactly one ADDRESS`);
  const t = p.positional[0]!;
  if (!parseCidr(t)) throw new UsageError(`"${t}" is not an IPv4/IPv6 address or network`);
  return t;
}

async function control(p: Parsed, cmd: string, args: Record<string, unknown>): Promise<unknown> {
  const resp = await controlRequest(controlSocket(p), { cmd, args });
  if (!resp.ok) throw new UsageError(resp.error);
  return resp.result;
}

async function runDaemon(p: Parsed): Promise<number> {
  const path = configPath(p);
  const cfg: Config = loadConfig(path);
  const logger = createLogger(cfg.log.level);
  const daemon = await startDaemon(cfg, logger);
  // Reloads and the final stop run one after another, never interleaved.
  let queue = Promise.resolve();
  let stopping = false;
  process.on('SIGHUP', () => {
    queue = queue.then(async () => {
      if (stopping) return;
      let next: Config;
      try {
        next = loadConfig(path);
      } catch (e) {
        daemon.reloadRejected((e as Error).message);
        return;
      }
      await daemon.reload(next);
    });
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'signal received');
      stopping = true;
      queue = queue.then(() => daemon.stop()).then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}

async function replay(argv: readonly string[]): Promise<number> {
  const rest: string[] = [];
  let file = process.env.AUTHBAN_CONFIG || undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config') file = argv[++i];
    else if (a.startsWith('--config=')) file = a.slice('--config='.length);
    else rest.push(a);
  }
  if (file === undefined) return replayCommand(rest);
  const cfg = loadConfig(file);
  return replayCommand(rest, process, {
    policy: { ...cfg.bans, ignore: [...cfg.bans.ignore] },
    correlate: { holdMs: cfg.correlate.holdMs, startGraceMs: cfg.correlate.startGraceMs },
    timeZone: cfg.logs.timezone,
  });
}

export async function main(argv: readonly string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  // replay has its own options (policy overrides, time zone): it parses them itself, over the
  // policy of the config file when one is named.
  if (cmd === 'replay') return replay(rest);
  const p = parseArgs(rest);
  const json = p.flags.has('--json');
  const print = (v: unknown, human: (v: never) => string): void => {
    process.stdout.write(json ? `${JSON.stringify(v, null, 2)}\n` : `${human(v as never)}\n`);
  };
  switch (cmd) {
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(`${USAGE}\n`);
      return cmd === undefined ? 2 : 0;
    case 'run':
      return runDaemon(p);
    case 'check-config': {
      const file = p.positional[0] ?? configPath(p);
      if (!file) throw new UsageError('check-config needs a FILE');
      loadConfig(file);
      process.stdout.write(`${file}: OK\n`);
      return 0;
    }
    case 'status':
      print(await control(p, 'status', {}), formatStatus);
      return 0;
    case 'list':
      print(await control(p, 'list', {}), formatBanList);
      return 0;
    case 'explain':
      print(await control(p, 'explain', { address: oneTarget(p, 'explain') }), formatExplain);
      return 0;
    case 'ban': {
      const address = oneTarget(p, 'ban');
      const t = p.flags.get('--time');
      let seconds: number | undefined;
      if (typeof t === 'string') {
        const badLength = banLengthProblem(/^\d{1,12}$/.test(t) ? Number(t) : NaN);
        if (badLength) throw new UsageError(`--time: ${badLength}`);
        seconds = Number(t);
      }
      const ban = await control(p, 'ban', { address, ...(seconds !== undefined ? { seconds } : {}) });
      print(ban, (b: { target: string; expiresAt: number | null }) => `banned ${b.target} ${b.expiresAt === null ? 'without end' : `until ${new Date(b.expiresAt).toISOString()}`}`);
      return 0;
    }
    case 'unban': {
      const all = p.flags.has('--all');
      if (all && p.positional.length > 0) throw new UsageError('unban takes an ADDRESS or --all, not both');
      const r = await control(p, 'unban', all ? { all: true } : { address: oneTarget(p, 'unban') });
      print(r, (x: { unbanned: number }) => (x.unbanned === 0 ? 'no such ban' : `unbanned ${x.unbanned}`));
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
}

const isEntry = process.argv[1] !== undefined && /cli\.(?:ts|js)$/.test(process.argv[1]);
if (isEntry) {
  main(process.argv.slice(2)).then(
    (code) => {
      // The daemon's stop has persisted everything; do not wait on stray handles.
      if (process.argv[2] === 'run') process.exit(code);
      process.exitCode = code;
    },
    (e: unknown) => {
      if (e instanceof UsageError || e instanceof DaemonUnreachable) {
        process.stderr.write(`authban: ${e.message}\n`);
        process.exitCode = 2;
      } else if (e instanceof ConfigError || e instanceof StateLockedError) {
        process.stderr.write(`authban: ${e.message}\n`);
        process.exitCode = 2;
      } else {
        process.stderr.write(`authban: ${(e as Error).stack ?? String(e)}\n`);
        process.exitCode = 1;
      }
    },
  );
}
