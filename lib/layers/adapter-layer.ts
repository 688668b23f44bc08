// What LoraLinear and VeraLinear share: their parameters and gradients, the state one training
// forward keeps for its backward, the merged flag, and the per-call dropout seeds.
import { invalidRange } from '../errors.js';
import { bool, checkSeed, finite, options } from '../validate.js';
import { type Parameter, zeroGrad } from './parameter.js';

interface SavedState {
  readonly bytes: number;
  dispose(): void;
}

export abstract class AdapterLayer<Saved extends SavedState> {
  readonly dropout: number;
  protected saved: Saved | null = null;
  protected params: Parameter[] = [];
  protected isMerged = false;
  readonly #seed: bigint;
  #calls = 0n;

  protected constructor(dropout: unknown, seed: unknown) {
    const p = dropout === undefined ? 0 : finite(dropout, 'options.dropout');
    if (!(p >= 0 && p < 1)) throw invalidRange('a number in [0, 1)', 'options.dropout', p);
    this.dropout = p;
    this.#seed = seed === undefined ? 0n : checkSeed(seed, 'options.seed');
  }

  /** Trainable tensors with their gradients. */
  parameters(): Parameter[] {
    return this.params;
  }

  /** Bytes the last training forward kept for backward. */
  get savedBytes(): number {
    return this.saved?.bytes ?? 0;
  }

  get merged(): boolean {
    return this.isMerged;
  }

  zeroGrad(): void {
    zeroGrad(this.params);
  }

  /** Reads forward's `training` option (default true), refuses training a merged layer, and drops the last saved state. */
  protected beginForward(opts: unknown): boolean {
    const training = bool(options<{ training: boolean }>(opts, 'options').training, 'options.training', true);
    if (this.isMerged && training) throw invalidRange('an unmerged layer to train (call unmerge() first)', 'layer', 'merged');
    this.saved?.dispose();
    this.saved = null;
    return training;
  }

  /**
   * A fresh dropout mask seed for each training call (none when not training or p = 0):
   * seed · 1000003 + call, in 64-bit arithmetic (any seed in [0, 2^64) works).
   */
  protected dropoutFor(training: boolean): { p: number; seed: bigint } | undefined {
    if (!training || this.dropout === 0) return undefined;
    this.#calls += 1n;
    return { p: this.dropout, seed: BigInt.asUintN(64, this.#seed * 1_000_003n + this.#calls) };
  }

  /** Keeps `saved` for backward when training, else frees it. */
  protected keep(training: boolean, saved: Saved): void {
    if (training) this.saved = saved;
    else saved.dispose();
  }

  /** The state the last training forward kept; throws when there is none. */
  protected takeSaved(): Saved {
    if (!this.saved) throw invalidRange('a training forward() before backward()', 'layer', 'no saved state');
    const s = this.saved;
    this.saved = null;
    return s;
  }

  dispose(): void {
    this.saved?.dispose();
    for (const p of this.params) p.grad.dispose();
  }
}
