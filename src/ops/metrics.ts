import { Counter, type Registry } from 'prom-client';

export interface OpsMetrics {
  readonly reloads: Counter<'result'>;
}

export function createOpsMetrics(registry: Registry): OpsMetrics {
  return {
    reloads: new Counter({
      name: 'authban_config_reloads_total',
      help: 'SIGHUP reloads by result: applied, rejected (invalid file; the old configuration stays), failed (applied in part).',
      labelNames: ['result'],
      registers: [registry],
    }),
  };
}
