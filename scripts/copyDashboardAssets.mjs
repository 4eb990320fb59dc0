// The build step for the dashboard's static files: tsc compiles src/ to dist/ but copies no
// .html/.css/.js assets, so copy src/dashboard/assets to dist/dashboard/assets as they are.
import { cpSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'src', 'dashboard', 'assets');
const to = join(root, 'dist', 'dashboard', 'assets');
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
