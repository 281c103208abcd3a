import { extname } from 'node:path';
import { InvalidFileError } from '../config/yaml-file';
import type { ColumnarData, ColumnType } from './columns';
import { judge, type DriftReport } from './compare';
import { distributionsOf, type FeatureDistribution } from './distribution';
import { compareData, observeData } from './engine';
import type { DriftOptions } from '../shared/drift';
import { readCsvColumns, type ReadOptions } from './csv';
import { readJsonlColumns } from './jsonl';
import {
  buildProfile,
  isProfileFile,
  loadProfile,
  type DataProfile,
  type ProfileOptions,
  type Reference,
} from './profile';

export * from './columns';
export * from './compare';
export * from './distribution';
export * from './engine';
export * from '../shared/drift';
export * from './sketch';
export * from './profile';
export { readCsvColumns, type ReadOptions } from './csv';
export { readJsonlColumns } from './jsonl';

const JSONL = new Set(['.jsonl', '.ndjson']);

/** Reads a data file by its extension: `.jsonl`/`.ndjson` as JSON Lines, anything else as CSV. */
export function readData(path: string, options: ReadOptions = {}): Promise<ColumnarData> {
  return JSONL.has(extname(path).toLowerCase()) ? readJsonlColumns(path, options) : readCsvColumns(path, options);
}

/** Column types of a profile, for reading current data as the reference was read. */
export function schemaOf(profile: DataProfile): Record<string, ColumnType> {
  return Object.fromEntries(profile.features.map((f) => [f.name, f.type]));
}

/** The reference for a comparison: a saved profile (`.json`) or a data file profiled on the spot. */
export async function loadReference(path: string, options: ProfileOptions = {}): Promise<Reference> {
  if (extname(path).toLowerCase() === '.json') {
    if (!(await isProfileFile(path).catch(() => false))) {
      throw new InvalidFileError(path, 'reference', [
        'a .json reference must be a data profile written by `mlctl data profile`',
      ]);
    }
    return loadProfile(path);
  }
  return buildProfile(await readData(path), options);
}

/** Reads current data with the reference's column types and compares it. */
export async function checkData(
  reference: Reference,
  currentPath: string,
  options: DriftOptions = {},
): Promise<DriftReport> {
  const current = await readData(currentPath, { types: schemaOf(reference.profile), onlyTyped: true });
  return compareData(reference, current, options);
}

/** As {@link checkData}, with each compared feature's reference and current distribution (the HTML report's plots). */
export async function checkDataWithDistributions(
  reference: Reference,
  currentPath: string,
  options: DriftOptions = {},
): Promise<{ report: DriftReport; distributions: FeatureDistribution[] }> {
  const current = await readData(currentPath, { types: schemaOf(reference.profile), onlyTyped: true });
  const seen = await observeData(reference, current, options);
  return {
    report: judge(reference.profile, seen.observations, seen.current, options),
    distributions: distributionsOf(reference.profile, seen.observations),
  };
}
