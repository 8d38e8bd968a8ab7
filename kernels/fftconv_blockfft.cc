// Block FFT convolution (H3.md 8): the FFT as two stages of dense DFT-matrix GEMMs with folded twiddles, in
// plain LibTorch (cuBLAS puts half-operand GEMMs on tensor cores), its stage matrices' cache, and the opt-in
// dispatch (off / on / autotune) that fftconv() consults.
#include "kernels/fftconv_blockfft.h"

#include <torch/cuda.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <tuple>

namespace hippo {

std::pair<int64_t, int64_t> blockfft_factors(int64_t n) {
  TORCH_CHECK(n >= 16 && n <= kBlockFftMaxSize && (n & (n - 1)) == 0,
              "fftconv_blockfft: FFT size must be a power of two in [16, ", kBlockFftMaxSize, "], got ", n);
  int p = 0;
  while ((int64_t{1} << p) < n) ++p;
  const int64_t n2 = int64_t{1} << (p / 2);
  return {n / n2, n2};
}

namespace {
using torch::Tensor;

// How a stage's product is formed.
enum class Mode { kExact, kSplit, kSingle };

bool is_half(torch::ScalarType t) { return t == torch::kHalf || t == torch::kBFloat16; }

std::string why_unsupported(const Tensor& u, const Tensor& k, const Tensor& D, const FftConvOptions& o) {
  if (!u.defined() || !k.defined() || !D.defined()) return "undefined tensor";
  if (u.dim() != 3 || k.dim() != 2 || D.dim() != 1) return "u, k, D must be (B, H, L), (H, L_k), (H)";
  const int64_t H = u.size(1), L = u.size(2);
  if (u.size(0) < 1 || H < 1 || L < 1) return "empty u";
  if (k.size(0) != H || k.size(1) < 1 || k.size(1) > L || D.size(0) != H) return "k or D does not match u";
  const auto t = u.scalar_type();
  if (t != torch::kFloat && t != torch::kDouble && !is_half(t)) return "u must be float32/64, float16, bfloat16";
  if (!k.is_floating_point() || !D.is_floating_point()) return "k and D must be floating point";
  if (k.device() != u.device() || D.device() != u.device()) return "u, k, D on different devices";
  if (!u.is_cuda() && !u.is_cpu()) return "device is neither CPU nor CUDA";
  for (const auto* g : {&o.v, &o.q})
    if (g->has_value() &&
        ((*g)->sizes() != u.sizes() || (*g)->device() != u.device() || !(*g)->is_floating_point()))
      return "gates v, q must be floating point with u's shape and device";
  if (o.dropout_mask && (o.dropout_mask->dim() != 2 || o.dropout_mask->size(0) != u.size(0) ||
                         o.dropout_mask->size(1) != H || o.dropout_mask->device() != u.device()))
    return "dropout_mask must be (B, H) on u's device";
  if (fftconv_size(L, k.size(1)) > kBlockFftMaxSize) return "FFT size above the block path's limit";
  return "";
}

// out = a @ b batched, float32 result for half operands (float32 accumulation), the operands' type otherwise.
Tensor bmm_float(const Tensor& a, const Tensor& b) {
  if (!is_half(a.scalar_type())) return torch::bmm(a, b);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 9)
  // cuBLAS with half operands, float32 accumulation and a float32 result, on tensor cores.
  if (a.is_cuda()) return at::bmm(a, b, torch::kFloat);
#endif
  // The CPU (and LibTorch before bmm.dtype): the same arithmetic, half operands exactly widened.
  return torch::bmm(a.to(torch::kFloat), b.to(torch::kFloat));
}

// One stage product: left ? m @ x : x @ m, x (bx, r, c) in the compute dtype, m (1 or bx, p, q) as made by
// stage_operand for the same side and mode. Split mode stacks [x_hi, x_lo, x_hi] along the contraction so
// that one GEMM against [m_hi, m_hi, m_lo] gives m_hi x_hi + m_hi x_lo + m_lo x_hi.
Tensor stage_product(const Tensor& x, const Tensor& m, bool left, Mode mode, torch::ScalarType half) {
  Tensor a = x;
  if (mode != Mode::kExact) {
    const Tensor hi = x.to(half);
    a = mode == Mode::kSingle ? hi : torch::cat({hi, (x - hi.to(x.scalar_type())).to(half), hi}, left ? 1 : 2);
  }
  const Tensor mm = m.size(0) == x.size(0) ? m : m.expand({x.size(0), m.size(1), m.size(2)});
  return left ? bmm_float(mm, a) : bmm_float(a, mm);
}

// A stage product as an autograd node: the gradient of x is the transposed stage in the same mode.
struct StageProduct : public torch::autograd::Function<StageProduct> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, const Tensor& m,
                        const Tensor& m_t, bool left, int64_t mode, int64_t half) {
    ctx->saved_data["m_t"] = m_t;
    ctx->saved_data["left"] = left;
    ctx->saved_data["mode"] = mode;
    ctx->saved_data["half"] = half;
    return stage_product(x, m, left, static_cast<Mode>(mode), static_cast<torch::ScalarType>(half));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list g) {
    const Tensor gx =
        stage_product(g[0], ctx->saved_data["m_t"].toTensor(), ctx->saved_data["left"].toBool(),
                      static_cast<Mode>(ctx->saved_data["mode"].toInt()),
                      static_cast<torch::ScalarType>(ctx->saved_data["half"].toInt()));
    return {gx, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

// A stage matrix in the form its product needs, and its transpose for the backward.
struct StageMatrix {
  Tensor m, m_t;
  bool left = false;
};

// m64: (Mb, p, q) float64 on the CPU. Exact: the compute dtype. Single: rounded to `half`. Split: hi and lo
// parts stacked along the contraction (q for a left product, p for a right one), as stage_product expects.
Tensor stage_operand(const Tensor& m64, bool left, Mode mode, torch::ScalarType ct, torch::ScalarType half,
                     const c10::Device& device) {
  if (mode == Mode::kExact) return m64.to(ct).to(device);
  const Tensor hi = m64.to(half);
  if (mode == Mode::kSingle) return hi.to(device);
  const Tensor lo = (m64 - hi.to(torch::kDouble)).to(half);
  return torch::cat({hi, hi, lo}, left ? 2 : 1).contiguous().to(device);
}

StageMatrix make_stage(const Tensor& m64, bool left, Mode mode, torch::ScalarType ct, torch::ScalarType half,
                       const c10::Device& device) {
  return {stage_operand(m64, left, mode, ct, half, device),
          stage_operand(m64.transpose(1, 2).contiguous(), left, mode, ct, half, device), left};
}

// Stage matrices, float64 on the CPU, for n = n1 * n2, t = t1 + n1 t2, f = n2 f1 + f2, m = ceil(L / n1).
constexpr double kTwoPi = 6.283185307179586476925286766559;

// Forward stage 1 (left, (1, 2 n2, m)): row 2 f2 + c, column t2: cos / -sin of 2 pi f2 t2 / n2.
Tensor forward_stage1(int64_t n2, int64_t m) {
  auto a = torch::empty({1, 2 * n2, m}, torch::kDouble);
  auto p = a.accessor<double, 3>();
  for (int64_t f2 = 0; f2 < n2; ++f2)
    for (int64_t t2 = 0; t2 < m; ++t2) {
      const double th = kTwoPi * static_cast<double>((f2 * t2) % n2) / static_cast<double>(n2);
      p[0][2 * f2][t2] = std::cos(th);
      p[0][2 * f2 + 1][t2] = -std::sin(th);
    }
  return a;
}

// Forward stage 2 (right, (n2, 2 n1, 2 n1)): row c_in n1 + t1, column 2 f1 + c_out; the complex entry is
// exp(-2 pi i (t1 f2 / n + t1 f1 / n1)) (twiddle and n1-point DFT).
Tensor forward_stage2(int64_t n1, int64_t n2) {
  const int64_t n = n1 * n2;
  auto a = torch::empty({n2, 2 * n1, 2 * n1}, torch::kDouble);
  auto p = a.accessor<double, 3>();
  for (int64_t f2 = 0; f2 < n2; ++f2)
    for (int64_t t1 = 0; t1 < n1; ++t1)
      for (int64_t f1 = 0; f1 < n1; ++f1) {
        const double th = -kTwoPi * static_cast<double>((t1 * f2 + t1 * f1 * n2) % n) / static_cast<double>(n);
        const double re = std::cos(th), im = std::sin(th);
        p[f2][t1][2 * f1] = re;
        p[f2][t1][2 * f1 + 1] = im;
        p[f2][n1 + t1][2 * f1] = -im;
        p[f2][n1 + t1][2 * f1 + 1] = re;
      }
  return a;
}

// Inverse stage 2 (right, (n2, 2 n1, 2 n1)): row 2 f1 + c_in, column c_out n1 + t1; the entry is
// exp(+2 pi i (t1 f2 / n + t1 f1 / n1)).
Tensor inverse_stage2(int64_t n1, int64_t n2) {
  const int64_t n = n1 * n2;
  auto a = torch::empty({n2, 2 * n1, 2 * n1}, torch::kDouble);
  auto p = a.accessor<double, 3>();
  for (int64_t f2 = 0; f2 < n2; ++f2)
    for (int64_t f1 = 0; f1 < n1; ++f1)
      for (int64_t t1 = 0; t1 < n1; ++t1) {
        const double th = kTwoPi * static_cast<double>((t1 * f2 + t1 * f1 * n2) % n) / static_cast<double>(n);
        const double re = std::cos(th), im = std::sin(th);
        p[f2][2 * f1][t1] = re;
        p[f2][2 * f1][n1 + t1] = im;
        p[f2][2 * f1 + 1][t1] = -im;
        p[f2][2 * f1 + 1][n1 + t1] = re;
      }
  return a;
}

// Inverse stage 1 (left, (1, 2 m, n2)): rows t2 then m + t2, column f2: cos and sin of 2 pi f2 t2 / n2, times
// 1/n (the inverse's normalisation; a power of two, exact in every dtype).
Tensor inverse_stage1(int64_t n1, int64_t n2, int64_t m) {
  auto a = torch::empty({1, 2 * m, n2}, torch::kDouble);
  auto p = a.accessor<double, 3>();
  const double scale = 1.0 / static_cast<double>(n1 * n2);
  for (int64_t t2 = 0; t2 < m; ++t2)
    for (int64_t f2 = 0; f2 < n2; ++f2) {
      const double th = kTwoPi * static_cast<double>((f2 * t2) % n2) / static_cast<double>(n2);
      p[0][t2][f2] = std::cos(th) * scale;
      p[0][m + t2][f2] = std::sin(th) * scale;
    }
  return a;
}

struct Stages {
  StageMatrix fwd1, fwd2, inv2, inv1;
};

// Built once per (n, mode, dtypes, device) for the stage-2 matrices (n2 x 2 n1 x 2 n1, the large ones) and
// once per (n, m, ...) for the stage-1 matrices; returned by value (tensor handles).
Stages cached_stages(int64_t n, int64_t m, Mode mode, torch::ScalarType ct, torch::ScalarType half,
                     const c10::Device& device) {
  using Key = std::tuple<int64_t, int64_t, int, int, int, std::string>;
  static std::mutex mu;
  static std::map<Key, std::pair<StageMatrix, StageMatrix>> cache;  // m = 0: stage 2; else stage 1
  const auto [n1, n2] = blockfft_factors(n);
  auto get = [&](int64_t mm) -> const std::pair<StageMatrix, StageMatrix>& {
    const Key key{n, mm, static_cast<int>(mode), static_cast<int>(ct), static_cast<int>(half), device.str()};
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    torch::NoGradGuard no_grad;
    auto pair = mm == 0 ? std::make_pair(make_stage(forward_stage2(n1, n2), false, mode, ct, half, device),
                                         make_stage(inverse_stage2(n1, n2), false, mode, ct, half, device))
                        : std::make_pair(make_stage(forward_stage1(n2, mm), true, mode, ct, half, device),
                                         make_stage(inverse_stage1(n1, n2, mm), true, mode, ct, half, device));
    return cache.emplace(key, std::move(pair)).first->second;
  };
  std::lock_guard<std::mutex> lock(mu);
  const auto& two = get(0);
  const auto& one = get(m);
  return {one.first, two.first, two.second, one.second};
}

Tensor apply(const Tensor& x, const StageMatrix& s, Mode mode, torch::ScalarType half) {
  return StageProduct::apply(x, s.m, s.m_t, s.left, static_cast<int64_t>(mode), static_cast<int64_t>(half));
}
}  // namespace

bool fftconv_blockfft_supported(const Tensor& u, const Tensor& k, const Tensor& D, const FftConvOptions& o) {
  return why_unsupported(u, k, D, o).empty();
}

Tensor fftconv_blockfft(const Tensor& u, const Tensor& k, const Tensor& D, const FftConvOptions& o,
                        BlockFftPrecision precision) {
  const std::string why = why_unsupported(u, k, D, o);
  TORCH_CHECK(why.empty(), "fftconv_blockfft: unsupported call (", why, "): u ",
              u.defined() ? u.sizes() : at::IntArrayRef{}, ", k ", k.defined() ? k.sizes() : at::IntArrayRef{},
              ", D ", D.defined() ? D.sizes() : at::IntArrayRef{});
  const auto dtype = u.scalar_type();
  const auto ct = dtype == torch::kDouble ? torch::kDouble : torch::kFloat;
  const Mode mode = !is_half(dtype)                         ? Mode::kExact
                    : precision == BlockFftPrecision::kSplit ? Mode::kSplit
                                                             : Mode::kSingle;
  const auto half = is_half(dtype) ? dtype : torch::kBFloat16;  // unused in exact mode
  const int64_t B = u.size(0), H = u.size(1), L = u.size(2), Lk = k.size(1), N = B * H;
  const int64_t n = fftconv_size(L, Lk);
  const auto [n1, n2] = blockfft_factors(n);
  const int64_t m = (L + n1 - 1) / n1;  // rows t2 that hold input (and output) samples
  const Stages s = cached_stages(n, m, mode, ct, half, u.device());

  Tensor w = u.to(ct);
  if (o.v) w = w * o.v->to(ct);
  // (N, m, n1) [t2, t1], zeros past L.
  const Tensor x = torch::constant_pad_nd(w.reshape({N, L}), {0, m * n1 - L}).view({N, m, n1});
  // Stage 1: (N, 2 n2, n1), rows 2 f2 + c -> per (row, f2) a run [re(t1), im(t1)].
  const Tensor g = apply(x, s.fwd1, mode, half).view({N, n2, 2 * n1}).transpose(0, 1);
  // Stage 2: (n2, N, 2 n1), columns 2 f1 + c: the spectrum at f = n2 f1 + f2, interleaved complex.
  const Tensor spec = apply(g, s.fwd2, mode, half);
  // The filter's spectrum with D as the tap at lag 0, in the same permuted order: (n2, 1, H, n1).
  const Tensor kt = k.to(ct);
  const Tensor k_eff =
      Lk == 1 ? kt + D.to(ct).unsqueeze(1)
              : torch::cat({kt.narrow(1, 0, 1) + D.to(ct).unsqueeze(1), kt.narrow(1, 1, Lk - 1)}, 1);
  const Tensor k_f = torch::fft::fft(k_eff, n, -1).view({H, n1, n2}).permute({2, 0, 1}).unsqueeze(1);
  const Tensor prod = torch::view_as_complex(spec.view({n2, B, H, n1, 2})) * k_f;
  const Tensor y_f = torch::view_as_real(prod).reshape({n2, N, 2 * n1});
  // Inverse stage 2: (n2, N, 2 n1), columns c n1 + t1. Inverse stage 1 over the rows f2 of all N * 2 n1
  // columns at once: (2 m, N, 2, n1); the real part of the result is cos-rows x re - sin-rows x im.
  const Tensor z = apply(y_f, s.inv2, mode, half).view({1, n2, N * 2 * n1});
  const Tensor p = apply(z, s.inv1, mode, half).view({2, m, N, 2, n1});
  Tensor y = (p.select(0, 0).select(2, 0) - p.select(0, 1).select(2, 1))  // (m, N, n1)
                 .permute({1, 0, 2})
                 .reshape({N, m * n1})
                 .narrow(1, 0, L)
                 .view({B, H, L});
  if (o.gelu) y = internal::gelu_exact(y);
  if (o.dropout_mask) y = y * o.dropout_mask->to(ct).unsqueeze(-1);
  if (o.q) y = y * o.q->to(ct);
  return y.to(dtype);
}

// ---- dispatch
namespace {
std::mutex dispatch_mu;  // guards the autotune decisions and record
// -1: not read yet (HIPPO_FFTCONV_BLOCKFFT is read on first use); else a BlockFftDispatch. Atomic, so that
// every fftconv() call pays one load, not a lock, for the default (off).
std::atomic<int> dispatch_mode{-1};
std::map<std::tuple<std::string, int, int64_t, int64_t, int64_t, int64_t>, bool> decisions;
std::vector<BlockFftChoice> record;

void sync(const c10::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

// Milliseconds per call, mean of three after one warm-up, on the caller's inputs.
double time_ms(const std::function<void()>& f, const c10::Device& d) {
  f();
  sync(d);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) f();
  sync(d);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / 3;
}
}  // namespace

BlockFftDispatch parse_blockfft_dispatch(const std::string& text) {
  if (text == "off") return BlockFftDispatch::kOff;
  if (text == "on") return BlockFftDispatch::kOn;
  if (text == "auto") return BlockFftDispatch::kAuto;
  TORCH_CHECK(false, "HIPPO_FFTCONV_BLOCKFFT: unknown value '", internal::printable(text),
              "'; accepted: off, on, auto");
}

BlockFftDispatch blockfft_dispatch() {
  int mode = dispatch_mode.load(std::memory_order_relaxed);
  if (mode < 0) {
    const char* env = std::getenv("HIPPO_FFTCONV_BLOCKFFT");
    mode = static_cast<int>(env && *env ? parse_blockfft_dispatch(env) : BlockFftDispatch::kOff);
    int unset = -1;
    dispatch_mode.compare_exchange_strong(unset, mode);  // a concurrent set_blockfft_dispatch wins
    mode = dispatch_mode.load();
  }
  return static_cast<BlockFftDispatch>(mode);
}

void set_blockfft_dispatch(BlockFftDispatch mode) { dispatch_mode.store(static_cast<int>(mode)); }

bool fftconv_takes_blockfft(const Tensor& u, const Tensor& k, const Tensor& D, const FftConvOptions& o) {
  const BlockFftDispatch mode = blockfft_dispatch();
  if (mode == BlockFftDispatch::kOff || !fftconv_blockfft_supported(u, k, D, o)) return false;
  if (mode == BlockFftDispatch::kOn) return true;
  const int64_t n = fftconv_size(u.size(2), k.size(1));
  const auto key = std::make_tuple(u.device().str(), static_cast<int>(u.scalar_type()), n, u.size(0) * u.size(1),
                                   u.size(2), k.size(1));
  std::lock_guard<std::mutex> lock(dispatch_mu);
  if (auto it = decisions.find(key); it != decisions.end()) return it->second;
  const auto other = internal::fftconv_path_past_blockfft(u, k, D, o);
  double other_ms = 0, block_ms = 0;
  {
    torch::NoGradGuard no_grad;
    other_ms = time_ms([&] { internal::fftconv_past_blockfft(u, k, D, o); }, u.device());
    block_ms = time_ms([&] { fftconv_blockfft(u, k, D, o); }, u.device());
  }
  BlockFftChoice c;
  c.device = u.device().str();
  c.dtype = std::string(c10::toString(u.scalar_type()));
  c.other_path = internal::fftconv_path_name(other);
  c.fft_size = n;
  c.rows = u.size(0) * u.size(1);
  c.seq_len = u.size(2);
  c.other_ms = other_ms;
  c.blockfft_ms = block_ms;
  c.blockfft = block_ms < other_ms;
  std::fprintf(stderr,
               "hippo: fftconv autotune on %s, %s, fft size %lld, B*H %lld, L %lld: %s %.3f ms, blockfft %.3f ms "
               "-> %s\n",
               c.device.c_str(), c.dtype.c_str(), static_cast<long long>(n), static_cast<long long>(c.rows),
               static_cast<long long>(c.seq_len), c.other_path.c_str(), other_ms, block_ms,
               c.blockfft ? "blockfft" : c.other_path.c_str());
  record.push_back(c);
  decisions.emplace(key, c.blockfft);
  return c.blockfft;
}

std::vector<BlockFftChoice> blockfft_autotune_record() {
  std::lock_guard<std::mutex> lock(dispatch_mu);
  return record;
}

void clear_blockfft_autotune() {
  std::lock_guard<std::mutex> lock(dispatch_mu);
  decisions.clear();
  record.clear();
}

}  // namespace hippo
