import type { FirewallBackend } from './backend.js';
import type { BackendDeps } from './deps.js';
import { IpsetBackend } from './ipset.js';
import { IptablesBackend } from './iptables.js';
import { NftablesBackend } from './nftables.js';
import { NoneBackend } from './none.js';
import { validateFirewallOptions, type FirewallOptions } from './options.js';

export function createBackend(opts: FirewallOptions, deps: BackendDeps): FirewallBackend {
  validateFirewallOptions(opts);
  switch (opts.backend) {
    case 'none':
      return new NoneBackend();
    case 'iptables':
      return new IptablesBackend(opts, deps);
    case 'ipset':
      return new IpsetBackend(opts, deps);
    case 'nftables':
      return new NftablesBackend(opts, deps);
  }
}
