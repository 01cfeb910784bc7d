/**
 * Cuts a byte stream into lines: holds a partial last line until its newline arrives, and
 * bounds memory by cutting over-long lines at `maxLineBytes` (the rest of such a line, up to
 * its newline, is dropped).
 */
const NL = 0x0a;

export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private discarding = false;

  constructor(
    private readonly maxLineBytes: number,
    private readonly onLine: (line: string, truncated: boolean) => void,
  ) {
    if (!(maxLineBytes > 0)) throw new Error('maxLineBytes must be positive');
  }

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NL, start);
      if (nl < 0) break;
      if (this.discarding) {
        this.discarding = false;
      } else {
        this.pending.push(chunk.subarray(start, nl));
        this.pendingBytes += nl - start;
        this.emitPending();
      }
      this.pending = [];
      this.pendingBytes = 0;
      start = nl + 1;
    }
    if (start < chunk.length && !this.discarding) {
      // Copied: the caller may reuse its read buffer before the line completes.
      this.pending.push(Buffer.from(chunk.subarray(start)));
      this.pendingBytes += chunk.length - start;
      if (this.pendingBytes > this.maxLineBytes) {
        this.emitPending();
        this.pending = [];
        this.pendingBytes = 0;
        this.discarding = true;
      }
    }
  }

  /** Bytes held for a line whose newline has not arrived yet. */
  get heldBytes(): number {
    return this.pendingBytes;
  }

  /** Drops everything up to the next newline: the stream was picked up inside a line. */
  skipToNewline(): void {
    this.pending = [];
    this.pendingBytes = 0;
    this.discarding = true;
  }

  /** Emits the held partial line (the writer will never finish it: file rotated or truncated). */
  flush(): void {
    if (this.pendingBytes > 0) this.emitPending();
    this.pending = [];
    this.pendingBytes = 0;
    this.discarding = false;
  }

  private emitPending(): void {
    let buf = Buffer.concat(this.pending, this.pendingBytes);
    const truncated = buf.length > this.maxLineBytes;
    if (truncated) buf = buf.subarray(0, this.maxLineBytes);
    let text = buf.toString('utf8');
    if (text.endsWith('\r')) text = text.slice(0, -1);
    this.onLine(text, truncated);
  }
}
