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

#include "../core/check.h"
#include "../core/dtype.h"
#include "../core/ops.h"
#include "../core/philox.h"
#include "../core/tensor.h"
#include "../cpu/lora.h"
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
  // The buffer as an op's tensor on the device.
  TensorRef ref() const {
    TensorRef t;
    t.data = p_;
    t.dtype = d_;
    t.device = Device::kCuda;
    t.elements = static_cast<int64_t>(n_);
    t.present = true;
    return t;
  }

 private:
  size_t n_;
  DType d_;
  void* p_;
};

// A float32 host vector as an op's tensor on the CPU (written in place when the op writes it).
TensorRef host(const std::vector<float>& v) {
  TensorRef t;
  t.data = const_cast<float*>(v.data());
  t.dtype = DType::kFloat32;
  t.device = Device::kCpu;
  t.elements = static_cast<int64_t>(v.size());
  t.present = true;
  return t;
}

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
    ops::LoraForward f;
    f.t = d.t, f.in = d.in, f.out = d.out, f.r = d.r, f.scale = scale, f.drop = drop;
    f.x = host(x), f.W = host(W), f.A = host(A), f.B = host(B), f.y = host(y), f.xa = host(xa);
    if (with_bias) f.bias = host(bias);
    cpu::lora_forward(f);
    ops::LoraBackward b;
    b.t = d.t, b.in = d.in, b.out = d.out, b.r = d.r, b.scale = scale, b.drop = drop;
    b.dy = host(dy), b.x = host(x), b.W = host(W), b.A = host(A), b.B = host(B), b.xa = host(xa);
    b.dx = host(dx), b.dA = host(dA), b.dB = host(dB);
    cpu::lora_backward(b);
    ops::LoraBackward fa = b;  // LoRA-FA: no x, no dA
    fa.x = TensorRef{}, fa.dA = TensorRef{}, fa.dx = host(dx_fa), fa.dB = host(dB_fa);
    cpu::lora_backward(fa);
    // CUDA
    Dev gx(x, dt), gW(W, dt), gbias(bias, dt), gdy(dy, dt), gA(A, DType::kFloat32), gB(B, DType::kFloat32);
    Dev gy(y.size(), dt), gxa(xa.size(), DType::kFloat32), gdx(dx.size(), dt), gdA(dA.size(), DType::kFloat32),
        gdB(dB.size(), DType::kFloat32);
    for (Dev* o : {&gy, &gxa, &gdx, &gdA, &gdB}) o->poison();
    f.x = gx.ref(), f.W = gW.ref(), f.A = gA.ref(), f.B = gB.ref(), f.y = gy.ref(), f.xa = gxa.ref();
    if (with_bias) f.bias = gbias.ref();
    cuda::lora_forward(f);
    b.dy = gdy.ref(), b.x = gx.ref(), b.W = gW.ref(), b.A = gA.ref(), b.B = gB.ref(), b.xa = gxa.ref();
    b.dx = gdx.ref(), b.dA = gdA.ref(), b.dB = gdB.ref();
    cuda::lora_backward(b);
    const double tol = tolerance(dt);
    compare(name + " y", gy.get(), y, tol);
    compare(name + " xa", gxa.get(), xa, tol);
    compare(name + " dx", gdx.get(), dx, tol);
    compare(name + " dA", gdA.get(), dA, tol);
    compare(name + " dB", gdB.get(), dB, tol);
    // LoRA-FA: no x, no dA
    for (Dev* o : {&gdx, &gdB}) o->poison();
    b.x = TensorRef{}, b.dA = TensorRef{};
    cuda::lora_backward(b);
    compare(name + " lora-fa dx", gdx.get(), dx_fa, tol);
    compare(name + " lora-fa dB", gdB.get(), dB_fa, tol);
    if (dt == DType::kFloat32 && d.r <= d.in) {  // A Aᵀ is positive definite only for r <= in
      std::vector<float> proj = dB_fa;
      ops::LoraFaProjectGrad pg;
      pg.in = d.in, pg.out = d.out, pg.r = d.r, pg.scale = scale, pg.A = host(A), pg.dB = host(proj);
      cpu::lora_fa_project_grad(pg);
      Dev gp(dB_fa, DType::kFloat32);
      pg.A = gA.ref(), pg.dB = gp.ref();
      cuda::lora_fa_project_grad(pg);
      compare(name + " lora-fa projected dB", gp.get(), proj, 1e-4);
    }
  });
}

void check_vera(const cpu::LoraDims& s, DType dt, double p, bool with_bias, uint32_t seed) {
  const std::string name = label("vera", s, dt, p, with_bias);
  guarded(name, [&] {
    ops::VeraForward f;
    f.t = s.t, f.in = s.in, f.out = s.out, f.r = s.r, f.max_in = s.in + 3, f.max_out = s.out + 2;
    const ops::VeraForward& d = f;
    std::vector<float> Av(d.r * d.max_in), Bv(d.max_out * d.r);
    ops::VeraProjections pr;
    pr.r = d.r, pr.max_in = d.max_in, pr.max_out = d.max_out, pr.seed = 77 + seed, pr.A = host(Av), pr.B = host(Bv);
    cpu::vera_projections(pr);
    const Dropout drop = Dropout::make(p, 0xBEEFull + seed);
    const std::vector<float> x = rounded(rnd(d.t * d.in, seed), dt), W = rounded(rnd(d.out * d.in, seed + 1), dt);
    const std::vector<float> bias = rounded(rnd(d.out, seed + 2), dt), dy = rounded(rnd(d.t * d.out, seed + 3), dt);
    const std::vector<float> ld = rnd(d.r, seed + 4), lb = rnd(d.out, seed + 5);
    std::vector<float> y(d.t * d.out), u(d.t * d.r), dx(d.t * d.in), dld(d.r), dlb(d.out);
    f.drop = drop;
    f.x = host(x), f.W = host(W), f.A = host(Av), f.B = host(Bv), f.lambda_d = host(ld), f.lambda_b = host(lb);
    f.y = host(y), f.u = host(u);
    if (with_bias) f.bias = host(bias);
    cpu::vera_forward(f);
    ops::VeraBackward b;
    b.t = d.t, b.in = d.in, b.out = d.out, b.r = d.r, b.max_in = d.max_in, b.max_out = d.max_out, b.drop = drop;
    b.dy = host(dy), b.W = host(W), b.A = host(Av), b.B = host(Bv), b.lambda_d = host(ld), b.lambda_b = host(lb);
    b.u = host(u), b.dx = host(dx), b.d_lambda_d = host(dld), b.d_lambda_b = host(dlb);
    cpu::vera_backward(b);
    Dev gx(x, dt), gW(W, dt), gbias(bias, dt), gdy(dy, dt), gA(Av, DType::kFloat32), gB(Bv, DType::kFloat32);
    Dev gld(ld, DType::kFloat32), glb(lb, DType::kFloat32);
    Dev gy(y.size(), dt), gu(u.size(), DType::kFloat32), gdx(dx.size(), dt), gdld(dld.size(), DType::kFloat32),
        gdlb(dlb.size(), DType::kFloat32);
    for (Dev* o : {&gy, &gu, &gdx, &gdld, &gdlb}) o->poison();
    f.x = gx.ref(), f.W = gW.ref(), f.A = gA.ref(), f.B = gB.ref(), f.lambda_d = gld.ref(), f.lambda_b = glb.ref();
    f.y = gy.ref(), f.u = gu.ref();
    if (with_bias) f.bias = gbias.ref();
    cuda::vera_forward(f);
    b.dy = gdy.ref(), b.W = gW.ref(), b.A = gA.ref(), b.B = gB.ref(), b.lambda_d = gld.ref(), b.lambda_b = glb.ref();
    b.u = gu.ref(), b.dx = gdx.ref(), b.d_lambda_d = gdld.ref(), b.d_lambda_b = gdlb.ref();
    cuda::vera_backward(b);
    const double tol = tolerance(dt);
    compare(name + " y", gy.get(), y, tol);
    compare(name + " u", gu.get(), u, tol);
    compare(name + " dx", gdx.get(), dx, tol);
    compare(name + " dλd", gdld.get(), dld, tol);
    compare(name + " dλb", gdlb.get(), dlb, tol);
    // merge then unmerge, in W's dtype
    std::vector<float> merged = W;
    ops::VeraMerge m;
    m.in = d.in, m.out = d.out, m.r = d.r, m.max_in = d.max_in, m.max_out = d.max_out, m.sign = 1.0f;
    m.W = host(merged), m.A = host(Av), m.B = host(Bv), m.lambda_d = host(ld), m.lambda_b = host(lb);
    cpu::vera_merge(m);
    Dev gm(W, dt);
    m.W = gm.ref(), m.A = gA.ref(), m.B = gB.ref(), m.lambda_d = gld.ref(), m.lambda_b = glb.ref();
    cuda::vera_merge(m);
    compare(name + " merge", gm.get(), rounded(merged, dt), tol);
    m.sign = -1.0f;
    cuda::vera_merge(m);
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
    ops::LoraMerge m;
    m.in = d.in, m.out = d.out, m.r = d.r, m.scale = scale, m.W = host(merged), m.A = host(A0), m.B = host(B0);
    cpu::lora_merge(m);
    Dev gW(W, dt);
    m.W = gW.ref(), m.A = gA0.ref(), m.B = gB0.ref();
    cuda::lora_merge(m);
    compare(name + " lora merge", gW.get(), rounded(merged, dt), tol);
    // safe merge that overflows: W untouched, the index reported
    std::vector<float> huge = B0;
    huge[huge.size() / 2] = 3e38f;
    Dev gHuge(huge, DType::kFloat32), gS(W, dt);
    ops::LoraMerge sm = m;
    sm.W = gS.ref(), sm.B = gHuge.ref(), sm.scale = 1e3f, sm.safe = true;
    std::string error;
    try {
      cuda::lora_merge(sm);
    } catch (const RangeError& e) {
      error = e.what();
    }
    // The error names the first non-finite value and where it is (ops::merge_not_finite).
    const bool refused = error.rfind("Expected a finite merged weight", 0) == 0 && gS.get() == rounded(W, dt);
    record(refused);
    std::printf("  %-58s %s, W untouched: %s\n", (name + " safe merge").c_str(),
                error.empty() ? "no error" : error.substr(0, error.find(';')).c_str(), refused ? "ok" : "FAIL");
    // Delta-LoRA
    std::vector<float> updated = W;
    ops::DeltaLoraUpdate u;
    u.out = d.out, u.in = d.in, u.r = d.r, u.lambda = 2.0f, u.scale = scale;
    u.W = host(updated), u.A0 = host(A0), u.B0 = host(B0), u.A1 = host(A1), u.B1 = host(B1);
    cpu::delta_lora_update(u);
    Dev gD(W, dt);
    u.W = gD.ref(), u.A0 = gA0.ref(), u.B0 = gB0.ref(), u.A1 = gA1.ref(), u.B1 = gB1.ref();
    cuda::delta_lora_update(u);
    compare(name + " delta-lora update", gD.get(), rounded(updated, dt), tol);
  });
}

void check_linear(const cpu::LoraDims& s, DType dt, uint32_t seed) {
  const std::string name = label("linear", s, dt, 0.0, true);
  guarded(name, [&] {
    ops::LinearForward f;
    f.t = s.t, f.in = s.in, f.out = s.out;
    const ops::LinearForward& d = f;
    const std::vector<float> x = rounded(rnd(d.t * d.in, seed), dt), W = rounded(rnd(d.out * d.in, seed + 1), dt);
    const std::vector<float> bias = rounded(rnd(d.out, seed + 2), dt), dy = rounded(rnd(d.t * d.out, seed + 3), dt);
    std::vector<float> y(d.t * d.out), dx(d.t * d.in), dW(d.out * d.in), db(d.out);
    f.x = host(x), f.W = host(W), f.bias = host(bias), f.y = host(y);
    cpu::linear_forward(f);
    ops::LinearBackward b;
    b.t = d.t, b.in = d.in, b.out = d.out;
    b.dy = host(dy), b.x = host(x), b.W = host(W), b.dx = host(dx), b.dW = host(dW), b.db = host(db);
    cpu::linear_backward(b);
    Dev gx(x, dt), gW(W, dt), gbias(bias, dt), gdy(dy, dt);
    Dev gy(y.size(), dt), gdx(dx.size(), dt), gdW(dW.size(), DType::kFloat32), gdb(db.size(), DType::kFloat32);
    for (Dev* o : {&gy, &gdx, &gdW, &gdb}) o->poison();
    f.x = gx.ref(), f.W = gW.ref(), f.bias = gbias.ref(), f.y = gy.ref();
    cuda::linear_forward(f);
    b.dy = gdy.ref(), b.x = gx.ref(), b.W = gW.ref(), b.dx = gdx.ref(), b.dW = gdW.ref(), b.db = gdb.ref();
    cuda::linear_backward(b);
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
    std::vector<std::unique_ptr<Dev>> bufs;
    for (int i = 0; i < 3; ++i) {
      for (const std::vector<float>* h : {&p[i], &m[i], &v[i]})
        bufs.push_back(std::make_unique<Dev>(*h, DType::kFloat32));
    }
    bool same = true;
    for (int64_t step = 1; step <= 5; ++step) {
      // The per-tensor hyperparameters set directly (what AdamwStep::validate makes of the groups).
      ops::AdamwStep host_step, dev_step;
      host_step.hyper.resize(3);
      for (int i = 0; i < 3; ++i) {
        host_step.hyper[i].lr = i == 2 ? 16e-3 : 1e-3;  // LoRA+: the last tensor in a ratio-16 group
        host_step.hyper[i].step = step;
      }
      dev_step.hyper = host_step.hyper;
      std::vector<std::vector<float>> g(3);
      std::vector<std::unique_ptr<Dev>> grads;
      for (int i = 0; i < 3; ++i) {
        g[i] = rnd(sizes[i], 900 + static_cast<uint32_t>(step * 3 + i));
        grads.push_back(std::make_unique<Dev>(g[i], DType::kFloat32));
        host_step.params.push_back(host(p[i]));
        host_step.grads.push_back(host(g[i]));
        host_step.m.push_back(host(m[i]));
        host_step.v.push_back(host(v[i]));
        dev_step.params.push_back(bufs[i * 3]->ref());
        dev_step.grads.push_back(grads[i]->ref());
        dev_step.m.push_back(bufs[i * 3 + 1]->ref());
        dev_step.v.push_back(bufs[i * 3 + 2]->ref());
      }
      cpu::adamw_step(host_step);
      cuda::adamw_step(dev_step);
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
      ops::Convert there, back_again;
      there.src = src.ref(), there.dst = dst.ref();
      back_again.src = dst.ref(), back_again.dst = back.ref();
      cuda::convert(there);
      cuda::convert(back_again);
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
      ops::AddInto add;
      add.dst = ga.ref(), add.src = gb.ref();
      cuda::add_into(add);
      std::vector<float> want(a.size());
      for (size_t i = 0; i < a.size(); ++i) want[i] = a[i] + b[i];
      ok = ok && ga.get() == want;
      for (DType d : kDtypes) {
        Dev gf(static_cast<size_t>(n), d);
        gf.poison();
        ops::Fill fill;
        fill.dst = gf.ref(), fill.value = -0.1f;
        cuda::fill(fill);
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
      const Dropout none = Dropout::make(0.0, 0);
      // The ops' arguments, built once outside the timed calls.
      ops::LinearForward lin;
      lin.t = T, lin.in = in, lin.out = out, lin.x = x.ref(), lin.W = W.ref(), lin.y = y.ref();
      ops::LoraForward f;
      f.t = T, f.in = in, f.out = out, f.r = r, f.scale = scale, f.drop = none;
      f.x = x.ref(), f.W = W.ref(), f.A = A.ref(), f.B = B.ref(), f.y = y.ref(), f.xa = xa.ref();
      ops::LoraBackward b;
      b.t = T, b.in = in, b.out = out, b.r = r, b.scale = scale, b.drop = none;
      b.dy = dy.ref(), b.x = x.ref(), b.W = W.ref(), b.A = A.ref(), b.B = B.ref(), b.xa = xa.ref();
      b.dx = dx.ref(), b.dA = dA.ref(), b.dB = dB.ref();
      ops::LoraBackward fa = b;  // LoRA-FA: no x, no dA
      fa.x = TensorRef{}, fa.dA = TensorRef{};
      const double base_flops = 2.0 * T * in * out;
      const double base = time_device([&] { cuda::linear_forward(lin); });
      auto row = [&](const char* name, double ms, double flops) {
        std::printf("  %-34s %10.4f %10.1f %8.3f\n", (std::string(name) + " " + dtype_name(dt)).c_str(), ms,
                    flops / ms * 1e-9, ms / base);
      };
      row("base product x·Wᵀ", base, base_flops);
      const double fwd_flops = base_flops + 2.0 * T * r * (in + out);
      const double fwd = time_device([&] { cuda::lora_forward(f); });
      row("LoRA forward", fwd, fwd_flops);
      const double bwd_flops = base_flops + 4.0 * T * r * (in + out);
      const double fb = time_device([&] {
        cuda::lora_forward(f);
        cuda::lora_backward(b);
      });
      row("LoRA forward + backward", fb, fwd_flops + bwd_flops);
      const double fa_ms = time_device([&] {
        cuda::lora_forward(f);
        cuda::lora_backward(fa);
      });
      row("LoRA-FA forward + backward", fa_ms, fwd_flops + bwd_flops - 2.0 * T * r * in);
      Dev Wm(rnd(out * in, 6), dt);
      ops::LoraMerge m;
      m.in = in, m.out = out, m.r = r, m.W = Wm.ref(), m.A = A.ref(), m.B = B.ref();
      int flip = 0;
      const double merge = time_device([&] {
        m.scale = (flip++ % 2) ? -scale : scale;
        cuda::lora_merge(m);
      });
      row("merge W += s·B·A", merge, 2.0 * out * in * r);
      ops::DeltaLoraUpdate u;
      u.out = out, u.in = in, u.r = r, u.lambda = 2.0f, u.scale = scale;
      u.W = Wm.ref(), u.A0 = A.ref(), u.B0 = B.ref(), u.A1 = A.ref(), u.B1 = B.ref();
      const double delta = time_device([&] { cuda::delta_lora_update(u); });
      row("Delta-LoRA update of W", delta, 4.0 * out * in * r);
    }
  } catch (const std::exception& e) {
    std::printf("  threw: %s FAIL\n", e.what());
    ok = false;
  }
  return ok;
}

}  // namespace lowrank::check
