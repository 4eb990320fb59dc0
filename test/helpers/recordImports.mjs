// A module hook (node --import) that appends every module URL the process resolves to the file
// named by RECORD_IMPORTS: what a command loads, for test/cli/commandRegistry.test.ts.
import { appendFileSync } from 'node:fs';
import { register } from 'node:module';

if (process.env.RECORD_IMPORTS) {
  register(
    `data:text/javascript,${encodeURIComponent(`
      import { appendFileSync } from 'node:fs';
      export async function resolve(specifier, context, next) {
        const r = await next(specifier, context);
        appendFileSync(${JSON.stringify(process.env.RECORD_IMPORTS)}, r.url + '\\n');
        return r;
      }`)}`,
  );
  appendFileSync(process.env.RECORD_IMPORTS, '');
}
