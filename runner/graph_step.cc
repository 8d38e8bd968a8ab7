// GraphTrainStep (CUDA graph capture and replay of the whole training step) and LossWindow.
#include "runner/graph_step.h"

#include <algorithm>
#include <cmath>
#include <map>

#if defined(HIPPO_WITH_CUDA) && __has_include(<ATen/cuda/CUDAGraph.h>)
#include <ATen/cuda/CUDAEvent.h>
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
  // The graph of one batch size: its static inputs and outputs per member, and the eager warm-up steps taken at
  // that size before the capture.
  struct SizeGraph {
    int warmed = 0;
    std::vector<torch::Tensor> sx, sy, sm, sloss;
#ifdef HIPPO_HAVE_CUDA_GRAPHS
    std::unique_ptr<at::cuda::CUDAGraph> graph;
#endif
  };

  std::vector<GraphMember> members;
  int64_t batch = 0;
  int warmup = 0;
  torch::Device device{torch::kCPU};
  // By batch size: `batch` and up to kMaxOtherSizes others (an epoch's partial last batch).
  std::map<int64_t, SizeGraph> sizes;
#ifdef HIPPO_HAVE_CUDA_GRAPHS
  std::vector<c10::cuda::CUDAStream> streams;  // member i's stream; streams[0] captures
#endif
};

namespace {
// Batch sizes besides the main one that get a graph of their own; further sizes run eagerly.
constexpr size_t kMaxOtherSizes = 2;
}  // namespace

GraphTrainStep::GraphTrainStep(std::vector<GraphMember> members, int64_t batch, int warmup)
    : impl_(std::make_unique<Impl>()) {
  TORCH_CHECK(cuda_graphs_built(),
              "--cuda-graph: this hippo was built without CUDA graphs (needs LibTorch with CUDA and "
              "HIPPO_WITH_CUDA); "
              "train without --cuda-graph");
  TORCH_CHECK(!members.empty(), "GraphTrainStep: no members");
  for (const auto& mb : members) {
    TORCH_CHECK(!mb.params.empty(), "GraphTrainStep: a member has no parameters");
    TORCH_CHECK(mb.opt != nullptr, "GraphTrainStep: a member has no optimiser");
    for (const auto& p : mb.params) {
      TORCH_CHECK(p.is_cuda(), "--cuda-graph needs a CUDA device, but a parameter is on ", p.device(),
                  "; use --device cuda (or drop --cuda-graph)");
      TORCH_CHECK(p.device() == members[0].params[0].device(), "GraphTrainStep: members on different devices (",
                  p.device(), " and ", members[0].params[0].device(), ")");
    }
  }
  TORCH_CHECK(batch >= 1, "GraphTrainStep: batch must be >= 1, got ", batch);
  TORCH_CHECK(warmup >= 1, "GraphTrainStep: warmup must be >= 1 eager step, got ", warmup);
  auto& s = *impl_;
  s.members = std::move(members);
  s.batch = batch;
  s.warmup = warmup;
  s.device = s.members[0].params[0].device();
  const size_t n = s.members.size();
#ifdef HIPPO_HAVE_CUDA_GRAPHS
  for (size_t i = 0; i < n; ++i) s.streams.push_back(c10::cuda::getStreamFromPool(false, s.device.index()));
#endif
}

GraphTrainStep::GraphTrainStep(BatchLoss loss_fn, DeviceAdamW& opt, std::vector<torch::Tensor> params,
                               double clip, int64_t batch, int warmup)
    : GraphTrainStep(std::vector<GraphMember>{GraphMember{std::move(loss_fn), &opt, std::move(params), clip}}, batch,
                     warmup) {}

GraphTrainStep::~GraphTrainStep() {
#ifdef HIPPO_HAVE_CUDA_GRAPHS
  // The static buffers were allocated on the members' streams and are read by replays on the current stream:
  // let those finish before the memory goes back to the streams' pools.
  try {
    torch::cuda::synchronize(impl_->device.index());
  } catch (...) {
  }
#endif
}

bool GraphTrainStep::captured() const { return captured(impl_->batch); }

bool GraphTrainStep::captured(int64_t batch) const {
#ifdef HIPPO_HAVE_CUDA_GRAPHS
  auto it = impl_->sizes.find(batch);
  return it != impl_->sizes.end() && it->second.graph != nullptr;
#else
  (void)batch;
  return false;
#endif
}

int64_t GraphTrainStep::members() const { return static_cast<int64_t>(impl_->members.size()); }

torch::Tensor GraphTrainStep::step(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& m) {
  TORCH_CHECK(impl_->members.size() == 1, "GraphTrainStep::step(x, y, m) trains one run, but this step has ",
              impl_->members.size(), " members: pass one batch per member");
  return step(std::vector<std::array<torch::Tensor, 3>>{{x, y, m}}).at(0);
}

std::vector<torch::Tensor> GraphTrainStep::step(const std::vector<std::array<torch::Tensor, 3>>& batches) {
  auto& s = *impl_;
  const size_t n = s.members.size();
  TORCH_CHECK(batches.size() == n, "GraphTrainStep: ", batches.size(), " batches for ", n, " members");
  int64_t size = -1;
  for (const auto& b : batches)
    if (b[0].defined()) {
      TORCH_CHECK(size < 0 || b[0].size(0) == size, "GraphTrainStep: the members' batches differ in size (", size,
                  " and ", b[0].size(0), ")");
      size = b[0].size(0);
    }
  std::vector<torch::Tensor> out(n);
  if (size < 0) return out;  // every member has ended
  auto eager = [&](size_t i) {
    const auto& mb = s.members[i];
    return train_step_on_device(mb.loss_fn, *mb.opt, mb.params, mb.clip, batches[i][0], batches[i][1],
                                batches[i][2]);
  };
  // A size of its own once seen: the main batch, and up to kMaxOtherSizes others; any further size is eager.
  if (size != s.batch && !s.sizes.count(size) && s.sizes.size() >= kMaxOtherSizes + (s.sizes.count(s.batch) ? 1 : 0)) {
    for (size_t i = 0; i < n; ++i)
      if (batches[i][0].defined()) out[i] = eager(i);
    return out;
  }
#ifdef HIPPO_HAVE_CUDA_GRAPHS
  Impl::SizeGraph& g = s.sizes[size];
  if (g.graph) {
    for (size_t i = 0; i < n; ++i) {
      if (!batches[i][0].defined()) continue;
      g.sx[i].copy_(batches[i][0]);
      g.sy[i].copy_(batches[i][1]);
      g.sm[i].copy_(batches[i][2]);
    }
    g.graph->replay();
    for (size_t i = 0; i < n; ++i)
      if (batches[i][0].defined()) out[i] = g.sloss[i];
    return out;
  }
  const auto dev = s.device.index();
  // The members' streams start after everything queued so far (lr values, batches) and end before the caller
  // goes on: whole-device synchronisations, only during the warm-up and capture steps of each size. The main
  // size warms up for `warmup` steps; another size, first seen after the lazy initialisations of the main one,
  // for one (its own cuFFT plans and workspaces).
  torch::cuda::synchronize(dev);
  if (g.warmed < (size == s.batch ? s.warmup : 1)) {
    for (size_t i = 0; i < n; ++i) {
      if (!batches[i][0].defined()) continue;
      c10::cuda::CUDAStreamGuard guard(s.streams[i]);
      out[i] = eager(i);
    }
    ++g.warmed;
    torch::cuda::synchronize(dev);
    return out;
  }
  g.sx.resize(n), g.sy.resize(n), g.sm.resize(n), g.sloss.resize(n);
  for (size_t i = 0; i < n; ++i) {
    // A member that has ended gets buffers of the right shape: its branch is captured like the others.
    const auto& src = batches[i][0].defined() ? batches[i] : *std::find_if(batches.begin(), batches.end(),
                                                                            [](const auto& b) { return b[0].defined(); });
    c10::cuda::CUDAStreamGuard guard(s.streams[i]);
    g.sx[i] = src[0].clone();
    g.sy[i] = src[1].clone();
    g.sm[i] = src[2].clone();
  }
  {
    c10::cuda::CUDAStreamGuard guard(s.streams[0]);
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    std::vector<at::cuda::CUDAEvent> joins(n);
    at::cuda::CUDAEvent fork;
    graph->capture_begin();
    try {
      // Fork every member's stream from the capturing stream before any work, so that no member's step depends on
      // another's; member 0 trains on the capturing stream itself; the others join it after all are queued. (A
      // join right after each member would chain the branches one after another.)
      fork.record(s.streams[0]);
      for (size_t i = 1; i < n; ++i) fork.block(s.streams[i]);
      for (size_t i = 0; i < n; ++i) {
        c10::cuda::CUDAStreamGuard member_guard(s.streams[i]);
        const auto& mb = s.members[i];
        g.sloss[i] = train_step_on_device(mb.loss_fn, *mb.opt, mb.params, mb.clip, g.sx[i], g.sy[i], g.sm[i]);
      }
      for (size_t i = 1; i < n; ++i) {
        joins[i].record(s.streams[i]);
        joins[i].block(s.streams[0]);
      }
    } catch (const std::exception& e) {
      try {
        graph->capture_end();  // leaves capture mode; the graph itself is invalid
      } catch (...) {
      }
      TORCH_CHECK(false,
                  "--cuda-graph: capturing the training step (batch of ", size,
                  ") failed (an operation that synchronises with the host or is not capturable?): ", e.what());
    }
    graph->capture_end();
    g.graph = std::move(graph);
  }
  torch::cuda::synchronize(dev);
  // Capture recorded this batch's step without running it.
  g.graph->replay();
  for (size_t i = 0; i < n; ++i)
    if (batches[i][0].defined()) out[i] = g.sloss[i];
  return out;
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
