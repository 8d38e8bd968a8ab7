// fftconv_probe: the fused forward (or backward) kernel alone, without LibTorch, for kernel work on a CUDA host.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -I. bench/fftconv_probe.cu kernels/fftconv_kernel.cu -o fftconv_probe
//   ./fftconv_probe [--batch 16] [--channels 768] [--seq-len 1024,4096,8192] [--dtype bf16|fp16|fp32]
//                   [--options none|v|all] [--iters 30] [--backward 0|1] [--chunks 0] [--dk 1]
//
// --backward 1 times fftconv_bwd_launch instead, as the autograd glue calls it (gradients of u, v and q where
// present, the dk spectrum in the glue's number of row groups, its scratch where needed), and checks nothing: the
// backward's values are the GPU tests' job (tests/kernels/fftconv_cuda_test.cc). It prints a 64-bit hash of each
// output of the last launch, so that two kernel versions meant to compute the same arithmetic can be compared.
// Bytes counted: u, dy (and v, q) read, du (and dv, dq) written. --chunks N > 0 sets the row groups (capped at B) instead of the glue's choice.
// --dk 0 times the backward without the filter gradient (no dk spectrum), as when neither k nor D requires one.
// For each L: fills u (and with --options all: v, q, a (B, H) mask, exact GELU) with uniform(-1, 1) values, builds
// every channel's filter spectrum kf = rfft(k + D delta_0, n) * 2/n in double on the host (k uniform(-1,1)/sqrt(L),
// D uniform(-1, 1); the layout FftConvFwdParams::kf documents), times fftconv_fwd_launch with CUDA events (5
// warm-up launches, the median of --iters, two input sets alternated so that no launch reads the previous one's
// data from L2) and checks 4 rows (first, last and two between) against a direct causal convolution in double:
// ||y - ref|| / ||ref|| per row, worst printed. Bytes counted: u (and v, q) read, y written. Exits 1 when the
// worst relative error exceeds 1e-5 (fp32) or 8e-3 (fp16/bf16), 2 on bad arguments or a CUDA error.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/fftconv_kernel.h"

namespace {

using cd = std::complex<double>;

void die(const std::string& what) {
  std::fprintf(stderr, "fftconv_probe: %s\n", what.c_str());
  std::exit(2);
}
void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) die(std::string(what) + ": " + cudaGetErrorString(e));
}

// In-place radix-2 complex FFT (forward, e^{-i...}) of a power-of-two length, double precision.
void fft(std::vector<cd>& a) {
  const size_t n = a.size();
  for (size_t i = 1, j = 0; i < n; ++i) {
    size_t bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) std::swap(a[i], a[j]);
  }
  for (size_t len = 2; len <= n; len <<= 1) {
    const double ang = -2 * M_PI / static_cast<double>(len);
    for (size_t i = 0; i < n; i += len)
      for (size_t k = 0; k < len / 2; ++k) {
        const cd w = std::polar(1.0, ang * static_cast<double>(k));
        const cd x = a[i + k], y = a[i + k + len / 2] * w;
        a[i + k] = x + y;
        a[i + k + len / 2] = x - y;
      }
  }
}

uint16_t to_half_bits(float x, hippo::cuda::ElemType e) {
  if (e == hippo::cuda::ElemType::kBFloat16) {
    __nv_bfloat16 b = __float2bfloat16_rn(x);
    return *reinterpret_cast<uint16_t*>(&b);
  }
  __half h = __float2half_rn(x);
  return *reinterpret_cast<uint16_t*>(&h);
}
float from_half_bits(uint16_t bits, hippo::cuda::ElemType e) {
  if (e == hippo::cuda::ElemType::kBFloat16) return __bfloat162float(*reinterpret_cast<__nv_bfloat16*>(&bits));
  return __half2float(*reinterpret_cast<__half*>(&bits));
}

// Host copy of a (B, H, L) tensor in the element type (values as stored, read back as float).
struct HostTensor {
  std::vector<float> values;  // what the device holds, widened
  std::vector<unsigned char> bytes;
};

HostTensor make_tensor(size_t count, hippo::cuda::ElemType e, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  HostTensor t;
  t.values.resize(count);
  const size_t es = e == hippo::cuda::ElemType::kFloat32 ? 4 : 2;
  t.bytes.resize(count * es);
  for (size_t i = 0; i < count; ++i) {
    const float x = dist(rng);
    if (es == 4) {
      std::memcpy(&t.bytes[i * 4], &x, 4);
      t.values[i] = x;
    } else {
      const uint16_t b = to_half_bits(x, e);
      std::memcpy(&t.bytes[i * 2], &b, 2);
      t.values[i] = from_half_bits(b, e);
    }
  }
  return t;
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t B = 16, H = 768, iters = 30, chunks_opt = 0;
  std::vector<int64_t> lens = {1024, 4096, 8192};
  std::string dtype = "bf16", options = "none";
  bool backward = false, with_dk = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) die("missing value after " + a);
    const std::string v = argv[++i];
    if (a == "--batch") B = std::stoll(v);
    else if (a == "--channels") H = std::stoll(v);
    else if (a == "--seq-len") lens = parse_list(v);
    else if (a == "--dtype") dtype = v;
    else if (a == "--options") options = v;
    else if (a == "--iters") iters = std::stoll(v);
    else if (a == "--backward") backward = v == "1";
    else if (a == "--chunks") chunks_opt = std::stoll(v);
    else if (a == "--dk") with_dk = v != "0";
    else die("unknown option " + a +
             " (accepted: --batch --channels --seq-len --dtype --options --iters --backward --chunks --dk)");
  }
  using hippo::cuda::ElemType;
  ElemType e;
  if (dtype == "bf16") e = ElemType::kBFloat16;
  else if (dtype == "fp16") e = ElemType::kFloat16;
  else if (dtype == "fp32") e = ElemType::kFloat32;
  else die("--dtype must be bf16, fp16 or fp32, got " + dtype);
  if (options != "none" && options != "v" && options != "all") die("--options must be none, v or all");
  const bool use_v = options != "none", use_all = options == "all";
  const size_t es = e == ElemType::kFloat32 ? 4 : 2;

  std::printf("| L | fft size | B | H | dtype | options | kernel ms | GB/s | worst rel. error |\n|---:|---:|---:|---:|---|---|---:|---:|---:|\n");
  bool ok = true;
  for (const int64_t L : lens) {
    int64_t n = 16;
    while (n < 2 * L - 1) n *= 2;
    int log_n = 0;
    while ((int64_t{1} << log_n) < n) ++log_n;
    const int64_t M = n / 2;
    std::mt19937 rng(1234 + L);
    const size_t count = static_cast<size_t>(B * H * L);
    HostTensor u[2] = {make_tensor(count, e, rng), make_tensor(count, e, rng)};
    HostTensor v, q;
    if (use_v) v = make_tensor(count, e, rng);
    if (use_all) q = make_tensor(count, e, rng);
    std::vector<float> mask(static_cast<size_t>(B * H), 1.f);
    std::uniform_real_distribution<double> dist(-1.0, 1.0);
    if (use_all)
      for (auto& m : mask) m = dist(rng) < -0.6 ? 0.f : 1.25f;
    // Filters and their spectra.
    std::vector<std::vector<double>> filt(static_cast<size_t>(H));
    std::vector<float> kf(static_cast<size_t>(H * (M + 1) * 2));
    for (int64_t h = 0; h < H; ++h) {
      auto& f = filt[static_cast<size_t>(h)];
      f.resize(static_cast<size_t>(L));
      for (auto& x : f) x = dist(rng) / std::sqrt(static_cast<double>(L));
      f[0] += dist(rng);  // D
      std::vector<cd> a(static_cast<size_t>(n));
      for (int64_t t = 0; t < L; ++t) a[static_cast<size_t>(t)] = f[static_cast<size_t>(t)];
      fft(a);
      for (int64_t j = 0; j <= M; ++j) {
        const cd s = a[static_cast<size_t>(j)] * (2.0 / static_cast<double>(n));
        kf[static_cast<size_t>((h * (M + 1) + j) * 2)] = static_cast<float>(s.real());
        kf[static_cast<size_t>((h * (M + 1) + j) * 2 + 1)] = static_cast<float>(s.imag());
      }
    }
    void *du[2], *dv = nullptr, *dq = nullptr, *dy;
    float *dmask = nullptr, *dkf;
    for (int s = 0; s < 2; ++s) {
      ck(cudaMalloc(&du[s], count * es), "malloc");
      ck(cudaMemcpy(du[s], u[s].bytes.data(), count * es, cudaMemcpyHostToDevice), "copy");
    }
    if (use_v) {
      ck(cudaMalloc(&dv, count * es), "malloc");
      ck(cudaMemcpy(dv, v.bytes.data(), count * es, cudaMemcpyHostToDevice), "copy");
    }
    if (use_all) {
      ck(cudaMalloc(&dq, count * es), "malloc");
      ck(cudaMemcpy(dq, q.bytes.data(), count * es, cudaMemcpyHostToDevice), "copy");
      ck(cudaMalloc(&dmask, mask.size() * 4), "malloc");
      ck(cudaMemcpy(dmask, mask.data(), mask.size() * 4, cudaMemcpyHostToDevice), "copy");
    }
    ck(cudaMalloc(&dy, count * es), "malloc");
    ck(cudaMalloc(&dkf, kf.size() * 4), "malloc");
    ck(cudaMemcpy(dkf, kf.data(), kf.size() * 4, cudaMemcpyHostToDevice), "copy");
    hippo::cuda::FftConvFwdParams p;
    p.v = dv, p.q = dq, p.mask = dmask, p.kf = dkf, p.y = dy;
    p.B = B, p.H = H, p.L = L, p.log_n = log_n, p.elem = e, p.gelu = use_all;
    cudaEvent_t t0, t1;
    ck(cudaEventCreate(&t0), "event");
    ck(cudaEventCreate(&t1), "event");
    std::vector<float> times;
    // 5 warm-up launches, then `iters` timed ones (CUDA events around each); launch(it) issues launch number it.
    auto time_launches = [&](const auto& launch) {
      try {
        for (int64_t it = 0; it < 5 + iters; ++it) {
          ck(cudaEventRecord(t0), "record");
          launch(it);
          ck(cudaEventRecord(t1), "record");
          ck(cudaEventSynchronize(t1), "sync");
          float ms = 0;
          ck(cudaEventElapsedTime(&ms, t0, t1), "elapsed");
          if (it >= 5) times.push_back(ms);
        }
      } catch (const std::exception& ex) {
        die(ex.what());
      }
      ck(cudaDeviceSynchronize(), "kernel");
    };
    if (backward) {
      // The glue's row groups (fftconv_bwd_chunks), or --chunks.
      const int64_t chunks = chunks_opt > 0 ? std::min<int64_t>(B, chunks_opt)
                                            : hippo::cuda::fftconv_bwd_chunks(B, H, log_n, e, with_dk, !use_v);
      std::printf("# L %lld: chunks %lld\n", static_cast<long long>(L), static_cast<long long>(chunks));
      void *ddu, *ddv = nullptr, *ddq = nullptr;
      float *dspec = nullptr, *dscratch = nullptr;
      ck(cudaMalloc(&ddu, count * es), "malloc");
      if (use_v) ck(cudaMalloc(&ddv, count * es), "malloc");
      if (use_all) ck(cudaMalloc(&ddq, count * es), "malloc");
      if (with_dk) ck(cudaMalloc(&dspec, static_cast<size_t>(chunks * H * (M + 1) * 2) * 4), "malloc");
      const int64_t scratch = with_dk ? hippo::cuda::fftconv_bwd_scratch_floats(log_n, chunks, H) : 0;
      if (scratch > 0) ck(cudaMalloc(&dscratch, static_cast<size_t>(scratch) * 4), "malloc");
      hippo::cuda::FftConvBwdParams b;
      b.v = dv, b.q = dq, b.mask = dmask, b.kf = dkf, b.dy = dy, b.du = ddu, b.dv = ddv, b.dq = ddq;
      b.dk_spec = dspec, b.spec_scratch = dscratch;
      b.B = B, b.H = H, b.L = L, b.log_n = log_n, b.chunks = static_cast<int>(chunks), b.elem = e, b.gelu = use_all;
      ck(cudaMemcpy(dy, u[1].bytes.data(), count * es, cudaMemcpyHostToDevice), "copy");  // any values will do
      time_launches([&](int64_t it) {
        b.u = du[it % 2];
        hippo::cuda::fftconv_bwd_launch(b, nullptr);
      });
      // Hashes of the last launch's outputs: two builds of the kernel that should compute the same arithmetic print
      // the same line (bitwise equal outputs on these inputs).
      auto hash_of = [&](const void* dev, size_t bytes) {
        std::vector<unsigned char> h(bytes);
        ck(cudaMemcpy(h.data(), dev, bytes, cudaMemcpyDeviceToHost), "copy back");
        uint64_t x = 1469598103934665603ull;  // FNV-1a, 64 bits
        for (const unsigned char c : h) x = (x ^ c) * 1099511628211ull;
        return static_cast<unsigned long long>(x);
      };
      std::printf("# L %lld: output hashes du %016llx", static_cast<long long>(L), hash_of(ddu, count * es));
      if (ddv) std::printf(" dv %016llx", hash_of(ddv, count * es));
      if (ddq) std::printf(" dq %016llx", hash_of(ddq, count * es));
      if (dspec) std::printf(" dk_spec %016llx", hash_of(dspec, static_cast<size_t>(chunks * H * (M + 1) * 2) * 4));
      std::printf("\n");
      std::sort(times.begin(), times.end());
      const double ms = times[times.size() / 2];
      const double bytes = static_cast<double>(count * es) * (3 + 2 * (use_v ? 1 : 0) + 2 * (use_all ? 1 : 0));
      std::printf("| %lld | %lld | %lld | %lld | %s | %s (backward%s) | %.4f | %.0f | not checked |\n",
                  static_cast<long long>(L), static_cast<long long>(n), static_cast<long long>(B),
                  static_cast<long long>(H), dtype.c_str(), options.c_str(), with_dk ? "" : ", no dk", ms,
                  bytes / ms / 1e6);
      cudaFree(ddu), cudaFree(ddv), cudaFree(ddq), cudaFree(dspec), cudaFree(dscratch);
      for (int s = 0; s < 2; ++s) cudaFree(du[s]);
      cudaFree(dv), cudaFree(dq), cudaFree(dy), cudaFree(dmask), cudaFree(dkf);
      continue;
    }
    time_launches([&](int64_t it) {
      p.u = du[it % 2];
      hippo::cuda::fftconv_fwd_launch(p, nullptr);
    });
    // The checked output is that of the last launch (input set (5 + iters - 1) % 2).
    const int last = static_cast<int>((5 + iters - 1) % 2);
    std::vector<unsigned char> ybytes(count * es);
    ck(cudaMemcpy(ybytes.data(), dy, count * es, cudaMemcpyDeviceToHost), "copy back");
    double worst = 0;
    const int64_t rows = B * H;
    for (int64_t row : {int64_t{0}, rows / 3, (2 * rows) / 3 + 1, rows - 1}) {
      const int64_t h = row % H;
      const auto& f = filt[static_cast<size_t>(h)];
      std::vector<double> w(static_cast<size_t>(L));
      for (int64_t t = 0; t < L; ++t) {
        const size_t i = static_cast<size_t>(row * L + t);
        w[static_cast<size_t>(t)] = u[last].values[i] * (use_v ? v.values[i] : 1.0);
      }
      double num = 0, den = 0;
      for (int64_t t = 0; t < L; ++t) {
        double z = 0;
        for (int64_t s = 0; s <= t; ++s) z += f[static_cast<size_t>(s)] * w[static_cast<size_t>(t - s)];
        const size_t i = static_cast<size_t>(row * L + t);
        if (use_all) z = 0.5 * z * (1 + std::erf(z / std::sqrt(2.0))) * mask[static_cast<size_t>(row)] * q.values[i];
        double got;
        if (es == 4) {
          float g;
          std::memcpy(&g, &ybytes[i * 4], 4);
          got = g;
        } else {
          uint16_t b;
          std::memcpy(&b, &ybytes[i * 2], 2);
          got = from_half_bits(b, e);
        }
        num += (got - z) * (got - z);
        den += z * z;
      }
      worst = std::max(worst, den > 0 ? std::sqrt(num / den) : std::sqrt(num));
    }
    std::sort(times.begin(), times.end());
    const double ms = times[times.size() / 2];
    const double bytes = static_cast<double>(count * es) * (2 + (use_v ? 1 : 0) + (use_all ? 1 : 0));
    std::printf("| %lld | %lld | %lld | %lld | %s | %s | %.4f | %.0f | %.2e |\n", static_cast<long long>(L),
                static_cast<long long>(n), static_cast<long long>(B), static_cast<long long>(H), dtype.c_str(),
                options.c_str(), ms, bytes / ms / 1e6, worst);
    ok = ok && worst <= (es == 4 ? 1e-5 : 8e-3);
    for (int s = 0; s < 2; ++s) cudaFree(du[s]);
    cudaFree(dv), cudaFree(dq), cudaFree(dy), cudaFree(dmask), cudaFree(dkf);
  }
  std::printf("%s\n", ok ? "all rows within tolerance" : "ERROR: a row is outside the tolerance");
  return ok ? 0 : 1;
}
