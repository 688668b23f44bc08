// CUDA tensors: device memory from the caching allocator, copies both ways, conversions on the
// device, seeded fills that match the CPU, views, dispose and reuse. Without a usable device the
// same calls must fail with the runtime's reason, never crash.
import { describe, expect, it } from 'vitest';
import { backends, emptyCache, lora, memory, rand, randn, setTf32, synchronize, Tensor, tensor, zeros, type DType } from '../lib/index.js';
import { native } from '../lib/native.js';
import { errorOf, mulberry32, randomF32, sameBits, thrown } from './helpers/reference.js';

const cuda = backends().cuda;
const DTYPES: readonly DType[] = ['float32', 'bfloat16', 'float16'];
const SIZES = [1, 7, 33, 1_000_003] as const;

/** The bytes of a host tensor's storage (so NaN payloads and -0 count). */
function bytesOf(t: Tensor): Buffer {
  const s = t.storage();
  return Buffer.from(s.buffer, s.byteOffset, s.byteLength);
}

/** Host tensors `got` and `want` hold the same bytes; the first differing element in the message. */
function expectSameBits(got: Tensor, want: Tensor, label: string): void {
  const a = bytesOf(got),
    b = bytesOf(want);
  if (a.equals(b)) return;
  const width = got.dtype === 'float32' ? 4 : 2;
  let i = 0;
  while (i < Math.min(a.length, b.length) && a[i] === b[i]) i++;
  const at = Math.floor(i / width) * width;
  expect.fail(
    `${label}: ${a.length} vs ${b.length} bytes; element ${at / width} is ${a.subarray(at, at + width).toString('hex')} vs ${b.subarray(at, at + width).toString('hex')}`,
  );
}

/**
 * Float32 values that exercise every rounding path: random magnitudes across float32's range
 * (overflow to infinity, float16 subnormals, underflow to zero), exact ties for bfloat16 and
 * float16, signed zeros, infinities and NaNs with payloads.
 */
function awkward(n: number, seed: number): Float32Array {
  const next = mulberry32(seed);
  const out = new Float32Array(n);
  const u = new Uint32Array(out.buffer);
  const special = [
    0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffc12345, 0x3f808000, 0x3f818000, 0x3f801000, 0x477ff000,
    0x477fefff, 0x33000000, 0x33000001, 0x387fc000, 0x00000001, 0x7f7fffff,
  ];
  for (let i = 0; i < n; i++) {
    if (i < special.length) {
      u[i] = special[i];
      continue;
    }
    const e = Math.floor(next() * 80) - 40; // 2^-40 .. 2^39: both formats' edges
    out[i] = (next() < 0.5 ? -1 : 1) * (1 + next()) * 2 ** e;
  }
  return out;
}

describe('without a usable CUDA device', () => {
  it.skipIf(cuda.available)("device: 'cuda' is a RangeError naming the argument and giving the runtime's reason", () => {
    const reason = cuda.reason ?? '';
    expect(reason.length).toBeGreaterThan(0);
    const x = tensor([1, 2], [2]);
    const cases: Array<[() => unknown, string]> = [
      [() => tensor([1, 2], [2], { device: 'cuda' }), 'options.device'],
      [() => tensor(new Float32Array(2), [2], { device: 'cuda', dtype: 'bfloat16' }), 'options.device'],
      [() => zeros([3], { device: 'cuda' }), 'options.device'],
      [() => randn([3], { device: 'cuda', seed: 1 }), 'options.device'],
      [() => rand([3], { device: 'cuda', seed: 1 }), 'options.device'],
      [() => x.to('cuda'), 'device'],
      [() => tensor(new Int32Array(2), [2], { device: 'cuda' }), 'options.device'],
      [() => zeros([3], { dtype: 'int32', device: 'cuda' }), 'options.device'],
      [() => tensor(new Int32Array(2), [2]).to('cuda'), 'device'],
    ];
    for (const [call, name] of cases) {
      const e = errorOf(call);
      expect(e.cls).toBe('RangeError');
      expect(e.message).toBe(`Expected an available device for ${name} but received "cuda" (CUDA is unavailable: ${reason})`);
    }
    expect(memory().cuda.tensors).toBe(0);
  });

  it.skipIf(cuda.available)('the native device calls throw an Error with the reason instead of crashing', () => {
    const expected = cuda.compiled ? cuda.reason! : 'CUDA backend not compiled in';
    const calls: Array<[string, () => unknown]> = [
      ['cudaAlloc', () => native().cudaAlloc({ bytes: 16 })],
      ['cudaAlloc of 0 bytes', () => native().cudaAlloc({ bytes: 0 })],
      ['cudaSynchronize', () => native().cudaSynchronize()],
    ];
    for (const [label, call] of calls) {
      const e = thrown(call);
      expect(e, label).toBeInstanceOf(Error);
      expect((e as Error).message, label).toContain(expected);
    }
  });

  it('native calls refuse anything but a live block, with the value received', () => {
    const cases: Array<[() => unknown, string]> = [
      [() => native().cudaFree({ block: {} as never }), 'Expected a live CUDA tensor for block but received an object'],
      [() => native().cudaFree({ block: 5 as never }), 'Expected a live CUDA tensor for block but received 5'],
      [
        () => native().cudaUpload({ block: new Float32Array(4) as never, src: new Float32Array(4) }),
        'Expected a live CUDA tensor for block but received a typed array (host memory)',
      ],
      [
        () => native().cudaDownload({ block: null as never, dst: new Float32Array(4) }),
        'Expected a live CUDA tensor for block but received null',
      ],
      [
        () => native().cudaCopy({ dst: undefined as never, src: {} as never, bytes: 4 }),
        'Expected a live CUDA tensor for dst but received undefined',
      ],
      [
        () => native().convert({ src: { data: {} as never, dtype: 0 }, dst: { data: {} as never, dtype: 1 } }),
        'Expected a typed array or a live CUDA tensor for src.data but received an object',
      ],
      [
        () => native().fill({ dst: { data: {} as never, dtype: 0 }, value: 0 }),
        'Expected a typed array or a live CUDA tensor for dst.data but received an object',
      ],
      [
        () => native().addInto({ dst: { data: {} as never, dtype: 0 }, src: { data: new Float32Array(4), dtype: 0 } }),
        'Expected a typed array or a live CUDA tensor for dst.data but received an object',
      ],
      [() => native().cudaSetTf32(1 as never), 'Expected a boolean for allow but received 1'],
    ];
    for (const [call, message] of cases) expect(errorOf(call)).toEqual({ cls: 'TypeError', message });
    expect(errorOf(() => native().convert({ src: { data: {} as never, dtype: 9 }, dst: { data: {} as never, dtype: 0 } }))).toEqual({
      cls: 'RangeError',
      message: 'convert: expected 0 (float32), 1 (bfloat16), 2 (float16) or 3 (int32) for src.dtype but received 9',
    });
  });

  it('synchronize() returns at once when nothing can be queued on a device, and setTf32 checks its argument', () => {
    if (!cuda.available) expect(() => synchronize()).not.toThrow();
    expect(errorOf(() => setTf32('yes' as never))).toEqual({
      cls: 'TypeError',
      message: 'Expected a boolean for allow but received "yes"',
    });
  });

  it('memory statistics and emptyCache() never need a device', () => {
    const stats = native().cudaMemory();
    expect(Object.keys(stats).sort()).toEqual(['allocated', 'cached', 'peak']);
    if (!cuda.available) expect(stats).toEqual({ allocated: 0, cached: 0, peak: 0 });
    expect(() => emptyCache()).not.toThrow();
    const m = memory().cuda;
    expect(Object.keys(m).sort()).toEqual(['allocatedBytes', 'bytes', 'cachedBytes', 'peakBytes', 'tensors']);
  });

  it('host tensors have no device handle, and a disposed tensor says so', () => {
    const t = tensor([1, 2], [2]);
    expect(errorOf(() => t.deviceHandle('x'))).toEqual({
      cls: 'RangeError',
      message: 'Expected a tensor in CUDA memory for x but received Tensor(float32, [2], cpu)',
    });
    t.dispose();
    expect(errorOf(() => t.deviceHandle('x'))).toEqual({
      cls: 'TypeError',
      message: 'Expected a live Tensor for x but received Tensor(float32, [2], cpu, disposed) (it was disposed)',
    });
  });
});

if (!cuda.available) console.log(`test/22-cuda-tensors: device tests skipped: CUDA unavailable: ${cuda.reason}`);

describe.skipIf(!cuda.available)('on a CUDA device', () => {
  it('round trips CPU -> CUDA -> CPU bit for bit, every dtype, awkward sizes', async () => {
    for (const dtype of DTYPES) {
      for (const n of SIZES) {
        const values = awkward(n, n + 1);
        const cpu = tensor(values, [n], { dtype });
        const gpu = tensor(values, [n], { dtype, device: 'cuda' });
        expect(gpu.device).toBe('cuda');
        expect(gpu.dtype).toBe(dtype);
        expect(gpu.shape).toEqual([n]);
        const back = gpu.to('cpu');
        expect(back.device).toBe('cpu');
        expectSameBits(back, cpu, `${dtype} [${n}] to('cpu')`);
        expect(sameBits(gpu.toFloat32Array(), cpu.toFloat32Array()), `${dtype} [${n}] toFloat32Array`).toBe(true);
        expect(sameBits(await gpu.data(), cpu.toFloat32Array()), `${dtype} [${n}] data()`).toBe(true);
        const again = cpu.to('cuda');
        expectSameBits(again.to('cpu'), cpu, `${dtype} [${n}] cpu.to('cuda')`);
        for (const t of [cpu, gpu, back, again]) t.dispose();
      }
    }
  });

  it('copies larger than the staging buffers (several chunks each way)', () => {
    const n = 5_000_011; // 20 MB of float32
    const values = randomF32(n, 5);
    const gpu = tensor(values, [n], { device: 'cuda' });
    expect(sameBits(gpu.toFloat32Array(), values)).toBe(true);
    const half = gpu.astype('bfloat16');
    expectSameBits(half.to('cpu'), tensor(values, [n]).astype('bfloat16'), 'bfloat16 of 20 MB');
    gpu.dispose();
    half.dispose();
  });

  it('bfloat16 / float16 bits upload as they are', () => {
    const raw = new Uint16Array(33).map((_, i) => (i * 2654435761) >>> 16);
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const gpu = tensor(raw, [3, 11], { dtype, device: 'cuda' });
      expect(gpu.to('cpu').storage()).toEqual(raw);
      gpu.dispose();
    }
  });

  it('astype on the device is bit-identical to astype on the CPU, every pair of dtypes', () => {
    for (const n of SIZES) {
      const values = awkward(n, 100 + n);
      for (const from of DTYPES) {
        const cpu = tensor(values, [n], { dtype: from });
        const gpu = cpu.to('cuda');
        for (const to of DTYPES) {
          const want = cpu.astype(to);
          const got = gpu.astype(to);
          expect(got.device).toBe('cuda');
          expect(got.dtype).toBe(to);
          expectSameBits(got.to('cpu'), want, `${from} -> ${to} [${n}]`);
          want.dispose();
          got.dispose();
        }
        cpu.dispose();
        gpu.dispose();
      }
    }
  });

  it('randn and rand on cuda equal the CPU values for the same seed', () => {
    for (const dtype of DTYPES) {
      for (const n of [7, 1_000_003]) {
        const a = randn([n], { seed: 42n, dtype, device: 'cuda', mean: 0.5, std: 2 });
        const b = randn([n], { seed: 42n, dtype, mean: 0.5, std: 2 });
        expectSameBits(a.to('cpu'), b, `randn ${dtype} [${n}]`);
        const c = rand([n], { seed: 7, dtype, device: 'cuda', low: -3, high: 3 });
        const d = rand([n], { seed: 7, dtype, low: -3, high: 3 });
        expectSameBits(c.to('cpu'), d, `rand ${dtype} [${n}]`);
        for (const t of [a, b, c, d]) t.dispose();
      }
    }
  });

  it('zeros are zero even in a reused block', () => {
    const n = 1_000_003;
    const dirty = tensor(new Float32Array(n).fill(Number.NaN), [n], { device: 'cuda' });
    dirty.dispose(); // its block goes to the cache and serves the next tensor of this size
    const z = zeros([n], { device: 'cuda' });
    expect(z.toFloat32Array().every((v) => Object.is(v, 0))).toBe(true);
    z.dispose();
    const h = zeros([7, 3], { device: 'cuda', dtype: 'float16' });
    expect(Array.from(h.to('cpu').storage())).toEqual(new Array(21).fill(0));
    h.dispose();
  });

  it('fill and add on the device: gradients accumulate without the host', () => {
    for (const n of [1, 7, 33, 100003]) {
      const a = randn([n], { seed: n, device: 'cuda' }),
        b = randn([n], { seed: n + 1, device: 'cuda' });
      const want = a.toFloat32Array().map((v, i) => v + b.toFloat32Array()[i]);
      native().addInto({ dst: { data: a.deviceHandle(), dtype: 0 }, src: { data: b.deviceHandle(), dtype: 0 } });
      expect(a.toFloat32Array()).toEqual(want);
      native().fill({ dst: { data: a.deviceHandle(), dtype: 0 }, value: 2.5 });
      expect(a.toFloat32Array()).toEqual(new Float32Array(n).fill(2.5));
      const h = randn([n], { seed: n, device: 'cuda', dtype: 'bfloat16' });
      native().fill({ dst: { data: h.deviceHandle(), dtype: 1 }, value: -0.1 });
      expect(h.toFloat32Array()).toEqual(tensor(new Float32Array(n).fill(-0.1), [n], { dtype: 'bfloat16' }).toFloat32Array());
    }
  });

  it('dispose returns blocks to the cache and a new tensor of the same size reuses them', () => {
    const n = 1 << 20; // 4 MiB of float32
    emptyCache();
    const m0 = memory().cuda;
    const t = tensor(randomF32(n, 9), [n], { device: 'cuda' });
    const m1 = memory().cuda;
    expect(m1.tensors - m0.tensors).toBe(1);
    expect(m1.bytes - m0.bytes).toBe(4 * n);
    expect(m1.allocatedBytes - m0.allocatedBytes).toBeGreaterThanOrEqual(4 * n);
    expect(m1.peakBytes).toBeGreaterThanOrEqual(m1.allocatedBytes);
    t.dispose();
    t.dispose(); // idempotent
    const m2 = memory().cuda;
    expect(m2.tensors).toBe(m0.tensors);
    expect(m2.bytes).toBe(m0.bytes);
    expect(m2.allocatedBytes).toBe(m0.allocatedBytes);
    expect(m2.cachedBytes - m0.cachedBytes).toBe(m1.allocatedBytes - m0.allocatedBytes);
    const u = zeros([n], { device: 'cuda' });
    const m3 = memory().cuda;
    expect(m3.allocatedBytes).toBe(m1.allocatedBytes);
    expect(m3.cachedBytes).toBe(m0.cachedBytes);
    expect(m3.peakBytes).toBe(m1.peakBytes);
    u.dispose();
    emptyCache();
    expect(memory().cuda.cachedBytes).toBe(0);
    expect(memory().cuda.allocatedBytes).toBe(m0.allocatedBytes);
  });

  it('every method throws after dispose', async () => {
    const t = tensor([1, 2, 3, 4, 5, 6], [2, 3], { device: 'cuda' });
    t.dispose();
    const DISPOSED = 'Expected a live Tensor for tensor but received Tensor(float32, [2, 3], cuda, disposed) (it was disposed)';
    for (const call of [
      () => t.toFloat32Array(),
      () => t.to('cpu'),
      () => t.astype('float16'),
      () => t.clone(),
      () => t.reshape([3, 2]),
      () => t.deviceHandle(),
    ])
      expect(errorOf(call)).toEqual({ cls: 'TypeError', message: DISPOSED });
    await expect(t.data()).rejects.toThrow(DISPOSED);
  });

  it('a CUDA tensor has no host storage: CPU-only code gets a clear error', () => {
    const t = tensor([1, 2], [2], { device: 'cuda' });
    expect(errorOf(() => t.storage('W'))).toEqual({
      cls: 'RangeError',
      message:
        "Expected a tensor in host memory for W but received Tensor(float32, [2], cuda) (this operation runs on the CPU; move it with .to('cpu'))",
    });
    t.dispose();
  });

  it('views share the block, count no bytes and do not free it', () => {
    const values = randomF32(6 * 7, 11);
    const t = tensor(values, [6, 7], { device: 'cuda' });
    const before = memory().cuda;
    const v = t.reshape([7, 6]);
    expect(v.shape).toEqual([7, 6]);
    expect(v.deviceHandle()).toBe(t.deviceHandle());
    expect(memory().cuda.bytes).toBe(before.bytes);
    expect(memory().cuda.tensors).toBe(before.tensors + 1);
    // A write through the base shows in the view.
    const next = randomF32(6 * 7, 12);
    native().cudaUpload({ block: t.deviceHandle(), src: next });
    expect(sameBits(v.toFloat32Array(), next)).toBe(true);
    v.dispose();
    expect(memory().cuda.allocatedBytes).toBe(before.allocatedBytes);
    expect(sameBits(t.toFloat32Array(), next)).toBe(true);
    // Once the base is disposed its views refuse to read.
    const w = t.reshape([42]);
    t.dispose();
    expect(() => w.toFloat32Array()).toThrow(
      /^Expected a live Tensor for tensor but received Tensor\(float32, \[42\], cuda, disposed\) \(its base tensor was disposed\)$/,
    );
    w.dispose();
  });

  it('clone() and to("cuda") copy: later writes to the source do not show', () => {
    const a = randomF32(33, 13),
      b = randomF32(33, 14);
    const t = tensor(a, [33], { device: 'cuda' });
    const c = t.clone();
    const d = t.to('cuda');
    native().cudaUpload({ block: t.deviceHandle(), src: b });
    expect(sameBits(c.toFloat32Array(), a)).toBe(true);
    expect(sameBits(d.toFloat32Array(), a)).toBe(true);
    expect(sameBits(t.toFloat32Array(), b)).toBe(true);
    for (const x of [t, c, d]) x.dispose();
  });

  it('data() waits for queued work, and a dispose() meanwhile does not hand the block on early', async () => {
    const n = 1_000_003;
    const values = randomF32(n, 15);
    let t = tensor(values, [n], { device: 'cuda' });
    for (let i = 0; i < 20; i++) {
      const to = i % 2 === 0 ? 'float16' : 'float32';
      const next = t.astype(to);
      t.dispose();
      t = next;
    }
    const host = tensor(values, [n]).astype('float16');
    const want = host.toFloat32Array();
    host.dispose();
    const pending = t.data();
    t.dispose();
    const other = tensor(new Float32Array(n).fill(Number.NaN), [n], { device: 'cuda' }); // same size: would reuse a freed block
    expect(sameBits(await pending, want)).toBe(true);
    other.dispose();
  });

  it('downloads overwrite poisoned destinations completely', () => {
    for (const n of SIZES) {
      const values = randomF32(n, 16 + n);
      const t = tensor(values, [n], { device: 'cuda' });
      const dst = new Float32Array(n).fill(Number.NaN);
      native().cudaDownload({ block: t.deviceHandle(), dst });
      expect(sameBits(dst, values)).toBe(true);
      // A part, at a byte offset, into a typed array that is itself a view at an offset.
      const host = new Float32Array(n + 3).fill(Number.NaN);
      const part = host.subarray(2, 2 + Math.max(0, n - 1));
      native().cudaDownload({ block: t.deviceHandle(), dst: part, offset: 4 });
      expect(sameBits(part, values.subarray(1))).toBe(true);
      expect(Number.isNaN(host[0]) && Number.isNaN(host[1]) && Number.isNaN(host[n + 2])).toBe(true);
      // to('cpu') into a pooled buffer that held NaNs.
      if (n * 4 >= 4096) tensor(new Float32Array(n).fill(Number.NaN), [n]).dispose();
      expect(sameBits(t.to('cpu').toFloat32Array(), values)).toBe(true);
      t.dispose();
    }
  });

  it('native copies check their spans against the blocks', () => {
    const t = tensor(randomF32(8, 17), [8], { device: 'cuda' });
    const u = tensor(randomF32(4, 18), [4], { device: 'cuda' });
    expect(errorOf(() => native().cudaUpload({ block: t.deviceHandle(), src: new Float32Array(8), offset: 4 }))).toEqual({
      cls: 'RangeError',
      message: 'cudaUpload: 32 bytes at offset 4 do not fit in block (a CUDA block of 32 bytes)',
    });
    expect(errorOf(() => native().cudaCopy({ dst: u.deviceHandle(), src: t.deviceHandle(), bytes: 32 }))).toEqual({
      cls: 'RangeError',
      message: 'Expected a CUDA tensor of at least 32 bytes for dst but received one of 16 bytes',
    });
    expect(
      errorOf(() => native().convert({ src: { data: t.deviceHandle(), dtype: 0 }, dst: { data: u.deviceHandle(), dtype: 0 } })),
    ).toEqual({
      cls: 'RangeError',
      message: 'Expected a CUDA tensor of at least 32 bytes for dst but received one of 16 bytes',
    });
    native().cudaFree({ block: u.deviceHandle() });
    native().cudaFree({ block: u.deviceHandle() }); // idempotent
    expect(errorOf(() => native().cudaCopy({ dst: u.deviceHandle(), src: t.deviceHandle(), bytes: 4 }))).toEqual({
      cls: 'TypeError',
      message: 'Expected a live CUDA tensor for dst but received a freed CUDA block',
    });
    u.dispose(); // its block was freed already: still fine
    t.dispose();
    native().cudaSynchronize();
  });
});

describe.skipIf(!cuda.available)('int32 on a CUDA device', () => {
  const INT32_MIN = -(2 ** 31),
    INT32_MAX = 2 ** 31 - 1;
  const values = (n: number) => {
    const next = mulberry32(n);
    const out = Int32Array.from({ length: n }, () => Math.floor(next() * 2 ** 32) - 2 ** 31);
    out.set([INT32_MIN, INT32_MAX, 0, -1].slice(0, n));
    return out;
  };

  it('upload, device copy, view and download give back every int32 bit, at sizes 1, 7, 33 and 1 000 003', () => {
    for (const n of SIZES) {
      const host = values(n);
      const d = tensor(host, [n], { device: 'cuda' });
      expect([d.dtype, d.device, d.nbytes]).toEqual(['int32', 'cuda', n * 4]);
      const c = d.clone(),
        r = d.reshape([1, n]),
        m = c.to('cuda'),
        back = m.to('cpu');
      for (const t of [d, c, r, m, back]) expect(t.toInt32Array(), `n = ${n}`).toEqual(host);
      expect(back.storage()).toBeInstanceOf(Int32Array);
      const copied = tensor(Array.from(host.subarray(0, 7)), [Math.min(n, 7)], { dtype: 'int32', device: 'cuda' });
      expect(copied.toInt32Array()).toEqual(host.subarray(0, 7));
      for (const t of [d, c, r, m, back, copied]) t.dispose();
    }
  });

  it('zeros fills bits 0; toFloat32Array and data() convert exactly or refuse; memory() counts 4 bytes per element', async () => {
    const before = memory().cuda;
    const z = zeros([5, 7], { dtype: 'int32', device: 'cuda' });
    expect(memory().cuda.bytes - before.bytes).toBe(35 * 4);
    expect(Array.from(z.toInt32Array())).toEqual(new Array(35).fill(0));
    const small = tensor([3, -(2 ** 24), 2 ** 24], [3], { dtype: 'int32', device: 'cuda' });
    expect(Array.from(small.toFloat32Array())).toEqual([3, -(2 ** 24), 2 ** 24]);
    expect(Array.from(await small.data())).toEqual([3, -(2 ** 24), 2 ** 24]);
    const big = tensor([INT32_MAX], [1], { dtype: 'int32', device: 'cuda' });
    expect(errorOf(() => big.toFloat32Array()).message).toContain('for tensor[0] but received 2147483647');
    await expect(big.data()).rejects.toThrow('for tensor[0] but received 2147483647');
    expect(errorOf(() => big.astype('float32')).cls).toBe('TypeError');
    for (const t of [z, small, big]) t.dispose();
    expect(memory().cuda.bytes).toBe(before.bytes);
  });

  it('CUDA ops refuse int32 with the usual dtype message', () => {
    const x = zeros([2, 3], { dtype: 'int32', device: 'cuda' });
    const W = zeros([4, 3], { device: 'cuda' }),
      A = zeros([2, 3], { device: 'cuda' }),
      B = zeros([4, 2], { device: 'cuda' });
    expect(errorOf(() => lora.forward(x, W, A, B, { scale: 1 }))).toEqual({
      cls: 'TypeError',
      message: 'Expected a float32, bfloat16 or float16 Tensor for x but received Tensor(int32, [2, 3], cuda) (dtype is int32)',
    });
    for (const t of [x, W, A, B]) t.dispose();
  });
});
