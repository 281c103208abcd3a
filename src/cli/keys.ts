import { chmodSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { generateApproverKey } from '../client/approval-signing';
import { parseIdentity } from './options';

export interface KeysCommandDeps {
  print: (cmd: Command, json: unknown, text: string) => void;
  invalid: (message: string) => never;
}

/** The approver's entry for the keyring file, one line (identities with `:` or `@` are quoted). */
export function keyringSnippet(identity: string, publicKey: string): string {
  const key = /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(identity) ? identity : JSON.stringify(identity);
  return `${key}: { keys: [${JSON.stringify(publicKey)}] }`;
}

/** `mlctl keys generate`. */
export function addKeysCommands(program: Command, deps: KeysCommandDeps): void {
  const keys = program.command('keys').description('approver signing keys for gates that require signed approvals');

  keys
    .command('generate')
    .description('make an Ed25519 key pair: the private key goes to --out, the public key into the approver keyring')
    .requiredOption('--as <user>', 'the approver identity the key belongs to')
    .requiredOption('--out <file>', 'where to write the private key (PKCS#8 PEM, mode 0600; never overwritten)')
    .option('--json', 'machine-readable output')
    .action((o: { as: string; out: string }, cmd: Command) => {
      const by = parseIdentity(o.as);
      const file = resolve(o.out);
      const key = generateApproverKey();
      try {
        // 'wx' refuses an existing file: overwriting would lose a key that may still be registered.
        writeFileSync(file, key.privateKeyPem, { mode: 0o600, flag: 'wx' });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        deps.invalid(
          code === 'EEXIST'
            ? `--out: ${file} already exists; not overwriting a private key`
            : `--out: cannot write ${file}: ${code ?? (err as Error).message}`,
        );
      }
      chmodSync(file, 0o600); // the umask may have narrowed it further, never widened; make it exact
      deps.print(
        cmd,
        { identity: by, keyId: key.keyId, publicKey: key.publicKey, privateKeyFile: file },
        [
          `wrote the private key of ${by} to ${file} (mode 0600; keep it secret)`,
          `key id: ${key.keyId}`,
          'add it under `approvers:` in the approver keyring the worker reads (ML_APPROVER_KEYS):',
          `  ${keyringSnippet(by, key.publicKey)}`,
        ].join('\n'),
      );
    });
}
