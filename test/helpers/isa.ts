// The CPU kernel paths (LOWRANK_ISA / setIsa) this machine can run, probed once.
import { native } from '../../lib/native.js';

export const ALL_ISAS = ['avx512', 'avx2', 'scalar'] as const;
export type Isa = (typeof ALL_ISAS)[number];

/** The paths this CPU supports; leaves the default path selected. */
export function supportedIsas(): Isa[] {
  return ALL_ISAS.filter((isa) => {
    try {
      return native()._setIsa(isa) === isa;
    } catch {
      return false;
    } finally {
      native()._setIsa('');
    }
  });
}
