/**
 * Which artifact store a process uses (src/artifacts/store.ts), from its environment:
 *
 * - `ML_ARTIFACT_STORE`: `file:///shared/folder` (a folder every host mounts at that path) or `s3://bucket[/prefix]`.
 *   Unset: the caller's default location, when it gives one.
 * - For `s3://`: `ML_S3_ENDPOINT` (default `https://s3.<region>.amazonaws.com`), `ML_S3_REGION` (default `us-east-1`),
 *   and the credentials `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`.
 *
 * Every problem is reported in one error naming the variable; secret values never appear in it.
 */
import { z } from 'zod';
import { ArtifactStoreError, parseStoreLocation, type StoreLocation } from '../artifacts/store-core';
import type { S3Connection } from '../artifacts/s3-store';
import { describeIssues } from '../shared/spec';

export type ArtifactStoreConfig =
  | { location: Extract<StoreLocation, { kind: 'fs' }> }
  | { location: Extract<StoreLocation, { kind: 's3' }>; s3: S3Connection };

/** An environment that does not describe a usable artifact store; the message names each variable at fault. */
export class ArtifactStoreConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArtifactStoreConfigError';
  }
}

const Env = z
  .object({
    ML_ARTIFACT_STORE: z
      .string()
      .optional()
      .transform((value, ctx) => {
        if (value === undefined || value === '') return undefined;
        try {
          return parseStoreLocation(value);
        } catch (err) {
          if (!(err instanceof ArtifactStoreError)) throw err;
          ctx.addIssue({ code: 'custom', message: `a file:///folder or s3://bucket/prefix URI (${err.message})` });
          return z.NEVER;
        }
      }),
    ML_S3_ENDPOINT: z
      .url({ protocol: /^https?$/, error: 'an http:// or https:// URL' })
      .refine((url) => /^https?:\/\/[^/]+\/?$/.test(url), 'a URL without a path (http://host:port)')
      .optional(),
    ML_S3_REGION: z
      .string()
      .regex(/^[a-z0-9-]{1,32}$/, 'a region name such as us-east-1')
      .default('us-east-1'),
    // Messages only: zod never echoes a string's value in them, so a secret cannot end up in an error or a log.
    AWS_ACCESS_KEY_ID: z.string().min(1, 'not empty').optional(),
    AWS_SECRET_ACCESS_KEY: z.string().min(1, 'not empty').optional(),
    AWS_SESSION_TOKEN: z.string().min(1, 'not empty').optional(),
  })
  .superRefine((env, ctx) => {
    if (env.ML_ARTIFACT_STORE?.kind !== 's3') return;
    for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] as const) {
      if (env[name] === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [name],
          message: `required when ML_ARTIFACT_STORE is an s3:// URI (${env.ML_ARTIFACT_STORE.uri})`,
        });
      }
    }
  });

/**
 * The artifact store configuration of `env`. `defaultLocation` (a `file:///` or `s3://` URI) applies when
 * ML_ARTIFACT_STORE is unset; without one, ML_ARTIFACT_STORE is required. Throws ArtifactStoreConfigError.
 */
export function loadArtifactStoreConfig(
  env: NodeJS.ProcessEnv = process.env,
  options: { defaultLocation?: string } = {},
): ArtifactStoreConfig {
  const parsed = Env.safeParse(env);
  if (!parsed.success) {
    throw new ArtifactStoreConfigError(
      `invalid artifact store environment: ${describeIssues(parsed.error).join('; ')}`,
    );
  }
  let location = parsed.data.ML_ARTIFACT_STORE;
  if (!location) {
    if (options.defaultLocation === undefined) {
      throw new ArtifactStoreConfigError(
        'invalid artifact store environment: ML_ARTIFACT_STORE: required (file:///shared/folder or s3://bucket/prefix)',
      );
    }
    location = parseStoreLocation(options.defaultLocation);
    if (location.kind === 's3') {
      throw new ArtifactStoreConfigError('the default artifact store location must be a file:/// URI');
    }
  }
  if (location.kind === 'fs') return { location };
  const { ML_S3_ENDPOINT, ML_S3_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN } = parsed.data;
  return {
    location,
    s3: {
      endpoint: (ML_S3_ENDPOINT ?? `https://s3.${ML_S3_REGION}.amazonaws.com`).replace(/\/+$/, ''),
      region: ML_S3_REGION,
      // Present: the superRefine above requires both for an s3:// location.
      accessKeyId: AWS_ACCESS_KEY_ID as string,
      secretAccessKey: AWS_SECRET_ACCESS_KEY as string,
      ...(AWS_SESSION_TOKEN ? { sessionToken: AWS_SESSION_TOKEN } : {}),
    },
  };
}
