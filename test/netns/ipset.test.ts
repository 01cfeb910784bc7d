import { backendScenario, xtStructure } from './scenario.js';

backendScenario({
  backend: 'ipset',
  tools: ['ipset', 'iptables', 'ip6tables', 'iptables-restore', 'ip6tables-restore'],
  structure: (ns) => {
    const sets = ns.inSrv('ipset', 'list', '-n').split('\n').filter(Boolean);
    return {
      ...xtStructure(ns),
      'authban4 sets': sets.filter((s) => s === 'authban4').length,
      'authban6 sets': sets.filter((s) => s === 'authban6').length,
      'other sets': sets.filter((s) => s !== 'authban4' && s !== 'authban6').length,
      'set match rules': ns
        .inSrv('iptables', '-w', '-S')
        .concat(ns.inSrv('ip6tables', '-w', '-S'))
        .split('\n')
        .filter((l) => l.includes('--match-set')).length,
    };
  },
});
