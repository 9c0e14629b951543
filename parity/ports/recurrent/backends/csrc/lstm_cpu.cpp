// One LSTM layer's whole time loop on CPU, every direction: inference, and training (a forward
// that keeps what the backward needs, and the backward).
//
// Why: the Python fast loop (parity/ports/recurrent/backends/python.py) dispatches about eight ATen ops
// per time step and direction. At batch 1 that dispatch costs more than the arithmetic; at batch
// 32 its separate elementwise passes between GEMMs do. Here each step is one GEMM (the recurrent
// product) and one vectorized pass that adds the input projection, applies the gate tail and the
// activation, updates c and h, applies Keras masking and writes the output. The input projection
// (bias included) is one GEMM per chunk of steps, computed just before them. The backward is the
// same shape: per step one vectorized pass (the cell's derivative, Keras masking) and one GEMM
// (the recurrent product's), then the weight and input gradients as one GEMM each per direction.
//
// The weights come from parity/ports/recurrent/backends/prepare.py (pack, fold): gate rows reordered to
// (i, f, o, g), the gate's affine part folded in (a hard sigmoid leaves a clamp to [0, 1]),
// oneDNN-packed or dense. Gradients are with respect to those folded weights; autograd takes
// them back through the fold.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/add.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#ifdef __linux__
#include <sched.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using Vec = at::vec::Vectorized<float>;

// Elementwise tails, numbered as CppTail in parity/layers/activations.py (CLAMP01, ...).
enum Tail : int64_t { kClamp01 = 0, kSigmoid = 1, kTanh = 2, kRelu = 3, kIdentity = 4 };
constexpr int64_t kNumTails = 5;

template <int64_t K>
inline Vec apply(const Vec& v) {
  if constexpr (K == kClamp01) {
    return at::vec::clamp(v, Vec(0.0f), Vec(1.0f));
  } else if constexpr (K == kSigmoid) {
    return Vec(1.0f) / (Vec(1.0f) + v.neg().exp());
  } else if constexpr (K == kTanh) {
    return v.tanh();
  } else if constexpr (K == kRelu) {
    return at::vec::clamp_min(v, Vec(0.0f));
  } else {
    return v;
  }
}

// The tail's derivative from its output y = apply<K>(x), which the training forward keeps.
// For the clamp it is 1 strictly inside (0, 1): at exactly 0 or 1 (an input exactly on the
// bend) torch's clamp and TensorFlow's clip pass the gradient, this gives 0.
template <int64_t K>
inline Vec derivative(const Vec& y) {
  if constexpr (K == kClamp01) {
    return y.gt(Vec(0.0f)) * y.lt(Vec(1.0f));
  } else if constexpr (K == kSigmoid) {
    return y * (Vec(1.0f) - y);
  } else if constexpr (K == kTanh) {
    return Vec(1.0f) - y * y;
  } else if constexpr (K == kRelu) {
    return y.gt(Vec(0.0f));
  } else {
    return Vec(1.0f);
  }
}

// What the training forward keeps of one time step for the backward, or all nullptr.
struct Kept {
  float* gates;  // (B, 4h) i, f, o, g after their tails
  float* tc;     // (B, h) activation(c) of the new cell state
  float* hprev;  // (B, h) h before the step
  float* cprev;  // (B, h) c before the step
};

// Where one direction's step reads and writes. Row b of a (B, n) operand starts at b * stride.
struct Step {
  const float* z;      // (B, 4h) recurrent GEMM output, rows (i, f, o, g), row stride gate_stride
  const float* xp;     // (B, 4h) input projection of this time step, bias included, likewise
  float* h;            // (B, h) state, read by this step's GEMM, overwritten here
  float* c;            // (B, h) state, updated in place
  float* out;          // (B, h) this step's output slot, row stride out_stride
  const float* prev;   // previous output slot of this direction, or nullptr (zeros)
  const bool* mask;    // (B,) true = real step, or nullptr (every row real)
  int64_t batch, hidden, out_stride, state_stride, gate_stride;
  bool zero_output;    // masked rows output zeros instead of the previous output
  Kept kept;           // training: where this step's values are kept (kTrain), else unused
  float gate_scale, gate_offset;  // training: the gate's affine part, applied here
};

// The one fused elementwise pass of a step: gates, cell, hidden state, masking, output.
// Inference reads folded weights' rows (i, f, o, g), the gate's affine part already in them.
// kTrain: the parameters' own rows (i, f, g, o), unfolded (the training forward multiplies by
// the parameters as they are, so nothing is prepared per optimizer step), the affine part
// applied here; and what the backward needs is kept (s.kept).
template <int64_t G, int64_t A, bool kTrain>
void cell_step(const Step& s) {
  constexpr int64_t kO = kTrain ? 3 : 2, kG = kTrain ? 2 : 3;  // row blocks of o and g
  const Vec scale(s.gate_scale), offset(s.gate_offset);
  const int64_t h = s.hidden, n4 = 4 * h, w = Vec::size();
  for (int64_t b = 0; b < s.batch; ++b) {
    float* out = s.out + b * s.out_stride;
    float* hb = s.h + b * s.state_stride;
    float* cb = s.c + b * s.state_stride;
    if constexpr (kTrain) {  // every row: the weight gradients' GEMMs read them all
      std::copy(hb, hb + h, s.kept.hprev + b * h);
      std::copy(cb, cb + h, s.kept.cprev + b * h);
    }
    if (s.mask != nullptr && !s.mask[b]) {  // Keras: carry h and c, output zeros or previous
      if (s.zero_output || s.prev == nullptr) {
        std::fill(out, out + h, 0.0f);
      } else {
        std::copy(s.prev + b * s.out_stride, s.prev + b * s.out_stride + h, out);
      }
      if constexpr (kTrain) {  // unread by the backward, but returned: defined values
        std::fill(s.kept.gates + b * n4, s.kept.gates + (b + 1) * n4, 0.0f);
        std::fill(s.kept.tc + b * h, s.kept.tc + (b + 1) * h, 0.0f);
      }
      continue;
    }
    const float* z = s.z + b * s.gate_stride;
    const float* xp = s.xp + b * s.gate_stride;
    for (int64_t j = 0; j < h; j += w) {
      const int64_t n = std::min(w, h - j);
      auto pre = [&](int64_t gate) {
        const int64_t k = gate * h + j;
        return Vec::loadu(z + k, n) + Vec::loadu(xp + k, n);
      };
      auto gate = [&](int64_t k) {
        if constexpr (kTrain) {
          return apply<G>(at::vec::fmadd(pre(k), scale, offset));
        } else {
          return apply<G>(pre(k));
        }
      };
      const Vec i = gate(0);
      const Vec f = gate(1);
      const Vec o = gate(kO);
      const Vec g = apply<A>(pre(kG));
      const Vec c = at::vec::fmadd(i, g, Vec::loadu(cb + j, n) * f);
      const Vec tc = apply<A>(c);
      const Vec hn = tc * o;
      if constexpr (kTrain) {
        float* kg = s.kept.gates + b * n4 + j;
        i.store(kg, n);
        f.store(kg + h, n);
        o.store(kg + 2 * h, n);
        g.store(kg + 3 * h, n);
        tc.store(s.kept.tc + b * h + j, n);
      }
      c.store(cb + j, n);
      hn.store(hb + j, n);
      hn.store(out + j, n);
    }
  }
}

// Where one direction's backward step reads and writes (rows as in Step).
struct BackStep {
  const float* gates;  // (B, 4h) kept by the forward
  const float* tc;     // (B, h)
  const float* cprev;  // (B, h)
  const float* gout;   // (B, h) gradient of this step's output slot, row stride gout_stride
  const bool* mask;    // (B,) or nullptr
  float* dh;           // (B, h) gradient of h after the step; masked rows keep theirs
  float* dc;           // (B, h) gradient of c after the step, becomes the one before it
  float* pend;         // (B, h) output gradients of masked steps owed to the last real step
  float* dz;           // (B, 4h) out: gradient of the pre-activations (0: masked rows)
  int64_t batch, hidden, gout_stride;
  float gate_scale;    // the gate's slope folded into the forward's weights (1: none)
  bool zero_output;
};

// One step of the backward, the forward's step differentiated: for a real row the gradient of
// h (the later step's, plus this output's, plus what masked steps after it output as "the
// previous output") goes through o * act(c) and the cell update; a masked row carried h and c,
// so their gradients pass unchanged, and without zero_output its output was the last real
// step's, whose gradient waits in pend (dropped if no real step came before: it was zeros).
template <int64_t G, int64_t A>
void cell_back(const BackStep& s) {
  const int64_t h = s.hidden, n4 = 4 * h, w = Vec::size();
  const Vec scale(s.gate_scale);
  for (int64_t b = 0; b < s.batch; ++b) {
    const float* go = s.gout + b * s.gout_stride;
    float* pend = s.pend + b * h;
    float* dz = s.dz + b * n4;
    if (s.mask != nullptr && !s.mask[b]) {
      if (!s.zero_output) {
        for (int64_t j = 0; j < h; j += w) {
          const int64_t n = std::min(w, h - j);
          (Vec::loadu(pend + j, n) + Vec::loadu(go + j, n)).store(pend + j, n);
        }
      }
      std::fill(dz, dz + n4, 0.0f);
      continue;
    }
    const float* kg = s.gates + b * n4;
    const float* tcb = s.tc + b * h;
    const float* cp = s.cprev + b * h;
    float* dh = s.dh + b * h;
    float* dc = s.dc + b * h;
    for (int64_t j = 0; j < h; j += w) {
      const int64_t n = std::min(w, h - j);
      Vec dht = Vec::loadu(dh + j, n) + Vec::loadu(go + j, n);
      if (!s.zero_output) {
        dht = dht + Vec::loadu(pend + j, n);
        Vec(0.0f).store(pend + j, n);
      }
      const Vec i = Vec::loadu(kg + j, n), f = Vec::loadu(kg + h + j, n);
      const Vec o = Vec::loadu(kg + 2 * h + j, n), g = Vec::loadu(kg + 3 * h + j, n);
      const Vec tc = Vec::loadu(tcb + j, n);
      const Vec dct = at::vec::fmadd(dht * o, derivative<A>(tc), Vec::loadu(dc + j, n));
      // Rows as the parameters hold them, (i, f, g, o), and with respect to the unfolded
      // pre-activations (the gate's slope applied): the weight gradients need no unfolding.
      (dct * g * derivative<G>(i) * scale).store(dz + j, n);
      (dct * Vec::loadu(cp + j, n) * derivative<G>(f) * scale).store(dz + h + j, n);
      (dct * i * derivative<A>(g)).store(dz + 2 * h + j, n);
      (dht * tc * derivative<G>(o) * scale).store(dz + 3 * h + j, n);
      (dct * f).store(dc + j, n);
    }
  }
}

using CellFn = void (*)(const Step&);
using BackFn = void (*)(const BackStep&);

// kCells[kTrain][gate][activation], kBacks[gate][activation]: every tail pair instantiated.
template <bool kTrain, int64_t G, int64_t... A>
constexpr std::array<CellFn, sizeof...(A)> row_of(std::integer_sequence<int64_t, A...>) {
  return {&cell_step<G, A, kTrain>...};
}

template <bool kTrain, int64_t... G>
constexpr std::array<std::array<CellFn, kNumTails>, sizeof...(G)> table_of(
    std::integer_sequence<int64_t, G...>) {
  return {row_of<kTrain, G>(std::make_integer_sequence<int64_t, kNumTails>{})...};
}

template <int64_t G, int64_t... A>
constexpr std::array<BackFn, sizeof...(A)> back_row_of(std::integer_sequence<int64_t, A...>) {
  return {&cell_back<G, A>...};
}

template <int64_t... G>
constexpr std::array<std::array<BackFn, kNumTails>, sizeof...(G)> back_table_of(
    std::integer_sequence<int64_t, G...>) {
  return {back_row_of<G>(std::make_integer_sequence<int64_t, kNumTails>{})...};
}

constexpr auto kTails = std::make_integer_sequence<int64_t, kNumTails>{};
constexpr std::array<std::array<std::array<CellFn, kNumTails>, kNumTails>, 2> kCells = {
    table_of<false>(kTails), table_of<true>(kTails)};
constexpr auto kBacks = back_table_of(kTails);

// oneDNN's packed-weight linear, y = x @ W.T (+ bias), reached through the dispatcher (its
// headers are not shipped); the same op backends/prepare.py uses from Python.
at::Tensor onednn_linear(const at::Tensor& x, const at::Tensor& w,
                         const std::optional<at::Tensor>& bias) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            std::string_view, c10::List<std::optional<c10::Scalar>>,
                            std::optional<std::string_view>)>();
  return op.call(x, w, bias, "none", c10::List<std::optional<c10::Scalar>>(), std::nullopt);
}

// One direction's weights: oneDNN-packed (4h, k) tensors, or strided (k, 4h) matrices for mm.
struct Weights {
  at::Tensor w_ih, w_hh, bias;
  bool packed_ih, packed_hh;
};

// y = x @ W (+ bias) into a fresh tensor (oneDNN) or into buf (dense).
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, bool packed,
                  at::Tensor& buf) {
  if (packed) {
    return onednn_linear(x, w, bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt);
  }
  if (bias.defined()) {
    return at::addmm_out(buf, bias, x, w);
  }
  return at::mm_out(buf, x, w);
}

// The training forward's kept values for the whole layer, (D, T, B, .) in time order; empty
// tensors (and no keeping) for inference.
struct KeptLayer {
  at::Tensor gates, tc, hprev, cprev;
  bool defined() const { return gates.defined(); }
};

// One direction's time loop. The input projection is computed a chunk of steps at a time, so
// it is still in cache when the steps read it.
void run_direction(int64_t d, int64_t n_dir, const at::Tensor& x, const Weights& wt,
                   at::Tensor& h_n, at::Tensor& c_n, at::Tensor& out, const bool* mask,
                   CellFn cell, bool zero_output, int64_t chunk, const KeptLayer& kept,
                   float gate_scale, float gate_offset) {
  const int64_t steps = x.size(0), batch = x.size(1), hidden = h_n.size(2), n4 = 4 * hidden;
  const at::Tensor x2 = x.view({steps * batch, x.size(2)});
  at::Tensor h = h_n.select(0, d), c = c_n.select(0, d);
  at::Tensor z = wt.packed_hh ? at::Tensor() : at::empty({batch, n4}, x.options());
  at::Tensor xp_buf =
      wt.packed_ih ? at::Tensor() : at::empty({chunk * batch, n4}, x.options());
  Step s{};
  s.h = h.data_ptr<float>();
  s.c = c.data_ptr<float>();
  s.batch = batch;
  s.hidden = hidden;
  s.out_stride = n_dir * hidden;
  s.state_stride = hidden;
  s.gate_stride = n4;
  s.zero_output = zero_output;
  s.gate_scale = gate_scale;
  s.gate_offset = gate_offset;
  s.prev = nullptr;
  float* out0 = out.data_ptr<float>() + d * hidden;
  float *kg = nullptr, *ktc = nullptr, *khp = nullptr, *kcp = nullptr;
  if (kept.defined()) {
    kg = kept.gates.select(0, d).data_ptr<float>();
    ktc = kept.tc.select(0, d).data_ptr<float>();
    khp = kept.hprev.select(0, d).data_ptr<float>();
    kcp = kept.cprev.select(0, d).data_ptr<float>();
  }
  for (int64_t k0 = 0; k0 < steps; k0 += chunk) {
    const int64_t n = std::min(chunk, steps - k0);
    const int64_t t0 = d ? steps - k0 - n : k0;  // the chunk holds steps [t0, t0 + n)
    at::Tensor buf = wt.packed_ih ? at::Tensor() : xp_buf.narrow(0, 0, n * batch);
    const at::Tensor xp = linear(x2.narrow(0, t0 * batch, n * batch), wt.w_ih, wt.bias,
                                 wt.packed_ih, buf);
    const float* xp0 = xp.data_ptr<float>();
    for (int64_t k = 0; k < n; ++k) {
      const int64_t t = d ? t0 + n - 1 - k : t0 + k;
      z = linear(h, wt.w_hh, at::Tensor(), wt.packed_hh, z);
      s.z = z.data_ptr<float>();
      s.xp = xp0 + (t - t0) * batch * n4;
      s.out = out0 + t * batch * n_dir * hidden;
      s.mask = nullptr;
      if (mask != nullptr && !std::all_of(mask + t * batch, mask + (t + 1) * batch,
                                          [](bool m) { return m; })) {
        s.mask = mask + t * batch;
      }
      if (kg != nullptr) {
        s.kept = {kg + t * batch * n4, ktc + t * batch * hidden, khp + t * batch * hidden,
                  kcp + t * batch * hidden};
      }
      cell(s);
      s.prev = s.out;
    }
  }
}

void check_tails(int64_t gate_tail, int64_t activation) {
  TORCH_CHECK(0 <= gate_tail && gate_tail < kNumTails && 0 <= activation &&
                  activation < kNumTails,
              "parity_lstm: unknown tail");
}

// Per direction, w_hh as the packed training ops take it: the parameter itself, dense (4h, h).
void check_dense_w_hh(at::TensorList w_hh, int64_t n_dir, int64_t hidden) {
  TORCH_CHECK(static_cast<int64_t>(w_hh.size()) == n_dir,
              "parity_lstm: one set of weights per direction");
  for (int64_t d = 0; d < n_dir; ++d) {
    TORCH_CHECK(!w_hh[d].is_mkldnn() && w_hh[d].dim() == 2 && w_hh[d].size(0) == 4 * hidden &&
                    w_hh[d].size(1) == hidden && w_hh[d].scalar_type() == at::kFloat,
                "parity_lstm: w_hh must be dense float32 (4h, h)");
  }
}

// Checks shared by the forward and the backward; returns the mask's data or nullptr.
const bool* check_layer(const at::Tensor& x, at::TensorList w_ih, at::TensorList w_hh,
                        int64_t n_bias, const at::Tensor& h0, const at::Tensor& c0,
                        const std::optional<at::Tensor>& mask, int64_t gate_tail,
                        int64_t activation, at::Tensor& mask_c) {
  const int64_t n_dir = h0.size(0), batch = h0.size(1);
  TORCH_CHECK(n_dir >= 1 && static_cast<int64_t>(w_ih.size()) == n_dir &&
                  static_cast<int64_t>(w_hh.size()) == n_dir && n_bias == n_dir,
              "parity_lstm: one set of weights per direction");
  check_tails(gate_tail, activation);
  TORCH_CHECK(h0.scalar_type() == at::kFloat && h0.dim() == 3 && c0.sizes() == h0.sizes() &&
                  c0.scalar_type() == at::kFloat,
              "parity_lstm: h0, c0 must be float32 (D, B, h)");
  TORCH_CHECK(x.dim() == 3 && x.size(1) == batch && x.is_contiguous() &&
                  x.scalar_type() == at::kFloat,
              "parity_lstm: x must be contiguous float32 (T, B, k)");
  if (!mask.has_value()) {
    return nullptr;
  }
  mask_c = mask->contiguous();
  TORCH_CHECK(mask_c.scalar_type() == at::kBool && mask_c.numel() == x.size(0) * batch,
              "parity_lstm: mask must be bool (T, B)");
  return mask_c.data_ptr<bool>();
}

// --- the directions' threads on a busy machine ------------------------------------------------
//
// A layer takes as long as its slower direction. With another process running, the OS may put
// both direction threads on one CPU and give the other CPU to that process: the layer then runs
// at half speed, although the threads were on separate CPUs when it started. So each thread
// stays on the CPU it is on (another one if a thread of the same layer has it) until its
// directions are done, then gets its own affinity back. On an idle machine the threads are on
// separate CPUs already and stay there; pinning moves threads and nothing else: every number
// stays the same (tests/test_lstm_cpp.py runs both ways).

enum PinPolicy : int64_t { kPinNever = 0, kPinAlways = 1 };
std::atomic<int64_t> g_pin_policy{kPinAlways};

// Holds the calling thread on one CPU for its lifetime: the one it runs on, unless a thread of
// the same layer has claimed that (claimed, guarded by mu); restores the thread's own affinity.
// Where affinity cannot be read or set (a sandbox, over CPU_SETSIZE CPUs, not Linux), it does
// nothing.
#ifdef __linux__
class Pinned {
 public:
  Pinned(std::mutex& mu, std::vector<int>& claimed) {
    if (sched_getaffinity(0, sizeof(own_), &own_) != 0) {
      return;
    }
    int cpu = -1;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto available = [&](int c) {
        return CPU_ISSET(c, &own_) &&
               std::find(claimed.begin(), claimed.end(), c) == claimed.end();
      };
      const int here = sched_getcpu();
      if (0 <= here && here < CPU_SETSIZE && available(here)) {
        cpu = here;
      }
      for (int c = 0; cpu < 0 && c < CPU_SETSIZE; ++c) {
        if (available(c)) {
          cpu = c;
        }
      }
      if (cpu < 0) {
        return;
      }
      claimed.push_back(cpu);
    }
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    pinned_ = sched_setaffinity(0, sizeof(one), &one) == 0;
  }
  ~Pinned() {
    if (pinned_ && sched_setaffinity(0, sizeof(own_), &own_) != 0) {
      // Its own CPUs are gone (the cpuset shrank meanwhile): any CPU the cpuset allows.
      cpu_set_t any;
      CPU_ZERO(&any);
      for (int c = 0; c < CPU_SETSIZE; ++c) {
        CPU_SET(c, &any);
      }
      sched_setaffinity(0, sizeof(any), &any);
    }
  }
  Pinned(const Pinned&) = delete;
  Pinned& operator=(const Pinned&) = delete;

 private:
  cpu_set_t own_{};
  bool pinned_ = false;
};
#else
class Pinned {
 public:
  Pinned(std::mutex&, std::vector<int>&) {}
};
#endif

// Runs body(d) for every direction: on separate threads (each GEMM then single-threaded) or
// one after the other (each GEMM multi-threaded).
template <typename F>
void each_direction(int64_t n_dir, bool parallel, const F& body) {
  if (!(parallel && n_dir > 1)) {
    for (int64_t d = 0; d < n_dir; ++d) {
      body(d);
    }
    return;
  }
  const bool pin = g_pin_policy.load(std::memory_order_relaxed) == kPinAlways;
  std::mutex mu;
  std::vector<int> claimed;
  at::parallel_for(0, n_dir, 1, [&](int64_t begin, int64_t end) {
    std::optional<Pinned> pinned;
    if (pin && end - begin < n_dir) {  // not alone (one thread runs every direction inline)
      pinned.emplace(mu, claimed);
    }
    for (int64_t d = begin; d < end; ++d) {
      body(d);
    }
  });
}

// Whether the directions' threads are pinned (PinPolicy: tests and benchmarks compare); returns
// the previous policy.
int64_t set_pin_policy(int64_t policy) {
  TORCH_CHECK(policy == kPinNever || policy == kPinAlways, "parity_lstm: unknown pin policy");
  return g_pin_policy.exchange(policy);
}

std::vector<Weights> weights_of(at::TensorList w_ih, at::TensorList w_hh,
                                const c10::List<std::optional<at::Tensor>>& bias) {
  std::vector<Weights> weights;
  for (size_t d = 0; d < w_ih.size(); ++d) {
    const std::optional<at::Tensor> b = bias.get(d);
    TORCH_CHECK(w_ih[d].is_mkldnn() == w_hh[d].is_mkldnn(),
                "parity_lstm: w_ih and w_hh must both be oneDNN-packed or both dense");
    weights.push_back({w_ih[d], w_hh[d], b.has_value() ? *b : at::Tensor(), w_ih[d].is_mkldnn(),
                       w_hh[d].is_mkldnn()});
  }
  return weights;
}

// The forward of one layer. weights(d) gives direction d's weights; it runs on the thread that
// runs the direction. keep: the training forward (unfolded weights, affine part given, kept
// values returned).
template <typename PrepareFn>
std::tuple<at::Tensor, at::Tensor, at::Tensor, KeptLayer> forward(
    const at::Tensor& x, int64_t n_weights, const PrepareFn& weights, const at::Tensor& h0,
    const at::Tensor& c0, const bool* m, int64_t gate_tail, int64_t activation,
    bool zero_output_for_mask, bool parallel, int64_t chunk_rows, bool keep, float gate_scale,
    float gate_offset) {
  const int64_t n_dir = h0.size(0), batch = h0.size(1), hidden = h0.size(2);
  const int64_t steps = x.size(0);
  TORCH_CHECK(n_weights == n_dir, "parity_lstm: one set of weights per direction");
  const int64_t chunk = std::max<int64_t>(
      1, chunk_rows > 0 ? std::min(steps, chunk_rows / std::max<int64_t>(batch, 1)) : steps);
  at::Tensor h_n = h0.contiguous().clone(), c_n = c0.contiguous().clone();
  at::Tensor out = at::empty({steps, batch, n_dir * hidden}, x.options());
  KeptLayer kept;
  if (keep) {
    kept = {at::empty({n_dir, steps, batch, 4 * hidden}, x.options()),
            at::empty({n_dir, steps, batch, hidden}, x.options()),
            at::empty({n_dir, steps, batch, hidden}, x.options()),
            at::empty({n_dir, steps, batch, hidden}, x.options())};
  }
  if (steps == 0 || batch == 0) {
    return {out, h_n, c_n, kept};
  }
  const CellFn cell = kCells[keep][gate_tail][activation];
  each_direction(n_dir, parallel, [&](int64_t d) {
    // Worker threads start with default dispatch state; skip autograd, as the caller does.
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    run_direction(d, n_dir, x, weights(d), h_n, c_n, out, m, cell, zero_output_for_mask, chunk,
                  kept, gate_scale, gate_offset);
  });
  return {out, h_n, c_n, kept};
}

// x (T, B, k) contiguous; per direction w_ih, w_hh and bias (undefined: none) as in Weights;
// h0, c0 (D, B, h); mask (T, B) bool. chunk_rows: input rows projected at once (0: all).
// parallel: run the directions on separate threads instead of one after the other.
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_layer(
    const at::Tensor& x, at::TensorList w_ih, at::TensorList w_hh,
    const c10::List<std::optional<at::Tensor>>& bias, const at::Tensor& h0, const at::Tensor& c0,
    const std::optional<at::Tensor>& mask, int64_t gate_tail, int64_t activation,
    bool zero_output_for_mask, bool parallel, int64_t chunk_rows) {
  at::Tensor mask_c;
  const bool* m = check_layer(x, w_ih, w_hh, static_cast<int64_t>(bias.size()), h0, c0, mask,
                              gate_tail, activation, mask_c);
  const std::vector<Weights> weights = weights_of(w_ih, w_hh, bias);
  auto [out, h_n, c_n, kept] =
      forward(x, static_cast<int64_t>(weights.size()), [&](int64_t d) { return weights[d]; }, h0,
              c0, m, gate_tail, activation, zero_output_for_mask, parallel, chunk_rows, false,
              1.0f, 0.0f);
  return {out, h_n, c_n};
}

// oneDNN's packed layout for a linear weight (out, in); the op backends/prepare.py packs with.
// A transposed view is read as it is (faster than making it contiguous first).
at::Tensor onednn_pack(const at::Tensor& w) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("mkldnn::_reorder_linear_weight", "")
                             .typed<at::Tensor(const at::Tensor&, std::optional<int64_t>)>();
  return op.call(w, std::nullopt);
}

// run_layer for training, on the parameters as torch holds them: w_ih (4h, k), w_hh (4h, h),
// b_ih and b_hh (4h) or None, rows (i, f, g, o), nothing folded; the gate is
// tail(gate_scale * z + gate_offset). Each direction's thread packs its weights for oneDNN
// where that pays for itself at this size (pack_ih_rows, pack_hh_rows: at least that many
// input rows, T * B; 0: never). Also returns what train_backward needs, each (D, T, B, .) in
// time order: the gates after their tails (rows i, f, o, g), activation(c), and h and c
// before each step.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
train_forward(const at::Tensor& x, at::TensorList w_ih, at::TensorList w_hh,
              const c10::List<std::optional<at::Tensor>>& b_ih,
              const c10::List<std::optional<at::Tensor>>& b_hh, const at::Tensor& h0,
              const at::Tensor& c0, const std::optional<at::Tensor>& mask, int64_t gate_tail,
              int64_t activation, double gate_scale, double gate_offset,
              bool zero_output_for_mask, bool parallel, int64_t chunk_rows, int64_t pack_ih_rows,
              int64_t pack_hh_rows) {
  at::Tensor mask_c;
  const bool* m = check_layer(x, w_ih, w_hh, static_cast<int64_t>(b_ih.size()), h0, c0, mask,
                              gate_tail, activation, mask_c);
  TORCH_CHECK(b_hh.size() == b_ih.size(), "parity_lstm: one set of weights per direction");
  const int64_t rows = x.size(0) * x.size(1);
  const bool pack_ih = pack_ih_rows > 0 && rows >= pack_ih_rows;
  const bool pack_hh = pack_hh_rows > 0 && rows >= pack_hh_rows;
  auto prepare = [&](int64_t d) {
    const std::optional<at::Tensor> bi = b_ih.get(d), bh = b_hh.get(d);
    TORCH_CHECK(bi.has_value() == bh.has_value(), "parity_lstm: b_ih and b_hh go together");
    return Weights{pack_ih ? onednn_pack(w_ih[d]) : w_ih[d].t(),
                   pack_hh ? onednn_pack(w_hh[d]) : w_hh[d].t(),
                   bi.has_value() ? at::add(*bi, *bh) : at::Tensor(), pack_ih, pack_hh};
  };
  auto [out, h_n, c_n, kept] =
      forward(x, static_cast<int64_t>(w_ih.size()), prepare, h0, c0, m, gate_tail, activation,
              zero_output_for_mask, parallel, chunk_rows, true, static_cast<float>(gate_scale),
              static_cast<float>(gate_offset));
  return {out, h_n, c_n, kept.gates, kept.tc, kept.hprev, kept.cprev};
}

// One direction's backward: the time loop back to front, then the weight and input gradients
// as one GEMM each over every step. w_ih (4h, k) and w_hh (4h, h) are the parameters as torch
// holds them (rows i, f, g, o; not folded).
void back_direction(int64_t d, int64_t n_dir, const at::Tensor& grad_out, const at::Tensor& x,
                    const at::Tensor& w_ih, const at::Tensor& w_hh, const KeptLayer& kept,
                    const bool* mask, BackFn back, float gate_scale, bool zero_output,
                    bool pack_hh, at::Tensor& dh, at::Tensor& dc, at::Tensor* dx_d,
                    at::Tensor& dw_ih, at::Tensor& dw_hh, at::Tensor& db) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const int64_t steps = x.size(0), batch = x.size(1), hidden = dh.size(1), n4 = 4 * hidden;
  at::Tensor dz = at::empty({steps, batch, n4}, x.options());
  at::Tensor pend = at::zeros({batch, hidden}, x.options());
  at::Tensor dh_step = at::empty({batch, hidden}, x.options());
  // dh = dz @ w_hh: oneDNN's packed GEMM on w_hh.T (out h, in 4h), or a plain mm.
  const at::Tensor w_hh_c = pack_hh ? onednn_pack(w_hh.t()) : w_hh.contiguous();
  auto recurrent = [&](const at::Tensor& dz_t, at::Tensor& into) {
    if (pack_hh) {
      into.copy_(onednn_linear(dz_t, w_hh_c, std::nullopt));
    } else {
      at::mm_out(into, dz_t, w_hh_c);
    }
  };
  const at::Tensor gates = kept.gates.select(0, d), tc = kept.tc.select(0, d);
  const at::Tensor cprev = kept.cprev.select(0, d);
  BackStep s{};
  s.dh = dh.data_ptr<float>();
  s.dc = dc.data_ptr<float>();
  s.pend = pend.data_ptr<float>();
  s.batch = batch;
  s.hidden = hidden;
  s.gout_stride = n_dir * hidden;
  s.gate_scale = gate_scale;
  s.zero_output = zero_output;
  const float* go0 = grad_out.data_ptr<float>() + d * hidden;
  for (int64_t k = steps - 1; k >= 0; --k) {  // the forward's steps, last first
    const int64_t t = d ? steps - 1 - k : k;
    const int64_t row = t * batch;
    s.gates = gates.data_ptr<float>() + row * n4;
    s.tc = tc.data_ptr<float>() + row * hidden;
    s.cprev = cprev.data_ptr<float>() + row * hidden;
    s.gout = go0 + row * n_dir * hidden;
    s.dz = dz.data_ptr<float>() + row * n4;
    s.mask = nullptr;
    if (mask != nullptr && !std::all_of(mask + row, mask + row + batch,
                                        [](bool m) { return m; })) {
      s.mask = mask + row;
    }
    back(s);
    const at::Tensor dz_t = dz.select(0, t);
    if (s.mask == nullptr) {
      recurrent(dz_t, dh);
      continue;
    }
    recurrent(dz_t, dh_step);  // masked rows carried h: they keep their gradient
    const float* src = dh_step.data_ptr<float>();
    for (int64_t b = 0; b < batch; ++b) {
      if (s.mask[b]) {
        std::copy(src + b * hidden, src + (b + 1) * hidden, s.dh + b * hidden);
      }
    }
  }
  const at::Tensor dz2 = dz.view({steps * batch, n4});
  at::mm_out(dw_ih, dz2.t(), x.view({steps * batch, x.size(2)}));
  at::mm_out(dw_hh, dz2.t(), kept.hprev.select(0, d).view({steps * batch, hidden}));
  at::sum_out(db, dz2, 0);
  if (dx_d != nullptr) {
    at::mm_out(*dx_d, dz2, w_ih.contiguous());
  }
}

// The gradients of train_forward's layer with respect to x, h0, c0 and, per direction, w_ih,
// w_hh and the bias (b_ih + b_hh), as torch holds them. grad_out (T, B, D*h), grad_h and grad_c
// (D, B, h); the kept tensors as train_forward returned them; w_ih (4h, k) and w_hh (4h, h)
// the parameters themselves; gate_scale the slope fold() folded into the gate rows. need_dx:
// whether to compute x's gradient (otherwise an empty tensor). pack_hh_rows as in
// train_forward, for the per-step product with w_hh.T.
std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>,
           std::vector<at::Tensor>>
train_backward(const at::Tensor& grad_out, const at::Tensor& grad_h, const at::Tensor& grad_c,
               const at::Tensor& x, at::TensorList w_ih, at::TensorList w_hh,
               const std::optional<at::Tensor>& mask, const at::Tensor& gates,
               const at::Tensor& tc, const at::Tensor& hprev, const at::Tensor& cprev,
               int64_t gate_tail, int64_t activation, double gate_scale, bool zero_output_for_mask,
               bool parallel, bool need_dx, int64_t pack_hh_rows) {
  at::Tensor mask_c;
  const bool* m = check_layer(x, w_ih, w_hh, static_cast<int64_t>(w_ih.size()), grad_h, grad_c,
                              mask, gate_tail, activation, mask_c);
  const int64_t n_dir = grad_h.size(0), batch = grad_h.size(1), hidden = grad_h.size(2);
  const int64_t steps = x.size(0), n_in = x.size(2);
  const at::Tensor go = grad_out.contiguous();
  TORCH_CHECK(go.scalar_type() == at::kFloat && go.dim() == 3 && go.size(0) == steps &&
                  go.size(1) == batch && go.size(2) == n_dir * hidden,
              "parity_lstm: grad_out must be float32 (T, B, D*h)");
  const KeptLayer kept{gates.contiguous(), tc.contiguous(), hprev.contiguous(),
                       cprev.contiguous()};
  TORCH_CHECK(kept.gates.numel() == n_dir * steps * batch * 4 * hidden &&
                  kept.tc.numel() == n_dir * steps * batch * hidden &&
                  kept.hprev.numel() == kept.tc.numel() && kept.cprev.numel() == kept.tc.numel(),
              "parity_lstm: kept tensors do not match the layer");
  at::Tensor dh = grad_h.contiguous().clone(), dc = grad_c.contiguous().clone();
  std::vector<at::Tensor> dx(n_dir), dw_ih(n_dir), dw_hh(n_dir), db(n_dir);
  for (int64_t d = 0; d < n_dir; ++d) {
    TORCH_CHECK(!w_ih[d].is_mkldnn() && !w_hh[d].is_mkldnn() && w_ih[d].size(1) == n_in &&
                    w_hh[d].size(0) == 4 * hidden,
                "parity_lstm: train_backward takes dense (4h, k) and (4h, h) weights");
    if (need_dx) {
      dx[d] = at::empty({steps * batch, n_in}, x.options());
    }
    dw_ih[d] = at::empty({4 * hidden, n_in}, x.options());
    dw_hh[d] = at::empty({4 * hidden, hidden}, x.options());
    db[d] = at::empty({4 * hidden}, x.options());
  }
  const BackFn back = kBacks[gate_tail][activation];
  const bool pack_hh = pack_hh_rows > 0 && steps * batch >= pack_hh_rows;
  each_direction(n_dir, parallel, [&](int64_t d) {
    at::Tensor dh_d = dh.select(0, d), dc_d = dc.select(0, d);
    back_direction(d, n_dir, go, x, w_ih[d], w_hh[d], kept, m, back,
                   static_cast<float>(gate_scale), zero_output_for_mask, pack_hh, dh_d, dc_d,
                   need_dx ? &dx[d] : nullptr, dw_ih[d], dw_hh[d], db[d]);
  });
  if (!need_dx) {
    return {at::empty({0}, x.options()), dh, dc, dw_ih, dw_hh, db};
  }
  at::Tensor dx_sum = dx[0];
  for (int64_t d = 1; d < n_dir; ++d) {
    dx_sum.add_(dx[d]);
  }
  return {dx_sum.view({steps, batch, n_in}), dh, dc, dw_ih, dw_hh, db};
}

// The packed loops' step sizes: non-increasing, at most the batch. Returns their sum (the packed
// rows, N); offsets gets each packed step's first row.
int64_t check_sizes(at::IntArrayRef sizes, int64_t batch, std::vector<int64_t>& offsets) {
  int64_t total = 0, previous = batch;
  offsets.clear();
  for (const int64_t size : sizes) {
    TORCH_CHECK(0 <= size && size <= previous, "parity_lstm: sizes must not grow");
    previous = size;
    offsets.push_back(total);
    total += size;
  }
  return total;
}

// Checks shared by the packed ops: one x_proj (sum(sizes), 4h) and one w_hh per direction, tails
// they know, sizes that do not grow. Returns sum(sizes) (N); offsets as check_sizes.
int64_t check_packed(at::TensorList x_proj, at::TensorList w_hh, int64_t n_dir, int64_t batch,
                     int64_t hidden, int64_t gate_tail, int64_t activation,
                     at::IntArrayRef sizes, std::vector<int64_t>& offsets) {
  TORCH_CHECK(static_cast<int64_t>(x_proj.size()) == n_dir &&
                  static_cast<int64_t>(w_hh.size()) == n_dir,
              "parity_lstm: one set of weights per direction");
  check_tails(gate_tail, activation);
  const int64_t total = check_sizes(sizes, batch, offsets);
  for (int64_t d = 0; d < n_dir; ++d) {
    TORCH_CHECK(x_proj[d].is_contiguous() && x_proj[d].scalar_type() == at::kFloat &&
                    x_proj[d].dim() == 2 && x_proj[d].size(0) == total &&
                    x_proj[d].size(1) == 4 * hidden,
                "parity_lstm: x_proj must be contiguous float32 (sum(sizes), 4h)");
  }
  return total;
}

// The length-aware loop's time steps (parity/ports/recurrent/backends/packed.py prepares them): rows
// sorted by length, each row's real steps moved to the front, so at packed step k the active
// rows are the first sizes[k] of the batch and every one of them is real (no masking). Per
// direction: x_proj (N, 4h) the input projections of the packed steps, step-major, bias
// included; h, c (D, B, h) in sorted row order, updated in place to each row's last real step.
// Returns per direction (N, h): each packed step's output.
std::vector<at::Tensor> packed_steps(at::TensorList x_proj, at::TensorList w_hh,
                                     const at::Tensor& h, const at::Tensor& c,
                                     at::IntArrayRef sizes, int64_t gate_tail, int64_t activation,
                                     bool parallel) {
  const int64_t n_dir = h.size(0), batch = h.size(1), hidden = h.size(2), n4 = 4 * hidden;
  TORCH_CHECK(h.is_contiguous() && c.is_contiguous() && h.scalar_type() == at::kFloat &&
                  c.sizes() == h.sizes() && c.scalar_type() == at::kFloat,
              "parity_lstm: h, c must be contiguous float32 (D, B, h)");
  std::vector<int64_t> offsets;
  const int64_t total =
      check_packed(x_proj, w_hh, n_dir, batch, hidden, gate_tail, activation, sizes, offsets);
  std::vector<at::Tensor> outs(n_dir);
  const CellFn cell = kCells[false][gate_tail][activation];
  each_direction(n_dir, parallel, [&](int64_t d) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const bool packed = w_hh[d].is_mkldnn();
    at::Tensor out = at::empty({total, hidden}, h.options());
    at::Tensor h_d = h.select(0, d), z_buf = at::empty({batch, n4}, h.options());
    Step s{};
    s.h = h_d.data_ptr<float>();
    s.c = c.select(0, d).data_ptr<float>();
    s.hidden = hidden;
    s.out_stride = hidden;
    s.state_stride = hidden;
    s.gate_stride = n4;
    s.gate_scale = 1.0f;
    int64_t offset = 0;
    for (const int64_t size : sizes) {
      if (size == 0) {
        break;
      }
      at::Tensor buf = packed ? at::Tensor() : z_buf.narrow(0, 0, size);
      const at::Tensor z = linear(h_d.narrow(0, 0, size), w_hh[d], at::Tensor(), packed, buf);
      s.z = z.data_ptr<float>();
      s.xp = x_proj[d].data_ptr<float>() + offset * n4;
      s.out = out.data_ptr<float>() + offset * hidden;
      s.batch = size;
      cell(s);
      offset += size;
    }
    outs[d] = out;
  });
  return outs;
}

// packed_steps for training, on the parameters as torch holds them (as train_forward): x_proj
// per direction (N, 4h) = the packed rows' input projections with the raw w_ih and b_ih + b_hh,
// rows (i, f, g, o); w_hh (4h, h) per direction; h0, c0 (D, B, h) in sorted row order. Every
// packed row is real, so no masking. Returns the outputs (D, N, h), the final h and c (D, B, h)
// (each row's state after its last real step) and what packed_train_backward needs, each
// (D, N, .): gates after their tails (rows i, f, o, g), activation(c), h and c before the step;
// with capacity > N, (D, capacity, .), the packed rows first (a fixed-shape operator's output).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
packed_train_forward(at::TensorList x_proj, at::TensorList w_hh, const at::Tensor& h0,
                     const at::Tensor& c0, at::IntArrayRef sizes, int64_t gate_tail,
                     int64_t activation, double gate_scale, double gate_offset, bool parallel,
                     int64_t pack_hh_rows, int64_t capacity) {
  const int64_t n_dir = h0.size(0), batch = h0.size(1), hidden = h0.size(2), n4 = 4 * hidden;
  TORCH_CHECK(h0.dim() == 3 && h0.scalar_type() == at::kFloat && c0.sizes() == h0.sizes() &&
                  c0.scalar_type() == at::kFloat,
              "parity_lstm: h0, c0 must be float32 (D, B, h)");
  std::vector<int64_t> offsets;
  const int64_t total =
      check_packed(x_proj, w_hh, n_dir, batch, hidden, gate_tail, activation, sizes, offsets);
  check_dense_w_hh(w_hh, n_dir, hidden);
  TORCH_CHECK(capacity == 0 || capacity >= total,
              "parity_lstm: the kept tensors' capacity must hold every packed row");
  const auto options = h0.options();
  at::Tensor h_n = h0.contiguous().clone(), c_n = c0.contiguous().clone();
  at::Tensor out = at::empty({n_dir, total, hidden}, options);
  // Rows past the packed ones (capacity > N) are zeros: defined, never read.
  const int64_t rows = std::max(capacity, total);
  auto kept = [&](int64_t width) {
    return rows > total ? at::zeros({n_dir, rows, width}, options)
                        : at::empty({n_dir, rows, width}, options);
  };
  at::Tensor gates = kept(n4), tc = kept(hidden), hprev = kept(hidden), cprev = kept(hidden);
  const CellFn cell = kCells[true][gate_tail][activation];
  const bool pack = pack_hh_rows > 0 && total >= pack_hh_rows;
  each_direction(n_dir, parallel, [&](int64_t d) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const at::Tensor w = pack ? onednn_pack(w_hh[d]) : w_hh[d].t();
    at::Tensor h_d = h_n.select(0, d), z_buf = at::empty({batch, n4}, options);
    Step s{};
    s.h = h_d.data_ptr<float>();
    s.c = c_n.select(0, d).data_ptr<float>();
    s.hidden = hidden;
    s.out_stride = hidden;
    s.state_stride = hidden;
    s.gate_stride = n4;
    s.zero_output = true;
    s.gate_scale = static_cast<float>(gate_scale);
    s.gate_offset = static_cast<float>(gate_offset);
    float* out_d = out.select(0, d).data_ptr<float>();
    float* kg = gates.select(0, d).data_ptr<float>();
    float* ktc = tc.select(0, d).data_ptr<float>();
    float* khp = hprev.select(0, d).data_ptr<float>();
    float* kcp = cprev.select(0, d).data_ptr<float>();
    const float* xp = x_proj[d].data_ptr<float>();
    for (size_t k = 0; k < sizes.size() && sizes[k] > 0; ++k) {
      const int64_t size = sizes[k], row = offsets[k];
      at::Tensor buf = pack ? at::Tensor() : z_buf.narrow(0, 0, size);
      const at::Tensor z = linear(h_d.narrow(0, 0, size), w, at::Tensor(), pack, buf);
      s.z = z.data_ptr<float>();
      s.xp = xp + row * n4;
      s.out = out_d + row * hidden;
      s.batch = size;
      s.kept = {kg + row * n4, ktc + row * hidden, khp + row * hidden, kcp + row * hidden};
      cell(s);
    }
  });
  return {out, h_n, c_n, gates, tc, hprev, cprev};
}

// The gradients of packed_train_forward: grad_out (D, N, h), grad_h and grad_c (D, B, h) (of
// the final state), the kept tensors as it returned them, w_hh (4h, h) per direction. Per packed
// step, last first: one vectorized pass (train_backward's, nothing masked) on the active rows,
// then their h gradient through one GEMM; rows not yet active hold their final state's
// gradient. Returns the gradients of x_proj (D, N, 4h; rows i, f, g, o, with respect to the
// unfolded pre-activations), of h0 and c0 (D, B, h), and of each w_hh.
std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> packed_train_backward(
    const at::Tensor& grad_out, const at::Tensor& grad_h, const at::Tensor& grad_c,
    at::TensorList w_hh, const at::Tensor& gates, const at::Tensor& tc, const at::Tensor& hprev,
    const at::Tensor& cprev, at::IntArrayRef sizes, int64_t gate_tail, int64_t activation,
    double gate_scale, bool parallel, int64_t pack_hh_rows) {
  const int64_t n_dir = grad_h.size(0), batch = grad_h.size(1), hidden = grad_h.size(2);
  const int64_t n4 = 4 * hidden;
  TORCH_CHECK(grad_h.dim() == 3 && grad_h.scalar_type() == at::kFloat &&
                  grad_c.sizes() == grad_h.sizes() && grad_c.scalar_type() == at::kFloat,
              "parity_lstm: grad_h, grad_c must be float32 (D, B, h)");
  check_tails(gate_tail, activation);
  std::vector<int64_t> offsets;
  const int64_t total = check_sizes(sizes, batch, offsets);
  // Each direction's rows dense (the directions may lie further apart: kept tensors that are
  // the first N rows of larger ones, as the compiled training operator passes them).
  auto rows_dense = [](const at::Tensor& t) {
    return t.dim() == 3 && t.stride(2) == 1 && t.stride(1) == t.size(2) ? t : t.contiguous();
  };
  const at::Tensor go = rows_dense(grad_out), kg = rows_dense(gates), ktc = rows_dense(tc);
  const at::Tensor khp = rows_dense(hprev), kcp = rows_dense(cprev);
  TORCH_CHECK(go.scalar_type() == at::kFloat &&
                  go.sizes() == at::IntArrayRef({n_dir, total, hidden}) &&
                  kg.sizes() == at::IntArrayRef({n_dir, total, n4}) && ktc.sizes() == go.sizes() &&
                  khp.sizes() == go.sizes() && kcp.sizes() == go.sizes() &&
                  kg.scalar_type() == at::kFloat && ktc.scalar_type() == at::kFloat &&
                  khp.scalar_type() == at::kFloat && kcp.scalar_type() == at::kFloat,
              "parity_lstm: grad_out and the kept tensors do not match the layer");
  check_dense_w_hh(w_hh, n_dir, hidden);
  const auto options = grad_h.options();
  at::Tensor dh = grad_h.contiguous().clone(), dc = grad_c.contiguous().clone();
  at::Tensor dz = at::empty({n_dir, total, n4}, options);
  std::vector<at::Tensor> dw_hh(n_dir);
  const BackFn back = kBacks[gate_tail][activation];
  const bool pack = pack_hh_rows > 0 && total >= pack_hh_rows;
  each_direction(n_dir, parallel, [&](int64_t d) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    // dh = dz @ w_hh: oneDNN's packed GEMM on w_hh.T (out h, in 4h), or a plain mm.
    const at::Tensor w = pack ? onednn_pack(w_hh[d].t()) : w_hh[d].contiguous();
    at::Tensor dh_d = dh.select(0, d), dz_d = dz.select(0, d);
    at::Tensor unused = at::zeros({batch, hidden}, options);  // pend: nothing is carried here
    BackStep s{};
    s.dh = dh_d.data_ptr<float>();
    s.dc = dc.select(0, d).data_ptr<float>();
    s.pend = unused.data_ptr<float>();
    s.hidden = hidden;
    s.gout_stride = hidden;
    s.gate_scale = static_cast<float>(gate_scale);
    s.zero_output = true;
    s.mask = nullptr;
    const float* go_d = go.select(0, d).data_ptr<float>();
    const float* g_d = kg.select(0, d).data_ptr<float>();
    const float* tc_d = ktc.select(0, d).data_ptr<float>();
    const float* cp_d = kcp.select(0, d).data_ptr<float>();
    for (int64_t k = static_cast<int64_t>(sizes.size()) - 1; k >= 0; --k) {
      const int64_t size = sizes[k], row = offsets[k];
      if (size == 0) {
        continue;
      }
      s.gates = g_d + row * n4;
      s.tc = tc_d + row * hidden;
      s.cprev = cp_d + row * hidden;
      s.gout = go_d + row * hidden;
      s.dz = dz_d.data_ptr<float>() + row * n4;
      s.batch = size;
      back(s);
      const at::Tensor dz_k = dz_d.narrow(0, row, size);
      at::Tensor dh_k = dh_d.narrow(0, 0, size);
      if (pack) {
        dh_k.copy_(onednn_linear(dz_k, w, std::nullopt));
      } else {
        at::mm_out(dh_k, dz_k, w);
      }
    }
    dw_hh[d] = at::mm(dz_d.t(), khp.select(0, d));
  });
  return {dz, dh, dc, dw_hh};
}

// One tail over a float32 tensor, with the vector code the step uses: lets the tests check its
// tanh and sigmoid against float64 over a dense range.
at::Tensor apply_tail(const at::Tensor& x, int64_t kind) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && 0 <= kind && kind < kNumTails,
              "parity_lstm: apply_tail takes float32 and a known tail");
  const at::Tensor src = x.contiguous();
  at::Tensor dst = at::empty_like(src);
  const float* in = src.data_ptr<float>();
  float* out = dst.data_ptr<float>();
  static constexpr std::array<Vec (*)(const Vec&), kNumTails> kApply = {
      &apply<kClamp01>, &apply<kSigmoid>, &apply<kTanh>, &apply<kRelu>, &apply<kIdentity>};
  for (int64_t i = 0; i < src.numel(); i += Vec::size()) {
    const int64_t n = std::min<int64_t>(Vec::size(), src.numel() - i);
    kApply[kind](Vec::loadu(in + i, n)).store(out + i, n);
  }
  return dst;
}

}  // namespace

TORCH_LIBRARY(parity_lstm, m) {
  m.def(
      "run_layer(Tensor x, Tensor[] w_ih, Tensor[] w_hh, Tensor?[] bias, Tensor h0, Tensor c0, "
      "Tensor? mask, int gate_tail, int activation, bool zero_output_for_mask, bool parallel, "
      "int chunk_rows) -> (Tensor, Tensor, Tensor)");
  m.def(
      "train_forward(Tensor x, Tensor[] w_ih, Tensor[] w_hh, Tensor?[] b_ih, Tensor?[] b_hh, "
      "Tensor h0, Tensor c0, Tensor? mask, int gate_tail, int activation, float gate_scale, "
      "float gate_offset, bool zero_output_for_mask, bool parallel, int chunk_rows, "
      "int pack_ih_rows, int pack_hh_rows) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "train_backward(Tensor grad_out, Tensor grad_h, Tensor grad_c, Tensor x, Tensor[] w_ih, "
      "Tensor[] w_hh, Tensor? mask, Tensor gates, Tensor tc, Tensor hprev, Tensor cprev, "
      "int gate_tail, int activation, float gate_scale, bool zero_output_for_mask, "
      "bool parallel, bool need_dx, int pack_hh_rows) "
      "-> (Tensor, Tensor, Tensor, Tensor[], Tensor[], Tensor[])");
  m.def(
      "packed_steps(Tensor[] x_proj, Tensor[] w_hh, Tensor(a!) h, Tensor(b!) c, int[] sizes, "
      "int gate_tail, int activation, bool parallel) -> Tensor[]");
  m.def(
      "packed_train_forward(Tensor[] x_proj, Tensor[] w_hh, Tensor h0, Tensor c0, int[] sizes, "
      "int gate_tail, int activation, float gate_scale, float gate_offset, bool parallel, "
      "int pack_hh_rows, int capacity=0) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "packed_train_backward(Tensor grad_out, Tensor grad_h, Tensor grad_c, Tensor[] w_hh, "
      "Tensor gates, Tensor tc, Tensor hprev, Tensor cprev, int[] sizes, int gate_tail, "
      "int activation, float gate_scale, bool parallel, int pack_hh_rows) "
      "-> (Tensor, Tensor, Tensor, Tensor[])");
  m.def("apply_tail(Tensor x, int kind) -> Tensor");
  m.def("set_pin_policy(int policy) -> int", &set_pin_policy);
}

// The packed weights are oneDNN (MkldnnCPU) tensors; the rest are plain CPU tensors.
TORCH_LIBRARY_IMPL(parity_lstm, CPU, m) {
  m.impl("run_layer", &run_layer);
  m.impl("train_forward", &train_forward);
  m.impl("train_backward", &train_backward);
  m.impl("packed_steps", &packed_steps);
  m.impl("packed_train_forward", &packed_train_forward);
  m.impl("packed_train_backward", &packed_train_backward);
  m.impl("apply_tail", &apply_tail);
}
TORCH_LIBRARY_IMPL(parity_lstm, MkldnnCPU, m) {
  m.impl("run_layer", &run_layer);
  m.impl("packed_steps", &packed_steps);
}
