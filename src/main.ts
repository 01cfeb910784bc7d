/**
 * The composition root: the only place that wires the layers together. The milter and the
 * log sources produce facts, the correlator turns them into AuthFailures, the ban engine
 * decides, and enforcement (tempfail gate, firewall) acts.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { parseAddress } from './core/address.js';
import { BanEngine } from './bans/ban-engine.js';
import { banLengthProblem } from './bans/policy.js';
import { createBansMetrics } from './bans/metrics.js';
import { StateStore } from './bans/state-store.js';
import { Correlator } from './correlate/correlator.js';
import { createCorrelateMetrics } from './correlate/metrics.js';
import { SessionIndex } from './correlate/session-index.js';
import { Firewall } from './enforce/firewall.js';
import { createEnforceMetrics } from './enforce/metrics.js';
import { DEFAULT_FIREWALL_OPTIONS } from './enforce/options.js';
import { TempfailGate, createTempfailMetrics } from './enforce/tempfail.js';
import { createLogsMetrics } from './logs/metrics.js';
import type { MilterHandler, Verdict } from './milter/handler.js';
import { createMilterMetrics } from './milter/metrics.js';
import { buildRefusal } from './milter/refuse.js';
import { parseListenSpec } from './milter/listen-spec.js';
import { MilterServer } from './milter/server.js';
import type { Config } from './ops/config.js';
import { ControlUsageError, startControlServer, type ControlServer } from './ops/control-server.js';
import { startMetricsHttp, type MetricsHttp } from './ops/metrics-http.js';
import { createOpsMetrics } from './ops/metrics.js';
import { LogInputs } from './logs/inputs.js';

const CONTINUE: Verdict = { kind: 'continue' };
const TICK_MS = 1000;

export interface Daemon {
  readonly milterAddresses: readonly string[];
  readonly metricsAddress: string | null;
  /** Applies a new, already validated configuration; bans and open sessions are kept. Never rejects. */
  reload(next: Config): Promise<void>;
  /** Records a reload refused because the new file is invalid: the old configuration stays. */
  reloadRejected(reason: string): void;
  /** Stops accepting, lets sessions finish within the grace period, persists state. */
  stop(): Promise<void>;
}

/** The daemon's own listen addresses: never banned, whatever the config says. */
function ownAddresses(cfg: Config): string[] {
  const out: string[] = [];
  for (const text of cfg.milter.listen) {
    const spec = parseListenSpec(text);
    // A wildcard host (0.0.0.0, ::) is never a client's address: listing it changes nothing.
    const addr = spec.kind === 'unix' ? null : parseAddress(spec.host);
    if (addr) out.push(addr.text);
  }
  return out;
}

function policyOf(cfg: Config) {
  return { ...cfg.bans, ignore: [...cfg.bans.ignore] };
}

function firewallOptionsOf(cfg: Config) {
  return { ...DEFAULT_FIREWALL_OPTIONS, ...cfg.enforce, ports: [...cfg.enforce.ports] };
}

export async function startDaemon(cfg: Config, logger: Logger): Promise<Daemon> {
  const startedAt = Date.now();
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'authban_' });
  // prom-client names three gauges `_total`, a suffix Prometheus keeps for counters (promtool
  // rejects them); the per-type breakdowns without the suffix carry the same information.
  for (const n of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`authban_nodejs_active_${n}_total`);
  const milterMetrics = createMilterMetrics(registry);
  const bansMetrics = createBansMetrics(registry);
  const correlateMetrics = createCorrelateMetrics(registry);
  const enforceMetrics = createEnforceMetrics(registry);
  const logsMetrics = createLogsMetrics(registry);
  const tempfailMetrics = createTempfailMetrics(registry);
  const opsMetrics = createOpsMetrics(registry);

  // Decide: the ban engine with its durable state.
  const store = new StateStore({ file: join(cfg.state.dir, 'state.json') }, { log: logger, metrics: bansMetrics });
  const engine = new BanEngine({ log: logger, policy: policyOf(cfg), ownAddresses: ownAddresses(cfg), metrics: bansMetrics, store });
  // What has started so far, so that a failed start-up releases it all (the state lock
  // above all: a lock left behind would refuse the next start).
  const undo: (() => Promise<unknown>)[] = [];
  const started = async <T>(p: Promise<T>, stop: (v: T) => Promise<unknown>): Promise<T> => {
    try {
      const v = await p;
      undo.unshift(() => stop(v));
      return v;
    } catch (e) {
      for (const u of undo) await u().catch(() => undefined);
      throw e;
    }
  };
  await started(engine.start(), () => engine.stop());

  // Enforce: the firewall (batched, never awaited by the milter) and the tempfail gate.
  const newFirewall = (c: Config): Firewall => new Firewall(firewallOptionsOf(c), { log: logger, metrics: enforceMetrics, activeBans: () => engine.list() });
  let firewall = newFirewall(cfg);
  await started(firewall.start(), () => firewall.stop());
  engine.on('ban', (b) => firewall.ban(b));
  engine.on('unban', (b) => firewall.unban(b));
  const gate = new TempfailGate((a) => engine.isBanned(a), cfg.milter.refused, buildRefusal(cfg.milter), tempfailMetrics);

  // Facts: sessions (milter) and log lines, joined by the correlator.
  // Sessions opened before this start are unknown, however old the log lines read next are.
  const index = new SessionIndex({ since: Date.now() });
  const correlator = new Correlator(
    { index, emit: (f) => engine.report(f), logger, metrics: correlateMetrics },
    { holdMs: cfg.correlate.holdMs, startGraceMs: cfg.correlate.startGraceMs },
  );
  const handler: MilterHandler = {
    onConnect(session, info) {
      const refusal = info.address ? gate.check(info.address) : null;
      // A refused connection never authenticates: it is not a session the logs can fail.
      if (refusal) return refusal;
      index.opened({
        id: session.id,
        address: info.address,
        at: Date.now(),
        ...(info.port !== undefined ? { port: info.port } : {}),
        ...(info.queueId !== undefined ? { queueId: info.queueId } : {}),
        ...(info.pid !== undefined ? { pid: info.pid } : {}),
      });
      return CONTINUE;
    },
    onHelo(session) {
      if (session.queueId) index.queueIdChanged(session.id, session.queueId);
      return CONTINUE;
    },
    onMail(session, _sender, _args, auth) {
      if (session.queueId) index.queueIdChanged(session.id, session.queueId);
      // {auth_authen} at MAIL: this client has authenticated and can fail no AUTH any more.
      // Without it, MAIL ends nothing: an RSET (which the milter never sees) or the end of the
      // message lets the client try AUTH again.
      if (auth.authAuthen !== undefined) index.authenticated(session.id, Date.now());
      return CONTINUE;
    },
    onClose(session, reason) {
      index.closed(session.id, Date.now(), reason);
    },
  };
  const milterInit = (c: Config) => ({
    listen: c.milter.listen,
    maxFrameBytes: c.milter.maxFrameBytes,
    handlerTimeoutMs: c.milter.handlerTimeoutMs,
    fallbackVerdict: c.milter.fallbackVerdict,
    unixSocketMode: parseInt(c.milter.unixSocketMode, 8),
    maxConnections: c.milter.maxConnections,
    negotiationTimeoutMs: c.milter.negotiationTimeoutMs,
    idleTimeoutMs: c.milter.idleTimeoutMs,
    logger,
    handler,
    metrics: milterMetrics,
  });
  const milter = await started(MilterServer.start(milterInit(cfg)), (m) => m.close(0));

  const inputs = await started(
    LogInputs.start(cfg.logs, {
      logger,
      metrics: logsMetrics,
      onRecord: (r, src) => correlator.onRecord(r, src),
      positionsFile: join(cfg.state.dir, 'log-positions.json'),
    }),
    (i) => i.stop(),
  );
  // The first tick starts the correlator's start-grace clock: sessions opened before authban
  // started are unknown, so attribution by time waits until they are gone.
  correlator.tick(Date.now());
  const ticker = setInterval(() => correlator.tick(Date.now()), TICK_MS);
  ticker.unref();

  let metricsHttp: MetricsHttp | null = cfg.metrics.listen
    ? await started(startMetricsHttp(registry, cfg.metrics.listen, cfg.metrics.path, logger), (h) => h.close())
    : null;

  const control: ControlServer = await started(startControlServer(
    cfg.control.socket,
    async (req) => {
      const a = req.args ?? {};
      const target = (): string => {
        if (typeof a.address !== 'string' || a.address === '') throw new ControlUsageError('an address or network is needed');
        return a.address;
      };
      switch (req.cmd) {
        case 'status':
          return {
            pid: process.pid,
            uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
            milter: { listen: milter.addresses(), connections: milter.connectionCount },
            bans: engine.stats(),
            correlate: { ...correlator.stats, held: correlator.heldCount },
            // Many addresses failing against one account: a signal for the admin, never a ban.
            usersUnderAttack: engine.usersUnderAttack().slice(0, 20),
            firewall: firewall.status(),
            logs: inputs.describe(),
          };
        case 'list':
          return engine.list();
        case 'explain':
          return checked(() => engine.explain(target()));
        case 'ban': {
          const badLength = a.seconds === undefined ? null : banLengthProblem(a.seconds);
          if (badLength) throw new ControlUsageError(`--time: ${badLength}`);
          const seconds = a.seconds as number | null | undefined;
          return await checkedAsync(() => engine.ban(target(), { ...(seconds !== undefined ? { seconds } : {}), by: 'control', reason: 'manual' }));
        }
        case 'unban':
          if (a.all === true) return { unbanned: await engine.unbanAll() };
          return { unbanned: (await checkedAsync(() => engine.unban(target()))) ? 1 : 0 };
        default:
          throw new ControlUsageError(`unknown command "${req.cmd}"`);
      }
    },
    logger,
  ), (c) => c.close());

  let stopping: Promise<void> | null = null;
  const daemon: Daemon = {
    get milterAddresses() {
      return milter.addresses();
    },
    get metricsAddress() {
      return metricsHttp?.address ?? null;
    },
    reloadRejected(reason) {
      opsMetrics.reloads.inc({ result: 'rejected' });
      logger.error({ event: 'reload-rejected', err: reason }, 'new configuration is invalid; still running on the old one');
    },
    async reload(next) {
      // Each part is applied on its own, and `cfg` follows what really applied: a part that
      // fails (a listener address in use, say) is logged, the others still apply, and the
      // failed one is tried again at the next reload.
      const changed = (k: keyof Config): boolean => JSON.stringify(next[k]) !== JSON.stringify(cfg[k]);
      const failed: string[] = [];
      const part = async (name: keyof Config, apply: () => void | Promise<void>): Promise<void> => {
        try {
          await apply();
          cfg = { ...cfg, [name]: next[name] };
        } catch (e) {
          failed.push(name);
          logger.error({ event: 'reload-failed', part: name, err: (e as Error).message }, `reload of ${name} failed; what could not be applied keeps its old settings`);
        }
      };
      await part('bans', () => engine.reconfigure(policyOf(next), ownAddresses(next)));
      await part('correlate', () => correlator.reconfigure({ holdMs: next.correlate.holdMs, startGraceMs: next.correlate.startGraceMs }));
      await part('log', () => {
        logger.level = next.log.level;
      });
      if (changed('milter')) {
        await part('milter', async () => {
          gate.update(next.milter.refused, buildRefusal(next.milter));
          await milter.reconfigure(milterInit(next));
        });
      }
      if (changed('logs')) await part('logs', () => inputs.reconfigure(next.logs));
      if (changed('metrics')) {
        await part('metrics', async () => {
          const fresh = next.metrics.listen ? await startMetricsHttp(registry, next.metrics.listen, next.metrics.path, logger) : null;
          await metricsHttp?.close();
          metricsHttp = fresh;
        });
      }
      if (changed('enforce')) {
        await part('enforce', async () => {
          // The same backend's start rebuilds its own chain/set/table with the new ports and
          // action; another backend would leave the old rules in the kernel, never unbanned.
          await firewall.stop(next.enforce.backend !== cfg.enforce.backend ? 'flush' : undefined);
          firewall = newFirewall(next);
          await firewall.start();
        });
      }
      if (changed('state') || changed('control')) {
        logger.warn({ event: 'reload_needs_restart', keys: (['state', 'control'] as const).filter((k) => changed(k)) }, 'state.dir and control.socket change only on restart');
      }
      opsMetrics.reloads.inc({ result: failed.length === 0 ? 'applied' : 'failed' });
      if (failed.length === 0) logger.info({ event: 'reloaded' }, 'configuration reloaded');
    },
    stop() {
      stopping ??= (async () => {
        logger.info({ event: 'stopping' }, 'shutting down');
        await milter.close(cfg.milter.shutdownGraceMs);
        await inputs.stop();
        clearInterval(ticker);
        correlator.flush();
        await control.close();
        await metricsHttp?.close();
        await firewall.stop();
        await engine.stop();
        logger.info({ event: 'stopped' }, 'stopped');
      })();
      return stopping;
    },
  };
  return daemon;
}

/** Engine errors about a bad target are the caller's mistake: report them as usage errors. */
function checked<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new ControlUsageError((e as Error).message);
  }
}

async function checkedAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw new ControlUsageError((e as Error).message);
  }
}
