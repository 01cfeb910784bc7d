import type { RecordBase } from '../records.js';
import type { SyslogHeader } from '../syslog-line.js';

/** The fields every record copies from its line's header. */
export function recordBase(h: SyslogHeader, pattern: string): RecordBase {
  return h.pid !== undefined
    ? { at: h.at, program: h.program, pid: h.pid, pattern }
    : { at: h.at, program: h.program, pattern };
}
