// Checks config/grafana-dashboard.json against the metrics authban really registers: every
// query may name only existing series, counters only inside rate()/increase(), and the
// dashboard must keep its uid, unique panel ids and a panel in each row.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { createBansMetrics } from '../../../src/bans/metrics.js';
import { createCorrelateMetrics } from '../../../src/correlate/metrics.js';
import { createEnforceMetrics } from '../../../src/enforce/metrics.js';
import { createTempfailMetrics } from '../../../src/enforce/tempfail.js';
import { createLogsMetrics } from '../../../src/logs/metrics.js';
import { createMilterMetrics } from '../../../src/milter/metrics.js';
import { createOpsMetrics } from '../../../src/ops/metrics.js';

const root = new URL('../../../', import.meta.url).pathname;
const dashboardPath = join(root, 'config', 'grafana-dashboard.json');

const factories: Record<string, (registry: Registry) => unknown> = {
  createBansMetrics,
  createCorrelateMetrics,
  createEnforceMetrics,
  createLogsMetrics,
  createMilterMetrics,
  createOpsMetrics,
  createTempfailMetrics,
};

/** The rows the dashboard must have, each with at least one panel. */
const requiredRows = ['Overview', 'Attacks', 'Milter', 'Logs', 'Firewall', 'Process'];

/** Series names authban exposes, and which of them only make sense through rate()/increase(). */
interface Known {
  readonly series: Set<string>;
  readonly monotonic: Set<string>;
}

async function knownSeries(): Promise<Known> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'authban_' });
  for (const create of Object.values(factories)) create(registry);
  const series = new Set<string>();
  const monotonic = new Set<string>();
  for (const m of await registry.getMetricsAsJSON()) {
    const type = String(m.type);
    if (type === 'histogram' || type === 'summary') {
      if (type === 'histogram') {
        series.add(`${m.name}_bucket`);
        monotonic.add(`${m.name}_bucket`);
      } else {
        series.add(m.name); // the quantile series
      }
      for (const suffix of ['_sum', '_count']) {
        series.add(m.name + suffix);
        monotonic.add(m.name + suffix);
      }
    } else {
      series.add(m.name);
      if (type === 'counter') monotonic.add(m.name);
    }
  }
  return { series, monotonic };
}

interface Panel {
  id?: unknown;
  type?: unknown;
  title?: unknown;
  datasource?: { type?: unknown; uid?: unknown };
  targets?: { expr?: unknown; datasource?: { type?: unknown; uid?: unknown } }[];
  panels?: Panel[];
}

interface Dashboard {
  uid?: unknown;
  schemaVersion?: unknown;
  panels?: Panel[];
  __inputs?: { name?: unknown; type?: unknown; pluginId?: unknown }[];
  templating?: { list?: { name?: unknown; type?: unknown; query?: unknown; definition?: unknown }[] };
}

/** Every panel, rows included, with the title of the row it sits in ('' before any row). */
function flatten(d: Dashboard): { panel: Panel; row: string }[] {
  const out: { panel: Panel; row: string }[] = [];
  let row = '';
  for (const p of d.panels ?? []) {
    if (p.type === 'row') {
      row = String(p.title);
      out.push({ panel: p, row });
      for (const inner of p.panels ?? []) out.push({ panel: inner, row }); // a collapsed row
    } else {
      out.push({ panel: p, row });
    }
  }
  return out;
}

const metricName = /(?<![A-Za-z0-9_:])authban_[A-Za-z0-9_:]*/g;

/** The expression with the inside of every string literal blanked (same length). */
function blankStrings(expr: string): string {
  return expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, (s) => `"${' '.repeat(s.length - 2)}"`);
}

/** Name of the function whose argument list directly encloses position `at`, or null. */
function enclosingFunction(expr: string, at: number): string | null {
  let depth = 0;
  for (let i = at - 1; i >= 0; i--) {
    const c = expr[i];
    if (c === ')') depth++;
    else if (c === '(') {
      if (depth === 0) {
        const m = /([A-Za-z_][A-Za-z0-9_]*)\s*$/.exec(expr.slice(0, i));
        return m ? m[1]! : '';
      }
      depth--;
    }
  }
  return null;
}

/** Problems in one PromQL expression; empty when it is fine. */
function checkExpr(expr: string, known: Known, where: string): string[] {
  const problems: string[] = [];
  const clean = blankStrings(expr);
  const names = [...clean.matchAll(metricName)];
  if (names.length === 0) problems.push(`${where}: references no authban_ metric: ${expr}`);
  for (const m of names) {
    const name = m[0];
    if (!known.series.has(name)) {
      problems.push(`${where}: unknown metric ${name}`);
      continue;
    }
    if (known.monotonic.has(name)) {
      const fn = enclosingFunction(clean, m.index);
      if (fn !== 'rate' && fn !== 'increase') problems.push(`${where}: counter ${name} used outside rate()/increase() (${fn === null ? 'at top level' : fn === '' ? 'inside an aggregation or parentheses' : `inside ${fn}()`})`);
    }
  }
  return problems;
}

/** Every problem with the dashboard; empty when it is fine. */
function checkDashboard(d: Dashboard, known: Known): string[] {
  const problems: string[] = [];
  if (typeof d.uid !== 'string' || !/^[A-Za-z0-9_-]{1,40}$/.test(d.uid)) problems.push(`bad uid ${JSON.stringify(d.uid)}`);
  else if (d.uid !== 'authban') problems.push(`uid is ${d.uid}, expected authban`);

  const all = flatten(d);
  const seen = new Set<unknown>();
  for (const { panel } of all) {
    if (typeof panel.id !== 'number') problems.push(`panel "${String(panel.title)}" has no numeric id`);
    else if (seen.has(panel.id)) problems.push(`duplicate panel id ${panel.id}`);
    seen.add(panel.id);
  }

  const perRow = new Map<string, number>();
  for (const { panel, row } of all) {
    if (panel.type === 'row') continue;
    perRow.set(row, (perRow.get(row) ?? 0) + 1);
    const where = `panel ${String(panel.id)} "${String(panel.title)}"`;
    if (panel.datasource?.uid !== '${datasource}') problems.push(`${where}: datasource is not the templated \${datasource}`);
    const targets = panel.targets ?? [];
    if (targets.length === 0) problems.push(`${where}: no targets`);
    for (const t of targets) {
      if (typeof t.expr !== 'string' || t.expr.trim() === '') {
        problems.push(`${where}: target without expr`);
        continue;
      }
      if (t.datasource && t.datasource.uid !== '${datasource}') problems.push(`${where}: target datasource is not \${datasource}`);
      problems.push(...checkExpr(t.expr, known, where));
    }
  }
  for (const row of requiredRows) {
    if (!perRow.get(row)) problems.push(`row "${row}" missing or empty`);
  }

  for (const v of d.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'object' && v.query !== null ? (v.query as { query?: unknown }).query : v.query;
    for (const text of [q, v.definition]) {
      if (typeof text === 'string') problems.push(...checkExpr(text, known, `variable ${String(v.name)}`));
    }
  }
  return problems;
}

function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(dashboardPath, 'utf8')) as Dashboard;
}

test('the test registers every metrics factory in src/*/metrics.ts and tempfail.ts', () => {
  const found = new Set<string>();
  const files = readdirSync(join(root, 'src'), { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => join(root, 'src', e.name, 'metrics.ts'))
    .filter((f) => existsSync(f));
  files.push(join(root, 'src', 'enforce', 'tempfail.ts'));
  for (const f of files) {
    for (const m of readFileSync(f, 'utf8').matchAll(/export function (create\w*Metrics)\s*\(/g)) found.add(m[1]!);
  }
  assert.deepEqual([...found].sort(), Object.keys(factories).sort());
});

test('the dashboard is importable: schema, datasource input and variable', () => {
  const d = loadDashboard();
  assert.equal(typeof d.schemaVersion, 'number');
  assert.ok((d.schemaVersion as number) >= 36, `schemaVersion ${String(d.schemaVersion)}`);
  assert.ok(
    d.__inputs?.some((i) => i.name === 'DS_PROMETHEUS' && i.type === 'datasource' && i.pluginId === 'prometheus'),
    'a DS_PROMETHEUS datasource input',
  );
  assert.ok(
    d.templating?.list?.some((v) => v.name === 'datasource' && v.type === 'datasource' && v.query === 'prometheus'),
    'a templated prometheus datasource variable',
  );
});

test('every query uses real metrics, counters only through rate()/increase(), unique ids, every row filled', async () => {
  const problems = checkDashboard(loadDashboard(), await knownSeries());
  assert.deepEqual(problems, []);
});

test('the checks catch a typo, a bare counter, a duplicate id, an empty row and a wrong uid', async () => {
  const known = await knownSeries();
  const mutate = (f: (d: Dashboard) => void): string[] => {
    const d = loadDashboard();
    f(d);
    return checkDashboard(d, known);
  };
  const targetsOf = (d: Dashboard) => flatten(d).flatMap(({ panel }) => panel.targets ?? []);

  const typo = mutate((d) => {
    const t = targetsOf(d).find((x) => String(x.expr).includes('authban_bans_total'))!;
    t.expr = String(t.expr).replace('authban_bans_total', 'authban_ban_total');
  });
  assert.ok(typo.some((p) => p.includes('unknown metric authban_ban_total')), typo.join('\n'));

  const bareCounter = mutate((d) => {
    targetsOf(d)[0]!.expr = 'sum(authban_milter_connections_total)';
  });
  assert.ok(bareCounter.some((p) => p.includes('counter authban_milter_connections_total used outside')), bareCounter.join('\n'));

  const bareBucket = mutate((d) => {
    targetsOf(d)[0]!.expr = 'histogram_quantile(0.99, sum by (le) (authban_milter_reply_latency_seconds_bucket))';
  });
  assert.ok(bareBucket.some((p) => p.includes('authban_milter_reply_latency_seconds_bucket used outside')), bareBucket.join('\n'));

  const histogramBase = mutate((d) => {
    targetsOf(d)[0]!.expr = 'authban_milter_reply_latency_seconds';
  });
  assert.ok(histogramBase.some((p) => p.includes('unknown metric authban_milter_reply_latency_seconds')), histogramBase.join('\n'));

  const duplicateId = mutate((d) => {
    const ps = d.panels!;
    ps[2]!.id = ps[1]!.id;
  });
  assert.ok(duplicateId.some((p) => p.startsWith('duplicate panel id')), duplicateId.join('\n'));

  const emptyRow = mutate((d) => {
    d.panels = d.panels!.filter((p, i, all) => {
      const rowBefore = all.slice(0, i + 1).reverse().find((q) => q.type === 'row');
      return p.type === 'row' || rowBefore?.title !== 'Logs';
    });
  });
  assert.ok(emptyRow.includes('row "Logs" missing or empty'), emptyRow.join('\n'));

  const wrongUid = mutate((d) => {
    d.uid = 'something-else';
  });
  assert.ok(wrongUid.some((p) => p.startsWith('uid is')), wrongUid.join('\n'));

  // A gauge is fine bare, and names inside string literals are not metric references.
  assert.deepEqual(checkExpr('sum(authban_bans_active{job="authban_x_total"})', known, 'x'), []);
});
