import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { parseCidr, parseHostPort } from '../core/address.js';
import { defaults, validate, type SchemaError, type Spec } from './schema.js';

/** The whole configuration, as validated from the JSON file over the built-in defaults. */
export interface Config {
  milter: {
    listen: string[];
    maxFrameBytes: number;
    handlerTimeoutMs: number;
    fallbackVerdict: 'continue' | 'tempfail';
    unixSocketMode: string;
    shutdownGraceMs: number;
    refuseText: string;
    refused: string[];
    maxConnections: number;
    negotiationTimeoutMs: number;
    idleTimeoutMs: number;
  };
  bans: {
    findtime: number;
    maxretry: number;
    bantime: number;
    bantimeFactor: number;
    bantimeMax: number;
    offenderMemory: number;
    ipv6Prefix: number;
    ignore: string[];
    banLoopback: boolean;
    dryRun: boolean;
    maxTracked: number;
    userThreshold: number;
  };
  state: { dir: string };
  logs: {
    files: { path: string; fromStart: boolean }[];
    syslog: { udp: string | null; tcp: string | null; unix: string | null };
    journal: { enabled: boolean; identifiers: string[]; trustedUids: number[] };
    timezone: string;
  };
  correlate: { holdMs: number; startGraceMs: number };
  enforce: {
    backend: 'none' | 'iptables' | 'ipset' | 'nftables';
    ports: number[];
    action: 'reject' | 'drop';
    onStop: 'keep' | 'flush';
  };
  control: { socket: string };
  metrics: { listen: string | null; path: string };
  log: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
}

const LISTEN_SPEC = /^(?:inet:\d{1,5}(?:@.+)?|inet6:\d{1,5}(?:@.+)?|(?:unix|local):\/.+)$/;

function checkListen(v: string): string | null {
  if (!LISTEN_SPEC.test(v)) return 'expected a sendmail socket spec: inet:PORT@HOST, inet6:PORT@HOST or unix:/path';
  const port = /^inet6?:(\d+)/.exec(v);
  if (port && Number(port[1]) > 65535) return 'expected a port from 0 to 65535';
  return null;
}

function checkCidr(v: string): string | null {
  return parseCidr(v) ? null : 'expected an IPv4/IPv6 address or CIDR network';
}

function checkHostPort(v: string): string | null {
  return parseHostPort(v) ? null : 'expected HOST:PORT';
}

const str = (d: string, doc: string, check?: (v: string) => string | null): Spec => ({ kind: 'string', default: d, doc, ...(check ? { check } : {}) });
const num = (d: number, doc: string, min: number, max: number, unit?: string): Spec => ({ kind: 'number', default: d, min, max, integer: true, doc, ...(unit ? { unit } : {}) });
const bool = (d: boolean, doc: string): Spec => ({ kind: 'boolean', default: d, doc });
const oneOf = (d: string, values: string[], doc: string): Spec => ({ kind: 'string', default: d, oneOf: values, doc });

export const CONFIG_SCHEMA: Spec = {
  kind: 'object',
  doc: 'authban configuration',
  fields: {
    milter: {
      kind: 'object',
      doc: 'The milter server sendmail talks to (INPUT_MAIL_FILTER).',
      fields: {
        listen: { kind: 'array', default: ['inet:8894@127.0.0.1'], of: str('', 'socket spec', checkListen), maxItems: 16, doc: 'Sockets to listen on, written as sendmail\'s S= equate: inet:PORT@HOST, inet6:PORT@HOST, unix:/path.' },
        maxFrameBytes: num(1048576, 'Largest milter frame accepted; a larger length closes that connection before anything is allocated.', 65540, 64 * 1048576, 'bytes'),
        handlerTimeoutMs: num(5000, 'Deadline for a verdict; below sendmail\'s 10 s read timeout. On expiry the fallback verdict is sent.', 10, 9000, 'milliseconds'),
        fallbackVerdict: oneOf('continue', ['continue', 'tempfail'], 'Verdict sent when the handler misses its deadline or fails.'),
        unixSocketMode: str('0660', 'File mode of unix listener sockets, octal.', (v) => (/^0?[0-7]{3}$/.test(v) ? null : 'expected an octal mode like "0660"')),
        shutdownGraceMs: num(5000, 'On SIGTERM, how long open milter sessions may run before they are closed.', 0, 60000, 'milliseconds'),
        refuseText: str('Too many failed authentication attempts, try again later', 'Text of the 421 4.7.1 reply to a banned address (sendmail shows its own text to the client; this one is logged).', (v) => (/^[\x20-\x7e]{1,200}$/.test(v) ? null : 'expected 1 to 200 printable ASCII characters')),
        refused: { kind: 'array', default: [], of: str('', 'address or network', checkCidr), doc: 'Addresses or networks always answered 421 at connect, besides the ban table.' },
        maxConnections: num(4096, 'Milter connections open at once, per listener (sendmail opens one per SMTP session); more are closed and counted.', 1, 1000000, 'connections'),
        negotiationTimeoutMs: num(30000, 'A connection that has not negotiated (OPTNEG) this long is closed; sendmail negotiates right after connecting.', 1000, 600000, 'milliseconds'),
        idleTimeoutMs: num(7200000, 'A negotiated connection silent this long is closed; longer than any SMTP timeout of sendmail.', 60000, 86400000, 'milliseconds'),
      },
    },
    bans: {
      kind: 'object',
      doc: 'The ban policy.',
      fields: {
        findtime: num(600, 'Sliding window in which failures are counted.', 1, 365 * 86400, 'seconds'),
        maxretry: num(5, 'Failures within findtime that ban an address (the maxretry-th failure bans).', 1, 1000),
        bantime: num(600, 'Length of a first ban.', 1, 365 * 86400, 'seconds'),
        bantimeFactor: { kind: 'number', default: 2, min: 1, max: 100, doc: 'Each further ban of the same address lasts this many times longer.' },
        bantimeMax: num(604800, 'Longest ban, however often an address comes back.', 1, 10 * 365 * 86400, 'seconds'),
        offenderMemory: num(604800, 'How long past bans of an address are remembered for growth.', 0, 10 * 365 * 86400, 'seconds'),
        ipv6Prefix: num(64, 'IPv6 addresses are counted and banned per network of this prefix length (per address in a network that holds an ignored or own address).', 32, 128, 'bits'),
        ignore: { kind: 'array', default: [], of: str('', 'address or network', checkCidr), doc: 'Addresses and networks never banned (IPv4 and IPv6, CIDR allowed).' },
        banLoopback: bool(false, 'Loopback addresses are never banned unless this is true.'),
        dryRun: bool(false, 'Log "would ban" and change nothing.'),
        maxTracked: num(1000000, 'Most addresses whose failures are counted at once (least recently failing evicted first; bans are never evicted).', 1000, 100000000),
        userThreshold: num(10, 'A user name failed against from this many addresses within findtime is reported as under attack (authban status, authban_bans_users_under_attack); never a reason to ban.', 2, 100),
      },
    },
    state: {
      kind: 'object',
      doc: 'Persistent state (bans, repeat offenders).',
      fields: { dir: str('/var/lib/authban', 'Directory for the state file and journal; created if missing.') },
    },
    logs: {
      kind: 'object',
      doc: 'The log-correlation fallback.',
      fields: {
        files: {
          kind: 'array',
          default: [],
          maxItems: 64,
          doc: 'Log files to follow (maillog, auth log).',
          of: {
            kind: 'object',
            doc: 'One followed file.',
            fields: {
              path: str('', 'Path of the file.', (v) => (v.startsWith('/') ? null : 'expected an absolute path')),
              fromStart: bool(false, 'Read the file from its start instead of its end.'),
            },
          },
        },
        syslog: {
          kind: 'object',
          doc: 'A syslog receiver rsyslog can forward to.',
          fields: {
            udp: { kind: 'string', default: null, nullable: true, check: checkHostPort, doc: 'HOST:PORT for UDP syslog (RFC 3164 and 5424), e.g. "127.0.0.1:5514"; loopback only; null: off.' },
            tcp: { kind: 'string', default: null, nullable: true, check: checkHostPort, doc: 'HOST:PORT for TCP syslog (octet-counted or LF-framed, as rsyslog omfwd sends); loopback only; null: off.' },
            unix: { kind: 'string', default: null, nullable: true, check: (v) => (v.startsWith('/') ? null : 'expected an absolute path'), doc: 'Path of a unix stream socket for syslog (LF or NUL framed); null: off. Node has no unix datagram sockets.' },
          },
        },
        journal: {
          kind: 'object',
          doc: 'systemd journal via journalctl -f -o json.',
          fields: {
            enabled: bool(false, 'Follow the journal.'),
            identifiers: { kind: 'array', default: ['sendmail', 'sm-mta', 'saslauthd'], of: str('', 'identifier'), doc: 'SYSLOG_IDENTIFIERs to follow.' },
            trustedUids: { kind: 'array', default: [0], of: num(0, 'user id', 0, 4294967294), doc: 'Read only entries logged by these user ids (journald\'s _UID, which a process cannot forge; any local user can log as "sendmail"). sendmail and saslauthd run as root. []: every user.' },
          },
        },
        timezone: str('local', 'Time zone of BSD syslog timestamps: "local", "UTC" or an offset like "+01:00".', (v) => (/^(?:local|UTC|[+-]\d{2}:\d{2})$/.test(v) ? null : 'expected "local", "UTC" or "+HH:MM"')),
      },
    },
    correlate: {
      kind: 'object',
      doc: 'Join rules between log lines and sessions.',
      fields: {
        holdMs: num(10000, 'How long a line that two sessions could explain waits for a later line to decide it.', 0, 600000, 'milliseconds'),
        startGraceMs: num(3600000, 'After start, how long saslauthd/PAM lines (which carry no address) are not attributed by time: sessions opened before authban started are unknown to it and can last as long as sendmail lets them. Lines sendmail itself reports are joined by key all the same. 0 when sendmail starts after authban.', 0, 86400000, 'milliseconds'),
      },
    },
    enforce: {
      kind: 'object',
      doc: 'Kernel firewall enforcement besides the milter\'s 421.',
      fields: {
        backend: oneOf('none', ['none', 'iptables', 'ipset', 'nftables'], 'Firewall backend; none: the milter\'s tempfail only.'),
        ports: { kind: 'array', default: [25, 465, 587], of: num(25, 'port', 1, 65535), maxItems: 15, doc: 'TCP ports a banned address is blocked from; empty: all ports.' },
        action: oneOf('reject', ['reject', 'drop'], 'reject answers with a TCP reset; drop stays silent.'),
        onStop: oneOf('keep', ['keep', 'flush'], 'On shutdown keep the rules (the host stays protected) or flush them.'),
      },
    },
    control: {
      kind: 'object',
      doc: 'The control socket the authban command talks to.',
      fields: { socket: str('/run/authban/control.sock', 'Unix socket path (mode 0600).', (v) => (v.startsWith('/') ? null : 'expected an absolute path')) },
    },
    metrics: {
      kind: 'object',
      doc: 'Prometheus endpoint.',
      fields: {
        listen: { kind: 'string', default: '127.0.0.1:9464', nullable: true, check: checkHostPort, doc: 'HOST:PORT of the HTTP listener; null: off.' },
        path: str('/metrics', 'URL path of the metrics.', (v) => (v.startsWith('/') ? null : 'expected a path starting with /')),
      },
    },
    log: {
      kind: 'object',
      doc: 'authban\'s own JSON log on stdout.',
      fields: { level: oneOf('info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'pino log level.') },
    },
  },
};

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly errors: readonly SchemaError[],
  ) {
    super(`${source}: ${errors.length} error(s) in configuration\n${errors.map((e) => `  ${e.path}: ${e.message}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Each listener unlinks a stale socket file at its path before binding, so two listeners on one
 * path would have the second take the socket over from the first (sendmail's milter socket
 * becoming the syslog one, say). Normalised, so that `/run//a.sock` cannot slip past as another.
 */
function checkSocketPaths(cfg: Config, errors: SchemaError[]): void {
  const sockets: Array<[key: string, path: string | null]> = [
    ...cfg.milter.listen.map((spec, i): [string, string | null] => [`milter.listen[${i}]`, /^(?:unix|local):(\/.+)$/.exec(spec)?.[1] ?? null]),
    ['logs.syslog.unix', cfg.logs.syslog.unix],
    ['control.socket', cfg.control.socket],
  ];
  const owner = new Map<string, string>();
  for (const [key, path] of sockets) {
    if (path === null) continue;
    const normal = posix.normalize(path);
    const first = owner.get(normal);
    if (first === undefined) owner.set(normal, key);
    else errors.push({ path: key, message: `expected a socket path no other listener uses, found the string ${JSON.stringify(path)}, already used by ${first}` });
  }
}

/** Validates a parsed config object; throws ConfigError listing every problem at once. */
export function configFromObject(value: unknown, source = 'config'): Config {
  const errors: SchemaError[] = [];
  const cfg = validate(CONFIG_SCHEMA, value, '', errors) as Config;
  if (cfg.bans.bantimeMax < cfg.bans.bantime) errors.push({ path: 'bans.bantimeMax', message: `expected at least bans.bantime (${cfg.bans.bantime}), found ${cfg.bans.bantimeMax}` });
  checkSocketPaths(cfg, errors);
  if (errors.length > 0) throw new ConfigError(source, errors);
  return cfg;
}

export function defaultConfig(): Config {
  return defaults(CONFIG_SCHEMA) as Config;
}

/** Reads and validates a config file; no file means the built-in defaults. */
export function loadConfig(path: string | undefined): Config {
  if (!path) return defaultConfig();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(path, [{ path: '(file)', message: `cannot read: ${(e as Error).message}` }]);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(path, [{ path: '(file)', message: `not valid JSON: ${(e as Error).message}` }]);
  }
  return configFromObject(parsed, path);
}
