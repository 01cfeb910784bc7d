import { backendScenario } from './scenario.js';

backendScenario({
  backend: 'nftables',
  tools: ['nft'],
  structure: (ns) => {
    const tables = ns.inSrv('nft', 'list', 'tables').split('\n').filter(Boolean);
    const mine = tables.filter((l) => l.trim() === 'table inet authban').length;
    const body = mine > 0 ? ns.inSrv('nft', 'list', 'table', 'inet', 'authban') : '';
    return {
      tables: mine,
      'other tables': tables.length - mine,
      chains: (body.match(/^\s*chain /gm) ?? []).length,
      sets: (body.match(/^\s*set /gm) ?? []).length,
      rules: (body.match(/saddr @/g) ?? []).length,
    };
  },
});
