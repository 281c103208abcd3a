import { existsSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { modelPolicy, PolicyFile, type ModelPolicy } from '../shared/policy';
import type { ApproverKeyring } from '../shared/signed-approval';
import { loadApproverKeyring } from './approver-keys';
import { projectRoot } from './paths';
import { InvalidFileError, loadYamlFile } from './yaml-file';

/** The policy file the worker enforces: ML_POLICY_FILE (relative paths from the project root), else config/policy.yaml. */
export function policyPath(env: NodeJS.ProcessEnv = process.env): string {
  const file = env.ML_POLICY_FILE || 'config/policy.yaml';
  return isAbsolute(file) ? file : join(projectRoot(), file);
}

/** Reads and validates a policy file; an invalid one throws InvalidFileError naming every bad field and its line. */
export function loadPolicyFile(path: string): PolicyFile {
  return loadYamlFile(path, PolicyFile, 'platform policy');
}

/** A file re-read whenever it changes (by modification time and size), so an edit takes effect at the next call. */
class WatchedFile<T> {
  private seen: { stamp: string; value: T } | undefined;
  constructor(
    readonly path: string,
    private readonly read: (path: string) => T,
  ) {}

  get(): T {
    let stamp: string;
    try {
      const s = statSync(this.path);
      stamp = `${s.mtimeMs}:${s.size}:${s.ino}`;
    } catch {
      stamp = 'missing';
    }
    if (this.seen?.stamp !== stamp) this.seen = { stamp, value: this.read(this.path) };
    return this.seen.value;
  }
}

/**
 * The platform policy and the signing keyring as the worker sees them now. Both files are re-read when they change,
 * so a removed approver or a revoked key stops working at the next operation; a file that became invalid refuses
 * everything (InvalidFileError) rather than falling back to an older copy.
 */
export class PolicySource {
  private readonly policy: WatchedFile<PolicyFile>;
  private readonly keyring: WatchedFile<ApproverKeyring> | undefined;

  constructor(
    policyFile: string,
    keyringFile: string | undefined,
    readonly root: string = projectRoot(),
  ) {
    this.policy = new WatchedFile(policyFile, loadPolicyFile);
    // A keyring file not written yet holds no keys (every signed operation is refused); one that exists must be valid.
    this.keyring = keyringFile
      ? new WatchedFile(keyringFile, (path) => (existsSync(path) ? loadApproverKeyring(path) : {}))
      : undefined;
  }

  get policyFile(): string {
    return this.policy.path;
  }

  /** The rules that apply to `model`. */
  forModel(model: string): ModelPolicy {
    return modelPolicy(this.policy.get(), model);
  }

  /** The whole keyring (empty when none is configured). */
  keys(): ApproverKeyring {
    return this.keyring?.get() ?? {};
  }

  /** Checks both files now; throws InvalidFileError for the first that cannot be used. */
  check(): void {
    this.policy.get();
    this.keys();
  }

  /**
   * Where training program `program` (absolute, or relative to the project root) may not run under the policy of
   * `model`: null when it lives under one of the allowed roots (default: the project root), else the refusal. The
   * refusal does not say whether the file exists.
   */
  programProblem(model: string, program: string): string | null {
    const policy = this.forModel(model);
    const roots = policy.training.roots.length ? policy.training.roots : ['.'];
    const real = (p: string) => {
      try {
        return realpathSync(p);
      } catch {
        return resolve(p);
      }
    };
    const target = real(isAbsolute(program) ? program : join(this.root, program));
    const inside = roots.some((r) => {
      const rel = relative(real(isAbsolute(r) ? r : join(this.root, r)), target);
      return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
    });
    return inside
      ? null
      : `training.program ${program} is not under a training root policy rule ${policy.rule} allows (${roots.join(', ')})`;
  }
}

export { InvalidFileError };
