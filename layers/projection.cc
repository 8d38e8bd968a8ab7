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

// The rows-layout projection: to_rows, x (B, L, in) -> y (B, out, L); else x (B, in, L) -> y (B, L, out). Operands are
// cast to `dtype` here and kept for the backward in it (autocast is off inside, so the backward multiplies what the
// forward did). bias may be undefined.
class RowsLinear : public torch::autograd::Function<RowsLinear> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& W, const c10::optional<Tensor>& bias_opt,
                        bool to_rows, int64_t dtype) {
    const auto dt = static_cast<c10::ScalarType>(dtype);
    NoAutocastScope no_autocast;
    const Tensor xd = x.to(dt), Wd = W.to(dt), bias = bias_opt.value_or(Tensor());
    const int64_t B = x.size(0), L = to_rows ? x.size(1) : x.size(2), out = W.size(0), in = W.size(1);
    // W (or W^T) at batch stride 0, x[b] read transposed through the GEMM's operand flags: no copy of either.
    const auto a = to_rows ? Wd.unsqueeze(0).expand({B, out, in}) : xd.transpose(1, 2);
    const auto b = to_rows ? xd.transpose(1, 2) : Wd.t().unsqueeze(0).expand({B, in, out});
    Tensor y;
    if (bias.defined()) {
      // The bias as the GEMM's C operand (beta = 1): one rounding of the sum. On a GPU broadcast by a kernel of ours,
      // then accumulated onto in place (ATen's broadcast copy inside baddbmm took 14.7 us for a bf16 (4, 768, 2048) on
      // an H200, ncu; an in-place broadcast add after bmm, 21 us); elsewhere baddbmm with the expanded bias.
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
    ctx->save_for_backward({xd, Wd});
    ctx->saved_data["to_rows"] = to_rows;
    ctx->saved_data["x_dtype"] = x.scalar_type();
    ctx->saved_data["W_dtype"] = W.scalar_type();
    ctx->saved_data["bias_dtype"] = bias.defined() ? bias.scalar_type() : W.scalar_type();
    ctx->saved_data["need_bias"] = bias.defined() && bias.requires_grad();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &xd = saved[0], &Wd = saved[1];
    // Grad mode is on inside backward only when a graph of the backward is asked for (create_graph): the saved
    // operands were cast without history, so second derivatives would silently be missing.
    TORCH_CHECK(!torch::GradMode::is_enabled(),
                "linear_to_rows / linear_from_rows: the batched-GEMM backward is not differentiable (create_graph / "
                "double backward); HIPPO_PROJECTION=transpose takes torch::linear");
    variable_list out(5);
    if (!grads[0].defined()) return out;
    NoAutocastScope no_autocast;
    const bool to_rows = ctx->saved_data["to_rows"].toBool();
    const auto g = grads[0].to(xd.scalar_type()).contiguous();  // to_rows: (B, out, L); else (B, L, out)
    const int64_t B = xd.size(0), n_out = Wd.size(0), n_in = Wd.size(1);
    const auto acc = xd.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;  // the sums' dtype
    // x and W are inputs 0 and 1 whatever the (optional, last) bias is, so needs_input_grad names them.
    if (ctx->needs_input_grad(0)) {
      // to_rows: dx[b] = g[b]^T W (L, in); else dx[b] = W^T g[b]^T (in, L): each in its own layout.
      const auto dx = to_rows ? at::bmm(g.transpose(1, 2), Wd.unsqueeze(0).expand({B, n_out, n_in}))
                              : at::bmm(Wd.t().unsqueeze(0).expand({B, n_in, n_out}), g.transpose(1, 2));
      out[0] = dx.to(ctx->saved_data["x_dtype"].toScalarType());
    }
    if (ctx->needs_input_grad(1)) {
      // dW = sum_b g[b] x[b] (to_rows) or sum_b g[b]^T x[b]^T: per-batch GEMMs, summed in float32 (float64 for float64).
      const auto per_batch = to_rows ? at::bmm(g, xd) : at::bmm(g.transpose(1, 2), xd.transpose(1, 2));
      out[1] = at::sum(per_batch, std::vector<int64_t>{0}, false, acc)
                   .to(ctx->saved_data["W_dtype"].toScalarType());
    }
    if (ctx->saved_data["need_bias"].toBool()) {
      // to_rows: sums along contiguous rows (b, o, :); else along columns, as torch::linear's bias gradient.
      // On a GPU the rows layout's sums run in a kernel of ours (internal::bias_row_sums): ATen's sum over dims {0, 2}
      // of a bf16 (4, 768, 2048) took 16.4 us on an H200 (ncu).
      Tensor db = to_rows ? internal::bias_row_sums(g) : Tensor();
      if (!db.defined()) {
        const std::vector<int64_t> dims = to_rows ? std::vector<int64_t>{0, 2} : std::vector<int64_t>{0, 1};
        db = at::sum(g, dims, false, acc);
      }
      out[2] = db.to(ctx->saved_data["bias_dtype"].toScalarType());
    }
    return out;
  }
};

Tensor rows_linear(const Tensor& x, const Tensor& W, const Tensor& bias, bool to_rows) {
  c10::optional<Tensor> b;
  if (bias.defined()) b = bias;
  return RowsLinear::apply(x, W, b, to_rows, static_cast<int64_t>(compute_dtype(x, W)));
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
  return rows_linear(x, weight, bias, to_rows);
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
  if (x.is_cuda() && projection_direct()) return rows_linear(x, l->weight, l->bias, true);
  return transpose_contiguous(linear(l, x));
}

Tensor linear_from_rows(const torch::nn::Linear& l, const Tensor& y) {
  check_rows_args(y, l->weight, false);
  if (y.is_cuda() && projection_direct()) return rows_linear(y, l->weight, l->bias, false);
  return linear(l, transpose_contiguous(y));
}

}  // namespace hippo
