// metrics: the retrieval metrics (recall@k, reciprocal rank@k, nDCG@k, average precision@k) on
// small rankings whose values are worked out by hand in the comments, evaluateRetrieval on a
// score matrix ranked here by a reference sort (ties by lower document id), the paired bootstrap
// against degenerate cases and an exact enumeration of every resample, properties over random
// rankings (fast-check), and the error texts of the argument checks.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { metrics } from '../lib/index.js';
import { errorOf, mulberry32 } from './helpers/reference.js';

const { recallAt, reciprocalRankAt, ndcgAt, averagePrecisionAt, evaluateRetrieval, pairedBootstrap } = metrics;

/** The four metrics of one ranking at cutoff k, in one object. */
const all = (ranked: number[], relevant: number[], k: number) => {
  const rel = new Set(relevant);
  return {
    recall: recallAt(ranked, rel, k),
    rr: reciprocalRankAt(ranked, rel, k),
    ndcg: ndcgAt(ranked, rel, k),
    ap: averagePrecisionAt(ranked, rel, k),
  };
};

/** Expects each metric of `got` to be within 1e-15 of `want` (the hand values). */
function expectScores(got: Record<string, number>, want: Record<string, number>): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const key of Object.keys(want)) expect(got[key], key).toBeCloseTo(want[key], 15);
}

const L3 = 1 / Math.log2(3); // 0.6309297535714575, the discount of rank 2

describe('metrics of one ranking (hand values)', () => {
  // Twelve documents 0..11; the relevant one (7) placed at a chosen rank, the others in id order.
  const placed = (rank: number) => {
    const rest = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11];
    return [...rest.slice(0, rank - 1), 7, ...rest.slice(rank - 1)];
  };

  it('a single relevant document at rank 1', () => {
    // Hit at rank 1: recall 1/1, RR 1/1, DCG 1/log2(2) = 1 = IDCG, AP precision@1 / min(1, k) = 1.
    expectScores(all(placed(1), [7], 10), { recall: 1, rr: 1, ndcg: 1, ap: 1 });
    expectScores(all(placed(1), [7], 1), { recall: 1, rr: 1, ndcg: 1, ap: 1 });
  });

  it('a single relevant document at rank 3', () => {
    // k = 10: recall 1, RR 1/3, DCG 1/log2(4) = 0.5 over IDCG 1, AP precision@3 = 1/3.
    expectScores(all(placed(3), [7], 10), { recall: 1, rr: 1 / 3, ndcg: 0.5, ap: 1 / 3 });
    // k = 3 still sees it; k = 2 does not: every metric 0.
    expectScores(all(placed(3), [7], 3), { recall: 1, rr: 1 / 3, ndcg: 0.5, ap: 1 / 3 });
    expectScores(all(placed(3), [7], 2), { recall: 0, rr: 0, ndcg: 0, ap: 0 });
  });

  it('a single relevant document at rank 11, beyond the cutoff 10', () => {
    expectScores(all(placed(11), [7], 10), { recall: 0, rr: 0, ndcg: 0, ap: 0 });
    // At k = 11: RR 1/11, nDCG 1/log2(12) = 0.27894294565112987, AP 1/11.
    expectScores(all(placed(11), [7], 11), { recall: 1, rr: 1 / 11, ndcg: 0.27894294565112987, ap: 1 / 11 });
  });

  it('several relevant documents', () => {
    // Relevant {3, 5, 8}, hits at ranks 1, 3 and 10.
    const ranked = [3, 0, 5, 1, 2, 4, 6, 7, 9, 8];
    // k = 10: recall 3/3; RR 1;
    // DCG = 1 + 1/log2(4) + 1/log2(11) = 1 + 0.5 + 0.2890648263178879 = 1.7890648263178879,
    // IDCG = 1 + 1/log2(3) + 1/log2(4) = 2.1309297535714578, nDCG = 0.8395700624665824;
    // AP = (1/1 + 2/3 + 3/10) / min(3, 10) = (59/30) / 3 = 59/90.
    expectScores(all(ranked, [3, 5, 8], 10), { recall: 1, rr: 1, ndcg: 0.8395700624665824, ap: 59 / 90 });
    // k = 3: hits at 1 and 3: recall 2/3; DCG 1.5 over IDCG 2.1309297535714578; AP (1 + 2/3) / 3 = 5/9.
    expectScores(all(ranked, [3, 5, 8], 3), { recall: 2 / 3, rr: 1, ndcg: 1.5 / (1.5 + L3), ap: 5 / 9 });
    // k = 1: recall 1/3, RR 1, nDCG 1 / 1 = 1, AP 1 / min(3, 1) = 1.
    expectScores(all(ranked, [3, 5, 8], 1), { recall: 1 / 3, rr: 1, ndcg: 1, ap: 1 });
  });

  it('more relevant documents than the cutoff: nDCG and AP normalise by min(|relevant|, k)', () => {
    // Relevant {4, 5, 6} at ranks 1, 2, 3; k = 2 sees two of them.
    // recall 2/3; RR 1; DCG = 1 + 1/log2(3) = IDCG over min(3, 2) = 2 ranks, so nDCG 1;
    // AP = (1/1 + 2/2) / min(3, 2) = 1 (sentence-transformers' convention; TREC's AP, over |relevant|, would be 2/3).
    expectScores(all([4, 5, 6, 0], [4, 5, 6], 2), { recall: 2 / 3, rr: 1, ndcg: 1, ap: 1 });
    // Hits at ranks 2 and 4 of a k = 3 cutoff: only rank 2 counts. recall 1/3 (|rel| = 3), RR 1/2,
    // DCG 1/log2(3) over IDCG 1 + 1/log2(3) + 1/2, AP (1/2) / 3 = 1/6.
    expectScores(all([0, 4, 1, 5, 6], [4, 5, 6], 3), { recall: 1 / 3, rr: 1 / 2, ndcg: L3 / (1.5 + L3), ap: 1 / 6 });
  });

  it('a relevant document the ranking never returns still counts in the denominators', () => {
    // Relevant {0, 99}, 99 not ranked: recall 1/2; RR 1; DCG 1 over IDCG 1 + 1/log2(3): 0.6131471927654584; AP 1 / 2.
    expectScores(all([0, 1, 2], [0, 99], 10), { recall: 1 / 2, rr: 1, ndcg: 0.6131471927654584, ap: 1 / 2 });
  });

  it('a ranking shorter than k (a pool of three documents) is read as the whole pool', () => {
    // Relevant {1} at rank 3 of 3, k = 10: recall 1, RR 1/3, nDCG 0.5, AP 1/3; as at k = 3.
    expectScores(all([2, 0, 1], [1], 10), { recall: 1, rr: 1 / 3, ndcg: 0.5, ap: 1 / 3 });
    expectScores(all([2, 0, 1], [1], 10), all([2, 0, 1], [1], 3));
    // Relevant {0, 1} at ranks 2, 3: DCG 1/log2(3) + 1/2 over IDCG 1 + 1/log2(3) = 0.6934264036172708;
    // AP (1/2 + 2/3) / 2 = 7/12; RR 1/2; recall 1.
    expectScores(all([2, 0, 1], [0, 1], 10), { recall: 1, rr: 1 / 2, ndcg: 0.6934264036172708, ap: 7 / 12 });
    // An empty ranking (an empty pool) scores 0 everywhere.
    expectScores(all([], [0], 10), { recall: 0, rr: 0, ndcg: 0, ap: 0 });
  });

  it('takes typed arrays as rankings', () => {
    expectScores(
      {
        recall: recallAt(Int32Array.of(2, 0, 1), new Set([0, 1]), 10),
        rr: reciprocalRankAt(Float64Array.of(2, 0, 1), new Set([0, 1]), 10),
        ndcg: ndcgAt(Uint32Array.of(2, 0, 1), new Set([0, 1]), 10),
        ap: averagePrecisionAt(Int32Array.of(2, 0, 1), new Set([0, 1]), 10),
      },
      all([2, 0, 1], [0, 1], 10),
    );
  });
});

/** The reference top-k: each row of scores [rows, docs] sorted by score descending, ties by lower document id. */
function referenceTopK(scores: number[][], k: number): { indices: Int32Array; k: number } {
  const indices = new Int32Array(scores.length * k);
  scores.forEach((row, i) => {
    const order = row.map((_, d) => d).sort((x, y) => row[y] - row[x] || x - y);
    indices.set(order.slice(0, k), i * k);
  });
  return { indices, k };
}

describe('evaluateRetrieval', () => {
  it('ties: documents of equal score are ranked by lower id, and scored in that order', () => {
    const scores = [
      [0.1, 0.9, 0.5, 0.9, 0.2], // docs 1 and 3 tie at 0.9: the order is 1, 3, 2, 4, 0
      [0.3, 0.3, 0.3, 0.8, 0.0], // docs 0, 1, 2 tie at 0.3: the order is 3, 0, 1, 2, 4
    ];
    const ranking = referenceTopK(scores, 5);
    expect(Array.from(ranking.indices)).toEqual([1, 3, 2, 4, 0, 3, 0, 1, 2, 4]);
    const r = evaluateRetrieval(ranking, [[3], [2, 4]]);
    expect(r.queries).toBe(2);
    // Query 0, relevant {3} at rank 2 (after its tie partner 1): recall@1 0, recall@10 1, MRR 1/2,
    // nDCG 1/log2(3) = 0.6309297535714575, MAP (1/2) / 1 = 1/2. (Had the tie gone the other way, all would be 1.)
    // Query 1, relevant {2, 4} at ranks 4 and 5: recall@1 0, recall@10 1, MRR 1/4,
    // nDCG (1/log2(5) + 1/log2(6)) / (1 + 1/log2(3)) = 0.5012658353418871, MAP (1/4 + 2/5) / 2 = 0.325.
    const want = {
      ndcg10: [L3, 0.5012658353418871],
      recall1: [0, 0],
      recall10: [1, 1],
      mrr10: [1 / 2, 1 / 4],
      map100: [1 / 2, 0.325],
    };
    for (const [key, values] of Object.entries(want)) {
      const got = r.perQuery[key as keyof typeof want];
      expect(got, key).toBeInstanceOf(Float64Array);
      expect(got.length).toBe(2);
      values.forEach((v, i) => expect(got[i], `${key}[${i}]`).toBeCloseTo(v, 15));
      expect(r.mean[key as keyof typeof want], key).toBeCloseTo((values[0] + values[1]) / 2, 15);
    }
  });

  it('a pool smaller than the cutoffs: k = the pool size', () => {
    // Three documents, k = 3 < 10 < 100. Query 0: relevant {1} at rank 3 of [2, 0, 1]
    // (recall@1 0, recall@10 1, MRR 1/3, nDCG 0.5, MAP 1/3); query 1: relevant {0, 1} at ranks 2, 3 of [2, 0, 1]
    // (recall@1 0, recall@10 1, MRR 1/2, nDCG 0.6934264036172708, MAP 7/12).
    const r = evaluateRetrieval({ indices: Int32Array.of(2, 0, 1, 2, 0, 1), k: 3 }, [[1], [0, 1]]);
    const want = { ndcg10: [0.5, 0.6934264036172708], recall1: [0, 0], recall10: [1, 1], mrr10: [1 / 3, 1 / 2], map100: [1 / 3, 7 / 12] };
    for (const [key, values] of Object.entries(want))
      values.forEach((v, i) => expect(r.perQuery[key as keyof typeof want][i], `${key}[${i}]`).toBeCloseTo(v, 15));
  });

  it('per-query values are the single-query metrics at 10, 1, 10, 10 and 100; each mean the mean of its perQuery', () => {
    const rows = 37,
      docs = 150,
      k = 120;
    const next = mulberry32(2900);
    const scores = Array.from({ length: rows }, () => Array.from({ length: docs }, () => Math.floor(next() * 20) / 20)); // many ties
    const relevant = Array.from({ length: rows }, (_, i) => {
      const ids = new Set<number>();
      const count = 1 + (i % 5);
      while (ids.size < count) ids.add(Math.floor(next() * docs));
      return [...ids];
    });
    const ranking = referenceTopK(scores, k);
    const r = evaluateRetrieval(ranking, relevant);
    expect(r.queries).toBe(rows);
    for (let i = 0; i < rows; i++) {
      const row = ranking.indices.subarray(i * k, (i + 1) * k),
        rel = new Set(relevant[i]);
      expect(r.perQuery.ndcg10[i]).toBe(ndcgAt(row, rel, 10));
      expect(r.perQuery.recall1[i]).toBe(recallAt(row, rel, 1));
      expect(r.perQuery.recall10[i]).toBe(recallAt(row, rel, 10));
      expect(r.perQuery.mrr10[i]).toBe(reciprocalRankAt(row, rel, 10));
      expect(r.perQuery.map100[i]).toBe(averagePrecisionAt(row, rel, 100));
    }
    for (const key of ['ndcg10', 'recall1', 'recall10', 'mrr10', 'map100'] as const) {
      let sum = 0;
      for (const v of r.perQuery[key]) sum += v;
      expect(r.mean[key], key).toBe(sum / rows);
    }
    expect(Object.keys(r.mean)).toEqual(['ndcg10', 'recall1', 'recall10', 'mrr10', 'map100']);
  });
});

describe('pairedBootstrap', () => {
  /** n dyadic scores (multiples of 1/8 in [0, 1]): sums of them are exact in double. */
  const dyadic = (n: number, seed: number) => {
    const next = mulberry32(seed);
    return Float64Array.from({ length: n }, () => Math.floor(next() * 9) / 8);
  };

  it('identical systems: difference 0 and the interval [0, 0]', () => {
    const next = mulberry32(29);
    const a = Array.from({ length: 50 }, () => next());
    const r = pairedBootstrap(a, [...a]);
    expect(r).toEqual({ difference: 0, low: 0, high: 0, confidence: 0.95, samples: 10000, seed: 0 });
  });

  it('b = a + c: difference c and the interval [c, c]', () => {
    // Every paired difference is exactly c (dyadic a and c), so is every resample's mean.
    for (const c of [0.25, -0.375]) {
      const a = dyadic(40, 7);
      const b = a.map((x) => x + c);
      const r = pairedBootstrap(a, b, { samples: 2000, seed: 5 });
      expect([r.difference, r.low, r.high]).toEqual([c, c, c]);
    }
  });

  it('n = 3: against the exact bootstrap distribution of all 27 resamples', () => {
    // a = [0, 0.5, 1], b = [1, 0.75, 0.5]: paired differences d = [1, 0.25, -0.5], mean 0.75 / 3 = 0.25.
    // A resample takes n1, n2, n3 copies of d[0], d[1], d[2] (n1 + n2 + n3 = 3) in 3! / (n1! n2! n3!)
    // of the 27 ordered draws; its mean is (n1 - n3/2 + n2/4) / 3:
    //   mean  -0.5  -0.25  0     0.25  0.5   0.75  1
    //   ways   1     3     6     7     6     3     1     (of 27)
    //   CDF    .037  .148  .370  .630  .852  .963  1
    // So the 2.5 % and 97.5 % points are -0.5 and 1, the 25 % and 75 % points 0 and 0.5, and the
    // mean of the 27 resample means is exactly 0.25.
    const a = [0, 0.5, 1],
      b = [1, 0.75, 0.5];
    const d = b.map((x, i) => x - a[i]);
    const sums: number[] = [];
    for (const i of [0, 1, 2]) for (const j of [0, 1, 2]) for (const l of [0, 1, 2]) sums.push(d[i] + d[j] + d[l]);
    const means = sums.map((s) => s / 3).sort((x, y) => x - y);
    expect(means.length).toBe(27);
    const total = sums.reduce((x, y) => x + y, 0); // exact: the d are dyadic
    /** The exact distribution's u-quantile: the smallest mean m with P(mean <= m) >= u. */
    const quantile = (u: number) => means[Math.max(0, Math.ceil(u * 27) - 1)];
    for (const [confidence, low, high] of [
      [0.95, -0.5, 1],
      [0.5, 0, 0.5],
    ]) {
      expect([quantile((1 - confidence) / 2), quantile((1 + confidence) / 2)]).toEqual([low, high]);
      const r = pairedBootstrap(a, b, { confidence, seed: 11 });
      expect(r.difference).toBe(total / 27 / 3);
      expect(r.difference).toBe(0.25);
      // Sampling error of a 10000-draw percentile is about sqrt(p(1 - p) / 10000) <= 0.005 in probability:
      // each end lies between the exact quantiles 0.01 either side of its level.
      const p = (1 - confidence) / 2,
        q = (1 + confidence) / 2;
      expect(r.low).toBeGreaterThanOrEqual(quantile(p - 0.01));
      expect(r.low).toBeLessThanOrEqual(quantile(p + 0.01));
      expect(r.high).toBeGreaterThanOrEqual(quantile(q - 0.01));
      expect(r.high).toBeLessThanOrEqual(quantile(q + 0.01));
    }
  });

  it('is deterministic given the seed; another seed draws other resamples', () => {
    const next = mulberry32(290);
    const a = Array.from({ length: 60 }, () => next()),
      b = a.map((x) => x + 0.05 * (next() - 0.3));
    const r = pairedBootstrap(a, b, { seed: 123, samples: 3000 });
    expect(pairedBootstrap(Float64Array.from(a), Float64Array.from(b), { seed: 123, samples: 3000 })).toEqual(r);
    expect(r.seed).toBe(123);
    expect(r.samples).toBe(3000);
    const other = pairedBootstrap(a, b, { seed: 124, samples: 3000 });
    expect(other.difference).toBe(r.difference);
    expect([other.low, other.high]).not.toEqual([r.low, r.high]);
    // The interval holds the point estimate here, and a higher confidence (same seed, same resamples) widens it.
    expect(r.low).toBeLessThan(r.difference);
    expect(r.high).toBeGreaterThan(r.difference);
    const wide = pairedBootstrap(a, b, { seed: 123, samples: 3000, confidence: 0.99 });
    expect(wide.low).toBeLessThan(r.low);
    expect(wide.high).toBeGreaterThan(r.high);
  });

  it('one sample: both ends are that resample mean; one query: every resample is that query', () => {
    const one = pairedBootstrap([0.5, 0.25], [0.75, 0.25], { samples: 1 });
    expect(one.low).toBe(one.high);
    expect([0, 0.125, 0.25]).toContain(one.low);
    expect(pairedBootstrap([0.25], [1])).toEqual({ difference: 0.75, low: 0.75, high: 0.75, confidence: 0.95, samples: 10000, seed: 0 });
  });
});

describe('properties (fast-check)', () => {
  /** A pool size, a ranking (a permutation prefix of the pool) and a non-empty relevant set of ids in [0, pool + 5). */
  const query = fc.integer({ min: 1, max: 40 }).chain((pool) =>
    fc.record({
      ranked: fc.shuffledSubarray(
        Array.from({ length: pool }, (_, i) => i),
        { minLength: 0, maxLength: pool },
      ),
      relevant: fc.uniqueArray(fc.integer({ min: 0, max: pool + 4 }), { minLength: 1, maxLength: pool + 5 }),
      k: fc.integer({ min: 1, max: pool + 3 }),
    }),
  );

  it('every metric is in [0, 1]', () => {
    fc.assert(
      fc.property(query, ({ ranked, relevant, k }) => {
        for (const v of Object.values(all(ranked, relevant, k))) {
          expect(v).toBeGreaterThanOrEqual(0);
          expect(v).toBeLessThanOrEqual(1);
        }
      }),
    );
  });

  it('recall@k is non-decreasing in k', () => {
    fc.assert(
      fc.property(query, ({ ranked, relevant }) => {
        const rel = new Set(relevant);
        let last = 0;
        for (let k = 1; k <= ranked.length + 2; k++) {
          const r = recallAt(ranked, rel, k);
          expect(r).toBeGreaterThanOrEqual(last);
          last = r;
        }
      }),
    );
  });

  it('a ranking with every relevant document first scores nDCG 1, AP 1 and RR 1 at any k', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 60 }), { minLength: 1, maxLength: 20 }),
        fc.uniqueArray(fc.integer({ min: 61, max: 120 }), { maxLength: 20 }),
        fc.integer({ min: 1, max: 45 }),
        (relevant, others, k) => {
          const s = all([...relevant, ...others], relevant, k);
          expect([s.ndcg, s.ap, s.rr]).toEqual([1, 1, 1]);
          expect(s.recall).toBe(Math.min(k, relevant.length) / relevant.length);
        },
      ),
    );
  });

  it('evaluateRetrieval agrees with the single-query metrics on random rankings', () => {
    fc.assert(
      fc.property(fc.array(query, { minLength: 1, maxLength: 6 }), (qs) => {
        // One k for every row: each ranking padded with pool ids it lacks (up to 45).
        const k = 45;
        const rows = qs.map(({ ranked }) => [...ranked, ...Array.from({ length: 100 }, (_, i) => 1000 + i)].slice(0, k));
        const r = evaluateRetrieval(
          { indices: Int32Array.from(rows.flat()), k },
          qs.map((q) => q.relevant),
        );
        rows.forEach((row, i) => {
          const rel = new Set(qs[i].relevant);
          expect(r.perQuery.ndcg10[i]).toBe(ndcgAt(row, rel, 10));
          expect(r.perQuery.mrr10[i]).toBe(reciprocalRankAt(row, rel, 10));
          expect(r.perQuery.map100[i]).toBe(averagePrecisionAt(row, rel, 100));
        });
      }),
    );
  });
});

describe('errors', () => {
  const rel = new Set([1]);

  it('the single-query metrics: k, ranked, relevant', () => {
    for (const f of [recallAt, reciprocalRankAt, ndcgAt, averagePrecisionAt]) {
      expect(errorOf(() => f([0, 1], rel, 0))).toEqual({ cls: 'RangeError', message: 'Expected a positive integer for k but received 0' });
      expect(errorOf(() => f([0, 1], rel, 2.5))).toEqual({
        cls: 'TypeError',
        message: 'Expected a positive integer for k but received 2.5',
      });
      expect(errorOf(() => f([0, 1], rel, '3' as unknown as number))).toEqual({
        cls: 'TypeError',
        message: 'Expected a positive integer for k but received "3"',
      });
      expect(errorOf(() => f([4, 2, 4], rel, 10))).toEqual({
        cls: 'RangeError',
        message:
          'Expected a document id not ranked before (a ranking is a permutation prefix) for ranked[2] but received 4 (also ranked[0])',
      });
      expect(errorOf(() => f([0, -1], rel, 10))).toEqual({
        cls: 'RangeError',
        message: 'Expected a document id (a non-negative integer) for ranked[1] but received -1',
      });
      expect(errorOf(() => f([0, 1.5], rel, 10))).toEqual({
        cls: 'RangeError',
        message: 'Expected a document id (a non-negative integer) for ranked[1] but received 1.5',
      });
      expect(errorOf(() => f(['0'] as unknown as number[], rel, 10))).toEqual({
        cls: 'TypeError',
        message: 'Expected a document id (a non-negative integer) for ranked[0] but received "0"',
      });
      expect(errorOf(() => f(5 as unknown as number[], rel, 10))).toEqual({
        cls: 'TypeError',
        message: 'Expected an array of document ids (a ranking) for ranked but received 5',
      });
      expect(errorOf(() => f([0, 1], new Set(), 10))).toEqual({
        cls: 'RangeError',
        message:
          'Expected a non-empty Set of relevant document ids (a query without relevant documents cannot be scored) for relevant but received a Set',
      });
      expect(errorOf(() => f([0, 1], [1] as unknown as Set<number>, 10))).toEqual({
        cls: 'TypeError',
        message: 'Expected a Set of relevant document ids for relevant but received [1]',
      });
      expect(errorOf(() => f([0, 1], new Set([1, -2]), 10))).toEqual({
        cls: 'RangeError',
        message: 'Expected a Set of document ids (non-negative integers) for relevant but received a Set (it holds -2)',
      });
      expect(errorOf(() => f([0, 1], new Set(['1']) as unknown as Set<number>, 10))).toEqual({
        cls: 'TypeError',
        message: 'Expected a Set of document ids (non-negative integers) for relevant but received a Set (it holds "1")',
      });
    }
  });

  it('evaluateRetrieval: ranking.k, ranking.indices, relevant and relevant[i]', () => {
    const indices = Int32Array.of(0, 1, 2, 3, 4, 5);
    expect(errorOf(() => evaluateRetrieval({ indices: Int32Array.of(0, 1, 2, 3, 4, 5, 6), k: 3 }, [[0], [1]]))).toEqual({
      cls: 'RangeError',
      message:
        'Expected a non-empty Int32Array whose length is a multiple of ranking.k = 3 (rows × k ids) for ranking.indices but received Int32Array(7)',
    });
    expect(errorOf(() => evaluateRetrieval({ indices: new Int32Array(0), k: 3 }, []))).toEqual({
      cls: 'RangeError',
      message:
        'Expected a non-empty Int32Array whose length is a multiple of ranking.k = 3 (rows × k ids) for ranking.indices but received Int32Array(0)',
    });
    expect(errorOf(() => evaluateRetrieval({ indices: Float32Array.of(0, 1) as unknown as Int32Array, k: 2 }, [[0]]))).toEqual({
      cls: 'TypeError',
      message: 'Expected an Int32Array for ranking.indices but received Float32Array(2)',
    });
    expect(errorOf(() => evaluateRetrieval({ indices, k: 0 }, [[0]]))).toEqual({
      cls: 'RangeError',
      message: 'Expected a positive integer for ranking.k but received 0',
    });
    expect(errorOf(() => evaluateRetrieval(null as unknown as { indices: Int32Array; k: number }, [[0]]))).toEqual({
      cls: 'TypeError',
      message: 'Expected an object { indices, k } for ranking but received null',
    });
    expect(errorOf(() => evaluateRetrieval({ indices, k: 3 }, [[0]]))).toEqual({
      cls: 'RangeError',
      message: 'Expected an array of 2 relevant-id arrays (one per row of ranking.indices) for relevant but received [[0]] (length 1)',
    });
    expect(errorOf(() => evaluateRetrieval({ indices, k: 3 }, [[0], []]))).toEqual({
      cls: 'RangeError',
      message:
        'Expected a non-empty array of relevant document ids (a query without relevant documents cannot be scored) for relevant[1] but received []',
    });
    expect(errorOf(() => evaluateRetrieval({ indices, k: 3 }, [[2, 7, 2], [0]]))).toEqual({
      cls: 'RangeError',
      message: 'Expected a document id not listed before (relevant ids are a set) for relevant[0][2] but received 2',
    });
    expect(errorOf(() => evaluateRetrieval({ indices, k: 3 }, [[0], [-1]]))).toEqual({
      cls: 'RangeError',
      message: 'Expected a document id (a non-negative integer) for relevant[1][0] but received -1',
    });
    expect(errorOf(() => evaluateRetrieval({ indices, k: 3 }, [[0], 4 as unknown as number[]]))).toEqual({
      cls: 'TypeError',
      message: 'Expected an array of relevant document ids for relevant[1] but received 4',
    });
    expect(errorOf(() => evaluateRetrieval({ indices: Int32Array.of(0, 1, 2, 3, 4, 3), k: 3 }, [[0], [1]]))).toEqual({
      cls: 'RangeError',
      message:
        'Expected a document id not ranked before in its row (a ranking is a permutation prefix) for ranking.indices[5] but received 3 (also ranking.indices[3])',
    });
    expect(errorOf(() => evaluateRetrieval({ indices: Int32Array.of(0, 1, 2, 3, 4, -1), k: 3 }, [[0], [1]]))).toEqual({
      cls: 'RangeError',
      message: 'Expected a document id (a non-negative integer) for ranking.indices[5] but received -1 (row 1)',
    });
    // The same id in two rows is fine: each row is its own ranking.
    expect(evaluateRetrieval({ indices: Int32Array.of(0, 1, 0, 1), k: 2 }, [[0], [1]]).mean.mrr10).toBe(0.75);
  });

  it('pairedBootstrap: a, b and the options', () => {
    expect(errorOf(() => pairedBootstrap([], []))).toEqual({
      cls: 'RangeError',
      message: 'Expected a non-empty array of per-query scores for a but received []',
    });
    expect(errorOf(() => pairedBootstrap([1, 2, 3], [1, 2]))).toEqual({
      cls: 'RangeError',
      message: 'Expected an array of 3 per-query scores (like a) for b but received [1, 2] (length 2)',
    });
    expect(errorOf(() => pairedBootstrap([1, NaN], [1, 2]))).toEqual({
      cls: 'RangeError',
      message: 'Expected a finite number for a[1] but received NaN',
    });
    expect(errorOf(() => pairedBootstrap([1, 2], [1, '2'] as unknown as number[]))).toEqual({
      cls: 'TypeError',
      message: 'Expected a finite number for b[1] but received "2"',
    });
    expect(errorOf(() => pairedBootstrap(null as unknown as number[], [1]))).toEqual({
      cls: 'TypeError',
      message: 'Expected an array of per-query scores for a but received null',
    });
    for (const confidence of [0, 1, 1.5, -0.5, NaN])
      expect(errorOf(() => pairedBootstrap([1], [1], { confidence }))).toEqual({
        cls: 'RangeError',
        message: `Expected a number in (0, 1) for options.confidence but received ${String(confidence)}`,
      });
    expect(errorOf(() => pairedBootstrap([1], [1], { confidence: '0.9' as unknown as number }))).toEqual({
      cls: 'TypeError',
      message: 'Expected a number in (0, 1) for options.confidence but received "0.9"',
    });
    expect(errorOf(() => pairedBootstrap([1], [1], { samples: 0 }))).toEqual({
      cls: 'RangeError',
      message: 'Expected a positive integer for options.samples but received 0',
    });
    expect(errorOf(() => pairedBootstrap([1], [1], { samples: 2.5 }))).toEqual({
      cls: 'TypeError',
      message: 'Expected a positive integer for options.samples but received 2.5',
    });
    for (const seed of [-1, 2 ** 32, 0.5])
      expect(errorOf(() => pairedBootstrap([1], [1], { seed }))).toEqual({
        cls: 'RangeError',
        message: `Expected an integer in [0, 2^32) for options.seed but received ${seed}`,
      });
    expect(errorOf(() => pairedBootstrap([1], [1], { seed: 1n as unknown as number }))).toEqual({
      cls: 'TypeError',
      message: 'Expected an integer in [0, 2^32) for options.seed but received 1n',
    });
    expect(errorOf(() => pairedBootstrap([1], [1], 3 as unknown as object))).toEqual({
      cls: 'TypeError',
      message: 'Expected an options object for options but received 3',
    });
  });
});
