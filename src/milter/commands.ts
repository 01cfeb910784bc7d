/**
 * Pure decoders for every command an MTA sends. Strings are NUL-terminated on the wire and
 * decoded as UTF-8 (addresses and host names are ASCII; user names may not be).
 */
import { normalizeAddress } from '../core/address.js';
import type { ConnectFamily } from './handler.js';
import { MilterProtocolError, type Frame } from './frame-decoder.js';
import { COMMAND_NAMES, SMFIA, SMFIC } from './wire-constants.js';

export interface OptnegCommand {
  readonly type: 'optneg';
  readonly version: number;
  readonly actions: number;
  readonly protocol: number;
}

export interface MacroCommand {
  readonly type: 'macro';
  /** Char code of the command these macros belong to (e.g. `C` for CONNECT). */
  readonly forCommand: number;
  /** Names as sent (`{x}` or `x`). A trailing name without a value is dropped. */
  readonly pairs: ReadonlyArray<readonly [string, string]>;
  /** Pairs past MAX_MACRO_PAIRS, not decoded; absent when there were none. */
  readonly ignoredPairs?: number;
}

export interface ConnectCommand {
  readonly type: 'connect';
  readonly hostname: string;
  readonly family: ConnectFamily;
  /** Canonical address for inet/inet6 when it parses; absent otherwise (see rawAddress). */
  readonly address?: string;
  /** Address text exactly as sent (unix: socket path). */
  readonly rawAddress?: string;
  readonly port?: number;
}

export type MtaCommand =
  | OptnegCommand
  | MacroCommand
  | ConnectCommand
  | { readonly type: 'helo'; readonly helo: string }
  | { readonly type: 'mail'; readonly sender: string; readonly args: readonly string[] }
  | { readonly type: 'rcpt'; readonly recipient: string; readonly args: readonly string[] }
  | { readonly type: 'data' }
  | { readonly type: 'header'; readonly name: string; readonly value: string }
  | { readonly type: 'eoh' }
  | { readonly type: 'body'; readonly length: number }
  /** End of message; sendmail may carry a last body chunk in it. */
  | { readonly type: 'eob'; readonly length: number }
  | { readonly type: 'abort' }
  | { readonly type: 'quit' }
  | { readonly type: 'quit_nc' }
  | { readonly type: 'unknown'; readonly line: string };

const NUL = 0;

/**
 * Pairs decoded from one MACRO command. sendmail sends about 50 at most per stage; a session
 * keeps every stage's pairs, so without a cap one 1 MiB frame would hold ~100,000 strings.
 */
export const MAX_MACRO_PAIRS = 256;

/** Splits a payload that must be one or more NUL-terminated strings. */
function cStrings(p: Buffer, what: string): string[] {
  if (p.length === 0) throw new MilterProtocolError('truncated', `${what}: empty payload`);
  if (p[p.length - 1] !== NUL) throw new MilterProtocolError('missing_nul', `${what}: last string is not NUL-terminated`);
  const out: string[] = [];
  let start = 0;
  for (;;) {
    const nul = p.indexOf(NUL, start);
    out.push(p.toString('utf8', start, nul));
    start = nul + 1;
    if (start >= p.length) return out;
  }
}

function decodeOptneg(p: Buffer): OptnegCommand {
  if (p.length < 12) throw new MilterProtocolError('truncated', `optneg: ${p.length} bytes, need 12`);
  return { type: 'optneg', version: p.readUInt32BE(0), actions: p.readUInt32BE(4), protocol: p.readUInt32BE(8) };
}

/**
 * The first byte names the command; then name/value pairs. An odd count means the last
 * name came without a value: it is dropped, as libmilter's lookup finds no value for it.
 * Pairs past MAX_MACRO_PAIRS are only counted: no string is made for them.
 */
function decodeMacro(p: Buffer): MacroCommand {
  if (p.length === 0) throw new MilterProtocolError('truncated', 'macro: empty payload, no command byte');
  const forCommand = p[0]!;
  if (!COMMAND_NAMES.has(forCommand)) {
    throw new MilterProtocolError('unknown_command', `macro: for unknown command byte 0x${forCommand.toString(16)}`);
  }
  const pairs: Array<readonly [string, string]> = [];
  let ignoredPairs = 0;
  if (p.length > 1 && p[p.length - 1] !== NUL) throw new MilterProtocolError('missing_nul', 'macro: last string is not NUL-terminated');
  for (let start = 1; start < p.length; ) {
    const nameEnd = p.indexOf(NUL, start);
    if (nameEnd + 1 >= p.length) break;
    const valueEnd = p.indexOf(NUL, nameEnd + 1);
    if (pairs.length < MAX_MACRO_PAIRS) pairs.push([p.toString('utf8', start, nameEnd), p.toString('utf8', nameEnd + 1, valueEnd)]);
    else ignoredPairs++;
    start = valueEnd + 1;
  }
  return { type: 'macro', forCommand, pairs, ...(ignoredPairs > 0 ? { ignoredPairs } : {}) };
}

/** hostname NUL, family byte, then (unless family U) port uint16 BE and address NUL. */
function decodeConnect(p: Buffer): ConnectCommand {
  const nul = p.indexOf(NUL);
  if (nul < 0) throw new MilterProtocolError('missing_nul', 'connect: hostname is not NUL-terminated');
  const hostname = p.toString('utf8', 0, nul);
  if (nul + 1 >= p.length) throw new MilterProtocolError('truncated', 'connect: no family byte');
  const fam = p[nul + 1]!;
  if (fam === SMFIA.UNKNOWN) return { type: 'connect', hostname, family: 'unknown' };
  if (fam !== SMFIA.UNIX && fam !== SMFIA.INET && fam !== SMFIA.INET6) {
    throw new MilterProtocolError('bad_value', `connect: unknown family byte 0x${fam.toString(16)}`);
  }
  const portAt = nul + 2;
  if (portAt + 2 >= p.length) throw new MilterProtocolError('truncated', 'connect: no port and address');
  const port = p.readUInt16BE(portAt);
  if (p[p.length - 1] !== NUL) throw new MilterProtocolError('missing_nul', 'connect: address is not NUL-terminated');
  const rawAddress = p.toString('utf8', portAt + 2, p.length - 1);
  if (fam === SMFIA.UNIX) return { type: 'connect', hostname, family: 'unix', rawAddress };
  const address = normalizeAddress(rawAddress) ?? undefined;
  return { type: 'connect', hostname, family: fam === SMFIA.INET ? 'inet' : 'inet6', rawAddress, port, ...(address ? { address } : {}) };
}

function decodeEnvelope(p: Buffer, what: string): [string, string[]] {
  const strs = cStrings(p, what);
  return [strs[0]!, strs.slice(1)];
}

/** Decodes one frame; throws MilterProtocolError for anything malformed or unknown. */
export function decodeCommand(frame: Frame): MtaCommand {
  const p = frame.payload;
  switch (frame.command) {
    case SMFIC.OPTNEG:
      return decodeOptneg(p);
    case SMFIC.MACRO:
      return decodeMacro(p);
    case SMFIC.CONNECT:
      return decodeConnect(p);
    case SMFIC.HELO:
      return { type: 'helo', helo: cStrings(p, 'helo')[0]! };
    case SMFIC.MAIL: {
      const [sender, args] = decodeEnvelope(p, 'mail');
      return { type: 'mail', sender, args };
    }
    case SMFIC.RCPT: {
      const [recipient, args] = decodeEnvelope(p, 'rcpt');
      return { type: 'rcpt', recipient, args };
    }
    case SMFIC.HEADER: {
      const strs = cStrings(p, 'header');
      if (strs.length < 2) throw new MilterProtocolError('truncated', 'header: name without value');
      return { type: 'header', name: strs[0]!, value: strs[1]! };
    }
    case SMFIC.UNKNOWN:
      return { type: 'unknown', line: cStrings(p, 'unknown')[0]! };
    case SMFIC.DATA:
      return { type: 'data' };
    case SMFIC.EOH:
      return { type: 'eoh' };
    case SMFIC.BODY:
      return { type: 'body', length: p.length };
    case SMFIC.BODYEOB:
      return { type: 'eob', length: p.length };
    case SMFIC.ABORT:
      return { type: 'abort' };
    case SMFIC.QUIT:
      return { type: 'quit' };
    case SMFIC.QUIT_NC:
      return { type: 'quit_nc' };
    default:
      throw new MilterProtocolError('unknown_command', `unknown command byte 0x${frame.command.toString(16).padStart(2, '0')}`);
  }
}
