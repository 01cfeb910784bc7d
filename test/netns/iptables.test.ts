import { backendScenario, xtStructure } from './scenario.js';

backendScenario({
  backend: 'iptables',
  tools: ['iptables', 'ip6tables', 'iptables-restore', 'ip6tables-restore'],
  structure: (ns) => xtStructure(ns),
});
