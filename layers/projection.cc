// linear_to_rows and linear_from_rows (layers/projection.h): batched GEMMs between the (B, L, D) and (B, D, L)
// layouts, with an autograd Function whose backward keeps to the same layouts.
#include "layers/projection.h"

#include <cstdlib>
#include <vector>

#include "kernels/bias.h"
#include "kernels/fftconv.h"  // internal::printable
#include "kernels/transpose.h"
#include "layers/autocast.h"
#include "layers/mixer.h"

namespace hippo {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The dtype torch::linear would compute x W^T in: autocast's on x's device when it is on, else x's and W's promoted.
// (Autocast leaves float64 alone, so float64 operands keep float64. Mismatched dtypes without autocast are promoted,
// where torch::linear would raise.)
c10::ScalarType compute_dtype(const Tensor& x, const Tensor& W) {
  const auto t = x.device().type();
  const bool f64 = x.scalar_type() == torch::kDouble || W.scalar_type() == torch::kDouble;
  if (!f64 && (t == c10::DeviceType::CUDA || t == c10::DeviceType::CPU) && autocast_enabled(t))
    return autocast_dtype(t);
  return c10::promoteTypes(x.scalar_type(), W.scalar_type());
}

// The rows-layout projections of one x: to_rows, x (B, L, in) -> y_i (B, out_i, L); else x (B, in, L) -> y_i (B, L,
// out_i), one per weight W_i; has_bias[i] says whether W_i has a bias, the next of `biases` (autograd's argument
// lists take defined tensors only). Operands are cast to `dtype` here and kept for the
// backward in it (autocast is off inside, so the backward multiplies what the forward did). With several weights the
// backward adds their gradients of x inside the GEMMs (beta = 1 onto the first), where separate Functions would leave
// autograd one (B, L, in) add per extra projection (10.4 us each for bf16 (4, 2048, 768) on an H200, ncu).
class RowsLinear : public torch::autograd::Function<RowsLinear> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& x, at::TensorList Ws, at::TensorList biases,
                               const std::vector<int64_t>& has_bias, bool to_rows, int64_t dtype) {
    const auto dt = static_cast<c10::ScalarType>(dtype);
    NoAutocastScope no_autocast;
    const Tensor xd = x.to(dt);
    const int64_t B = x.size(0), L = to_rows ? x.size(1) : x.size(2), n = static_cast<int64_t>(Ws.size());
    variable_list ys, saved = {xd};
    std::vector<int64_t> W_dtypes, bias_dtypes, need_bias;
    size_t next_bias = 0;
    for (int64_t i = 0; i < n; ++i) {
      const Tensor Wd = Ws[i].to(dt), bias = has_bias[i] ? biases[next_bias++] : Tensor();
      const int64_t out = Wd.size(0), in = Wd.size(1);
      // W (or W^T) at batch stride 0, x[b] read transposed through the GEMM's operand flags: no copy of either.
      const auto a = to_rows ? Wd.unsqueeze(0).expand({B, out, in}) : xd.transpose(1, 2);
      const auto b = to_rows ? xd.transpose(1, 2) : Wd.t().unsqueeze(0).expand({B, in, out});
      Tensor y;
      if (bias.defined()) {
        // The bias as the GEMM's C operand (beta = 1): one rounding of the sum. On a GPU broadcast by a kernel of ours,
        // then accumulated onto in place (ATen's broadcast copy inside baddbmm took 14.7 us for a bf16 (4, 768, 2048)
        // on an H200, ncu; an in-place broadcast add after bmm, 21 us); elsewhere baddbmm with the expanded bias.
        const std::vector<int64_t> sizes = to_rows ? std::vector<int64_t>{B, out, L} : std::vector<int64_t>{B, L, out};
        y = internal::bias_broadcast(bias, sizes, to_rows, dt);
        if (y.defined()) {
          y.baddbmm_(a, b);
        } else {
          const auto bd = bias.to(dt);
          y = at::baddbmm(to_rows ? bd.view({1, out, 1}).expand(sizes) : bd.view({1, 1, out}).expand(sizes), a, b);
        }
      } else {
        y = at::bmm(a, b);
      }
      ys.push_back(y);
      saved.push_back(Wd);
      W_dtypes.push_back(static_cast<int64_t>(Ws[i].scalar_type()));
      bias_dtypes.push_back(static_cast<int64_t>(bias.defined() ? bias.scalar_type() : Ws[i].scalar_type()));
      need_bias.push_back(bias.defined() && bias.requires_grad());
    }
    ctx->save_for_backward(saved);
    ctx->set_materialize_grads(false);  // an output outside the loss: no gradient for its weight, as separate nodes
    ctx->saved_data["to_rows"] = to_rows;
    ctx->saved_data["x_dtype"] = x.scalar_type();
    ctx->saved_data["W_dtypes"] = W_dtypes;
    ctx->saved_data["bias_dtypes"] = bias_dtypes;
    ctx->saved_data["need_bias"] = need_bias;
    std::vector<int64_t> bias_slots;
    int64_t slot = 1 + n;
    for (int64_t i = 0; i < n; ++i) bias_slots.push_back(has_bias[i] ? slot++ : -1);
    ctx->saved_data["bias_slots"] = bias_slots;
    return ys;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor& xd = saved[0];
    // Grad mode is on inside backward only when a graph of the backward is asked for (create_graph): the saved
    // operands were cast without history, so second derivatives would silently be missing.
    TORCH_CHECK(!torch::GradMode::is_enabled(),
                "linear_to_rows / linear_from_rows: the batched-GEMM backward is not differentiable (create_graph / "
                "double backward); HIPPO_PROJECTION=transpose takes torch::linear");
    const auto W_dtypes = ctx->saved_data["W_dtypes"].toIntVector();
    const auto bias_dtypes = ctx->saved_data["bias_dtypes"].toIntVector();
    const auto need_bias = ctx->saved_data["need_bias"].toIntVector();
    const int64_t n = static_cast<int64_t>(W_dtypes.size());
    // One gradient per forward argument: x, the n weights, the biases there are, has_bias, to_rows, dtype.
    // needs_input_grad counts the tensors only: x is 0, W_i is 1 + i.
    const auto bias_slots = ctx->saved_data["bias_slots"].toIntVector();  // W_i's bias's gradient index, or -1
    int64_t n_bias = 0;
    for (const auto b : bias_slots) n_bias += b >= 0;
    variable_list out(1 + n + n_bias + 3);
    NoAutocastScope no_autocast;
    const bool to_rows = ctx->saved_data["to_rows"].toBool();
    const int64_t B = xd.size(0);
    const auto acc = xd.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;  // the sums' dtype
    Tensor dx;
    for (int64_t i = 0; i < n; ++i) {
      if (!grads[i].defined()) continue;
      const Tensor& Wd = saved[1 + i];
      const auto g = grads[i].to(xd.scalar_type()).contiguous();  // to_rows: (B, out, L); else (B, L, out)
      const int64_t n_out = Wd.size(0), n_in = Wd.size(1);
      if (ctx->needs_input_grad(0)) {
        // to_rows: dx[b] += g[b]^T W (L, in); else dx[b] += W^T g[b]^T (in, L): each in its own layout.
        const auto a = to_rows ? g.transpose(1, 2) : Wd.t().unsqueeze(0).expand({B, n_in, n_out});
        const auto b = to_rows ? Wd.unsqueeze(0).expand({B, n_out, n_in}) : g.transpose(1, 2);
        if (!dx.defined())
          dx = at::bmm(a, b);
        else
          dx.baddbmm_(a, b);
      }
      if (ctx->needs_input_grad(1 + i)) {
        // dW = sum_b g[b] x[b] (to_rows) or sum_b g[b]^T x[b]^T: per-batch GEMMs (the batch cannot be one GEMM's K
        // dimension in the rows layout), their products summed in float32 (float64 for float64), on a GPU by a kernel
        // of ours (internal::batch_sums; ATen's sum over dim 0 of a bf16 (4, 768, 768) took about 8 us on an H200,
        // ours 6.2 us, ncu). Tried instead (session 13): one cuBLAS GEMM per batch entry adding onto a float32 dW (beta = 1):
        // H3 forward+backward at L 2048 took 0.811-0.813 ms against 0.780-0.786 (about 4 us of it that build's slower
        // column sums); presumably a (768, 768) output's 36 tiles of 128 x 128 leave most of 132 SMs idle, where the
        // batched GEMM has 4 x 36.
        const auto per_batch = to_rows ? at::bmm(g, xd) : at::bmm(g.transpose(1, 2), xd.transpose(1, 2));
        Tensor dW = internal::batch_sums(per_batch);
        if (!dW.defined()) dW = at::sum(per_batch, std::vector<int64_t>{0}, false, acc);
        out[1 + i] = dW.to(static_cast<c10::ScalarType>(W_dtypes[i]));
      }
      if (need_bias[i] && ctx->needs_input_grad(bias_slots[i])) {
        // to_rows: sums along contiguous rows (b, o, :); else along columns, as torch::linear's bias gradient. On a
        // GPU both run in kernels of ours (internal::bias_row_sums, bias_col_sums): ATen's sums over dims {0, 2} and
        // {0, 1} of a bf16 (4, 768, 2048) / (4, 2048, 768) took 16.4 / 19 us on an H200, ours 6.3 / 15.0 (ncu).
        Tensor db = to_rows ? internal::bias_row_sums(g) : internal::bias_col_sums(g);
        if (!db.defined()) {
          const std::vector<int64_t> dims = to_rows ? std::vector<int64_t>{0, 2} : std::vector<int64_t>{0, 1};
          db = at::sum(g, dims, false, acc);
        }
        out[bias_slots[i]] = db.to(static_cast<c10::ScalarType>(bias_dtypes[i]));
      }
    }
    if (dx.defined()) out[0] = dx.to(ctx->saved_data["x_dtype"].toScalarType());
    return out;
  }
};

// The batched-GEMM projections of x by Ws (biases: one per weight, undefined for none), one autograd node.
variable_list rows_linear(const Tensor& x, const std::vector<Tensor>& Ws, const std::vector<Tensor>& biases,
                          bool to_rows) {
  std::vector<Tensor> defined;
  std::vector<int64_t> has_bias;
  for (const auto& b : biases) {
    has_bias.push_back(b.defined());
    if (b.defined()) defined.push_back(b);
  }
  return RowsLinear::apply(x, at::TensorList(Ws), at::TensorList(defined), has_bias, to_rows,
                           static_cast<int64_t>(compute_dtype(x, Ws.front())));
}

void check_rows_args(const Tensor& x, const Tensor& W, bool to_rows) {
  const char* name = to_rows ? "linear_to_rows" : "linear_from_rows";
  const int64_t in_dim = to_rows ? 2 : 1;
  TORCH_CHECK(W.dim() == 2, name, ": weight must be (out, in), got ", W.sizes());
  TORCH_CHECK(x.dim() == 3 && x.size(in_dim) == W.size(1), name,
              to_rows ? ": x must be (B, L, in)" : ": y must be (B, in, L)", " with in = ", W.size(1), ", got ",
              x.sizes());
}

}  // namespace

namespace internal {
bool parse_projection_env(const std::string& value) {
  if (value.empty() || value == "direct") return true;
  if (value == "transpose") return false;
  TORCH_CHECK(false, "HIPPO_PROJECTION: unknown value '", printable(value), "'; accepted: direct, transpose");
}

Tensor linear_rows_direct(const Tensor& x, const Tensor& weight, const Tensor& bias, bool to_rows) {
  check_rows_args(x, weight, to_rows);
  return rows_linear(x, {weight}, {bias}, to_rows)[0];
}

std::vector<Tensor> linear_to_rows_direct(const Tensor& x, const std::vector<Tensor>& weights,
                                          const std::vector<Tensor>& biases) {
  TORCH_CHECK(!weights.empty() && weights.size() == biases.size(),
              "linear_to_rows: need one bias entry (possibly undefined) per weight, at least one weight; got ",
              weights.size(), " weights and ", biases.size(), " biases");
  for (const auto& W : weights) {
    check_rows_args(x, W, true);
    TORCH_CHECK(W.scalar_type() == weights.front().scalar_type() && W.device() == weights.front().device(),
                "linear_to_rows: the weights must share one dtype and device, got ", W.scalar_type(), " on ",
                W.device(), " and ", weights.front().scalar_type(), " on ", weights.front().device());
  }
  return rows_linear(x, weights, biases, true);
}
}  // namespace internal

bool projection_direct() {
  static const bool direct = [] {
    const char* e = std::getenv("HIPPO_PROJECTION");
    return e == nullptr || internal::parse_projection_env(e);
  }();
  return direct;
}

Tensor linear_to_rows(const torch::nn::Linear& l, const Tensor& x) {
  check_rows_args(x, l->weight, true);
  if (x.is_cuda() && projection_direct()) return rows_linear(x, {l->weight}, {l->bias}, true)[0];
  return transpose_contiguous(linear(l, x));
}

std::vector<Tensor> linear_to_rows_many(const std::vector<torch::nn::Linear>& ls, const Tensor& x) {
  TORCH_CHECK(!ls.empty(), "linear_to_rows_many: no projections given");
  std::vector<Tensor> weights, biases;
  for (const auto& l : ls) {
    check_rows_args(x, l->weight, true);
    weights.push_back(l->weight);
    biases.push_back(l->bias);
  }
  if (x.is_cuda() && projection_direct()) {
    bool same = true;  // one dtype and device for all weights (always so in a module), else one by one
    for (const auto& W : weights)
      same = same && W.scalar_type() == weights[0].scalar_type() && W.device() == weights[0].device();
    if (same) return rows_linear(x, weights, biases, true);
  }
  std::vector<Tensor> ys;
  for (const auto& l : ls) ys.push_back(linear_to_rows(l, x));
  return ys;
}

Tensor linear_from_rows(const torch::nn::Linear& l, const Tensor& y) {
  check_rows_args(y, l->weight, false);
  if (y.is_cuda() && projection_direct()) return rows_linear(y, {l->weight}, {l->bias}, false)[0];
  return linear(l, transpose_contiguous(y));
}

}  // namespace hippo
