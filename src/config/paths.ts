import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The project's root folder (where package.json names ml-lifecycle), found from this file whether built or not. */
export function projectRoot(): string {
  let dir = __dirname;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'ml-lifecycle')
      return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the ml-lifecycle project root above ${__dirname}`);
    dir = parent;
  }
}
