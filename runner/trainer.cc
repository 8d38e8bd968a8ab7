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

TrainResult train_run(const RunSpec& spec, const std::string& device_text, const TrainCallbacks& cb,
                      const CheckpointOptions& ck, const TrainExecution& exec) {
  const Json& c = spec.config;
  // Resolved again: the canonical config leaves out options at defaults added after it was first hashed.
  const Options train = value_or_throw(resolve_options(train_schema(), c["train"], "the run config"));
  const torch::Device dev = value_or_throw(parse_device(device_text));
  if (exec.cuda_graph && !dev.is_cuda())
    throw StatusError(absl::InvalidArgumentError(absl::StrCat(
        "--cuda-graph needs a CUDA device, got '", device_text, "'; use --device cuda (or drop --cuda-graph)")));
  const bool bf16 = use_bf16(train.get_string("precision"), dev);  // before anything is built
  const int64_t grad_accum = train.get_int("grad_accum");
  if (exec.cuda_graph && (bf16 || grad_accum > 1))
    throw StatusError(absl::InvalidArgumentError(
        "--cuda-graph captures one fp32 step of the whole batch: it does not combine with train.precision bf16 or "
        "train.grad_accum > 1 (drop --cuda-graph, or use precision fp32 and grad_accum 1)"));
  seed_everything(static_cast<uint64_t>(spec.seed));
  // Once a model is confident, softmax tails and Adam's second moments fall into float32's denormal range,
  // where x86 arithmetic is ~100x slower (seen here: 8 ms steps became 70 ms). Flush them to zero.
  at::globalContext().setFlushDenormal(true);

  // Data.
  auto task = build_task(c);
  TaskSplits data = value_or_throw(task->make(static_cast<uint64_t>(spec.seed)));

  // Model.
  LanguageModel model = build_model(c, *task);
  model->to(dev);
  if (cb.on_start) cb.on_start(model->param_count(), model->state_size(task->input_len()));

  // Optimiser: three groups (H3.md 2.1 for the SSM rule).
  const double lr = train.get_float("lr");
  std::vector<double> peaks;
  DeviceAdamW opt = make_optimizer(model, train, peaks);

  const int64_t N = data.train.size();
  const int64_t batch = train.get_int("batch_size");
  const int64_t steps_per_epoch = (N + batch - 1) / batch;
  const int64_t epochs = train.get_int("epochs");
  int64_t total = steps_per_epoch * epochs;
  if (train.get_int("max_steps") > 0) total = std::min(total, train.get_int("max_steps"));
  const int64_t eval_every = train.get_int("eval_every") * steps_per_epoch;
  const double clip = train.get_float("grad_clip");
  const double warm = train.get_float("warmup_fraction"), start_ratio = train.get_float("warmup_start_lr") / std::max(lr, 1e-30);
  const double min_ratio = train.get_float("min_lr_ratio");
  const int64_t V = task->vocab_size();
  // Evaluation batches of up to 512 examples, fewer where their logits ((batch, length, vocab) floats) would pass
  // 512 MB (MQAR's vocabulary of 8,192 at length 256 would need 4 GB at 512).
  auto eval_batch_for = [&](int64_t len) {
    return std::clamp<int64_t>((int64_t{1} << 29) / std::max<int64_t>(1, len * V * 4), 1, 512);
  };
  const int64_t eval_batch = eval_batch_for(task->input_len());

  auto train_x = data.train.inputs.to(dev), train_y = data.train.targets.to(dev);
  auto train_m = data.train.loss_mask.to(dev);
  TrainResult result;
  double loss_acc = 0;
  int64_t loss_count = 0;
  Throughput throughput(dev);

  const auto test_slices = task->eval_slices(data.test);
  auto do_eval = [&](int64_t step) {
    throughput.pause();
    auto te_res = evaluate(model, data.test, data.test.size(), dev, eval_batch, bf16, test_slices);
    // Train metrics on the same basis, over (at most) as many training examples as the test split has.
    auto tr_res = evaluate(model, data.train, data.test.size(), dev, eval_batch, bf16);
    std::vector<MetricRow> rows = {
        {step, "test", "loss", te_res.loss},
        {step, "test", "accuracy", te_res.accuracy},
        {step, "test", "token_accuracy", te_res.token_accuracy},
        {step, "train", "loss", tr_res.loss},
        {step, "train", "accuracy", tr_res.accuracy},
        {step, "train", "token_accuracy", tr_res.token_accuracy},
        {step, "train", "lr", lr * lr_factor(std::max<int64_t>(0, step - 1), total, warm, start_ratio, min_ratio)},
    };
    if (step == 0) rows.push_back({0, "test", "chance", task->chance()});
    rows.push_back({step, "train", "tokens_seen", static_cast<double>(step * batch * task->input_len())});
    if (task->test_bytes_per_token() > 0) {  // text: perplexity and bits per byte (comparable across tokenizers)
      rows.push_back({step, "test", "perplexity", std::exp(te_res.loss)});
      rows.push_back({step, "test", "bits_per_byte", te_res.loss / std::log(2.0) / task->test_bytes_per_token()});
    }
    for (const auto& [name, acc] : te_res.slices) rows.push_back({step, "test", name, acc});
    if (loss_count > 0) rows.push_back({step, "train", "running_loss", loss_acc / static_cast<double>(loss_count)});
    loss_acc = 0;
    loss_count = 0;
    throughput.take_rows(step, rows);
    result.test_accuracy = te_res.accuracy;
    result.test_loss = te_res.loss;
    if (cb.on_metrics) cb.on_metrics(rows);
    throughput.resume();
  };

  // Length extrapolation (the task's eval_seq_lens): the final model on a fresh test split at each length.
  // At the training length that is the test split itself; at other lengths nothing can overlap the training
  // split. The split is drawn with num_train = 1 (the one training example is discarded) to keep drawing cheap.
  auto eval_lengths = [&](int64_t step) {
    const Json& to = c["task_options"];
    if (!to.contains("eval_seq_lens")) return;
    std::vector<MetricRow> rows;
    for (const auto& l : to["eval_seq_lens"]) {
      const int64_t L = l.get<int64_t>();
      EvalResult r;
      if (L == to["seq_len"].get<int64_t>()) {
        r = evaluate(model, data.test, data.test.size(), dev, eval_batch, bf16);
      } else {
        Json at = to;
        at.erase("eval_seq_lens");
        at["seq_len"] = L;
        at["num_train"] = 1;
        auto long_task = value_or_throw(TaskRegistry::global().find(spec.task, "task"))->factory(Options(at));
        TaskSplits s = value_or_throw(long_task->make(static_cast<uint64_t>(spec.seed)));
        r = evaluate(model, s.test, s.test.size(), dev, eval_batch_for(long_task->input_len()), bf16);
      }
      rows.push_back({step, "test", absl::StrCat("accuracy_len_", L), r.accuracy});
      rows.push_back({step, "test", absl::StrCat("loss_len_", L), r.loss});
    }
    if (cb.on_metrics) cb.on_metrics(rows);
  };

  model->train();
  int64_t step = 0;
  const bool checkpoints = !ck.path.empty() && ck.every > 0;
  if (checkpoints && std::ifstream(ck.path).good()) {
    step = load_checkpoint(ck.path, model, opt, dev);
    TORCH_CHECK(step >= 0 && step <= total, "checkpoint ", ck.path, " is at step ", step, " of a ", total,
                "-step run: it belongs to another config");
    result.resumed_from = step;
  } else {
    do_eval(0);
  }
  // The step: eager (train_step.h: precision, gradient accumulation), or with --cuda-graph replayed from a CUDA
  // graph. On CUDA the losses stay on the device and are read back every kLossWindow steps and before evaluations,
  // checkpoints and the end (a read is a host-device sync); on the CPU every step.
  const auto params = model->parameters();
  const BatchLoss batch_loss = [&](const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& m) {
    return masked_loss(model, V, x, y, m);
  };
  std::unique_ptr<GraphTrainStep> graph;
  if (exec.cuda_graph) graph = std::make_unique<GraphTrainStep>(batch_loss, opt, params, clip, batch);
  auto losses = std::make_unique<LossWindow>(dev.is_cuda() ? kLossWindow : 1, dev);
  throughput.resume();
  auto diverged = [&](int64_t at) {
    result.status = "diverged";
    result.diverged_step = at;
    result.steps = at;
    return result;
  };
  // Reports the window's losses (running loss, on_step); returns the first step whose loss is NaN/Inf.
  auto flush_losses = [&]() {
    return losses->flush([&](int64_t s, double lv) {
      loss_acc += lv;
      ++loss_count;
      if (cb.on_step) cb.on_step(s + 1, total, lv);
    });
  };
  for (int64_t epoch = step / steps_per_epoch; step < total; ++epoch) {
    if (epoch > 0)
      if (auto fresh = task->train_epoch(static_cast<uint64_t>(spec.seed), epoch)) {  // e.g. new lm windows
        data.train = *std::move(fresh);
        TORCH_CHECK(data.train.size() == N, "task changed its train split size between epochs");
        train_x = data.train.inputs.to(dev);
        train_y = data.train.targets.to(dev);
        train_m = data.train.loss_mask.to(dev);
      }
    auto perm = epoch_order(N, static_cast<uint64_t>(spec.seed), epoch).to(dev);
    for (int64_t i = (step % steps_per_epoch) * batch; i < N && step < total; i += batch) {
      const double f = lr_factor(step, total, warm, start_ratio, min_ratio);
      for (size_t g = 0; g < peaks.size(); ++g) opt.set_lr(g, peaks[g] * f);
      auto idx = perm.narrow(0, i, std::min(batch, N - i));
      auto x = train_x.index_select(0, idx), y = train_y.index_select(0, idx), m = train_m.index_select(0, idx);
      if (graph) {
        losses->add(step, graph->step(x, y, m));
      } else {
        opt.zero_grad();
        losses->add(step, accumulate_gradients(model, x, y, m, grad_accum, bf16));
        if (clip > 0) clip_grad_norm_device(params, clip);
        opt.step();
      }
      ++step;
      throughput.add_step(x.numel());
      const bool eval_now = step % eval_every == 0 && step < total;
      const bool save_now = checkpoints && step % ck.every == 0 && step < total;
      if (losses->full() || step == 1 || eval_now || save_now || step == total)
        if (auto bad = flush_losses()) return diverged(*bad);
      if (eval_now) do_eval(step);
      if (save_now) save_checkpoint(ck.path, model, opt, step);
    }
  }
  do_eval(step);
  eval_lengths(step);
  if (!ck.model_path.empty() && (ck.save_every_model || task->tokenizer())) {
    save_model(ck.model_path, model, c);
    result.model_path = ck.model_path;
  }
  result.status = "finished";
  result.steps = step;
  return result;
}

}  // namespace hippo
