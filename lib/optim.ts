// Optimizers (README.md, Optimizers): AdamW with parameter groups, stepping every tensor of
// every group in one fused native call, and the LoRA+ grouping (B learns ratio × faster than A).
//
// A parameter is a float32 tensor and a same-shape float32 gradient tensor that the caller (or
// a layer's backward) fills: `{ param, grad }`, the shape layers' parameters() return. The
// optimizer reads `grad` from that object at every step, so a caller may hand it a fresh tensor
// between steps; `param` is fixed when the optimizer is made (its state is sized for it).
//
// Parameters may live on the CPU or on CUDA (a grad on its param's device; the state m, v is
// made there). A step runs one fused call per device: the CPU's over the thread pool, CUDA's
// queued on the device's stream.
import { invalidRange, invalidRangeText, invalidType } from './errors.js';
import type { NativeTensor } from './native.js';
import { type Device, formatShape, Tensor } from './tensor.js';
import { checked, f32, operand, overlapping, type Region, regionOf } from './ops/check.js';
import { run, runAsync } from './ops/run.js';
import { nonNegative } from './validate.js';
import { fillZeros } from './ops/elementwise.js';

/** A trainable tensor and its gradient (same shape, float32). */
export interface Param {
  param: Tensor;
  grad: Tensor;
  /** Optional label (PEFT's lora_A, lora_B, ...); messages name positions, not labels. */
  name?: string;
}

export interface AdamWOptions {
  /** Learning rate, >= 0 (torch's default 1e-3). */
  lr?: number;
  /** (β1, β2), each in [0, 1) (default (0.9, 0.999)). */
  betas?: readonly [number, number];
  /** Added to the denominator, >= 0 (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay, >= 0: each step multiplies the parameter by 1 − lr·weightDecay (default 1e-2). */
  weightDecay?: number;
}

/** A parameter group: its tensors and the hyperparameters that override the optimizer's defaults. */
export interface ParamGroup extends AdamWOptions {
  params: readonly Param[];
  /** Optional label, e.g. 'lora_B'. */
  name?: string;
}

/** torch.optim.AdamW's defaults. */
export const ADAMW_DEFAULTS: Readonly<Required<AdamWOptions>> = Object.freeze({
  lr: 1e-3,
  betas: Object.freeze([0.9, 0.999] as const),
  eps: 1e-8,
  weightDecay: 1e-2,
});

const GROUP_KEYS = ['params', 'name', 'lr', 'betas', 'eps', 'weightDecay'];
const OPTION_KEYS = ['lr', 'betas', 'eps', 'weightDecay'];

function knownKeys(v: object, keys: readonly string[], name: string): void {
  for (const key of Object.keys(v)) if (!keys.includes(key)) throw invalidType(`a key among ${keys.join(', ')}`, name, key);
}

function betasOf(v: unknown, name: string): [number, number] {
  if (!Array.isArray(v) || v.length !== 2) throw invalidType('a pair [beta1, beta2]', name, v);
  const pair = v.map((b: unknown, i) => {
    if (typeof b !== 'number') throw invalidType('a number in [0, 1)', `${name}[${i}]`, b);
    if (!(b >= 0 && b < 1)) throw invalidRange('a number in [0, 1)', `${name}[${i}]`, b);
    return b;
  });
  return Object.freeze(pair) as unknown as [number, number];
}

function hyperparameters(v: AdamWOptions, fallback: Required<AdamWOptions>, name: string): Required<AdamWOptions> {
  return {
    lr: v.lr === undefined ? fallback.lr : nonNegative(v.lr, `${name}.lr`),
    betas: v.betas === undefined ? fallback.betas : betasOf(v.betas, `${name}.betas`),
    eps: v.eps === undefined ? fallback.eps : nonNegative(v.eps, `${name}.eps`),
    weightDecay: v.weightDecay === undefined ? fallback.weightDecay : nonNegative(v.weightDecay, `${name}.weightDecay`),
  };
}

function paramList(v: unknown, name: string): readonly Param[] {
  if (!Array.isArray(v)) throw invalidType('an array of { param, grad }', name, v);
  v.forEach((p: unknown, i) => {
    if (typeof p !== 'object' || p === null || !('param' in p)) throw invalidType('an object { param, grad }', `${name}[${i}]`, p);
  });
  return v as Param[];
}

/** The region of a checked float32 tensor (a CUDA tensor's views share its block). */
function region(t: Tensor, name: string): Region {
  if (t.device !== 'cuda') f32(t, name);
  return regionOf(t, name);
}

interface Slot {
  param: Tensor;
  entry: Param;
  m: Tensor;
  v: Tensor;
  name: string;
  region: Region;
  /** The last grad tensor that passed the checks (re-checked only when the entry's grad changes). */
  checkedGrad: Tensor | null;
}

/** One parameter group of an AdamW optimizer. Its hyperparameters may be changed between steps (a schedule). */
export class AdamWGroup {
  readonly name?: string;
  /** The group's { param, grad } objects, as given. */
  readonly params: readonly Param[];
  #hyper: Required<AdamWOptions>;
  readonly #label: string;
  /** @internal */ steps = 0;

  /** @internal */
  constructor(params: readonly Param[], hyper: Required<AdamWOptions>, label: string, name?: string) {
    this.params = Object.freeze([...params]);
    this.#hyper = hyper;
    this.#label = label;
    if (name !== undefined) this.name = name;
  }

  get lr(): number {
    return this.#hyper.lr;
  }
  set lr(v: number) {
    this.#hyper = { ...this.#hyper, lr: nonNegative(v, `${this.#label}.lr`) };
  }
  get betas(): readonly [number, number] {
    return this.#hyper.betas;
  }
  set betas(v: readonly [number, number]) {
    this.#hyper = { ...this.#hyper, betas: betasOf(v, `${this.#label}.betas`) };
  }
  get eps(): number {
    return this.#hyper.eps;
  }
  set eps(v: number) {
    this.#hyper = { ...this.#hyper, eps: nonNegative(v, `${this.#label}.eps`) };
  }
  get weightDecay(): number {
    return this.#hyper.weightDecay;
  }
  set weightDecay(v: number) {
    this.#hyper = { ...this.#hyper, weightDecay: nonNegative(v, `${this.#label}.weightDecay`) };
  }
  /** Steps this group has taken (its bias corrections use stepCount + 1 next). */
  get stepCount(): number {
    return this.steps;
  }

  describe(): string {
    const h = this.#hyper;
    return `AdamWGroup(${this.name ? `${this.name}, ` : ''}${this.params.length} tensors, lr=${h.lr}, betas=[${h.betas.join(', ')}], eps=${h.eps}, weightDecay=${h.weightDecay})`;
  }
}

/**
 * AdamW (decoupled weight decay, bias correction) as torch.optim.AdamW computes it, in float32.
 * `step()` updates every parameter of every group in one fused native call over the thread pool.
 *
 *   const opt = new optim.AdamW([{ params: layer.parameters(), lr: 1e-4 }]);
 *   // forward, backward (fills the grads) …
 *   opt.step();
 *   opt.zeroGrad();
 */
export class AdamW {
  readonly #groups: AdamWGroup[] = [];
  readonly #slots: Array<{ group: AdamWGroup; index: number; slots: Slot[] }> = [];
  /** Every parameter's slot by the buffer or device block its storage lies in (for the overlap checks). */
  readonly #byBuffer = new Map<Region['buffer'], Slot[]>();
  readonly #defaults: Required<AdamWOptions>;
  #steps = 0;
  #inFlight = false;
  #disposed = false;

  /**
   * @param groups parameter groups, or a plain list of { param, grad } (one group).
   * @param defaults hyperparameters for groups that do not set their own (torch's defaults otherwise).
   */
  constructor(groups: readonly ParamGroup[] | readonly Param[], defaults?: AdamWOptions) {
    if (defaults !== undefined && (typeof defaults !== 'object' || defaults === null))
      throw invalidType('an options object', 'defaults', defaults);
    if (defaults) knownKeys(defaults, OPTION_KEYS, 'defaults');
    this.#defaults = hyperparameters(defaults ?? {}, ADAMW_DEFAULTS, 'defaults');
    if (!Array.isArray(groups)) throw invalidType('an array of parameter groups or of { param, grad }', 'groups', groups);
    if (groups.length === 0) throw invalidRange('at least one parameter group or { param, grad }', 'groups', groups);
    const isGroup = (g: unknown) => typeof g === 'object' && g !== null && 'params' in g;
    const list: readonly ParamGroup[] = groups.every(isGroup)
      ? (groups as readonly ParamGroup[])
      : [{ params: paramList(groups, 'groups') }];
    const plain = !groups.every(isGroup);
    try {
      list.forEach((g, i) => this.#add(g, plain ? 'groups' : `groups[${i}]`, plain));
    } catch (e) {
      this.dispose(); // the state of the groups that were fine
      throw e;
    }
  }

  /** The parameter groups, in order. */
  get groups(): readonly AdamWGroup[] {
    return Object.freeze([...this.#groups]);
  }

  /** The hyperparameters groups fall back to. */
  get defaults(): Readonly<Required<AdamWOptions>> {
    return this.#defaults;
  }

  /** Number of step() calls so far. */
  get stepCount(): number {
    return this.#steps;
  }

  /** Adds a group (its state starts at zero, its step count at 0), like torch's add_param_group. */
  addParamGroup(group: ParamGroup): AdamWGroup {
    this.#usable('addParamGroup');
    return this.#add(group, `groups[${this.#groups.length}]`, false);
  }

  #add(g: ParamGroup, label: string, plain: boolean): AdamWGroup {
    if (typeof g !== 'object' || g === null) throw invalidType('a parameter group { params, lr?, ... }', label, g);
    if (!plain) knownKeys(g, GROUP_KEYS, label);
    const paramsName = plain ? label : `${label}.params`;
    const params = paramList(g.params, paramsName);
    if (g.name !== undefined && typeof g.name !== 'string') throw invalidType('a string', `${label}.name`, g.name);
    const hyper = hyperparameters(g, this.#defaults, label);
    // Check every param, then every grad (against all params, the new ones included), and only
    // then allocate the state: a bad group leaves nothing behind.
    const slots: Slot[] = [];
    const register = (slot: Slot) => this.#byBuffer.set(slot.region.buffer, [...(this.#byBuffer.get(slot.region.buffer) ?? []), slot]);
    try {
      params.forEach((entry, i) => {
        const name = `${paramsName}[${i}]`;
        const param = checked(entry.param, `${name}.param`, 'float32');
        const grad: unknown = entry.grad;
        if (grad instanceof Tensor && grad.device !== param.device)
          throw invalidRange(`a tensor on ${param.device} (like its param)`, `${name}.grad`, grad);
        const r = region(param, `${name}.param`);
        const same = this.#overlap(r);
        if (same)
          throw invalidRange('each parameter once, in one group', `${name}.param`, param, `it is also ${same.name}, or shares its memory`);
        const slot = { param, entry, name, region: r, checkedGrad: null } as Omit<Slot, 'm' | 'v'> as Slot;
        slots.push(slot);
        register(slot);
      });
      for (const slot of slots) this.#checkGrad(slot);
    } catch (e) {
      for (const slot of slots)
        this.#byBuffer.set(
          slot.region.buffer,
          this.#byBuffer.get(slot.region.buffer)!.filter((o) => o !== slot),
        );
      throw e;
    }
    for (const slot of slots) {
      slot.m = Tensor.empty(slot.param.shape, 'float32', slot.param.device, true);
      slot.v = Tensor.empty(slot.param.shape, 'float32', slot.param.device, true);
    }
    const group = new AdamWGroup(params, hyper, label, g.name);
    this.#groups.push(group);
    this.#slots.push({ group, index: this.#groups.length - 1, slots });
    return group;
  }

  /** The first parameter whose memory overlaps r, if any (one list per buffer: usually one tensor). */
  #overlap(r: Region): Region | undefined {
    return this.#byBuffer.get(r.buffer)?.find((o) => overlapping(o.region, r))?.region;
  }

  /** The slot's grad, checked (again only when the entry's grad changed). */
  #checkGrad(s: Slot): Tensor {
    const name = `${s.name}.grad`;
    const g = checked(s.entry.grad, name, 'float32');
    if (g === s.checkedGrad) return g;
    const ps = s.param.shape;
    if (g.shape.length !== ps.length || g.shape.some((d, i) => d !== ps[i]))
      throw invalidRangeText(`the shape of its param ${formatShape(ps)}`, name, formatShape(g.shape));
    if (g.device !== s.param.device) throw invalidRange(`a tensor on ${s.param.device} (like its param)`, name, g);
    const r = region(g, name);
    const clash = this.#overlap(r);
    if (clash) throw invalidRange('a gradient apart from every parameter', name, g, `it shares memory with ${clash.name}`);
    s.checkedGrad = g;
    return g;
  }

  #usable(method: string): void {
    if (this.#disposed) throw invalidType('a live optimizer', `AdamW.${method}`, this, 'it was disposed');
    if (this.#inFlight) throw invalidType('no stepAsync() in flight', `AdamW.${method}`, this, 'await the previous stepAsync() first');
  }

  /** The native arguments of one step: one set per device that holds parameters (null when none does). */
  #prepare() {
    this.#usable('step');
    const hyper = {
      lr: [] as number[],
      beta1: [] as number[],
      beta2: [] as number[],
      eps: [] as number[],
      weightDecay: [] as number[],
      step: [] as number[],
    };
    const lists = () => ({
      params: [] as NativeTensor[],
      grads: [] as NativeTensor[],
      m: [] as NativeTensor[],
      v: [] as NativeTensor[],
      group: [] as number[],
    });
    const on: Record<Device, ReturnType<typeof lists>> = { cpu: lists(), cuda: lists() };
    const tensors: Tensor[] = [];
    for (const { group, index, slots } of this.#slots) {
      hyper.lr.push(group.lr);
      hyper.beta1.push(group.betas[0]);
      hyper.beta2.push(group.betas[1]);
      hyper.eps.push(group.eps);
      hyper.weightDecay.push(group.weightDecay);
      hyper.step.push(group.steps + 1);
      for (const s of slots) {
        const l = on[s.param.device];
        l.params.push(operand(s.param, `${s.name}.param`, 'float32'));
        l.grads.push(operand(this.#checkGrad(s), `${s.name}.grad`, 'float32'));
        l.m.push(operand(s.m, `${s.name} state m`, 'float32'));
        l.v.push(operand(s.v, `${s.name} state v`, 'float32'));
        l.group.push(index);
        tensors.push(s.param, s.entry.grad, s.m, s.v);
      }
    }
    // One call per device that holds parameters (the native side reads each tensor's count from its storage).
    return {
      cpu: on.cpu.params.length ? { ...on.cpu, ...hyper } : null,
      cuda: on.cuda.params.length ? { ...on.cuda, ...hyper } : null,
      tensors,
    };
  }

  #advance(): void {
    this.#steps += 1;
    for (const g of this.#groups) g.steps += 1;
  }

  /** One AdamW step for every parameter, from the gradients in their `grad` tensors. */
  step(): void {
    const { cpu, cuda } = this.#prepare();
    if (cuda) run('adamwStep', cuda);
    if (cpu) run('adamwStep', cpu);
    this.#advance();
  }

  /**
   * step() off the event loop; equal to step() bit for bit. Parameters and grads must not change
   * until it settles. CUDA parameters' step is queued on the device in order, as step()'s is.
   */
  async stepAsync(): Promise<void> {
    const { cpu, cuda, tensors } = this.#prepare();
    this.#inFlight = true;
    try {
      if (cuda) run('adamwStep', cuda);
      if (cpu) await runAsync('adamwStep', cpu, tensors);
      this.#advance();
    } finally {
      this.#inFlight = false;
    }
  }

  /** Sets every gradient to zero. */
  zeroGrad(): void {
    this.#usable('zeroGrad');
    for (const { slots } of this.#slots) for (const s of slots) fillZeros(s.entry.grad, `${s.name}.grad`);
  }

  /** The optimizer state of `param` (torch's exp_avg and exp_avg_sq, and its group's step count), or undefined. */
  state(param: Tensor): { m: Tensor; v: Tensor; step: number } | undefined {
    for (const { group, slots } of this.#slots) for (const s of slots) if (s.param === param) return { m: s.m, v: s.v, step: group.steps };
    return undefined;
  }

  /** Frees the state tensors; the optimizer cannot step afterwards. Safe to call twice. */
  dispose(): void {
    if (this.#disposed) return;
    if (this.#inFlight) this.#usable('dispose');
    this.#disposed = true;
    for (const { slots } of this.#slots)
      for (const s of slots) {
        s.m.dispose();
        s.v.dispose();
      }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  describe(): string {
    const n = this.#slots.reduce((a, s) => a + s.slots.length, 0);
    return `AdamW(${this.#groups.length} groups, ${n} tensors, step ${this.#steps}${this.#disposed ? ', disposed' : ''})`;
  }
}

export interface LoraPlusParams {
  /** The adapters' A tensors (lora_A): learning rate lr. */
  A: readonly Param[];
  /** The adapters' B tensors (lora_B): learning rate ratio × lr. */
  B: readonly Param[];
  /** Anything else that trains (biases, a classifier head, ...): learning rate lr. */
  others?: readonly Param[];
}

export interface LoraPlusOptions {
  /** The base learning rate (A's and the others'). Required. */
  lr: number;
  /** B's learning rate is ratio × lr (PEFT's loraplus_lr_ratio; default 16). */
  ratio?: number;
  /** Applied to every group; the optimizer's default otherwise. */
  weightDecay?: number;
  betas?: readonly [number, number];
  eps?: number;
}

/**
 * LoRA+ parameter groups (PEFT's create_loraplus_optimizer): A (and `others`) at lr, B at
 * ratio × lr. Pass the result to `new optim.AdamW(groups)`.
 */
export function loraPlusGroups(params: LoraPlusParams, opts: LoraPlusOptions): ParamGroup[] {
  if (typeof params !== 'object' || params === null) throw invalidType('an object { A, B, others? }', 'params', params);
  const A = paramList(params.A, 'params.A');
  const B = paramList(params.B, 'params.B');
  const others = params.others === undefined ? [] : paramList(params.others, 'params.others');
  if (typeof opts !== 'object' || opts === null) throw invalidType('an options object { lr, ratio?, ... }', 'options', opts);
  const lr = nonNegative(opts.lr, 'options.lr');
  let ratio = 16;
  if (opts.ratio !== undefined) {
    if (typeof opts.ratio !== 'number') throw invalidType('a finite number > 0', 'options.ratio', opts.ratio);
    if (!(Number.isFinite(opts.ratio) && opts.ratio > 0)) throw invalidRange('a finite number > 0', 'options.ratio', opts.ratio);
    ratio = opts.ratio;
  }
  const shared: AdamWOptions = {};
  if (opts.weightDecay !== undefined) shared.weightDecay = nonNegative(opts.weightDecay, 'options.weightDecay');
  if (opts.betas !== undefined) shared.betas = betasOf(opts.betas, 'options.betas');
  if (opts.eps !== undefined) shared.eps = nonNegative(opts.eps, 'options.eps');
  const groups: ParamGroup[] = [
    { name: 'lora_A', params: [...A], lr, ...shared },
    { name: 'lora_B', params: [...B], lr: lr * ratio, ...shared },
  ];
  if (others.length > 0) groups.push({ name: 'others', params: [...others], lr, ...shared });
  return groups;
}
