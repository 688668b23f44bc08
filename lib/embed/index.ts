// The semantic-search workload (README, Semantic search): the frozen encoder, the adapter
// training and exact search. The metrics and the datasets are the top-level `metrics` and `datasets` namespaces.
export {
  encoderHead,
  encoderIdentity,
  pooledCached,
  SentenceEncoder,
  useHead,
  USE_LITE,
  type CachedPooled,
  type EncodeOptions,
} from './encoder.js';
export {
  DEFAULT_LR,
  EMBEDDING_METHODS,
  EmbeddingModel,
  finetuneEmbeddings,
  identityHead,
  normalizeRows,
  retrievalSet,
  type EmbeddingHead,
  type EmbeddingMethod,
  type EpochReport,
  type FinetuneOptions,
  type FinetuneResult,
  type PairVectors,
  type RetrievalSet,
} from './finetune.js';
export { search, searchSync, type SearchResult } from './search.js';
