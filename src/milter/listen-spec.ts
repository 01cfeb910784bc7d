/**
 * Listener specs as sendmail's `S=` equate writes them: `inet:PORT@HOST`, `inet6:PORT@HOST`,
 * `unix:/path` (also `local:/path`). Hosts must be address literals: resolving a name here
 * would send a DNS query at start-up. `inet:PORT` alone binds every IPv4 address, as
 * libmilter does.
 */
import { isIPv4, isIPv6 } from 'node:net';

export type ListenSpec =
  | { readonly kind: 'inet'; readonly host: string; readonly port: number }
  | { readonly kind: 'inet6'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

export function parseListenSpec(spec: string): ListenSpec {
  const colon = spec.indexOf(':');
  if (colon < 0) throw new Error(`listen spec ${JSON.stringify(spec)}: expected inet:PORT@HOST, inet6:PORT@HOST or unix:/path`);
  const scheme = spec.slice(0, colon).toLowerCase();
  const rest = spec.slice(colon + 1);
  if (scheme === 'unix' || scheme === 'local') {
    if (!rest.startsWith('/')) throw new Error(`listen spec ${JSON.stringify(spec)}: the socket path must be absolute`);
    return { kind: 'unix', path: rest };
  }
  if (scheme !== 'inet' && scheme !== 'inet6') throw new Error(`listen spec ${JSON.stringify(spec)}: unknown scheme ${scheme}`);
  const at = rest.indexOf('@');
  const portText = at < 0 ? rest : rest.slice(0, at);
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new Error(`listen spec ${JSON.stringify(spec)}: port must be 0-65535`);
  }
  const port = Number(portText);
  let host = at < 0 ? (scheme === 'inet' ? '0.0.0.0' : '::') : rest.slice(at + 1);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (scheme === 'inet' ? !isIPv4(host) : !isIPv6(host)) {
    throw new Error(`listen spec ${JSON.stringify(spec)}: host must be an ${scheme === 'inet' ? 'IPv4' : 'IPv6'} address literal`);
  }
  return { kind: scheme, host, port };
}

export function formatListenSpec(s: ListenSpec): string {
  return s.kind === 'unix' ? `unix:${s.path}` : `${s.kind}:${s.port}@${s.host}`;
}
