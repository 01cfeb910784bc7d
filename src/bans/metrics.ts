import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Metrics of the ban layer. Labels are bounded sets; never an address or a user name. */
export interface BansMetrics {
  readonly failures: Counter<'source'>;
  readonly failuresIgnored: Counter<'reason'>;
  readonly duplicates: Counter<'source'>;
  readonly bans: Counter<'reason'>;
  readonly unbans: Counter<'reason'>;
  readonly activeBans: Gauge<'family'>;
  readonly trackedKeys: Gauge;
  readonly evictions: Counter;
  readonly dryRunWouldBan: Counter;
  readonly usersUnderAttack: Gauge;
  readonly userMaxDistinctAddresses: Gauge;
  readonly stateWriteErrors: Counter;
  readonly stateCorruptFiles: Counter<'file'>;
  readonly stateTornTails: Counter;
  readonly stateCommitSeconds: Histogram;
}

export function createBansMetrics(registry: Registry): BansMetrics {
  const registers = [registry];
  return {
    failures: new Counter({ name: 'authban_bans_failures_total', help: 'Authentication failures received by the ban engine, by source.', labelNames: ['source'], registers }),
    failuresIgnored: new Counter({
      name: 'authban_bans_failures_ignored_total',
      help: 'Failures not counted: invalid, stale (older than findtime), loopback, own, ignored (ignore list), banned (key already banned).',
      labelNames: ['reason'],
      registers,
    }),
    duplicates: new Counter({ name: 'authban_bans_duplicates_total', help: 'Failures suppressed as another source\'s report of an attempt already counted, by source.', labelNames: ['source'], registers }),
    bans: new Counter({ name: 'authban_bans_total', help: 'Bans applied, by reason (maxretry, manual).', labelNames: ['reason'], registers }),
    unbans: new Counter({ name: 'authban_bans_unbans_total', help: 'Bans lifted, by reason (expired, manual).', labelNames: ['reason'], registers }),
    activeBans: new Gauge({ name: 'authban_bans_active', help: 'Active bans, by address family.', labelNames: ['family'], registers }),
    trackedKeys: new Gauge({ name: 'authban_bans_tracked_keys', help: 'Keys (addresses, IPv6 prefixes) with failures being counted.', registers }),
    evictions: new Counter({ name: 'authban_bans_tracked_evictions_total', help: 'Counted keys dropped because the maxTracked cap was reached.', registers }),
    dryRunWouldBan: new Counter({ name: 'authban_bans_dry_run_would_ban_total', help: 'Bans not applied because dryRun is on.', registers }),
    usersUnderAttack: new Gauge({ name: 'authban_bans_users_under_attack', help: 'Users failed against from at least userThreshold distinct keys within findtime.', registers }),
    userMaxDistinctAddresses: new Gauge({ name: 'authban_bans_user_max_distinct_addresses', help: 'Highest number of distinct keys failing against one user within findtime.', registers }),
    stateWriteErrors: new Counter({ name: 'authban_bans_state_write_errors_total', help: 'Failed writes of the ban journal or snapshot.', registers }),
    stateCorruptFiles: new Counter({ name: 'authban_bans_state_corrupt_files_total', help: 'State files found corrupt at load and set aside, by file (snapshot, journal).', labelNames: ['file'], registers }),
    stateTornTails: new Counter({ name: 'authban_bans_state_torn_tails_total', help: 'Torn last journal lines (an interrupted write) found at load and set aside.', registers }),
    stateCommitSeconds: new Histogram({
      name: 'authban_bans_state_commit_seconds',
      help: 'Time to write and fsync one group of journal lines.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
  };
}
