/**
 * Macro values by stage. The MTA sends a MACRO frame before each command it applies to;
 * a stage sent again (a second HELO, the next RCPT or MAIL) replaces that stage and drops the
 * later ones, so a lookup never mixes values of two transactions.
 */
import { SMFIC } from './wire-constants.js';

/** `{x}` and `x` are one name; stored and looked up without braces. */
export function normalizeMacroName(name: string): string {
  return name.length > 2 && name.startsWith('{') && name.endsWith('}') ? name.slice(1, -1) : name;
}

/** Stages in the order they happen in an SMTP session (not SMFIM numbering). */
const STAGE_OF: ReadonlyMap<number, number> = new Map([
  [SMFIC.CONNECT, 0],
  [SMFIC.HELO, 1],
  [SMFIC.MAIL, 2],
  [SMFIC.RCPT, 3],
  [SMFIC.DATA, 4],
  [SMFIC.EOH, 5],
  [SMFIC.BODYEOB, 6],
]);
const STAGES = 7;
const FIRST_MESSAGE_STAGE = 2;

export class MacroStore {
  private readonly stages: Array<Map<string, string> | undefined> = new Array(STAGES);

  /**
   * Defines the macros sent for `forCommand`. Returns false (and stores nothing) for commands
   * that have no macro stage: sendmail sends none for them.
   */
  define(forCommand: number, pairs: ReadonlyArray<readonly [string, string]>): boolean {
    const stage = STAGE_OF.get(forCommand);
    if (stage === undefined) return false;
    this.clearFrom(stage);
    const m = new Map<string, string>();
    for (const [name, value] of pairs) m.set(normalizeMacroName(name), value);
    this.stages[stage] = m;
    return true;
  }

  /** The latest stage's value wins (`i` changes after RSET; the connect value stays below it). */
  get(name: string): string | undefined {
    const key = normalizeMacroName(name);
    for (let s = STAGES - 1; s >= 0; s--) {
      const v = this.stages[s]?.get(key);
      if (v !== undefined) return v;
    }
    return undefined;
  }

  /** ABORT ends a transaction: message stages go, connection and HELO values stay. */
  clearMessage(): void {
    this.clearFrom(FIRST_MESSAGE_STAGE);
  }

  private clearFrom(stage: number): void {
    for (let s = stage; s < STAGES; s++) this.stages[s] = undefined;
  }
}
