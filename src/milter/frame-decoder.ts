/**
 * Incremental milter frame decoder. A frame is a 4-byte big-endian length, then that many
 * bytes: one command byte and the payload. TCP may split a frame over reads or merge
 * several into one; the decoder copes with both and copies only when a frame is split.
 * A split frame's buffer grows with the bytes that arrived, not with the length the peer
 * claimed: a peer that sends only a header must not make the decoder reserve a megabyte.
 */

/** Bounded set of reasons, used as a metric label. */
export type ProtocolErrorKind =
  | 'frame_length'
  | 'unknown_command'
  | 'truncated'
  | 'missing_nul'
  | 'bad_value'
  | 'negotiation'
  | 'sequence';

export class MilterProtocolError extends Error {
  override readonly name = 'MilterProtocolError';

  constructor(
    readonly kind: ProtocolErrorKind,
    message: string,
    /** Start of the offending bytes, for the log line. */
    readonly sample?: Buffer,
  ) {
    super(message);
  }
}

export interface Frame {
  readonly command: number;
  /** May be a view into the read buffer: decode it before the next read is fed. */
  readonly payload: Buffer;
}

/** 1 MiB: well above the 64 KiB sendmail sends by default, far below anything absurd. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024;

const SAMPLE_BYTES = 32;
/** Smallest body buffer: spares a peer sending a few bytes per read a reallocation per read. */
const MIN_BODY_CAPACITY = 512;
const NO_BODY = Buffer.alloc(0);

export class FrameDecoder {
  private readonly head = Buffer.alloc(4);
  private headFill = 0;
  /** Length of the split frame being collected; 0 while between frames. */
  private bodyLength = 0;
  /** Holds the bodyFill bytes received so far; its capacity may be below bodyLength. */
  private body: Buffer = NO_BODY;
  private bodyFill = 0;
  private failed: MilterProtocolError | null = null;

  constructor(private readonly maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {}

  /** The error that stopped decoding, if any; once set, later input is ignored. */
  get failure(): MilterProtocolError | null {
    return this.failed;
  }

  /** True while part of a frame is held (an EOF now would cut a frame). */
  get midFrame(): boolean {
    return this.headFill > 0 || this.bodyLength > 0;
  }

  /**
   * Feeds one read. Returns the frames it completed; frames before a malformed one are still
   * returned, and `failure` is set.
   */
  push(chunk: Buffer): Frame[] {
    const out: Frame[] = [];
    if (this.failed) return out;
    let off = 0;
    const end = chunk.length;
    while (off < end) {
      if (this.bodyLength === 0) {
        if (this.headFill === 0 && end - off >= 4) {
          const len = chunk.readUInt32BE(off);
          if (!this.lengthOk(len, chunk.subarray(off, off + SAMPLE_BYTES))) return out;
          if (end - off - 4 >= len) {
            // Whole frame in this read: a view, no copy.
            out.push({ command: chunk[off + 4]!, payload: chunk.subarray(off + 5, off + 4 + len) });
            off += 4 + len;
            continue;
          }
          this.bodyLength = len;
          off += 4;
        } else {
          const n = Math.min(4 - this.headFill, end - off);
          chunk.copy(this.head, this.headFill, off, off + n);
          this.headFill += n;
          off += n;
          if (this.headFill < 4) break;
          this.headFill = 0;
          const len = this.head.readUInt32BE(0);
          if (!this.lengthOk(len, Buffer.from(this.head))) return out;
          this.bodyLength = len;
          continue;
        }
      }
      const n = Math.min(this.bodyLength - this.bodyFill, end - off);
      this.reserve(this.bodyFill + n);
      chunk.copy(this.body, this.bodyFill, off, off + n);
      this.bodyFill += n;
      off += n;
      if (this.bodyFill === this.bodyLength) {
        out.push({ command: this.body[0]!, payload: this.body.subarray(1, this.bodyLength) });
        this.bodyLength = 0;
        this.bodyFill = 0;
        this.body = NO_BODY;
      }
    }
    return out;
  }

  /**
   * Makes room for `need` body bytes. Doubling keeps the copies linear in the frame size and
   * the buffer within twice the bytes received; it never outgrows the declared length.
   */
  private reserve(need: number): void {
    if (this.body.length >= need) return;
    const grown = Buffer.allocUnsafe(Math.min(this.bodyLength, Math.max(need, this.body.length * 2, MIN_BODY_CAPACITY)));
    this.body.copy(grown, 0, 0, this.bodyFill);
    this.body = grown;
  }

  private lengthOk(len: number, sample: Buffer): boolean {
    if (len === 0) {
      this.failed = new MilterProtocolError('frame_length', 'frame length 0: a frame needs at least a command byte', sample);
    } else if (len > this.maxFrameBytes) {
      this.failed = new MilterProtocolError(
        'frame_length',
        `frame length ${len} exceeds the limit of ${this.maxFrameBytes} bytes`,
        sample,
      );
    }
    return this.failed === null;
  }
}
