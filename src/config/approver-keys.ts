import { isAbsolute, join } from 'node:path';
import { z } from 'zod';
import { Ed25519PublicKey, type ApproverKeyring } from '../shared/signed-approval';
import { Identity, nameRecord } from '../shared/names';
import { projectRoot } from './paths';
import { loadYamlFile } from './yaml-file';

/** The approver keyring file the worker trusts: `approvers: { alice: { keys: ["<base64>", ...] } }`. */
export const ApproverKeysFile = z
  .object({
    approvers: nameRecord(Identity, z.object({ keys: z.array(Ed25519PublicKey).min(1) }).strict()),
  })
  .strict()
  .superRefine((file, ctx) => {
    // One key, one approver: a key listed twice would let its holder sign as either identity.
    const owner = new Map<string, string>();
    for (const [who, { keys }] of Object.entries(file.approvers)) {
      for (const [i, key] of keys.entries()) {
        const first = owner.get(key);
        if (first !== undefined && first !== who)
          ctx.addIssue({
            code: 'custom',
            path: ['approvers', who, 'keys', i],
            message: `this key is already registered for ${first}`,
          });
        else owner.set(key, who);
      }
    }
  });
export type ApproverKeysFile = z.infer<typeof ApproverKeysFile>;

/** The keyring file from ML_APPROVER_KEYS (relative paths from the project root); undefined when it is not set. */
export function approverKeysPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const file = env.ML_APPROVER_KEYS;
  if (!file) return undefined;
  return isAbsolute(file) ? file : join(projectRoot(), file);
}

/** Reads and validates a keyring file; an invalid one throws InvalidFileError naming the file and every bad field. */
export function loadApproverKeyring(path: string): ApproverKeyring {
  const file = loadYamlFile(path, ApproverKeysFile, 'approver keyring');
  return Object.fromEntries(Object.entries(file.approvers).map(([who, a]) => [who, a.keys]));
}
