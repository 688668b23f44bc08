// The float32 GEMM driver: cache blocking, packing and threading around the micro-kernels.
//
// Blocking (BLIS-style): C is split into column slices, one per thread (row slices when C is
// too narrow), so threads never share output and never wait for each other. Within a slice,
// for each block of kc steps of the joined inner dimension, op(B)'s kc x nc panel is packed
// into NR-wide strips, then op(A)'s mc x kc blocks into MR-tall strips, and the micro-kernel
// sweeps the tiles with the B strip resident in cache. The terms of a joined product are one
// virtual inner dimension: LoRA's 16 extra steps ride in the last block of the base product
// instead of costing another pass over C.
//
// Cost: 2·m·n·Σk FLOPs. Fewest bytes: A, B read once and C written once; packing reads B once
// and A once per thread.
#include "../gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "../../core/dtype.h"
#include "../threadpool.h"
#include "kernels.h"

namespace lowrank::cpu {
namespace {

using gemm_detail::KernelSet;
using gemm_detail::MicroKernel;

// The block sizes are chosen at run time (blocking_for, below) from the caches this CPU
// reports; these are the fixed rules around them.
constexpr int64_t kKTail = 64;     // a remainder this small joins the previous block
constexpr int64_t kStreamK = 128;  // below this block depth, C's traffic decides the loop order
constexpr int64_t kUpdateK = 512;  // a product accumulated into C this shallow is a rank-r update

bool supported(const KernelSet& ks) {
  __builtin_cpu_init();
  if (&ks == &gemm_detail::kAvx512) return __builtin_cpu_supports("avx512f");
  if (&ks == &gemm_detail::kAvx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return true;
}

const KernelSet* by_name(const char* name) {
  for (const KernelSet* ks : {&gemm_detail::kAvx512, &gemm_detail::kAvx2, &gemm_detail::kScalar})
    if (std::strcmp(ks->name, name) == 0) return ks;
  return nullptr;
}

const KernelSet* best_supported() {
  for (const KernelSet* ks : {&gemm_detail::kAvx512, &gemm_detail::kAvx2})
    if (supported(*ks)) return ks;
  return &gemm_detail::kScalar;
}

const KernelSet* initial_kernels() {
  if (const char* env = std::getenv("LOWRANK_ISA")) {
    const KernelSet* ks = by_name(env);
    if (ks && supported(*ks)) return ks;
  }
  return best_supported();
}

const KernelSet* g_kernels = initial_kernels();

// Element (i, j) of op(X), with its dropout factor: the slow path for odd layouts.
inline float load(const MatView& v, int64_t i, int64_t j) {
  const int64_t r = v.trans ? j : i;
  const int64_t c = v.trans ? i : j;
  const int64_t idx = r * v.ld + c;
  const float x = v.bf16 ? bf16_to_f32(v.bf16[idx]) : v.data[idx];
  return v.dropout ? x * v.dropout->factor(static_cast<uint64_t>(idx)) : x;
}

// A segment of the virtual inner dimension that lies in one term.
struct Segment {
  const GemmTerm* term;
  int64_t local;   // first k within the term
  int64_t offset;  // position within the packed block
  int64_t len;
};

template <typename F>
void for_segments(const GemmArgs& g, int64_t k0, int64_t kc, F&& f) {
  int64_t base = 0;
  for (int t = 0; t < g.nterms; ++t) {
    const GemmTerm& term = g.terms[t];
    const int64_t lo = std::max(k0, base), hi = std::min(k0 + kc, base + term.k);
    if (lo < hi) f(Segment{&term, lo - base, lo - k0, hi - lo});
    base += term.k;
  }
}

// How one product runs: the micro-kernel, the tile geometry its operands are packed for, and,
// for a rank-r update (a short inner dimension accumulated into C, whose cost is C's traffic),
// the kernel set's row-strip sweep.
struct Plan {
  const KernelSet* ks;
  int mr, nr;
  MicroKernel kernel;
  gemm_detail::UpdateStrip update;  // null: not an update, or no update sweep in this set
  GemmBlocking block;               // kc, mc (a multiple of mr), nc (a multiple of nr)
};

Plan plan_for(const KernelSet& ks, const GemmArgs& g, int64_t k_total) {
  if (ks.update.strip && k_total <= kUpdateK && g.beta != 0.0f && !g.bias)
    return {&ks,       ks.update.mr,    ks.update.nr,
            ks.kernel, ks.update.strip, blocking_for(ks.name, ks.update.mr, ks.update.nr)};
  return {&ks, ks.mr, ks.nr, ks.kernel, nullptr, blocking_for(ks.name, ks.mr, ks.nr)};
}

// op(A)[i0:i0+mc, k0:k0+kc] (alpha applied) into MR-row strips: strip s holds kc groups of MR.
void pack_a(const Plan& plan, const GemmArgs& g, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* out) {
  const KernelSet& ks = *plan.ks;
  const int mr = plan.mr;
  for (int64_t s = 0; s < mc; s += mr) {
    float* strip = out + s * kc;
    const int rows = static_cast<int>(std::min<int64_t>(mr, mc - s));
    if (rows < mr) std::fill(strip, strip + mr * kc, 0.0f);
    for_segments(g, k0, kc, [&](const Segment& seg) {
      const MatView& a = seg.term->a;
      const float alpha = seg.term->alpha;
      float* dst = strip + seg.offset * mr;
      if (!a.trans && !a.dropout && !a.bf16) {
        // Blocks of 16 steps: the 16 x MR destination stays in L1 while the rows stream in.
        for (int64_t p0 = 0; p0 < seg.len; p0 += 16) {
          const int64_t pn = std::min<int64_t>(16, seg.len - p0);
          if (ks.transpose16 && pn == 16) {
            ks.transpose16(a.data + (i0 + s) * a.ld + seg.local + p0, a.ld, rows, dst + p0 * mr, mr, mr, alpha);
            continue;
          }
          for (int ii = 0; ii < rows; ++ii) {
            const float* src = a.data + (i0 + s + ii) * a.ld + seg.local + p0;
            float* d = dst + p0 * mr + ii;
            for (int64_t p = 0; p < pn; ++p) d[p * mr] = alpha * src[p];
          }
        }
      } else if (!a.trans && !a.bf16) {
        for (int ii = 0; ii < rows; ++ii) {
          const int64_t row = i0 + s + ii;
          const float* src = a.data + row * a.ld + seg.local;
          a.dropout->apply(src, static_cast<uint64_t>(row * a.ld + seg.local), seg.len, alpha, dst + ii, mr);
        }
      } else if (!a.dropout && !a.bf16) {
        for (int64_t p = 0; p < seg.len; ++p) {
          const float* src = a.data + (seg.local + p) * a.ld + i0 + s;
          for (int ii = 0; ii < rows; ++ii) dst[p * mr + ii] = alpha * src[ii];
        }
      } else {
        for (int64_t p = 0; p < seg.len; ++p)
          for (int ii = 0; ii < rows; ++ii) dst[p * mr + ii] = alpha * load(a, i0 + s + ii, seg.local + p);
      }
    });
  }
}

// op(B)[k0:k0+kc, j0:j0+nc] into NR-column strips: strip s holds kc groups of NR.
void pack_b(const Plan& plan, const GemmArgs& g, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* out) {
  const KernelSet& ks = *plan.ks;
  const int nr = plan.nr;
  for (int64_t s = 0; s < nc; s += nr) {
    float* strip = out + s * kc;
    const int cols = static_cast<int>(std::min<int64_t>(nr, nc - s));
    if (cols < nr) std::fill(strip, strip + nr * kc, 0.0f);
    for_segments(g, k0, kc, [&](const Segment& seg) {
      const MatView& b = seg.term->b;
      float* dst = strip + seg.offset * nr;
      if (b.bf16 && !b.dropout) {
        if (b.trans) {
          for (int64_t p0 = 0; p0 < seg.len; p0 += 16) {
            const int64_t pn = std::min<int64_t>(16, seg.len - p0);
            if (ks.transpose16_bf16 && pn == 16) {
              for (int half = 0; half < nr; half += 16) {
                const int rows = std::min(16, cols - half);
                if (rows > 0)
                  ks.transpose16_bf16(b.bf16 + (j0 + s + half) * b.ld + seg.local + p0, b.ld, rows,
                                      dst + p0 * nr + half, nr, 16);
              }
              continue;
            }
            for (int jj = 0; jj < cols; ++jj) {
              const uint16_t* src = b.bf16 + (j0 + s + jj) * b.ld + seg.local + p0;
              float* d = dst + p0 * nr + jj;
              for (int64_t p = 0; p < pn; ++p) d[p * nr] = bf16_to_f32(src[p]);
            }
          }
        } else {
          for (int64_t p = 0; p < seg.len; ++p) {
            const uint16_t* src = b.bf16 + (seg.local + p) * b.ld + j0 + s;
            for (int jj = 0; jj < cols; ++jj) dst[p * nr + jj] = bf16_to_f32(src[jj]);
          }
        }
      } else if (b.trans && !b.dropout) {
        // A transpose; blocks of 16 steps keep the 16 x NR destination in L1.
        for (int64_t p0 = 0; p0 < seg.len; p0 += 16) {
          const int64_t pn = std::min<int64_t>(16, seg.len - p0);
          if (ks.transpose16 && pn == 16) {
            for (int half = 0; half < nr; half += 16) {
              const int rows = std::min(16, cols - half);
              if (rows > 0)
                ks.transpose16(b.data + (j0 + s + half) * b.ld + seg.local + p0, b.ld, rows, dst + p0 * nr + half, nr,
                               16, 1.0f);
            }
            continue;
          }
          for (int jj = 0; jj < cols; ++jj) {
            const float* src = b.data + (j0 + s + jj) * b.ld + seg.local + p0;
            float* d = dst + p0 * nr + jj;
            for (int64_t p = 0; p < pn; ++p) d[p * nr] = src[p];
          }
        }
      } else if (!b.trans && !b.bf16) {
        for (int64_t p = 0; p < seg.len; ++p) {
          const int64_t row = seg.local + p;
          const float* src = b.data + row * b.ld + j0 + s;
          if (b.dropout)
            b.dropout->apply(src, static_cast<uint64_t>(row * b.ld + j0 + s), cols, 1.0f, dst + p * nr, 1);
          else
            std::memcpy(dst + p * nr, src, static_cast<size_t>(cols) * sizeof(float));
        }
      } else {
        for (int64_t p = 0; p < seg.len; ++p)
          for (int jj = 0; jj < cols; ++jj) dst[p * nr + jj] = load(b, seg.local + p, j0 + s + jj);
      }
    });
  }
}

// 64-byte aligned scratch that grows to the largest size asked of it (a packed row of B is
// one or two whole cache lines, never split), kept per thread.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  ~AlignedBuffer() { std::free(ptr_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  float* get(size_t n) {
    if (n > size_) {
      std::free(ptr_);
      ptr_ = static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64));
      if (!ptr_) {
        size_ = 0;
        throw std::bad_alloc();
      }
      size_ = n;
    }
    return ptr_;
  }

 private:
  float* ptr_ = nullptr;
  size_t size_ = 0;
};

struct PackBuffers {
  AlignedBuffer a, b;
};

PackBuffers& pack_buffers() {
  thread_local PackBuffers buffers;
  return buffers;
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// The serial blocked product for rows [ib, ie) and columns [jb, je) of C.
void gemm_block(const Plan& plan, const GemmArgs& g, int64_t k_total, int64_t ib, int64_t ie, int64_t jb, int64_t je) {
  const int mr = plan.mr, nr = plan.nr;
  PackBuffers& pack = pack_buffers();
  const int64_t KC = plan.block.kc, MC = plan.block.mc, NC = plan.block.nc;
  const int64_t kc_max = std::min(k_total, KC + kKTail);
  float* buf_a = pack.a.get(static_cast<size_t>(round_up(std::min(MC, ie - ib), mr) * kc_max));
  float* buf_b = pack.b.get(static_cast<size_t>(round_up(std::min(NC, je - jb), nr) * kc_max));
  for (int64_t j0 = jb; j0 < je; j0 += NC) {
    const int64_t nc = std::min(NC, je - j0);
    for (int64_t k0 = 0; k0 < k_total;) {
      int64_t kc = std::min(KC, k_total - k0);
      if (k_total - k0 - kc <= kKTail) kc = k_total - k0;
      const bool first = k0 == 0;
      pack_b(plan, g, k0, kc, j0, nc, buf_b);
      for (int64_t i0 = ib; i0 < ie; i0 += MC) {
        const int64_t mc = std::min(MC, ie - i0);
        pack_a(plan, g, i0, mc, k0, kc, buf_a);
        if (plan.update) {
          for (int64_t is = 0; is < mc; is += mr)
            plan.update(kc, buf_a + is * kc, buf_b, g.c + (i0 + is) * g.ldc + j0, g.ldc,
                        static_cast<int>(std::min<int64_t>(mr, mc - is)), nc);
          continue;
        }
        auto tile = [&](int64_t is, int64_t js) {
          const int cols = static_cast<int>(std::min<int64_t>(nr, nc - js));
          const int rows = static_cast<int>(std::min<int64_t>(mr, mc - is));
          const float* bias = first && g.bias ? g.bias + j0 + js : nullptr;
          plan.kernel(kc, buf_a + is * kc, buf_b + js * kc, g.c + (i0 + is) * g.ldc + j0 + js, g.ldc, rows, cols, bias,
                      !first || g.beta != 0.0f);
        };
        if (kc >= kStreamK) {
          // Each B strip serves every A strip of the block from cache.
          for (int64_t js = 0; js < nc; js += nr)
            for (int64_t is = 0; is < mc; is += mr) tile(is, js);
        } else {
          // A short block is bound by C's traffic: walk C row strip by row strip so its rows
          // stream in order.
          for (int64_t is = 0; is < mc; is += mr)
            for (int64_t js = 0; js < nc; js += nr) tile(is, js);
        }
      }
      k0 += kc;
    }
  }
}

}  // namespace

void gemm(const GemmArgs& args) {
  if (args.m <= 0 || args.n <= 0) return;
  GemmArgs g = args;
  int64_t k_total = 0;
  for (int t = 0; t < g.nterms; ++t) k_total += std::max<int64_t>(0, g.terms[t].k);
  if (k_total == 0 || (g.beta != 0.0f && g.beta != 1.0f)) {
    // C = beta * C (+ bias when there is nothing to multiply); the kernels then accumulate.
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        float& c = g.c[i * g.ldc + j];
        c = (g.beta == 0.0f ? 0.0f : g.beta * c) + (k_total == 0 && g.bias ? g.bias[j] : 0.0f);
      }
    if (k_total == 0) return;
    g.beta = 1.0f;
  }
  const Plan plan = plan_for(*g_kernels, g, k_total);
  const int64_t nthreads = threads();
  // One slice of C per thread, along n when C is wide enough, else along m. A rank-r update
  // with a full block of rows per thread splits along m: each thread then streams one
  // contiguous run of C's rows (packing all of op(B), which is cheap beside those rows).
  const bool wide = g.n >= 2 * nthreads * plan.nr, tall = g.m >= 2 * nthreads * plan.mr;
  const bool update_rows = plan.update && g.m >= nthreads * plan.block.mc;
  if (nthreads > 1 && wide && !update_rows) {
    const int64_t cols = round_up((g.n + nthreads - 1) / nthreads, plan.nr);
    const int64_t tasks = (g.n + cols - 1) / cols;
    parallel_for(tasks,
                 [&](int64_t t) { gemm_block(plan, g, k_total, 0, g.m, t * cols, std::min(g.n, (t + 1) * cols)); });
  } else if (nthreads > 1 && tall) {
    const int64_t rows = round_up((g.m + nthreads - 1) / nthreads, plan.mr);
    const int64_t tasks = (g.m + rows - 1) / rows;
    parallel_for(tasks,
                 [&](int64_t t) { gemm_block(plan, g, k_total, t * rows, std::min(g.m, (t + 1) * rows), 0, g.n); });
  } else {
    gemm_block(plan, g, k_total, 0, g.m, 0, g.n);
  }
}

void gemm_reference(const GemmArgs& g) {
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      double acc = g.beta == 0.0f ? 0.0 : static_cast<double>(g.beta) * g.c[i * g.ldc + j];
      if (g.bias) acc += g.bias[j];
      for (int t = 0; t < g.nterms; ++t) {
        const GemmTerm& term = g.terms[t];
        double dot = 0.0;
        for (int64_t p = 0; p < term.k; ++p)
          dot += static_cast<double>(load(term.a, i, p)) * static_cast<double>(load(term.b, p, j));
        acc += static_cast<double>(term.alpha) * dot;
      }
      g.c[i * g.ldc + j] = static_cast<float>(acc);
    }
  }
}

const char* gemm_isa() { return g_kernels->name; }

GemmBlocking gemm_blocking(int* mr, int* nr) {
  *mr = g_kernels->mr;
  *nr = g_kernels->nr;
  return blocking_for(g_kernels->name, g_kernels->mr, g_kernels->nr);
}

bool set_gemm_isa(const char* name) {
  const KernelSet* ks = name == nullptr || *name == '\0' ? best_supported() : by_name(name);
  if (!ks || !supported(*ks)) return false;
  g_kernels = ks;
  return true;
}

}  // namespace lowrank::cpu
