// The LoRA forward as an ONNX graph, for onnxruntime-node to run beside lowrank:
//   y = Gemm(x, W, transB) + Gemm(Gemm(x, A, transB), B, transB, alpha = scale)
// W, A and B are initializers (constants), so onnxruntime can pre-pack them: its best case.
import protobuf from 'onnx-proto';

const { onnx } = protobuf;
const FLOAT = onnx.TensorProto.DataType.FLOAT;

function initializer(name, dims, values) {
  return onnx.TensorProto.create({
    name,
    dims,
    dataType: FLOAT,
    rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  });
}

function valueInfo(name, dims) {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: FLOAT,
        shape: onnx.TensorShapeProto.create({
          dim: dims.map((d) => onnx.TensorShapeProto.Dimension.create({ dimValue: d })),
        }),
      }),
    }),
  });
}

function attr(name, value) {
  return Number.isInteger(value) && name !== 'alpha'
    ? onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i: value })
    : onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.FLOAT, f: value });
}

function node(opType, inputs, outputs, attributes = []) {
  return onnx.NodeProto.create({ opType, input: inputs, output: outputs, attribute: attributes, name: outputs[0] });
}

/** Serialized ModelProto for the shape (T, in, out, r); W, A, B are Float32Arrays in PEFT layout. */
export function loraForwardModel({ t, inDim, out, r, W, A, B, scale, withAdapter = true }) {
  const nodes = withAdapter
    ? [
        node('Gemm', ['x', 'W'], ['base'], [attr('transB', 1)]),
        node('Gemm', ['x', 'A'], ['xa'], [attr('transB', 1)]),
        node('Gemm', ['xa', 'B'], ['delta'], [attr('transB', 1), attr('alpha', scale)]),
        node('Add', ['base', 'delta'], ['y']),
      ]
    : [node('Gemm', ['x', 'W'], ['y'], [attr('transB', 1)])];
  const inits = [initializer('W', [out, inDim], W)];
  if (withAdapter) inits.push(initializer('A', [r, inDim], A), initializer('B', [out, r], B));
  const graph = onnx.GraphProto.create({
    name: withAdapter ? 'lora_forward' : 'base_product',
    node: nodes,
    initializer: inits,
    input: [valueInfo('x', [t, inDim])],
    output: [valueInfo('y', [t, out])],
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'lowrank-bench',
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: 17 })],
    graph,
  });
  return onnx.ModelProto.encode(model).finish();
}
