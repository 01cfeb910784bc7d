/**
 * Milter protocol constants, values as in libmilter's mfdef.h / mfapi.h (protocol version 6).
 * Command and reply codes are single ASCII bytes; they are kept as char codes so the hot path
 * compares numbers, not strings.
 */

const c = (ch: string): number => ch.charCodeAt(0);

/** Commands the MTA sends (SMFIC_*). */
export const SMFIC = {
  ABORT: c('A'),
  BODY: c('B'),
  CONNECT: c('C'),
  MACRO: c('D'),
  BODYEOB: c('E'),
  HELO: c('H'),
  QUIT_NC: c('K'),
  HEADER: c('L'),
  MAIL: c('M'),
  EOH: c('N'),
  OPTNEG: c('O'),
  QUIT: c('Q'),
  RCPT: c('R'),
  DATA: c('T'),
  UNKNOWN: c('U'),
} as const;

/** Replies the milter sends (SMFIR_*). authban only ever sends the first five and OPTNEG. */
export const SMFIR = {
  CONTINUE: c('c'),
  ACCEPT: c('a'),
  REJECT: c('r'),
  TEMPFAIL: c('t'),
  REPLYCODE: c('y'),
  OPTNEG: c('O'),
  ADDRCPT: c('+'),
  DELRCPT: c('-'),
  ADDRCPT_PAR: c('2'),
  SHUTDOWN: c('4'),
  REPLBODY: c('b'),
  DISCARD: c('d'),
  CHGFROM: c('e'),
  CONN_FAIL: c('f'),
  ADDHEADER: c('h'),
  INSHEADER: c('i'),
  SETSYMLIST: c('l'),
  CHGHEADER: c('m'),
  PROGRESS: c('p'),
  QUARANTINE: c('q'),
  SKIP: c('s'),
} as const;

/** CONNECT address families (SMFIA_*). */
export const SMFIA = {
  UNKNOWN: c('U'),
  UNIX: c('L'),
  INET: c('4'),
  INET6: c('6'),
} as const;

/** Actions a filter may ask for (SMFIF_*). authban asks for none. */
export const SMFIF = {
  NONE: 0,
  ADDHDRS: 0x1,
  CHGBODY: 0x2,
  ADDRCPT: 0x4,
  DELRCPT: 0x8,
  CHGHDRS: 0x10,
  QUARANTINE: 0x20,
  CHGFROM: 0x40,
  ADDRCPT_PAR: 0x80,
  SETSYMLIST: 0x100,
} as const;

/** Protocol bits (SMFIP_*): NOxxx = do not send the event, NR_xxx = send it but expect no reply. */
export const SMFIP = {
  NOCONNECT: 0x1,
  NOHELO: 0x2,
  NOMAIL: 0x4,
  NORCPT: 0x8,
  NOBODY: 0x10,
  NOHDRS: 0x20,
  NOEOH: 0x40,
  NR_HDR: 0x80,
  NOUNKNOWN: 0x100,
  NODATA: 0x200,
  SKIP: 0x400,
  RCPT_REJ: 0x800,
  NR_CONN: 0x1000,
  NR_HELO: 0x2000,
  NR_MAIL: 0x4000,
  NR_RCPT: 0x8000,
  NR_DATA: 0x10000,
  NR_UNKN: 0x20000,
  NR_EOH: 0x40000,
  NR_BODY: 0x80000,
  HDR_LEADSPC: 0x100000,
  MDS_256K: 0x10000000,
  MDS_1M: 0x20000000,
} as const;

/** Macro stages (SMFIM_*), the index a v6 OPTNEG reply's macro lists are keyed by. */
export const SMFIM = {
  CONNECT: 0,
  HELO: 1,
  ENVFROM: 2,
  ENVRCPT: 3,
  DATA: 4,
  EOM: 5,
  EOH: 6,
} as const;

/** Highest protocol version authban speaks, and the lowest it accepts. */
export const MILTER_VERSION_MAX = 6;
export const MILTER_VERSION_MIN = 2;

/** sendmail rejects more than this many macro names for one stage (MAXFILTERMACROS). */
export const MAX_MACROS_PER_STAGE = 50;

/** Lower-case names of MTA commands, bounded: used as metric labels and in log lines. */
export const COMMAND_NAMES: ReadonlyMap<number, string> = new Map([
  [SMFIC.ABORT, 'abort'],
  [SMFIC.BODY, 'body'],
  [SMFIC.CONNECT, 'connect'],
  [SMFIC.MACRO, 'macro'],
  [SMFIC.BODYEOB, 'eob'],
  [SMFIC.HELO, 'helo'],
  [SMFIC.QUIT_NC, 'quit_nc'],
  [SMFIC.HEADER, 'header'],
  [SMFIC.MAIL, 'mail'],
  [SMFIC.EOH, 'eoh'],
  [SMFIC.OPTNEG, 'optneg'],
  [SMFIC.QUIT, 'quit'],
  [SMFIC.RCPT, 'rcpt'],
  [SMFIC.DATA, 'data'],
  [SMFIC.UNKNOWN, 'unknown'],
]);
