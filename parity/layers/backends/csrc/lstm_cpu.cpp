// One LSTM layer's whole time loop on CPU, every direction, for inference (no autograd).
//
// Why: the Python fast loop (parity/layers/backends/python.py) dispatches about eight ATen ops
// per time step and direction. At batch 1 that dispatch costs more than the arithmetic; at batch
// 32 its separate elementwise passes between GEMMs do. Here each step is one GEMM (the recurrent
// product) and one vectorized pass that adds the input projection, applies the gate tail and the
// activation, updates c and h, applies Keras masking and writes the output. The input projection
// (bias included) is one GEMM per chunk of steps, computed just before them.
//
// The weights come from parity/layers/backends/prepare.py (pack): gate rows reordered to
// (i, f, o, g), the gate's affine part folded in (a hard sigmoid leaves a clamp to [0, 1]),
// oneDNN-packed or dense.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mm.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
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

// Where one direction's step reads and writes. Row b of a (B, n) operand starts at b * stride.
struct Step {
  const float* z;      // (B, 4h) recurrent GEMM output, rows (i, f, o, g)
  const float* xp;     // (B, 4h) input projection of this time step, bias included
  float* h;            // (B, h) state, read by this step's GEMM, overwritten here
  float* c;            // (B, h) state, updated in place
  float* out;          // (B, h) this step's output slot, row stride out_stride
  const float* prev;   // previous output slot of this direction, or nullptr (zeros)
  const bool* mask;    // (B,) true = real step, or nullptr (every row real)
  int64_t batch, hidden, out_stride;
  bool zero_output;    // masked rows output zeros instead of the previous output
};

// The one fused elementwise pass of a step: gates, cell, hidden state, masking, output.
template <int64_t G, int64_t A>
void cell_step(const Step& s) {
  const int64_t h = s.hidden, n4 = 4 * h, w = Vec::size();
  for (int64_t b = 0; b < s.batch; ++b) {
    float* out = s.out + b * s.out_stride;
    if (s.mask != nullptr && !s.mask[b]) {  // Keras: carry h and c, output zeros or previous
      if (s.zero_output || s.prev == nullptr) {
        std::fill(out, out + h, 0.0f);
      } else {
        std::copy(s.prev + b * s.out_stride, s.prev + b * s.out_stride + h, out);
      }
      continue;
    }
    const float* z = s.z + b * n4;
    const float* xp = s.xp + b * n4;
    float* hb = s.h + b * h;
    float* cb = s.c + b * h;
    for (int64_t j = 0; j < h; j += w) {
      const int64_t n = std::min(w, h - j);
      auto pre = [&](int64_t gate) {
        const int64_t k = gate * h + j;
        return Vec::loadu(z + k, n) + Vec::loadu(xp + k, n);
      };
      const Vec i = apply<G>(pre(0));
      const Vec f = apply<G>(pre(1));
      const Vec o = apply<G>(pre(2));
      const Vec g = apply<A>(pre(3));
      const Vec c = at::vec::fmadd(i, g, Vec::loadu(cb + j, n) * f);
      const Vec hn = apply<A>(c) * o;
      c.store(cb + j, n);
      hn.store(hb + j, n);
      hn.store(out + j, n);
    }
  }
}

using CellFn = void (*)(const Step&);

template <int64_t G, int64_t... A>
constexpr std::array<CellFn, sizeof...(A)> row_of(std::integer_sequence<int64_t, A...>) {
  return {&cell_step<G, A>...};
}

template <int64_t... G>
constexpr std::array<std::array<CellFn, kNumTails>, sizeof...(G)> table_of(
    std::integer_sequence<int64_t, G...>) {
  return {row_of<G>(std::make_integer_sequence<int64_t, kNumTails>{})...};
}

constexpr auto kCells = table_of(std::make_integer_sequence<int64_t, kNumTails>{});

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
  bool packed;
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

// One direction's time loop. The input projection is computed a chunk of steps at a time, so
// it is still in cache when the steps read it.
void run_direction(int64_t d, int64_t n_dir, const at::Tensor& x, const Weights& wt,
                   at::Tensor& h_n, at::Tensor& c_n, at::Tensor& out, const bool* mask,
                   CellFn cell, bool zero_output, int64_t chunk) {
  // Worker threads start with default dispatch state; skip autograd, as the caller does.
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const int64_t steps = x.size(0), batch = x.size(1), hidden = h_n.size(2), n4 = 4 * hidden;
  const at::Tensor x2 = x.view({steps * batch, x.size(2)});
  at::Tensor h = h_n.select(0, d), c = c_n.select(0, d);
  at::Tensor z = wt.packed ? at::Tensor() : at::empty({batch, n4}, x.options());
  at::Tensor xp_buf = wt.packed ? at::Tensor() : at::empty({chunk * batch, n4}, x.options());
  Step s{};
  s.h = h.data_ptr<float>();
  s.c = c.data_ptr<float>();
  s.batch = batch;
  s.hidden = hidden;
  s.out_stride = n_dir * hidden;
  s.zero_output = zero_output;
  s.prev = nullptr;
  float* out0 = out.data_ptr<float>() + d * hidden;
  for (int64_t k0 = 0; k0 < steps; k0 += chunk) {
    const int64_t n = std::min(chunk, steps - k0);
    const int64_t t0 = d ? steps - k0 - n : k0;  // the chunk holds steps [t0, t0 + n)
    at::Tensor buf = wt.packed ? at::Tensor() : xp_buf.narrow(0, 0, n * batch);
    const at::Tensor xp = linear(x2.narrow(0, t0 * batch, n * batch), wt.w_ih, wt.bias,
                                 wt.packed, buf);
    const float* xp0 = xp.data_ptr<float>();
    for (int64_t k = 0; k < n; ++k) {
      const int64_t t = d ? t0 + n - 1 - k : t0 + k;
      z = linear(h, wt.w_hh, at::Tensor(), wt.packed, z);
      s.z = z.data_ptr<float>();
      s.xp = xp0 + (t - t0) * batch * n4;
      s.out = out0 + t * batch * n_dir * hidden;
      s.mask = nullptr;
      if (mask != nullptr && !std::all_of(mask + t * batch, mask + (t + 1) * batch,
                                          [](bool m) { return m; })) {
        s.mask = mask + t * batch;
      }
      cell(s);
      s.prev = s.out;
    }
  }
}

// x (T, B, k) contiguous; per direction w_ih, w_hh and bias (undefined: none) as in Weights;
// h0, c0 (D, B, h); mask (T, B) bool. chunk_rows: input rows projected at once (0: all).
// parallel: run the directions on separate threads (each GEMM then single-threaded) instead of
// one after the other (each GEMM multi-threaded).
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_layer(
    const at::Tensor& x, at::TensorList w_ih, at::TensorList w_hh,
    const c10::List<std::optional<at::Tensor>>& bias, const at::Tensor& h0, const at::Tensor& c0,
    const std::optional<at::Tensor>& mask, int64_t gate_tail, int64_t activation,
    bool zero_output_for_mask, bool parallel, int64_t chunk_rows) {
  const int64_t n_dir = h0.size(0), batch = h0.size(1), hidden = h0.size(2);
  TORCH_CHECK(n_dir >= 1 && static_cast<int64_t>(w_ih.size()) == n_dir &&
                  static_cast<int64_t>(w_hh.size()) == n_dir &&
                  static_cast<int64_t>(bias.size()) == n_dir,
              "parity_lstm: one set of weights per direction");
  TORCH_CHECK(0 <= gate_tail && gate_tail < kNumTails && 0 <= activation &&
                  activation < kNumTails,
              "parity_lstm: unknown tail");
  TORCH_CHECK(h0.scalar_type() == at::kFloat && h0.dim() == 3 && c0.sizes() == h0.sizes() &&
                  c0.scalar_type() == at::kFloat,
              "parity_lstm: h0, c0 must be float32 (D, B, h)");
  TORCH_CHECK(x.dim() == 3 && x.size(1) == batch && x.is_contiguous() &&
                  x.scalar_type() == at::kFloat,
              "parity_lstm: x must be contiguous float32 (T, B, k)");
  const int64_t steps = x.size(0);
  const bool* m = nullptr;
  at::Tensor mask_c;
  if (mask.has_value()) {
    mask_c = mask->contiguous();
    TORCH_CHECK(mask_c.scalar_type() == at::kBool && mask_c.numel() == steps * batch,
                "parity_lstm: mask must be bool (T, B)");
    m = mask_c.data_ptr<bool>();
  }
  std::vector<Weights> weights;
  for (int64_t d = 0; d < n_dir; ++d) {
    const std::optional<at::Tensor> b = bias.get(d);
    TORCH_CHECK(w_ih[d].is_mkldnn() == w_hh[d].is_mkldnn(),
                "parity_lstm: w_ih and w_hh must both be oneDNN-packed or both dense");
    weights.push_back({w_ih[d], w_hh[d], b.has_value() ? *b : at::Tensor(), w_hh[d].is_mkldnn()});
  }
  const int64_t chunk = std::max<int64_t>(
      1, chunk_rows > 0 ? std::min(steps, chunk_rows / std::max<int64_t>(batch, 1)) : steps);
  at::Tensor h_n = h0.contiguous().clone(), c_n = c0.contiguous().clone();
  at::Tensor out = at::empty({steps, batch, n_dir * hidden}, x.options());
  if (steps == 0 || batch == 0) {
    return {out, h_n, c_n};
  }
  const CellFn cell = kCells[gate_tail][activation];
  auto body = [&](int64_t begin, int64_t end) {
    for (int64_t d = begin; d < end; ++d) {
      run_direction(d, n_dir, x, weights[d], h_n, c_n, out, m, cell, zero_output_for_mask,
                    chunk);
    }
  };
  if (parallel && n_dir > 1) {
    at::parallel_for(0, n_dir, 1, body);
  } else {
    body(0, n_dir);
  }
  return {out, h_n, c_n};
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
  m.def("apply_tail(Tensor x, int kind) -> Tensor");
}

// The packed weights are oneDNN (MkldnnCPU) tensors; the rest are plain CPU tensors.
TORCH_LIBRARY_IMPL(parity_lstm, CPU, m) {
  m.impl("run_layer", &run_layer);
  m.impl("apply_tail", &apply_tail);
}
TORCH_LIBRARY_IMPL(parity_lstm, MkldnnCPU, m) { m.impl("run_layer", &run_layer); }
