// What a layer exposes to an optimizer: a trainable tensor and the gradient accumulated for it
// (on the parameter's device).
import { invalidType } from '../errors.js';
import { addInto, fillZeros } from '../ops/elementwise.js';
import { Tensor } from '../tensor.js';

export interface Parameter {
  /** PEFT's name for the tensor (lora_A, lora_B, vera_lambda_d, ...). */
  name: string;
  param: Tensor;
  /** Same shape as param; backward adds into it, zeroGrad() clears it. */
  grad: Tensor;
}

export function parameter(name: string, param: Tensor): Parameter {
  return { name, param, grad: Tensor.empty(param.shape, 'float32', param.device, true) };
}

/** grad += g, element by element. */
export function accumulate(p: Parameter, g: Tensor): void {
  addInto(p.grad, g, `${p.name} gradient`, `${p.name} new gradient`);
}

export function zeroGrad(params: readonly Parameter[]): void {
  for (const p of params) fillZeros(p.grad, `${p.name} gradient`);
}

/** A layer's tensor option: a Tensor of a float dtype (no layer takes int32; the ops check the rest). */
export function checkTensorOption(v: unknown, name: string): Tensor {
  if (!(v instanceof Tensor)) throw invalidType('a Tensor', name, v);
  if (v.dtype === 'int32') throw invalidType('a float32, bfloat16 or float16 Tensor', name, v, 'dtype is int32');
  return v;
}
