import { isIP } from 'node:net';

/** Address family of a normalised client address. */
export type Family = 4 | 6;

export interface ParsedAddress {
  /** Canonical text: dotted quad for IPv4 (also for IPv4-mapped IPv6), RFC 5952 form for IPv6. */
  readonly text: string;
  readonly family: Family;
  /** 4 or 16 bytes, network order. */
  readonly bytes: Uint8Array;
}

/**
 * Parses an address as MTAs and logs write it: bare IPv4/IPv6, sendmail's `IPv6:` prefix,
 * `[brackets]`, uncompressed or IPv4-mapped IPv6. Returns null for anything else, so callers
 * never act on text that is not an address.
 */
export function parseAddress(input: string): ParsedAddress | null {
  let s = input.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (/^ipv6:/i.test(s)) s = s.slice(5);
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const kind = isIP(s);
  if (kind === 4) {
    const bytes = parseV4(s);
    return bytes ? { text: v4Text(bytes), family: 4, bytes } : null;
  }
  if (kind === 6) {
    const bytes = parseV6(s);
    if (!bytes) return null;
    if (isV4Mapped(bytes)) {
      const v4 = bytes.slice(12);
      return { text: v4Text(v4), family: 4, bytes: v4 };
    }
    return { text: v6Text(bytes), family: 6, bytes };
  }
  return null;
}

/** Canonical text of an address, or null when the input is not one. */
export function normalizeAddress(input: string): string | null {
  return parseAddress(input)?.text ?? null;
}

function parseV4(s: string): Uint8Array | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

function parseV6(s: string): Uint8Array | null {
  let head = s;
  let tailV4: Uint8Array | null = null;
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.', lastColon) > lastColon) {
    tailV4 = parseV4(s.slice(lastColon + 1));
    if (!tailV4) return null;
    head = s.slice(0, lastColon + 1) + '0:0';
  }
  const dbl = head.indexOf('::');
  const groups: number[] = [];
  const parseGroups = (part: string): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  if (dbl >= 0) {
    const left = parseGroups(head.slice(0, dbl));
    const right = parseGroups(head.slice(dbl + 2));
    if (!left || !right || left.length + right.length > 7) return null;
    groups.push(...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right);
  } else {
    const all = parseGroups(head);
    if (!all || all.length !== 8) return null;
    groups.push(...all);
  }
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  if (tailV4) out.set(tailV4, 12);
  return out;
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

function v4Text(b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** RFC 5952: lower case, leading zeros dropped, the longest run (>= 2) of zero groups as `::`. */
function v6Text(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[i * 2]! << 8) | b[i * 2 + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

function bytesToText(bytes: Uint8Array): string {
  return bytes.length === 4 ? v4Text(bytes) : v6Text(bytes);
}

/** A network: address bytes with the host bits cleared, and its prefix length. */
export interface Cidr {
  readonly family: Family;
  readonly bytes: Uint8Array;
  readonly prefix: number;
  /** Canonical `network/prefix` text. */
  readonly text: string;
}

function maskBytes(bytes: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    out[i] = bits === 0 ? 0 : bytes[i]! & (0xff << (8 - bits)) & 0xff;
  }
  return out;
}

/** Parses `ADDR` or `ADDR/LEN` (v4 or v6). A bare address is a host network (/32 or /128). */
export function parseCidr(input: string): Cidr | null {
  const slash = input.indexOf('/');
  const addr = parseAddress(slash >= 0 ? input.slice(0, slash) : input);
  if (!addr) return null;
  const max = addr.family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const lenText = input.slice(slash + 1).trim();
    if (!/^\d{1,3}$/.test(lenText)) return null;
    prefix = Number(lenText);
    // An IPv4-mapped network written in IPv6 notation keeps its meaning in IPv4 terms.
    if (addr.family === 4 && input.includes(':')) prefix -= 96;
    if (prefix < 0 || prefix > max) return null;
  }
  const bytes = maskBytes(addr.bytes, prefix);
  return { family: addr.family, bytes, prefix, text: `${bytesToText(bytes)}/${prefix}` };
}

export function cidrContains(net: Cidr, addr: ParsedAddress): boolean {
  if (net.family !== addr.family) return false;
  const masked = maskBytes(addr.bytes, net.prefix);
  for (let i = 0; i < masked.length; i++) if (masked[i] !== net.bytes[i]) return false;
  return true;
}

/**
 * The key an address is counted and banned under: the address itself for IPv4, its
 * enclosing /prefix network for IPv6 (one host owns a whole /64 and can rotate within it).
 */
export function banKey(addr: ParsedAddress, v6Prefix: number): string {
  if (addr.family === 4 || v6Prefix >= 128) return addr.text;
  return `${bytesToText(maskBytes(addr.bytes, v6Prefix))}/${v6Prefix}`;
}

export function isLoopback(addr: ParsedAddress): boolean {
  if (addr.family === 4) return addr.bytes[0] === 127;
  return addr.text === '::1';
}

/** A set of networks asked "does any of you contain this address?". */
export class CidrSet {
  private readonly nets: Cidr[] = [];

  constructor(entries: Iterable<Cidr> = []) {
    for (const e of entries) this.nets.push(e);
  }

  /** Parses a configured list; the first entry that is not an address or network throws, naming `what[i]`. */
  static parse(texts: readonly unknown[], what: string): CidrSet {
    return new CidrSet(
      texts.map((text, i) => {
        const net = typeof text === 'string' ? parseCidr(text) : null;
        if (!net) throw new Error(`${what}[${i}] is not an address or CIDR: ${JSON.stringify(text)}`);
        return net;
      }),
    );
  }

  add(net: Cidr): void {
    this.nets.push(net);
  }

  contains(addr: ParsedAddress): boolean {
    return this.nets.some((n) => cidrContains(n, addr));
  }

  /** Whether some network of the set shares an address with `net` (one holds the other). */
  overlaps(net: Cidr): boolean {
    return this.nets.some((n) => {
      if (n.family !== net.family) return false;
      const prefix = Math.min(n.prefix, net.prefix);
      const a = maskBytes(n.bytes, prefix);
      const b = maskBytes(net.bytes, prefix);
      return a.every((x, i) => x === b[i]);
    });
  }

  get size(): number {
    return this.nets.length;
  }
}

/**
 * Splits `HOST:PORT` as the config writes listeners (`127.0.0.1:9464`, `[::1]:5514`); the
 * brackets of an IPv6 host are dropped. Null when it is not of that shape or the port is out
 * of range.
 */
export function parseHostPort(spec: string): { host: string; port: number } | null {
  const m = /^(.+):(\d{1,5})$/.exec(spec);
  if (!m || Number(m[2]) > 65535) return null;
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port: Number(m[2]) };
}
