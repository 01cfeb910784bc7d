/**
 * OPTNEG: what authban asks of the MTA. Pure. authban only ever replies, so it requests no
 * actions; it switches off events it has no use for and asks for no reply on every event
 * but CONNECT (the one place it may answer 421).
 */
import { MilterProtocolError } from './frame-decoder.js';
import type { OptnegCommand } from './commands.js';
import type { OptnegReply } from './replies.js';
import { MAX_MACROS_PER_STAGE, MILTER_VERSION_MAX, MILTER_VERSION_MIN, SMFIC, SMFIM, SMFIP } from './wire-constants.js';

/** Events authban never looks at: the MTA need not send them at all. */
const SKIP_EVENTS = SMFIP.NOHDRS | SMFIP.NOBODY | SMFIP.NOEOH | SMFIP.NODATA | SMFIP.NOUNKNOWN;

/**
 * No-reply bits. Set even for skipped events, so an MTA that sends one anyway is still not
 * owed a reply. NR_CONN is deliberately absent.
 */
const NO_REPLY =
  SMFIP.NR_HELO | SMFIP.NR_MAIL | SMFIP.NR_RCPT | SMFIP.NR_DATA | SMFIP.NR_UNKN | SMFIP.NR_EOH | SMFIP.NR_BODY | SMFIP.NR_HDR;

/** Macro lists asked for in a v6 reply. They replace the admin's lists for those stages. */
export type MacroLists = ReadonlyArray<readonly [stage: number, names: readonly string[]]>;

const AUTH_MACROS = ['{auth_type}', '{auth_authen}', '{auth_ssf}', '{auth_author}'];

export const DEFAULT_MACRO_LISTS: MacroLists = [
  [
    SMFIM.CONNECT,
    ['j', '_', 'i', '{daemon_name}', '{daemon_addr}', '{daemon_port}', '{if_name}', '{client_addr}', '{client_port}', '{client_name}', '{client_ptr}'],
  ],
  [SMFIM.HELO, ['i', ...AUTH_MACROS]],
  [SMFIM.ENVFROM, ['i', ...AUTH_MACROS, '{mail_addr}']],
];

const MACRO_NAME = /^(?:[A-Za-z_]|\{[A-Za-z0-9_]+\})$/;

/** Throws on a list sendmail would refuse or misread. */
export function validateMacroLists(lists: MacroLists): void {
  for (const [stage, names] of lists) {
    if (!Number.isInteger(stage) || stage < SMFIM.CONNECT || stage > SMFIM.EOH) throw new Error(`macro stage ${stage} out of range`);
    if (names.length > MAX_MACROS_PER_STAGE) throw new Error(`stage ${stage}: ${names.length} macros, at most ${MAX_MACROS_PER_STAGE}`);
    for (const n of names) if (!MACRO_NAME.test(n)) throw new Error(`stage ${stage}: bad macro name ${JSON.stringify(n)}`);
  }
}

export interface Negotiated {
  readonly reply: OptnegReply;
  /** Protocol bits in effect (what we asked for; all of it was offered). */
  readonly protocol: number;
}

// Checked once at load: a bad list would make sendmail refuse every negotiation.
validateMacroLists(DEFAULT_MACRO_LISTS);

export function negotiate(offer: OptnegCommand, macros: MacroLists = DEFAULT_MACRO_LISTS): Negotiated {
  if (offer.version < MILTER_VERSION_MIN) {
    throw new MilterProtocolError('negotiation', `MTA offers milter protocol version ${offer.version}, need at least ${MILTER_VERSION_MIN}`);
  }
  const version = Math.min(offer.version, MILTER_VERSION_MAX);
  // Never ask for a bit the MTA did not offer: sendmail drops a filter that does.
  const protocol = (SKIP_EVENTS | NO_REPLY) & offer.protocol;
  const reply: OptnegReply = version >= 6 ? { version, actions: 0, protocol, macros } : { version, actions: 0, protocol };
  return { reply, protocol };
}

/** Which no-reply bit covers each command that has one. */
const NR_BIT: ReadonlyMap<number, number> = new Map([
  [SMFIC.CONNECT, SMFIP.NR_CONN],
  [SMFIC.HELO, SMFIP.NR_HELO],
  [SMFIC.MAIL, SMFIP.NR_MAIL],
  [SMFIC.RCPT, SMFIP.NR_RCPT],
  [SMFIC.DATA, SMFIP.NR_DATA],
  [SMFIC.UNKNOWN, SMFIP.NR_UNKN],
  [SMFIC.EOH, SMFIP.NR_EOH],
  [SMFIC.BODY, SMFIP.NR_BODY],
  [SMFIC.HEADER, SMFIP.NR_HDR],
]);

const NEVER_REPLY = new Set<number>([SMFIC.MACRO, SMFIC.ABORT, SMFIC.QUIT, SMFIC.QUIT_NC, SMFIC.OPTNEG]);

/** Whether the MTA waits for a reply to this command under the negotiated protocol bits. */
export function needsReply(command: number, protocol: number): boolean {
  if (NEVER_REPLY.has(command)) return false;
  const bit = NR_BIT.get(command);
  return bit === undefined || (protocol & bit) === 0;
}
