import { dirname, isAbsolute, resolve } from 'node:path';
import { InvalidFileError, loadYamlFile } from '../config/yaml-file';
import { LifecycleSpec } from '../shared/spec';
import { expandAnalysisTemplates, metricConditionProblems } from '../analysis/templates';

/** A spec that cannot be used; `problems` lists every one with its path (and line, when known). */
export class SpecError extends InvalidFileError {
  constructor(file: string, problems: string[]) {
    super(file, 'lifecycle spec', problems);
  }
}

/**
 * Reads and validates a lifecycle spec file. Relative `training.program` and `training.dataDir` are resolved
 * against the spec file's folder, so a spec works from wherever `mlctl` runs. The analysis templates it names are
 * expanded into its metric checks (src/analysis/templates.ts), and their conditions compiled.
 */
export function loadSpecFile(file: string, overrides: { version?: string; templatesDir?: string } = {}): LifecycleSpec {
  const spec = loadYamlFile(
    file,
    LifecycleSpec,
    'lifecycle spec',
    (raw) => {
      if (overrides.version !== undefined && raw && typeof raw === 'object')
        (raw as { version: string }).version = overrides.version;
      const problems = expandAnalysisTemplates(raw, overrides.templatesDir);
      if (problems.length > 0) throw new SpecError(file, problems);
    },
    SpecError,
  );
  const conditions = metricConditionProblems(spec);
  if (conditions.length > 0) throw new SpecError(file, conditions);
  const base = dirname(resolve(file));
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  return {
    ...spec,
    training: { ...spec.training, program: abs(spec.training.program), dataDir: abs(spec.training.dataDir) },
  };
}
