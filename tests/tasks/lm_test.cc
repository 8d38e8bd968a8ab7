// The lm task (H3.md 7) and its tokenizers: text checks, the train/validation split, windows, determinism,
// bits per byte, SentencePiece.
#include "tasks/lm.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/testing.h"

namespace hippo {
namespace {

const std::string kShakespeare = HIPPO_SOURCE_DIR "/../shared/data/tinyshakespeare/input.txt";

Options lm_options(const std::string& path, Json given = Json::object()) {
  given["path"] = path;
  const TaskEntry* e = value_or_throw(TaskRegistry::global().find("lm", "task"));
  return value_or_throw(resolve_options(e->schema, given, "task 'lm'"));
}

TEST(ByteTokenizer, RoundTripsAnyBytes) {
  auto t = make_byte_tokenizer();
  std::string s = "héllo\n\x01\xff";
  auto ids = t->encode(s);
  EXPECT_EQ(ids.size(), s.size());
  EXPECT_EQ(ids[1], 0xC3);
  EXPECT_EQ(t->decode(ids), s);
  EXPECT_THROW(t->decode({256}), StatusError);
}

TEST(TextFile, RejectsMissingEmptyBinaryAndInvalidUtf8) {
  testing::TempDir dir;
  EXPECT_EQ(read_text_file(dir.file("nope.txt")).status().code(), absl::StatusCode::kInvalidArgument);
  testing::write_file(dir.file("empty.txt"), "");
  EXPECT_NE(read_text_file(dir.file("empty.txt")).status().message().find("is empty"), std::string::npos);
  testing::write_file(dir.file("bin.txt"), std::string("abc\0def", 7));
  EXPECT_NE(read_text_file(dir.file("bin.txt")).status().message().find("NUL byte at offset 3"), std::string::npos);
  testing::write_file(dir.file("latin1.txt"), "caf\xe9!");
  EXPECT_NE(read_text_file(dir.file("latin1.txt")).status().message().find("not valid UTF-8 (at byte offset 3)"),
            std::string::npos);
  EXPECT_NE(read_text_file(dir.path()).status().message().find("is a directory"), std::string::npos);
  testing::write_file(dir.file("ok.txt"), "ça va — oui\n");
  EXPECT_TRUE(read_text_file(dir.file("ok.txt")).ok());
}

TEST(LmTask, SplitsWindowsAndScoresEveryValidationTokenOnce) {
  testing::TempDir dir;
  std::string text;
  for (int i = 0; i < 1000; ++i) text += static_cast<char>('a' + (i * 7) % 26);
  testing::write_file(dir.file("t.txt"), text);
  auto task = value_or_throw(LmTask::create(lm_options(dir.file("t.txt"), {{"seq_len", 16}, {"num_train", 50}})));
  EXPECT_EQ(task->vocab_size(), 256);
  EXPECT_EQ(task->train_tokens(), 900);
  EXPECT_EQ(task->val_tokens(), 100);
  EXPECT_DOUBLE_EQ(task->test_bytes_per_token(), 1.0);
  auto s = value_or_throw(task->make(3));
  // Train: windows of the first 900 bytes, targets shifted by one.
  ASSERT_EQ(s.train.inputs.sizes(), torch::IntArrayRef({50, 16}));
  EXPECT_TRUE(torch::equal(s.train.inputs.narrow(1, 1, 15), s.train.targets.narrow(1, 0, 15)));
  const std::string train_text = text.substr(0, 900);
  for (int64_t n = 0; n < 50; ++n) {
    std::string w;
    for (int64_t j = 0; j < 16; ++j) w += static_cast<char>(s.train.inputs[n][j].item<int64_t>());
    w += static_cast<char>(s.train.targets[n][15].item<int64_t>());
    EXPECT_NE(train_text.find(w), std::string::npos) << "window " << n << " is not in the training text";
  }
  // Test: 99 scored targets (every validation byte after the first) in ceil(99 / 16) = 7 windows.
  ASSERT_EQ(s.test.inputs.size(0), 7);
  EXPECT_EQ(s.test.loss_mask.sum().item<double>(), 99.0);
  EXPECT_TRUE(torch::equal(s.test.eval_mask, s.test.loss_mask.to(torch::kBool)));
  std::string scored;
  for (int64_t w = 0; w < 7; ++w)
    for (int64_t j = 0; j < 16; ++j)
      if (s.test.loss_mask[w][j].item<float>() > 0) scored += static_cast<char>(s.test.targets[w][j].item<int64_t>());
  EXPECT_EQ(scored, text.substr(901));
  // Fresh windows every epoch, the same for the same (seed, epoch).
  auto e1 = *task->train_epoch(3, 1), e1b = *task->train_epoch(3, 1);
  EXPECT_TRUE(torch::equal(e1.inputs, e1b.inputs));
  EXPECT_FALSE(torch::equal(e1.inputs, s.train.inputs));
  EXPECT_TRUE(torch::equal(s.train.inputs, task->train_epoch(3, 0)->inputs));
  EXPECT_FALSE(torch::equal(s.train.inputs, value_or_throw(task->make(4)).train.inputs));
}

TEST(LmTask, ClearErrorsForUnusableText) {
  testing::TempDir dir;
  testing::write_file(dir.file("short.txt"), "to be or not to be");
  auto r = LmTask::create(lm_options(dir.file("short.txt"), {{"seq_len", 64}}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("too short"), std::string::npos) << r.status().message();
  EXPECT_NE(LmTask::create(lm_options("")).status().message().find("needs option 'path'"), std::string::npos);
  EXPECT_NE(LmTask::create(lm_options(dir.file("missing.txt"))).status().message().find("cannot be read"),
            std::string::npos);
  auto bad_tok = LmTask::create(lm_options(dir.file("short.txt"), {{"seq_len", 2}, {"tokenizer", dir.file("no.model")}}));
  EXPECT_EQ(bad_tok.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LmTask, TinyShakespeareSplitAsItsReadmeSays) {
  if (!std::ifstream(kShakespeare).good()) GTEST_SKIP() << "no corpus at " << kShakespeare;
  auto task = value_or_throw(LmTask::create(lm_options(kShakespeare)));
  EXPECT_EQ(task->train_tokens() + task->val_tokens(), 1115394);  // bytes of input.txt
  EXPECT_NEAR(static_cast<double>(task->val_tokens()), 111539.4, 1.0);
}

TEST(SentencePiece, TrainsLoadsAndRoundTrips) {
  if (!sentencepiece_available()) GTEST_SKIP() << "built without SentencePiece (libsentencepiece-dev)";
  testing::TempDir dir;
  // English text every checkout has: the project's own documents.
  std::string text;
  for (const char* f : {"/README.md", "/docs/ARCHITECTURE.md", "/docs/RESULTS.md", "/docs/FLASHCONV.md"})
    text += testing::read_file(std::string(HIPPO_SOURCE_DIR) + f);
  ASSERT_GT(text.size(), 20000u);
  testing::write_file(dir.file("small.txt"), text);
  ASSERT_TRUE(train_sentencepiece(dir.file("small.txt"), 400, dir.file("sp.model")).ok());
  auto tok = value_or_throw(load_sentencepiece(dir.file("sp.model")));
  EXPECT_EQ(tok->vocab_size(), 400);
  const std::string s = "ROMEO: What light  through\n\nyonder window breaks? ü ﬁ 😀\n";  // lossless
  EXPECT_EQ(tok->decode(tok->encode(s)), s);
  auto task = value_or_throw(
      LmTask::create(lm_options(dir.file("small.txt"), {{"tokenizer", dir.file("sp.model")}, {"seq_len", 32}})));
  EXPECT_EQ(task->vocab_size(), 400);
  EXPECT_GT(task->test_bytes_per_token(), 1.2) << "BPE pieces should span more than one byte on average";
  EXPECT_EQ(load_sentencepiece(dir.file("small.txt")).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(train_sentencepiece(dir.file("small.txt"), 10, dir.file("x.model")).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hippo
