// search.topk and exact search (embed.search / embed.searchSync). topk against a plain JS
// reference (a full sort of each row by the documented order: descending, ties to the lower
// column, NaN last, -0 equal to +0) at awkward sizes, on random values, on values drawn from a
// small set (many exact ties) and on values with NaN, ±Infinity and ±0, compared bit for bit;
// results poisoned through the allocators' reuse first (the native checker poisons every size);
// the same bits for any thread count and from topkAsync; the native boundary and the error texts.
// Exact search against a float64 brute force with a batchRows that does not divide n, async
// and sync the same bits, every temporary disposed. With a CUDA device: the same on device
// tensors.
import { describe, expect, it } from 'vitest';
import { embed, memory, nn, search, tensor, Tensor, zeros, type Device } from '../lib/index.js';
import { native } from '../lib/native.js';
import { expectSameForAnyThreadCount, tensorPool, testDevices } from './helpers/tensors.js';
import { errorOf, mulberry32, randomF32 } from './helpers/reference.js';

const { keep } = tensorPool(0);

const DEVICES = testDevices('test/28-topk');

let seed = 2800;
const SPECIALS = [NaN, Infinity, -Infinity, 0, -0, 1, -1, 0.5];
const SMALL_SET = [-1, 0, 0.25, 1];

type Kind = 'random' | 'ties' | 'specials';

/** rows·cols float32 values of the given kind (ties: from a set of four; specials: NaN, ±Infinity, ±0 among a few numbers). */
function values(kind: Kind, n: number): Float32Array {
  if (kind === 'random') return randomF32(n, seed++);
  const next = mulberry32(seed++);
  const set = kind === 'ties' ? SMALL_SET : SPECIALS;
  return Float32Array.from({ length: n }, () => set[Math.floor(next() * set.length)]);
}

/** The documented order: a before b. */
function better(a: number, ia: number, b: number, ib: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(b) && (!Number.isNaN(a) || ia < ib);
  return a > b || (a === b && ia < ib); // -0 === 0
}

/** Each row's k best columns by a full sort, and their values' bits. */
function topkRef(x: Float32Array, rows: number, cols: number, k: number) {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const indices = new Int32Array(rows * k),
    valueBits = new Uint32Array(rows * k);
  for (let r = 0; r < rows; r++) {
    const order = Array.from({ length: cols }, (_, j) => j);
    order.sort((i, j) => (better(x[r * cols + i], i, x[r * cols + j], j) ? -1 : 1));
    for (let i = 0; i < k; i++) {
      indices[r * k + i] = order[i];
      valueBits[r * k + i] = bits[r * cols + order[i]];
    }
  }
  return { indices, valueBits };
}

const bitsOf = (t: Tensor) => new Uint32Array(t.toFloat32Array().buffer);

/** Hands the allocator two poisoned buffers of a [rows, k] result's size, so the next results likely reuse them. */
function poison(rows: number, k: number, device: Device): void {
  for (let i = 0; i < 2; i++) {
    const t = zeros([rows, k], { dtype: 'int32', device });
    nn.fill(t, -7); // as float32 bits: a NaN no input holds
    t.dispose();
  }
}

describe.each(DEVICES)('search.topk on %s', (device) => {
  const CASES: Array<[number, number, number, Kind]> = [];
  for (const rows of [1, 7, 33])
    for (const cols of [1, 7, 33, 1000])
      for (const k of [...new Set([1, 3, cols])].filter((k) => k <= cols))
        for (const kind of ['random', 'ties', 'specials'] as const) CASES.push([rows, cols, k, kind]);

  it.each(CASES)('rows = %i, cols = %i, k = %i, %s values: indices and values against a full sort, bit for bit', (rows, cols, k, kind) => {
    const x = values(kind, rows * cols);
    const scores = keep(tensor(x, [rows, cols], { device }));
    const ref = topkRef(x, rows, cols, k);
    poison(rows, k, device);
    const r = search.topk(scores, k);
    keep(r.indices);
    keep(r.values);
    expect([r.indices.shape, r.indices.dtype, r.indices.device, r.values.shape, r.values.dtype, r.values.device]).toEqual([
      [rows, k],
      'int32',
      device,
      [rows, k],
      'float32',
      device,
    ]);
    expect(r.indices.toInt32Array()).toEqual(ref.indices);
    expect(bitsOf(r.values)).toEqual(ref.valueBits);
  });

  it('the order in full: NaN after -Infinity, -0 equal to +0, ties to the lower column', () => {
    const x = [NaN, -Infinity, 0, -0, 2, NaN, 2, -1, Infinity, 0];
    const r = search.topk(keep(tensor(x, [1, 10], { device })), 10);
    keep(r.indices);
    keep(r.values);
    expect(Array.from(r.indices.toInt32Array())).toEqual([8, 4, 6, 2, 3, 9, 7, 1, 0, 5]);
    expect(Array.from(r.values.toFloat32Array())).toEqual([Infinity, 2, 2, 0, -0, 0, -1, -Infinity, NaN, NaN]);
    expect(Object.is(r.values.toFloat32Array()[4], -0)).toBe(true);
  });

  it('topkAsync gives the same bits off the event loop, and rejects what topk refuses', async () => {
    const x = values('ties', 33 * 1000);
    const scores = keep(tensor(x, [33, 1000], { device }));
    const sync = search.topk(scores, 17);
    const pending = search.topkAsync(scores, 17);
    expect(pending).toBeInstanceOf(Promise);
    const r = await pending;
    for (const t of [sync.indices, sync.values, r.indices, r.values]) keep(t);
    expect(r.indices.toInt32Array()).toEqual(sync.indices.toInt32Array());
    expect(bitsOf(r.values)).toEqual(bitsOf(sync.values));
    await expect(search.topkAsync(scores, 1001)).rejects.toThrow(
      "Expected a positive integer at most 1000 (scores' columns) for k but received 1001",
    );
  });

  if (device === 'cpu')
    it('the same bits for any thread count', () => {
      const scores = keep(tensor(values('specials', 33 * 1000), [33, 1000]));
      const once = () => {
        const r = search.topk(scores, 40);
        const out = [Array.from(r.indices.toInt32Array()), Array.from(bitsOf(r.values))];
        r.indices.dispose();
        r.values.dispose();
        return out;
      };
      expectSameForAnyThreadCount(once);
    });

  it('errors: dtype, shape, k, a disposed tensor', () => {
    const scores = keep(tensor(values('random', 6), [2, 3], { device }));
    const ints = keep(zeros([2, 3], { dtype: 'int32', device })),
      half = keep(zeros([2, 3], { dtype: 'bfloat16', device }));
    for (const [bad, dtype] of [
      [ints, 'int32'],
      [half, 'bfloat16'],
    ] as const)
      expect(errorOf(() => search.topk(bad, 1))).toEqual({
        cls: 'TypeError',
        message: `Expected a float32 Tensor for scores but received ${bad.describe()} (dtype is ${dtype})`,
      });
    const flat = keep(tensor(values('random', 6), [6], { device })),
      empty = keep(zeros([0, 3], { device })),
      cube = keep(zeros([1, 2, 3], { device }));
    for (const bad of [flat, empty, cube])
      expect(errorOf(() => search.topk(bad, 1))).toEqual({
        cls: 'RangeError',
        message: `Expected a 2-D tensor [rows, cols] with rows >= 1 and 1 <= cols <= 2147483647 for scores but received ${bad.describe()}`,
      });
    for (const k of [0, -1])
      expect(errorOf(() => search.topk(scores, k))).toEqual({
        cls: 'RangeError',
        message: `Expected a positive integer for k but received ${k}`,
      });
    expect(errorOf(() => search.topk(scores, 4))).toEqual({
      cls: 'RangeError',
      message: "Expected a positive integer at most 3 (scores' columns) for k but received 4",
    });
    for (const [k, text] of [
      [1.5, '1.5'],
      [NaN, 'NaN'],
      ['2', '"2"'],
      [undefined, 'undefined'],
    ] as const)
      expect(errorOf(() => search.topk(scores, k as number))).toEqual({
        cls: 'TypeError',
        message: `Expected a positive integer for k but received ${text}`,
      });
    expect(errorOf(() => search.topk([1, 2] as unknown as Tensor, 1))).toEqual({
      cls: 'TypeError',
      message: 'Expected a Tensor for scores but received [1, 2]',
    });
    const gone = tensor(values('random', 6), [2, 3], { device });
    gone.dispose();
    expect(errorOf(() => search.topk(gone, 1))).toEqual({
      cls: 'TypeError',
      message: `Expected a live Tensor for scores but received ${gone.describe()} (it was disposed)`,
    });
  });
});

describe('topk at the native boundary', () => {
  const f = (n: number) => ({ data: new Float32Array(n), dtype: 0 });
  const i32 = (n: number) => ({ data: new Int32Array(n), dtype: 3 });
  const args = { rows: 2, cols: 3, k: 2, scores: f(6), indices: i32(4), values: f(4) };

  it('runs now and off the event loop; indices must be int32 of rows·k elements; k at most cols', async () => {
    expect(native().topk(args)).toBeUndefined();
    await expect(native().topk(args, true)).resolves.toBeUndefined();
    expect(errorOf(() => native().topk({ ...args, indices: f(4) }))).toEqual({
      cls: 'TypeError',
      message: 'topk: indices must be int32 on cpu but is float32',
    });
    expect(errorOf(() => native().topk({ ...args, indices: i32(6) }))).toEqual({
      cls: 'RangeError',
      message: 'topk: indices has 6 elements but its shape needs 4',
    });
    expect(errorOf(() => native().topk({ ...args, k: 4, indices: i32(8), values: f(8) }))).toEqual({
      cls: 'RangeError',
      message: 'topk: k must be at most cols',
    });
    expect(errorOf(() => native().topk({ ...args, k: 0 }))).toEqual({
      cls: 'RangeError',
      message: 'topk: every dimension must be positive',
    });
  });
});

// ---- exact search ----------------------------------------------------------------------------

/** Rows of N(0, 1) values, each scaled to unit length (cosine similarity as a dot product). */
function unitRows(rows: number, d: number): Float32Array {
  const x = randomF32(rows * d, seed++);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[r * d + j] ** 2;
    for (let j = 0; j < d; j++) x[r * d + j] /= Math.sqrt(s);
  }
  return x;
}

/**
 * Checks a search result against float64 brute force: each row's scores descending, each within
 * tol of the float64 dot product of its document and of the reference's score at that rank, the
 * documents distinct, and the reference's document wherever its score is more than 2·tol from
 * its neighbours' (no near-tie that float32 rounding may order either way).
 */
function expectExact(
  r: embed.SearchResult,
  q: Float32Array,
  docs: Float32Array,
  n: number,
  N: number,
  d: number,
  k: number,
  device: Device,
) {
  const tol = device === 'cuda' ? 1e-4 : 1e-5; // CUDA: split-TF32 products
  expect([r.k, r.rows, r.indices.length, r.scores.length]).toEqual([k, n, n * k, n * k]);
  for (let i = 0; i < n; i++) {
    const s = Array.from({ length: N }, (_, j) => {
      let t = 0;
      for (let c = 0; c < d; c++) t += q[i * d + c] * docs[j * d + c];
      return t;
    });
    const order = s.map((_, j) => j).sort((a, b) => s[b] - s[a] || a - b);
    const row = Array.from(r.indices.subarray(i * k, (i + 1) * k));
    expect(new Set(row).size).toBe(k);
    for (let rank = 0; rank < k; rank++) {
      const j = row[rank],
        got = r.scores[i * k + rank];
      expect(j >= 0 && j < N, `query ${i} rank ${rank}: ${j}`).toBe(true);
      if (rank > 0) expect(got).toBeLessThanOrEqual(r.scores[i * k + rank - 1]);
      expect(Math.abs(got - s[j]), `query ${i} rank ${rank}`).toBeLessThanOrEqual(tol);
      expect(Math.abs(got - s[order[rank]]), `query ${i} rank ${rank}`).toBeLessThanOrEqual(tol);
      const apart = (other: number | undefined) => other === undefined || Math.abs(s[other] - s[order[rank]]) > 2 * tol;
      if (apart(order[rank - 1]) && apart(order[rank + 1])) expect(j, `query ${i} rank ${rank}`).toBe(order[rank]);
    }
  }
}

describe.each(DEVICES)('embed.search on %s', (device) => {
  const CASES: Array<[number, number, number, number, number | undefined]> = [
    [1, 1, 1, 1, undefined],
    [7, 33, 5, 3, 3],
    [33, 1000, 17, 10, 4],
    [20, 7, 64, 7, 6],
    [33, 1000, 3, 1000, undefined],
    [9, 70, 31, 5, 100],
  ];

  it.each(CASES)(
    'n = %i, N = %i, d = %i, k = %i, batchRows %s: against float64 brute force; async and sync the same bits',
    async (n, N, d, k, batchRows) => {
      const qv = unitRows(n, d),
        dv = unitRows(N, d);
      const queries = keep(tensor(qv, [n, d], { device })),
        documents = keep(tensor(dv, [N, d], { device }));
      const opts = batchRows === undefined ? { k } : { k, batchRows };
      const before = memory().numTensors;
      const pending = embed.search(queries, documents, opts);
      expect(pending).toBeInstanceOf(Promise);
      const r = await pending;
      expect(memory().numTensors).toBe(before);
      expectExact(r, qv, dv, n, N, d, k, device);
      const s = embed.searchSync(queries, documents, opts);
      expect(memory().numTensors).toBe(before);
      expect(s.indices).toEqual(r.indices);
      expect(new Uint32Array(s.scores.buffer)).toEqual(new Uint32Array(r.scores.buffer));
      expect(queries.toFloat32Array()).toEqual(qv); // the inputs are left as they were
    },
  );

  it('the default block: many queries against many documents in several blocks of at most 32 MiB', async () => {
    const n = 5,
      N = 2 ** 23 / 4 + 3, // one query row of scores is a little over 8 MiB: blocks of 3 rows
      d = 1;
    const dv = Float32Array.from({ length: N }, (_, j) => ((j * 7919) % 1001) / 1000 - 0.5);
    const qv = Float32Array.from([1, -1, 0.5, 2, -0.25]);
    const r = await embed.search(keep(tensor(qv, [n, d], { device })), keep(tensor(dv, [N, d], { device })), { k: 4 });
    for (let i = 0; i < n; i++) {
      // d = 1: the best documents are those of the largest (q > 0) or smallest (q < 0) value, ties to the lower row.
      const order = Array.from({ length: N }, (_, j) => j)
        .filter((j) => dv[j] === (qv[i] > 0 ? 0.5 : -0.5))
        .slice(0, 4);
      expect(Array.from(r.indices.subarray(i * 4, i * 4 + 4)), `query ${i}`).toEqual(order);
    }
  });

  it('errors: k beyond the documents, shapes, dtypes, options', async () => {
    const queries = keep(tensor(unitRows(4, 5), [4, 5], { device })),
      documents = keep(tensor(unitRows(6, 5), [6, 5], { device }));
    expect(errorOf(() => embed.searchSync(queries, documents, { k: 7 }))).toEqual({
      cls: 'RangeError',
      message: "Expected a positive integer at most 6 (the documents' rows) for options.k but received 7",
    });
    await expect(embed.search(queries, documents, { k: 7 })).rejects.toThrow(RangeError);
    expect(errorOf(() => embed.searchSync(queries, documents, { k: 0 }))).toEqual({
      cls: 'RangeError',
      message: 'Expected a positive integer for options.k but received 0',
    });
    expect(errorOf(() => embed.searchSync(queries, documents, {} as { k: number }))).toEqual({
      cls: 'TypeError',
      message: 'Expected a positive integer for options.k but received undefined',
    });
    expect(errorOf(() => embed.searchSync(queries, documents, { k: 2, batchRows: 0 }))).toEqual({
      cls: 'RangeError',
      message: 'Expected a positive integer for options.batchRows but received 0',
    });
    expect(errorOf(() => embed.searchSync(queries, documents, 3 as unknown as { k: number }))).toEqual({
      cls: 'TypeError',
      message: 'Expected an options object for options but received 3',
    });
    const wide = keep(tensor(unitRows(6, 4), [6, 4], { device })),
      flat = keep(tensor(unitRows(1, 20), [20], { device }));
    for (const bad of [wide, flat])
      expect(errorOf(() => embed.searchSync(queries, bad, { k: 1 }))).toEqual({
        cls: 'RangeError',
        message: `Expected a 2-D tensor [N, d] with N >= 1 and d = 5 (like queries) for documents but received ${bad.describe()}`,
      });
    expect(errorOf(() => embed.searchSync(flat, documents, { k: 1 }))).toEqual({
      cls: 'RangeError',
      message: `Expected a 2-D tensor [n, d] with n, d >= 1 for queries but received ${flat.describe()}`,
    });
    const ints = keep(zeros([4, 5], { dtype: 'int32', device }));
    expect(errorOf(() => embed.searchSync(ints, documents, { k: 1 }))).toEqual({
      cls: 'TypeError',
      message: `Expected a float32 Tensor for queries but received ${ints.describe()} (dtype is int32)`,
    });
  });
});

describe('embed.search on two devices', () => {
  it('mixed devices are a RangeError naming the second tensor', () => {
    // A stand-in: a tensor that claims CUDA over a host array (the internal constructor), never run on.
    const fake = keep(new Tensor(unitRows(6, 5), [6, 5], 'float32', 'cuda'));
    const queries = keep(tensor(unitRows(4, 5), [4, 5]));
    expect(errorOf(() => embed.searchSync(queries, fake, { k: 1 }))).toEqual({
      cls: 'RangeError',
      message: `Expected a tensor on cpu (like queries) for documents but received ${fake.describe()}`,
    });
  });
});
