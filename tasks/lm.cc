// Task "lm".
#include "tasks/lm.h"

#include <absl/strings/str_split.h>

#include <cmath>

#include "core/rng.h"

namespace hippo {

absl::StatusOr<std::unique_ptr<LmTask>> LmTask::create(const Options& o) {
  std::unique_ptr<LmTask> t(new LmTask());
  t->seq_len_ = o.get_int("seq_len");
  t->num_train_ = o.get_int("num_train");
  t->max_test_windows_ = o.get_int("max_test_windows");
  const std::string paths = o.get_string("path");
  if (paths.empty())
    return absl::InvalidArgumentError(
        "task 'lm' needs option 'path': one UTF-8 text file, or several separated by commas (e.g. "
        "--set lm.path=../shared/data/tinyshakespeare/input.txt)");
  std::string text;
  for (absl::string_view p : absl::StrSplit(paths, ',', absl::SkipEmpty())) {
    auto part = read_text_file(std::string(p));
    if (!part.ok()) return absl::InvalidArgumentError(absl::StrCat("task 'lm': ", part.status().message()));
    text += *part;
  }
  const std::string tok = o.get_string("tokenizer");
  if (tok.empty() || tok == "bytes") {
    t->tokenizer_ = make_byte_tokenizer();
  } else {
    auto sp = load_sentencepiece(tok);
    if (!sp.ok()) return absl::InvalidArgumentError(absl::StrCat("task 'lm' option 'tokenizer': ", sp.status().message()));
    t->tokenizer_ = *std::move(sp);
  }
  // Split by bytes at a character boundary.
  size_t cut = static_cast<size_t>(std::floor((1.0 - o.get_float("val_fraction")) * static_cast<double>(text.size())));
  while (cut < text.size() && (static_cast<unsigned char>(text[cut]) >> 6) == 0x2) ++cut;
  const std::string train_text = text.substr(0, cut), val_text = text.substr(cut);
  t->train_ = t->tokenizer_->encode(train_text);
  t->val_ = t->tokenizer_->encode(val_text);
  const auto need = static_cast<size_t>(t->seq_len_ + 1);
  if (t->train_.size() < need || t->val_.size() < 2)
    return absl::InvalidArgumentError(absl::StrCat(
        "task 'lm': the text of '", paths, "' is too short: ", t->train_.size(), " training and ", t->val_.size(),
        " validation tokens, but one window needs seq_len + 1 = ", need, " training tokens and validation needs 2; "
        "lower seq_len or val_fraction, or give more text"));
  // Bytes per scored validation token (the first token of the validation text is never a target).
  t->bytes_per_token_ = static_cast<double>(val_text.size()) / static_cast<double>(t->val_.size());
  return t;
}

std::optional<TaskData> LmTask::train_epoch(uint64_t seed, int64_t epoch) const {
  const int64_t N = num_train_, L = seq_len_;
  const int64_t starts = static_cast<int64_t>(train_.size()) - L;  // offsets 0 .. starts-1 have L+1 tokens
  Rng rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) * 0xD1B54A32D192ED03ULL + 0x6C6D);
  auto inputs = torch::empty({N, L}, torch::kInt64), targets = torch::empty({N, L}, torch::kInt64);
  auto in = inputs.accessor<int64_t, 2>(), tg = targets.accessor<int64_t, 2>();
  for (int64_t n = 0; n < N; ++n) {
    const auto s = static_cast<int64_t>(rng.uniform(static_cast<uint64_t>(starts)));
    for (int64_t j = 0; j < L; ++j) {
      in[n][j] = train_[s + j];
      tg[n][j] = train_[s + j + 1];
    }
  }
  TaskData d;
  d.inputs = inputs;
  d.targets = targets;
  d.loss_mask = torch::ones({N, L}, torch::kFloat32);
  d.eval_mask = torch::ones({N, L}, torch::kBool);
  return d;
}

absl::StatusOr<TaskSplits> LmTask::make(uint64_t seed) const {
  TaskSplits s;
  s.train = *train_epoch(seed, 0);
  const int64_t L = seq_len_, scored = static_cast<int64_t>(val_.size()) - 1;
  int64_t W = (scored + L - 1) / L;
  if (max_test_windows_ > 0) W = std::min(W, max_test_windows_);
  auto inputs = torch::zeros({W, L}, torch::kInt64), targets = torch::zeros({W, L}, torch::kInt64);
  auto mask = torch::zeros({W, L}, torch::kFloat32);
  auto in = inputs.accessor<int64_t, 2>(), tg = targets.accessor<int64_t, 2>();
  auto m = mask.accessor<float, 2>();
  for (int64_t w = 0; w < W; ++w)
    for (int64_t j = 0; j < L; ++j) {
      const int64_t i = w * L + j;
      if (i >= scored) break;
      in[w][j] = val_[i];
      tg[w][j] = val_[i + 1];
      m[w][j] = 1;
    }
  s.test.inputs = inputs;
  s.test.targets = targets;
  s.test.loss_mask = mask;
  s.test.eval_mask = mask.to(torch::kBool);
  return s;
}

namespace {
TaskEntry make_entry() {
  TaskEntry e;
  e.name = "lm";
  e.doc = "language modelling on UTF-8 text files (H3.md 7): random training windows, the last val_fraction "
          "of the text for validation; loss in nats/token, perplexity, bits per byte";
  e.schema.add_string("path", "", "text file(s), comma-separated; the last val_fraction of their bytes is validation")
      .add_string("tokenizer", "bytes", "'bytes' (vocab 256) or the path of a SentencePiece model (hippo tokenizer train)")
      .add_int("seq_len", 256, "window length in tokens (model context)", 1, 1 << 20)
      .add_float("val_fraction", 0.1, "fraction of the text's bytes held out for validation (the end)", 0.001, 0.9)
      .add_int("num_train", 2000, "training windows drawn per epoch (afresh each epoch)", 1, 1 << 30)
      .add_int("max_test_windows", 0,
               "score at most this many validation windows (0 = the whole validation text, the metric of record)",
               0, 1 << 30);
  e.validate = [](const Options& o) -> absl::Status { return LmTask::create(o).status(); };
  e.factory = [](const Options& o) -> std::unique_ptr<Task> { return value_or_throw(LmTask::create(o)); };
  return e;
}
const Registrar<TaskEntry> kRegistered(make_entry());
}  // namespace

}  // namespace hippo
