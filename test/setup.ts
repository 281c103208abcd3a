import { afterAll } from 'vitest';
import { removeTempDirs } from './helpers/temp';

// Registered before the file's own hooks, so it runs after them (after-hooks run in reverse order).
afterAll(removeTempDirs);
