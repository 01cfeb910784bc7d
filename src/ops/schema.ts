/**
 * A small declarative schema: each knob's type, bounds, default and doc in one place, so that
 * validation, the built-in defaults and config/README.md cannot drift apart.
 */

export type Spec =
  | { readonly kind: 'number'; readonly default: number; readonly min?: number; readonly max?: number; readonly integer?: boolean; readonly unit?: string; readonly doc: string }
  | { readonly kind: 'boolean'; readonly default: boolean; readonly doc: string }
  | { readonly kind: 'string'; readonly default: string | null; readonly nullable?: boolean; readonly oneOf?: readonly string[]; readonly check?: (v: string) => string | null; readonly doc: string }
  | { readonly kind: 'array'; readonly default: readonly unknown[]; readonly of: Spec; readonly maxItems?: number; readonly doc: string }
  | { readonly kind: 'object'; readonly fields: Readonly<Record<string, Spec>>; readonly doc: string };

export interface SchemaError {
  readonly path: string;
  readonly message: string;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/** Levenshtein distance, for "did you mean" on unknown keys. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

export function closest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(name, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best;
}

/** The defaults a spec describes, as a plain value. */
export function defaults(spec: Spec): unknown {
  if (spec.kind === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, s] of Object.entries(spec.fields)) out[k] = defaults(s);
    return out;
  }
  return structuredClone(spec.default);
}

/** Validates `value` against `spec`, filling defaults for absent keys. Errors collect; none are thrown. */
export function validate(spec: Spec, value: unknown, path: string, errors: SchemaError[]): unknown {
  const where = path || '(top level)';
  if (value === undefined) return defaults(spec);
  switch (spec.kind) {
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        errors.push({ path: where, message: `expected a number${spec.unit ? ` (${spec.unit})` : ''}, found ${describe(value)}` });
        return spec.default;
      }
      if (spec.integer && !Number.isInteger(value)) errors.push({ path: where, message: `expected a whole number, found ${value}` });
      if (spec.min !== undefined && value < spec.min) errors.push({ path: where, message: `expected at least ${spec.min}, found ${value}` });
      if (spec.max !== undefined && value > spec.max) errors.push({ path: where, message: `expected at most ${spec.max}, found ${value}` });
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') {
        errors.push({ path: where, message: `expected true or false, found ${describe(value)}` });
        return spec.default;
      }
      return value;
    case 'string': {
      if (value === null && spec.nullable) return null;
      if (typeof value !== 'string') {
        errors.push({ path: where, message: `expected a string${spec.nullable ? ' or null' : ''}, found ${describe(value)}` });
        return spec.default;
      }
      if (spec.oneOf && !spec.oneOf.includes(value)) {
        errors.push({ path: where, message: `expected one of ${spec.oneOf.map((o) => JSON.stringify(o)).join(', ')}, found ${describe(value)}` });
        return spec.default;
      }
      const problem = spec.check?.(value);
      if (problem) errors.push({ path: where, message: `${problem}, found ${describe(value)}` });
      return value;
    }
    case 'array': {
      if (!Array.isArray(value)) {
        errors.push({ path: where, message: `expected an array, found ${describe(value)}` });
        return defaults(spec);
      }
      if (spec.maxItems !== undefined && value.length > spec.maxItems) {
        errors.push({ path: where, message: `expected at most ${spec.maxItems} items, found ${value.length}` });
      }
      return value.map((v, i) => validate(spec.of, v, `${path}[${i}]`, errors));
    }
    case 'object': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        errors.push({ path: where, message: `expected an object, found ${describe(value)}` });
        return defaults(spec);
      }
      const out: Record<string, unknown> = {};
      const known = Object.keys(spec.fields);
      for (const key of Object.keys(value)) {
        if (!(key in spec.fields)) {
          const near = closest(key, known);
          errors.push({ path: path ? `${path}.${key}` : key, message: `unknown key${near ? `; did you mean "${near}"?` : ''}` });
        }
      }
      for (const [k, s] of Object.entries(spec.fields)) {
        out[k] = validate(s, (value as Record<string, unknown>)[k], path ? `${path}.${k}` : k, errors);
      }
      return out;
    }
  }
}
