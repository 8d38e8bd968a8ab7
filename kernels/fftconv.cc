// The reference FFT convolution (torch::fft) and the dispatcher. The fused CUDA path (fftconv_cuda.cc) plugs in
// through fftconv(); the reference is the CPU path, the fallback and the specification the kernels must match.
#include "kernels/fftconv.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "kernels/fftconv_blockfft.h"

namespace hippo {

int64_t fftconv_size(int64_t seq_len, int64_t kernel_len) {
  int64_t n = 16;
  while (n < seq_len + kernel_len - 1) n *= 2;
  return n;
}

namespace internal {
void check_fftconv_args(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                        const FftConvOptions& o) {
  TORCH_CHECK(u.dim() == 3, "fftconv: u must be (B, H, L), got ", u.sizes());
  TORCH_CHECK(k.dim() == 2, "fftconv: k must be (H, L_k), got ", k.sizes());
  TORCH_CHECK(D.dim() == 1, "fftconv: D must be (H), got ", D.sizes());
  const int64_t H = u.size(1), L = u.size(2);
  TORCH_CHECK(k.size(0) == H && k.size(1) >= 1 && k.size(1) <= L, "fftconv: k must be (H=", H,
              ", 1 <= L_k <= L=", L, "), got ", k.sizes());
  TORCH_CHECK(D.size(0) == H, "fftconv: D must be (H=", H, "), got ", D.sizes());
  TORCH_CHECK(u.scalar_type() == torch::kFloat || u.scalar_type() == torch::kDouble ||
                  u.scalar_type() == torch::kHalf || u.scalar_type() == torch::kBFloat16,
              "fftconv: u must be float32, float64, float16 or bfloat16, got ", u.scalar_type());
  TORCH_CHECK(k.is_floating_point() && D.is_floating_point(), "fftconv: k and D must be floating point");
  TORCH_CHECK(k.device() == u.device() && D.device() == u.device(), "fftconv: u, k and D must be on one device");
  for (const auto* g : {&o.v, &o.q})
    if (g->has_value())
      TORCH_CHECK((*g)->sizes() == u.sizes() && (*g)->device() == u.device(),
                  "fftconv: gates v and q must have u's shape ", u.sizes(), " and device, got ", (*g)->sizes());
  if (o.dropout_mask)
    TORCH_CHECK(o.dropout_mask->dim() == 2 && o.dropout_mask->size(0) == u.size(0) &&
                    o.dropout_mask->size(1) == H,
                "fftconv: dropout_mask must be (B, H), got ", o.dropout_mask->sizes());
}
}  // namespace internal

namespace {
using internal::check_fftconv_args;

torch::ScalarType compute_type(const torch::Tensor& u) {
  return u.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
}
}  // namespace

namespace {
// The skip, GELU, mask and q gate after the convolution conv = conv(w, k), in the compute type ct; y in u's dtype.
torch::Tensor finish(torch::Tensor y, const torch::Tensor& w, const torch::Tensor& u, const torch::Tensor& D,
                     const FftConvOptions& o, torch::ScalarType ct) {
  y = y + w * D.to(ct).unsqueeze(-1);
  if (o.gelu) y = internal::gelu_exact(y);
  if (o.dropout_mask) y = y * o.dropout_mask->to(ct).unsqueeze(-1);
  if (o.q) y = y * o.q->to(ct);
  return y.to(u.scalar_type());
}
}  // namespace

torch::Tensor fftconv_ref(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                          const FftConvOptions& o) {
  check_fftconv_args(u, k, D, o);
  const auto ct = compute_type(u);
  const int64_t L = u.size(2);
  const int64_t n = fftconv_size(L, k.size(1));
  torch::Tensor w = u.to(ct);
  if (o.v) w = w * o.v->to(ct);
  auto w_f = torch::fft::rfft(w, n, -1);
  auto k_f = torch::fft::rfft(k.to(ct), n, -1);
  return finish(torch::fft::irfft(w_f * k_f, n, -1).narrow(-1, 0, L), w, u, D, o, ct);
}

torch::Tensor fftconv_direct(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                             const FftConvOptions& o) {
  check_fftconv_args(u, k, D, o);
  const auto ct = compute_type(u);
  const int64_t H = u.size(1), Lk = k.size(1);
  torch::Tensor w = u.to(ct);
  if (o.v) w = w * o.v->to(ct);
  // conv1d is a cross-correlation, out[t] = sum_j weight[j] in[t + j]: with w padded by L_k - 1 zeros on the left
  // and the taps reversed, out[t] = sum_i k[i] w[t - i], the causal convolution. One group per channel.
  auto taps = k.to(ct).flip({1}).unsqueeze(1);  // (H, 1, L_k)
  auto y = torch::conv1d(torch::constant_pad_nd(w, {Lk - 1, 0}), taps, /*bias=*/torch::Tensor(),
                         /*stride=*/torch::IntArrayRef{1}, /*padding=*/torch::IntArrayRef{0},
                         /*dilation=*/torch::IntArrayRef{1}, /*groups=*/H);
  return finish(y, w, u, D, o, ct);
}

namespace {
// A switch read from the environment on first use: `mode` is -1 until then; `parse` maps the variable `name`
// (set and not empty) to a value >= 0, raising c10::Error for a bad one; unset or empty gives `unset_value`. A
// setter that stored a value first wins over the environment.
int env_switch(std::atomic<int>& mode, const char* name, int unset_value, int (*parse)(const std::string&)) {
  int value = mode.load(std::memory_order_relaxed);
  if (value < 0) {
    const char* env = std::getenv(name);
    value = env && *env ? parse(env) : unset_value;
    int unset = -1;
    mode.compare_exchange_strong(unset, value);
    value = mode.load();
  }
  return value;
}

// -1: not read yet; else a FftConvDirectDispatch (HIPPO_FFTCONV_DIRECT, read on first use).
std::atomic<int> direct_mode{-1};
}  // namespace

FftConvDirectDispatch parse_direct_dispatch(const std::string& text) {
  if (text == "off") return FftConvDirectDispatch::kOff;
  if (text == "auto") return FftConvDirectDispatch::kAuto;
  if (text == "cpu") return FftConvDirectDispatch::kCpu;
  if (text == "on") return FftConvDirectDispatch::kOn;
  TORCH_CHECK(false, "HIPPO_FFTCONV_DIRECT: unknown value '", internal::printable(text), "'; accepted: off, auto, cpu, on");
}

FftConvDirectDispatch direct_dispatch() {
  return static_cast<FftConvDirectDispatch>(
      env_switch(direct_mode, "HIPPO_FFTCONV_DIRECT", static_cast<int>(FftConvDirectDispatch::kAuto),
                 [](const std::string& v) { return static_cast<int>(parse_direct_dispatch(v)); }));
}

void set_direct_dispatch(FftConvDirectDispatch mode) { direct_mode.store(static_cast<int>(mode)); }

namespace {
// -1: not read yet; else 0 (save z) or 1 (recompute; HIPPO_FFTCONV_RECOMPUTE, read on first use).
std::atomic<int> recompute_mode{-1};
}  // namespace

bool fftconv_recompute_z() {
  return env_switch(recompute_mode, "HIPPO_FFTCONV_RECOMPUTE", 0, [](const std::string& v) {
           return internal::parse_fftconv_recompute_env(v) ? 1 : 0;
         }) == 1;
}

void set_fftconv_recompute_z(bool on) { recompute_mode.store(on ? 1 : 0); }

namespace {
// -1: not read yet; else 0 (auto) or the row groups (HIPPO_FFTCONV_BWD_CHUNKS, read on first use).
std::atomic<int> bwd_chunks_mode{-1};
}  // namespace

int fftconv_bwd_chunks_setting() {
  return env_switch(bwd_chunks_mode, "HIPPO_FFTCONV_BWD_CHUNKS", 0, internal::parse_fftconv_bwd_chunks_env);
}

void set_fftconv_bwd_chunks(int n) {
  TORCH_CHECK(n >= 0 && n <= 65536, "set_fftconv_bwd_chunks: need 0 (auto) to 65536, got ", n);
  bwd_chunks_mode.store(n);
}

namespace {
std::atomic<int> last_bwd_chunks{0};
}  // namespace

namespace internal {
int last_fftconv_bwd_chunks() { return last_bwd_chunks.load(); }
void note_fftconv_bwd_chunks(int chunks) { last_bwd_chunks.store(chunks); }
}  // namespace internal

bool fftconv_takes_direct(const torch::Tensor& u, const torch::Tensor& k) {
  const FftConvDirectDispatch mode = direct_dispatch();
  if (mode == FftConvDirectDispatch::kOff || mode == FftConvDirectDispatch::kAuto || u.dim() != 3 || k.dim() != 2)
    return false;
  if (mode == FftConvDirectDispatch::kCpu && !u.device().is_cpu()) return false;
  return k.size(1) <= kFftConvDirectMaxTaps && k.size(1) <= u.size(2);
}

namespace {
thread_local bool force_reference = false;
}  // namespace

FftConvReferenceScope::FftConvReferenceScope() : previous_(force_reference) { force_reference = true; }
FftConvReferenceScope::~FftConvReferenceScope() { force_reference = previous_; }
bool FftConvReferenceScope::active() { return force_reference; }

torch::Tensor fftconv(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                      const FftConvOptions& o) {
  if (force_reference) return fftconv_ref(u, k, D, o);
  // Off unless HIPPO_FFTCONV_BLOCKFFT / set_blockfft_dispatch asks (kernels/fftconv_blockfft.h).
  if (fftconv_takes_blockfft(u, k, D, o)) return fftconv_blockfft(u, k, D, o);
  return internal::fftconv_past_blockfft(u, k, D, o);
}

namespace internal {
FftConvPath fftconv_path_past_blockfft(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                                       const FftConvOptions& o) {
  if (fftconv_takes_direct(u, k)) return FftConvPath::kDirect;
  if (direct_dispatch() != FftConvDirectDispatch::kOff && fftconv_short_supported(u, k, D, o))
    return FftConvPath::kShort;
  if (fftconv_fused_supported(u, k, D, o)) return FftConvPath::kFused;
  if (fftconv_chunked_supported(u, k, D, o)) return FftConvPath::kChunked;
  return FftConvPath::kReference;
}

const char* fftconv_path_name(FftConvPath path) {
  switch (path) {
    case FftConvPath::kDirect: return "direct";
    case FftConvPath::kShort: return "short";
    case FftConvPath::kFused: return "fused";
    case FftConvPath::kChunked: return "chunked";
    case FftConvPath::kReference: break;
  }
  return "reference";
}

torch::Tensor fftconv_past_blockfft(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                                    const FftConvOptions& o) {
  switch (fftconv_path_past_blockfft(u, k, D, o)) {
    case FftConvPath::kDirect: return fftconv_direct(u, k, D, o);
    case FftConvPath::kShort: return fftconv_short(u, k, D, o);
    case FftConvPath::kFused: return fftconv_fused(u, k, D, o);
    case FftConvPath::kChunked: return fftconv_chunked(u, k, D, o, FftConvInner::kFused);
    case FftConvPath::kReference: break;
  }
  return fftconv_ref(u, k, D, o);
}
}  // namespace internal

namespace internal {
std::string printable(const std::string& value) {
  std::string shown;
  for (const char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      shown += buf;
    } else {
      shown += c;
    }
  }
  return shown;
}

bool parse_fftconv_filter_env(const std::string& value) {
  if (value.empty() || value == "kernel") return false;
  if (value == "aten") return true;
  TORCH_CHECK(false, "HIPPO_FFTCONV_FILTER: unknown value '", printable(value), "'; accepted: kernel, aten");
}

bool parse_fftconv_recompute_env(const std::string& value) {
  if (value.empty() || value == "off") return false;
  if (value == "on") return true;
  TORCH_CHECK(false, "HIPPO_FFTCONV_RECOMPUTE: unknown value '", printable(value), "'; accepted: off, on");
}

int parse_fftconv_bwd_chunks_env(const std::string& value) {
  if (value.empty() || value == "auto") return 0;
  int n = 0;
  const bool digits = value.size() <= 5 && std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (digits) n = std::stoi(value);
  TORCH_CHECK(digits && n >= 1 && n <= 65536, "HIPPO_FFTCONV_BWD_CHUNKS: unknown value '", printable(value),
              "'; accepted: auto, or an integer from 1 to 65536");
  return n;
}

torch::Tensor gelu_exact(const torch::Tensor& x) {
  auto y = torch::gelu(x);
  if (y.requires_grad()) y.register_hook([](const torch::Tensor& g) { return g.contiguous(); });
  return y;
}

void check_filter_spectrum_args(const torch::Tensor& k, const torch::Tensor& D, int64_t fft_size) {
  TORCH_CHECK(k.dim() == 2 && D.dim() == 1 && k.size(0) >= 1 && D.size(0) == k.size(0) && k.size(1) >= 1 &&
                  k.size(1) <= fft_size && fft_size >= 16 && (fft_size & (fft_size - 1)) == 0 &&
                  D.device() == k.device(),
              "fftconv_filter_spectrum: need k (H, L_k), D (H) on one device, H >= 1, 1 <= L_k <= fft_size, "
              "fft_size a power of two >= 16; got k ",
              k.sizes(), " on ", k.device(), ", D ", D.sizes(), " on ", D.device(), ", fft_size ", fft_size);
}

torch::Tensor fftconv_filter_spectrum_ref(const torch::Tensor& k, const torch::Tensor& D, int64_t fft_size) {
  check_filter_spectrum_args(k, D, fft_size);
  const double scale = 2.0 / static_cast<double>(fft_size);
  auto kd = k.to(torch::kFloat) * scale;
  kd.select(1, 0).add_(D.to(torch::kFloat) * scale);
  return torch::view_as_real(torch::fft::rfft(kd, fft_size, -1)).contiguous();
}
}  // namespace internal

#ifndef HIPPO_WITH_CUDA
namespace internal {
torch::Tensor fftconv_filter_spectrum(const torch::Tensor& k, const torch::Tensor& D, int64_t fft_size) {
  return fftconv_filter_spectrum_ref(k, D, fft_size);
}
}  // namespace internal

// A build without CUDA: the dispatcher always takes the reference.
bool fftconv_cuda_built() { return false; }
bool fftconv_fused_supported(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                             const FftConvOptions&) {
  return false;
}
torch::Tensor fftconv_fused(const torch::Tensor& u, const torch::Tensor&, const torch::Tensor&,
                            const FftConvOptions&) {
  TORCH_CHECK(false, "fftconv_fused: this hippo was built without CUDA kernels (u: ", u.sizes(), " on ",
              u.device(), ")");
}
bool fftconv_short_supported(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                             const FftConvOptions&) {
  return false;
}
torch::Tensor fftconv_short(const torch::Tensor& u, const torch::Tensor&, const torch::Tensor&,
                            const FftConvOptions&) {
  TORCH_CHECK(false, "fftconv_short: this hippo was built without CUDA kernels (u: ", u.sizes(), " on ",
              u.device(), ")");
}
#endif

torch::Tensor causal_conv_direct(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D) {
  check_fftconv_args(u, k, D, {});
  const auto ct = compute_type(u);
  const int64_t L = u.size(2), Lk = k.size(1);
  auto w = u.to(ct);
  auto y = w * D.to(ct).unsqueeze(-1);
  auto kk = k.to(ct);
  for (int64_t j = 0; j < Lk; ++j) {
    // y[..., t] += k[:, j] * u[..., t - j] for t >= j
    y.narrow(-1, j, L - j).add_(w.narrow(-1, 0, L - j) * kk.select(1, j).unsqueeze(-1));
  }
  return y.to(u.scalar_type());
}

}  // namespace hippo
