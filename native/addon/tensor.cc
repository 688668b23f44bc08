// The generator and GEMM entry points the tests use to check the kernels directly.
#include "tensor.h"

#include <vector>

#include "../core/dtype.h"
#include "../core/philox.h"
#include "../cpu/gemm.h"
#include "../cpu/random.h"
#include "marshal.h"

namespace lowrank::addon {
Napi::Value Philox(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    auto ctr = typed<uint32_t>(a, "counter", napi_uint32_array);
    auto key = typed<uint32_t>(a, "key", napi_uint32_array);
    auto out = typed<uint32_t>(a, "out", napi_uint32_array);
    expect_size("philox", "counter", ctr.size, 4);
    expect_size("philox", "key", key.size, 2);
    expect_size("philox", "out", out.size, 4);
    const Philox4 r = philox4x32_10(ctr.data[0], ctr.data[1], ctr.data[2], ctr.data[3], key.data[0], key.data[1]);
    for (int i = 0; i < 4; ++i) out.data[i] = r.v[i];
    return info.Env().Undefined();
  });
}

Napi::Value DropoutMask(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    const MaskRequest m = mask_request(a, "dropoutMask");
    cpu::dropout_mask(m.out.data, m.offset, static_cast<int64_t>(m.out.size), m.seed, m.p);
    return info.Env().Undefined();
  });
}

// gemm({ m, n, terms: [{ a, lda, ta, b, ldb, tb, k, alpha, aDropout?: {p, seed} }], c, ldc,
// beta, bias?, reference? }): the CPU GEMM core exposed for tests.
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    cpu::GemmArgs g;
    g.m = i64(a, "m");
    g.n = i64(a, "n");
    g.ldc = i64(a, "ldc");
    g.beta = static_cast<float>(f64(a, "beta"));
    LR_CHECK("gemm", g.m > 0 && g.n > 0 && g.ldc >= g.n, "bad m, n or ldc");
    auto c = f32(a, "c");
    auto bias = f32(a, "bias", true);
    LR_CHECK("gemm", c.size >= static_cast<size_t>((g.m - 1) * g.ldc + g.n), "c too small");
    if (bias.data) expect_size("gemm", "bias", bias.size, g.n);
    g.c = c.data;
    g.bias = bias.data;
    Napi::Array list = a.Get("terms").As<Napi::Array>();
    const uint32_t nt = list.Length();
    std::vector<cpu::GemmTerm> terms(nt);
    std::vector<Dropout> drops(nt);
    for (uint32_t i = 0; i < nt; ++i) {
      Napi::Object t = list.Get(i).As<Napi::Object>();
      cpu::GemmTerm& term = terms[i];
      term.k = i64(t, "k");
      term.alpha = static_cast<float>(f64(t, "alpha"));
      auto A = f32(t, "a"), B = f32(t, "b");
      term.a = {A.data, i64(t, "lda"), boolean(t, "ta")};
      term.b = {B.data, i64(t, "ldb"), boolean(t, "tb")};
      LR_CHECK("gemm", term.k > 0, "k must be positive");
      // Stored extents: A is m x k (k x m when transposed), B is k x n (n x k when transposed).
      const int64_t a_rows = term.a.trans ? term.k : g.m, a_cols = term.a.trans ? g.m : term.k;
      const int64_t b_rows = term.b.trans ? g.n : term.k, b_cols = term.b.trans ? term.k : g.n;
      LR_CHECK("gemm", term.a.ld >= a_cols && A.size >= static_cast<size_t>((a_rows - 1) * term.a.ld + a_cols),
               "a too small");
      LR_CHECK("gemm", term.b.ld >= b_cols && B.size >= static_cast<size_t>((b_rows - 1) * term.b.ld + b_cols),
               "b too small");
      if (t.Has("aDropout") && t.Get("aDropout").IsObject()) {
        Napi::Object d = t.Get("aDropout").As<Napi::Object>();
        drops[i] = Dropout::make(f64(d, "p"), u64(d, "seed"));
        term.a.dropout = &drops[i];
      }
    }
    g.terms = terms.data();
    g.nterms = static_cast<int>(nt);
    if (boolean(a, "reference"))
      cpu::gemm_reference(g);
    else
      cpu::gemm(g);
    return info.Env().Undefined();
  });
}

}  // namespace lowrank::addon
