// The typings are part of the contract: `npm test` type-checks these assertions (vitest's
// typecheck mode, see vitest.config.ts), and a wrong one fails it; they also run, trivially.
import { describe, expectTypeOf, it } from 'vitest';
import {
  backends,
  lora,
  memory,
  rand,
  randn,
  setThreads,
  tensor,
  zeros,
  type Backends,
  type Device,
  type DType,
  type FloatDType,
  type LoraGrads,
  type LoraSaved,
  type MemoryInfo,
  type Shape,
  type Tensor,
} from '../lib/index.js';

describe('public types', () => {
  it('tensor constructors return Tensor; Tensor has the documented members', () => {
    expectTypeOf(tensor).returns.toEqualTypeOf<Tensor>();
    expectTypeOf(zeros).returns.toEqualTypeOf<Tensor>();
    expectTypeOf(randn).returns.toEqualTypeOf<Tensor>();
    expectTypeOf(rand).returns.toEqualTypeOf<Tensor>();
    expectTypeOf<Tensor['dtype']>().toEqualTypeOf<'float32' | 'bfloat16' | 'float16' | 'int32'>();
    expectTypeOf<DType>().toEqualTypeOf<'float32' | 'bfloat16' | 'float16' | 'int32'>();
    expectTypeOf<FloatDType>().toEqualTypeOf<'float32' | 'bfloat16' | 'float16'>();
    expectTypeOf<Tensor['device']>().toEqualTypeOf<'cpu' | 'cuda'>();
    expectTypeOf<Device>().toEqualTypeOf<'cpu' | 'cuda'>();
    expectTypeOf<Tensor['shape']>().toEqualTypeOf<Shape>();
    expectTypeOf<Shape>().toEqualTypeOf<readonly number[]>();
    expectTypeOf<Tensor['size']>().toEqualTypeOf<number>();
    expectTypeOf<Tensor['toFloat32Array']>().returns.toEqualTypeOf<Float32Array>();
    expectTypeOf<Tensor['data']>().returns.toEqualTypeOf<Promise<Float32Array>>();
    expectTypeOf<Tensor['to']>().parameter(0).toEqualTypeOf<Device>();
    expectTypeOf<Tensor['to']>().returns.toEqualTypeOf<Tensor>();
    expectTypeOf<Tensor['dispose']>().returns.toEqualTypeOf<void>();
    expectTypeOf<Tensor[typeof Symbol.dispose]>().returns.toEqualTypeOf<void>();
    expectTypeOf(memory).returns.toEqualTypeOf<MemoryInfo>();
  });

  it('tensor() rejects a string, a Float64Array and a bad dtype at the type level', () => {
    // @ts-expect-error a string is not tensor data
    expectTypeOf(tensor).toBeCallableWith('abc', [3]);
    // @ts-expect-error a Float64Array is not tensor data
    expectTypeOf(tensor).toBeCallableWith(new Float64Array(3), [3]);
    // @ts-expect-error 'int8' is not a dtype
    expectTypeOf(tensor).toBeCallableWith([1, 2, 3], [3], { dtype: 'int8' });
    expectTypeOf(tensor).toBeCallableWith(new Float32Array(3), [3]);
    expectTypeOf(tensor).toBeCallableWith([1, 2, 3], [3], { dtype: 'bfloat16', device: 'cpu' });
    expectTypeOf(tensor).toBeCallableWith(new Uint16Array(3), [3], { dtype: 'float16' });
  });

  it('int32: the constructors take Int32Array, integers and zeros with dtype int32; toInt32Array returns Int32Array', () => {
    expectTypeOf(tensor).toBeCallableWith(new Int32Array(3), [3]);
    expectTypeOf(tensor).toBeCallableWith(new Int32Array(3), [3], { dtype: 'int32', device: 'cpu' });
    expectTypeOf(tensor).toBeCallableWith([1, 2, 3], [3], { dtype: 'int32' });
    expectTypeOf(zeros).toBeCallableWith([2, 3], { dtype: 'int32' });
    expectTypeOf<Tensor['toInt32Array']>().returns.toEqualTypeOf<Int32Array>();
    expectTypeOf<Tensor['toInt32Array']>().parameters.toEqualTypeOf<[]>();
    expectTypeOf<Tensor['astype']>().parameter(0).toEqualTypeOf<DType>();
    // @ts-expect-error a Uint32Array is not tensor data
    expectTypeOf(tensor).toBeCallableWith(new Uint32Array(3), [3], { dtype: 'int32' });
    // @ts-expect-error 'int64' is not a dtype
    expectTypeOf(zeros).toBeCallableWith([3], { dtype: 'int64' });
  });

  it('lora.forward returns { y: Tensor, saved: LoraSaved }', () => {
    expectTypeOf(lora.forward).returns.toEqualTypeOf<{ y: Tensor; saved: LoraSaved }>();
    expectTypeOf(lora.forwardAsync).returns.toEqualTypeOf<Promise<{ y: Tensor; saved: LoraSaved }>>();
    expectTypeOf<LoraSaved['bytes']>().toEqualTypeOf<number>();
    expectTypeOf<LoraSaved['xa']>().toEqualTypeOf<Tensor>();
    expectTypeOf(lora.forward).parameter(4).toHaveProperty('scale').toEqualTypeOf<number>();
    // @ts-expect-error scale is required
    expectTypeOf(lora.forward).toBeCallableWith({} as Tensor, {} as Tensor, {} as Tensor, {} as Tensor, {});
  });

  it("lora.backward's dA is Tensor | undefined; dx and dB are Tensor", () => {
    expectTypeOf(lora.backward).returns.toEqualTypeOf<LoraGrads>();
    expectTypeOf<LoraGrads['dA']>().toEqualTypeOf<Tensor | undefined>();
    expectTypeOf<LoraGrads['dx']>().toEqualTypeOf<Tensor>();
    expectTypeOf<LoraGrads['dB']>().toEqualTypeOf<Tensor>();
    expectTypeOf(lora.backwardAsync).returns.toEqualTypeOf<Promise<LoraGrads>>();
  });

  it('merge, unmerge, backends and setThreads', () => {
    expectTypeOf(lora.merge).returns.toEqualTypeOf<void>();
    expectTypeOf(lora.unmerge).returns.toEqualTypeOf<void>();
    expectTypeOf(lora.mergeAsync).returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf(lora.merge).parameter(3).toEqualTypeOf<number>();
    expectTypeOf(backends).returns.toEqualTypeOf<Backends>();
    expectTypeOf<Backends['cpu']['isa']>().toEqualTypeOf<'avx512' | 'avx2' | 'scalar'>();
    expectTypeOf<Backends['cuda']['available']>().toEqualTypeOf<boolean>();
    expectTypeOf<Backends['cuda']['reason']>().toEqualTypeOf<string | undefined>();
    expectTypeOf(setThreads).parameters.toEqualTypeOf<[n: number]>();
    expectTypeOf(setThreads).returns.toEqualTypeOf<number>();
  });
});
