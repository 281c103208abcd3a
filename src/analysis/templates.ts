import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { query as jsonPathQuery } from 'jsonpath-rfc9535';
import { parseDocument } from 'yaml';
import { projectRoot } from '../config/paths';
import { AnalysisTemplateFile, MetricCheck, TemplateRef } from '../shared/analysis';
import { describeIssues } from '../shared/spec';
import { conditionProblem } from './conditions';

/** Where analysis templates live: ML_ANALYSIS_TEMPLATES_DIR, else config/analysis-templates of the project. */
export function templatesDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.ML_ANALYSIS_TEMPLATES_DIR || join(projectRoot(), 'config', 'analysis-templates');
}

const ARG_RE = /\{\{\s*args\.([A-Za-z0-9_.-]*)\s*\}\}/g;

const WHOLE_ARG_RE = /^\{\{\s*args\.([A-Za-z0-9_.-]*)\s*\}\}$/;

/**
 * `value` with every `{{args.<name>}}` in its strings replaced; names not in `args` are collected in `unknown`. A
 * string that is one placeholder and nothing else takes the argument's own type (`failureLimit: '{{args.limit}}'`
 * with `limit: 2` is the number 2).
 */
function fillArgs(value: unknown, args: ReadonlyMap<string, string | number>, unknown: Set<string>): unknown {
  if (typeof value === 'string') {
    const whole = WHOLE_ARG_RE.exec(value.trim());
    if (whole) {
      const v = args.get(whole[1] ?? '');
      if (v === undefined) unknown.add(whole[1] ?? '');
      else return v;
    }
    return value.replace(ARG_RE, (text, name: string) => {
      const v = args.get(name);
      if (v === undefined) unknown.add(name);
      return v === undefined ? text : String(v);
    });
  }
  if (Array.isArray(value)) return value.map((v) => fillArgs(v, args, unknown));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fillArgs(v, args, unknown)]));
  }
  return value;
}

/**
 * The metric checks of the templates `raw.rollout.analysis.templates` names, arguments filled in, appended to
 * `raw.rollout.analysis.metrics` (each with `template: <name>`). Every problem is returned, each naming the spec
 * field, the template and what is wrong: a template that does not exist, an argument missing or unknown, a metric
 * check the filled-in template gets wrong. `raw` is changed in place only when there is none.
 */
export function expandAnalysisTemplates(raw: unknown, dir: string = templatesDir()): string[] {
  const analysis = (raw as { rollout?: { analysis?: Record<string, unknown> } } | null)?.rollout?.analysis;
  if (!analysis || typeof analysis !== 'object' || analysis.templates === undefined) return [];
  const refs = TemplateRef.array().max(20).safeParse(analysis.templates);
  if (!refs.success) return describeIssues(refs.error).map((p) => `rollout.analysis.templates.${p}`);
  const problems: string[] = [];
  const added: unknown[] = [];
  refs.data.forEach((ref, i) => {
    const field = `rollout.analysis.templates.${i}`;
    const before = problems.length;
    const file = join(dir, `${ref.name}.yaml`);
    if (!existsSync(file)) {
      problems.push(`${field}.name: no analysis template "${ref.name}" (looked for ${file})`);
      return;
    }
    let template: AnalysisTemplateFile;
    try {
      const doc = parseDocument(readFileSync(file, 'utf8'));
      if (doc.errors.length > 0) throw new Error(doc.errors[0]!.message.split('\n')[0]);
      const parsed = AnalysisTemplateFile.safeParse(doc.toJS());
      if (!parsed.success) throw new Error(describeIssues(parsed.error).join('; '));
      template = parsed.data;
    } catch (err) {
      problems.push(`${field}.name: template "${ref.name}" (${file}) is invalid: ${(err as Error).message}`);
      return;
    }
    const given = new Map<string, string | number>(Object.entries(ref.args));
    const declared = new Set(template.args.map((a) => a.name));
    for (const name of given.keys()) {
      if (!declared.has(name))
        problems.push(
          `${field}.args.${name}: template "${ref.name}" has no argument "${name}" (it takes: ${[...declared].join(', ') || 'none'})`,
        );
    }
    const values = new Map<string, string | number>();
    for (const arg of template.args) {
      const v = given.get(arg.name) ?? arg.default;
      if (v === undefined) problems.push(`${field}.args: missing argument "${arg.name}" of template "${ref.name}"`);
      else values.set(arg.name, v);
    }
    // Without its arguments a template's checks cannot be judged: what is missing is the one problem to report.
    if (problems.length > before) return;
    const unknown = new Set<string>();
    template.metrics.forEach((m, j) => {
      const filled = fillArgs(m, values, unknown);
      const parsed = MetricCheck.safeParse(filled);
      if (!parsed.success) {
        for (const p of describeIssues(parsed.error))
          problems.push(`${field}: template "${ref.name}" metrics.${j}.${p}`);
        return;
      }
      added.push({ ...(filled as object), template: ref.name });
    });
    for (const name of unknown)
      if (!declared.has(name))
        problems.push(`${field}: template "${ref.name}" uses {{args.${name}}}, which it does not declare`);
  });
  if (problems.length > 0) return problems;
  analysis.metrics = [...(Array.isArray(analysis.metrics) ? (analysis.metrics as unknown[]) : []), ...added];
  return [];
}

type Conditions = Pick<MetricCheck, 'successCondition' | 'failureCondition' | 'template'> & {
  provider?: MetricCheck['provider'];
};

/**
 * What is wrong with the conditions and JSONPath selectors of a spec's metric checks (they are compiled by the
 * worker, not by zod), so that a typo is refused when the spec is loaded rather than read as provider errors mid-rollout.
 */
export function metricConditionProblems(spec: {
  rollout: { analysis: { metrics: readonly Conditions[] } };
  monitoring?: { metrics?: readonly Conditions[] };
}): string[] {
  const problems: string[] = [];
  const lists: [string, readonly Conditions[]][] = [
    ['rollout.analysis.metrics', spec.rollout.analysis.metrics],
    ['monitoring.metrics', spec.monitoring?.metrics ?? []],
  ];
  for (const [field, metrics] of lists) {
    metrics.forEach((m, i) => {
      const from = m.template ? ` (from template "${m.template}")` : '';
      for (const key of ['successCondition', 'failureCondition'] as const) {
        const text = m[key];
        const problem = text === undefined ? null : conditionProblem(text);
        if (problem) problems.push(`${field}.${i}.${key}: ${problem}${from}`);
      }
      if (m.provider && 'web' in m.provider) {
        try {
          jsonPathQuery({}, m.provider.web.jsonPath);
        } catch (err) {
          problems.push(
            `${field}.${i}.provider.web.jsonPath: not a JSONPath (RFC 9535): ${(err as Error).message}${from}`,
          );
        }
      }
    });
  }
  return problems;
}
