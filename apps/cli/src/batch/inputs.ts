import { stat } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, relative, resolve, sep } from 'node:path';
import { glob, isDynamicPattern } from 'tinyglobby';
import { resolveFormat, FORMAT_EXTENSIONS, type InputFormat, type OutputFormat } from '@photoenhance/contracts';

/** File extensions taken as photos (lower-cased); anything else found is listed as skipped. */
export const PHOTO_EXTENSIONS: Readonly<Record<string, InputFormat>> = {
  '.jpg': 'jpeg',
  '.jpeg': 'jpeg',
  '.png': 'png',
  '.webp': 'webp',
  '.bmp': 'bmp',
  '.tif': 'tiff',
  '.tiff': 'tiff',
};

export interface Photo {
  /** Absolute path. */
  abs: string;
  /** Path relative to the source base, always with `/` (manifest key and output layout). */
  rel: string;
  size: number;
  mtimeMs: number;
}

export interface Skipped {
  rel: string;
  reason: string;
}

export interface Source {
  /** The folder relative paths are taken from: the folder given, a file's folder, or a glob's static prefix. */
  base: string;
  photos: Photo[];
  skipped: Skipped[];
}

/**
 * What `batch <folder or glob>` means: an existing folder is walked recursively, an existing file is one photo,
 * anything else is a glob (tinyglobby; `**`, `{a,b}`, `[...]`). Hidden files and the output folder are left out.
 * Sorted by relative path so runs and resumes see the same order.
 */
export async function findPhotos(spec: string, outDir: string): Promise<Source> {
  const abs = resolve(spec);
  const st = await stat(abs).catch(() => undefined);
  let base: string;
  let files: string[];
  if (st?.isDirectory()) {
    base = abs;
    files = await glob('**/*', { cwd: base, onlyFiles: true, dot: false, followSymbolicLinks: true, expandDirectories: false });
  } else if (st?.isFile()) {
    base = dirname(abs);
    files = [basename(abs)];
  } else if (isDynamicPattern(spec)) {
    base = globBase(spec);
    const pattern = toPosix(relative(base, isAbsolute(spec) ? spec : resolve(spec)));
    files = await glob(pattern, { cwd: base, onlyFiles: true, dot: false, followSymbolicLinks: true, expandDirectories: false });
  } else {
    throw new Error(`no such file or folder: ${spec}`);
  }
  const outRel = relative(base, resolve(outDir));
  const outInside = outRel !== '' && !outRel.startsWith('..') && !isAbsolute(outRel) ? `${toPosix(outRel)}/` : undefined;
  const photos: Photo[] = [];
  const skipped: Skipped[] = [];
  for (const f of files.map(toPosix).sort()) {
    if (outInside && f.startsWith(outInside)) continue;
    const ext = extname(f).toLowerCase();
    if (!(ext in PHOTO_EXTENSIONS)) {
      skipped.push({ rel: f, reason: `not a photo (${ext || 'no extension'}; photos are ${Object.keys(PHOTO_EXTENSIONS).join(' ')})` });
      continue;
    }
    const full = resolve(base, f);
    const fst = await stat(full).catch(() => undefined);
    if (!fst?.isFile()) continue;
    photos.push({ abs: full, rel: f, size: fst.size, mtimeMs: Math.floor(fst.mtimeMs) });
  }
  return { base, photos, skipped };
}

/** The static folder in front of a glob's first dynamic segment (`photos/2024/**\/*.jpg` → `photos/2024`). */
export function globBase(pattern: string): string {
  const parts = toPosix(pattern).split('/');
  const fixed: string[] = [];
  for (const p of parts.slice(0, -1)) {
    if (isDynamicPattern(p)) break;
    fixed.push(p);
  }
  const joined = fixed.join('/');
  return resolve(joined === '' && pattern.startsWith('/') ? '/' : joined || '.');
}

function toPosix(p: string): string {
  return sep === '/' ? p : p.split(sep).join('/');
}

/** Output format a photo is expected to come back in (the gateway sniffs content; this guesses from the extension). */
export function expectedFormat(rel: string, requested: 'auto' | OutputFormat | undefined): OutputFormat {
  const input = PHOTO_EXTENSIONS[extname(rel).toLowerCase()] ?? 'png';
  return resolveFormat(requested ?? 'auto', input);
}

/**
 * `<rel dir>/<stem>_enhanced.<ext>`; when two photos of one folder would land on the same name (a.jpg and a.png
 * with --format png), `<stem>_<source ext>_enhanced.<ext>` instead.
 */
export function outputRel(rel: string, format: OutputFormat, disambiguate: boolean): string {
  const dir = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/') + 1) : '';
  const name = rel.slice(dir.length);
  const ext = extname(name);
  const stem = name.slice(0, name.length - ext.length);
  const tag = disambiguate ? `_${ext.slice(1).toLowerCase()}` : '';
  return `${dir}${stem}${tag}_enhanced.${FORMAT_EXTENSIONS[format]}`;
}

/** Relative output names for every photo, disambiguated where two would collide. */
export function planOutputs(photos: readonly Photo[], requested: 'auto' | OutputFormat | undefined): Map<string, string> {
  const plain = new Map<string, string[]>();
  for (const p of photos) {
    const o = outputRel(p.rel, expectedFormat(p.rel, requested), false).toLowerCase();
    plain.set(o, [...(plain.get(o) ?? []), p.rel]);
  }
  const out = new Map<string, string>();
  for (const p of photos) {
    const o = outputRel(p.rel, expectedFormat(p.rel, requested), false);
    const clash = (plain.get(o.toLowerCase())?.length ?? 0) > 1;
    out.set(p.rel, clash ? outputRel(p.rel, expectedFormat(p.rel, requested), true) : o);
  }
  return out;
}
