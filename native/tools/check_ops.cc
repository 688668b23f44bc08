// The checker's op loop: every op of the op list (native/core/ops.def), at random inputs drawn
// from its own field visitor at awkward sizes (1, 7, 33, 70: non-multiples of every tile).
// Index tensors (labels) hold random values within their bound.
// On the CPU: outputs are poisoned with NaN first (int32 ones with INT32_MIN) and must be fully
// written, and a second run on the same inputs must give the same bits. Ops on both devices,
// where a CUDA device is usable: the same inputs uploaded, cuda::name against cpu::name, within
// 1e-4 relative for float32 tensors (split-TF32 products) and 2e-2 where a bfloat16 / float16
// tensor takes part.
// An op in the list is checked because it is in the list: none can be left out.
#include "check_ops.h"

#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/ops.h"
#include "../cuda/cuda.h"
#include "check_util.h"

namespace lowrank::check {
namespace {

enum class Role { kIn, kOut, kInOut };

// One tensor field of a filled op: where its TensorRef is and its host bytes.
struct Field {
  std::string name;
  TensorRef* ref = nullptr;
  Role role = Role::kIn;
  std::vector<uint8_t> host;  // the inputs (outputs: the poison)
};

const int64_t kSizes[] = {1, 7, 33, 70};

// An int32 output's poison: no op writes it (indices are >= 0).
constexpr int32_t kInt32Poison = INT32_MIN;

// v into element i; int32: round(100·v), NaN as kInt32Poison.
void store(std::vector<uint8_t>& bytes, DType t, int64_t i, float v) {
  if (t == DType::kInt32) {
    int32_t x = std::isnan(v) ? kInt32Poison : static_cast<int32_t>(std::lround(v * 100));
    std::memcpy(bytes.data() + 4 * i, &x, 4);
  } else {
    store_f32(bytes.data(), t, i, v);
  }
}

// The visitor that fills an op struct with random inputs (the method set of core/ops/fields.h).
class Filler {
 public:
  explicit Filler(uint32_t seed) : rng_(seed) {}

  void dim(const char*, int64_t& d) { d = pick(); }
  void input(const char* n, TensorRef& t, ops::Kind k) { tensor(n, t, k, pick() * pick(), Role::kIn); }
  void input(const char* n, TensorRef& t, ops::Kind k, ops::Shape s) { tensor(n, t, k, count(s), Role::kIn); }
  void output(const char* n, TensorRef& t, ops::Kind k) { tensor(n, t, k, pick() * pick(), Role::kOut); }
  void output(const char* n, TensorRef& t, ops::Kind k, ops::Shape s) { tensor(n, t, k, count(s), Role::kOut); }
  void inout(const char* n, TensorRef& t, ops::Kind k) { tensor(n, t, k, pick() * pick(), Role::kInOut); }
  void inout(const char* n, TensorRef& t, ops::Kind k, ops::Shape s) { tensor(n, t, k, count(s), Role::kInOut); }
  void optional_input(const char* n, TensorRef& t, ops::Kind k, ops::Shape s) {
    if (coin())
      tensor(n, t, k, count(s), Role::kIn);
    else
      t = TensorRef{};
  }
  void optional_output(const char* n, TensorRef& t, ops::Kind k, ops::Shape s) {
    if (coin())
      tensor(n, t, k, count(s), Role::kOut);
    else
      t = TensorRef{};
  }
  void labels(const char* n, TensorRef& t, ops::Shape s, int64_t bound) {
    tensor(n, t, ops::kInt32, count(s), Role::kIn);
    std::vector<uint8_t>& host = fields_.back().host;
    for (int64_t i = 0; i < t.elements; ++i) {
      const auto x = static_cast<int32_t>(rng_() % static_cast<uint64_t>(bound > 0 ? bound : 1));
      std::memcpy(host.data() + 4 * i, &x, 4);
    }
  }
  void scalar(const char*, float& x) { x = std::uniform_real_distribution<float>(0.5f, 2.0f)(rng_); }
  void number(const char*, double& x) { x = std::uniform_real_distribution<double>(0.5, 2.0)(rng_); }
  void sign(const char*, float& x) { x = coin() ? 1.0f : -1.0f; }
  void flag(const char*, bool& x) { x = coin(); }
  void seed(const char*, uint64_t& x) { x = rng_(); }
  void dropout(Dropout& d) { d = Dropout::make(coin() ? 0.0 : 0.3, rng_()); }
  void invariant(bool holds, const char*) { valid_ = valid_ && holds; }
  void may_alias(const char*, const char*) {}
  void tensors(const char* n, std::vector<TensorRef>& list, ops::Kind k, const std::vector<TensorRef>* like) {
    if (like == nullptr)
      list.resize(1 + rng_() % 3);
    else
      list.resize(like->size());
    for (size_t i = 0; i < list.size(); ++i)
      tensor((std::string(n) + "[" + std::to_string(i) + "]").c_str(), list[i], k,
             like != nullptr ? (*like)[i].elements : pick() * pick(), Role::kInOut);
  }
  void numbers(const char*, std::vector<double>& list, double example) {
    if (groups_ == 0) groups_ = 1 + rng_() % 2;
    list.assign(groups_, example);
  }
  void indices(const char*, std::vector<double>& list, size_t count, size_t range) {
    list.resize(count);
    for (double& x : list) x = static_cast<double>(rng_() % (range > 0 ? range : 1));
  }

  bool valid() const { return valid_; }
  std::vector<Field>& fields() { return fields_; }
  bool narrow() const { return narrow_; }

 private:
  int64_t pick() { return kSizes[rng_() % 4]; }
  bool coin() { return (rng_() & 1) != 0; }
  int64_t count(ops::Shape s) { return ops::elements_of("check", s); }

  DType dtype_for(ops::Kind k) {
    switch (k) {
      case ops::kF32:
      case ops::kActivation: return DType::kFloat32;  // the dtypes both devices accept
      case ops::kWeight: return coin() ? DType::kFloat32 : DType::kBFloat16;
      case ops::kAnyDtype: {
        const DType all[] = {DType::kFloat32, DType::kBFloat16, DType::kFloat16};
        return all[rng_() % 3];
      }
      case ops::kInt32: return DType::kInt32;
    }
    return DType::kFloat32;
  }

  void tensor(const char* name, TensorRef& t, ops::Kind k, int64_t n, Role role) {
    Field f;
    f.name = name;
    f.ref = &t;
    f.role = role;
    t = TensorRef{};
    t.present = true;
    t.dtype = dtype_for(k);
    t.elements = n;
    narrow_ = narrow_ || t.dtype == DType::kBFloat16 || t.dtype == DType::kFloat16;
    f.host.assign(static_cast<size_t>(n) * dtype_size(t.dtype), 0);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (int64_t i = 0; i < n; ++i) store(f.host, t.dtype, i, role == Role::kOut ? NAN : dist(rng_));
    fields_.push_back(std::move(f));
  }

  std::mt19937 rng_;
  std::vector<Field> fields_;
  size_t groups_ = 0;
  bool valid_ = true;
  bool narrow_ = false;
};

// Walks a copy of a filled struct and collects its TensorRefs in visit order (the Filler's).
class Refs {
 public:
  void dim(const char*, int64_t&) {}
  void input(const char*, TensorRef& t, ops::Kind) { refs.push_back(&t); }
  void input(const char*, TensorRef& t, ops::Kind, ops::Shape) { refs.push_back(&t); }
  void output(const char*, TensorRef& t, ops::Kind) { refs.push_back(&t); }
  void output(const char*, TensorRef& t, ops::Kind, ops::Shape) { refs.push_back(&t); }
  void inout(const char*, TensorRef& t, ops::Kind) { refs.push_back(&t); }
  void inout(const char*, TensorRef& t, ops::Kind, ops::Shape) { refs.push_back(&t); }
  void optional_input(const char*, TensorRef& t, ops::Kind, ops::Shape) {
    if (t) refs.push_back(&t);
  }
  void optional_output(const char*, TensorRef& t, ops::Kind, ops::Shape) {
    if (t) refs.push_back(&t);
  }
  void labels(const char*, TensorRef& t, ops::Shape, int64_t) { refs.push_back(&t); }
  void scalar(const char*, float&) {}
  void number(const char*, double&) {}
  void sign(const char*, float&) {}
  void flag(const char*, bool&) {}
  void seed(const char*, uint64_t&) {}
  void dropout(Dropout&) {}
  void invariant(bool, const char*) {}
  void may_alias(const char*, const char*) {}
  void tensors(const char*, std::vector<TensorRef>& list, ops::Kind, const std::vector<TensorRef>*) {
    for (TensorRef& t : list) refs.push_back(&t);
  }
  void numbers(const char*, std::vector<double>&, double) {}
  void indices(const char*, std::vector<double>&, size_t, size_t) {}
  std::vector<TensorRef*> refs;
};

template <class T, class = void>
struct has_validate : std::false_type {};
template <class T>
struct has_validate<T, std::void_t<decltype(std::declval<T&>().validate(""))>> : std::true_type {};

std::vector<float> as_f32(const std::vector<uint8_t>& bytes, DType t, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (t == DType::kInt32) {
      int32_t x;
      std::memcpy(&x, bytes.data() + 4 * i, 4);
      v[i] = static_cast<float>(x);
    } else {
      v[i] = load_f32(bytes.data(), t, i);
    }
  }
  return v;
}

// Runs cpu_fn on a fresh copy of the inputs; returns each field's bytes afterwards.
template <class Args>
bool run_cpu(const char* op, const Args& filled, std::vector<Field>& fields, void (*cpu_fn)(const Args&),
             std::vector<std::vector<uint8_t>>& out) {
  Args args = filled;
  Refs r;
  args.visit(r);
  out.clear();
  for (const Field& f : fields) out.push_back(f.host);
  for (size_t i = 0; i < fields.size(); ++i) r.refs[i]->data = out[i].data();
  try {
    cpu_fn(args);
  } catch (const RangeError& e) {
    std::printf("  %s: skipped a draw the op refuses (%s)\n", op, e.what());
    return false;
  }
  return true;
}

template <class Args>
void check_op(const char* op, void (*cpu_fn)(const Args&), void (*cuda_fn)(const Args&), bool cuda_usable) {
  int draws = 0;
  for (uint32_t seed = 1; draws < 6 && seed < 200; ++seed) {
    Args args;
    Filler fill(seed * 7919u + static_cast<uint32_t>(std::strlen(op)));
    args.visit(fill);
    if (!fill.valid()) continue;
    if constexpr (has_validate<Args>::value) {
      try {
        args.validate(op);
      } catch (const RangeError&) {
        continue;
      }
    }
    std::vector<Field>& fields = fill.fields();
    Refs check_order;
    Args probe = args;
    probe.visit(check_order);
    if (check_order.refs.size() != fields.size()) {
      std::printf("  %s: the visitor's fields differ between two walks FAILED\n", op);
      record(false);
      return;
    }
    std::vector<std::vector<uint8_t>> first, second;
    if (!run_cpu(op, args, fields, cpu_fn, first)) continue;
    run_cpu(op, args, fields, cpu_fn, second);
    ++draws;
    bool written = true, same = first == second;
    for (size_t i = 0; i < fields.size(); ++i) {
      if (fields[i].role != Role::kOut) continue;
      const TensorRef& t = *fields[i].ref;
      for (float v : as_f32(first[i], t.dtype, t.elements))
        written = written && !std::isnan(v) && !(t.dtype == DType::kInt32 && v == static_cast<float>(kInt32Poison));
    }
    record(written && same);
    std::printf("  %-18s cpu draw %d: %zu tensors, outputs written %s, repeatable %s\n", op, draws, fields.size(),
                written ? "yes" : "NO", same ? "yes" : "NO");
    if (cuda_fn == nullptr || !cuda_usable) continue;
    // The same inputs on the device.
    Args dev = args;
    Refs r;
    dev.visit(r);
    std::vector<void*> blocks;
    for (size_t i = 0; i < fields.size(); ++i) {
      void* p = cuda::device_alloc(fields[i].host.size());
      cuda::upload(p, fields[i].host.data(), fields[i].host.size());
      r.refs[i]->data = p;
      r.refs[i]->device = Device::kCuda;
      blocks.push_back(p);
    }
    bool ok = true;
    double worst = 0.0;
    try {
      cuda_fn(dev);
      const double tol = fill.narrow() ? 2e-2 : 1e-4;
      for (size_t i = 0; i < fields.size(); ++i) {
        if (fields[i].role == Role::kIn) continue;
        std::vector<uint8_t> got(fields[i].host.size());
        cuda::download(got.data(), blocks[i], got.size());
        const TensorRef& t = *fields[i].ref;
        const double e = rel_err(as_f32(got, t.dtype, t.elements), as_f32(first[i], t.dtype, t.elements));
        worst = std::max(worst, e);
        ok = ok && e <= tol;
      }
    } catch (const std::exception& e) {
      std::printf("  %s: cuda threw: %s\n", op, e.what());
      ok = false;
    }
    for (void* p : blocks) cuda::device_free(p);
    record(ok);
    std::printf("  %-18s cuda draw %d: rel err %.2e %s\n", op, draws, worst, ok ? "ok" : "FAILED");
  }
  if (draws == 0) {
    std::printf("  %s: no valid draw FAILED\n", op);
    record(false);
  }
}

}  // namespace

void op_table_checks(bool cuda_usable) {
  std::printf("op table (native/core/ops.def)%s\n", cuda_usable ? ": cpu, and cuda against cpu" : ": cpu");
#define LOWRANK_OP(js, name, Args) check_op<ops::Args>(#js, &lowrank::cpu::name, &lowrank::cuda::name, cuda_usable);
#define LOWRANK_CPU_OP(js, name, Args) check_op<ops::Args>(#js, &lowrank::cpu::name, nullptr, cuda_usable);
#include "../core/ops.def"
}

}  // namespace lowrank::check
