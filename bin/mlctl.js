#!/usr/bin/env node
'use strict';
const { existsSync } = require('node:fs');
const { join } = require('node:path');
const entry = join(__dirname, '..', 'dist', 'src', 'cli', 'mlctl.js');
if (!existsSync(entry)) {
  process.stderr.write('mlctl: not built yet: run `npm install` (or `npm run build`) in the ml-lifecycle folder\n');
  process.exit(1);
}
require(entry)
  .runMlctl(process.argv.slice(2))
  .then((code) => process.exit(code));
