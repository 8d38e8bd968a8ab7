// Tokenizers of the language-modelling task (H3.md 7): bytes by default, or a SentencePiece BPE model trained
// on the training text. No LibTorch here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace hippo {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Number of token ids; every id is in [0, vocab_size()).
  virtual int64_t vocab_size() const = 0;
  // Text (UTF-8 bytes) -> token ids. Never fails: every byte string has an encoding.
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  // Token ids -> text. Ids outside [0, vocab_size()) raise StatusError (kInvalidArgument).
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  // "bytes" or "sentencepiece:PATH", stored with results.
  virtual std::string name() const = 0;
};

// One token per byte (vocab_size 256): bits per byte equal bits per token.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

// True when hippo was built with SentencePiece (Debian's libsentencepiece-dev).
bool sentencepiece_available();

// Loads a SentencePiece model file. Errors: kNotFound (unreadable file), kInvalidArgument (not a model),
// kUnimplemented (built without SentencePiece).
absl::StatusOr<std::unique_ptr<Tokenizer>> load_sentencepiece(const std::string& model_path);

// Trains a SentencePiece BPE model of `vocab_size` pieces on the text file `input` and writes it to `out`
// (the exact path; SentencePiece's .vocab side file is removed). Byte fallback is on, so any text encodes.
// Errors: kInvalidArgument (vocab_size out of [64, 1 << 20], unreadable input, training failed),
// kUnimplemented (built without SentencePiece).
absl::Status train_sentencepiece(const std::string& input, int64_t vocab_size, const std::string& out);

// Reads a whole text file for language modelling, checking that it exists, is not empty, is not binary (no NUL
// byte) and is valid UTF-8. Errors (kInvalidArgument) name the file and the problem.
absl::StatusOr<std::string> read_text_file(const std::string& path);

}  // namespace hippo
