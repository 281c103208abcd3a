import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { InvalidFileError } from '../config/yaml-file';
import {
  buildProfile,
  checkData,
  loadReference,
  PROFILE_FILE,
  readData,
  saveProfile,
  type DataProfile,
  type DriftOptions,
  type DriftReport,
} from '../drift';
import { ErrorType } from '../shared/errors';
import { ModelManifest } from '../shared/gateway-api';

/** Data that cannot be read or options that do not fit it: a non-retryable DataInvalid failure; anything else as is. */
const badInput = (err: unknown) =>
  err instanceof InvalidFileError || err instanceof RangeError
    ? ApplicationFailure.create({ type: ErrorType.DataInvalid, message: err.message, nonRetryable: true })
    : err;

/**
 * Profiles a model's training set into its artifact folder (`profile.json` and its sorted values), with the roles the
 * manifest gives: its features, its label, and every other column an identifier that is never compared.
 */
export async function writeTrainingProfile(artifactDir: string, trainCsv: string): Promise<DataProfile> {
  const manifest = ModelManifest.parse(JSON.parse(await readFile(join(artifactDir, 'model.json'), 'utf8')));
  const types = Object.fromEntries(manifest.features.map((f) => [f.name, f.type]));
  const features = manifest.features.map((f) => f.name);
  let reference;
  try {
    const data = await readData(trainCsv, { types });
    reference = await buildProfile(data, {
      label: manifest.label,
      features,
      identifiers: data.columns.map((c) => c.name).filter((n) => n !== manifest.label && !features.includes(n)),
    });
  } catch (err) {
    // A training set the profile cannot read is as unreadable on the next attempt.
    throw badInput(err);
  }
  await saveProfile(reference, join(artifactDir, PROFILE_FILE));
  return reference.profile;
}

/** A profile path from a profile file, an artifact folder holding one, or a data file (profiled on the spot). */
function referencePath(path: string): string {
  return existsSync(join(path, PROFILE_FILE)) ? join(path, PROFILE_FILE) : path;
}

export interface CheckDataInput {
  /** A profile (`profile.json`), an artifact folder with one, or a reference data file. */
  reference: string;
  /** The data to check (CSV or JSONL). */
  current: string;
  options?: DriftOptions;
}

export interface ProfileDataInput {
  data: string;
  out: string;
  label?: string;
  identifiers?: string[];
}

/** Data activities: profiling data sets and checking new data against a reference (R8, R10). */
export function createDataActivities(deps: { root: string }) {
  const resolve = (p: string) => (isAbsolute(p) ? p : join(deps.root, p));
  return {
    /** Profiles a data set into `out` (JSON plus sorted values). Bad input fails without retries. */
    async profileData(input: ProfileDataInput): Promise<{ rows: number; features: number; out: string }> {
      try {
        const data = await readData(resolve(input.data));
        const reference = await buildProfile(data, {
          ...(input.label ? { label: input.label } : {}),
          ...(input.identifiers ? { identifiers: input.identifiers } : {}),
        });
        await saveProfile(reference, resolve(input.out));
        return { rows: reference.profile.rows, features: reference.profile.features.length, out: resolve(input.out) };
      } catch (err) {
        throw badInput(err);
      }
    },

    /** Drift and data problems of a data batch against a reference. Bad input fails without retries. */
    async checkData(input: CheckDataInput): Promise<DriftReport> {
      try {
        const reference = await loadReference(referencePath(resolve(input.reference)));
        return await checkData(reference, resolve(input.current), input.options ?? {});
      } catch (err) {
        throw badInput(err);
      }
    },
  };
}
