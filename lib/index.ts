// lowrank: fast low-rank adapters (LoRA and friends) for Node.js.
export { backends, setThreads, setTf32, synchronize, type Backends } from './backends.js';
export {
  emptyCache,
  memory,
  rand,
  randn,
  Tensor,
  tensor,
  zeros,
  type Device,
  type DType,
  type FloatDType,
  type MemoryInfo,
  type RandomOptions,
  type Shape,
  type TensorOptions,
} from './tensor.js';
export { emptyPool, poolInfo, setPoolBudget, type PoolInfo } from './pool.js';
export * as lora from './ops/lora.js';
export * as deltaLora from './ops/delta-lora.js';
export * as optim from './optim.js';
export * as linear from './ops/linear.js';
export * as vera from './ops/vera.js';
export * as nn from './ops/nn.js';
export * as search from './ops/search.js';
export * as embed from './embed/index.js';
export * as safetensors from './io/safetensors.js';
export * as torchRandom from './io/torch-random.js';
export * as peft from './io/peft/index.js';
export * as checkpoint from './io/checkpoint.js';
export * as metrics from './embed/metrics.js';
export * as datasets from './embed/datasets.js';
export type { DropoutOption } from './validate.js';
export type {
  LoraForwardOptions,
  LoraForwardResult,
  LoraGrads,
  LoraBackwardOptions,
  LoraInitOptions,
  LoraSaved,
  MergeOptions,
} from './ops/lora.js';
export type {
  VeraForwardOptions,
  VeraForwardResult,
  VeraGrads,
  VeraInitOptions,
  VeraProjectionPair,
  VeraProjections,
  VeraProjectionsOptions,
  VeraSaved,
} from './ops/vera.js';
export type { TopkResult } from './ops/search.js';
export type { SearchOptions, SearchResult } from './embed/search.js';
export type { DeltaLoraAdapter, DeltaLoraUpdateOptions } from './ops/delta-lora.js';
export type { AdamW, AdamWGroup, AdamWOptions, LoraPlusOptions, LoraPlusParams, Param, ParamGroup } from './optim.js';
export { LoraLinear, type LoraLinearOptions, type LoraVariant } from './layers/lora-linear.js';
export { VeraLinear, type VeraLinearOptions } from './layers/vera-linear.js';
export type { Parameter } from './layers/parameter.js';
export { Linear } from './layers/linear.js';
export type {
  Adapter,
  AdapterSummary,
  LoraAdapter,
  LoraAdapterInput,
  LoraLayerWeights,
  PeftConfig,
  VeraAdapter,
  VeraAdapterInput,
  VeraLayerWeights,
} from './io/peft/index.js';
export type { MergeCheckpointOptions, MergeProgress, MergeReport } from './io/checkpoint.js';
export type { BootstrapInterval, BootstrapOptions, Ranking, RetrievalReport, RetrievalScores } from './embed/metrics.js';
export type { Dataset, DatasetName, DatasetOptions, DatasetSource, Pair } from './embed/datasets.js';
