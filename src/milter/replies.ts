/** Reply encoders: whole frames (length, reply byte, payload), ready to write. */
import type { Verdict } from './handler.js';
import { SMFIR, SMFIM } from './wire-constants.js';

function frame(reply: number, payload?: Buffer): Buffer {
  const len = 1 + (payload?.length ?? 0);
  const out = Buffer.allocUnsafe(4 + len);
  out.writeUInt32BE(len, 0);
  out[4] = reply;
  payload?.copy(out, 5);
  return out;
}

// Constant replies are built once; the hot path writes the same buffers every time.
export const CONTINUE_FRAME = frame(SMFIR.CONTINUE);
export const ACCEPT_FRAME = frame(SMFIR.ACCEPT);
export const REJECT_FRAME = frame(SMFIR.REJECT);
export const TEMPFAIL_FRAME = frame(SMFIR.TEMPFAIL);

export class ReplyError extends Error {
  override readonly name = 'ReplyError';
}

const CODE = /^[45]\d\d$/;
const XCODE = /^([45])\.\d{1,3}\.\d{1,3}$/;
// Printable text only: CR/LF would split the SMTP reply, NUL would end it early.
const TEXT = /^[^\x00-\x1f\x7f]*$/;

/**
 * The SMFIR_REPLYCODE line: `CODE[ XCODE] TEXT`, `%` doubled because sendmail expands
 * `%` sequences in it.
 */
export function replyCodeLine(code: string, text: string, xcode?: string): string {
  if (!CODE.test(code)) throw new ReplyError(`reply code ${JSON.stringify(code)} is not 4xx or 5xx`);
  if (xcode !== undefined) {
    const m = XCODE.exec(xcode);
    if (!m) throw new ReplyError(`enhanced code ${JSON.stringify(xcode)} is not X.Y.Z with X 4 or 5`);
    if (m[1] !== code[0]) throw new ReplyError(`enhanced code ${xcode} does not match the class of ${code}`);
  }
  if (!TEXT.test(text)) throw new ReplyError('reply text contains control characters (CR, LF, NUL, …)');
  const escaped = text.replaceAll('%', '%%');
  return [code, xcode, escaped].filter((s) => s !== undefined && s !== '').join(' ');
}

export function encodeVerdict(v: Verdict): Buffer {
  switch (v.kind) {
    case 'continue':
      return CONTINUE_FRAME;
    case 'accept':
      return ACCEPT_FRAME;
    case 'reject':
      return REJECT_FRAME;
    case 'tempfail':
      return TEMPFAIL_FRAME;
    case 'replycode':
      return frame(SMFIR.REPLYCODE, Buffer.from(`${replyCodeLine(v.code, v.text, v.xcode)}\0`, 'utf8'));
    default:
      throw new ReplyError(`unknown verdict kind ${JSON.stringify((v as { kind?: unknown }).kind)}`);
  }
}

export interface OptnegReply {
  readonly version: number;
  readonly actions: number;
  readonly protocol: number;
  /** v6 only: per-stage macro name lists (stage is an SMFIM value). */
  readonly macros?: ReadonlyArray<readonly [stage: number, names: readonly string[]]>;
}

/** Version, actions, protocol as uint32 BE; then, per stage, uint32 stage and `names…\0`. */
export function encodeOptneg(r: OptnegReply): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.allocUnsafe(12);
  head.writeUInt32BE(r.version >>> 0, 0);
  head.writeUInt32BE(r.actions >>> 0, 4);
  head.writeUInt32BE(r.protocol >>> 0, 8);
  parts.push(head);
  for (const [stage, names] of r.macros ?? []) {
    if (stage < SMFIM.CONNECT || stage > SMFIM.EOH) throw new ReplyError(`macro stage ${stage} out of range`);
    const st = Buffer.allocUnsafe(4);
    st.writeUInt32BE(stage, 0);
    parts.push(st, Buffer.from(`${names.join(' ')}\0`, 'ascii'));
  }
  return frame(SMFIR.OPTNEG, Buffer.concat(parts));
}
