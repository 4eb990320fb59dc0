import { constants } from 'node:fs';
import { lstat, mkdir, open } from 'node:fs/promises';
import { dirname, relative, resolve, sep } from 'node:path';
import { FileAccessError } from '../errors.js';

/**
 * Write a file the user asked for (es init, es dump-migrations FILE) without ever writing through a
 * symbolic link, at the file or at a folder between `base` and it (a link planted there would send
 * the write elsewhere), and without replacing an existing file unless `overwrite` is set.
 * O_EXCL (new file) or O_NOFOLLOW (overwrite) makes the final check race-free.
 */
export async function writeUserFile(
  path: string,
  text: string,
  opts: { overwrite: boolean; base?: string; flag: string },
): Promise<void> {
  const target = resolve(path);
  const base = resolve(opts.base ?? dirname(target));
  const inside = relative(base, dirname(target));
  if (inside !== '' && !inside.startsWith('..')) {
    let dir = base;
    for (const part of inside.split(sep)) {
      dir = resolve(dir, part);
      const st = await lstat(dir).catch(() => undefined);
      if (st?.isSymbolicLink())
        throw new FileAccessError(
          `Refusing to write ${target}: ${dir} is a symbolic link.`,
          dir,
          'Replace the link with a real folder, or write somewhere else.',
        );
    }
  }
  await mkdir(dirname(target), { recursive: true });
  const st = await lstat(target).catch(() => undefined);
  if (st?.isSymbolicLink())
    throw new FileAccessError(
      `Refusing to write ${target}: it is a symbolic link.`,
      target,
      'Remove the link, or write somewhere else.',
    );
  if (st && !opts.overwrite)
    throw new FileAccessError(
      `Refusing to overwrite ${target}.`,
      target,
      `Pass ${opts.flag} to overwrite it, or choose another file.`,
    );
  if (st && !st.isFile())
    throw new FileAccessError(`Refusing to write ${target}: it is not a regular file.`, target);
  const flags = opts.overwrite
    ? constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW
    : constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;
  const handle = await open(target, flags, 0o644).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ELOOP')
      throw new FileAccessError(`Refusing to write ${target}: it is a symbolic link.`, target);
    if (err.code === 'EEXIST')
      throw new FileAccessError(
        `Refusing to overwrite ${target}.`,
        target,
        `Pass ${opts.flag} to overwrite it.`,
      );
    throw err;
  });
  try {
    await handle.writeFile(text);
  } finally {
    await handle.close();
  }
}
