// The training loop of one run.
#include "runner/trainer.h"

#include <torch/torch.h>

#include <absl/strings/str_cat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/device.h"
#include "layers/model.h"
#include "runner/adamw.h"
#include "runner/graph_step.h"
#include "runner/model_io.h"
#include "runner/train_step.h"
#include "tasks/task.h"

namespace hippo {

double lr_factor(int64_t step, int64_t total, double warmup_fraction, double warmup_start_ratio,
                 double min_lr_ratio) {
  const int64_t warmup = static_cast<int64_t>(std::llround(warmup_fraction * static_cast<double>(total)));
  if (step < warmup)
    return warmup_start_ratio + (1.0 - warmup_start_ratio) * static_cast<double>(step) / static_cast<double>(warmup);
  const double span = static_cast<double>(std::max<int64_t>(1, total - warmup));
  const double p = std::min(1.0, static_cast<double>(step - warmup) / span);
  return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + std::cos(M_PI * p));
}

namespace {
struct EvalResult {
  double loss = 0, accuracy = 0, token_accuracy = 0;
  std::vector<std::pair<std::string, double>> slices;  // accuracy on each of the task's eval slices
};

// Masked mean cross-entropy; predictions at the answer positions (eval_mask) and at every position.
// `bf16`: the forward pass under bf16 autocast, as in training (train_step.h).
EvalResult evaluate(LanguageModel& model, const TaskData& data, int64_t max_examples, const torch::Device& dev,
                    int64_t batch, bool bf16, const std::vector<std::pair<std::string, torch::Tensor>>& slices = {}) {
  torch::NoGradGuard no_grad;
  model->eval();
  const int64_t N = std::min(data.size(), max_examples);
  double loss_sum = 0, loss_n = 0, acc_hits = 0, acc_n = 0, tok_hits = 0, tok_n = 0;
  std::vector<double> slice_hits(slices.size(), 0.0), slice_n(slices.size(), 0.0);
  for (int64_t i = 0; i < N; i += batch) {
    const int64_t b = std::min(batch, N - i);
    auto x = data.inputs.narrow(0, i, b).to(dev);
    auto y = data.targets.narrow(0, i, b).to(dev);
    auto lm = data.loss_mask.narrow(0, i, b).to(dev);
    auto em = data.eval_mask.narrow(0, i, b).to(dev);
    auto logits = forward_logits(model, x, bf16);
    auto ce = token_cross_entropy(logits, y);
    loss_sum += (ce * lm.reshape({-1})).sum().item<double>();
    loss_n += lm.sum().item<double>();
    auto hit = logits.argmax(-1).eq(y);
    acc_hits += hit.masked_select(em).sum().item<double>();
    acc_n += em.sum().item<double>();
    tok_hits += hit.sum().item<double>();
    tok_n += static_cast<double>(hit.numel());
    for (size_t s = 0; s < slices.size(); ++s) {
      auto m = slices[s].second.narrow(0, i, b).to(dev);
      slice_hits[s] += hit.masked_select(m).sum().item<double>();
      slice_n[s] += m.sum().item<double>();
    }
  }
  model->train();
  EvalResult r{loss_sum / std::max(1.0, loss_n), acc_hits / std::max(1.0, acc_n), tok_hits / std::max(1.0, tok_n), {}};
  for (size_t s = 0; s < slices.size(); ++s)
    if (slice_n[s] > 0) r.slices.emplace_back(slices[s].first, slice_hits[s] / slice_n[s]);
  return r;
}
}  // namespace

namespace {
// Steps whose losses --cuda-graph keeps on the device between two reads.
constexpr int64_t kLossWindow = 50;

// The order of epoch `epoch`'s examples: a permutation drawn from its own generator, so that a resumed run
// needs no generator state to continue the data order.
torch::Tensor epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  auto gen = at::detail::createCPUGenerator(seed * 1000003ULL + static_cast<uint64_t>(epoch) + 1);
  return torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kInt64));
}

void save_checkpoint(const std::string& path, LanguageModel& model, DeviceAdamW& opt, int64_t step) {
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive, opt_archive;
  model->save(model_archive);
  opt.save(opt_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", opt_archive);
  archive.write("step", torch::tensor(step));
  archive.write("rng", at::detail::getDefaultCPUGenerator().get_state());
  const std::string tmp = path + ".tmp";
  archive.save_to(tmp);
  TORCH_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot move checkpoint into place at ", path);
}

int64_t load_checkpoint(const std::string& path, LanguageModel& model, DeviceAdamW& opt, const torch::Device& dev) {
  torch::serialize::InputArchive archive, model_archive, opt_archive;
  archive.load_from(path, dev);
  archive.read("model", model_archive);
  archive.read("optimizer", opt_archive);
  model->load(model_archive);
  try {
    opt.load(opt_archive);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "checkpoint ", path, ": ", e.what_without_backtrace());
  }
  torch::Tensor step, rng;
  archive.read("step", step);
  archive.read("rng", rng);
  auto gen = at::detail::getDefaultCPUGenerator();
  gen.set_state(rng.to(torch::kCPU));
  return step.item<int64_t>();
}

// The optimiser of H3.md 6.4 with the SSM rule of H3.md 2.1: decayed matrices and undecayed vectors at `lr`, SSM
// parameters at min(ssm_lr, lr) without decay. `peaks` receives each group's peak learning rate.
DeviceAdamW make_optimizer(LanguageModel& model, const Options& train, std::vector<double>& peaks) {
  const double lr = train.get_float("lr"), wd = train.get_float("weight_decay");
  auto groups = model->param_groups();
  const double ssm_peak = std::min(groups.ssm_lr, lr);
  std::vector<AdamWGroup> pg;
  auto add_group = [&](std::vector<torch::Tensor>& ps, double peak, double decay) {
    if (ps.empty()) return;
    pg.push_back({ps, peak, decay});
    peaks.push_back(peak);
  };
  add_group(groups.decay, lr, wd);
  add_group(groups.no_decay, lr, 0.0);
  add_group(groups.ssm, ssm_peak, 0.0);
  return DeviceAdamW(std::move(pg), train.get_float("beta1"), train.get_float("beta2"));
}

// Training throughput between evaluations: wall time with evaluation excluded, and the tokens trained in it.
// On CUDA the device is synchronised before the clock is read, so that queued work counts where it ran.
class Throughput {
 public:
  explicit Throughput(const torch::Device& dev) : dev_(dev) {}
  void resume() { start_ = now(); }  // training (re)starts, e.g. after an evaluation
  void pause() { seconds_ += std::chrono::duration<double>(now() - start_).count(); }
  void add_step(int64_t tokens) { tokens_ += tokens, ++steps_; }
  // train/tokens_per_second and train/step_ms since the last call (none when no step was trained), then resets.
  void take_rows(int64_t step, std::vector<MetricRow>& rows) {
    if (steps_ > 0 && seconds_ > 0) {
      rows.push_back({step, "train", "tokens_per_second", static_cast<double>(tokens_) / seconds_});
      rows.push_back({step, "train", "step_ms", 1e3 * seconds_ / static_cast<double>(steps_)});
    }
    seconds_ = 0, tokens_ = 0, steps_ = 0;
  }

 private:
  std::chrono::steady_clock::time_point now() const {
    if (dev_.is_cuda()) torch::cuda::synchronize(dev_.index());
    return std::chrono::steady_clock::now();
  }
  torch::Device dev_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  double seconds_ = 0;
  int64_t tokens_ = 0, steps_ = 0;
};

// Masked mean cross-entropy of a batch (nats per loss-mask position); no host synchronisation.
torch::Tensor masked_loss(LanguageModel& model, int64_t V, const torch::Tensor& x, const torch::Tensor& y,
                          const torch::Tensor& m) {
  auto logits = model->forward(x);
  auto ce = torch::nn::functional::cross_entropy(
      logits.reshape({-1, V}), y.reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  return (ce * m.reshape({-1})).sum() / m.sum().clamp_min(1);
}
}  // namespace

namespace {
// The random state a run's steps draw from (dropout): the CPU generator and, on CUDA, the device's generator.
// Several runs trained in one process (train_ensemble) each keep their own and swap it in around their work, so
// that each draws exactly what it would draw alone.
class RngSlot {
 public:
  RngSlot(const torch::Device& dev, bool with_device) : dev_(dev), with_device_(with_device && dev.is_cuda()) {}
  void save() {
    cpu_ = at::detail::getDefaultCPUGenerator().get_state();
    if (with_device_) device_ = at::globalContext().defaultGenerator(dev_).get_state();
  }
  void restore() const {
    at::Generator cpu = at::detail::getDefaultCPUGenerator();  // a handle on the global generator
    cpu.set_state(cpu_);
    if (with_device_) {
      at::Generator device = at::globalContext().defaultGenerator(dev_);
      device.set_state(device_);
    }
  }

 private:
  torch::Device dev_;
  bool with_device_;
  torch::Tensor cpu_, device_;
};

// One run's training state: data, model, optimiser, schedule, evaluation, checkpoints, callbacks. train_run
// drives one; train_ensemble drives several in lockstep. The constructor builds everything and resumes from the
// checkpoint or evaluates step 0; then next_batch() / step_eagerly() / after_step() per optimiser step until
// done(); then finish().
class RunState {
 public:
  RunState(const RunSpec& spec, const torch::Device& dev, const std::string& device_text, const TrainCallbacks& cb,
           const CheckpointOptions& ck, const TrainExecution& exec)
      : spec_(spec), c_(spec.config), dev_(dev), cb_(cb), ck_(ck), throughput_(dev) {
    // Resolved again: the canonical config leaves out options at defaults added after it was first hashed.
    train_ = value_or_throw(resolve_options(train_schema(), c_["train"], "the run config"));
    if (exec.cuda_graph && !dev.is_cuda())
      throw StatusError(absl::InvalidArgumentError(absl::StrCat(
          "--cuda-graph needs a CUDA device, got '", device_text, "'; use --device cuda (or drop --cuda-graph)")));
    bf16_ = use_bf16(train_.get_string("precision"), dev);  // before anything is built
    grad_accum_ = train_.get_int("grad_accum");
    if (exec.cuda_graph && (bf16_ || grad_accum_ > 1))
      throw StatusError(absl::InvalidArgumentError(
          "--cuda-graph captures one fp32 step of the whole batch: it does not combine with train.precision bf16 "
          "or train.grad_accum > 1 (drop --cuda-graph, or use precision fp32 and grad_accum 1)"));
    seed_everything(static_cast<uint64_t>(spec.seed));
    // Once a model is confident, softmax tails and Adam's second moments fall into float32's denormal range,
    // where x86 arithmetic is ~100x slower (seen here: 8 ms steps became 70 ms). Flush them to zero.
    at::globalContext().setFlushDenormal(true);

    // Data.
    task_ = build_task(c_);
    data_ = value_or_throw(task_->make(static_cast<uint64_t>(spec.seed)));

    // Model.
    model_ = build_model(c_, *task_);
    model_->to(dev);
    if (cb_.on_start) cb_.on_start(model_->param_count(), model_->state_size(task_->input_len()));

    // Optimiser: three groups (H3.md 2.1 for the SSM rule).
    lr_ = train_.get_float("lr");
    opt_ = std::make_unique<DeviceAdamW>(make_optimizer(model_, train_, peaks_));

    N_ = data_.train.size();
    batch_ = train_.get_int("batch_size");
    steps_per_epoch_ = (N_ + batch_ - 1) / batch_;
    total_ = steps_per_epoch_ * train_.get_int("epochs");
    if (train_.get_int("max_steps") > 0) total_ = std::min(total_, train_.get_int("max_steps"));
    eval_every_ = train_.get_int("eval_every") * steps_per_epoch_;
    clip_ = train_.get_float("grad_clip");
    warm_ = train_.get_float("warmup_fraction");
    start_ratio_ = train_.get_float("warmup_start_lr") / std::max(lr_, 1e-30);
    min_ratio_ = train_.get_float("min_lr_ratio");
    V_ = task_->vocab_size();
    eval_batch_ = eval_batch_for(task_->input_len());
    train_x_ = data_.train.inputs.to(dev), train_y_ = data_.train.targets.to(dev);
    train_m_ = data_.train.loss_mask.to(dev);
    test_slices_ = task_->eval_slices(data_.test);
    params_ = model_->parameters();
    losses_ = std::make_unique<LossWindow>(dev.is_cuda() ? kLossWindow : 1, dev);

    model_->train();
    checkpoints_ = !ck_.path.empty() && ck_.every > 0;
    if (checkpoints_ && std::ifstream(ck_.path).good()) {
      step_ = load_checkpoint(ck_.path, model_, *opt_, dev);
      TORCH_CHECK(step_ >= 0 && step_ <= total_, "checkpoint ", ck_.path, " is at step ", step_, " of a ", total_,
                  "-step run: it belongs to another config");
      result_.resumed_from = step_;
    } else {
      do_eval(0);
    }
    throughput_.resume();
  }

  bool done() const { return done_; }
  int64_t step() const { return step_; }
  int64_t total() const { return total_; }
  int64_t batch() const { return batch_; }
  int64_t train_size() const { return N_; }
  // The masked training loss of a batch, for GraphTrainStep (no host synchronisation).
  GraphMember graph_member() {
    return GraphMember{[this](const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& m) {
                         return masked_loss(model_, V_, x, y, m);
                       },
                       opt_.get(), params_, clip_};
  }

  // The batch of the current step (x, y, m on the device), with the optimiser's learning rates set for it.
  // Starts a new epoch (its data order, and fresh examples where the task draws them) when one begins.
  std::array<torch::Tensor, 3> next_batch() {
    const int64_t epoch = step_ / steps_per_epoch_;
    if (epoch != epoch_) {
      if (epoch > 0)
        if (auto fresh = task_->train_epoch(static_cast<uint64_t>(spec_.seed), epoch)) {  // e.g. new lm windows
          data_.train = *std::move(fresh);
          TORCH_CHECK(data_.train.size() == N_, "task changed its train split size between epochs");
          train_x_ = data_.train.inputs.to(dev_);
          train_y_ = data_.train.targets.to(dev_);
          train_m_ = data_.train.loss_mask.to(dev_);
        }
      perm_ = epoch_order(N_, static_cast<uint64_t>(spec_.seed), epoch).to(dev_);
      epoch_ = epoch;
    }
    const double f = lr_factor(step_, total_, warm_, start_ratio_, min_ratio_);
    for (size_t g = 0; g < peaks_.size(); ++g) opt_->set_lr(g, peaks_[g] * f);
    const int64_t i = (step_ % steps_per_epoch_) * batch_;
    auto idx = perm_.narrow(0, i, std::min(batch_, N_ - i));
    return {train_x_.index_select(0, idx), train_y_.index_select(0, idx), train_m_.index_select(0, idx)};
  }

  // The eager step (train_step.h: precision, gradient accumulation, clipping, AdamW); returns the loss on the
  // device.
  torch::Tensor step_eagerly(const std::array<torch::Tensor, 3>& b) {
    opt_->zero_grad();
    auto loss = accumulate_gradients(model_, b[0], b[1], b[2], grad_accum_, bf16_);
    if (clip_ > 0) clip_grad_norm_device(params_, clip_);
    opt_->step();
    return loss;
  }

  // After the optimiser step of the current batch with its `loss`: the losses are read back every kLossWindow
  // steps on CUDA (every step on the CPU) and before evaluations, checkpoints and the end; a NaN/Inf loss ends
  // the run as "diverged" at its first bad step.
  void after_step(const torch::Tensor& loss, int64_t tokens) {
    losses_->add(step_, loss);
    ++step_;
    throughput_.add_step(tokens);
    const bool eval_now = step_ % eval_every_ == 0 && step_ < total_;
    const bool save_now = checkpoints_ && step_ % ck_.every == 0 && step_ < total_;
    if (losses_->full() || step_ == 1 || eval_now || save_now || step_ == total_)
      if (auto bad = flush_losses()) {
        result_.status = "diverged";
        result_.diverged_step = *bad;
        result_.steps = *bad;
        done_ = true;
        return;
      }
    if (eval_now) do_eval(step_);
    if (save_now) save_checkpoint(ck_.path, model_, *opt_, step_);
    if (step_ >= total_) done_ = true;
  }

  // The result; for a run that reached its last step, after the final evaluation, the length-extrapolation
  // evaluations and the final model's file.
  TrainResult finish() {
    if (result_.status == "diverged") return result_;
    do_eval(step_);
    eval_lengths(step_);
    if (!ck_.model_path.empty() && (ck_.save_every_model || task_->tokenizer())) {
      save_model(ck_.model_path, model_, c_);
      result_.model_path = ck_.model_path;
    }
    result_.status = "finished";
    result_.steps = step_;
    return result_;
  }

 private:
  // Evaluation batches of up to 512 examples, fewer where their logits ((batch, length, vocab) floats) would
  // pass 512 MB (MQAR's vocabulary of 8,192 at length 256 would need 4 GB at 512).
  int64_t eval_batch_for(int64_t len) const {
    return std::clamp<int64_t>((int64_t{1} << 29) / std::max<int64_t>(1, len * V_ * 4), 1, 512);
  }

  std::optional<int64_t> flush_losses() {
    return losses_->flush([&](int64_t s, double lv) {
      loss_acc_ += lv;
      ++loss_count_;
      if (cb_.on_step) cb_.on_step(s + 1, total_, lv);
    });
  }

  void do_eval(int64_t step) {
    throughput_.pause();
    auto te_res = evaluate(model_, data_.test, data_.test.size(), dev_, eval_batch_, bf16_, test_slices_);
    // Train metrics on the same basis, over (at most) as many training examples as the test split has.
    auto tr_res = evaluate(model_, data_.train, data_.test.size(), dev_, eval_batch_, bf16_);
    std::vector<MetricRow> rows = {
        {step, "test", "loss", te_res.loss},
        {step, "test", "accuracy", te_res.accuracy},
        {step, "test", "token_accuracy", te_res.token_accuracy},
        {step, "train", "loss", tr_res.loss},
        {step, "train", "accuracy", tr_res.accuracy},
        {step, "train", "token_accuracy", tr_res.token_accuracy},
        {step, "train", "lr",
         lr_ * lr_factor(std::max<int64_t>(0, step - 1), total_, warm_, start_ratio_, min_ratio_)},
    };
    if (step == 0) rows.push_back({0, "test", "chance", task_->chance()});
    rows.push_back({step, "train", "tokens_seen", static_cast<double>(step * batch_ * task_->input_len())});
    if (task_->test_bytes_per_token() > 0) {  // text: perplexity and bits per byte (comparable across tokenizers)
      rows.push_back({step, "test", "perplexity", std::exp(te_res.loss)});
      rows.push_back(
          {step, "test", "bits_per_byte", te_res.loss / std::log(2.0) / task_->test_bytes_per_token()});
    }
    for (const auto& [name, acc] : te_res.slices) rows.push_back({step, "test", name, acc});
    if (loss_count_ > 0)
      rows.push_back({step, "train", "running_loss", loss_acc_ / static_cast<double>(loss_count_)});
    loss_acc_ = 0;
    loss_count_ = 0;
    throughput_.take_rows(step, rows);
    result_.test_accuracy = te_res.accuracy;
    result_.test_loss = te_res.loss;
    if (cb_.on_metrics) cb_.on_metrics(rows);
    throughput_.resume();
  }

  // Length extrapolation (the task's eval_seq_lens): the final model on a fresh test split at each length.
  // At the training length that is the test split itself; at other lengths nothing can overlap the training
  // split. The split is drawn with num_train = 1 (the one training example is discarded) to keep drawing cheap.
  void eval_lengths(int64_t step) {
    const Json& to = c_["task_options"];
    if (!to.contains("eval_seq_lens")) return;
    std::vector<MetricRow> rows;
    for (const auto& l : to["eval_seq_lens"]) {
      const int64_t L = l.get<int64_t>();
      EvalResult r;
      if (L == to["seq_len"].get<int64_t>()) {
        r = evaluate(model_, data_.test, data_.test.size(), dev_, eval_batch_, bf16_);
      } else {
        Json at = to;
        at.erase("eval_seq_lens");
        at["seq_len"] = L;
        at["num_train"] = 1;
        auto long_task = value_or_throw(TaskRegistry::global().find(spec_.task, "task"))->factory(Options(at));
        TaskSplits s = value_or_throw(long_task->make(static_cast<uint64_t>(spec_.seed)));
        r = evaluate(model_, s.test, s.test.size(), dev_, eval_batch_for(long_task->input_len()), bf16_);
      }
      rows.push_back({step, "test", absl::StrCat("accuracy_len_", L), r.accuracy});
      rows.push_back({step, "test", absl::StrCat("loss_len_", L), r.loss});
    }
    if (cb_.on_metrics) cb_.on_metrics(rows);
  }

  const RunSpec& spec_;
  const Json& c_;
  torch::Device dev_;
  TrainCallbacks cb_;
  CheckpointOptions ck_;
  Options train_;
  bool bf16_ = false, checkpoints_ = false, done_ = false;
  int64_t grad_accum_ = 1;
  std::unique_ptr<Task> task_;
  TaskSplits data_;
  LanguageModel model_{nullptr};
  double lr_ = 0, clip_ = 0, warm_ = 0, start_ratio_ = 0, min_ratio_ = 0;
  std::vector<double> peaks_;
  std::unique_ptr<DeviceAdamW> opt_;
  int64_t N_ = 0, batch_ = 0, steps_per_epoch_ = 0, total_ = 0, eval_every_ = 0, V_ = 0, eval_batch_ = 0;
  int64_t step_ = 0, epoch_ = -1;
  torch::Tensor train_x_, train_y_, train_m_, perm_;
  std::vector<std::pair<std::string, torch::Tensor>> test_slices_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<LossWindow> losses_;
  Throughput throughput_;
  TrainResult result_;
  double loss_acc_ = 0;
  int64_t loss_count_ = 0;
};
}  // namespace

TrainResult train_run(const RunSpec& spec, const std::string& device_text, const TrainCallbacks& cb,
                      const CheckpointOptions& ck, const TrainExecution& exec) {
  const torch::Device dev = value_or_throw(parse_device(device_text));
  RunState run(spec, dev, device_text, cb, ck, exec);
  std::unique_ptr<GraphTrainStep> graph;
  if (exec.cuda_graph && !run.done())
    graph = std::make_unique<GraphTrainStep>(std::vector<GraphMember>{run.graph_member()}, run.batch());
  while (!run.done()) {
    auto b = run.next_batch();
    run.after_step(graph ? graph->step(b[0], b[1], b[2]) : run.step_eagerly(b), b[0].numel());
  }
  return run.finish();
}

std::vector<TrainResult> train_ensemble(const std::vector<RunSpec>& specs, const std::string& device_text,
                                        const std::vector<TrainCallbacks>& callbacks,
                                        const std::vector<CheckpointOptions>& checkpoints,
                                        const TrainExecution& exec) {
  const size_t n = specs.size();
  TORCH_CHECK(n >= 1, "train_ensemble: no runs");
  TORCH_CHECK(callbacks.size() == n && checkpoints.size() == n, "train_ensemble: ", n, " runs but ",
              callbacks.size(), " callbacks and ", checkpoints.size(), " checkpoint options");
  for (size_t i = 1; i < n; ++i)
    if (ensemble_key(specs[i].config) != ensemble_key(specs[0].config))
      throw StatusError(absl::InvalidArgumentError(absl::StrCat(
          "train_ensemble: runs ", specs[0].hash.substr(0, 12), " and ", specs[i].hash.substr(0, 12),
          " differ in more than seed and lr; an ensemble trains one layer, task and config")));
  const torch::Device dev = value_or_throw(parse_device(device_text));
  // Graph replay draws dropout from the one CUDA generator the graph registered: only eager steps swap it.
  const bool swap_device_rng = !exec.cuda_graph;
  std::vector<std::unique_ptr<RunState>> runs;
  std::vector<RngSlot> rng;
  for (size_t i = 0; i < n; ++i) {
    runs.push_back(std::make_unique<RunState>(specs[i], dev, device_text, callbacks[i], checkpoints[i], exec));
    rng.emplace_back(dev, swap_device_rng);
    rng.back().save();
  }
  for (size_t i = 1; i < n; ++i)
    TORCH_CHECK(runs[i]->step() == runs[0]->step() && runs[i]->total() == runs[0]->total() &&
                    runs[i]->batch() == runs[0]->batch() && runs[i]->train_size() == runs[0]->train_size(),
                "train_ensemble: run ", specs[i].hash.substr(0, 12), " is at step ", runs[i]->step(), " of ",
                runs[i]->total(), " (batch ", runs[i]->batch(), ", ", runs[i]->train_size(), " examples), run ",
                specs[0].hash.substr(0, 12), " at step ", runs[0]->step(), " of ", runs[0]->total(), " (batch ",
                runs[0]->batch(), ", ", runs[0]->train_size(),
                " examples): members must start together (resume runs with checkpoints at other steps alone)");
  std::unique_ptr<GraphTrainStep> graph;
  if (exec.cuda_graph && !runs[0]->done()) {
    std::vector<GraphMember> members;
    for (auto& r : runs) members.push_back(r->graph_member());
    graph = std::make_unique<GraphTrainStep>(std::move(members), runs[0]->batch());
  }
  std::vector<TrainResult> results(n);
  std::vector<bool> finished(n, false);
  auto finish_ended = [&]() {
    for (size_t i = 0; i < n; ++i)
      if (!finished[i] && runs[i]->done()) {
        rng[i].restore();
        results[i] = runs[i]->finish();
        rng[i].save();
        finished[i] = true;
      }
  };
  finish_ended();
  while (std::find(finished.begin(), finished.end(), false) != finished.end()) {
    std::vector<std::array<torch::Tensor, 3>> batches(n);
    for (size_t i = 0; i < n; ++i)
      if (!finished[i]) batches[i] = runs[i]->next_batch();
    std::vector<torch::Tensor> losses(n);
    if (graph) {
      losses = graph->step(batches);  // draws dropout from the graph's CUDA generator; no member state to swap
    } else {
      for (size_t i = 0; i < n; ++i) {
        if (finished[i]) continue;
        rng[i].restore();
        losses[i] = runs[i]->step_eagerly(batches[i]);
        rng[i].save();
      }
    }
    for (size_t i = 0; i < n; ++i) {
      if (finished[i]) continue;
      rng[i].restore();  // a checkpoint stores the run's own generator state
      runs[i]->after_step(losses[i], batches[i][0].numel());
      rng[i].save();
    }
    finish_ended();
  }
  return results;
}

int64_t checkpoint_step(const std::string& path) {
  if (!std::ifstream(path).good()) return 0;
  torch::serialize::InputArchive archive;
  archive.load_from(path, torch::kCPU);
  torch::Tensor step;
  archive.read("step", step);
  return step.item<int64_t>();
}

Json ensemble_key(const Json& config) {
  Json key = config;
  key.erase("seed");
  if (key.contains("train") && key["train"].is_object()) key["train"].erase("lr");
  return key;
}

}  // namespace hippo
