import { afterAll, afterEach } from 'vitest';
import { dropCreatedSchemas, markFileFailed } from './helpers/db.js';

// A file with a failed test keeps its schemas for inspection; a clean file's schemas are dropped.
afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') markFileFailed();
});

// Registered first, so it runs after the file's own afterAll hooks (pools closed, workers stopped).
afterAll(async () => {
  await dropCreatedSchemas();
});
