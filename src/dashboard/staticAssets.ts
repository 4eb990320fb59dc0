import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The dashboard's files: shipped in the package next to this module (the build copies them). */
export const ASSETS_DIR = fileURLToPath(new URL('./assets/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json; charset=utf-8',
};

export interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

function asset(body: Buffer, file: string): Asset {
  return {
    body,
    type: TYPES[extname(file)] ?? 'application/octet-stream',
    etag: `"${createHash('sha1').update(body).digest('base64url').slice(0, 20)}"`,
  };
}

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(join(dir, e.name)) : e.isFile() ? [join(dir, e.name)] : [],
  );
}

/**
 * Every asset read once into memory (a few tens of kB): requests are served from this map only, so
 * no request path ever reaches the file system. `index.html` gets the page's settings filled in.
 */
export function loadAssets(
  page: { base: string; csrf: string; readOnly: boolean },
  dir = ASSETS_DIR,
): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const file of listFiles(dir)) {
    const name = relative(dir, file).split(sep).join('/');
    let body = readFileSync(file);
    if (name === 'index.html') {
      body = Buffer.from(
        body
          .toString('utf8')
          .replace('__BASE__', escapeAttr(page.base))
          .replace('__CSRF__', escapeAttr(page.csrf))
          .replace('__READ_ONLY__', page.readOnly ? 'true' : 'false'),
      );
    }
    assets.set(name, asset(body, name));
  }
  if (!assets.has('index.html'))
    throw new Error(
      `The dashboard's files are missing from ${dir}: reinstall beckett (or run npm run build).`,
    );
  return assets;
}

function escapeAttr(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
