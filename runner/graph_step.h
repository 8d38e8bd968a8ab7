// The training step captured in a CUDA graph and replayed (the runner's --cuda-graph): static input buffers,
// eager warm-up steps on a side stream, then forward + masked cross-entropy + backward + clipping +
// DeviceAdamW captured once and replayed per batch; and LossWindow, which keeps the per-step losses on the
// device and reads them back in blocks so that a step issues no host synchronisation. The CUDA parts compile
// only with HIPPO_WITH_CUDA and <ATen/cuda/CUDAGraph.h> (LibTorch 2.x with CUDA); a CPU build has the eager
// step and LossWindow, and GraphTrainStep refuses to be built.
#pragma once

#include <torch/torch.h>

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "runner/adamw.h"

namespace hippo {

// The training loss of one batch: x (B, L) int64 tokens, y (B, L) int64 targets, m (B, L) float32 loss mask
// -> a 0-dim float32 tensor (mean cross-entropy over the masked positions, nats) that requires grad. Must not
// synchronise with the host (it is captured in a graph).
using BatchLoss =
    std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& m)>;

// True when this binary was built with CUDA graph support (HIPPO_WITH_CUDA and LibTorch's CUDAGraph header).
bool cuda_graphs_built();

// One eager training step on the current stream, without host synchronisation: zero_grad (in place), loss,
// backward, clipping of `params`' gradients to total L2 norm `clip` (none when clip <= 0), optimiser step.
// Returns the loss, detached (0-dim float32 on the device). Throws what loss_fn and autograd throw.
torch::Tensor train_step_on_device(const BatchLoss& loss_fn, DeviceAdamW& opt,
                                   const std::vector<torch::Tensor>& params, double clip,
                                   const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& m);

// One run's part of a graphed step: its loss, optimiser, trained parameters and clipping norm (see
// train_step_on_device).
struct GraphMember {
  BatchLoss loss_fn;
  DeviceAdamW* opt = nullptr;
  std::vector<torch::Tensor> params;
  double clip = 0;
};

// The graphed training step of one run, or of several independent runs trained in lockstep (an ensemble: the
// seeds and learning rates of one layer and task, issue 5). Each member gets its own CUDA stream. Batches of
// exactly `batch` examples go through the graph: the first `warmup` of them run eagerly, each member on its
// stream (lazy initialisations such as cuBLAS workspaces, which are per stream, and cuFFT plans must happen
// outside the capture), the next is captured once for all members — member 0's stream captures, the others fork
// from it and join it again, so the graph holds the members as independent branches that the GPU runs
// concurrently — and every later one is copied into the static buffers and replayed. A batch of another size
// (an epoch's partial last batch) gets a graph of its own the same way, after one eager warm-up step at that
// size; up to two such sizes, and any further size runs eagerly on the current stream (with the same
// optimisers). At the paper's protocol (5,000 examples, batch 32) that is 1 step in 157, which eagerly cost an
// ensemble of 9 H3 runs about a tenth of its time. Learning rates are
// read from the optimisers' device tensors at replay: set them (DeviceAdamW::set_lr) before step(). Dropout
// works under replay (LibTorch registers its CUDA generator with the graph; members then draw from one shared
// generator). Results equal train_step_on_device's within float32 rounding (with dropout: the same distribution,
// not the same masks).
class GraphTrainStep {
 public:
  // members: >= 1, each with parameters on one CUDA device (the same for all); batch >= 1; warmup >= 1 (3 is
  // PyTorch's advice). Throws c10::Error on a CPU parameter, members on different devices, a bad batch/warmup,
  // or a build without CUDA graphs (cuda_graphs_built() false), naming the problem.
  GraphTrainStep(std::vector<GraphMember> members, int64_t batch, int warmup = 3);
  // One run: the same as a single member.
  GraphTrainStep(BatchLoss loss_fn, DeviceAdamW& opt, std::vector<torch::Tensor> params, double clip,
                 int64_t batch, int warmup = 3);
  ~GraphTrainStep();
  GraphTrainStep(const GraphTrainStep&) = delete;
  GraphTrainStep& operator=(const GraphTrainStep&) = delete;

  // Trains one run on one batch (x, y, m as BatchLoss, on the parameters' device); only with one member.
  // Returns the loss (0-dim float32 on the device); after the capture it is the graph's static output,
  // overwritten by the next step: copy it (e.g. into a LossWindow) before the next call. Throws c10::Error when
  // capture fails (an operation that synchronises with the host, say), with the cause.
  torch::Tensor step(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& m);
  // Trains every member on its batch: batches[i] = {x, y, m} of member i, all of one size. A member whose x is
  // undefined (a run that has ended) is skipped: eagerly it is not stepped; under replay its branch runs again
  // on its previous buffers, which changes only that member's parameters (the caller has stored its results).
  // Returns the members' losses (undefined for skipped members), as step() does.
  std::vector<torch::Tensor> step(const std::vector<std::array<torch::Tensor, 3>>& batches);
  // True once the graph of the main batch size (the constructor's `batch`) has been captured.
  bool captured() const;
  // True once the graph of batches of `batch` examples has been captured.
  bool captured(int64_t batch) const;
  int64_t members() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Per-step training losses kept on the device in blocks of `capacity` steps; read back (one synchronisation)
// by flush(), which reports each step in order and stops at the first non-finite loss.
class LossWindow {
 public:
  // capacity >= 1 steps; buffer of float32 on `device`.
  LossWindow(int64_t capacity, const torch::Device& device);
  // Records the loss (0-dim, any float dtype, on the device) of optimiser step `step` (0-based); steps must
  // be consecutive within a window. No host synchronisation.
  void add(int64_t step, const torch::Tensor& loss);
  int64_t size() const { return n_; }
  bool full() const { return n_ == capacity_; }
  // Reads the recorded losses, calls on_loss(step, loss) for each in order up to the first non-finite one,
  // and empties the window. Returns the 0-based step of the first non-finite loss (nullopt: all finite).
  std::optional<int64_t> flush(const std::function<void(int64_t step, double loss)>& on_loss);

 private:
  int64_t capacity_, first_ = 0, n_ = 0;
  torch::Tensor buf_;
};

}  // namespace hippo
