#!/usr/bin/env node
/**
 * The static half of `npm test`: the build, the type check, eslint, prettier and the import-cycle check, run side by
 * side (two at a time: each is mostly one core), instead of one after the other.
 *
 *     node scripts/checks.mjs            # all of them
 *     node scripts/checks.mjs build lint:eslint
 *
 * Each is an npm script of package.json, run as `npm run <name>`. Its output is held and printed in one piece when it
 * ends, so the logs of two checks never interleave. Every check runs to its end even when another fails, so that one
 * run names every problem; the exit code is 1 if any failed.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { scripts } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

/** The longest first, so that the last to start is short. */
const ALL = ['lint:eslint', 'typecheck', 'build', 'lint:format', 'lint:cycles'];
const names = process.argv.length > 2 ? process.argv.slice(2) : ALL;
const unknown = names.filter((n) => !Object.hasOwn(scripts, n));
if (unknown.length > 0) {
  console.error(`checks: no npm script ${unknown.map((n) => JSON.stringify(n)).join(', ')} in package.json`);
  process.exit(2);
}
const slots = Math.max(1, Math.min(2, availableParallelism()));

/** Runs one npm script; resolves with its exit code, output and seconds. */
function run(name) {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn('npm', ['run', '--silent', name], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks = [];
    child.stdout.on('data', (d) => chunks.push(d));
    child.stderr.on('data', (d) => chunks.push(d));
    const done = (code, error) =>
      resolve({
        name,
        code,
        output: Buffer.concat(chunks).toString() + (error ? `${error.message}\n` : ''),
        seconds: (performance.now() - started) / 1000,
      });
    child.once('error', (err) => done(1, err));
    child.once('close', (code, signal) => done(code ?? (signal ? 1 : 0)));
  });
}

const queue = [...names];
const results = [];
await Promise.all(
  Array.from({ length: slots }, async () => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      const r = await run(name);
      const output = r.output.trim();
      process.stdout.write(
        `${r.code === 0 ? 'ok  ' : 'FAIL'} ${r.name} (${r.seconds.toFixed(1)} s)${r.code === 0 ? '' : `, exit ${r.code}`}\n` +
          (output && r.code !== 0 ? `${output}\n` : ''),
      );
      results.push(r);
    }
  }),
);
const failed = results.filter((r) => r.code !== 0);
if (failed.length > 0) {
  console.error(`checks: ${failed.map((r) => r.name).join(', ')} failed`);
  process.exit(1);
}
