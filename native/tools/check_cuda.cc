// The checker's CUDA part: every op on CUDA against the CPU's float32 result, and the timing
// mode. Inputs are fresh random values (never zero) rounded to the dtype under test before the
// CPU sees them, so the comparison measures the device's arithmetic, not the input rounding.
// Device outputs are poisoned with NaN before each run: an element the device never writes
// shows up as an infinite error.
#include "check_cuda.h"

#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/dtype.h"
#include "../core/philox.h"
#include "../cpu/adamw.h"
#include "../cpu/delta_lora.h"
#include "../cpu/linear.h"
#include "../cpu/lora.h"
#include "../cpu/vera.h"
#include "../cuda/cuda.h"
#include "check_util.h"

#if LOWRANK_WITH_CUDA
#include "../cuda/gemm.cuh"  // stream(), for CUDA events on the backend's stream
#endif

namespace lowrank::check {
namespace {

namespace cpu = lowrank::cpu;
namespace cuda = lowrank::cuda;

const DType kDtypes[] = {DType::kFloat32, DType::kBFloat16, DType::kFloat16};

float round_to(float x, DType d) {
  switch (d) {
    case DType::kBFloat16: return bf16_to_f32(f32_to_bf16(x));
    case DType::kFloat16: return f16_to_f32(f32_to_f16(x));
    case DType::kFloat32: break;
    case DType::kInt32: break;
  }
  return x;
}

std::vector<float> rounded(std::vector<float> v, DType d) {
  for (float& x : v) x = round_to(x, d);
  return v;
}

std::vector<float> scaled(std::vector<float> v, float s) {
  for (float& x : v) x *= s;
  return v;
}

// Tolerance on max|diff| / max|ref|: float32 products run as split TF32 (about float32), the
// 16-bit ones round operands and outputs to 8 or 11 bits.
double tolerance(DType d) { return d == DType::kFloat32 ? 1e-4 : 2e-2; }

// n elements of dtype d on the device, freed on scope exit.
class Dev {
 public:
  Dev(size_t n, DType d) : n_(n), d_(d), p_(n ? cuda::device_alloc(n * dtype_size(d)) : nullptr) {}
  Dev(const std::vector<float>& v, DType d) : Dev(v.size(), d) { put(v); }
  ~Dev() { cuda::device_free(p_); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;

  void put(const std::vector<float>& v) {
    if (n_ == 0) return;
    if (d_ == DType::kFloat32) {
      cuda::upload(p_, v.data(), n_ * 4);
      return;
    }
    std::vector<uint16_t> h(n_);
    for (size_t i = 0; i < n_; ++i) h[i] = d_ == DType::kBFloat16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
    cuda::upload(p_, h.data(), n_ * 2);
  }
  std::vector<float> get() const {
    std::vector<float> v(n_);
    if (n_ == 0) return v;
    if (d_ == DType::kFloat32) {
      cuda::download(v.data(), p_, n_ * 4);
      return v;
    }
    std::vector<uint16_t> h(n_);
    cuda::download(h.data(), p_, n_ * 2);
    for (size_t i = 0; i < n_; ++i) v[i] = d_ == DType::kBFloat16 ? bf16_to_f32(h[i]) : f16_to_f32(h[i]);
    return v;
  }
  void poison() { put(std::vector<float>(n_, std::numeric_limits<float>::quiet_NaN())); }
  cuda::DevIn in() const { return {p_, d_}; }
  cuda::DevOut out() const { return {p_, d_}; }
  float* f32() const { return static_cast<float*>(p_); }
  void* raw() const { return p_; }

 private:
  size_t n_;
  DType d_;
  void* p_;
};

std::vector<float> rnd(int64_t n, uint32_t seed) { return random_values(static_cast<size_t>(n), seed); }

// One comparison: prints a line, records it.
void compare(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref, double tol) {
  const double err = rel_err(got, ref);
  const bool ok = err <= tol;
  record(ok);
  std::printf("  %-58s rel err %.2e (tol %.0e) %s\n", what.c_str(), err, tol, ok ? "ok" : "FAIL");
}

// Runs one group of checks; an exception from the device fails the group instead of the run.
void guarded(const std::string& what, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    record(false);
    std::printf("  %s: threw: %s FAIL\n", what.c_str(), e.what());
  }
}

std::string label(const char* op, const cpu::LoraDims& d, DType dt, double p, bool bias) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s T=%" PRId64 " in=%" PRId64 " out=%" PRId64 " r=%" PRId64 " %s p=%.1f%s", op, d.t,
                d.in, d.out, d.r, dtype_name(dt), p, bias ? " bias" : "");
  return buf;
}

const cpu::LoraDims kShapes[] = {
    {1, 7, 5, 1},         // one row
    {7, 33, 45, 8},       // nothing a multiple of a tile
    {33, 70, 45, 7},      //
    {300, 257, 130, 16},  // several tiles, odd leading dimensions (element loads)
    {65, 136, 200, 16},   // in a multiple of 8 (16-byte loads) but not of 32
    {257, 1024, 384, 16}  // full tiles, 16-byte loads
};

void check_lora(const cpu::LoraDims& d, DType dt, double p, bool with_bias, uint32_t seed) {
  const std::string name = label("lora", d, dt, p, with_bias);
  guarded(name, [&] {
    const float scale = 2.0f / static_cast<float>(d.r);
    const Dropout drop = Dropout::make(p, 0xC0FFEEull + seed);
    const std::vector<float> x = rounded(rnd(d.t * d.in, seed), dt), W = rounded(rnd(d.out * d.in, seed + 1), dt);
    const std::vector<float> bias = rounded(rnd(d.out, seed + 2), dt), dy = rounded(rnd(d.t * d.out, seed + 3), dt);
    const std::vector<float> A = scaled(rnd(d.r * d.in, seed + 4), 0.2f), B = rnd(d.out * d.r, seed + 5);
    // CPU reference
    std::vector<float> y(d.t * d.out), xa(d.t * d.r), dx(d.t * d.in), dA(d.r * d.in), dB(d.out * d.r);
    std::vector<float> dx_fa(d.t * d.in), dB_fa(d.out * d.r);
    const cpu::Weight w{W.data(), nullptr};
    cpu::lora_forward(d, x.data(), w, with_bias ? bias.data() : nullptr, A.data(), B.data(), scale, drop, y.data(),
                      xa.data());
    cpu::lora_backward(d, dy.data(), x.data(), w, A.data(), B.data(), xa.data(), scale, drop, dx.data(), dA.data(),
                       dB.data());
    cpu::lora_backward(d, dy.data(), nullptr, w, A.data(), B.data(), xa.data(), scale, drop, dx_fa.data(), nullptr,
                       dB_fa.data());
    // CUDA
    Dev gx(x, dt), gW(W, dt), gbias(bias, dt), gdy(dy, dt), gA(A, DType::kFloat32), gB(B, DType::kFloat32);
    Dev gy(y.size(), dt), gxa(xa.size(), DType::kFloat32), gdx(dx.size(), dt), gdA(dA.size(), DType::kFloat32),
        gdB(dB.size(), DType::kFloat32);
    for (Dev* o : {&gy, &gxa, &gdx, &gdA, &gdB}) o->poison();
    cuda::lora_forward(d, gx.in(), gW.in(), with_bias ? gbias.in() : cuda::DevIn{}, gA.f32(), gB.f32(), scale, drop,
                       gy.out(), gxa.f32());
    cuda::lora_backward(d, gdy.in(), gx.in(), gW.in(), gA.f32(), gB.f32(), gxa.f32(), scale, drop, gdx.out(), gdA.f32(),
                        gdB.f32());
    const double tol = tolerance(dt);
    compare(name + " y", gy.get(), y, tol);
    compare(name + " xa", gxa.get(), xa, tol);
    compare(name + " dx", gdx.get(), dx, tol);
    compare(name + " dA", gdA.get(), dA, tol);
    compare(name + " dB", gdB.get(), dB, tol);
    // LoRA-FA: no x, no dA
    for (Dev* o : {&gdx, &gdB}) o->poison();
    cuda::lora_backward(d, gdy.in(), {}, gW.in(), gA.f32(), gB.f32(), gxa.f32(), scale, drop, gdx.out(), nullptr,
                        gdB.f32());
    compare(name + " lora-fa dx", gdx.get(), dx_fa, tol);
    compare(name + " lora-fa dB", gdB.get(), dB_fa, tol);
    if (dt == DType::kFloat32 && d.r <= d.in) {  // A Aᵀ is positive definite only for r <= in
      std::vector<float> proj = dB_fa;
      cpu::lora_fa_project_grad(d, A.data(), scale, proj.data());
      Dev gp(dB_fa, DType::kFloat32);
      cuda::lora_fa_project_grad(d, gA.f32(), scale, gp.f32());
      compare(name + " lora-fa projected dB", gp.get(), proj, 1e-4);
    }
  });
}

void check_vera(const cpu::LoraDims& s, DType dt, double p, bool with_bias, uint32_t seed) {
  const std::string name = label("vera", s, dt, p, with_bias);
  guarded(name, [&] {
    const cpu::VeraDims d{s.t, s.in, s.out, s.r, s.in + 3};
    const int64_t max_out = s.out + 2;
    std::vector<float> Av(d.r * d.max_in), Bv(max_out * d.r);
    cpu::vera_projections(d.r, d.max_in, max_out, 77 + seed, Av.data(), Bv.data());
    const Dropout drop = Dropout::make(p, 0xBEEFull + seed);
    const std::vector<float> x = rounded(rnd(d.t * d.in, seed), dt), W = rounded(rnd(d.out * d.in, seed + 1), dt);
    const std::vector<float> bias = rounded(rnd(d.out, seed + 2), dt), dy = rounded(rnd(d.t * d.out, seed + 3), dt);
    const std::vector<float> ld = rnd(d.r, seed + 4), lb = rnd(d.out, seed + 5);
    std::vector<float> y(d.t * d.out), u(d.t * d.r), dx(d.t * d.in), dld(d.r), dlb(d.out);
    const cpu::Weight w{W.data(), nullptr};
    cpu::vera_forward(d, x.data(), w, with_bias ? bias.data() : nullptr, Av.data(), Bv.data(), ld.data(), lb.data(),
                      drop, y.data(), u.data());
    cpu::vera_backward(d, dy.data(), w, Av.data(), Bv.data(), ld.data(), lb.data(), u.data(), drop, dx.data(),
                       dld.data(), dlb.data());
    Dev gx(x, dt), gW(W, dt), gbias(bias, dt), gdy(dy, dt), gA(Av, DType::kFloat32), gB(Bv, DType::kFloat32);
    Dev gld(ld, DType::kFloat32), glb(lb, DType::kFloat32);
    Dev gy(y.size(), dt), gu(u.size(), DType::kFloat32), gdx(dx.size(), dt), gdld(dld.size(), DType::kFloat32),
        gdlb(dlb.size(), DType::kFloat32);
    for (Dev* o : {&gy, &gu, &gdx, &gdld, &gdlb}) o->poison();
    cuda::vera_forward(d, gx.in(), gW.in(), with_bias ? gbias.in() : cuda::DevIn{}, gA.f32(), gB.f32(), gld.f32(),
                       glb.f32(), drop, gy.out(), gu.f32());
    cuda::vera_backward(d, gdy.in(), gW.in(), gA.f32(), gB.f32(), gld.f32(), glb.f32(), gu.f32(), drop, gdx.out(),
                        gdld.f32(), gdlb.f32());
    const double tol = tolerance(dt);
    compare(name + " y", gy.get(), y, tol);
    compare(name + " u", gu.get(), u, tol);
    compare(name + " dx", gdx.get(), dx, tol);
    compare(name + " dλd", gdld.get(), dld, tol);
    compare(name + " dλb", gdlb.get(), dlb, tol);
    // merge then unmerge, in W's dtype
    std::vector<float> merged = W;
    cpu::vera_merge(d, {merged.data(), nullptr}, Av.data(), Bv.data(), ld.data(), lb.data(), 1.0f);
    Dev gm(W, dt);
    cuda::vera_merge(d, gm.out(), gA.f32(), gB.f32(), gld.f32(), glb.f32(), 1.0f);
    compare(name + " merge", gm.get(), rounded(merged, dt), tol);
    cuda::vera_merge(d, gm.out(), gA.f32(), gB.f32(), gld.f32(), glb.f32(), -1.0f);
    compare(name + " merge + unmerge", gm.get(), W, tol);
  });
}

void check_weight_updates(const cpu::LoraDims& d, DType dt, uint32_t seed) {
  const std::string name = label("merge/delta", d, dt, 0.0, false);
  guarded(name, [&] {
    const float scale = 2.0f / static_cast<float>(d.r);
    const std::vector<float> W = rounded(rnd(d.out * d.in, seed), dt);
    const std::vector<float> A0 = rnd(d.r * d.in, seed + 1), B0 = rnd(d.out * d.r, seed + 2);
    const std::vector<float> A1 = rnd(d.r * d.in, seed + 3), B1 = rnd(d.out * d.r, seed + 4);
    Dev gA0(A0, DType::kFloat32), gB0(B0, DType::kFloat32), gA1(A1, DType::kFloat32), gB1(B1, DType::kFloat32);
    const double tol = tolerance(dt);
    // merge
    std::vector<float> merged = W;
    cpu::lora_merge(d, {merged.data(), nullptr}, A0.data(), B0.data(), scale);
    Dev gW(W, dt);
    cuda::lora_merge(d, gW.out(), gA0.f32(), gB0.f32(), scale);
    compare(name + " lora merge", gW.get(), rounded(merged, dt), tol);
    // safe merge that overflows: W untouched, the index reported
    std::vector<float> huge = B0;
    huge[huge.size() / 2] = 3e38f;
    Dev gHuge(huge, DType::kFloat32), gS(W, dt);
    float bad = 0.0f;
    const int64_t at = cuda::lora_merge_safe(d, gS.out(), gA0.f32(), gHuge.f32(), 1e3f, &bad);
    const bool refused = at >= 0 && !std::isfinite(bad) && gS.get() == rounded(W, dt);
    record(refused);
    std::printf("  %-58s first non-finite at %" PRId64 ", W untouched: %s\n", (name + " safe merge").c_str(), at,
                refused ? "ok" : "FAIL");
    // Delta-LoRA
    std::vector<float> updated = W;
    cpu::delta_lora_update({d.out, d.in, d.r}, {updated.data(), nullptr}, A0.data(), B0.data(), A1.data(), B1.data(),
                           2.0f, scale);
    Dev gD(W, dt);
    cuda::delta_lora_update({d.out, d.in, d.r}, gD.out(), gA0.f32(), gB0.f32(), gA1.f32(), gB1.f32(), 2.0f, scale);
    compare(name + " delta-lora update", gD.get(), rounded(updated, dt), tol);
  });
}

void check_linear(const cpu::LoraDims& s, DType dt, uint32_t seed) {
  const std::string name = label("linear", s, dt, 0.0, true);
  guarded(name, [&] {
    const cpu::LinearDims d{s.t, s.in, s.out};
    const std::vector<float> x = rounded(rnd(d.t * d.in, seed), dt), W = rounded(rnd(d.out * d.in, seed + 1), dt);
    const std::vector<float> bias = rounded(rnd(d.out, seed + 2), dt), dy = rounded(rnd(d.t * d.out, seed + 3), dt);
    std::vector<float> y(d.t * d.out), dx(d.t * d.in), dW(d.out * d.in), db(d.out);
    cpu::linear_forward(d, x.data(), {W.data(), nullptr}, bias.data(), y.data());
    cpu::linear_backward(d, dy.data(), x.data(), {W.data(), nullptr}, dx.data(), dW.data(), db.data());
    Dev gx(x, dt), gW(W, dt), gbias(bias, dt), gdy(dy, dt);
    Dev gy(y.size(), dt), gdx(dx.size(), dt), gdW(dW.size(), DType::kFloat32), gdb(db.size(), DType::kFloat32);
    for (Dev* o : {&gy, &gdx, &gdW, &gdb}) o->poison();
    cuda::linear_forward(d, gx.in(), gW.in(), gbias.in(), gy.out());
    cuda::linear_backward(d, gdy.in(), gx.in(), gW.in(), gdx.out(), gdW.f32(), gdb.f32());
    const double tol = tolerance(dt);
    compare(name + " y", gy.get(), y, tol);
    compare(name + " dx", gdx.get(), dx, tol);
    compare(name + " dW", gdW.get(), dW, tol);
    compare(name + " db", gdb.get(), db, 1e-6);
  });
}

// Five steps over three tensors in two groups: the CUDA step must give the CPU's bits.
void check_adamw() {
  guarded("adamw", [&] {
    const int64_t sizes[] = {1, 7, 70001};
    std::vector<std::vector<float>> p, m, v;
    for (int i = 0; i < 3; ++i) {
      p.push_back(rnd(sizes[i], 500 + i));
      m.push_back(std::vector<float>(sizes[i], 0.0f));
      v.push_back(std::vector<float>(sizes[i], 0.0f));
    }
    std::vector<cpu::AdamwTensor> host(3), dev(3);
    std::vector<std::unique_ptr<Dev>> bufs;
    for (int i = 0; i < 3; ++i) {
      for (const std::vector<float>* h : {&p[i], &m[i], &v[i]})
        bufs.push_back(std::make_unique<Dev>(*h, DType::kFloat32));
    }
    bool same = true;
    for (int64_t step = 1; step <= 5; ++step) {
      std::vector<cpu::AdamwHyper> hyper(3);
      for (int i = 0; i < 3; ++i) {
        hyper[i].lr = i == 2 ? 16e-3 : 1e-3;  // LoRA+: the last tensor in a ratio-16 group
        hyper[i].step = step;
      }
      std::vector<std::vector<float>> g(3);
      std::vector<std::unique_ptr<Dev>> grads;
      for (int i = 0; i < 3; ++i) {
        g[i] = rnd(sizes[i], 900 + static_cast<uint32_t>(step * 3 + i));
        grads.push_back(std::make_unique<Dev>(g[i], DType::kFloat32));
        host[i] = {p[i].data(), g[i].data(), m[i].data(), v[i].data(), sizes[i]};
        dev[i] = {bufs[i * 3]->f32(), grads[i]->f32(), bufs[i * 3 + 1]->f32(), bufs[i * 3 + 2]->f32(), sizes[i]};
      }
      cpu::adamw_step(host.data(), hyper.data(), 3);
      cuda::adamw_step(dev.data(), hyper.data(), 3);
      cuda::synchronize();  // the step's grads go out of scope next
    }
    for (int i = 0; i < 3; ++i)
      same = same && bufs[i * 3]->get() == p[i] && bufs[i * 3 + 1]->get() == m[i] && bufs[i * 3 + 2]->get() == v[i];
    record(same);
    std::printf("  %-58s %s\n", "adamw 5 steps, 3 tensors (1, 7, 70001), 2 groups: bit-identical",
                same ? "ok" : "FAIL");
  });
}

// Conversions on the device against the host's (bit for bit).
void check_convert() {
  guarded("convert", [&] {
    std::vector<float> v = rnd(100003, 4242);
    v[0] = std::numeric_limits<float>::infinity();
    v[1] = 1e-7f;     // a float16 subnormal
    v[2] = 70000.0f;  // float16 overflow
    Dev src(v, DType::kFloat32);
    bool ok = true;
    for (DType d : {DType::kBFloat16, DType::kFloat16}) {
      Dev dst(v.size(), d), back(v.size(), DType::kFloat32);
      cuda::convert(src.raw(), DType::kFloat32, dst.raw(), d, static_cast<int64_t>(v.size()));
      cuda::convert(dst.raw(), d, back.raw(), DType::kFloat32, static_cast<int64_t>(v.size()));
      const std::vector<float> got = back.get();
      for (size_t i = 0; i < v.size() && ok; ++i) {
        const float want = round_to(v[i], d);
        ok = std::memcmp(&got[i], &want, 4) == 0;
      }
    }
    record(ok);
    std::printf("  %-58s %s\n", "convert float32 <-> bfloat16 / float16, 100003 values", ok ? "ok" : "FAIL");
  });
}

// fill and add_into against the host, bit for bit.
void check_elementwise() {
  guarded("elementwise", [&] {
    bool ok = true;
    for (int64_t n : {1, 7, 33, 100003}) {
      const std::vector<float> a = rnd(n, 31 + static_cast<uint32_t>(n)), b = rnd(n, 37 + static_cast<uint32_t>(n));
      Dev ga(a, DType::kFloat32), gb(b, DType::kFloat32);
      cuda::add_into(ga.f32(), gb.f32(), n);
      std::vector<float> want(a.size());
      for (size_t i = 0; i < a.size(); ++i) want[i] = a[i] + b[i];
      ok = ok && ga.get() == want;
      for (DType d : kDtypes) {
        Dev gf(static_cast<size_t>(n), d);
        gf.poison();
        cuda::fill(gf.out(), -0.1f, n);
        ok = ok && gf.get() == std::vector<float>(static_cast<size_t>(n), round_to(-0.1f, d));
      }
    }
    record(ok);
    std::printf("  %-58s %s\n", "add_into and fill (every dtype), n in 1, 7, 33, 100003", ok ? "ok" : "FAIL");
  });
}

// ---- timing --------------------------------------------------------------------------------

// Median milliseconds of fn over 20 runs after 3 warm-up runs, by CUDA events on the backend's
// stream where available, else by the wall clock around a synchronize.
double time_device(const std::function<void()>& fn) {
  for (int i = 0; i < 3; ++i) fn();
  cuda::synchronize();
  std::vector<double> t;
#if LOWRANK_WITH_CUDA
  cudaEvent_t start = nullptr, stop = nullptr;
  if (cudaEventCreate(&start) != cudaSuccess || cudaEventCreate(&stop) != cudaSuccess)
    throw std::runtime_error("cudaEventCreate failed");
  for (int i = 0; i < 20; ++i) {
    cudaEventRecord(start, cuda::stream());
    fn();
    cudaEventRecord(stop, cuda::stream());
    cudaEventSynchronize(stop);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start, stop);
    t.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
#else
  for (int i = 0; i < 20; ++i)
    t.push_back(time_ms(1, [&] {
      fn();
      cuda::synchronize();
    }));
#endif
  return median(t);
}

}  // namespace

void cuda_op_checks() {
  uint32_t seed = 1000;
  for (DType dt : kDtypes)
    for (const cpu::LoraDims& d : kShapes) {
      for (double p : {0.0, 0.3}) {
        check_lora(d, dt, p, p == 0.0, seed += 10);
        check_vera(d, dt, p, p != 0.0, seed += 10);
      }
      check_weight_updates(d, dt, seed += 10);
      check_linear(d, dt, seed += 10);
    }
  check_adamw();
  check_convert();
  check_elementwise();
}

bool cuda_timing() {
  bool ok = true;
  try {
    const int64_t T = 8192, in = 4096, out = 4096, r = 16;
    const cpu::LoraDims d{T, in, out, r};
    std::printf("cuda timing: T=%" PRId64 " in=%" PRId64 " out=%" PRId64 " r=%" PRId64
                ", median of 20 after 3 warm-up, CUDA events\n",
                T, in, out, r);
    std::printf("  %-34s %10s %10s %8s\n", "op", "ms", "TFLOP/s", "/ base");
    for (DType dt : {DType::kBFloat16, DType::kFloat32}) {
      const float scale = 2.0f;
      Dev x(rnd(T * in, 1), dt), W(rnd(out * in, 2), dt), dy(rnd(T * out, 3), dt);
      Dev A(scaled(rnd(r * in, 4), 0.02f), DType::kFloat32), B(scaled(rnd(out * r, 5), 0.02f), DType::kFloat32);
      Dev y(T * out, dt), xa(T * r, DType::kFloat32), dx(T * in, dt), dA(r * in, DType::kFloat32),
          dB(out * r, DType::kFloat32);
      const double base_flops = 2.0 * T * in * out;
      const double base = time_device([&] { cuda::linear_forward({T, in, out}, x.in(), W.in(), {}, y.out()); });
      const Dropout none = Dropout::make(0.0, 0);
      auto row = [&](const char* name, double ms, double flops) {
        std::printf("  %-34s %10.4f %10.1f %8.3f\n", (std::string(name) + " " + dtype_name(dt)).c_str(), ms,
                    flops / ms * 1e-9, ms / base);
      };
      row("base product x·Wᵀ", base, base_flops);
      const double fwd_flops = base_flops + 2.0 * T * r * (in + out);
      const double fwd = time_device(
          [&] { cuda::lora_forward(d, x.in(), W.in(), {}, A.f32(), B.f32(), scale, none, y.out(), xa.f32()); });
      row("LoRA forward", fwd, fwd_flops);
      const double bwd_flops = base_flops + 4.0 * T * r * (in + out);
      const double fb = time_device([&] {
        cuda::lora_forward(d, x.in(), W.in(), {}, A.f32(), B.f32(), scale, none, y.out(), xa.f32());
        cuda::lora_backward(d, dy.in(), x.in(), W.in(), A.f32(), B.f32(), xa.f32(), scale, none, dx.out(), dA.f32(),
                            dB.f32());
      });
      row("LoRA forward + backward", fb, fwd_flops + bwd_flops);
      const double fa = time_device([&] {
        cuda::lora_forward(d, x.in(), W.in(), {}, A.f32(), B.f32(), scale, none, y.out(), xa.f32());
        cuda::lora_backward(d, dy.in(), {}, W.in(), A.f32(), B.f32(), xa.f32(), scale, none, dx.out(), nullptr,
                            dB.f32());
      });
      row("LoRA-FA forward + backward", fa, fwd_flops + bwd_flops - 2.0 * T * r * in);
      Dev Wm(rnd(out * in, 6), dt);
      int flip = 0;
      const double merge =
          time_device([&] { cuda::lora_merge(d, Wm.out(), A.f32(), B.f32(), (flip++ % 2) ? -scale : scale); });
      row("merge W += s·B·A", merge, 2.0 * out * in * r);
      const double delta = time_device([&] {
        cuda::delta_lora_update({out, in, r}, Wm.out(), A.f32(), B.f32(), A.f32(), B.f32(), 2.0f, scale);
      });
      row("Delta-LoRA update of W", delta, 4.0 * out * in * r);
    }
  } catch (const std::exception& e) {
    std::printf("  threw: %s FAIL\n", e.what());
    ok = false;
  }
  return ok;
}

}  // namespace lowrank::check
