/**
 * ImageFolder: torchvision's `datasets.ImageFolder` file discovery.
 *
 * root/
 *   class_a/ xxx.jpg, sub/yyy.png ...
 *   class_b/ ...
 *
 * - classes are the sub-folder names sorted as Python sorts strings (by code point), label = index;
 * - each class folder is walked recursively (following symlinks), directories in sorted path order
 *   and files sorted within a directory, like `sorted(os.walk(...))` + `sorted(fnames)`;
 * - a file is kept if its extension is one of torchvision's IMG_EXTENSIONS, compared case-insensitively;
 * - unlike torchvision, hidden entries (names starting with '.') are skipped, files and folders
 *   alike, so `.DS_Store`, `._foo.jpg` or `.ipynb_checkpoints` never become samples or classes;
 * - a missing root, a root without class folders, or a class without images is an error naming the path.
 */
import { readdirSync, statSync, type Stats } from 'node:fs';
import { extname, join, resolve } from 'node:path';

/** torchvision.datasets.folder.IMG_EXTENSIONS (0.14). */
export const IMG_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp'] as const;

export interface ImageSample {
  readonly path: string;
  readonly label: number;
}

export class DatasetError extends Error {
  readonly path: string;
  constructor(message: string, path: string) {
    super(message);
    this.name = 'DatasetError';
    this.path = path;
  }
}

/** Python's default string ordering: by Unicode code point (JS's `<` compares UTF-16 units). */
export function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done && y.done ? 0 : x.done ? -1 : 1;
    const cx = x.value.codePointAt(0)!;
    const cy = y.value.codePointAt(0)!;
    if (cx !== cy) return cx - cy;
  }
}

export function hasImageExtension(name: string, extensions: readonly string[] = IMG_EXTENSIONS): boolean {
  const ext = extname(name).toLowerCase();
  return ext !== '' && extensions.includes(ext);
}

function isHidden(name: string): boolean {
  return name.startsWith('.');
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path); // follows symlinks, like os.walk(followlinks=True) / entry.is_dir()
  } catch {
    return null;
  }
}

/** All image files under `dir`, in torchvision's order. */
function walkImages(dir: string, extensions: readonly string[]): string[] {
  // sorted(os.walk(dir)) orders the (root, dirs, files) tuples by root path.
  const dirs: string[] = [];
  const filesOf = new Map<string, string[]>();
  const seen = new Set<string>();
  const visit = (d: string): void => {
    const real = statOrNull(d);
    const key = real ? `${real.dev}:${real.ino}` : d;
    if (seen.has(key)) return; // symlink loop
    seen.add(key);
    dirs.push(d);
    const files: string[] = [];
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      if (isHidden(entry.name)) continue;
      const full = join(d, entry.name);
      const isDir = entry.isDirectory() || (entry.isSymbolicLink() && statOrNull(full)?.isDirectory() === true);
      if (isDir) visit(full);
      else if (hasImageExtension(entry.name, extensions)) files.push(entry.name);
    }
    filesOf.set(d, files.sort(compareCodePoints));
  };
  visit(dir);
  dirs.sort(compareCodePoints);
  return dirs.flatMap((d) => filesOf.get(d)!.map((f) => join(d, f)));
}

export interface ImageFolderOptions {
  /** Accepted extensions, lower case with the dot (default IMG_EXTENSIONS). */
  readonly extensions?: readonly string[];
}

export class ImageFolder {
  readonly root: string;
  readonly classes: readonly string[];
  readonly classToIdx: ReadonlyMap<string, number>;
  readonly samples: readonly ImageSample[];

  constructor(root: string, options: ImageFolderOptions = {}) {
    const extensions = (options.extensions ?? IMG_EXTENSIONS).map((e) => e.toLowerCase());
    this.root = resolve(root);
    const st = statOrNull(this.root);
    if (!st) throw new DatasetError(`dataset folder ${this.root} does not exist`, this.root);
    if (!st.isDirectory()) throw new DatasetError(`dataset path ${this.root} is not a folder`, this.root);

    const classes = readdirSync(this.root, { withFileTypes: true })
      .filter((e) => !isHidden(e.name) && (e.isDirectory() || (e.isSymbolicLink() && statOrNull(join(this.root, e.name))?.isDirectory() === true)))
      .map((e) => e.name)
      .sort(compareCodePoints);
    if (classes.length === 0) throw new DatasetError(`couldn't find any class folder in ${this.root}`, this.root);
    this.classes = classes;
    this.classToIdx = new Map(classes.map((c, i) => [c, i]));

    const samples: ImageSample[] = [];
    const empty: string[] = [];
    classes.forEach((cls, label) => {
      const files = walkImages(join(this.root, cls), extensions);
      if (files.length === 0) empty.push(join(this.root, cls));
      for (const path of files) samples.push({ path, label });
    });
    if (empty.length > 0) {
      throw new DatasetError(`found no valid image file in the class folder(s) ${empty.join(', ')}; supported extensions are: ${extensions.join(', ')}`, empty[0]!);
    }
    this.samples = samples;
  }

  get length(): number {
    return this.samples.length;
  }

  /**
   * The d2l layout: `<root>/<split>` is an ImageFolder (e.g. hotdog/train, hotdog/test).
   * A missing split folder is an error naming it.
   */
  static split(root: string, split: string, options?: ImageFolderOptions): ImageFolder {
    const dir = resolve(root, split);
    if (!statOrNull(dir)?.isDirectory()) throw new DatasetError(`split folder ${dir} does not exist (expected ${split}/ under ${resolve(root)})`, dir);
    return new ImageFolder(dir, options);
  }
}
