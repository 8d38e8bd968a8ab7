// GraphTrainStep (CUDA graph capture and replay of the whole training step) and LossWindow.
#include "runner/graph_step.h"

#include <cmath>

#if defined(HIPPO_WITH_CUDA) && __has_include(<ATen/cuda/CUDAGraph.h>)
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/cuda.h>
#define HIPPO_HAVE_CUDA_GRAPHS 1
#endif

namespace hippo {

bool cuda_graphs_built() {
#ifdef HIPPO_HAVE_CUDA_GRAPHS
  return true;
#else
  return false;
#endif
}

torch::Tensor train_step_on_device(const BatchLoss& loss_fn, DeviceAdamW& opt,
                                   const std::vector<torch::Tensor>& params, double clip,
                                   const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& m) {
  opt.zero_grad();
  auto loss = loss_fn(x, y, m);
  loss.backward();
  if (clip > 0) clip_grad_norm_device(params, clip);
  opt.step();
  return loss.detach();
}

struct GraphTrainStep::Impl {
  BatchLoss loss_fn;
  DeviceAdamW* opt = nullptr;
  std::vector<torch::Tensor> params;
  double clip = 0;
  int64_t batch = 0;
  int warmup = 0, warmed = 0;
  torch::Device device{torch::kCPU};
  torch::Tensor sx, sy, sm, sloss;  // the graph's static inputs and output
#ifdef HIPPO_HAVE_CUDA_GRAPHS
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  std::optional<c10::cuda::CUDAStream> side;
#endif
};

GraphTrainStep::GraphTrainStep(BatchLoss loss_fn, DeviceAdamW& opt, std::vector<torch::Tensor> params,
                               double clip, int64_t batch, int warmup)
    : impl_(std::make_unique<Impl>()) {
  TORCH_CHECK(cuda_graphs_built(),
              "--cuda-graph: this hippo was built without CUDA graphs (needs LibTorch with CUDA and "
              "HIPPO_WITH_CUDA); "
              "train without --cuda-graph");
  TORCH_CHECK(!params.empty(), "GraphTrainStep: no parameters");
  for (const auto& p : params)
    TORCH_CHECK(p.is_cuda(), "--cuda-graph needs a CUDA device, but a parameter is on ", p.device(),
                "; use --device cuda (or drop --cuda-graph)");
  TORCH_CHECK(batch >= 1, "GraphTrainStep: batch must be >= 1, got ", batch);
  TORCH_CHECK(warmup >= 1, "GraphTrainStep: warmup must be >= 1 eager step, got ", warmup);
  auto& s = *impl_;
  s.loss_fn = std::move(loss_fn);
  s.opt = &opt;
  s.params = std::move(params);
  s.clip = clip;
  s.batch = batch;
  s.warmup = warmup;
  s.device = s.params[0].device();
#ifdef HIPPO_HAVE_CUDA_GRAPHS
  s.side = c10::cuda::getStreamFromPool(false, s.device.index());
#endif
}

GraphTrainStep::~GraphTrainStep() {
#ifdef HIPPO_HAVE_CUDA_GRAPHS
  // The static buffers were allocated on the side stream and are read by replays on the current stream: let
  // those finish before the memory goes back to the side stream's pool.
  try {
    torch::cuda::synchronize(impl_->device.index());
  } catch (...) {
  }
#endif
}

bool GraphTrainStep::captured() const {
#ifdef HIPPO_HAVE_CUDA_GRAPHS
  return impl_->graph != nullptr;
#else
  return false;
#endif
}

torch::Tensor GraphTrainStep::step(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& m) {
  auto& s = *impl_;
  if (x.size(0) != s.batch) return train_step_on_device(s.loss_fn, *s.opt, s.params, s.clip, x, y, m);
#ifdef HIPPO_HAVE_CUDA_GRAPHS
  if (s.graph) {
    s.sx.copy_(x);
    s.sy.copy_(y);
    s.sm.copy_(m);
    s.graph->replay();
    return s.sloss;
  }
  const auto dev = s.device.index();
  // The side stream starts after everything queued so far (lr values, batch) and ends before the caller goes
  // on: whole-device synchronisations, only during the first warmup + 1 steps.
  torch::cuda::synchronize(dev);
  if (s.warmed < s.warmup) {
    torch::Tensor loss;
    {
      c10::cuda::CUDAStreamGuard guard(*s.side);
      loss = train_step_on_device(s.loss_fn, *s.opt, s.params, s.clip, x, y, m);
    }
    ++s.warmed;
    torch::cuda::synchronize(dev);
    return loss;
  }
  {
    c10::cuda::CUDAStreamGuard guard(*s.side);
    s.sx = x.clone();
    s.sy = y.clone();
    s.sm = m.clone();
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    graph->capture_begin();
    try {
      s.sloss = train_step_on_device(s.loss_fn, *s.opt, s.params, s.clip, s.sx, s.sy, s.sm);
    } catch (const std::exception& e) {
      try {
        graph->capture_end();  // leaves capture mode; the graph itself is invalid
      } catch (...) {
      }
      TORCH_CHECK(false,
                  "--cuda-graph: capturing the training step failed (an operation that synchronises with the "
                  "host or is not capturable?): ",
                  e.what());
    }
    graph->capture_end();
    s.graph = std::move(graph);
  }
  torch::cuda::synchronize(dev);
  // Capture recorded this batch's step without running it.
  s.graph->replay();
  return s.sloss;
#else
  TORCH_CHECK(false, "--cuda-graph: this hippo was built without CUDA graphs");
#endif
}

LossWindow::LossWindow(int64_t capacity, const torch::Device& device) : capacity_(capacity) {
  TORCH_CHECK(capacity >= 1, "LossWindow: capacity must be >= 1, got ", capacity);
  buf_ = torch::zeros({capacity}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
}

void LossWindow::add(int64_t step, const torch::Tensor& loss) {
  TORCH_CHECK(n_ < capacity_, "LossWindow: full (", capacity_, " steps); flush() first");
  TORCH_CHECK(n_ == 0 || step == first_ + n_, "LossWindow: step ", step, " does not follow step ",
              first_ + n_ - 1);
  if (n_ == 0) first_ = step;
  buf_.select(0, n_).copy_(loss.reshape({}));
  ++n_;
}

std::optional<int64_t> LossWindow::flush(const std::function<void(int64_t step, double loss)>& on_loss) {
  const int64_t n = n_, first = first_;
  n_ = 0;
  if (n == 0) return std::nullopt;
  auto host = buf_.narrow(0, 0, n).to(torch::kCPU, torch::kFloat64).contiguous();
  const double* v = host.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return first + i;
    if (on_loss) on_loss(first + i, v[i]);
  }
  return std::nullopt;
}

}  // namespace hippo
