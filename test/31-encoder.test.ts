// The frozen encoder of the semantic-search workload (lib/embed/encoder.ts): Universal Sentence
// Encoder lite from its npm package. The head recomputed from the pooled h and the shards' W, b
// — in float64 here, and through an untrained adapter of every method — equals the package's own
// embeddings (cosine > 0.99999); a text's pooled vector does not depend on its batch; the cache
// returns the same bytes without encoding and keys on the texts.
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encoderHead, encoderIdentity, pooledCached, SentenceEncoder, useHead } from '../lib/embed/encoder.js';
import { EMBEDDING_METHODS, EmbeddingModel } from '../lib/embed/finetune.js';

const TEXTS = [
  'compress files',
  'A utility for compressing and decompressing archives in many formats, with a progress bar.',
  'x',
  'Ünïcödé text — with dashes, “quotes” and emoji 🙂',
  'the the the the the the the the the the the the the the the the the the the the',
  'GNU Compiler Collection: the C and C++ compilers, their preprocessor and the standard libraries needed to build programs.',
  '12345 67890',
  'What is a good tool to read PDF files on the command line?',
];

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0,
    aa = 0,
    bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

let encoder: SentenceEncoder;
let pooled: Float32Array;
let shipped: Float32Array;
const D = 512;

beforeAll(async () => {
  encoder = await SentenceEncoder.open({ workers: 2 });
  pooled = await encoder.pooled(TEXTS);
  shipped = await encoder.embed(TEXTS);
});
afterAll(async () => {
  await encoder?.close();
});

describe('the encoder package', () => {
  it('has a stable identity: the SHA-256 of its model files and its version', () => {
    const id = encoderIdentity();
    expect(id.integrity).toMatch(/^sha256-[0-9a-f]{64}$/);
    expect(id.version).toBe('0.2.0');
  });

  it('reads the head W [512 in, 512 out] and b [512] from the weight shards', () => {
    const { weight, bias, inFeatures, outFeatures } = encoderHead();
    expect([inFeatures, outFeatures, weight.length, bias.length]).toEqual([D, D, D * D, D]);
    expect(weight.every(Number.isFinite) && bias.every(Number.isFinite)).toBe(true);
    expect(weight.some((w) => w !== 0)).toBe(true);
  });

  it('hands out finite, non-zero pooled vectors and L2-normalised embeddings', () => {
    expect(pooled.length).toBe(TEXTS.length * D);
    expect(pooled.every(Number.isFinite)).toBe(true);
    for (let r = 0; r < TEXTS.length; r++) {
      const e = shipped.subarray(r * D, (r + 1) * D);
      expect(Math.abs(cosine(e, e) - 1)).toBeLessThan(1e-6);
      let n = 0;
      for (const v of e) n += v * v;
      expect(Math.abs(Math.sqrt(n) - 1)).toBeLessThan(1e-4);
      expect(pooled.subarray(r * D, (r + 1) * D).some((v) => v !== 0)).toBe(true);
    }
  });
});

describe('the head recomputed from h equals the package (cosine > 0.99999)', () => {
  it('in float64 from the model layout l2norm(tanh(h·W + b))', () => {
    const { weight, bias } = encoderHead();
    for (let r = 0; r < TEXTS.length; r++) {
      const z = new Float64Array(D);
      for (let o = 0; o < D; o++) {
        let s = bias[o];
        for (let i = 0; i < D; i++) s += pooled[r * D + i] * weight[i * D + o];
        z[o] = Math.tanh(s);
      }
      expect(cosine(z, shipped.subarray(r * D, (r + 1) * D))).toBeGreaterThan(0.99999);
    }
  });

  it.each(EMBEDDING_METHODS)('through an untrained %s adapter on the head', (method) => {
    const model = new EmbeddingModel(useHead(), method, { seed: 3 });
    try {
      const e = model.encode(pooled);
      for (let r = 0; r < TEXTS.length; r++) {
        expect(cosine(e.subarray(r * D, (r + 1) * D), shipped.subarray(r * D, (r + 1) * D))).toBeGreaterThan(0.99999);
      }
    } finally {
      model.dispose();
    }
  });
});

describe('pooled vectors', () => {
  it('do not depend on the batch a text is encoded in', async () => {
    const alone = await encoder.pooled([TEXTS[1]]);
    const reversed = await encoder.pooled([...TEXTS].reverse());
    const r = TEXTS.length - 2; // TEXTS[1] in the reversed list
    for (let j = 0; j < D; j++) {
      expect(Math.abs(alone[j] - pooled[D + j])).toBeLessThan(1e-5);
      expect(Math.abs(reversed[r * D + j] - pooled[D + j])).toBeLessThan(1e-5);
    }
  });

  it('of no texts are empty', async () => {
    expect((await encoder.pooled([])).length).toBe(0);
  });

  it('reject what is not an array of strings, naming the entry', async () => {
    await expect(encoder.pooled(['a', 3 as unknown as string])).rejects.toThrow(/Expected a string for texts\[1\] but received/);
    await expect(encoder.pooled('a' as unknown as string[])).rejects.toThrow(TypeError);
  });

  it('reject a worker count that is not a positive integer', async () => {
    await expect(SentenceEncoder.open({ workers: 0 })).rejects.toThrow(/workers/);
  });
});

describe('pooledCached', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'lowrank-encodings-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('encodes once, then returns the same bytes from the cache', async () => {
    const first = await pooledCached(TEXTS.slice(0, 3), { cacheDir: dir, encoder });
    expect(first.cached).toBe(false);
    expect(existsSync(first.file)).toBe(true);
    expect(statSync(first.file).size).toBe(3 * D * 4);
    const again = await pooledCached(TEXTS.slice(0, 3), { cacheDir: dir, encoder: () => Promise.reject(new Error('must not encode')) });
    expect(again.cached).toBe(true);
    expect(again.file).toBe(first.file);
    expect(Buffer.from(again.pooled.buffer).equals(Buffer.from(first.pooled.buffer))).toBe(true);
    for (let j = 0; j < 3 * D; j++) expect(Math.abs(first.pooled[j] - pooled[j])).toBeLessThan(1e-5);
  });

  it('keys on the texts: another list is another file', async () => {
    const a = await pooledCached(['one', 'two'], { cacheDir: dir, encoder });
    const b = await pooledCached(['one', 'two '], { cacheDir: dir, encoder });
    expect(a.file).not.toBe(b.file);
    expect(a.textsHash).not.toBe(b.textsHash);
  });
});
