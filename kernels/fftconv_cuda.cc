// The fused CUDA path of fftconv (built only with HIPPO_WITH_CUDA): the support check, the filter spectrum,
// the parameter structs for the kernels in fftconv_kernel.cu, and the autograd Function that ties forward and
// backward together so that every SSM layer trains through it unchanged.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/torch.h>

#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/fftconv.h"
#include "kernels/fftconv_kernel.h"
#include "kernels/fftconv_short_kernel.h"
#include "kernels/launch_checked.h"

namespace hippo {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

cuda::ElemType elem_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat:
      return cuda::ElemType::kFloat32;
    case torch::kHalf:
      return cuda::ElemType::kFloat16;
    case torch::kBFloat16:
      return cuda::ElemType::kBFloat16;
    default:
      TORCH_CHECK(false, "fftconv_fused: unsupported dtype ", t);
  }
}

int log2_exact(int64_t n) {
  int l = 0;
  while ((int64_t{1} << l) < n) ++l;
  return l;
}

const void* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
void* mut_ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// The fields FftConvFwdParams and FftConvBwdParams share: the rows u (B, H, L), the optional gates v, q and the
// float32 (B, H) mask, the filter spectrum kf of fft size n, the shape, dtype and GELU flag.
template <typename P>
void set_common(P& p, const Tensor& u, const Tensor& v, const Tensor& q, const Tensor& mask, const Tensor& kf,
                int64_t n, bool gelu) {
  p.u = u.data_ptr();
  p.v = ptr_or_null(v);
  p.q = ptr_or_null(q);
  p.mask = mask.defined() ? mask.data_ptr<float>() : nullptr;
  p.kf = kf.data_ptr<float>();
  p.B = u.size(0), p.H = u.size(1), p.L = u.size(2), p.log_n = log2_exact(n);
  p.elem = elem_type(u.scalar_type());
  p.gelu = gelu;
}

// HIPPO_FFTCONV_FILTER=aten: the filter spectrum and the filter gradient through torch::fft instead of their
// kernels (read once; an A/B switch for benchmarks; a bad value raises, and `hippo` refuses it at start).
bool filter_on_aten() {
  static const bool aten = [] {
    const char* e = std::getenv("HIPPO_FFTCONV_FILTER");
    return e != nullptr && internal::parse_fftconv_filter_env(e);
  }();
  return aten;
}

using internal::launch_checked;

// Optional inputs are c10::optional rather than undefined tensors: LibTorch 2.x refuses undefined tensors as
// inputs of a custom Function. Which gradients are needed is read off requires_grad in forward, because the
// edge indices behind needs_input_grad shift when an optional input is absent.
class FftConvFunction : public torch::autograd::Function<FftConvFunction> {
 public:
  // u, v, q contiguous in one dtype on one device; mask float32 (B, H).
  static Tensor forward(AutogradContext* ctx, const Tensor& u, const Tensor& k, const Tensor& D,
                        const c10::optional<Tensor>& v_opt, const c10::optional<Tensor>& q_opt,
                        const c10::optional<Tensor>& mask_opt, bool gelu, bool grad_possible) {
    const Tensor v = v_opt.value_or(Tensor()), q = q_opt.value_or(Tensor()),
                 mask = mask_opt.value_or(Tensor());
    const c10::cuda::CUDAGuard guard(u.device());
    const int64_t n = fftconv_size(u.size(2), k.size(1));
    auto kf = internal::fftconv_filter_spectrum(k, D, n);
    auto y = torch::empty_like(u);
    cuda::FftConvFwdParams p;
    set_common(p, u, v, q, mask, kf, n, gelu);
    p.y = y.data_ptr();
    // The backward needs z = conv(u * v, k) + D (u * v) for dq and GELU's derivative: kept from here (4 bytes per
    // element) unless no gradient can be asked for (grad_possible, decided by the caller: inside forward grad mode is
    // always off) or HIPPO_FFTCONV_RECOMPUTE=on.
    Tensor z;
    if ((gelu || q.defined()) && grad_possible && !fftconv_recompute_z()) {
      z = torch::empty(u.sizes(), u.options().dtype(torch::kFloat));
      p.z = z.data_ptr<float>();
    }
    launch_checked([&] { cuda::fftconv_fwd_launch(p, at::cuda::getCurrentCUDAStream().stream()); });
    ctx->save_for_backward({u, v, q, mask, kf, z});
    ctx->saved_data["gelu"] = gelu;
    ctx->saved_data["n"] = n;
    ctx->saved_data["kernel_len"] = k.size(1);
    ctx->saved_data["k_dtype"] = k.scalar_type();
    ctx->saved_data["D_dtype"] = D.scalar_type();
    ctx->saved_data["need_u"] = u.requires_grad();
    ctx->saved_data["need_k"] = k.requires_grad();
    ctx->saved_data["need_D"] = D.requires_grad();
    ctx->saved_data["need_v"] = v.defined() && v.requires_grad();
    ctx->saved_data["need_q"] = q.defined() && q.requires_grad();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &u = saved[0], &v = saved[1], &q = saved[2], &mask = saved[3], &kf = saved[4], &z = saved[5];
    const c10::cuda::CUDAGuard guard(u.device());
    const int64_t B = u.size(0), H = u.size(1);
    const int64_t n = ctx->saved_data["n"].toInt(), Lk = ctx->saved_data["kernel_len"].toInt();
    const bool need_u = ctx->saved_data["need_u"].toBool(), need_k = ctx->saved_data["need_k"].toBool(),
               need_D = ctx->saved_data["need_D"].toBool(), need_v = ctx->saved_data["need_v"].toBool(),
               need_q = ctx->saved_data["need_q"].toBool();
    // Grad mode is on inside backward only when a graph of the backward is asked for (create_graph): the
    // kernel's outputs would carry no history, so second derivatives would silently be missing.
    TORCH_CHECK(!torch::GradMode::is_enabled(),
                "fftconv_fused: the fused backward is not differentiable "
                "(create_graph / double backward) for u ",
                u.sizes(), "; use fftconv_ref for higher derivatives");
    variable_list out(8);  // one per forward input: u, k, D, v, q, mask, gelu, grad_possible
    if (!grads[0].defined() || !(need_u || need_k || need_D || need_v || need_q)) return out;
    const auto dy = grads[0].to(u.scalar_type()).contiguous();
    cuda::FftConvBwdParams p;  // the inputs first: which kernel runs (cuda::bwd_is_plain) depends on them
    set_common(p, u, v, q, mask, kf, n, ctx->saved_data["gelu"].toBool());
    p.dy = dy.data_ptr();
    p.z = z.defined() ? z.data_ptr<float>() : nullptr;
    // Groups of rows per channel (fftconv_bwd_chunks: whole waves of blocks, few groups), each adding one
    // spectrum of n/2 + 1 values to the dk workspace; fftconv_bwd_chunks_setting() > 0 sets them (capped at B).
    const int setting = fftconv_bwd_chunks_setting();
    int64_t chunks = std::min<int64_t>(B, setting);
    if (setting == 0)
      launch_checked([&] {
        chunks = cuda::fftconv_bwd_chunks(B, H, p.log_n, p.elem, need_k || need_D, cuda::bwd_is_plain(p));
      });
    Tensor du = need_u ? torch::empty_like(u) : Tensor(), dv = need_v ? torch::empty_like(u) : Tensor(),
           dq = need_q ? torch::empty_like(u) : Tensor();
    Tensor dk_spec = need_k || need_D
                         ? torch::empty({chunks, H, n / 2 + 1, 2}, u.options().dtype(torch::kFloat))
                         : Tensor();
    // Past the on-chip limit (fft_size 32768) the kernel keeps the spectrum of w per block in global memory.
    const int64_t scratch_floats = dk_spec.defined() ? cuda::fftconv_bwd_scratch_floats(p.log_n, chunks, H) : 0;
    Tensor scratch = scratch_floats > 0 ? torch::empty({scratch_floats}, u.options().dtype(torch::kFloat)) : Tensor();
    p.du = mut_ptr_or_null(du);
    p.dv = mut_ptr_or_null(dv);
    p.dq = mut_ptr_or_null(dq);
    p.dk_spec = dk_spec.defined() ? dk_spec.data_ptr<float>() : nullptr;
    p.spec_scratch = scratch.defined() ? scratch.data_ptr<float>() : nullptr;
    p.chunks = static_cast<int>(chunks);
    launch_checked([&] { cuda::fftconv_bwd_launch(p, at::cuda::getCurrentCUDAStream().stream()); });
    internal::note_fftconv_bwd_chunks(p.chunks);
    out[0] = du;
    out[3] = dv;
    out[4] = dq;
    if (dk_spec.defined()) {
      // sum_b conj(W_b) DZ_b is the spectrum of the correlation of w and dz: dk at lags 0..L_k-1, dD at lag
      // 0.
      const auto k_dtype = ctx->saved_data["k_dtype"].toScalarType(),
                 D_dtype = ctx->saved_data["D_dtype"].toScalarType();
      if (filter_on_aten()) {
        auto corr = torch::fft::irfft(torch::view_as_complex(dk_spec).sum(0), n, -1).narrow(-1, 0, Lk);
        if (need_k) out[1] = corr.to(k_dtype);
        if (need_D) out[2] = corr.select(-1, 0).contiguous().to(D_dtype);
      } else {
        const auto f32 = u.options().dtype(torch::kFloat);
        Tensor dk = need_k ? torch::empty({H, Lk}, f32) : Tensor(), dD = need_D ? torch::empty({H}, f32) : Tensor();
        cuda::FftConvFilterGradParams g;
        g.dk_spec = dk_spec.data_ptr<float>();
        g.dk = dk.defined() ? dk.data_ptr<float>() : nullptr;
        g.dD = dD.defined() ? dD.data_ptr<float>() : nullptr;
        g.H = H, g.Lk = Lk, g.log_n = log2_exact(n), g.chunks = static_cast<int>(chunks);
        launch_checked([&] { cuda::fftconv_filter_grad_launch(g, at::cuda::getCurrentCUDAStream().stream()); });
        if (need_k) out[1] = dk.to(k_dtype);
        if (need_D) out[2] = dD.to(D_dtype);
      }
    }
    return out;
  }
};

// y (B, H, L) in x's dtype = the causal convolution of x (B, H, L), contiguous, with the taps kc (H, L_k) and the skip
// dc (H), both float32 contiguous (reverse: its transpose, x[t + j]), by the short-filter kernel on the current stream.
Tensor short_conv(const Tensor& x, const Tensor& kc, const Tensor& dc, bool reverse) {
  auto y = torch::empty_like(x);
  cuda::ShortConvParams p;
  p.x = x.data_ptr();
  p.k = kc.data_ptr<float>();
  p.D = dc.data_ptr<float>();
  p.y = y.data_ptr();
  p.B = x.size(0), p.H = x.size(1), p.L = x.size(2), p.Lk = kc.size(1);
  p.elem = elem_type(x.scalar_type());
  p.reverse = reverse;
  launch_checked([&] { cuda::short_conv_launch(p, at::cuda::getCurrentCUDAStream().stream()); });
  return y;
}

// The short-filter path (fftconv_short): u, k, D as fftconv_short_supported admits them.
class FftConvShortFunction : public torch::autograd::Function<FftConvShortFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& u, const Tensor& k, const Tensor& D) {
    const c10::cuda::CUDAGuard guard(u.device());
    const auto kc = k.to(torch::kFloat).contiguous(), dc = D.to(torch::kFloat).contiguous();
    auto y = short_conv(u, kc, dc, /*reverse=*/false);
    ctx->save_for_backward({u, kc, dc});
    ctx->saved_data["k_dtype"] = k.scalar_type();
    ctx->saved_data["D_dtype"] = D.scalar_type();
    ctx->saved_data["need_u"] = u.requires_grad();
    ctx->saved_data["need_k"] = k.requires_grad();
    ctx->saved_data["need_D"] = D.requires_grad();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &u = saved[0], &kc = saved[1], &dc = saved[2];
    const c10::cuda::CUDAGuard guard(u.device());
    TORCH_CHECK(!torch::GradMode::is_enabled(),
                "fftconv_short: the CUDA backward is not differentiable (create_graph / double backward) for u ",
                u.sizes(), "; use fftconv_ref for higher derivatives");
    const bool need_u = ctx->saved_data["need_u"].toBool(), need_k = ctx->saved_data["need_k"].toBool(),
               need_D = ctx->saved_data["need_D"].toBool();
    variable_list out(3);
    if (!grads[0].defined()) return out;
    const auto dy = grads[0].to(u.scalar_type()).contiguous();
    const int64_t B = u.size(0), H = u.size(1), L = u.size(2), Lk = kc.size(1);
    // The transpose of the causal convolution: du[t] = D dy[t] + sum_j k[j] dy[t + j].
    if (need_u) out[0] = short_conv(dy, kc, dc, /*reverse=*/true);
    if (need_k || need_D) {
      const auto f32 = u.options().dtype(torch::kFloat);
      const int64_t tiles = (L + cuda::kShortGradTile - 1) / cuda::kShortGradTile;
      auto partial = torch::empty({H, B * tiles, cuda::short_conv_taps(Lk)}, f32);
      Tensor dk = need_k ? torch::empty({H, Lk}, f32) : Tensor(), dD = need_D ? torch::empty({H}, f32) : Tensor();
      cuda::ShortConvGradParams g;
      g.u = u.data_ptr();
      g.dy = dy.data_ptr();
      g.partial = partial.data_ptr<float>();
      g.dk = dk.defined() ? dk.data_ptr<float>() : nullptr;
      g.dD = dD.defined() ? dD.data_ptr<float>() : nullptr;
      g.B = B, g.H = H, g.L = L, g.Lk = Lk;
      g.elem = elem_type(u.scalar_type());
      launch_checked([&] { cuda::short_conv_grad_launch(g, at::cuda::getCurrentCUDAStream().stream()); });
      if (need_k) out[1] = dk.to(ctx->saved_data["k_dtype"].toScalarType());
      if (need_D) out[2] = dD.to(ctx->saved_data["D_dtype"].toScalarType());
    }
    return out;
  }
};

bool same_device(const std::optional<Tensor>& t, const Tensor& u) { return !t || t->device() == u.device(); }

}  // namespace

static_assert(kFftConvFusedMaxSize == int64_t{1} << cuda::kMaxLogN, "fftconv.h and the kernels disagree");
static_assert(kFftConvDirectMaxTaps == cuda::kShortMaxTaps, "fftconv.h and the short-filter kernels disagree");
static_assert(kFftConvShortMaxLen == 65535 * cuda::kShortGradTile, "fftconv.h and the short-filter grid disagree");

bool fftconv_cuda_built() { return true; }

namespace internal {
Tensor fftconv_filter_spectrum(const Tensor& k, const Tensor& D, int64_t fft_size) {
  if (filter_on_aten() || !k.is_cuda() || fft_size > kFftConvFusedMaxSize)
    return fftconv_filter_spectrum_ref(k, D, fft_size);
  check_filter_spectrum_args(k, D, fft_size);
  const c10::cuda::CUDAGuard guard(k.device());
  const auto kc = k.to(torch::kFloat).contiguous(), dc = D.to(torch::kFloat).contiguous();
  auto kf = torch::empty({k.size(0), fft_size / 2 + 1, 2}, kc.options());
  cuda::FftConvFilterParams p;
  p.k = kc.data_ptr<float>();
  p.D = dc.data_ptr<float>();
  p.kf = kf.data_ptr<float>();
  p.H = k.size(0), p.Lk = k.size(1), p.log_n = log2_exact(fft_size);
  launch_checked([&] { cuda::fftconv_filter_launch(p, at::cuda::getCurrentCUDAStream().stream()); });
  return kf;
}
}  // namespace internal

bool fftconv_fused_supported(const Tensor& u, const Tensor& k, const Tensor& D, const FftConvOptions& o) {
  if (!u.defined() || !k.defined() || !D.defined() || !u.is_cuda()) return false;
  if (u.dim() != 3 || k.dim() != 2 || D.dim() != 1) return false;
  const auto t = u.scalar_type();
  if (t != torch::kFloat && t != torch::kHalf && t != torch::kBFloat16) return false;
  if (!k.is_floating_point() || !D.is_floating_point() || k.device() != u.device() ||
      D.device() != u.device())
    return false;
  const int64_t B = u.size(0), H = u.size(1), L = u.size(2);
  if (B < 1 || H < 1 || L < 1 || k.size(0) != H || k.size(1) < 1 || k.size(1) > L || D.size(0) != H)
    return false;
  if (fftconv_size(L, k.size(1)) > kFftConvFusedMaxSize) return false;
  for (const auto* g : {&o.v, &o.q})
    if (*g && ((*g)->sizes() != u.sizes() || (*g)->scalar_type() != t || !same_device(*g, u))) return false;
  if (o.dropout_mask) {
    const auto& m = *o.dropout_mask;
    if (m.dim() != 2 || m.size(0) != B || m.size(1) != H || !m.is_floating_point() ||
        !same_device(o.dropout_mask, u) || m.requires_grad())
      return false;
  }
  return true;
}

Tensor fftconv_fused(const Tensor& u, const Tensor& k, const Tensor& D, const FftConvOptions& o) {
  TORCH_CHECK(
      fftconv_fused_supported(u, k, D, o), "fftconv_fused: unsupported case for the CUDA kernel: u ",
      u.sizes(), " ", u.scalar_type(), " on ", u.device(), ", k ", k.sizes(), " on ", k.device(),
      " (needs CUDA tensors, float32/float16/bfloat16 u with v and q in its dtype, fft_size <= 32768);"
      " fftconv() falls back to the reference");
  c10::optional<Tensor> v, q, mask;
  if (o.v) v = o.v->contiguous();
  if (o.q) q = o.q->contiguous();
  if (o.dropout_mask) mask = o.dropout_mask->to(torch::kFloat).contiguous();
  // Whether autograd can ask for a gradient of this call (grad mode on and an input that requires one): only then
  // does the forward keep z for the backward.
  const bool grad_possible = torch::GradMode::is_enabled() &&
                             (u.requires_grad() || k.requires_grad() || D.requires_grad() ||
                              (o.v && o.v->requires_grad()) || (o.q && o.q->requires_grad()));
  return FftConvFunction::apply(u.contiguous(), k, D, v, q, mask, o.gelu, grad_possible);
}

bool fftconv_short_supported(const Tensor& u, const Tensor& k, const Tensor& D, const FftConvOptions& o) {
  if (o.v || o.q || o.gelu || o.dropout_mask) return false;
  if (!u.defined() || !k.defined() || !D.defined() || !u.is_cuda()) return false;
  if (u.dim() != 3 || k.dim() != 2 || D.dim() != 1) return false;
  const auto t = u.scalar_type();
  if (t != torch::kFloat && t != torch::kHalf && t != torch::kBFloat16) return false;
  if (!k.is_floating_point() || !D.is_floating_point() || k.device() != u.device() || D.device() != u.device())
    return false;
  const int64_t B = u.size(0), H = u.size(1), L = u.size(2), Lk = k.size(1);
  if (B < 1 || H < 1 || L < 1 || k.size(0) != H || D.size(0) != H) return false;
  if (Lk < 1 || Lk > L || Lk > kFftConvDirectMaxTaps) return false;
  return B * H <= std::numeric_limits<int32_t>::max() && L <= kFftConvShortMaxLen;
}

Tensor fftconv_short(const Tensor& u, const Tensor& k, const Tensor& D, const FftConvOptions& o) {
  TORCH_CHECK(fftconv_short_supported(u, k, D, o), "fftconv_short: unsupported case for the CUDA kernel: u ",
              u.sizes(), " ", u.scalar_type(), " on ", u.device(), ", k ", k.sizes(), " on ", k.device(),
              " (needs CUDA tensors, float32/float16/bfloat16 u, 1 <= L_k <= min(L, ", kFftConvDirectMaxTaps,
              "), B * H < 2^31, L <= ", kFftConvShortMaxLen, ", no gates, GELU or dropout mask); fftconv() falls back to the FFT "
              "paths");
  return FftConvShortFunction::apply(u.contiguous(), k, D);
}

}  // namespace hippo
