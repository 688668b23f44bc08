// What a layer exposes to an optimizer: a trainable tensor and the gradient accumulated for it.
import { invalidType } from '../errors.js';
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
  const dst = p.grad.storage(`${p.name} gradient`) as Float32Array;
  const src = g.storage(`${p.name} new gradient`) as Float32Array;
  for (let i = 0; i < dst.length; i++) dst[i] += src[i];
}

export function zeroGrad(params: readonly Parameter[]): void {
  for (const p of params) (p.grad.storage(`${p.name} gradient`) as Float32Array).fill(0);
}

export function checkTensorOption(v: unknown, name: string): Tensor {
  if (!(v instanceof Tensor)) throw invalidType('a Tensor', name, v);
  return v;
}
