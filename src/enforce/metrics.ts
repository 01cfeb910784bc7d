import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** What a firewall command was for; a closed set so labels stay bounded. */
export type FirewallOp = 'start' | 'ban' | 'unban' | 'list' | 'stop' | 'expire';

export interface EnforceMetrics {
  readonly commands: Counter<'backend' | 'op'>;
  readonly commandFailures: Counter<'backend' | 'op'>;
  readonly commandDuration: Histogram<'backend' | 'op'>;
  readonly batchSize: Histogram<'backend'>;
  readonly pending: Gauge;
  /** Entries that failed address validation and never reached a command. */
  readonly rejectedEntries: Counter;
  /** Entries given up on after every batch retry failed. */
  readonly droppedEntries: Counter<'backend'>;
}

export function createEnforceMetrics(registry: Registry): EnforceMetrics {
  const registers = [registry];
  return {
    commands: new Counter({
      name: 'authban_firewall_commands_total',
      help: 'Firewall commands run (each attempt), by backend and purpose',
      labelNames: ['backend', 'op'],
      registers,
    }),
    commandFailures: new Counter({
      name: 'authban_firewall_command_failures_total',
      help: 'Firewall command attempts that failed (non-zero exit, timeout, spawn error)',
      labelNames: ['backend', 'op'],
      registers,
    }),
    commandDuration: new Histogram({
      name: 'authban_firewall_command_duration_seconds',
      help: 'Wall time of one firewall command attempt',
      labelNames: ['backend', 'op'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    batchSize: new Histogram({
      name: 'authban_firewall_batch_size',
      help: 'Ban/unban requests applied per firewall batch',
      labelNames: ['backend'],
      buckets: [1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000],
      registers,
    }),
    pending: new Gauge({
      name: 'authban_firewall_entries_pending',
      help: 'Ban/unban requests queued or in flight, not yet confirmed by the firewall',
      registers,
    }),
    rejectedEntries: new Counter({
      name: 'authban_firewall_entries_rejected_total',
      help: 'Ban entries refused before any command because the target is not a canonical address or network',
      registers,
    }),
    droppedEntries: new Counter({
      name: 'authban_firewall_entries_dropped_total',
      help: 'Ban/unban requests abandoned after all batch retries failed',
      labelNames: ['backend'],
      registers,
    }),
  };
}
