// lowrank: fast low-rank adapters (LoRA and friends) for Node.js.
export { backends, setThreads, type Backends } from './backends.js';
export {
  memory,
  rand,
  randn,
  Tensor,
  tensor,
  zeros,
  type Device,
  type DType,
  type MemoryInfo,
  type RandomOptions,
  type Shape,
  type TensorOptions,
} from './tensor.js';
export { emptyPool, poolInfo, setPoolBudget, type PoolInfo } from './pool.js';
export * as lora from './ops/lora.js';
export * as linear from './ops/linear.js';
export type { DropoutOption } from './ops/check.js';
export type {
  LoraForwardOptions,
  LoraForwardResult,
  LoraGrads,
  LoraBackwardOptions,
  LoraInitOptions,
  LoraSaved,
  MergeOptions,
} from './ops/lora.js';
