// What a layer exposes to an optimizer: a trainable tensor and the gradient accumulated for it
// (on the parameter's device).
import { invalidRange, invalidType } from '../errors.js';
import { checked, sameDevice, shapeIs } from '../ops/check.js';
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

/**
 * A layer's base weight and optional bias as options: a 2-D weight [out, in] and a bias [out]
 * of an activation dtype on the weight's device. Returns them with out and in.
 */
export function baseOptions(weight: unknown, bias: unknown): { weight: Tensor; bias?: Tensor; out: number; inDim: number } {
  const W = checkTensorOption(weight, 'options.weight');
  checked(W, 'options.weight', 'weight');
  if (W.shape.length !== 2) throw invalidRange('a 2-D weight [out, in]', 'options.weight', W);
  const [out, inDim] = W.shape as [number, number];
  if (bias === undefined) return { weight: W, out, inDim };
  const b = checked(checkTensorOption(bias, 'options.bias'), 'options.bias', 'activation');
  shapeIs(b, 'options.bias', [out], ['out']);
  sameDevice([
    [W, 'options.weight'],
    [b, 'options.bias'],
  ]);
  return { weight: W, bias: b, out, inDim };
}

/**
 * Two tensor options that go together (a trained adapter's pair): true when both are given,
 * false when neither is; one alone is a TypeError naming the other. `init`, an option that only
 * applies when they are not given, is then a RangeError.
 */
export function givenTogether(pair: readonly [unknown, string, unknown, string], init?: readonly [unknown, string]): boolean {
  const [a, nameA, b, nameB] = pair;
  if (a === undefined && b === undefined) return false;
  if (a === undefined || b === undefined) {
    const [given, missing] = a === undefined ? [nameB, nameA] : [nameA, nameB];
    const short = (n: string) => n.replace(/^options\./, '');
    throw invalidType(`a Tensor (${given} was given: pass ${short(nameA)} and ${short(nameB)} together, or neither)`, missing, undefined);
  }
  if (init && init[0] !== undefined)
    throw invalidRange(
      `no ${init[1].replace(/^options\./, '')} when ${nameA} and ${nameB} are given (they are the starting values)`,
      init[1],
      init[0],
    );
  return true;
}
