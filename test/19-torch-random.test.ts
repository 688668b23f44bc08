// torch's CPU generator and float32 uniform_, bit for bit, and PEFT's VeRA projections drawn with
// them. Known answers come from the MT19937 reference (init_genrand(5489)), from the C++
// standard's check value for std::mt19937, and from torch 2.13.0+cpu itself (values printed by
// the script in the comment below, on an AVX-512 machine and with ATEN_CPU_CAPABILITY=default).
//
//   g = torch.Generator('cpu').manual_seed(seed); t = torch.empty(n).uniform_(lo, hi, generator=g)
//   PEFT: vera_A = _kaiming_init((r, max_in), generator=g); vera_B = _kaiming_init((max_out, r), generator=g)
//   hashes: hashlib.sha256(t.numpy().tobytes()).hexdigest()
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Tensor, torchRandom } from '../lib/index.js';
import { _roundSumToFloat32 } from '../lib/io/torch-random.js';
import { errorOf } from './helpers/reference.js';

const { TorchCpuGenerator, uniform_, peftVeraProjections } = torchRandom;

const sha256 = (a: Float32Array) =>
  createHash('sha256')
    .update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    .digest('hex');
const bitsOf = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
const words = (seed: number | bigint, n: number) => {
  const g = new TorchCpuGenerator(seed);
  return Array.from({ length: n }, () => g.nextUint32());
};

describe('TorchCpuGenerator (MT19937 as torch seeds it)', () => {
  it('matches the MT19937 reference outputs for init_genrand(5489)', () => {
    expect(words(5489, 5)).toEqual([3499211612, 581869302, 3890346734, 3586334585, 545404204]);
  });

  it("gives the C++ standard's check value: the 10000th output of std::mt19937 (seed 5489) is 4123659995", () => {
    expect(words(5489, 10000)[9999]).toBe(4123659995);
  });

  it('seed 0: the first word is 2357136044', () => {
    expect(words(0, 1)).toEqual([2357136044]);
  });

  it('keeps a uint64 seed (negative seeds modulo 2^64) and seeds MT19937 with its low 32 bits', () => {
    expect(new TorchCpuGenerator(-1).seed).toBe(2n ** 64n - 1n);
    expect(new TorchCpuGenerator(2n ** 40n + 7n).seed).toBe(2n ** 40n + 7n);
    expect(words(2 ** 32 + 5, 8)).toEqual(words(5, 8));
    expect(words(-1, 8)).toEqual(words(2n ** 64n - 1n, 8));
    expect(words(-1, 8)).toEqual(words(0xffffffff, 8));
    expect(words(-(2n ** 63n), 8)).toEqual(words(0, 8));
  });

  it('rejects seeds torch would refuse', () => {
    const cases: Array<[unknown, string, string]> = [
      [1.5, 'RangeError', 'Expected a safe integer or a bigint for seed but received 1.5'],
      [2 ** 60, 'RangeError', 'Expected a safe integer or a bigint for seed but received 1152921504606847000'],
      [2n ** 64n, 'RangeError', 'Expected an integer in [-2^63, 2^64) for seed but received 18446744073709551616n'],
      [-(2n ** 63n) - 1n, 'RangeError', 'Expected an integer in [-2^63, 2^64) for seed but received -9223372036854775809n'],
      ['7', 'TypeError', 'Expected an integer or a bigint for seed but received "7"'],
    ];
    for (const [seed, cls, message] of cases) expect(errorOf(() => new TorchCpuGenerator(seed as number))).toEqual({ cls, message });
  });
});

describe("uniform_ (torch's CPU float32 uniform_)", () => {
  it('torch.manual_seed(0); torch.rand(4)', () => {
    const out = new Float32Array(4);
    uniform_(new TorchCpuGenerator(0), out, 0, 1);
    // torch 2.13: [0.49625658988952637, 0.7682217955589294, 0.08847743272781372, 0.13203048706054688]
    expect(Array.from(out)).toEqual([0.49625658988952637, 0.7682217955589294, 0.08847743272781372, 0.13203048706054688]);
    expect(out[0]).toBe((2357136044 & 0xffffff) / 2 ** 24); // 8325804 / 2^24 = 0.49625658988952637
    expect(out[0]).toBeCloseTo(0.4962565898895264, 15);
  });

  it('matches the float64 recipe of the header of lib/io/torch-random.ts, computed here independently, for ±bound', () => {
    for (const [seed, fan] of [
      [0, 1024],
      [7, 3],
      [123456789, 4096],
      [42, 1],
    ] as const) {
      const bound = Math.sqrt(6 / fan);
      const out = new Float32Array(5000);
      uniform_(new TorchCpuGenerator(seed), out, -bound, bound);
      const g = new TorchCpuGenerator(seed);
      const from = Math.fround(-bound),
        to = Math.fround(bound);
      const expected = Float32Array.from({ length: out.length }, () => {
        const u = (g.nextUint32() & 0xffffff) * 2 ** -24; // float64
        return Math.fround(u * Math.fround(to - from) + from);
      });
      expect(bitsOf(out)).toEqual(bitsOf(expected));
      expect(out.every((v) => v >= from && v < to)).toBe(true);
    }
  });

  // [seed, from, to, sha256 on torch's AVX2/AVX-512 kernels, sha256 on its DEFAULT kernel] for 100 000 values.
  const torchRuns: Array<[number, number, number, string, string]> = [
    [
      11,
      1,
      1 + 2 ** -20,
      '8218495dbfa89d0cc4e906839cc9771ef7b6cd3ffc53da00de41d8df0595c11f',
      '8218495dbfa89d0cc4e906839cc9771ef7b6cd3ffc53da00de41d8df0595c11f',
    ],
    [
      2,
      -1e-7,
      0.3,
      '504e360087b402df8435615af699d9f3713143f8f43160a63deef690e784588d',
      '635055c18c5dcd71d79aeaf14210df927063cb5d1ed2febe27ef3f0634ec0c6f',
    ],
    [
      9,
      -3.3,
      1e-5,
      '03042f4ddef9e82b025e92c7369489e4ba5f91b8d92ebc2c3b7e43cefdd55f34',
      'd0a5d5e1a90c484cd299237afcbd27c55624f7c56744a749339f5fe121ce35f0',
    ],
    [
      13,
      -1e30,
      3e30,
      'e6bf7790b9516da0bd1f4870dd12f1208149af6f3ecee8306c7b8033a2459668',
      'a403f77abdff6e9bdbe501f3babba3b8826cf8a6afe8188891b675cfb0ea4a83',
    ],
    [
      5,
      0,
      1,
      '60d97bdc403ce0a8ff7236a15fedc4d2ab243ccb16956e7429df733e22fd0890',
      '60d97bdc403ce0a8ff7236a15fedc4d2ab243ccb16956e7429df733e22fd0890',
    ],
  ];
  it.each(torchRuns)('torch 2.13 known answer: seed %d, uniform_(%d, %d)', (seed, from, to, fused, plain) => {
    const out = new Float32Array(100000);
    uniform_(new TorchCpuGenerator(seed), out, from, to);
    expect(sha256(out)).toBe(fused);
    uniform_(new TorchCpuGenerator(seed), out, from, to, { fusedMultiplyAdd: false });
    expect(sha256(out)).toBe(plain);
  });

  it('a value that rounds up to `to` becomes `from` (as torch clamps it)', () => {
    const out = new Float32Array(16);
    uniform_(new TorchCpuGenerator(11), out, 1, 1 + 2 ** -20);
    // torch 2.13: element 2 is exactly 1.0 (= from): x ≈ 0.9857 rounds to `to`.
    expect(bitsOf(out)).toEqual([
      1065353217, 1065353220, 1065353216, 1065353217, 1065353221, 1065353222, 1065353221, 1065353217, 1065353221, 1065353223, 1065353218,
      1065353222, 1065353218, 1065353220, 1065353222, 1065353220,
    ]);
  });

  it('an empty output draws nothing', () => {
    const g = new TorchCpuGenerator(3);
    uniform_(g, new Float32Array(0), -1, 1);
    expect(g.nextUint32()).toBe(words(3, 1)[0]);
  });

  it('rejects bad arguments', () => {
    const g = new TorchCpuGenerator(0);
    const out = new Float32Array(2);
    const cases: Array<[() => unknown, string, string]> = [
      [() => uniform_({} as never, out, 0, 1), 'TypeError', 'Expected a TorchCpuGenerator for gen but received an object'],
      [() => uniform_(g, new Float64Array(2) as never, 0, 1), 'TypeError', 'Expected a Float32Array for out but received Float64Array(2)'],
      [() => uniform_(g, out, '0' as never, 1), 'TypeError', 'Expected a finite number for from but received "0"'],
      [() => uniform_(g, out, 0, NaN), 'RangeError', 'Expected a number within float32 range for to but received NaN'],
      [() => uniform_(g, out, -1e39, 1), 'RangeError', 'Expected a number within float32 range for from but received -1e+39'],
      [
        () => uniform_(g, out, 1, 0),
        'RangeError',
        "Expected a number >= from (1) for to but received 0 (torch's uniform_ draws from [from, to))",
      ],
      [
        () => uniform_(g, out, -3e38, 3e38),
        'RangeError',
        'Expected a number with to − from within float32 range (from is -3e+38) for to but received 3e+38',
      ],
      [
        () => uniform_(g, out, 0, 1, { fusedMultiplyAdd: 1 as never }),
        'TypeError',
        'Expected a boolean for options.fusedMultiplyAdd but received 1',
      ],
    ];
    for (const [call, cls, message] of cases) expect(errorOf(call)).toEqual({ cls, message });
  });
});

// ---- the one rounding of x·d + from: checked against exact rational arithmetic -------------

/** v = m · 2^e exactly (m a signed BigInt). */
function decompose(v: number): { m: bigint; e: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, v);
  const hi = view.getUint32(0),
    lo = view.getUint32(4);
  const exp = (hi >>> 20) & 0x7ff;
  let m = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (exp !== 0) m |= 1n << 52n;
  return { m: hi >>> 31 ? -m : m, e: exp === 0 ? -1074 : exp - 1075 };
}

/** The float32 nearest p + f (ties to even), from the exact sum. */
function exactSumToFloat32(p: number, f: number): number {
  const a = decompose(p),
    b = decompose(f);
  const e = Math.min(a.e, b.e);
  const m = (a.m << BigInt(a.e - e)) + (b.m << BigInt(b.e - e));
  if (m === 0n) return p + f;
  const mag = m < 0n ? -m : m;
  const top = mag.toString(2).length - 1 + e; // exponent of the leading bit
  const q = Math.max(top - 23, -149); // float32 quantum
  let r: bigint;
  if (q <= e) r = mag << BigInt(e - q);
  else {
    const div = 1n << BigInt(q - e);
    r = mag / div;
    const rem = mag % div;
    if (2n * rem > div || (2n * rem === div && (r & 1n) === 1n)) r += 1n;
  }
  const v = Number(r) * 2 ** q >= 2 ** 128 ? Infinity : Number(r) * 2 ** q; // IEEE overflow
  return m < 0n ? -v : v;
}

describe('_roundSumToFloat32 (a float32 FMA of an exact product)', () => {
  it('resolves float32 midpoints with the exact error term', () => {
    // 1 + 2^-24 + 2^-75 rounds (in float64) to the midpoint 1 + 2^-24; the exact sum is above it.
    const p = 2 ** -24 + 2 ** -75;
    expect(Math.fround(p + 1)).toBe(1); // the naive float64 route: wrong
    expect(_roundSumToFloat32(p, 1)).toBe(1 + 2 ** -23);
    expect(exactSumToFloat32(p, 1)).toBe(1 + 2 ** -23);
    expect(_roundSumToFloat32(-p, -1)).toBe(-(1 + 2 ** -23));
    expect(_roundSumToFloat32(2 ** -24 - 2 ** -76, 1)).toBe(1);
    expect(_roundSumToFloat32(2 ** -24, 1)).toBe(1); // an exact tie: to even
  });

  it('equals exact rounding for products x·d, any doubles, and sums near float32 midpoints (fast-check)', () => {
    const f32 = fc.float({ noNaN: true, noDefaultInfinity: true, min: Math.fround(-1e30), max: Math.fround(1e30) });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 24 - 1 }), f32, f32, (k, d, f) => {
        const p = k * 2 ** -24 * d; // exact in float64
        expect(Object.is(_roundSumToFloat32(p, f), exactSumToFloat32(p, f))).toBe(true);
      }),
      { numRuns: 2000 },
    );
    const same = (p: number, f: number): void => {
      expect(Object.is(_roundSumToFloat32(p, f), exactSumToFloat32(p, f))).toBe(true);
    };
    fc.assert(fc.property(fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e300, max: 1e300 }), f32, same), { numRuns: 500 });
    // Sums a little above or below a float32 midpoint, where float64 rounding lands on the midpoint.
    fc.assert(
      fc.property(f32, fc.integer({ min: 25, max: 90 }), fc.boolean(), (f, shift, above) => {
        const bits = new Float32Array([f]);
        new Int32Array(bits.buffer)[0] += f >= 0 ? 1 : -1;
        const ulp = Math.abs(bits[0] - f);
        const p = ulp / 2 + (above ? 1 : -1) * ulp * 2 ** -shift;
        same(f >= 0 ? p : -p, f);
      }),
      { numRuns: 500 },
    );
  });
});

// ---- PEFT's VeRA projections --------------------------------------------------------------

describe('peftVeraProjections (PEFT VeRA, save_projection: false)', () => {
  it('equals torch 2.13 + PEFT 0.21 for projection_prng_key 0, r 4, max in 10, max out 6', () => {
    const { A, B } = peftVeraProjections(0, 4, 10, 6);
    expect(A.shape).toEqual([4, 10]);
    expect(B.shape).toEqual([6, 4]);
    expect(A.dtype).toBe('float32');
    expect(bitsOf(A.storage() as Float32Array)).toEqual([
      3149793221, 1054130179, 3206755594, 3205623600, 3197681646, 1045738222, 3162206956, 1058880055, 3180120064, 1045553954, 3194992164,
      3189500354, 3208474952, 3204666385, 3198385193, 1022037842, 1050462609, 1055782676, 3204869883, 3198989221, 1049627823, 1059367370,
      3189980399, 1058300742, 3187651189, 1034411097, 1060343185, 3208115259, 3204033456, 3192442545, 3197802390, 1059804188, 3204483116,
      3199635622, 3205138883, 3208230798, 3202843127, 1059746972, 1051785122, 1052784590,
    ]);
    expect(bitsOf(B.storage() as Float32Array)).toEqual([
      1032055307, 3206594171, 1045704283, 3214040947, 3210906802, 3206652660, 1061540393, 1060623617, 3205172500, 3174367841, 1061717572,
      1067178237, 1056497511, 1042902233, 1062353026, 3208158247, 1047114631, 3211990478, 3210301050, 3206674309, 1057873330, 1056714423,
      3208231195, 1052602670,
    ]);
    A.dispose();
    B.dispose();
  });

  // [seed, r, maxIn, maxOut, A and B sha256 (AVX2/AVX-512), A and B sha256 (DEFAULT kernel)]
  const runs: Array<[number | bigint, number, number, number, [string, string], [string, string]]> = [
    [
      2n ** 40n + 7n,
      16,
      300,
      200,
      [
        '1e4c2f684ae3ea6ae69e56fc00295a68c307142f2531c4c2183dedb6e853d0a0',
        '049b3662beb2a6d6c0884726aaecd1db25895e44a0923438a64e52dd277a73f3',
      ],
      [
        'e29c86cf7ae46ca188fb791143bcd510684dbd7265766db40b121dd799f331d9',
        '1a33200c039dbe1a37434c4da9500557a45afc557d2a91c3313fa96fd5f94246',
      ],
    ],
    [
      -5,
      3,
      33,
      17,
      [
        'b370987dfd0bcac8201e7c1ffbca2ec9329573334f32caf1c685ce998ea53dc6',
        '758853d89e0fbb13c3753b18a2c9181bddd4f7d3b35840baf49b3c47612f1ea2',
      ],
      [
        'd189e8d01d36a2f8b6f8a5130563a9baef3d9595abda4ec2445a649829c89f93',
        '5107aa8ed34c6b0475b93a91a926837ca53f7f52488189b338060968542a815d',
      ],
    ],
  ];
  it.each(runs)('equals torch 2.13 + PEFT for seed %s, r %d, %d → %d (both torch CPU kernels)', (seed, r, maxIn, maxOut, fused, plain) => {
    for (const [options, expected] of [
      [undefined, fused],
      [{ fusedMultiplyAdd: false }, plain],
    ] as const) {
      const { A, B } = peftVeraProjections(seed, r, maxIn, maxOut, options);
      expect([sha256(A.storage() as Float32Array), sha256(B.storage() as Float32Array)]).toEqual(expected);
      A.dispose();
      B.dispose();
    }
  });

  it('is deterministic, within ±√(6/fan_in), and draws A before B from one stream', () => {
    const [r, maxIn, maxOut] = [8, 96, 40];
    const one = peftVeraProjections(1234, r, maxIn, maxOut);
    const two = peftVeraProjections(1234, r, maxIn, maxOut);
    const a = one.A.storage() as Float32Array,
      b = one.B.storage() as Float32Array;
    expect(bitsOf(two.A.storage() as Float32Array)).toEqual(bitsOf(a));
    expect(bitsOf(two.B.storage() as Float32Array)).toEqual(bitsOf(b));
    const boundA = Math.fround(Math.sqrt(6 / maxIn)),
      boundB = Math.fround(Math.sqrt(6 / r));
    expect(a.every((v) => Math.abs(v) <= boundA)).toBe(true);
    expect(b.every((v) => Math.abs(v) <= boundB)).toBe(true);
    expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(boundA * 0.9); // spread over the range
    // B's first value is the (r·maxIn + 1)-th draw of the generator.
    const g = new TorchCpuGenerator(1234);
    for (let i = 0; i < r * maxIn; i++) g.nextUint32();
    const first = new Float32Array(1);
    const bound = Math.sqrt(3) * (Math.SQRT2 / Math.sqrt(r));
    uniform_(g, first, -bound, bound);
    expect(b[0]).toBe(first[0]);
    expect(one.A).toBeInstanceOf(Tensor);
    for (const t of [one.A, one.B, two.A, two.B]) t.dispose();
  });

  it('computes the bound in PEFT order: √3 · (√2 / √fan_in)', () => {
    expect(torchRandom._kaimingBound(10)).toBe(Math.sqrt(3) * (Math.sqrt(2) / Math.sqrt(10)));
    expect(Math.abs(torchRandom._kaimingBound(10) - Math.sqrt(6 / 10))).toBeLessThan(1e-15);
  });

  it('rejects bad arguments', () => {
    const cases: Array<[() => unknown, string, string]> = [
      [() => peftVeraProjections(0, 0, 4, 4), 'RangeError', 'Expected a positive integer for rank but received 0'],
      [() => peftVeraProjections(0, 2, 1.5, 4), 'RangeError', 'Expected a positive integer for maxIn but received 1.5'],
      [() => peftVeraProjections(0, 2, 4, '4' as never), 'TypeError', 'Expected a positive integer for maxOut but received "4"'],
      [() => peftVeraProjections(null as never, 2, 4, 4), 'TypeError', 'Expected an integer or a bigint for seed but received null'],
    ];
    for (const [call, cls, message] of cases) expect(errorOf(call)).toEqual({ cls, message });
  });
});
